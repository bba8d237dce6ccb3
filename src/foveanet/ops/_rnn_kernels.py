"""The recurrent layers' time loops (see ``ops/rnn.py``), with numba: one call runs one layer in
one direction over the whole sequence, forward or backward.

Each step is one product through NumPy's own ``cblas_?gemm`` (a ctypes function passed in at each
call, as in ``_addmm_kernels``) and one fused pass over the gates; no Python runs between steps.

Layout: feature-major. Every array holds one column per row of the layer's input (one sample at
one time step) and one row per feature: the gates (G H, N), the output (P, N), the states
(P, B) and (H, B). The columns of time step t are ``offsets[t] : offsets[t] + sizes[t]``,
``sizes`` never increasing (a padded batch: every size is B; a packed one: the sequences sorted
longest first). So each step's product is ``W_hh (G H, P) @ h (P, n)``, the weights as BLAS's
first operand: OpenBLAS takes these shapes 1.4-1.75x faster that way than as ``h @ W_hh^T``
(benchmarks/RESULTS.md, "Recurrent products: the weights first"). At step t only the first
``sizes[t]`` columns of the state are updated; the others keep theirs: in the forward direction
the final state of a sequence that has ended, in the reverse direction the initial state of one
that has not yet begun. So the final states come out at each sequence's own end.

The float32 gates use a rational tanh (Eigen's ``ptanh_float``, within ~2 ulp of tanh) and
sigmoid(x) = (1 + tanh(x / 2)) / 2, which vectorise; float64 uses the exact ``math`` functions.
``error_model="numpy"`` drops numba's division-by-zero check, which kept these loops scalar.
"""
import math

import numpy as np
from numba import njit, types
from numba.extending import overload

FLAGS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract", "arcp", "nsz"})
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def tanh(x):  # pragma: no cover - replaced by the overload inside compiled code
    return math.tanh(x)


def sigmoid(x):  # pragma: no cover - replaced by the overload inside compiled code
    return 1.0 / (1.0 + math.exp(-x))


