"""Loss primitives: mse_loss, sum_squared_error, cross_entropy, nll_loss, binary_cross_entropy(_with
_logits), and one_hot. Each loss is one fused Function (forward and analytic backward together),
except dice_loss, a composition of differentiable primitives (softmax or sigmoid, products, sums).

Conventions, as PyTorch's: ``input`` is (N, C) or (N, C, d1, ...) with classes on axis 1 (or an
unbatched (C,)); ``reduction`` is 'mean', 'sum' or 'none'; class weights and ``pos_weight`` carry no
gradient (PyTorch refuses one too); a float target may require grad where PyTorch allows it (mse,
binary cross entropy, class-probability cross entropy)."""
from __future__ import annotations

import warnings

from ..autograd import Function, Tensor
from ..backend import xp
from ..backend.cpu import kernels, threads
from ._util import unbroadcast
from .activation import sigmoid, softmax
from .reduction import sum as _sum

_REDUCTIONS = ("none", "mean", "sum")


class ClassIndexError(IndexError, ValueError):
    """A class index outside 0 .. C-1 (PyTorch raises IndexError; a ValueError too, since the value
    is wrong rather than the container)."""


# ----------------------------------------------------------------------------------- helpers
def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _array(x):
    return x.data if isinstance(x, Tensor) else xp.asarray(x)


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction!r} is not a valid value for reduction: use one of "
                         f"'none', 'mean' or 'sum'")
    return reduction


def _check_float_input(x, fn):
    if not xp.issubdtype(x.dtype, xp.floating):
        raise TypeError(f"{fn}: input must be floating point, got {x.dtype}; call .float() first")


def _reduce(loss, reduction, denom=None):
    """Reduce a per-element loss; ``denom`` overrides the mean's divisor (weighted means)."""
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return xp.asarray(total, dtype=loss.dtype)
    with xp.errstate(divide="ignore", invalid="ignore"):  # 0/0 = nan, as PyTorch, when all ignored
        return xp.asarray(total / (loss.size if denom is None else denom), dtype=loss.dtype)


def _upstream(g, reduction, denom):
    """d output / d per-element loss, before broadcasting: g itself, or g / divisor for 'mean'."""
    if reduction == "mean":
        with xp.errstate(divide="ignore", invalid="ignore"):
            return g / denom
    return g


def _masked_upstream(g, reduction, denom, valid):
    """The upstream gradient per target position, exactly 0 at ignored positions (so that a mean
    over no valid target, nan as in PyTorch, still gives them a zero gradient, as PyTorch does)."""
    with xp.errstate(divide="ignore", invalid="ignore"):
        return xp.where(valid, _upstream(g, reduction, denom), 0).astype(g.dtype, copy=False)


def _float_target(target, x, fn, hint=""):
    """A probability-like target: floating point, exactly the input's shape."""
    t = _tensor(target)
    if not xp.issubdtype(t.dtype, xp.floating):
        raise TypeError(f"{fn}: a target of the input's shape holds probabilities, which must be "
                        f"floating point, got {t.dtype}; call target.float(){hint}")
    if t.shape != x.shape:
        raise ValueError(f"{fn}: target shape {tuple(t.shape)} must equal input shape "
                         f"{tuple(x.shape)}")
    return t


def _as_dtype(t, dtype):
    """A target cast to the input's dtype (differentiably when it requires grad)."""
    if t.dtype == dtype:
        return t
    from .elementwise import cast
    return cast(t, dtype)


def _class_weight(weight, c, dtype, fn):
    if weight is None:
        return None
    w = _array(weight)
    if w.shape != (c,):
        raise ValueError(f"{fn}: weight must have shape ({c},), one value per class, got "
                         f"{tuple(w.shape)}")
    return w.astype(dtype, copy=False)


def _index_shape(x):
    """The shape class indices must have: () for an unbatched (C,) input, else the input's shape
    without the class axis 1."""
    return () if x.ndim == 1 else x.shape[:1] + x.shape[2:]


def _check_indices(t, c, ignore_index, fn):
    """Class indices must lie in 0 .. c-1 unless equal to ``ignore_index``."""
    if t.size == 0 or (t.min() >= 0 and t.max() < c):  # the usual case in two reductions
        return
    bad = ((t < 0) | (t >= c)) & (t != ignore_index)
    if bad.any():
        v = int(t[bad].flat[0])
        raise ClassIndexError(f"{fn}: target class index {v} is out of range for {c} classes "
                              f"(valid: 0 to {c - 1}, or ignore_index={ignore_index})")


