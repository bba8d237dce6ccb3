"""The test-set measurements of the image-output tasks, and the arrays their pictures are made
of (``report.write_image_task_report`` draws them).

``evaluate(kind, config, models, test_loader)`` returns ``(results, arrays)``: ``results`` the
JSON-able figures for results.json and report.md (``results["test"]``), ``arrays`` NumPy arrays
by picture name:

==========  ==================================================================================
autoencode  test MSE, PSNR (dB, mean per image) and SSIM; ``reconstructions`` (originals above
            their reconstructions); ``latent`` + ``latent_labels`` when the code has 2 values
denoise     PSNR and SSIM of the noisy input and of the output against the clean image, and
            the gain in dB; ``triples`` (noisy / denoised / clean rows)
segment     pixel accuracy, mean IoU, per-class IoU and Dice; ``overlay_images``,
            ``overlay_truth``, ``overlay_pred``
vae         the test ELBO (nats per image) with its two terms; ``samples``,
            ``reconstructions``; ``latent`` when the latent has 2 values
gan         ``samples``, ``interpolation``; with a classifier (``config["classifier"]``): the
            Frechet distance of the samples to the test images in the classifier's features,
            beside two baselines (the two halves of the test set; uniform noise), and for a
            conditional generator the classifier's accuracy on its samples
==========  ==================================================================================

The noisy test inputs come from the test loader's own generator, so every evaluation of a run
sees the same noise.
"""
from __future__ import annotations

from ..autograd import Tensor, no_grad
from ..backend import xp
from ..random import Generator, randn
from .generative import generate, to_unit

__all__ = ["evaluate", "best_weights", "summary_lines", "frechet_report"]

SHOWN = 12  # images per picture row


def _np(t):
    return t.numpy() if isinstance(t, Tensor) else xp.asarray(t)


def best_weights(trainer, run_dir, val_loader):
    """Load the best epoch's weights when the run validated (single model), else keep the
    last; returns (which, epoch)."""
    import os

    from .run import BEST_FILE, load_weights
    if trainer.single_model and val_loader is not None and \
            os.path.isfile(os.path.join(run_dir, BEST_FILE)):
        _, epoch = load_weights(trainer.model, run_dir, "best")
        return "best", epoch
    return "last", trainer.epoch


def _eval(models):
    for m in models.values():
        m.eval()


def evaluate(kind, config, models, test_loader, test_set=None):
    """``(results, arrays)`` of a trained run on its test loader (see the module docstring)."""
    _eval(models)
    with no_grad():
        if kind in ("autoencode", "denoise"):
            return _reconstruction(kind, config, models["model"], test_loader)
        if kind == "segment":
            return _segmentation(config, models["model"], test_loader)
        if kind == "vae":
            return _vae(config, models["model"], test_loader)
        if kind == "gan":
            return _gan(config, models["generator"], test_loader)
    raise ValueError(f"unknown image task {kind!r}")


# ----------------------------------------------------------------------------- autoencoders
def _reconstruction(kind, config, model, loader):
    from .image_metrics import psnr, ssim
    sums = {"mse": 0.0, "psnr": 0.0, "ssim": 0.0, "psnr_noisy": 0.0, "ssim_noisy": 0.0}
    n = 0
    shown, codes, labels = None, [], []
    for batch in loader:
        x, clean = _np(batch[0]), _np(batch[1])
        y = xp.clip(_np(model(Tensor(x))), 0.0, 1.0)
        m = x.shape[0]
        sums["mse"] += float(((y - clean) ** 2).reshape(m, -1).mean(axis=1).sum())
        sums["psnr"] += psnr(y, clean) * m
        sums["ssim"] += ssim(y, clean) * m
        if kind == "denoise":
            sums["psnr_noisy"] += psnr(x, clean) * m
            sums["ssim_noisy"] += ssim(x, clean) * m
        if shown is None:
            k = min(SHOWN, m)
            shown = (x[:k], y[:k], clean[:k])
        if hasattr(model, "encode") and len(batch) > 2:
            z = _np(model.encode(Tensor(x)))
            if z.shape[1] == 2:
                codes.append(z)
                labels.append(_np(batch[2]))
        n += m
    test = {k: v / n for k, v in sums.items()}
    test["images"] = n
    arrays = {}
    if kind == "denoise":
        test["psnr_gain"] = test["psnr"] - test["psnr_noisy"]
        test["noise"] = config.get("noise")
        arrays["triples"] = xp.concatenate(shown)
    else:
        for k in ("psnr_noisy", "ssim_noisy"):
            test.pop(k)
        arrays["reconstructions"] = xp.concatenate(shown[:2])
    if codes:
        arrays["latent"] = xp.concatenate(codes)
        arrays["latent_labels"] = xp.concatenate(labels)
    return {"test": test}, arrays


