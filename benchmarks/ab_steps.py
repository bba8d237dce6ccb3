"""In-process A/B of engine variants on compare.py's models: the variants alternate step by step
in one process, so a drifting machine hits both alike (this VM's speed moves 1.5x between
processes). Prints the median and the fastest step time of each variant and their ratios.

    .venv/bin/python benchmarks/ab_steps.py --ab threads --models lenet5,cnn-bn --mode train
    .venv/bin/python benchmarks/ab_steps.py --ab wide --models lenet5 --mode infer --pairs 5

Variants (``--ab``):
- ``threads``: NumPy passes on one thread with OpenBLAS's default idle spin (2^28 cycles), as
  before ``backend/cpu/threads.py``, against split passes with the engine's spin (2^16);
- ``spin``: split passes with OpenBLAS spinning 2^16 / 2^18 / 2^20 cycles;
- ``wide``: convolution products per sample (``conv.WIDE_MACS = 0``) against the default rule;
- ``winograd``: every convolution through im2col against 3x3 ones through Winograd F(4x4, 3x3)
  (``algorithms.force``; the direct paths off in both);
- ``direct``: the direct convolution loops off / on (``algorithms.force``);
- ``compiled``: every numba kernel off (NumPy's passes, im2col, as without the ``fast`` extra)
  against all of them on (direct and Winograd convolutions, strided im2col / col2im, 2x2 max
  pooling, batch norm, SGD's update).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys

from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as C  # noqa: E402

from foveanet.backend.cpu import blas, kernels  # noqa: E402
from foveanet.ops import algorithms, conv  # noqa: E402


# Each variant is a function returning a context manager: the step runs inside it.
def _threads(n, spin):
    @contextlib.contextmanager
    def apply():
        os.environ["FOVEANET_THREADS"] = str(n)
        blas.set_openblas_spin(spin)
        yield
    return apply


def _wide(macs):
    @contextlib.contextmanager
    def apply():
        before, conv.WIDE_MACS = conv.WIDE_MACS, macs
        try:
            yield
        finally:
            conv.WIDE_MACS = before
    return apply


def _winograd_on(on):
    return lambda: algorithms.force(conv2d="winograd" if on else "im2col")


def _direct_on(on):
    return (lambda: contextlib.nullcontext()) if on else \
        (lambda: algorithms.force(conv2d=("winograd", "im2col")))


def _compiled_on(on):
    if on:
        return contextlib.nullcontext
    return lambda: kernels.disabled(*(k.module for k in kernels.declared()))


VARIANTS = {
    "threads": {"1 thread, spin 2^28": _threads(1, 28), "split, spin 2^16": _threads(2, 16)},
    "spin": {f"split, spin 2^{k}": _threads(2, k) for k in (16, 18, 20)},
    "wide": {"per sample": _wide(0), "default rule": _wide(conv.WIDE_MACS)},
    "winograd": {"im2col": _winograd_on(False), "winograd": _winograd_on(True)},
    "direct": {"direct off": _direct_on(False), "direct on": _direct_on(True)},
    "compiled": {"NumPy only": _compiled_on(False), "compiled kernels": _compiled_on(True)},
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ab", choices=sorted(VARIANTS), required=True)
    ap.add_argument("--models", default="lenet5,cnn-bn,resnet20")
    ap.add_argument("--mode", choices=("train", "infer"), default="train")
    ap.add_argument("--pairs", type=int, default=5, help="rounds of all variants (median)")
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.ab in ("threads", "spin"):
        blas._state["quiet"] = True  # these variants set OpenBLAS's spin themselves
    variants = VARIANTS[args.ab]
    with threadpool_limits(args.threads):
        for name in args.models.split(","):
            model = C.fv_model(name)
            xt, yt = C.batch(name, 128, 1)
            xi, _ = C.batch(name, 256, 2)
            runner = C.FvRunner(name, model, xt, yt, xi)
            if args.mode == "infer":
                model.eval()
            step = runner.train_step if args.mode == "train" else runner.infer_step
            times = {v: [] for v in variants}
            for _ in range(args.pairs):
                for v, apply in variants.items():
                    with apply():
                        step()  # one untimed step after each switch
                        times[v].append(C.time_steps(step, args.min_time))
            # the minimum next to the median: this VM has fast and slow phases, and a variant
            # that only looks faster by its median may just have drawn fewer slow steps
            med = {v: 1e3 * statistics.median(t) for v, t in times.items()}
            low = {v: 1e3 * min(t) for v, t in times.items()}
            first, first_low = next(iter(med.values())), next(iter(low.values()))
            print(f"{name} {args.mode}: " + "  ".join(
                f"{v} {ms:.1f} ms ({first / ms:.2f}x; min {low[v]:.1f} ms, {first_low / low[v]:.2f}x)"
                for v, ms in med.items()), flush=True)


if __name__ == "__main__":
    main()