def _index_target(target, x, fn, probabilities_ok):
    """Check an integer class-index target of shape (N, d1, ...) against input (N, C, d1, ...)
    (shape () against an unbatched (C,) input)."""
    t = _array(target)
    idx_shape = _index_shape(x)
    if t.shape == idx_shape:
        if not xp.issubdtype(t.dtype, xp.integer):
            raise TypeError(f"{fn}: a target of shape {tuple(t.shape)} holds class indices, which "
                            f"must be integers, got {t.dtype}; call target.long()"
                            + (f", or give class probabilities of the input's shape {tuple(x.shape)}"
                               if probabilities_ok else ""))
        return t
    if probabilities_ok:
        expect = f"class indices of shape {tuple(idx_shape)} or class probabilities of shape {tuple(x.shape)}"
    else:
        expect = f"class indices of shape {tuple(idx_shape)}"
    raise ValueError(f"{fn}: target shape {tuple(t.shape)} does not fit input shape {tuple(x.shape)}: "
                     f"expected {expect}")


def _weights_of_targets(w, ts, valid, dtype):
    """Per-target weight w[target], 0 where ignored (1 where valid when there are no weights)."""
    return valid.astype(dtype) if w is None else w[ts] * valid


def _class_axis_view(v, ndim):
    """A (C,) array shaped (1, C, 1, ...) to broadcast along axis 1 of an ndim-d array."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


# --------------------------------------------------------------------------- squared errors
class SquaredError(Function):
    """mean / sum / none of (a - t)^2, or ``kind='sse'``: 1/2 sum (a - t)^2, whose gradient is
    a - t. Operands broadcast; their gradients are summed back to their shapes."""

    def forward(self, a, t, kind):
        self.kind, self.sa, self.st = kind, a.shape, t.shape
        diff = a - t
        self.diff = diff
        if kind == "none":
            return diff * diff
        total = xp.vdot(diff.ravel(), diff.ravel()) if diff.size else diff.dtype.type(0)
        if kind == "mean":
            with xp.errstate(divide="ignore", invalid="ignore"):
                total = total / diff.size
        elif kind == "sse":
            total = total * 0.5
        return xp.asarray(total, dtype=diff.dtype)

    def backward(self, g):
        factor = {"none": 2.0, "sum": 2.0, "mean": 2.0 / max(self.diff.size, 1), "sse": 1.0}[self.kind]
        base = self.diff * (g * factor)
        na, nt = self.needs_input_grad[:2]
        return (unbroadcast(base, self.sa) if na else None,
                unbroadcast(-base, self.st) if nt else None, None)


def _squared_operands(input, target, fn):
    x = _tensor(input)
    _check_float_input(x, fn)
    t = _as_dtype(_tensor(target), x.dtype)  # integer (e.g. one-hot) targets become the input's dtype
    if t.shape != x.shape:
        try:
            shape = xp.broadcast_shapes(x.shape, t.shape)
        except ValueError:
            raise ValueError(f"{fn}: target shape {tuple(t.shape)} does not broadcast with input "
                             f"shape {tuple(x.shape)}") from None
        warnings.warn(f"{fn}: using a target size {tuple(t.shape)} that is different to the input "
                      f"size {tuple(x.shape)}; broadcasting gives {tuple(shape)}. This will likely "
                      f"lead to incorrect results. Please ensure they have the same size.",
                      UserWarning, stacklevel=3)
    return x, t


def mse_loss(input, target, reduction="mean"):  # noqa: A002
    """Mean squared error: reduce((input - target)^2). A target of another dtype (an integer
    one-hot, say) is cast to the input's; a different but broadcastable shape warns, as PyTorch."""
    _check_reduction(reduction)
    x, t = _squared_operands(input, target, "mse_loss")
    return SquaredError.apply(x, t, reduction)


