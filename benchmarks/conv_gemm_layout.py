"""A/B of two GEMM layouts for the convolution's forward and weight gradient (3x3, pad 1).

A (what ops/conv.py does): per chunk of the batch, im2col to (n, K, P) and NumPy's stacked
matmul, i.e. one BLAS call per sample. C: per chunk, im2col to (K, n*P) and one BLAS call for
the chunk (then a transpose copy of the output). Interleaved, median of repeats, BLAS threads
from the command line: ``python benchmarks/conv_gemm_layout.py 2``.
"""
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

as_strided = np.lib.stride_tricks.as_strided
CHUNK = 4 << 20


def cols(x, h, k_major):
    n, c = x.shape[:2]
    s = x.strides
    if k_major:  # (K, n*P)
        v = as_strided(x, (c, 3, 3, n, h, h), (s[1], s[2], s[3], s[0], s[2], s[3]), writeable=False)
        return v.reshape(c * 9, n * h * h)
    v = as_strided(x, (n, c, 3, 3, h, h), (s[0], s[1], s[2], s[3], s[2], s[3]), writeable=False)
    return v.reshape(n, c * 9, h * h)  # (n, K, P)


def steps(n, k, p):
    step = max(1, min(n, CHUNK // (k * p * 4)))
    return range(0, n, step), step


def fwd(x, w, h, k_major):
    n, (o, k), p = x.shape[0], w.shape, h * h
    out = np.empty((n, o, p), np.float32)
    rng, step = steps(n, k, p)
    for s in rng:
        xs = x[s:s + step]
        m = xs.shape[0]
        if k_major:
            out[s:s + m] = (w @ cols(xs, h, True)).reshape(o, m, p).transpose(1, 0, 2)
        else:
            np.matmul(w, cols(xs, h, False), out=out[s:s + m])
    return out


def wgrad(x, g, h, k_major):
    n, o = g.shape[:2]
    k, p = x.shape[1] * 9, h * h
    gw = np.zeros((o, k), np.float32)
    rng, step = steps(n, k, p)
    for s in rng:
        gs = g[s:s + step].reshape(-1, o, p)
        m = gs.shape[0]
        if k_major:
            gw += gs.transpose(1, 0, 2).reshape(o, m * p) @ cols(x[s:s + step], h, True).T
        else:
            gw += np.matmul(gs, cols(x[s:s + step], h, False).transpose(0, 2, 1)).sum(0)
    return gw


def main(threads):
    rng = np.random.default_rng(0)
    with threadpool_limits(threads):
        print(f"BLAS threads: {threads}; ms (median of 5), ratio C/A (< 1: C faster)")
        for n, c, o, h in [(128, 16, 16, 28), (128, 16, 32, 14), (128, 32, 64, 14), (128, 64, 64, 8)]:
            x = rng.standard_normal((n, c, h + 2, h + 2), dtype=np.float32)
            w = rng.standard_normal((o, c * 9), dtype=np.float32)
            g = rng.standard_normal((n, o, h, h), dtype=np.float32)
            assert np.allclose(fwd(x, w, h, False), fwd(x, w, h, True), atol=1e-3)
            t = {k: [] for k in ("fa", "fc", "ga", "gc")}
            for _ in range(5):
                for key, f in (("fa", lambda: fwd(x, w, h, False)), ("fc", lambda: fwd(x, w, h, True)),
                               ("ga", lambda: wgrad(x, g, h, False)), ("gc", lambda: wgrad(x, g, h, True))):
                    t0 = time.perf_counter()
                    f()
                    t[key].append(time.perf_counter() - t0)
            m = {k: float(np.median(v)) * 1e3 for k, v in t.items()}
            print(f"N={n} C={c} O={o} {h}x{h}: forward A {m['fa']:.2f} C {m['fc']:.2f} "
                  f"({m['fc'] / m['fa']:.2f}); weight grad A {m['ga']:.2f} C {m['gc']:.2f} "
                  f"({m['gc'] / m['ga']:.2f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
