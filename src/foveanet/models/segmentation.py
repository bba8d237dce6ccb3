"""Networks that label every pixel: SegNet and U-Net. Both take (N, C, H, W) images and return
(N, num_classes, H, W) class scores (no softmax: the segmentation task's loss is a per-pixel
cross entropy on the scores).

- ``segnet``: Badrinarayanan, Kendall & Cipolla's SegNet (2017). The encoder is VGG16's 13 3x3
  convolutions (each Conv-BN-ReLU; widths 64, 64 | 128, 128 | 256 x 3 | 512 x 3 | 512 x 3) with
  a 2x2 stride-2 max pooling after each of the five stages that keeps *where* each maximum was
  (``return_indices=True``). The decoder mirrors it: each stage starts with a ``MaxUnpool2d`` that
  puts the values back at the remembered positions of the matching encoder stage (zeros
  elsewhere: a sparse map, which the decoder's convolutions fill in; no learned upsampling and
  no copied feature maps, the memory saving over U-Net and FCN), then its Conv-BN-ReLU layers,
  the last of each stage narrowing to the width of the stage below. A final 3x3 convolution
  gives the class scores. Each unpooling is given the size its encoder stage had, so any input
  of at least 32x32 works (360x480 CamVid frames pool to 11x15 and come back to 360x480).
  The names show VGG16: ``enc1.conv1_1`` ... ``enc5.conv5_3``, the decoder ``dec5.conv5_3_D``
  ... ``dec1.conv1_2_D`` (the paper's Caffe names), each a ``conv``, ``bn``, ``relu``;
  ``classifier``. With 11 classes (CamVid) it has 29,449,355 parameters: 14.72M in the encoder
  (VGG16's convolutions, 14,714,688, plus BN), 14.73M in the decoder, the paper's "29.5M".
- ``segnet_small``: the same design with ``depth`` stages of two Conv-BN-ReLU layers of widths
  ``width`` * 2^i, for 28-96 pixel images; height and width must be divisible by 2^depth
  (28x28 with depth=2, 32x32 or 64x64 with depth=3).
- ``unet``: Ronneberger, Fischer & Brox's U-Net (2015) with padded 3x3 convolutions, so the
  output has the input's size: per level two Conv-BN-ReLU layers; ``depth`` 2x2 max poolings
  down, the widths doubling (``width`` ... ``width`` * 2^depth at the bottom), then per level a
  2x2 stride-2 ``ConvTranspose2d`` up (halving the width), the encoder's feature map of that
  level concatenated along the channels (``fv.cat``: the skip connection), two Conv-BN-ReLU; a
  final 1x1 convolution to the scores. The paper's network is ``unet(width=64, depth=4)``
  (31.0M parameters with BN). Height and width must be divisible by 2^depth.
"""
from __future__ import annotations

from collections import OrderedDict

from .. import nn
from ..ops import cat
from .autoencoder import check_images, positive
from .registry import register_model

__all__ = ["SegNet", "UNet", "ConvBNReLU", "segnet", "segnet_small", "unet", "VGG16_STAGES"]

