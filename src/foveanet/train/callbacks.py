"""Callbacks: Keras-style hooks that add behaviour to ``Trainer.fit`` without editing its loop.

A callback subclasses ``Callback`` and overrides any of::

    on_train_begin(logs)          once, before the first epoch
    on_epoch_begin(epoch, logs)   epoch is 1-based (the epoch about to run)
    on_batch_begin(batch, logs)   batch is 1-based (the batch about to run)
    on_after_backward()           after every backward() of a training step (after the
                                  Trainer's own on_after_backward, e.g. a gradient all-reduce)
    on_before_optimizer_step(optimizer)
                                  before every optimizer.step(), after the Trainer's own hook
                                  (which clips the gradients with clip_grad_norm)
    on_batch_end(batch, logs)     batch is 1-based; logs: loss/accuracy so far this epoch, ...
    on_epoch_end(epoch, logs)     logs: the epoch's record (train_loss, val_loss, lr, ...)
    on_train_end(logs)            once, after the last epoch or an early stop (not after a
                                  divergence or an exception: nothing is written then)

``self.trainer`` is the Trainer running it (``self.model`` its model, ``self.models`` all of its
models by name). Setting ``self.trainer.stop_training = True`` ends the run after the current
epoch (and ``trainer.stop_reason`` says why). Callbacks run in ascending ``order`` (then in the
order given): user callbacks (0), loggers (50), the progress display (90), ``Checkpoint`` (100)
last, so a checkpoint records the state every other callback has reached at the end of the epoch.

A callback with ``rank_zero_only = True`` runs only in the process of rank 0
(``Trainer(rank=...)``): the ones that write files or print (``Checkpoint``, ``BestCheckpoint``,
``CSVLogger``, ``JSONLLogger``, the progress display) declare it, so the other processes of a
data-parallel run train the same way and write nothing.

A callback whose ``state_dict()`` is not empty is saved in the resumable checkpoint and restored
by ``Trainer.resume`` (``EarlyStopping``'s patience counter, ``BestCheckpoint``'s best value);
a saved state its ``load_state_dict`` rejects (ValueError/TypeError/KeyError) is a
``CheckpointError`` naming the callback.
"""
from __future__ import annotations

import math
import os
import warnings

from ..backend import xp
from ..optim.lr_scheduler import ReduceLROnPlateau
from .checkpoint import check_model_state, check_scheduler_state
from .io import CheckpointError, atomic_write_many, dumps_json, encode_arrays

__all__ = ["Callback", "CallbackList", "Checkpoint", "BestCheckpoint", "EarlyStopping",
           "LRSchedulerCallback", "CSVLogger", "JSONLLogger", "LambdaCallback", "step_scheduler"]


class Callback:
    """Base class: every hook does nothing. ``order``: where it runs among the others;
    ``rank_zero_only``: run only in the process of rank 0."""

    order = 0
    rank_zero_only = False
    trainer = None

    def set_trainer(self, trainer) -> None:
        self.trainer = trainer

    @property
    def model(self):
        """The Trainer's model (None when it has several: see ``models``)."""
        return None if self.trainer is None else self.trainer.model

    @property
    def models(self) -> dict:
        """The Trainer's models by name (``{"model": model}`` for a single-model Trainer)."""
        return {} if self.trainer is None else self.trainer.models

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_after_backward(self):
        pass

    def on_before_optimizer_step(self, optimizer):
        pass

    def state_dict(self) -> dict:
        """What must survive an interruption (JSON values and arrays); {} when nothing."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``'s value; raise ValueError (or TypeError/KeyError) when it
        cannot be this callback's state."""


