"""Shared helpers for the foveanet.train tests: a tiny duck-typed loader, tiny models, data.

The loader is deliberately not ``foveanet.data.DataLoader``: the training layer only relies on an
iterable of (x, y) batches with ``len()`` and, optionally, a ``.generator``.
"""
import os

import numpy as np

import foveanet as fv
import foveanet.train  # noqa: F401
from foveanet import nn


class TinyLoader:
    """(x, y) fv Tensor batches from arrays; shuffles with ``generator`` (an fv.Generator) and
    optionally adds Gaussian noise drawn from the same generator (a stand-in for augmentation)."""

    def __init__(self, x, y, batch_size=8, shuffle=False, generator=None, noise=0.0):
        self.x, self.y = np.asarray(x), np.asarray(y)
        self.batch_size, self.shuffle, self.noise = batch_size, shuffle, noise
        self.generator = generator if generator is not None else fv.Generator(0)
        self.dataset = list(range(len(self.x)))

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        rng = self.generator.rng
        order = rng.permutation(len(self.x)) if self.shuffle else np.arange(len(self.x))
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            xb = self.x[idx]
            if self.noise:
                xb = (xb + self.noise * rng.standard_normal(xb.shape)).astype(xb.dtype)
            yield fv.tensor(xb), fv.tensor(self.y[idx])


def blobs(n=96, d=4, classes=3, seed=0):
    """Separable-ish Gaussian blobs: float32 inputs (n, d), int64 labels."""
    rng = np.random.default_rng(seed)
    centers = 3.0 * rng.standard_normal((classes, d))
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.standard_normal((n, d))
    return x.astype(np.float32), y.astype(np.int64)


def mlp(d=4, classes=3, hidden=16, dropout=0.0, generator=None):
    layers = [nn.Linear(d, hidden), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout, generator=generator))
    layers.append(nn.Linear(hidden, classes))
    return nn.Sequential(*layers)


def weights_of(model):
    return {k: v.data.copy() for k, v in model.state_dict().items()}


def assert_bitwise_equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"


def snapshot_dir(path):
    """{file name: bytes} of every file in a directory."""
    out = {}
    for name in sorted(os.listdir(path)):
        with open(os.path.join(path, name), "rb") as f:
            out[name] = f.read()
    return out


def test_tiny_loader_shapes():
    x, y = blobs(10)
    loader = TinyLoader(x, y, batch_size=4)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert tuple(batches[-1][0].shape) == (2, 4)
