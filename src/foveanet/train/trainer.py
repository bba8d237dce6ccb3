"""``Trainer`` and ``fit``: the training loop, with metrics, checkpoints, callbacks and resume.

What ``fit`` does is the plain PyTorch-style loop below, nothing hidden; everything else
(progress display, logs, checkpoints, early stopping) is a callback around it::

    weights = fv.train.penalized_parameters(model)     # weights only: no biases, no BatchNorm
    for epoch in range(start_epoch + 1, epochs + 1):
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad()
            output = model(x)
            loss = loss_fn(output, y)
            cost = loss
            if l1 > 0:
                cost = cost + fv.optim.l1_penalty(weights, l1)
            if l2 > 0:
                cost = cost + fv.optim.l2_penalty(weights, l2)
            # (a NaN/inf cost stops here with TrainingDiverged, before any update)
            cost.backward()
            if clip_grad_norm is not None:
                fv.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            optimizer.step()
            if scheduler is not None and scheduler_interval == "batch":
                scheduler.step()
        val = fv.train.evaluate(model, val_loader, loss_fn)     # eval mode, no_grad
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()          # ReduceLROnPlateau: scheduler.step(val["loss"])

Regularisation follows the lecture: ``Cost = Loss + alpha * sum |w|`` (``l1=alpha``) and
``Cost = Loss + alpha * sum w^2`` (``l2=alpha``), over the *weights* only: parameters with two or
more dimensions (Linear and Conv weights), excluding every bias and all parameters of
normalisation layers (BatchNorm's scale and shift), as is customary; ``penalized_parameters``
returns exactly that list. ``train_loss`` in the history is the loss without the penalty
(comparable with ``val_loss``); ``train_cost`` adds it.

On-line learning is ``batch_size=1`` in the loader, batch learning any other size: the loop is
the same. Epoch numbers are 1-based; ``fit(..., epochs=N)`` trains until N epochs are complete
(after ``resume`` it runs the remaining ones, as Keras's ``initial_epoch``).

Divergence: a NaN or infinite loss (or cost) raises ``TrainingDiverged`` at once, naming the
epoch, the batch and the value, with a hint (lower the learning rate, clip the gradients). It is
raised before ``backward``, so the weights in memory are those of the last good step, and no file
is written after it: the last checkpoint in the run directory stays as it was. Non-finite weights
or a non-finite validation loss at the end of an epoch are reported the same way, before that
epoch's checkpoint would be written.

Resume: ``Trainer.resume(run_dir)`` (or ``fit(..., resume=run_dir)``) restores the weights,
optimizer, scheduler, epoch, global step, history, callback states, and the random state: the
global generator, the train (and validation) loader's generator, and any generator a module owns
(``Dropout(generator=...)``). All of it is captured after the epoch's last callback, which is
exactly the state the uninterrupted run starts the next epoch from, so an interrupted and
resumed run ends with bit-identical weights. (Randomness drawn outside foveanet's generators,
e.g. from ``numpy.random`` or ``random`` in your own code, is not captured.)
"""
from __future__ import annotations

import math
import numbers
import os
import time
import warnings

from ..autograd import Tensor
from ..backend import xp
from ..nn.module import Module
from ..nn.utils import clip_grad_norm_
from ..optim import SGD, Adam, AdamW, RMSprop
from ..optim.lr_scheduler import ReduceLROnPlateau
from ..optim.optimizer import Optimizer
from ..optim.regularization import l1_penalty, l2_penalty
from ..random import Generator, default_generator
from .callbacks import (BestCheckpoint, Callback, CallbackList, Checkpoint, CSVLogger, JSONLLogger,
                        step_scheduler)
from .checkpoint import load_checkpoint, save_checkpoint
from .history import History
from .metrics import evaluate as _evaluate
from .progress import ProgressCallback

__all__ = ["Trainer", "fit", "TrainingDiverged", "penalized_parameters"]

_OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


