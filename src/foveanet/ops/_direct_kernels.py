"""The compiled loops of the direct convolution (see ``_direct``), with numba.

Imported only by ``_direct`` (so numba stays optional); compiled on the first call per dtype and
cached on disk like ``_winograd_kernels``. Both kernels work on the samples [lo, hi).

Layout. A padded input plane (Hp x Wp) is read flat, and the outputs are computed on the padded
width: flat position i = y * Wp + x, for y < OH and every x < Wp, of which only x < OW are kept.
Then the tap (ky, kx) of every output is the input at i + ky * Wp + kx, so one tap over the whole
plane is one long contiguous run (LeNet-5's 10x10 outputs: runs of 136, not 10 runs of 10) that
the compiler vectorises. The columns x >= OW read past a row's end; their results are dropped
(forward) or multiplied by a zeroed gradient (weight gradient), and the flat planes carry a few
spare zeros at their end for the last of those reads. The kernels pad each sample's planes
themselves, into a scratch buffer whose border stays zero (``_pad_sample``): a padded copy of the
whole batch beforehand cost 5.2 of 27.6 ms on resnet20's 16->16 layer at batch 256.

Register blocking. The kernel row is taken in blocks of ``width`` = 3 or 5 taps (weights
zero-padded to a multiple of it: 3x3 kernels in one block of 3, 5x5 in one of 5), and two output
channels at a time: each of the shifted input values loaded at i feeds two multiply-adds per
tap, and an output is loaded and stored once per block. The taps of a block are written out by
hand (``_pass3`` / ``_pass5``, ``_dots3`` / ``_dots5``): with a loop over them the compiler
vectorised the wrong loop (measured 3-4x slower).
"""
import numpy as np
from numba import njit

jit = njit(cache=True, nogil=True, fastmath=True)
inline = njit(inline="always", fastmath=True)


@inline
def _pass5(a0, a1, xr, s, p, q, span):
    """a0[i] += sum_t p[t] * xr[s + i + t], a1 likewise with q, for t < 5 and i < span."""
    p0, p1, p2, p3, p4 = p[0], p[1], p[2], p[3], p[4]
    q0, q1, q2, q3, q4 = q[0], q[1], q[2], q[3], q[4]
    x0, x1, x2, x3, x4 = xr[s:], xr[s + 1:], xr[s + 2:], xr[s + 3:], xr[s + 4:]
    for i in range(span):
        v0, v1, v2, v3, v4 = x0[i], x1[i], x2[i], x3[i], x4[i]
        a0[i] += p0 * v0 + p1 * v1 + p2 * v2 + p3 * v3 + p4 * v4
        a1[i] += q0 * v0 + q1 * v1 + q2 * v2 + q3 * v3 + q4 * v4


@inline
def _pass3(a0, a1, x0, x1, x2, p, q, span):
    """``_pass5`` for a block of 3 taps, tap t reading the run xt (for stride 1, xr[s + t:]; the
    stride-2 kernels pass runs of two phase planes)."""
    p0, p1, p2, q0, q1, q2 = p[0], p[1], p[2], q[0], q[1], q[2]
    for i in range(span):
        v0, v1, v2 = x0[i], x1[i], x2[i]
        a0[i] += p0 * v0 + p1 * v1 + p2 * v2
        a1[i] += q0 * v0 + q1 * v1 + q2 * v2


@inline
def _pass3x4(acc, x0, x1, x2, p, q, r, u, span):
    """``_pass3`` for four output channels (acc rows 0-3, weights p, q, r, u): each input value
    loaded feeds four multiply-adds; measured 1.17-1.20x faster than two passes of two."""
    a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
    p0, p1, p2, q0, q1, q2 = p[0], p[1], p[2], q[0], q[1], q[2]
    r0, r1, r2, u0, u1, u2 = r[0], r[1], r[2], u[0], u[1], u[2]
    for i in range(span):
        v0, v1, v2 = x0[i], x1[i], x2[i]
        a0[i] += p0 * v0 + p1 * v1 + p2 * v2
        a1[i] += q0 * v0 + q1 * v1 + q2 * v2
        a2[i] += r0 * v0 + r1 * v1 + r2 * v2
        a3[i] += u0 * v0 + u1 * v1 + u2 * v2


