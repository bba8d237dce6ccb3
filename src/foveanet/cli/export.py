"""``foveanet export RUN_DIR --onnx FILE``: a trained run's model (best or last weights) as an
ONNX file with a dynamic batch size (``foveanet.load_run``, ``Run.export_onnx``)."""
from __future__ import annotations

from ..train.run import load_run
from .common import Formatter, add_checkpoint, add_run_dir, out, positive_int


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
    return x


def command(args) -> int:
    run = load_run(args.run_dir, checkpoint=args.checkpoint)
    proto = run.export_onnx(args.onnx, opset=args.opset, optimize=args.optimize)
    ops = sorted({n.op_type for n in proto.graph.node})
    out(f"wrote {args.onnx}: {run.config['model']} from {run.weights} (epoch {run.epoch}), opset "
        f"{proto.opset_import[0].version}, {len(proto.graph.node)} nodes ({', '.join(ops)}), "
        f"{len(proto.graph.initializer)} initializers, input {run.config['input_shape']} per "
        "sample, dynamic batch")
    return 0
