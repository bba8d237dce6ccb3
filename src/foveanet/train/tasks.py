"""Tasks: what a model is trained to do, which decides its loss and its metrics.

A ``Task`` gives the Trainer:

* ``loss(output, target)``: the training objective (the Trainer adds the l1/l2 penalties);
* ``metrics(stage)``: a fresh ``Metric`` accumulator for an epoch of ``stage`` ``"train"`` or
  ``"val"`` (``update(output, target)`` per batch, ``compute()`` at the end, ``reset()``);
* ``unpack(batch)``: the ``(input, target)`` of a loader's batch (default: its first two items);
* ``config()``: a JSON-able dict, ``{"name": ..., **options}``, that ``from_config`` turns back
  into the task, so a run directory can record its task and a loader can rebuild it.

A metric accumulates sufficient statistics over the whole epoch (counts, sums, a confusion
matrix) and computes the epoch value from them at the end, so the value is exact over the epoch:
mean IoU and R^2 are not averages of per-batch values, and accuracy is correct / seen.

=================  =====================  ================================================
name               loss                   metrics (``train_<name>`` / ``val_<name>``)
=================  =====================  ================================================
classification     cross entropy          accuracy; validation also top5 (>= 5 classes)
regression         mean squared error     mse, mae, r2
segmentation       per-pixel cross entr.  pixel_accuracy, mean_iou
reconstruction     mean squared error     mse, psnr
forecast           MSE, normalised values mae, rmse in the series' units (``train.forecast``)
custom_loss        the user's loss_fn     accuracy when the batches look like classification
=================  =====================  ================================================

``custom_loss`` is what ``Trainer(loss_fn=f)`` without a task means: the loss is ``f`` and, as
before tasks existed, accuracy (and validation top-5) are reported when the first batch has
(N, C) outputs and (N,) integer targets, ``None`` otherwise.

``create(name, **options)`` builds a registered task; ``register`` adds a Task subclass (its
``name`` attribute is the key); ``from_config(task.config())`` is ``task`` again.
"""
from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Mapping

from ..autograd import Tensor
from ..backend import xp
from ..nn import functional as F
from .metrics import _labels, _np, _topk_correct, confusion_matrix, per_class_accuracy

__all__ = ["Task", "Metric", "Classification", "Regression", "Segmentation", "Reconstruction",
           "CustomLoss", "ClassificationMetrics", "RegressionMetrics", "SegmentationMetrics",
           "ReconstructionMetrics", "register", "create", "from_config", "available"]

_REGISTRY: dict = {}


# ------------------------------------------------------------------------------------ metrics
class Metric:
    """An epoch accumulator. ``update(output, target)`` adds a batch, ``compute()`` returns the
    epoch's scalar metrics ``{name: float or None}`` (the values ``fit`` logs; ``{}`` before the
    first update), ``results()`` the same plus non-scalar results (a confusion matrix, per-class
    values) for ``Trainer.evaluate``; ``reset()`` starts over. ``count`` is the number of samples
    seen. This base class measures nothing."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.count = 0

    def update(self, output, target) -> None:
        self.count += _rows(output)

    def compute(self) -> dict:
        return {}

    def results(self) -> dict:
        return self.compute()

    # ------------------------------------------------------- combining ranks (fv.distributed)
    _sums: tuple = ("count",)   # additive counters
    _arrays: tuple = ()         # additive arrays (None until the first update)

    def state(self) -> dict:
        """What this rank accumulated, as JSON values: data-parallel training gathers every
        rank's state and ``merge_state``s them into one epoch's metric. A subclass whose
        accumulators are not plain sums overrides both (or cannot run on several ranks)."""
        if type(self).compute is not Metric.compute and "_sums" not in type(self).__dict__:
            raise NotImplementedError(f"{type(self).__name__} cannot be combined across ranks: "
                                      "define state() and merge_state()")
        out = {k: getattr(self, k) for k in self._sums}
        out.update({k: None if getattr(self, k) is None else getattr(self, k).tolist()
                    for k in self._arrays})
        return out

    def merge_state(self, state: dict) -> None:
        """Add another rank's ``state()`` into this one."""
        for k in self._sums:
            setattr(self, k, getattr(self, k) + state[k])
        for k in self._arrays:
            if state[k] is not None:
                mine, theirs = getattr(self, k), xp.asarray(state[k])
                setattr(self, k, theirs if mine is None else mine + theirs)

    def __repr__(self):
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in self.compute().items())
        return f"{type(self).__name__}({shown or f'count={self.count}'})"