class LambdaCallback(Callback):
    """A callback from functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, order: int = 0, **hooks):
        for name, fn in hooks.items():
            if not name.startswith("on_") or not hasattr(Callback, name):
                raise ValueError(f"LambdaCallback: unknown hook {name!r}")
            setattr(self, name, fn)
        self.order = order


class CallbackList:
    """Callbacks sorted by ``order`` and called together; in a process of rank > 0 the
    ``rank_zero_only`` ones are left out (they never run there)."""

    def __init__(self, callbacks, trainer):
        rank = getattr(trainer, "rank", 0)
        self.callbacks = sorted((cb for cb in callbacks
                                 if rank == 0 or not getattr(cb, "rank_zero_only", False)),
                                key=lambda c: getattr(c, "order", 0))
        for cb in self.callbacks:
            cb.set_trainer(trainer)

    def __iter__(self):
        return iter(self.callbacks)

    def keyed(self) -> dict:
        """``{name: callback}``: the class name, ``#1``, ``#2``... for repeats (checkpoint keys)."""
        out, counts = {}, {}
        for cb in self.callbacks:
            name = type(cb).__name__
            i = counts.get(name, 0)
            counts[name] = i + 1
            out[name if i == 0 else f"{name}#{i}"] = cb
        return out

    def state_dict(self) -> dict:
        out = {}
        for key, cb in self.keyed().items():
            state = cb.state_dict()
            if state:
                out[key] = state
        return out

    def load_state_dict(self, states: dict, where: str = "checkpoint") -> None:
        """Give each callback its saved state (``where``: the file it came from, for errors).
        A state a callback rejects is a CheckpointError naming it; states of callbacks this run
        does not have are ignored."""
        cbs = self.keyed()
        for key, state in (states or {}).items():
            if key not in cbs:
                continue
            try:
                if not isinstance(state, dict):
                    raise ValueError(f"expected an object, got {type(state).__name__}")
                cbs[key].load_state_dict(state)
            except (ValueError, TypeError, KeyError) as exc:
                raise CheckpointError(f"{where}: key 'callbacks.{key}' is not a state of "
                                      f"{type(cbs[key]).__name__}: {exc}", where,
                                      f"callbacks.{key}") from None

    def hooks(self, hook: str) -> list:
        """The bound ``hook`` methods of the callbacks that override it (the per-batch loop
        skips building logs nobody reads)."""
        base = getattr(Callback, hook)
        return [getattr(cb, hook) for cb in self.callbacks
                if getattr(type(cb), hook, None) is not base or hook in vars(cb)]

    def call(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)


# --------------------------------------------------------------------------------- monitoring
def _mode(monitor: str, mode: str) -> str:
    if mode == "auto":
        return "max" if ("acc" in monitor or "top" in monitor) else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    return mode


def _metric(logs, monitor: str, who: str):
    """The monitored value from ``logs``, or None (with a warning) when it is missing."""
    value = (logs or {}).get(monitor)
    if value is None:
        warnings.warn(f"{who}: metric {monitor!r} is not available (logs have "
                      f"{sorted(k for k, v in (logs or {}).items() if v is not None)}); skipping this "
                      "epoch. Pass a validation loader to fit() to get val_loss / val_accuracy.",
                      RuntimeWarning, stacklevel=3)
        return None
    return float(value)


def _improved(value, best, mode: str, min_delta: float) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _run_dir(run_dir):
    if run_dir is None:
        raise ValueError("a run directory is needed")
    return os.fspath(run_dir)


def _check_best(state) -> None:
    """ValueError unless ``state`` holds a valid ``best`` (a number or None) and ``best_epoch``
    (an int >= 0 or None): a saved monitor record."""
    best, epoch = state.get("best"), state.get("best_epoch")
    if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float))):
        raise ValueError(f"'best' must be a number or null, got {best!r}")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0):
        raise ValueError(f"'best_epoch' must be an integer >= 0 or null, got {epoch!r}")


def _copy_weights(model) -> dict:
    return {k: xp.array(v.data, copy=True) for k, v in model.state_dict().items()}


def _check_weights(weights, where, model) -> dict:
    """``{key: array}`` copies of saved weights that fit ``model`` (None: not checked); a
    ValueError when they are something else."""
    if not isinstance(weights, dict):
        raise ValueError(f"{where} must be an object of arrays, got {type(weights).__name__}")
    for k, v in weights.items():
        if not isinstance(v, (xp.ndarray, xp.generic)):
            raise ValueError(f"{where}.{k} must be an array, got {type(v).__name__}")
    if model is not None:
        try:
            check_model_state(model, weights, where)
        except CheckpointError as exc:
            raise ValueError(str(exc)) from None
    return {k: xp.array(v, copy=True) for k, v in weights.items()}


# -------------------------------------------------------------------------------- checkpoints
class Checkpoint(Callback):
    """Save the resumable state into ``run_dir`` at the end of every ``every``-th epoch (and of the
    last one): weights, optimizer, scheduler, epoch, global step, RNG states, history and the
    callbacks' states (see ``foveanet.train.checkpoint``). ``Trainer.resume(run_dir)`` continues
    from it. It runs after every other callback (``order = 100``), in the process of rank 0."""

    order = 100
    rank_zero_only = True

    def __init__(self, run_dir, every: int = 1):
        self.run_dir = _run_dir(run_dir)
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"Checkpoint: every must be a positive int, got {every!r}")
        self.every = every
        self.last_saved_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        t = self.trainer
        if epoch % self.every == 0 or epoch >= t.target_epochs or t.stop_training:
            t.save_checkpoint(self.run_dir)
            self.last_saved_epoch = epoch


