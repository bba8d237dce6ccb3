"""Dropout: a regulariser that zeroes random units during training."""
from __future__ import annotations

from ...random import Generator
from .. import functional as F
from ..module import Module
from ._util import check_probability, tensor_input


class Dropout(Module):
    """During training, zero each element independently with probability ``p`` and scale the
    survivors by 1 / (1 - p), so the expected activation is unchanged; in eval mode, the identity.

    ``generator``: an ``fv.Generator`` for the masks (default: the global generator, seeded by
    ``fv.manual_seed``). No parameters."""

    def __init__(self, p: float = 0.5, inplace: bool = False, generator=None):
        super().__init__()
        self.p = check_probability(type(self).__name__, "p (the probability of dropping a unit)", p)
        if generator is not None and not isinstance(generator, Generator):
            raise TypeError(f"{type(self).__name__}: generator must be a foveanet.Generator, got "
                            f"{type(generator).__name__}")
        self.inplace = inplace
        self.generator = generator

    def forward(self, input):  # noqa: A002
        x = tensor_input(self, input)
        return F.dropout(x, self.p, self.training, self.inplace, generator=self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout2d(Dropout):
    """Channel dropout: during training zero whole feature maps (N, C) of a (N, C, H, W) or
    (C, H, W) input with probability ``p``, scaling the rest by 1 / (1 - p); neighbouring pixels
    are strongly correlated, so dropping single pixels would barely regularise. No parameters."""

    def forward(self, input):  # noqa: A002
        x = tensor_input(self, input)
        if x.ndim not in (3, 4):
            raise ValueError(f"{self._short_repr()}: expected input of shape (N, C, H, W) or (C, H, W), "
                             f"got {tuple(x.shape)}")
        return F.dropout2d(x, self.p, self.training, self.inplace, generator=self.generator)
