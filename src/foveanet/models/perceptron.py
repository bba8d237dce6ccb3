"""Rosenblatt's perceptron (1958): one layer of threshold units, trained by the perceptron
learning rule ``w <- w + lr (d - y) x`` (no gradients: the step function has none)."""
from __future__ import annotations

from .. import nn
from ..autograd import Tensor, is_grad_enabled, no_grad
from ..nn import functional as F
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
    ``fit(x, d, epochs)`` (repeat until an epoch makes no error).

    The same rule through the ordinary training loop (``foveanet train --model perceptron``):
    the step has no useful derivative, so ``forward`` lets the gradient through it unchanged
    (``y = v + (step(v) - v).detach()``: the value is the step, d y / d v = 1). With the
    lecture's error E = 1/2 sum (y - d)^2 (``loss_fn``, one-hot targets) the gradient is
    dE/dw = (y - d) x, so plain SGD's ``w <- w - lr dE/dw`` is ``w <- w + lr (d - y) x``: the
    perceptron rule, sample by sample with batch size 1 and summed over the batch otherwise."""

    def __init__(self, in_features: int, num_classes: int = 1, bipolar: bool = False, dtype=None):
        super().__init__()
        dt = dtype or xp.float32
        self.in_features, self.num_classes, self.bipolar = in_features, num_classes, bipolar
        self.weight = nn.Parameter(xp.zeros((num_classes, in_features), dtype=dt))
        self.bias = nn.Parameter(xp.zeros((num_classes,), dtype=dt))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, bipolar={self.bipolar}"

    def macs_per_sample(self) -> int:
        """One multiply-add per weight: ``W x`` (for ``fv.models.summary``)."""
        return self.in_features * self.num_classes

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
        if not (is_grad_enabled() and self.weight.requires_grad):
            with no_grad():
                return Tensor(self._step(self.net_input(x).data))
        a = x if isinstance(x, Tensor) else Tensor(xp.asarray(x))
        a = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)
        v = F.linear(a.to(self.weight.dtype), self.weight, self.bias)
        return v + (Tensor(self._step(v.data)) - v).detach()

    def loss_fn(self, output, target):
        """E = 1/2 sum (y - d)^2 per sample against one-hot targets (class indices are turned into
        them), averaged over the batch: with ``forward``'s straight-through step, SGD on it is
        the perceptron rule (batch size 1: exactly; larger batches: the mean of the updates)."""
        d = target if isinstance(target, Tensor) else Tensor(xp.asarray(target))
        if d.ndim == 1 and self.num_classes > 1:
            d = Tensor(self._targets(d.data, d.shape[0]))
        n = output.shape[0] if output.ndim > 1 else 1
        return F.sum_squared_error(output, d.to(output.dtype).reshape(output.shape)) / n

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