def sum_squared_error(input, target):  # noqa: A002
    """The lecture's error E = 1/2 * sum (y - d)^2 over all elements, y the output and d the
    desired output. The factor 1/2 makes the derivative plain: dE/dy = y - d. (Equal to
    ``0.5 * mse_loss(y, d, reduction='sum')``.) Integer targets (one-hot) are cast to y's dtype."""
    x, t = _squared_operands(input, target, "sum_squared_error")
    return SquaredError.apply(x, t, "sse")


# ----------------------------------------------------------------------------- cross entropy
KERNELS = "foveanet.ops._loss_kernels"


def warm() -> str:
    """Compile (or load from the cache) the per-position cross-entropy kernels."""
    k = kernels.load(KERNELS)
    if k is None:
        return "cross-entropy over positions: numba is not installed, NumPy's passes instead"
    x = xp.zeros((1, 2, 3), dtype=xp.float32)
    t = xp.zeros((1, 3), dtype=xp.int64)
    p, wt, parts = xp.empty_like(x), xp.empty((1, 3), dtype=xp.float32), xp.zeros((1, 2))
    k.ce_forward(x, t, xp.zeros(0, dtype=xp.float32), -100, p, wt, parts, 0, 1)
    k.ce_backward(p, t, wt, xp.float32(1), xp.empty_like(p), 0, 1)
    k.exp_f32(x.reshape(-1), p.reshape(-1), 0, 6)
    return "cross-entropy over positions: numba kernels compiled"


kernels.declare(KERNELS, "cross-entropy over positions", warm)


