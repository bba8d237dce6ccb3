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

Channel loops in blocks of ``LANES``. A loop over C channels whose length the compiler does not
know is vectorised with several vectors per iteration (64 floats on AVX-512), so at C = 16 or 32 it
ran in its scalar remainder. The transform steps of the input transform and both adjoints
(``_rows_*``) run whole blocks of ``LANES`` channels, a loop of constant length that becomes a few
vector instructions, then one block of ``HALF`` where that many are left (an AVX2 vector: 40 or 24
channels would otherwise run 8 scalar), then the remainder (the output transform's plain loops
measured faster); and the copies between a sample's planes and its channels-innermost buffer walk
the planes' rows contiguously. Measured on 28 samples of 32 channels at 32x32 (one thread): the
input transform 4.2 -> 2.3 ms, the same results bit for bit.

Constants in the data's dtype (``_consts``). numba types an integer or float literal times a
float32 as float64, so ``4 * d0`` ran the float32 transforms in double precision, converting
every value there and back; the transforms take 2, 4, 5 and 8 made in the array's dtype, and
share their subexpressions (figures: benchmarks/RESULTS.md, "Winograd convolutions").
"""
import numpy as np
from numba import njit

jit = njit(cache=True, nogil=True)
inline = njit(inline="always")
LANES = 16  # channels per block of the transform steps: one AVX-512 vector of float32
HALF = LANES // 2  # then one block of 8 (an AVX2 vector) where that many are left


@inline
def bt(d0, d1, d2, d3, d4, d5, two, four, five):  # B^T (6x6) applied to 6 values
    p, q = d4 - four * d2, d3 - four * d1
    r, s = d4 - d2, two * (d3 - d1)
    return four * d0 - five * d2 + d4, p + q, p - q, r + s, r - s, four * d1 - five * d3 + d5


@inline
def at(m0, m1, m2, m3, m4, m5, two, four, eight):  # A^T (4x6) applied to 6 values
    s12, d12, s34, d34 = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return m0 + s12 + s34, d12 + two * d34, s12 + four * s34, d12 + eight * d34 + m5


@inline
def a_(g0, g1, g2, g3, two, four, eight):  # A (6x4) applied to 4 values
    e, o = g0 + g2, g1 + g3
    p, q = g0 + four * g2, two * g1 + eight * g3
    return g0, e + o, e - o, p + q, p - q, g3


@inline
def b_(e0, e1, e2, e3, e4, e5, two, four, five):  # B (6x6) = (B^T)^T applied to 6 values
    s12, d12, s34, d34 = e1 + e2, e1 - e2, e3 + e4, e3 - e4
    return (four * e0, four * (e5 - d12) - two * d34, -five * e0 - four * s12 - s34,
            d12 + two * d34 - five * e5, e0 + s12 + s34, e5)


@inline
def _consts(a):
    """2, 4, 5 and 8 in a's dtype: a literal would make float32 arithmetic float64."""
    f = a.dtype.type
    return f(2), f(4), f(5), f(8)


@inline
def _bt_at(r0, r1, r2, r3, r4, r5, d0, d1, d2, d3, d4, d5, c, two, four, five):
    d0[c], d1[c], d2[c], d3[c], d4[c], d5[c] = bt(r0[c], r1[c], r2[c], r3[c], r4[c], r5[c],
                                                  two, four, five)


@inline
def _rows_bt(r0, r1, r2, r3, r4, r5, d0, d1, d2, d3, d4, d5, n):
    """d_j[c] = (B^T [r_0[c] ... r_5[c]])_j for c < n."""
    two, four, five, _ = _consts(d0)
    cv = n - n % LANES
    for c0 in range(0, cv, LANES):
        for cc in range(LANES):
            _bt_at(r0, r1, r2, r3, r4, r5, d0, d1, d2, d3, d4, d5, c0 + cc, two, four, five)
    if n - cv >= HALF:
        for cc in range(HALF):
            _bt_at(r0, r1, r2, r3, r4, r5, d0, d1, d2, d3, d4, d5, cv + cc, two, four, five)
        cv += HALF
    for c in range(cv, n):
        _bt_at(r0, r1, r2, r3, r4, r5, d0, d1, d2, d3, d4, d5, c, two, four, five)


