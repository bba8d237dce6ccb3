"""Compiled loops of training-mode batch norm (see ``norm.BatchNorm``), with numba.

Loaded only through ``backend.cpu.kernels.load``, cached on disk like the other
kernel modules. Each kernel works on the channels [lo, hi) of an (N, C, M) array, so the engine's
threads split the channels. Sums run in the array's dtype along each (n, c) row (vectorised) and
are added up across rows in float64. Against NumPy's passes (one per operation, about ten over
the data backward) these read each array twice and write the output once.
"""
import numpy as np
from numba import njit

jit = njit(cache=True, nogil=True, fastmath=True, error_model="numpy")  # 1/0: inf, not an exception


@jit
def forward(x3, weight, bias, eps, mean, var, out, lo, hi):
    """Batch mean and biased variance of channels [lo, hi) (two passes: no cancellation) into
    mean / var, and out = (x - mean) / sqrt(var + eps) * weight + bias (weight / bias of length 0
    for none)."""
    n_n, m_n = x3.shape[0], x3.shape[2]
    count = n_n * m_n
    zero = x3.dtype.type(0)
    for c in range(lo, hi):
        s = 0.0
        for n in range(n_n):
            row = x3[n, c]
            r = zero
            for i in range(m_n):
                r += row[i]
            s += r
        mu = x3.dtype.type(s / count)
        s = 0.0
        for n in range(n_n):
            row = x3[n, c]
            r = zero
            for i in range(m_n):
                d = row[i] - mu
                r += d * d
            s += r
        mean[c], var[c] = mu, s / count
        scale = 1.0 / np.sqrt(s / count + eps)
        if weight.shape[0]:
            scale *= weight[c]
        shift = -mu * scale
        if bias.shape[0]:
            shift += bias[c]
        a, b = x3.dtype.type(scale), x3.dtype.type(shift)
        for n in range(n_n):
            row, o = x3[n, c], out[n, c]
            for i in range(m_n):
                o[i] = row[i] * a + b


@jit
def backward(g3, x3, mean, invstd, weight, dx, dw, db, lo, hi):
    """dbias = sum g, dweight = sum g * xhat and dx = weight * invstd * (g - dbias / m - xhat *
    dweight / m) for channels [lo, hi), xhat = (x - mean) * invstd: one pass for the two sums,
    one for dx = A g + B (x - mean) + K."""
    n_n, m_n = x3.shape[0], x3.shape[2]
    count = n_n * m_n
    zero = x3.dtype.type(0)
    for c in range(lo, hi):
        mu = mean[c]
        sg = 0.0
        sgx = 0.0
        for n in range(n_n):
            gr, xr = g3[n, c], x3[n, c]
            r = t = zero
            for i in range(m_n):
                v = gr[i]
                r += v
                t += v * (xr[i] - mu)
            sg += r
            sgx += t
        inv = float(invstd[c])
        db[c], dw[c] = sg, sgx * inv
        w = float(weight[c]) if weight.shape[0] else 1.0
        a = w * inv
        dt = x3.dtype.type
        ka, kb, kk = dt(a), dt(-a * inv * inv * sgx / count), dt(-a * sg / count)
        for n in range(n_n):
            gr, xr, o = g3[n, c], x3[n, c], dx[n, c]
            for i in range(m_n):
                o[i] = ka * gr[i] + kb * (xr[i] - mu) + kk


@jit
def affine(x3, scale, shift, out, lo, hi):
    """out[n, c] = x3[n, c] * scale[c] + shift[c] for the samples [lo, hi) (evaluation mode: one
    pass, where NumPy takes a multiply and an add)."""
    c_n, m_n = x3.shape[1], x3.shape[2]
    for n in range(lo, hi):
        for c in range(c_n):
            a, b, row, o = scale[c], shift[c], x3[n, c], out[n, c]
            for i in range(m_n):
                o[i] = row[i] * a + b
