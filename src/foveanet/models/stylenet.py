"""Networks for neural style transfer (``foveanet.visual.style``): a feature network that needs no
download, the feed-forward stylisation network, and the instance normalisation it uses.

- ``style_features`` (``RandomFeatures``): a convolutional network with *random* weights whose
  feature maps stand in for a trained VGG's in the perceptual losses. He, Wang & Hopcroft (2016,
  "A Powerful Generative Model Using Random Weights for the Deep Image Representation") and
  Ustyuzhaninov, Brendel, Gatys & Bethge (2017, "What does it take to generate natural
  textures?") showed that Gram matrices of random filters already describe a texture well,
  provided the filters come in several sizes and there are enough of them. Here: at each of
  ``scales`` scales (the image, then the image average-pooled 2x2 again and again), a bank of
  convolutions with the kernel sizes ``kernel_sizes`` (3, 5, 7, 11 by default), ``width``
  filters each, padded to keep the size, their outputs concatenated and passed through a ReLU.
  An 11x11 filter at the fourth scale sees 88x88 pixels of the image, so the banks span fine
  strokes to large blobs. The weights are drawn from N(0, 2 / fan_in) (He initialisation, so
  every bank's activations have the same magnitude whatever its kernel size), biases zero, all
  from a generator seeded by ``seed``: the same seed gives the same network on every machine,
  whatever the global random state. Layer names: ``scale0`` ... (each bank's ReLU output,
  ``len(kernel_sizes) * width`` channels at 1/2^s of the image size), inside them ``scale0.k3``
  (the 3x3 convolution) and so on, and the poolings ``pool1`` ... . The defaults the style
  functions read, ``default_content_layer`` and ``default_style_layers``: the content at the
  third scale (1/4 resolution: the layout of the picture, not its texture), the style at all of
  them. The network takes inputs normalised with ImageNet's mean and standard deviation
  (``foveanet.visual.style``'s default), i.e. zero-centred values of order 1. ``forward`` returns
  the tuple of every scale's features.
- ``transform_net`` (``TransformNet``): Johnson, Alahi & Fei-Fei's (2016) image transformation
  network, trained by ``foveanet.visual.style.train_stylizer`` to stylise a picture in one
  forward pass: a 9x9 convolution (``width`` channels), two stride-2 3x3 convolutions (2 and 4
  ``width``), ``blocks`` residual blocks (3x3 conv, norm, ReLU, 3x3 conv, norm, plus the input),
  two upsamplings by nearest-neighbour interpolation followed by a 3x3 convolution (Odena,
  Dumoulin & Olah's 2016 remedy for the checkerboard artefacts of the paper's fractionally
  strided convolutions; ``upsample='transpose'`` gives the paper's 3x3 stride-2
  ``ConvTranspose2d`` instead, which ``fv.onnx.export`` can write: it has no converter for the
  nearest-neighbour resize yet), a 9x9 convolution to 3 channels and a sigmoid (the paper's
  scaled tanh: ``sigmoid(2a) = (tanh(a) + 1) / 2``), so outputs lie in [0, 1]. Convolutions pad by
  reflection (as the later implementations do, against dark borders); every convolution but the
  last is followed by instance normalisation (Ulyanov, Vedaldi & Lempitsky 2016: the contrast
  of the content image is normalised away, which the paper's batch normalisation does not;
  ``norm='batch'`` gives the original). Inputs are images in [0, 1] of at least 8x8 pixels; a
  height or width that is not a multiple of 4 is padded by reflection and cropped back.
- ``nn.InstanceNorm2d`` (in ``nn/layers/normalization.py``): PyTorch's ``torch.nn.InstanceNorm2d``: each sample
  and channel normalised by its own mean and biased variance over H x W, ``(x - mean) /
  sqrt(var + eps)``, times ``weight`` plus ``bias`` per channel when ``affine``; built from the
  differentiable mean, var and sqrt, so its gradients are theirs. Running statistics
  (``track_running_stats``) are not supported.
"""
from __future__ import annotations

from .. import nn
from ..ops import cat, pad, sigmoid
from ..ops.resize import interpolate_nearest
from ..random import Generator, numpy_rng
from .autoencoder import positive
from .registry import register_model

__all__ = ["RandomFeatures", "TransformNet", "style_features", "transform_net",
           "IMAGENET_MEAN", "IMAGENET_STD"]

# the normalisation torchvision's and the ONNX model zoo's ImageNet networks expect
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMS = ("instance", "batch")
UPSAMPLES = ("nearest", "transpose")


