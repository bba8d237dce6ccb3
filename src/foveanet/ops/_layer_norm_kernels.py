"""Compiled loops of layer normalisation (see ``layer_norm.LayerNorm``), with numba.

Loaded only through ``backend.cpu.kernels.load``, cached on disk like the other
kernel modules. Each kernel works on the rows [lo, hi) of the (M, N) view of the input, so the
engine's threads split the rows. Row sums accumulate in float64. Forward reads each row twice
(mean, then the variance about it) and writes the output once; backward reads g and x twice and
writes dx once, where NumPy takes about six passes each way.
"""
import numpy as np
from numba import njit

jit = njit(cache=True, nogil=True, fastmath=True)


@jit
def forward(x2, weight, bias, eps, mean, rstd, out, lo, hi):
    """mean, rstd = 1 / sqrt(biased var + eps) of the rows [lo, hi) (two passes: no
    cancellation) into ``mean`` / ``rstd``, and out = (x - mean) * rstd * weight + bias (weight /
    bias of length 0 for none)."""
    n = x2.shape[1]
    dt = x2.dtype.type
    has_w, has_b = weight.shape[0] > 0, bias.shape[0] > 0
    for r in range(lo, hi):
        row, o = x2[r], out[r]
        s = 0.0
        for i in range(n):
            s += row[i]
        mu = s / n
        s = 0.0
        for i in range(n):
            d = row[i] - mu
            s += d * d
        rs = 1.0 / np.sqrt(s / n + eps)
        mean[r], rstd[r] = mu, rs
        m, a = dt(mu), dt(rs)
        if has_w and has_b:
            for i in range(n):
                o[i] = (row[i] - m) * a * weight[i] + bias[i]
        elif has_w:
            for i in range(n):
                o[i] = (row[i] - m) * a * weight[i]
        elif has_b:
            for i in range(n):
                o[i] = (row[i] - m) * a + bias[i]
        else:
            for i in range(n):
                o[i] = (row[i] - m) * a


@jit
def backward(g2, x2, mean, rstd, weight, dx, dw, db, lo, hi):
    """For the rows [lo, hi): dw += sum g * xhat and db += sum g (float64, each of length N, or 0
    where not wanted), and, where ``dx`` has rows, dx = rstd * (gw - mean(gw) - xhat * mean(gw *
    xhat)), xhat = (x - mean) * rstd and gw = g * weight (weight of length 0: gw = g)."""
    n = x2.shape[1]
    dt = x2.dtype.type
    has_w, want_w, want_b, want_x = weight.shape[0] > 0, dw.shape[0] > 0, db.shape[0] > 0, \
        dx.shape[0] > 0
    for r in range(lo, hi):
        gr, xr = g2[r], x2[r]
        mu, rs = mean[r], rstd[r]
        if want_w:
            for i in range(n):
                dw[i] += gr[i] * ((xr[i] - mu) * rs)
        if want_b:
            for i in range(n):
                db[i] += gr[i]
        if not want_x:
            continue
        sg = 0.0
        sgx = 0.0
        for i in range(n):
            gw = gr[i] * weight[i] if has_w else gr[i]
            sg += gw
            sgx += gw * (xr[i] - mu)
        # dx = rs gw - rs mean(gw) - rs^3 (x - mu) mean(gw (x - mu)) = a gw + b (x - mu) + c
        a = dt(rs)
        b = dt(-rs * rs * rs * sgx / n)
        c = dt(-rs * sg / n)
        o = dx[r]
        if has_w:
            for i in range(n):
                o[i] = a * (gr[i] * weight[i]) + b * (xr[i] - mu) + c
        else:
            for i in range(n):
                o[i] = a * gr[i] + b * (xr[i] - mu) + c
