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


# ------------------------------------------------------------------------------ memory allocator
# A training step allocates and frees the same large temporaries (activations, im2col columns,
# gradients: 1-30 MB each) every step. glibc's malloc serves blocks above its mmap threshold with
# fresh mmap()s and returns them to the system on free, so every step page-faults all of that
# memory in again (tens of thousands of faults per step, each zeroing a page). Serving blocks up
# to 32 MiB from the heap and keeping freed heap memory for reuse removes that: measured LeNet-5
# training steps about 51 -> 37 ms (batch 128, 2 threads; benchmarks/RESULTS.md, 2026-11-27).
# The peak memory is unchanged; memory freed after the peak stays with the process for reuse (as
# PyTorch's caching allocators do). Linux/glibc only; ``FOVEANET_MALLOC=system`` before import
# keeps glibc's defaults.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 512 << 20
_allocator_tuned = False


def tune_allocator() -> bool:
    """Apply the allocator settings above (once); True if they were applied."""
    global _allocator_tuned
    import os
    import sys

    if _allocator_tuned or os.environ.get("FOVEANET_MALLOC", "").lower() == "system" or \
            not sys.platform.startswith("linux"):
        return _allocator_tuned
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    _allocator_tuned = bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and \
        bool(mallopt(m_trim_threshold, TRIM_THRESHOLD))
    return _allocator_tuned


tune_allocator()
