"""``Parameter``: a Tensor that a Module learns.

A Parameter is an ordinary leaf Tensor with ``requires_grad=True`` by default. What makes it
special is how a ``Module`` treats it: assigning one as an attribute (``self.weight = Parameter(...)``)
registers it, so it shows up in ``parameters()``, ``state_dict()`` and the optimizer.
"""
from __future__ import annotations

from ..autograd import Tensor
from ..backend import get_default_dtype, xp


class Parameter(Tensor):
    """A learnable tensor: ``Parameter(data=None, requires_grad=True)``.

    ``data`` may be a Tensor (its array is shared, as in PyTorch), a NumPy array or anything
    ``fv.tensor`` accepts; ``None`` gives an empty float tensor.
    """

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            data = xp.empty((0,), dtype=get_default_dtype())
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        result = Parameter(self.data.copy(), requires_grad=self.requires_grad)
        if self.grad is not None:
            result.grad = Tensor(self.grad.data.copy())
        memo[id(self)] = result
        return result

    def __reduce_ex__(self, protocol):
        return (_rebuild_parameter, (self.data, self.requires_grad))


def _rebuild_parameter(data, requires_grad):
    return Parameter(data, requires_grad=requires_grad)