def _rows(x) -> int:
    a = _np(x)
    return int(a.shape[0]) if a.ndim else 1


def _float64(x, where):
    a = _np(x)
    if not (xp.issubdtype(a.dtype, xp.number) or a.dtype == xp.bool_):
        raise ValueError(f"{where} must be numeric, got dtype {a.dtype}")
    return a.astype(xp.float64, copy=False)


def _same_size(output, target, who):
    """``target`` as float64 of ``output``'s shape (a (N,) target for (N, 1) outputs is fine)."""
    o, t = _float64(output, f"{who}: output"), _float64(target, f"{who}: target")
    if o.shape != t.shape:
        if o.size != t.size:
            raise ValueError(f"{who}: target shape {tuple(t.shape)} does not match the output "
                             f"shape {tuple(o.shape)}")
        t = t.reshape(o.shape)
    return o, t


class ClassificationMetrics(Metric):
    """Accuracy over (N, C) scores and (N,) integer labels (or (N, C) class probabilities, whose
    argmax is the label); with ``topk``, top-k accuracy (reported when there are >= k classes);
    with ``confusion=True``, the confusion matrix and per-class accuracy in ``results()``."""

    def __init__(self, topk: int | None = None, confusion: bool = False):
        self.topk, self.confusion = topk, confusion
        super().__init__()

    def reset(self) -> None:
        self.count = self.correct = self.topk_hits = 0
        self.num_classes = None
        self.matrix = None

    def update(self, output, target) -> None:
        o = _np(output)
        if o.ndim != 2:
            hint = (" (per-pixel scores: Trainer(task='segmentation'))" if o.ndim > 2 else
                    " (other outputs: Trainer(task=...) or Trainer(loss_fn=...))")
            raise ValueError(f"classification: the output must be scores of shape (N, C), got "
                             f"shape {tuple(o.shape)}{hint}")
        t = _np(target)
        if t.ndim == 2 and t.shape == o.shape and xp.issubdtype(t.dtype, xp.floating):
            t = t.argmax(axis=1)  # class probabilities / one-hot rows
        t = _labels(t, o.shape[0], "classification: target")
        c = o.shape[1]
        if self.num_classes is None:
            self.num_classes = c
        elif c != self.num_classes:
            raise ValueError(f"classification: this batch has {c} classes, earlier ones had "
                             f"{self.num_classes}")
        pred = o.argmax(axis=1)
        self.correct += int(xp.count_nonzero(pred == t))
        if self.topk is not None and c >= self.topk:
            self.topk_hits += _topk_correct(o, t, self.topk)
        if self.confusion:
            batch_cm = confusion_matrix(t, pred, c)
            self.matrix = batch_cm if self.matrix is None else self.matrix + batch_cm
        self.count += o.shape[0]

    _sums = ("count", "correct", "topk_hits")
    _arrays = ("matrix",)

    def state(self) -> dict:
        return {**super().state(), "num_classes": self.num_classes}

    def merge_state(self, state: dict) -> None:
        super().merge_state(state)
        if self.num_classes is None:
            self.num_classes = state["num_classes"]

    def _has_topk(self) -> bool:
        return self.topk is not None and self.num_classes is not None and self.num_classes >= self.topk

    def compute(self) -> dict:
        if not self.count:
            return {}
        out = {"accuracy": self.correct / self.count}
        if self._has_topk():
            out[f"top{self.topk}"] = self.topk_hits / self.count
        return out

    def results(self) -> dict:
        out = self.compute()
        if self.topk is not None and out:
            out.setdefault(f"top{self.topk}", None)
        if self.confusion and self.matrix is not None:
            out.update(confusion_matrix=self.matrix, per_class_accuracy=per_class_accuracy(self.matrix),
                       num_classes=self.num_classes)
        return out


