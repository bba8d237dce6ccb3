"""Classification metrics on NumPy arrays, and ``evaluate(model, loader, loss_fn)``.

All functions accept foveanet Tensors or NumPy arrays (or lists):

* ``output``: scores of shape (N, C) (logits or probabilities; the predicted class is the argmax,
  the first one on ties), or already-predicted labels of shape (N,) for ``accuracy``;
* ``target``: integer class labels of shape (N,).

``confusion_matrix`` counts with one ``bincount`` (rows: true class, columns: predicted class).
``per_class_accuracy`` is its diagonal over its row sums (the recall of each class; NaN for a
class that never occurs). ``topk_accuracy`` counts a sample as correct when fewer than ``k``
classes score strictly higher than the true class (so ties are resolved in the sample's favour,
and the result does not depend on a sort order).
"""
from __future__ import annotations

import math

from ..autograd import Tensor, no_grad
from ..backend import xp

__all__ = ["accuracy", "topk_accuracy", "confusion_matrix", "per_class_accuracy",
           "RunningAverage", "AverageMeter", "evaluate", "is_classification"]


def _np(x):
    if isinstance(x, Tensor):
        return x.data
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # a torch tensor
        return x.detach().cpu().numpy()
    return xp.asarray(x)


def _labels(target, n=None, where="target"):
    t = _np(target)
    if t.ndim != 1 or not (xp.issubdtype(t.dtype, xp.integer) or t.dtype == xp.bool_):
        raise ValueError(f"{where} must be integer class labels of shape (N,), got dtype {t.dtype} "
                         f"and shape {tuple(t.shape)}")
    if n is not None and t.shape[0] != n:
        raise ValueError(f"{where} has {t.shape[0]} labels but the output has {n} rows")
    return t.astype(xp.int64, copy=False)


def _predictions(output):
    o = _np(output)
    if o.ndim == 2:
        return o.argmax(axis=1)
    if o.ndim == 1 and (xp.issubdtype(o.dtype, xp.integer) or o.dtype == xp.bool_):
        return o.astype(xp.int64, copy=False)
    raise ValueError(f"output must be scores of shape (N, C) or integer labels of shape (N,), got "
                     f"dtype {o.dtype} and shape {tuple(o.shape)}")


def is_classification(output, target) -> bool:
    """True when ``output`` is (N, C) scores and ``target`` (N,) integer labels."""
    o, t = _np(output), _np(target)
    return (o.ndim == 2 and t.ndim == 1 and t.shape[0] == o.shape[0]
            and xp.issubdtype(t.dtype, xp.integer))


def _correct(output, target) -> int:
    pred = _predictions(output)
    t = _labels(target, pred.shape[0])
    return int(xp.count_nonzero(pred == t))


def _topk_correct(output, target, k: int) -> int:
    o = _np(output)
    if o.ndim != 2:
        raise ValueError(f"topk_accuracy needs scores of shape (N, C), got shape {tuple(o.shape)}")
    if not 1 <= k <= o.shape[1]:
        raise ValueError(f"topk_accuracy: k={k} must be between 1 and the number of classes "
                         f"({o.shape[1]})")
    t = _labels(target, o.shape[0])
    if t.size and (t.min() < 0 or t.max() >= o.shape[1]):
        raise ValueError(f"target labels must be in [0, {o.shape[1]}), got {t.min()}..{t.max()}")
    true_score = o[xp.arange(o.shape[0]), t][:, None]
    higher = xp.count_nonzero(o > true_score, axis=1)
    return int(xp.count_nonzero((higher < k) & ~xp.isnan(true_score[:, 0])))


def accuracy(output, target) -> float:
    """The fraction of samples whose predicted class (argmax of ``output``) equals ``target``."""
    pred = _predictions(output)
    if pred.shape[0] == 0:
        return math.nan
    return _correct(output, target) / pred.shape[0]


def topk_accuracy(output, target, k: int = 5) -> float:
    """The fraction of samples whose true class is among the ``k`` highest scores."""
    o = _np(output)
    if o.ndim == 2 and o.shape[0] == 0:
        return math.nan
    return _topk_correct(output, target, k) / o.shape[0]


