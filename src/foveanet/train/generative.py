"""Training networks whose output is an image: the VAE's task, the GAN's trainer, and the image
grids their runs keep.

- Autoencoders and denoisers need nothing new: ``tasks.Reconstruction`` (MSE; PSNR) on batches
  ``(input, target)``; a denoiser's loader noises the input only (``data.ReconstructionPairs``
  and a noise transform), so the target stays clean.
- Segmentation is ``tasks.Segmentation`` (per-pixel cross entropy, pixel accuracy, mean IoU).
- ``VAETask``: the negative ELBO per image, in nats (``models.autoencoder.vae_loss``: the
  Bernoulli reconstruction term plus the KL divergence of the encoder's Gaussian from N(0, I)),
  with the two terms logged apart.
- ``GANTrainer``: Goodfellow et al.'s game with the non-saturating generator loss, as DCGAN
  trains it: per batch one discriminator step on real and generated images, then one generator
  step; both losses and the discriminator's mean outputs on real and generated images are
  logged. The data are in [0, 1] and are mapped to the generator's [-1, 1] (tanh) before the
  discriminator sees them. A conditional pair gets the batch's labels. The noise comes from the
  global generator, which checkpoints save, so a killed and resumed run ends bit-identical.
- ``SampleGrid``: a callback that writes a grid of samples of fixed noise after every epoch
  (``samples/epoch_NNN.png``), so the report shows the generator learning.

``image_grid`` / ``save_image_grid`` tile (N, C, H, W) images in [0, 1] into one PNG (Pillow),
written atomically.
"""
from __future__ import annotations

import io
import math
import os

from ..autograd import Tensor, no_grad
from ..backend import xp
from ..nn import functional as F
from ..random import Generator, randn
from .callbacks import Callback
from .io import atomic_write_bytes
from .tasks import Metric, Task, _np, register
from .trainer import Trainer

__all__ = ["VAETask", "VAEMetrics", "GANTrainer", "SampleGrid", "image_grid", "save_image_grid",
           "png_bytes", "to_unit", "IMAGE_TASKS"]

IMAGE_TASKS = ("autoencode", "denoise", "segment", "vae", "gan")


# ------------------------------------------------------------------------------- pictures
def _array(images):
    a = images.numpy() if isinstance(images, Tensor) else xp.asarray(images)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError(f"image_grid: expected (N, 1 or 3, H, W) images, got shape "
                         f"{tuple(a.shape)}")
    return a


