"""Progress display for ``Trainer.fit``.

On a terminal: a live ``rich`` progress bar, refreshed during the epoch, showing the epoch,
batch/total, the running loss and accuracy, images/s and the ETA; after each epoch one summary
line (with the validation metrics) is printed above it. Elsewhere (stdout redirected to a file,
CI logs, tests) or when ``rich`` is not installed: one plain line per epoch, nothing per batch.
``Trainer(progress=False)`` shows nothing, and neither does a process of rank > 0.
"""
from __future__ import annotations

import math
import sys
import time

from .callbacks import Callback

__all__ = ["ProgressCallback", "format_epoch"]


def _fmt(v, pct=False):
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return f"{100 * v:.2f}%" if pct else f"{v:.4f}"


# Shown in their own format by format_epoch, or (train_cost, val_top5) left out of the line.
_SHOWN = {"epoch", "global_step", "train_loss", "train_accuracy", "train_cost", "val_loss",
          "val_accuracy", "val_top5", "lr", "train_time", "epoch_time", "images_per_sec"}


def format_epoch(logs: dict, epochs: int | None = None) -> str:
    """One line for an epoch record: ``epoch 3/10  train_loss 0.4123  train_acc 85.21%  ...``.
    Other ``train_*`` / ``val_*`` / ``lr_*`` numbers (a task's metrics, a custom step's values)
    follow the accuracies as ``name value``."""
    e = logs.get("epoch")
    parts = [f"epoch {e}/{epochs}" if epochs else f"epoch {e}"]
    if "train_loss" in logs or not any(k.startswith("train_") for k in logs):
        parts.append(f"train_loss {_fmt(logs.get('train_loss'))}")
    if logs.get("train_accuracy") is not None:
        parts.append(f"train_acc {_fmt(logs['train_accuracy'], True)}")
    for k, v in logs.items():
        if k.startswith("train_") and k not in _SHOWN and isinstance(v, float):
            parts.append(f"{k} {_fmt(v)}")
    if logs.get("val_loss") is not None:
        parts.append(f"val_loss {_fmt(logs['val_loss'])}")
    if logs.get("val_accuracy") is not None:
        parts.append(f"val_acc {_fmt(logs['val_accuracy'], True)}")
    for k, v in logs.items():
        if k.startswith("val_") and k not in _SHOWN and isinstance(v, float):
            parts.append(f"{k} {_fmt(v)}")
    if logs.get("lr") is not None:
        parts.append(f"lr {logs['lr']:.4g}")
    for k, v in logs.items():
        if k.startswith("lr_") and isinstance(v, float):
            parts.append(f"{k} {v:.4g}")
    if logs.get("epoch_time") is not None:
        parts.append(f"{logs['epoch_time']:.1f}s")
    if logs.get("images_per_sec") is not None:
        parts.append(f"{logs['images_per_sec']:.0f} img/s")
    return "  ".join(parts)


def _rich_available() -> bool:
    try:
        import rich.progress  # noqa: F401
    except ImportError:
        return False
    return True


class ProgressCallback(Callback):
    """The display itself. ``mode``: ``"auto"`` (a bar on a terminal, plain lines otherwise),
    ``"bar"`` or ``"plain"``. ``stream``: where to write (default: ``sys.stdout`` at
    ``on_train_begin``). ``refresh``: at most this many bar updates per second. Rank 0 only."""

    order = 90
    rank_zero_only = True

    def __init__(self, mode: str = "auto", stream=None, refresh: float = 10.0):
        if mode not in ("auto", "bar", "plain"):
            raise ValueError(f"progress mode must be 'auto', 'bar' or 'plain', got {mode!r}")
        self.mode = mode
        self.stream = stream
        self.min_interval = 1.0 / refresh
        self._progress = None
        self._task = None
        self._last = 0.0

    # ---------------------------------------------------------------------------------- setup
    def _use_bar(self, stream) -> bool:
        if self.mode == "plain" or not _rich_available():
            return False
        if self.mode == "bar":
            return True
        isatty = getattr(stream, "isatty", None)
        return bool(isatty and isatty())

    def _print(self, line: str) -> None:
        if self._progress is not None:
            self._progress.console.print(line, highlight=False, markup=False, soft_wrap=True)
        else:
            print(line, file=self._out, flush=True)

    def on_train_begin(self, logs=None):
        self._out = self.stream if self.stream is not None else sys.stdout
        t = self.trainer
        start = t.epoch
        def kind(m):  # a data-parallel wrapper: the model inside it
            return type(getattr(m, "module", m) if type(m).__name__ == "DistributedDataParallel"
                        else m).__name__

        models = (kind(t.model) if t.single_model else
                  " + ".join(f"{name} ({kind(m)})" for name, m in t.models.items()))
        what = f"fit {models}: epochs {start + 1}..{t.target_epochs}, {t.num_batches} batches/epoch"
        if t.world_size > 1:
            what += f" per rank, data-parallel on {t.world_size} ranks"
        if start:
            what += f" (resumed after epoch {start})"
        if self._use_bar(self._out):
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeRemainingColumn)
            console = Console(file=self._out, force_terminal=self.mode == "bar" or None)
            self._progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  acc {task.fields[acc]}  "
                           "{task.fields[ips]} img/s"),
                TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
                auto_refresh=False)  # refreshed from on_batch_end: no drawing thread
            self._progress.start()
            self._task = self._progress.add_task("train", total=t.num_batches, epoch="-",
                                                 loss="-", acc="-", ips="-")
        self._print(what)

    def on_epoch_begin(self, epoch, logs=None):
        if self._progress is not None:
            self._progress.reset(self._task, total=self.trainer.num_batches,
                                 epoch=f"{epoch}/{self.trainer.target_epochs}",
                                 loss="-", acc="-", ips="-")
            self._progress.refresh()
            self._last = 0.0

    def on_batch_end(self, batch, logs=None):
        if self._progress is None:
            return
        now = time.perf_counter()
        if now - self._last < self.min_interval and batch < (logs or {}).get("num_batches", 0):
            return
        self._last = now
        self._progress.update(self._task, completed=batch, loss=_fmt(logs.get("loss")),
                              acc=_fmt(logs.get("accuracy"), True),
                              ips=f"{logs.get('images_per_sec', 0.0):.0f}", refresh=True)

    def on_epoch_end(self, epoch, logs=None):
        self._print(format_epoch(logs or {}, self.trainer.target_epochs))

    def on_train_end(self, logs=None):
        t = self.trainer
        if t.stop_reason:
            self._print(f"stopped after epoch {t.epoch}: {t.stop_reason}")
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
