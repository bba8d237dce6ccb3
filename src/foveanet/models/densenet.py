"""Densely connected networks (Huang, Liu, van der Maaten & Weinberger 2017).

- ImageNet DenseNet-BC 121/169/201 in torchvision's layout (``features.conv0``, ``norm0``,
  ``denseblock1.denselayer1.norm1`` ..., ``transition1``, ``norm5``; ``classifier``), so
  torchvision's state dicts load.
- ``densenet_bc(depth, growth_rate)``: the paper's CIFAR DenseNet-BC, three dense blocks of
  (depth - 4) / 6 bottleneck layers, compression 0.5 (k=12 L=100: 0.8M, k=24 L=250: 15.3M,
  k=40 L=190: 25.6M parameters).
"""
from __future__ import annotations

from .. import nn
from ..nn import functional as F
from ..ops import cat
from .registry import register_model


class _DenseLayer(nn.Module):
    """BN-ReLU-conv1x1 (bn_size * growth_rate) - BN-ReLU-conv3x3 (growth_rate) over the
    concatenation of every earlier feature map in the block."""

    def __init__(self, num_input_features, growth_rate, bn_size, drop_rate):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1,
                               bias=False)
        self.drop_rate = float(drop_rate)

    def forward(self, features):
        x = cat(features, 1) if isinstance(features, (list, tuple)) else features
        out = self.conv1(self.relu1(self.norm1(x)))
        out = self.conv2(self.relu2(self.norm2(out)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


class _DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers, num_input_features, bn_size, growth_rate, drop_rate):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", _DenseLayer(num_input_features + i * growth_rate,
                                                              growth_rate, bn_size, drop_rate))

    def forward(self, init_features):
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features, num_output_features):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(num_input_features))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(num_input_features, num_output_features, kernel_size=1,
                                          stride=1, bias=False))
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNet(nn.Module):
    """torchvision's DenseNet (``imagenet_stem=True``: a 7x7/2 convolution to
    ``num_init_features`` channels, BN, ReLU, 3x3/2 max pool) or the paper's CIFAR form
    (``imagenet_stem=False``: one 3x3 convolution).
    Dense blocks of ``block_config`` layers joined by transitions that keep
    floor(compression * channels); final BN (``norm5``), ReLU, global average pool,
    ``classifier``."""

    def __init__(self, growth_rate: int = 32, block_config=(6, 12, 24, 16), num_init_features: int = 64,
                 bn_size: int = 4, drop_rate: float = 0.0, num_classes: int = 1000,
                 in_channels: int = 3, imagenet_stem: bool = True, compression: float = 0.5):
        super().__init__()
        if imagenet_stem:
            stem = [("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=7, stride=2,
                                        padding=3, bias=False)),
                    ("norm0", nn.BatchNorm2d(num_init_features)), ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))]
        else:
            stem = [("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=3, padding=1,
                                        bias=False))]
        self.features = nn.Sequential()
        for name, m in stem:
            self.features.add_module(name, m)
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(
                num_layers, num_features, bn_size, growth_rate, drop_rate))
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                out = int(num_features * compression)
                self.features.add_module(f"transition{i + 1}", _Transition(num_features, out))
                num_features = out
        self.features.add_module(f"norm{len(block_config) + 1}",
                                 nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x):
        out = F.relu(self.features(x))
        out = F.adaptive_avg_pool2d(out, (1, 1))
        return self.classifier(out.reshape(out.shape[0], -1))


def _register(name, growth_rate, blocks, init, count):
    def build(num_classes: int = 1000, in_channels: int = 3, drop_rate: float = 0.0):
        return DenseNet(growth_rate, blocks, init, num_classes=num_classes, in_channels=in_channels,
                        drop_rate=drop_rate)
    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f"DenseNet-{name[8:]}-BC for ImageNet (k={growth_rate}, blocks {blocks}; "
                     f"torchvision layout, {count:,} parameters with 1000 classes).")
    return register_model(name)(build)


densenet121 = _register("densenet121", 32, (6, 12, 24, 16), 64, 7_978_856)
densenet169 = _register("densenet169", 32, (6, 12, 32, 32), 64, 14_149_480)
densenet201 = _register("densenet201", 32, (6, 12, 48, 32), 64, 20_013_928)


@register_model("densenet_bc")
def densenet_bc(depth: int = 100, growth_rate: int = 12, num_classes: int = 10, in_channels: int = 3,
                drop_rate: float = 0.0):
    """The paper's CIFAR DenseNet-BC: a 3x3 convolution to 2k channels, three dense blocks of
    (depth - 4) / 6 bottleneck layers (bn_size 4), transitions with compression 0.5 and 2x2
    average pooling. For 32x32 and 28x28 inputs."""
    if (depth - 4) % 6:
        raise ValueError(f"DenseNet-BC depth must be 6n+4 (100, 190, 250, ...), got {depth}")
    n = (depth - 4) // 6
    return DenseNet(growth_rate, (n, n, n), 2 * growth_rate, bn_size=4, drop_rate=drop_rate,
                    num_classes=num_classes, in_channels=in_channels, imagenet_stem=False)