class RegressionMetrics(Metric):
    """Mean squared and absolute error over every element, and R^2: per output column (the
    target flattened to (N, D)), ``1 - SSE / SST`` with SST around the column's mean over the
    whole epoch, averaged over the columns (scikit-learn's ``r2_score``); NaN for a constant
    column. The column means and squared deviations are merged batch by batch (Chan et al.), so
    no per-batch R^2 is ever averaged."""

    def reset(self) -> None:
        self.count = 0
        self.sse = self.sae = None        # per column: sum of squared / absolute errors
        self.mean = self.m2 = None        # per column: running target mean, squared deviations

    def update(self, output, target) -> None:
        o, t = _same_size(output, target, "regression")
        n = o.shape[0] if o.ndim else 1
        o, t = o.reshape(n, -1), t.reshape(n, -1)
        err = o - t
        b_mean = t.mean(axis=0)
        b_m2 = ((t - b_mean) ** 2).sum(axis=0)
        if self.count == 0:
            self.sse, self.sae = (err * err).sum(axis=0), xp.abs(err).sum(axis=0)
            self.mean, self.m2 = b_mean, b_m2
        else:
            if t.shape[1] != self.mean.shape[0]:
                raise ValueError(f"regression: this batch has {t.shape[1]} outputs per sample, "
                                 f"earlier ones had {self.mean.shape[0]}")
            total = self.count + n
            delta = b_mean - self.mean
            self.mean = self.mean + delta * (n / total)
            self.m2 = self.m2 + b_m2 + delta * delta * (self.count * n / total)
            self.sse = self.sse + (err * err).sum(axis=0)
            self.sae = self.sae + xp.abs(err).sum(axis=0)
        self.count += n

    def state(self) -> dict:
        arrays = ("sse", "sae", "mean", "m2")
        return {"count": self.count, **{k: None if getattr(self, k) is None else
                                         getattr(self, k).tolist() for k in arrays}}

    def merge_state(self, state: dict) -> None:
        n = state["count"]
        if not n:
            return
        sse, sae, mean, m2 = (xp.asarray(state[k], dtype=xp.float64)
                              for k in ("sse", "sae", "mean", "m2"))
        if self.count == 0:
            self.sse, self.sae, self.mean, self.m2, self.count = sse, sae, mean, m2, n
            return
        total = self.count + n  # Chan et al., as update() merges batches
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * n / total)
        self.sse, self.sae, self.count = self.sse + sse, self.sae + sae, total

    def compute(self) -> dict:
        if not self.count:
            return {}
        elements = self.count * self.sse.shape[0]
        with xp.errstate(divide="ignore", invalid="ignore"):
            r2 = 1.0 - self.sse / self.m2
        r2 = xp.where(self.m2 > 0, r2, xp.nan)
        return {"mse": float(self.sse.sum() / elements), "mae": float(self.sae.sum() / elements),
                "r2": float(r2.mean())}


class SegmentationMetrics(Metric):
    """Per-pixel metrics from one confusion matrix over the epoch: ``pixel_accuracy`` (correct
    pixels / labelled pixels) and ``mean_iou`` (the mean over the classes present, in the target
    or the prediction, of ``TP / (TP + FP + FN)``). Outputs are (N, C, d1, ...) scores, targets
    (N, d1, ...) integer labels; pixels labelled ``ignore_index`` do not count. ``results()``
    adds ``confusion_matrix`` and ``per_class_iou`` (NaN for an absent class)."""

    def __init__(self, ignore_index: int = -100):
        self.ignore_index = ignore_index
        super().__init__()

    def reset(self) -> None:
        self.count = 0
        self.matrix = None

    def update(self, output, target) -> None:
        o, t = _np(output), _np(target)
        if o.ndim < 2 or t.shape != o.shape[:1] + o.shape[2:]:
            raise ValueError(f"segmentation: the output must be (N, C, d1, ...) scores and the "
                             f"target (N, d1, ...) labels; got {tuple(o.shape)} and "
                             f"{tuple(t.shape)}")
        if not xp.issubdtype(t.dtype, xp.integer):
            raise ValueError(f"segmentation: the target must be integer labels, got dtype {t.dtype}")
        c = o.shape[1]
        if self.matrix is None:
            self.matrix = xp.zeros((c, c), dtype=xp.int64)
        elif c != self.matrix.shape[0]:
            raise ValueError(f"segmentation: this batch has {c} classes, earlier ones had "
                             f"{self.matrix.shape[0]}")
        pred = o.argmax(axis=1).ravel()
        t = t.ravel().astype(xp.int64)
        keep = t != self.ignore_index
        pred, t = pred[keep], t[keep]
        if t.size and (t.min() < 0 or t.max() >= c):
            raise ValueError(f"segmentation: target labels must be in [0, {c}) or "
                             f"ignore_index={self.ignore_index}, got {t.min()}..{t.max()}")
        self.matrix += xp.bincount(t * c + pred, minlength=c * c).reshape(c, c)
        self.count += o.shape[0]

    _sums = ("count",)
    _arrays = ("matrix",)

    def _iou(self):
        cm = self.matrix.astype(xp.float64)
        tp = xp.diagonal(cm)
        union = cm.sum(axis=0) + cm.sum(axis=1) - tp
        out = xp.full(tp.shape, xp.nan)
        xp.divide(tp, union, out=out, where=union > 0)
        return out

    def compute(self) -> dict:
        if not self.count:
            return {}
        labelled = int(self.matrix.sum())
        iou = self._iou()
        present = ~xp.isnan(iou)
        return {"pixel_accuracy": int(xp.trace(self.matrix)) / labelled if labelled else math.nan,
                "mean_iou": float(iou[present].mean()) if present.any() else math.nan}

    def results(self) -> dict:
        out = self.compute()
        if self.matrix is not None:
            out.update(confusion_matrix=self.matrix, per_class_iou=self._iou())
        return out


