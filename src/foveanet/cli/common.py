"""What the commands share: the usage error, argument types, the help formatter, output helpers
(lines, tables), the reading of ``--model-option`` / ``--data-option KEY=VALUE``, and the run
report as train and evaluate write it."""
from __future__ import annotations

import argparse
import ast
import math

from ..train.run import ConfigError

PROG = "foveanet"
CHECKPOINT_HELP = "best: lowest validation loss (default); last: the last epoch"

# the command-line option of each configuration key a library ConfigError can name
OPTION_OF = {"from": "--from", "freeze": "--freeze", "head_classes": "--num-classes",
             "dropout": "--dropout", "val_split": "--val-split", "model_options": "--model-option",
             "dataset": "--dataset", "data_options": "--data-option"}


class UsageError(Exception):
    """A bad command line: printed as ``foveanet CMD: error: ...``, exit status 2."""


def usage_text(exc: ConfigError) -> str:
    """A library ConfigError said the command line's way: naming the option, not the key."""
    flag = OPTION_OF.get(exc.key)
    if flag is None:
        return str(exc)
    return f"{flag}{'' if exc.value is None else f' {exc.value}'}: {exc.reason}"


# ----------------------------------------------------------------------------- argument types
def _int_at_least(text, low, what):
    try:
        v = int(text)
    except ValueError:
        v = None
    if v is None or v < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return v


def positive_int(text):
    return _int_at_least(text, 1, "a positive integer")


def nonneg_int(text):
    return _int_at_least(text, 0, "an integer >= 0")


def _float(text, what, ok):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(v) or not ok(v):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return v


def positive_float(text):
    return _float(text, "a number > 0", lambda v: v > 0)


def nonneg_float(text):
    return _float(text, "a number >= 0", lambda v: v >= 0)


def fraction(text):
    return _float(text, "a fraction in [0, 1)", lambda v: 0 <= v < 1)


def probability(text):
    return _float(text, "a probability in [0, 1)", lambda v: 0 <= v < 1)


def momentum(text):
    return _float(text, "a momentum in [0, 1)", lambda v: 0 <= v < 1)


def input_shape(text):
    try:
        dims = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        dims = ()
    if len(dims) not in (1, 3) or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W (e.g. 1,28,28) or a feature count, got "
                                         f"{text!r}")
    return dims


# ------------------------------------------------------------------------------ parser pieces
class Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=30)


def version():
    from ..version import __version__
    return __version__


def add_run_dir(parser):
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of 'foveanet train'")


def add_checkpoint(parser):
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help=CHECKPOINT_HELP)


# ------------------------------------------------------------------------------------ output
def out(*args, **kwargs):
    print(*args, **kwargs, flush=True)


