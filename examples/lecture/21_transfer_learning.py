"""Slide "Transfer Learning": the feature extractor in the middle of a network is the hard part
to train; reuse one trained on a similar problem.

``fv.train.transfer.replace_head`` gives a trained model a fresh classifier for the new
classes, ``fv.train.transfer.freeze(model, "features", head=...)`` stops the rest from
changing (``foveanet train --from RUN_OR_ONNX --freeze features --num-classes N`` on the
command line). Here a small CNN learns Fashion-MNIST's classes 0-4, then only its new head
learns classes 5-9 (sandal, shirt, sneaker, bag, ankle boot); the frozen convolution does not
move.

    python examples/lecture/21_transfer_learning.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn as nn
import foveanet.nn.functional as F
from foveanet.train.transfer import freeze, replace_head


def fit(model, x, y, steps):
    opt = fv.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with fv.no_grad():
        return float((model(x).numpy().argmax(1) == y.numpy()).mean())


def main(n=150, steps=20):
    fv.manual_seed(0)
    images, labels = fv.data.FashionMNIST(train=False).arrays()
    old, new = np.flatnonzero(labels < 5)[:n], np.flatnonzero(labels >= 5)[:n]
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(8 * 14 * 14, 5))
    acc_old = fit(model, fv.tensor(images[old]), fv.tensor(labels[old]), steps)

    head = replace_head(model, 5)                        # a fresh Linear for the five new classes
    frozen = freeze(model, "features", head=head)
    kernels = model[0].weight.detach().numpy().copy()
    acc_new = fit(model, fv.tensor(images[new]), fv.tensor(labels[new] - 5), steps)
    unchanged = bool(np.array_equal(kernels, model[0].weight.detach().numpy()))
    print(f"classes 0-4, whole network trained: training accuracy {acc_old:.3f}")
    print(f"new head {head}, frozen {frozen}")
    print(f"classes 5-9, only the head trained: accuracy {acc_new:.3f}; "
          f"convolution unchanged: {unchanged}")
    return {"acc_old": acc_old, "acc_new": acc_new, "head": head, "frozen": frozen,
            "unchanged": unchanged}


if __name__ == "__main__":
    main()