def confusion_matrix(target, pred, num_classes: int | None = None):
    """(C, C) int64 counts: entry [i, j] is the number of samples of class i predicted as j.

    ``pred`` may be labels (N,) or scores (N, C) (then ``num_classes`` defaults to C).
    ``num_classes`` defaults to 1 + the largest label seen."""
    p_arr = _np(pred)
    if num_classes is None and p_arr.ndim == 2:
        num_classes = p_arr.shape[1]
    p = _predictions(pred)
    t = _labels(target, p.shape[0])
    if num_classes is None:
        num_classes = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    c = int(num_classes)
    for name, a in (("target", t), ("prediction", p)):
        if a.size and (a.min() < 0 or a.max() >= c):
            raise ValueError(f"confusion_matrix: {name} labels must be in [0, {c}), got "
                             f"{a.min()}..{a.max()}")
    return xp.bincount(t * c + p, minlength=c * c).reshape(c, c).astype(xp.int64)


def per_class_accuracy(cm):
    """Per class: correct / occurrences (the confusion matrix's diagonal over its row sums), as
    float64; NaN for a class with no samples."""
    cm = _np(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"per_class_accuracy expects a square confusion matrix, got shape "
                         f"{tuple(cm.shape)}")
    rows = cm.sum(axis=1).astype(xp.float64)
    diag = xp.diagonal(cm).astype(xp.float64)
    out = xp.full(rows.shape, xp.nan)
    xp.divide(diag, rows, out=out, where=rows > 0)
    return out


class RunningAverage:
    """A weighted running mean: ``update(value, n)`` adds ``n`` samples of mean ``value``.

    ``avg`` is ``sum / count`` (NaN before the first update); ``val`` the last value."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sum = 0.0
        self.count = 0
        self.val = math.nan

    def update(self, value, n: int = 1) -> None:
        value = float(_np(value)) if not isinstance(value, (int, float)) else float(value)
        self.val = value
        self.sum += value * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / self.count if self.count else math.nan

    def __repr__(self):
        return f"RunningAverage(avg={self.avg:.6g}, count={self.count})"


AverageMeter = RunningAverage


def evaluate(model, loader, loss_fn=None, topk: int = 5) -> dict:
    """Run ``model`` over ``loader`` in eval mode, without gradients, and measure it.

    Returns a dict: ``loss`` (the mean of ``loss_fn`` over the batches weighted by batch size,
    i.e. the mean per sample for a loss that averages over its batch), ``num_samples``, and for
    classification (integer targets, (N, C) outputs) also ``accuracy``, ``top5`` (top-``topk``
    accuracy; None when there are fewer than ``topk`` classes), ``confusion_matrix`` ((C, C)
    int64) and ``per_class_accuracy`` ((C,) float64). ``loss_fn``: default ``F.cross_entropy``;
    ``False`` skips the loss (``loss`` is then None). The model's previous train/eval mode is
    restored afterwards, also when an error is raised."""
    if loss_fn is None:
        from ..nn import functional as F
        loss_fn = F.cross_entropy
    was_training = model.training
    loss_meter = RunningAverage()
    n_total = 0
    topk_hits = 0
    cm = None
    classification = None
    num_classes = None
    model.eval()
    try:
        with no_grad():
            for batch in loader:
                x, y = batch[0], batch[1]
                out = model(x)
                n = int(_np(out).shape[0]) if _np(out).ndim else 1
                if loss_fn is not False:
                    loss_meter.update(float(_np(loss_fn(out, y))), n)
                n_total += n
                if classification is None:
                    classification = is_classification(out, y)
                    num_classes = _np(out).shape[1] if classification else None
                if classification:
                    o, t = _np(out), _labels(y, n)
                    batch_cm = confusion_matrix(t, o.argmax(axis=1), num_classes)
                    cm = batch_cm if cm is None else cm + batch_cm
                    if num_classes >= topk:
                        topk_hits += _topk_correct(o, t, topk)
    finally:
        model.train(was_training)
    if n_total == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    result = {"loss": loss_meter.avg if loss_fn is not False else None, "num_samples": n_total}
    if classification:
        correct = int(xp.trace(cm))
        result.update(accuracy=correct / n_total,
                      **{f"top{topk}": (topk_hits / n_total) if num_classes >= topk else None},
                      confusion_matrix=cm, per_class_accuracy=per_class_accuracy(cm),
                      num_classes=num_classes)
    else:
        result.update({f"top{topk}": None}, accuracy=None, confusion_matrix=None, per_class_accuracy=None,
                      num_classes=None)
    return result