class CrossEntropyIndex(Function):
    """Fused log-softmax + NLL with class-index targets, class weights, ignore_index and label
    smoothing eps. Per target position n (class y, weight w_y, valid unless ignored):
        loss_n = -(1 - eps) w_y logp_y - eps / C sum_c w_c logp_c
    'mean' divides the sum by the total weight of the valid targets. With q the per-class
    coefficients above, d loss_n / d logits = p sum_c q_c - q (p the softmax)."""

    def forward(self, x, t, w, ignore_index, reduction, eps):
        self.plain = w is None and not eps and x.ndim == 2 and reduction != "none" and \
            x.shape[0] > 0 and not (t == ignore_index).any()
        self.spatial = False
        if self.plain:
            return self._plain_forward(x, t, reduction)
        spatial = not eps and x.ndim >= 3 and x.dtype == xp.float32 and x.size > 0 and \
            reduction != "none" and (w is None or w.dtype == xp.float32)
        k = kernels.load(KERNELS) if spatial else None
        self.spatial = k is not None
        if self.spatial:
            return self._spatial_forward(k, x, t, w, ignore_index, reduction)
        c, dt = x.shape[1], x.dtype
        valid = t != ignore_index
        ts = xp.where(valid, t, 0).astype(xp.intp, copy=False)
        ts_e = ts[:, None]
        sh = x - x.max(axis=1, keepdims=True)           # the one class-sized array
        picked = xp.take_along_axis(sh, ts_e, axis=1)[:, 0]
        if eps:
            wsum = float(c) if w is None else w.sum()
            smooth = sh.sum(axis=1) if w is None else xp.einsum("nc...,c->n...", sh, w)
        xp.exp(sh, out=sh)
        s = sh.sum(axis=1, keepdims=True)
        sh /= s                                          # softmax, kept for backward
        lse = xp.log(s[:, 0])
        wt = _weights_of_targets(w, ts, valid, dt)
        loss = wt * (lse - picked)
        if eps:
            loss *= 1.0 - eps
            loss += (eps / c) * valid * (lse * wsum - smooth)
            self.wsum = wsum
        denom = wt.sum() if reduction == "mean" else None
        self.p, self.ts_e, self.wt, self.valid, self.w = sh, ts_e, wt, valid, w
        self.reduction, self.denom, self.eps = reduction, denom, eps
        return _reduce(loss.astype(dt, copy=False), reduction, denom)

    def _plain_forward(self, x, t, reduction):
        """The usual case (N, C) logits, no class weights or smoothing, every target counted,
        'mean' or 'sum', in a third of the general path's NumPy calls, the same bits (each
        target weighs exactly 1 there). Figures: benchmarks/RESULTS.md, "Cross-entropy's short
        path"."""
        n = x.shape[0]
        rows, t = xp.arange(n), t.astype(xp.intp, copy=False)
        p = x - x.max(axis=1, keepdims=True)
        picked = p[rows, t]
        xp.exp(p, out=p)
        s = p.sum(axis=1)
        p /= s[:, None]                                  # softmax, kept for backward
        total = (xp.log(s) - picked).astype(x.dtype, copy=False).sum()
        self.p, self.rows, self.t, self.reduction = p, rows, t, reduction
        return xp.asarray(total / x.dtype.type(n) if reduction == "mean" else total, dtype=x.dtype)

    def _spatial_forward(self, k, x, t, w, ignore_index, reduction):
        """float32 logits (N, C, d1, ...) without label smoothing, 'mean' or 'sum': one compiled
        pass per sample (``_loss_kernels``, with an exponential that vectorises), the samples
        split over the engine's threads. Figures: benchmarks/RESULTS.md, "Cross-entropy over
        positions, compiled"."""
        n, c = x.shape[:2]
        x3 = xp.ascontiguousarray(x).reshape(n, c, -1)
        t2 = xp.ascontiguousarray(t, dtype=xp.int64).reshape(n, -1)  # one compiled signature
        p = xp.empty_like(x3)
        wt = xp.empty(t2.shape, dtype=xp.float32)
        parts = xp.zeros((n, 2))
        wk = xp.zeros(0, dtype=xp.float32) if w is None else xp.ascontiguousarray(w)
        threads.split(lambda lo, hi: k.ce_forward(x3, t2, wk, ignore_index, p, wt, parts, lo, hi),
                      n, x3.nbytes)
        loss, total = parts.sum(axis=0)
        self.p, self.t2, self.wt, self.x_shape = p, t2, wt, x.shape
        self.reduction, self.denom = reduction, total
        if reduction == "sum":
            return xp.asarray(loss, dtype=x.dtype)
        with xp.errstate(divide="ignore", invalid="ignore"):  # 0/0 = nan, as PyTorch, all ignored
            return xp.asarray(loss / total, dtype=x.dtype)

    def _spatial_backward(self, g):
        k = kernels.load(KERNELS)
        g = float(g)
        scale = g if self.reduction == "sum" else (g / self.denom if self.denom else 0.0)
        grad = xp.empty_like(self.p)
        threads.split(lambda lo, hi: k.ce_backward(self.p, self.t2, self.wt, xp.float32(scale), grad,
                                                   lo, hi), grad.shape[0], grad.nbytes)
        return grad.reshape(self.x_shape), None, None

    def backward(self, g):
        if self.spatial:
            return self._spatial_backward(g)
        if self.plain:  # d loss / d logits = (p - onehot) * g (/ N for 'mean')
            p = self.p
            gn = g / p.dtype.type(p.shape[0]) if self.reduction == "mean" else g
            grad = p * gn
            grad[self.rows, self.t] -= gn
            return grad.astype(p.dtype, copy=False), None, None
        p, wt, eps = self.p, self.wt, self.eps
        gn = _masked_upstream(g, self.reduction, self.denom, self.valid)
        coef = gn * wt                                   # gradient weight of the target class
        if eps:
            coef = coef * (1.0 - eps)
            smooth = gn * (eps / p.shape[1])
            q = coef + smooth * self.wsum
        else:
            q = coef
        grad = p * q[:, None]
        cur = xp.take_along_axis(grad, self.ts_e, axis=1)
        xp.put_along_axis(grad, self.ts_e, cur - coef[:, None], axis=1)
        if eps:
            if self.w is None:
                grad -= smooth[:, None]
            else:
                grad -= smooth[:, None] * _class_axis_view(self.w, p.ndim)
        return grad.astype(p.dtype, copy=False), None, None


