"""Activation primitives: sigmoid (with steepness), tanh, relu, leaky_relu, elu, softmax, log_softmax.

Each is one Function with its backward beside its forward. Where the derivative can be written in
terms of the output (sigmoid, tanh, softmax, log_softmax) the Function keeps the output, not the
input. ``inplace=True`` is accepted for PyTorch compatibility but the result is always a new tensor:
autograd needs the untouched input (or output) for the backward pass, and foveanet has no version
counters to detect an overwritten array, so writing into the input could silently corrupt gradients.
"""
from __future__ import annotations

import warnings

from ..autograd import Function, Tensor
from ..backend import get_default_dtype, xp
from ..backend.cpu import kernels, threads
from ._util import norm_axis
from .elementwise import cast

KERNELS = "foveanet.ops._activation_kernels"


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


# ---------------------------------------------------------------------------------------- sigmoid
class Sigmoid(Function):
    """y = 1 / (1 + exp(-sigma z)); dy/dz = sigma y (1 - y).

    Stable for any z: the form 1 / (1 + exp(-t)) has no cancellation, and where exp(-t)
    overflows (t < about -88 in float32) the result 1 / inf = 0 is the correctly rounded value, so
    that overflow is expected and silenced rather than reported."""

    def forward(self, z, sigma):
        self.sigma = sigma
        y = xp.multiply(z, -sigma, out=xp.empty(z.shape, dtype=z.dtype))  # an array even for 0-d z
        with xp.errstate(over="ignore"):
            xp.exp(y, out=y)
        y += 1
        xp.reciprocal(y, out=y)
        self.out = y
        return y

    def backward(self, g):
        y = self.out
        gy = g * y
        gy *= 1 - y
        if self.sigma != 1.0:
            gy *= self.sigma
        return gy, None


def _floating(x):
    """Integer input becomes the default float dtype (as PyTorch promotes it)."""
    x = _tensor(x)
    if not xp.issubdtype(x.dtype, xp.floating):
        x = cast(x, get_default_dtype())
    return x


def sigmoid(input, sigma=1.0):  # noqa: A002 - PyTorch's signature
    """Logistic sigmoid with steepness ``sigma``: 1 / (1 + exp(-sigma * z)).

    ``sigma=1`` is the usual ``torch.sigmoid``; larger sigma gives a steeper step (the lecture's
    form). Its derivative is sigma * y * (1 - y). No overflow for large |z|."""
    return Sigmoid.apply(_floating(input), float(sigma))


# ------------------------------------------------------------------------------------------- tanh
class Tanh(Function):
    def forward(self, a):
        self.out = xp.tanh(a)
        return self.out

    def backward(self, g):
        y = self.out
        return g * (1 - y * y)


def tanh(input):  # noqa: A002
    """Hyperbolic tangent; derivative 1 - tanh^2."""
    return Tanh.apply(_floating(input))


# ----------------------------------------------------------------------------------- relu family
# ReLU is np.clip(a, 0, inf), not np.maximum(a, 0): NumPy runs maximum against a scalar in its
# generic loop but has a SIMD loop for clip with two bounds (one-sided clip is as slow as
# maximum), and clip keeps -0.0 as PyTorch's relu does (figures: benchmarks/RESULTS.md, "ReLU,
# LeakyReLU and clamp"). With numba, a compiled loop with clip's results comes first
# (_activation_kernels.py): it pays on small arrays (the MLP's) and ties on large ones, which
# memory bandwidth bounds either way.
def relu_into(a, out=None):
    """max(a, 0) into ``out`` (a new array laid out like ``a`` by default; ``out=a`` works in
    place), split over the engine's threads."""
    if out is None:
        out = xp.empty_like(a)
    if a.ndim == 0 or a.dtype.kind != "f":
        return xp.maximum(a, 0, out=out)
    k = kernels.load(KERNELS)
    if k is not None and a.flags.c_contiguous and out.flags.c_contiguous and \
            out.dtype == a.dtype:  # one compiled pass with clip's results (see above)
        af, of = a.reshape(-1), out.reshape(-1)
        threads.split(lambda lo, hi: k.relu(af, of, lo, hi), af.size, out.nbytes)
        return out
    # the array method, not np.clip's wrapper: 6.9 -> 3.8 us on a small array
    threads.split(lambda lo, hi: a[lo:hi].clip(0, xp.inf, out=out[lo:hi]), a.shape[0],
                  out.nbytes)
    return out


def warm() -> str:
    """Compile (or load from the cache) the ReLU loop for float32 and float64."""
    if kernels.load(KERNELS) is None:
        return "ReLU: numba is not installed, NumPy's clip instead"
    for dt in (xp.float32, xp.float64):
        a = xp.zeros(2, dtype=dt)
        relu_into(a)
        kernels.load(KERNELS).relu_grad(a, a, xp.empty_like(a), 0, 2)
    return "ReLU: numba kernels compiled"


kernels.declare(KERNELS, "ReLU", warm)


class ReLU(Function):
    fresh_grads = True  # the gradient is a new array: a leaf input keeps it without a copy

    def forward(self, a):
        # the output is kept (the next layer holds it anyway); out > 0 is exactly a > 0
        self.out = relu_into(a)
        return self.out

    def backward(self, g):
        # PyTorch's threshold_backward: 0 where out <= 0, else g (so g passes where out is NaN,
        # and a NaN or inf in g where out <= 0 gives 0)
        out = self.out
        if g.shape != out.shape or g.ndim == 0:
            return xp.where(out <= 0, xp.zeros((), dtype=g.dtype), g)
        gx = xp.empty_like(g)
        k = kernels.load(KERNELS)
        if k is not None and g.dtype == out.dtype and g.dtype.kind == "f" and \
                g.flags.c_contiguous and out.flags.c_contiguous:  # one compiled pass
            gf, of, xf = g.reshape(-1), out.reshape(-1), gx.reshape(-1)
            threads.split(lambda lo, hi: k.relu_grad(gf, of, xf, lo, hi), gf.size, g.nbytes)
            return gx
        zero = xp.zeros((), dtype=g.dtype)
        threads.split(lambda lo, hi: xp.copyto(gx[lo:hi], xp.where(out[lo:hi] <= 0, zero, g[lo:hi])),
                      g.shape[0], g.nbytes)
        return gx


