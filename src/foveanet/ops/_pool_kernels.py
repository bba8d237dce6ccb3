"""Compiled loops of max pooling (see ``pool.MaxPool2d``), with numba.

Loaded only through ``backend.cpu.kernels.load``, cached on disk like the other
kernel modules. Every kernel works on the planes [lo, hi) of (N*C, H, W) arrays. ``max_2x2`` and
its gradient: 2x2 windows tiling the plane, written for that window only (the same loops with
the window size as a variable measured 4-5x slower there; the compiler cannot unroll the two-long
window loops). ``max_windows*``: any window, stride, padding and dilation (ResNet's 3x3 stride-2
with padding 1), where NumPy's separable passes copy strided views with -inf padding first.
"""
import numpy as np
from numba import njit

jit = njit(cache=True, nogil=True)


@jit
def max_2x2(x, out, tap, lo, hi):
    """out[p, i, j] = the max of the window at (2i, 2j) of plane p, tap[p, i, j] = its first
    row-major position in the window (0-3). Returns True when a NaN was seen: the caller then
    takes the path with PyTorch's NaN rule."""
    oh, ow = out.shape[1], out.shape[2]
    nan = False
    for p in range(lo, hi):
        for i in range(oh):
            r0, r1, best, win = x[p, 2 * i], x[p, 2 * i + 1], out[p, i], tap[p, i]
            for j in range(ow):
                a, b, c, d = r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]
                m, t = a, 0
                if b > m:
                    m, t = b, 1
                if c > m:
                    m, t = c, 2
                if d > m:
                    m, t = d, 3
                best[j] = m
                win[j] = t
                nan |= (a != a) | (b != b) | (c != c) | (d != d)
    return nan


@jit
def max_2x2_grad(g, tap, gx, lo, hi):
    """gx (N*C, H, W): zero, then each window's gradient g[p, i, j] stored at its winning tap.
    (Storing all four pixels of each window, g or 0 by the tap, measured 4x slower.)"""
    oh, ow = g.shape[1], g.shape[2]
    for p in range(lo, hi):
        gx[p] = 0
        for i in range(oh):
            gr, win = g[p, i], tap[p, i]
            for j in range(ow):
                t = win[j]
                gx[p, 2 * i + (t >> 1), 2 * j + (t & 1)] = gr[j]


@jit
def max_windows(x, kh, kw, sh, sw, ph, pw, dh, dw, out, idx, lo, hi):
    """Any max pooling (padding read as -inf, dilation): out[p, i, j] = the max of the window at
    (i*sh - ph, j*sw - pw) of plane p (P, H, W), and idx[p, i, j] its flat H*W index, PyTorch's
    rule exactly: the taps in row-major order, a tap wins if it is greater than the best so far
    or NaN (so NaN wins, the last one), and a window of -inf points at its first in-image tap."""
    h, w = x.shape[1], x.shape[2]
    oh, ow = out.shape[1], out.shape[2]
    ninf = -np.inf
    for p in range(lo, hi):
        plane = x[p]
        for i in range(oh):
            y0 = i * sh - ph
            ys = y0
            while ys < 0:
                ys += dh
            for j in range(ow):
                x0 = j * sw - pw
                xs = x0
                while xs < 0:
                    xs += dw
                best, arg = ninf, ys * w + xs
                for a in range(kh):
                    y = y0 + a * dh
                    if y < 0 or y >= h:
                        continue
                    row = plane[y]
                    for b in range(kw):
                        q = x0 + b * dw
                        if q < 0 or q >= w:
                            continue
                        v = row[q]
                        if v > best or v != v:
                            best, arg = v, y * w + q
                out[p, i, j] = best
                idx[p, i, j] = arg


@jit
def max_windows_values(x, kh, kw, sh, sw, ph, pw, dh, dw, rows, out, lo, hi):
    """The values of ``max_windows`` only (inference), separably: the max along each row's
    windows into ``rows`` (H, OW), one per thread, then down the columns, each pass a run over
    whole output rows with a select the compiler vectorises (NaN propagates, as PyTorch's)."""
    h, w = x.shape[1], x.shape[2]
    oh, ow = out.shape[1], out.shape[2]
    ninf = out.dtype.type(-np.inf)
    for p in range(lo, hi):
        plane = x[p]
        for y in range(h):
            src, r = plane[y], rows[y]
            r[:] = ninf
            for b in range(kw):
                off = b * dw - pw  # input column of output column j: j * sw + off
                j0 = min(ow, max(0, -(off // sw)))
                j1 = max(j0, min(ow, (w - off + sw - 1) // sw))
                for j in range(j0, j1):
                    v, m = src[j * sw + off], r[j]
                    r[j] = v if (v > m) | (v != v) else m
        for i in range(oh):
            d = out[p, i]
            d[:] = ninf
            for a in range(kh):
                y = i * sh - ph + a * dh
                if y < 0 or y >= h:
                    continue
                r = rows[y]
                for j in range(ow):
                    v, m = r[j], d[j]
                    d[j] = v if (v > m) | (v != v) else m


@jit
def max_windows_grad(g, idx, gx, lo, hi):
    """gx (P, H*W): zero, then every window's gradient added at its index (overlapping windows
    share pixels; a plane is one thread's, so the adds need no atomics)."""
    for p in range(lo, hi):
        gx[p] = 0
        gp, ip, dst = g[p], idx[p], gx[p]
        for k in range(gp.shape[0]):
            dst[ip[k]] += gp[k]


@jit
def unpool(x, idx, out, lo, hi):
    """out[p] = 0 but out[p, idx[p, i]] = x[p, i] (a later i wins a shared index) for the planes
    [lo, hi) of x, idx (P, n) and out (P, m). Returns the first plane with an index outside
    [0, m), or -1."""
    m = out.shape[1]
    for p in range(lo, hi):
        xp_, ip, op = x[p], idx[p], out[p]
        op[:] = 0
        for i in range(ip.size):
            j = ip[i]
            if j < 0 or j >= m:
                return p
            op[j] = xp_[i]
    return -1


@jit
def unpool_grad(g, idx, gx, lo, hi):
    """gx[p, i] = g[p, idx[p, i]] for the planes [lo, hi) (indices checked by ``unpool``)."""
    for p in range(lo, hi):
        gp, ip, xp_ = g[p], idx[p], gx[p]
        for i in range(ip.size):
            xp_[i] = gp[ip[i]]