class CrossEntropyProb(Function):
    """Fused log-softmax + soft-target cross entropy: loss_n = -sum_c w_c t_c logp_c with
    t smoothed to t (1 - eps) + eps / C; 'mean' divides by the number of positions (N d1 ...)."""

    def forward(self, x, t, w, reduction, eps):
        c, dt = x.shape[1], x.dtype
        tt = t * (1.0 - eps) + eps / c if eps else t
        wb = None if w is None else _class_axis_view(w, x.ndim)
        wtt = tt if wb is None else tt * wb
        logp = x - x.max(axis=1, keepdims=True)
        e = xp.exp(logp)
        s = e.sum(axis=1, keepdims=True)
        e /= s
        logp -= xp.log(s)
        loss = -(wtt * logp).sum(axis=1)
        self.p, self.wtt, self.wb, self.eps, self.reduction = e, wtt, wb, eps, reduction
        self.logp = logp if self.needs_input_grad[1] else None
        self.n = loss.size
        return _reduce(loss.astype(dt, copy=False), reduction, self.n)

    def backward(self, g):
        gn = _upstream(g, self.reduction, self.n)
        gn = xp.broadcast_to(gn, self.p.shape[:1] + self.p.shape[2:])[:, None]
        nx, nt = self.needs_input_grad[:2]
        dx = dtg = None
        if nx:
            dx = self.p * self.wtt.sum(axis=1, keepdims=True)
            dx -= self.wtt
            dx *= gn
        if nt:
            dtg = self.logp * (gn * -(1.0 - self.eps))
            if self.wb is not None:
                dtg = dtg * self.wb
        return dx, dtg, None


def _batched(x, t, probabilities):
    """An unbatched (C,) input becomes (1, C); the target gets the matching leading axis."""
    x = x.reshape(1, x.shape[0])
    if probabilities:
        return x, t.reshape(1, t.shape[0])
    return x, t.reshape((1,))


def _class_scores(input, weight, fn):  # noqa: A002
    """Checked class scores (C,), (N, C) or (N, C, d1, ...): (tensor, unbatched, C, class weights)."""
    x = _tensor(input)
    _check_float_input(x, fn)
    if x.ndim == 0:
        raise ValueError(f"{fn}: input must be (C,), (N, C) or (N, C, d1, ...), got a 0-d tensor")
    unbatched = x.ndim == 1
    c = x.shape[0] if unbatched else x.shape[1]
    return x, unbatched, c, _class_weight(weight, c, x.dtype, fn)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",  # noqa: A002
                  label_smoothing=0.0):
    """Cross entropy between logits ``input`` and ``target``, as PyTorch's ``F.cross_entropy``:
    a stable fused log-softmax + negative log likelihood.

    ``target``: class indices (integers, shape (N,) or (N, d1, ...)) or class probabilities /
    one-hot rows (floating point, the input's shape). ``weight``: (C,) per-class weights.
    ``ignore_index``: targets with this value contribute nothing (class indices only).
    ``label_smoothing`` in [0, 1]: the target mixes with the uniform distribution.
    'mean' divides by the summed weight of the non-ignored targets (class indices) or by the
    number of positions (probabilities)."""
    fn = "cross_entropy"
    _check_reduction(reduction)
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    x, unbatched, c, w = _class_scores(input, weight, fn)
    if tuple(_array(target).shape) == x.shape:  # class probabilities
        if ignore_index != -100:
            raise ValueError(f"{fn}: ignore_index ({ignore_index}) applies to class-index targets "
                             f"only, not to class probabilities (as PyTorch)")
        t = _as_dtype(_float_target(target, x, fn, hint=f", or give class indices of shape "
                                                       f"{tuple(_index_shape(x))}"), x.dtype)
        if unbatched:
            x, t = _batched(x, t, True)
        out = CrossEntropyProb.apply(x, t, w, reduction, eps)
    else:
        t = _index_target(target, x, fn, True)
        _check_indices(t, c, ignore_index, fn)
        if unbatched:
            x, t = _batched(x, t, False)
        out = CrossEntropyIndex.apply(x, t, w, int(ignore_index), reduction, eps)
    return out.reshape(()) if unbatched and reduction == "none" else out


