"""Layers that only move numbers around: Identity, Flatten, Unflatten. None has parameters."""
from __future__ import annotations

import math

from ..module import Module
from ._util import shape_str, tensor_input


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. to cut off a model's head). Arguments are
    accepted and ignored. No parameters."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):  # noqa: A002
        return input


class Flatten(Module):
    """Merge dimensions ``start_dim`` .. ``end_dim`` into one: (N, C, H, W) -> (N, C*H*W) by default
    (between the convolutional features and the fully connected classifier). No parameters."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):  # noqa: A002
        x = tensor_input(self, input)
        nd = max(x.ndim, 1)
        s, e = self.start_dim, self.end_dim
        if not (-nd <= s < nd and -nd <= e < nd):
            raise ValueError(f"{self._short_repr()}: input of shape {shape_str(x.shape)} has {x.ndim} "
                             f"dimensions, too few for start_dim={s}, end_dim={e}")
        return x.flatten(s, e)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dimension ``dim`` into ``unflattened_size``: (N, 784) -> (N, 1, 28, 28) with
    ``Unflatten(1, (1, 28, 28))``. No parameters."""

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        size = tuple(int(s) for s in unflattened_size)
        if not size or any(s < 1 and s != -1 for s in size) or size.count(-1) > 1:
            raise ValueError(f"Unflatten: unflattened_size must be a tuple of positive ints (one may "
                             f"be -1), got {unflattened_size!r}")
        self.dim = dim
        self.unflattened_size = size

    def forward(self, input):  # noqa: A002
        x = tensor_input(self, input)
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"{self._short_repr()}: input of shape {shape_str(x.shape)} has no "
                             f"dimension {self.dim}")
        d = self.dim % x.ndim
        n = x.shape[d]
        size = self.unflattened_size
        known = math.prod(s for s in size if s != -1)
        if (-1 in size and n % known) or (-1 not in size and known != n):
            raise ValueError(f"{self._short_repr()}: dimension {self.dim} of the input has size {n}, "
                             f"which does not split into {size}")
        size = tuple(n // known if s == -1 else s for s in size)
        return x.reshape(tuple(x.shape[:d]) + size + tuple(x.shape[d + 1:]))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
