"""The compiled transforms of the Winograd convolution (see ``_winograd``), with numba.

Imported only by ``_winograd`` (so numba stays optional): compiled on the first call per dtype
and cached on disk (``cache=True``, in ``__pycache__`` here or numba's user cache). Each kernel
works on the planes [lo, hi) of its input, plane p being (sample p // C, channel p % C), writes
only those planes' entries, and numbers tiles i * th * tw + ty * tw + tx within a chunk.
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


@jit
def input_transform(x, top, left, th, tw, v, lo, hi):
    """v[6a + b, tile, c] = (B^T d B)[a, b], d the 6x6 patch at (4 ty, 4 tx) of the plane
    zero-padded by top / left (and past its far edges)."""
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    hp, wp = 4 * th + 2, 4 * tw + 2
    pl = np.zeros((hp, wp), dtype=x.dtype)  # the padded plane; its border stays zero
    t = np.empty((6, wp), dtype=x.dtype)
    y0, y1 = max(0, -top), min(h, hp - top)
    x0, x1 = max(0, -left), min(w, wp - left)
    for p in range(lo, hi):
        i, ch = p // c, p % c
        src = x[i, ch]
        for yy in range(y0, y1):
            row, q = pl[yy + top], src[yy]
            for xx in range(x0, x1):
                row[xx + left] = q[xx]
        base = i * th * tw
        for ty in range(th):
            r0, r1, r2 = pl[4 * ty], pl[4 * ty + 1], pl[4 * ty + 2]
            r3, r4, r5 = pl[4 * ty + 3], pl[4 * ty + 4], pl[4 * ty + 5]
            for xx in range(wp):  # B^T down the columns of the tile row, every x at once
                t[0, xx], t[1, xx], t[2, xx], t[3, xx], t[4, xx], t[5, xx] = bt(
                    r0[xx], r1[xx], r2[xx], r3[xx], r4[xx], r5[xx])
            for a in range(6):  # then B along each tile's rows
                ta = t[a]
                for tx in range(tw):
                    s, k = 4 * tx, base + ty * tw + tx
                    v0, v1, v2, v3, v4, v5 = bt(ta[s], ta[s + 1], ta[s + 2], ta[s + 3],
                                                ta[s + 4], ta[s + 5])
                    v[6 * a, k, ch], v[6 * a + 1, k, ch], v[6 * a + 2, k, ch] = v0, v1, v2
                    v[6 * a + 3, k, ch], v[6 * a + 4, k, ch], v[6 * a + 5, k, ch] = v3, v4, v5


@jit
def output_transform(m, th, tw, out, lo, hi):
    """out's 4x4 block of every tile = A^T M A, cropped at out's far edges."""
    o, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    nk = th * tw
    s = np.empty((4, 6, nk), dtype=out.dtype)
    y = np.empty((4, nk), dtype=out.dtype)
    for p in range(lo, hi):
        i, ch = p // o, p % o
        b0, b1 = i * nk, (i + 1) * nk
        for b in range(6):  # A^T down the columns of every tile of the plane at once
            r0, r1, r2 = m[b, b0:b1, ch], m[6 + b, b0:b1, ch], m[12 + b, b0:b1, ch]
            r3, r4, r5 = m[18 + b, b0:b1, ch], m[24 + b, b0:b1, ch], m[30 + b, b0:b1, ch]
            for k in range(nk):
                s[0, b, k], s[1, b, k], s[2, b, k], s[3, b, k] = at(
                    r0[k], r1[k], r2[k], r3[k], r4[k], r5[k])
        for a in range(4):  # then A along the rows, and each row of 4 into place
            sa = s[a]
            for k in range(nk):
                y[0, k], y[1, k], y[2, k], y[3, k] = at(sa[0, k], sa[1, k], sa[2, k],
                                                        sa[3, k], sa[4, k], sa[5, k])
            for ty in range(th):
                yy = 4 * ty + a
                if yy >= oh:
                    break
                row = out[i, ch, yy]
                for tx in range(tw):
                    k, x0 = ty * tw + tx, 4 * tx
                    for q in range(min(4, ow - x0)):
                        row[x0 + q] = y[q, k]


@jit
def output_adjoint(g, th, tw, dm, lo, hi):
    """dm[6a + b, tile, o] = (A dY A^T)[a, b] of every 4x4 block dY of the gradient (zero past
    its far edges): the transpose of output_transform."""
    o, oh, ow = g.shape[1], g.shape[2], g.shape[3]
    pl = np.zeros((4 * th, 4 * tw), dtype=g.dtype)
    t = np.empty((6, 4 * tw), dtype=g.dtype)
    for p in range(lo, hi):
        i, ch = p // o, p % o
        src = g[i, ch]
        for yy in range(oh):
            row, q = pl[yy], src[yy]
            for xx in range(ow):
                row[xx] = q[xx]
        base = i * th * tw
        for ty in range(th):
            r0, r1, r2, r3 = pl[4 * ty], pl[4 * ty + 1], pl[4 * ty + 2], pl[4 * ty + 3]
            for xx in range(4 * tw):
                t[0, xx], t[1, xx], t[2, xx], t[3, xx], t[4, xx], t[5, xx] = a_(
                    r0[xx], r1[xx], r2[xx], r3[xx])
            for a in range(6):
                ta = t[a]
                for tx in range(tw):
                    s, k = 4 * tx, base + ty * tw + tx
                    v0, v1, v2, v3, v4, v5 = a_(ta[s], ta[s + 1], ta[s + 2], ta[s + 3])
                    dm[6 * a, k, ch], dm[6 * a + 1, k, ch], dm[6 * a + 2, k, ch] = v0, v1, v2
                    dm[6 * a + 3, k, ch], dm[6 * a + 4, k, ch], dm[6 * a + 5, k, ch] = v3, v4, v5


@inline
def b_(e0, e1, e2, e3, e4, e5):  # B (6x6) = (B^T)^T applied to 6 values
    return (4 * e0, -4 * e1 + 4 * e2 - 2 * e3 + 2 * e4 + 4 * e5,
            -5 * e0 - 4 * e1 - 4 * e2 - e3 - e4, e1 - e2 + 2 * e3 - 2 * e4 - 5 * e5,
            e0 + e1 + e2 + e3 + e4, e5)


@jit
def input_adjoint(dv, top, left, th, tw, dx, lo, hi):
    """dx = the sum over tiles of B dV B^T, each added at its tile's place on the padded plane
    (neighbouring tiles overlap by 2 rows / columns), then the unpadded part: the transpose of
    input_transform. One plane at a time, so overlapping adds never race."""
    c, h, w = dx.shape[1], dx.shape[2], dx.shape[3]
    hp, wp = 4 * th + 2, 4 * tw + 2
    pl = np.empty((hp, wp), dtype=dx.dtype)
    t = np.empty((6, wp), dtype=dx.dtype)
    for p in range(lo, hi):
        i, ch = p // c, p % c
        pl[:] = 0.0
        base = i * th * tw
        for ty in range(th):
            t[:] = 0.0
            for a in range(6):  # B^T along each tile's rows, added onto the tile row's band
                ta = t[a]
                for tx in range(tw):
                    s, k = 4 * tx, base + ty * tw + tx
                    e0, e1, e2, e3, e4, e5 = b_(dv[6 * a, k, ch], dv[6 * a + 1, k, ch],
                                                dv[6 * a + 2, k, ch], dv[6 * a + 3, k, ch],
                                                dv[6 * a + 4, k, ch], dv[6 * a + 5, k, ch])
                    ta[s] += e0
                    ta[s + 1] += e1
                    ta[s + 2] += e2
                    ta[s + 3] += e3
                    ta[s + 4] += e4
                    ta[s + 5] += e5
            r0, r1, r2 = pl[4 * ty], pl[4 * ty + 1], pl[4 * ty + 2]
            r3, r4, r5 = pl[4 * ty + 3], pl[4 * ty + 4], pl[4 * ty + 5]
            for xx in range(wp):  # then B down the columns, every x at once
                d0, d1, d2, d3, d4, d5 = b_(t[0, xx], t[1, xx], t[2, xx], t[3, xx], t[4, xx],
                                            t[5, xx])
                r0[xx] += d0
                r1[xx] += d1
                r2[xx] += d2
                r3[xx] += d3
                r4[xx] += d4
                r5[xx] += d5
        dst = dx[i, ch]
        for yy in range(h):
            row, q = pl[yy + top], dst[yy]
            for xx in range(w):
                q[xx] = row[xx + left]
