"""The recurrent layers' time loops (see ``ops/rnn.py``), with numba: one call runs one layer in
one direction over the whole sequence, forward or backward.

Each step is one product through NumPy's own ``cblas_?gemm`` (a ctypes function passed in at each
call, as in ``_addmm_kernels``) and one fused pass over the gates; no Python runs between steps.

Rows. The input of a layer is a matrix of rows in time order, the rows of time step t being
``offsets[t] : offsets[t] + sizes[t]`` and ``sizes`` never increasing (a padded batch: every
size is B; a packed one: the sequences sorted longest first). At step t only the first
``sizes[t]`` rows of the state are updated; the others keep theirs: in the forward direction the
final state of a sequence that has ended, in the reverse direction the initial state of one that
has not yet begun. So the final states come out at each sequence's own end.

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
def _copy_rows(dst, src, n):
    for b in range(n):
        dst[b, :] = src[b, :]


# ------------------------------------------------------------------------------------------ LSTM
@njit(**FLAGS)
def lstm_forward(gemm, gates, w_hh, w_hr, m, y, h, c, hp, cp, sizes, offsets, reverse, save):
    """gates (N, 4H): on entry x W_ih^T + b_ih + b_hh, on return the activations (i, f, g, o).
    w_hh (4H, P); w_hr (P, H), or (0, 0) without a projection; m (B, H): scratch for o tanh(c)
    before the projection; y (N, P): the output; h (B, P), c (B, H): the initial states on entry,
    the final ones on return; hp (N, P), cp (N, H): the states before each step (when save)."""
    steps, hid, p = sizes.shape[0], c.shape[1], h.shape[1]
    g4, proj, isz = 4 * hid, w_hr.shape[0] > 0, gates.itemsize
    one, zero = gates.dtype.type(1), gates.dtype.type(0)
    for k in range(steps):
        t = steps - 1 - k if reverse else k
        n, r0 = sizes[t], offsets[t]
        if save:
            _copy_rows(hp[r0:r0 + n], h, n)
            _copy_rows(cp[r0:r0 + n], c, n)
        gemm(ROW_MAJOR, NO_TRANS, TRANS, n, g4, p, one, h.ctypes.data, p, w_hh.ctypes.data, p,
             one, gates.ctypes.data + r0 * g4 * isz, g4)
        for b in range(n):
            g, cb = gates[r0 + b], c[b]
            out = m[b] if proj else y[r0 + b]
            for j in range(hid):
                ig, fg = sigmoid(g[j]), sigmoid(g[hid + j])
                gg, og = tanh(g[2 * hid + j]), sigmoid(g[3 * hid + j])
                cn = fg * cb[j] + ig * gg
                cb[j] = cn
                out[j] = og * tanh(cn)
                g[j], g[hid + j], g[2 * hid + j], g[3 * hid + j] = ig, fg, gg, og
        if proj:
            gemm(ROW_MAJOR, NO_TRANS, TRANS, n, p, hid, one, m.ctypes.data, hid, w_hr.ctypes.data,
                 hid, zero, y.ctypes.data + r0 * p * isz, p)
        _copy_rows(h, y[r0:r0 + n], n)


@njit(**FLAGS)
def lstm_backward(gemm, gates, cp, w_hh, w_hr, gy, dh, dc, dg, dm, mh, dhs, sizes, offsets,
                  reverse):
    """gates (N, 4H): the activations; cp (N, H): the cell state before each step; gy (N, P): the
    output's gradient; dh (B, P), dc (B, H): on entry the final states' gradients, on return the
    initial ones'; dg (N, 4H): out, the gradient of the gates before their activations; with a
    projection, dm (B, H) scratch, mh (N, H) out: o tanh(c), dhs (N, P) out: each step's dh."""
    steps, hid, p = sizes.shape[0], dc.shape[1], dh.shape[1]
    g4, proj, isz = 4 * hid, w_hr.shape[0] > 0, gates.itemsize
    one, zero = gates.dtype.type(1), gates.dtype.type(0)
    for k in range(steps - 1, -1, -1):
        t = steps - 1 - k if reverse else k
        n, r0 = sizes[t], offsets[t]
        for b in range(n):
            dh[b, :] += gy[r0 + b, :]
        src = dh
        if proj:
            _copy_rows(dhs[r0:r0 + n], dh, n)
            gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, n, hid, p, one, dh.ctypes.data, p,
                 w_hr.ctypes.data, hid, zero, dm.ctypes.data, hid)
            src = dm
        for b in range(n):
            g, cpb, d, dcb, dmb = gates[r0 + b], cp[r0 + b], dg[r0 + b], dc[b], src[b]
            for j in range(hid):
                ig, fg, gg, og = g[j], g[hid + j], g[2 * hid + j], g[3 * hid + j]
                tc = tanh(fg * cpb[j] + ig * gg)
                dmj = dmb[j]
                dcj = dcb[j] + dmj * og * (one - tc * tc)
                d[j] = dcj * gg * ig * (one - ig)
                d[hid + j] = dcj * cpb[j] * fg * (one - fg)
                d[2 * hid + j] = dcj * ig * (one - gg * gg)
                d[3 * hid + j] = dmj * tc * og * (one - og)
                dcb[j] = dcj * fg
            if proj:
                mb = mh[r0 + b]
                for j in range(hid):
                    mb[j] = g[3 * hid + j] * tanh(g[hid + j] * cpb[j] + g[j] * g[2 * hid + j])
        gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, n, p, g4, one, dg.ctypes.data + r0 * g4 * isz, g4,
             w_hh.ctypes.data, p, zero, dh.ctypes.data, p)


