"""Slides "Principle", "Kernel Visualizations", "activation map", "32x32x3 image 5x5x3 filter":
six 5x5x3 filters slid over a 32x32x3 image give a 28x28x6 stack of activation maps.

``fv.nn.Conv2d(3, 6, 5)`` holds the six filters (6, 3, 5, 5); ``fv.visual.kernels`` reads a
layer's kernels and ``fv.visual.activations`` its activation maps (the ``foveanet visualize``
command draws both for a trained run). Each map value is one dot product of a filter with a
5x5x3 patch, plus the bias.

    python examples/lecture/09_activation_maps.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn as nn


def main():
    fv.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU())
    image = fv.rand(1, 3, 32, 32)
    k = fv.visual.kernels(model)
    maps = fv.visual.activations(model, image)
    first = maps[list(maps)[0]]
    a = np.asarray(first.numpy() if hasattr(first, "numpy") else first)

    conv = model[0]                                           # one value by hand: filter 1 at (4, 7)
    patch = image.numpy()[0, :, 4:9, 7:12]
    by_hand = float((conv.weight.detach().numpy()[1] * patch).sum() + conv.bias.detach().numpy()[1])
    with fv.no_grad():
        value = float(conv(image).numpy()[0, 1, 4, 7])
    print(f"filters {tuple(np.shape(k))}  image {tuple(image.shape)}")
    print(f"activation maps of layer {list(maps)[0]!r}: {tuple(a.shape)}")
    print(f"map 1 at (4, 7): {value:.5f}; filter . patch + bias by hand: {by_hand:.5f}")
    return {"kernels_shape": tuple(np.shape(k)), "maps_shape": tuple(a.shape), "value": value,
            "by_hand": by_hand}


if __name__ == "__main__":
    main()
