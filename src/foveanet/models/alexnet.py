"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) in torchvision's one-tower form."""
from __future__ import annotations

from .. import nn
from .registry import register_model


class AlexNet(nn.Module):
    """torchvision's AlexNet: ``features`` (five convolutions 64-192-384-256-256, three 3x3/2 max
    pools), ``avgpool`` (adaptive, 6x6), ``classifier`` (Dropout, 9216-4096, ReLU, Dropout,
    4096-4096, ReLU, 4096-classes). The same module names, so torchvision's state dicts load.
    It is the single-GPU variant of the paper's two-tower net (64/192 instead of 96/256 filters
    in the first two layers) and, like torchvision, omits the paper's local response
    normalisation; ``lrn=True`` puts ``LocalResponseNorm(5, 1e-4, 0.75, 2)`` after the first two
    ReLUs as in the paper (this shifts the indices in ``features``). Inputs of 63x63 or more."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, in_channels: int = 3,
                 lrn: bool = False):
        super().__init__()
        norm = (lambda: [nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)]) if lrn else list
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            *norm(), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            *norm(), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.reshape(x.shape[0], -1))


@register_model("alexnet")
def alexnet(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5, lrn: bool = False):
    """AlexNet (torchvision layout; 61,100,840 parameters with 1000 classes)."""
    return AlexNet(num_classes=num_classes, dropout=dropout, in_channels=in_channels, lrn=lrn)
