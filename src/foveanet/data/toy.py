"""TensorFlow Playground's 2-D data sets (playground.tensorflow.org, ``src/dataset.ts``).

Classification (labels 0 / 1; Playground's +1 is 1, its -1 is 0):

- ``circle``: half the points inside radius 2.5 (class 1), half in the ring 3.5..5 (class 0);
  the label is whether the point, moved by the noise, lies within radius 2.5.
- ``xor``: x, y uniform in (-5, 5), pushed 0.3 away from the axes; class 1 where x*y >= 0
  (first and third quadrants), computed on the noisy point.
- ``gauss``: two Gaussian blobs centred at (2, 2) (class 1) and (-2, -2) (class 0), variance
  0.5 + 7 * noise (Playground's scale from noise 0..0.5 to variance 0.5..4).
- ``spiral``: two spirals, 1.75 turns out to radius 5, half a turn apart (class 1 starts at
  angle 0, class 0 at pi), each point moved by uniform noise in (-noise, noise) per axis.

Regression (float targets in [-1, 1]):

- ``reg-plane``: x, y uniform in (-6, 6); target (x + y) / 10 at the noisy point.
- ``reg-gauss``: six Gaussian bumps of sign +-1 at (+-4 or 0, +-2.5); the target is the bump of
  largest absolute value, max(0, 1 - distance / 2) with its sign, at the noisy point.

``noise`` is Playground's noise slider divided by 100 (0 to 0.5); ``circle``, ``xor`` and the
regression sets use it as Playground does: the noise moves the point used for the label, not the
returned point, so a noisy set has labels that are wrong near the boundary. ``n`` defaults to
Playground's 500 (classification) and 1200 (regression) points; the points are shuffled, as
Playground does before splitting into training and test sets.

Departures from Playground: (1) the random numbers come from a seeded NumPy generator, so the
points are not Playground's own (its seedrandom stream), only distributed as they are; (2) the
spiral's radius runs over (i + 1) / m * 5 for i = 0 .. m-1 instead of i / m * 5, so neither
spiral has a point at the origin and the two classes never share a point when noise is 0;
(3) exactly ``n`` points for odd ``n`` (class 1 gets the extra one; Playground makes
``ceil(n / 2)`` of each).
"""
from __future__ import annotations

import math

from ..backend import xp
from .dataset import TensorDataset

CLASSIFICATION = ("circle", "xor", "gauss", "spiral")
REGRESSION = ("reg-plane", "reg-gauss")
TOY_DATASETS = CLASSIFICATION + REGRESSION
DEFAULT_N = {"classification": 500, "regression": 1200}


def _halves(n):
    return n - n // 2, n // 2  # (class 1, class 0)


def _circle(n, noise, rng):
    radius = 5.0
    n1, n0 = _halves(n)
    r = xp.concatenate([rng.uniform(0, radius * 0.5, n1), rng.uniform(radius * 0.7, radius, n0)])
    angle = rng.uniform(0, 2 * math.pi, n)
    pts = xp.stack([r * xp.sin(angle), r * xp.cos(angle)], axis=1)
    moved = pts + rng.uniform(-radius, radius, (n, 2)) * noise
    label = xp.hypot(moved[:, 0], moved[:, 1]) < radius * 0.5
    return pts, label.astype(xp.int64)


def _xor(n, noise, rng):
    pts = rng.uniform(-5, 5, (n, 2))
    pts += xp.where(pts > 0, 0.3, -0.3)  # padding away from the axes
    moved = pts + rng.uniform(-5, 5, (n, 2)) * noise
    return pts, (moved[:, 0] * moved[:, 1] >= 0).astype(xp.int64)


def _gauss(n, noise, rng):
    variance = 0.5 + noise * (4 - 0.5) / 0.5  # d3 linear scale [0, .5] -> [0.5, 4]
    n1, n0 = _halves(n)
    centres = xp.concatenate([xp.full((n1, 2), 2.0), xp.full((n0, 2), -2.0)])
    pts = centres + math.sqrt(variance) * rng.standard_normal((n, 2))
    return pts, xp.concatenate([xp.ones(n1, xp.int64), xp.zeros(n0, xp.int64)])


def _spiral(n, noise, rng):
    xs, ys = [], []
    for m, delta, label in zip(_halves(n), (0.0, math.pi), (1, 0)):
        i = xp.arange(m, dtype=xp.float64)
        r = (i + 1) / m * 5  # Playground: i / m * 5, which puts both spirals' first point at 0
        t = 1.75 * (i + 1) / m * 2 * math.pi + delta
        pts = xp.stack([r * xp.sin(t), r * xp.cos(t)], axis=1)
        xs.append(pts + rng.uniform(-1, 1, (m, 2)) * noise)
        ys.append(xp.full(m, label, dtype=xp.int64))
    return xp.concatenate(xs), xp.concatenate(ys)


