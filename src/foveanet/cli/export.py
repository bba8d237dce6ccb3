"""``foveanet export RUN_DIR --onnx FILE [--int8 [--calibration N]]``: a trained run's model (best
or last weights) as an ONNX file with a dynamic batch size (``foveanet.load_run``,
``Run.export_onnx``); ``--int8``: quantised after training (int8 weights per channel, uint8
activations calibrated on N training samples; ``foveanet.interop.quantize``)."""
from __future__ import annotations

from ..train.run import load_run
from .common import Formatter, UsageError, add_checkpoint, add_run_dir, out, positive_int


def add_parser(sub):
    x = sub.add_parser("export", help="write a trained run's model as an ONNX file",
                       description="Export a trained run to ONNX (needs foveanet[onnx]).",
                       formatter_class=Formatter)
    add_run_dir(x)
    x.add_argument("--onnx", metavar="FILE", required=True, help="the ONNX file to write")
    add_checkpoint(x)
    x.add_argument("--opset", type=positive_int, default=None, metavar="N",
                   help="ONNX opset (default: the exporter's)")
    x.add_argument("--optimize", action="store_true",
                   help="fold BatchNorm into the convolutions before exporting")
    x.add_argument("--int8", action="store_true",
                   help="post-training int8 quantisation (QuantizeLinear/DequantizeLinear "
                        "nodes onnxruntime runs with its int8 kernels; implies --optimize)")
    x.add_argument("--calibration", type=positive_int, default=512, metavar="N",
                   help="--int8: calibrate the activation ranges on N training samples")
    x.add_argument("--calibration-method", default="minmax",
                   choices=("minmax", "percentile", "entropy"),
                   help="--int8: how a range is taken from the calibration data")
    return x


def command(args) -> int:
    if args.calibration_method != "minmax" and not args.int8:
        raise UsageError("--calibration-method applies to --int8 only")
    run = load_run(args.run_dir, checkpoint=args.checkpoint)
    extra = {}
    if args.int8:
        extra = dict(quantize="int8", calibration=run.calibration_samples(args.calibration),
                     calibration_method=args.calibration_method)
    proto = run.export_onnx(args.onnx, opset=args.opset, optimize=args.optimize, **extra)
    ops = sorted({n.op_type for n in proto.graph.node})
    how = (f", int8 (calibrated on {args.calibration} training samples, "
           f"{args.calibration_method})") if args.int8 else ""
    out(f"wrote {args.onnx}: {run.config['model']} from {run.weights} (epoch {run.epoch}), opset "
        f"{proto.opset_import[0].version}, {len(proto.graph.node)} nodes ({', '.join(ops)}), "
        f"{len(proto.graph.initializer)} initializers, input {run.config['input_shape']} per "
        f"sample, dynamic batch{how}")
    return 0
