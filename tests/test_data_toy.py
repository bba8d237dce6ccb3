"""TensorFlow Playground's toy sets: shapes, balance, seeds, and the geometry at noise 0."""
import numpy as np
import pytest

import foveanet as fv
from foveanet.data import CLASSIFICATION, REGRESSION, DataLoader, ToyDataset, make_toy


@pytest.mark.parametrize("name", CLASSIFICATION + REGRESSION)
def test_shapes_dtypes_and_seeds(name):
    x, y = make_toy(name, n=101, noise=0.2, seed=3)
    assert x.shape == (101, 2) and x.dtype == np.float32 and y.shape == (101,)
    assert y.dtype == (np.float32 if name in REGRESSION else np.int64)
    x2, y2 = make_toy(name, n=101, noise=0.2, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, make_toy(name, n=101, noise=0.2, seed=4)[0])
    assert np.isfinite(x).all() and np.abs(x).max() < 12


def test_default_sizes_are_playgrounds():
    assert len(make_toy("circle")[0]) == 500 and len(make_toy("reg-plane")[0]) == 1200


@pytest.mark.parametrize("name", ["circle", "gauss", "spiral"])
def test_two_equal_classes(name):
    _, y = make_toy(name, n=200, noise=0.0)
    assert set(np.unique(y)) == {0, 1} and (np.bincount(y) == 100).all()
    _, y = make_toy(name, n=201, noise=0.0, shuffle=False)
    assert np.bincount(y).tolist() == [100, 101] and (y[:101] == 1).all()


def test_circle_geometry():
    x, y = make_toy("circle", n=400, noise=0.0)
    r = np.hypot(x[:, 0], x[:, 1])
    assert (y == (r < 2.5)).all()  # Playground's rule: inside radius 2.5 is class 1
    assert (r[y == 1] <= 2.5).all() and ((r[y == 0] >= 3.5 - 1e-5) & (r[y == 0] <= 5 + 1e-5)).all()
    x_noisy, y_noisy = make_toy("circle", n=400, noise=0.5)
    r = np.hypot(x_noisy[:, 0], x_noisy[:, 1])
    assert (y_noisy != (r < 2.5)).any()  # noise moves the labelled point, not the returned one


def test_xor_geometry():
    x, y = make_toy("xor", n=400, noise=0.0)
    assert (y == (x[:, 0] * x[:, 1] >= 0)).all()
    assert (np.abs(x) >= 0.3 - 1e-6).all() and (np.abs(x) <= 5.3 + 1e-5).all()
    assert 150 < y.sum() < 250


def test_gauss_centres():
    x, y = make_toy("gauss", n=2000, noise=0.0)
    np.testing.assert_allclose(x[y == 1].mean(0), [2, 2], atol=0.1)
    np.testing.assert_allclose(x[y == 0].mean(0), [-2, -2], atol=0.1)
    assert abs(x[y == 1].var(0).mean() - 0.5) < 0.06  # variance 0.5 at noise 0
    x, y = make_toy("gauss", n=2000, noise=0.5)
    assert abs(x[y == 1].var(0).mean() - 4.0) < 0.5  # ... 4 at noise 0.5


def test_spiral_geometry_and_no_shared_points():
    m = 50
    x, y = make_toy("spiral", n=2 * m, noise=0.0, shuffle=False)
    i = np.arange(m)
    r = (i + 1) / m * 5
    t = 1.75 * (i + 1) / m * 2 * np.pi
    np.testing.assert_allclose(x[:m], np.stack([r * np.sin(t), r * np.cos(t)], 1), atol=1e-5)
    np.testing.assert_allclose(x[m:], -x[:m], atol=1e-5)  # half a turn apart
    assert (y[:m] == 1).all() and (y[m:] == 0).all()
    d = np.linalg.norm(x[:m, None] - x[None, m:], axis=-1)
    assert d.min() > 0.1 and np.hypot(*x.T).min() > 0


def test_regression_targets():
    x, y = make_toy("reg-plane", n=300, noise=0.0)
    np.testing.assert_allclose(y, (x[:, 0] + x[:, 1]) / 10, atol=1e-6)
    x, y = make_toy("reg-gauss", n=3000, noise=0.0)
    assert np.abs(y).max() <= 1 and y.min() < -0.8 and y.max() > 0.8
    near = np.hypot(x[:, 0] - 4, x[:, 1] + 2.5) < 0.2  # bump (4, -2.5) has sign -1
    assert near.any() and (y[near] < -0.85).all()
    far = (np.abs(x[:, 1]) < 0.4) & (np.abs(np.abs(x[:, 0]) - 2) < 0.2)  # 2+ from every centre
    assert (y[far] == 0).all()


def test_toy_dataset_and_loader():
    ds = ToyDataset("spiral", n=64, noise=0.1, seed=1)
    assert len(ds) == 64 and ds.task == "classification" and ds.num_classes == 2
    xb, yb = next(iter(DataLoader(ds, batch_size=16, shuffle=True, generator=fv.Generator(0))))
    assert xb.shape == (16, 2) and xb.dtype == np.float32 and yb.dtype == np.int64
    reg = ToyDataset("reg_gauss", n=10)
    assert reg.task == "regression" and reg.y.dtype == np.float32 and reg.classes is None
    with pytest.raises(ValueError, match="unknown toy data set 'moons'; choose one of circle"):
        make_toy("moons")
