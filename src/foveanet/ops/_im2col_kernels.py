"""Compiled im2col and col2im for strided convolutions (see ``conv.im2col`` / ``conv.col2im``),
with numba.

Imported only through ``_util.compiled`` (numba stays optional), cached on disk like the other
kernel modules. Both work on the samples [lo, hi). NumPy's copy of im2col's strided view reads
every other element along a row when the stride is 2, at about 1 GB/s (37 ms for resnet20's
16->32 stride-2 layer at batch 256, three times its BLAS product); these loops copy the same
entries at several times that.
"""
from numba import njit

jit = njit(cache=True, nogil=True)


@jit
def im2col(xpad, kh, kw, sh, sw, dh, dw, cols, lo, hi):
    """cols[n, (c*KH + i)*KW + j, y*OW + x] = xpad[n, c, y*sh + i*dh, x*sw + j*dw]."""
    c_n, oh, ow = xpad.shape[1], cols.shape[2], cols.shape[3]
    for n in range(lo, hi):
        for c in range(c_n):
            for i in range(kh):
                for j in range(kw):
                    r = (c * kh + i) * kw + j
                    for y in range(oh):
                        src, dst = xpad[n, c, y * sh + i * dh], cols[n, r, y]
                        for x in range(ow):
                            dst[x] = src[x * sw + j * dw]


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
