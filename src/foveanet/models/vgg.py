"""VGG (Simonyan & Zisserman 2015), configurations A (11), B (13), D (16), E (19), with and
without batch normalisation, in torchvision's layout."""
from __future__ import annotations

from .. import nn
from .registry import register_model

CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


def make_layers(cfg, batch_norm: bool = False, in_channels: int = 3):
    """3x3 convolutions (padding 1) + [BatchNorm] + ReLU per number, 2x2 max pool per 'M'."""
    layers = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """``features`` (from ``make_layers``), ``avgpool`` (adaptive 7x7), ``classifier``
    (25088-4096, ReLU, Dropout, 4096-4096, ReLU, Dropout, 4096-classes), initialised as
    torchvision does (Kaiming-normal fan-out convolutions, N(0, 0.01) linear layers, zero biases).
    Inputs of 32x32 or more (five halvings)."""

    def __init__(self, features, num_classes: int = 1000, init_weights: bool = True,
                 dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes))
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0.0, 0.01)
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.reshape(x.shape[0], -1))


def _vgg(cfg, batch_norm, num_classes, in_channels, dropout, init_weights):
    return VGG(make_layers(CFGS[cfg], batch_norm, in_channels), num_classes=num_classes,
               init_weights=init_weights, dropout=dropout)


def _register(name, cfg, bn, count):
    def build(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5,
              init_weights: bool = True):
        return _vgg(cfg, bn, num_classes, in_channels, dropout, init_weights)
    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f"VGG configuration {cfg}{' with batch normalisation' if bn else ''} "
                     f"(torchvision layout; {count:,} parameters with 1000 classes).")
    return register_model(name)(build)


vgg11 = _register("vgg11", "A", False, 132_863_336)
vgg11_bn = _register("vgg11_bn", "A", True, 132_868_840)
vgg13 = _register("vgg13", "B", False, 133_047_848)
vgg13_bn = _register("vgg13_bn", "B", True, 133_053_736)
vgg16 = _register("vgg16", "D", False, 138_357_544)
vgg16_bn = _register("vgg16_bn", "D", True, 138_365_992)
vgg19 = _register("vgg19", "E", False, 143_667_240)
vgg19_bn = _register("vgg19_bn", "E", True, 143_678_248)