# VGG16's convolution widths, stage by stage (configuration D of Simonyan & Zisserman)
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class ConvBNReLU(nn.Module):
    """3x3 convolution (padding 1: the size is kept), batch normalisation, ReLU."""

    def __init__(self, in_channels, out_channels, bias=True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


def _divisible(owner, x, depth):
    h, w = x.shape[2:]
    k = 2 ** depth
    if h % k or w % k:
        fits = [d for d in range(depth - 1, 0, -1) if h % 2 ** d == 0 and w % 2 ** d == 0]
        hint = f" (depth={fits[0]} would take them)" if fits else ""
        raise ValueError(f"{owner}: {h}x{w} images do not halve exactly {depth} times: height "
                         f"and width must be divisible by 2^{depth} = {k}{hint}; or pad/resize "
                         f"the images (to {-(-h // k) * k}x{-(-w // k) * k})")


class SegNet(nn.Module):
    """Encoder stages ``enc1`` ... ``encK`` (Conv-BN-ReLU layers ``conv{s}_{j}``), each followed
    by ``pool`` (2x2, stride 2, with indices); decoder stages ``decK`` ... ``dec1``, each after
    ``unpool`` (by the matching stage's indices, to its size), with layers ``conv{s}_{j}_D``;
    ``classifier`` (3x3 convolution to ``num_classes``). ``stages``: the encoder's widths per
    stage. ``exact_sizes``: refuse images whose sides are not divisible by 2^K (segnet_small);
    otherwise any size of at least 2^K works."""

    def __init__(self, num_classes=11, in_channels=3, stages=VGG16_STAGES, exact_sizes=False,
                 name="segnet"):
        super().__init__()
        self._owner = name
        self.num_classes = positive(name, "num_classes", num_classes)
        self.in_channels = positive(name, "in_channels", in_channels)
        self.stages = tuple(tuple(int(v) for v in s) for s in stages)
        self.exact_sizes = bool(exact_sizes)
        c = self.in_channels
        for s, widths in enumerate(self.stages, 1):
            layers = OrderedDict()
            for j, v in enumerate(widths, 1):
                layers[f"conv{s}_{j}"] = ConvBNReLU(c, v)
                c = v
            self.add_module(f"enc{s}", nn.Sequential(layers))
        for s in range(len(self.stages), 0, -1):
            widths = self.stages[s - 1]
            below = self.stages[s - 2][-1] if s > 1 else None  # dec1 keeps its width
            outs = list(widths[-2::-1]) + ([below] if below is not None else [])
            layers, c = OrderedDict(), widths[-1]
            for j, v in zip(range(len(widths), 0, -1), outs):
                layers[f"conv{s}_{j}_D"] = ConvBNReLU(c, v)
                c = v
            self.add_module(f"dec{s}", nn.Sequential(layers))
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.classifier = nn.Conv2d(c, self.num_classes, 3, padding=1)

    def forward(self, x):
        k = len(self.stages)
        check_images(self._owner, x, self.in_channels)
        h, w = x.shape[2:]
        if self.exact_sizes:
            _divisible(self._owner, x, k)
        elif min(h, w) < 2 ** k:
            raise ValueError(f"{self._owner}: {h}x{w} images are too small for {k} 2x2 poolings: "
                             f"both sides must be at least {2 ** k}")
        memory = []
        for s in range(1, k + 1):
            x = getattr(self, f"enc{s}")(x)
            size = tuple(x.shape[2:])
            x, idx = self.pool(x)
            memory.append((idx, size))
        for s in range(k, 0, -1):
            idx, size = memory[s - 1]
            x = getattr(self, f"dec{s}")(self.unpool(x, idx, output_size=size))
        return self.classifier(x)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, stages={len(self.stages)}"


@register_model("segnet")
def segnet(num_classes=11, in_channels=3):
    """SegNet (Badrinarayanan et al. 2017): VGG16 encoder, decoder upsampling by the pooling
    indices; 11 classes as CamVid."""
    return SegNet(num_classes, in_channels, VGG16_STAGES, exact_sizes=False, name="segnet")


@register_model("segnet_small")
def segnet_small(num_classes=11, in_channels=1, width=16, depth=3):
    """Small SegNet: ``depth`` stages of two Conv-BN-ReLU layers (widths ``width`` * 2^i) for
    28-96 pixel images; sides divisible by 2^depth."""
    owner = "segnet_small"
    width, depth = positive(owner, "width", width), positive(owner, "depth", depth)
    stages = [(width * 2 ** i,) * 2 for i in range(depth)]
    return SegNet(num_classes, in_channels, stages, exact_sizes=True, name=owner)


def double_conv(in_channels, out_channels):
    """Two Conv-BN-ReLU (3x3, padding 1; no convolution bias: the normalisation has one)."""
    return nn.Sequential(OrderedDict(block1=ConvBNReLU(in_channels, out_channels, bias=False),
                                     block2=ConvBNReLU(out_channels, out_channels, bias=False)))


class UNet(nn.Module):
    """``enc0`` ... ``enc{depth-1}`` (two Conv-BN-ReLU each) with a 2x2 max pooling after each,
    ``bottleneck``, then per level from the bottom ``up{i}`` (ConvTranspose2d 2x2 stride 2,
    halving the channels), the concatenation [enc_i's output, upsampled] and ``dec{i}``; ``head``
    (1x1 convolution to ``num_classes``). ``residual=True`` (an image-to-image net, as
    DnCNN: Zhang et al. 2017) returns the input plus the head's output, so the layers learn
    the correction (for a denoiser, the noise) rather than the whole image; it needs
    ``num_classes == in_channels``."""

    def __init__(self, num_classes=11, in_channels=1, width=16, depth=3, residual=False):
        super().__init__()
        owner = self._owner = "unet"
        self.num_classes = positive(owner, "num_classes", num_classes)
        self.in_channels = positive(owner, "in_channels", in_channels)
        if not isinstance(residual, bool):
            raise TypeError(f"{owner}: residual must be True or False, got {residual!r}")
        if residual and self.num_classes != self.in_channels:
            raise ValueError(f"{owner}: residual=True adds the input to the output, so it needs "
                             f"num_classes == in_channels; got num_classes={self.num_classes}, "
                             f"in_channels={self.in_channels}")
        self.residual = residual
        width, self.depth = positive(owner, "width", width), positive(owner, "depth", depth)
        c = self.in_channels
        for i in range(self.depth):
            self.add_module(f"enc{i}", double_conv(c, width * 2 ** i))
            c = width * 2 ** i
        self.pool = nn.MaxPool2d(2, 2)
        self.bottleneck = double_conv(c, width * 2 ** self.depth)
        for i in range(self.depth - 1, -1, -1):
            v = width * 2 ** i
            self.add_module(f"up{i}", nn.ConvTranspose2d(2 * v, v, 2, stride=2))
            self.add_module(f"dec{i}", double_conv(2 * v, v))
        self.head = nn.Conv2d(width, self.num_classes, 1)

    def forward(self, x):
        check_images(self._owner, x, self.in_channels)
        _divisible(self._owner, x, self.depth)
        image, skips = x, []
        for i in range(self.depth):
            x = getattr(self, f"enc{i}")(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for i in range(self.depth - 1, -1, -1):
            x = getattr(self, f"up{i}")(x)
            x = getattr(self, f"dec{i}")(cat([skips[i], x], 1))
        return image + self.head(x) if self.residual else self.head(x)

    def extra_repr(self) -> str:
        extra = ", residual=True" if self.residual else ""
        return f"num_classes={self.num_classes}, depth={self.depth}{extra}"


@register_model("unet")
def unet(num_classes=11, in_channels=1, width=16, depth=3, residual=False):
    """U-Net (Ronneberger et al. 2015) with padded convolutions: ``depth`` poolings, skip
    connections by concatenation; sides divisible by 2^depth. ``residual``: output = input +
    the net's correction (image-to-image use, e.g. a denoiser)."""
    return UNet(num_classes, in_channels, width, depth, residual)
