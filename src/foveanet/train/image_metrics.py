"""Metrics for networks that output images: reconstruction quality (PSNR, SSIM), segmentation
scores from a confusion matrix (pixel accuracy, IoU, Dice) and a Fréchet distance between feature
sets (for generated images).

Arrays in (NumPy arrays, foveanet or torch tensors), Python floats out; per-class values are
float64 NumPy arrays. Images are laid out as the networks give them: (N, C, H, W), (N, H, W) grey
images, or a single (H, W) image.

* ``psnr`` and ``ssim`` are means of per-image values, so a batch's score is the average image's
  score, whatever the batch size (an epoch's PSNR of the pooled MSE, as
  ``tasks.ReconstructionMetrics`` reports it, weighs the images differently). A perfect
  reconstruction has PSNR ``inf`` (as scikit-image); ``max_db`` caps each image's value instead,
  so that one perfect image does not make the batch's mean ``inf``. SSIM is scikit-image's
  ``structural_similarity`` with its defaults (7x7 uniform window, sample covariances), per
  channel for (N, C, H, W); it needs the ``images`` extra (``pip install 'foveanet[images]'``).
* ``segmentation_scores`` reads a (C, C) confusion matrix (``confusion_from_predictions`` builds
  one; ``tasks.SegmentationMetrics`` accumulates one over an epoch, and its IoU is the one used
  here): the mean IoU and mean Dice run over the classes present in the truth or the prediction;
  an absent class has NaN.
* ``frechet_distance`` fits a Gaussian to each of two (n, d) feature sets and returns
  ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``. ``ClassifierFeatures`` takes the
  features from one of foveanet's own trained classifiers (by default the input of its last
  Linear layer) and ``FrechetScore`` names the result for what it is, for example
  ``"FID (cnn_bn features)"``: the FID of the literature uses Inception-v3's pool features on
  ImageNet-like images, and a value computed with another network (or other weights) is not
  comparable with it, nor with one computed with a different classifier.
"""
from __future__ import annotations

import math

from ..autograd import Tensor, no_grad
from ..backend import xp
from ..nn import Linear, Module
from .metrics import _np, confusion_matrix
from .tasks import SegmentationMetrics

__all__ = ["psnr", "ssim", "segmentation_scores", "confusion_from_predictions",
           "frechet_distance", "ClassifierFeatures", "feature_frechet", "FrechetScore"]

_EXTRA = "pip install 'foveanet[images]' (scikit-image and scipy)"


# ------------------------------------------------------------------------------------ helpers
def _numeric(x, what):
    a = _np(x)
    if not (xp.issubdtype(a.dtype, xp.number) or a.dtype == xp.bool_):
        raise TypeError(f"{what} must be numeric, got dtype {a.dtype}")
    return a


def _positive(value, name, fn):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: {name} must be a number, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{fn}: {name} must be a finite number > 0, got {value!r}")
    return v


def _image_batch(output, target, fn):
    """Both as float64 (N, C, H, W) or (N, H, W), of the same shape, and whether they have a
    channel axis. A single (H, W) image becomes a batch of one."""
    o = _numeric(output, f"{fn}: output").astype(xp.float64, copy=False)
    t = _numeric(target, f"{fn}: target").astype(xp.float64, copy=False)
    if o.shape != t.shape:
        raise ValueError(f"{fn}: output shape {tuple(o.shape)} and target shape "
                         f"{tuple(t.shape)} differ")
    if o.ndim not in (2, 3, 4):
        raise ValueError(f"{fn}: expected images (N, C, H, W), (N, H, W) or one (H, W) image, got "
                         f"shape {tuple(o.shape)}")
    if o.ndim == 2:
        o, t = o[None], t[None]
    if o.size == 0:
        raise ValueError(f"{fn}: no pixels to compare (shape {tuple(o.shape)})")
    return o, t, o.ndim == 4


