"""Slide "Dropout": randomly switch off neurons (up to 50%) while learning; switch dropout off
for testing.

``fv.nn.Dropout(p)`` (``F.dropout``) zeroes each activation with probability p in training
mode and scales the others by 1 / (1 - p), so the expected sum stays the same; after
``model.eval()`` it passes everything through. AlexNet and VGG use it before their fully
connected layers (``fv.models.alexnet(dropout=0.5)``).

    python examples/lecture/19_dropout.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn as nn


def main(p=0.5):
    fv.manual_seed(0)
    drop = nn.Dropout(p)
    x = fv.ones(1, 10000)
    train_out = drop(x).numpy()
    off = float((train_out == 0).mean())
    print(f"training mode: {off:.1%} of 10,000 neurons switched off, the others scaled to "
          f"{train_out.max():.1f}; mean {train_out.mean():.3f}")
    drop.eval()
    test_out = drop(x).numpy()
    print(f"eval mode: {float((test_out == 0).mean()):.1%} switched off, output == input: "
          f"{bool(np.array_equal(test_out, x.numpy()))}")
    return {"off_fraction": off, "scale": float(train_out.max()), "train_mean": float(train_out.mean()),
            "eval_identity": bool(np.array_equal(test_out, x.numpy()))}


if __name__ == "__main__":
    main()
