"""Plain-torch re-implementations of torchvision's AlexNet, VGG, ResNet and DenseNet (torchvision
itself does not run beside this torch): the same modules, state_dict keys and forward passes, so
a foveanet zoo network's weights load into its twin unchanged. Used by tests/test_models_zoo.py
and benchmarks/zoo_compare.py."""
import torch
import torch.nn as tnn


class TAlexNet(tnn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.features = tnn.Sequential(
            tnn.Conv2d(3, 64, 11, 4, 2), tnn.ReLU(), tnn.MaxPool2d(3, 2),
            tnn.Conv2d(64, 192, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(3, 2),
            tnn.Conv2d(192, 384, 3, padding=1), tnn.ReLU(), tnn.Conv2d(384, 256, 3, padding=1),
            tnn.ReLU(), tnn.Conv2d(256, 256, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(3, 2))
        self.avgpool = tnn.AdaptiveAvgPool2d((6, 6))
        self.classifier = tnn.Sequential(
            tnn.Dropout(), tnn.Linear(9216, 4096), tnn.ReLU(), tnn.Dropout(),
            tnn.Linear(4096, 4096), tnn.ReLU(), tnn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class TBasic(tnn.Module):
    expansion = 1

    def __init__(self, i, o, stride=1, downsample=None):
        super().__init__()
        self.conv1 = tnn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(o)
        self.relu = tnn.ReLU()
        self.conv2 = tnn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(o)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class TBottleneck(tnn.Module):
    expansion = 4

    def __init__(self, i, p, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = tnn.Conv2d(i, p, 1, bias=False), tnn.BatchNorm2d(p)
        self.conv2, self.bn2 = tnn.Conv2d(p, p, 3, stride, 1, bias=False), tnn.BatchNorm2d(p)
        self.conv3, self.bn3 = tnn.Conv2d(p, 4 * p, 1, bias=False), tnn.BatchNorm2d(4 * p)
        self.relu = tnn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


class TResNet(tnn.Module):
    """torchvision's ResNet, written out in plain torch."""

    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1, self.relu, self.maxpool = tnn.BatchNorm2d(64), tnn.ReLU(), tnn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make(block, 64, layers[0], 1)
        self.layer2 = self._make(block, 128, layers[1], 2)
        self.layer3 = self._make(block, 256, layers[2], 2)
        self.layer4 = self._make(block, 512, layers[3], 2)
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.fc = tnn.Linear(512 * block.expansion, num_classes)

    def _make(self, block, planes, n, stride):
        ds = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            ds = tnn.Sequential(tnn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                tnn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, ds)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, n)]
        return tnn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TDenseLayer(tnn.Module):
    def __init__(self, i, k, bn_size):
        super().__init__()
        self.norm1, self.relu1 = tnn.BatchNorm2d(i), tnn.ReLU()
        self.conv1 = tnn.Conv2d(i, bn_size * k, 1, bias=False)
        self.norm2, self.relu2 = tnn.BatchNorm2d(bn_size * k), tnn.ReLU()
        self.conv2 = tnn.Conv2d(bn_size * k, k, 3, 1, 1, bias=False)

    def forward(self, feats):
        x = torch.cat(feats, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class TDenseBlock(tnn.ModuleDict):
    def __init__(self, n, i, bn_size, k):
        super().__init__()
        for j in range(n):
            self.add_module(f"denselayer{j + 1}", TDenseLayer(i + j * k, k, bn_size))

    def forward(self, x):
        feats = [x]
        for layer in self.values():
            feats.append(layer(feats))
        return torch.cat(feats, 1)


class TDenseNet(tnn.Module):
    """torchvision's DenseNet, written out in plain torch."""

    def __init__(self, k, blocks, init, bn_size=4, num_classes=1000):
        super().__init__()
        self.features = tnn.Sequential()
        self.features.add_module("conv0", tnn.Conv2d(3, init, 7, 2, 3, bias=False))
        self.features.add_module("norm0", tnn.BatchNorm2d(init))
        self.features.add_module("relu0", tnn.ReLU())
        self.features.add_module("pool0", tnn.MaxPool2d(3, 2, 1))
        c = init
        for i, n in enumerate(blocks):
            self.features.add_module(f"denseblock{i + 1}", TDenseBlock(n, c, bn_size, k))
            c += n * k
            if i != len(blocks) - 1:
                t = tnn.Sequential()
                t.add_module("norm", tnn.BatchNorm2d(c))
                t.add_module("relu", tnn.ReLU())
                t.add_module("conv", tnn.Conv2d(c, c // 2, 1, bias=False))
                t.add_module("pool", tnn.AvgPool2d(2, 2))
                self.features.add_module(f"transition{i + 1}", t)
                c //= 2
        self.features.add_module("norm5", tnn.BatchNorm2d(c))
        self.classifier = tnn.Linear(c, num_classes)

    def forward(self, x):
        out = torch.relu(self.features(x))
        return self.classifier(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(out, 1), 1))


class TVGG(tnn.Module):
    """torchvision's VGG (without batch norm), written out in plain torch: ``cfg`` as
    ``foveanet.models.vgg``'s (channel counts and "M" for a max pooling)."""

    def __init__(self, cfg, num_classes=1000):
        super().__init__()
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(tnn.MaxPool2d(2, 2))
            else:
                layers += [tnn.Conv2d(c, v, 3, padding=1), tnn.ReLU()]
                c = v
        self.features = tnn.Sequential(*layers)
        self.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
        self.classifier = tnn.Sequential(
            tnn.Linear(512 * 7 * 7, 4096), tnn.ReLU(), tnn.Dropout(),
            tnn.Linear(4096, 4096), tnn.ReLU(), tnn.Dropout(), tnn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def twin(name, num_classes=1000):
    """The plain-torch twin of a foveanet zoo network (same state_dict keys and shapes)."""
    return {"alexnet": lambda: TAlexNet(num_classes),
            "vgg16": lambda: TVGG(VGG16, num_classes),
            "resnet18": lambda: TResNet(TBasic, [2, 2, 2, 2], num_classes),
            "resnet50": lambda: TResNet(TBottleneck, [3, 4, 6, 3], num_classes),
            "densenet121": lambda: TDenseNet(32, (6, 12, 24, 16), 64, num_classes=num_classes),
            }[name]()
