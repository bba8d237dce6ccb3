"""``Trainer`` and ``fit``: the training loop, with metrics, checkpoints, callbacks and resume.

What ``fit`` does is the plain PyTorch-style loop below, nothing hidden; everything else
(progress display, logs, checkpoints, early stopping) is a callback around it. One training
batch is ``train_step(batch)``, one validation batch ``eval_step(batch)``; the defaults, for one
model and its task (``task.loss`` is ``F.cross_entropy`` for the default classification), are::

    weights = fv.train.penalized_parameters(model)     # weights only: no biases, no BatchNorm
    for epoch in range(start_epoch + 1, epochs + 1):
        model.train()
        for batch in train_loader:
            # ---- train_step(batch) ----------------------------------------------------------
            x, y = task.unpack(batch)                    # batch[0], batch[1]
            optimizer.zero_grad()                        # zero_grad()
            output = model(x)
            loss = task.loss(output, y)
            cost = loss
            if l1 > 0:
                cost = cost + fv.optim.l1_penalty(weights, l1)
            if l2 > 0:
                cost = cost + fv.optim.l2_penalty(weights, l2)
            # backward(cost): a NaN/inf cost stops here with TrainingDiverged, before any update
            cost.backward()                  # (data-parallel: returns with averaged gradients)
            on_after_backward()
            # step(): on_before_optimizer_step(optimizer), which clips, then the update
            if clip_grad_norm is not None:
                fv.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            optimizer.step()
            if scheduler is not None and scheduler_interval == "batch":
                scheduler.step()
            train_metrics.update(output, y)              # the task's metrics, over the epoch
            # returns {"loss": loss} (+ "cost" with a penalty) ---------------------------------
        val = trainer.evaluate(val_loader)  # model.eval(), no_grad(), and per batch eval_step:
                                            # loss_fn(model(x), y), eval_metrics.update(...)
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()          # ReduceLROnPlateau: scheduler.step(val["loss"])

The epoch's record logs each value a step returns as its batch-size-weighted mean over the epoch,
``train_<key>`` / ``val_<key>`` (``train_loss``, ``train_cost``, ``val_loss``), and the task's
metrics, which accumulate over the whole epoch (``train_accuracy``, ``val_accuracy``,
``val_top5``; ``val_mse``, ``val_r2``; ``val_mean_iou``...), with ``lr``, ``train_time``,
``images_per_sec``, ``epoch_time`` (see ``history``).

Other steps: subclass ``Trainer`` and override ``train_step`` (and ``eval_step``) as Keras's
``train_step(data)`` or Lightning's ``training_step``; ``fit`` keeps its callbacks, progress,
checkpoints and divergence checks around it. A step with several models and optimizers
(``Trainer(models={...}, optimizers={...}, schedulers={...})``: a GAN) uses the helpers of
Lightning's manual optimisation, a few lines per model (``bce`` is
``F.binary_cross_entropy_with_logits``, ``ones``/``zeros`` the targets; tests/test_train_gan.py
has the whole run)::

    class GAN(fv.train.Trainer):
        def train_step(self, batch):
            G, D = self.models["generator"], self.models["discriminator"]
            real = batch[0]
            fake = G(fv.randn(real.shape[0], 8))
            self.zero_grad("discriminator")
            d_loss = bce(D(real), ones) + bce(D(fake.detach()), zeros)
            self.backward(d_loss)                # finiteness check, backward, on_after_backward
            self.step("discriminator")           # hooks, clipping, step, per-batch scheduler
            self.zero_grad("generator")
            g_loss = bce(D(fake), ones)
            self.backward(g_loss)
            self.step("generator")
            return {"d_loss": d_loss, "g_loss": g_loss}       # train_d_loss, train_g_loss

``global_step`` counts the training batches in which an optimizer stepped (a GAN's two steps on
one batch count once).

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

Resume: ``Trainer.resume(run_dir)`` (or ``fit(..., resume=run_dir)``) restores the weights of
every model, every optimizer and scheduler, the epoch, global step, history, callback states,
and the random state: the global generator, the train (and validation) loader's generator, and
any generator a module owns (``Dropout(generator=...)``). All of it is captured after the
epoch's last callback, which is exactly the state the uninterrupted run starts the next epoch
from, so an interrupted and resumed run ends with bit-identical weights. (Randomness drawn
outside foveanet's generators, e.g. from ``numpy.random`` or ``random`` in your own code, is not
captured.)

Processes: ``Trainer(rank=r, world_size=n)`` says which of the ``n`` processes of a run this
one is; the callbacks that write files or print (``rank_zero_only``) run in rank 0 only. With
``n > 1`` and ``fv.distributed`` initialised (the model in ``DistributedDataParallel``) each rank's
loaders hold its shard; at the end of every epoch the loss sums, sample counts and metric states
(``Metric.state()``) of all ranks are combined, so every rank logs the global values.
"""
from __future__ import annotations

