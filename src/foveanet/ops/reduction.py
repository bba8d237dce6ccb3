"""Reductions over axes: sum, mean, var/std, max/min (values and indices), logsumexp, norm."""
from __future__ import annotations

import builtins
from collections import namedtuple

from ..autograd import Function, Tensor
from ..backend import xp
from ._util import norm_axes, norm_axis

values_indices = namedtuple("values_indices", ["values", "indices"])


def _expand(g, shape, axes, keepdim):
    """Undo a reduction's shape change: re-insert the reduced axes, then broadcast to ``shape``."""
    if not keepdim:
        g = xp.expand_dims(g, axes)
    return xp.broadcast_to(g, shape)


class Sum(Function):
    def forward(self, a, axes, keepdim):
        self.shape, self.axes, self.keepdim = a.shape, axes, keepdim
        return a.sum(axis=axes, keepdims=keepdim)

    def backward(self, g):
        return _expand(g, self.shape, self.axes, self.keepdim)


class Mean(Function):
    def forward(self, a, axes, keepdim):
        self.shape, self.axes, self.keepdim = a.shape, axes, keepdim
        self.n = int(xp.prod([a.shape[i] for i in axes])) if axes else 1
        return a.mean(axis=axes, keepdims=keepdim)

    def backward(self, g):
        return _expand(g / self.n, self.shape, self.axes, self.keepdim)


class Var(Function):
    def forward(self, a, axes, keepdim, correction):
        self.a, self.axes, self.keepdim = a, axes, keepdim
        n = int(xp.prod([a.shape[i] for i in axes])) if axes else 1
        self.denom = builtins.max(n - correction, 0)
        self.mean = a.mean(axis=axes, keepdims=True)
        with xp.errstate(divide="ignore", invalid="ignore"):
            return a.var(axis=axes, ddof=correction, keepdims=keepdim)

    def backward(self, g):
        if not self.keepdim:
            g = xp.expand_dims(g, self.axes)
        with xp.errstate(divide="ignore", invalid="ignore"):
            return g * (2.0 / self.denom) * (self.a - self.mean)


class Std(Var):
    """sqrt(var); where the deviation is 0 the gradient is 0 (as PyTorch), not inf."""

    def forward(self, a, axes, keepdim, correction):
        self.out = xp.sqrt(super().forward(a, axes, keepdim, correction))
        return self.out

    def backward(self, g):
        with xp.errstate(divide="ignore", invalid="ignore"):
            g = xp.where(self.out == 0, 0, g / (2 * self.out)).astype(g.dtype, copy=False)
        return super().backward(g)


class Amax(Function):
    """Max (or min) over axes; the gradient is shared evenly between tied maxima (PyTorch's amax)."""

    def forward(self, a, axes, keepdim, take_min=False):
        self.a, self.axes, self.keepdim = a, axes, keepdim
        self.out = a.min(axis=axes, keepdims=True) if take_min else a.max(axis=axes, keepdims=True)
        return self.out if keepdim else self.out.reshape([n for i, n in enumerate(a.shape) if i not in axes])

    def backward(self, g):
        mask = self.a == self.out
        count = mask.sum(axis=self.axes, keepdims=True)
        if not self.keepdim:
            g = xp.expand_dims(g, self.axes)
        return mask * (g / count)


class MaxDim(Function):
    """Max (or min) along one axis with its index; the gradient goes to that index only."""

    def forward(self, a, axis, keepdim, take_min=False):
        self.shape, self.axis, self.keepdim = a.shape, axis, keepdim
        idx = (a.argmin if take_min else a.argmax)(axis=axis, keepdims=True)
        self.idx = idx
        vals = xp.take_along_axis(a, idx, axis=axis)
        return vals if keepdim else vals.squeeze(axis)

    def backward(self, g):
        if not self.keepdim:
            g = xp.expand_dims(g, self.axis)
        out = xp.zeros(self.shape, dtype=g.dtype)
        xp.put_along_axis(out, self.idx, g, axis=self.axis)
        return out


