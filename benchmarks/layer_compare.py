"""One layer at a time, foveanet beside PyTorch: the layers of lenet5 and cnn-bn, same inputs.

    .venv/bin/python benchmarks/layer_compare.py [--layers small|segnet64] [--batch 256]
                                                 [--samples 12] [--calls 3] [--backward]
                                                 [--threads 2] [--json out.json]

Where `compare.py` times whole steps, this names the layer that wins or loses them. Each layer (the
convolutions of lenet5 and cnn-bn, and batch norm, ReLU and 2x2 max pooling at cnn-bn's first size)
runs on the same random float32 input in both libraries: its forward under no_grad, or with
``--backward`` forward + backward from a fixed output gradient, the input and the weight taking
gradients. Before timing, both libraries' outputs (with ``--backward``: the input gradients) must
agree within 1e-4 of their largest magnitude. One sample is ``--calls`` calls in a row; the
libraries alternate sample by sample, and which goes first alternates too. Before each sample the
script pauses for ``SETTLE_S``, so that one library's idle threads have stopped spinning when the
other starts. Printed per layer: the algorithm foveanet chose, the fastest and median sample of
each library, and PyTorch's time over foveanet's (> 1: foveanet is faster) for the fastest samples
and for the median of the paired samples.

On a shared VM the fastest samples say what each library can do, and the medians say how it
holds up while other tenants use the memory system (benchmarks/RESULTS.md, 2026-12-08 02:50 UTC).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import foveanet as fv
from foveanet.nn import functional as F
from foveanet.ops import algorithms

SETTLE_S = 0.05

# (name, in channels, out channels, size, kernel, padding) per --layers set
CONVS = {
    "small": (("cnn-bn conv1", 1, 32, 28, 3, 1), ("cnn-bn conv2", 32, 32, 28, 3, 1),
              ("cnn-bn conv3", 32, 64, 14, 3, 1), ("cnn-bn conv4", 64, 64, 14, 3, 1),
              ("lenet5 conv1", 1, 6, 28, 5, 2), ("lenet5 conv2", 6, 16, 14, 5, 0)),
    # segnet_small(width=16, depth=3) on 64x64 scenes (generative_compare.py's segnet64): its
    # convolutions' distinct shapes, encoder then decoder, the 11-class head last
    "segnet64": (("enc1 conv1", 1, 16, 64, 3, 1), ("enc1 conv2 / dec1", 16, 16, 64, 3, 1),
                 ("enc2 conv1", 16, 32, 32, 3, 1), ("enc2 conv2 / dec2", 32, 32, 32, 3, 1),
                 ("enc3 conv1", 32, 64, 16, 3, 1), ("enc3 conv2 / dec3", 64, 64, 16, 3, 1),
                 ("dec3 conv1", 64, 32, 16, 3, 1), ("dec2 conv1", 32, 16, 32, 3, 1),
                 ("head", 16, 11, 64, 3, 1)),
}


def _layers(batch, backward, rng, which="small"):
    """(name, algorithm, foveanet call, PyTorch call) for every layer of the set ``which``."""
    import torch

    out = []
    for name, c, o, hw, k, p in CONVS[which]:
        x = rng.standard_normal((batch, c, hw, hw), dtype=np.float32)
        w = (rng.standard_normal((o, c, k, k), dtype=np.float32) * 0.1)
        g = rng.standard_normal((batch, o, hw + 2 * p - k + 1, hw + 2 * p - k + 1), dtype=np.float32)
        fx, fw, fg = fv.tensor(x, requires_grad=backward), fv.tensor(w, requires_grad=backward), fv.tensor(g)
        tx, tw, tg = (torch.tensor(x, requires_grad=backward), torch.tensor(w, requires_grad=backward),
                      torch.tensor(g))
        geometry = algorithms.ConvGeometry(weight_shape=(o, c, k, k), stride=(1, 1), dilation=(1, 1),
                                           groups=1, pads=(p, p, p, p), dtype=np.float32,
                                           batch=batch, out_hw=tuple(g.shape[2:]))
        chosen = algorithms.select("conv2d", geometry).name

        def fcall(fx=fx, fw=fw, fg=fg, p=p):
            y = F.conv2d(fx, fw, padding=p)
            if backward:
                fx.grad = fw.grad = None
                y.backward(fg)
                return fx.grad.data
            return y.data

        def tcall(tx=tx, tw=tw, tg=tg, p=p):
            y = torch.nn.functional.conv2d(tx, tw, padding=p)
            if backward:
                tx.grad = tw.grad = None
                y.backward(tg)
                return tx.grad.numpy()
            return y.numpy()
        out.append((f"{name} {c}->{o} {k}x{k} at {hw}x{hw}", chosen, fcall, tcall))
    if which != "small":
        return out
    x = rng.standard_normal((batch, 32, 28, 28), dtype=np.float32)
    fx, tx = fv.tensor(x, requires_grad=backward), torch.tensor(x, requires_grad=backward)
    fbn, tbn = fv.nn.BatchNorm2d(32), torch.nn.BatchNorm2d(32)
    fbn.train(backward)
    tbn.train(backward)

    def pair(ff, tf, out_hw):
        """The calls of a layer on x whose output is (batch, 32, *out_hw), with one fixed output
        gradient of that shape (made here, outside the timed calls)."""
        g = rng.standard_normal((batch, 32) + out_hw, dtype=np.float32)
        fg, tg = fv.tensor(g), torch.tensor(g)

        def fcall():
            y = ff()
            if backward:
                fx.grad = None
                y.backward(fg)
                return fx.grad.data
            return y.data

        def tcall():
            y = tf()
            if backward:
                tx.grad = None
                y.backward(tg)
                return tx.grad.numpy()
            return y.detach().numpy()
        return fcall, tcall
    out.append(("batch norm, 32 at 28x28", "", *pair(lambda: fbn(fx), lambda: tbn(tx), (28, 28))))
    out.append(("ReLU, 32 at 28x28", "", *pair(lambda: F.relu(fx), lambda: torch.relu(tx), (28, 28))))
    out.append(("max pool 2x2, 32 at 28x28", "",
                *pair(lambda: F.max_pool2d(fx, 2), lambda: torch.nn.functional.max_pool2d(tx, 2),
                      (14, 14))))
    return out


def _sample(fn, calls):
    time.sleep(SETTLE_S)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", choices=sorted(CONVS), default="small", help="small: lenet5's and "
                    "cnn-bn's layers (default); segnet64: the small SegNet's convolutions (batch 32 "
                    "in generative_compare.py)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--samples", type=int, default=12, help="timed samples per library and layer")
    ap.add_argument("--calls", type=int, default=3, help="calls per sample")
    ap.add_argument("--backward", action="store_true", help="time forward + backward (default: "
                    "the forward under no_grad)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    fv.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    what = "forward + backward" if args.backward else "forward under no_grad"
    print(f"{what}, batch {args.batch}, {args.threads} threads; {args.samples} alternating samples of "
          f"{args.calls} calls; ms per call")
    print(f"{'layer':38s} {'algorithm':10s} {'foveanet min / median':>22s} {'PyTorch min / median':>21s}"
          f" {'ratio min':>9s} {'paired':>7s}")
    rows = []
    for name, algo, fcall, tcall in _layers(args.batch, args.backward, rng, args.layers):
        ctx = fv.no_grad() if not args.backward else fv.enable_grad()
        tctx = torch.no_grad() if not args.backward else torch.enable_grad()
        with ctx, tctx:
            ours, theirs = np.asarray(fcall()), np.asarray(tcall())
            scale = float(np.max(np.abs(theirs))) or 1.0
            same = ours.shape == theirs.shape
            diff = float(np.max(np.abs(ours - theirs))) / scale if same else np.inf
            if not diff <= 1e-4:  # the timings would not compare equal work
                what = "the input gradient" if args.backward else "the output"
                raise SystemExit(f"{name}: foveanet and PyTorch disagree ({what} differs by {diff:.2e} "
                                 f"of its largest magnitude, shapes {ours.shape} and {theirs.shape})")
            fs, ts = [], []
            for i in range(args.samples):
                if i % 2:
                    ts.append(_sample(tcall, args.calls))
                    fs.append(_sample(fcall, args.calls))
                else:
                    fs.append(_sample(fcall, args.calls))
                    ts.append(_sample(tcall, args.calls))
        paired = statistics.median(t / f for f, t in zip(fs, ts))
        row = dict(layer=name, algorithm=algo, max_rel_diff=diff, foveanet_min_ms=min(fs),
                   foveanet_median_ms=statistics.median(fs), torch_min_ms=min(ts),
                   torch_median_ms=statistics.median(ts), ratio_min=min(ts) / min(fs),
                   ratio_paired_median=paired)
        rows.append(row)
        print(f"{name:38s} {algo:10s} {row['foveanet_min_ms']:10.2f} / {row['foveanet_median_ms']:8.2f}"
              f" {row['torch_min_ms']:10.2f} / {row['torch_median_ms']:8.2f} {row['ratio_min']:9.2f}"
              f" {paired:7.2f}", flush=True)
    print("ratio: PyTorch's time over foveanet's (> 1: foveanet faster); paired: the median of the "
          "samples' ratios")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(layers_set=args.layers, batch=args.batch, backward=args.backward,
                           threads=args.threads, layers=rows), f, indent=1)
    return rows


if __name__ == "__main__":
    main()
