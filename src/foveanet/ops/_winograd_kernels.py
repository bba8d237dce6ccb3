"""The compiled transforms of the Winograd convolution (see ``_winograd``), with numba.

Imported only by ``_winograd`` (so numba stays optional): compiled on the first call per dtype
and cached on disk (``cache=True``, in ``__pycache__`` here or numba's user cache). Each kernel
works on the samples [lo, hi) of a chunk, writes only those samples' entries, and numbers tiles
i * th * tw + ty * tw + tx within the chunk.

Channels innermost. The transformed arrays are (36, tiles, channels), so each kernel first
copies a sample into a buffer with the channels innermost ((rows, columns, C), zero-padded);
then every step of a tile's transform is one pass over C contiguous values, which the compiler
vectorises, and a tile's 36 results are 36 contiguous runs. The former kernels took one
(sample, channel) plane at a time, a tile's values scalar and its results C apart; these give
the same results bit for bit and were faster in whole steps, and per kernel on resnet20's 32- and
64-channel layers but for the output adjoint at 32 channels (figures: benchmarks/RESULTS.md,
"Winograd convolutions").
"""
import numpy as np
from numba import njit

jit = njit(cache=True, nogil=True)
inline = njit(inline="always")


@inline
def bt(d0, d1, d2, d3, d4, d5):  # B^T (6x6) applied to 6 values
    return (4 * d0 - 5 * d2 + d4, -4 * d1 - 4 * d2 + d3 + d4, 4 * d1 - 4 * d2 - d3 + d4,
            -2 * d1 - d2 + 2 * d3 + d4, 2 * d1 - d2 - 2 * d3 + d4, 4 * d1 - 5 * d3 + d5)


@inline
def at(m0, m1, m2, m3, m4, m5):  # A^T (4x6) applied to 6 values
    return (m0 + m1 + m2 + m3 + m4, m1 - m2 + 2 * (m3 - m4), m1 + m2 + 4 * (m3 + m4),
            m1 - m2 + 8 * (m3 - m4) + m5)


@inline
def a_(g0, g1, g2, g3):  # A (6x4) applied to 4 values
    return (g0, g0 + g1 + g2 + g3, g0 - g1 + g2 - g3, g0 + 2 * g1 + 4 * g2 + 8 * g3,
            g0 - 2 * g1 + 4 * g2 - 8 * g3, g3)


@inline
def b_(e0, e1, e2, e3, e4, e5):  # B (6x6) = (B^T)^T applied to 6 values
    return (4 * e0, -4 * e1 + 4 * e2 - 2 * e3 + 2 * e4 + 4 * e5,
            -5 * e0 - 4 * e1 - 4 * e2 - e3 - e4, e1 - e2 + 2 * e3 - 2 * e4 - 5 * e5,
            e0 + e1 + e2 + e3 + e4, e5)


@jit
def input_transform(x, top, left, th, tw, v, lo, hi):
    """v[6a + b, tile, c] = (B^T d B)[a, b], d the 6x6 patch at (4 ty, 4 tx) of the plane
    x[i, c] zero-padded by top / left (and past its far edges)."""
    c_n, h, w = x.shape[1], x.shape[2], x.shape[3]
    hp, wp = 4 * th + 2, 4 * tw + 2
    buf = np.zeros((hp, wp, c_n), dtype=x.dtype)  # its border stays zero
    t = np.empty((6, 6, c_n), dtype=x.dtype)
    y0, y1 = max(0, -top), min(h, hp - top)
    x0, x1 = max(0, -left), min(w, wp - left)
    for i in range(lo, hi):
        xi = x[i]
        for yy in range(y0, y1):
            row = buf[yy + top]
            for xx in range(x0, x1):
                d = row[xx + left]
                for c in range(c_n):
                    d[c] = xi[c, yy, xx]
        for ty in range(th):
            for tx in range(tw):
                k, ys, xs = i * th * tw + ty * tw + tx, 4 * ty, 4 * tx
                for xx in range(6):  # B^T down each column of the 6x6 patch
                    r0, r1, r2 = buf[ys, xs + xx], buf[ys + 1, xs + xx], buf[ys + 2, xs + xx]
                    r3, r4, r5 = buf[ys + 3, xs + xx], buf[ys + 4, xs + xx], buf[ys + 5, xs + xx]
                    for c in range(c_n):
                        t[0, xx, c], t[1, xx, c], t[2, xx, c], t[3, xx, c], t[4, xx, c], \
                            t[5, xx, c] = bt(r0[c], r1[c], r2[c], r3[c], r4[c], r5[c])
                for a in range(6):  # then B along each of its rows
                    ta = t[a]
                    d0, d1, d2 = v[6 * a, k], v[6 * a + 1, k], v[6 * a + 2, k]
                    d3, d4, d5 = v[6 * a + 3, k], v[6 * a + 4, k], v[6 * a + 5, k]
                    for c in range(c_n):
                        d0[c], d1[c], d2[c], d3[c], d4[c], d5[c] = bt(
                            ta[0, c], ta[1, c], ta[2, c], ta[3, c], ta[4, c], ta[5, c])


