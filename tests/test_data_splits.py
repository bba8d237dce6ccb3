"""Splits: partitions (no overlap, nothing lost), stratification within one sample per class,
scikit-learn's fold sizes, and cross-validation."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import foveanet as fv
from foveanet.data import (KFold, StratifiedKFold, Subset, TensorDataset, cross_validate,
                           random_split, train_val_split)


def _labelled(counts):
    y = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    y = np.random.default_rng(0).permutation(y)
    return TensorDataset(np.arange(len(y), dtype=np.float32)[:, None], y)


def _partition(parts, n):
    allidx = np.concatenate(parts)
    assert len(allidx) == n and sorted(allidx.tolist()) == list(range(n))


def test_random_split_lengths_and_fractions():
    ds = TensorDataset(np.arange(10))
    a, b = random_split(ds, [7, 3], generator=fv.Generator(0))
    assert (len(a), len(b)) == (7, 3) and isinstance(a, Subset)
    _partition([a.indices, b.indices], 10)
    parts = random_split(ds, [0.5, 0.3, 0.2], generator=fv.Generator(0))
    assert [len(p) for p in parts] == [5, 3, 2]
    parts = random_split(TensorDataset(np.arange(11)), [0.5, 0.5], generator=fv.Generator(0))
    assert [len(p) for p in parts] == [6, 5]  # the remainder goes to the first (PyTorch)
    same = random_split(ds, [7, 3], generator=fv.Generator(0))
    np.testing.assert_array_equal(same[0].indices, a.indices)
    with pytest.raises(ValueError, match="sum to 9 but the dataset has 10"):
        random_split(ds, [6, 3])


@given(st.lists(st.integers(1, 40), min_size=1, max_size=6), st.floats(0.05, 0.95))
def test_train_val_split_stratified_within_one_per_class(counts, frac):
    ds = _labelled(counts)
    y = ds.targets
    tr, va = train_val_split(ds, frac, generator=fv.Generator(0))
    _partition([tr.indices, va.indices], len(y))
    assert len(va) == round(frac * len(y))
    for k, c in enumerate(counts):
        assert abs((y[va.indices] == k).sum() - frac * c) < 1 + 1e-9


def test_train_val_split_on_labels_and_unstratified():
    y = np.array([0] * 90 + [1] * 10)
    tr, va = train_val_split(y, 0.2, generator=fv.Generator(1))
    assert tr.dtype == np.int64 and (np.bincount(y[va]) == [18, 2]).all()
    tr, va = train_val_split(100, 0.25, stratify=False, generator=fv.Generator(1))
    assert len(va) == 25
    _partition([tr, va], 100)
    with pytest.raises(ValueError, match="not integers"):
        train_val_split(np.linspace(0, 1, 10), 0.2)


@given(st.integers(2, 60), st.integers(2, 8), st.booleans())
def test_kfold_partitions_like_scikit_learn(n, k, shuffle):
    if k > n:
        with pytest.raises(ValueError, match="greater than the number of samples"):
            list(KFold(k).split(n))
        return
    folds = list(KFold(k, shuffle=shuffle, generator=fv.Generator(0)).split(n))
    assert len(folds) == k
    _partition([v for _, v in folds], n)
    sizes = [len(v) for _, v in folds]
    assert sizes == [n // k + 1] * (n % k) + [n // k] * (k - n % k)
    for tr, va in folds:
        assert not set(tr) & set(va) and len(tr) + len(va) == n
        assert (np.diff(tr) > 0).all() and (np.diff(va) > 0).all()
    if not shuffle:
        assert folds[0][1].tolist() == list(range(sizes[0]))


def test_kfold_shuffle_is_seeded():
    a = [v.tolist() for _, v in KFold(4, shuffle=True, generator=fv.Generator(3)).split(20)]
    b = [v.tolist() for _, v in KFold(4, shuffle=True, generator=fv.Generator(3)).split(20)]
    c = [v.tolist() for _, v in KFold(4, shuffle=True, generator=fv.Generator(4)).split(20)]
    assert a == b and a != c


@given(st.lists(st.integers(5, 30), min_size=2, max_size=5), st.integers(2, 5), st.booleans())
def test_stratified_kfold_keeps_each_class_within_one_per_fold(counts, k, shuffle):
    y = _labelled(counts).targets
    folds = list(StratifiedKFold(k, shuffle=shuffle, generator=fv.Generator(0)).split(y))
    _partition([v for _, v in folds], len(y))
    sizes = [len(v) for _, v in folds]
    assert max(sizes) - min(sizes) <= 1
    for tr, va in folds:
        assert not set(tr) & set(va)
        for cls, c in enumerate(counts):
            assert abs((y[va] == cls).sum() - c / k) < 1


def test_stratified_kfold_warns_on_tiny_classes():
    with pytest.warns(UserWarning, match="smallest class has only 2 members"):
        list(StratifiedKFold(3).split(np.array([0] * 10 + [1] * 2)))


def test_cross_validate_calls_once_per_fold_on_disjoint_subsets():
    ds = _labelled([12, 8])
    calls = []

    def train_and_score(tr, va):
        assert not set(tr.indices) & set(va.indices)
        calls.append((len(tr), len(va)))
        return len(va) / 10

    res = cross_validate(train_and_score, ds, k=4, generator=fv.Generator(0))
    assert calls == res["folds"] and len(calls) == 4 and sum(v for _, v in calls) == 20
    assert res["scores"] == [0.5] * 4 and res["mean"] == pytest.approx(0.5) and res["std"] == 0
    res = cross_validate(lambda tr, va: float(len(tr)), TensorDataset(np.zeros((7, 1))), k=3,
                         stratified=False)
    assert res["scores"] == [4.0, 5.0, 5.0]  # validation folds of 3, 2, 2
    assert res["std"] == pytest.approx(np.std([4.0, 5.0, 5.0]))