# ------------------------------------------------------------------------------------------- GRU
@njit(**FLAGS)
def gru_forward(gemm, gates, w_hh, b_hh, hw, y, h, hp, hn, sizes, offsets, reverse, save):
    """gates (N, 3H): on entry x W_ih^T + b_ih, on return the activations (r, z, n); b_hh (3H,);
    hw (B, 3H): scratch for h W_hh^T + b_hh; y (N, H): the output; h (B, H): the initial state on
    entry, the final one on return; hp (N, H): the state before each step, hn (N, H): W_hn h +
    b_hn of each step (when save)."""
    steps, hid = sizes.shape[0], h.shape[1]
    g3 = 3 * hid
    one = gates.dtype.type(1)
    for k in range(steps):
        t = steps - 1 - k if reverse else k
        n, r0 = sizes[t], offsets[t]
        if save:
            _copy_rows(hp[r0:r0 + n], h, n)
        for b in range(n):
            hw[b, :] = b_hh
        gemm(ROW_MAJOR, NO_TRANS, TRANS, n, g3, hid, one, h.ctypes.data, hid, w_hh.ctypes.data,
             hid, one, hw.ctypes.data, g3)
        for b in range(n):
            g, a, hb, yb = gates[r0 + b], hw[b], h[b], y[r0 + b]
            for j in range(hid):
                r = sigmoid(g[j] + a[j])
                z = sigmoid(g[hid + j] + a[hid + j])
                nn = tanh(g[2 * hid + j] + r * a[2 * hid + j])
                hnew = (one - z) * nn + z * hb[j]
                g[j], g[hid + j], g[2 * hid + j] = r, z, nn
                yb[j] = hnew
                hb[j] = hnew
            if save:
                hn[r0 + b, :] = a[2 * hid:]


@njit(**FLAGS)
def gru_backward(gemm, gates, hp, hn, w_hh, gy, dh, dgx, dgh, sizes, offsets, reverse):
    """gates (N, 3H): the activations; hp, hn (N, H) as saved by ``gru_forward``; gy (N, H): the
    output's gradient; dh (B, H): on entry the final state's gradient, on return the initial
    one's; dgx, dgh (N, 3H) out: the gradients of x W_ih^T + b_ih and of h W_hh^T + b_hh."""
    steps, hid = sizes.shape[0], dh.shape[1]
    g3 = 3 * hid
    one = gates.dtype.type(1)
    for k in range(steps - 1, -1, -1):
        t = steps - 1 - k if reverse else k
        n, r0 = sizes[t], offsets[t]
        for b in range(n):
            g, hpb, hnb, gyb, db = gates[r0 + b], hp[r0 + b], hn[r0 + b], gy[r0 + b], dh[b]
            dx, dhh = dgx[r0 + b], dgh[r0 + b]
            for j in range(hid):
                r, z, nn = g[j], g[hid + j], g[2 * hid + j]
                d = db[j] + gyb[j]
                dnp = d * (one - z) * (one - nn * nn)
                drp = dnp * hnb[j] * r * (one - r)
                dzp = d * (hpb[j] - nn) * z * (one - z)
                dx[j], dx[hid + j], dx[2 * hid + j] = drp, dzp, dnp
                dhh[j], dhh[hid + j], dhh[2 * hid + j] = drp, dzp, dnp * r
                db[j] = d * z
        gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, n, hid, g3, one, dgh.ctypes.data + r0 * g3 * dgh.itemsize,
             g3, w_hh.ctypes.data, hid, one, dh.ctypes.data, hid)


# -------------------------------------------------------------------------------- plain RNN (Elman)
@njit(**FLAGS)
def rnn_forward(gemm, pre, w_hh, h, hp, sizes, offsets, reverse, relu, save):
    """pre (N, H): on entry x W_ih^T + b_ih + b_hh, on return the output tanh(...) or relu(...);
    h (B, H): the initial state on entry, the final one on return; hp (N, H): the state before
    each step (when save)."""
    steps, hid = sizes.shape[0], h.shape[1]
    one, zero = pre.dtype.type(1), pre.dtype.type(0)
    for k in range(steps):
        t = steps - 1 - k if reverse else k
        n, r0 = sizes[t], offsets[t]
        if save:
            _copy_rows(hp[r0:r0 + n], h, n)
        gemm(ROW_MAJOR, NO_TRANS, TRANS, n, hid, hid, one, h.ctypes.data, hid, w_hh.ctypes.data,
             hid, one, pre.ctypes.data + r0 * hid * pre.itemsize, hid)
        for b in range(n):
            row, hb = pre[r0 + b], h[b]
            for j in range(hid):
                v = row[j]
                v = (v if v > zero else zero) if relu else tanh(v)
                row[j] = v
                hb[j] = v


@njit(**FLAGS)
def rnn_backward(gemm, y, w_hh, gy, dh, dg, sizes, offsets, reverse, relu):
    """y (N, H): the output; gy (N, H): its gradient; dh (B, H): on entry the final state's
    gradient, on return the initial one's; dg (N, H) out: the gradient before the activation."""
    steps, hid = sizes.shape[0], dh.shape[1]
    one, zero = y.dtype.type(1), y.dtype.type(0)
    for k in range(steps - 1, -1, -1):
        t = steps - 1 - k if reverse else k
        n, r0 = sizes[t], offsets[t]
        for b in range(n):
            yb, gyb, db, d = y[r0 + b], gy[r0 + b], dh[b], dg[r0 + b]
            for j in range(hid):
                v = db[j] + gyb[j]
                d[j] = (v if yb[j] > zero else zero) if relu else v * (one - yb[j] * yb[j])
        gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, n, hid, hid, one, dg.ctypes.data + r0 * hid * dg.itemsize,
             hid, w_hh.ctypes.data, hid, zero, dh.ctypes.data, hid)