# ----------------------------------------------------------------------------- segmentation
def _segmentation(config, model, loader):
    from .image_metrics import segmentation_scores
    c = int(config.get("num_classes") or 11)
    confusion = xp.zeros((c, c), dtype=xp.int64)
    shown = None
    for batch in loader:
        x, t = _np(batch[0]), _np(batch[1]).astype(xp.int64)
        pred = _np(model(Tensor(x))).argmax(axis=1)
        ok = (t >= 0) & (t < c)
        confusion += xp.bincount(t[ok] * c + pred[ok], minlength=c * c).reshape(c, c)
        if shown is None:
            k = min(6, x.shape[0])
            shown = (x[:k], t[:k], pred[:k])
    scores = segmentation_scores(confusion)
    classes = config.get("classes") or [f"class_{i}" for i in range(c)]
    test = {"pixel_accuracy": scores["pixel_accuracy"], "mean_iou": scores["mean_iou"],
            "per_class_iou": {classes[i]: _nan_none(v) for i, v in
                              enumerate(scores["per_class_iou"])},
            "per_class_dice": {classes[i]: _nan_none(v) for i, v in
                               enumerate(scores["per_class_dice"])},
            "confusion_matrix": confusion.tolist(), "classes": classes,
            "pixels": int(confusion.sum())}
    arrays = {"overlay_images": shown[0], "overlay_truth": shown[1], "overlay_pred": shown[2]}
    return {"test": test}, arrays


def _nan_none(v):
    v = float(v)
    return None if v != v else v


# ---------------------------------------------------------------------------------- the VAE
def _vae(config, model, loader):
    from .generative import VAEMetrics
    metric = VAEMetrics()
    shown, codes, labels = None, [], []
    for batch in loader:
        x = _np(batch[0])
        logits, mu, logvar = model(Tensor(x))
        metric.update((logits, mu, logvar), x)
        if shown is None:
            k = min(SHOWN, x.shape[0])
            shown = (x[:k], 1.0 / (1.0 + xp.exp(-_np(logits)[:k])))
        m = _np(mu)
        if m.shape[1] == 2 and len(batch) > 1:
            codes.append(m)
            labels.append(_np(batch[1]))
    test = metric.compute()
    test["images"] = metric.count
    gen = Generator(int(config["seed"]) + 41)
    arrays = {"samples": _np(model.sample(64, generator=gen)),
              "reconstructions": xp.concatenate(shown)}
    if codes:
        arrays["latent"] = xp.concatenate(codes)
        arrays["latent_labels"] = xp.concatenate(labels)
    return {"test": test}, arrays


# ---------------------------------------------------------------------------------- the GAN
def _interpolation(G, seed, rows=8, steps=10):
    gen = Generator(seed)
    a, b = randn(rows, G.latent, generator=gen).numpy(), randn(rows, G.latent,
                                                                generator=gen).numpy()
    w = xp.linspace(0.0, 1.0, steps, dtype=xp.float32)[None, :, None]
    z = (a[:, None] * (1 - w) + b[:, None] * w).reshape(rows * steps, -1)
    args = ()
    if getattr(G, "num_classes", 0):
        args = (Tensor(xp.repeat(xp.arange(rows) % G.num_classes, steps).astype(xp.int64)),)
    return to_unit(G(Tensor(z.astype(xp.float32)), *args))


