"""The BLAS NumPy computes its products with (OpenBLAS in NumPy's wheels): its thread limit, its
idle spin, and a handle on its ``gemm`` for the product-with-bias kernel.

Everything goes through threadpoolctl, which finds the BLAS library NumPy loaded; without
threadpoolctl the thread count is unknown (``blas_threads()`` is None) and nothing is changed.
"""
from __future__ import annotations

import ctypes
import os

import numpy

__all__ = ["controllers", "blas_threads", "set_num_threads", "set_openblas_spin", "quiet_openblas",
           "numpy_blas", "gemm", "BLAS_SPIN_LOG2"]

BLAS_SPIN_LOG2 = 16  # OpenBLAS workers sleep after 2^16 cycles (~25 us) idle instead of 2^28

_state: dict = {"blas": None, "quiet": False, "limiter": None}
_gemm: dict = {}


def controllers() -> list:
    """threadpoolctl's controllers of the BLAS libraries NumPy uses ([] without threadpoolctl)."""
    if _state["blas"] is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            _state["blas"] = []
        else:
            _state["blas"] = [c for c in ThreadpoolController().lib_controllers
                              if c.user_api == "blas"]
    return _state["blas"]


def blas_threads():
    """How many threads the BLAS runs now (threadpoolctl, ~4 us a query), or None if unknown."""
    libs = controllers()
    return max(c.num_threads for c in libs) if libs else None


def set_num_threads(n: int) -> None:
    """Limit the BLAS thread pool (PyTorch's ``torch.set_num_threads``); the engine's own passes
    (``threads.split``) follow the same limit.

    Uses threadpoolctl when it is installed; otherwise it is a no-op with a warning, since the BLAS
    thread count can then only be set by environment variables before NumPy is imported."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads expects a positive int, got {n!r}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - depends on the environment
        import warnings

        warnings.warn("threadpoolctl is not installed; set OMP_NUM_THREADS before starting Python "
                      "to limit BLAS threads", RuntimeWarning, stacklevel=2)
        return
    _state["limiter"] = threadpool_limits(limits=n)


def quiet_openblas() -> None:
    """Make OpenBLAS's idle workers sleep after ~25 us instead of spinning for ~0.1 s (once; a
    timeout the user set in OPENBLAS_THREAD_TIMEOUT is left alone). The engine's thread pool
    calls this before its first parallel pass: a spinning BLAS worker holds the core the pass
    wants (benchmarks/RESULTS.md, "OpenBLAS's idle spin")."""
    if _state["quiet"]:
        return
    _state["quiet"] = True
    if "OPENBLAS_THREAD_TIMEOUT" not in os.environ:
        set_openblas_spin(BLAS_SPIN_LOG2)


def set_openblas_spin(log2_cycles: int) -> bool:
    """Set how long OpenBLAS's idle workers spin before they sleep (2^log2_cycles, 4..30; its
    default is 28). OpenBLAS reads OPENBLAS_THREAD_TIMEOUT when it starts its thread pool; the
    pool is restarted by ``blas_thread_shutdown_`` (what OpenBLAS does after a ``fork``) and
    comes back, with the new value, on the next product. True if an OpenBLAS was set."""
    done = False
    for c in controllers():
        lib = getattr(c, "dynlib", None)
        if c.internal_api != "openblas" or lib is None or \
                not all(hasattr(lib, f) for f in ("openblas_read_env", "blas_thread_shutdown_")):
            continue
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(int(log2_cycles))
        lib.openblas_read_env()
        lib.blas_thread_shutdown_()
        done = True
    return done


def numpy_blas():
    """The ctypes handle of the BLAS library loaded from NumPy's own directories, or None."""
    root = os.path.dirname(os.path.realpath(numpy.__file__))
    for c in controllers():
        path = os.path.realpath(getattr(c, "filepath", "") or "")
        if c.internal_api == "openblas" and path.startswith((root + os.sep, root + ".libs" + os.sep)):
            return getattr(c, "dynlib", None)
    return None


def gemm(dtype):
    """NumPy's ``cblas_sgemm`` / ``cblas_dgemm`` (64-bit integers, as NumPy's wheels build
    OpenBLAS) for ``dtype`` as a ctypes function, or None (another dtype, another BLAS, or
    ``FOVEANET_ADDMM=0``)."""
    key = numpy.dtype(dtype).char
    if key not in _gemm:
        _gemm[key] = None
        lib = numpy_blas() if key in "fd" and os.environ.get("FOVEANET_ADDMM") != "0" else None
        for prefix in ("scipy_cblas_", "cblas_"):
            fn = getattr(lib, f"{prefix}{'s' if key == 'f' else 'd'}gemm64_", None) if lib else None
            if fn is not None:
                real = ctypes.c_float if key == "f" else ctypes.c_double
                i32, i64, ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
                proto = ctypes.CFUNCTYPE(None, i32, i32, i32, i64, i64, i64, real, ptr, i64, ptr,
                                         i64, real, ptr, i64)
                _gemm[key] = proto(ctypes.cast(fn, ctypes.c_void_p).value)
                break
    return _gemm[key]
