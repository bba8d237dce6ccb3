"""Slide "AlexNet (2012)": the network that first beat the other computer-vision techniques.

``fv.models.alexnet`` is torchvision's one-tower AlexNet (five convolutions with 11x11, 5x5 and
3x3 kernels, three fully connected layers, ReLU, dropout): 61,100,840 parameters, the same
count and module names as torchvision's, so its weights load. Its adaptive pooling lets it run
on inputs from 63x63 up; here one 64x64 picture goes through it.

    python examples/lecture/07_alexnet.py
"""
import foveanet as fv
import foveanet.nn as nn


def main():
    fv.manual_seed(0)
    model = fv.models.alexnet().eval()
    n_params = sum(p.numel() for p in model.parameters())
    kernels = [m.kernel_size for m in model.modules() if isinstance(m, nn.Conv2d)]
    with fv.no_grad():
        out = model(fv.randn(1, 3, 64, 64))
    print(f"alexnet: {n_params:,} parameters")
    print(f"convolution kernels: {kernels}")
    print(f"one 3x64x64 picture -> {tuple(out.shape)} class scores")
    return {"params": n_params, "kernels": [tuple(k) for k in kernels], "out_shape": tuple(out.shape)}


if __name__ == "__main__":
    main()
