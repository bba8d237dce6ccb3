"""Compiled loops of the channels-last convolution (``ops._nhwc``), with numba.

Loaded only through ``backend.cpu.kernels.load``, cached on disk like the other kernel modules.
Each works on the samples [lo, hi). Columns here are (N, OH, OW, KH, KW, C): one row per output
position, each kernel tap a contiguous run of the C channels, so every copy and add moves whole
channel vectors (the NCHW columns of ``_im2col_kernels`` move runs of OW values, 7 on a 7x7 map).
"""
from numba import njit

jit = njit(cache=True, nogil=True)


@jit
def to_nhwc(x, top, left, out, lo, hi):
    """out (N, Hp, Wp, C) = x (N, C, H, W) zero-padded by ``top`` rows and ``left`` columns (and
    as far as out reaches at the far edges), channels innermost; the padding is written here."""
    cn, h, w = x.shape[1], x.shape[2], x.shape[3]
    hp, wp = out.shape[1], out.shape[2]
    zero = out.dtype.type(0)
    for n in range(lo, hi):
        for y in range(hp):
            yy = y - top
            if yy < 0 or yy >= h:
                out[n, y] = zero
                continue
            for q in range(wp):
                xx = q - left
                d = out[n, y, q]
                if xx < 0 or xx >= w:
                    d[:] = zero
                    continue
                for c in range(cn):
                    d[c] = x[n, c, yy, xx]


@jit
def im2col(xt, kh, kw, sh, sw, dh, dw, cols, lo, hi):
    """cols[n, y, x, i, j, :] = xt[n, y*sh + i*dh, x*sw + j*dw, :] (xt already padded)."""
    oh, ow, cn = cols.shape[1], cols.shape[2], cols.shape[5]
    for n in range(lo, hi):
        for y in range(oh):
            for x in range(ow):
                for i in range(kh):
                    src = xt[n, y * sh + i * dh]
                    for j in range(kw):
                        s = src[x * sw + j * dw]
                        d = cols[n, y, x, i, j]
                        for c in range(cn):
                            d[c] = s[c]


@jit
def col2im(cols, kh, kw, sh, sw, dh, dw, top, left, out, acc, lo, hi):
    """The adjoint of ``im2col`` followed by cropping and the layout change: out[n, c, y, x]
    (N, C, H, W) = the sum of every cols[n, oy, ox, i, j, c] with oy*sh + i*dh = y + top and
    ox*sw + j*dw = x + left. A gather, one output row at a time: its W x C sums in ``acc``
    (W, C), one per thread, then written out channel by channel (rows of W contiguous values).
    Each output value is written once: no zeroed buffer, no padding computed to be cut off."""
    cn, h, w = out.shape[1], out.shape[2], out.shape[3]
    oh, ow = cols.shape[1], cols.shape[2]
    for n in range(lo, hi):
        for y in range(h):
            acc[:, :] = 0
            yy = y + top
            for i in range(kh):
                t = yy - i * dh
                if t < 0 or t % sh != 0 or t // sh >= oh:
                    continue
                row = cols[n, t // sh]
                for x in range(w):
                    a = acc[x]
                    xx = x + left
                    for j in range(kw):
                        u = xx - j * dw
                        if u < 0 or u % sw != 0 or u // sw >= ow:
                            continue
                        s = row[u // sw, i, j]
                        for c in range(cn):
                            a[c] += s[c]
            for c in range(cn):
                dst = out[n, c, y]
                for x in range(w):
                    dst[x] = acc[x, c]