class NLL(Function):
    """Negative log likelihood of log-probabilities: loss_n = -w_y x[n, y]; 'mean' divides by the
    summed weight of the non-ignored targets. The gradient is -g w_y at the target, 0 elsewhere."""

    def forward(self, x, t, w, ignore_index, reduction):
        valid = t != ignore_index
        ts = xp.where(valid, t, 0).astype(xp.intp, copy=False)
        self.ts_e = ts[:, None]
        picked = xp.take_along_axis(x, self.ts_e, axis=1)[:, 0]
        self.wt, self.valid = _weights_of_targets(w, ts, valid, x.dtype), valid
        self.shape, self.reduction = x.shape, reduction
        self.denom = self.wt.sum() if reduction == "mean" else None
        return _reduce((-self.wt * picked).astype(x.dtype, copy=False), reduction, self.denom)

    def backward(self, g):
        gn = _masked_upstream(g, self.reduction, self.denom, self.valid)
        grad = xp.zeros(self.shape, dtype=g.dtype)
        xp.put_along_axis(grad, self.ts_e, (-gn * self.wt)[:, None], axis=1)
        return grad, None, None


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):  # noqa: A002
    """Negative log likelihood of log-probabilities ``input`` ((C,), (N, C) or (N, C, d1, ...))
    at the class indices ``target``, as PyTorch's ``F.nll_loss``."""
    fn = "nll_loss"
    _check_reduction(reduction)
    x, unbatched, c, w = _class_scores(input, weight, fn)
    t = _index_target(target, x, fn, False)
    _check_indices(t, c, ignore_index, fn)
    if unbatched:
        x, t = _batched(x, t, False)
    out = NLL.apply(x, t, w, int(ignore_index), reduction)
    return out.reshape(()) if unbatched and reduction == "none" else out


# ---------------------------------------------------------------------- binary cross entropy
def _broadcast_weight(v, shape, fn, name, dtype):
    if v is None:
        return None
    a = _array(v).astype(dtype, copy=False)
    try:
        if xp.broadcast_shapes(a.shape, shape) != tuple(shape):
            raise ValueError
    except ValueError:
        raise ValueError(f"{fn}: {name} of shape {tuple(a.shape)} does not broadcast to the input "
                         f"shape {tuple(shape)}") from None
    return a


class BinaryCrossEntropy(Function):
    """loss = -w (t log x + (1 - t) log(1 - x)), each log clamped at -100 as PyTorch. Backward, as
    PyTorch: dx = w (x - t) / max(x (1 - x), 1e-12), dt = -w (log x - log(1 - x))."""

    def forward(self, x, t, w, reduction):
        with xp.errstate(divide="ignore"):
            logx = xp.maximum(xp.log(x), -100.0)
            log1mx = xp.maximum(xp.log1p(-x), -100.0)
        loss = logx - log1mx
        self.x, self.t, self.w, self.reduction = x, t, w, reduction
        self.dlog = loss if self.needs_input_grad[1] else None
        loss = loss * t
        loss += log1mx
        loss = -loss if w is None else loss * -w
        return _reduce(loss, reduction)

    def backward(self, g):
        x, t, w = self.x, self.t, self.w
        gn = _upstream(g, self.reduction, x.size)
        if w is not None:
            gn = gn * w
        nx, nt = self.needs_input_grad[:2]
        dx = dtg = None
        if nx:
            dx = (x - t) / xp.maximum(x * (1 - x), 1e-12)
            dx *= gn
        if nt:
            dtg = self.dlog * -gn
        return dx, dtg, None


def binary_cross_entropy(input, target, weight=None, reduction="mean"):  # noqa: A002
    """Binary cross entropy between probabilities ``input`` (in [0, 1]) and ``target`` (same shape,
    floating point), as PyTorch's: the logs are clamped at -100 so 0 and 1 give finite values.
    ``weight`` broadcasts to the input. For logits use :func:`binary_cross_entropy_with_logits`."""
    fn = "binary_cross_entropy"
    _check_reduction(reduction)
    x = _tensor(input)
    _check_float_input(x, fn)
    t = _as_dtype(_float_target(target, x, fn), x.dtype)
    if x.data.size and ((x.data < 0).any() or (x.data > 1).any()):
        raise ValueError(f"{fn}: all elements of input should be between 0 and 1 (probabilities); "
                         f"for logits use binary_cross_entropy_with_logits")
    w = _broadcast_weight(weight, x.shape, fn, "weight", x.dtype)
    return BinaryCrossEntropy.apply(x, t, w, reduction)