@jit
def output_transform(m, th, tw, out, lo, hi):
    """out's 4x4 block of every tile = A^T M A, cropped at out's far edges (each sample's blocks
    go to a (4 th, 4 tw, O) buffer first, copied into out's planes at the end)."""
    o_n, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    s = np.empty((4, 6, o_n), dtype=out.dtype)
    buf = np.empty((4 * th, 4 * tw, o_n), dtype=out.dtype)
    for i in range(lo, hi):
        for ty in range(th):
            for tx in range(tw):
                k = i * th * tw + ty * tw + tx
                for b in range(6):  # A^T down each column of the 6x6 block
                    r0, r1, r2 = m[b, k], m[6 + b, k], m[12 + b, k]
                    r3, r4, r5 = m[18 + b, k], m[24 + b, k], m[30 + b, k]
                    for c in range(o_n):
                        s[0, b, c], s[1, b, c], s[2, b, c], s[3, b, c] = at(
                            r0[c], r1[c], r2[c], r3[c], r4[c], r5[c])
                for a in range(4):  # then A along each of its rows
                    sa = s[a]
                    d0, d1 = buf[4 * ty + a, 4 * tx], buf[4 * ty + a, 4 * tx + 1]
                    d2, d3 = buf[4 * ty + a, 4 * tx + 2], buf[4 * ty + a, 4 * tx + 3]
                    for c in range(o_n):
                        d0[c], d1[c], d2[c], d3[c] = at(sa[0, c], sa[1, c], sa[2, c], sa[3, c],
                                                        sa[4, c], sa[5, c])
        for c in range(o_n):
            for yy in range(oh):
                row, q = out[i, c, yy], buf[yy]
                for xx in range(ow):
                    row[xx] = q[xx, c]


@jit
def output_adjoint(g, th, tw, dm, lo, hi):
    """dm[6a + b, tile, o] = (A dY A^T)[a, b] of every 4x4 block dY of the gradient (zero past
    its far edges): the transpose of output_transform."""
    o_n, oh, ow = g.shape[1], g.shape[2], g.shape[3]
    buf = np.zeros((4 * th, 4 * tw, o_n), dtype=g.dtype)  # zero past the gradient's far edges
    t = np.empty((6, 4, o_n), dtype=g.dtype)
    for i in range(lo, hi):
        gi = g[i]
        for yy in range(oh):
            row = buf[yy]
            for xx in range(ow):
                d = row[xx]
                for c in range(o_n):
                    d[c] = gi[c, yy, xx]
        for ty in range(th):
            for tx in range(tw):
                k, ys, xs = i * th * tw + ty * tw + tx, 4 * ty, 4 * tx
                for xx in range(4):  # A down each column of the 4x4 block
                    r0, r1 = buf[ys, xs + xx], buf[ys + 1, xs + xx]
                    r2, r3 = buf[ys + 2, xs + xx], buf[ys + 3, xs + xx]
                    for c in range(o_n):
                        t[0, xx, c], t[1, xx, c], t[2, xx, c], t[3, xx, c], t[4, xx, c], \
                            t[5, xx, c] = a_(r0[c], r1[c], r2[c], r3[c])
                for a in range(6):  # then A along each of its rows
                    ta = t[a]
                    d0, d1, d2 = dm[6 * a, k], dm[6 * a + 1, k], dm[6 * a + 2, k]
                    d3, d4, d5 = dm[6 * a + 3, k], dm[6 * a + 4, k], dm[6 * a + 5, k]
                    for c in range(o_n):
                        d0[c], d1[c], d2[c], d3[c], d4[c], d5[c] = a_(ta[0, c], ta[1, c],
                                                                      ta[2, c], ta[3, c])


@inline
def _add6(r0, r1, r2, r3, r4, r5, c, v):
    """r_j[c] += v[j] for the six rows and the six values of a transform."""
    r0[c] += v[0]
    r1[c] += v[1]
    r2[c] += v[2]
    r3[c] += v[3]
    r4[c] += v[4]
    r5[c] += v[5]


@jit
def input_adjoint(dv, top, left, th, tw, dx, lo, hi):
    """dx = the sum over tiles of B dV B^T, each added at its tile's place on the padded plane
    (neighbouring tiles overlap by 2 rows / columns), then the unpadded part: the transpose of
    input_transform. One sample at a time, so overlapping adds never race."""
    c_n, h, w = dx.shape[1], dx.shape[2], dx.shape[3]
    hp, wp = 4 * th + 2, 4 * tw + 2
    pl = np.empty((hp, wp, c_n), dtype=dx.dtype)
    t = np.empty((6, wp, c_n), dtype=dx.dtype)
    for i in range(lo, hi):
        pl[:] = 0.0
        for ty in range(th):
            t[:] = 0.0
            for tx in range(tw):  # B^T along each tile's rows, added onto the tile row's band
                k, s = i * th * tw + ty * tw + tx, 4 * tx
                for a in range(6):
                    e0, e1, e2 = dv[6 * a, k], dv[6 * a + 1, k], dv[6 * a + 2, k]
                    e3, e4, e5 = dv[6 * a + 3, k], dv[6 * a + 4, k], dv[6 * a + 5, k]
                    q0, q1, q2 = t[a, s], t[a, s + 1], t[a, s + 2]
                    q3, q4, q5 = t[a, s + 3], t[a, s + 4], t[a, s + 5]
                    for c in range(c_n):
                        _add6(q0, q1, q2, q3, q4, q5, c,
                              b_(e0[c], e1[c], e2[c], e3[c], e4[c], e5[c]))
            for xx in range(wp):  # then B down the columns
                r0, r1, r2 = pl[4 * ty, xx], pl[4 * ty + 1, xx], pl[4 * ty + 2, xx]
                r3, r4, r5 = pl[4 * ty + 3, xx], pl[4 * ty + 4, xx], pl[4 * ty + 5, xx]
                for c in range(c_n):
                    _add6(r0, r1, r2, r3, r4, r5, c, b_(t[0, xx, c], t[1, xx, c], t[2, xx, c],
                                                        t[3, xx, c], t[4, xx, c], t[5, xx, c]))
        di = dx[i]
        for yy in range(h):
            row = pl[yy + top]
            for xx in range(w):
                q = row[xx + left]
                for c in range(c_n):
                    di[c, yy, xx] = q[c]
