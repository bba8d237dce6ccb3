"""Slide "ResNet (Residual NN)": y = F(x, {W_i}) + x, a bypass around each pair of layers, so
the gradient reaches the first layers of very deep networks.

``fv.models.resnet`` holds the blocks (``BasicBlock``, ``Bottleneck``, ``CifarBasicBlock``) and
the networks: ``resnet18`` ... ``resnet152`` (ImageNet), ``resnet20`` ... ``resnet1202`` (CIFAR,
6n+2 layers), ``preact_resnet``, ``wide_resnet``. Here: the same 30 tanh layers with and without
bypasses, the gradient that reaches the input, and the CIFAR ResNets' parameter counts.

    python examples/lecture/25_resnet.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn as nn


class Residual(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x) + x                        # y = F(x) + x


def input_gradient(residual, depth=30, width=16):
    fv.manual_seed(0)
    layers = [nn.Sequential(nn.Linear(width, width), nn.Tanh()) for _ in range(depth)]
    for layer in layers:
        w = layer[0].weight
        with fv.no_grad():
            w *= 0.5                                # small weights: tanh' and W shrink the gradient
    net = nn.Sequential(*[Residual(m) if residual else m for m in layers])
    x = fv.randn(8, width, requires_grad=True)
    net(x).sum().backward()
    return float(np.abs(x.grad.numpy()).mean())


def main():
    plain, res = input_gradient(False), input_gradient(True)
    print(f"30 layers, mean |dE/dx| at the input: plain {plain:.2e}, with bypasses {res:.2e}")
    counts = {}
    for depth in (20, 56, 110):
        model = fv.models.create(f"resnet{depth}")
        counts[depth] = sum(p.numel() for p in model.parameters())
        print(f"resnet{depth} (CIFAR, 6n+2 = {depth} layers): {counts[depth]:,} parameters")
    with fv.no_grad():
        out = fv.models.resnet20(in_channels=1).eval()(fv.randn(2, 1, 28, 28))
    print(f"resnet20(in_channels=1) on two 28x28 images -> {tuple(out.shape)}")
    return {"grad_plain": plain, "grad_residual": res, "params": counts, "out_shape": tuple(out.shape)}


if __name__ == "__main__":
    main()
