"""Slide "Overfitting": trained long enough on a small set, a network memorises it; keep the
model of the lowest validation error, not the last one.

A 784-256-10 network on 60 real Fashion-MNIST images: its training loss keeps falling while
the validation loss (300 other images) turns back up. In foveanet the training loop keeps the
best-validation epoch (``fv.train.BestCheckpoint``, ``fv.train.EarlyStopping``; ``foveanet
train`` tests the best epoch).

    python examples/lecture/14_overfitting.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn as nn
import foveanet.nn.functional as F


def main(n_train=60, n_val=300, steps=80):
    fv.manual_seed(0)
    x, y = fv.data.FashionMNIST(train=False).arrays()
    xt, yt = fv.tensor(x[:n_train]), fv.tensor(y[:n_train])
    xv, yv = fv.tensor(x[-n_val:]), fv.tensor(y[-n_val:])
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = fv.optim.Adam(model.parameters(), lr=3e-3)
    train_loss, val_loss = [], []
    for _ in range(steps):
        loss = F.cross_entropy(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with fv.no_grad():
            train_loss.append(loss.item())
            val_loss.append(F.cross_entropy(model(xv), yv).item())
    best = int(np.argmin(val_loss))
    print(f"{n_train} training images, {n_val} validation images, {steps} full-batch steps")
    for i in (0, best, steps - 1):
        print(f"step {i + 1:>3}: training loss {train_loss[i]:.4f}  validation loss {val_loss[i]:.4f}")
    print(f"lowest validation loss at step {best + 1}: keep that model")
    return {"best_step": best + 1, "steps": steps, "train_first": train_loss[0],
            "train_last": train_loss[-1], "val_best": val_loss[best], "val_last": val_loss[-1]}


if __name__ == "__main__":
    main()
