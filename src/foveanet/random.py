"""Seedable randomness: one global generator (``fv.manual_seed``) and explicit ``fv.Generator``s.

Everything random in foveanet (initialisation, dropout, shuffling, augmentation) draws from a
``Generator`` passed in, or else from the global one, so the same seed gives the same run.
"""
from __future__ import annotations

from .backend import get_default_dtype, xp


class Generator:
    """A seedable source of random numbers (PyTorch's ``torch.Generator``)."""

    def __init__(self, seed: int | None = None):
        self.manual_seed(0 if seed is None else seed)

    def manual_seed(self, seed: int) -> "Generator":
        if not isinstance(seed, (int, xp.integer)) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self._seed = int(seed)
        self.rng = xp.random.Generator(xp.random.PCG64(self._seed))
        return self

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        """A JSON-serialisable snapshot of the generator's state."""
        return {"seed": self._seed, "bit_generator": self.rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self._seed = int(state["seed"])
        self.rng.bit_generator.state = state["bit_generator"]


default_generator = Generator(0)


def manual_seed(seed: int) -> Generator:
    """Seed the global generator; returns it (as PyTorch does)."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Seed the global generator from the operating system's entropy; returns the seed."""
    s = int(xp.random.SeedSequence().entropy % (2**63))
    default_generator.manual_seed(s)
    return s


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> dict:
    return default_generator.get_state()


def set_rng_state(state: dict) -> None:
    default_generator.set_state(state)


def numpy_rng(generator: Generator | None):
    """The NumPy random generator behind ``generator`` (the global one when None)."""
    if generator is None:
        return default_generator.rng
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a foveanet.Generator, got {type(generator).__name__}")
    return generator.rng


def _shape(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return tuple(size[0])
    return tuple(size)


def _float_dtype(dtype):
    return xp.dtype(dtype) if dtype is not None else get_default_dtype()


def _wrap(data, requires_grad):
    from .autograd import Tensor
    return Tensor(data, requires_grad=requires_grad)


def rand(*size, generator=None, dtype=None, requires_grad=False):
    """Uniform samples in [0, 1)."""
    return _wrap(numpy_rng(generator).random(_shape(size)).astype(_float_dtype(dtype)), requires_grad)


def randn(*size, generator=None, dtype=None, requires_grad=False):
    """Standard normal samples."""
    return _wrap(numpy_rng(generator).standard_normal(_shape(size)).astype(_float_dtype(dtype)), requires_grad)


def randint(low, high=None, size=(), generator=None, dtype=xp.int64):
    """Integers in [low, high) (or [0, low) when high is omitted)."""
    if high is None:
        low, high = 0, low
    return _wrap(numpy_rng(generator).integers(low, high, size=tuple(size)).astype(dtype), False)


def randperm(n: int, generator=None, dtype=xp.int64):
    """A random permutation of 0 .. n-1."""
    return _wrap(numpy_rng(generator).permutation(n).astype(dtype), False)


def normal(mean, std, size, generator=None, dtype=None):
    return _wrap(numpy_rng(generator).normal(mean, std, tuple(size)).astype(_float_dtype(dtype)), False)
