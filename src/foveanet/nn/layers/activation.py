"""Activation functions as layers (for ``Sequential``); each computes through ``nn.functional``.
None has parameters."""
from __future__ import annotations

from .. import functional as F
from ..module import Module
from ._util import tensor_input


def _inplace_str(inplace: bool) -> str:
    return "inplace=True" if inplace else ""


class ReLU(Module):
    """max(0, x). No parameters."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):  # noqa: A002
        return F.relu(tensor_input(self, input), inplace=self.inplace)

    def extra_repr(self) -> str:
        return _inplace_str(self.inplace)


class LeakyReLU(Module):
    """x for x >= 0, negative_slope * x below. No parameters."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input):  # noqa: A002
        return F.leaky_relu(tensor_input(self, input), self.negative_slope, inplace=self.inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class ELU(Module):
    """x for x > 0, alpha (exp(x) - 1) below. No parameters."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input):  # noqa: A002
        return F.elu(tensor_input(self, input), self.alpha, inplace=self.inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class Sigmoid(Module):
    """The logistic function with the lecture's steepness ``sigma``: 1 / (1 + exp(-sigma x)).

    ``sigma=1`` (the default) is PyTorch's ``nn.Sigmoid``. No parameters."""

    def __init__(self, sigma: float = 1.0):
        super().__init__()
        self.sigma = sigma

    def forward(self, input):  # noqa: A002
        return F.sigmoid(tensor_input(self, input), sigma=self.sigma)

    def extra_repr(self) -> str:
        return "" if self.sigma == 1.0 else f"sigma={self.sigma}"


class Tanh(Module):
    """The hyperbolic tangent, (e^x - e^-x) / (e^x + e^-x). No parameters."""

    def forward(self, input):  # noqa: A002
        return F.tanh(tensor_input(self, input))


class Softmax(Module):
    """exp(x_i) / sum_j exp(x_j) along ``dim``. No parameters."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):  # noqa: A002
        return F.softmax(tensor_input(self, input), self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """log(softmax(x)) along ``dim``, computed stably (x_i - logsumexp(x)). No parameters."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):  # noqa: A002
        return F.log_softmax(tensor_input(self, input), self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
