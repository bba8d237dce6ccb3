"""``y = x w^T + b`` with the bias inside the product (see ``_blas.addmm``), with numba.

Loaded only through ``backend.cpu.kernels.load``, cached on disk like the other
kernel modules. ``gemm`` is NumPy's own ``cblas_?gemm`` (a ctypes function, passed in at each
call: its address changes from process to process, so it is never baked into the cache).
"""
from numba import njit


@njit(cache=True, nogil=True)
def addmm(gemm, x, w, b, y):
    """Every row of y (n, o) set to b (o,), then gemm adds x (n, k) times w (o, k)^T with
    beta = 1: row-major (101), x as it is (111), w transposed (112)."""
    n, k = x.shape
    o = w.shape[0]
    for i in range(n):
        row = y[i]
        for j in range(o):
            row[j] = b[j]
    one = y.dtype.type(1)
    gemm(101, 111, 112, n, o, k, one, x.ctypes.data, k, w.ctypes.data, k, one, y.ctypes.data, o)