class BestCheckpoint(Callback):
    """Keep the model with the best ``monitor`` value seen so far (the lecture's answer to
    overfitting: the weights of the epoch with the lowest validation error).

    On every improvement (by more than ``min_delta``) writes ``{filename}.safetensors`` (the
    weights) and then ``{filename}.json`` (``epoch``, ``monitor``, ``value``, ``mode``, the epoch's
    metrics, the model's name and config, and the weights' file name), both atomically, the JSON
    last. ``best`` and ``best_epoch`` hold the record. NaN/inf values never count as better.
    A Trainer with several models (``Trainer(models=...)``) gets one weights file per model,
    ``{filename}.{name}.safetensors``, and ``{filename}.json`` (format version 2) maps each
    model's name to its entry in ``model`` and its file in ``weights``. Runs on rank 0 only."""

    rank_zero_only = True

    def __init__(self, run_dir, monitor: str = "val_loss", mode: str = "min",
                 min_delta: float = 0.0, filename: str = "best"):
        self.run_dir = _run_dir(run_dir)
        self.monitor = monitor
        self.mode = _mode(monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.filename = filename
        self.best = None
        self.best_epoch = None

    @property
    def weights_path(self) -> str:
        """The weights file of a single-model Trainer."""
        return os.path.join(self.run_dir, self.filename + ".safetensors")

    def model_weights_path(self, name: str) -> str:
        """The weights file of the model ``name`` of a several-model Trainer."""
        return os.path.join(self.run_dir, f"{self.filename}.{name}.safetensors")

    @property
    def json_path(self) -> str:
        return os.path.join(self.run_dir, self.filename + ".json")

    def on_epoch_end(self, epoch, logs=None):
        value = _metric(logs, self.monitor, "BestCheckpoint")
        if not _improved(value, self.best, self.mode, self.min_delta):
            return
        self.best, self.best_epoch = value, epoch
        t = self.trainer
        meta = {"format": "foveanet.best", "epoch": str(epoch), self.monitor: repr(value)}
        doc = {"format": "foveanet.best", "format_version": 1, "epoch": epoch,
               "monitor": self.monitor, "mode": self.mode, "value": value,
               "metrics": {k: v for k, v in (logs or {}).items()}}
        if t.single_model:
            files = [(self.weights_path, encode_arrays(t.model.state_dict(), meta))]
            doc.update(model={"name": t.model_name, "class": type(t.model).__name__,
                              "config": t.model_config},
                       weights=os.path.basename(self.weights_path))
        else:
            files = [(self.model_weights_path(name), encode_arrays(m.state_dict(), meta))
                     for name, m in t.models.items()]
            doc.update(format_version=2,
                       model={name: {"name": name, "class": type(m).__name__,
                                     "config": (t.model_config or {}).get(name)}
                              for name, m in t.models.items()},
                       weights={name: os.path.basename(self.model_weights_path(name))
                                for name in t.models})
        atomic_write_many(files + [(self.json_path, dumps_json(doc, self.json_path).encode("utf-8"))])

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state):
        _check_best(state)
        self.best = state.get("best")
        self.best_epoch = state.get("best_epoch")


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    consecutive epochs (``mode='min'`` for losses, ``'max'`` for accuracies).

    With ``restore_best=True`` the weights of the best epoch are kept in memory and put back into
    the model when training ends (early or not). ``stopped_epoch`` is the epoch it stopped at
    (None if it did not), ``best``/``best_epoch`` the best value and when it was reached."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "min", restore_best: bool = False):
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = abs(float(min_delta))
        self.mode = _mode(monitor, mode)
        self.restore_best = restore_best
        self.best = None
        self.best_epoch = None
        self.wait = 0
        self.stopped_epoch = None
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = _metric(logs, self.monitor, "EarlyStopping")
        if value is None:
            return
        if _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:  # {key: array}, or {model name: {key: array}} for several
                t = self.trainer
                self.best_weights = (_copy_weights(t.model) if t.single_model else
                                     {name: _copy_weights(m) for name, m in t.models.items()})
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True
            best = "none" if self.best is None else f"{self.best:.6g} at epoch {self.best_epoch}"
            self.trainer.stop_reason = (f"early stopping: {self.monitor} has not improved for "
                                        f"{self.wait} epochs (best {best})")

    def on_train_end(self, logs=None):
        if self.restore_best and self.best_weights is not None:
            t = self.trainer
            if t.single_model:
                t.model.load_state_dict(self.best_weights)
            else:
                for name, m in t.models.items():
                    m.load_state_dict(self.best_weights[name])

    def state_dict(self):
        state = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}
        if self.best_weights is not None:
            state["best_weights"] = self.best_weights
        return state

    def load_state_dict(self, state):
        _check_best(state)
        wait = state.get("wait", 0)
        if isinstance(wait, bool) or not isinstance(wait, int) or wait < 0:
            raise ValueError(f"'wait' must be an integer >= 0, got {wait!r}")
        bw, t = state.get("best_weights"), self.trainer
        if bw is not None and (t is None or t.single_model):
            bw = _check_weights(bw, "best_weights", None if t is None else t.model)
        elif bw is not None:
            if not isinstance(bw, dict) or set(bw) != set(t.models):
                raise ValueError(f"'best_weights' must hold the weights of the models "
                                 f"{', '.join(t.models)}")
            bw = {name: _check_weights(bw[name], f"best_weights.{name}", m)
                  for name, m in t.models.items()}
        self.best = state.get("best")
        self.best_epoch = state.get("best_epoch")
        self.wait = wait
        self.best_weights = bw


