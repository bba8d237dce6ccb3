"""Residual networks.

- ImageNet ResNets (He, Zhang, Ren & Sun 2016, "Deep Residual Learning"): resnet18/34 (basic
  blocks), resnet50/101/152 (bottleneck blocks), in torchvision's layout and defaults (stride in
  the 3x3 convolution of the bottleneck, "ResNet v1.5"; projection shortcuts ``downsample.0/.1``).
- CIFAR ResNets of the same paper (section 4.2): resnet20/32/44/56/110/1202, 6n+2 layers, widths
  16-32-64, parameter-free shortcuts (option A: subsample and pad the channels with zeros).
- Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks"):
  ``preact_resnet(depth)``, basic blocks for depth 9n+2 ... (110) and bottleneck blocks for
  164 / 1001.
- Wide ResNets (Zagoruyko & Komodakis 2016): ``wide_resnet(depth, widen_factor)``, WRN-d-k.
"""
from __future__ import annotations

from .. import nn
from ..nn import functional as F
from .registry import register_model


def conv3x3(cin, cout, stride=1, groups=1, dilation=1):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=dilation, groups=groups,
                     bias=False, dilation=dilation)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


def _init_convs_and_norms(model):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _flatten(x):
    return x.reshape(x.shape[0], -1)


# ------------------------------------------------------------------------------ ImageNet ResNets
class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm; the input is added before the last ReLU."""
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 (reduce to ``planes``), 3x3 (stride here), 1x1 (expand to 4 planes), with BatchNorm;
    the lecture's bottleneck: 256 -> 64 -> 64 -> 256 costs about a ninth of a 3x3 256 -> 256."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet: conv1 7x7/2, bn1, relu, maxpool 3x3/2, layer1..layer4 (64, 128,
    256, 512 planes; stride 2 from layer2 on), adaptive average pool, fc. Any input of 32x32 or
    more works (the pool is adaptive); 224x224 is the native size."""

    def __init__(self, block, layers, num_classes: int = 1000, zero_init_residual: bool = False,
                 groups: int = 1, width_per_group: int = 64, in_channels: int = 3):
        super().__init__()
        self.inplanes, self.dilation = 64, 1
        self.groups, self.base_width = groups, width_per_group
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        _init_convs_and_norms(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups, base_width=self.base_width))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(_flatten(self.avgpool(x)))


_IMAGENET = {"resnet18": (BasicBlock, [2, 2, 2, 2], 11_689_512),
             "resnet34": (BasicBlock, [3, 4, 6, 3], 21_797_672),
             "resnet50": (Bottleneck, [3, 4, 6, 3], 25_557_032),
             "resnet101": (Bottleneck, [3, 4, 23, 3], 44_549_160),
             "resnet152": (Bottleneck, [3, 8, 36, 3], 60_192_808)}


def _register_imagenet(name):
    block, layers, count = _IMAGENET[name]

    def build(num_classes: int = 1000, in_channels: int = 3, zero_init_residual: bool = False):
        return ResNet(block, layers, num_classes=num_classes, zero_init_residual=zero_init_residual,
                      in_channels=in_channels)
    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f"ResNet-{name[6:]} for ImageNet ({block.__name__} blocks {layers}; torchvision "
                     f"layout, {count:,} parameters with 1000 classes).")
    return register_model(name)(build)


resnet18 = _register_imagenet("resnet18")
resnet34 = _register_imagenet("resnet34")
resnet50 = _register_imagenet("resnet50")
resnet101 = _register_imagenet("resnet101")
resnet152 = _register_imagenet("resnet152")


# --------------------------------------------------------------------------------- CIFAR ResNets
class ShortcutA(nn.Module):
    """He et al.'s option A: keep every ``stride``-th pixel and pad the new channels with zeros
    (no parameters)."""

    def __init__(self, extra_channels: int, stride: int):
        super().__init__()
        self.extra, self.stride = extra_channels, stride

    def forward(self, x):
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


class CifarBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (ShortcutA(planes - inplanes, stride)
                         if stride != 1 or inplanes != planes else nn.Identity())

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al. 2016, section 4.2: conv3x3 (16), three stages of n basic blocks at 16, 32, 64
    channels (stride 2 at the start of stages 2 and 3), global average pool, fc: 6n+2 layers.
    For 32x32 inputs (feature maps 32, 16, 8) and 28x28 (28, 14, 7)."""

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, 1202), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = 16
        self.layer1 = self._make_layer(16, n, 1)
        self.layer2 = self._make_layer(32, n, 2)
        self.layer3 = self._make_layer(64, n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        _init_convs_and_norms(self)

    def _make_layer(self, planes, n, stride):
        layers = []
        for i in range(n):
            layers.append(CifarBasicBlock(self.inplanes, planes, stride if i == 0 else 1))
            self.inplanes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(_flatten(self.avgpool(x)))


@register_model("resnet_cifar")
def resnet_cifar(depth: int = 20, num_classes: int = 10, in_channels: int = 3):
    """CIFAR ResNet of depth 6n+2 (He et al. 2016, option A shortcuts)."""
    return CifarResNet(depth, num_classes, in_channels)


def _register_cifar(depth, published):
    name = f"resnet{depth}"

    def build(num_classes: int = 10, in_channels: int = 3):
        return CifarResNet(depth, num_classes, in_channels)
    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"CIFAR ResNet-{depth}, {published} parameters in He et al. 2016 (Table 6)."
    return register_model(name)(build)


resnet20 = _register_cifar(20, "0.27M")
resnet32 = _register_cifar(32, "0.46M")
resnet44 = _register_cifar(44, "0.66M")
resnet56 = _register_cifar(56, "0.85M")
resnet110 = _register_cifar(110, "1.7M")
resnet1202 = _register_cifar(1202, "19.4M")


# ----------------------------------------------------------------------- pre-activation ResNets
class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv3x3-(Dropout)-BN-ReLU-conv3x3 plus the identity (a 1x1 projection of the
    pre-activated input where the shape changes). Dropout (Wide ResNet's) only when
    ``dropout_rate > 0``."""
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, dropout_rate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else None
        self.shortcut = (conv1x1(inplanes, planes, stride)
                         if stride != 1 or inplanes != planes else None)

    def forward(self, x):
        out = self.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(out)
        out = self.relu(self.bn2(self.conv1(out)))
        if self.dropout is not None:
            out = self.dropout(out)
        return self.conv2(out) + identity


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1 (planes)-BN-ReLU-conv3x3-BN-ReLU-conv1x1 (4 planes) plus the identity."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv1x1(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (conv1x1(inplanes, planes * 4, stride)
                         if stride != 1 or inplanes != planes * 4 else None)

    def forward(self, x):
        out = self.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + identity


class PreActResNet(nn.Module):
    """He et al. 2016 (identity mappings), CIFAR form: conv3x3 (16), three stages of n
    pre-activation blocks (16, 32, 64 planes; x4 outputs for bottlenecks), final BN-ReLU, global
    average pool, fc. Depth 6n+2 with basic blocks, 9n+2 with bottlenecks (default: bottlenecks
    for depths of 164 and more, as in the paper)."""

    def __init__(self, depth: int = 164, num_classes: int = 10, in_channels: int = 3,
                 bottleneck: bool | None = None):
        super().__init__()
        if bottleneck is None:
            bottleneck = depth >= 164
        block = PreActBottleneck if bottleneck else PreActBasicBlock
        per = 9 if bottleneck else 6
        if (depth - 2) % per:
            raise ValueError(f"pre-activation ResNet depth must be {per}n+2 with "
                             f"{'bottleneck' if bottleneck else 'basic'} blocks, got {depth}")
        n = (depth - 2) // per
        self.conv1 = conv3x3(in_channels, 16)
        self.inplanes = 16
        self.layer1 = self._make_layer(block, 16, n, 1)
        self.layer2 = self._make_layer(block, 32, n, 2)
        self.layer3 = self._make_layer(block, 64, n, 2)
        self.bn = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)
        _init_convs_and_norms(self)

    def _make_layer(self, block, planes, n, stride):
        layers = []
        for i in range(n):
            layers.append(block(self.inplanes, planes, stride if i == 0 else 1))
            self.inplanes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.fc(_flatten(self.avgpool(self.relu(self.bn(x)))))


@register_model("preact_resnet")
def preact_resnet(depth: int = 164, num_classes: int = 10, in_channels: int = 3, bottleneck=None):
    """Pre-activation ResNet of He et al. 2016 (identity mappings), depth 110 (basic blocks,
    1.7M), 164 (bottleneck, 1.7M) or 1001 (bottleneck, 10.2M conv and fc weights + BatchNorm)."""
    return PreActResNet(depth, num_classes, in_channels, bottleneck)


# ----------------------------------------------------------------------------- Wide ResNets
class WideBasic(PreActBasicBlock):
    """Wide ResNet's block, as in the authors' code: the pre-activation basic block with dropout
    between its two convolutions (``dropout_rate``)."""


class WideResNet(nn.Module):
    """WRN-depth-k (Zagoruyko & Komodakis 2016): conv3x3 (16), three stages of n = (depth-4)/6
    pre-activation basic blocks at 16k, 32k, 64k channels, BN-ReLU, global average pool, fc."""

    def __init__(self, depth: int = 28, widen_factor: int = 10, dropout_rate: float = 0.0,
                 num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"Wide ResNet depth must be 6n+4 (16, 22, 28, 40, ...), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = conv3x3(in_channels, widths[0])
        self.inplanes = widths[0]
        self.layer1 = self._make_layer(widths[1], n, 1, dropout_rate)
        self.layer2 = self._make_layer(widths[2], n, 2, dropout_rate)
        self.layer3 = self._make_layer(widths[3], n, 2, dropout_rate)
        self.bn = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3], num_classes)
        _init_convs_and_norms(self)

    def _make_layer(self, planes, n, stride, dropout_rate):
        layers = []
        for i in range(n):
            layers.append(WideBasic(self.inplanes, planes, stride if i == 0 else 1, dropout_rate))
            self.inplanes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.fc(_flatten(self.avgpool(self.relu(self.bn(x)))))


@register_model("wide_resnet")
def wide_resnet(depth: int = 28, widen_factor: int = 10, dropout_rate: float = 0.0,
                num_classes: int = 10, in_channels: int = 3):
    """Wide ResNet WRN-depth-widen_factor (WRN-28-10: 36.5M, WRN-40-4: 8.9M parameters)."""
    return WideResNet(depth, widen_factor, dropout_rate, num_classes, in_channels)
