"""Datasets: the abstract ``Dataset``, ``TensorDataset`` over in-memory arrays, and ``Subset``.

A dataset is anything with ``__len__`` and ``__getitem__`` (PyTorch's map-style dataset). A dataset
whose samples already sit in whole arrays may also offer the batched fast path the ``DataLoader``
uses: ``in_memory = True`` and ``get_batch(indices, rng)``, which returns a whole batch as a tuple
of stacked arrays by fancy-indexing, with no per-sample Python call.
"""
from __future__ import annotations

from ..autograd import Tensor
from ..backend import xp


class Dataset:
    """A map-style dataset: ``len(ds)`` samples, ``ds[i]`` is the i-th.

    Subclasses define ``__len__`` and ``__getitem__``. Those that hold their samples in whole arrays
    set ``in_memory = True`` and define ``get_batch(indices, rng=None)`` returning a tuple of arrays
    (one per field, first axis the batch): the ``DataLoader`` then builds each batch with one
    fancy-index per field instead of ``batch_size`` calls of ``__getitem__``.
    """

    in_memory = False
    uses_rng = False  # True when get_batch draws random numbers (a random batch transform)

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, index):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def get_batch(self, indices, rng=None):
        """The samples at ``indices`` as a tuple of stacked arrays (in-memory datasets only)."""
        raise NotImplementedError(f"{type(self).__name__} has no batched access; iterate it with "
                                  "__getitem__")

    def __add__(self, other):
        return ConcatDataset([self, other])


def _to_array(t):
    if isinstance(t, Tensor):
        return t.data
    return xp.asarray(t)


def _index(i, n: int, what: str) -> int:
    try:
        i = int(i.__index__())
    except (AttributeError, TypeError):
        raise TypeError(f"{what} indices must be integers, not {type(i).__name__}") from None
    if not -n <= i < n:
        raise IndexError(f"index {i} is out of range for {what} of length {n}")
    return i + n if i < 0 else i


class TensorDataset(Dataset):
    """Samples are the i-th rows of the given tensors or arrays (PyTorch's ``TensorDataset``).

    ``TensorDataset(x, y)``: ``ds[i] == (x[i], y[i])`` as Tensors. The arrays are kept as they are
    (no copy); ``.arrays`` holds them, ``.tensors`` wraps them as Tensors. The ``DataLoader`` takes
    whole batches from them by fancy-indexing.
    """

    in_memory = True

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor or array")
        arrays = tuple(_to_array(t) for t in tensors)
        for a in arrays:
            if a.ndim == 0:
                raise ValueError("TensorDataset: a 0-d tensor has no samples; every tensor needs "
                                 "a first (sample) dimension")
        if len({a.shape[0] for a in arrays}) > 1:
            shapes = ", ".join(str(tuple(a.shape)) for a in arrays)
            raise ValueError(f"TensorDataset: all tensors must have the same length (size of the "
                             f"first dimension), got shapes {shapes}")
        self.arrays = arrays

    @property
    def tensors(self):
        return tuple(Tensor._wrap(a) for a in self.arrays)

    @property
    def targets(self):
        """The last array (the labels of ``TensorDataset(x, y)``); None with a single array."""
        return self.arrays[-1] if len(self.arrays) > 1 else None

    def __len__(self) -> int:
        return int(self.arrays[0].shape[0])

    def __getitem__(self, index):
        i = _index(index, len(self), "TensorDataset")
        return tuple(Tensor._wrap(xp.asarray(a[i])) for a in self.arrays)

    def get_batch(self, indices, rng=None):
        return tuple(a[indices] for a in self.arrays)

    def __repr__(self):
        shapes = ", ".join(f"{tuple(a.shape)} {a.dtype}" for a in self.arrays)
        return f"TensorDataset({shapes})"


ArrayDataset = TensorDataset  # the name for NumPy users: it takes arrays as well as Tensors


class _Wrapper(Dataset):
    """A dataset over ``self.dataset``: its batch access (``in_memory``), its randomness
    (``uses_rng``) and its class names pass through."""

    @property
    def in_memory(self):
        return getattr(self.dataset, "in_memory", False)

    @property
    def uses_rng(self):
        return getattr(self.dataset, "uses_rng", False)

    @property
    def classes(self):
        return getattr(self.dataset, "classes", None)


