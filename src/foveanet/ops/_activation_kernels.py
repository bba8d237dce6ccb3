"""ReLU's forward pass as one compiled loop (see ``activation.relu_into``), with numba.

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
