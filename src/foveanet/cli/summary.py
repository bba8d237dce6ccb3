"""``foveanet summary MODEL``: the layers, output shapes, parameters and mult-adds of a
registered model (``fv.models.summary``), built as ``foveanet train`` would build it."""
from __future__ import annotations

from ..models import model_options, summary
from ..train.run import build_model, canonical_model, check_model_options, model_kwargs
from .common import (Formatter, UsageError, input_shape, out, parse_model_options,
                     positive_int)

EPILOG = """\
examples:
  foveanet summary cnn_bn
  foveanet summary lenet5 --input-shape 1,32,32
  foveanet summary mlp --model-option hidden=128,64 --num-classes 2 --input-shape 2
"""


def add_parser(sub):
    s = sub.add_parser("summary", help="the layers, shapes, parameters and mult-adds of a model",
                       description="Print fv.models.summary of a registered model.",
                       epilog=EPILOG, formatter_class=Formatter)
    s.add_argument("model", metavar="MODEL", help="a registered model (see 'foveanet models')")
    s.add_argument("--input-shape", type=input_shape, default=(1, 28, 28), metavar="C,H,W",
                   dest="input_shape", help="one sample's shape (default 1,28,28)")
    s.add_argument("--model-option", metavar="KEY=VALUE", action="append", dest="model_option",
                   default=[], help="a keyword of the model's constructor (repeatable)")
    s.add_argument("--num-classes", type=positive_int, default=10, metavar="N", dest="num_classes",
                   help="outputs of the last layer (default 10)")
    return s


def command(args) -> int:
    name = canonical_model(args.model)
    options = check_model_options(name, parse_model_options(args.model_option))
    shape = list(args.input_shape)
    cfg = {"model": name, "model_options": options, "num_classes": args.num_classes,
           "input_shape": shape, "seed": 0, "dataset": "--input-shape", "dropout": None}
    if len(shape) == 3 and shape[1] != shape[2] and "input_size" in model_options(name):
        raise UsageError(f"--input-shape {','.join(map(str, shape))}: {name} takes square images")
    model = build_model(cfg)
    try:
        s = summary(model, (1, *shape))
    except (ValueError, TypeError, RuntimeError) as exc:
        raise UsageError(f"model {name!r} does not accept inputs of shape {tuple(shape)}: "
                         f"{exc}") from None
    out(f"{name}  ({', '.join(f'{k}={v}' for k, v in model_kwargs(cfg).items())})")
    out(str(s))
    return 0
