"""The array-module seam: the one place that knows which library computes.

Every numerical module reaches NumPy through ``xp`` (``from ..backend import xp``), never through
``import numpy`` of its own, so that a GPU array library with NumPy's interface (CuPy) can be
dropped in later by changing this file alone. The dtype policy lives here too.
"""
from __future__ import annotations

import numpy as xp

# Public dtypes, PyTorch-named. They are the array module's own dtype objects.
float16 = xp.float16
float32 = xp.float32
float64 = xp.float64
int8 = xp.int8
int16 = xp.int16
int32 = xp.int32
int64 = xp.int64
uint8 = xp.uint8
bool_ = xp.bool_

float = float32  # noqa: A001 - PyTorch's alias: fv.float is float32
double = float64
long = int64

_default_float = xp.dtype(xp.float32)


def get_default_dtype():
    """The dtype of new floating-point tensors (float32 unless changed)."""
    return _default_float


def set_default_dtype(dtype) -> None:
    """Set the dtype that Python floats and ``fv.randn`` etc. produce: float32 or float64."""
    global _default_float
    dt = xp.dtype(dtype)
    if dt not in (xp.dtype(xp.float32), xp.dtype(xp.float64)):
        raise TypeError(f"default dtype must be float32 or float64, got {dt}")
    _default_float = dt


def get_array_module(*arrays):
    """The array module that computes on these arrays (always NumPy for now)."""
    return xp


def is_floating(dtype) -> bool:
    return xp.issubdtype(xp.dtype(dtype), xp.floating)


def set_num_threads(n: int) -> None:
    """Limit the BLAS thread pool (PyTorch's ``torch.set_num_threads``).

    Uses threadpoolctl when it is installed; otherwise it is a no-op with a warning, since the BLAS
    thread count can then only be set by environment variables before NumPy is imported.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects a positive int, got {n!r}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - depends on the environment
        import warnings

        warnings.warn("threadpoolctl is not installed; set OMP_NUM_THREADS before starting Python "
                      "to limit BLAS threads", RuntimeWarning, stacklevel=2)
        return
    global _thread_limiter
    _thread_limiter = threadpool_limits(limits=n)


_thread_limiter = None
