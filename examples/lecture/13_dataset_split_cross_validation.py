"""Slides "Learning CNN" and "Training Dataset": train, validation and test sets, and cross
validation for small data.

``fv.data.FashionMNIST(train=False)`` is the test set the model never trains on;
``fv.data.train_val_split`` cuts a stratified validation part off the training data (each class
keeps its share); ``fv.data.cross_validate`` (with ``fv.data.StratifiedKFold``) trains a fresh
model on k-1 folds and scores it on the k-th, k times. ``foveanet train`` does the same split
(``--val-split``). Here: 300 training images, a softmax classifier, 3 folds.

    python examples/lecture/13_dataset_split_cross_validation.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn as nn
import foveanet.nn.functional as F


def train_and_score(images, labels, train_part, val_part, steps=30):
    """Train a fresh softmax classifier on one part, return its accuracy on the other."""
    fv.manual_seed(0)
    xt, yt = fv.tensor(images[train_part.indices]), fv.tensor(labels[train_part.indices])
    xv, yv = images[val_part.indices], labels[val_part.indices]
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    opt = fv.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        loss = F.cross_entropy(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with fv.no_grad():
        return float((model(fv.tensor(xv)).numpy().argmax(1) == yv).mean())


def main(n=300):
    images, labels = fv.data.FashionMNIST(train=True).arrays()
    images, labels = images[:n], labels[:n]
    data = fv.data.TensorDataset(fv.tensor(images), fv.tensor(labels))
    train, val = fv.data.train_val_split(data, 0.2, generator=fv.Generator().manual_seed(0))
    test = fv.data.FashionMNIST(train=False)
    counts = np.bincount(fv.data.targets_of(val), minlength=10)
    print(f"train {len(train)}, validation {len(val)}, test {len(test)} images")
    print(f"validation images per class (stratified): {counts.tolist()}")

    def score(train_part, val_part):
        return train_and_score(images, labels, train_part, val_part)

    cv = fv.data.cross_validate(score, data, k=3, generator=fv.Generator().manual_seed(0))
    print(f"3-fold cross-validation accuracy: {[round(s, 3) for s in cv['scores']]}, "
          f"mean {cv['mean']:.3f} +- {cv['std']:.3f}")
    return {"n_train": len(train), "n_val": len(val), "n_test": len(test),
            "val_counts": counts.tolist(), "cv_scores": cv["scores"], "cv_mean": cv["mean"]}


if __name__ == "__main__":
    main()
