"""The lecture's memory warning, measured: peak memory and time of one training step of an LSTM
against the sequence length, for plain back-propagation through time, truncated BPTT and
activation checkpointing, with PyTorch's plain BPTT beside them.

    .venv/bin/python benchmarks/rnn_memory.py [--lengths 100,250,500,1000,2000] [--chunk 100]
                                              [--json out.json] [--threads 2]

The model: a 1-layer LSTM, input 128, hidden 256, batch 32, float32; the loss is
sum_t <y_t, u_t> / T for a fixed random u (every step's output enters the loss, as in a
language model or a sequence-to-sequence task). One training step is forward + backward.

- ``plain``: the whole sequence in one graph; backward keeps every step's gates and states
  (what the lecture warns about: memory grows with the length).
- ``tbptt``: truncated BPTT (``foveanet train --bptt N``): the sequence in chunks of ``--chunk``
  steps, each chunk's graph back-propagated and freed before the next; the states are carried
  from chunk to chunk, detached, so the gradient reaches back at most a chunk. The same work as
  plain, other (truncated) gradients.
- ``checkpoint``: ``fv.utils.checkpoint`` around each chunk (the LSTM and the chunk's loss): the
  forward keeps only each chunk's entering states; backward recomputes one chunk at a time. The
  gradients are plain BPTT's (checked here, see ``--check``), for one more forward.
- ``torch``: PyTorch's plain BPTT.

Each (mode, length) runs in a fresh child process: the data is made, the layer built and one
untimed step run on the first WARM steps only (every code path once, little memory); then the peak
resident set's high-water mark is reset (Linux: "5" written to /proc/self/clear_refs) and three
timed steps run on the whole sequence. Peak memory is the high-water mark's growth above the
state before those steps, in MiB (what a step needs beyond the model and the data: the first
step's peak, as memory freed by a step stays with the allocator for the next); time is the median
of the three steps.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

INPUT, HIDDEN, BATCH = 128, 256, 32
WARM = 5  # steps of the untimed first step (short: its memory must not hide the measured peak)
MODES = ("plain", "tbptt", "checkpoint", "torch")


def _peak_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def data(steps):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, BATCH, INPUT), dtype=np.float32)
    u = rng.standard_normal((steps, BATCH, HIDDEN), dtype=np.float32)
    return x, u


def fv_step(mode, lstm, x, u, chunk):
    """One training step of foveanet's LSTM in ``mode``; returns the loss."""
    import foveanet as fv

    steps = x.shape[0]
    lstm.zero_grad()
    if mode == "plain":
        y, _ = lstm(x)
        loss = (y * u).sum() / steps
        loss.backward()
        return loss.item()
    h = c = fv.zeros(1, BATCH, HIDDEN)
    total = 0.0
    if mode == "tbptt":
        for t0 in range(0, steps, chunk):
            y, (h, c) = lstm(x[t0:t0 + chunk], (h.detach(), c.detach()))
            loss = (y * u[t0:t0 + chunk]).sum() / steps
            loss.backward()
            total += loss.item()
        return total

    def segment(xs, us, h, c):
        y, (h, c) = lstm(xs, (h, c))
        return (y * us).sum() / steps, h, c

    losses = []
    for t0 in range(0, steps, chunk):
        loss, h, c = fv.utils.checkpoint(segment, x[t0:t0 + chunk], u[t0:t0 + chunk], h, c)
        losses.append(loss)
    loss = fv.stack(losses).sum()
    loss.backward()
    return loss.item()


def torch_step(lstm, x, u):
    lstm.zero_grad()
    y, _ = lstm(x)
    loss = (y * u).sum() / x.shape[0]
    loss.backward()
    return loss.item()