class BCEWithLogits(Function):
    """loss = w ((1 - t) x + (1 + (pw - 1) t) softplus(-x)), softplus(-x) = -log sigmoid(x)
    = log1p(exp(-|x|)) + max(-x, 0) (stable for any x). Backward:
    dx = w ((1 + (pw - 1) t) sigmoid(x) - pw t), dt = w (-x + (pw - 1) softplus(-x))."""

    def forward(self, x, t, w, pw, reduction):
        sp = xp.log1p(xp.exp(-xp.abs(x)))
        sp += xp.maximum(-x, 0)
        self.x, self.t, self.w, self.pw, self.reduction = x, t, w, pw, reduction
        self.sp = sp if (pw is not None and self.needs_input_grad[1]) else None
        loss = (1 - t) * x
        loss += sp if pw is None else (1 + (pw - 1) * t) * sp
        if w is not None:
            loss *= w
        return _reduce(loss, reduction)

    def backward(self, g):
        x, t, w, pw = self.x, self.t, self.w, self.pw
        gn = _upstream(g, self.reduction, x.size)
        if w is not None:
            gn = gn * w
        nx, nt = self.needs_input_grad[:2]
        dx = dtg = None
        if nx:
            with xp.errstate(over="ignore"):
                sig = 1 / (1 + xp.exp(-x))
            if pw is None:
                dx = sig - t
            else:
                dx = (1 + (pw - 1) * t) * sig
                dx -= pw * t
            dx *= gn
        if nt:
            dtg = -x * gn if pw is None else (self.sp * (pw - 1) - x) * gn
        return dx, dtg, None, None


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",  # noqa: A002
                                     pos_weight=None):
    """Sigmoid + binary cross entropy in one stable step, as PyTorch's: ``input`` logits, ``target``
    probabilities of the same shape. ``weight`` broadcasts to the input; ``pos_weight`` weighs the
    positive term of each class (broadcasting along the last axis, e.g. shape (C,))."""
    fn = "binary_cross_entropy_with_logits"
    _check_reduction(reduction)
    x = _tensor(input)
    _check_float_input(x, fn)
    t = _as_dtype(_float_target(target, x, fn), x.dtype)
    w = _broadcast_weight(weight, x.shape, fn, "weight", x.dtype)
    pw = _broadcast_weight(pos_weight, x.shape, fn, "pos_weight", x.dtype)
    return BCEWithLogits.apply(x, t, w, pw, reduction)


# ---------------------------------------------------------------------------------------- dice
def _dice_target(target, x, binary, ignore_index, fn):
    """Checked class indices (N, d1, ...) for scores (N, C, d1, ...): (indices with ignored pixels
    set to 0, the mask of the counted pixels). Binary targets (C = 1) may be bool; their values
    must be 0 or 1 (or ``ignore_index``)."""
    t = _array(target)
    if t.dtype == xp.bool_:
        t = t.astype(xp.int64)
    t = _index_target(t, x, fn, False)
    if binary:
        bad = (t != 0) & (t != 1) & (t != ignore_index)
        if bad.any():
            raise ClassIndexError(f"{fn}: a binary input (N, 1, ...) takes 0/1 targets, got the "
                                  f"value {int(t[bad].flat[0])} (ignore_index={ignore_index})")
    else:
        _check_indices(t, x.shape[1], ignore_index, fn)
    valid = t != ignore_index
    return xp.where(valid, t, 0), valid


