"""Post-training int8 quantisation of a trained classifier: accuracy and speed beside float.

    .venv/bin/python benchmarks/int8_quantize.py --run RUN_DIR [--calibration 512]
        [--method minmax] [--batches 1,256] [--repeats 7] [--min-time 0.3] [--threads 2]
        [--json F]

``RUN_DIR`` is a ``foveanet train`` run of an image classifier (for instance the default
``cnn_bn`` recipe on Fashion-MNIST). The model (best checkpoint) is exported twice:
float32 with BatchNorm folded (``optimize=True``) and int8 (``quantize="int8"``, calibrated on
``--calibration`` training images drawn with seed 0; the test set is never used for it). Then,
on the whole test set (the run's own test split, as the run's evaluation prepares it):

- accuracy of the float model in foveanet, of the int8 file in onnxruntime and in foveanet
  (``fv.onnx.load``: QuantizeLinear / DequantizeLinear run as written, the operators in float);
- top-1 agreement of the int8 outputs with the float model's;

and milliseconds per forward pass at each ``--batches`` size (median of ``--repeats``, each
running passes for at least ``--min-time`` s, columns interleaved): foveanet's
``optimize_for_inference`` plan (float), onnxruntime on the float file and on the int8 file
(``intra_op_num_threads`` = ``--threads``), and foveanet on the int8 file.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402 - the machine description

import foveanet as fv  # noqa: E402
from foveanet.train.run import evaluation_arrays, load_run, load_test, load_train_val  # noqa: E402


def _session(path, threads):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _batched(fn, x, size=500):
    return np.concatenate([fn(x[i:i + size]) for i in range(0, len(x), size)])


def _time(fns, repeats, min_time):
    """Median ms per call of each function, the columns interleaved repeat by repeat."""
    for f in fns.values():
        f()
        f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            times[k].append(compare.time_steps(f, min_time) * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a classifier's run directory")
    ap.add_argument("--calibration", type=int, default=512)
    ap.add_argument("--method", default="minmax", choices=("minmax", "percentile", "entropy"))
    ap.add_argument("--batches", default="1,256")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    fv.set_num_threads(args.threads)
    run = load_run(args.run)
    model = run.model
    x_train, _ = evaluation_arrays(load_train_val(run.config)[0], run.config)
    x_test, y_test = evaluation_arrays(load_test(run.config), run.config)
    rng = np.random.default_rng(0)
    calib = x_train[rng.choice(len(x_train), args.calibration, replace=False)]
    with tempfile.TemporaryDirectory() as tmp:
        f32, i8 = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        example = fv.tensor(x_test[:2])
        fv.onnx.export(model, example, f32, optimize=True)
        t0 = time.perf_counter()
        fv.onnx.export(model, example, i8, quantize="int8", calibration=calib,
                       calibration_method=args.method)
        quantize_s = time.perf_counter() - t0
        s_f32, s_i8 = _session(f32, args.threads), _session(i8, args.threads)
        loaded = fv.onnx.load(i8)
        loaded.eval()
        sizes = {"float": os.path.getsize(f32), "int8": os.path.getsize(i8)}
    with fv.no_grad():
        ref = _batched(lambda a: model(fv.tensor(a)).numpy(), x_test)
        fv_i8 = _batched(lambda a: loaded(fv.tensor(a)).numpy(), x_test)
    ort_f32 = _batched(lambda a: s_f32.run(None, {"input": a})[0], x_test)
    ort_i8 = _batched(lambda a: s_i8.run(None, {"input": a})[0], x_test)
    acc = {k: float((v.argmax(1) == y_test).mean())
           for k, v in {"foveanet float": ref, "onnxruntime float": ort_f32,
                        "onnxruntime int8": ort_i8, "foveanet int8 file": fv_i8}.items()}
    agree = {"onnxruntime int8 vs float": float((ort_i8.argmax(1) == ref.argmax(1)).mean()),
             "foveanet int8 file vs float": float((fv_i8.argmax(1) == ref.argmax(1)).mean()),
             "foveanet int8 file vs onnxruntime int8": float((fv_i8.argmax(1) ==
                                                               ort_i8.argmax(1)).mean())}
    info = compare.machine_info(args.threads)
    print(f"model {run.config['model']} from {args.run}; calibration {args.calibration} training "
          f"images ({args.method}); quantising took {quantize_s:.1f} s; file {sizes['float']} -> "
          f"{sizes['int8']} bytes")
    print(f"test accuracy ({len(y_test)} images): " +
          ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    print("top-1 agreement: " + ", ".join(f"{k} {v:.4f}" for k, v in agree.items()))
    opt = fv.optimize_for_inference(model, example)
    timings = []
    with threadpool_limits(args.threads):
        for b in [int(v) for v in args.batches.split(",")]:
            x = np.ascontiguousarray(x_test[:b])
            tx = fv.tensor(x)
            cols = {"foveanet optimized float": lambda: opt.run(x),
                    "onnxruntime float": lambda: s_f32.run(None, {"input": x}),
                    "onnxruntime int8": lambda: s_i8.run(None, {"input": x})}
            with fv.no_grad():
                cols["foveanet int8 file"] = lambda: loaded(tx)
                ms = _time(cols, args.repeats, args.min_time)
            timings.append({"batch": b, "ms": ms})
            print(f"batch {b}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in ms.items()) +
                  f"; onnxruntime float/int8 {ms['onnxruntime float'] / ms['onnxruntime int8']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "run": args.run, "model": run.config["model"],
                       "calibration": args.calibration, "method": args.method,
                       "quantize_s": quantize_s, "file_bytes": sizes, "accuracy": acc,
                       "agreement": agree, "timings": timings}, f, indent=1)


if __name__ == "__main__":
    main()