@inline
def _pad_sample(x, n, top, left, wq, planes):
    """Sample n's planes of x into the flat planes (C, >= Hp*wq) at row top, column left; the
    rest of ``planes`` is left as it is (zero, from its allocation)."""
    h, w = x.shape[2], x.shape[3]
    for c in range(x.shape[1]):
        for y in range(h):
            s = (top + y) * wq + left
            planes[c, s:s + w] = x[n, c, y]


@jit
def forward(x, top, left, hp, wq, wp, b, width, step, rows, out, lo, hi, olo, ohi):
    """out[n, o] = b[o] + sum_{c, ky, kx} wp[o, c, ky, kx] * plane(n, c)[y + ky, x + kx] for n in
    [lo, hi) and o in [olo, ohi) (a multiple of ``step`` apart, or up to O), plane(n, c) being
    x[n, c] (N, C, H, W) zero-padded to hp x wq rows and columns (top rows and left columns
    before it), wp (O, C, KH, J*width). Output channels ``step`` at a time: 4 for blocks of 3
    taps (the last one to three channels of an O that is not a multiple of 4 in pairs), 2 with
    five taps (four measured slower). The outputs go in tiles of ``rows`` padded rows, so that a
    large image's accumulators stay in cache while every tap passes over them."""
    o_n, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    c_n, kh, j_n = wp.shape[1], wp.shape[2], wp.shape[3] // width
    span = (oh - 1) * wq + ow
    acc = np.empty((step, min(span, rows * wq)), dtype=out.dtype)
    xf = np.zeros((c_n, hp * wq + j_n * width), dtype=out.dtype)
    for n in range(lo, hi):
        _pad_sample(x, n, top, left, wq, xf)
        for y0 in range(0, oh, rows):
            t0 = y0 * wq
            m = min(span, t0 + rows * wq) - t0
            o = olo
            while o < ohi:
                st = 4 if step == 4 and o + 4 <= o_n else 2
                o1 = min(o + 1, o_n - 1)  # an odd last channel is computed twice
                for k in range(st):
                    acc[k, :m] = b[min(o + k, o_n - 1)]
                for c in range(c_n):
                    xr = xf[c]
                    for ky in range(kh):
                        for j in range(j_n):
                            e, s = width * j, ky * wq + width * j + t0
                            p, q = wp[o, c, ky, e:e + width], wp[o1, c, ky, e:e + width]
                            if st == 4:
                                _pass3x4(acc, xr[s:], xr[s + 1:], xr[s + 2:], p, q,
                                         wp[o + 2, c, ky, e:e + 3], wp[o + 3, c, ky, e:e + 3], m)
                            elif width == 3:
                                _pass3(acc[0], acc[1], xr[s:], xr[s + 1:], xr[s + 2:], p, q, m)
                            else:
                                _pass5(acc[0], acc[1], xr, s, p, q, m)
                for k in range(st):
                    dst, src = out[n, min(o + k, o_n - 1)], acc[k]
                    for y in range(y0, min(oh, y0 + rows)):
                        r = (y - y0) * wq
                        for q in range(ow):  # a loop: a slice copy per row measured ~3% slower
                            dst[y, q] = src[r + q]
                o += st


@inline
def _dots5(g0, g1, xr, s, r, t, span):
    """r[k] += sum_i g0[i] * xr[s + i + k], t likewise with g1, for k < 5."""
    x0, x1, x2, x3, x4 = xr[s:], xr[s + 1:], xr[s + 2:], xr[s + 3:], xr[s + 4:]
    p0 = p1 = p2 = p3 = p4 = q0 = q1 = q2 = q3 = q4 = r.dtype.type(0)
    for i in range(span):
        u, w = g0[i], g1[i]
        v0, v1, v2, v3, v4 = x0[i], x1[i], x2[i], x3[i], x4[i]
        p0 += u * v0
        p1 += u * v1
        p2 += u * v2
        p3 += u * v3
        p4 += u * v4
        q0 += w * v0
        q1 += w * v1
        q2 += w * v2
        q3 += w * v3
        q4 += w * v4
    r[0] += p0
    r[1] += p1
    r[2] += p2
    r[3] += p3
    r[4] += p4
    t[0] += q0
    t[1] += q1
    t[2] += q2
    t[3] += q3
    t[4] += q4


