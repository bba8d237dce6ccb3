"""Samplers: the order in which a ``DataLoader`` visits a dataset (PyTorch's ``torch.utils.data``
samplers).

A sampler is an iterable of dataset indices with a ``len``; each ``iter(sampler)`` is one epoch.
``DataLoader(dataset, sampler=...)`` cuts what it yields into batches of ``batch_size``.

- ``SequentialSampler(ds)``: 0, 1, ..., len(ds) - 1 (the loader's default, ``shuffle=False``);
- ``RandomSampler(ds)``: a new random permutation every epoch (``shuffle=True``), or
  ``num_samples`` draws with ``replacement``;
- ``SubsetRandomSampler(indices)``: the given indices, in a new random order every epoch;
- ``DistributedSampler(ds, num_replicas, rank)``: the part of the data one of several processes
  (ranks) sees, disjoint from the others' and the same size for all.

Randomness comes from a ``foveanet.Generator`` (the global one when ``generator`` is None), drawn
when ``iter()`` is called, not lazily: the loader's order of draws (the permutation, then the
augmentation seed) is then fixed. ``DistributedSampler`` draws from nothing shared: its permutation
is ``numpy.random.default_rng([seed, epoch]).permutation(n)``, so every rank computes the same
one without communicating.

Departure from PyTorch: every sampler has ``state_dict()`` / ``load_state_dict(state)``
(JSON-serialisable: an epoch, a generator state), which the ``DataLoader`` saves with its own
state so that a resumed run visits the same samples in the same order, bit for bit.
"""
from __future__ import annotations

import math
import numbers

from ..backend import process_group, xp
from ..random import Generator, numpy_rng
from ..random import default_generator as _global_generator

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler",
           "DistributedSampler"]


def _check_generator(generator):
    if generator is not None and not isinstance(generator, Generator):
        raise TypeError(f"generator must be a foveanet.Generator, got {type(generator).__name__}")
    return generator


def _int(value, name, minimum):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class Sampler:
    """Base class: subclasses define ``__iter__`` (the indices of one epoch) and ``__len__``.

    ``state_dict()`` / ``load_state_dict()`` save and restore what decides the next epoch's
    order; the base class has none (an empty dict). A subclass with random state overrides both.
    """

    def __iter__(self):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class _GeneratorState:
    """State of samplers that draw from a generator: that generator's state."""

    generator = None

    def state_dict(self) -> dict:
        gen = self.generator if self.generator is not None else _global_generator
        return {"generator": gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"{type(self).__name__}: a sampler state is a dict (from "
                             f"state_dict()), got {type(state).__name__}")
        if state.get("generator") is not None:
            gen = self.generator if self.generator is not None else _global_generator
            gen.set_state(state["generator"])