def _reg_points(n, noise, rng, radius=6.0):
    pts = rng.uniform(-radius, radius, (n, 2))
    return pts, pts + rng.uniform(-radius, radius, (n, 2)) * noise


def _reg_plane(n, noise, rng):
    pts, moved = _reg_points(n, noise, rng)
    return pts, (moved[:, 0] + moved[:, 1]) / 10.0  # d3 linear scale [-10, 10] -> [-1, 1]


_GAUSSIANS = xp.array([[-4, 2.5, 1], [0, 2.5, -1], [4, 2.5, 1],
                       [-4, -2.5, -1], [0, -2.5, 1], [4, -2.5, -1]], dtype=xp.float64)


def _reg_gauss(n, noise, rng):
    pts, moved = _reg_points(n, noise, rng)
    d = xp.hypot(moved[:, None, 0] - _GAUSSIANS[:, 0], moved[:, None, 1] - _GAUSSIANS[:, 1])
    values = _GAUSSIANS[:, 2] * xp.clip(1 - d / 2, 0, 1)  # clamped scale [0, 2] -> [1, 0]
    pick = xp.argmax(xp.abs(values), axis=1)  # the first of the largest, as Playground's loop
    return pts, values[xp.arange(n), pick] + 0.0  # + 0.0: no -0.0


_GENERATORS = {"circle": _circle, "xor": _xor, "gauss": _gauss, "spiral": _spiral,
               "reg-plane": _reg_plane, "reg-gauss": _reg_gauss}


def is_regression(name: str) -> bool:
    return canonical_name(name) in REGRESSION


def canonical_name(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    key = {"regplane": "reg-plane", "plane": "reg-plane", "reggauss": "reg-gauss",
           "gaussian": "gauss", "circles": "circle", "spirals": "spiral"}.get(key, key)
    if key not in _GENERATORS:
        raise ValueError(f"unknown toy data set {name!r}; choose one of {', '.join(TOY_DATASETS)}")
    return key


def make_toy(name: str, n: int | None = None, noise: float = 0.0, seed: int = 0, shuffle: bool = True):
    """Generate Playground data set ``name``: ``(x, y)`` with x float32 (n, 2) and y int64 (n,)
    labels 0/1 for classification or float32 (n,) targets for regression.

    ``noise``: Playground's noise / 100, from 0 to 0.5. ``seed``: the same seed gives the same
    points. ``shuffle``: mix the classes (as Playground does); False keeps class 1 first.
    """
    key = canonical_name(name)
    if n is None:
        n = DEFAULT_N["regression" if key in REGRESSION else "classification"]
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not 0.0 <= noise:
        raise ValueError(f"noise must be non-negative (Playground's slider / 100, 0 to 0.5), got {noise}")
    rng = xp.random.default_rng(seed)
    x, y = _GENERATORS[key](int(n), float(noise), rng)
    if shuffle:
        perm = rng.permutation(int(n))
        x, y = x[perm], y[perm]
    y = y.astype(xp.float32) if key in REGRESSION else y.astype(xp.int64)
    return x.astype(xp.float32), y


class ToyDataset(TensorDataset):
    """A Playground data set as an in-memory dataset: ``ds[i] == (x[i], y[i])``.

    ``.x`` float32 (n, 2), ``.y`` its labels or targets, ``.name``, ``.task`` ('classification'
    or 'regression'), ``.classes`` (for classification) and ``.num_classes``.
    """

    def __init__(self, name: str, n: int | None = None, noise: float = 0.0, seed: int = 0,
                 shuffle: bool = True):
        self.name = canonical_name(name)
        self.noise, self.seed = noise, seed
        x, y = make_toy(self.name, n=n, noise=noise, seed=seed, shuffle=shuffle)
        super().__init__(x, y)
        self.task = "regression" if self.name in REGRESSION else "classification"
        self.classes = None if self.task == "regression" else ["negative (-1)", "positive (+1)"]

    @property
    def x(self):
        return self.arrays[0]

    @property
    def y(self):
        return self.arrays[1]

    @property
    def num_classes(self):
        return 0 if self.classes is None else len(self.classes)

    def __repr__(self):
        return f"ToyDataset({self.name!r}, n={len(self)}, noise={self.noise}, seed={self.seed})"