@inline
def _a_at(r0, r1, r2, r3, d0, d1, d2, d3, d4, d5, c, two, four, eight):
    d0[c], d1[c], d2[c], d3[c], d4[c], d5[c] = a_(r0[c], r1[c], r2[c], r3[c], two, four, eight)


@inline
def _rows_a(r0, r1, r2, r3, d0, d1, d2, d3, d4, d5, n):
    """d_j[c] = (A [r_0[c] ... r_3[c]])_j for c < n."""
    two, four, _, eight = _consts(d0)
    cv = n - n % LANES
    for c0 in range(0, cv, LANES):
        for cc in range(LANES):
            _a_at(r0, r1, r2, r3, d0, d1, d2, d3, d4, d5, c0 + cc, two, four, eight)
    if n - cv >= HALF:
        for cc in range(HALF):
            _a_at(r0, r1, r2, r3, d0, d1, d2, d3, d4, d5, cv + cc, two, four, eight)
        cv += HALF
    for c in range(cv, n):
        _a_at(r0, r1, r2, r3, d0, d1, d2, d3, d4, d5, c, two, four, eight)


@inline
def _b_add(e0, e1, e2, e3, e4, e5, q0, q1, q2, q3, q4, q5, c, two, four, five):
    v0, v1, v2, v3, v4, v5 = b_(e0[c], e1[c], e2[c], e3[c], e4[c], e5[c], two, four, five)
    q0[c] += v0
    q1[c] += v1
    q2[c] += v2
    q3[c] += v3
    q4[c] += v4
    q5[c] += v5


@inline
def _rows_b_add(e0, e1, e2, e3, e4, e5, q0, q1, q2, q3, q4, q5, n):
    """q_j[c] += (B [e_0[c] ... e_5[c]])_j for c < n."""
    two, four, five, _ = _consts(q0)
    cv = n - n % LANES
    for c0 in range(0, cv, LANES):
        for cc in range(LANES):
            _b_add(e0, e1, e2, e3, e4, e5, q0, q1, q2, q3, q4, q5, c0 + cc, two, four, five)
    if n - cv >= HALF:
        for cc in range(HALF):
            _b_add(e0, e1, e2, e3, e4, e5, q0, q1, q2, q3, q4, q5, cv + cc, two, four, five)
        cv += HALF
    for c in range(cv, n):
        _b_add(e0, e1, e2, e3, e4, e5, q0, q1, q2, q3, q4, q5, c, two, four, five)


@inline
def _planes_to_buffer(xi, buf, top, left, y0, y1, x0, x1):
    """buf[yy + top, xx + left, c] = xi[c, yy, xx] for yy in [y0, y1), xx in [x0, x1): the
    planes read row by row."""
    for c in range(xi.shape[0]):
        for yy in range(y0, y1):
            row, src = buf[yy + top], xi[c, yy]
            for xx in range(x0, x1):
                row[xx + left, c] = src[xx]


@inline
def _buffer_to_planes(buf, top, left, out):
    """out[c, yy, xx] = buf[yy + top, xx + left, c] over out's planes, written row by row."""
    for c in range(out.shape[0]):
        for yy in range(out.shape[1]):
            row, q = out[c, yy], buf[yy + top]
            for xx in range(out.shape[2]):
                row[xx] = q[xx + left, c]


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
        _planes_to_buffer(x[i], buf, top, left, y0, y1, x0, x1)
        for ty in range(th):
            for tx in range(tw):
                k, ys, xs = i * th * tw + ty * tw + tx, 4 * ty, 4 * tx
                for xx in range(6):  # B^T down each column of the 6x6 patch
                    _rows_bt(buf[ys, xs + xx], buf[ys + 1, xs + xx], buf[ys + 2, xs + xx],
                             buf[ys + 3, xs + xx], buf[ys + 4, xs + xx], buf[ys + 5, xs + xx],
                             t[0, xx], t[1, xx], t[2, xx], t[3, xx], t[4, xx], t[5, xx], c_n)
                for a in range(6):  # then B along each of its rows
                    ta = t[a]
                    _rows_bt(ta[0], ta[1], ta[2], ta[3], ta[4], ta[5], v[6 * a, k],
                             v[6 * a + 1, k], v[6 * a + 2, k], v[6 * a + 3, k], v[6 * a + 4, k],
                             v[6 * a + 5, k], c_n)


