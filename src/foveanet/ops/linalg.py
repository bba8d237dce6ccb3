"""Matrix products: ``matmul`` (NumPy semantics, batched and broadcast), the fused ``linear`` and
``gram`` (x x^T, one product each way)."""
from __future__ import annotations

from ..autograd import Function
from ..backend import xp
from . import _blas
from ._util import shape_of, unbroadcast


class MatMul(Function):
    fresh_grads = True  # new products (a leaf copies a view that unbroadcast returns: base set)

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul needs tensors with at least one dimension; use * for scalars")
        self.a, self.b = a, b
        return xp.matmul(a, b)

    def backward(self, g):
        a, b = self.a, self.b
        a2 = a[None, :] if a.ndim == 1 else a  # a vector is a 1 x n matrix ...
        b2 = b[:, None] if b.ndim == 1 else b  # ... or an n x 1 matrix
        if a.ndim == 1:
            g = xp.expand_dims(g, -2 if g.ndim else 0)
        if b.ndim == 1:
            g = xp.expand_dims(g, -1)
        na, nb = self.needs_input_grad
        ga = gb = None
        if na:
            ga = xp.matmul(g, xp.swapaxes(b2, -1, -2))
            ga = unbroadcast(ga[..., 0, :] if a.ndim == 1 else ga, a.shape)
        if nb:
            gb = xp.matmul(xp.swapaxes(a2, -1, -2), g)
            gb = unbroadcast(gb[..., :, 0] if b.ndim == 1 else gb, b.shape)
        return ga, gb


class Linear(Function):
    """y = x W^T + b over the last axis of x, one BLAS product each way (the neuron of the lecture:
    y = f(sum w x + b) for a whole layer and a whole batch at once)."""

    fresh_grads = True  # three new arrays: two products and a sum

    def forward(self, x, w, b=None):
        self.x, self.w, self.has_bias = x, w, b is not None
        if b is not None and (y := _blas.addmm(x, w, b)) is not None:
            return y  # the bias inside the product (see _blas): no second pass over y
        y = x @ w.T
        if b is not None:
            y += b
        return y

    def backward(self, g):
        x, w = self.x, self.w
        nx, nw, nb = (self.needs_input_grad + (False,))[:3]
        g2 = g.reshape(-1, g.shape[-1])
        gx = (g @ w) if nx else None
        gw = (g2.T @ x.reshape(-1, x.shape[-1])) if nw else None
        gb = g2.sum(axis=0) if nb and self.has_bias else None
        return gx, gw, gb


class Gram(Function):
    """G = x x^T over the last two axes: the style loss's channel correlations. As ``x @ x^T``
    the backward would be two products (one per operand) and a transposed sum; the gradient is
    (dG + dG^T) x, one product (a style transfer's 128 x 65536 features: 31 -> 16 ms)."""

    fresh_grads = True  # one new product

    def forward(self, x):
        self.x = x
        return xp.matmul(x, xp.swapaxes(x, -1, -2))

    def backward(self, g):
        return (xp.matmul(g + xp.swapaxes(g, -1, -2), self.x),)


def gram(x):
    """``x @ x^T`` over the last two axes of x (..., C, P) -> (..., C, C), differentiable with
    one product in its backward (``Gram``)."""
    from ..autograd import Tensor
    x = x if isinstance(x, Tensor) else Tensor(x)
    if x.ndim < 2:
        raise ValueError(f"gram: expected a matrix or a batch of them (..., C, P), got shape "
                         f"{tuple(x.shape)}")
    return Gram.apply(x)


def matmul(a, b):
    from ..autograd import Tensor
    a = a if isinstance(a, Tensor) else Tensor(a)
    b = b if isinstance(b, Tensor) else Tensor(b)
    if a.ndim and b.ndim:
        k_a = a.shape[-1]
        k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if k_a != k_b:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not fit "
                             f"({k_a} != {k_b} in the contracted dimension)")
    return MatMul.apply(a, b)


def linear(input, weight, bias=None):  # noqa: A002 - PyTorch's signature
    """``F.linear``: input (..., in_features) times weight (out_features, in_features)^T plus bias."""
    ws, xs = shape_of(weight), shape_of(input)
    if len(ws) != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got {ws}")
    if not xs or xs[-1] != ws[1]:
        raise ValueError(f"linear: input of shape {xs} does not fit weight of shape "
                         f"{ws}: expected the last dimension to be {ws[1]}")
    if bias is not None and shape_of(bias) != (ws[0],):
        raise ValueError(f"linear: bias has shape {shape_of(bias)}, expected ({ws[0]},)")
    if bias is None:
        return Linear.apply(input, weight)
    return Linear.apply(input, weight, bias)
