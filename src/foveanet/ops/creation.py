"""Tensor constructors (PyTorch's names): tensor, zeros, ones, full, arange, linspace, eye, *_like."""
from __future__ import annotations

from ..autograd import Tensor, as_array
from ..backend import get_default_dtype, xp


def _shape(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return tuple(size[0])
    return tuple(size)


def _dt(dtype):
    return get_default_dtype() if dtype is None else xp.dtype(dtype)


def tensor(data, dtype=None, requires_grad=False):
    """A new tensor that owns a copy of ``data`` (lists of Python floats become float32)."""
    return Tensor(xp.array(as_array(data, dtype), copy=True), requires_grad=requires_grad)


def as_tensor(data, dtype=None):
    """A tensor sharing ``data``'s memory when it is already an array of the right dtype."""
    if isinstance(data, Tensor) and (dtype is None or data.dtype == dtype):
        return data
    return Tensor(data, dtype=dtype)


def from_numpy(array):
    if not isinstance(array, xp.ndarray):
        raise TypeError(f"from_numpy expects a NumPy array, got {type(array).__name__}")
    return Tensor(array)


def zeros(*size, dtype=None, requires_grad=False):
    return Tensor(xp.zeros(_shape(size), dtype=_dt(dtype)), requires_grad=requires_grad)


def ones(*size, dtype=None, requires_grad=False):
    return Tensor(xp.ones(_shape(size), dtype=_dt(dtype)), requires_grad=requires_grad)


def empty(*size, dtype=None, requires_grad=False):
    return Tensor(xp.empty(_shape(size), dtype=_dt(dtype)), requires_grad=requires_grad)


def full(size, fill_value, dtype=None, requires_grad=False):
    if dtype is None and isinstance(fill_value, (bool, int)):
        dtype = xp.bool_ if isinstance(fill_value, bool) else xp.int64
    return Tensor(xp.full(tuple(size), fill_value, dtype=_dt(dtype)), requires_grad=requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    return Tensor(xp.zeros(t.shape, dtype=dtype or t.dtype), requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return Tensor(xp.ones(t.shape, dtype=dtype or t.dtype), requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None):
    return Tensor(xp.full(t.shape, fill_value, dtype=dtype or t.dtype))


def arange(start, end=None, step=1, dtype=None):
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, int) for v in (start, end, step))
        dtype = xp.int64 if ints else get_default_dtype()
    return Tensor(xp.arange(start, end, step, dtype=dtype))


def linspace(start, end, steps, dtype=None):
    return Tensor(xp.linspace(start, end, steps, dtype=_dt(dtype)))


def eye(n, m=None, dtype=None):
    return Tensor(xp.eye(n, m, dtype=_dt(dtype)))