def image_grid(images, nrow: int | None = None, pad: int = 2, value: float = 1.0):
    """(N, C, H, W) images in [0, 1] (C 1 or 3) tiled row by row, ``nrow`` per row (default:
    about square), ``pad`` pixels of ``value`` between them: a (rows, cols) or (rows, cols, 3)
    float array in [0, 1]."""
    a = xp.clip(_array(images).astype(xp.float32), 0.0, 1.0)
    n, c, h, w = a.shape
    if n == 0:
        raise ValueError("image_grid: no images")
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    rows = (n + nrow - 1) // nrow
    grid = xp.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), value, dtype=xp.float32)
    for i in range(n):
        r, q = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[:, y:y + h, x:x + w] = a[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def png_bytes(grid, scale: int = 1) -> bytes:
    """A grid from ``image_grid`` (or any (H, W) / (H, W, 3) array in [0, 1]) as PNG bytes,
    each pixel ``scale`` x ``scale``."""
    from PIL import Image

    a = (xp.clip(xp.asarray(grid), 0.0, 1.0) * 255.0 + 0.5).astype(xp.uint8)
    if scale > 1:
        a = a.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def save_image_grid(images, path, nrow: int | None = None, pad: int = 2, scale: int = 1) -> str:
    """Write ``image_grid(images, nrow, pad)`` to ``path`` as a PNG (atomically); returns path."""
    atomic_write_bytes(os.fspath(path), png_bytes(image_grid(images, nrow, pad), scale))
    return os.fspath(path)


def to_unit(t):
    """A generator's tanh output in [-1, 1] as images in [0, 1] (a NumPy array)."""
    a = t.numpy() if isinstance(t, Tensor) else xp.asarray(t)
    return xp.clip((a + 1.0) * 0.5, 0.0, 1.0)


# -------------------------------------------------------------------------------- the VAE
class VAEMetrics(Metric):
    """Epoch sums of the per-image reconstruction term and KL divergence (float64): ``elbo``
    (nats per image, the higher the better), ``recon`` and ``kl``."""

    def reset(self) -> None:
        self.count = 0
        self.recon = 0.0
        self.kl = 0.0

    def update(self, output, target) -> None:
        logits, mu, logvar = (_np(o).astype(xp.float64) for o in output)
        x = _np(target).astype(xp.float64).reshape(logits.shape)
        n = logits.shape[0]
        # BCE with logits, summed over pixels: max(l, 0) - l x + log(1 + exp(-|l|))
        bce = xp.maximum(logits, 0) - logits * x + xp.log1p(xp.exp(-xp.abs(logits)))
        self.recon += float(bce.reshape(n, -1).sum())
        self.kl += float((-0.5 * (1 + logvar - mu ** 2 - xp.exp(logvar))).reshape(n, -1).sum())
        self.count += n

    def compute(self) -> dict:
        if not self.count:
            return {}
        recon, kl = self.recon / self.count, self.kl / self.count
        return {"elbo": -(recon + kl), "recon": recon, "kl": kl}


@register
class VAETask(Task):
    """A variational autoencoder's objective: the negative ELBO per image in nats (the batch
    mean of the pixels' summed BCE-with-logits plus the KL term), on a model whose forward
    returns ``(logits, mu, logvar)``; the target is the input itself."""

    name = "vae"

    def unpack(self, batch):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return x, x

    def loss(self, output, target):
        from ..models.autoencoder import vae_loss

        if not (isinstance(output, tuple) and len(output) == 3):
            raise TypeError("vae task: the model must return (logits, mu, logvar), got "
                            f"{type(output).__name__}")
        logits, mu, logvar = output
        return vae_loss(logits, target, mu, logvar)[0]

    def metrics(self, stage="val"):
        return VAEMetrics()


# -------------------------------------------------------------------------------- the GAN
class GANTrainer(Trainer):
    """A generator and a discriminator (``models={"generator": G, "discriminator": D}`` and
    their optimizers under the same names), trained as DCGAN does: per batch, one step of D on
    ``BCE(D(real), 1) + BCE(D(G(z)), 0)``, then one step of G on ``BCE(D(G(z)), 1)`` (the
    non-saturating loss). ``latent``: the size of z; ``conditional``: G and D take the batch's
    labels. Logged per batch: ``d_loss``, ``g_loss``, ``d_real`` and ``d_fake`` (D's mean
    probability on real and on generated images)."""

    def __init__(self, generator, discriminator, opt_g, opt_d, *, latent: int,
                 conditional: bool = False, **kwargs):
        super().__init__(models={"generator": generator, "discriminator": discriminator},
                         optimizers={"generator": opt_g, "discriminator": opt_d}, **kwargs)
        self.latent = int(latent)
        self.conditional = bool(conditional)

    def _labels(self, batch):
        if not self.conditional:
            return ()
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("a conditional GAN needs (images, labels) batches")
        return (batch[1],)

    def train_step(self, batch) -> dict:
        G, D = self.models["generator"], self.models["discriminator"]
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        labels = self._labels(batch)
        n = x.shape[0]
        real = x * 2.0 - 1.0
        ones = Tensor(xp.ones((n, 1), dtype=xp.float32))
        zeros = Tensor(xp.zeros((n, 1), dtype=xp.float32))
        fake = G(randn(n, self.latent), *labels)

        self.zero_grad("discriminator")
        d_real = D(real, *labels)
        d_fake = D(fake.detach(), *labels)
        d_loss = (F.binary_cross_entropy_with_logits(d_real, ones)
                  + F.binary_cross_entropy_with_logits(d_fake, zeros))
        self.backward(d_loss, "discriminator loss")
        self.step("discriminator")

        self.zero_grad("generator")
        g_loss = F.binary_cross_entropy_with_logits(D(fake, *labels), ones)
        self.backward(g_loss, "generator loss")
        self.step("generator")
        p = lambda t: float((1.0 / (1.0 + xp.exp(-t.detach().numpy().astype(xp.float64)))).mean())  # noqa: E731
        return {"d_loss": d_loss, "g_loss": g_loss, "d_real": p(d_real), "d_fake": p(d_fake)}


def generate(generator, n: int, seed: int = 0, labels=None, batch_size: int = 500):
    """``n`` images in [0, 1] from ``generator`` (eval mode, no grad), z drawn from
    ``Generator(seed)``; ``labels`` (n,) for a conditional generator. A NumPy array
    (n, C, H, W)."""
    gen = Generator(seed)
    was = generator.training
    generator.eval()
    out = []
    try:
        with no_grad():
            for lo in range(0, n, batch_size):
                m = min(batch_size, n - lo)
                z = randn(m, generator.latent, generator=gen)
                args = () if labels is None else (Tensor(xp.asarray(labels[lo:lo + m],
                                                                    dtype=xp.int64)),)
                out.append(to_unit(generator(z, *args)))
    finally:
        generator.train(was)
    return xp.concatenate(out)


class SampleGrid(Callback):
    """After every epoch, a grid of the generator's images from the same noise (``n`` of them,
    drawn once from ``Generator(seed)``; a conditional generator gets the classes in turn) to
    ``RUN_DIR/samples/epoch_NNN.png``."""

    def __init__(self, run_dir, n: int = 64, seed: int = 0, num_classes: int = 0,
                 model: str = "generator"):
        self.dir = os.path.join(os.fspath(run_dir), "samples")
        self.n, self.seed, self.num_classes, self.name = int(n), int(seed), int(num_classes), model

    def labels(self):
        return (xp.arange(self.n) % self.num_classes) if self.num_classes else None

    def on_epoch_end(self, epoch, logs=None):
        G = self.trainer.models[self.name]
        images = generate(G, self.n, self.seed, self.labels())
        os.makedirs(self.dir, exist_ok=True)
        nrow = self.num_classes or None
        save_image_grid(images, os.path.join(self.dir, f"epoch_{epoch:03d}.png"), nrow,
                        scale=2)
