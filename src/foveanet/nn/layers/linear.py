"""Fully connected layer: every output unit sees every input (the lecture's layer of neurons)."""
from __future__ import annotations

import math

from ...backend import xp
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from ._util import check_device, check_dtype, float_dtype, positive_int, shape_str, tensor_input


class Linear(Module):
    """``y = x W^T + b`` over the last dimension: input (..., in_features) -> (..., out_features).

    Parameters: ``weight`` (out_features, in_features), ``bias`` (out_features,) unless
    ``bias=False``.

    Default initialisation (PyTorch's): ``weight`` by ``init.kaiming_uniform_(a=sqrt(5))``, i.e.
    U(-1/sqrt(in_features), 1/sqrt(in_features)); ``bias`` U(-1/sqrt(in_features),
    1/sqrt(in_features)). Drawn from the global generator (``fv.manual_seed``) unless
    ``reset_parameters(generator)`` is called with one.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__()
        check_device("Linear", device)
        self.in_features = positive_int("Linear", "in_features", in_features)
        self.out_features = positive_int("Linear", "out_features", out_features)
        dt = float_dtype("Linear", dtype)
        self.weight = Parameter(xp.empty((self.out_features, self.in_features), dtype=dt))
        if bias:
            self.bias = Parameter(xp.empty((self.out_features,), dtype=dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self, generator=None) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound, generator=generator)

    def forward(self, input):  # noqa: A002 - PyTorch's name
        x = tensor_input(self, input)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            got = "a 0-d tensor" if x.ndim == 0 else \
                f"{shape_str(x.shape)} with last dimension {x.shape[-1]}"
            msg = (f"{self._short_repr()}: expected input of shape (..., {self.in_features}) "
                   f"(last dimension {self.in_features}), got {got}")
            if x.ndim > 2 and math.prod(x.shape[1:]) == self.in_features:
                msg += " — flatten the sample dimensions first, e.g. with nn.Flatten()"
            raise ValueError(msg)
        # straight from the registry: ``self.weight`` goes through Module.__getattr__ after a
        # failed ordinary lookup, ~1.7 us each, a tenth of this layer's overhead on small batches
        params = self._parameters
        weight, bias = params["weight"], params["bias"]
        check_dtype(self, x, weight)
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}"