class TrainingDiverged(RuntimeError):
    """The loss (or the weights) became NaN or infinite. ``epoch``, ``batch`` (None when found at
    the end of an epoch), ``loss``; ``history``: the epochs completed before; ``checkpoint_epoch``:
    the epoch of the last checkpoint left in the run directory (None if none)."""

    def __init__(self, message, epoch=None, batch=None, loss=None, history=None,
                 checkpoint_epoch=None):
        super().__init__(message)
        self.epoch, self.batch, self.loss = epoch, batch, loss
        self.history = history
        self.checkpoint_epoch = checkpoint_epoch


def penalized_parameters(model: Module) -> list:
    """The parameters the l1/l2 penalties apply to: weights with 2 or more dimensions that require
    gradients, outside normalisation layers (any module whose class name contains ``Norm``);
    biases and 1-D parameters are left out. Shared parameters appear once."""
    out, seen = [], set()
    for mod in model.modules():
        if "Norm" in type(mod).__name__:
            continue
        for name, p in mod.named_parameters(recurse=False):
            if name == "bias" or p.ndim < 2 or not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            out.append(p)
    return out


def _loader_state(loader):
    if loader is None:
        return None
    if callable(getattr(loader, "state_dict", None)) and callable(getattr(loader, "load_state_dict", None)):
        return {"kind": "state_dict", "state": loader.state_dict()}
    gen = getattr(loader, "generator", None)
    if isinstance(gen, Generator):
        return {"kind": "generator", "state": gen.get_state()}
    return None


def _set_loader_state(loader, saved, which):
    if saved is None or loader is None:
        return
    if saved.get("kind") == "state_dict" and callable(getattr(loader, "load_state_dict", None)):
        loader.load_state_dict(saved["state"])
        return
    state = saved["state"]
    if saved.get("kind") == "state_dict":
        state = state.get("generator")
    gen = getattr(loader, "generator", None)
    if isinstance(gen, Generator) and state is not None:
        gen.set_state(state)
    else:
        warnings.warn(f"the checkpoint holds the {which} loader's random state, but this loader "
                      "has no generator to restore it into: its shuffling will differ",
                      RuntimeWarning, stacklevel=3)


def _module_generators(model):
    """``{"path:attr": Generator}`` for every generator a module holds (e.g. Dropout's)."""
    out = {}
    for path, mod in model.named_modules():
        for attr, value in vars(mod).items():
            if isinstance(value, Generator):
                out[f"{path}:{attr}"] = value
    return out


def _float(t) -> float:
    return float(t.data) if isinstance(t, Tensor) else float(t)


def _batch_size(x) -> int:
    shape = getattr(x, "shape", None)
    if shape:
        return int(shape[0])
    return len(x) if hasattr(x, "__len__") else 1


