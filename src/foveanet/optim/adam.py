"""Adam and AdamW: adaptive moment estimation.

The update, exactly PyTorch's ``torch.optim.Adam`` / ``AdamW`` (g the gradient, t the step)::

    g = -g if maximize
    w = w * (1 - lr * weight_decay)          AdamW (decoupled weight decay), or
    g = g + weight_decay * w                 Adam (L2 folded into the gradient)
    m = beta1 * m + (1 - beta1) * g          first moment   (exp_avg)
    v = beta2 * v + (1 - beta2) * g * g      second moment  (exp_avg_sq)
    v_max = max(v_max, v); use v_max for v   if amsgrad
    w = w - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
"""
from __future__ import annotations

from ..backend import xp
from .optimizer import Optimizer, _check_range, _direction, _lerp_


def _check_betas(betas):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair of floats, got {betas!r}")
    _check_range("beta parameter at index 0", betas[0], 0.0, 1.0)
    _check_range("beta parameter at index 1", betas[1], 0.0, 1.0)


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
    maximize=False)``; state per parameter: ``step``, ``exp_avg``, ``exp_avg_sq`` (and
    ``max_exp_avg_sq`` with amsgrad). ``decoupled_weight_decay=True`` makes it AdamW."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas, eps=eps,
                        weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _validate(self, group):
        _check_range("learning rate", group["lr"])
        _check_range("epsilon value", group["eps"], low_open=True)
        _check_betas(group["betas"])
        _check_range("weight_decay value", group["weight_decay"])

    def step(self, closure=None):
        loss = self._run_closure(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            wd, amsgrad, maximize = group["weight_decay"], group["amsgrad"], group["maximize"]
            decoupled = group["decoupled_weight_decay"]
            for p, grad, state in self._params_with_grad(group):
                w = p.data
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = xp.zeros_like(w)
                    state["exp_avg_sq"] = xp.zeros_like(w)
                    if amsgrad:
                        state["max_exp_avg_sq"] = xp.zeros_like(w)
                state["step"] += 1
                t = state["step"]
                if decoupled and wd != 0:
                    w *= 1 - lr * wd
                g, _ = _direction(grad, w, 0 if decoupled else wd, maximize)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                _lerp_(m, g, 1 - beta1)
                v *= beta2
                sq = xp.multiply(g, g)
                sq *= 1 - beta2
                v += sq
                step_size = lr / (1 - beta1 ** t)
                bias_correction2_sqrt = (1 - beta2 ** t) ** 0.5
                if amsgrad:
                    v_max = state.setdefault("max_exp_avg_sq", xp.zeros_like(w))
                    xp.maximum(v_max, v, out=v_max)
                    v = v_max
                denom = xp.sqrt(v, out=sq)  # reuse the scratch array
                denom /= bias_correction2_sqrt
                denom += eps
                xp.divide(m, denom, out=denom)
                denom *= -step_size
                w += denom
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``w *= 1 - lr * weight_decay``
    before the Adam step, instead of adding ``weight_decay * w`` to the gradient."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