# ------------------------------------------------------------------------------- PSNR / SSIM
def psnr(output, target, data_range: float = 1.0, max_db: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB, the mean over the batch of each image's
    ``10 log10(data_range^2 / MSE)`` (its MSE over all its channels and pixels).

    ``data_range``: the span of the pixel values (1 for images in [0, 1], 255 for bytes). An
    image reproduced exactly has MSE 0 and PSNR ``inf``, and so has then the mean (as
    scikit-image's ``peak_signal_noise_ratio``); ``max_db`` (say 100) caps each image's value
    first, for a finite mean."""
    fn = "psnr"
    o, t, _ = _image_batch(output, target, fn)
    peak = _positive(data_range, "data_range", fn) ** 2
    err = (o - t).reshape(o.shape[0], -1)
    mse = (err * err).mean(axis=1)
    with xp.errstate(divide="ignore"):
        per_image = 10.0 * xp.log10(peak / mse)
    if max_db is not None:
        per_image = xp.minimum(per_image, float(max_db))
    return float(per_image.mean())


def ssim(output, target, data_range: float = 1.0, win_size: int | None = None) -> float:
    """Structural similarity, the mean over the batch of scikit-image's
    ``structural_similarity`` of each image (its defaults: a 7x7 uniform window, sample
    covariances; for (N, C, H, W) images the mean over the channels, ``channel_axis=0`` per
    image). 1 for identical images. ``win_size`` (odd, >= 3) must fit in the image: 28x28 MNIST
    digits take the default, smaller images need a smaller window. Needs scikit-image (the
    ``images`` extra)."""
    fn = "ssim"
    try:
        from skimage.metrics import structural_similarity
    except ImportError as exc:
        raise ImportError(f"{fn} needs scikit-image: {_EXTRA}") from exc
    o, t, channels = _image_batch(output, target, fn)
    span = _positive(data_range, "data_range", fn)
    h, w = o.shape[-2:]
    size = 7 if win_size is None else int(win_size)
    if size < 3 or size % 2 == 0:
        raise ValueError(f"{fn}: win_size must be odd and >= 3, got {win_size}")
    if min(h, w) < size:
        raise ValueError(f"{fn}: the images are {h}x{w} pixels, smaller than the {size}x{size} "
                         f"window; pass an odd win_size of at most {min(h, w)}"
                         if min(h, w) >= 3 else
                         f"{fn}: the images are {h}x{w} pixels; SSIM needs at least 3x3")
    values = [structural_similarity(o[i], t[i], data_range=span, win_size=size,
                                    channel_axis=0 if channels else None)
              for i in range(o.shape[0])]
    return float(xp.mean(values))


# ------------------------------------------------------------------------------ segmentation
def _labels_of(x, what):
    a = _np(x)
    if a.dtype == xp.bool_:
        a = a.astype(xp.int64)
    if not xp.issubdtype(a.dtype, xp.integer):
        raise TypeError(f"{what} must be integer class labels, got dtype {a.dtype}")
    return a.astype(xp.int64, copy=False)


def confusion_from_predictions(pred, target, num_classes: int, ignore_index: int = -100):
    """The (C, C) int64 confusion matrix of a segmentation: entry [i, j] counts the pixels of
    true class i predicted as j. ``pred``: labels of ``target``'s shape ((N, H, W), or any
    shape), or scores (N, C, H, W) whose argmax over axis 1 is the label. Pixels whose target is
    ``ignore_index`` are left out (whatever their prediction)."""
    fn = "confusion_from_predictions"
    c = int(num_classes)
    if c < 1:
        raise ValueError(f"{fn}: num_classes must be >= 1, got {num_classes}")
    t = _labels_of(target, f"{fn}: target")
    p = _np(pred)
    if p.ndim == t.ndim + 1 and p.shape[:1] + p.shape[2:] == t.shape:  # scores (N, C, ...)
        if p.shape[1] != c:
            raise ValueError(f"{fn}: scores of shape {tuple(p.shape)} have {p.shape[1]} classes, "
                             f"num_classes is {c}")
        p = p.argmax(axis=1)
    p = _labels_of(p, f"{fn}: pred")
    if p.shape != t.shape:
        raise ValueError(f"{fn}: pred shape {tuple(p.shape)} does not match target shape "
                         f"{tuple(t.shape)} (labels of the target's shape, or scores (N, C, ...))")
    keep = t != int(ignore_index)
    p, t = p[keep], t[keep]
    for what, a in (("target", t), ("pred", p)):
        if a.size and (a.min() < 0 or a.max() >= c):
            bad = int(a[(a < 0) | (a >= c)][0])
            raise ValueError(f"{fn}: {what} label {bad} is out of range for {c} classes (valid: "
                             f"0 to {c - 1}" + (f", or ignore_index={ignore_index} in the target)"
                                                if what == "target" else ")"))
    return confusion_matrix(t, p, c)


def segmentation_scores(confusion) -> dict:
    """Scores of a (C, C) confusion matrix (rows: true class, columns: predicted):

    * ``pixel_accuracy``: correct pixels / counted pixels;
    * ``per_class_iou``: TP / (TP + FP + FN) per class, NaN for a class absent from both the truth
      and the prediction (no pixel of it, none predicted);
    * ``per_class_dice``: 2 TP / (2 TP + FP + FN) = 2 IoU / (1 + IoU), NaN where IoU is;
    * ``mean_iou``, ``mean_dice``: their means over the classes present (not NaN); NaN when
      none is.

    These are the epoch's scores when the matrix is an epoch's (``SegmentationMetrics``'s): the
    Dice here pools every pixel, where ``F.dice_loss`` averages per-image Dice."""
    fn = "segmentation_scores"
    cm = _numeric(confusion, f"{fn}: confusion")
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"{fn}: the confusion matrix must be square (C, C), got shape "
                         f"{tuple(cm.shape)}")
    if not xp.issubdtype(cm.dtype, xp.integer):
        if not (xp.isfinite(cm).all() and (cm == xp.round(cm)).all()):
            raise ValueError(f"{fn}: the confusion matrix must hold whole counts")
    if cm.size and cm.min() < 0:
        raise ValueError(f"{fn}: the confusion matrix holds a negative count ({cm.min()})")
    metric = SegmentationMetrics()  # the project's one IoU: reuse its arithmetic
    metric.matrix, metric.count = cm.astype(xp.int64), 1
    res = metric.results()
    iou = res["per_class_iou"]
    dice = 2.0 * iou / (1.0 + iou)
    present = ~xp.isnan(dice)
    return {"pixel_accuracy": float(res["pixel_accuracy"]), "mean_iou": float(res["mean_iou"]),
            "mean_dice": float(dice[present].mean()) if present.any() else math.nan,
            "per_class_iou": iou, "per_class_dice": dice}


# --------------------------------------------------------------------------- Fréchet distance
def _gaussian(feats, name, fn):
    a = _numeric(feats, f"{fn}: {name}").astype(xp.float64, copy=False)
    if a.ndim != 2:
        raise ValueError(f"{fn}: {name} must be (n, d) features, one row per sample, got shape "
                         f"{tuple(a.shape)}")
    if a.shape[0] < 2:
        raise ValueError(f"{fn}: {name} has {a.shape[0]} sample(s); a covariance needs at least 2")
    if not xp.isfinite(a).all():
        raise ValueError(f"{fn}: {name} holds non-finite values")
    mu = a.mean(axis=0)
    centred = a - mu
    return mu, centred.T @ centred / (a.shape[0] - 1)  # unbiased, as numpy.cov


def _psd_sqrt(s):
    """The symmetric square root of a symmetric positive semi-definite matrix (its eigenvalues,
    negative only by rounding, clipped at 0)."""
    vals, vecs = xp.linalg.eigh(s)
    return (vecs * xp.sqrt(xp.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(feats_a, feats_b) -> float:
    """The Fréchet (2-Wasserstein) distance between the Gaussians fitted to two feature sets
    (n_a, d) and (n_b, d): ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, with the
    unbiased covariances, in float64.

    The trace of the square root comes from an eigen-decomposition rather than a general matrix
    square root: S_a S_b has the eigenvalues of the symmetric positive semi-definite
    S_a^(1/2) S_b S_a^(1/2), so tr (S_a S_b)^(1/2) is the sum of the square roots of those
    (real, non-negative up to rounding, clipped at 0). No complex parts to discard and no
    epsilon to add on the diagonal, also for singular covariances (fewer samples than
    dimensions). The distance, >= 0 in exact arithmetic, is clipped at 0 too."""
    fn = "frechet_distance"
    mu_a, s_a = _gaussian(feats_a, "feats_a", fn)
    mu_b, s_b = _gaussian(feats_b, "feats_b", fn)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"{fn}: the feature sets have {mu_a.shape[0]} and {mu_b.shape[0]} "
                         f"dimensions")
    root = _psd_sqrt(s_a)
    middle = root @ s_b @ root
    middle = (middle + middle.T) / 2  # symmetric up to rounding: make it exactly so
    cross = float(xp.sqrt(xp.clip(xp.linalg.eigvalsh(middle), 0.0, None)).sum())
    diff = mu_a - mu_b
    value = float(diff @ diff) + float(xp.trace(s_a) + xp.trace(s_b)) - 2.0 * cross
    return max(value, 0.0)


class ClassifierFeatures:
    """Features of images from a trained foveanet classifier, for ``frechet_distance``.

    ``layer``: a name from ``model.named_modules()``, whose output is the feature (flattened to
    one row per image); by default the input of the model's last Linear layer, the penultimate
    features (256 values for ``cnn_bn``). A forward hook records them while the model runs in
    eval mode without gradients (its train/eval mode is restored afterwards). ``name`` names the
    model in ``FrechetScore``'s label (default: the model's class name; pass the registry's name,
    ``"cnn_bn"``)."""

    def __init__(self, model, layer: str | None = None, name: str | None = None):
        if not isinstance(model, Module):
            raise TypeError(f"ClassifierFeatures: model must be a foveanet nn.Module, got "
                            f"{type(model).__name__}")
        modules = dict(model.named_modules())
        if layer is None:
            linears = [n for n, m in modules.items() if isinstance(m, Linear)]
            if not linears:
                raise ValueError(f"ClassifierFeatures: the model has no Linear layer to take the "
                                 f"input of; name a layer: {', '.join(n for n in modules if n)}")
            self.layer, self.takes = linears[-1], "input"
        else:
            if not isinstance(layer, str) or not layer or layer not in modules:
                raise ValueError(f"ClassifierFeatures: the model has no layer {layer!r}; its "
                                 f"layers: {', '.join(n for n in modules if n)}")
            self.layer, self.takes = layer, "output"
        self.model, self.module = model, modules[self.layer]
        self.name = str(name) if name else type(model).__name__

    def __repr__(self):
        return (f"ClassifierFeatures({self.name}, the {self.takes} of {self.layer!r} "
                f"({type(self.module).__name__}))")

    def _images(self, images, batch_size):
        x = _numeric(images, "ClassifierFeatures: images")
        if x.ndim != 4:
            raise ValueError(f"ClassifierFeatures: images must be (N, C, H, W), got shape "
                             f"{tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError("ClassifierFeatures: no images (N = 0)")
        if int(batch_size) < 1:
            raise ValueError(f"ClassifierFeatures: batch_size must be >= 1, got {batch_size}")
        dtype = next((p.dtype for p in self.model.parameters()), xp.float32)
        return x.astype(dtype, copy=False)

    def _run(self, images, batch_size):
        """(features (N, d) float64, logits) over the images, batch by batch."""
        x = self._images(images, batch_size)
        step, caught, feats, logits = int(batch_size), [], [], []

        def hook(module, args, out):
            value = args[0] if self.takes == "input" else out
            if isinstance(value, (tuple, list)):
                value = value[0]
            caught.append(value.data if isinstance(value, Tensor) else xp.asarray(value))

        was_training = self.model.training
        handle = self.module.register_forward_hook(hook)
        self.model.eval()
        try:
            with no_grad():
                for start in range(0, x.shape[0], step):
                    chunk = x[start:start + step]
                    del caught[:]
                    out = self.model(Tensor(chunk))
                    if not caught:
                        raise RuntimeError(f"ClassifierFeatures: the layer {self.layer!r} did not "
                                           f"run in the model's forward")
                    feats.append(caught[-1].reshape(chunk.shape[0], -1).astype(xp.float64))
                    logits.append(out.data if isinstance(out, Tensor) else xp.asarray(out))
        finally:
            handle.remove()
            self.model.train(was_training)
        return xp.concatenate(feats), xp.concatenate(logits)

    def features(self, images, batch_size: int = 256):
        """(N, d) float64 features of (N, C, H, W) images."""
        return self._run(images, batch_size)[0]

    def predict(self, images, batch_size: int = 256):
        """(N,) int64 class indices, the argmax of the model's outputs."""
        logits = self._run(images, batch_size)[1]
        return logits.reshape(logits.shape[0], -1).argmax(axis=1).astype(xp.int64)


def feature_frechet(extractor: ClassifierFeatures, images_a, images_b,
                    batch_size: int = 256) -> float:
    """``frechet_distance`` between the extractor's features of two image sets (for example
    real test images and generated ones)."""
    return frechet_distance(extractor.features(images_a, batch_size),
                            extractor.features(images_b, batch_size))


class FrechetScore:
    """A Fréchet distance in one classifier's feature space, named for what it is.

    ``model``: the classifier's name (``"cnn_bn"``, a run's model) or a ``ClassifierFeatures``
    (its ``name``; it then also computes the score); ``extractor``: the features, with a name.
    ``name`` is ``"FID (cnn_bn features)"``, ``key`` (``"fid_cnn_bn"``) suits a metrics log and
    ``description`` says in a sentence that this is not the Inception-v3 FID of the literature.
    Label results with these, never as plain "FID". ``score(images_a, images_b)`` (or calling
    the object) computes it, given an extractor."""

    def __init__(self, model, extractor: ClassifierFeatures | None = None):
        if isinstance(model, ClassifierFeatures):
            extractor, model = (extractor or model), model.name
        if not isinstance(model, str) or not model.strip():
            raise TypeError(f"FrechetScore: model must be the classifier's name (a non-empty str) "
                            f"or a ClassifierFeatures, got {model!r}")
        if extractor is not None and not isinstance(extractor, ClassifierFeatures):
            raise TypeError(f"FrechetScore: extractor must be a ClassifierFeatures, got "
                            f"{type(extractor).__name__}")
        self.model_name, self.extractor = model.strip(), extractor

    @property
    def name(self) -> str:
        return f"FID ({self.model_name} features)"

    @property
    def key(self) -> str:
        safe = "".join(ch if ch.isalnum() else "_" for ch in self.model_name.lower()).strip("_")
        return f"fid_{safe}"

    @property
    def description(self) -> str:
        where = ("features" if self.extractor is None else
                 f"{self.extractor.takes} of layer {self.extractor.layer!r}")
        return (f"Fréchet distance between Gaussians fitted to the {where} of {self.model_name} "
                f"(a foveanet classifier), not the Inception-v3 FID: comparable only with values "
                f"from the same classifier and weights")

    def score(self, images_a, images_b, batch_size: int = 256) -> float:
        if self.extractor is None:
            raise ValueError(f"{self!r} has no extractor to compute with: "
                             f"FrechetScore({self.model_name!r}, extractor=ClassifierFeatures(model))")
        return feature_frechet(self.extractor, images_a, images_b, batch_size)

    __call__ = score

    def __repr__(self):
        return f"FrechetScore({self.name!r})"
