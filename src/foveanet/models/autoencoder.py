"""Autoencoders: networks trained to give their input back through a narrow code.

- ``dense_ae``: the lecture's fully connected autoencoder. The image is flattened, squeezed
  through ``hidden`` layers (ReLU) to a ``bottleneck`` code (linear: the code may take any
  value), and expanded back the same way; a sigmoid keeps the reconstruction in [0, 1], the
  range of the pixels.
- ``conv_ae``: the convolutional one. Stride-2 3x3 convolutions (Conv-BN-ReLU) halve the image
  while the channels double (``width``, 2 ``width``, ... up to 8 ``width``), a Linear layer maps
  the last feature map to the code; the decoder is the mirror: Linear, unflatten, ReLU, then 4x4
  stride-2 transposed convolutions (ConvT-BN-ReLU) that double the size exactly, the last one to
  the image's channels and a sigmoid. The encoder halves while the size is even and the half is
  at least 4 (28 -> 14 -> 7, 32 -> 16 -> 8 -> 4, 64 -> ... -> 4), so every transposed
  convolution lands exactly on the encoder's size; a size that cannot be halved twice that way
  (30, 18, 12) is refused with the sizes that work.
- ``vae``: Kingma & Welling's variational autoencoder on the same convolutional encoder and
  decoder. The encoder gives the mean and the log-variance of a diagonal Gaussian q(z|x); the
  decoder's outputs are the logits of independent Bernoulli pixels p(x|z) (the loss is binary
  cross entropy with logits, stable where a sigmoid followed by a log is not). ``vae_loss`` is
  the negative ELBO per image in nats: the reconstruction term (BCE summed over the pixels)
  plus the KL divergence of q(z|x) from N(0, I), in closed form.

Every model takes (N, C, H, W) float images in [0, 1] and checks their channels and size against
the ones it was built for, naming itself in the error.
"""
from __future__ import annotations

from .. import nn
from ..autograd import no_grad
from ..nn import functional as F
from ..random import randn
from .registry import register_model

__all__ = ["Autoencoder", "VAE", "dense_ae", "conv_ae", "vae", "vae_loss", "image_hw",
           "check_images"]


# -------------------------------------------------------------------------------- shared checks
def image_hw(owner: str, image_size) -> tuple:
    """``image_size`` (an int, or a pair (H, W)) as a pair of positive ints."""
    if isinstance(image_size, bool):
        raise TypeError(f"{owner}: image_size must be an int or a pair (H, W), got {image_size!r}")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    try:
        hw = tuple(image_size)
        if len(hw) != 2 or any(isinstance(v, bool) or int(v) != v for v in hw):
            raise ValueError
        hw = (int(hw[0]), int(hw[1]))
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: image_size must be an int or a pair (H, W), got "
                        f"{image_size!r}") from None
    if min(hw) < 1:
        raise ValueError(f"{owner}: image_size must be positive, got {image_size!r}")
    return hw


