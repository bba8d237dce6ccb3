"""Inference: foveanet eval vs ``fv.optimize_for_inference`` vs PyTorch eval (vs ONNX Runtime).

    .venv/bin/python benchmarks/inference_optimize.py [--models lenet5,cnn-bn,resnet20]
        [--batches 1,256] [--repeats 7] [--min-time 0.3] [--threads 2] [--quiet-wait 0] [--json F]

For each model and batch size it measures, in one process and interleaved (the order rotates
repeat by repeat), the milliseconds per forward pass of

- ``foveanet``: the model in eval mode under ``fv.no_grad()`` (the engine: Tensors, one Function
  per primitive, module calls);
- ``optimized``: ``fv.optimize_for_inference(model)`` called on a Tensor (see
  ``foveanet/interop/optimize.py``: BatchNorm folded, ReLU fused, a flat plan of NumPy steps);
- ``torch``: the same architecture in PyTorch 2.13 (CPU) with the same weights, eval mode under
  ``torch.no_grad()``;
- ``onnxruntime``: the file ``fv.onnx.export`` writes for the model, run by an
  ``onnxruntime.InferenceSession`` (``intra_op_num_threads`` = ``--threads``, one inter-op
  thread, all graph optimisations on). If the export or the session fails, the column says why.

Each figure is the median over ``--repeats`` repeats; one repeat runs whole forward passes until
``--min-time`` seconds have passed (after warm-up passes). The ratios are foveanet / optimized
(the speed-up of the optimiser) and optimized / torch, optimized / onnxruntime (> 1: the
optimised plan is slower). All libraries are limited to ``--threads`` threads (threadpoolctl for
NumPy's BLAS, ``torch.set_num_threads``, the ORT session options).

The models are ``benchmarks/compare.py``'s (``fv_model``, ``torch_model``, ``copy_weights``, the
same inputs), except ``cnn-bn``, which is built at the default training recipe's width
(``foveanet.recipes.DEFAULT_RECIPE``) and its PyTorch twin translated layer by layer from the
foveanet ``Sequential``. BatchNorm running statistics are randomised (fresh ones are the identity)
and copied to the PyTorch model; before any timing all columns must give the same logits
(within 1e-4 of their largest magnitude).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402 - the models, weights copy, timing and machine description

import foveanet as fv  # noqa: E402
from foveanet.recipes import DEFAULT_RECIPE  # noqa: E402

MODELS = ("lenet5", "cnn-bn", "resnet20")
COLUMNS = ("foveanet", "optimized", "torch", "onnxruntime")


# -------------------------------------------------------------------------------------- models
def torch_twin(seq):
    """A PyTorch nn.Sequential with the same layers (and state_dict keys) as a foveanet one."""
    import torch.nn as tnn

    layers = []
    for m in seq:
        if isinstance(m, fv.nn.Conv2d):
            layers.append(tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                     m.dilation, m.groups, bias=m.bias is not None))
        elif isinstance(m, fv.nn.BatchNorm2d):
            layers.append(tnn.BatchNorm2d(m.num_features, eps=m.eps))
        elif isinstance(m, fv.nn.ReLU):
            layers.append(tnn.ReLU())
        elif isinstance(m, fv.nn.MaxPool2d):
            layers.append(tnn.MaxPool2d(m.kernel_size, m.stride))
        elif isinstance(m, fv.nn.Flatten):
            layers.append(tnn.Flatten())
        elif isinstance(m, fv.nn.Dropout):
            layers.append(tnn.Dropout(m.p))
        elif isinstance(m, fv.nn.Linear):
            layers.append(tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None))
        else:
            raise TypeError(f"torch_twin: no PyTorch twin for {type(m).__name__}")
    return tnn.Sequential(*layers)


def models_for(name):
    if name == "cnn-bn":
        fv.manual_seed(0)
        fmodel = fv.models.create("cnn_bn", **DEFAULT_RECIPE["model_options"])
        tmodel = torch_twin(fmodel)
    else:
        fmodel, tmodel = compare.fv_model(name), compare.torch_model(name)
    rng = np.random.default_rng(0)
    for m in fmodel.modules():
        if isinstance(m, fv.nn.BatchNorm2d):
            m.running_mean.data[...] = rng.normal(0, 0.2, m.running_mean.shape)
            m.running_var.data[...] = rng.uniform(0.5, 2.0, m.running_var.shape)
    compare.copy_weights(fmodel, tmodel)
    return fmodel.eval(), tmodel.eval()


def onnx_session(fmodel, name, threads, tmpdir):
    """(session, None) or (None, why not)."""
    try:
        import onnxruntime as ort

        path = os.path.join(tmpdir, f"{name}.onnx")
        fv.onnx.export(fmodel, fv.tensor(compare.batch(name, 1, 3)[0]), path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        return sess, None
    except Exception as exc:  # noqa: BLE001 - reported in the table, the other columns still run
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"


# -------------------------------------------------------------------------------------- timing
def measure(steps, repeats, warmup, min_time, gate):
    """Interleaved repeats of every step function; the order rotates each repeat."""
    for _ in range(warmup):
        for f in steps.values():
            f()
    times = {k: [] for k in steps}
    names = list(steps)
    waited = 0.0
    for r in range(repeats):
        waited += compare.wait_quiet(*gate)[0]
        for k in names[r % len(names):] + names[:r % len(names)]:
            times[k].append(compare.time_steps(steps[k], min_time) * 1e3)
    return {k: dict(median_ms=statistics.median(v), min_ms=min(v), all_ms=v) for k, v in times.items()}, waited


def bench(name, batches, args, tmpdir):
    import torch

    fmodel, tmodel = models_for(name)
    opt = fv.optimize_for_inference(fmodel, compare.INPUT[name])
    sess, why = onnx_session(fmodel, name, args.threads, tmpdir)
    rows = []
    for n in batches:
        x = compare.batch(name, n, 1)[0]
        xf, xt = fv.tensor(x), torch.from_numpy(x)

        def f_fv():
            with fv.no_grad():
                return fmodel(xf).numpy()

        def f_opt():
            return opt(xf).numpy()

        def f_torch():
            with torch.no_grad():
                return tmodel(xt).numpy()

        steps = dict(foveanet=f_fv, optimized=f_opt, torch=f_torch)
        if sess is not None:
            feed = {sess.get_inputs()[0].name: x}
            steps["onnxruntime"] = lambda: sess.run(None, feed)[0]
        ref = f_torch()
        for k, f in steps.items():  # equal work: the same logits everywhere
            d = float(np.max(np.abs(f() - ref)))
            if d > 1e-4 * float(np.max(np.abs(ref))) + 1e-6:
                raise SystemExit(f"{name} batch {n}: {k} differs from torch by {d:.2e}: not equal work")
        res, waited = measure(steps, args.repeats, args.warmup, args.min_time,
                              (args.quiet_busy, args.quiet_wait))
        rows.append(dict(model=name, batch=n, results=res, onnxruntime_error=why, waited_s=waited,
                         plan=repr(opt)))
        print(f"  {name} batch {n}: " + ", ".join(f"{k} {v['median_ms']:.3f} ms" for k, v in res.items())
              + (f" (waited {waited:.0f} s for quiet)" if waited else ""), flush=True)
    return rows, repr(opt)


def table(rows):
    head = ("model", "batch", "foveanet ms", "optimized ms", "torch ms", "onnxrt ms", "fv/opt",
            "opt/torch", "opt/ort")
    out = [head]
    for r in rows:
        m = {k: r["results"][k]["median_ms"] for k in r["results"]}
        ort = m.get("onnxruntime")
        out.append((r["model"], str(r["batch"]), f"{m['foveanet']:.3f}", f"{m['optimized']:.3f}",
                    f"{m['torch']:.3f}", f"{ort:.3f}" if ort is not None else "n/a",
                    f"{m['foveanet'] / m['optimized']:.2f}x", f"{m['optimized'] / m['torch']:.2f}",
                    f"{m['optimized'] / ort:.2f}" if ort is not None else "n/a"))
    widths = [max(len(row[i]) for row in out) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in out]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated, from " + ", ".join(MODELS))
    ap.add_argument("--batches", default="1,256")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quiet-wait", type=float, default=0.0, help="before each repeat, wait up to this many "
                    "seconds until other processes use at most --quiet-busy of the CPUs (default 0: off)")
    ap.add_argument("--quiet-busy", type=float, default=0.15)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {', '.join(bad)}; choose from {', '.join(MODELS)}")
    batches = [int(b) for b in args.batches.split(",")]

    import torch

    torch.set_num_threads(args.threads)
    limiter = threadpool_limits(args.threads)  # noqa: F841 - kept alive for the whole run
    info = compare.machine_info(args.threads)
    print(f"foveanet {info['foveanet']}: eval vs optimize_for_inference vs PyTorch {info['torch']} vs "
          f"onnxruntime, {info['date']}")
    print(f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs; threads {args.threads}; numpy "
          f"{info['numpy']}; load average at start "
          + ", ".join(f"{v:.2f}" for v in (info.get("load_average") or [])))
    print(f"method: {args.warmup} warm-up passes, median of {args.repeats} interleaved repeats of >= "
          f"{args.min_time} s each", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for name in models:
            r, plan = bench(name, batches, args, tmpdir)
            rows += r
            print(f"  {plan}" + (f"; onnxruntime: {r[0]['onnxruntime_error']}" if r[0]["onnxruntime_error"]
                                 else ""), flush=True)
    print()
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(machine=info, args=vars(args), rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