class ReconstructionMetrics(Metric):
    """Mean squared error over every element and the PSNR of that epoch MSE,
    ``10 log10(data_range^2 / mse)`` dB (``data_range``: the span of the values, 1 for images
    in [0, 1], 255 for bytes); ``inf`` for a perfect reconstruction."""

    def __init__(self, data_range: float = 1.0):
        self.data_range = data_range
        super().__init__()

    def reset(self) -> None:
        self.count = 0
        self.elements = 0
        self.sse = 0.0

    _sums = ("count", "elements", "sse")

    def update(self, output, target) -> None:
        o, t = _same_size(output, target, "reconstruction")
        err = o - t
        self.sse += float((err * err).sum())
        self.elements += err.size
        self.count += o.shape[0] if o.ndim else 1

    def compute(self) -> dict:
        if not self.count:
            return {}
        mse = self.sse / self.elements if self.elements else math.nan
        with xp.errstate(divide="ignore"):
            psnr = float(10.0 * xp.log10(self.data_range ** 2 / xp.float64(mse))) if mse == mse else math.nan
        return {"mse": mse, "psnr": psnr}


class _GuessedMetrics(Metric):
    """``custom_loss``'s metrics: classification ones when the first batch has (N, C) outputs and
    (N,) integer targets, otherwise ``accuracy: None`` (foveanet's behaviour before tasks)."""

    def __init__(self, stage: str):
        self.stage = stage
        super().__init__()

    def reset(self) -> None:
        self.count = 0
        self.inner = None
        self.classification = None

    def update(self, output, target) -> None:
        if self.classification is None:
            o, t = _np(output), _np(target)
            self.classification = (o.ndim == 2 and t.ndim == 1
                                   and xp.issubdtype(t.dtype, xp.integer))
            if self.stage != "train":  # as evaluate() decided it
                self.classification = self.classification and t.shape[0] == o.shape[0]
            if self.classification:
                self.inner = (ClassificationMetrics() if self.stage == "train"
                              else ClassificationMetrics(topk=5, confusion=True))
        if self.inner is not None:
            self.inner.update(output, target)
        self.count += _rows(output)

    def compute(self) -> dict:
        if not self.count:
            return {}
        return self.inner.compute() if self.inner is not None else {"accuracy": None}

    def state(self) -> dict:
        return {"count": self.count, "classification": self.classification,
                "inner": None if self.inner is None else self.inner.state()}

    def merge_state(self, state: dict) -> None:
        self.count += state["count"]
        if self.classification is None:
            self.classification = state["classification"]
        if state["inner"] is not None:
            if self.inner is None:
                self.inner = (ClassificationMetrics() if self.stage == "train"
                              else ClassificationMetrics(topk=5, confusion=True))
            self.inner.merge_state(state["inner"])

    def results(self) -> dict:
        if self.inner is not None:
            return self.inner.results()
        if not self.count:
            return {}
        out = {"accuracy": None}
        if self.stage != "train":
            out.update(top5=None, confusion_matrix=None, per_class_accuracy=None, num_classes=None)
        return out


