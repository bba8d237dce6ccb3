"""Layer normalisation: each sample standardised over its trailing ``normalized_shape`` axes.

One fused Function. It works on the input viewed as (M, N), N the product of the normalised
sizes, one row per sample. Forward keeps each row's mean and 1 / std (rstd); backward gives the
input, weight and bias gradients in closed form. Both directions run per block of rows on the
engine's threads, through the compiled loops of ``_layer_norm_kernels`` where numba is installed
(two reads of x and one write forward, where NumPy takes about six passes), else NumPy passes."""
from __future__ import annotations

import math

from ..autograd import Function, Tensor
from ..backend import xp
from ..backend.cpu import kernels, threads

KERNELS = "foveanet.ops._layer_norm_kernels"


def _kernels():
    """The compiled layer-norm loops (``_layer_norm_kernels``), or None without numba."""
    return kernels.load(KERNELS)


def _col(v):
    return v[:, None]  # (M,) -> (M, 1), broadcasting against (M, N)


def _none_as_empty(v, dtype):
    return xp.empty(0, dtype=dtype) if v is None else v.reshape(-1)


class LayerNorm(Function):
    """y = (x - mean) * rstd * weight + bias, mean and the biased variance taken per row of the
    (M, N) view, rstd = 1 / sqrt(var + eps). Backward, with xhat = (x - mean) * rstd and
    gw = g * weight (g where there is no weight),
        dbias = sum over rows of g,  dweight = sum over rows of g xhat,
        dx = rstd * (gw - mean(gw) - xhat * mean(gw xhat)), the means along each row."""

    fresh_grads = True

    def forward(self, x, weight, bias, ndim, eps):
        m, n = math.prod(x.shape[:x.ndim - ndim]), math.prod(x.shape[x.ndim - ndim:])
        x2 = xp.ascontiguousarray(x).reshape(m, n)
        dt = x.dtype
        out = xp.empty_like(x2)
        mean = xp.empty(m, dtype=dt)
        rstd = xp.empty(m, dtype=dt)
        k = _kernels() if x2.size else None
        if k is not None:
            w, b = _none_as_empty(weight, dt), _none_as_empty(bias, dt)
            threads.split(lambda lo, hi: k.forward(x2, w, b, eps, mean, rstd, out, lo, hi), m,
                          x2.nbytes)
        elif x2.size:
            w = None if weight is None else weight.reshape(-1)
            b = None if bias is None else bias.reshape(-1)
            threads.split(lambda lo, hi: _forward_rows(x2, w, b, eps, mean, rstd, out, lo, hi), m,
                          x2.nbytes)
        self.x2, self.mean, self.rstd, self.weight = x2, mean, rstd, weight
        self.shape, self.bias_shape = x.shape, None if bias is None else bias.shape
        self.compiled = k is not None
        return out.reshape(x.shape)

    def backward(self, g):
        need_x, need_w, need_b = self.needs_input_grad[:3]
        x2, mean, rstd, weight = self.x2, self.mean, self.rstd, self.weight
        g2 = xp.ascontiguousarray(g).reshape(x2.shape)
        m, n = x2.shape
        need_w = need_w and weight is not None
        need_b = need_b and self.bias_shape is not None
        dx = xp.empty_like(x2) if need_x else xp.empty((0, n), dtype=x2.dtype)
        parts = {}  # the (dweight, dbias) contributions of each block of rows, in float64

        def block(lo, hi):
            dw = xp.zeros(n if need_w else 0, dtype=xp.float64)
            db = xp.zeros(n if need_b else 0, dtype=xp.float64)
            if self.compiled:
                w = _none_as_empty(weight, x2.dtype)
                _kernels().backward(g2, x2, mean, rstd, w, dx, dw, db, lo, hi)
            else:
                _backward_rows(g2, x2, mean, rstd, weight, dx, dw, db, lo, hi)
            parts[lo] = dw, db

        if x2.size:
            threads.split(block, m, x2.nbytes)
        blocks = [parts[lo] for lo in sorted(parts)]  # in row order, whichever thread ends first
        dw = db = None
        if need_w:
            dw = sum((p[0] for p in blocks), xp.zeros(n)).astype(weight.dtype).reshape(weight.shape)
        if need_b:
            db = sum((p[1] for p in blocks), xp.zeros(n)).astype(x2.dtype).reshape(self.bias_shape)
        if need_x:
            dx = dx.reshape(self.shape)
        return dx, dw, db, None, None


