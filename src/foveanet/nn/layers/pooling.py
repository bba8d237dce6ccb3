"""Pooling layers: summarise each window of a feature map by its maximum or mean (subsampling)."""
from __future__ import annotations

import math

from .. import functional as F
from ..module import Module
from ._util import int_pair, shape_str, tensor_input


def _check_4d(module, x):
    x = tensor_input(module, x)
    if x.ndim not in (3, 4):
        raise ValueError(f"{module._short_repr()}: expected input of shape (N, C, H, W) or (C, H, W), "
                         f"got {shape_str(x.shape)} — {x.ndim} dimensions instead of 4")
    return x


def _check_window(module, x, kernel, stride, padding, dilation=(1, 1), ceil_mode=False):
    """The pooled output must not be empty."""
    out = []
    for i in range(2):
        span = x.shape[-2 + i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1
        n = (math.ceil if ceil_mode else math.floor)(span / stride[i]) + 1 if span >= 0 else 0
        out.append(n)
    if min(out) < 1:
        raise ValueError(f"{module._short_repr()}: input of spatial size {tuple(x.shape[-2:])} is "
                         f"too small for the pooling window; the output would be {tuple(out)}")


def _check_padding(name, kernel, padding):
    if any(p > k // 2 for k, p in zip(kernel, padding)):
        raise ValueError(f"{name}: padding {tuple(padding)} should be at most half of the kernel size "
                         f"{tuple(kernel)}")


def _batched(x, fn):
    """Run ``fn`` on a batch: an unbatched (C, H, W) input gets a batch dimension of 1 on the way."""
    if x.ndim == 4:
        return fn(x)
    out = fn(x.unsqueeze(0))
    if isinstance(out, tuple):
        return tuple(o.squeeze(0) for o in out)
    return out.squeeze(0)


class MaxPool2d(Module):
    """The maximum over each ``kernel_size`` window, moved by ``stride`` (default: kernel_size).

    ``return_indices=True`` also returns, per output, the flat index (h * W + w) of the maximum in
    its input plane, for ``MaxUnpool2d``. No parameters."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        self._k = int_pair("MaxPool2d", "kernel_size", kernel_size, minimum=1)
        self._s = int_pair("MaxPool2d", "stride", stride if stride is not None else kernel_size, minimum=1)
        self._p = int_pair("MaxPool2d", "padding", padding, minimum=0)
        self._d = int_pair("MaxPool2d", "dilation", dilation, minimum=1)
        _check_padding("MaxPool2d", self._k, self._p)
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input):  # noqa: A002
        x = _check_4d(self, input)
        _check_window(self, x, self._k, self._s, self._p, self._d, self.ceil_mode)
        return _batched(x, lambda t: F.max_pool2d(t, self.kernel_size, self.stride, self.padding,
                                                  self.dilation, self.ceil_mode, self.return_indices))

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxUnpool2d(Module):
    """The partial inverse of ``MaxPool2d``: ``forward(input, indices, output_size=None)`` puts each
    value back where ``MaxPool2d(..., return_indices=True)`` found it; everything else is 0.
    No parameters."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = int_pair("MaxUnpool2d", "kernel_size", kernel_size, minimum=1)
        self.stride = int_pair("MaxUnpool2d", "stride", stride if stride is not None else kernel_size,
                               minimum=1)
        self.padding = int_pair("MaxUnpool2d", "padding", padding, minimum=0)

    def forward(self, input, indices, output_size=None):  # noqa: A002
        x = _check_4d(self, input)
        idx = tensor_input(self, indices, "indices")
        if tuple(idx.shape) != tuple(x.shape):
            raise ValueError(f"{self._short_repr()}: indices of shape {shape_str(idx.shape)} do not "
                             f"match the input's shape {shape_str(x.shape)}")
        if x.ndim == 3:
            size = None if output_size is None else tuple(output_size)[-2:]
            return F.max_unpool2d(x.unsqueeze(0), idx.unsqueeze(0), self.kernel_size, self.stride,
                                  self.padding, size).squeeze(0)
        return F.max_unpool2d(x, idx, self.kernel_size, self.stride, self.padding, output_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    """The mean over each ``kernel_size`` window, moved by ``stride`` (default: kernel_size).

    ``count_include_pad``: whether zero padding counts in the divisor; ``divisor_override``: a fixed
    divisor instead. No parameters."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override=None):
        super().__init__()
        self._k = int_pair("AvgPool2d", "kernel_size", kernel_size, minimum=1)
        self._s = int_pair("AvgPool2d", "stride", stride if stride is not None else kernel_size, minimum=1)
        self._p = int_pair("AvgPool2d", "padding", padding, minimum=0)
        _check_padding("AvgPool2d", self._k, self._p)
        if divisor_override is not None and (isinstance(divisor_override, bool)
                                             or not isinstance(divisor_override, int)
                                             or divisor_override <= 0):
            raise ValueError(f"AvgPool2d: divisor_override must be a positive int or None, got "
                             f"{divisor_override!r}")
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input):  # noqa: A002
        x = _check_4d(self, input)
        _check_window(self, x, self._k, self._s, self._p, ceil_mode=self.ceil_mode)
        return _batched(x, lambda t: F.avg_pool2d(t, self.kernel_size, self.stride, self.padding,
                                                  self.ceil_mode, self.count_include_pad,
                                                  self.divisor_override))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed ``output_size`` (an int, a pair; None keeps that dimension),
    whatever the input size: output cell i covers input rows floor(i H / H_out) to
    ceil((i + 1) H / H_out). ``AdaptiveAvgPool2d(1)`` is global average pooling. No parameters."""

    def __init__(self, output_size):
        super().__init__()
        sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * 2
        if len(sizes) != 2 or any(s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 1)
                                  for s in sizes):
            raise ValueError(f"AdaptiveAvgPool2d: output_size must be a positive int or a pair of "
                             f"positive ints (or None), got {output_size!r}")
        self.output_size = output_size

    def forward(self, input):  # noqa: A002
        x = _check_4d(self, input)
        return _batched(x, lambda t: F.adaptive_avg_pool2d(t, self.output_size))

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
