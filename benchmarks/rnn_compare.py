"""foveanet's recurrent layers vs PyTorch's on the CPU, side by side: the same layers, weights,
sequences, dtype and threads.

    .venv/bin/python benchmarks/rnn_compare.py [--cases lstm1-t35-b32,...] [--repeats N]
                                               [--json out.json] [--quick] [--threads 2]

Cases (input size 256, hidden size 256, float32, time-major (T, B, 256) input):

==============  ======================================
lstm1-t35-b32   1-layer LSTM, 35 steps, batch 32
lstm1-t100-b64  1-layer LSTM, 100 steps, batch 64
lstm2-t35-b64   2-layer LSTM, 35 steps, batch 64
lstm2-t100-b32  2-layer LSTM, 100 steps, batch 32
gru1-t100-b64   1-layer GRU, 100 steps, batch 64
gru2-t35-b32    2-layer GRU, 35 steps, batch 32
==============  ======================================

For each case, in the same process and interleaved (compare.py's ``interleaved``: alternating
repeats, a pause between the libraries, the quiet-CPU gate), it times

- training: forward, then backward of the output against a fixed upstream gradient (the same
  array for both), the parameters' gradients cleared before each step;
- inference: forward under no_grad.

Before timing, both run the same sequence from the same weights (the foveanet layer's
``state_dict`` copied into PyTorch's, same names) and must agree: output and final states within
1e-4 of their largest magnitude, every parameter gradient within 1e-3. The figure per library is
the median time per step over the repeats; the ratio is PyTorch's time over foveanet's (> 1:
foveanet is faster). PyTorch runs its LSTM through oneDNN on this CPU (float32, no projection);
its GRU and RNN through its native step loop.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import foveanet as fv  # noqa: E402
from compare import (GATE, chosen_cases, interleaved, side_by_side_options,  # noqa: E402
                     side_by_side_start, text_table)

CASES = {
    "lstm1-t35-b32": ("LSTM", 1, 35, 32),
    "lstm1-t100-b64": ("LSTM", 1, 100, 64),
    "lstm2-t35-b64": ("LSTM", 2, 35, 64),
    "lstm2-t100-b32": ("LSTM", 2, 100, 32),
    "gru1-t100-b64": ("GRU", 1, 100, 64),
    "gru2-t35-b32": ("GRU", 2, 35, 32),
}
SIZE = 256


def layers(kind, num_layers):
    import torch

    fv.manual_seed(0)
    ours = getattr(fv.nn, kind)(SIZE, SIZE, num_layers)
    theirs = getattr(torch.nn, kind)(SIZE, SIZE, num_layers)
    with torch.no_grad():
        for k, v in ours.state_dict().items():
            theirs.state_dict()[k].copy_(torch.from_numpy(np.array(v.data)))
    return ours, theirs


def check_equal_work(ours, theirs, x, up):
    import torch

    fx = fv.tensor(x)
    fy, fh = ours(fx)
    ty, th = theirs(torch.from_numpy(x))
    pairs = [(fy, ty)] + list(zip(fh if isinstance(fh, tuple) else (fh,),
                                  th if isinstance(th, tuple) else (th,)))
    worst = 0.0
    for a, b in pairs:
        b = b.detach().numpy()
        worst = max(worst, float(np.abs(a.data - b).max() / max(np.abs(b).max(), 1e-12)))
    fy.backward(fv.tensor(up))
    ty.backward(torch.from_numpy(up))
    grad_err = 0.0
    theirs_p = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        ref = theirs_p[name].grad.numpy()
        grad_err = max(grad_err, float(np.abs(p.grad.data - ref).max() / max(np.abs(ref).max(), 1e-12)))
    if worst > 1e-4 or grad_err > 1e-3:
        raise SystemExit(f"the two layers disagree: outputs {worst:.2e}, gradients {grad_err:.2e}")
    return dict(max_rel_output_error=worst, max_rel_grad_error=grad_err)


def bench_case(name, args):
    import torch

    kind, num_layers, steps, batch = CASES[name]
    ours, theirs = layers(kind, num_layers)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((steps, batch, SIZE), dtype=np.float32)
    up = rng.standard_normal((steps, batch, SIZE), dtype=np.float32)
    check = check_equal_work(ours, theirs, x, up)
    fx, fup = fv.tensor(x), fv.tensor(up)
    tx, tup = torch.from_numpy(x), torch.from_numpy(up)

    def f_train():
        ours.zero_grad()
        ours(fx)[0].backward(fup)

    def t_train():
        theirs.zero_grad()
        theirs(tx)[0].backward(tup)

    def f_infer():
        with fv.no_grad():
            ours(fx)

    def t_infer():
        with torch.no_grad():
            theirs(tx)

    GATE["log"] = []
    f_tr, t_tr = interleaved(f_train, t_train, args.repeats, args.warmup, args.min_time)
    f_in, t_in = interleaved(f_infer, t_infer, args.repeats, args.warmup, args.min_time)
    res = dict(case=name, kind=kind, num_layers=num_layers, steps=steps, batch=batch,
               input_size=SIZE, hidden_size=SIZE, equal_work=check)
    for lib, tr, inf in (("foveanet", f_tr, f_in), ("torch", t_tr, t_in)):
        res[lib] = dict(train_step_s=tr, infer_step_s=inf, train_median_s=statistics.median(tr),
                        infer_median_s=statistics.median(inf))
    res["ratio"] = dict(train=res["torch"]["train_median_s"] / res["foveanet"]["train_median_s"],
                        infer=res["torch"]["infer_median_s"] / res["foveanet"]["infer_median_s"])
    return res


def table(results):
    head = ("case", "figure", "foveanet ms", "PyTorch ms", "PyTorch/foveanet")
    rows = []
    for r in results:
        for key, label in (("train", "train step (fwd+bwd)"), ("infer", "inference (no_grad)")):
            rows.append((r["case"], label, f"{1e3 * r['foveanet'][key + '_median_s']:.2f}",
                         f"{1e3 * r['torch'][key + '_median_s']:.2f}", f"{r['ratio'][key]:.3f}"))
    return text_table(head, rows, left=2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    side_by_side_options(ap)
    args = ap.parse_args(argv)
    cases = chosen_cases(ap, args.cases, CASES)
    info, limiter = side_by_side_start(args, 0.5)  # noqa: F841 - the limiter is kept for the run
    results = []
    for c in cases:
        r = bench_case(c, args)
        print(f"{c}: equal work (outputs {r['equal_work']['max_rel_output_error']:.1e}, gradients "
              f"{r['equal_work']['max_rel_grad_error']:.1e})", flush=True)
        results.append(r)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(machine=info, results=results), f, indent=1)


if __name__ == "__main__":
    main()
