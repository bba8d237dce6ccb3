"""Per-position cross-entropy on (N, C, positions) logits as compiled loops, with numba.

Loaded only through ``backend.cpu.kernels.load`` (see ``loss.CrossEntropyIndex``), cached on disk
like the other kernel modules; each kernel works on the samples [lo, hi).

Why. Segmentation's loss (SegNet's 11 classes at 64x64, batch 32: 1.4 M logits) took 8 ms
forward in NumPy, of which the exponential alone was 3.6-8.8 ms. On a CPU without AVX-512
NumPy's float32 ``exp`` runs glibc's scalar ``expf``, ~2.5-6 ns a value. numba's ``exp`` calls
the same scalar function, so ``exp32`` here is an exponential that the compiler can vectorise:

- Cody-Waite range reduction, x = k ln2 + r with |r| <= ln2 / 2 (ln2 in two parts);
- Cephes' degree-6 polynomial for e^r (``expf``: within 2 ulp of the true value on
  [-87.3, 88.7]);
- 2^k put straight into a float's exponent bits, through a bit cast (``_bits_as_f32``, an LLVM
  ``bitcast``: no instruction in a vector loop).

It is made for a softmax's x - max <= 0. Inputs below -87.3 give e^-87.3 = 1.2e-38 rather than a
denormal or 0 (at most 1.2e-38 of the largest term), and inputs above 88.37 give e^88.37. The loops run over the positions, with the classes
outside, so that every pass is one contiguous vectorised run.
"""
import math

import numpy as np
from numba import njit, types
from numba.core.extending import intrinsic

jit = njit(cache=True, nogil=True)
inline = njit(inline="always")


@intrinsic
def _bits_as_f32(typingctx, v):
    """The float32 whose bits are the low 32 bits of the integer v."""
    if not isinstance(v, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = args[0]
        if v.bitwidth > 32:
            low = builder.trunc(low, context.get_value_type(types.int32))
        return builder.bitcast(low, context.get_value_type(types.float32))
    return types.float32(v), codegen


@inline
def exp32(x):
    """e^x of a float32, vectorisable (see the module's docstring)."""
    x = min(max(x, np.float32(-87.33654)), np.float32(88.37))  # 2^k stays a normal float
    k = np.floor(x * np.float32(1.442695041) + np.float32(0.5))  # a float32, as are r and p
    r = x - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * (r * r) + r + np.float32(1.0)
    return p * _bits_as_f32((np.int32(k) + 127) << 23)


@jit
def exp_f32(x, out, lo, hi):
    """out[lo:hi] = exp32(x[lo:hi]) (flat float32 arrays): the tests' handle on ``exp32``."""
    xv, ov = x[lo:hi], out[lo:hi]
    for i in range(xv.size):
        ov[i] = exp32(xv[i])


@jit
def ce_forward(x, t, w, ignore, p, wt, parts, lo, hi):
    """For the samples [lo, hi) of x (N, C, P) float32 logits and t (N, P) class indices: p the
    softmax over C, wt (N, P) each position's weight (w[t], or 1 where w is empty; 0 where
    t == ignore), and parts[lo] = (the sum of wt * (logsumexp - x[t]), the sum of wt), summed in
    float64."""
    c_n, p_n = x.shape[1], x.shape[2]
    m = np.empty(p_n, dtype=np.float32)
    s = np.empty(p_n, dtype=np.float32)
    weighted = w.size > 0
    loss, total = 0.0, 0.0
    for n in range(lo, hi):
        xn, pn, tn, wn = x[n], p[n], t[n], wt[n]
        m[:] = xn[0]
        for c in range(1, c_n):
            xc = xn[c]
            for i in range(p_n):
                m[i] = max(m[i], xc[i])
        s[:] = 0
        for c in range(c_n):
            xc, pc = xn[c], pn[c]
            for i in range(p_n):
                e = exp32(xc[i] - m[i])
                pc[i] = e
                s[i] += e
        for i in range(p_n):
            k = tn[i]
            if k == ignore:
                wn[i] = 0
                continue
            v = w[k] if weighted else np.float32(1)
            wn[i] = v
            loss += v * (math.log(s[i]) - (xn[k, i] - m[i]))
            total += v
        for i in range(p_n):
            s[i] = np.float32(1) / s[i]
        for c in range(c_n):
            pc = pn[c]
            for i in range(p_n):
                pc[i] *= s[i]
    parts[lo, 0] = loss
    parts[lo, 1] = total


@jit
def ce_backward(p, t, wt, scale, grad, lo, hi):
    """grad (N, C, P) = scale * wt * (p - onehot(t)) for the samples [lo, hi) (0 where wt is 0)."""
    c_n, p_n = p.shape[1], p.shape[2]
    coef = np.empty(p_n, dtype=np.float32)
    for n in range(lo, hi):
        pn, gn, tn, wn = p[n], grad[n], t[n], wt[n]
        for i in range(p_n):
            coef[i] = scale * wn[i]
        for c in range(c_n):
            pc, gc = pn[c], gn[c]
            for i in range(p_n):
                gc[i] = pc[i] * coef[i]
        for i in range(p_n):
            if wn[i] != 0:
                gn[tn[i], i] -= coef[i]
