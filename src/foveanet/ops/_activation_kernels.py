"""ReLU's forward and backward passes as compiled loops (see ``activation``), with numba.

Loaded only through ``backend.cpu.kernels.load``, cached on disk like the other
kernel modules. It works on the flat slices [lo, hi), taken first so that the loop index starts
at 0 and the loop vectorises (see ``optim/_sgd_kernels.py``).
"""
from numba import njit


@njit(cache=True, nogil=True)
def relu(a, out, lo, hi):
    """out = a where a >= 0 (keeping -0.0 and NaN, as NumPy's clip and PyTorch's relu), else 0."""
    av, ov = a[lo:hi], out[lo:hi]
    zero = ov.dtype.type(0)
    for i in range(av.size):
        v = av[i]
        ov[i] = zero if v < zero else v


@njit(cache=True, nogil=True)
def relu_grad(g, out, gx, lo, hi):
    """gx = 0 where out <= 0, else g: PyTorch's threshold_backward (g passes where out is NaN;
    a NaN in g gives 0 where out <= 0), in one pass instead of a mask array and a product."""
    gv, ov, xv = g[lo:hi], out[lo:hi], gx[lo:hi]
    zero = xv.dtype.type(0)
    for i in range(gv.size):
        xv[i] = zero if ov[i] <= zero else gv[i]