def positive(owner: str, name: str, value) -> int:
    """``value`` as a positive int (a bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return value


def check_images(owner: str, x, channels: int, hw=None, what: str = "images"):
    """A (N, C, H, W) batch with ``channels`` channels (and spatial size ``hw`` when given), or
    a ValueError that names the model and both shapes."""
    shape = tuple(getattr(x, "shape", ()))
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"{owner}: expected {what} of shape (N, C, H, W), got shape {shape}")
    if shape[1] != channels:
        raise ValueError(f"{owner}: built for {channels}-channel {what}, got {shape[1]} channels "
                         f"(input shape {shape})")
    if hw is not None and tuple(shape[2:]) != tuple(hw):
        raise ValueError(f"{owner}: built for {what} of {hw[0]}x{hw[1]} pixels, got "
                         f"{shape[2]}x{shape[3]} (input shape {shape}); build it with "
                         f"image_size=({shape[2]}, {shape[3]})")
    return x


def halvings(owner: str, hw) -> int:
    """How many stride-2 layers a convolutional autoencoder uses for an image of ``hw``: halve
    while both sides are even and their halves at least 4; two at least."""
    n, (h, w) = 0, hw
    while h % 2 == 0 and w % 2 == 0 and h // 2 >= 4 and w // 2 >= 4:
        h, w, n = h // 2, w // 2, n + 1
    if n < 2:
        raise ValueError(f"{owner}: cannot build the encoder for {hw[0]}x{hw[1]} images: the "
                         f"sides must halve exactly at least twice down to 4 pixels or more "
                         f"(28 -> 14 -> 7, 32 -> 16 -> 8 -> 4, 64, 96, ...); resize or pad the "
                         f"images (e.g. to 32x32)")
    return n


# -------------------------------------------------------------------------------------- dense
class Autoencoder(nn.Module):
    """``encoder`` (images -> (N, bottleneck) codes) and ``decoder`` (codes -> images in [0, 1]);
    ``forward(x) = decode(encode(x))``. ``image_shape`` is (C, H, W)."""

    def __init__(self, encoder, decoder, image_shape, bottleneck, name="autoencoder"):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.image_shape, self.bottleneck, self._owner = tuple(image_shape), int(bottleneck), name

    def encode(self, x):
        c, h, w = self.image_shape
        return self.encoder(check_images(self._owner, x, c, (h, w)))

    def decode(self, z):
        if getattr(z, "ndim", None) != 2 or z.shape[1] != self.bottleneck:
            raise ValueError(f"{self._owner}: decode takes codes of shape (N, {self.bottleneck}), "
                             f"got shape {tuple(getattr(z, 'shape', ()))}")
        return self.decoder(z)

    def forward(self, x):
        return self.decode(self.encode(x))

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}, bottleneck={self.bottleneck}"


@register_model("dense_ae")
def dense_ae(in_channels=1, image_size=28, bottleneck=32, hidden=(512, 128)):
    """Fully connected autoencoder: flatten, Linear-ReLU per ``hidden`` width, Linear to the
    ``bottleneck`` code; then the mirror back to the image, sigmoid, unflatten."""
    owner = "dense_ae"
    h, w = image_hw(owner, image_size)
    c = positive(owner, "in_channels", in_channels)
    bottleneck = positive(owner, "bottleneck", bottleneck)
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    for v in hidden:
        positive(owner, "every hidden width", v)
    sizes = [c * h * w, *hidden, bottleneck]
    enc = [nn.Flatten()]
    for i in range(len(sizes) - 1):
        enc.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            enc.append(nn.ReLU())
    dec, back = [], sizes[::-1]
    for i in range(len(back) - 1):
        dec.append(nn.Linear(back[i], back[i + 1]))
        dec.append(nn.ReLU() if i < len(back) - 2 else nn.Sigmoid())
    dec.append(nn.Unflatten(1, (c, h, w)))
    return Autoencoder(nn.Sequential(*enc), nn.Sequential(*dec), (c, h, w), bottleneck, owner)


# ------------------------------------------------------------------------------- convolutional
def conv_encoder(in_channels, widths):
    """Conv(3x3, stride 2, padding 1)-BN-ReLU per width: each halves an even size exactly."""
    layers, c = [], in_channels
    for v in widths:
        layers += [nn.Conv2d(c, v, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(v),
                   nn.ReLU()]
        c = v
    return nn.Sequential(*layers)


def conv_decoder(widths, out_channels):
    """The mirror of ``conv_encoder(out_channels, widths)``: ConvTranspose(4x4, stride 2,
    padding 1)-BN-ReLU from the last width down to the first, then one to ``out_channels``
    (no normalisation, no activation: the caller adds the sigmoid, or keeps the logits)."""
    layers, back = [], list(widths[::-1])
    for a, b in zip(back, back[1:]):
        layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, bias=False),
                   nn.BatchNorm2d(b), nn.ReLU()]
    layers.append(nn.ConvTranspose2d(back[-1], out_channels, 4, stride=2, padding=1))
    return nn.Sequential(*layers)


def conv_plan(owner, in_channels, image_size, width):
    """(C, H, W), the encoder's widths and its last feature map's (h, w)."""
    hw = image_hw(owner, image_size)
    c = positive(owner, "in_channels", in_channels)
    width = positive(owner, "width", width)
    n = halvings(owner, hw)
    widths = [width * min(2 ** i, 8) for i in range(n)]
    return (c, *hw), widths, (hw[0] >> n, hw[1] >> n)


@register_model("conv_ae")
def conv_ae(in_channels=1, image_size=28, bottleneck=32, width=32):
    """Convolutional autoencoder: stride-2 Conv-BN-ReLU layers, Linear to the ``bottleneck``
    code; Linear, unflatten, stride-2 transposed convolutions back to the image, sigmoid."""
    owner = "conv_ae"
    shape, widths, (h, w) = conv_plan(owner, in_channels, image_size, width)
    bottleneck = positive(owner, "bottleneck", bottleneck)
    feat = widths[-1] * h * w
    encoder = nn.Sequential(conv_encoder(shape[0], widths), nn.Flatten(), nn.Linear(feat, bottleneck))
    decoder = nn.Sequential(nn.Linear(bottleneck, feat), nn.Unflatten(1, (widths[-1], h, w)),
                            nn.ReLU(), conv_decoder(widths, shape[0]), nn.Sigmoid())
    return Autoencoder(encoder, decoder, shape, bottleneck, owner)


# ----------------------------------------------------------------------------------------- VAE
class VAE(nn.Module):
    """Variational autoencoder (Kingma & Welling 2014) with ``conv_ae``'s encoder and decoder.

    ``encode(x) -> (mu, logvar)``, each (N, latent); ``reparameterize(mu, logvar, generator)``
    draws z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) from ``generator`` (the global one by
    default, so ``fv.manual_seed`` fixes it); ``decode(z) -> logits`` (N, C, H, W) of Bernoulli
    pixels; ``forward(x) -> (logits, mu, logvar)``, with z drawn in training mode and z = mu in
    eval mode (deterministic: evaluation and export give one answer per image);
    ``sample(n)`` -> n images sigmoid(decode(z)), z ~ N(0, I), without gradients."""

    def __init__(self, in_channels=1, image_size=28, latent=16, width=32):
        super().__init__()
        owner = self._owner = "vae"
        shape, widths, (h, w) = conv_plan(owner, in_channels, image_size, width)
        self.latent = positive(owner, "latent", latent)
        self.image_shape = shape
        feat = widths[-1] * h * w
        self.encoder = nn.Sequential(conv_encoder(shape[0], widths), nn.Flatten())
        self.fc_mu = nn.Linear(feat, self.latent)
        self.fc_logvar = nn.Linear(feat, self.latent)
        self.decoder = nn.Sequential(nn.Linear(self.latent, feat),
                                     nn.Unflatten(1, (widths[-1], h, w)), nn.ReLU(),
                                     conv_decoder(widths, shape[0]))

    def encode(self, x):
        c, h, w = self.image_shape
        feat = self.encoder(check_images(self._owner, x, c, (h, w)))
        return self.fc_mu(feat), self.fc_logvar(feat)

    def reparameterize(self, mu, logvar, generator=None):
        eps = randn(*mu.shape, generator=generator, dtype=mu.dtype)
        return mu + (logvar * 0.5).exp() * eps

    def decode(self, z):
        if getattr(z, "ndim", None) != 2 or z.shape[1] != self.latent:
            raise ValueError(f"{self._owner}: decode takes latent codes of shape (N, "
                             f"{self.latent}), got shape {tuple(getattr(z, 'shape', ()))}")
        return self.decoder(z)

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar) if self.training else mu
        return self.decode(z), mu, logvar

    def sample(self, n, generator=None):
        """``n`` images in [0, 1] from the prior: sigmoid(decode(z)), z ~ N(0, I). The decoder's
        batch normalisation runs on its running statistics (eval mode, put back afterwards), so
        sampling changes nothing in the model."""
        n = positive(self._owner, "the number of samples", n)
        dtype = self.fc_mu.weight.dtype
        modes = [(m, m.training) for m in self.decoder.modules()]
        try:
            self.decoder.eval()
            with no_grad():
                return F.sigmoid(self.decode(randn(n, self.latent, generator=generator,
                                                   dtype=dtype)))
        finally:
            for m, mode in modes:
                m.training = mode

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}, latent={self.latent}"


@register_model("vae")
def vae(in_channels=1, image_size=28, latent=16, width=32):
    """Variational autoencoder: convolutional encoder to a Gaussian's mean and log-variance,
    decoder to Bernoulli logits; train with ``vae_loss``."""
    return VAE(in_channels, image_size, latent, width)


def vae_loss(logits, x, mu, logvar):
    """The VAE's negative ELBO per image, in nats, averaged over the batch: ``(loss, recon, kl)``.

    recon = sum over pixels of BCE-with-logits(logits, x) (the Bernoulli decoder's negative
    log-likelihood), kl = -1/2 sum(1 + logvar - mu^2 - exp(logvar)) (KL(q(z|x) || N(0, I)) in
    closed form), each averaged over the N images; loss = recon + kl. Three scalar tensors,
    differentiable with respect to logits, mu and logvar."""
    fn = "vae_loss"
    for name, t in (("logits", logits), ("x", x), ("mu", mu), ("logvar", logvar)):
        if getattr(t, "ndim", 0) < 1:
            raise ValueError(f"{fn}: {name} must be a batch (N, ...), got shape "
                             f"{tuple(getattr(t, 'shape', ()))}")
    if tuple(logits.shape) != tuple(x.shape):
        raise ValueError(f"{fn}: logits of shape {tuple(logits.shape)} do not match the images "
                         f"of shape {tuple(x.shape)}")
    if tuple(mu.shape) != tuple(logvar.shape) or mu.shape[0] != x.shape[0]:
        raise ValueError(f"{fn}: mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must have "
                         f"one shape, with the images' batch of {x.shape[0]}")
    n = x.shape[0]
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / n
    kl = (1 + logvar - mu * mu - logvar.exp()).sum() * (-0.5 / n)
    return recon + kl, recon, kl
