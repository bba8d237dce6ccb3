"""Recurrent primitives: one layer of an Elman RNN, an LSTM or a GRU, in one direction, over a
whole sequence, as one Function with three results (output, final h, final c for the LSTM).

The lecture's warning that recurrent nets are "extremely demanding on memory to remember partial
derivations of the entire input series" is visible here: backward needs, for every step, the
gates and the states that entered it. What is kept, per row of the input (one sample at one time
step), with G the number of gates (LSTM 4, GRU 3, RNN 1) and H the hidden size: the gates' G H
activations and the entering states (2 H for the LSTM, H otherwise, plus H for the GRU's
W_hn h + b_hn). ``fv.utils.checkpoint`` and truncated back-propagation through time trade this
memory for time.

The work, for N rows of T steps:

- the input's contribution to every step's gates, ``x W_ih^T + b``, is one matrix product for
  all N rows before the loop;
- each step adds ``h W_hh^T`` (one product over the step's rows) and runs the gates' activations
  and the state update in one compiled pass (``_rnn_kernels``); the whole loop is one compiled
  call, so no Python runs between steps;
- backward runs the loop in reverse, one product (the state's gradient) and one fused pass per
  step, then takes the input's and the weights' gradients as four products over all N rows.

Without numba (or NumPy's BLAS not found) the same loop runs in NumPy, step by step.

Rows and lengths: the input is an (N, I) matrix of rows in time order, the rows of step t being
``offsets[t]:offsets[t] + sizes[t]``, ``sizes`` non-increasing (PyTorch's ``PackedSequence``
layout; a padded batch of B is every size B). A sequence that is shorter stops updating its state
after its last step, so the final states are taken at each sequence's true end, and the reverse
direction starts each sequence at its own last step.

Gate order and equations are PyTorch's (``torch.nn.LSTM`` / ``GRU`` / ``RNN``), so weights move
between the two unchanged.
"""
from __future__ import annotations

from ..autograd import Function, is_grad_enabled
from ..backend import xp
from ..backend.cpu import blas, kernels
from . import _blas

KERNELS = "foveanet.ops._rnn_kernels"
MODES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}  # mode -> gates per hidden unit


def _compiled(dtype):
    """(kernel module, gemm) for the compiled loop, or None: NumPy's loop."""
    if dtype.char not in "fd":
        return None
    k, gemm = kernels.load(KERNELS), blas.gemm(dtype)
    return None if k is None or gemm is None else (k, gemm)


def _c(a):
    return xp.ascontiguousarray(a)


def _sigmoid(a):
    return 0.5 + 0.5 * xp.tanh(0.5 * a)


