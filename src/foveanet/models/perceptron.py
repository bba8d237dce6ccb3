"""Rosenblatt's perceptron (1958): one layer of threshold units, trained by the perceptron
learning rule ``w <- w + lr (d - y) x`` (no gradients: the step function has none)."""
from __future__ import annotations

from .. import nn
from ..autograd import Tensor, no_grad
from ..backend import xp
from .registry import register_model


class Perceptron(nn.Module):
    """``y = step(W x + b)`` with step(v) = 1 if v >= 0 else 0 (``bipolar=True``: +1 / -1).

    ``in_features`` inputs, ``num_classes`` threshold units (one output per unit; with one unit it
    is the classic binary perceptron). ``weight`` (num_classes, in_features) and ``bias``
    (num_classes,) start at zero, as in the textbook statement of the rule. Images are flattened,
    so ``Perceptron(in_features=784)`` takes (N, 1, 28, 28) batches directly.

    ``forward`` returns the step outputs; ``net_input`` the weighted sums. Learning is
    ``perceptron_update(x, d)`` (one pass of the rule over a batch, sample by sample) or
    ``fit(x, d, epochs)`` (repeat until an epoch makes no error)."""

    def __init__(self, in_features: int, num_classes: int = 1, bipolar: bool = False, dtype=None):
        super().__init__()
        dt = dtype or xp.float32
        self.in_features, self.num_classes, self.bipolar = in_features, num_classes, bipolar
        self.weight = nn.Parameter(xp.zeros((num_classes, in_features), dtype=dt))
        self.bias = nn.Parameter(xp.zeros((num_classes,), dtype=dt))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, bipolar={self.bipolar}"

    @staticmethod
    def _array(x):
        return x.data if isinstance(x, Tensor) else xp.asarray(x)

    def _flat(self, x):
        a = self._array(x)
        return a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)

    def _step(self, v):
        lo = -1.0 if self.bipolar else 0.0
        return xp.where(v >= 0, 1.0, lo).astype(self.weight.data.dtype)

    def net_input(self, x):
        """The weighted sums ``W x + b``, shape (N, num_classes)."""
        a = self._flat(x).astype(self.weight.data.dtype, copy=False)
        return Tensor(a @ self.weight.data.T + self.bias.data)

    def forward(self, x):
        with no_grad():
            return Tensor(self._step(self.net_input(x).data))

    def _targets(self, d, n):
        t = self._array(d).astype(self.weight.data.dtype).reshape(n, -1)
        if t.shape[1] != self.num_classes:  # class indices -> one threshold unit per class
            idx = self._array(d).astype(int).reshape(n)
            t = xp.full((n, self.num_classes), -1.0 if self.bipolar else 0.0, dtype=self.weight.data.dtype)
            t[xp.arange(n), idx] = 1.0
        return t

    def perceptron_update(self, x, d, lr: float = 1.0) -> int:
        """One pass of the perceptron learning rule over the samples in order: for each sample,
        y = step(w.x + b); w += lr (d - y) x; b += lr (d - y). ``d`` holds the desired outputs
        (N,) or (N, num_classes), or class indices when num_classes > 1. Returns the number of
        samples that were misclassified (and so changed the weights)."""
        a = self._flat(x).astype(self.weight.data.dtype, copy=False)
        t = self._targets(d, a.shape[0])
        w, b = self.weight.data, self.bias.data
        errors = 0
        for xi, di in zip(a, t):
            yi = self._step(w @ xi + b)
            delta = di - yi
            if xp.any(delta != 0):
                errors += 1
                w += lr * xp.outer(delta, xi)
                b += lr * delta
        return errors

    def fit(self, x, d, epochs: int = 100, lr: float = 1.0) -> list:
        """Apply ``perceptron_update`` epoch after epoch until an epoch has no error (the
        convergence theorem: this happens for linearly separable data) or ``epochs`` ran out.
        Returns the errors per epoch."""
        history = []
        for _ in range(epochs):
            history.append(self.perceptron_update(x, d, lr))
            if history[-1] == 0:
                break
        return history

    def score(self, x, d) -> float:
        """Fraction of samples whose every output equals the target."""
        y = self.forward(x).data
        t = self._targets(d, y.shape[0])
        return float(xp.mean(xp.all(y == t, axis=1)))


@register_model("perceptron")
def perceptron(num_classes: int = 1, in_channels: int = 1, input_size: int = 28, bipolar: bool = False):
    """A single-layer Rosenblatt perceptron over flattened ``in_channels x input_size^2`` images."""
    return Perceptron(in_channels * input_size * input_size, num_classes, bipolar)
