"""Loss functions as modules: ``criterion = nn.CrossEntropyLoss(); loss = criterion(output, target)``.

``reduction``: ``'mean'`` (the default), ``'sum'`` or ``'none'`` (one loss per element/sample).
Class weights are registered as buffers (``weight``, ``pos_weight``), as in PyTorch. None has
parameters."""
from __future__ import annotations

from ...autograd import Tensor
from ...backend import get_default_dtype, xp
from .. import functional as F
from ..module import Module
from ._util import check_probability, check_reduction, shape_str


def _as_weight(owner, name, w):
    if w is None:
        return None
    t = w if isinstance(w, Tensor) else Tensor(xp.asarray(w, dtype=get_default_dtype()))
    if t.ndim != 1:
        raise ValueError(f"{owner}: {name} must be a 1-D tensor (one value per class), got shape "
                         f"{shape_str(t.shape)}")
    return t.detach()


def _as_tensor(w):
    if w is None:
        return None
    return (w if isinstance(w, Tensor) else Tensor(xp.asarray(w, dtype=get_default_dtype()))).detach()


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = check_reduction(type(self).__name__, reduction)


class MSELoss(_Loss):
    """Mean squared error: mean over elements of (input - target)^2 (``reduction='sum'``: the sum).

    A target of a different but broadcastable shape warns, as in PyTorch: (N, 1) against (N,)
    would compare every output with every target."""

    def forward(self, input, target):  # noqa: A002
        return F.mse_loss(input, target, reduction=self.reduction)


class SumSquaredErrorLoss(_Loss):
    """The lecture's error E = 1/2 sum (y - d)^2 over all elements (output y, desired output d);
    its gradient with respect to y is simply y - d."""

    def __init__(self):
        super().__init__("sum")

    def forward(self, input, target):  # noqa: A002
        return F.sum_squared_error(input, target)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy from raw scores (logits): -log softmax(input)[target], averaged.

    input (N, C) (or (C,), or (N, C, d1, ...)); target class indices (N,) int64, or class
    probabilities shaped like input. ``weight`` (C,) rescales each class; targets equal to
    ``ignore_index`` contribute nothing; ``label_smoothing`` mixes the target with the uniform
    distribution."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__(reduction)
        self.register_buffer("weight", _as_weight("CrossEntropyLoss", "weight", weight))
        self.ignore_index = ignore_index
        self.label_smoothing = check_probability("CrossEntropyLoss", "label_smoothing", label_smoothing)

    def forward(self, input, target):  # noqa: A002
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_Loss):
    """Negative log-likelihood: -input[target] for input already holding log-probabilities
    (``LogSoftmax`` output). ``CrossEntropyLoss`` = ``LogSoftmax(dim=1)`` + ``NLLLoss``."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(reduction)
        self.register_buffer("weight", _as_weight("NLLLoss", "weight", weight))
        self.ignore_index = ignore_index

    def forward(self, input, target):  # noqa: A002
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class BCELoss(_Loss):
    """Binary cross-entropy on probabilities p in [0, 1] (``Sigmoid`` output):
    -w (d log p + (1 - d) log(1 - p)). Prefer ``BCEWithLogitsLoss`` on raw scores."""

    def __init__(self, weight=None, reduction: str = "mean"):
        super().__init__(reduction)
        self.register_buffer("weight", _as_tensor(weight))

    def forward(self, input, target):  # noqa: A002
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on raw scores z, computed stably from z (no separate sigmoid):
    -w (pos_weight d log sigmoid(z) + (1 - d) log(1 - sigmoid(z))). ``pos_weight`` (one per
    class, broadcast along the last dimension) trades recall against precision."""

    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None):
        super().__init__(reduction)
        self.register_buffer("weight", _as_tensor(weight))
        self.register_buffer("pos_weight", _as_tensor(pos_weight))

    def forward(self, input, target):  # noqa: A002
        return F.binary_cross_entropy_with_logits(input, target, weight=self.weight,
                                                  reduction=self.reduction, pos_weight=self.pos_weight)


class DiceLoss(_Loss):
    """Soft Dice loss for segmentation (``F.dice_loss``): 1 - the mean over classes of each
    image's Dice (2 sum p t + smooth) / (sum p + sum t + smooth), p = softmax(input) over the
    classes and t the one-hot target, summed over that image's pixels; averaged over the images.

    input (N, C, H, W) logits and target (N, H, W) class indices; a (N, 1, H, W) input is binary
    (sigmoid, 0/1 targets). ``weight`` (C,) weighs the classes' Dice; pixels labelled
    ``ignore_index`` count nowhere; ``smooth`` keeps classes absent from an image near Dice 1;
    ``from_logits=False``: the input already holds probabilities.
    Often added to ``CrossEntropyLoss``, whose per-pixel gradient it complements."""

    def __init__(self, weight=None, ignore_index: int = -100, smooth: float = 1.0,
                 reduction: str = "mean", from_logits: bool = True):
        super().__init__(reduction)
        self.register_buffer("weight", _as_weight("DiceLoss", "weight", weight))
        self.from_logits = bool(from_logits)
        self.ignore_index = ignore_index
        smooth = float(smooth)
        if not 0 <= smooth < float("inf"):
            raise ValueError(f"DiceLoss: smooth must be a finite number >= 0, got {smooth}")
        self.smooth = smooth

    def forward(self, input, target):  # noqa: A002
        return F.dice_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                           smooth=self.smooth, reduction=self.reduction,
                           from_logits=self.from_logits)