@overload(tanh, inline="always")
def _tanh(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        def rational(x):
            c = np.float32(7.90531110763549805)  # tanh(c) rounds to 1 in float32
            x = min(max(x, -c), c)
            x2 = x * x
            p = np.float32(-2.76076847742355e-16)
            p = p * x2 + np.float32(2.00018790482477e-13)
            p = p * x2 + np.float32(-8.60467152213735e-11)
            p = p * x2 + np.float32(5.12229709037114e-08)
            p = p * x2 + np.float32(1.48572235717979e-05)
            p = p * x2 + np.float32(6.37261928875436e-04)
            p = p * x2 + np.float32(4.89352455891786e-03)
            q = np.float32(1.19825839466702e-06)
            q = q * x2 + np.float32(1.18534705686654e-04)
            q = q * x2 + np.float32(2.26843463243900e-03)
            q = q * x2 + np.float32(4.89352518554385e-03)
            return x * p / q
        return rational
    return lambda x: math.tanh(x)


@overload(sigmoid, inline="always")
def _sigmoid(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        def via_tanh(x):
            h = np.float32(0.5)
            return h + h * tanh(h * x)
        return via_tanh
    return lambda x: 1.0 / (1.0 + math.exp(-x))


@njit(**FLAGS)
def _copy_cols(dst, c0, src, s0, n):
    """dst[:, c0:c0 + n] = src[:, s0:s0 + n]."""
    for q in range(dst.shape[0]):
        d, s = dst[q], src[q]
        for b in range(n):
            d[c0 + b] = s[s0 + b]


# ------------------------------------------------------------------------------------------ LSTM
@njit(**FLAGS)
def lstm_forward(gemm, gates, bias, w_hh, w_hr, m, y, h, c, hp, cp, sizes, offsets, reverse,
                 save):
    """gates (4H, N): on entry W_ih x, on return the activations (i, f, g, o); bias (4H,):
    b_ih + b_hh, added in the gates' pass (a pass of its own over the gates cost ~10% of an
    inference).
    w_hh (4H, P); w_hr (P, H), or (0, 0) without a projection; m (H, B): scratch for o tanh(c)
    before the projection; y (P, N): the output; h (P, B), c (H, B): the initial states on
    entry, the final ones on return; hp (P, N), cp (H, N): the states before each step (when
    save)."""
    steps, hid, p, bsz, ncol = sizes.shape[0], c.shape[0], h.shape[0], h.shape[1], gates.shape[1]
    g4, proj, isz = 4 * hid, w_hr.shape[0] > 0, gates.itemsize
    one, zero = gates.dtype.type(1), gates.dtype.type(0)
    for k in range(steps):
        t = steps - 1 - k if reverse else k
        n, r0 = sizes[t], offsets[t]
        if save:
            _copy_cols(hp, r0, h, 0, n)
            _copy_cols(cp, r0, c, 0, n)
        gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, g4, n, p, one, w_hh.ctypes.data, p, h.ctypes.data,
             bsz, one, gates.ctypes.data + r0 * isz, ncol)
        for j in range(hid):
            gi, gf = gates[j, r0:r0 + n], gates[hid + j, r0:r0 + n]
            gg, go = gates[2 * hid + j, r0:r0 + n], gates[3 * hid + j, r0:r0 + n]
            cj = c[j]
            out = m[j] if proj else y[j, r0:r0 + n]
            bi, bf, bg, bo = bias[j], bias[hid + j], bias[2 * hid + j], bias[3 * hid + j]
            for b in range(n):
                ig, fg = sigmoid(gi[b] + bi), sigmoid(gf[b] + bf)
                g_, og = tanh(gg[b] + bg), sigmoid(go[b] + bo)
                cn = fg * cj[b] + ig * g_
                cj[b] = cn
                out[b] = og * tanh(cn)
                gi[b], gf[b], gg[b], go[b] = ig, fg, g_, og
        if proj:
            gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, p, n, hid, one, w_hr.ctypes.data, hid,
                 m.ctypes.data, bsz, zero, y.ctypes.data + r0 * isz, ncol)
        _copy_cols(h, 0, y, r0, n)


@njit(**FLAGS)
def lstm_backward(gemm, gates, cp, w_hh, w_hr, gy, dh, dc, dg, dm, mh, dhs, sizes, offsets,
                  reverse):
    """gates (4H, N): the activations; cp (H, N): the cell state before each step; gy (P, N):
    the output's gradient; dh (P, B), dc (H, B): on entry the final states' gradients, on return
    the initial ones'; dg (4H, N): out, the gradient of the gates before their activations; with
    a projection, dm (H, B) scratch, mh (H, N) out: o tanh(c), dhs (P, N) out: each step's dh."""
    steps, hid, p, bsz, ncol = sizes.shape[0], dc.shape[0], dh.shape[0], dh.shape[1], gates.shape[1]
    g4, proj, isz = 4 * hid, w_hr.shape[0] > 0, gates.itemsize
    one, zero = gates.dtype.type(1), gates.dtype.type(0)
    for k in range(steps - 1, -1, -1):
        t = steps - 1 - k if reverse else k
        n, r0 = sizes[t], offsets[t]
        for q in range(p):
            dq, gq = dh[q], gy[q]
            for b in range(n):
                dq[b] += gq[r0 + b]
        src = dh
        if proj:
            _copy_cols(dhs, r0, dh, 0, n)
            gemm(ROW_MAJOR, TRANS, NO_TRANS, hid, n, p, one, w_hr.ctypes.data, hid,
                 dh.ctypes.data, bsz, zero, dm.ctypes.data, bsz)
            src = dm
        for j in range(hid):
            gi, gf = gates[j, r0:r0 + n], gates[hid + j, r0:r0 + n]
            gg, go = gates[2 * hid + j, r0:r0 + n], gates[3 * hid + j, r0:r0 + n]
            di, df = dg[j, r0:r0 + n], dg[hid + j, r0:r0 + n]
            dgg, do = dg[2 * hid + j, r0:r0 + n], dg[3 * hid + j, r0:r0 + n]
            cpj, dcj, dmj = cp[j, r0:r0 + n], dc[j], src[j]
            for b in range(n):
                ig, fg, g_, og = gi[b], gf[b], gg[b], go[b]
                tc = tanh(fg * cpj[b] + ig * g_)
                d_m = dmj[b]
                d_c = dcj[b] + d_m * og * (one - tc * tc)
                di[b] = d_c * g_ * ig * (one - ig)
                df[b] = d_c * cpj[b] * fg * (one - fg)
                dgg[b] = d_c * ig * (one - g_ * g_)
                do[b] = d_m * tc * og * (one - og)
                dcj[b] = d_c * fg
            if proj:
                mj = mh[j, r0:r0 + n]
                for b in range(n):
                    mj[b] = go[b] * tanh(gf[b] * cpj[b] + gi[b] * gg[b])
        gemm(ROW_MAJOR, TRANS, NO_TRANS, p, n, g4, one, w_hh.ctypes.data, p,
             dg.ctypes.data + r0 * isz, ncol, zero, dh.ctypes.data, bsz)


