"""A small multi-layer perceptron with softmax cross-entropy learns TensorFlow Playground's spiral.

Two interleaved spirals (two classes, 2-D points) cannot be separated by a line; a 2-32-32-2 ReLU
network trained with Adam on mini-batches separates every training point.

    python examples/mlp.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn as nn
import foveanet.nn.functional as F


def spiral(n_per_class: int = 100, noise: float = 0.0, seed: int = 0):
    """Playground's spiral: class 0 and class 1 wind around the origin half a turn apart."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label, delta in ((0, 0.0), (1, np.pi)):
        r = np.linspace(0.0, 5.0, n_per_class + 1)[1:]  # from r > 0: both spirals start at 0
        t = 1.75 * r / 5.0 * 2 * np.pi + delta
        pts = np.stack([r * np.sin(t), r * np.cos(t)], axis=1)
        pts += rng.uniform(-1, 1, pts.shape) * noise
        xs.append(pts)
        ys.append(np.full(n_per_class, label))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


def train_mlp(seed: int = 0, epochs: int = 300, batch_size: int = 32, verbose=True):
    fv.manual_seed(seed)
    x_np, y_np = spiral(seed=seed)
    x, y = fv.tensor(x_np), fv.tensor(y_np)
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = fv.optim.Adam(model.parameters(), lr=0.01)
    gen = fv.Generator(seed)
    for epoch in range(1, epochs + 1):
        perm = fv.randperm(len(x_np), generator=gen).numpy()   # shuffle every epoch
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])       # softmax + negative log-likelihood
            loss.backward()
            opt.step()
        if verbose and epoch % 50 == 0:
            with fv.no_grad():
                acc = (model(x).argmax(1) == y).numpy().mean()
            print(f"epoch {epoch:4d}  loss {loss.item():.4f}  train accuracy {100 * acc:.1f}%")
    with fv.no_grad():
        acc = float((model(x).argmax(1) == y).numpy().mean())
    return model, acc


if __name__ == "__main__":
    _, acc = train_mlp()
    print(f"final training accuracy: {100 * acc:.1f}%")
