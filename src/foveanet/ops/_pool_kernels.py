"""Compiled loops of 2x2 max pooling with stride 2 (see ``pool.MaxPool2d``), with numba.

Loaded only through ``backend.cpu.kernels.load``, cached on disk like the other
kernel modules. Both kernels work on the planes [lo, hi) of (N*C, H, W) arrays whose 2x2 windows
tile the plane. Written for the 2x2 window only: the same loops with the window size as a
variable measured 4-5x slower (the compiler cannot unroll the two-long window loops), slower
than NumPy's passes, which other tilings keep.
"""
from numba import njit

jit = njit(cache=True, nogil=True)


@jit
def max_2x2(x, out, tap, lo, hi):
    """out[p, i, j] = the max of the window at (2i, 2j) of plane p, tap[p, i, j] = its first
    row-major position in the window (0-3). Returns True when a NaN was seen: the caller then
    takes the path with PyTorch's NaN rule."""
    oh, ow = out.shape[1], out.shape[2]
    nan = False
    for p in range(lo, hi):
        for i in range(oh):
            r0, r1, best, win = x[p, 2 * i], x[p, 2 * i + 1], out[p, i], tap[p, i]
            for j in range(ow):
                a, b, c, d = r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]
                m, t = a, 0
                if b > m:
                    m, t = b, 1
                if c > m:
                    m, t = c, 2
                if d > m:
                    m, t = d, 3
                best[j] = m
                win[j] = t
                nan |= (a != a) | (b != b) | (c != c) | (d != d)
    return nan


@jit
def max_2x2_grad(g, tap, gx, lo, hi):
    """gx (N*C, H, W): zero, then each window's gradient g[p, i, j] stored at its winning tap.
    (Storing all four pixels of each window, g or 0 by the tap, measured 4x slower.)"""
    oh, ow = g.shape[1], g.shape[2]
    for p in range(lo, hi):
        gx[p] = 0
        for i in range(oh):
            gr, win = g[p, i], tap[p, i]
            for j in range(ow):
                t = win[j]
                gx[p, 2 * i + (t >> 1), 2 * j + (t & 1)] = gr[j]
