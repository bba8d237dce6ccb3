"""Slide "BottleNeck": 1x1 256->64, 3x3 64->64, 1x1 64->256 instead of one 3x3 256->256
convolution, for much less computation and about the same feature extraction.

``fv.models.summary`` counts parameters and multiply-adds per layer (``foveanet summary``
prints the same table for a registered model); the bottleneck block is
``fv.models.resnet.Bottleneck`` (ResNet-50 and deeper). The lecture's numbers: 256x256x3x3
~= 0.6 M against 16 k + 36 k + 16 k.

    python examples/lecture/22_bottleneck.py
"""
import foveanet as fv
import foveanet.nn as nn


def main(size=56):
    plain = nn.Sequential(nn.Conv2d(256, 256, 3, padding=1, bias=False))
    bottleneck = nn.Sequential(nn.Conv2d(256, 64, 1, bias=False),
                               nn.Conv2d(64, 64, 3, padding=1, bias=False),
                               nn.Conv2d(64, 256, 1, bias=False))
    out = {}
    for name, model in [("3x3 conv 256->256", plain), ("bottleneck 1x1-3x3-1x1", bottleneck)]:
        s = fv.models.summary(model, (1, 256, size, size))
        per_layer = [p.numel() for p in model.parameters()]
        out[name] = {"params": sum(per_layer), "per_layer": per_layer, "macs": s.total_macs}
        print(f"{name:>23}: weights {per_layer} = {sum(per_layer):,}; "
              f"multiply-adds at {size}x{size}: {s.total_macs:,}")
    ratio = out["3x3 conv 256->256"]["params"] / out["bottleneck 1x1-3x3-1x1"]["params"]
    print(f"the bottleneck needs {ratio:.1f}x fewer weights and multiply-adds")
    out["ratio"] = ratio
    return out


if __name__ == "__main__":
    main()