class SequentialSampler(Sampler):
    """``0, 1, ..., len(data_source) - 1``, the same every epoch."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)

    def __repr__(self):
        return f"SequentialSampler({len(self)})"


class RandomSampler(_GeneratorState, Sampler):
    """Random indices into ``data_source``, new ones every epoch (PyTorch's ``RandomSampler``).

    Without ``replacement``: a random permutation of all indices; ``num_samples`` larger than the
    dataset gives several permutations one after the other, then the start of one more.
    With ``replacement``: ``num_samples`` (default ``len(data_source)``) independent uniform draws.
    ``generator``: a ``foveanet.Generator`` (default: the global generator).
    """

    def __init__(self, data_source, replacement: bool = False, num_samples: int | None = None,
                 generator: Generator | None = None):
        if not isinstance(replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got "
                            f"replacement={replacement!r}")
        if num_samples is not None:
            num_samples = _int(num_samples, "num_samples", 1)
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = _check_generator(generator)

    @property
    def num_samples(self) -> int:
        """Indices per epoch: ``num_samples`` if given, else the dataset's current length."""
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n, k = len(self.data_source), self.num_samples
        rng = numpy_rng(self.generator)
        if k and not n:
            raise ValueError(f"RandomSampler: cannot draw {k} samples from an empty dataset")
        if self.replacement:
            order = rng.integers(0, n, size=k)
        else:
            # one permutation per full pass; a partial pass only when there is a remainder, so
            # the default (k == n) is exactly one rng.permutation(n)
            parts = [rng.permutation(n) for _ in range(k // n if n else 0)]
            if n and k % n:
                parts.append(rng.permutation(n)[:k % n])
            order = xp.concatenate(parts) if parts else xp.zeros(0, xp.int64)
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self):
        return (f"RandomSampler({len(self.data_source)}, replacement={self.replacement}, "
                f"num_samples={self.num_samples})")


class SubsetRandomSampler(_GeneratorState, Sampler):
    """The elements of ``indices`` in a new random order every epoch (each once per epoch)."""

    def __init__(self, indices, generator: Generator | None = None):
        self.indices = indices
        self.generator = _check_generator(generator)

    def __iter__(self):
        perm = numpy_rng(self.generator).permutation(len(self.indices))
        return iter([int(self.indices[i]) for i in perm.tolist()])

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self):
        return f"SubsetRandomSampler({len(self)} indices)"


class DistributedSampler(Sampler):
    """The share of ``dataset`` that process ``rank`` of ``num_replicas`` sees (PyTorch's
    ``DistributedSampler``).

    Every epoch, all ranks compute the same order: a permutation drawn from ``seed`` and the epoch
    (when ``shuffle``), else 0 .. n-1. Unless ``drop_last``, it is padded by repeating its first
    indices until its length divides by ``num_replicas`` (so a few samples are seen twice per
    epoch); with ``drop_last`` its tail is cut instead. Rank r takes every ``num_replicas``-th
    index from position r: the ranks' parts are disjoint and ``len(sampler)`` each.

    The epoch: ``set_epoch(e)`` makes the next iteration epoch ``e``; an iteration with no
    ``set_epoch`` call since the one before is the epoch after it (the first is epoch 0). So code
    that calls ``set_epoch(epoch)`` every epoch, as PyTorch's examples do, gets exactly those
    epochs, and code that forgets it still gets a new order every epoch instead of PyTorch's
    silent repeat of epoch 0's. ``.epoch`` is the epoch of the latest iteration (or the one set).

    ``num_replicas`` and ``rank`` default to the process group's size and this process's rank
    (``fv.distributed.init_process_group``), else 1 and 0 (one process); ``rank`` must be in
    [0, num_replicas).
    """

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        group = process_group.current()
        if num_replicas is None:
            num_replicas = 1 if group is None else group.size
        num_replicas = _int(num_replicas, "num_replicas", 1)
        if rank is None:
            rank = 0 if group is None else group.rank
        if not isinstance(rank, numbers.Integral) or isinstance(rank, bool) or \
                not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank!r}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = int(rank)
        self.shuffle = bool(shuffle)
        self.seed = _int(seed, "seed", 0)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self._advance = False  # True once an iteration used self.epoch: the next one is epoch + 1

    @property
    def num_samples(self) -> int:
        """Indices per rank and epoch (PyTorch's rule)."""
        n, r = len(self.dataset), self.num_replicas
        if self.drop_last and n % r:
            return math.ceil((n - r) / r)  # the largest multiple of r below n, shared out
        return math.ceil(n / r)

    @property
    def total_size(self) -> int:
        return self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (then ``epoch + 1``, and so on)."""
        self.epoch = _int(epoch, "epoch", 0)
        self._advance = False

    def indices(self, epoch: int | None = None):
        """The indices this rank visits in ``epoch`` (default: ``.epoch``), as an int64 array."""
        epoch = self.epoch if epoch is None else _int(epoch, "epoch", 0)
        n, total = len(self.dataset), self.total_size
        order = (xp.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle
                 else xp.arange(n))
        if total > n:  # pad with the order's start, repeated as often as needed (n < replicas)
            order = xp.concatenate([order, xp.resize(order, total - n)])
        order = order[:total]
        return order[self.rank:total:self.num_replicas].astype(xp.int64)

    def __iter__(self):
        if self._advance:
            self.epoch += 1
        self._advance = True
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "advance": self._advance}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self._advance = bool(state.get("advance", False))

    def __repr__(self):
        return (f"DistributedSampler({len(self.dataset)}, num_replicas={self.num_replicas}, "
                f"rank={self.rank}, shuffle={self.shuffle}, seed={self.seed}, "
                f"drop_last={self.drop_last}, epoch={self.epoch})")