@inline
def _dots3(g0, g1, x0, x1, x2, r, t, span):
    """``_dots5`` for a block of 3 taps, reading the runs x0, x1, x2 (as ``_pass3``)."""
    p0 = p1 = p2 = q0 = q1 = q2 = r.dtype.type(0)
    for i in range(span):
        u, w = g0[i], g1[i]
        v0, v1, v2 = x0[i], x1[i], x2[i]
        p0 += u * v0
        p1 += u * v1
        p2 += u * v2
        q0 += w * v0
        q1 += w * v1
        q2 += w * v2
    r[0] += p0
    r[1] += p1
    r[2] += p2
    t[0] += q0
    t[1] += q1
    t[2] += q2


@jit
def weight_grad(x, top, left, hp, wq, g, width, gw, lo, hi):
    """gw[o, c, ky, kx] += sum over n in [lo, hi), y, x of g[n, o, y, x] * plane(n, c)[y + ky,
    x + kx] (planes as in ``forward``): the same flat layout, g spread onto the padded width with
    zeros at x >= OW; 2 x width
    dot products (two channels, a block of taps) per pass over a plane. An odd last channel adds
    into a scratch row (its pair's gradient is all zero)."""
    o_n, oh, ow = g.shape[1], g.shape[2], g.shape[3]
    c_n, kh, j_n = gw.shape[1], gw.shape[2], gw.shape[3] // width
    span = (oh - 1) * wq + ow
    gs = np.zeros((2, span), dtype=g.dtype)
    g0, g1 = gs[0], gs[1]
    spare = np.zeros(width, dtype=gw.dtype)
    xf = np.zeros((c_n, hp * wq + j_n * width), dtype=g.dtype)
    for n in range(lo, hi):
        _pad_sample(x, n, top, left, wq, xf)
        for o in range(0, o_n, 2):
            pair = o + 1 < o_n
            for y in range(oh):
                g0[y * wq:y * wq + ow] = g[n, o, y]
                if pair:
                    g1[y * wq:y * wq + ow] = g[n, o + 1, y]
                else:
                    g1[y * wq:y * wq + ow] = 0
            for c in range(c_n):
                xr = xf[c]
                for ky in range(kh):
                    for j in range(j_n):
                        e = width * j
                        r = gw[o, c, ky, e:e + width]
                        t = gw[o + 1, c, ky, e:e + width] if pair else spare
                        if width == 3:
                            s = ky * wq + e
                            _dots3(g0, g1, xr[s:], xr[s + 1:], xr[s + 2:], r, t, span)
                        else:
                            _dots5(g0, g1, xr, ky * wq + e, r, t, span)


# ---------------------------------------------------------------- 3x3 stride 2: the phase planes
# A stride-2 convolution reads every other pixel, so its taps are not one contiguous run over a
# plane. Split the padded plane into its four phases, P[a, b][u, v] = xpad[2u + a, 2v + b]: tap
# (ky, kx) of output (y, x) is P[ky % 2, kx % 2][y + ky // 2, x + kx // 2], which is a stride-1
# read again. With the phases laid out flat at width wq = OW + 1 (the outputs computed on that
# width, the last column dropped, as above), a kernel row ky reads the even phase at s + i, the
# odd one at s + i and the even one at s + i + 1, s = (ky // 2) * wq: the stride-1 kernels'
# 3-tap blocks (``_pass3``, ``_pass3x4``, ``_dots3``) on runs of two planes. No multiply-adds are
# added (a 2x2 kernel over the four phases as channels would do 16 instead of 9).

