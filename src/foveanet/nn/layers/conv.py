"""2-D convolution layers: ``Conv2d`` (the lecture's convolution: a small kernel slid over the
image, weights shared across positions) and ``ConvTranspose2d`` (its adjoint, for upsampling)."""
from __future__ import annotations

import math

from ...backend import xp
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from ._util import (check_device, check_dtype, float_dtype, int_pair, positive_int, shape_str,
                    tensor_input)

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvBase(Module):
    transposed = False

    def _setup(self, name, in_channels, out_channels, kernel_size, stride, dilation, groups, bias,
               padding_mode, device, dtype):
        check_device(name, device)
        self.in_channels = positive_int(name, "in_channels", in_channels)
        self.out_channels = positive_int(name, "out_channels", out_channels)
        self.groups = positive_int(name, "groups", groups)
        if self.in_channels % self.groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) must be divisible by groups ({groups})")
        if self.out_channels % self.groups:
            raise ValueError(f"{name}: out_channels ({out_channels}) must be divisible by groups "
                             f"({groups})")
        self.kernel_size = int_pair(name, "kernel_size", kernel_size, minimum=1)
        self.stride = int_pair(name, "stride", stride, minimum=1)
        self.dilation = int_pair(name, "dilation", dilation, minimum=1)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {', '.join(map(repr, _PADDING_MODES))}, "
                             f"got {padding_mode!r}")
        self.padding_mode = padding_mode
        dt = float_dtype(name, dtype)
        if self.transposed:
            shape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        else:
            shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(xp.empty(shape, dtype=dt))
        if bias:
            self.bias = Parameter(xp.empty((self.out_channels,), dtype=dt))
        else:
            self.register_parameter("bias", None)

    def reset_parameters(self, generator=None) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound, generator=generator)

    def _check_input(self, x):
        x = tensor_input(self, x)
        c = self.in_channels
        if x.ndim not in (3, 4) or x.shape[-3] != c:
            msg = (f"{self._short_repr()}: expected input of shape (N, {c}, H, W) or ({c}, H, W), "
                   f"got {shape_str(x.shape)}")
            if x.ndim in (3, 4):
                msg += f" — {x.shape[-3]} channels instead of {c}"
            else:
                msg += f" — {x.ndim} dimensions instead of 4"
                if x.ndim == 2 and c == 1:
                    msg += " (add the batch and channel dimensions: x.reshape(1, 1, H, W))"
            raise ValueError(msg)
        check_dtype(self, x, self.weight)
        return x

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv2d(_ConvBase):
    """2-D convolution (cross-correlation, as in every framework) over input (N, C_in, H, W) or
    (C_in, H, W), giving (N, C_out, H_out, W_out) with
    H_out = floor((H + 2 padding - dilation (kernel - 1) - 1) / stride) + 1 (W likewise).

    ``weight`` has shape (out_channels, in_channels // groups, kH, kW), ``bias`` (out_channels,).
    ``padding`` may be an int, a pair, ``'valid'`` (none) or ``'same'`` (output size = input size;
    stride 1 only). ``padding_mode``: ``'zeros'``, or ``'reflect'``, ``'replicate'``, ``'circular'``
    (the input is padded with ``F.pad`` in that mode, then convolved without padding).

    Default initialisation (PyTorch's): ``weight`` by ``init.kaiming_uniform_(a=sqrt(5))``, i.e.
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in_channels / groups * kH * kW; ``bias``
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Drawn from the global generator (``fv.manual_seed``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None):
        super().__init__()
        self._setup("Conv2d", in_channels, out_channels, kernel_size, stride, dilation, groups, bias,
                    padding_mode, device, dtype)
        self.output_padding = (0, 0)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Conv2d: padding must be an int, a pair, 'valid' or 'same', "
                                 f"got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError("Conv2d: padding='same' is not supported for strided convolutions "
                                 f"(stride={self.stride}); compute the padding explicitly")
            self.padding = padding
            widths = [(0, 0), (0, 0)]
            if padding == "same":
                for i, (d, k) in enumerate(zip(self.dilation, self.kernel_size)):
                    total = d * (k - 1)
                    widths[i] = (total // 2, total - total // 2)
        else:
            self.padding = int_pair("Conv2d", "padding", padding, minimum=0)
            widths = [(p, p) for p in self.padding]
        (top, bottom), (left, right) = widths
        self._widths = tuple(widths)
        self._reversed_padding_repeated_twice = (left, right, top, bottom)  # F.pad order
        self.reset_parameters()

    def forward(self, input):  # noqa: A002
        x = self._check_input(input)
        (top, bottom), (left, right) = self._widths
        h, w = x.shape[-2] + top + bottom, x.shape[-1] + left + right
        reach = tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel_size))
        if h < reach[0] or w < reach[1]:
            raise ValueError(f"{self._short_repr()}: input of spatial size {tuple(x.shape[-2:])} "
                             f"(padded: {(h, w)}) is smaller than the kernel's extent {reach}")
        unbatched = x.ndim == 3
        if unbatched:
            x = x.unsqueeze(0)
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            pad = (0, 0)
        elif top != bottom or left != right:  # 'same' with an even kernel: the extra row goes last
            x = F.pad(x, self._reversed_padding_repeated_twice)
            pad = (0, 0)
        else:
            pad = (top, left)
        out = F.conv2d(x, self.weight, self.bias, self.stride, pad, self.dilation, self.groups)
        return out.squeeze(0) if unbatched else out


class ConvTranspose2d(_ConvBase):
    """Transposed 2-D convolution (the gradient of Conv2d with respect to its input): each input
    pixel scatters a weighted copy of the kernel into the output, upsampling by ``stride``.
    H_out = (H - 1) stride - 2 padding + dilation (kernel - 1) + output_padding + 1.

    ``weight`` has shape (in_channels, out_channels // groups, kH, kW), ``bias`` (out_channels,).
    ``forward(input, output_size=None)``: ``output_size`` picks output_padding to hit that size.

    Default initialisation (PyTorch's): ``weight`` by ``init.kaiming_uniform_(a=sqrt(5))``, i.e.
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with PyTorch's fan_in = weight.shape[1] * kH * kW =
    out_channels / groups * kH * kW; ``bias`` U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """

    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__()
        if padding_mode != "zeros":
            raise ValueError(f'ConvTranspose2d: only padding_mode "zeros" is supported, got '
                             f"{padding_mode!r}")
        self._setup("ConvTranspose2d", in_channels, out_channels, kernel_size, stride, dilation,
                    groups, bias, padding_mode, device, dtype)
        self.padding = int_pair("ConvTranspose2d", "padding", padding, minimum=0)
        self.output_padding = int_pair("ConvTranspose2d", "output_padding", output_padding, minimum=0)
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= max(s, d):
                raise ValueError(f"ConvTranspose2d: output_padding {self.output_padding} must be "
                                 f"smaller than either stride {self.stride} or dilation {self.dilation}")
        self.reset_parameters()

    def _min_size(self, x):
        return tuple((x.shape[-2 + i] - 1) * self.stride[i] - 2 * self.padding[i]
                     + self.dilation[i] * (self.kernel_size[i] - 1) + 1 for i in range(2))

    def _output_padding(self, x, output_size):
        if output_size is None:
            return self.output_padding
        size = tuple(int(s) for s in output_size)
        if len(size) > 2:
            size = size[-2:]
        if len(size) != 2:
            raise ValueError(f"{self._short_repr()}: output_size must have 2 (or 4) elements, got "
                             f"{tuple(output_size)}")
        lo = self._min_size(x)
        for i in range(2):
            if not lo[i] <= size[i] < lo[i] + self.stride[i]:
                raise ValueError(f"{self._short_repr()}: requested an output size of {size}, but "
                                 f"valid sizes range from {lo} to "
                                 f"{tuple(lo[j] + self.stride[j] - 1 for j in range(2))} for an "
                                 f"input of size {tuple(x.shape[-2:])}")
        return tuple(size[i] - lo[i] for i in range(2))

    def forward(self, input, output_size=None):  # noqa: A002
        x = self._check_input(input)
        lo = self._min_size(x)
        if min(lo) < 1:
            raise ValueError(f"{self._short_repr()}: an input of spatial size {tuple(x.shape[-2:])} "
                             f"gives an empty output {lo}; use less padding")
        output_padding = self._output_padding(x, output_size)
        unbatched = x.ndim == 3
        if unbatched:
            x = x.unsqueeze(0)
        out = F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, output_padding,
                                 self.groups, self.dilation)
        return out.squeeze(0) if unbatched else out