def table(title, headers, rows, rich_ok, align=None):
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
        t = Table(title=escape(title), title_justify="left")
        for h, a in zip(headers, align):
            t.add_column(escape(h), justify=a)
        for r in rows:
            t.add_row(*[escape(str(c)) for c in r])
        Console().print(t)
        return
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(r):
        return "  ".join(c.ljust(w) if a == "left" else c.rjust(w)
                         for c, w, a in zip(r, widths, align)).rstrip()
    out(title)
    out(fmt(cells[0]))
    out("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        out(fmt(r))
    out("")


# ------------------------------------------------------------------------------ model options
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
    """``{key: value}`` of ``--model-option KEY=VALUE`` items (dashes in keys read as
    underscores)."""
    options = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UsageError(f"--model-option expects KEY=VALUE, got {item!r}")
        options[key] = _literal(value.strip())
    return options


def parse_data_options(items) -> dict:
    """``{key: value}`` of ``--data-option KEY=VALUE`` items, the values as strings (the data
    set converts them, and config.json keeps them as given); dashes in keys read as
    underscores. A key given twice: the last wins, as with --model-option."""
    options = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not value.strip():
            raise UsageError(f"--data-option expects KEY=VALUE (e.g. size=32), got {item!r}")
        options[key] = value.strip()
    return options


# ------------------------------------------------------------------------------------ report
def takes_points(config) -> bool:
    """Whether a run's inputs are 2-D points, whose report plots the decision regions."""
    return list(config["input_shape"]) == [2]


def run_report(run_dir, config, history, results, pred, model) -> list:
    """Write the run's report from ``predict_loader``'s output ``pred``: misclassified pictures
    for an image run, the decision regions for 2-D points (``pred`` made with
    ``keep_inputs=True``), and no misclassified plot for other feature vectors (a CSV row is
    no picture); for a forecasting run (``pred``: ``predict_forecast``'s arrays) the forecast
    plot against the truth and ``forecast.csv``. Returns the paths written."""
    from ..report import write_forecast_report, write_report, write_run_report
    from ..train.forecast import is_forecast
    if is_forecast(config):
        return write_forecast_report(run_dir, config, None if history is None else list(history),
                                     results, pred)
    if len(config["input_shape"]) == 3:
        return write_run_report(run_dir, config, history, results, pred, None)
    if takes_points(config):
        return write_run_report(run_dir, config, history, results, pred, model)
    return write_report(run_dir, config=config, history=None if history is None else
                        list(history), results=results)


def fit_run(trainer, train_loader, val_loader, epochs: int, run_dir: str, resume: bool,
            config=None, resuming: bool = False):
    """``trainer.fit`` for a command: the history, or None after Ctrl-C (with how to continue);
    a diverged run becomes a RunError that says which checkpoint is kept. With ``config``,
    first the run directory and its config.json are written and the directory is printed (and,
    for a ``resuming`` run without a checkpoint yet, that it starts from epoch 1)."""
    import os
    import sys

    if config is not None:
        from ..train.run import write_run_config
        os.makedirs(run_dir, exist_ok=True)
        write_run_config(run_dir, config)
        out(f"run directory: {run_dir}")
        if resuming and not resume:
            out(f"no checkpoint yet in {run_dir}: starting from epoch 1")

    from ..backend import xp
    from ..train import TrainingDiverged
    from ..train.run import CONFIG_FILE, RunError
    try:
        # NumPy's overflow warnings say nothing the Trainer's divergence check does not say better
        with xp.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return trainer.fit(train_loader, val_loader, epochs=epochs,
                               resume=run_dir if resume else None)
    except TrainingDiverged as exc:
        kept = (f"The last good checkpoint (epoch {exc.checkpoint_epoch}) is kept in {run_dir}."
                if exc.checkpoint_epoch is not None else
                f"No checkpoint had been written yet ({run_dir} holds only {CONFIG_FILE}).")
        raise RunError(f"{exc}\n{kept}", run_dir) from None
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: foveanet train --resume {run_dir}", file=sys.stderr)
        return None


def name_list(text):
    """An option of comma-separated layer names (``--layers``, ``--style-layers``): the names,
    each once, in the order given."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer names, got {text!r}")
    return list(dict.fromkeys(items))


def add_observers(group) -> None:
    """``--tensorboard DIR`` and ``--save-kernels EPOCHS`` on a train parser's group: what a run
    shows while it learns; not part of its configuration (they may differ on --resume)."""
    group.add_argument("--tensorboard", metavar="DIR",
                       help="write TensorBoard event files to DIR (losses, metrics and learning "
                       "rate per step, weight and gradient histograms, first-layer kernels; "
                       "needs the tensorboard extra)")
    group.add_argument("--save-kernels", metavar="EPOCHS", dest="save_kernels",
                       help="save the first convolution's kernels as RUN_DIR/kernels/epoch_NNN.png "
                       "after these epochs (e.g. 0,1,5: 0 is before training; or all); "
                       "report.md shows them")


def observers(given: dict, run_dir: str) -> list:
    """The callbacks ``--tensorboard`` and ``--save-kernels`` ask for (UsageError for a bad
    epoch list)."""
    cbs = []
    if given.get("tensorboard"):
        from ..train import TensorBoard
        try:
            cbs.append(TensorBoard(given["tensorboard"]))
        except ImportError as exc:
            raise UsageError(f"--tensorboard: {exc}") from None
    spec = given.get("save_kernels")
    if spec:
        from ..train import KernelSnapshots
        from ..visual import plot_kernels
        if spec.strip().lower() == "all":
            epochs = "all"
        else:
            try:
                epochs = sorted({int(e) for e in spec.split(",") if e.strip()})
            except ValueError:
                epochs = None
            if not epochs or min(epochs) < 0:
                raise UsageError(f"--save-kernels expects epochs >= 0 separated by commas (e.g. "
                                 f"0,1,5) or all, got {spec!r}")
        cbs.append(KernelSnapshots(run_dir, epochs, draw=plot_kernels))
    return cbs


def open_run(given: dict, resolve, check_resume, default_run_dir):
    """Where a train command's run is: ``(config, run directory, resume directory or None,
    whether a checkpoint exists)``. With ``--resume`` the run's config.json, checked by
    ``check_resume(config, given, completed epochs)``; else ``resolve(given)`` in ``--out`` or
    ``default_run_dir(config)``, refused (UsageError) where a run already is."""
    import os

    from ..train.checkpoint import JSON_FILE
    from ..train.run import CONFIG_FILE, checkpoint_epoch, load_run_config
    resume_dir = given.get("resume")
    if resume_dir is not None:
        resume_dir = os.fspath(resume_dir)
        cfg = load_run_config(resume_dir, need_checkpoint=False)
        completed = checkpoint_epoch(resume_dir)
        check_resume(cfg, given, completed or 0)
        return cfg, resume_dir, resume_dir, completed is not None
    cfg = resolve(given)
    run_dir = given.get("out") or default_run_dir(cfg)
    for f in (CONFIG_FILE, JSON_FILE):
        if os.path.exists(os.path.join(run_dir, f)):
            raise UsageError(f"{run_dir} already holds a run ({f}); continue it with --resume "
                             f"{run_dir} or choose another --out")
    return cfg, run_dir, None, False


def record_command(cfg: dict, args, resumed: bool) -> None:
    """The run format, the foveanet version, the creation time and the command line (a resumed
    run's appended to ``resumed``) into the configuration, as config.json keeps them."""
    import sys
    import time

    from ..train.run import RUN_FORMAT, RUN_FORMAT_VERSION
    cfg.update(format=RUN_FORMAT, format_version=RUN_FORMAT_VERSION, foveanet_version=version())
    cfg.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    argv = ["foveanet"] + list(sys.argv[1:] if getattr(args, "_argv", None) is None
                               else args._argv)
    if resumed:
        cfg.setdefault("resumed", []).append(argv)
    else:
        cfg["command"] = argv
