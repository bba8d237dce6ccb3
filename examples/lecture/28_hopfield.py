"""Slide "Recurrent Neural Nets" (Hopfield Neural Net): a recurrent network of binary neurons
that stores patterns and recalls one from a corrupted copy, running down its energy.

``fv.models.HopfieldNetwork`` (``store`` with Hebb's or Storkey's rule, ``energy``, ``recall``;
``fv.models.to_bipolar`` makes -1/+1 patterns); ``fv.nn.Hopfield`` is the modern continuous
layer. ``examples/hopfield_fashion.py`` and ``examples/hopfield_capacity.py`` go further. Here
three Fashion-MNIST pictures (784 neurons) come back from copies with 20% of the pixels flipped.

    python examples/lecture/28_hopfield.py
"""
import numpy as np

import foveanet as fv


def main(flip=0.2):
    ds = fv.data.FashionMNIST(train=False)
    images, labels = ds.arrays()
    index = [int(np.flatnonzero(labels == c)[0]) for c in (1, 5, 8)]      # trouser, sandal, bag
    grey = images[index].reshape(len(index), -1)
    patterns = fv.models.to_bipolar(grey, threshold=grey.mean(1, keepdims=True),
                                    dtype=np.float64).numpy()
    net = fv.models.HopfieldNetwork(784, dtype=np.float64).store(patterns, rule="storkey")

    rng = np.random.default_rng(0)
    noisy = patterns.copy()
    for row in noisy:
        row[rng.choice(784, int(flip * 784), replace=False)] *= -1
    recalled = net.recall(noisy, generator=fv.Generator().manual_seed(0)).numpy()
    before = (noisy == patterns).mean(1)
    after = (recalled == patterns).mean(1)
    e_noisy, e_recalled = net.energy(noisy).numpy(), net.energy(recalled).numpy()
    for c, b, a, en, er in zip((1, 5, 8), before, after, e_noisy, e_recalled):
        print(f"{ds.classes[c]:>8}: pixels right {b:.1%} -> {a:.1%}, energy {en:.1f} -> {er:.1f}")
    return {"before": before.tolist(), "after": after.tolist(),
            "energy_noisy": e_noisy.tolist(), "energy_recalled": e_recalled.tolist()}


if __name__ == "__main__":
    main()
