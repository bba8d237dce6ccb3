"""Splitting data: random splits, stratified train/validation splits, k-fold cross-validation.

All randomness comes from a ``foveanet.Generator`` (or the global generator when None), so the
same seed gives the same split. Index arrays are int64; ``KFold`` / ``StratifiedKFold`` follow
scikit-learn's conventions (fold sizes, sorted index arrays, ``split`` yielding
``(train_idx, val_idx)``).
"""
from __future__ import annotations

import math
import numbers
import warnings

from ..autograd import Tensor
from ..backend import xp
from ..random import numpy_rng
from .dataset import Subset, targets_of

__all__ = ["random_split", "train_val_split", "stratified_indices", "KFold", "StratifiedKFold",
           "cross_validate"]


def random_split(dataset, lengths, generator=None):
    """Split ``dataset`` into non-overlapping random ``Subset``s (PyTorch's ``random_split``).

    ``lengths``: sizes summing to ``len(dataset)``, or fractions summing to 1 (each gets
    ``floor(f * n)`` and the remainder is dealt out one by one from the first subset on).
    """
    n = len(dataset)
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split needs at least one length")
    if all(isinstance(x, numbers.Real) and 0 <= x <= 1 for x in lengths) and \
            math.isclose(sum(lengths), 1.0) and sum(lengths) != n:
        sizes = [int(math.floor(f * n)) for f in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
        lengths = sizes
    if any(int(x) != x or x < 0 for x in lengths):
        raise ValueError(f"random_split: lengths must be non-negative ints or fractions summing to "
                         f"1, got {lengths}")
    if sum(lengths) != n:
        raise ValueError(f"random_split: lengths sum to {sum(lengths)} but the dataset has {n} "
                         "samples")
    perm = numpy_rng(generator).permutation(n)
    bounds = xp.cumsum([0] + [int(x) for x in lengths])
    return [Subset(dataset, perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _labels(targets):
    y = xp.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if y.ndim != 1:
        raise ValueError(f"class labels must be one-dimensional, got shape {tuple(y.shape)}")
    if xp.issubdtype(y.dtype, xp.floating) and not xp.all(y == xp.round(y)):
        raise ValueError("stratification needs class labels; these targets are not integers "
                         "(a regression target?): pass stratify=False")
    return y


def stratified_indices(targets, val_fraction: float, generator=None):
    """(train_idx, val_idx) with every class's share of the validation set within one sample of
    ``val_fraction`` times its count, and ``round(val_fraction * n)`` samples in all.

    Each class gets ``floor(f * n_c)`` validation samples; the samples still owed to make up
    ``round(f * n)`` go to the classes with the largest remainders (largest-remainder rounding).
    """
    y = _labels(targets)
    n = len(y)
    rng = numpy_rng(generator)
    classes, inverse, counts = xp.unique(y, return_inverse=True, return_counts=True)
    exact = counts * val_fraction
    take = xp.floor(exact).astype(xp.int64)
    owed = int(round(val_fraction * n)) - int(take.sum())
    if owed > 0:
        order = xp.argsort(-(exact - take), kind="stable")
        take[order[:owed]] += 1
    val = []
    for k in range(len(classes)):
        members = xp.flatnonzero(inverse == k)
        val.append(rng.permutation(members)[:take[k]])
    val_idx = xp.sort(xp.concatenate(val)) if val else xp.zeros(0, xp.int64)
    mask = xp.ones(n, dtype=bool)
    mask[val_idx] = False
    return xp.flatnonzero(mask).astype(xp.int64), val_idx.astype(xp.int64)


def _is_dataset(obj):
    return hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and \
        not isinstance(obj, (xp.ndarray, Tensor, list, tuple))


def train_val_split(dataset_or_targets, val_fraction: float = 0.1, stratify: bool = True,
                    generator=None):
    """Split into training and validation parts.

    Given a dataset, returns ``(train_subset, val_subset)``; given an array of labels (or an int
    n, with ``stratify=False``), returns ``(train_idx, val_idx)`` (sorted int64 arrays).
    ``stratify``: keep each class's proportion (within one sample per class) using the dataset's
    ``targets``; False: a plain random split of ``round(val_fraction * n)`` samples.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    is_ds = _is_dataset(dataset_or_targets)
    if isinstance(dataset_or_targets, numbers.Integral):
        if stratify:
            raise ValueError("train_val_split(n): an int has no labels to stratify by; pass "
                             "stratify=False or the labels")
        n = int(dataset_or_targets)
    else:
        n = len(dataset_or_targets)
    if stratify:
        y = targets_of(dataset_or_targets) if is_ds else dataset_or_targets
        train_idx, val_idx = stratified_indices(y, val_fraction, generator)
    else:
        perm = numpy_rng(generator).permutation(n)
        k = int(round(val_fraction * n))
        val_idx, train_idx = xp.sort(perm[:k]), xp.sort(perm[k:])
    if is_ds:
        return Subset(dataset_or_targets, train_idx), Subset(dataset_or_targets, val_idx)
    return train_idx.astype(xp.int64), val_idx.astype(xp.int64)


def _n_of(n_or_data):
    if isinstance(n_or_data, numbers.Integral):
        return int(n_or_data)
    return len(n_or_data)


class KFold:
    """K-fold cross-validation indices (scikit-learn's ``KFold``).

    The samples (shuffled first when ``shuffle``) are cut into ``n_splits`` consecutive folds; the
    first ``n % n_splits`` folds have one sample more. ``split(n_or_data)`` yields
    ``(train_idx, val_idx)`` for each fold, both sorted.
    """

    def __init__(self, n_splits: int = 5, shuffle: bool = False, generator=None):
        if not isinstance(n_splits, numbers.Integral) or n_splits < 2:
            raise ValueError(f"n_splits must be an int >= 2, got {n_splits!r}")
        self.n_splits, self.shuffle, self.generator = int(n_splits), bool(shuffle), generator

    def get_n_splits(self, *args) -> int:
        return self.n_splits

    def _check_n(self, n):
        if self.n_splits > n:
            raise ValueError(f"cannot have n_splits={self.n_splits} greater than the number of "
                             f"samples n={n}")

    def split(self, n_or_data):
        n = _n_of(n_or_data)
        self._check_n(n)
        idx = numpy_rng(self.generator).permutation(n) if self.shuffle else xp.arange(n)
        sizes = xp.full(self.n_splits, n // self.n_splits, dtype=xp.int64)
        sizes[:n % self.n_splits] += 1
        start = 0
        for size in sizes:
            val = xp.sort(idx[start:start + size])
            mask = xp.ones(n, dtype=bool)
            mask[val] = False
            yield xp.flatnonzero(mask).astype(xp.int64), val.astype(xp.int64)
            start += size


class StratifiedKFold(KFold):
    """K folds that keep every class's proportion (scikit-learn's ``StratifiedKFold``).

    Each class's members are dealt to the folds so that every class count per fold is within
    one of ``n_c / n_splits`` and the fold sizes are within one of each other (scikit-learn's
    allocation: deal the label-sorted samples round-robin). With ``shuffle`` the members of each
    class are assigned to folds in random order; without, in index order.
    ``split(targets)`` takes the class labels (or a dataset with ``targets``).
    """

    def split(self, targets):
        if _is_dataset(targets):
            targets = targets_of(targets)
        y = _labels(targets)
        n = len(y)
        self._check_n(n)
        _, y_enc, counts = xp.unique(y, return_inverse=True, return_counts=True)
        if counts.min() < self.n_splits:
            warnings.warn(f"the smallest class has only {counts.min()} members, fewer than "
                          f"n_splits={self.n_splits}", UserWarning, stacklevel=2)
        y_order = xp.sort(y_enc)
        allocation = xp.stack([xp.bincount(y_order[i::self.n_splits], minlength=len(counts))
                               for i in range(self.n_splits)])  # (fold, class) counts
        rng = numpy_rng(self.generator) if self.shuffle else None
        folds = xp.empty(n, dtype=xp.int64)
        for k in range(len(counts)):
            assign = xp.repeat(xp.arange(self.n_splits), allocation[:, k])
            if rng is not None:
                assign = rng.permutation(assign)
            folds[y_enc == k] = assign
        for f in range(self.n_splits):
            yield xp.flatnonzero(folds != f).astype(xp.int64), xp.flatnonzero(folds == f).astype(xp.int64)


def cross_validate(train_and_score, dataset, k: int = 5, stratified: bool = True, generator=None,
                   shuffle: bool = True):
    """K-fold cross-validation of a training procedure.

    ``train_and_score(train_subset, val_subset)`` trains a fresh model on the training part and
    returns its score (a number) on the validation part; it is called once per fold. Folds are
    stratified by the dataset's labels when ``stratified`` and shuffled (with ``generator``) when
    ``shuffle``. Returns ``{"scores": [...], "mean": ..., "std": ..., "folds": [(n_train, n_val)]}``
    (``std`` is the population standard deviation of the fold scores).
    """
    splitter = (StratifiedKFold if stratified else KFold)(k, shuffle=shuffle, generator=generator)
    source = targets_of(dataset) if stratified else len(dataset)
    scores, folds = [], []
    for train_idx, val_idx in splitter.split(source):
        score = train_and_score(Subset(dataset, train_idx), Subset(dataset, val_idx))
        scores.append(float(score.item() if isinstance(score, Tensor) else score))
        folds.append((len(train_idx), len(val_idx)))
    arr = xp.asarray(scores)
    return {"scores": scores, "mean": float(arr.mean()), "std": float(arr.std()), "folds": folds}
