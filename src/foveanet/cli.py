"""The ``foveanet`` command line: train, evaluate, predict, export, summary, models.

::

    foveanet train                                  # the default recipe on Fashion-MNIST
    foveanet train --model mlp --model-option hidden=256,256 --epochs 10 --lr 0.05 \\
                   --optimizer momentum --scheduler cosine
    foveanet train --dataset spiral                 # a 2-D toy set (TensorFlow Playground's)
    foveanet train --resume runs/cnn_bn-fashion-mnist-20250101-120000
    foveanet evaluate runs/cnn_bn-fashion-mnist-20250101-120000
    foveanet predict runs/cnn_bn-fashion-mnist-20250101-120000 shirt.png boot.jpg --top 3
    foveanet export runs/cnn_bn-fashion-mnist-20250101-120000 --onnx model.onnx --optimize
    foveanet train --from model.onnx --freeze features --num-classes 10   # transfer learning
    foveanet summary lenet5 --input-shape 1,32,32
    foveanet models

``train`` reads every default from ``foveanet.recipes.DEFAULT_RECIPE`` (``TOY_RECIPE`` over it for
the toy sets), prints the resolved configuration, trains with ``foveanet.train.Trainer`` in a run
directory, then evaluates the test set with the weights of the epoch with the lowest validation
loss (``best.safetensors``) and writes ``report.md`` and the plots (``foveanet.report``).

A run directory holds::

    config.json            the resolved configuration: evaluate/predict/--resume rebuild from it
    checkpoint.json, model.safetensors, optimizer.safetensors
                           the last epoch's resumable checkpoint (foveanet.train.checkpoint)
    best.json, best.safetensors
                           the weights of the epoch with the lowest validation loss
    history.csv, history.jsonl
                           the per-epoch metrics
    results.json           the final test metrics
    report.md, curves.png, confusion_matrix.png, misclassified.png

Determinism: the weights are initialised from ``seed`` (the global generator), the training
subset (``--limit-train``) and the validation split are drawn from their own generators seeded
from ``seed``, and the training loader shuffles and augments from another one; the checkpoint
stores every generator's state, so ``--resume`` after an interruption (even ``kill -9``) ends with
the same weights, bit for bit, as a run that was never interrupted.

Exit status: 0 on success, 2 for a usage error (a bad option or value, an unknown model), 1 for a
runtime error (missing data set, not a run directory, a diverged run), 130 on Ctrl-C.
"""
from __future__ import annotations

import argparse
import ast
import math
import os
import sys
import time

__all__ = ["main", "build_parser", "UsageError", "RunError", "resolve_config", "build_model",
           "prepare_image", "load_run_config"]

PROG = "foveanet"
IMAGE_DATASETS = ("fashion-mnist", "mnist")
TOY_DATASETS = ("circle", "xor", "gauss", "spiral")
DATASETS = IMAGE_DATASETS + TOY_DATASETS
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")
SCHEDULERS = ("none", "step", "multistep", "cosine", "onecycle", "plateau")
RESERVED_OPTIONS = ("num_classes", "in_channels", "input_size")  # set from the data set
CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
RUN_FORMAT = "foveanet.run"

# options of `train` that are not part of a run's configuration: they may differ on --resume
ENVIRONMENT_OPTIONS = ("data_dir", "download", "no_progress", "resume", "out")


class UsageError(Exception):
    """A bad command line: printed as ``foveanet CMD: error: ...``, exit status 2."""


class RunError(Exception):
    """An expected runtime problem (no data, not a run directory, ...): exit status 1."""


# ----------------------------------------------------------------------------- argument types
def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _nonneg_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def _float(text, what, ok):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(v) or not ok(v):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return v


def _positive_float(text):
    return _float(text, "a number > 0", lambda v: v > 0)


def _nonneg_float(text):
    return _float(text, "a number >= 0", lambda v: v >= 0)


def _fraction(text):
    return _float(text, "a fraction in [0, 1)", lambda v: 0 <= v < 1)


def _probability(text):
    return _float(text, "a probability in [0, 1)", lambda v: 0 <= v < 1)


def _momentum(text):
    return _float(text, "a momentum in [0, 1)", lambda v: 0 <= v < 1)


def _input_shape(text):
    try:
        dims = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        dims = ()
    if len(dims) not in (1, 3) or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W (e.g. 1,28,28) or a feature count, got "
                                         f"{text!r}")
    return dims


# ----------------------------------------------------------------------------------- parser
class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=30)


def _version():
    from . import __version__
    return __version__


TRAIN_EPILOG = """\
examples:
  foveanet train                                 the default recipe on Fashion-MNIST
  foveanet train --download                      ... downloading Fashion-MNIST if needed
  foveanet train --model mlp --model-option hidden=256,256 --optimizer momentum --lr 0.05 \\
                 --scheduler cosine --epochs 10 --dropout 0.2
  foveanet train --model lenet5 --augment flip,crop=2 --l2 1e-4 --out runs/lenet
  foveanet train --dataset spiral                a 2-D toy set (an MLP on (x, y) points)
  foveanet train --limit-train 2000 --limit-test 500 --epochs 1     a quick smoke run
  foveanet train --resume runs/lenet --epochs 20 continue (and extend) an interrupted run

Defaults come from foveanet.recipes.DEFAULT_RECIPE (TOY_RECIPE for the toy sets); the
resolved configuration is printed first and saved as RUN_DIR/config.json. The test set is
evaluated with the weights of the epoch with the lowest validation loss (best.safetensors).
--resume continues from the run's last checkpoint with its config.json; other options must
agree with it, except --epochs (which may extend the run), --data-dir, --download and
--no-progress. A resumed run ends bit-identical to an uninterrupted one.
"""

EVALUATE_EPILOG = """\
examples:
  foveanet evaluate runs/cnn_bn-fashion-mnist-20250101-120000
  foveanet evaluate runs/mlp --checkpoint last --data-dir ~/data
  foveanet evaluate runs/mlp --report            also rewrite report.md and the plots

Prints the test loss, accuracy, top-5 accuracy, the per-class accuracy and the confusion
matrix (rows: true class, columns: predicted class). The test set is the run's own (the same
--limit-test subset as during training).
"""

PREDICT_EPILOG = """\
examples:
  foveanet predict runs/cnn_bn-fashion-mnist-20250101-120000 shirt.png sneaker.jpg
  foveanet predict runs/mlp photo.png --top 3 --json
  foveanet predict runs/spiral-run 1.5,-2 0,0    toy runs take x,y points
  foveanet predict --top 1 runs/spiral-run -- -1.5,2 0,0   (after --, points may start with -)

How a picture is prepared: it is converted to grey (models with 1 input channel) or RGB
(3 channels), padded to a square with its border colour, resized to the model's input size
(28x28 for Fashion-MNIST/MNIST) and scaled to [0, 1]. The training images are light objects
on a black background; a photo is usually a dark object on a light background, so for
Fashion-MNIST/MNIST runs a picture whose border is lighter than mid-grey is inverted
(--invert auto; force it with --invert always/never).
"""

SUMMARY_EPILOG = """\
examples:
  foveanet summary cnn_bn
  foveanet summary lenet5 --input-shape 1,32,32
  foveanet summary mlp --model-option hidden=128,64 --num-classes 2 --input-shape 2
"""

