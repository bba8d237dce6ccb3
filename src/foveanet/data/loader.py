"""``DataLoader``: seeded, resumable mini-batches, fast for data held in memory.

Each epoch (each ``iter(loader)``) draws, from the loader's generator and in this order: the
permutation of the samples (only when ``shuffle``), then one seed for augmentation (only when
there is a ``transform`` or the dataset's own batch transform is random). Batch ``b`` is then
augmented with ``numpy.random.default_rng([seed, b])``, so any batch can be re-made without
replaying the ones before it. The same generator state therefore gives the same batches, and
``state_dict()`` / ``load_state_dict()`` resume a run, even in the middle of an epoch.

With no ``generator``, the loader draws from foveanet's global generator (``fv.manual_seed``
makes it reproducible); ``loader.generator`` is then that global generator.

Fast path: when the dataset is in memory (``TensorDataset``, ``MNIST`` / ``FashionMNIST``, a
``Subset`` of those) and there is no ``collate_fn``, a batch is one NumPy fancy-index per field
(``dataset.get_batch(indices)``), not ``batch_size`` calls of ``__getitem__``. Other datasets are
read item by item and stacked by ``default_collate``.

Batches are tuples of Tensors, ready for a model: floating-point fields become the default float
dtype (float32), integer fields int64 (class labels). ``transform(x, rng)`` is applied to the
first field of the batch (the inputs), as a whole (N, C, H, W) array.
"""
from __future__ import annotations

import math
import numbers

from ..autograd import Tensor
from ..backend import get_default_dtype, xp
from ..random import Generator, numpy_rng
from ..random import default_generator as _global_generator


def _as_field(a):
    """A Tensor from a collated field: floats in the default float dtype, integers int64."""
    if isinstance(a, Tensor):
        return a
    a = xp.asarray(a)
    if xp.issubdtype(a.dtype, xp.floating) and a.dtype != get_default_dtype():
        a = a.astype(get_default_dtype())
    elif xp.issubdtype(a.dtype, xp.integer) and a.dtype != xp.int64:
        a = a.astype(xp.int64)
    return Tensor._wrap(a)


def default_collate(items):
    """Stack a list of samples into a batch of arrays, field by field.

    Samples may be tuples/lists (a tuple of batched fields), dicts (a dict of them), Tensors or
    arrays (stacked along a new first axis), Python ints (int64), floats (float32) or bools.
    """
    first = items[0]
    if isinstance(first, (tuple, list)):
        if any(len(it) != len(first) for it in items):
            raise ValueError("default_collate: samples have different numbers of fields")
        return tuple(default_collate([it[k] for it in items]) for k in range(len(first)))
    if isinstance(first, dict):
        return {k: default_collate([it[k] for it in items]) for k in first}
    if isinstance(first, Tensor):
        return xp.stack([it.data for it in items])
    if isinstance(first, bool):
        return xp.asarray(items, dtype=xp.bool_)
    if isinstance(first, numbers.Integral):
        return xp.asarray(items, dtype=xp.int64)
    if isinstance(first, numbers.Real):
        return xp.asarray(items, dtype=get_default_dtype())
    if isinstance(first, (xp.ndarray, xp.generic)):
        return xp.stack([xp.asarray(it) for it in items])
    return list(items)  # strings and other objects: a list


def _to_tensors(batch):
    if isinstance(batch, tuple):
        return tuple(_to_tensors(b) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_tensors(v) for k, v in batch.items()}
    if isinstance(batch, list):
        return batch
    return _as_field(batch)


def _transform_first(batch, transform, rng):
    """Apply ``transform`` to the inputs: the first field of a tuple batch, or the batch itself."""
    if isinstance(batch, (tuple, list)) and batch:
        return type(batch)([transform(batch[0], rng), *batch[1:]])
    return transform(batch, rng)


