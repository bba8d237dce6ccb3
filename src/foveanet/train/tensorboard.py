"""``TensorBoard``: a training run as TensorBoard event files (through tensorboardX), written by
a callback, so ``tensorboard --logdir LOG_DIR`` shows the curves while ``fit`` runs.

::

    trainer = fv.train.Trainer(model, opt, callbacks=[fv.train.TensorBoard("runs/cnn/tb")])
    trainer.fit(train_loader, val_loader, epochs=10)

What is written (``P/`` is ``MODEL/`` with several models, ``Trainer(models=...)``: a GAN's
``generator/`` and ``discriminator/``; nothing for one model). At each optimizer step, at the
global step:

- ``train/<key>``: each value the step returned, for that batch (``train/loss``, ``train/cost``,
  a GAN's ``train/d_loss``, ``train/g_loss``);
- ``train/running_<metric>``: the task's metrics so far this epoch (``train/running_accuracy``);
- ``train/lr`` (``train/lr_<optimizer>`` for several): the rate the step used (first parameter
  group), when the rate changes per batch (see ``batch_lr``).

At the end of every epoch, at the global step it ended at (the record's ``global_step``):

- ``epoch/<key>``: every number of the epoch's record (``train_loss``, ``val_loss``,
  ``val_accuracy``, ``lr`` or ``lr_<optimizer>``, ``train_time``, ...), ``epoch/lr_group<i>``
  (``epoch/lr_<optimizer>_group<i>``) for the other parameter groups' rates;
- every ``histogram_every`` epochs: ``weights/P<param>`` (a histogram of every parameter),
  ``grads/P<param>`` (of its gradient, below) and ``kernels/P<layer>`` (the first
  convolution's kernels, one tile per filter: ``kernel_grid``, an image CHW in [0, 1]).

Why the choices:

- **One step axis, the global step.** The epoch record is written at the global step the epoch
  ended at (its ``global_step``), so batch and epoch curves share an axis and TensorBoard's
  purge (next point) treats them alike. Histograms and kernels are written every
  ``histogram_every`` epochs (and at the last epoch of ``fit``), and once at step 0, before the
  first epoch of a fresh run (the initial weights: no gradients yet).
- **Resume.** Every writer opened by ``on_train_begin`` marks a restart at ``purge_step`` =
  the trainer's global step + 1 (0 for a fresh run): TensorBoard's reader then hides the events
  an interrupted run wrote after its last checkpoint, and the resumed run writes those steps
  again, so each step is shown once. Nothing needs saving in the checkpoint (``state_dict`` is
  empty): the steps come from the restored trainer. A fresh run into a directory that already
  holds events hides them the same way: give each run its own ``log_dir`` to compare runs.
  Each writer's file name ends with a nanosecond time stamp, so two writers opened in the same
  second (tensorboardX names files by the second) never overwrite each other.
- **Gradients** are those each optimizer applied at the epoch's last step: copied in
  ``on_before_optimizer_step``, after the Trainer's gradient clipping, just before
  ``optimizer.step()``. Reading ``.grad`` at the end of the epoch instead would show, for a GAN,
  the discriminator's gradient plus what the generator's backward added to it afterwards. Only
  the last step of a histogram epoch is copied (every step when the loader has no ``len``).
  A parameter no optimizer stepped with a gradient gets no ``grads/`` histogram.
- The file is flushed at the end of every epoch, before ``Checkpoint`` runs (loggers run at
  order 50, the checkpoint at 100), so what a checkpoint covers is on disk; ``fit`` closes the
  writer when it ends, also after an exception.
- tensorboardX is imported when the callback is built, so a missing package fails before any
  training, with an ImportError naming the ``tensorboard`` extra; the rest of foveanet never
  imports it. Rank 0 only (``rank_zero_only``).
"""
from __future__ import annotations

import numbers
import os
import time

from ..backend import xp
from .callbacks import Callback, LRSchedulerCallback
from .kernels_callback import conv_layers, kernel_grid

__all__ = ["TensorBoard"]

_BOOKKEEPING = {"epoch", "batch", "num_batches", "batch_size", "images_per_sec"}


