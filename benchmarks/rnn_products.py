"""The recurrent step's product in NumPy's OpenBLAS, both ways round: rows (``h @ W^T``, the
state's rows first) against feature-major (``W @ h^T``, the weights first), forward (an LSTM's
4H x H weights, H = 256) and backward (``dg @ W`` against ``W^T @ dg^T``), for batches of 8 to
128, on 1 and 2 threads. The figure behind ``ops/_rnn_kernels.py``'s layout.

    .venv/bin/python benchmarks/rnn_products.py
"""
from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits


def best_us(f, n=200):
    f()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return min(ts) * 1e6


def main():
    hid = 256
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4 * hid, hid), dtype=np.float32)  # W_hh (4H, H)
    print("threads  batch  forward h@W^T  W@h^T  (x)   backward dg@W  W^T@dg^T  (x)   [us, best of 200]")
    for threads in (1, 2):
        with threadpool_limits(threads):
            for b in (8, 16, 32, 64, 128):
                h = rng.standard_normal((b, hid), dtype=np.float32)
                ht = np.ascontiguousarray(h.T)
                out, out_t = np.empty((b, 4 * hid), np.float32), np.empty((4 * hid, b), np.float32)
                f_rows = best_us(lambda: np.dot(h, w.T, out=out))
                f_cols = best_us(lambda: np.dot(w, ht, out=out_t))
                dg = rng.standard_normal((b, 4 * hid), dtype=np.float32)
                dgt = np.ascontiguousarray(dg.T)
                dh, dh_t = np.empty((b, hid), np.float32), np.empty((hid, b), np.float32)
                b_rows = best_us(lambda: np.dot(dg, w, out=dh))
                b_cols = best_us(lambda: np.dot(w.T, dgt, out=dh_t))
                print(f"{threads:7d}  {b:5d}  {f_rows:13.1f}  {f_cols:5.1f}  {f_rows / f_cols:4.2f}"
                      f"   {b_rows:12.1f}  {b_cols:8.1f}  {b_rows / b_cols:4.2f}")


if __name__ == "__main__":
    main()
