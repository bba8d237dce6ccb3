"""The ``foveanet`` command line: train, evaluate, predict, export, summary, models, sample.

::

    foveanet train                                  # the default recipe on Fashion-MNIST
    foveanet train --model mlp --model-option hidden=256,256 --epochs 10 --lr 0.05 \\
                   --optimizer momentum --scheduler cosine
    foveanet train --dataset spiral                 # a 2-D toy set (TensorFlow Playground's)
    foveanet train --dataset cifar10 --data-dir ~/data
    foveanet train --dataset photos/ --data-option size=64   # an image folder
    foveanet train --dataset table.csv --data-option label_column=species
    foveanet train --resume runs/cnn_bn-fashion-mnist-20250101-120000
    foveanet evaluate runs/cnn_bn-fashion-mnist-20250101-120000
    foveanet predict runs/cnn_bn-fashion-mnist-20250101-120000 shirt.png boot.jpg --top 3
    foveanet export runs/cnn_bn-fashion-mnist-20250101-120000 --onnx model.onnx --optimize
    foveanet train --from model.onnx --freeze features --num-classes 10   # transfer learning
    foveanet summary lenet5 --input-shape 1,32,32
    foveanet models
    foveanet train --task language_model --text novel.txt   # a character LSTM (train_language)
    foveanet sample runs/char_lstm-stdlib-20250101-120000 --prompt "def " --temperature 0.8
    foveanet train --task gan --conditional       # DCGAN on Fashion-MNIST (train_images)
    foveanet generate runs/gan-dcgan-fashion-mnist-20250101-120000 -n 64 -o grid.png
    foveanet segment runs/segment-segnet_small-fashion-scenes-20250101-120000 scene.png -o mask.png

One module per command (``train``, ``evaluate``, ``predict``, ``export``, ``summary``,
``models``, ``sample``, ``generate``, ``segment``, ``visualize``, ``stylize``; ``train_language`` is the language-model side
of ``train``, ``train_images`` its side for networks that output images), each with ``add_parser(subparsers)`` and ``command(args) -> exit status``; they parse
their options and call the library: ``foveanet.train.run`` (the run directory, ``load_run``, the
configuration and the model built from it), ``foveanet.train.evaluation``, ``fv.optim.create``,
``foveanet.data.images``, ``foveanet.report``. ``common`` holds what they share.

``train --dataset`` takes what ``fv.data.open_dataset`` opens (a known name, an image folder, a
CSV file; ``--data-option KEY=VALUE`` for its options) and reads every default from
``foveanet.recipes.DEFAULT_RECIPE`` (``TOY_RECIPE`` over it for feature vectors: the toy sets,
CSV tables), prints the resolved configuration, trains with ``foveanet.train.Trainer`` in a run
directory (its files: ``foveanet.train.run``), then evaluates the test set with the weights of the
epoch with the lowest validation loss (``best.safetensors``) and writes ``report.md`` and the
plots (``foveanet.report``).

Exit status (decided here, in ``main``, for every command): 0 on success, 2 for a usage error (a
bad option or value, an unknown model, data set or data option: ``UsageError``,
``ConfigError``), 1 for a runtime error (missing data set, not a run directory, a diverged run,
an unreadable picture or ONNX file: ``RunError``, ``DatasetError``, ``CheckpointError``,
``OnnxLoadError``, an ``OSError`` naming a file), 130 on Ctrl-C; each error is one line
``foveanet CMD: error: ...`` on stderr.
"""
from __future__ import annotations

import argparse
import os
import sys

from ..data import DatasetError
from ..data.images import prepare_image
from ..train import CheckpointError
from ..train.run import ConfigError, RunError, build_model, load_run_config
from . import (evaluate, export, generate, models, playground, predict, sample, segment, stylize,
               summary, train, visualize)
from .common import PROG, Formatter, UsageError, usage_text, version
from .train import resolve_config

__all__ = ["main", "build_parser", "UsageError", "RunError", "resolve_config", "build_model",
           "prepare_image", "load_run_config"]

COMMANDS = {"train": train, "evaluate": evaluate, "predict": predict, "export": export,
            "summary": summary, "models": models, "sample": sample, "generate": generate,
            "segment": segment, "visualize": visualize, "stylize": stylize,
            "playground": playground}


def build_parser() -> argparse.ArgumentParser:
    """The ``foveanet`` parser with a subcommand per entry of ``COMMANDS``."""
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=Formatter,
        description="foveanet: train, evaluate and use the lecture's networks from the shell.",
        epilog="examples:\n  foveanet train\n  foveanet evaluate RUN_DIR\n"
               "  foveanet predict RUN_DIR image.png\n  foveanet summary cnn_bn\n"
               "  foveanet models\n\n'foveanet CMD --help' describes each command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def _runtime_errors() -> tuple:
    """The library's expected runtime errors: one line on stderr and exit status 1."""
    errors = (RunError, DatasetError, CheckpointError)
    # OnnxLoadError lives in a module that imports onnx: when that module was never imported,
    # nothing can have raised one (and importing it here could fail without onnx)
    onnx_import = sys.modules.get("foveanet.interop.onnx_import")
    return errors + ((onnx_import.OnnxLoadError,) if onnx_import is not None else ())


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
        return COMMANDS[cmd].command(args)
    except UsageError as exc:
        print(f"{PROG} {cmd}: error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # a configuration from the command line that cannot be built
        print(f"{PROG} {cmd}: error: {usage_text(exc)}", file=sys.stderr)
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
        if isinstance(exc, _runtime_errors()):
            print(f"{PROG} {cmd}: error: {exc}", file=sys.stderr)
            return 1
        if isinstance(exc, OSError) and exc.filename is not None:
            print(f"{PROG} {cmd}: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        raise