class Recurrence(Function):
    """One recurrent layer in one direction.

    ``apply(x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr, mode=, sizes=, reverse=)``:
    x (N, I) rows in time order; w_ih (G H, I); w_hh (G H, P); b_ih, b_hh (G H,) or None;
    h0 (B, P); c0 (B, H) for the LSTM (else None); w_hr (P, H), the LSTM's projection, or None
    (P = H). ``sizes`` (T,) int64: the rows of each step, non-increasing, sizes[0] == B.
    Results: y (N, P), h_n (B, P), and for the LSTM c_n (B, H)."""

    fresh_grads = True  # every gradient is a new product, sum or copy

    def forward(self, x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr, mode, sizes, reverse=False):
        self.mode, self.reverse = mode, bool(reverse)
        sizes = xp.asarray(sizes, dtype=xp.int64)
        offsets = xp.zeros(len(sizes), dtype=xp.int64)
        xp.cumsum(sizes[:-1], out=offsets[1:])
        self.sizes, self.offsets = sizes, offsets
        dt = x.dtype
        lstm, gru = mode == "lstm", mode == "gru"
        bias = None
        if b_ih is not None:
            bias = b_ih if gru else b_ih + b_hh  # the GRU's b_hn sits inside r * (W_hn h + b_hn)
        save = is_grad_enabled() and any(self.needs_input_grad)
        self.batch, self.w_ih_dtype = h0.shape[0], w_ih.dtype
        w_hh = _c(w_hh)
        w_hr = xp.zeros((0, 0), dtype=dt) if w_hr is None else _c(w_hr)
        fast = _compiled(dt)
        self.fast = fast is not None
        if fast is not None:
            y, h, c, saved = self._compiled_forward(fast, x, w_ih, w_hh, bias, b_hh, w_hr, h0, c0,
                                                    save)
        else:
            y, h, c, saved = self._numpy_forward(x, w_ih, w_hh, bias, b_hh, w_hr, h0, c0, save)
        if save:
            self.x, self.w_ih, self.w_hh, self.w_hr = x, w_ih, w_hh, w_hr
            self.gates, self.hp, self.cp, self.hn = saved
            self.y = y if mode.startswith("rnn") else None
            self.has_bias = b_ih is not None
        return (y, h, c) if lstm else (y, h)

    def _compiled_forward(self, fast, x, w_ih, w_hh, bias, b_hh, w_hr, h0, c0, save):
        """The compiled loop, on feature-major arrays (see ``_rnn_kernels``); returns row views
        (transposes) of them: y (N, P), h_n, c_n, and the saved (gates, hp, cp, hn)."""
        k, gemm = fast
        mode, dt = self.mode, x.dtype
        lstm, gru = mode == "lstm", mode == "gru"
        gates = w_ih @ x.T  # (G H, N): the input's part of every step, one product
        g = gates.shape[0]
        bias = xp.zeros(g, dtype=dt) if bias is None else _c(bias.astype(dt, copy=False))
        n, p = x.shape[0], h0.shape[1]
        hid = c0.shape[1] if lstm else w_hh.shape[1]
        h = xp.array(h0.T, dtype=dt, order="C")  # copies: the loop updates the states in place
        c = xp.array(c0.T, dtype=dt, order="C") if lstm else None
        empty = xp.zeros((0, 0), dtype=dt)
        hp = xp.empty((p, n), dtype=dt) if save else empty
        cp = xp.empty((hid, n), dtype=dt) if save and lstm else empty
        hn = xp.empty((hid, n), dtype=dt) if save and gru else empty
        y = gates if mode.startswith("rnn") else xp.empty((p, n), dtype=dt)
        if lstm:
            m = xp.empty((hid, self.batch), dtype=dt) if w_hr.size else empty
            k.lstm_forward(gemm, gates, bias, w_hh, w_hr, m, y, h, c, hp, cp, self.sizes,
                           self.offsets, self.reverse, save)
        elif gru:
            b = xp.zeros(3 * hid, dtype=dt) if b_hh is None else _c(b_hh.astype(dt, copy=False))
            hw = xp.empty((3 * hid, self.batch), dtype=dt)
            k.gru_forward(gemm, gates, bias, w_hh, b, hw, y, h, hp, hn, self.sizes, self.offsets,
                          self.reverse, save)
        else:
            k.rnn_forward(gemm, gates, bias, w_hh, h, hp, self.sizes, self.offsets, self.reverse,
                          mode == "rnn_relu", save)
        return y.T, h.T, (c.T if lstm else None), (gates.T, hp.T, cp.T, hn.T)

    # --------------------------------------------------------------------------- NumPy's loop
    def _steps(self):
        t_all = len(self.sizes)
        order = range(t_all - 1, -1, -1) if self.reverse else range(t_all)
        for t in order:
            yield int(self.sizes[t]), int(self.offsets[t])

    def _numpy_forward(self, x, w_ih, w_hh, bias, b_hh, w_hr, h0, c0, save):
        """The same loop step by step in NumPy, on rows (N, features)."""
        mode, dt = self.mode, x.dtype
        gates = _blas.addmm(_c(x), w_ih, bias) if bias is not None else None
        if gates is None:
            gates = x @ w_ih.T
            if bias is not None:
                gates += bias
        n, p = x.shape[0], h0.shape[1]
        lstm = mode == "lstm"
        hid = c0.shape[1] if lstm else w_hh.shape[1]
        h = h0.astype(dt, copy=True)
        c = c0.astype(dt, copy=True) if lstm else None
        empty = xp.zeros((0, 0), dtype=dt)
        hp = xp.empty((n, p), dtype=dt) if save else empty
        cp = xp.empty((n, hid), dtype=dt) if save and lstm else empty
        hn = xp.empty((n, hid), dtype=dt) if save and mode == "gru" else empty
        y = gates if mode.startswith("rnn") else xp.empty((n, p), dtype=dt)
        for n, r0 in self._steps():
            rows = slice(r0, r0 + n)
            if save:
                hp[rows] = h[:n]
                if mode == "lstm":
                    cp[rows] = c[:n]
            g = gates[rows]
            if mode == "lstm":
                g += h[:n] @ w_hh.T
                g[:, :2 * hid] = _sigmoid(g[:, :2 * hid])
                g[:, 2 * hid:3 * hid] = xp.tanh(g[:, 2 * hid:3 * hid])
                g[:, 3 * hid:] = _sigmoid(g[:, 3 * hid:])
                i, f, gg, o = g[:, :hid], g[:, hid:2 * hid], g[:, 2 * hid:3 * hid], g[:, 3 * hid:]
                c[:n] = f * c[:n] + i * gg
                m = o * xp.tanh(c[:n])
                y[rows] = m @ w_hr.T if w_hr.size else m
            elif mode == "gru":
                a = h[:n] @ w_hh.T
                if b_hh is not None:
                    a += b_hh
                g[:, :2 * hid] = _sigmoid(g[:, :2 * hid] + a[:, :2 * hid])
                r, z = g[:, :hid], g[:, hid:2 * hid]
                g[:, 2 * hid:] = xp.tanh(g[:, 2 * hid:] + r * a[:, 2 * hid:])
                if save:
                    hn[rows] = a[:, 2 * hid:]
                y[rows] = (1 - z) * g[:, 2 * hid:] + z * h[:n]
            else:
                g += h[:n] @ w_hh.T
                g[...] = xp.maximum(g, 0) if mode == "rnn_relu" else xp.tanh(g)  # g is y's rows
            h[:n] = y[rows]
        return y, h, c, (gates, hp, cp, hn)

    def _numpy_backward(self, gy, dh, dc, dg, dgh, mh, dhs):
        mode, gates, w_hh, w_hr = self.mode, self.gates, self.w_hh, self.w_hr
        hid = dc.shape[1] if mode == "lstm" else w_hh.shape[1]
        for n, r0 in reversed(list(self._steps())):
            rows = slice(r0, r0 + n)
            d = dh[:n] + gy[rows]
            if mode == "lstm":
                g, cpr = gates[rows], self.cp[rows]
                i, f, gg, o = g[:, :hid], g[:, hid:2 * hid], g[:, 2 * hid:3 * hid], g[:, 3 * hid:]
                tc = xp.tanh(f * cpr + i * gg)
                if w_hr.size:
                    dhs[rows], mh[rows] = d, o * tc
                    d = d @ w_hr
                dcj = dc[:n] + d * o * (1 - tc * tc)
                dg[rows] = xp.concatenate([dcj * gg * i * (1 - i), dcj * cpr * f * (1 - f),
                                           dcj * i * (1 - gg * gg), d * tc * o * (1 - o)], axis=1)
                dc[:n] = dcj * f
                dh[:n] = dg[rows] @ w_hh
            elif mode == "gru":
                g = gates[rows]
                r, z, nn = g[:, :hid], g[:, hid:2 * hid], g[:, 2 * hid:]
                dnp = d * (1 - z) * (1 - nn * nn)
                drp = dnp * self.hn[rows] * r * (1 - r)
                dzp = d * (self.hp[rows] - nn) * z * (1 - z)
                dg[rows] = xp.concatenate([drp, dzp, dnp], axis=1)
                dgh[rows] = xp.concatenate([drp, dzp, dnp * r], axis=1)
                dh[:n] = d * z + dgh[rows] @ w_hh
            else:
                y = self.y[rows]
                dg[rows] = d * (y > 0) if mode == "rnn_relu" else d * (1 - y * y)
                dh[:n] = dg[rows] @ w_hh

    # ------------------------------------------------------------------------------- backward
    def backward(self, grads):
        mode, dt = self.mode, self.x.dtype
        gy, gh, gc = (tuple(grads) + (None,))[:3]
        lstm, gru = mode == "lstm", mode == "gru"
        n, p = self.hp.shape
        b = self.batch
        hid = self.cp.shape[1] if lstm else self.w_hh.shape[1]
        proj = lstm and self.w_hr.size
        if self.fast:
            dg, dgh, mh, dhs, dh, dc = self._compiled_backward(gy, gh, gc, n, p, b, hid, proj)
        else:
            gy = xp.zeros((n, p), dtype=dt) if gy is None else _c(gy.astype(dt, copy=False))
            dh = xp.zeros((b, p), dtype=dt) if gh is None else gh.astype(dt, copy=True)
            dc = (xp.zeros((b, hid), dtype=dt) if gc is None else gc.astype(dt, copy=True)) \
                if lstm else None
            dg = xp.empty_like(self.gates)
            dgh = xp.empty_like(self.gates) if gru else None
            mh = xp.empty((n, hid), dtype=dt) if proj else None
            dhs = xp.empty((n, p), dtype=dt) if proj else None
            self._numpy_backward(gy, dh, dc, dg, dgh, mh, dhs)
        # the input's and the weights' gradients: four products over all rows (row views of the
        # compiled loop's feature-major arrays go to BLAS as they are, transposed)
        need = self.needs_input_grad
        dgh = dg if dgh is None else dgh
        dx = dg @ self.w_ih if need[0] else None
        dw_ih = (dg.T @ self.x).astype(self.w_ih_dtype, copy=False) if need[1] else None
        dw_hh = dgh.T @ self.hp if need[2] else None
        db_ih = dg.sum(axis=0) if self.has_bias and need[3] else None
        db_hh = dgh.sum(axis=0) if self.has_bias and need[4] else None
        dw_hr = dhs.T @ mh if proj and need[7] else None
        return dx, dw_ih, dw_hh, db_ih, db_hh, dh, dc, dw_hr

    def _compiled_backward(self, gy, gh, gc, n, p, b, hid, proj):
        """The compiled reverse loop on feature-major arrays; row views of its results."""
        k, gemm = _compiled(self.x.dtype)
        mode, dt = self.mode, self.x.dtype
        lstm, gru = mode == "lstm", mode == "gru"
        gy = xp.zeros((p, n), dtype=dt) if gy is None else xp.ascontiguousarray(gy.T, dtype=dt)
        dh = xp.zeros((p, b), dtype=dt) if gh is None else xp.array(gh.T, dtype=dt, order="C")
        dc = None
        if lstm:
            dc = xp.zeros((hid, b), dtype=dt) if gc is None else xp.array(gc.T, dtype=dt, order="C")
        gates = self.gates.T  # the feature-major arrays the forward loop filled
        dg = xp.empty_like(gates)
        dgh = xp.empty_like(gates) if gru else None
        empty = xp.zeros((0, 0), dtype=dt)
        mh = xp.empty((hid, n), dtype=dt) if proj else empty
        dhs = xp.empty((p, n), dtype=dt) if proj else empty
        if lstm:
            dm = xp.empty((hid, b), dtype=dt) if proj else empty
            k.lstm_backward(gemm, gates, self.cp.T, self.w_hh, self.w_hr, gy, dh, dc, dg, dm, mh,
                            dhs, self.sizes, self.offsets, self.reverse)
        elif gru:
            k.gru_backward(gemm, gates, self.hp.T, self.hn.T, self.w_hh, gy, dh, dg, dgh,
                           self.sizes, self.offsets, self.reverse)
        else:
            k.rnn_backward(gemm, self.y.T, self.w_hh, gy, dh, dg, self.sizes, self.offsets,
                           self.reverse, mode == "rnn_relu")
        return (dg.T, None if dgh is None else dgh.T, mh.T if proj else None,
                dhs.T if proj else None, dh.T, None if dc is None else dc.T)