def _real_images(loader, limit):
    out, labels, n = [], [], 0
    for batch in loader:
        out.append(_np(batch[0]))
        labels.append(_np(batch[1]) if len(batch) > 1 else xp.zeros(len(out[-1]), xp.int64))
        n += len(out[-1])
        if n >= limit:
            break
    return xp.concatenate(out)[:limit], xp.concatenate(labels)[:limit]


def frechet_report(extractor, generated, real, seed: int = 0):
    """The Frechet distance of ``generated`` to ``real`` images in ``extractor``'s features,
    beside real-vs-real (``real``'s two halves, each half against the other) and uniform noise
    against ``real``; every set has ``len(real) // 2`` images so the three are comparable."""
    from .image_metrics import frechet_distance
    half = len(real) // 2
    rng = xp.random.default_rng(seed)
    fa = extractor.features(real[:half].astype(xp.float32))
    fb = extractor.features(real[half:2 * half].astype(xp.float32))
    fg = extractor.features(generated[:half].astype(xp.float32))
    noise = rng.uniform(0.0, 1.0, size=real[:half].shape).astype(xp.float32)
    fn = extractor.features(noise)
    return {"generated": frechet_distance(fg, fa), "real_vs_real": frechet_distance(fb, fa),
            "noise": frechet_distance(fn, fa), "images": half}


def _gan(config, G, loader):
    seed = int(config["seed"])
    k = getattr(G, "num_classes", 0)
    arrays = {"samples": generate(G, 100 if k else 64, seed + 31,
                                  (xp.arange(100) % k) if k else None),
              "interpolation": _interpolation(G, seed + 32)}
    test = {}
    if config.get("classifier"):
        from .image_metrics import ClassifierFeatures, FrechetScore
        from .run import load_run
        run = load_run(config["classifier"])
        extractor = ClassifierFeatures(run.model)
        n = int(config.get("limit_test") or 10000)
        real, real_labels = _real_images(loader, n)
        gen_labels = real_labels if k else None
        fake = generate(G, len(real), seed + 33, gen_labels)
        fid = frechet_report(extractor, fake, real, seed + 34)
        name = FrechetScore(run.config.get("model", "classifier")).name
        test["frechet"] = dict(fid, name=name, classifier=config["classifier"])
        acc = float((extractor.predict(real) == real_labels).mean())
        test["classifier_accuracy_real"] = acc
        if k:
            pred = extractor.predict(fake)
            test["conditional_accuracy"] = float((pred == gen_labels).mean())
    return {"test": test}, arrays


# --------------------------------------------------------------------------------- summary
def summary_lines(kind, results) -> list:
    """What ``foveanet train`` prints after an image-output run."""
    t = results.get("test") or {}
    at = f"({results.get('checkpoint')} epoch {results.get('epoch')} of {results.get('epochs')})"
    if kind == "autoencode":
        return [f"test: MSE {t['mse']:.5f}, PSNR {t['psnr']:.2f} dB, SSIM {t['ssim']:.4f} {at}"]
    if kind == "denoise":
        return [f"test ({t.get('noise')}): noisy input PSNR {t['psnr_noisy']:.2f} dB, SSIM "
                f"{t['ssim_noisy']:.4f}; denoised PSNR {t['psnr']:.2f} dB, SSIM {t['ssim']:.4f} "
                f"(+{t['psnr_gain']:.2f} dB) {at}"]
    if kind == "segment":
        return [f"test: pixel accuracy {t['pixel_accuracy']:.4f}, mean IoU {t['mean_iou']:.4f} "
                f"{at}"]
    if kind == "vae":
        return [f"test: ELBO {t['elbo']:.2f} nats per image (reconstruction {t['recon']:.2f}, "
                f"KL {t['kl']:.2f}) {at}"]
    lines = [f"samples: {results.get('epochs')} epochs"]
    fr = t.get("frechet")
    if fr:
        lines.append(f"{fr['name']}: {fr['generated']:.2f} (real vs real {fr['real_vs_real']:.2f}"
                     f", uniform noise {fr['noise']:.2f}; {fr['images']} images each)")
    if "conditional_accuracy" in t:
        lines.append(f"the classifier recognises {t['conditional_accuracy']:.2%} of the "
                     f"class-conditional samples ({t['classifier_accuracy_real']:.2%} of real "
                     "test images)")
    return lines