class Trainer:
    """Train ``model`` with ``optimizer`` on ``loss_fn`` (default: ``F.cross_entropy``).

    ``scheduler``: an lr scheduler stepped every epoch (``scheduler_interval='epoch'``) or after
    every optimizer step (``'batch'``, e.g. OneCycleLR); ``ReduceLROnPlateau`` is stepped with
    ``scheduler_monitor`` (default ``val_loss``, or ``train_loss`` without validation).
    ``callbacks``: ``Callback`` objects. ``l1``/``l2``: penalty coefficients (see the module
    docstring). ``clip_grad_norm``: clip the joint gradient norm to this value. ``progress``:
    True/``'auto'`` (a bar on a terminal, plain epoch lines otherwise), ``'bar'``, ``'plain'`` or
    False. ``run_dir``: where checkpoints and logs go; when given, ``Checkpoint``, ``CSVLogger``,
    ``JSONLLogger`` and (with a validation loader) ``BestCheckpoint(monitor='val_loss')`` are added
    unless ``callbacks`` already has one of that kind. ``model_config``/``model_name``: stored in
    checkpoints so that tools can rebuild the model.

    State: ``epoch`` (completed epochs), ``global_step`` (optimizer steps), ``history``,
    ``stop_training`` (set by callbacks), ``stop_reason``.
    """

    def __init__(self, model, optimizer, loss_fn=None, scheduler=None, scheduler_interval="epoch",
                 callbacks=(), l1=0.0, l2=0.0, clip_grad_norm=None, progress=True, run_dir=None,
                 model_config=None, model_name=None, scheduler_monitor=None):
        if not isinstance(model, Module):
            raise TypeError(f"Trainer: model must be a foveanet.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"Trainer: optimizer must be a foveanet.optim.Optimizer, got "
                            f"{type(optimizer).__name__}")
        if scheduler_interval not in ("epoch", "batch"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'batch', got {scheduler_interval!r}")
        if scheduler is not None and getattr(scheduler, "optimizer", optimizer) is not optimizer:
            raise ValueError("Trainer: the scheduler drives another optimizer than the one given")
        if isinstance(scheduler, ReduceLROnPlateau) and scheduler_interval == "batch":
            raise ValueError("ReduceLROnPlateau watches an epoch metric: use scheduler_interval='epoch'")
        for name, v in (("l1", l1), ("l2", l2)):
            if not isinstance(v, numbers.Real) or not v >= 0:
                raise ValueError(f"Trainer: {name} must be a number >= 0, got {v!r}")
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ValueError(f"Trainer: clip_grad_norm must be > 0 or None, got {clip_grad_norm!r}")
        if progress not in (True, False, None, "auto", "bar", "plain"):
            raise ValueError(f"progress must be True, False, 'auto', 'bar' or 'plain', got {progress!r}")
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be foveanet.train.Callback objects, got "
                                f"{type(cb).__name__}")
        if loss_fn is None:
            from ..nn import functional as F
            loss_fn = F.cross_entropy
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.scheduler_monitor = scheduler_monitor
        self.callbacks = list(callbacks)
        self.l1, self.l2 = float(l1), float(l2)
        self.clip_grad_norm = clip_grad_norm
        self.progress = progress
        self.run_dir = None if run_dir is None else os.fspath(run_dir)
        self.model_config = None if model_config is None else dict(model_config)
        self.model_name = model_name or (self.model_config or {}).get("name") or type(model).__name__
        self.weights = penalized_parameters(model)

        self.epoch = 0
        self.global_step = 0
        self.history = History()
        self.stop_training = False
        self.stop_reason = None
        self.train_loader = None
        self.val_loader = None
        self.target_epochs = 0
        self.num_batches = 0
        self._defaults: dict = {}
        self._cbs: CallbackList | None = None
        self._pending_rng = None
        self._pending_callbacks = None
        self._last_checkpoint_epoch = None
        self._where = (None, None)

    # --------------------------------------------------------------------------- one step
    def train_step(self, x, y):
        """One optimisation step on the batch ``(x, y)``; returns ``(output, loss, cost)``.
        Raises ``TrainingDiverged`` (before updating anything) when the cost is NaN or inf."""
        model, optimizer, loss_fn, weights = self.model, self.optimizer, self.loss_fn, self.weights
        l1, l2, clip_grad_norm = self.l1, self.l2, self.clip_grad_norm
        optimizer.zero_grad()
        output = model(x)
        loss = loss_fn(output, y)
        cost = loss
        if l1 > 0:
            cost = cost + l1_penalty(weights, l1)
        if l2 > 0:
            cost = cost + l2_penalty(weights, l2)
        value = _float(cost)
        if not math.isfinite(value):
            self._diverged(value, "loss" if cost is loss else "cost (loss + penalty)")
        cost.backward()
        if clip_grad_norm is not None:
            clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
        return output, loss, cost

    def _diverged(self, value, what, batch_known=True):
        epoch, batch = self._where
        lr = self.optimizer.param_groups[0]["lr"]
        if epoch is None:
            where = "a train_step outside fit"
        elif batch_known:
            where = f"epoch {epoch}, batch {batch}/{self.num_batches}"
        else:
            where = f"the end of epoch {epoch}"
        if self._last_checkpoint_epoch is not None:
            kept = (f"Nothing was written after this point: the last checkpoint (epoch "
                    f"{self._last_checkpoint_epoch}) is intact.")
        else:
            kept = "Nothing was written after this point."
        hint = (f"Lower the learning rate (now {lr:g})"
                + (" or clip the gradients (e.g. clip_grad_norm=1.0)" if self.clip_grad_norm is None
                   else f" or clip the gradients harder (clip_grad_norm={self.clip_grad_norm:g} now)")
                + ".")
        self.history.status = "diverged"
        msg = f"training diverged at {where}: the {what} is {value}. {hint} {kept}"
        self.history.stop_reason = msg
        raise TrainingDiverged(msg, epoch=epoch, batch=batch if batch_known else None, loss=value,
                               history=self.history, checkpoint_epoch=self._last_checkpoint_epoch)

    # ----------------------------------------------------------------------------- epochs
    def _train_epoch(self, epoch: int, cbs: CallbackList) -> dict:
        model, loader = self.model, self.train_loader
        model.train()
        loss_sum = cost_sum = 0.0
        correct = seen = 0
        classification = None
        lr = self.optimizer.param_groups[0]["lr"]
        batch_hooks = cbs.hooks("on_batch_end")
        t0 = time.perf_counter()
        batch = 0
        for batch, data in enumerate(loader, 1):
            self._where = (epoch, batch)
            x, y = data[0], data[1]
            output, loss, cost = self.train_step(x, y)
            if self.scheduler is not None and self.scheduler_interval == "batch":
                self.scheduler.step()
            self.global_step += 1
            n = _batch_size(x)
            loss_value = _float(loss)
            loss_sum += loss_value * n
            cost_sum += (_float(cost) if cost is not loss else loss_value) * n
            seen += n
            if classification is None:
                o, t = output.data, getattr(y, "data", y)
                classification = (getattr(o, "ndim", 0) == 2 and getattr(t, "ndim", 0) == 1
                                  and xp.issubdtype(xp.asarray(t).dtype, xp.integer))
            if classification:
                correct += int(xp.count_nonzero(output.data.argmax(axis=1) == getattr(y, "data", y)))
            if batch_hooks:
                elapsed = time.perf_counter() - t0
                logs = {"epoch": epoch, "batch": batch, "num_batches": self.num_batches,
                        "batch_size": n, "batch_loss": loss_value, "loss": loss_sum / seen,
                        "accuracy": correct / seen if classification else None,
                        "images_per_sec": seen / elapsed if elapsed > 0 else 0.0}
                for hook in batch_hooks:
                    hook(batch, logs)
        if batch == 0:
            raise ValueError("fit: the training loader yielded no batches")
        train_time = time.perf_counter() - t0
        logs = {"epoch": epoch, "global_step": self.global_step, "train_loss": loss_sum / seen,
                "train_accuracy": correct / seen if classification else None}
        if self.l1 > 0 or self.l2 > 0:
            logs["train_cost"] = cost_sum / seen
        logs["lr"] = float(lr)
        logs["train_time"] = train_time
        logs["images_per_sec"] = seen / train_time if train_time > 0 else None
        return logs

    def _run_epoch(self, epoch: int, cbs: CallbackList) -> dict:
        t_start = time.perf_counter()
        cbs.call("on_epoch_begin", epoch, {})
        logs = self._train_epoch(epoch, cbs)
        self._where = (epoch, None)
        for name, p in self.model.named_parameters():
            if not bool(xp.isfinite(p.data).all()):
                self._diverged(f"non-finite (parameter {name!r} has NaN/inf entries)", "model",
                               batch_known=False)
        if self.val_loader is not None:
            val = self.evaluate(self.val_loader)
            logs["val_loss"] = val["loss"]
            logs["val_accuracy"] = val["accuracy"]
            if val.get("top5") is not None:
                logs["val_top5"] = val["top5"]
            if val["loss"] is not None and not math.isfinite(val["loss"]):
                self._diverged(val["loss"], "validation loss", batch_known=False)
        logs["epoch_time"] = time.perf_counter() - t_start
        self.epoch = epoch
        self.history.append(logs)
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            monitor = self.scheduler_monitor or ("val_loss" if self.val_loader is not None else "train_loss")
            step_scheduler(self.scheduler, logs, monitor)
        cbs.call("on_epoch_end", epoch, logs)
        return logs

    # -------------------------------------------------------------------------------- fit
    def _callback_list(self, val_loader) -> CallbackList:
        cbs = list(self.callbacks)
        if self.run_dir is not None:
            kinds = [Checkpoint, CSVLogger, JSONLLogger]
            if val_loader is not None:
                kinds.append(BestCheckpoint)
            for kind in kinds:
                if any(isinstance(cb, kind) for cb in cbs):
                    continue
                if kind not in self._defaults:
                    self._defaults[kind] = kind(self.run_dir)
                cbs.append(self._defaults[kind])
        if self.progress and not any(isinstance(cb, ProgressCallback) for cb in cbs):
            mode = "auto" if self.progress is True else self.progress
            cbs.append(ProgressCallback(mode))
        return CallbackList(cbs, self)

    def fit(self, train_loader, val_loader=None, epochs: int = 1, resume=None) -> History:
        """Train until ``epochs`` epochs are complete (counting those restored by ``resume``);
        validate on ``val_loader`` after every epoch. Returns the ``History`` (also
        ``self.history``). ``resume``: a run directory to continue from (see ``resume``)."""
        if not isinstance(epochs, numbers.Integral) or isinstance(epochs, bool) or epochs < 0:
            raise ValueError(f"fit: epochs must be an int >= 0, got {epochs!r}")
        if resume is not None:
            self.resume(resume, train_loader, val_loader)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.target_epochs = int(epochs)
        try:
            self.num_batches = len(train_loader)
        except TypeError:
            self.num_batches = 0
        if self._pending_rng is not None:
            self._restore_rng(self._pending_rng)
            self._pending_rng = None
        cbs = self._callback_list(val_loader)
        if self._pending_callbacks is not None:
            cbs.load_state_dict(self._pending_callbacks)
            self._pending_callbacks = None
        self._cbs = cbs
        self.stop_training, self.stop_reason = False, None
        self.history.status, self.history.stop_reason = "running", None
        logs = self.history.last or {}
        try:
            cbs.call("on_train_begin", {})
            for epoch in range(self.epoch + 1, self.target_epochs + 1):
                logs = self._run_epoch(epoch, cbs)
                if self.stop_training:
                    break
            self.history.status = "early_stopped" if self.stop_training else "completed"
            self.history.stop_reason = self.stop_reason
            cbs.call("on_train_end", dict(logs))
        except KeyboardInterrupt:
            self.history.status = "interrupted"
            raise
        finally:
            for cb in cbs:
                close = getattr(cb, "close", None)
                if callable(close):
                    close()
        return self.history

    def evaluate(self, loader) -> dict:
        """``foveanet.train.evaluate(self.model, loader, self.loss_fn)``."""
        return _evaluate(self.model, loader, self.loss_fn)

    # ------------------------------------------------------------------ checkpoint / resume
    def rng_state(self) -> dict:
        """The random state to save: the global generator, the loaders', the modules'."""
        return {"global": default_generator.get_state(),
                "train_loader": _loader_state(self.train_loader),
                "val_loader": _loader_state(self.val_loader),
                "modules": {k: g.get_state() for k, g in _module_generators(self.model).items()}}

    def _restore_rng(self, state: dict) -> None:
        if not state:
            return
        if state.get("global") is not None:
            default_generator.set_state(state["global"])
        _set_loader_state(self.train_loader, state.get("train_loader"), "train")
        _set_loader_state(self.val_loader, state.get("val_loader"), "validation")
        gens = _module_generators(self.model)
        for key, st in (state.get("modules") or {}).items():
            if key in gens:
                gens[key].set_state(st)
            else:
                warnings.warn(f"the checkpoint holds the random state of {key!r}, which this model "
                              "does not have", RuntimeWarning, stacklevel=3)

    def save_checkpoint(self, run_dir=None) -> str:
        """Write the resumable state into ``run_dir`` (default: ``self.run_dir``); returns the
        path of ``checkpoint.json``."""
        run_dir = run_dir if run_dir is not None else self.run_dir
        if run_dir is None:
            raise ValueError("save_checkpoint: no run directory (pass one, or Trainer(run_dir=...))")
        path = save_checkpoint(
            run_dir, self.model, self.optimizer, self.scheduler, epoch=self.epoch,
            global_step=self.global_step, history=self.history, rng=self.rng_state(),
            callbacks=self._cbs.state_dict() if self._cbs is not None else {},
            model_name=self.model_name, model_config=self.model_config,
            extra={"scheduler_interval": self.scheduler_interval, "l1": self.l1, "l2": self.l2,
                   "clip_grad_norm": self.clip_grad_norm})
        self._last_checkpoint_epoch = self.epoch
        return path

    def resume(self, run_dir, train_loader=None, val_loader=None) -> dict:
        """Restore the checkpoint in ``run_dir``: weights, optimizer, scheduler, epoch, global
        step, history, callback states and random states (the train/validation loaders' are
        restored into the loaders given here, or else into those passed to the next ``fit``).
        Build the model, optimizer, scheduler and loaders first, as for a fresh run, then resume;
        everything is validated before anything changes (``CheckpointError`` names the file and
        key at fault). Later checkpoints go to ``run_dir`` unless ``Trainer(run_dir=...)`` says
        otherwise. Returns the checkpoint's contents (``read_checkpoint``)."""
        ck = load_checkpoint(run_dir, self.model, self.optimizer, self.scheduler)
        if self.scheduler is None and ck["scheduler"] is not None:
            warnings.warn(f"the checkpoint in {run_dir} has a {ck['scheduler']['class']} scheduler, "
                          "but this Trainer has none: the learning rate stays as restored",
                          RuntimeWarning, stacklevel=2)
        self.epoch = ck["epoch"]
        self.global_step = ck["global_step"]
        history = ck["history"]
        self.history = History()
        if history is not None:
            self.history.load_state_dict(history)
        self._pending_rng = ck["rng"]
        self._pending_callbacks = ck["callbacks"]
        self._last_checkpoint_epoch = ck["epoch"]
        if self.run_dir is None:
            self.run_dir = os.fspath(run_dir)
        if train_loader is not None:
            self.train_loader = train_loader
        if val_loader is not None:
            self.val_loader = val_loader
        self._restore_rng(ck["rng"])
        return ck


