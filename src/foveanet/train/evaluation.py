"""Evaluating a trained model on a test set: every output kept, then the metrics.

``predict_loader(model, loader)`` runs the model over the loader once (eval mode, no gradients)
and keeps the logits, the labels, the mean loss and the first misclassified inputs (for the
report's picture grid); ``compute_test_metrics(pred, classes)`` turns that into the JSON-able
metrics ``foveanet train`` writes to results.json and ``foveanet evaluate`` prints: loss,
accuracy, top-5 accuracy, the confusion matrix (rows: true class, columns: predicted class), the
per-class accuracy and the class counts.

Test-time augmentation (``tta="flip"``, ``foveanet train --tta flip``): each image is scored as
the mean of its softmax and its mirror image's (flipped left to right), and that mean's log is
kept as the logits, so the loss is the cross-entropy of the averaged probabilities.
"""
from __future__ import annotations

import math

from ..autograd import Tensor, no_grad
from ..backend import xp
from ..data import DatasetError
from ..nn import functional as F
from .metrics import confusion_matrix, per_class_accuracy, topk_accuracy

__all__ = ["predict_loader", "compute_test_metrics", "TTA_MODES"]

TTA_MODES = ("none", "flip")


def _flip_average(model, x):
    """(log of the mean of the softmax of ``x`` and of ``x`` mirrored along its last axis, the
    model's plain output for ``x``)."""
    plain = model(x)
    a = F.softmax(plain, dim=1).data
    b = F.softmax(model(Tensor._wrap(xp.ascontiguousarray(x.data[..., ::-1]))), dim=1).data
    mean = xp.log(xp.maximum((a + b) * a.dtype.type(0.5), xp.finfo(a.dtype).tiny))
    return Tensor._wrap(mean), plain


def predict_loader(model, loader, keep_misclassified: int = 36, keep_inputs: bool = False,
                   tta: str = "none") -> dict:
    """Run ``model`` over ``loader`` (eval mode, no gradients; the mode is restored after).
    Returns a dict: ``logits`` (N, C) float32, ``labels`` (N,), ``loss`` (the mean of the model's
    ``loss_fn``, else cross-entropy), the first ``keep_misclassified`` misclassified
    ``mis_images`` / ``mis_labels`` / ``mis_preds`` (None when there are none), and every input as
    ``inputs`` when ``keep_inputs`` (else None). DatasetError when the loader gives no batch.
    ``tta="flip"``: the logits are the log of the mean softmax of each image and its mirror image
    (images only: ValueError for inputs with fewer than 3 dimensions), and ``plain`` holds the
    same pass's scores without it (``logits``, ``labels``, ``loss``); None without TTA."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")
    was = model.training
    model.eval()
    logits, labels, inputs = [], [], []
    mis_x, mis_y, mis_p = [], [], []
    loss_sum, n = 0.0, 0
    plain_logits, plain_loss = [], 0.0
    loss_fn = getattr(model, "loss_fn", None) or F.cross_entropy
    kept = 0
    try:
        with no_grad():
            for x, y in loader:
                if tta == "flip" and x.ndim < 3:
                    raise ValueError(f"tta='flip' mirrors images (N, C, H, W); the inputs have "
                                     f"shape {tuple(x.shape)}")
                if tta == "flip":
                    out, plain = _flip_average(model, x)
                    plain_logits.append(plain.data)
                    plain_loss += float(loss_fn(plain, y).data) * int(out.shape[0])
                else:
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
        raise DatasetError("the test set is empty")
    res = {"logits": xp.concatenate(logits), "labels": xp.concatenate(labels), "loss": loss_sum / n}
    res["plain"] = {"logits": xp.concatenate(plain_logits), "labels": res["labels"],
                    "loss": plain_loss / n} if plain_logits else None
    res["mis_images"] = xp.concatenate(mis_x) if mis_x else None
    res["mis_labels"] = xp.concatenate(mis_y) if mis_y else None
    res["mis_preds"] = xp.concatenate(mis_p) if mis_p else None
    res["inputs"] = xp.concatenate(inputs) if inputs else None
    return res


def compute_test_metrics(pred, classes) -> dict:
    """JSON-able test metrics from ``predict_loader``'s output: ``loss``, ``accuracy``, ``top5``
    (None with fewer than 5 classes), ``num_samples``, ``classes``, ``confusion_matrix``,
    ``per_class_accuracy`` (None for a class without samples) and ``class_counts``."""
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
