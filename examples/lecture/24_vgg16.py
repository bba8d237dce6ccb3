"""Slides "Other Architectures" and "VGG16": only 3x3 kernels (AlexNet: 11x11 and 5x5), 13
convolutions and 3 fully connected layers, 138 million parameters.

``fv.models.vgg16`` (also vgg11/13/19 and the ``_bn`` variants) has torchvision's layers and
names: 138,357,544 parameters, so torchvision's weights load with ``load_state_dict``;
``foveanet summary vgg16`` prints its table. Run here on one 32x32 picture (the adaptive
pooling takes 32x32 and up); building it takes a few seconds.

    python examples/lecture/24_vgg16.py
"""
import foveanet as fv
import foveanet.nn as nn


def main():
    fv.manual_seed(0)
    model = fv.models.vgg16(init_weights=False)
    n_params = sum(p.numel() for p in model.parameters())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    kernel_sizes = sorted({tuple(m.kernel_size) for m in convs})
    print(f"vgg16: {n_params:,} parameters; {len(convs)} convolutions + {len(linears)} fully "
          f"connected = {len(convs) + len(linears)} weight layers")
    print(f"kernel sizes used: {kernel_sizes}")
    with fv.no_grad():
        out = model.eval()(fv.randn(1, 3, 32, 32))
    print(f"one 3x32x32 picture -> {tuple(out.shape)} class scores")
    return {"params": n_params, "convs": len(convs), "linears": len(linears),
            "kernel_sizes": kernel_sizes, "out_shape": tuple(out.shape)}


if __name__ == "__main__":
    main()