def _make_optimizer(model, optimizer, lr, options):
    if isinstance(optimizer, Optimizer):
        if options:
            raise ValueError("fit: optimizer_options only apply when optimizer is a name or a class")
        return optimizer
    options = dict(options or {})
    if isinstance(optimizer, str):
        cls = _OPTIMIZERS.get(optimizer.lower())
        if cls is None:
            raise ValueError(f"fit: unknown optimizer {optimizer!r}; choose one of "
                             f"{sorted(_OPTIMIZERS)} or pass an Optimizer")
    elif isinstance(optimizer, type) and issubclass(optimizer, Optimizer):
        cls = optimizer
    else:
        raise TypeError(f"fit: optimizer must be an Optimizer, an Optimizer class or a name, got "
                        f"{type(optimizer).__name__}")
    return cls(model.parameters(), lr=lr, **options)


def fit(model, train_loader, val_loader=None, *, epochs: int = 1, optimizer="sgd", lr: float = 0.01,
        optimizer_options=None, loss_fn=None, scheduler=None, scheduler_interval="epoch",
        scheduler_monitor=None, callbacks=(), l1=0.0, l2=0.0, clip_grad_norm=None, progress=True,
        run_dir=None, model_config=None, model_name=None, resume=None) -> History:
    """Train ``model`` in one call (Keras's ``model.fit``) and return the ``History``.

    ``optimizer``: an Optimizer, or a name (``'sgd'``, ``'adam'``, ``'adamw'``, ``'rmsprop'``) or
    class built with ``lr`` and ``optimizer_options`` (e.g. ``{"momentum": 0.9}``).
    ``scheduler``: a scheduler, or a function ``optimizer -> scheduler``. ``resume``: a run
    directory to continue. The other arguments are ``Trainer``'s; ``history.trainer`` is the
    Trainer used (for ``history.trainer.evaluate(test_loader)``)."""
    opt = _make_optimizer(model, optimizer, lr, optimizer_options)
    if scheduler is not None and not hasattr(scheduler, "step") and callable(scheduler):
        scheduler = scheduler(opt)
    trainer = Trainer(model, opt, loss_fn=loss_fn, scheduler=scheduler,
                      scheduler_interval=scheduler_interval, scheduler_monitor=scheduler_monitor,
                      callbacks=callbacks, l1=l1, l2=l2, clip_grad_norm=clip_grad_norm,
                      progress=progress, run_dir=run_dir, model_config=model_config,
                      model_name=model_name)
    history = trainer.fit(train_loader, val_loader, epochs=epochs, resume=resume)
    history.trainer = trainer
    return history