# ------------------------------------------------------------------------------------------- GRU
@njit(**FLAGS)
def gru_forward(gemm, gates, b_ih, w_hh, b_hh, hw, y, h, hp, hn, sizes, offsets, reverse, save):
    """gates (3H, N): on entry W_ih x, on return the activations (r, z, n); b_ih, b_hh (3H,);
    hw (3H, B): scratch for W_hh h + b_hh; y (H, N): the output; h (H, B): the initial state on
    entry, the final one on return; hp (H, N): the state before each step, hn (H, N): W_hn h +
    b_hn of each step (when save)."""
    steps, hid, bsz = sizes.shape[0], h.shape[0], h.shape[1]
    g3 = 3 * hid
    one = gates.dtype.type(1)
    for k in range(steps):
        t = steps - 1 - k if reverse else k
        n, r0 = sizes[t], offsets[t]
        if save:
            _copy_cols(hp, r0, h, 0, n)
        for q in range(g3):
            hw[q, :n] = b_hh[q]
        gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, g3, n, hid, one, w_hh.ctypes.data, hid,
             h.ctypes.data, bsz, one, hw.ctypes.data, bsz)
        for j in range(hid):
            gr, gz, gn = gates[j, r0:r0 + n], gates[hid + j, r0:r0 + n], gates[2 * hid + j, r0:r0 + n]
            ar, az, an = hw[j], hw[hid + j], hw[2 * hid + j]
            hj, yj = h[j], y[j, r0:r0 + n]
            br, bz, bn = b_ih[j], b_ih[hid + j], b_ih[2 * hid + j]
            for b in range(n):
                r = sigmoid(gr[b] + br + ar[b])
                z = sigmoid(gz[b] + bz + az[b])
                nn = tanh(gn[b] + bn + r * an[b])
                hnew = (one - z) * nn + z * hj[b]
                gr[b], gz[b], gn[b] = r, z, nn
                yj[b] = hnew
                hj[b] = hnew
            if save:
                hnj = hn[j]
                for b in range(n):
                    hnj[r0 + b] = an[b]