MODELS_EPILOG = """\
examples:
  foveanet models
  foveanet summary NAME        the layers of one of them
"""


def build_parser() -> argparse.ArgumentParser:
    from .recipes import DEFAULT_RECIPE as R

    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=_Formatter,
        description="foveanet: train, evaluate and use the lecture's networks from the shell.",
        epilog="examples:\n  foveanet train\n  foveanet evaluate RUN_DIR\n"
               "  foveanet predict RUN_DIR image.png\n  foveanet summary cnn_bn\n"
               "  foveanet models\n\n'foveanet CMD --help' describes each command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    S = argparse.SUPPRESS  # train options: absent unless given (to tell given from default)
    t = sub.add_parser("train", help="train a model (default: the recipe on Fashion-MNIST)",
                       description="Train a model and write a run directory with checkpoints, "
                       "history, report and plots.", epilog=TRAIN_EPILOG,
                       formatter_class=_Formatter, argument_default=S)
    g = t.add_argument_group("model")
    g.add_argument("--model", metavar="NAME", help=f"a registered model (default {R['model']}; "
                   "see 'foveanet models')")
    g.add_argument("--model-option", metavar="KEY=VALUE", action="append", dest="model_option",
                   help="a keyword of the model's constructor, e.g. width=8 or hidden=256,256 "
                   "(repeatable)")
    g.add_argument("--from", metavar="SOURCE", dest="from_",
                   help="transfer learning: start from an ONNX file or a run directory instead of "
                   "a fresh --model")
    g.add_argument("--freeze", metavar="NAMES",
                   help="with --from: freeze 'features' (all but the new head) or the listed "
                   "parameter-name prefixes, comma-separated")
    g.add_argument("--num-classes", type=_positive_int, metavar="N", dest="num_classes",
                   help="with --from: outputs of the new classifier head (default: the data "
                   "set's classes)")
    g.add_argument("--dropout", type=_probability, metavar="P",
                   help="set the p of every Dropout layer (or the model's dropout option)")
    g = t.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, help=f"default {R['dataset']}")
    g.add_argument("--data-dir", metavar="DIR",
                   help="where the data set files are (searched first)")
    g.add_argument("--download", action="store_true",
                   help="download the data set (with checksums) when it is not found")
    g.add_argument("--augment", metavar="SPEC",
                   help=f"augmentation, e.g. flip,crop=2,rotate=10 or none "
                   f"(default {R['augment']!r})")
    g.add_argument("--val-split", type=_fraction, metavar="F", dest="val_split",
                   help=f"validation fraction, stratified (default {R['val_split']}; 0: none)")
    g.add_argument("--limit-train", type=_positive_int, metavar="N", dest="limit_train",
                   help="train on a random subset of N images (quick runs)")
    g.add_argument("--limit-test", type=_positive_int, metavar="N", dest="limit_test",
                   help="test on a random subset of N images")
    g = t.add_argument_group("optimisation")
    g.add_argument("--epochs", type=_positive_int, metavar="N", help=f"default {R['epochs']}")
    g.add_argument("--batch-size", type=_positive_int, metavar="N", dest="batch_size",
                   help=f"default {R['batch_size']}")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help=f"default {R['optimizer']}")
    g.add_argument("--lr", type=_positive_float, metavar="X",
                   help=f"learning rate (OneCycle's peak; default {R['lr']:g})")
    g.add_argument("--momentum", type=_momentum, metavar="M",
                   help=f"momentum of sgd/momentum/rmsprop ('momentum' default {R['momentum']})")
    g.add_argument("--weight-decay", type=_nonneg_float, metavar="X", dest="weight_decay",
                   help=f"the optimizer's weight decay (default {R['weight_decay']:g})")
    g.add_argument("--scheduler", choices=SCHEDULERS, help=f"learning-rate schedule (default "
                   f"{R['scheduler']})")
    g.add_argument("--l1", type=_nonneg_float, metavar="ALPHA", help="L1 penalty: Cost = Loss + "
                   "ALPHA * sum |w|")
    g.add_argument("--l2", type=_nonneg_float, metavar="ALPHA", help="L2 penalty: Cost = Loss + "
                   "ALPHA * sum w^2")
    g = t.add_argument_group("run")
    g.add_argument("--seed", type=_nonneg_int, metavar="N", help=f"default {R['seed']}")
    g.add_argument("--threads", type=_positive_int, metavar="N", help=f"BLAS threads (default "
                   f"{R['threads']})")
    g.add_argument("--out", metavar="DIR", help="run directory (default runs/MODEL-DATASET-TIME)")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    g.add_argument("--no-progress", action="store_true", dest="no_progress",
                   help="no progress bar (one line per epoch)")

    e = sub.add_parser("evaluate", help="test metrics, per-class accuracy, confusion matrix",
                       description="Evaluate a trained run on its test set.",
                       epilog=EVALUATE_EPILOG, formatter_class=_Formatter)
    e.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of 'foveanet train'")
    e.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best: lowest validation loss (default); last: the last epoch")
    e.add_argument("--data-dir", metavar="DIR", default=None, dest="data_dir",
                   help="where the data set files are (default: where the run found them)")
    e.add_argument("--download", action="store_true", help="download the data set if needed")
    e.add_argument("--report", action="store_true",
                   help="rewrite results.json, report.md and the plots from this evaluation")
    e.add_argument("--optimize", action="store_true",
                   help="run fv.optimize_for_inference's model (BN folded, activations fused)")

    p = sub.add_parser("predict", help="classify image files with a trained run",
                       description="Classify PNG/JPEG pictures with a trained run.",
                       epilog=PREDICT_EPILOG, formatter_class=_Formatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of 'foveanet train'")
    p.add_argument("images", metavar="IMAGE", nargs="+",
                   help="PNG/JPEG files (X,Y points for a toy-set run)")
    p.add_argument("--top", type=_positive_int, default=3, metavar="K",
                   help="show the K most probable classes (default 3)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best: lowest validation loss (default); last: the last epoch")
    p.add_argument("--invert", choices=("auto", "always", "never"), default="auto",
                   help="invert grey values (auto: dark-on-light pictures, for (Fashion-)MNIST)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--optimize", action="store_true",
                   help="run fv.optimize_for_inference's model (BN folded, activations fused)")

    x = sub.add_parser("export", help="write a trained run's model as an ONNX file",
                       description="Export a trained run to ONNX (needs foveanet[onnx]).",
                       formatter_class=_Formatter)
    x.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of 'foveanet train'")
    x.add_argument("--onnx", metavar="FILE", required=True, help="the ONNX file to write")
    x.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best: lowest validation loss (default); last: the last epoch")
    x.add_argument("--opset", type=_positive_int, default=None, metavar="N",
                   help="ONNX opset (default: the exporter's)")
    x.add_argument("--optimize", action="store_true",
                   help="fold BatchNorm into the convolutions before exporting")

    s = sub.add_parser("summary", help="the layers, shapes, parameters and mult-adds of a model",
                       description="Print fv.models.summary of a registered model.",
                       epilog=SUMMARY_EPILOG, formatter_class=_Formatter)
    s.add_argument("model", metavar="MODEL", help="a registered model (see 'foveanet models')")
    s.add_argument("--input-shape", type=_input_shape, default=(1, 28, 28), metavar="C,H,W",
                   dest="input_shape", help="one sample's shape (default 1,28,28)")
    s.add_argument("--model-option", metavar="KEY=VALUE", action="append", dest="model_option",
                   default=[], help="a keyword of the model's constructor (repeatable)")
    s.add_argument("--num-classes", type=_positive_int, default=10, metavar="N", dest="num_classes",
                   help="outputs of the last layer (default 10)")

    sub.add_parser("models", help="list the registered models",
                   description="List the registered models and their options.",
                   epilog=MODELS_EPILOG, formatter_class=_Formatter)
    return parser


# -------------------------------------------------------------------------------- helpers
def _out(*args, **kwargs):
    print(*args, **kwargs, flush=True)


def _literal(text: str):
    """A --model-option value: a Python literal (8, 0.5, 256,256, [1, 2], True), else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        low = text.lower()
        if low in ("true", "yes", "on"):
            return True
        if low in ("false", "no", "off"):
            return False
        if low in ("none", "null"):
            return None
        return text


def parse_model_options(items) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UsageError(f"--model-option expects KEY=VALUE, got {item!r}")
        out[key] = _literal(value.strip())
    return out


def _canonical_model(name: str) -> str:
    from .models import list_models
    names = list_models()
    for cand in (name, name.replace("-", "_"), name.replace("_", "-")):
        if cand in names:
            return cand
    raise UsageError(f"unknown model {name!r}; available: {', '.join(names)}")


def _coerce(value, default):
    """A model option's value in the type of its default (tuples from lists and scalars)."""
    if isinstance(default, tuple):
        if isinstance(value, (list, tuple)):
            return tuple(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (value,)
    if isinstance(default, bool) or isinstance(value, bool):
        return value
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    return value


def check_model_options(model: str, options: dict) -> dict:
    """``options`` checked against the constructor of ``model`` and coerced to its types."""
    from .models import model_options
    defaults = model_options(model)
    out = {}
    for key, value in options.items():
        if key in RESERVED_OPTIONS:
            raise UsageError(f"--model-option {key}: set from the data set, not on the "
                             "command line")
        if key not in defaults:
            avail = ", ".join(k for k in defaults if k not in RESERVED_OPTIONS) or "none"
            raise UsageError(f"model {model!r} has no option {key!r}; its options: {avail}")
        out[key] = _coerce(value, defaults[key])
    return out


def _jsonable_options(options: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


def _read_json(path, what):
    from .train.io import loads_json
    try:
        with open(path, encoding="utf-8") as f:
            return loads_json(f.read())
    except FileNotFoundError:
        raise RunError(f"{what} not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot read {what}: {exc}") from None


def _write_json(path, obj):
    from .train.io import atomic_write_text, dumps_json
    atomic_write_text(path, dumps_json(obj, os.path.basename(path)))


# ------------------------------------------------------------------------- configuration
def resolve_config(given: dict) -> dict:
    """The full configuration of a new run from the options given on the command line (``given``:
    only the options that were given) and the recipe for the data set."""
    from .recipes import recipe_for
    recipe = recipe_for(given.get("dataset"), given.get("model"))
    cfg = {k: given.get(k, v) for k, v in recipe.items()}
    source = given.get("from_")
    if source is None:
        for opt in ("freeze", "num_classes"):
            if opt in given:
                raise UsageError(f"--{opt.replace('_', '-')} applies to transfer learning: give "
                                 "the model to start from with --from")
        cfg["model"] = _canonical_model(cfg["model"])
        recipe_model = _canonical_model(recipe["model"])
        options = dict(recipe["model_options"]) if cfg["model"] == recipe_model else {}
        options.update(parse_model_options(given.get("model_option")))
        cfg["model_options"] = _jsonable_options(check_model_options(cfg["model"], options))
    else:
        for opt in ("model", "model_option", "dropout"):
            if opt in given:
                raise UsageError(f"--{opt.replace('_', '-')} and --from exclude each other: the "
                                 "model is the one --from names")
        cfg.update(_transfer_source(source))
        cfg["freeze"] = given.get("freeze")
        cfg["head_classes"] = given.get("num_classes")
    toy = cfg["dataset"] in TOY_DATASETS
    if toy and cfg["augment"] and str(cfg["augment"]).strip().lower() not in ("none", "off", "no"):
        raise UsageError(f"--augment {cfg['augment']!r}: augmentation applies to image data sets, "
                         f"not to the 2-D points of {cfg['dataset']!r} (use --augment none)")
    _parse_augment(cfg["augment"])  # a bad spec is a usage error now, not after loading data
    # momentum: the recipe's for the 'momentum' optimizer; otherwise only when given
    opt = cfg["optimizer"]
    if "momentum" in given:
        if opt in ("adam", "adamw"):
            raise UsageError(f"--momentum does not apply to {opt} (its beta1 plays that role); use "
                             "--optimizer sgd, momentum or rmsprop")
        cfg["momentum"] = given["momentum"]
    else:
        cfg["momentum"] = (recipe["momentum"] if opt == "momentum" else
                           0.0 if opt in ("sgd", "rmsprop") else None)
    if cfg["scheduler"] not in ("onecycle", "cosine"):
        cfg["scheduler_interval"] = "epoch"
    cfg["schedule_epochs"] = cfg["epochs"]
    cfg["data_dir"] = os.path.abspath(given["data_dir"]) if given.get("data_dir") else None
    return cfg


def _parse_augment(spec):
    from .data import parse_augment
    try:
        return parse_augment(spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _eval_transform(spec):
    """The deterministic part of the augmentation (Normalize) that evaluation must apply too."""
    from .data import Compose, Normalize
    aug = _parse_augment(spec)
    if aug is None:
        return None
    norm = [t for t in aug.transforms if isinstance(t, Normalize)]
    return Compose(norm) if norm else None


def _config_lines(cfg: dict, given: dict) -> list:
    keys = ["model", "model_options", "dropout", "dataset", "data_dir", "limit_train", "limit_test",
            "val_split", "augment", "epochs", "batch_size", "optimizer", "lr", "momentum",
            "weight_decay", "scheduler", "scheduler_interval", "l1", "l2", "seed", "threads"]
    if cfg["dataset"] in TOY_DATASETS:
        keys += ["toy_n", "toy_noise"]
    flag = {"model_options": "model_option"}
    lines = []
    for k in keys:
        v = cfg.get(k)
        src = "  (command line)" if flag.get(k, k) in given else ""
        lines.append(f"  {k:<19}{v if not isinstance(v, float) else f'{v:g}'}{src}")
    return lines


# ---------------------------------------------------------------------------------- data
def _subsample(dataset, n, seed):
    import foveanet as fv
    from .data import Subset
    if n is None or n >= len(dataset):
        return dataset
    idx = fv.randperm(len(dataset), generator=fv.Generator(seed)).numpy()[:n]
    idx.sort()
    return Subset(dataset, idx)


def _image_dataset(cfg, train, data_dir, download):
    from .data import MNIST, FashionMNIST
    cls = FashionMNIST if cfg["dataset"] == "fashion-mnist" else MNIST
    return cls(root=data_dir, train=train, download=download)


def data_info(cfg) -> dict:
    """classes, input shape, number of classes of the configured data set (without loading it)."""
    from .data import MNIST, FashionMNIST
    if cfg["dataset"] in TOY_DATASETS:
        return {"classes": ["negative (-1)", "positive (+1)"], "input_shape": [2], "num_classes": 2}
    cls = FashionMNIST if cfg["dataset"] == "fashion-mnist" else MNIST
    return {"classes": list(cls.classes), "input_shape": [1, 28, 28],
            "num_classes": len(cls.classes)}


def _files_of(dataset):
    """The image and label files a (subset of a) Fashion-MNIST/MNIST split was read from."""
    while dataset is not None and not hasattr(dataset, "files"):
        dataset = getattr(dataset, "dataset", None)
    return None if dataset is None else [os.path.abspath(os.fspath(f)) for f in dataset.files]


def _check_files(cfg, split, dataset):
    """Say so when the data set is read from other files than those the run was trained on."""
    files, before = _files_of(dataset), (cfg.get("data_files") or {}).get(split)
    if files and before and files != before:
        print(f"note: the {split} files are read from {os.path.dirname(files[0])}; the run used "
              f"{os.path.dirname(before[0])}", file=sys.stderr)


def load_train_val(cfg, data_dir=None, download=False):
    """(train, val or None) of the configuration, deterministically from its seed."""
    from .data import ToyDataset, train_val_split
    import foveanet as fv
    seed = cfg["seed"]
    if cfg["dataset"] in TOY_DATASETS:
        full = ToyDataset(cfg["dataset"], n=cfg["toy_n"], noise=cfg["toy_noise"], seed=seed)
    else:
        full = _image_dataset(cfg, True, data_dir, download)
    full = _subsample(full, cfg["limit_train"], seed + 11)
    if not cfg["val_split"]:
        return full, None
    train, val = train_val_split(full, cfg["val_split"], stratify=cfg.get("stratify", True),
                                 generator=fv.Generator(seed + 12))
    if len(train) == 0 or len(val) == 0:
        raise UsageError(f"--val-split {cfg['val_split']} leaves {len(train)} training and "
                         f"{len(val)} validation samples of {len(full)}")
    return train, val


def load_test(cfg, data_dir=None, download=False):
    from .data import ToyDataset
    if cfg["dataset"] in TOY_DATASETS:
        test = ToyDataset(cfg["dataset"], n=cfg["toy_n"], noise=cfg["toy_noise"],
                          seed=cfg["seed"] + 1)
    else:
        test = _image_dataset(cfg, False, data_dir, download)
    return _subsample(test, cfg["limit_test"], cfg["seed"] + 13)


def _loader(dataset, cfg, train):
    import foveanet as fv
    from .data import DataLoader
    if train:
        return DataLoader(dataset, batch_size=cfg["batch_size"], shuffle=True,
                          generator=fv.Generator(cfg["seed"] + 14),
                          transform=_parse_augment(cfg["augment"]))
    return DataLoader(dataset, batch_size=cfg.get("eval_batch_size") or 500, shuffle=False,
                      generator=fv.Generator(cfg["seed"] + 15),
                      transform=_eval_transform(cfg["augment"]))


# --------------------------------------------------------------------------------- model
def model_kwargs(cfg) -> dict:
    from .models import model_options
    if cfg.get("from"):
        return {"from": cfg["from"]}
    info = {"num_classes": cfg["num_classes"]}
    shape = cfg["input_shape"]
    if len(shape) == 3:
        if shape[1] != shape[2]:
            raise UsageError(f"input shape {tuple(shape)}: the models take square images")
        info.update(in_channels=shape[0], input_size=shape[1])
    else:  # feature vectors, e.g. the toy sets' (x, y): an MLP with in_channels features of 1x1
        info.update(in_channels=shape[0], input_size=1)
    params = model_options(cfg["model"])
    kwargs = {k: v for k, v in info.items() if k in params}
    defaults = params
    kwargs.update({k: _coerce(v, defaults.get(k)) for k, v in cfg["model_options"].items()})
    return kwargs


def build_model(cfg):
    """The configured model, initialised from ``cfg['seed']`` (the global generator)."""
    import foveanet as fv
    from .models import create, model_options
    from .nn import Dropout
    if cfg.get("from"):
        return build_transfer_model(cfg)
    name = _canonical_model(cfg["model"])
    kwargs = model_kwargs(cfg)
    p = cfg.get("dropout")
    if p is not None and "dropout" in model_options(name):
        kwargs["dropout"] = p
    fv.manual_seed(cfg["seed"])
    try:
        model = create(name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot build model {name!r} with {kwargs}: {exc}") from None
    if p is not None and "dropout" not in model_options(name):
        drops = [m for m in model.modules() if isinstance(m, Dropout)]
        if not drops:
            raise UsageError(f"--dropout: model {name!r} has no Dropout layer and no dropout "
                             "option")
        for m in drops:
            m.p = float(p)
    return model


def _transfer_source(source) -> dict:
    """The configuration entries of a run that starts from ``source`` (--from): an ONNX file or
    the run directory of an earlier 'foveanet train'."""
    path = os.path.abspath(os.fspath(source))
    if os.path.isdir(path):
        src = load_run_config(path)
        return {"from": path, "from_kind": "run", "model": src["model"], "model_options": {}}
    if not os.path.isfile(path):
        raise UsageError(f"--from {source}: no such file or run directory")
    return {"from": path, "from_kind": "onnx", "model": "onnx", "model_options": {}}


def build_transfer_model(cfg):
    """The model a --from run trains: the source's network and weights, a new classifier head
    when the number of classes differs (or --num-classes says so), the --freeze'd parameters
    frozen. evaluate/predict/--resume rebuild it the same way, then load the run's weights."""
    import foveanet as fv
    from .train.transfer import freeze, replace_head
    path = cfg["from"]
    if cfg.get("from_kind") == "run":
        src_cfg = load_run_config(path)
        model = build_model(src_cfg)
        which = "best" if os.path.isfile(os.path.join(path, "best.safetensors")) else "last"
        _load_weights(model, path, which)
    else:
        try:
            model = fv.onnx.load(path)
        except ImportError as exc:
            raise UsageError(f"--from {path}: reading ONNX needs the onnx extra (pip install "
                             f"'foveanet[onnx]'): {exc}") from None
        except (ValueError, TypeError, RuntimeError, OSError) as exc:
            raise RunError(f"--from {path}: {exc}") from None
    classes = int(cfg.get("head_classes") or cfg["num_classes"])
    if classes != int(cfg["num_classes"]):
        raise UsageError(f"--num-classes {classes}: the data set {cfg['dataset']} has "
                         f"{cfg['num_classes']} classes")
    with fv.no_grad():
        model.eval()
        try:
            out = model(fv.zeros(1, *cfg["input_shape"]))
        except (ValueError, TypeError, RuntimeError) as exc:
            raise UsageError(f"--from {path}: the model does not accept inputs of shape "
                             f"{tuple(cfg['input_shape'])} ({cfg['dataset']}): {exc}") from None
        model.train()
    head = []
    fv.manual_seed(cfg["seed"])
    if cfg.get("head_classes") or out.shape[-1] != classes:
        try:
            head = replace_head(model, classes)
        except ValueError as exc:
            raise UsageError(f"--from {path}: {exc}") from None
    if cfg.get("freeze"):
        try:
            freeze(model, cfg["freeze"], head=head)
        except ValueError as exc:
            raise UsageError(f"--freeze {cfg['freeze']}: {exc}") from None
    return model


def _check_model_runs(model, cfg):
    """One forward pass on a dummy batch: a model that does not fit the data is a usage error."""
    import foveanet as fv
    try:
        with fv.no_grad():
            model.eval()
            out = model(fv.zeros(2, *cfg["input_shape"]))
            model.train()
    except (ValueError, TypeError, RuntimeError) as exc:
        raise UsageError(f"model {cfg['model']!r} does not accept inputs of shape "
                         f"{tuple(cfg['input_shape'])} ({cfg['dataset']}): {exc}") from None
    if tuple(out.shape) != (2, cfg["num_classes"]):
        raise UsageError(f"model {cfg['model']!r} gives outputs of shape {tuple(out.shape)[1:]} "
                         f"for {cfg['num_classes']} classes")


def build_optimizer(model, cfg):
    from .optim import SGD, Adam, AdamW, RMSprop
    name, lr, wd, m = cfg["optimizer"], cfg["lr"], cfg["weight_decay"], cfg["momentum"]
    params = model.parameters()
    if name in ("sgd", "momentum"):
        return SGD(params, lr=lr, momentum=m or 0.0, weight_decay=wd)
    if name == "adam":
        return Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return AdamW(params, lr=lr, weight_decay=wd)
    if name == "rmsprop":
        return RMSprop(params, lr=lr, momentum=m or 0.0, weight_decay=wd)
    raise UsageError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def build_scheduler(optimizer, cfg, steps_per_epoch):
    """(scheduler or None, interval) as planned for ``cfg['schedule_epochs']`` epochs."""
    from .optim import lr_scheduler as ls
    from .recipes import SCHEDULES
    name = cfg["scheduler"]
    if name in (None, "none"):
        return None, "epoch"
    E = int(cfg.get("schedule_epochs") or cfg["epochs"])
    opts = SCHEDULES.get(name, {})
    interval = cfg.get("scheduler_interval", "epoch")
    if name == "step":
        size = max(1, round(E * opts.get("step_size_fraction", 1 / 3)))
        return ls.StepLR(optimizer, step_size=size, gamma=opts.get("gamma", 0.1)), "epoch"
    if name == "multistep":
        miles = sorted({max(1, round(E * f)) for f in opts.get("milestones", (0.5, 0.75))})
        return ls.MultiStepLR(optimizer, milestones=miles, gamma=opts.get("gamma", 0.1)), "epoch"
    if name == "plateau":
        return ls.ReduceLROnPlateau(optimizer, factor=opts.get("factor", 0.1),
                                    patience=opts.get("patience", 2)), "epoch"
    steps = E * steps_per_epoch if interval == "batch" else E
    if name == "cosine":
        sched = ls.CosineAnnealingLR(optimizer, T_max=steps, eta_min=opts.get("eta_min", 0.0))
        return sched, interval
    if name == "onecycle":
        cycle = cfg["optimizer"] in ("adam", "adamw") or bool(cfg.get("momentum"))
        return ls.OneCycleLR(optimizer, max_lr=cfg["lr"], total_steps=steps,
                             pct_start=float(opts.get("pct_start", 0.3)),
                             div_factor=opts.get("div_factor", 25.0),
                             final_div_factor=opts.get("final_div_factor", 1e4),
                             cycle_momentum=cycle), interval
    raise UsageError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")


# ---------------------------------------------------------------------------- run directory
def _default_run_dir(cfg) -> str:
    base = os.path.join("runs", f"{cfg['model']}-{cfg['dataset']}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, i = base, 2
    while os.path.exists(path):
        path, i = f"{base}-{i}", i + 1
    return path


def load_run_config(run_dir, need_checkpoint: bool = True) -> dict:
    """The config.json of a run directory; RunError when it is not one."""
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise RunError(f"{run_dir}: not a foveanet run directory (no such directory)")
    from .train.checkpoint import JSON_FILE
    if need_checkpoint and not os.path.isfile(os.path.join(run_dir, JSON_FILE)):
        raise RunError(f"{run_dir}: not a foveanet run directory (no {JSON_FILE})")
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise RunError(f"{run_dir}: not a foveanet run directory (no {CONFIG_FILE}; "
                       "it was not made by 'foveanet train')")
    cfg = _read_json(path, CONFIG_FILE)
    if not isinstance(cfg, dict) or cfg.get("format") != RUN_FORMAT:
        raise RunError(f"{path}: not a foveanet run configuration (format "
                       f"{cfg.get('format') if isinstance(cfg, dict) else None!r})")
    return cfg


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _check_resume_options(cfg, given, completed):
    """Options given with --resume must agree with the run's config.json (--epochs may extend)."""
    if "out" in given:
        raise UsageError("--out cannot be combined with --resume: the run continues in its own "
                         "directory")
    for key, value in given.items():
        if key in ENVIRONMENT_OPTIONS or key == "epochs":
            continue
        if key in ("from_", "freeze", "num_classes"):
            raise UsageError(f"--{key.strip('_').replace('_', '-')} cannot be combined with "
                             "--resume: a resumed run keeps its configuration")
        if key == "model_option":
            for k, v in parse_model_options(value).items():
                have = cfg["model_options"].get(k)
                want = _jsonable_options(check_model_options(cfg["model"], {k: v}))[k]
                if not _same(want, have):
                    raise UsageError(f"--model-option {k}={v!r} contradicts the run's config.json "
                                     f"({k}={have!r}); only --epochs may change on --resume")
            continue
        have = cfg.get(key)
        if key == "model":
            value = _canonical_model(value)
        if not _same(value, have):
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"{flag} {value} contradicts the run's config.json ({key} = {have}); "
                             "a resumed run keeps its configuration (only --epochs may change)")
    if "epochs" in given:
        epochs = given["epochs"]
        if epochs < completed:
            raise UsageError(f"--epochs {epochs}: the run has already completed {completed} epochs")
        if (epochs != cfg["schedule_epochs"] and cfg["scheduler"] == "onecycle"):
            raise UsageError(f"--epochs {epochs}: this run's onecycle schedule was planned for "
                             f"{cfg['schedule_epochs']} epochs and cannot be extended")
        cfg["epochs"] = epochs


# ------------------------------------------------------------------------------ evaluation
def predict_loader(model, loader, keep_misclassified: int = 36, keep_inputs: bool = False):
    """Run ``model`` over ``loader`` (eval mode, no gradients). Returns a dict: ``logits``
    (N, C) float32, ``labels`` (N,), ``loss`` (mean cross-entropy), and the first
    ``keep_misclassified`` misclassified ``mis_images``/``mis_labels``/``mis_preds`` (or every
    input as ``inputs`` when ``keep_inputs``)."""
    import foveanet as fv
    from .backend import xp
    from .nn import functional as F
    was = model.training
    model.eval()
    logits, labels, inputs = [], [], []
    mis_x, mis_y, mis_p = [], [], []
    loss_sum, n = 0.0, 0
    loss_fn = getattr(model, "loss_fn", None) or F.cross_entropy
    kept = 0
    try:
        with fv.no_grad():
            for x, y in loader:
                out = model(x)
                b = int(out.shape[0])
                loss_sum += float(loss_fn(out, y).data) * b
                n += b
                o, t = out.data, y.data
                logits.append(o)
                labels.append(t)
                if keep_inputs:
                    inputs.append(x.data)
                if kept < keep_misclassified:
                    wrong = xp.flatnonzero(o.argmax(axis=1) != t)[:keep_misclassified - kept]
                    if wrong.size:
                        mis_x.append(x.data[wrong])
                        mis_y.append(t[wrong])
                        mis_p.append(o.argmax(axis=1)[wrong])
                        kept += int(wrong.size)
    finally:
        model.train(was)
    if n == 0:
        raise RunError("the test set is empty")
    res = {"logits": xp.concatenate(logits), "labels": xp.concatenate(labels), "loss": loss_sum / n}
    res["mis_images"] = xp.concatenate(mis_x) if mis_x else None
    res["mis_labels"] = xp.concatenate(mis_y) if mis_y else None
    res["mis_preds"] = xp.concatenate(mis_p) if mis_p else None
    res["inputs"] = xp.concatenate(inputs) if inputs else None
    return res


def compute_test_metrics(pred, classes) -> dict:
    """JSON-able test metrics from ``predict_loader``'s output."""
    from .backend import xp
    from .train.metrics import confusion_matrix, per_class_accuracy, topk_accuracy
    logits, labels = pred["logits"], pred["labels"]
    c = len(classes)
    cm = confusion_matrix(labels, logits.argmax(axis=1), c)
    pca = per_class_accuracy(cm)
    return {"loss": float(pred["loss"]), "accuracy": float(xp.trace(cm) / max(1, cm.sum())),
            "top5": float(topk_accuracy(logits, labels, 5)) if c >= 5 else None,
            "num_samples": int(labels.shape[0]), "classes": list(classes),
            "confusion_matrix": cm.tolist(),
            "per_class_accuracy": [None if math.isnan(v) else float(v) for v in pca],
            "class_counts": [int(v) for v in cm.sum(axis=1)]}


def _load_weights(model, run_dir, which):
    """Load best.safetensors or the last checkpoint into ``model``; returns (file, epoch)."""
    from .train import CheckpointError, load_checkpoint, load_state_dict
    from .train.checkpoint import check_model_state
    if which == "best":
        path = os.path.join(run_dir, "best.safetensors")
        if not os.path.isfile(path):
            raise RunError(f"{run_dir}: no best.safetensors (the run has no validation set, or no "
                           "epoch finished); use --checkpoint last")
        try:
            state = load_state_dict(path)
            check_model_state(model, state, path)
            model.load_state_dict(state)
        except (CheckpointError, RuntimeError, ValueError) as exc:
            raise RunError(f"{path}: {exc}") from None
        info = _read_json(os.path.join(run_dir, "best.json"), "best.json") \
            if os.path.isfile(os.path.join(run_dir, "best.json")) else {}
        return "best.safetensors", info.get("epoch")
    try:
        ck = load_checkpoint(run_dir, model)
    except CheckpointError as exc:
        raise RunError(str(exc)) from None
    return "model.safetensors", ck["epoch"]


# ---------------------------------------------------------------------------------- train
def cmd_train(args) -> int:
    t_start = time.perf_counter()
    given = {k: v for k, v in vars(args).items() if k != "command" and not k.startswith("_")}
    import foveanet as fv
    from .backend import xp
    from .train import Trainer, TrainingDiverged
    from .train.checkpoint import JSON_FILE

    resume_dir = given.get("resume")
    checkpoint_exists = False
    if resume_dir is not None:
        resume_dir = os.fspath(resume_dir)
        cfg = load_run_config(resume_dir, need_checkpoint=False)
        ck_path = os.path.join(resume_dir, JSON_FILE)
        checkpoint_exists = os.path.isfile(ck_path)
        completed = 0
        if checkpoint_exists:
            doc = _read_json(ck_path, JSON_FILE)
            completed = int(doc.get("epoch", 0)) if isinstance(doc, dict) else 0
        _check_resume_options(cfg, given, completed)
        run_dir = resume_dir
        if given.get("data_dir") is not None:
            cfg["data_dir"] = os.path.abspath(given["data_dir"])
    else:
        cfg = resolve_config(given)
        cfg.update(data_info(cfg))
        run_dir = given.get("out") or _default_run_dir(cfg)
        for f in (CONFIG_FILE, JSON_FILE):
            if os.path.exists(os.path.join(run_dir, f)):
                raise UsageError(f"{run_dir} already holds a run ({f}); continue it with --resume "
                                 f"{run_dir} or choose another --out")
    data_dir = cfg.get("data_dir")
    download = bool(given.get("download"))

    fv.set_num_threads(int(cfg["threads"]))
    try:
        model = build_model(cfg)
        _check_model_runs(model, cfg)
    except UsageError as exc:
        if cfg["dataset"] not in TOY_DATASETS:
            raise
        raise UsageError(f"{exc}\nthe toy sets are 2-D points: use an MLP (--model mlp)") from None
    _out(f"foveanet {_version()}: {'resuming' if resume_dir else 'training'} {cfg['model']} on "
         f"{cfg['dataset']}")
    _out("configuration:")
    for line in _config_lines(cfg, given):
        _out(line)

    train_set, val_set = load_train_val(cfg, data_dir, download)
    test_set = load_test(cfg, data_dir, download)
    if resume_dir is not None:
        _check_files(cfg, "train", train_set)
        _check_files(cfg, "test", test_set)
    elif cfg["dataset"] in IMAGE_DATASETS:
        cfg["data_files"] = {"train": _files_of(train_set), "test": _files_of(test_set)}
    train_loader = _loader(train_set, cfg, True)
    val_loader = _loader(val_set, cfg, False) if val_set is not None else None
    test_loader = _loader(test_set, cfg, False)
    _out(f"data: {len(train_set)} training, {len(val_set) if val_set is not None else 0} "
         f"validation, {len(test_set)} test samples; {len(train_loader)} batches per epoch")
    optimizer = build_optimizer(model, cfg)
    scheduler, interval = build_scheduler(optimizer, cfg, len(train_loader))

    cfg.update(format=RUN_FORMAT, format_version=1, foveanet_version=_version())
    cfg.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    command = ["foveanet"] + list(sys.argv[1:] if args._argv is None else args._argv)
    if resume_dir is None:
        cfg["command"] = command
    else:
        cfg.setdefault("resumed", []).append(command)
    os.makedirs(run_dir, exist_ok=True)
    _write_json(os.path.join(run_dir, CONFIG_FILE), cfg)
    _out(f"run directory: {run_dir}")
    if resume_dir is not None and not checkpoint_exists:
        _out(f"no checkpoint yet in {run_dir}: starting from epoch 1")

    model_config = {"name": cfg["model"], "options": cfg["model_options"],
                    "dropout": cfg.get("dropout"), **model_kwargs(cfg)}
    model_config = {k: list(v) if isinstance(v, tuple) else v for k, v in model_config.items()}
    trainer = Trainer(model, optimizer, loss_fn=getattr(model, "loss_fn", None),
                      scheduler=scheduler, scheduler_interval=interval,
                      l1=cfg["l1"], l2=cfg["l2"],
                      progress="plain" if given.get("no_progress") else "auto",
                      run_dir=run_dir, model_config=model_config, model_name=cfg["model"])
    try:
        # NumPy's overflow warnings say nothing the Trainer's divergence check does not say better
        with xp.errstate(over="ignore", invalid="ignore", divide="ignore"):
            history = trainer.fit(train_loader, val_loader, epochs=int(cfg["epochs"]),
                                  resume=run_dir if checkpoint_exists else None)
    except TrainingDiverged as exc:
        kept = (f"The last good checkpoint (epoch {exc.checkpoint_epoch}) is kept in {run_dir}."
                if exc.checkpoint_epoch is not None else
                f"No checkpoint had been written yet ({run_dir} holds only {CONFIG_FILE}).")
        raise RunError(f"{exc}\n{kept}") from None
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: foveanet train --resume {run_dir}", file=sys.stderr)
        return 130

    # the lecture: keep the model with the lowest validation error
    epochs_done = len(history)
    if val_loader is not None and os.path.isfile(os.path.join(run_dir, "best.safetensors")):
        which, (_, best_epoch) = "best", _load_weights(model, run_dir, "best")
        best_rec = next((e for e in history if e.get("epoch") == best_epoch), None) or {}
        val_loss = best_rec.get("val_loss")
        where = f"best epoch {best_epoch} of {epochs_done}, val loss {val_loss:.4f}" \
            if val_loss is not None else f"best epoch {best_epoch} of {epochs_done}"
    else:
        which, best_epoch, val_loss = "last", trainer.epoch, None
        where = f"last epoch {epochs_done} of {epochs_done}, no validation set"
    toy = cfg["dataset"] in TOY_DATASETS
    pred = predict_loader(model, test_loader, keep_inputs=toy)
    results = {"checkpoint": which, "epoch": best_epoch, "epochs": epochs_done,
               "val_loss": val_loss, "status": history.status,
               "test": compute_test_metrics(pred, cfg["classes"])}
    wall = time.perf_counter() - t_start
    train_time = sum(e.get("train_time") or 0.0 for e in history)
    seen = sum((e.get("images_per_sec") or 0.0) * (e.get("train_time") or 0.0) for e in history)
    results.update(wall_time=wall, train_time=train_time,
                   images_per_sec=seen / train_time if train_time > 0 else None)
    _write_json(os.path.join(run_dir, RESULTS_FILE), results)
    _write_report(run_dir, cfg, history, results, pred, model if toy else None)
    acc = results["test"]["accuracy"]
    _out(f"test accuracy: {100 * acc:.2f}% ({where})")
    _out(f"run directory: {run_dir}")
    _out(f"wall time: {time.perf_counter() - t_start:.1f}s (training {train_time:.1f}s, "
         f"{results['images_per_sec'] or 0:.0f} images/s)")
    return 0


def _write_report(run_dir, cfg, history, results, pred, toy_model=None):
    from .report import write_report
    kwargs = {}
    if toy_model is not None:
        kwargs.update(points=pred["inputs"], labels=pred["labels"],
                      predictions=pred["logits"].argmax(axis=1),
                      boundary=_boundary_fn(toy_model))
    else:
        none = pred["mis_images"] is None
        kwargs.update(images=[] if none else pred["mis_images"],
                      labels=[] if none else pred["mis_labels"],
                      predictions=[] if none else pred["mis_preds"])
    records = list(history) if history is not None else None
    return write_report(run_dir, config=cfg, history=records, results=results, **kwargs)


def _boundary_fn(model):
    import foveanet as fv
    from .backend import xp

    def probabilities(points):
        model.eval()
        with fv.no_grad():
            out = model(fv.tensor(xp.asarray(points, dtype=xp.float32)))
            return fv.softmax(out, dim=1).numpy()
    return probabilities


# ------------------------------------------------------------------------------ evaluate
def _table(title, headers, rows, rich_ok, align=None):
    """Print a table: rich on a terminal, aligned plain text otherwise."""
    align = align or ["left"] + ["right"] * (len(headers) - 1)
    if rich_ok:
        try:
            from rich.console import Console
            from rich.markup import escape
            from rich.table import Table
        except ImportError:
            rich_ok = False
    if rich_ok:
        table = Table(title=escape(title), title_justify="left")
        for h, a in zip(headers, align):
            table.add_column(escape(h), justify=a)
        for r in rows:
            table.add_row(*[escape(str(c)) for c in r])
        Console().print(table)
        return
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(r):
        return "  ".join(c.ljust(w) if a == "left" else c.rjust(w)
                         for c, w, a in zip(r, widths, align)).rstrip()
    _out(title)
    _out(fmt(cells[0]))
    _out("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        _out(fmt(r))
    _out("")


def print_metrics(test: dict, rich_ok: bool) -> None:
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    _table("Test metrics", ["metric", "value"],
           [("loss", f"{test['loss']:.4f}"), ("accuracy", pct(test["accuracy"])),
            ("top-5 accuracy", pct(test.get("top5"))), ("samples", test["num_samples"])], rich_ok)
    classes = test["classes"]
    cm = test["confusion_matrix"]
    rows = [(f"{i} {name}", pct(a), cm[i][i], n)
            for i, (name, a, n) in enumerate(zip(classes, test["per_class_accuracy"],
                                                test["class_counts"]))]
    _table("Per-class accuracy", ["class", "accuracy", "correct", "count"], rows, rich_ok)
    _table("Confusion matrix (rows: true class, columns: predicted class)",
           ["true \\ pred"] + [str(i) for i in range(len(classes))],
           [[f"{i} {name}"] + list(row) for i, (name, row) in enumerate(zip(classes, cm))], rich_ok)


def cmd_evaluate(args) -> int:
    import foveanet as fv
    run_dir = os.fspath(args.run_dir)
    cfg = load_run_config(run_dir)
    data_dir = args.data_dir if args.data_dir is not None else cfg.get("data_dir")
    fv.set_num_threads(int(cfg.get("threads") or 1))
    model = build_model(cfg)
    fname, epoch = _load_weights(model, run_dir, args.checkpoint)
    if args.optimize:
        model = _optimized(model, cfg)
    test_set = load_test(cfg, data_dir, args.download)
    _check_files(cfg, "test", test_set)
    toy = cfg["dataset"] in TOY_DATASETS
    pred = predict_loader(model, _loader(test_set, cfg, False), keep_inputs=toy)
    test = compute_test_metrics(pred, cfg["classes"])
    _out(f"{run_dir}: {cfg['model']} on {cfg['dataset']}, {fname} (epoch {epoch}), "
         f"{test['num_samples']} test samples")
    print_metrics(test, sys.stdout.isatty())
    if args.report:
        from .train.io import loads_json
        old = {}
        path = os.path.join(run_dir, RESULTS_FILE)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                old = loads_json(f.read())
        old.update(checkpoint=args.checkpoint, epoch=epoch, test=test)
        _write_json(path, old)
        written = _write_report(run_dir, cfg, None, old, pred, model if toy else None)
        _out("wrote " + ", ".join(os.path.basename(p) for p in written))
    return 0


def _optimized(model, cfg):
    """``fv.optimize_for_inference`` of a run's model, traced at the run's input shape."""
    import foveanet as fv
    model.eval()
    try:
        return fv.optimize_for_inference(model, (1, *cfg["input_shape"]))
    except (ValueError, TypeError, RuntimeError, NotImplementedError) as exc:
        raise RunError(f"--optimize: {exc}") from None


# -------------------------------------------------------------------------------- export
def cmd_export(args) -> int:
    """Write a run's model (best or last weights) as an ONNX file with a dynamic batch size."""
    import foveanet as fv
    run_dir = os.fspath(args.run_dir)
    cfg = load_run_config(run_dir)
    model = build_model(cfg)
    fname, epoch = _load_weights(model, run_dir, args.checkpoint)
    model.eval()
    kwargs = {} if args.opset is None else {"opset": args.opset}
    if args.optimize:
        kwargs["optimize"] = True
    try:
        proto = fv.onnx.export(model, fv.zeros(1, *cfg["input_shape"]), args.onnx, **kwargs)
    except ImportError as exc:
        raise RunError(f"exporting to ONNX needs the onnx extra (pip install 'foveanet[onnx]'): "
                       f"{exc}") from None
    except (ValueError, TypeError, RuntimeError, NotImplementedError) as exc:
        raise RunError(f"{run_dir}: cannot export {cfg['model']}: {exc}") from None
    ops = sorted({n.op_type for n in proto.graph.node})
    _out(f"wrote {args.onnx}: {cfg['model']} from {fname} (epoch {epoch}), opset "
         f"{proto.opset_import[0].version}, {len(proto.graph.node)} nodes ({', '.join(ops)}), "
         f"{len(proto.graph.initializer)} initializers, input {cfg['input_shape']} per sample, "
         "dynamic batch")
    return 0


# ------------------------------------------------------------------------------- predict
def prepare_image(path, in_channels: int = 1, size: int = 28, invert: str = "auto"):
    """A picture file as the model's input: float32 (C, size, size) in [0, 1], and whether it was
    inverted. Converted to grey ('L') for 1 channel or RGB for 3, padded to a square with the
    border's median colour (keeps the aspect ratio), resized with Lanczos. ``invert``: 'always',
    'never', or 'auto' (invert when the border is lighter than mid-grey: a dark object on a light
    background, the opposite of the training images)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from .backend import xp
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            im = im.convert("L" if in_channels == 1 else "RGB")
    except FileNotFoundError:
        raise RunError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise RunError(f"{path}: cannot read the picture ({exc})") from None
    arr = xp.asarray(im, dtype=xp.float32)
    grey = arr if arr.ndim == 2 else arr.mean(axis=2)
    border = xp.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    w, h = im.size
    if w != h:
        side = max(w, h)
        fill = tuple(int(v) for v in xp.median(
            xp.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]]).reshape(-1, 1 if arr.ndim == 2
                                                                            else 3), axis=0))
        square = Image.new(im.mode, (side, side), fill[0] if im.mode == "L" else fill)
        square.paste(im, ((side - w) // 2, (side - h) // 2))
        im = square
    im = im.resize((size, size), Image.LANCZOS)
    x = xp.asarray(im, dtype=xp.float32) / xp.float32(255)
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    inverted = invert == "always" or (invert == "auto" and float(xp.median(border)) > 127.5)
    if inverted:
        x = 1 - x
    if in_channels != x.shape[0]:
        raise RunError(f"{path}: the model takes {in_channels} channels")
    return x.astype(xp.float32), inverted


def cmd_predict(args) -> int:
    import json

    import foveanet as fv
    from .backend import xp
    run_dir = os.fspath(args.run_dir)
    cfg = load_run_config(run_dir)
    model = build_model(cfg)
    _load_weights(model, run_dir, args.checkpoint)
    if args.optimize:
        model = _optimized(model, cfg)
    classes = cfg["classes"]
    k = min(args.top, len(classes))
    inverted = [False] * len(args.images)
    if cfg["dataset"] in TOY_DATASETS:
        pts = []
        for item in args.images:
            try:
                pts.append([float(v) for v in item.split(",")])
            except ValueError:
                pts.append([])
            if len(pts[-1]) != 2:
                raise UsageError(f"{item!r}: a run on {cfg['dataset']} classifies points: give X,Y "
                                 "(e.g. 1.5,-2)")
        batch = xp.asarray(pts, dtype=xp.float32)
    else:
        shape = cfg["input_shape"]
        invert = args.invert if cfg["dataset"] in IMAGE_DATASETS else \
            ("never" if args.invert == "auto" else args.invert)
        prepared = [prepare_image(p, shape[0], shape[1], invert) for p in args.images]
        inverted = [inv for _, inv in prepared]
        batch = xp.stack([x for x, _ in prepared])
        tf = _eval_transform(cfg.get("augment"))
        if tf is not None:
            batch = tf(batch, None)
    model.eval()
    with fv.no_grad():
        probs = fv.softmax(model(fv.tensor(batch)), dim=1).numpy().astype(xp.float64)
    out = []
    for item, p, inv in zip(args.images, probs, inverted):
        order = xp.argsort(-p, kind="stable")[:k]
        out.append({"image": item, "prediction": classes[int(order[0])], "index": int(order[0]),
                    "probability": float(p[order[0]]), "inverted": inv,
                    "top": [{"class": classes[int(i)], "index": int(i), "probability": float(p[i])}
                            for i in order]})
    if args.json:
        _out(json.dumps(out, indent=1))
        return 0
    for r in out:
        note = "  (inverted: dark on light)" if r["inverted"] else ""
        _out(f"{r['image']}: {r['prediction']} ({100 * r['probability']:.1f}%){note}")
        for rank, t in enumerate(r["top"], 1):
            _out(f"  {rank}. {t['class']:<16} {100 * t['probability']:6.2f}%")
    return 0


# ------------------------------------------------------------------------ summary, models
def cmd_summary(args) -> int:
    from .models import model_options, summary
    name = _canonical_model(args.model)
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
    _out(f"{name}  ({', '.join(f'{k}={v}' for k, v in model_kwargs(cfg).items())})")
    _out(str(s))
    return 0


def cmd_models(args) -> int:
    from .models import list_models, model_options
    from .models.registry import lookup
    rows = []
    for name in list_models():
        doc = " ".join((lookup(name).__doc__ or "").strip().split("\n\n")[0].split())
        doc = doc.split(": ")[0].rstrip(".")
        doc = doc if len(doc) <= 72 else doc[:69].rstrip() + "..." 
        opts = ", ".join(f"{k}={v}" for k, v in model_options(name).items()
                         if k not in RESERVED_OPTIONS)
        rows.append((name, opts, doc))
    _table("Models (foveanet train --model NAME --model-option KEY=VALUE)",
           ["name", "options", "description"], rows, sys.stdout.isatty(),
           align=["left", "left", "left"])
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "export": cmd_export, "summary": cmd_summary, "models": cmd_models}


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or argparse's usage error (status 2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    args._argv = None if argv is None else list(argv)
    cmd = args.command
    try:
        return COMMANDS[cmd](args)
    except UsageError as exc:
        print(f"{PROG} {cmd}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `foveanet evaluate RUN | head`: stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except Exception as exc:  # noqa: BLE001 - the expected runtime errors, without a traceback
        from .data import DatasetError
        from .train import CheckpointError
        if isinstance(exc, (RunError, DatasetError, CheckpointError)):
            print(f"{PROG} {cmd}: error: {exc}", file=sys.stderr)
            return 1
        if isinstance(exc, OSError) and exc.filename is not None:
            print(f"{PROG} {cmd}: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
