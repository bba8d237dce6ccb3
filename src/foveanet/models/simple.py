"""Small networks for 28x28 grey images (and any size via ``input_size``): the lecture's MLP,
LeNet-5, and the batch-normalised CNN that ``foveanet train`` uses by default."""
from __future__ import annotations

from .. import nn
from .registry import register_model


@register_model("mlp")
def mlp(num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
        hidden: tuple = (512, 512), dropout: float = 0.0):
    """A fully connected network: Flatten, [Linear, ReLU, (Dropout)] per hidden width, Linear."""
    layers, width = [nn.Flatten()], in_channels * input_size * input_size
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@register_model("lenet5")
def lenet5(num_classes: int = 10, in_channels: int = 1, input_size: int = 28):
    """LeNet-5 (LeCun et al. 1998) in its common modern form: conv 5x5 (6, padding 2 so that 28x28
    input gives the paper's 28x28 C1 map), ReLU, 2x2 max pool, conv 5x5 (16), ReLU, max pool, then
    120-84-classes fully connected. Departures from the paper: ReLU instead of scaled tanh, max
    pooling instead of trainable subsampling, full C3 connectivity, a plain linear output instead
    of the RBF layer."""
    side = ((input_size + 4 - 4) // 2 - 4) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes))


def _conv_bn(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


@register_model("cnn_bn")
def cnn_bn(num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
           width: int = 32, hidden: int = 256, dropout: float = 0.25):
    """Two VGG-style stages of [conv 3x3, BatchNorm, ReLU] x 2 + 2x2 max pool (width, then 2x width
    channels), Dropout, Linear(hidden), ReLU, Linear(classes). With width 32 it is the benchmark's
    ``cnn-bn``. Convolutions feeding BatchNorm have no bias (BN's shift replaces it)."""
    side = input_size // 4
    return nn.Sequential(
        *_conv_bn(in_channels, width), *_conv_bn(width, width), nn.MaxPool2d(2),
        *_conv_bn(width, 2 * width), *_conv_bn(2 * width, 2 * width), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * width * side * side, hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes))