class LogSumExp(Function):
    def forward(self, a, axes, keepdim):
        self.a, self.axes, self.keepdim = a, axes, keepdim
        m = a.max(axis=axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        self.out = xp.log(xp.exp(a - m).sum(axis=axes, keepdims=True)) + m
        return self.out if keepdim else self.out.squeeze(axes)

    def backward(self, g):
        if not self.keepdim:
            g = xp.expand_dims(g, self.axes)
        return g * xp.exp(self.a - self.out)


def _axes(a, dim):
    return norm_axes(dim, a.ndim)


def sum(a, dim=None, keepdim=False):  # noqa: A001 - PyTorch's name
    return Sum.apply(a, _axes(a, dim), keepdim)


def mean(a, dim=None, keepdim=False):
    if not xp.issubdtype(a.dtype, xp.inexact):
        raise TypeError(f"mean() needs a floating-point tensor, got {a.dtype}; call .float() first")
    return Mean.apply(a, _axes(a, dim), keepdim)


def _correction(unbiased, correction):
    return int(correction) if correction is not None else (1 if unbiased else 0)


def var(a, dim=None, keepdim=False, unbiased=True, correction=None):
    return Var.apply(a, _axes(a, dim), keepdim, _correction(unbiased, correction))


def std(a, dim=None, keepdim=False, unbiased=True, correction=None):
    return Std.apply(a, _axes(a, dim), keepdim, _correction(unbiased, correction))


def amax(a, dim=None, keepdim=False):
    return Amax.apply(a, _axes(a, dim), keepdim)


def amin(a, dim=None, keepdim=False):
    return Amax.apply(a, _axes(a, dim), keepdim, take_min=True)


def _max_min(a, dim, keepdim, take_min):
    if a.numel() == 0:
        raise ValueError(f"{'min' if take_min else 'max'}() of an empty tensor")
    if dim is None:
        return Amax.apply(a, _axes(a, None), False, take_min=take_min)
    axis = norm_axis(dim, a.ndim)
    values = MaxDim.apply(a, axis, keepdim, take_min=take_min)
    idx = (a.data.argmin if take_min else a.data.argmax)(axis=axis, keepdims=keepdim)
    return values_indices(values, Tensor._wrap(idx.astype(xp.int64)))


def max(a, dim=None, keepdim=False):  # noqa: A001
    """``max(a)``: the largest element. ``max(a, dim)``: (values, indices) along ``dim``."""
    return _max_min(a, dim, keepdim, take_min=False)


def min(a, dim=None, keepdim=False):  # noqa: A001
    return _max_min(a, dim, keepdim, take_min=True)


def argmax(a, dim=None, keepdim=False):
    if dim is None:
        return Tensor._wrap(xp.asarray(a.data.argmax(), dtype=xp.int64))
    return Tensor._wrap(a.data.argmax(axis=norm_axis(dim, a.ndim), keepdims=keepdim).astype(xp.int64))


def argmin(a, dim=None, keepdim=False):
    if dim is None:
        return Tensor._wrap(xp.asarray(a.data.argmin(), dtype=xp.int64))
    return Tensor._wrap(a.data.argmin(axis=norm_axis(dim, a.ndim), keepdims=keepdim).astype(xp.int64))


def logsumexp(a, dim, keepdim=False):
    return LogSumExp.apply(a, _axes(a, dim), keepdim)


def norm(a, p=2, dim=None, keepdim=False):
    """The p-norm over ``dim`` (all elements by default): p = 1, 2, inf or any positive number."""
    from .elementwise import abs as _abs, pow as _pow, sqrt
    if p == 2:
        return sqrt(sum(a * a, dim, keepdim))
    if p == 1:
        return sum(_abs(a), dim, keepdim)
    if p == float("inf"):
        return amax(_abs(a), dim, keepdim)
    if p <= 0:
        raise ValueError(f"norm: p must be positive, got {p}")
    return _pow(sum(_pow(_abs(a), p), dim, keepdim), 1.0 / p)
