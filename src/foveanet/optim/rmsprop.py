"""RMSprop: divide the gradient by a running root-mean-square of recent gradients.

The update, exactly PyTorch's ``torch.optim.RMSprop``::

    g = -g if maximize
    g = g + weight_decay * w
    v = alpha * v + (1 - alpha) * g * g                  square_avg
    centered:  a = alpha * a + (1 - alpha) * g;  avg = sqrt(v - a * a) + eps
    otherwise: avg = sqrt(v) + eps
    momentum:  b = momentum * b + g / avg;  w = w - lr * b
    otherwise: w = w - lr * g / avg
"""
from __future__ import annotations

from ..backend import xp
from .optimizer import Optimizer, _check_range, _direction, _lerp_


class RMSprop(Optimizer):
    """``RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
    centered=False, maximize=False)``; state per parameter: ``step``, ``square_avg`` (and
    ``momentum_buffer``, ``grad_avg`` when momentum / centered are used)."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, *, maximize=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize)
        super().__init__(params, defaults)

    def _validate(self, group):
        _check_range("learning rate", group["lr"])
        _check_range("epsilon value", group["eps"], low_open=True)
        _check_range("momentum value", group["momentum"])
        _check_range("weight_decay value", group["weight_decay"])
        _check_range("alpha value", group["alpha"], 0.0, 1.0, high_open=False)

    def step(self, closure=None):
        loss = self._run_closure(closure)
        for group in self.param_groups:
            lr, alpha, eps, momentum = group["lr"], group["alpha"], group["eps"], group["momentum"]
            wd, centered, maximize = group["weight_decay"], group["centered"], group["maximize"]
            for p, grad, state in self._params_with_grad(group):
                w = p.data
                if not state:
                    state["step"] = 0
                    state["square_avg"] = xp.zeros_like(w)
                    if momentum > 0:
                        state["momentum_buffer"] = xp.zeros_like(w)
                    if centered:
                        state["grad_avg"] = xp.zeros_like(w)
                state["step"] += 1
                g, _ = _direction(grad, w, wd, maximize)
                v = state["square_avg"]
                v *= alpha
                avg = xp.multiply(g, g)
                avg *= 1 - alpha
                v += avg
                if centered:
                    a = _lerp_(state.setdefault("grad_avg", xp.zeros_like(w)), g, 1 - alpha)
                    xp.multiply(a, a, out=avg)
                    xp.subtract(v, avg, out=avg)
                    xp.sqrt(avg, out=avg)
                else:
                    xp.sqrt(v, out=avg)
                avg += eps
                xp.divide(g, avg, out=avg)
                if momentum > 0:
                    buf = state.setdefault("momentum_buffer", xp.zeros_like(w))
                    buf *= momentum
                    buf += avg
                    xp.multiply(buf, -lr, out=avg)
                else:
                    avg *= -lr
                w += avg
        return loss
