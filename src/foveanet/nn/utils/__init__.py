"""Gradient utilities: clipping, and flattening parameters to one vector (torch.nn.utils).

``clip_grad_norm_`` rescales all gradients together so that their joint norm (the norm of the
concatenation of every gradient) is at most ``max_norm``; ``clip_grad_value_`` clamps each
gradient element to ``[-clip_value, clip_value]``. Both change the gradients in place, between
``loss.backward()`` and ``optimizer.step()``, and skip parameters whose ``grad`` is None.
"""
from __future__ import annotations

import math
import types
import warnings

from ...autograd import Tensor
from ...backend import xp
from . import rnn  # noqa: F401  (PackedSequence, pad_sequence, pack_padded_sequence, ...)


def _as_list(parameters):
    if isinstance(parameters, Tensor):
        return [parameters]
    is_generator = isinstance(parameters, types.GeneratorType)
    parameters = list(parameters)
    if is_generator and not parameters:
        warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.",
                      stacklevel=3)
    return parameters


def _grads(parameters):
    return [p.grad for p in parameters if p.grad is not None]


def _vector_norm(a, p: float) -> float:
    """The p-norm of a flattened array, accumulated in float64 (``inf``/``-inf``: max/min |a|,
    ``0``: the number of non-zero elements)."""
    a = xp.asarray(a).reshape(-1)
    if a.size == 0:
        return 0.0
    if p == math.inf:
        return float(xp.max(xp.abs(a)))
    if p == -math.inf:
        return float(xp.min(xp.abs(a)))
    if p == 0:
        return float(xp.count_nonzero(a))
    a = a.astype(xp.float64)
    if p == 1:
        return float(xp.abs(a).sum())
    if p == 2:
        return float(math.sqrt(xp.dot(a, a)))
    return float((xp.abs(a) ** p).sum() ** (1.0 / p))


def _scale_in_place(grads, factor=None, clip=None):
    """Multiply by ``factor`` or clamp to ``[-clip, clip]`` every distinct gradient array once.

    A gradient array may be read-only or shared by several tensors (autograd can hand the same
    broadcast gradient to two leaves); those get a fresh array instead of being written twice."""
    done = {}
    with xp.errstate(invalid="ignore", over="ignore"):  # inf * 0 -> nan, as in PyTorch
        _scale_each(grads, factor, clip, done)


def _scale_each(grads, factor, clip, done):
    for g in grads:
        arr = g.data
        key = id(arr)
        if key in done:
            g.data = done[key]
            continue
        if arr.flags.writeable and arr.flags.owndata:
            if factor is not None:
                xp.multiply(arr, factor, out=arr)
            else:
                xp.clip(arr, -clip, clip, out=arr)
            done[key] = arr
        else:
            new = xp.multiply(arr, factor).astype(arr.dtype, copy=False) if factor is not None \
                else xp.clip(arr, -clip, clip)
            g.data = new
            done[key] = new


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False) -> Tensor:
    """The norm of the concatenation of ``tensors`` (arrays or tensors), as a 0-d tensor."""
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    arrays = [t.data if isinstance(t, Tensor) else xp.asarray(t) for t in tensors]
    norm_type = float(norm_type)
    if not arrays:
        return Tensor(xp.zeros((), dtype=xp.float32))
    dtype = xp.result_type(*arrays)
    if not xp.issubdtype(dtype, xp.floating):
        dtype = xp.float32
    total = _vector_norm(xp.array([_vector_norm(a, norm_type) for a in arrays]), norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` "
                           "is non-finite, so it cannot be clipped. To disable this error and "
                           "scale the gradients by the non-finite norm anyway, set "
                           "`error_if_nonfinite=False`")
    return Tensor(xp.asarray(total, dtype=dtype))


def clip_grads_with_norm_(parameters, max_norm, total_norm) -> None:
    """Scale the gradients by ``min(max_norm / (total_norm + 1e-6), 1)``."""
    grads = _grads(_as_list(parameters))
    if not grads:
        return
    total = float(total_norm.data if isinstance(total_norm, Tensor) else total_norm)
    coef = max_norm / (total + 1e-6)
    coef = coef if coef < 1.0 or math.isnan(coef) else 1.0
    if coef != 1.0:
        _scale_in_place(grads, factor=coef)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False) -> Tensor:
    """Rescale the gradients of ``parameters`` (a tensor or an iterable of tensors) in place so
    that their total ``norm_type``-norm (``float('inf')`` for the max-norm) is at most
    ``max_norm``: each is multiplied by ``max_norm / (total + 1e-6)`` when that is below 1.
    Returns the total norm before clipping, as a tensor. ``error_if_nonfinite``: RuntimeError when
    the total norm is nan or inf (otherwise the gradients become nan/0, as in PyTorch)."""
    parameters = _as_list(parameters)
    max_norm = float(max_norm)
    total = get_total_norm(_grads(parameters), norm_type, error_if_nonfinite)
    clip_grads_with_norm_(parameters, max_norm, total)
    return total


def clip_grad_value_(parameters, clip_value) -> None:
    """Clamp every gradient element of ``parameters`` to ``[-clip_value, clip_value]`` in place."""
    parameters = _as_list(parameters)
    clip_value = float(clip_value)
    grads = _grads(parameters)
    if grads:
        _scale_in_place(grads, clip=clip_value)


def parameters_to_vector(parameters) -> Tensor:
    """All parameters flattened and concatenated into one 1-d tensor (differentiable)."""
    from ...ops import cat, reshape

    parameters = _as_list(parameters)
    if not parameters:
        raise ValueError("parameters_to_vector needs at least one tensor")
    for p in parameters:
        if not isinstance(p, Tensor):
            raise TypeError(f"expected Tensor, but got: {type(p).__name__}")
    return cat([reshape(p, -1) for p in parameters])


def vector_to_parameters(vec, parameters) -> None:
    """Copy consecutive slices of the 1-d ``vec`` into ``parameters`` (in place, no graph)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected Tensor, but got: {type(vec).__name__}")
    parameters = _as_list(parameters)
    data = vec.data.reshape(-1)
    needed = sum(p.data.size for p in parameters)
    if data.size != needed:
        raise ValueError(f"vector has {data.size} elements but the parameters have {needed}")
    pointer = 0
    for p in parameters:
        n = p.data.size
        p.data[...] = data[pointer:pointer + n].reshape(p.data.shape)
        pointer += n


__all__ = ["clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm",
           "parameters_to_vector", "vector_to_parameters"]
