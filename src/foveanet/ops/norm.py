"""Normalisation primitives: batch_norm (fused, analytic backward) and local_response_norm (AlexNet).

Both are single Functions. batch_norm works on the input viewed as (N, C, M), M the product of the
spatial sizes (1 for (N, C) input), and takes every per-channel reduction with a vectorised
product (einsum / batched matmul) rather than a temporary array, so a training step costs one
allocation and a few in-place passes forward, and the same backward."""
from __future__ import annotations

from typing import NamedTuple

from ..autograd import Function, Tensor
from ..backend import CPU, Device, xp
from ..backend.cpu import kernels, threads
from . import algorithms

KERNELS = "foveanet.ops._norm_kernels"


# ------------------------------------------------------------------------------ per-channel sums
def _csum(a3):
    """Per-channel sum of an (N, C, M) array -> (C,)."""
    return xp.einsum("ncm->c", a3)


def _cdot(a3, b3):
    """Per-channel sum of a * b for two (N, C, M) arrays -> (C,), without forming a * b."""
    if a3.shape[2] >= 16:  # one BLAS dot per (n, c) row: fast, and accumulated in blocks
        return (a3[:, :, None, :] @ b3[:, :, :, None]).sum(axis=(0, 2, 3))
    return xp.einsum("ncm,ncm->c", a3, b3)


def _col(v):
    return v[:, None]  # (C,) -> (C, 1), broadcasting against (N, C, M)


