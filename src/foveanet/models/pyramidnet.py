"""Deep pyramidal residual networks (Han, Kim & Kim 2017), CIFAR form, after the authors' code."""
from __future__ import annotations

from .. import nn
from ..nn import functional as F
from .registry import register_model


def _pad_channels(x, channels):
    extra = channels - x.shape[1]
    return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra > 0 else x


class PyramidBasicBlock(nn.Module):
    """BN-conv3x3-BN-ReLU-conv3x3-BN plus a zero-padded identity (average pooled 2x2 where the
    block strides): no ReLU after the addition, no projection shortcuts."""
    outchannel_ratio = 1

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.AvgPool2d(2, 2, ceil_mode=True) if stride != 1 else None

    def forward(self, x):
        out = self.conv1(self.bn1(x))
        out = self.bn3(self.conv2(self.relu(self.bn2(out))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + _pad_channels(shortcut, out.shape[1])


class PyramidBottleneck(nn.Module):
    """BN-conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1 (x4)-BN plus the zero-padded identity."""
    outchannel_ratio = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.AvgPool2d(2, 2, ceil_mode=True) if stride != 1 else None

    def forward(self, x):
        out = self.conv1(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.bn4(self.conv3(self.relu(self.bn3(out))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + _pad_channels(shortcut, out.shape[1])


class PyramidNet(nn.Module):
    """conv3x3 (16), BN, then three stages of N blocks (N = (depth-2)/6 basic or (depth-2)/9
    bottleneck) whose width grows by alpha / (3N) at every block (additive pyramid, rounded),
    stride 2 at stages 2 and 3; final BN-ReLU, global average pool, fc."""

    def __init__(self, depth: int = 110, alpha: float = 48, bottleneck: bool = False,
                 num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        block = PyramidBottleneck if bottleneck else PyramidBasicBlock
        per = 9 if bottleneck else 6
        if (depth - 2) % per:
            raise ValueError(f"PyramidNet depth must be {per}n+2 with "
                             f"{'bottleneck' if bottleneck else 'basic'} blocks, got {depth}")
        n = (depth - 2) // per
        self.addrate = alpha / (3 * n)
        self.input_dim = 16
        self.featuremap_dim = 16.0
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(block, n, 1)
        self.layer2 = self._make_layer(block, n, 2)
        self.layer3 = self._make_layer(block, n, 2)
        self.bn_final = nn.BatchNorm2d(self.input_dim)
        self.relu_final = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.input_dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, n, stride):
        layers = []
        for i in range(n):
            self.featuremap_dim += self.addrate
            planes = int(round(self.featuremap_dim))
            layers.append(block(self.input_dim, planes, stride if i == 0 else 1))
            self.input_dim = planes * block.outchannel_ratio
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(self.relu_final(self.bn_final(x)))
        return self.fc(x.reshape(x.shape[0], -1))


@register_model("pyramidnet")
def pyramidnet(depth: int = 110, alpha: float = 48, bottleneck: bool = False, num_classes: int = 10,
               in_channels: int = 3):
    """PyramidNet of Han et al. 2017 with additive widening by alpha, as the authors' code builds it.

    Their Table 4 lists depth 110 alpha 48/84/270 = 1.7M/3.8M/28.3M and, with bottlenecks, depth
    164 alpha 270 = 27.0M, depth 272 alpha 200 = 26.0M parameters; the authors' code (and this
    one) gives 1.77M/3.90M/28.49M/27.22M/26.21M (docs/MODELS.md)."""
    return PyramidNet(depth, alpha, bottleneck, num_classes, in_channels)