import math
import numbers
import os
import time
import warnings
from collections.abc import Mapping

from ..autograd import Tensor, no_grad
from ..backend import xp
from ..nn.module import Module
from ..nn.utils import clip_grad_norm_
from ..optim import SGD, Adam, AdamW, RMSprop
from ..optim.lr_scheduler import ReduceLROnPlateau
from ..optim.optimizer import Optimizer
from ..optim.regularization import l1_penalty, l2_penalty
from ..random import Generator, default_generator
from . import tasks as _tasks
from .callbacks import (BestCheckpoint, Callback, CallbackList, Checkpoint, CSVLogger, JSONLLogger,
                        step_scheduler)
from .checkpoint import JSON_FILE, load_checkpoint, named, save_checkpoint
from .history import History
from .io import CheckpointError
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


def _set_loader_state(loader, saved, which, where):
    """Restore a loader's saved state (``which``: "train" or "val"; ``where``: the JSON file)."""
    if saved is None or loader is None:
        return
    if saved.get("kind") == "state_dict" and callable(getattr(loader, "load_state_dict", None)):
        try:  # the loader is the authority on its own state
            loader.load_state_dict(saved["state"])
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"{where}: key 'rng.{which}_loader.state' is not a state this "
                                  f"{type(loader).__name__} accepts ({exc})", where,
                                  f"rng.{which}_loader.state") from None
        return
    state = saved["state"]
    if saved.get("kind") == "state_dict":
        state = state.get("generator")
    gen = getattr(loader, "generator", None)
    if isinstance(gen, Generator) and state is not None:
        gen.set_state(state)
    else:
        warnings.warn(f"the checkpoint holds the {'validation' if which == 'val' else which} "
                      "loader's random state, but this loader "
                      "has no generator to restore it into: its shuffling will differ",
                      RuntimeWarning, stacklevel=4)


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


def _batch_size(batch) -> int:
    """The number of samples in ``batch``: the length of its first array (of the first item of
    a tuple, list or dict batch)."""
    if isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    elif isinstance(batch, Mapping) and batch:
        batch = next(iter(batch.values()))
    shape = getattr(batch, "shape", None)
    if shape:
        return int(shape[0])
    return len(batch) if hasattr(batch, "__len__") else 1