# ----------------------------------------------------------------------------------- batch norm
class BatchNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, per channel (axis 1).

    Training: mean and the biased variance of the batch; backward, with xhat the normalised input
    and m the number of values per channel,
        dbias = sum g,  dweight = sum g xhat,
        dx = weight / sqrt(var + eps) * (g - dbias / m - xhat * dweight / m).
    Eval: the running statistics are constants, so dx = g * weight / sqrt(running_var + eps)."""

    def forward(self, x, weight, bias, running_mean, running_var, training, momentum, eps):
        n, c = x.shape[0], x.shape[1]
        x3 = x.reshape(n, c, int(xp.prod(x.shape[2:], dtype=xp.int64)))
        count = x3.shape[0] * x3.shape[2]
        dt = x.dtype
        self.algorithm = algorithms.select("batch_norm", NormGeometry(dt, x3.size > 0))
        compiled = self.compiled = self.algorithm.name == "compiled"
        if training:
            mean, var, out = _train_forward(x3, weight, bias, eps, compiled)
            invstd = 1.0 / xp.sqrt(var + eps)
            if running_mean is not None:
                running_mean *= 1.0 - momentum
                running_mean += (momentum * mean).astype(running_mean.dtype, copy=False)
            if running_var is not None:
                unbiased = var * (count / (count - 1))
                running_var *= 1.0 - momentum
                running_var += (momentum * unbiased).astype(running_var.dtype, copy=False)
        else:
            mean = running_mean.astype(dt)  # a copy: a later training call updates the buffer
            invstd = (1.0 / xp.sqrt(running_var + eps)).astype(dt, copy=False)
            scale = invstd if weight is None else invstd * weight
            shift = -mean * scale if bias is None else bias - mean * scale
            out = xp.empty_like(x3)

            scale, shift = scale.astype(dt, copy=False), shift.astype(dt, copy=False)

            def part(lo, hi):  # out = x * scale + shift, both passes per slice, or one compiled
                # pass (resnet20's inference, per call: 2.5 -> 1.45 ms)
                if compiled:
                    _kernels().affine(x3, scale, shift, out, lo, hi)
                    return
                xp.multiply(x3[lo:hi], _col(scale), out=out[lo:hi])
                out[lo:hi] += _col(shift)

            threads.split(part, x3.shape[0], x3.nbytes)
        self.x3, self.mean, self.invstd, self.weight = x3, mean, invstd, weight
        self.training, self.count, self.shape = training, count, x.shape
        self.bias_dtype = None if bias is None else bias.dtype
        return out.reshape(x.shape)

    def backward(self, g):
        need_x, need_w, need_b = self.needs_input_grad[:3]
        x3, mean, invstd, weight = self.x3, self.mean, self.invstd, self.weight
        g3 = g.reshape(x3.shape)
        dx = dw = db = None
        if need_x and self.training:  # the whole backward per block of channels, on all threads
            dx, dw, db = _train_backward(g3, x3, mean, invstd, weight, self.count, self.compiled)
            dx = dx.reshape(self.shape)
            dw, db = (dw if need_w else None), (db if need_b else None)
            return (dx, *self._param_grads(dw, db), None, None)
        sum_g = _csum(g3) if need_b else None
        if need_b:
            db = sum_g
        if need_w:
            dw = _cdot(g3, x3 - _col(mean)) * invstd  # sum g * xhat
        if need_x:  # eval: the statistics are constants
            scale = invstd if weight is None else invstd * weight
            dx = threads.binary(xp.multiply, g3, _col(scale), xp.empty_like(g3))
            dx = dx.reshape(self.shape)
        return (dx, *self._param_grads(dw, db), None, None)

    def _param_grads(self, dw, db):
        if self.weight is not None and dw is not None:
            dw = dw.astype(self.weight.dtype, copy=False)
        if db is not None and self.bias_dtype is not None:
            db = db.astype(self.bias_dtype, copy=False)
        return dw, db


def _kernels():
    """The compiled batch-norm loops (``_norm_kernels``), or None without numba."""
    return kernels.load(KERNELS)


class NormGeometry(NamedTuple):
    """What the batch-norm algorithms decide on."""
    dtype: object
    nonempty: bool
    device: Device = CPU


# Statistics and output in compiled loops (three reads of x, one write; backward two reads of x
# and g, one write) where NumPy takes about ten passes (figures: benchmarks/RESULTS.md, "Batch
# norm").
algorithms.register("batch_norm", "compiled", lambda g: g.nonempty, priority=10, kernels=KERNELS,
                    doc="statistics, output and backward in compiled loops")
algorithms.register("batch_norm", "numpy", lambda g: True, priority=1000,
                    doc="NumPy passes per block of channels")


def _none_as_empty(v, dtype):
    return xp.empty(0, dtype=dtype) if v is None else v


def _train_forward(x3, weight, bias, eps, compiled):
    """Batch statistics and the normalised output, computed per block of channels on the
    engine's threads (each block's passes stay on one core while its data is in cache)."""
    c, count = x3.shape[1], x3.shape[0] * x3.shape[2]
    out = xp.empty_like(x3)
    mean = xp.empty(c, dtype=x3.dtype)
    var = xp.empty(c, dtype=x3.dtype)
    if compiled:
        w, b = _none_as_empty(weight, x3.dtype), _none_as_empty(bias, x3.dtype)
        threads.split(lambda lo, hi: _kernels().forward(x3, w, b, eps, mean, var, out, lo, hi),
                      c, x3.nbytes)
        return mean, var, out

    def block(lo, hi):
        xs, ys = x3[:, lo:hi], out[:, lo:hi]
        mean[lo:hi] = _csum(xs) / count
        xp.subtract(xs, _col(mean[lo:hi]), out=ys)
        var[lo:hi] = _cdot(ys, ys) / count               # biased, two-pass (no cancellation)
        scale = 1.0 / xp.sqrt(var[lo:hi] + eps)
        if weight is not None:
            scale *= weight[lo:hi]
        ys *= _col(scale)
        if bias is not None:
            ys += _col(bias[lo:hi])

    threads.split(block, c, x3.nbytes)
    return mean, var, out


def _train_backward(g3, x3, mean, invstd, weight, m, compiled):
    """dx, dweight, dbias of training-mode batch norm, per block of channels on the engine's
    threads; dx = weight * invstd * (g - dbias / m - xhat * dweight / m)."""
    c = x3.shape[1]
    dx = xp.empty_like(x3)
    dw = xp.empty(c, dtype=x3.dtype)
    db = xp.empty(c, dtype=x3.dtype)
    if compiled:
        w, g3 = _none_as_empty(weight, x3.dtype), xp.ascontiguousarray(g3)
        threads.split(lambda lo, hi: _kernels().backward(g3, x3, mean, invstd, w, dx, dw, db, lo,
                                                         hi), c, x3.nbytes)
        return dx, dw, db

    def block(lo, hi):
        gs, xc = g3[:, lo:hi], dx[:, lo:hi]
        inv = invstd[lo:hi]
        db[lo:hi] = _csum(gs)
        xp.subtract(x3[:, lo:hi], _col(mean[lo:hi]), out=xc)   # dx's buffer holds x - mean first
        dw[lo:hi] = _cdot(gs, xc) * inv                        # sum g * xhat
        xc *= _col(-inv * dw[lo:hi] / m)                       # - xhat * dweight / m
        xc += gs
        xc -= _col(db[lo:hi] / m)
        xc *= _col(inv if weight is None else inv * weight[lo:hi])

    threads.split(block, c, x3.nbytes)
    return dx, dw, db


def warm() -> str:
    """Compile (or load from the cache) the batch-norm loops for float32 and float64."""
    if _kernels() is None:
        return "batch norm: numba is not installed, NumPy passes instead"
    for dt in (xp.float32, xp.float64):
        x = Tensor(xp.arange(8, dtype=dt).reshape(2, 2, 2), requires_grad=True)
        batch_norm(x, None, None, Tensor(xp.ones(2, dtype=dt)), None, training=True).sum().backward()
        batch_norm(x, None, None, None, None, training=True).sum().backward()
    return "batch norm: numba kernels compiled"


kernels.declare(KERNELS, "batch norm", warm)


def _param(v, c, name, dtype):
    if v is None:
        return None
    arr = v.data if isinstance(v, Tensor) else xp.asarray(v)
    if arr.shape != (c,):
        raise ValueError(f"batch_norm: {name} must have shape ({c},) for an input with {c} channels, "
                         f"got {tuple(arr.shape)}")
    return v if isinstance(v, Tensor) else Tensor(arr.astype(dtype, copy=False))


def _buffer(v, c, name):
    if v is None:
        return None
    arr = v.data if isinstance(v, Tensor) else v
    if not isinstance(arr, xp.ndarray) or arr.shape != (c,):
        raise ValueError(f"batch_norm: {name} must be a tensor of shape ({c},) for an input with "
                         f"{c} channels, got {getattr(arr, 'shape', type(arr).__name__)}")
    return arr


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,  # noqa: A002
               momentum=0.1, eps=1e-5):
    """Batch normalisation over every axis but 1 (channels), as PyTorch's ``F.batch_norm``.

    ``input``: (N, C), (N, C, L), (N, C, H, W) or any (N, C, ...). In training the batch mean and
    biased variance normalise, and the running buffers (Tensors of shape (C,), or None to keep
    none) are updated IN PLACE: running = (1 - momentum) * running + momentum * batch statistic,
    with the unbiased variance for ``running_var``. In eval the running statistics normalise.
    ``momentum=None`` (PyTorch's cumulative average) needs the number of batches seen, which only a
    layer keeps, so here it is a TypeError (as in PyTorch's functional form): a layer passes
    ``momentum=1 / num_batches_tracked``."""
    x = input if isinstance(input, Tensor) else Tensor(input)
    if x.ndim < 2:
        raise ValueError(f"batch_norm expects an input of shape (N, C, ...), got shape {tuple(x.shape)}")
    c = x.shape[1]
    if momentum is None:
        raise TypeError("batch_norm: momentum=None (a cumulative average) needs the number of batches "
                        "seen; pass momentum=1/num_batches_tracked instead")
    if training:
        per_channel = x.shape[0] * int(xp.prod(x.shape[2:], dtype=xp.int64))
        if per_channel == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                             f"{tuple(x.shape)}")
    elif running_mean is None or running_var is None:
        raise ValueError("batch_norm: running_mean and running_var must be given in evaluation mode "
                         "(training=False)")
    rm = _buffer(running_mean, c, "running_mean")
    rv = _buffer(running_var, c, "running_var")
    w = _param(weight, c, "weight", x.dtype)
    b = _param(bias, c, "bias", x.dtype)
    return BatchNorm.apply(x, w, b, rm, rv, training=bool(training), momentum=float(momentum),
                           eps=float(eps))


# ------------------------------------------------------------------------ synchronised batch norm
class SyncBatchNorm(Function):
    """Training-mode batch norm over the ranks of a process group ``comm`` (None: this process
    alone): the statistics of the global batch. Forward gathers every rank's per-channel count,
    mean and sum of squared deviations (one all-gather) and merges them by Chan et al.'s
    parallel formula in float64 (no E[x^2] - E[x]^2 cancellation); backward all-reduces the two
    sums the input gradient needs. With M the global number of values per channel,
        dx = weight / sqrt(var + eps) * (g - (sum over all ranks of g) / M
                                           - xhat * (sum over all ranks of g * xhat) / M),
    and ``weight``/``bias`` get this rank's part of their gradient, as in PyTorch: the
    data-parallel average then makes it the global one."""

    def forward(self, x, weight, bias, running_mean, running_var, momentum, eps, comm):
        n, c = x.shape[0], x.shape[1]
        x3 = x.reshape(n, c, -1)
        count = x3.shape[0] * x3.shape[2]
        local_mean = _csum(x3) / count if count else xp.zeros(c, x.dtype)
        xc = x3 - _col(local_mean)
        local_m2 = _cdot(xc, xc) if count else xp.zeros(c, x.dtype)
        stats = xp.concatenate([[count], local_mean, local_m2]).astype(xp.float64)
        if comm is not None and comm.size > 1:
            gathered = comm.allgather(stats, "the all-gather of SyncBatchNorm statistics")
        else:
            gathered = stats[None]
        total, mean, m2 = 0.0, xp.zeros(c), xp.zeros(c)
        for row in gathered:  # Chan et al.: merge (count, mean, M2) pairs, rank by rank
            k = row[0]
            if k == 0:
                continue
            delta = row[1:1 + c] - mean
            new_total = total + k
            mean = mean + delta * (k / new_total)
            m2 = m2 + row[1 + c:] + delta * delta * (total * k / new_total)
            total = new_total
        if total <= 1:
            raise ValueError(f"SyncBatchNorm: expected more than 1 value per channel over all "
                             f"ranks when training, got {int(total)}")
        var = m2 / total
        invstd = 1.0 / xp.sqrt(var + eps)
        if running_mean is not None:
            running_mean *= 1.0 - momentum
            running_mean += (momentum * mean).astype(running_mean.dtype)
        if running_var is not None:
            running_var *= 1.0 - momentum
            running_var += (momentum * var * (total / (total - 1))).astype(running_var.dtype)
        dt = x.dtype
        mean, invstd = mean.astype(dt), invstd.astype(dt)
        xc += _col(local_mean - mean)  # x - the global mean, in the local pass's buffer
        xhat = xc
        xhat *= _col(invstd)
        out = xhat * _col(weight) if weight is not None else xhat.copy()
        if bias is not None:
            out += _col(bias)
        self.xhat, self.invstd, self.weight, self.total, self.comm = xhat, invstd, weight, total, comm
        self.shape, self.bias_dtype = x.shape, None if bias is None else bias.dtype
        return out.reshape(x.shape)

    def backward(self, g):
        xhat, invstd, weight = self.xhat, self.invstd, self.weight
        g3 = g.reshape(xhat.shape)
        sum_g, sum_gx = _csum(g3), _cdot(g3, xhat)
        dw = sum_gx if weight is not None and self.needs_input_grad[1] else None
        db = sum_g if self.bias_dtype is not None and self.needs_input_grad[2] else None
        dx = None
        if self.needs_input_grad[0]:
            sums = xp.concatenate([sum_g, sum_gx]).astype(xp.float64)
            if self.comm is not None and self.comm.size > 1:
                self.comm.allreduce(sums, "the all-reduce of SyncBatchNorm gradients")
            c = sum_g.shape[0]
            mean_g = (sums[:c] / self.total).astype(g.dtype)
            mean_gx = (sums[c:] / self.total).astype(g.dtype)
            scale = invstd if weight is None else invstd * weight
            dx = (g3 - _col(mean_g) - xhat * _col(mean_gx)) * _col(scale)
            dx = dx.reshape(self.shape)
        return dx, dw, db, None, None


def sync_batch_norm(input, running_mean, running_var, weight=None, bias=None,  # noqa: A002
                    momentum=0.1, eps=1e-5, group=None):
    """Training-mode batch normalisation with the statistics of every rank of ``group`` (a
    process group, ``backend.process_group.current()``; None: this process alone, which is
    exactly ``batch_norm(..., training=True)``). The running buffers are updated in place with
    the global statistics."""
    x = input if isinstance(input, Tensor) else Tensor(input)
    if x.ndim < 2:
        raise ValueError(f"sync_batch_norm expects an input of shape (N, C, ...), got shape "
                         f"{tuple(x.shape)}")
    c = x.shape[1]
    rm = None if running_mean is None else _buffer(running_mean, c, "running_mean")
    rv = None if running_var is None else _buffer(running_var, c, "running_var")
    w = _param(weight, c, "weight", x.dtype)
    b = _param(bias, c, "bias", x.dtype)
    return SyncBatchNorm.apply(x, w, b, rm, rv, momentum=float(momentum), eps=float(eps), comm=group)


# ------------------------------------------------------------------------ local response norm
def _window_sum(x, before, after):
    """s[:, c] = sum of x[:, c - before .. c + after] along axis 1 (zero beyond the ends)."""
    out = x.copy()
    c = x.shape[1]
    for d in range(1, min(after, c - 1) + 1):
        out[:, :c - d] += x[:, d:]
    for d in range(1, min(before, c - 1) + 1):
        out[:, d:] += x[:, :c - d]
    return out


class LocalResponseNorm(Function):
    """b_c = a_c / d_c^beta, d_c = k + alpha / size * sum of a_j^2 over the window of channel c
    (size // 2 channels before, (size - 1) // 2 after). Backward:
        da_i = g_i d_i^-beta - 2 alpha beta / size * a_i * sum over windows W(c) holding i of
               g_c b_c / d_c."""

    def forward(self, a, size, alpha, beta, k):
        self.size, self.alpha, self.beta = size, alpha, beta
        d = _window_sum(a * a, size // 2, (size - 1) // 2)
        d *= alpha / size
        d += k
        scale = xp.power(d, -beta)
        self.a, self.d, self.scale = a, d, scale
        return a * scale

    def backward(self, g):
        a, d, scale, size = self.a, self.d, self.scale, self.size
        t = g * a
        t *= scale
        t /= d                                   # g_c b_c / d_c
        # channel i lies in the windows of c = i - (size - 1) // 2 .. i + size // 2
        w = _window_sum(t, (size - 1) // 2, size // 2)
        w *= a
        w *= -2.0 * self.alpha * self.beta / size
        w += g * scale
        return w, None, None, None, None


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):  # noqa: A002
    """AlexNet's local response normalisation across channels (axis 1), as PyTorch's:
    b_c = a_c / (k + alpha / size * sum_{window} a^2)^beta, the window padded with size // 2
    channels before and (size - 1) // 2 after (zeros outside). Input: (N, C, ...) with 3+ dims."""
    x = input if isinstance(input, Tensor) else Tensor(input)
    if x.ndim < 3:
        raise ValueError(f"local_response_norm expects 3D or higher dimensionality input (N, C, ...), "
                         f"got {x.ndim} dimensions")
    size = int(size)
    if size < 1:
        raise ValueError(f"local_response_norm: size must be a positive int, got {size}")
    if x.numel() == 0:
        return x
    return LocalResponseNorm.apply(x, size, float(alpha), float(beta), float(k))