@inline
def _phase_sample(x, n, top, left, hq, wq, planes, at):
    """Sample n of x (N, C, H, W), zero-padded by top rows and left columns, into its phase
    planes (4, C, >= at + hq * wq): phase 2a + b holds xpad[2u + a, 2v + b] at at + u * wq + v.
    Only the
    positions of real pixels are written; the others stay zero (from the buffer's allocation).
    Each input row is read once, its even and odd pixels going to the two phases of its row."""
    h, w = x.shape[2], x.shape[3]
    e0 = left % 2  # the first pixel of the row in phase b = 0 (xpad column 2v)
    m_e = min((w - e0 + 1) // 2, wq - (left + e0) // 2)
    m_o = min((w - (1 - e0) + 1) // 2, wq - (left + 1 - e0) // 2)
    for c in range(x.shape[1]):
        for yy in range(h):
            r = yy + top
            u = r // 2
            if u >= hq:
                break
            a = r - 2 * u
            src = x[n, c, yy]
            pe, po = planes[2 * a, c], planes[2 * a + 1, c]
            be, bo = at + u * wq + (left + e0) // 2, at + u * wq + (left + 1 - e0) // 2
            for v in range(m_e):
                pe[be + v] = src[e0 + 2 * v]
            for v in range(m_o):
                po[bo + v] = src[1 - e0 + 2 * v]


@inline
def _group(n_samples, block):
    """Samples per pass: enough for runs of ~512 (a plane of 8x8 outputs alone gives runs of 71,
    which measured 1.2x slower per multiply-add than runs of 271)."""
    return max(1, min(n_samples, 512 // block))


@jit
def forward_s2(x, top, left, w, b, out, lo, hi):
    """out[n, o] = b[o] + sum_{c, ky, kx} w[o, c, ky, kx] * xpad(n, c)[2y + ky, 2x + kx] for n in
    [lo, hi): a 3x3 stride-2 convolution, x (N, C, H, W) zero-padded by top rows and left
    columns (and as far as needed at the far edges), w (O, C, 3, 3). Four output channels at a
    time when O is a multiple of 4, else two. Small planes go several samples per pass, their
    phase planes one after the other (blocks of hq * wq; the outputs between them dropped)."""
    o_n, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    c_n = w.shape[1]
    hq, wq = oh + 1, ow + 1
    blk = hq * wq
    m = _group(hi - lo, blk)
    step = 4 if o_n % 4 == 0 else 2
    acc = np.empty((step, m * blk), dtype=out.dtype)
    ph = np.zeros((4, c_n, m * blk + 1), dtype=out.dtype)
    for n0 in range(lo, hi, m):
        mm = min(m, hi - n0)
        span = (mm - 1) * blk + (oh - 1) * wq + ow
        for j in range(mm):
            _phase_sample(x, n0 + j, top, left, hq, wq, ph, j * blk)
        for o in range(0, o_n, step):
            o1 = min(o + 1, o_n - 1)  # an odd last channel is computed twice
            for k in range(step):
                acc[k] = b[min(o + k, o_n - 1)]
            for c in range(c_n):
                for ky in range(3):
                    a, s = ky % 2, (ky // 2) * wq
                    xe, xo = ph[2 * a, c], ph[2 * a + 1, c]  # taps 0 and 2 even, 1 odd
                    if step == 4:
                        _pass3x4(acc, xe[s:], xo[s:], xe[s + 1:], w[o, c, ky], w[o + 1, c, ky],
                                 w[o + 2, c, ky], w[o + 3, c, ky], span)
                    else:
                        _pass3(acc[0], acc[1], xe[s:], xo[s:], xe[s + 1:], w[o, c, ky],
                               w[o1, c, ky], span)
            for k in range(step):
                src = acc[k]
                for j in range(mm):
                    dst = out[n0 + j, min(o + k, o_n - 1)]
                    for y in range(oh):
                        for q in range(ow):  # as in ``forward``
                            dst[y, q] = src[j * blk + y * wq + q]


@jit
def weight_grad_s2(x, top, left, g, gw, lo, hi):
    """gw[o, c, ky, kx] += sum over n in [lo, hi), y, x of g[n, o, y, x] * xpad(n, c)[2y + ky,
    2x + kx]: ``forward_s2``'s phases and sample groups, g spread onto their layout with zeros
    at x >= OW and between the samples."""
    o_n, oh, ow = g.shape[1], g.shape[2], g.shape[3]
    c_n = gw.shape[1]
    hq, wq = oh + 1, ow + 1
    blk = hq * wq
    m = _group(hi - lo, blk)
    gs = np.zeros((2, m * blk), dtype=g.dtype)
    g0, g1 = gs[0], gs[1]
    spare = np.zeros(3, dtype=gw.dtype)
    ph = np.zeros((4, c_n, m * blk + 1), dtype=g.dtype)
    for n0 in range(lo, hi, m):
        mm = min(m, hi - n0)
        span = (mm - 1) * blk + (oh - 1) * wq + ow
        for j in range(mm):
            _phase_sample(x, n0 + j, top, left, hq, wq, ph, j * blk)
        for o in range(0, o_n, 2):
            pair = o + 1 < o_n
            for j in range(mm):
                for y in range(oh):
                    e = j * blk + y * wq
                    g0[e:e + ow] = g[n0 + j, o, y]
                    if pair:
                        g1[e:e + ow] = g[n0 + j, o + 1, y]
                    else:
                        g1[e:e + ow] = 0
            for c in range(c_n):
                for ky in range(3):
                    a, s = ky % 2, (ky // 2) * wq
                    t = gw[o + 1, c, ky] if pair else spare
                    xe, xo = ph[2 * a, c], ph[2 * a + 1, c]
                    _dots3(g0, g1, xe[s:], xo[s:], xe[s + 1:], gw[o, c, ky], t, span)


@inline
def _scatter_pass(p00, p01, p10, p11, gf, wq, w, span):
    """One output channel's share of one input channel's phase planes of dL/dxpad (see
    ``input_grad_s2``): reads gf at i, i + 1, i + wq, i + wq + 1, w the (3, 3) kernel."""
    w00, w01, w02, w10, w11 = w[0, 0], w[0, 1], w[0, 2], w[1, 0], w[1, 1]
    w12, w20, w21, w22 = w[1, 2], w[2, 0], w[2, 1], w[2, 2]
    g0, g1, g2, g3 = gf[0:], gf[1:], gf[wq:], gf[wq + 1:]
    for i in range(span):
        a, b, c, d = g0[i], g1[i], g2[i], g3[i]
        p00[i] += w22 * a + w20 * b + w02 * c + w00 * d
        p01[i] += w21 * b + w01 * d
        p10[i] += w12 * c + w10 * d
        p11[i] += w11 * d


@jit
def input_grad_s2(g, top, left, w, gx, lo, hi):
    """gx[n, c, 2u + a - top, 2v + b - left] = sum_o sum over the taps (ky, kx) with ky % 2 = a,
    kx % 2 = b of w[o, c, ky, kx] * g[n, o, u - ky // 2, v - kx // 2], for n in [lo, hi): the
    adjoint of ``forward_s2``, computed per phase of the padded input (a stride-1 pass over g
    again: each phase reads g at the offsets 0, 1, wq and wq + 1 of a flat copy of g that has a
    zero row on top and a zero column on the left), then written to its pixels of gx. Small
    planes go several samples per pass, as in ``forward_s2`` (blocks of (hq + 1) * wq)."""
    o_n, oh, ow = g.shape[1], g.shape[2], g.shape[3]
    c_n, h, wd = gx.shape[1], gx.shape[2], gx.shape[3]
    hq, wq = oh + 1, ow + 1
    blk = (hq + 1) * wq
    m = _group(hi - lo, blk)
    gf = np.zeros((o_n, m * blk + 1), dtype=g.dtype)
    acc = np.empty((4, m * blk), dtype=g.dtype)
    for n0 in range(lo, hi, m):
        mm = min(m, hi - n0)
        span = (mm - 1) * blk + hq * wq
        for j in range(mm):
            for o in range(o_n):
                for y in range(oh):
                    s = j * blk + (y + 1) * wq + 1
                    gf[o, s:s + ow] = g[n0 + j, o, y]
        for c in range(c_n):
            acc[:, :span] = 0
            for o in range(o_n):
                _scatter_pass(acc[0], acc[1], acc[2], acc[3], gf[o], wq, w[o, c], span)
            for j in range(mm):
                for a in range(2):
                    for b in range(2):
                        v0 = (left - b + 1) // 2
                        v1 = min(wq, (wd + left - b + 1) // 2)
                        src = acc[2 * a + b]
                        for u in range(hq):
                            yy = 2 * u + a - top
                            if yy < 0 or yy >= h:
                                continue
                            dst, base = gx[n0 + j, c, yy], j * blk + u * wq
                            xx0 = 2 * v0 + b - left
                            for v in range(v1 - v0):
                                dst[xx0 + 2 * v] = src[base + v0 + v]