# ----------------------------------------------------------------------------------- schedules
def step_scheduler(scheduler, logs=None, monitor: str = "val_loss") -> None:
    """One epoch's ``scheduler.step()``; ``ReduceLROnPlateau`` gets ``logs[monitor]`` (falling
    back to ``train_loss`` when the monitored metric is missing)."""
    if isinstance(scheduler, ReduceLROnPlateau):
        logs = logs or {}
        value = logs.get(monitor)
        if value is None:
            value = logs.get("train_loss")
        if value is None:
            raise ValueError(f"ReduceLROnPlateau needs the metric {monitor!r}, which the logs do not "
                             "have")
        scheduler.step(value)
    else:
        scheduler.step()


class LRSchedulerCallback(Callback):
    """Step ``scheduler`` once per epoch (``interval='epoch'``) or after every optimizer step
    (``'batch'``, e.g. OneCycleLR). ``ReduceLROnPlateau`` is fed ``logs[monitor]``. (The Trainer's
    own ``scheduler=`` argument does the same; use this to drive a second schedule.)"""

    order = -10

    def __init__(self, scheduler, interval: str = "epoch", monitor: str = "val_loss"):
        if interval not in ("epoch", "batch"):
            raise ValueError(f"interval must be 'epoch' or 'batch', got {interval!r}")
        if interval == "batch" and isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError("ReduceLROnPlateau watches an epoch metric: use interval='epoch'")
        self.scheduler, self.interval, self.monitor = scheduler, interval, monitor

    def on_batch_end(self, batch, logs=None):
        if self.interval == "batch":
            self.scheduler.step()

    def on_epoch_end(self, epoch, logs=None):
        if self.interval == "epoch":
            step_scheduler(self.scheduler, logs, self.monitor)

    def state_dict(self):
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state):
        saved = state["scheduler"]
        if not isinstance(saved, dict):
            raise ValueError(f"'scheduler' must be an object, got {type(saved).__name__}")
        try:
            check_scheduler_state(self.scheduler, saved, "the saved state", "scheduler")
        except CheckpointError as exc:
            raise ValueError(str(exc)) from None
        self.scheduler.load_state_dict(saved)


# ------------------------------------------------------------------------------------- loggers
class CSVLogger(Callback):
    """Write the history as ``run_dir/filename`` (CSV, a header and one row per epoch) after every
    epoch, atomically (the whole file is rewritten, so a resumed run has no duplicate rows).
    Rank 0 only."""

    order = 50
    rank_zero_only = True

    def __init__(self, run_dir, filename: str = "history.csv"):
        self.path = os.path.join(_run_dir(run_dir), filename)

    def on_epoch_end(self, epoch, logs=None):
        self.trainer.history.to_csv(self.path)


class JSONLLogger(Callback):
    """Write the history as ``run_dir/filename`` (one JSON object per epoch and line) after every
    epoch, atomically. Rank 0 only."""

    order = 50
    rank_zero_only = True

    def __init__(self, run_dir, filename: str = "history.jsonl"):
        self.path = os.path.join(_run_dir(run_dir), filename)

    def on_epoch_end(self, epoch, logs=None):
        self.trainer.history.to_jsonl(self.path)
