"""Slide "Train Data Shuffling": spread the classes through the whole data set; batches of one
class at a time make the network overfit to that class for a while.

``fv.data.DataLoader(shuffle=True, generator=...)`` draws a new, seeded order every epoch
(``fv.data.RandomSampler``). On 200 Fashion-MNIST images sorted by class, an unshuffled loader
gives batches of one or two classes; the shuffled one mixes them, and one epoch of SGD on the
shuffled order ends with a lower loss.

    python examples/lecture/16_shuffling.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn as nn
import foveanet.nn.functional as F


def epoch(x, y, shuffle):
    fv.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    opt = fv.optim.SGD(model.parameters(), lr=0.1)
    loader = fv.data.DataLoader(fv.data.TensorDataset(x, y), batch_size=20, shuffle=shuffle,
                                generator=fv.Generator().manual_seed(0))
    classes = []
    for xb, yb in loader:
        classes.append(len(np.unique(yb.numpy())))
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with fv.no_grad():
        return float(np.mean(classes)), F.cross_entropy(model(x), y).item()


def main(n=200):
    images, labels = fv.data.FashionMNIST(train=False).arrays()
    order = np.argsort(labels[:n], kind="stable")               # clustered: all 0s, then 1s, ...
    x, y = fv.tensor(images[:n][order]), fv.tensor(labels[:n][order])
    out = {}
    for shuffle in (False, True):
        per_batch, loss = epoch(x, y, shuffle)
        print(f"shuffle={shuffle!s:>5}: {per_batch:.1f} classes per batch of 20, "
              f"loss after one epoch {loss:.4f}")
        out["shuffled" if shuffle else "sorted"] = {"classes_per_batch": per_batch, "loss": loss}
    return out


if __name__ == "__main__":
    main()
