"""Dropout: inverted dropout (``dropout``) and channel-wise dropout (``dropout2d``).

Inverted dropout zeroes each element with probability p and scales the survivors by 1 / (1 - p),
so the expected value of every unit is unchanged and nothing needs rescaling at test time
(where dropout is the identity). The random mask comes from ``foveanet.random.numpy_rng(generator)``:
a seeded ``fv.Generator`` (or ``fv.manual_seed`` for the global one) gives the same mask again.

``inplace=True`` is accepted for PyTorch compatibility but the result is always a new tensor
(autograd keeps no version counters, so overwriting the input could corrupt a saved array)."""
from __future__ import annotations

import warnings

from ..autograd import Function, Tensor
from ..backend import xp
from ..random import numpy_rng


class Dropout(Function):
    """out = input * mask, where ``mask`` holds 0 (dropped) or 1 / (1 - p) (kept) and broadcasts to
    the input (the input's shape for element-wise dropout; (N, C, 1, ...) for channel dropout).
    The gradient is the same mask times the upstream gradient."""

    def forward(self, a, mask):
        self.mask = mask
        return a * mask

    def backward(self, g):
        return g * self.mask, None


def _check_p(p):
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return p


def _drop(input, p, mask_shape, generator):
    input = input if isinstance(input, Tensor) else Tensor(input)
    dtype = input.dtype if input.dtype in (xp.float32, xp.float64) else xp.float64
    mask = xp.asarray(numpy_rng(generator).random(mask_shape, dtype=dtype))  # an array even for 0-d
    # keep where u >= p (probability 1 - p): write the comparison's 1.0 / 0.0 into the same buffer
    xp.greater_equal(mask, p, out=mask, casting="unsafe")
    if p < 1.0:
        mask *= 1.0 / (1.0 - p)  # p == 1: every unit dropped, the mask is all zeros
    return Dropout.apply(input, mask)


def dropout(input, p=0.5, training=True, inplace=False, generator=None):  # noqa: A002
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p) (training only).

    Returns ``input`` itself when not training or when p == 0; all zeros (gradient zero) when
    p == 1. ``generator``: a ``fv.Generator`` for reproducible masks (default: the global one)."""
    p = _check_p(p)
    if not training or p == 0.0:
        return input
    return _drop(input, p, input.shape, generator)


def dropout2d(input, p=0.5, training=True, inplace=False, generator=None):  # noqa: A002
    """Zero whole channels: each (sample, channel) map of an (N, C, H, W) input is dropped with
    probability ``p``, the kept ones scaled by 1 / (1 - p).

    A 3-D input is read as (N, C, L) (channel-wise 1-D dropout), with PyTorch's warning."""
    p = _check_p(p)
    if input.ndim not in (3, 4):
        raise ValueError(f"dropout2d expects a 3-D or 4-D input, got shape {tuple(input.shape)}")
    if input.ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise "
                      "1D dropout behavior is desired - input is interpreted as shape (N, C, L), "
                      "where C is the channel dim.", UserWarning, stacklevel=2)
    if not training or p == 0.0:
        return input
    return _drop(input, p, tuple(input.shape[:2]) + (1,) * (input.ndim - 2), generator)
