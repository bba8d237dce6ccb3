"""DCGAN (Radford, Metz & Chintala 2016): a generator of images from noise and a discriminator
that tells them from real ones, both all-convolutional, with the paper's guidelines: strided
(transposed) convolutions instead of pooling, batch normalisation in both networks except the
generator's output and the discriminator's input layer, ReLU in the generator with Tanh at its
output, LeakyReLU(0.2) in the discriminator, weights from N(0, 0.02) (``dcgan_init``).

Generator: z (N, latent) -> a 1x1 map -> ConvTranspose2d with an s0 x s0 kernel (the paper's
"project and reshape") to (C0, s0, s0) -> 4x4 stride-2 ConvTranspose2d layers (BN, ReLU), each
doubling the size and halving the channels -> the last one to ``out_channels`` and Tanh, so
outputs are in [-1, 1] (scale the real images to [-1, 1] too: x * 2 - 1). The start: s0 = 7
for 28 (7 -> 14 -> 28, MNIST), s0 = 4 for 32 and 64 (4 -> 8 -> 16 -> 32 -> 64); any
s0 * 2^k with k >= 2 works (56, 128, ...). C0 = ``width`` * max(4, 2^(k-1)): 4 ``width`` at 28
and 32, 8 ``width`` at 64 (the paper's 1024 -> 512 -> 256 -> 128 with width=128).

Discriminator: the mirror: 4x4 stride-2 Conv2d layers (``width``, 2 ``width``, ...; BN on every
layer but the first; LeakyReLU(0.2)) down to s0 x s0, then a convolution with an s0 x s0
kernel to one logit per image, (N, 1): no sigmoid, the loss is BCE with logits.

Class-conditional (``num_classes > 0``, Mirza & Osindero's conditional GAN): the generator
takes ``forward(z, labels)`` and concatenates the one-hot label vector to z; the discriminator
takes ``forward(x, labels)`` and concatenates the one-hot labels to the image as
``num_classes`` extra input channels, each constant over H x W (1 in the label's channel, 0
elsewhere). The one-hot rows are a lookup in a fixed identity matrix (a non-persistent
buffer), so both export to ONNX with the labels (int64, (N,)) as the second input.
"""
from __future__ import annotations

from .. import nn
from ..autograd import Tensor
from ..backend import xp
from ..nn import functional as F
from ..ops import cat, eye
from .autoencoder import check_images, positive
from .registry import register_model

__all__ = ["Generator", "Discriminator", "dcgan_generator", "dcgan_discriminator", "dcgan_init",
           "dcgan_plan"]


def dcgan_plan(owner, image_size) -> tuple:
    """(s0, k): image_size = s0 * 2^k with s0 = 7 (28, 56, ...) or 4 (32, 64, 128, ...), k >= 2."""
    if isinstance(image_size, (tuple, list)):
        if len(image_size) != 2 or image_size[0] != image_size[1]:
            raise ValueError(f"{owner}: DCGAN images are square; got image_size {image_size!r}")
        image_size = image_size[0]
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"{owner}: image_size must be a positive int, got {image_size!r}")
    for s0 in (7, 4):
        k, s = 0, image_size
        while s > s0 and s % 2 == 0:
            s, k = s // 2, k + 1
        if s == s0 and k >= 2:
            return s0, k
    raise ValueError(f"{owner}: image_size {image_size} is not supported: it must be 7 or 4 times "
                     f"a power of two of at least 4 (28, 56, 112 or 32, 64, 128, ...)")


def _labels(owner, labels, n, num_classes):
    """Check a conditional model's labels: int (N,), each in 0 .. num_classes-1."""
    if labels is None:
        raise ValueError(f"{owner}: this model is conditional (num_classes={num_classes}): call "
                         f"it with the class labels as well, model(input, labels) with labels "
                         f"(N,) int64")
    if not isinstance(labels, Tensor):
        labels = Tensor(xp.asarray(labels))
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{owner}: labels must have shape ({n},) (one per image), got "
                         f"{tuple(labels.shape)}")
    if not xp.issubdtype(labels.dtype, xp.integer):
        raise TypeError(f"{owner}: labels must be integers (int64), got {labels.dtype}")
    if labels.data.size and (labels.data.min() < 0 or labels.data.max() >= num_classes):
        bad = labels.data.min() if labels.data.min() < 0 else labels.data.max()
        raise ValueError(f"{owner}: label {int(bad)} is out of range for num_classes="
                         f"{num_classes} (0 to {num_classes - 1})")
    return labels


class _Conditional(nn.Module):
    """What both conditional networks share: ``num_classes`` and the identity matrix whose rows
    are the one-hot labels (a non-persistent buffer: not in the state dict)."""

    def _setup_classes(self, num_classes):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"{self._owner}: num_classes must be an int >= 0 (0: unconditional), "
                             f"got {num_classes!r}")
        self.num_classes = num_classes
        self.register_buffer("onehot", eye(num_classes) if num_classes else None,
                             persistent=False)

    def _one_hot(self, labels, n, dtype):
        labels = _labels(self._owner, labels, n, self.num_classes)
        table = self.onehot if self.onehot.dtype == dtype else self.onehot.to(dtype)
        return F.embedding(labels, table)

    def _no_labels(self, labels):
        if labels is not None and not self.num_classes:
            raise ValueError(f"{self._owner}: this model is unconditional (num_classes=0) and "
                             f"takes no labels; build it with num_classes > 0 for a conditional "
                             f"GAN")


