"""The lecture's ImageNet-size networks beside PyTorch: a training step and inference at 224x224.

    .venv/bin/python benchmarks/zoo_compare.py [--models alexnet,vgg16,resnet18,resnet50,densenet121]
        [--train-batch 16] [--infer-batches 1,32] [--busy] [--repeats 3] [--warmup 1]
        [--min-time 0] [--threads 2] [--json F] [--quick] [--plan] [--no-train]

For each network, foveanet's zoo model (``fv.models.create(name)``, 1000 classes) and its
plain-torch twin (``tests/zoo_twins.py``: torchvision's modules written out, since torchvision
does not run beside this torch) get the same weights (foveanet's initialisation, through the
state_dict) and the same random images. Equal work is checked first (logits and loss within
1e-4, eval and training mode, as ``compare.py`` does). Then, interleaved repeat by repeat
(``compare.interleaved``: the order alternates, a pause between the libraries so neither pays
for the other's spinning threads, one untimed step before each):

- ``train``: one SGD (momentum 0.9) step on ``--train-batch`` images, cross-entropy;
- ``infer b1``, ``infer b32``: a forward pass in eval mode without gradients;
- with ``--plan``, ``plan b1``, ``plan b32``: ``fv.optimize_for_inference(model)`` beside
  onnxruntime running the file ``fv.onnx.export`` writes for the same model (its
  ``intra_op_num_threads`` = ``--threads``, one inter-op thread, all graph optimisations), the
  outputs checked equal first (within 1e-4 of the largest logit).

The figure is the median seconds per step, the ratio PyTorch / foveanet (> 1: foveanet faster;
for the plan rows onnxruntime / foveanet's plan).
``--busy``: one other process spins on a core the whole time (a shared machine); the quiet gate
is then off.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
from compare import (GATE, FvRunner, TorchRunner, chosen_cases, copy_weights,  # noqa: E402
                     equal_work_check, interleaved, side_by_side_options, side_by_side_start,
                     text_table)

import foveanet as fv  # noqa: E402

MODELS = ("alexnet", "vgg16", "resnet18", "resnet50", "densenet121")
SIZE = 224
CLASSES = 1000


def images(n, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 3, SIZE, SIZE), dtype=np.float32),
            rng.integers(0, CLASSES, n).astype(np.int64))


def bench_model(name, args):
    from zoo_twins import twin

    fv.manual_seed(0)
    fmodel, tmodel = fv.models.create(name, num_classes=CLASSES), twin(name, CLASSES)
    copy_weights(fmodel, tmodel)
    xc, yc = images(2, 0)
    check = equal_work_check(name, fmodel, tmodel, xc, yc)
    xt, yt = images(args.train_batch, 1)
    res = dict(model=name, input=[3, SIZE, SIZE], equal_work=check, figures={})
    train_figure = [] if args.no_train else [("train", args.train_batch)]
    for figure, batch in train_figure + [(f"infer b{b}", b) for b in args.infer_batches]:
        xi, _ = images(batch, 2)
        fr, tr = FvRunner(name, fmodel, xt, yt, xi), TorchRunner(name, tmodel, xt, yt, xi)
        train = figure == "train"
        fmodel.train(train), tmodel.train(train)
        fstep, tstep = (fr.train_step, tr.train_step) if train else (fr.infer_step, tr.infer_step)
        GATE["log"] = []
        f_s, t_s = interleaved(fstep, tstep, args.repeats, args.warmup, args.min_time)
        f_med, t_med = statistics.median(f_s), statistics.median(t_s)
        res["figures"][figure] = dict(batch=batch, foveanet_s=f_s, torch_s=t_s,
                                      foveanet_median_s=f_med, torch_median_s=t_med,
                                      ratio=t_med / f_med)
        print(f"{name:12s} {figure:9s} batch {batch:3d}: foveanet {f_med * 1e3:9.1f} ms  PyTorch "
              f"{t_med * 1e3:9.1f} ms  PyTorch/foveanet {t_med / f_med:.3f}", flush=True)
        del fr, tr
        gc.collect()
    if args.plan:
        res["figures"].update(bench_plan(name, fmodel, args))
    return res


def bench_plan(name, fmodel, args):
    """``plan bN`` figures: the optimised plan beside onnxruntime on the exported file."""
    import tempfile

    import onnxruntime as ort

    fmodel.eval()
    opt = fv.optimize_for_inference(fmodel, (3, SIZE, SIZE))
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{name}.onnx")
        fv.onnx.export(fmodel, fv.tensor(images(1, 3)[0]), path)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feed_name = sess.get_inputs()[0].name
        for batch in args.infer_batches:
            x, _ = images(batch, 2)
            mine, theirs = opt.run(x), sess.run(None, {feed_name: x})[0]
            err = float(np.max(np.abs(mine - theirs)))
            if err > 1e-4 * float(np.max(np.abs(theirs))) + 1e-5:
                raise SystemExit(f"{name} plan batch {batch}: differs from onnxruntime by {err:.2e}")
            GATE["log"] = []
            f_s, t_s = interleaved(lambda: opt.run(x), lambda: sess.run(None, {feed_name: x}),
                                   args.repeats, args.warmup, args.min_time)
            f_med, t_med = statistics.median(f_s), statistics.median(t_s)
            figures[f"plan b{batch}"] = dict(batch=batch, versus="onnxruntime", foveanet_s=f_s,
                                             torch_s=t_s, foveanet_median_s=f_med,
                                             torch_median_s=t_med, ratio=t_med / f_med,
                                             max_abs_error=err)
            print(f"{name:12s} plan b{batch:<4d} batch {batch:3d}: foveanet plan {f_med * 1e3:9.1f} ms  "
                  f"onnxruntime {t_med * 1e3:9.1f} ms  onnxruntime/plan {t_med / f_med:.3f}",
                  flush=True)
        del sess
    return figures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--infer-batches", default="1,32")
    ap.add_argument("--busy", action="store_true",
                    help="one other process keeps a core busy during the measurements")
    ap.add_argument("--no-train", action="store_true", help="leave out the training step")
    ap.add_argument("--plan", action="store_true",
                    help="also fv.optimize_for_inference beside onnxruntime at the infer batches")
    side_by_side_options(ap, warmup=1)
    args = ap.parse_args(argv)
    models = chosen_cases(ap, args.models, MODELS)
    args.infer_batches = [int(b) for b in args.infer_batches.split(",") if b.strip()]
    if args.repeats is None and not args.quick:
        args.repeats = 3
    if args.busy:
        args.quiet_wait = 0.0
    info, _limiter = side_by_side_start(args, min_time=0.0)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        results = [bench_model(m, args) for m in models]
    finally:
        if spinner is not None:
            spinner.kill()
    rows = [[r["model"], fig, str(v["batch"]), f"{v['foveanet_median_s'] * 1e3:.1f}",
             f"{v['torch_median_s'] * 1e3:.1f}", f"{v['ratio']:.3f}"]
            for r in results for fig, v in r["figures"].items()]
    print(("with one core kept busy by another process\n" if args.busy else "") +
          text_table(["model", "figure", "batch", "foveanet ms", "PyTorch ms", "PyTorch/foveanet"],
                     rows, left=2) +
          ("\n(plan rows: foveanet's optimised plan against onnxruntime in the PyTorch columns)"
           if args.plan else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "busy": args.busy, "repeats": args.repeats,
                       "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