# -------------------------------------------------------------------------------------- tasks
class Task:
    """What a model is trained to do. Subclasses set ``name`` (the registry key), implement
    ``loss`` and ``metrics``, and return their constructor options from ``options()`` (JSON
    values only) so that ``config()`` / ``from_config`` round-trip."""

    name: str = "task"

    def loss(self, output, target):
        raise NotImplementedError(f"{type(self).__name__} has no loss")

    def metrics(self, stage: str = "val") -> Metric:
        """A fresh accumulator for an epoch of ``stage`` (``"train"`` or ``"val"``)."""
        return Metric()

    def unpack(self, batch):
        """``(input, target)`` of a batch: its first two items."""
        try:
            if isinstance(batch, (Tensor, xp.ndarray)):  # rows, not (input, target)
                raise TypeError
            return batch[0], batch[1]
        except (TypeError, IndexError, KeyError):
            raise ValueError(f"{self.name}: a batch must be (input, target, ...), got "
                             f"{type(batch).__name__}" + (f" of length {len(batch)}"
                                                          if isinstance(batch, (tuple, list))
                                                          else "")) from None

    def options(self) -> dict:
        return {}

    def config(self) -> dict:
        """``{"name": ..., **options}``: JSON values that ``from_config`` rebuilds this task from."""
        return {"name": self.name, **self.options()}

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


def register(cls):
    """Class decorator: make ``cls`` (a Task subclass with a ``name``) available to ``create``
    and ``from_config``."""
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TypeError(f"register: expected a Task subclass, got {cls!r}")
    if not isinstance(cls.name, str) or not cls.name or cls.name == Task.name:
        raise ValueError(f"register: {cls.__name__} needs a name (a class attribute)")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list:
    """The registered task names."""
    return sorted(_REGISTRY)


def create(name: str, **options) -> Task:
    """The registered task ``name`` built with ``options`` (``create("segmentation",
    ignore_index=255)``)."""
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown task {name!r}; the tasks are {', '.join(available())}")
    known = [p for p in inspect.signature(cls).parameters if p not in ("self", "loss_fn")]
    unknown = [k for k in options if k not in known]
    if unknown:
        raise ValueError(f"task {name!r} has no option {unknown[0]!r} (its options: "
                         f"{', '.join(known) or 'none'})")
    return cls(**options)


def from_config(config) -> Task:
    """The task that ``config`` (a ``Task.config()`` dict, e.g. read from a run directory)
    describes. A malformed config is a ValueError that says what is wrong."""
    if not isinstance(config, Mapping):
        raise ValueError(f"a task config must be an object with a 'name', got "
                         f"{type(config).__name__}")
    if not isinstance(config.get("name"), str):
        raise ValueError(f"a task config needs a 'name' string, got {config.get('name')!r}")
    options = {k: v for k, v in config.items() if k != "name"}
    return create(config["name"], **options)


