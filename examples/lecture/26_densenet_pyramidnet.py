"""Slide "DenseNet, PyramidNet": bypasses between all the layers of a block (DenseNet: each layer
sees every earlier feature map, concatenated) and a width that grows a little at every block
(PyramidNet); the slide's table lists their CIFAR parameter counts.

``fv.models.densenet_bc(depth, growth_rate)`` (and ``densenet121/169/201``) and
``fv.models.pyramidnet(depth, alpha, bottleneck)``. DenseNet-BC k=40 depth 190 has the
table's 25.6M; PyramidNet alpha=48 depth 110 has 1.77M (the authors' code; the table says
1.7M, see docs/MODELS.md). Small variants run here on two 28x28 images.

    python examples/lecture/26_densenet_pyramidnet.py
"""
import foveanet as fv


def count(model):
    return sum(p.numel() for p in model.parameters())


def main():
    fv.manual_seed(0)
    dense = count(fv.models.densenet_bc(depth=100, growth_rate=12))
    pyramid = count(fv.models.pyramidnet(depth=110, alpha=48))
    print(f"densenet_bc(depth=100, growth_rate=12): {dense:,} parameters (paper: 0.8M)")
    print(f"pyramidnet(depth=110, alpha=48): {pyramid:,} parameters (table: 1.7M)")

    x = fv.randn(2, 1, 28, 28)
    small_dense = fv.models.densenet_bc(depth=16, growth_rate=8, in_channels=1).eval()
    small_pyramid = fv.models.pyramidnet(depth=20, alpha=24, in_channels=1).eval()
    with fv.no_grad():
        shapes = [tuple(small_dense(x).shape), tuple(small_pyramid(x).shape)]
    widths = [m.out_channels for m in small_pyramid.modules() if isinstance(m, fv.nn.Conv2d)]
    print(f"densenet_bc(depth=16) and pyramidnet(depth=20) on 2x1x28x28 -> {shapes}")
    print(f"pyramidnet(depth=20, alpha=24) convolution widths: {widths}")
    return {"densenet_params": dense, "pyramidnet_params": pyramid, "shapes": shapes,
            "pyramid_widths": widths}


if __name__ == "__main__":
    main()
