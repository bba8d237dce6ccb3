"""Stochastic gradient descent, with momentum, Nesterov momentum and L2 weight decay.

The update, exactly PyTorch's ``torch.optim.SGD`` (g is the gradient dE/dw)::

    g = -g if maximize                       # gradient ascent
    g = g + weight_decay * w                 # L2 regularisation folded into the gradient
    if momentum:
        b = g                 on the first step
        b = momentum * b + (1 - dampening) * g   afterwards
        g = g + momentum * b  if nesterov  else  b
    w = w - lr * g                           # the lecture's  delta w = -alpha dE/dw

``weight_decay = 2 * alpha`` gives the same update as adding ``alpha * sum(w ** 2)`` to the loss
(see ``foveanet.optim.l2_penalty``).
"""
from __future__ import annotations

from ..backend import xp
from ..backend.cpu import kernels, threads
from .optimizer import Optimizer, _check_range, _direction

KERNELS = "foveanet.optim._sgd_kernels"


class SGD(Optimizer):
    """``SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
    maximize=False)``; state per parameter: ``momentum_buffer`` (when momentum is used)."""

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 *, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _validate(self, group):
        _check_range("learning rate", group["lr"])
        _check_range("momentum value", group["momentum"])
        _check_range("weight_decay value", group["weight_decay"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def step(self, closure=None):
        loss = self._run_closure(closure)
        for group in self.param_groups:
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            nesterov, maximize, wd = group["nesterov"], group["maximize"], group["weight_decay"]
            for p, grad, state in self._params_with_grad(group):
                w = p.data
                d, owned = _direction(grad, w, wd, maximize)
                if momentum != 0:
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = xp.array(d, dtype=w.dtype, copy=True)
                        state["momentum_buffer"] = buf
                    elif dampening == 0 and not nesterov and _flat_views(w, buf, d):
                        _momentum_step(w, buf, d, momentum, lr)
                        continue
                    else:
                        buf *= momentum
                        if dampening == 0:
                            buf += d
                        else:
                            buf += (1 - dampening) * d
                    if nesterov:
                        step = xp.multiply(buf, momentum)
                        step += d
                    else:
                        step = buf
                    owned = nesterov
                else:
                    step = d
                if owned:
                    step *= -lr
                    w += step
                else:
                    w -= lr * step
        return loss


def _flat_views(*arrays) -> bool:
    """All C-contiguous with one dtype, so ``reshape(-1)`` gives views that can be written."""
    return all(a.flags.c_contiguous and a.dtype == arrays[0].dtype for a in arrays)


def _momentum_step(w, buf, d, momentum, lr):
    """The common case in one go: ``buf = momentum * buf + d; w -= lr * buf``, the same roundings
    as the general path (and as PyTorch), on flat slices split over the engine's threads; slices
    of 8-64 k elements per pass were slower (small ufunc calls from two threads queue on the
    interpreter lock). Figures: benchmarks/RESULTS.md, "SGD's momentum update"."""
    wf, bf, df = w.reshape(-1), buf.reshape(-1), d.reshape(-1)
    k = kernels.load(KERNELS)
    if k is not None:  # one vectorised compiled pass: the MLP's whole update 0.40 ms (PyTorch 0.55)
        threads.split(lambda lo, hi: k.momentum_step(wf, bf, df, momentum, lr, lo, hi),
                      wf.size, 3 * wf.nbytes)
        return

    def part(lo, hi):
        b = bf[lo:hi]
        b *= momentum
        b += df[lo:hi]
        wf[lo:hi] -= lr * b

    threads.split(part, wf.size, 3 * wf.nbytes)


def warm() -> str:
    """Compile (or load from the cache) the momentum update for float32 and float64."""
    k = kernels.load(KERNELS)
    if k is None:
        return "SGD momentum update: numba is not installed, NumPy passes instead"
    for dt in (xp.float32, xp.float64):
        a = xp.zeros(2, dtype=dt)
        k.momentum_step(a, a.copy(), a.copy(), 0.9, 0.1, 0, 2)
    return "SGD momentum update: numba kernel compiled"


kernels.declare(KERNELS, "SGD momentum update", warm)