def child(mode, steps, chunk, threads):
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(threads)  # noqa: F841 - kept for the process
    x, u = data(steps)
    if mode == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        lstm = torch.nn.LSTM(INPUT, HIDDEN)
        x, u = torch.from_numpy(x), torch.from_numpy(u)
        step = lambda: torch_step(lstm, x, u)  # noqa: E731
    else:
        import foveanet as fv

        fv.backend.cpu.warm()
        fv.manual_seed(0)
        lstm = fv.nn.LSTM(INPUT, HIDDEN)
        x, u = fv.tensor(x), fv.tensor(u)
        step = lambda: fv_step(mode, lstm, x, u, chunk)  # noqa: E731
    warm_x, warm_u = x[:WARM], u[:WARM]  # untimed: every code path once, on a short sequence
    if mode == "torch":
        torch_step(lstm, warm_x, warm_u)
    else:
        fv_step(mode, lstm, warm_x, warm_u, chunk)
    _reset_peak()
    before = _peak_kib()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return dict(mode=mode, steps=steps, chunk=chunk, peak_growth_mib=(_peak_kib() - before) / 1024,
                step_s=statistics.median(times), step_times_s=times)


def check_gradients(steps, chunk):
    """Checkpointing's gradients against plain BPTT's, same weights and data: max relative error."""
    import foveanet as fv

    x, u = data(steps)
    x, u = fv.tensor(x), fv.tensor(u)
    fv.manual_seed(0)
    lstm = fv.nn.LSTM(INPUT, HIDDEN)
    grads = {}
    for mode in ("plain", "checkpoint"):
        fv_step(mode, lstm, x, u, chunk)
        grads[mode] = {n: p.grad.data.copy() for n, p in lstm.named_parameters()}
    return max(float(np.abs(grads["plain"][n] - grads["checkpoint"][n]).max()
                     / max(np.abs(grads["plain"][n]).max(), 1e-30)) for n in grads["plain"])


def run_child(mode, steps, chunk, threads):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", f"{mode}:{steps}", "--chunk",
           str(chunk), "--threads", str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"child {mode}:{steps} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default="100,250,500,1000,2000")
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--json")
    ap.add_argument("--check", type=int, default=300,
                    help="sequence length of the gradient check (0: skip)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        mode, steps = args.child.split(":")
        print(json.dumps(child(mode, int(steps), args.chunk, args.threads)))
        return
    lengths = [int(v) for v in args.lengths.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    import datetime
    import platform

    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}  "
          f"{platform.processor() or platform.machine()}  threads {args.threads}  LSTM {INPUT}->"
          f"{HIDDEN}, batch {BATCH}, chunk {args.chunk}")
    if args.check:
        err = check_gradients(args.check, args.chunk)
        print(f"checkpointing's gradients vs plain BPTT's ({args.check} steps): max relative "
              f"difference {err:.2e}")
    results = []
    for steps in lengths:
        row = {m: run_child(m, steps, args.chunk, args.threads) for m in modes}
        results.append(dict(steps=steps, **row))
        print(f"T={steps:5d}  " + "  ".join(
            f"{m} {row[m]['peak_growth_mib']:7.1f} MiB {1e3 * row[m]['step_s']:8.1f} ms" for m in modes),
            flush=True)
    head = ["steps"] + [f"{m} MiB" for m in modes] + [f"{m} ms" for m in modes]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in results:
        cells = [str(r["steps"])] + [f"{r[m]['peak_growth_mib']:.1f}" for m in modes] + \
                [f"{1e3 * r[m]['step_s']:.0f}" for m in modes]
        print("| " + " | ".join(cells) + " |")
    last = results[-1]
    if "plain" in last:
        for m in ("tbptt", "checkpoint"):
            if m in last:
                print(f"at {last['steps']} steps: {m} peak memory {last['plain']['peak_growth_mib'] / max(last[m]['peak_growth_mib'], 1e-9):.1f}x "
                      f"less than plain BPTT, step time x{last[m]['step_s'] / last['plain']['step_s']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(results=results, chunk=args.chunk, threads=args.threads), f, indent=1)


if __name__ == "__main__":
    main()
