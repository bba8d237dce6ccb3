"""Slide "Map Pooling": 2x2 max-pooling halves each side of the map and keeps the largest value
of every 2x2 block.

``fv.nn.MaxPool2d(2)`` (``fv.nn.functional.max_pool2d``) on the lecture's own 4x4 example gives
its 2x2 result [[20, 30], [112, 37]]; the gradient flows back only to the four maxima.

    python examples/lecture/11_max_pooling.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn as nn

LECTURE = [[12, 20, 30, 0],
           [8, 12, 2, 0],
           [34, 70, 37, 4],
           [112, 100, 25, 12]]


def main():
    x = fv.tensor(np.array(LECTURE, dtype=np.float32)[None, None], requires_grad=True)
    y = nn.MaxPool2d(2)(x)
    y.sum().backward()
    out = y.detach().numpy()[0, 0].astype(int).tolist()
    grad = x.grad.numpy()[0, 0].astype(int)
    print(f"input 4x4 -> 2x2 max-pool -> {out}")
    print("gradient reaches only the maxima:\n" + "\n".join(" ".join(map(str, r)) for r in grad))
    return {"out": out, "grad_count": int(grad.sum())}


if __name__ == "__main__":
    main()