class DataLoader:
    """Iterate over ``dataset`` in mini-batches (PyTorch's ``DataLoader``, single process).

    ``batch_size``: samples per batch (1 for on-line learning). ``shuffle``: a new random order
    every epoch. ``drop_last``: drop the last, smaller batch. ``generator``: a ``foveanet.Generator``
    for the order and the augmentation (default: the global generator). ``transform``: a batch
    transform ``t(x, rng)`` for the inputs, e.g. ``transforms.Compose([...])``. ``collate_fn``:
    turns the list of samples of a batch into a batch (its result is yielded as it is).
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 generator: Generator | None = None, transform=None, collate_fn=None):
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if generator is not None and not isinstance(generator, Generator):
            raise TypeError(f"generator must be a foveanet.Generator, got {type(generator).__name__}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.generator = generator if generator is not None else _global_generator
        self.transform = transform
        self.collate_fn = collate_fn
        self.epoch = 0              # epochs started
        self._resume_batch = 0      # batches to skip at the next epoch (load_state_dict)
        self._epoch_state = None    # generator state at the start of the epoch in progress
        self._batches_done = 0
        self._iteration = 0

    @property
    def fast_path(self) -> bool:
        """True when batches are fancy-index slices of in-memory arrays."""
        return self.collate_fn is None and bool(getattr(self.dataset, "in_memory", False))

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    # ------------------------------------------------------------------------- state and resume
    def state_dict(self) -> dict:
        """Where the loader is: the epoch, the generator state at its start, batches done in it.
        ``load_state_dict`` of this makes the next ``iter`` continue with the next batch."""
        if self._epoch_state is not None:  # in the middle of an epoch
            return {"epoch": self.epoch - 1, "generator": self._epoch_state, "batch": self._batches_done}
        return {"epoch": self.epoch, "generator": self.generator.get_state(), "batch": 0}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        self._resume_batch = int(state.get("batch", 0))
        self._epoch_state = None
        self._batches_done = 0

    # ------------------------------------------------------------------------------- iteration
    def _needs_rng(self) -> bool:
        return self.transform is not None or (self.fast_path and getattr(self.dataset, "uses_rng", False))

    def __iter__(self):
        n = len(self.dataset)
        start_state = self.generator.get_state()
        rng = numpy_rng(self.generator)
        order = rng.permutation(n) if self.shuffle else xp.arange(n)
        seed = int(rng.integers(2**63)) if self._needs_rng() else None
        skip, self._resume_batch = self._resume_batch, 0
        self.epoch += 1
        self._iteration += 1
        return self._batches(order, seed, skip, start_state, self._iteration)

    def _batches(self, order, seed, skip, start_state, iteration):
        nb, bs = len(self), self.batch_size
        self._epoch_state, self._batches_done = start_state, skip
        for b in range(skip, nb):
            idx = order[b * bs:(b + 1) * bs]
            rng = xp.random.default_rng([seed, b]) if seed is not None else None
            batch = self._fetch(idx, rng)
            if iteration == self._iteration:
                self._batches_done = b + 1
            yield batch
        if iteration == self._iteration:
            self._epoch_state, self._batches_done = None, 0

    def _fetch(self, idx, rng):
        if self.fast_path:
            batch = tuple(self.dataset.get_batch(idx, rng))
            if self.transform is not None:
                batch = _transform_first(batch, self.transform, rng)
            return _to_tensors(batch)
        items = [self.dataset[int(i)] for i in idx]
        if self.collate_fn is not None:
            batch = self.collate_fn(items)
            return _transform_first(batch, self.transform, rng) if self.transform is not None else batch
        batch = default_collate(items)
        if self.transform is not None:
            batch = _transform_first(batch, self.transform, rng)
        return _to_tensors(batch)

    def __repr__(self):
        return (f"DataLoader({type(self.dataset).__name__} of {len(self.dataset)}, batch_size="
                f"{self.batch_size}, shuffle={self.shuffle}, drop_last={self.drop_last}, "
                f"fast_path={self.fast_path})")
