"""The bias inside the product, as PyTorch's ``addmm``: ``y = x w^T + b`` in one BLAS call.

NumPy's ``x @ w.T`` always overwrites its output (BLAS's beta = 0: OpenBLAS first clears the
output, then adds the product into it), so ``Linear`` used to add its bias in a second pass,
``y += b``, right after the product had left half of y in the other core's cache. Here the
rows of y are set to the bias first and BLAS adds the product into them (beta = 1), through
the very library NumPy calls (its bundled OpenBLAS, found with threadpoolctl; ILP64, as NumPy's
wheels build it), so thread limits and results behave as NumPy's products do. The rounding
differs from the two-pass form only in where the bias enters the sum (PyTorch's order).
Figures (the MLP benchmark's layers): benchmarks/RESULTS.md, "The bias inside the product".

Used when it applies: float32 or float64 throughout, C-ordered x (any leading dimensions) and
w, a bias, no empty dimension, an output of at least ``MIN_BYTES`` (below, the second pass is
cheap and the call's ~5 us of argument handling is not: the MLP's 256 x 512 -> 10 was slower
this way), numba installed and NumPy's BLAS found with the expected entry
point. Anything else (``FOVEANET_ADDMM=0`` too) returns None and the caller takes NumPy's path.
"""
from __future__ import annotations

from ..backend import xp
from ..backend.cpu import blas, kernels

KERNELS = "foveanet.ops._addmm_kernels"
MIN_BYTES = 128 << 10
gemm = blas.gemm  # NumPy's own cblas_?gemm (64-bit integers) for a dtype, or None


def addmm(x, w, b):
    """``x @ w.T + b`` (x (..., k), w (o, k), b (o,)) with the bias added inside the product,
    or None where this path does not apply (see the module's docstring)."""
    dt = x.dtype
    if dt.char not in "fd" or w.dtype != dt or b.dtype != dt or x.ndim < 2 or w.ndim != 2 or \
            not (x.flags.c_contiguous and w.flags.c_contiguous and b.flags.c_contiguous) or \
            x.size == 0 or w.size == 0:
        return None
    if x.size // x.shape[-1] * w.shape[0] * dt.itemsize < MIN_BYTES:
        return None
    fn, k = gemm(dt), kernels.load(KERNELS)
    if fn is None or k is None:
        return None
    o = w.shape[0]
    x2 = x.reshape(-1, x.shape[-1])
    y = xp.empty((x2.shape[0], o), dtype=dt)
    k.addmm(fn, x2, w, b, y)
    return y.reshape(x.shape[:-1] + (o,))


def warm() -> str:
    """Compile (or load from the cache) the product-with-bias for float32 and float64."""
    if kernels.load(KERNELS) is None:
        return "linear with bias in the product: numba is not installed, NumPy's product + add"
    if gemm(xp.float32) is None:
        return "linear with bias in the product: NumPy's BLAS not found, NumPy's product + add"
    k = kernels.load(KERNELS)
    for dt in (xp.float32, xp.float64):  # straight to the kernel: addmm leaves outputs this small
        k.addmm(gemm(dt), xp.ones((2, 3), dtype=dt), xp.ones((4, 3), dtype=dt),
                      xp.ones(4, dtype=dt), xp.empty((2, 4), dtype=dt))
    return "linear with bias in the product: numba kernel compiled"


kernels.declare(KERNELS, "linear with bias in the product", warm)