class Generator(_Conditional):
    """``forward(z)`` (``forward(z, labels)`` when conditional): z (N, latent) or (N, latent, 1,
    1) -> images (N, out_channels, S, S) in [-1, 1]. Layers in ``net``: ``project``
    (ConvTranspose2d, an s0 x s0 kernel from 1x1), then ``up1`` ...; ``bn*``, ``relu*``, ``tanh``."""

    def __init__(self, latent=100, out_channels=1, image_size=28, width=64, num_classes=0,
                 init=True):
        super().__init__()
        owner = self._owner = "dcgan_generator"
        self.latent = positive(owner, "latent", latent)
        self.out_channels = positive(owner, "out_channels", out_channels)
        width = positive(owner, "width", width)
        self._setup_classes(num_classes)
        s0, k = dcgan_plan(owner, image_size)
        self.image_size = s0 * 2 ** k
        c = width * max(4, 2 ** (k - 1))
        layers = [("project", nn.ConvTranspose2d(self.latent + self.num_classes, c, s0,
                                                 bias=False)),
                  ("bn0", nn.BatchNorm2d(c)), ("relu0", nn.ReLU())]
        for i in range(1, k):
            layers += [(f"up{i}", nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1,
                                                     bias=False)),
                       (f"bn{i}", nn.BatchNorm2d(c // 2)), (f"relu{i}", nn.ReLU())]
            c //= 2
        layers += [(f"up{k}", nn.ConvTranspose2d(c, self.out_channels, 4, stride=2, padding=1)),
                   ("tanh", nn.Tanh())]
        self.net = nn.Sequential(dict(layers))
        if init:
            dcgan_init(self)

    def forward(self, z, labels=None):
        self._no_labels(labels)
        shape = tuple(getattr(z, "shape", ()))
        if not (len(shape) == 2 or (len(shape) == 4 and shape[2:] == (1, 1))) \
                or shape[1] != self.latent:
            raise ValueError(f"{self._owner}: expected noise of shape (N, {self.latent}) or (N, "
                             f"{self.latent}, 1, 1), got shape {shape}")
        if len(shape) == 4:
            z = z.reshape(shape[0], self.latent)
        if self.num_classes:
            z = cat([z, self._one_hot(labels, shape[0], z.dtype)], 1)
        return self.net(z.reshape(shape[0], z.shape[1], 1, 1))

    def extra_repr(self) -> str:
        return (f"latent={self.latent}, image_size={self.image_size}, "
                f"num_classes={self.num_classes}")


class Discriminator(_Conditional):
    """``forward(x)`` (``forward(x, labels)`` when conditional): images (N, in_channels, S, S)
    -> one logit per image, (N, 1). Layers in ``net``: ``down1`` (no BN), ``down2``/``bn2`` ...,
    ``lrelu*``, ``logit`` (an s0 x s0 convolution to one channel)."""

    def __init__(self, in_channels=1, image_size=28, width=64, num_classes=0, init=True):
        super().__init__()
        owner = self._owner = "dcgan_discriminator"
        self.in_channels = positive(owner, "in_channels", in_channels)
        width = positive(owner, "width", width)
        self._setup_classes(num_classes)
        s0, k = dcgan_plan(owner, image_size)
        self.image_size = s0 * 2 ** k
        layers, c = [], self.in_channels + self.num_classes
        for i in range(1, k + 1):
            v = width * 2 ** (i - 1)
            layers.append((f"down{i}", nn.Conv2d(c, v, 4, stride=2, padding=1, bias=i == 1)))
            if i > 1:
                layers.append((f"bn{i}", nn.BatchNorm2d(v)))
            layers.append((f"lrelu{i}", nn.LeakyReLU(0.2)))
            c = v
        layers.append(("logit", nn.Conv2d(c, 1, s0)))
        self.net = nn.Sequential(dict(layers))
        if init:
            dcgan_init(self)

    def forward(self, x, labels=None):
        self._no_labels(labels)
        s = self.image_size
        check_images(self._owner, x, self.in_channels, (s, s))
        n = x.shape[0]
        if self.num_classes:
            maps = self._one_hot(labels, n, x.dtype).reshape(n, self.num_classes, 1, 1)
            x = cat([x, maps.expand(n, self.num_classes, s, s)], 1)
        return self.net(x).reshape(n, 1)

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, num_classes={self.num_classes}"


def dcgan_init(module):
    """The DCGAN paper's initialisation, in place, for every layer of ``module``: convolution,
    transposed convolution and linear weights from N(0, 0.02), batch-norm weights from
    N(1, 0.02), all biases 0. Draws from the global generator (``fv.manual_seed`` makes it
    reproducible), layer by layer in ``module.modules()`` order. Returns ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


@register_model("dcgan_generator")
def dcgan_generator(latent=100, out_channels=1, image_size=28, width=64, num_classes=0,
                    init=True):
    """DCGAN generator (Radford et al. 2016): noise (N, latent) to images in [-1, 1] by strided
    transposed convolutions; ``num_classes`` > 0 conditions it on labels."""
    return Generator(latent, out_channels, image_size, width, num_classes, init)


@register_model("dcgan_discriminator")
def dcgan_discriminator(in_channels=1, image_size=28, width=64, num_classes=0, init=True):
    """DCGAN discriminator: strided convolutions with LeakyReLU to one logit per image;
    ``num_classes`` > 0 adds the one-hot labels as input channels."""
    return Discriminator(in_channels, image_size, width, num_classes, init)
