"""Slide "Augmentations": flip, rotation, scaling, crop, translation and noise make new training
images out of the ones there are.

``fv.data.RandomHorizontalFlip``, ``RandomRotation``, ``RandomScale``, ``RandomCrop``,
``RandomTranslation`` and ``GaussianNoise`` (chained with ``fv.data.Compose``, or from a
string with ``fv.data.parse_augment("flip,rotate=10,...")``, as ``foveanet train --augment``
does) act on whole batches, seeded. Each keeps the shape of the batch; the loader applies them
to the training batches only (``DataLoader(transform=...)``).

    python examples/lecture/17_augmentation.py
"""
import numpy as np

import foveanet.data as D


def main():
    x, _ = D.FashionMNIST(train=False).arrays()
    batch = x[:8]
    rng = np.random.default_rng(0)
    augs = {"flip": D.RandomHorizontalFlip(p=1.0), "rotation": D.RandomRotation(15),
            "scaling": D.RandomScale((0.8, 1.2)), "crop": D.RandomCrop(padding=3),
            "translation": D.RandomTranslation(3), "noise": D.GaussianNoise(0.1)}
    changed = {}
    for name, t in augs.items():
        out = t(batch, rng)
        changed[name] = float(np.abs(out - batch).mean())
        print(f"{name:>11}: {tuple(out.shape)}, mean |change| per pixel {changed[name]:.4f}")
    flipped = augs["flip"](batch, rng)
    same = bool(np.array_equal(flipped, batch[..., ::-1]))
    chain = D.parse_augment("flip,rotate=10,crop=2,noise=0.05")
    print(f"a flip with p=1 mirrors every image: {same}")
    print(f"parse_augment('flip,rotate=10,crop=2,noise=0.05'): {len(chain)} transforms, "
          f"output {tuple(chain(batch, rng).shape)}")
    return {"changed": changed, "flip_mirrors": same, "chain_len": len(chain),
            "shape": tuple(batch.shape)}


if __name__ == "__main__":
    main()
