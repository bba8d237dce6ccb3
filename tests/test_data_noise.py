"""Noise for denoising: the rates of salt-and-pepper and masking noise on large seeded arrays,
parse_noise, and ReconstructionPairs through a DataLoader (noise on the input only, replayed for
the same generator state and on resume)."""
import math

import numpy as np
import pytest

import foveanet as fv
from foveanet.data import (DataLoader, Dataset, FashionScenes, GaussianNoise, MaskingNoise,
                           ReconstructionPairs, SaltPepperNoise, TensorDataset, parse_noise)

N = 200_000


def _bound(p, n=N, sigmas=6):
    """A bound on |observed rate - p| for n Bernoulli(p) draws: ``sigmas`` standard deviations."""
    return sigmas * math.sqrt(p * (1 - p) / n) + 1e-12


def _grey(n=N, dtype=np.float32, seed=0):
    # values strictly inside (0.1, 0.9): never equal to low, high or fill by chance
    return (0.1 + 0.8 * np.random.default_rng(seed).random(n)).astype(dtype).reshape(-1, 1, 20, 10)


@pytest.mark.parametrize("p", [0.02, 0.1, 0.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_salt_and_pepper_rates(p, dtype):
    x = _grey(dtype=dtype)
    before = x.copy()
    out = SaltPepperNoise(p)(x, np.random.default_rng(1))
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_array_equal(x, before)  # the input is not modified
    pepper, salt = (out == 0).mean(), (out == 1).mean()
    kept = out == x
    assert abs(pepper - p / 2) < _bound(p / 2) and abs(salt - p / 2) < _bound(p / 2)
    assert abs(kept.mean() - (1 - p)) < _bound(p)
    assert ((out == 0) | (out == 1) | kept).all()  # nothing else happens


def test_salt_and_pepper_levels_and_extremes():
    x = _grey(10_000)
    out = SaltPepperNoise(0.3, low=-1.0, high=2.0)(x, 3)
    assert set(np.unique(out[out != x]).tolist()) == {-1.0, 2.0}
    np.testing.assert_array_equal(SaltPepperNoise(0.0)(x, 0), x)
    assert ((SaltPepperNoise(1.0)(x, 0) == 0) | (SaltPepperNoise(1.0)(x, 0) == 1)).all()
    with pytest.raises(ValueError, match=r"SaltPepperNoise: p must be in \[0, 1\]"):
        SaltPepperNoise(1.5)


@pytest.mark.parametrize("p", [0.05, 0.25, 0.75])
def test_masking_rate_and_fill(p):
    x = _grey()
    out = MaskingNoise(p)(x, np.random.default_rng(2))
    zeroed = out == 0
    assert abs(zeroed.mean() - p) < _bound(p)
    np.testing.assert_array_equal(out[~zeroed], x[~zeroed])
    filled = MaskingNoise(p, fill=0.5)(x, np.random.default_rng(2))
    np.testing.assert_array_equal(filled == 0.5, zeroed)  # the same draws, another fill
    assert (MaskingNoise(1.0)(x, 0) == 0).all()
    np.testing.assert_array_equal(MaskingNoise(0.0)(x, 0), x)
    with pytest.raises(ValueError, match="MaskingNoise: p must be in"):
        MaskingNoise(-0.1)


def test_noise_is_seeded_and_keeps_tensors():
    x = _grey(4000)
    for t in (SaltPepperNoise(0.2), MaskingNoise(0.3), parse_noise("gaussian=0.2")):
        same = t(x, np.random.default_rng(5))
        np.testing.assert_array_equal(t(x, np.random.default_rng(5)), same)
        assert not np.array_equal(t(x, np.random.default_rng(5)), t(x, np.random.default_rng(6)))
        out = t(fv.tensor(x[0]), 7)  # any shape: one image, as a Tensor
        assert isinstance(out, fv.Tensor) and out.shape == x[0].shape


def test_parse_noise():
    g = parse_noise("gaussian=0.3")
    assert isinstance(g, GaussianNoise) and g.std == 0.3 and g.clip == (0.0, 1.0)
    x = np.full((1, 1, 400, 500), 0.5, np.float32)
    out = g(x, 0)
    assert out.min() >= 0 and out.max() <= 1 and (out == 0).any() and (out == 1).any()
    small = parse_noise("gaussian=0.05")(x, 0) - x  # no clipping at 10 sigma
    assert abs(small.std() - 0.05) < 0.05 * 0.01 and abs(small.mean()) < 1e-3
    sp = parse_noise("saltpepper=0.1")
    assert isinstance(sp, SaltPepperNoise) and sp.p == 0.1 and (sp.low, sp.high) == (0.0, 1.0)
    m = parse_noise(" Masking = 0.25 ")
    assert isinstance(m, MaskingNoise) and m.p == 0.25 and m.fill == 0.0
    assert parse_noise("sp").p == 0.1 and parse_noise("mask").p == 0.25
    assert parse_noise("gauss").std == 0.3 and parse_noise("salt-pepper=0.2").p == 0.2
    for spec in ("none", "", "  ", None, "off"):
        assert parse_noise(spec) is None


@pytest.mark.parametrize("spec,match", [
    ("speckle=0.1", "(?s)unknown noise .speckle.; accepted:.*gaussian.*saltpepper.*masking"),
    ("gaussian=lots", r"expected a \(finite\) number"),
    ("gaussian=nan", r"expected a \(finite\) number"),
    ("gaussian=", "expected a number after '='"),
    ("gaussian=-0.1", "std must be non-negative"),
    ("masking=1.5", r"p must be in \[0, 1\]"),
    ("saltpepper=0.1,masking=0.2", "give one noise"),
])
def test_parse_noise_errors(spec, match):
    with pytest.raises(ValueError, match=match) as e:
        parse_noise(spec)
    assert str(e.value).startswith("--noise:")


# ------------------------------------------------------------------------- ReconstructionPairs
def _pairs(n=40, labels=True):
    x = np.random.default_rng(0).uniform(0.1, 0.9, (n, 1, 6, 6)).astype(np.float32)
    y = np.arange(n) % 3
    return ReconstructionPairs(TensorDataset(x, y) if labels else TensorDataset(x)), x, y


def test_items_are_input_clean_copy_and_label():
    ds, x, y = _pairs()
    a, b, label = ds[5]
    np.testing.assert_array_equal(a.numpy(), x[5])
    np.testing.assert_array_equal(b.numpy(), x[5])
    assert int(label.item()) == 2 and len(ds) == 40
    b.data[...] = 0  # the target is a copy, not a view of the input
    assert (a.numpy() == x[5]).all()
    xb, tb, yb = ds.get_batch(np.array([3, 1]))
    np.testing.assert_array_equal(tb, x[[3, 1]])
    assert tb is not xb and not np.shares_memory(tb, xb)
    np.testing.assert_array_equal(yb, y[[3, 1]])
    bare, x, _ = _pairs(labels=False)
    assert bare[0][2] == -1
    np.testing.assert_array_equal(bare.get_batch(np.arange(4))[2], [-1, -1, -1, -1])
    assert ds.in_memory and ds.targets is not None


def test_loader_noises_the_input_only():
    ds, x, y = _pairs()
    loader = DataLoader(ds, batch_size=16, transform=MaskingNoise(0.5), generator=fv.Generator(0))
    seen = 0
    for noisy, clean, labels in loader:
        idx = np.arange(seen, seen + len(clean))
        np.testing.assert_array_equal(clean.numpy(), x[idx])
        np.testing.assert_array_equal(labels.numpy(), y[idx])
        changed = noisy.numpy() != clean.numpy()
        assert (noisy.numpy()[changed] == 0).all() and 0.3 < changed.mean() < 0.7
        seen += len(clean)
    assert seen == 40


class _ItemByItem(Dataset):
    """No batched access: the loader reads items and collates them."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return fv.tensor(self.x[i])


def test_item_by_item_path_noises_the_input_only():
    x = np.random.default_rng(1).uniform(0.1, 0.9, (10, 1, 4, 4)).astype(np.float32)
    ds = ReconstructionPairs(_ItemByItem(x))
    assert not ds.in_memory
    noisy, clean, labels = next(iter(DataLoader(ds, batch_size=10, transform=SaltPepperNoise(0.4),
                                                generator=fv.Generator(2))))
    np.testing.assert_array_equal(clean.numpy(), x)
    assert (labels.numpy() == -1).all()
    changed = noisy.numpy() != x
    assert changed.any() and np.isin(noisy.numpy()[changed], [0.0, 1.0]).all()


def _epoch(loader):
    return [tuple(t.numpy().copy() for t in batch) for batch in loader]


def test_same_generator_state_same_noise_and_resume_replays_it():
    ds, _, _ = _pairs(64)

    def make(seed):
        return DataLoader(ds, batch_size=8, shuffle=True, transform=parse_noise("saltpepper=0.3"),
                          generator=fv.Generator(seed))

    a, b = _epoch(make(11)), _epoch(make(11))
    for u, v in zip(a, b):
        for f, g in zip(u, v):
            np.testing.assert_array_equal(f, g)
    c = _epoch(make(12))
    assert not all(np.array_equal(u[0], v[0]) for u, v in zip(a, c))
    # stop after 3 batches, save, resume in a new loader: the rest is the same noise
    first = make(11)
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    resumed = make(99)
    resumed.load_state_dict(state)
    rest = _epoch(resumed)
    assert len(rest) == len(a) - 3
    for u, v in zip(a[3:], rest):
        for f, g in zip(u, v):
            np.testing.assert_array_equal(f, g)


def test_reconstruction_pairs_of_scenes_keep_the_mask_as_label():
    x = np.random.default_rng(0).integers(0, 256, (30, 28, 28), dtype=np.uint8)
    scenes = FashionScenes("test", source=(x, np.arange(30) % 10), count=6, size=32)
    noisy, clean, mask = next(iter(DataLoader(ReconstructionPairs(scenes), batch_size=6,
                                              transform=MaskingNoise(0.2),
                                              generator=fv.Generator(0))))
    want_x, want_mask = scenes.get_batch(np.arange(6))
    np.testing.assert_array_equal(clean.numpy(), want_x)
    np.testing.assert_array_equal(mask.numpy(), want_mask)
    assert not np.array_equal(noisy.numpy(), want_x)
