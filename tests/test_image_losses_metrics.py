"""Losses and metrics of networks that output images: per-pixel cross entropy and the soft Dice
loss (against PyTorch and by finite differences), PSNR / SSIM (against scikit-image and by hand),
segmentation scores from a confusion matrix, and the Fréchet distance in a foveanet classifier's
feature space (against closed forms)."""
import math
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import foveanet as fv
import foveanet.nn.functional as F
from foveanet.train import image_metrics as im
from foveanet.train.tasks import SegmentationMetrics
from helpers import check_against_torch, gradcheck

REDUCTIONS = ["mean", "sum", "none"]


def th(a):
    return None if a is None else torch.tensor(a)


def seg_case(seed, n=2, c=3, h=4, w=5, ignore=None, dtype=np.float32, scale=2.0):
    """Logits (n, c, h, w), targets (n, h, w) in 0..c-1 (0/1 when c == 1), some set to ``ignore``."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c, h, w)) * scale).astype(dtype)
    t = rng.integers(0, max(c, 2), (n, h, w)).astype(np.int64)
    if ignore is not None:
        t[rng.random((n, h, w)) < 0.25] = ignore
        t[0, 0, 0] = ignore
    return x, t


# -------------------------------------------------------------------- per-pixel cross entropy
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ignore_index", [-100, 255, 1])
def test_pixel_cross_entropy_vs_torch(dtype, reduction, ignore_index):
    x, t = seg_case(3, n=2, c=4, h=5, w=3, ignore=ignore_index if ignore_index != 1 else None,
                    dtype=dtype)
    w = np.array([0.5, 2.0, 1.0, 0.3], dtype=dtype)
    out, ref = check_against_torch(
        lambda a, tt: F.cross_entropy(a, tt, weight=w, ignore_index=ignore_index, reduction=reduction),
        lambda a, tt: TF.cross_entropy(a, tt, weight=th(w), ignore_index=ignore_index,
                                       reduction=reduction), [x, t])
    assert out[0].dtype == dtype
    assert out[0].shape == ((2, 5, 3) if reduction == "none" else ())
    if reduction == "none":  # ignored pixels: exactly 0
        assert np.all(out[0].detach().numpy()[t == ignore_index] == 0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_pixel_cross_entropy_gradcheck(reduction):
    x, t = seg_case(5, n=2, c=3, h=3, w=2, ignore=255, dtype=np.float64)
    w = np.array([1.5, 0.5, 1.0])
    gradcheck(lambda a: F.cross_entropy(a, fv.tensor(t), weight=w, ignore_index=255,
                                        reduction=reduction, label_smoothing=0.1), [x])


def test_cross_entropy_module_on_images_matches_functional():
    x, t = seg_case(6, ignore=255)
    loss = fv.nn.CrossEntropyLoss(weight=[1.0, 2.0, 0.5], ignore_index=255)(fv.tensor(x), fv.tensor(t))
    ref = TF.cross_entropy(torch.tensor(x), torch.tensor(t), weight=torch.tensor([1.0, 2.0, 0.5]),
                           ignore_index=255)
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-6)


# -------------------------------------------------------------------------------- Dice loss
def torch_dice(x, t, weight=None, ignore_index=-100, smooth=1.0, reduction="mean", from_logits=True):
    """The same formula, written once more in PyTorch: per image and class, then 1 - the mean."""
    c = x.shape[1]
    valid = t != ignore_index
    ts = torch.where(valid, t, torch.zeros_like(t))
    if c == 1:
        p = torch.sigmoid(x) if from_logits else x
        onehot = (ts == 1).unsqueeze(1).to(x.dtype)
    else:
        p = torch.softmax(x, 1) if from_logits else x
        onehot = TF.one_hot(ts, c).movedim(-1, 1).to(x.dtype)
    m = valid.unsqueeze(1).to(x.dtype)
    p, onehot = p * m, onehot * m
    dims = tuple(range(2, x.ndim))
    dice = (2 * (p * onehot).sum(dims) + smooth) / (p.sum(dims) + onehot.sum(dims) + smooth)
    if weight is None:
        per = 1 - dice.mean(1)
    else:
        w = torch.as_tensor(weight, dtype=x.dtype)
        per = 1 - (dice * w).sum(1) / w.sum()
    return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]


DICE_CASES = [  # (classes, weighted, ignore_index or None, smooth)
    (3, False, None, 1.0), (3, True, 255, 1.0), (4, False, -100, 0.5), (4, True, None, 0.0),
    (1, False, None, 1.0), (1, False, 255, 1.0), (2, True, -100, 1.0),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("c,weighted,ignore,smooth", DICE_CASES)
def test_dice_loss_vs_torch(dtype, reduction, c, weighted, ignore, smooth):
    x, t = seg_case(10 + c, n=3, c=c, h=4, w=5, ignore=ignore, dtype=dtype)
    w = np.linspace(0.5, 2.0, c).astype(dtype) if weighted else None
    ii = -100 if ignore is None else ignore
    out, _ = check_against_torch(
        lambda a, tt: F.dice_loss(a, tt, weight=w, ignore_index=ii, smooth=smooth, reduction=reduction),
        lambda a, tt: torch_dice(a, tt, w, ii, smooth, reduction), [x, t])
    assert out[0].dtype == dtype
    assert out[0].shape == ((3,) if reduction == "none" else ())


@pytest.mark.parametrize("c", [1, 3])
def test_dice_loss_from_probabilities_vs_torch(c):
    x, t = seg_case(21, n=2, c=c, ignore=255, dtype=np.float64)
    p = 1 / (1 + np.exp(-x)) if c == 1 else np.exp(x) / np.exp(x).sum(1, keepdims=True)
    check_against_torch(
        lambda a, tt: F.dice_loss(a, tt, ignore_index=255, from_logits=False),
        lambda a, tt: torch_dice(a, tt, ignore_index=255, from_logits=False), [p, t])
    # the same loss as from the logits
    a = F.dice_loss(fv.tensor(p), fv.tensor(t), ignore_index=255, from_logits=False).item()
    b = F.dice_loss(fv.tensor(x), fv.tensor(t), ignore_index=255).item()
    np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("c,weighted,ignore,smooth", DICE_CASES)
def test_dice_loss_gradcheck(c, weighted, ignore, smooth):
    x, t = seg_case(30 + c, n=2, c=c, h=3, w=3, ignore=ignore, dtype=np.float64)
    w = np.linspace(0.5, 2.0, c) if weighted else None
    ii = -100 if ignore is None else ignore
    gradcheck(lambda a: F.dice_loss(a, fv.tensor(t), weight=w, ignore_index=ii, smooth=smooth,
                                    reduction="none"), [x])
    gradcheck(lambda a: F.dice_loss(a, fv.tensor(t), weight=w, ignore_index=ii, smooth=smooth), [x])


def test_dice_loss_hand_values():
    # binary probabilities: image 0 predicts [1, 0 | 0.5, 0.5] for truth [1, 0 | 1, 0]:
    # 2 * (1 + 0.5) / (2 + 2) = 0.75, so its loss is 0.25 (smooth 0); image 1 is perfect
    p = np.array([[[[1.0, 0.0], [0.5, 0.5]]], [[[1.0, 0.0], [0.0, 0.0]]]])
    t = np.array([[[1, 0], [1, 0]], [[1, 0], [0, 0]]])
    per = F.dice_loss(fv.tensor(p), fv.tensor(t), smooth=0.0, reduction="none", from_logits=False)
    np.testing.assert_allclose(per.numpy(), [0.25, 0.0], atol=1e-15)
    # bool targets are 0/1 too
    loss = F.dice_loss(fv.tensor(p), fv.tensor(t.astype(bool)), smooth=0.0, from_logits=False)
    np.testing.assert_allclose(loss.item(), 0.125)
    # a confident, correct multi-class prediction: loss near 0; a confidently wrong one: near 1
    _, t3 = seg_case(0, n=2, c=3)
    good = np.moveaxis(np.eye(3)[t3], -1, 1) * 40.0
    assert F.dice_loss(fv.tensor(good), fv.tensor(t3), smooth=0.0).item() < 1e-12
    bad = np.moveaxis(np.eye(3)[(t3 + 1) % 3], -1, 1) * 40.0
    assert F.dice_loss(fv.tensor(bad), fv.tensor(t3), smooth=0.0).item() > 1 - 1e-12
    # class weights: a weighted mean of the classes' Dice
    x, t = seg_case(2, n=1, c=3, dtype=np.float64)
    per_class = [1 - F.dice_loss(fv.tensor(x), fv.tensor(t), weight=np.eye(3)[k]).item() for k in range(3)]
    w = np.array([1.0, 2.0, 5.0])
    np.testing.assert_allclose(F.dice_loss(fv.tensor(x), fv.tensor(t), weight=w).item(),
                               1 - np.dot(w, per_class) / w.sum(), rtol=1e-12)


def test_dice_loss_sums_per_image():
    # each image's loss is the loss of that image alone, whatever shares its batch
    x, t = seg_case(7, n=3, c=3, h=6, w=4, ignore=255, dtype=np.float64)
    per = F.dice_loss(fv.tensor(x), fv.tensor(t), ignore_index=255, reduction="none").numpy()
    alone = [F.dice_loss(fv.tensor(x[i:i + 1]), fv.tensor(t[i:i + 1]), ignore_index=255).item()
             for i in range(3)]
    np.testing.assert_allclose(per, alone, rtol=1e-12)
    np.testing.assert_allclose(F.dice_loss(fv.tensor(x), fv.tensor(t), ignore_index=255).item(),
                               np.mean(alone), rtol=1e-12)


def test_dice_loss_ignored_pixels_count_nowhere():
    x, t = seg_case(8, n=2, c=3, ignore=255, dtype=np.float64)
    changed = x.copy()
    changed[np.broadcast_to((t == 255)[:, None], x.shape)] = 17.0
    a = fv.tensor(changed, requires_grad=True)
    loss = F.dice_loss(a, fv.tensor(t), ignore_index=255)
    loss.backward()
    np.testing.assert_allclose(loss.item(), F.dice_loss(fv.tensor(x), fv.tensor(t),
                                                        ignore_index=255).item(), rtol=1e-12)
    ignored = np.broadcast_to((t == 255)[:, None], x.shape)
    assert np.all(a.grad.numpy()[ignored] == 0) and np.any(a.grad.numpy()[~ignored] != 0)
    # every pixel ignored: every class scores smooth / smooth = 1, loss 0; with smooth 0, nan
    t_all = np.full_like(t, 255)
    assert F.dice_loss(fv.tensor(x), fv.tensor(t_all), ignore_index=255).item() == 0.0
    with np.errstate(invalid="ignore"):
        assert math.isnan(F.dice_loss(fv.tensor(x), fv.tensor(t_all), ignore_index=255, smooth=0.0).item())


def test_dice_loss_empty_batch():
    x = fv.tensor(np.zeros((0, 3, 4, 4), dtype=np.float32), requires_grad=True)
    t = fv.tensor(np.zeros((0, 4, 4), dtype=np.int64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert F.dice_loss(x, t, reduction="none").shape == (0,)
        assert F.dice_loss(x, t, reduction="sum").item() == 0.0
        loss = F.dice_loss(x, t)
        assert math.isnan(loss.item())
        loss.backward()
    assert x.grad.shape == (0, 3, 4, 4)


def test_dice_loss_module():
    x, t = seg_case(9, c=3, ignore=255)
    crit = fv.nn.DiceLoss(weight=[1.0, 2.0, 3.0], ignore_index=255, smooth=0.5, reduction="sum")
    ref = torch_dice(torch.tensor(x), torch.tensor(t), [1.0, 2.0, 3.0], 255, 0.5, "sum")
    np.testing.assert_allclose(crit(fv.tensor(x), fv.tensor(t)).item(), ref.item(), rtol=1e-5)
    assert "weight" in crit.state_dict() and not list(crit.parameters())
    probs = fv.nn.DiceLoss(from_logits=False)
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    t0 = np.where(t == 255, 0, t)
    np.testing.assert_allclose(probs(fv.tensor(p), fv.tensor(t0)).item(),
                               fv.nn.DiceLoss()(fv.tensor(x), fv.tensor(t0)).item(), rtol=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        fv.nn.DiceLoss(reduction="avg")
    with pytest.raises(ValueError, match="smooth"):
        fv.nn.DiceLoss(smooth=-1)
    with pytest.raises(ValueError, match="1-D"):
        fv.nn.DiceLoss(weight=[[1.0, 2.0]])


def test_dice_loss_errors():
    x, t = seg_case(1, n=2, c=3, h=4, w=5)
    xt = fv.tensor(x)
    with pytest.raises(ValueError, match=r"target shape \(2, 5, 4\) does not fit input shape \(2, 3, 4, 5\)"):
        F.dice_loss(xt, fv.tensor(t.transpose(0, 2, 1)))
    with pytest.raises(ValueError, match="out of range for 3 classes"):
        F.dice_loss(xt, fv.tensor(np.where(t == 0, 3, t)))
    with pytest.raises(ValueError, match="binary input .* 0/1 targets, got the value 2"):
        F.dice_loss(fv.tensor(x[:, :1]), fv.tensor(np.full_like(t, 2)))
    with pytest.raises(TypeError, match="integers"):
        F.dice_loss(xt, fv.tensor(t.astype(np.float32)))
    with pytest.raises(TypeError, match="floating point"):
        F.dice_loss(fv.tensor(t[:, None]), fv.tensor(t))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*got shape \(2, 3\)"):
        F.dice_loss(fv.tensor(x[:, :, 0, 0]), fv.tensor(t[:, 0, 0]))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        F.dice_loss(xt, fv.tensor(t), weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="non-negative with a positive sum"):
        F.dice_loss(xt, fv.tensor(t), weight=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="smooth"):
        F.dice_loss(xt, fv.tensor(t), smooth=float("nan"))
    with pytest.raises(ValueError, match="reduction"):
        F.dice_loss(xt, fv.tensor(t), reduction="avg")
    with pytest.raises(ValueError, match=r"from_logits=False .* \[0, 1\]"):
        F.dice_loss(xt, fv.tensor(t), from_logits=False)


# ---------------------------------------------------------------------------------- PSNR, SSIM
def images(seed, shape, noise=0.1):
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    b = np.clip(a + noise * rng.standard_normal(shape), 0, 1)
    return a.astype(np.float32), b.astype(np.float32)


@pytest.mark.parametrize("shape", [(3, 2, 9, 8), (4, 10, 7), (12, 9)])
@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_psnr_vs_skimage(shape, data_range):
    from skimage.metrics import peak_signal_noise_ratio
    a, b = images(0, shape)
    a, b = a * data_range, b * data_range
    batch = (a[None], b[None]) if len(shape) == 2 else (a, b)
    ref = np.mean([peak_signal_noise_ratio(x.astype(np.float64), y.astype(np.float64),
                                           data_range=data_range) for x, y in zip(*batch)])
    got = im.psnr(b, a, data_range=data_range)
    assert isinstance(got, float)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_psnr_hand_values_and_inf():
    a = np.zeros((2, 1, 4, 4))
    b = a.copy()
    b[0] += 0.1  # MSE 0.01: 20 dB
    b[1] += 0.01  # MSE 1e-4: 40 dB
    np.testing.assert_allclose(im.psnr(b, a), 30.0)  # the mean of the images' values
    assert im.psnr(a, a) == math.inf
    b[1] = 0.0  # one perfect image: the mean is inf, unless each image is capped
    assert im.psnr(b, a) == math.inf
    np.testing.assert_allclose(im.psnr(b, a, max_db=100.0), 60.0)
    with pytest.raises(ValueError, match=r"output shape \(2, 1, 4, 4\) and target shape \(2, 4, 4\)"):
        im.psnr(b, a[:, 0])
    with pytest.raises(ValueError, match="data_range"):
        im.psnr(b, a, data_range=0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), \(N, H, W\) or one \(H, W\)"):
        im.psnr(a[0, 0, 0], a[0, 0, 0])


@pytest.mark.parametrize("shape", [(3, 3, 12, 10), (3, 11, 9), (16, 16)])
def test_ssim_vs_skimage(shape):
    from skimage.metrics import structural_similarity
    a, b = images(1, shape, noise=0.2)
    pairs = [(a, b)] if len(shape) == 2 else list(zip(a, b))
    ref = np.mean([structural_similarity(x.astype(np.float64), y.astype(np.float64), data_range=1.0,
                                         channel_axis=0 if len(shape) == 4 else None)
                   for x, y in pairs])
    got = im.ssim(b, a)
    assert isinstance(got, float) and 0 < got < 1
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_ssim_identical_channels_and_window():
    a, b = images(2, (2, 3, 10, 10), noise=0.3)
    assert im.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    # (N, C, H, W): the mean over the channels of each channel's grey SSIM
    per_channel = np.mean([im.ssim(b[:, k], a[:, k]) for k in range(3)])
    np.testing.assert_allclose(im.ssim(b, a), per_channel, rtol=1e-10)
    # one channel: the same as grey images
    np.testing.assert_allclose(im.ssim(b[:, :1], a[:, :1]), im.ssim(b[:, 0], a[:, 0]), rtol=1e-12)
    with pytest.raises(ValueError, match="5x5 pixels, smaller than the 7x7 window; pass an odd win_size of at most 5"):
        im.ssim(a[..., :5, :5], b[..., :5, :5])
    assert 0 < im.ssim(a[..., :5, :5], b[..., :5, :5], win_size=5) < 1
    with pytest.raises(ValueError, match="odd"):
        im.ssim(a, b, win_size=4)


def test_ssim_without_scikit_image_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.metrics", None)
    a, _ = images(3, (1, 8, 8))
    with pytest.raises(ImportError, match=r"foveanet\[images\]"):
        im.ssim(a, a)
    assert im.psnr(a, a * 0.5) > 0  # PSNR needs no scikit-image


# ------------------------------------------------------------------------- segmentation scores
def test_segmentation_scores_hand_case():
    cm = np.array([[3, 1, 0], [2, 4, 0], [0, 0, 0]])  # class 2: neither true nor predicted
    s = im.segmentation_scores(cm)
    assert s["pixel_accuracy"] == pytest.approx(7 / 10)
    np.testing.assert_allclose(s["per_class_iou"][:2], [3 / 6, 4 / 7])
    np.testing.assert_allclose(s["per_class_dice"][:2], [6 / 9, 8 / 11])
    assert np.isnan(s["per_class_iou"][2]) and np.isnan(s["per_class_dice"][2])
    assert s["mean_iou"] == pytest.approx((3 / 6 + 4 / 7) / 2)
    assert s["mean_dice"] == pytest.approx((6 / 9 + 8 / 11) / 2)
    assert all(isinstance(s[k], float) for k in ("pixel_accuracy", "mean_iou", "mean_dice"))
    # a class that is predicted but never true counts (IoU 0), as SegmentationMetrics
    s = im.segmentation_scores(np.array([[2, 2], [0, 0]]))
    np.testing.assert_allclose(s["per_class_iou"], [0.5, 0.0])
    empty = im.segmentation_scores(np.zeros((2, 2), dtype=np.int64))
    assert math.isnan(empty["pixel_accuracy"]) and math.isnan(empty["mean_iou"]) and math.isnan(empty["mean_dice"])


def test_segmentation_scores_errors():
    with pytest.raises(ValueError, match=r"square \(C, C\), got shape \(2, 3\)"):
        im.segmentation_scores(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="negative"):
        im.segmentation_scores(np.array([[1, -1], [0, 1]]))
    with pytest.raises(ValueError, match="whole counts"):
        im.segmentation_scores(np.array([[1.5, 0], [0, 1]]))
    np.testing.assert_allclose(im.segmentation_scores(np.array([[1.0, 0], [1, 2]]))["pixel_accuracy"], 0.75)


def test_confusion_from_predictions_agrees_with_segmentation_metrics():
    x, t = seg_case(4, n=3, c=4, h=6, w=5, ignore=255)
    metric = SegmentationMetrics(ignore_index=255)
    metric.update(x, t)
    cm = im.confusion_from_predictions(x, t, 4, ignore_index=255)  # from scores
    np.testing.assert_array_equal(cm, metric.matrix)
    np.testing.assert_array_equal(im.confusion_from_predictions(x.argmax(1), t, 4, 255), cm)
    assert cm.sum() == np.sum(t != 255) and cm.dtype == np.int64
    scores, ref = im.segmentation_scores(cm), metric.results()
    assert scores["pixel_accuracy"] == ref["pixel_accuracy"] and scores["mean_iou"] == ref["mean_iou"]
    # per-class Dice straight from the masks
    pred, keep = x.argmax(1), t != 255
    for k in range(4):
        p, g = (pred == k) & keep, (t == k) & keep
        if p.sum() + g.sum():
            np.testing.assert_allclose(scores["per_class_dice"][k], 2 * (p & g).sum() / (p.sum() + g.sum()))


def test_confusion_from_predictions_errors():
    t = np.array([[0, 1], [2, 255]])
    with pytest.raises(ValueError, match=r"pred shape \(2, 3\) does not match target shape \(2, 2\)"):
        im.confusion_from_predictions(np.zeros((2, 3), dtype=np.int64), t, 3, 255)
    with pytest.raises(ValueError, match="target label 255 is out of range for 3 classes"):
        im.confusion_from_predictions(np.zeros((2, 2), dtype=np.int64), t, 3)
    with pytest.raises(ValueError, match="pred label 3 is out of range"):
        im.confusion_from_predictions(np.full((2, 2), 3), t, 3, 255)
    with pytest.raises(TypeError, match="integer class labels"):
        im.confusion_from_predictions(np.zeros((2, 2)), t, 3, 255)
    with pytest.raises(ValueError, match="have 2 classes, num_classes is 3"):
        im.confusion_from_predictions(np.zeros((2, 2, 2)), t, 3, 255)


# ----------------------------------------------------------------------------- Fréchet distance
def exact_moments(rng, n, mean, cov):
    """n samples whose sample mean and (unbiased) sample covariance are exactly ``mean``, ``cov``."""
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return z @ np.linalg.cholesky(cov).T + mean


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    d = 5
    mu_a, mu_b = rng.standard_normal(d), rng.standard_normal(d)
    va, vb = rng.random(d) + 0.1, rng.random(d) + 0.1
    a = exact_moments(rng, 200, mu_a, np.diag(va))
    b = exact_moments(rng, 150, mu_b, np.diag(vb))
    # diagonal covariances: ||mu_a - mu_b||^2 + sum (sqrt(va) - sqrt(vb))^2
    expect = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(va) - np.sqrt(vb)) ** 2)
    np.testing.assert_allclose(im.frechet_distance(a, b), expect, rtol=1e-9)
    np.testing.assert_allclose(im.frechet_distance(b, a), expect, rtol=1e-9)
    # a full covariance S and k S: ||dmu||^2 + (1 - sqrt(k))^2 tr S
    m = rng.standard_normal((d, d))
    s = m @ m.T + 0.1 * np.eye(d)
    a = exact_moments(rng, 300, mu_a, s)
    b = np.sqrt(3.0) * (a - a.mean(0)) + mu_b
    expect = np.sum((mu_a - mu_b) ** 2) + (1 - np.sqrt(3.0)) ** 2 * np.trace(s)
    np.testing.assert_allclose(im.frechet_distance(a, b), expect, rtol=1e-9)
    # a set against itself: 0; against a shifted copy: the squared shift
    assert abs(im.frechet_distance(a, a)) < 1e-9
    np.testing.assert_allclose(im.frechet_distance(a, a + 0.5), 0.25 * d, rtol=1e-9)


def test_frechet_distance_vs_scipy_sqrtm():
    from scipy import linalg
    rng = np.random.default_rng(1)
    a = rng.standard_normal((80, 6)) @ rng.standard_normal((6, 6))
    b = rng.standard_normal((60, 6)) @ rng.standard_normal((6, 6)) + 1.0
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(sa @ sb).real
    ref = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(sa + sb - 2 * covmean)
    got = im.frechet_distance(a, b)
    assert isinstance(got, float)
    np.testing.assert_allclose(got, ref, rtol=1e-8)
    # fewer samples than dimensions (singular covariances): finite, symmetric, >= 0
    a, b = rng.standard_normal((4, 10)), rng.standard_normal((5, 10)) + 0.3
    ab, ba = im.frechet_distance(a, b), im.frechet_distance(b, a)
    assert np.isfinite(ab) and ab > 0 and ab == pytest.approx(ba, rel=1e-8)
    assert im.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_errors():
    a = np.zeros((5, 3))
    with pytest.raises(ValueError, match="3 and 4 dimensions"):
        im.frechet_distance(a, np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"\(n, d\) features.*got shape \(5,\)"):
        im.frechet_distance(a[:, 0], a)
    with pytest.raises(ValueError, match="1 sample"):
        im.frechet_distance(a, a[:1])
    with pytest.raises(ValueError, match="non-finite"):
        im.frechet_distance(a, np.full((5, 3), np.nan))


# ------------------------------------------------------------------- classifier feature space
@pytest.fixture
def tiny_classifier():
    fv.manual_seed(0)
    model = fv.models.create("cnn_bn", num_classes=3, input_size=8, width=2, hidden=6)
    x = np.random.default_rng(0).random((7, 1, 8, 8)).astype(np.float32)
    model.train()
    model(fv.tensor(x))  # one training-mode pass, so that BatchNorm has running statistics
    return model, x


def test_classifier_features_default_is_the_last_linear_input(tiny_classifier):
    model, x = tiny_classifier
    ext = im.ClassifierFeatures(model, name="cnn_bn")
    last = [n for n, m in model.named_modules() if isinstance(m, fv.nn.Linear)][-1]
    assert ext.layer == last and ext.takes == "input"
    feats = ext.features(x, batch_size=3)
    assert feats.shape == (7, 6) and feats.dtype == np.float64
    assert model.training  # its mode is restored
    assert all(p.grad is None for p in model.parameters())
    # eval mode: the features do not depend on the batching (up to float32 rounding; in training
    # mode BatchNorm's batch statistics would change them a lot)
    np.testing.assert_allclose(ext.features(x, batch_size=256), feats, rtol=1e-5, atol=1e-7)
    # the penultimate features, through the last Linear layer, are the eval-mode logits
    model.eval()
    with fv.no_grad():
        logits = model(fv.tensor(x)).numpy()
    head = dict(model.named_modules())[last]
    np.testing.assert_allclose(feats @ head.weight.detach().numpy().T.astype(np.float64) + head.bias.detach().numpy(),
                               logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ext.predict(x, batch_size=2), logits.argmax(1))


def test_classifier_features_named_layer(tiny_classifier):
    model, x = tiny_classifier
    names = [n for n, m in model.named_modules() if isinstance(m, fv.nn.Linear)]
    hidden = im.ClassifierFeatures(model, layer=names[0]).features(x)  # the hidden Linear's output
    default = im.ClassifierFeatures(model).features(x)  # the input of the last: ReLU of that
    np.testing.assert_allclose(np.maximum(hidden, 0), default, rtol=1e-6)
    conv = im.ClassifierFeatures(model, layer="0").features(x)  # a conv's maps, flattened
    assert conv.shape == (7, 2 * 8 * 8)
    with pytest.raises(ValueError, match=r"no layer 'nope'; its layers: 0, 1, 2, .*18"):
        im.ClassifierFeatures(model, layer="nope")
    with pytest.raises(ValueError, match="no Linear layer"):
        im.ClassifierFeatures(fv.nn.Sequential(fv.nn.Conv2d(1, 2, 3), fv.nn.Flatten()))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got shape \(7, 8, 8\)"):
        im.ClassifierFeatures(model).features(x[:, 0])
    with pytest.raises(TypeError, match="nn.Module"):
        im.ClassifierFeatures(lambda v: v)


def test_feature_frechet_and_its_name(tiny_classifier):
    model, x = tiny_classifier
    ext = im.ClassifierFeatures(model, name="cnn_bn")
    assert im.feature_frechet(ext, x, x) == pytest.approx(0.0, abs=1e-9)
    shifted = im.feature_frechet(ext, x, x + 0.5)
    assert shifted > 1e-6
    score = im.FrechetScore(ext)
    assert score.name == "FID (cnn_bn features)" and score.key == "fid_cnn_bn"
    assert "not the Inception-v3 FID" in score.description
    assert score(x, x + 0.5) == shifted
    # a name alone (a run's model): the label, and a score only with an extractor
    named = im.FrechetScore("cnn_bn")
    assert named.name == "FID (cnn_bn features)" and "not the Inception-v3 FID" in named.description
    with pytest.raises(ValueError, match="no extractor"):
        named(x, x)
    assert im.FrechetScore("lenet5", extractor=ext)(x, x + 0.5) == shifted
    assert im.FrechetScore(im.ClassifierFeatures(model)).name == "FID (Sequential features)"
    with pytest.raises(TypeError, match="ClassifierFeatures"):
        im.FrechetScore(model)
    with pytest.raises(TypeError, match="ClassifierFeatures"):
        im.FrechetScore("cnn_bn", extractor=model)


def test_image_metrics_are_exported():
    import foveanet.train as T
    for name in im.__all__:
        assert getattr(T, name) is getattr(im, name)
    assert fv.nn.DiceLoss is fv.nn.layers.DiceLoss and F.dice_loss is fv.ops.loss.dice_loss