def _summary_writer():
    """tensorboardX's SummaryWriter class, or an ImportError that says how to install it."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as exc:
        raise ImportError("the TensorBoard callback writes through tensorboardX, which is not "
                          "installed: pip install 'foveanet[tensorboard]' (or pip install "
                          f"tensorboardX) ({exc})") from None
    return SummaryWriter


def _number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


class TensorBoard(Callback):
    """Write the run as TensorBoard event files into ``log_dir`` (see the module docstring for
    the tags and steps).

    ``histogram_every``: write the weight and gradient histograms (and the kernel images) every
    this many epochs, and at the last epoch of ``fit``; 0: never. ``images``: draw the first
    convolution of each model (models without one are skipped). ``flush_secs``: at most this many
    seconds between writes to disk (each epoch's end flushes too); ``max_queue``: events held
    before a write. ``batch_lr``: write each step's learning rate as ``train/lr`` (None: when
    the rate changes per batch, i.e. a scheduler stepped per batch by the Trainer or an
    ``LRSchedulerCallback(interval='batch')``). ``writer``: the open ``SummaryWriter`` during
    ``fit`` (None outside it). Rank 0 only.
    """

    order = 50
    rank_zero_only = True

    def __init__(self, log_dir, histogram_every: int = 1, images: bool = True,
                 flush_secs: float = 30, max_queue: int = 100, batch_lr: bool | None = None):
        if log_dir is None:
            raise ValueError("TensorBoard: a log directory is needed")
        for name, v, low in (("histogram_every", histogram_every, 0), ("max_queue", max_queue, 1)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
                raise ValueError(f"TensorBoard: {name} must be an int >= {low}, got {v!r}")
        if not _number(flush_secs) or not flush_secs > 0:
            raise ValueError(f"TensorBoard: flush_secs must be a number > 0, got {flush_secs!r}")
        if batch_lr not in (None, True, False):
            raise ValueError(f"TensorBoard: batch_lr must be True, False or None, got {batch_lr!r}")
        self._writer_class = _summary_writer()
        self.log_dir = os.fspath(log_dir)
        self.histogram_every = int(histogram_every)
        self.images = bool(images)
        self.flush_secs, self.max_queue = flush_secs, int(max_queue)
        self.batch_lr = batch_lr
        self.writer = None
        self._due = False
        self._batch = 0
        self._num_batches = 0
        self._grads: dict = {}
        self._lrs: dict = {}
        self._group_lrs: dict = {}
        self._log_lr = False

    # --------------------------------------------------------------------------- helpers
    def _prefix(self, name: str) -> str:
        return "" if self.trainer.single_model else f"{name}/"

    def _histograms_due(self, epoch: int) -> bool:
        every = self.histogram_every
        return bool(every) and (epoch % every == 0 or epoch >= self.trainer.target_epochs)

    def _lr_tags(self) -> dict:
        """``{tag suffix: optimizer}``: ``lr`` for one optimizer, ``lr_<name>`` for several."""
        opts = self.trainer.optimizers
        return ({"lr": o for o in opts.values()} if len(opts) == 1
                else {f"lr_{name}": o for name, o in opts.items()})

    def _auto_batch_lr(self) -> bool:
        t = self.trainer
        if t.scheduler_interval == "batch" and t.schedulers:
            return True
        return any(isinstance(cb, LRSchedulerCallback) and cb.interval == "batch"
                   for cb in t.callbacks)

    def _write_parameters(self, step: int, grads: bool) -> None:
        w = self.writer
        for name, model in self.trainer.models.items():
            prefix = self._prefix(name)
            for pname, p in model.named_parameters():
                if p.data.size == 0:
                    continue
                w.add_histogram(f"weights/{prefix}{pname}", p.data, step)
                g = self._grads.get(id(p)) if grads else None
                if g is not None:
                    w.add_histogram(f"grads/{prefix}{pname}", g, step)
            if self.images:
                convs = conv_layers(model)
                if convs:
                    layer, module = convs[0]
                    weight = module.weight.data
                    w.add_image(f"kernels/{prefix}{layer}",
                                kernel_grid(weight, rgb=weight.shape[1] == 3), step)
        self._grads = {}

    # ----------------------------------------------------------------------------- hooks
    def on_train_begin(self, logs=None):
        self.close()
        t = self.trainer
        step = t.global_step
        self.writer = self._writer_class(logdir=self.log_dir, purge_step=step + 1 if step else 0,
                                         flush_secs=self.flush_secs, max_queue=self.max_queue,
                                         filename_suffix=f".{time.time_ns()}")
        self._log_lr = self._auto_batch_lr() if self.batch_lr is None else self.batch_lr
        self._grads, self._due = {}, False
        if t.epoch == 0 and step == 0 and self.histogram_every:
            self._write_parameters(0, grads=False)

    def on_epoch_begin(self, epoch, logs=None):
        self._due = self._histograms_due(epoch)
        self._grads = {}
        # the rates of the parameter groups after the first, as the epoch starts (the record's
        # lr / lr_<name> is the first group's, read at the same moment)
        self._group_lrs = {f"{tag}_group{i}": float(g["lr"])
                           for tag, opt in self._lr_tags().items()
                           for i, g in enumerate(opt.param_groups) if i > 0}

    def on_batch_begin(self, batch, logs=None):
        self._batch = batch
        self._num_batches = (logs or {}).get("num_batches") or 0
        if self._log_lr:
            self._lrs = {tag: float(opt.param_groups[0]["lr"])
                         for tag, opt in self._lr_tags().items()}

    def on_before_optimizer_step(self, optimizer):
        if not self._due or (self._num_batches and self._batch != self._num_batches):
            return
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._grads[id(p)] = xp.array(p.grad.data, copy=True)

    def on_batch_end(self, batch, logs=None):
        if self.writer is None:
            return
        logs = logs or {}
        step, add = self.trainer.global_step, self.writer.add_scalar
        stepped = {k[len("batch_"):] for k in logs if k.startswith("batch_") and k != "batch_size"}
        for key in stepped:
            value = logs[f"batch_{key}"]
            if _number(value):
                add(f"train/{key}", float(value), step)
        for key, value in logs.items():
            if key in _BOOKKEEPING or key.startswith("batch_") or key in stepped:
                continue
            if _number(value):
                add(f"train/running_{key}", float(value), step)
        if self._log_lr:
            for tag, value in self._lrs.items():
                add(f"train/{tag}", value, step)

    def on_epoch_end(self, epoch, logs=None):
        if self.writer is None:
            return
        logs = logs or {}
        step = logs.get("global_step", self.trainer.global_step)
        for key, value in logs.items():
            if key not in ("epoch", "global_step") and _number(value):
                self.writer.add_scalar(f"epoch/{key}", float(value), step)
        for tag, value in self._group_lrs.items():
            self.writer.add_scalar(f"epoch/{tag}", value, step)
        if self._due:
            self._write_parameters(step, grads=True)
        self._due = False
        self.writer.flush()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file (``fit`` calls it when it ends)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
