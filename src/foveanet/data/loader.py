"""``DataLoader``: seeded, resumable mini-batches, fast for data held in memory.

The order of the samples comes from a sampler (``foveanet.data.samplers``): the one given as
``sampler``, else a ``RandomSampler`` drawing from the loader's generator (``shuffle=True``) or a
``SequentialSampler``. Each epoch (each ``iter(loader)``) first asks the sampler for its indices
(a ``RandomSampler`` on the loader's generator draws the permutation then), then draws one seed
for augmentation from the loader's generator (only when there is a ``transform`` or the dataset's
own batch transform is random). Batch ``b`` is augmented with ``numpy.random.default_rng([seed,
b])``, so any batch can be re-made without replaying the ones before it. The same generator
state (and sampler state) therefore gives the same batches, and ``state_dict()`` /
``load_state_dict()`` resume a run, even in the middle of an epoch: the state holds the
generator's and the sampler's state at the start of the epoch and the number of batches done.

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

import itertools
import math
import numbers

from ..autograd import Tensor
from ..backend import get_default_dtype, xp
from ..random import Generator, numpy_rng
from ..random import default_generator as _global_generator
from .samplers import RandomSampler, SequentialSampler


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
        return _stack([it.data for it in items])
    if isinstance(first, bool):
        return xp.asarray(items, dtype=xp.bool_)
    if isinstance(first, numbers.Integral):
        return xp.asarray(items, dtype=xp.int64)
    if isinstance(first, numbers.Real):
        return xp.asarray(items, dtype=get_default_dtype())
    if isinstance(first, (xp.ndarray, xp.generic)):
        return _stack([xp.asarray(it) for it in items])
    return list(items)  # strings and other objects: a list


def _stack(arrays):
    shapes = {tuple(a.shape) for a in arrays}
    if len(shapes) > 1:
        listed = ", ".join(str(s) for s in sorted(shapes)[:4])
        raise ValueError(f"default_collate: the samples of a batch have different shapes ({listed}"
                         f"{', ...' if len(shapes) > 4 else ''}); make them one size in the dataset "
                         "(e.g. ImageFolder(size=...) or transforms.Resize / CenterCrop)")
    return xp.stack(arrays)


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
    every epoch (a ``RandomSampler`` on ``generator``). ``sampler``: the indices to visit, in
    order, instead (a ``foveanet.data.samplers.Sampler`` or any iterable of ints with a ``len``;
    not together with ``shuffle``, as in PyTorch). ``drop_last``: drop the last, smaller batch.
    ``generator``: a ``foveanet.Generator`` for the order (without ``sampler``) and the
    augmentation (default: the global generator). ``transform``: a batch transform ``t(x, rng)``
    for the inputs, e.g. ``transforms.Compose([...])``. ``collate_fn``: turns the list of samples
    of a batch into a batch (its result is yielded as it is).
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, sampler=None,
                 drop_last: bool = False, generator: Generator | None = None, transform=None,
                 collate_fn=None):
        if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if generator is not None and not isinstance(generator, Generator):
            raise TypeError(f"generator must be a foveanet.Generator, got {type(generator).__name__}")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if sampler is not None and not (hasattr(sampler, "__iter__") and hasattr(sampler, "__len__")):
            raise TypeError(f"sampler must be an iterable of indices with a len(), got "
                            f"{type(sampler).__name__}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.generator = generator if generator is not None else _global_generator
        if sampler is None:
            sampler = (RandomSampler(dataset, generator=self.generator) if self.shuffle
                       else SequentialSampler(dataset))
        self.sampler = sampler
        self.transform = transform
        self.collate_fn = collate_fn
        self.epoch = 0              # epochs started
        self._resume_batch = 0      # batches to skip at the next epoch (load_state_dict)
        self._epoch_state = None    # generator and sampler state at the start of the epoch in progress
        self._batches_done = 0
        self._iteration = 0

    @property
    def fast_path(self) -> bool:
        """True when batches are fancy-index slices of in-memory arrays."""
        return self.collate_fn is None and bool(getattr(self.dataset, "in_memory", False))

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    # ------------------------------------------------------------------------- state and resume
    def _sampler_state(self):
        fn = getattr(self.sampler, "state_dict", None)
        return fn() if callable(fn) else None

    def _start_state(self) -> dict:
        return {"generator": self.generator.get_state(), "sampler": self._sampler_state()}

    def state_dict(self) -> dict:
        """Where the loader is: the epoch, the generator's and the sampler's state at its start,
        batches done in it (JSON-serialisable). ``load_state_dict`` of this makes the next
        ``iter`` continue with the next batch."""
        if self._epoch_state is not None:  # in the middle of an epoch
            return {"epoch": self.epoch - 1, **self._epoch_state, "batch": self._batches_done}
        return {"epoch": self.epoch, **self._start_state(), "batch": 0}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``. A state without ``"sampler"`` (saved before samplers were
        part of it) restores the generator only. A malformed state is a ValueError, raised before
        anything changes."""
        if not isinstance(state, dict) or "generator" not in state or "epoch" not in state:
            raise ValueError("a DataLoader state needs 'generator' and 'epoch' (from state_dict())")
        if state.get("sampler") is not None and not isinstance(state["sampler"], dict):
            raise ValueError(f"a DataLoader state's 'sampler' must be a dict or None, got "
                             f"{type(state['sampler']).__name__}")
        try:
            epoch, batch = int(state["epoch"]), int(state.get("batch", 0))
        except (TypeError, ValueError):
            raise ValueError(f"a DataLoader state's 'epoch' and 'batch' must be integers, got "
                             f"{state['epoch']!r} and {state.get('batch', 0)!r}") from None
        self.generator.set_state(state["generator"])
        load = getattr(self.sampler, "load_state_dict", None)
        if state.get("sampler") is not None and callable(load):
            load(state["sampler"])
        self.epoch, self._resume_batch = epoch, batch
        self._epoch_state = None
        self._batches_done = 0

    # ------------------------------------------------------------------------------- iteration
    def _needs_rng(self) -> bool:
        return self.transform is not None or (self.fast_path and getattr(self.dataset, "uses_rng", False))

    def __iter__(self):
        start_state = self._start_state()
        order = iter(self.sampler)  # built-in samplers draw their order here, before the seed
        seed = int(numpy_rng(self.generator).integers(2**63)) if self._needs_rng() else None
        skip, self._resume_batch = self._resume_batch, 0
        self.epoch += 1
        self._iteration += 1
        self._epoch_state, self._batches_done = start_state, skip
        return self._batches(order, seed, skip, self._iteration)

    def _batches(self, order, seed, skip, iteration):
        bs, n = self.batch_size, len(self.dataset)
        for b in itertools.count():
            # the next batch_size indices as one array: the fast path fancy-indexes with it
            idx = xp.fromiter(itertools.islice(order, bs), dtype=xp.int64)
            if idx.size == 0 or (idx.size < bs and self.drop_last):
                break
            if b < skip:  # resuming: these batches were done before the state was saved
                continue
            if idx.min() < -n or idx.max() >= n:
                bad = int(idx[(idx < -n) | (idx >= n)][0])
                raise IndexError(f"DataLoader: the sampler ({type(self.sampler).__name__}) gave "
                                 f"index {bad}, out of range for a dataset of length {n}")
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
                f"{self.batch_size}, sampler={self.sampler!r}, drop_last={self.drop_last}, "
                f"fast_path={self.fast_path})")