@jit
def output_transform(m, th, tw, out, lo, hi):
    """out's 4x4 block of every tile = A^T M A, cropped at out's far edges (each sample's blocks
    go to a (4 th, 4 tw, O) buffer first, copied into out's planes at the end)."""
    o_n = out.shape[1]
    two, four, _, eight = _consts(out)
    s = np.empty((4, 6, o_n), dtype=out.dtype)
    buf = np.empty((4 * th, 4 * tw, o_n), dtype=out.dtype)
    for i in range(lo, hi):
        for ty in range(th):
            for tx in range(tw):
                k = i * th * tw + ty * tw + tx
                for b in range(6):  # A^T down each column of the 6x6 block
                    r0, r1, r2 = m[b, k], m[6 + b, k], m[12 + b, k]
                    r3, r4, r5 = m[18 + b, k], m[24 + b, k], m[30 + b, k]
                    for c in range(o_n):  # (the compiler's own vectors: faster than LANES here)
                        s[0, b, c], s[1, b, c], s[2, b, c], s[3, b, c] = at(
                            r0[c], r1[c], r2[c], r3[c], r4[c], r5[c], two, four, eight)
                for a in range(4):  # then A along each of its rows
                    sa = s[a]
                    d0, d1 = buf[4 * ty + a, 4 * tx], buf[4 * ty + a, 4 * tx + 1]
                    d2, d3 = buf[4 * ty + a, 4 * tx + 2], buf[4 * ty + a, 4 * tx + 3]
                    for c in range(o_n):
                        d0[c], d1[c], d2[c], d3[c] = at(sa[0, c], sa[1, c], sa[2, c], sa[3, c],
                                                        sa[4, c], sa[5, c], two, four, eight)
        _buffer_to_planes(buf, 0, 0, out[i])


@jit
def output_adjoint(g, th, tw, dm, lo, hi):
    """dm[6a + b, tile, o] = (A dY A^T)[a, b] of every 4x4 block dY of the gradient (zero past
    its far edges): the transpose of output_transform."""
    o_n, oh, ow = g.shape[1], g.shape[2], g.shape[3]
    buf = np.zeros((4 * th, 4 * tw, o_n), dtype=g.dtype)  # zero past the gradient's far edges
    t = np.empty((6, 4, o_n), dtype=g.dtype)
    for i in range(lo, hi):
        _planes_to_buffer(g[i], buf, 0, 0, 0, oh, 0, ow)
        for ty in range(th):
            for tx in range(tw):
                k, ys, xs = i * th * tw + ty * tw + tx, 4 * ty, 4 * tx
                for xx in range(4):  # A down each column of the 4x4 block
                    _rows_a(buf[ys, xs + xx], buf[ys + 1, xs + xx], buf[ys + 2, xs + xx],
                            buf[ys + 3, xs + xx], t[0, xx], t[1, xx], t[2, xx], t[3, xx],
                            t[4, xx], t[5, xx], o_n)
                for a in range(6):  # then A along each of its rows
                    ta = t[a]
                    _rows_a(ta[0], ta[1], ta[2], ta[3], dm[6 * a, k], dm[6 * a + 1, k],
                            dm[6 * a + 2, k], dm[6 * a + 3, k], dm[6 * a + 4, k],
                            dm[6 * a + 5, k], o_n)


@jit
def input_adjoint(dv, top, left, th, tw, dx, lo, hi):
    """dx = the sum over tiles of B dV B^T, each added at its tile's place on the padded plane
    (neighbouring tiles overlap by 2 rows / columns), then the unpadded part: the transpose of
    input_transform. One sample at a time, so overlapping adds never race."""
    c_n = dx.shape[1]
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
                    ta = t[a]
                    _rows_b_add(dv[6 * a, k], dv[6 * a + 1, k], dv[6 * a + 2, k],
                                dv[6 * a + 3, k], dv[6 * a + 4, k], dv[6 * a + 5, k], ta[s],
                                ta[s + 1], ta[s + 2], ta[s + 3], ta[s + 4], ta[s + 5], c_n)
            for xx in range(wp):  # then B down the columns
                _rows_b_add(t[0, xx], t[1, xx], t[2, xx], t[3, xx], t[4, xx], t[5, xx],
                            pl[4 * ty, xx], pl[4 * ty + 1, xx], pl[4 * ty + 2, xx],
                            pl[4 * ty + 3, xx], pl[4 * ty + 4, xx], pl[4 * ty + 5, xx], c_n)
        _buffer_to_planes(pl, top, left, dx[i])