def recurrence(x, w_ih, w_hh, b_ih, b_hh, h0, c0=None, w_hr=None, mode="lstm", sizes=None,
               reverse=False):
    """One layer, one direction (see ``Recurrence``): (y, h_n) or, for the LSTM, (y, h_n, c_n).
    ``sizes`` defaults to a padded batch: N / B steps of B rows."""
    if mode not in MODES:
        raise ValueError(f"unknown recurrent mode {mode!r}; modes: {', '.join(MODES)}")
    if sizes is None:
        batch = h0.shape[0]
        sizes = xp.full(x.shape[0] // batch, batch, dtype=xp.int64)
    return Recurrence.apply(x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr, mode=mode, sizes=sizes,
                            reverse=reverse)


# ------------------------------------------------------------------------- rows in and out of order
class GatherRows(Function):
    """out = a[index] along the first axis, for an index that names each row at most once; the
    gradient puts each row back (zeros elsewhere)."""

    fresh_grads = True

    def forward(self, a, index):
        self.shape, self.index = a.shape, index
        return a[index]

    def backward(self, g):
        out = xp.zeros(self.shape, dtype=g.dtype)
        out[self.index] = g
        return out, None


class ScatterRows(Function):
    """out (rows, ...) = ``value`` everywhere, then out[index] = a (each row named at most once);
    the gradient gathers the rows back."""

    fresh_grads = True

    def forward(self, a, index, rows, value=0.0):
        self.index = index
        out = xp.full((rows,) + a.shape[1:], value, dtype=a.dtype)
        out[index] = a
        return out

    def backward(self, g):
        return g[self.index], None


def gather_rows(a, index):
    return GatherRows.apply(a, xp.asarray(index, dtype=xp.int64))


def scatter_rows(a, index, rows: int, value=0.0):
    return ScatterRows.apply(a, xp.asarray(index, dtype=xp.int64), rows=int(rows), value=value)


# ----------------------------------------------------------------------------------- warming
def warm() -> str:
    """Compile (or load from numba's cache) the recurrent loops for float32 and float64."""
    if kernels.load(KERNELS) is None:
        return "recurrent layers: numba is not installed, NumPy's step-by-step loop"
    if blas.gemm(xp.float32) is None:
        return "recurrent layers: NumPy's BLAS not found, NumPy's step-by-step loop"
    for dt in (xp.float32, xp.float64):
        x = xp.ones((3, 3), dtype=dt)
        for mode, g in MODES.items():
            for proj in ((False, True) if mode == "lstm" else (False,)):
                p = 1 if proj else 2
                args = [x, xp.ones((g * 2, 3), dtype=dt), xp.ones((g * 2, p), dtype=dt),
                        xp.ones(g * 2, dtype=dt), xp.ones(g * 2, dtype=dt), xp.zeros((2, p), dtype=dt),
                        xp.zeros((2, 2), dtype=dt) if mode == "lstm" else None,
                        xp.ones((1, 2), dtype=dt) if proj else None]
                fn = Recurrence()
                fn.needs_input_grad = (True,) * 8
                outs = fn.forward(*args, mode=mode, sizes=xp.array([2, 1]), reverse=False)
                fn.backward(tuple(xp.ones_like(o) for o in outs))
    return "recurrent layers: numba kernels compiled"


kernels.declare(KERNELS, "recurrent layers", warm)