def _forward_rows(x2, w, b, eps, mean, rstd, out, lo, hi):
    """mean, rstd and the output of the rows [lo, hi), in NumPy passes (two-pass variance: no
    cancellation)."""
    n = x2.shape[1]
    xs, ys = x2[lo:hi], out[lo:hi]
    mean[lo:hi] = xs.sum(axis=1) / n
    xp.subtract(xs, _col(mean[lo:hi]), out=ys)
    var = xp.einsum("mn,mn->m", ys, ys) / n
    rstd[lo:hi] = 1.0 / xp.sqrt(var + eps)
    ys *= _col(rstd[lo:hi])
    if w is not None:
        ys *= w
    if b is not None:
        ys += b


def _backward_rows(g2, x2, mean, rstd, weight, dx, dw, db, lo, hi):
    """dx of the rows [lo, hi) (``dx`` of 0 rows: not wanted) and their contributions to dweight
    and dbias (float64 arrays of length N, or of length 0 where not wanted), in NumPy passes."""
    n = x2.shape[1]
    gs, inv = g2[lo:hi], _col(rstd[lo:hi])
    xhat = x2[lo:hi] - _col(mean[lo:hi])
    xhat *= inv
    if dw.size:
        dw += xp.einsum("mn,mn->n", gs, xhat)
    if db.size:
        db += gs.sum(axis=0)
    if not dx.shape[0]:
        return
    gw = gs if weight is None else gs * weight.reshape(-1)
    c1 = xp.einsum("mn,mn->m", gw, xhat) / n            # mean(gw xhat) per row
    c2 = gw.sum(axis=1) / n                              # mean(gw) per row
    out = dx[lo:hi]
    xp.multiply(xhat, _col(-c1), out=out)
    out += gw
    out -= _col(c2)
    out *= inv


def warm() -> str:
    """Compile (or load from the cache) the layer-norm loops for float32 and float64."""
    if _kernels() is None:
        return "layer norm: numba is not installed, NumPy passes instead"
    for dt in (xp.float32, xp.float64):
        x = Tensor(xp.arange(8, dtype=dt).reshape(2, 4), requires_grad=True)
        w = Tensor(xp.ones(4, dtype=dt), requires_grad=True)
        layer_norm(x, (4,), w, Tensor(xp.zeros(4, dtype=dt), requires_grad=True)).sum().backward()
        layer_norm(x, 4).sum().backward()
    return "layer norm: numba kernels compiled"


kernels.declare(KERNELS, "layer norm", warm)


def normalized_shape_tuple(normalized_shape, owner="layer_norm"):
    """``normalized_shape`` (an int or a sequence of ints) as a tuple of non-negative ints."""
    shape = normalized_shape
    if isinstance(shape, (int, xp.integer)):
        shape = (shape,)
    try:
        if isinstance(shape, (str, bytes)) or any(isinstance(s, bool) for s in shape):
            raise TypeError
        out = tuple(int(s) for s in shape)
        if any(int(s) != s for s in shape):
            raise TypeError
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: normalized_shape must be an int or a tuple of ints, got "
                        f"{normalized_shape!r}") from None
    if min(out, default=0) < 0:
        raise ValueError(f"{owner}: normalized_shape must not have negative sizes, got "
                         f"{normalized_shape!r}")
    return out


def _param(v, shape, name, dtype):
    if v is None:
        return None
    arr = v.data if isinstance(v, Tensor) else xp.asarray(v)
    if tuple(arr.shape) != shape:
        raise ValueError(f"layer_norm: {name} must have shape {shape} (normalized_shape), got "
                         f"{tuple(arr.shape)}")
    return v if isinstance(v, Tensor) else Tensor(arr.astype(dtype, copy=False))


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):  # noqa: A002
    """Layer normalisation over the trailing axes ``normalized_shape`` (an int or a tuple), as
    PyTorch's ``F.layer_norm``: each sample's values there are standardised with their mean and
    biased variance, then scaled by ``weight`` and shifted by ``bias`` (both of shape
    ``normalized_shape``, or None)."""
    x = input if isinstance(input, Tensor) else Tensor(input)
    shape = normalized_shape_tuple(normalized_shape)
    if not shape:
        raise ValueError("layer_norm: normalized_shape must name at least one axis, got ()")
    if x.ndim < len(shape) or tuple(x.shape[x.ndim - len(shape):]) != shape:
        want = "(*, " + ", ".join(str(s) for s in shape) + ")"
        raise ValueError(f"layer_norm: normalized_shape {shape} expects input of shape {want}, got "
                         f"{tuple(x.shape)}")
    if not xp.issubdtype(x.dtype, xp.floating):
        raise TypeError(f"layer_norm: input must be floating point, got {x.dtype}; convert it with "
                        "x.float()")
    w = _param(weight, shape, "weight", x.dtype)
    b = _param(bias, shape, "bias", x.dtype)
    return LayerNorm.apply(x, w, b, len(shape), float(eps))