# ---------------------------------------------------------------------- instance normalisation
# ------------------------------------------------------------------ the random feature network
class FilterBank(nn.Module):
    """Convolutions of several kernel sizes side by side (``k3``, ``k5``, ...; each padded to keep
    the size), concatenated along the channels, then ``relu``."""

    def __init__(self, in_channels, width, kernel_sizes):
        super().__init__()
        self.kernel_sizes = tuple(kernel_sizes)
        for k in self.kernel_sizes:
            setattr(self, f"k{k}", nn.Conv2d(in_channels, width, k, padding=k // 2))
        self.relu = nn.ReLU()

    def forward(self, x):
        outs = [getattr(self, f"k{k}")(x) for k in self.kernel_sizes]
        return self.relu(outs[0] if len(outs) == 1 else cat(outs, dim=1))


class RandomFeatures(nn.Module):
    """The random multi-scale feature network (see the module docstring):
    ``RandomFeatures(seed=0, kernel_sizes=(3, 5, 7, 11), width=32, scales=4, in_channels=3)``."""

    def __init__(self, seed: int = 0, kernel_sizes=(3, 5, 7, 11), width: int = 32,
                 scales: int = 4, in_channels: int = 3):
        super().__init__()
        owner = "style_features"
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{owner}: seed must be an int >= 0, got {seed!r}")
        if isinstance(kernel_sizes, int):
            kernel_sizes = (kernel_sizes,)
        sizes = tuple(kernel_sizes)
        if not sizes or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0
                            for k in sizes) or len(set(sizes)) != len(sizes):
            raise ValueError(f"{owner}: kernel_sizes must be distinct odd positive ints (e.g. 3, "
                             f"5, 7, 11), got {kernel_sizes!r}")
        self.seed, self.kernel_sizes = seed, sizes
        self.width = positive(owner, "width", width)
        self.scales = positive(owner, "scales", scales)
        self.in_channels = positive(owner, "in_channels", in_channels)
        for s in range(self.scales):
            if s:
                setattr(self, f"pool{s}", nn.AvgPool2d(2))
            setattr(self, f"scale{s}", FilterBank(in_channels, self.width, sizes))
        rng = numpy_rng(Generator(seed))
        for s in range(self.scales):
            for k in sizes:
                conv = getattr(getattr(self, f"scale{s}"), f"k{k}")
                fan_in = in_channels * k * k
                w = rng.standard_normal(conv.weight.shape) * (2.0 / fan_in) ** 0.5
                conv.weight.data[...] = w.astype(conv.weight.data.dtype)
                conv.bias.data[...] = 0
        self.default_content_layer = f"scale{min(2, self.scales - 1)}"
        self.default_style_layers = [f"scale{s}" for s in range(self.scales)]

    @property
    def description(self) -> str:
        ks = ", ".join(map(str, self.kernel_sizes))
        return (f"random multi-scale CNN (seed {self.seed}: kernels {ks}, {self.width} filters "
                f"each, ReLU, at {self.scales} scale{'s' * (self.scales != 1)} by 2x2 average "
                "pooling of the image)")

    def extra_repr(self) -> str:
        return (f"seed={self.seed}, kernel_sizes={self.kernel_sizes}, width={self.width}, "
                f"scales={self.scales}")

    def forward(self, x):
        shape = tuple(getattr(x, "shape", ()))
        if getattr(x, "ndim", None) != 4 or shape[1] != self.in_channels:
            raise ValueError(f"style_features: expected images (N, {self.in_channels}, H, W), got "
                             f"shape {shape}")
        small = 2 ** (self.scales - 1)
        if min(shape[2:]) < small:
            raise ValueError(f"style_features: {self.scales} scales halve the image "
                             f"{self.scales - 1} times: it needs at least {small}x{small} pixels, "
                             f"got {shape[2]}x{shape[3]}")
        for s in range(self.scales):
            if s:
                x = getattr(self, f"pool{s}")(x)
            out = getattr(self, f"scale{s}")(x)
        return out


@register_model("style_features")
def style_features(seed: int = 0, kernel_sizes=(3, 5, 7, 11), width: int = 32, scales: int = 4,
                   in_channels: int = 3):
    """Random multi-scale CNN for style losses: banks of random filters of several sizes at
    several scales (He et al. 2016; Ustyuzhaninov et al. 2017), deterministic for a seed."""
    return RandomFeatures(seed, kernel_sizes, width, scales, in_channels)


# ------------------------------------------------------------------- the transformation network
class ConvLayer(nn.Module):
    """Reflection padding of k // 2, then ``conv`` (k x k, ``stride``, no padding of its own);
    ``upsample=2``: nearest-neighbour 2x upsampling first; ``upsample='transpose'``: a stride-2
    ``ConvTranspose2d`` (padding 1, output padding 1: the size doubles exactly) instead."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, upsample=1):
        super().__init__()
        self.upsample = upsample if upsample == "transpose" else int(upsample)
        if self.upsample == "transpose":
            self.pad = 0
            self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=2,
                                           padding=kernel_size // 2, output_padding=1)
        else:
            self.pad = kernel_size // 2
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride)

    def extra_repr(self) -> str:
        if self.upsample == "transpose":
            return "transposed, x2"
        return "reflect padding" + (f", nearest x{self.upsample} first" if self.upsample > 1
                                    else "")

    def forward(self, x):
        if self.upsample != "transpose" and self.upsample > 1:
            x = interpolate_nearest(x, scale_factor=self.upsample)
        if self.pad:
            p = self.pad
            x = pad(x, (p, p, p, p), mode="reflect")
        return self.conv(x)


def _norm(kind, channels):
    return nn.InstanceNorm2d(channels, affine=True) if kind == "instance" else nn.BatchNorm2d(channels)


class ResidualBlock(nn.Module):
    """conv1 (3x3), norm1, ReLU, conv2 (3x3), norm2, plus the input (no ReLU after the sum, as
    in Johnson et al.'s supplementary material)."""

    def __init__(self, channels, norm):
        super().__init__()
        self.conv1, self.norm1 = ConvLayer(channels, channels, 3), _norm(norm, channels)
        self.relu = nn.ReLU()
        self.conv2, self.norm2 = ConvLayer(channels, channels, 3), _norm(norm, channels)

    def forward(self, x):
        return x + self.norm2(self.conv2(self.relu(self.norm1(self.conv1(x)))))


class TransformNet(nn.Module):
    """Johnson et al.'s image transformation network (see the module docstring):
    ``TransformNet(width=32, blocks=5, norm='instance', upsample='nearest')``; images (N, 3, H,
    W) in [0, 1] to images of the same shape in [0, 1]."""

    def __init__(self, width: int = 32, blocks: int = 5, norm: str = "instance",
                 upsample: str = "nearest"):
        super().__init__()
        owner = "transform_net"
        w = positive(owner, "width", width)
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0:
            raise ValueError(f"{owner}: blocks must be an int >= 0, got {blocks!r}")
        if norm not in NORMS:
            raise ValueError(f"{owner}: norm must be one of {', '.join(NORMS)}, got {norm!r}")
        if upsample not in UPSAMPLES:
            raise ValueError(f"{owner}: upsample must be one of {', '.join(UPSAMPLES)}, got "
                             f"{upsample!r}")
        self.width, self.blocks, self.norm, self.upsample = w, blocks, norm, upsample
        up = 2 if upsample == "nearest" else "transpose"
        self.conv1, self.norm1 = ConvLayer(3, w, 9), _norm(norm, w)
        self.conv2, self.norm2 = ConvLayer(w, 2 * w, 3, stride=2), _norm(norm, 2 * w)
        self.conv3, self.norm3 = ConvLayer(2 * w, 4 * w, 3, stride=2), _norm(norm, 4 * w)
        self.res = nn.Sequential(*[ResidualBlock(4 * w, norm) for _ in range(blocks)])
        self.up1, self.norm4 = ConvLayer(4 * w, 2 * w, 3, upsample=up), _norm(norm, 2 * w)
        self.up2, self.norm5 = ConvLayer(2 * w, w, 3, upsample=up), _norm(norm, w)
        self.conv_out = ConvLayer(w, 3, 9)
        self.relu = nn.ReLU()

    def extra_repr(self) -> str:
        return (f"width={self.width}, blocks={self.blocks}, norm={self.norm!r}, "
                f"upsample={self.upsample!r}")

    def forward(self, x):
        shape = tuple(getattr(x, "shape", ()))
        if getattr(x, "ndim", None) != 4 or shape[1] != 3:
            raise ValueError(f"transform_net: expected RGB images (N, 3, H, W), got shape {shape}")
        h, w = shape[2:]
        if min(h, w) < 8:
            raise ValueError(f"transform_net: images of at least 8x8 pixels, got {h}x{w}")
        ph, pw = -h % 4, -w % 4
        if ph or pw:  # two stride-2 convolutions and two 2x upsamplings: a multiple of 4
            x = pad(x, (0, pw, 0, ph), mode="reflect")
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        y = self.relu(self.norm3(self.conv3(y)))
        y = self.res(y)
        y = self.relu(self.norm4(self.up1(y)))
        y = self.relu(self.norm5(self.up2(y)))
        y = sigmoid(self.conv_out(y))
        if ph or pw:
            y = y[:, :, :h, :w]
        return y


@register_model("transform_net")
def transform_net(width: int = 32, blocks: int = 5, norm: str = "instance",
                  upsample: str = "nearest"):
    """Johnson et al. 2016 feed-forward stylisation network: downsampling convolutions, residual
    blocks, nearest upsampling + convolution, instance normalisation; images in [0, 1] out."""
    return TransformNet(width, blocks, norm, upsample)
