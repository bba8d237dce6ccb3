"""SGD's common momentum update as one compiled pass (see ``sgd._momentum_step``), with numba.

Imported only through ``ops._util.compiled`` (numba stays optional), cached on disk like the
engine's kernel modules. No fast-math: each operation rounds as NumPy's (and PyTorch's) do, so
the result is bit for bit the NumPy path's.
"""
from numba import njit


@njit(cache=True, nogil=True)
def momentum_step(w, buf, d, momentum, lr, lo, hi):
    """buf = momentum * buf + d; w -= lr * buf, on the flat slices [lo, hi)."""
    m, a = w.dtype.type(momentum), w.dtype.type(lr)
    for i in range(lo, hi):
        b = buf[i] * m + d[i]
        buf[i] = b
        w[i] -= a * b