def _add(totals: dict, values, n: int, who: str) -> dict:
    """Add a step's logged ``values`` (numbers or 0-d tensors; None is skipped) to ``totals``,
    weighted by the batch size ``n``; returns them as floats."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise TypeError(f"{who} must return a dict of values to log (or None), got "
                        f"{type(values).__name__}")
    out = {}
    for key, v in values.items():
        if v is None:
            continue
        try:
            value = _float(v)
        except (TypeError, ValueError):
            shape = getattr(v, "shape", None)
            raise TypeError(f"{who} returned {key!r} = {type(v).__name__}"
                            + (f" of shape {tuple(shape)}" if shape is not None else "")
                            + ": logged values must be numbers or 0-d tensors") from None
        totals[key] = totals.get(key, 0.0) + value * n
        out[key] = value
    return out


class Trainer:
    """Train ``model`` with ``optimizer`` on its ``task`` (default: classification with
    ``F.cross_entropy``), or several models with their optimizers (``models=``, ``optimizers=``,
    ``schedulers=``) on an overridden ``train_step``.

    ``task``: a ``foveanet.train.tasks.Task`` or a task name (``"classification"``,
    ``"regression"``, ``"segmentation"``, ``"reconstruction"``): it decides the loss and the
    metrics. ``loss_fn``: a loss ``(output, target) -> Tensor`` instead of the task's; without a
    task it means ``tasks.CustomLoss(loss_fn)`` (accuracy when the batches look like
    classification, as before tasks existed). ``scheduler``: an lr scheduler stepped every epoch
    (``scheduler_interval='epoch'``) or after every optimizer step (``'batch'``, e.g.
    OneCycleLR); ``ReduceLROnPlateau`` is stepped with ``scheduler_monitor`` (default
    ``val_loss``, or ``train_loss`` without validation). ``callbacks``: ``Callback`` objects.
    ``l1``/``l2``: penalty coefficients (see the module docstring). ``clip_grad_norm``: clip the
    joint gradient norm of what each optimizer step updates (the whole model for one model) to
    this value. ``progress``: True/``'auto'`` (a bar on a terminal, plain epoch lines otherwise),
    ``'bar'``, ``'plain'`` or False. ``run_dir``: where checkpoints and logs go; when given,
    ``Checkpoint``, ``CSVLogger``, ``JSONLLogger`` and (with a validation loader)
    ``BestCheckpoint(monitor='val_loss')`` are added unless ``callbacks`` already has one of that
    kind. ``model_config``/``model_name``: stored in checkpoints so that tools can rebuild the
    model (with several models, ``model_config`` is ``{model name: config}``).

    Several models: ``models={name: Module}``, ``optimizers={name: Optimizer}``,
    ``schedulers={optimizer name: scheduler}`` (names: letters, digits, ``_``, ``-``; they name
    the checkpoint files). ``rank``/``world_size``: this process's place in a multi-process run
    (callbacks with ``rank_zero_only`` run in rank 0 only).

    State: ``models``/``optimizers``/``schedulers`` (dicts; ``model``, ``optimizer``,
    ``scheduler``: the only one, or None), ``task``, ``train_metrics`` / ``eval_metrics`` (the
    task's accumulators of the epoch / evaluation in progress), ``epoch`` (completed epochs),
    ``global_step`` (batches with an optimizer step), ``history``, ``stop_training`` (set by
    callbacks), ``stop_reason``, ``single_model`` (built as ``Trainer(model, optimizer)``: the
    single-model checkpoint file names).
    """

    def __init__(self, model=None, optimizer=None, loss_fn=None, scheduler=None,
                 scheduler_interval="epoch", callbacks=(), l1=0.0, l2=0.0, clip_grad_norm=None,
                 progress=True, run_dir=None, model_config=None, model_name=None,
                 scheduler_monitor=None, *, task=None, models=None, optimizers=None,
                 schedulers=None, rank=0, world_size=1):
        self.single_model = models is None and optimizers is None and schedulers is None
        if self.single_model:
            if not isinstance(model, Module):
                raise TypeError(f"Trainer: model must be a foveanet.nn.Module, got "
                                f"{type(model).__name__}")
            if not isinstance(optimizer, Optimizer):
                raise TypeError(f"Trainer: optimizer must be a foveanet.optim.Optimizer, got "
                                f"{type(optimizer).__name__}")
            if scheduler is not None and getattr(scheduler, "optimizer", optimizer) is not optimizer:
                raise ValueError("Trainer: the scheduler drives another optimizer than the one given")
        models, optimizers, schedulers, _ = named(model, optimizer, scheduler, models,
                                                  optimizers, schedulers, "Trainer")
        if not self.single_model:
            self._check_several(models, optimizers, schedulers, l1, l2, model_config)
        if scheduler_interval not in ("epoch", "batch"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'batch', got {scheduler_interval!r}")
        if scheduler_interval == "batch" and any(isinstance(s, ReduceLROnPlateau)
                                                 for s in schedulers.values()):
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
        for name, v in (("world_size", world_size), ("rank", rank)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"Trainer: {name} must be an int, got {v!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"Trainer: rank must be in [0, world_size), got rank={rank} and "
                             f"world_size={world_size}")
        self.task = self._make_task(task, loss_fn, several=len(models) > 1)
        self.models, self.optimizers, self.schedulers = models, optimizers, schedulers
        only = (lambda d: next(iter(d.values())) if len(d) == 1 else None)
        self.model, self.optimizer = only(models), only(optimizers)
        self.scheduler = schedulers.get(next(iter(optimizers))) if len(optimizers) == 1 else None
        # the loss of the default steps: the user's, else the task's
        self.loss_fn = loss_fn if loss_fn is not None else getattr(self.task, "loss", None)
        self.scheduler_interval = scheduler_interval
        self.scheduler_monitor = scheduler_monitor
        self.callbacks = list(callbacks)
        self.l1, self.l2 = float(l1), float(l2)
        self.clip_grad_norm = clip_grad_norm
        self.progress = progress
        self.run_dir = None if run_dir is None else os.fspath(run_dir)
        self.rank, self.world_size = int(rank), int(world_size)
        self._combining = False  # fit: several ranks in a process group merge their epoch logs
        if self.single_model:
            self.model_config = None if model_config is None else dict(model_config)
            self.model_name = (model_name or (self.model_config or {}).get("name")
                               or type(model).__name__)
            self.weights = penalized_parameters(model)
        else:
            self.model_config = {k: dict(v) for k, v in (model_config or {}).items()
                                 if v is not None}
            self.model_name = model_name or " + ".join(models)
            self.weights = []
        self.train_metrics = self._metrics("train")
        self.eval_metrics = self._metrics("val")

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
        self._hooks = {"on_after_backward": [], "on_before_optimizer_step": []}
        self._stepped = False
        self._pending_rng = None
        self._pending_callbacks = None
        self._resumed_from = None
        self._last_checkpoint_epoch = None
        self._where = (None, None)

    @staticmethod
    def _check_several(models, optimizers, schedulers, l1, l2, model_config):
        if not models or not optimizers:
            raise ValueError("Trainer: models and optimizers must name at least one of each")
        for kind, d, cls, what in (("models", models, Module, "a foveanet.nn.Module"),
                                   ("optimizers", optimizers, Optimizer,
                                    "a foveanet.optim.Optimizer")):
            for name, obj in d.items():
                if not isinstance(obj, cls):
                    raise TypeError(f"Trainer: {kind}[{name!r}] must be {what}, got "
                                    f"{type(obj).__name__}")
        for name, sched in schedulers.items():
            if getattr(sched, "optimizer", optimizers[name]) is not optimizers[name]:
                raise ValueError(f"Trainer: schedulers[{name!r}] drives another optimizer than "
                                 f"optimizers[{name!r}]")
        if l1 or l2:
            raise ValueError("Trainer: l1/l2 are added by the default train_step of one model; "
                             "with several, add fv.optim.l1_penalty / l2_penalty to the losses "
                             "in your train_step")
        if model_config is not None and (not isinstance(model_config, Mapping) or
                                         any(k not in models for k in model_config)):
            raise ValueError(f"Trainer: with several models, model_config must map model names "
                             f"({', '.join(models)}) to configs")

    @staticmethod
    def _make_task(task, loss_fn, several):
        if task is None:
            if several:
                return None  # several models: the overridden train_step decides everything
            return _tasks.Classification() if loss_fn is None else _tasks.CustomLoss(loss_fn)
        if isinstance(task, str):
            return _tasks.create(task)
        if not isinstance(task, _tasks.Task):
            raise TypeError(f"Trainer: task must be a foveanet.train.tasks.Task or a task name "
                            f"({', '.join(_tasks.available())}), got {type(task).__name__}")
        return task

    def _metrics(self, stage):
        return self.task.metrics(stage) if self.task is not None else _tasks.Metric()

    # --------------------------------------------------------------------------- one step
    def train_step(self, batch) -> dict:
        """One optimisation step on ``batch``; returns the values to log for it (numbers or 0-d
        tensors; ``fit`` logs their batch-size-weighted epoch means as ``train_<key>``). The
        default, for one model: ``{"loss": loss}`` (and ``"cost"``, loss + penalty, with
        l1/l2), after ``zero_grad()``, forward, ``backward(cost)``, ``step()`` and updating
        ``train_metrics`` (see the module docstring). Override it for other steps."""
        if self.model is None:
            raise NotImplementedError("a Trainer with several models has no default train_step: "
                                      "subclass Trainer and override train_step(batch)")
        x, y = self.unpack(batch)
        self.zero_grad()
        output = self.model(x)
        loss = self.loss_fn(output, y)
        cost = self.penalize(loss)
        self.backward(cost, "loss" if cost is loss else "cost (loss + penalty)")
        self.step()
        self.train_metrics.update(output, y)
        return {"loss": loss} if cost is loss else {"loss": loss, "cost": cost}

    def eval_step(self, batch) -> dict:
        """The values to log for one validation batch (``fit`` logs their means as
        ``val_<key>``; it runs in eval mode, without gradients). The default: ``{"loss":
        loss}``, after updating ``eval_metrics`` with the model's output. Override it with
        ``train_step``."""
        if self.model is None:
            raise NotImplementedError("a Trainer with several models has no default eval_step: "
                                      "override eval_step(batch) to validate")
        x, y = self.unpack(batch)
        output = self.model(x)
        self.eval_metrics.update(output, y)
        return {"loss": self.loss_fn(output, y)}

    # ------------------------------------------------------------- helpers for the steps
    def unpack(self, batch):
        """``(input, target)`` of a batch, as the task reads it (the first two items)."""
        if self.task is not None:
            return self.task.unpack(batch)
        return batch[0], batch[1]

    def penalize(self, loss):
        """``loss`` plus the l1/l2 penalties on ``weights`` (``loss`` itself without them)."""
        cost = loss
        if self.l1 > 0:
            cost = cost + l1_penalty(self.weights, self.l1)
        if self.l2 > 0:
            cost = cost + l2_penalty(self.weights, self.l2)
        return cost

    def _optimizer_name(self, name):
        if name is None:
            if len(self.optimizers) == 1:
                return next(iter(self.optimizers))
            raise ValueError(f"this Trainer has several optimizers ({', '.join(self.optimizers)}): "
                             "name the one to use")
        if name not in self.optimizers:
            raise ValueError(f"this Trainer has no optimizer {name!r}; its optimizers are "
                             f"{', '.join(map(repr, self.optimizers))}")
        return name

    def zero_grad(self, name=None, set_to_none: bool = True) -> None:
        """Zero the gradients of the parameters optimizer ``name`` updates (the only optimizer
        when None)."""
        self.optimizers[self._optimizer_name(name)].zero_grad(set_to_none=set_to_none)

    def backward(self, loss, name: str = "loss") -> None:
        """``loss.backward()``, then ``on_after_backward`` (the Trainer's, then the callbacks').
        A NaN or infinite ``loss`` raises ``TrainingDiverged`` first (naming it as ``name``),
        before any gradient or weight changes."""
        value = _float(loss)
        if not math.isfinite(value):
            self._diverged(value, name)
        loss.backward()
        self.on_after_backward()
        for hook in self._hooks["on_after_backward"]:
            hook()

    def step(self, name=None) -> None:
        """Update with optimizer ``name`` (the only one when None): ``on_before_optimizer_step``
        (the Trainer's, which clips the gradients, then the callbacks'), ``optimizer.step()``,
        and its scheduler's step when ``scheduler_interval='batch'``. The batch counts once in
        ``global_step``, however many optimizers step in it."""
        name = self._optimizer_name(name)
        optimizer = self.optimizers[name]
        self.on_before_optimizer_step(optimizer)
        for hook in self._hooks["on_before_optimizer_step"]:
            hook(optimizer)
        optimizer.step()
        scheduler = self.schedulers.get(name)
        if scheduler is not None and self.scheduler_interval == "batch":
            scheduler.step()
        self._stepped = True

    # ----------------------------------------------------------------------------- hooks
    def on_after_backward(self) -> None:
        """Called after every ``backward``, before the callbacks' hook of the same name.
        Override it to work on the gradients of every model (a data-parallel Trainer
        all-reduces them here). Does nothing."""

    def on_before_optimizer_step(self, optimizer) -> None:
        """Called before every ``optimizer.step()``, before the callbacks' hook of the same
        name: clips the gradients the step will apply to ``clip_grad_norm`` when it is set (for
        one model, of all the model's parameters). Override it (calling ``super()`` to keep the
        clipping) to change the gradients of one optimizer's parameters."""
        if self.clip_grad_norm is None:
            return
        if self.single_model:
            params = self.model.parameters()
        else:
            params = [p for group in optimizer.param_groups for p in group["params"]]
        clip_grad_norm_(params, self.clip_grad_norm)

    def _diverged(self, value, what, batch_known=True):
        epoch, batch = self._where
        lrs = ", ".join(f"{name} {opt.param_groups[0]['lr']:g}" if len(self.optimizers) > 1
                        else f"{opt.param_groups[0]['lr']:g}" for name, opt in self.optimizers.items())
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
        rate = "learning rate" if len(self.optimizers) == 1 else "learning rates"
        hint = (f"Lower the {rate} (now {lrs})"
                + (" or clip the gradients (e.g. clip_grad_norm=1.0)" if self.clip_grad_norm is None
                   else f" or clip the gradients harder (clip_grad_norm={self.clip_grad_norm:g} now)")
                + ".")
        self.history.status = "diverged"
        msg = f"training diverged at {where}: the {what} is {value}. {hint} {kept}"
        self.history.stop_reason = msg
        raise TrainingDiverged(msg, epoch=epoch, batch=batch if batch_known else None, loss=value,
                               history=self.history, checkpoint_epoch=self._last_checkpoint_epoch)

    # ----------------------------------------------------------------------------- epochs
    def _lrs(self) -> dict:
        """The first parameter group's rate of each optimizer: ``lr``, or ``lr_<name>``."""
        if len(self.optimizers) == 1:
            return {"lr": float(self.optimizer.param_groups[0]["lr"])}
        return {f"lr_{name}": float(opt.param_groups[0]["lr"])
                for name, opt in self.optimizers.items()}

    def _train_epoch(self, epoch: int, cbs: CallbackList) -> dict:
        for model in self.models.values():
            model.train()
        self.train_metrics.reset()
        totals, seen = {}, 0
        lrs = self._lrs()
        begin_hooks, batch_hooks = cbs.hooks("on_batch_begin"), cbs.hooks("on_batch_end")
        t0 = time.perf_counter()
        batch = 0
        for batch, data in enumerate(self.train_loader, 1):
            self._where = (epoch, batch)
            for hook in begin_hooks:
                hook(batch, {"epoch": epoch, "batch": batch, "num_batches": self.num_batches})
            self._stepped = False
            values = self.train_step(data)
            if self._stepped:
                self.global_step += 1
            n = _batch_size(data)
            values = _add(totals, values, n, "train_step")
            seen += n
            if batch_hooks:
                elapsed = time.perf_counter() - t0
                logs = {"epoch": epoch, "batch": batch, "num_batches": self.num_batches,
                        "batch_size": n, **self.train_metrics.compute(),
                        "images_per_sec": seen / elapsed if elapsed > 0 else 0.0}
                for key, value in values.items():
                    logs[f"batch_{key}"] = value
                    logs[key] = totals[key] / seen
                for hook in batch_hooks:
                    hook(batch, logs)
        if batch == 0:
            raise ValueError("fit: the training loader yielded no batches")
        train_time = time.perf_counter() - t0
        local_seen = seen
        totals, seen = self._combine_ranks(totals, seen, self.train_metrics, "training")
        means = {key: total / seen for key, total in totals.items()}
        logs = {"epoch": epoch, "global_step": self.global_step}
        if "loss" in means:
            logs["train_loss"] = means.pop("loss")
        for key, value in self.train_metrics.compute().items():
            logs[f"train_{key}"] = value
        for key, value in means.items():  # a step's value named like a metric replaces it
            logs[f"train_{key}"] = value
        logs.update(lrs)
        logs["train_time"] = train_time
        logs["images_per_sec"] = seen / train_time if train_time > 0 else None
        if self._combining:
            logs["images_per_sec_per_rank"] = local_seen / train_time if train_time > 0 else None
        return logs

    def _combine_ranks(self, totals: dict, seen: int, metrics, what: str):
        """With several ranks (``world_size > 1``, ``fv.distributed`` initialised): every rank's
        sums, sample count and metric state combined, so the epoch's logs are the global ones,
        the same on every rank. One process (or no process group): unchanged."""
        if not self._combining:
            return totals, seen
        from .. import distributed
        comm = distributed.communicator()
        mine = {"totals": {k: float(v) for k, v in totals.items()}, "seen": int(seen),
                "metrics": metrics.state()}
        totals, seen = {}, 0
        metrics.reset()
        for state in comm.allgather_json(mine, f"the all-gather of the epoch's {what} results"):
            for key, value in state["totals"].items():
                totals[key] = totals.get(key, 0.0) + value
            seen += state["seen"]
            metrics.merge_state(state["metrics"])
        return totals, seen

    def _run_epoch(self, epoch: int, cbs: CallbackList) -> dict:
        t_start = time.perf_counter()
        cbs.call("on_epoch_begin", epoch, {})
        logs = self._train_epoch(epoch, cbs)
        self._where = (epoch, None)
        for model_name, model in self.models.items():
            for name, p in model.named_parameters():
                if not bool(xp.isfinite(p.data).all()):
                    name = name if self.single_model else f"{model_name}.{name}"
                    self._diverged(f"non-finite (parameter {name!r} has NaN/inf entries)",
                                   "model", batch_known=False)
        if self.val_loader is not None:
            means, metrics, _ = self._evaluate(self.val_loader, combine=True)
            if "loss" in means:
                logs["val_loss"] = means.pop("loss")
            for key, value in metrics.compute().items():
                logs[f"val_{key}"] = value
            for key, value in means.items():
                logs[f"val_{key}"] = value
            if logs.get("val_loss") is not None and not math.isfinite(logs["val_loss"]):
                self._diverged(logs["val_loss"], "validation loss", batch_known=False)
        logs["epoch_time"] = time.perf_counter() - t_start
        self.epoch = epoch
        self.history.append(logs)
        if self.schedulers and self.scheduler_interval == "epoch":
            monitor = self.scheduler_monitor or ("val_loss" if self.val_loader is not None else "train_loss")
            for scheduler in self.schedulers.values():
                step_scheduler(scheduler, logs, monitor)
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
        from .. import distributed
        self._combining = self.world_size > 1 and distributed.is_initialized()
        if self._combining:  # each rank trains and validates on its shard; logs are global
            if distributed.get_world_size() != self.world_size:
                raise ValueError(f"Trainer(world_size={self.world_size}) in a process group of "
                                 f"{distributed.get_world_size()} ranks")
            self.train_metrics.state()  # a metric that cannot combine ranks says so now
        try:
            self.num_batches = len(train_loader)
        except TypeError:
            self.num_batches = 0
        if self._pending_rng is not None:
            self._restore_rng(self._pending_rng)
            self._pending_rng = None
        cbs = self._callback_list(val_loader)
        if self._pending_callbacks is not None:
            cbs.load_state_dict(self._pending_callbacks, self._resumed_from or JSON_FILE)
            self._pending_callbacks = None
        self._cbs = cbs
        self._hooks = {hook: cbs.hooks(hook) for hook in self._hooks}
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
            self._hooks = {hook: [] for hook in self._hooks}
            for cb in cbs:
                close = getattr(cb, "close", None)
                if callable(close):
                    close()
        return self.history

    def _evaluate(self, loader, combine: bool = False):
        """``(means of eval_step's values, the metric accumulator)`` over ``loader``;
        ``combine``: each rank evaluated its shard, the results are combined across ranks."""
        self.eval_metrics = self._metrics("val")
        modes = {name: model.training for name, model in self.models.items()}
        totals, seen = {}, 0
        for model in self.models.values():
            model.eval()
        try:
            with no_grad():
                for batch in loader:
                    n = _batch_size(batch)
                    _add(totals, self.eval_step(batch), n, "eval_step")
                    seen += n
        finally:
            for name, model in self.models.items():
                model.train(modes[name])
        if combine:
            totals, seen = self._combine_ranks(totals, seen, self.eval_metrics, "validation")
        if seen == 0:
            raise ValueError("evaluate: the loader yielded no samples")
        return {key: total / seen for key, total in totals.items()}, self.eval_metrics, seen

    def evaluate(self, loader) -> dict:
        """Run ``eval_step`` over ``loader`` (every model in eval mode, without gradients; their
        modes are restored afterwards) and return the batch-size-weighted means of its values
        (``loss``), ``num_samples``, and the task's results: for classification ``accuracy``,
        ``top5`` (None with fewer than 5 classes), ``confusion_matrix``,
        ``per_class_accuracy``, ``num_classes``, as ``foveanet.train.evaluate``."""
        means, metrics, seen = self._evaluate(loader)
        return {**means, "num_samples": seen, **metrics.results()}

    # ------------------------------------------------------------------ checkpoint / resume
    def _module_generators(self) -> dict:
        if self.single_model:
            return _module_generators(self.model)
        return {f"{name}/{key}": gen for name, model in self.models.items()
                for key, gen in _module_generators(model).items()}

    def rng_state(self) -> dict:
        """The random state to save: the global generator, the loaders', the modules'."""
        return {"global": default_generator.get_state(),
                "train_loader": _loader_state(self.train_loader),
                "val_loader": _loader_state(self.val_loader),
                "modules": {k: g.get_state() for k, g in self._module_generators().items()}}

    def _restore_rng(self, state: dict) -> None:
        if not state:
            return
        where = self._resumed_from or JSON_FILE
        if state.get("global") is not None:
            default_generator.set_state(state["global"])
        _set_loader_state(self.train_loader, state.get("train_loader"), "train", where)
        _set_loader_state(self.val_loader, state.get("val_loader"), "val", where)
        gens = self._module_generators()
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
        state = dict(epoch=self.epoch, global_step=self.global_step, history=self.history,
                     rng=self.rng_state(),
                     callbacks=self._cbs.state_dict() if self._cbs is not None else {},
                     model_config=self.model_config, task=self.task,
                     extra={"scheduler_interval": self.scheduler_interval, "l1": self.l1,
                            "l2": self.l2, "clip_grad_norm": self.clip_grad_norm})
        if self.single_model:
            path = save_checkpoint(run_dir, self.model, self.optimizer, self.scheduler,
                                   model_name=self.model_name, **state)
        else:
            path = save_checkpoint(run_dir, models=self.models, optimizers=self.optimizers,
                                   schedulers=self.schedulers, **state)
        self._last_checkpoint_epoch = self.epoch
        return path

    def resume(self, run_dir, train_loader=None, val_loader=None) -> dict:
        """Restore the checkpoint in ``run_dir``: the weights of every model, every optimizer
        and scheduler, epoch, global step, history, callback states and random states (the
        train/validation loaders' are restored into the loaders given here, or else into those
        passed to the next ``fit``). Build the models, optimizers, schedulers and loaders first,
        as for a fresh run, then resume; everything is validated before anything changes
        (``CheckpointError`` names the file and key at fault, also for a checkpoint whose models
        or optimizers are not this Trainer's). Later checkpoints go to ``run_dir`` unless
        ``Trainer(run_dir=...)`` says otherwise. Returns the checkpoint's contents
        (``read_checkpoint``)."""
        if self.single_model:
            ck = load_checkpoint(run_dir, self.model, self.optimizer, self.scheduler, strict=True)
        else:
            ck = load_checkpoint(run_dir, models=self.models, optimizers=self.optimizers,
                                 schedulers=self.schedulers, strict=True)
        for name, entry in ck["schedulers"].items():
            if (self.scheduler is None) if self.single_model else (name not in self.schedulers):
                which = "" if self.single_model else f" for optimizer {name!r}"
                warnings.warn(f"the checkpoint in {run_dir} has a {entry['class']} scheduler"
                              f"{which}, but this Trainer has none: the learning rate stays as "
                              "restored", RuntimeWarning, stacklevel=2)
        self.epoch = ck["epoch"]
        self.global_step = ck["global_step"]
        history = ck["history"]
        self.history = History()
        if history is not None:
            self.history.load_state_dict(history)
        self._pending_rng = ck["rng"]
        self._pending_callbacks = ck["callbacks"]
        self._resumed_from = os.path.join(ck["run_dir"], JSON_FILE)
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
        run_dir=None, model_config=None, model_name=None, resume=None, task=None) -> History:
    """Train ``model`` in one call (Keras's ``model.fit``) and return the ``History``.

    ``optimizer``: an Optimizer, or a name (``'sgd'``, ``'adam'``, ``'adamw'``, ``'rmsprop'``) or
    class built with ``lr`` and ``optimizer_options`` (e.g. ``{"momentum": 0.9}``).
    ``scheduler``: a scheduler, or a function ``optimizer -> scheduler``. ``resume``: a run
    directory to continue. ``task``: a Task or a task name (default: classification, or the
    ``loss_fn`` given). The other arguments are ``Trainer``'s; ``history.trainer`` is the
    Trainer used (for ``history.trainer.evaluate(test_loader)``)."""
    opt = _make_optimizer(model, optimizer, lr, optimizer_options)
    if scheduler is not None and not hasattr(scheduler, "step") and callable(scheduler):
        scheduler = scheduler(opt)
    trainer = Trainer(model, opt, loss_fn=loss_fn, scheduler=scheduler,
                      scheduler_interval=scheduler_interval, scheduler_monitor=scheduler_monitor,
                      callbacks=callbacks, l1=l1, l2=l2, clip_grad_norm=clip_grad_norm,
                      progress=progress, run_dir=run_dir, model_config=model_config,
                      model_name=model_name, task=task)
    history = trainer.fit(train_loader, val_loader, epochs=epochs, resume=resume)
    history.trainer = trainer
    return history