@njit(**FLAGS)
def gru_backward(gemm, gates, hp, hn, w_hh, gy, dh, dgx, dgh, sizes, offsets, reverse):
    """gates (3H, N): the activations; hp, hn (H, N) as saved by ``gru_forward``; gy (H, N): the
    output's gradient; dh (H, B): on entry the final state's gradient, on return the initial
    one's; dgx, dgh (3H, N) out: the gradients of W_ih x + b_ih and of W_hh h + b_hh."""
    steps, hid, bsz, ncol = sizes.shape[0], dh.shape[0], dh.shape[1], gates.shape[1]
    g3 = 3 * hid
    one = gates.dtype.type(1)
    for k in range(steps - 1, -1, -1):
        t = steps - 1 - k if reverse else k
        n, r0 = sizes[t], offsets[t]
        for j in range(hid):
            gr, gz, gn = gates[j, r0:r0 + n], gates[hid + j, r0:r0 + n], gates[2 * hid + j, r0:r0 + n]
            hpj, hnj, gyj, dj = hp[j, r0:r0 + n], hn[j, r0:r0 + n], gy[j, r0:r0 + n], dh[j]
            xr, xz, xn = dgx[j, r0:r0 + n], dgx[hid + j, r0:r0 + n], dgx[2 * hid + j, r0:r0 + n]
            hr, hz, hnn = dgh[j, r0:r0 + n], dgh[hid + j, r0:r0 + n], dgh[2 * hid + j, r0:r0 + n]
            for b in range(n):
                r, z, nn = gr[b], gz[b], gn[b]
                d = dj[b] + gyj[b]
                dnp = d * (one - z) * (one - nn * nn)
                drp = dnp * hnj[b] * r * (one - r)
                dzp = d * (hpj[b] - nn) * z * (one - z)
                xr[b], xz[b], xn[b] = drp, dzp, dnp
                hr[b], hz[b], hnn[b] = drp, dzp, dnp * r
                dj[b] = d * z
        gemm(ROW_MAJOR, TRANS, NO_TRANS, hid, n, g3, one, w_hh.ctypes.data, hid,
             dgh.ctypes.data + r0 * dgh.itemsize, ncol, one, dh.ctypes.data, bsz)


# -------------------------------------------------------------------------------- plain RNN (Elman)
@njit(**FLAGS)
def rnn_forward(gemm, pre, bias, w_hh, h, hp, sizes, offsets, reverse, relu, save):
    """pre (H, N): on entry W_ih x, on return the output tanh(... + bias) or relu(...), bias (H,)
    = b_ih + b_hh;
    h (H, B): the initial state on entry, the final one on return; hp (H, N): the state before
    each step (when save)."""
    steps, hid, bsz, ncol = sizes.shape[0], h.shape[0], h.shape[1], pre.shape[1]
    one, zero = pre.dtype.type(1), pre.dtype.type(0)
    for k in range(steps):
        t = steps - 1 - k if reverse else k
        n, r0 = sizes[t], offsets[t]
        if save:
            _copy_cols(hp, r0, h, 0, n)
        gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, hid, n, hid, one, w_hh.ctypes.data, hid,
             h.ctypes.data, bsz, one, pre.ctypes.data + r0 * pre.itemsize, ncol)
        for j in range(hid):
            row, hj, bj = pre[j, r0:r0 + n], h[j], bias[j]
            for b in range(n):
                v = row[b] + bj
                v = (v if v > zero else zero) if relu else tanh(v)
                row[b] = v
                hj[b] = v


@njit(**FLAGS)
def rnn_backward(gemm, y, w_hh, gy, dh, dg, sizes, offsets, reverse, relu):
    """y (H, N): the output; gy (H, N): its gradient; dh (H, B): on entry the final state's
    gradient, on return the initial one's; dg (H, N) out: the gradient before the activation."""
    steps, hid, bsz, ncol = sizes.shape[0], dh.shape[0], dh.shape[1], y.shape[1]
    one, zero = y.dtype.type(1), y.dtype.type(0)
    for k in range(steps - 1, -1, -1):
        t = steps - 1 - k if reverse else k
        n, r0 = sizes[t], offsets[t]
        for j in range(hid):
            yj, gyj, dj, d = y[j, r0:r0 + n], gy[j, r0:r0 + n], dh[j], dg[j, r0:r0 + n]
            for b in range(n):
                v = dj[b] + gyj[b]
                d[b] = (v if yj[b] > zero else zero) if relu else v * (one - yj[b] * yj[b])
        gemm(ROW_MAJOR, TRANS, NO_TRANS, hid, n, hid, one, w_hh.ctypes.data, hid,
             dg.ctypes.data + r0 * dg.itemsize, ncol, zero, dh.ctypes.data, bsz)
