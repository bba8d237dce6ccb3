"""Weight penalties added to the loss (the lecture's regularisation slide).

    Cost = Loss + alpha * sum |w|        (L1: pushes weights to exactly zero, sparse models)
    Cost = Loss + alpha * sum w^2        (L2: keeps weights small; alpha ~ 0.001)

``l1_penalty(params, alpha)`` and ``l2_penalty(params, alpha)`` return a differentiable scalar
tensor, so ``(loss + l2_penalty(params, 1e-3)).backward()`` adds the penalty's gradient to every
parameter's ``.grad`` through autograd::

    d/dw  alpha * sum |w|  = alpha * sign(w)       (0 at w = 0, like PyTorch's abs)
    d/dw  alpha * sum w^2  = 2 * alpha * w

Relation to ``weight_decay``. SGD (and Adam, RMSprop) with ``weight_decay=wd`` adds ``wd * w`` to
the gradient, so ``weight_decay = 2 * alpha`` performs the same update as adding
``l2_penalty(params, alpha)`` to the loss (without computing the penalty's value). AdamW's
decoupled weight decay is a different thing: it shrinks the weights outside the adaptive step.

Which tensors are penalised is the caller's choice: pass any iterable of tensors, e.g. only the
weights, leaving biases and normalisation parameters out::

    decay = [p for name, p in model.named_parameters() if not name.endswith("bias")]
    loss = criterion(model(x), y) + fv.optim.l2_penalty(decay, 1e-3)
"""
from __future__ import annotations

from ..autograd import Function, Tensor
from ..backend import get_default_dtype, xp


class _Penalty(Function):
    """``l1 * sum_k sum |w_k| + l2 * sum_k sum w_k^2`` over all inputs, as one graph node."""

    def forward(self, *arrays, l1=0.0, l2=0.0):
        self.arrays, self.l1, self.l2 = arrays, l1, l2
        total = 0.0
        for a in arrays:
            flat = a.reshape(-1)
            if l1:
                total += l1 * float(xp.abs(flat).sum())
            if l2:
                total += l2 * float(xp.dot(flat, flat))
        return xp.asarray(total, dtype=xp.result_type(*arrays))

    def backward(self, grad):
        scale = float(grad)
        out = []
        for a, needed in zip(self.arrays, self.needs_input_grad):
            if not needed:
                out.append(None)
            elif self.l2:
                g = xp.multiply(a, 2.0 * self.l2 * scale)
                if self.l1:
                    s = xp.sign(a)
                    s *= self.l1 * scale
                    g += s
                out.append(g)
            else:
                g = xp.sign(a)
                g *= self.l1 * scale
                out.append(g)
        return tuple(out)


def _as_list(params):
    if isinstance(params, Tensor):
        return [params]
    params = list(params)
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"penalties take tensors, but one of the params is {type(p).__name__}")
    return params


def _check_alpha(name, alpha):
    if not alpha >= 0:
        raise ValueError(f"Invalid {name} coefficient: {alpha} (must be >= 0)")


def penalty(params, l1=0.0, l2=0.0) -> Tensor:
    """``l1 * sum|w| + l2 * sum w^2`` over ``params`` (a tensor or an iterable of tensors), as a
    differentiable scalar tensor to add to the loss. An empty iterable gives a constant 0."""
    _check_alpha("l1", l1)
    _check_alpha("l2", l2)
    params = _as_list(params)
    if not params:
        return Tensor(xp.zeros((), dtype=get_default_dtype()))
    return _Penalty.apply(*params, l1=float(l1), l2=float(l2))


def l1_penalty(params, alpha) -> Tensor:
    """``alpha * sum |w|`` over ``params``; its gradient is ``alpha * sign(w)``."""
    _check_alpha("l1", alpha)
    return penalty(params, l1=alpha)


def l2_penalty(params, alpha) -> Tensor:
    """``alpha * sum w^2`` over ``params``; its gradient is ``2 * alpha * w`` (the same update as
    ``weight_decay = 2 * alpha``)."""
    _check_alpha("l2", alpha)
    return penalty(params, l2=alpha)


class Regularizer:
    """A penalty with fixed coefficients: ``reg = Regularizer(l2=1e-3); loss = loss + reg(params)``.

    ``weight_decay_equivalent`` is the SGD/Adam ``weight_decay`` giving the same L2 update
    (``2 * l2``)."""

    def __init__(self, l1=0.0, l2=0.0):
        _check_alpha("l1", l1)
        _check_alpha("l2", l2)
        self.l1, self.l2 = float(l1), float(l2)

    @property
    def weight_decay_equivalent(self) -> float:
        return 2.0 * self.l2

    def __call__(self, params) -> Tensor:
        return penalty(params, l1=self.l1, l2=self.l2)

    def __repr__(self):
        return f"Regularizer(l1={self.l1:g}, l2={self.l2:g})"