class LeakyReLU(Function):
    """For 0 <= slope <= 1 (the usual case) without ``np.where``, which measured ~10x slower here
    (figures: benchmarks/RESULTS.md, "ReLU, LeakyReLU and clamp"): the output is max(a, slope *
    a), which is a for a > 0 and slope * a otherwise, bit for bit; the gradient is g times
    max(mask, slope), exactly 1 or slope (clip, not maximum, for the factor: see ``relu_into``)."""

    def forward(self, a, slope):
        self.mask, self.slope = a > 0, slope
        if a.ndim and 0.0 <= slope <= 1.0:
            out = xp.multiply(a, slope)
            return xp.maximum(a, out, out=out)
        return xp.where(self.mask, a, a * slope)

    def backward(self, g):
        # at 0 the slope of the negative side, as PyTorch (its test is ``x > 0``)
        if g.ndim and g.shape == self.mask.shape and 0.0 <= self.slope <= 1.0:
            factor = self.mask.astype(g.dtype)  # 1 where a > 0, else 0 ...
            xp.clip(factor, self.slope, xp.inf, out=factor)  # ... and slope for the 0s
            factor *= g
            return factor, None
        return xp.where(self.mask, g, g * self.slope), None


class ELU(Function):
    def forward(self, a, alpha):
        self.mask, self.alpha = a > 0, alpha
        neg = xp.expm1(xp.minimum(a, 0))  # clipped so exp never overflows on the positive side
        neg *= alpha
        self.neg = neg                      # alpha (exp(a) - 1) where a <= 0
        return xp.where(self.mask, a, neg)

    def backward(self, g):
        # d/da alpha (exp(a) - 1) = alpha exp(a) = neg + alpha; at 0 that is alpha, as PyTorch
        return xp.where(self.mask, g, g * (self.neg + self.alpha)), None


def relu(input, inplace=False):  # noqa: A002
    """max(0, x). ``inplace`` is accepted but ignored: the result is always a new tensor."""
    return ReLU.apply(_tensor(input))


def leaky_relu(input, negative_slope=0.01, inplace=False):  # noqa: A002
    """x where x > 0, else negative_slope * x. ``inplace`` is accepted but ignored."""
    return LeakyReLU.apply(_tensor(input), float(negative_slope))


def elu(input, alpha=1.0, inplace=False):  # noqa: A002
    """x where x > 0, else alpha * (exp(x) - 1). ``inplace`` is accepted but ignored."""
    return ELU.apply(_tensor(input), float(alpha))


# ---------------------------------------------------------------------------------------- softmax
def _softmax_dim(name, ndim, dim):
    if dim is None:  # PyTorch's legacy implicit choice
        dim = 0 if ndim in (0, 1, 3) else 1
        warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call "
                      f"to include dim=X as an argument.", UserWarning, stacklevel=3)
    return norm_axis(int(dim), max(ndim, 1))  # a 0-d tensor takes dim 0 or -1, as PyTorch


def _as_1d(a):
    """Softmax of a 0-d array is taken over a length-1 axis (the result is 1)."""
    return a.reshape(1) if a.ndim == 0 else a


class Softmax(Function):
    def forward(self, a, axis):
        self.axis, self.shape = axis, a.shape
        x = _as_1d(a)
        e = x - x.max(axis=axis, keepdims=True)
        xp.exp(e, out=e)
        e /= e.sum(axis=axis, keepdims=True)
        self.out = e
        return e.reshape(a.shape)

    def backward(self, g):
        y, axis = self.out, self.axis
        g = _as_1d(g)
        gi = g * y
        gi -= y * gi.sum(axis=axis, keepdims=True)  # y (g - sum(g y))
        return gi.reshape(self.shape), None


class LogSoftmax(Function):
    def forward(self, a, axis):
        self.axis, self.shape = axis, a.shape
        x = _as_1d(a)
        out = x - x.max(axis=axis, keepdims=True)
        out -= xp.log(xp.exp(out).sum(axis=axis, keepdims=True))
        self.out = out
        return out.reshape(a.shape)

    def backward(self, g):
        g = _as_1d(g)
        gi = xp.exp(self.out)
        gi *= -g.sum(axis=self.axis, keepdims=True)
        gi += g  # g - softmax * sum(g)
        return gi.reshape(self.shape), None


def softmax(input, dim=None):  # noqa: A002
    """exp(x) / sum(exp(x)) along ``dim``, computed after subtracting the maximum (stable).

    ``dim=None`` follows PyTorch's deprecated implicit choice (0 for 0-, 1- or 3-D input, else 1)
    and warns."""
    input = _floating(input)
    return Softmax.apply(input, _softmax_dim("softmax", input.ndim, dim))


def log_softmax(input, dim=None):  # noqa: A002
    """x - logsumexp(x) along ``dim`` (stable). ``dim=None``: as :func:`softmax`."""
    input = _floating(input)
    return LogSoftmax.apply(input, _softmax_dim("log_softmax", input.ndim, dim))
