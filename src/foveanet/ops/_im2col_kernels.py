"""Compiled im2col and col2im for strided convolutions (see ``conv.im2col`` / ``conv.col2im``),
with numba.

Loaded only through ``backend.cpu.kernels.load``, cached on disk like the other
kernel modules. Both work on the samples [lo, hi). NumPy's col2im is one strided add per kernel
offset, each reading and writing every other element of the image rows when the stride is 2;
this loop does the same adds several times faster (resnet20's stride-2 layers). The copy of
im2col's strided view NumPy does about as fast; both are compiled so that the two stay each
other's adjoint in one place. Figures: benchmarks/RESULTS.md, "Strided im2col / col2im".
"""
from numba import njit

jit = njit(cache=True, nogil=True)


@jit
def im2col(x, top, left, kh, kw, sh, sw, dh, dw, cols, lo, hi):
    """cols[n, (c*KH + i)*KW + j, y*OW + x] = xpad[n, c, y*sh + i*dh, x*sw + j*dw], xpad being x
    zero-padded by top rows and left columns (and as far as needed at the far edges): the
    padding is read as zeros here, not copied first (a padded copy of resnet20's 16->32 input
    at batch 256 cost 5.6 ms next to the columns' 10)."""
    c_n, h, w, oh, ow = x.shape[1], x.shape[2], x.shape[3], cols.shape[2], cols.shape[3]
    zero = cols.dtype.type(0)
    for n in range(lo, hi):
        for c in range(c_n):
            for i in range(kh):
                for j in range(kw):
                    r = (c * kh + i) * kw + j
                    off = j * dw - left  # input column of output column x: x * sw + off
                    x0 = min(ow, max(0, -(off // sw)))  # first x with x * sw + off >= 0
                    x1 = max(x0, min(ow, (w - off + sw - 1) // sw))  # first with >= w
                    for y in range(oh):
                        dst, yy = cols[n, r, y], y * sh + i * dh - top
                        if yy < 0 or yy >= h:
                            dst[:] = zero
                            continue
                        src = x[n, c, yy]
                        dst[:x0] = zero
                        for q in range(x0, x1):
                            dst[q] = src[q * sw + off]
                        dst[x1:] = zero


@jit
def col2im(cols, kh, kw, sh, sw, dh, dw, out, lo, hi):
    """The adjoint: out[n, c, y*sh + i*dh, x*sw + j*dw] += cols[n, (c*KH + i)*KW + j, y, x]."""
    c_n, oh, ow = out.shape[1], cols.shape[2], cols.shape[3]
    for n in range(lo, hi):
        for c in range(c_n):
            for i in range(kh):
                for j in range(kw):
                    r = (c * kh + i) * kw + j
                    for y in range(oh):
                        src, dst = cols[n, r, y], out[n, c, y * sh + i * dh]
                        for x in range(ow):
                            dst[x * sw + j * dw] += src[x]