def _number(value, name, who, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or (positive and value <= 0):
        raise ValueError(f"{who}: {name} must be a finite{' positive' if positive else ''} number, "
                         f"got {value!r}")
    return value


def _integer(value, name, who, minimum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or \
            (minimum is not None and value < minimum):
        raise ValueError(f"{who}: {name} must be an integer"
                         + (f" >= {minimum}" if minimum is not None else "") + f", got {value!r}")
    return int(value)


@register
class Classification(Task):
    """Cross entropy on (N, C) logits and (N,) class indices (``F.cross_entropy``, with
    ``label_smoothing``); accuracy, and for validation top-``topk`` accuracy (when there are at
    least ``topk`` classes), the confusion matrix and per-class accuracy."""

    name = "classification"

    def __init__(self, topk: int = 5, label_smoothing: float = 0.0):
        self.topk = _integer(topk, "topk", "classification", 1)
        self.label_smoothing = _number(label_smoothing, "label_smoothing", "classification")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"classification: label_smoothing must be in [0, 1], got {label_smoothing!r}")

    def loss(self, output, target):
        return F.cross_entropy(output, target, label_smoothing=self.label_smoothing)

    def metrics(self, stage="val"):
        # top-k over training batches is rarely wanted and costs a comparison per class
        return ClassificationMetrics() if stage == "train" else \
            ClassificationMetrics(topk=self.topk, confusion=True)

    def options(self):
        return {"topk": self.topk, "label_smoothing": self.label_smoothing}


@register
class Regression(Task):
    """Mean squared error (``F.mse_loss``; a target with the output's number of elements but
    another shape, (N,) for (N, 1), is reshaped to it); mse, mae and r2."""

    name = "regression"

    def loss(self, output, target):
        return F.mse_loss(output, _as_output_shape(output, target))

    def metrics(self, stage="val"):
        return RegressionMetrics()


@register
class Segmentation(Task):
    """Per-pixel cross entropy on (N, C, H, W) logits and (N, H, W) integer targets; pixels
    labelled ``ignore_index`` count neither in the loss nor in the metrics (pixel accuracy, mean
    IoU over the classes present). ``weight``: one weight per class for the cross entropy (as
    ``F.cross_entropy``'s); ``loss``: ``"ce"`` (default), ``"dice"`` (``F.dice_loss``, soft
    Dice over the classes) or ``"ce+dice"`` (their sum)."""

    name = "segmentation"
    LOSSES = ("ce", "dice", "ce+dice")

    def __init__(self, ignore_index: int = -100, weight=None, loss: str = "ce"):
        self.ignore_index = _integer(ignore_index, "ignore_index", "segmentation")
        if weight is not None:
            weight = [_number(w, "weight", "segmentation") for w in weight]
            if not weight or any(w < 0 for w in weight):
                raise ValueError("segmentation: weight must be a non-empty list of numbers >= 0")
        self.weight = weight
        if loss not in self.LOSSES:
            raise ValueError(f"segmentation: loss must be one of {', '.join(self.LOSSES)}, got "
                             f"{loss!r}")
        self.kind = loss

    def loss(self, output, target):
        w = None
        if self.weight is not None:
            if len(self.weight) != output.shape[1]:
                raise ValueError(f"segmentation: {len(self.weight)} class weights for outputs "
                                 f"of {output.shape[1]} classes")
            w = Tensor(xp.asarray(self.weight, dtype=output.dtype))
        total = None
        if self.kind in ("ce", "ce+dice"):
            total = F.cross_entropy(output, target, weight=w, ignore_index=self.ignore_index)
        if self.kind in ("dice", "ce+dice"):
            d = F.dice_loss(output, target, ignore_index=self.ignore_index)
            total = d if total is None else total + d
        return total

    def metrics(self, stage="val"):
        return SegmentationMetrics(self.ignore_index)

    def options(self):
        return {"ignore_index": self.ignore_index, "weight": self.weight, "loss": self.kind}


@register
class Reconstruction(Task):
    """Mean squared error between the output and the input itself (``target="input"``: an
    autoencoder; the batch's labels, if any, are ignored) or the batch's second item
    (``target="target"``: denoising, super-resolution); mse and PSNR with ``data_range``."""

    name = "reconstruction"

    def __init__(self, data_range: float = 1.0, target: str = "input"):
        self.data_range = _number(data_range, "data_range", "reconstruction", positive=True)
        if target not in ("input", "target"):
            raise ValueError(f"reconstruction: target must be 'input' or 'target', got {target!r}")
        self.target = target

    def unpack(self, batch):
        if self.target == "target":
            return super().unpack(batch)
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return x, x

    def loss(self, output, target):
        return F.mse_loss(output, _as_output_shape(output, target))

    def metrics(self, stage="val"):
        return ReconstructionMetrics(self.data_range)

    def options(self):
        return {"data_range": self.data_range, "target": self.target}


@register
class CustomLoss(Task):
    """A loss function of the user's (``Trainer(loss_fn=f)`` without a task): metrics are
    guessed from the first batch as before tasks existed (see the module docstring).
    ``config()`` records the function's qualified name; a task rebuilt from it has no loss
    function (``loss`` says so) but measures the same metrics."""

    name = "custom_loss"

    def __init__(self, loss_fn=None, loss_name: str | None = None):
        if loss_fn is not None and not callable(loss_fn):
            raise ValueError(f"custom_loss: loss_fn must be callable, got {type(loss_fn).__name__}")
        if loss_name is not None and not isinstance(loss_name, str):
            raise ValueError(f"custom_loss: loss_name must be a string, got {loss_name!r}")
        self.loss_fn = loss_fn
        self.loss_name = loss_name if loss_fn is None else _qualname(loss_fn)

    def loss(self, output, target):
        if self.loss_fn is None:
            raise RuntimeError(f"this task was rebuilt from a config: its loss function "
                               f"({self.loss_name or 'unnamed'}) is not recorded; pass "
                               "Trainer(loss_fn=...)")
        return self.loss_fn(output, target)

    def metrics(self, stage="val"):
        return _GuessedMetrics(stage)

    def options(self):
        return {"loss_name": self.loss_name}


def _qualname(fn) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}" if module else name


def _as_output_shape(output, target):
    o_shape = tuple(output.shape)
    t_shape = tuple(getattr(target, "shape", xp.shape(target)))
    if t_shape != o_shape and math.prod(t_shape) == math.prod(o_shape):
        return (target if isinstance(target, Tensor) else Tensor(xp.asarray(target))).reshape(o_shape)
    return target