class Subset(_Wrapper):
    """The samples of ``dataset`` at ``indices``, in that order (PyTorch's ``Subset``)."""

    def __init__(self, dataset, indices):
        n = len(dataset)
        idx = xp.asarray(_to_array(indices))
        if idx.dtype == xp.bool_:
            raise TypeError("Subset takes integer indices, not a boolean mask (use "
                            "numpy.flatnonzero(mask))")
        if idx.size and not xp.issubdtype(idx.dtype, xp.integer):
            raise TypeError(f"Subset indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(xp.int64).reshape(-1)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            bad = idx[(idx < -n) | (idx >= n)][0]
            raise IndexError(f"Subset: index {bad} is out of range for a dataset of length {n}")
        self.dataset = dataset
        self.indices = xp.where(idx < 0, idx + n, idx)

    @property
    def targets(self):
        t = targets_of(self.dataset, required=False)
        return None if t is None else t[self.indices]

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, index):
        return self.dataset[int(self.indices[_index(index, len(self), "Subset")])]

    def get_batch(self, indices, rng=None):
        return self.dataset.get_batch(self.indices[indices], rng)

    def __repr__(self):
        return f"Subset({len(self)} of {self.dataset!r})"


class ConcatDataset(Dataset):
    """The samples of several datasets one after the other (``ds1 + ds2``)."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset needs at least one dataset")
        self.cumulative = xp.cumsum([len(d) for d in self.datasets])

    def __len__(self) -> int:
        return int(self.cumulative[-1])

    def __getitem__(self, index):
        i = _index(index, len(self), "ConcatDataset")
        k = int(xp.searchsorted(self.cumulative, i, side="right"))
        return self.datasets[k][i - (int(self.cumulative[k - 1]) if k else 0)]


def targets_of(dataset, required: bool = True):
    """The class labels of ``dataset`` as an array: its ``targets`` attribute (MNIST, Subset,
    ``TensorDataset(x, y)``), else the second field of every sample (a per-item loop)."""
    t = getattr(dataset, "targets", None)
    if t is not None:
        return _to_array(t)
    if isinstance(dataset, (xp.ndarray, Tensor, list, tuple)):
        return _to_array(dataset)
    if isinstance(dataset, TensorDataset):  # a single array: no labels
        if required:
            raise ValueError("this TensorDataset has a single tensor: no labels to stratify by")
        return None
    try:
        return xp.asarray([_to_array(dataset[i][1]) for i in range(len(dataset))])
    except (TypeError, IndexError, KeyError):
        if required:
            raise ValueError(f"cannot find class labels in {type(dataset).__name__}: give it a "
                             "'targets' attribute or return (input, label) samples") from None
        return None


class ReconstructionPairs(_Wrapper):
    """``(x, x.copy(), label)`` for each item of ``dataset``: an input, its clean copy as the
    target, and the item's label (its second field; -1 when it has none), for autoencoders and
    denoising (``Trainer(task=Reconstruction(target="target"))`` trains on the first two).

    Why the copy: a ``DataLoader(transform=...)`` changes only the first field of a batch, so
    with a noise transform (``transforms.parse_noise("masking=0.25")``) the input is corrupted
    and the target is not, drawn from the loader's per-batch generator (a resumed run replays the
    same noise). A batch transform of the wrapped dataset itself (``FashionMNIST(transform=...)``)
    is applied before the copy: it changes input and target alike. Batched access (``get_batch``)
    when the wrapped dataset has it.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    @property
    def targets(self):
        """The wrapped dataset's ``targets`` (for stratified splits), or None."""
        return getattr(self.dataset, "targets", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        item = self.dataset[_index(index, len(self), "ReconstructionPairs")]
        if isinstance(item, (tuple, list)):
            x, label = item[0], (item[1] if len(item) > 1 else -1)
        else:
            x, label = item, -1
        clean = Tensor._wrap(x.data.copy()) if isinstance(x, Tensor) else xp.array(x, copy=True)
        return x, clean, label

    def get_batch(self, indices, rng=None):
        fields = tuple(self.dataset.get_batch(indices, rng))
        x = fields[0]
        label = fields[1] if len(fields) > 1 else xp.full(len(x), -1, dtype=xp.int64)
        return x, x.copy(), label

    def __repr__(self):
        return f"ReconstructionPairs({self.dataset!r})"