def dice_loss(input, target, weight=None, ignore_index=-100, smooth=1.0,  # noqa: A002
              reduction="mean", from_logits=True):
    """Soft Dice loss for segmentation: ``input`` (N, C, H, W) scores (or (N, C, d1, ...)),
    ``target`` (N, H, W) class indices.

    The probabilities p are softmax(input) over the class axis (``from_logits=False``: ``input``
    already holds them, in [0, 1]); t is the one-hot target. For image n and class c, summing over
    that image's counted pixels (pixels labelled ``ignore_index`` count in neither p nor t):

        dice[n, c] = (2 sum p t + smooth) / (sum p + sum t + smooth)
        loss[n]    = 1 - mean_c dice[n, c]     (``weight`` (C,): sum_c w_c dice[n, c] / sum_c w_c)

    ``reduction``: 'mean' (over the N images, the default), 'sum', or 'none' (the (N,) losses).

    Sums run per image, not over the batch: an image's loss then depends on that image alone, as
    when it is scored alone, whatever else shares its batch and whatever the batch size (a
    batch-wide Dice lets the images with large objects decide, and a small object in one image
    hardly moves it). The epoch's batch-wide Dice, from the confusion matrix, is what
    ``foveanet.train.image_metrics.segmentation_scores`` reports. A class absent from an image
    scores ``smooth / (sum p + smooth)`` there, near 1 when little probability goes to it, so
    ``smooth`` > 0 (default 1) keeps absent classes from costing a full point each; with
    ``smooth=0`` an image whose pixels are all ignored gives nan (0 / 0).

    Binary segmentation: a (N, 1, H, W) ``input`` holds one logit per pixel (sigmoid, not
    softmax; ``from_logits=False``: the foreground probability) and ``target`` (N, H, W) 0/1
    (integer or bool); the loss is 1 - the foreground's Dice. Computed from differentiable
    primitives, so the gradient flows to ``input`` (class weights carry none)."""
    fn = "dice_loss"
    _check_reduction(reduction)
    x = _tensor(input)
    _check_float_input(x, fn)
    if x.ndim < 3:
        raise ValueError(f"{fn}: input must be (N, C, H, W) class scores (or (N, C, d1, ...)), got "
                         f"shape {tuple(x.shape)}; target (N, H, W) class indices")
    smooth = float(smooth)
    if not (smooth >= 0 and smooth < float("inf")):
        raise ValueError(f"{fn}: smooth must be a finite number >= 0, got {smooth}")
    c = x.shape[1]
    binary = c == 1
    w = _class_weight(weight, c, x.dtype, fn)
    if w is not None and ((w < 0).any() or not w.sum() > 0 or not xp.isfinite(w).all()):
        raise ValueError(f"{fn}: weight must be finite and non-negative with a positive sum, got "
                         f"{w.tolist()}")
    ignore_index = int(ignore_index)
    ts, valid = _dice_target(target, x, binary, ignore_index, fn)
    if not from_logits and x.data.size and ((x.data < 0).any() or (x.data > 1).any()):
        raise ValueError(f"{fn}: with from_logits=False the input holds probabilities, which must "
                         f"lie in [0, 1]")
    if from_logits:
        p = sigmoid(x) if binary else softmax(x, dim=1)
    else:
        p = x
    spatial = (slice(None), None) + (slice(None),) * (x.ndim - 2)  # (N, d1, ...) -> (N, 1, d1, ...)
    if binary:
        onehot = (ts == 1)[spatial]
    else:
        onehot = ts[spatial] == xp.arange(c).reshape((1, c) + (1,) * (x.ndim - 2))
    if not valid.all():
        onehot = onehot & valid[spatial]
        p = p * valid[spatial].astype(x.dtype)
    onehot = onehot.astype(x.dtype)
    axes = tuple(range(2, x.ndim))
    inter = _sum(p * onehot, dim=axes)                  # (N, C)
    total = _sum(p, dim=axes) + onehot.sum(axis=axes)   # sum p + sum t
    dice = (2.0 * inter + smooth) / (total + smooth)
    if w is None:
        per_image = 1.0 - dice.mean(1)
    else:
        per_image = 1.0 - (dice * w).sum(1) / w.sum()
    if reduction == "none":
        return per_image
    if reduction == "mean" and x.shape[0] == 0:
        return per_image.sum() * float("nan")  # the mean over no image: nan (as PyTorch's), no warning
    return per_image.sum() if reduction == "sum" else per_image.mean()


# ---------------------------------------------------------------------------------- one hot
def one_hot(tensor, num_classes=-1):
    """Class indices -> one-hot rows: shape tensor.shape + (num_classes,), int64 as PyTorch.
    ``num_classes=-1`` takes max + 1. A negative or too-large class is a ValueError naming it."""
    t = _array(tensor)
    if not xp.issubdtype(t.dtype, xp.integer):
        raise TypeError(f"one_hot is only applicable to integer class-index tensors, got {t.dtype}")
    num_classes = int(num_classes)
    if num_classes == -1:
        if t.size == 0:
            raise ValueError("one_hot: cannot infer the number of classes from an empty tensor; "
                             "pass num_classes")
        num_classes = int(t.max()) + 1
    elif num_classes < 0:
        raise ValueError(f"one_hot: num_classes must be -1 or non-negative, got {num_classes}")
    if t.size:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0:
            raise ValueError(f"one_hot: class values must be non-negative, got {lo}")
        if hi >= num_classes:
            raise ValueError(f"one_hot: class value {hi} is out of range for num_classes={num_classes} "
                             f"(valid: 0 to {num_classes - 1})")
    out = (t[..., None] == xp.arange(num_classes)).astype(xp.int64)
    return Tensor(out)
