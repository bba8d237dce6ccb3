"""Weight initialisation (PyTorch's ``torch.nn.init``): in place, under ``no_grad``, returning the tensor.

Why the scale matters. A unit computes y = sum_i w_i x_i over ``fan_in`` inputs. With independent
zero-mean weights of variance s^2 and inputs of second moment m^2, Var(y) = fan_in s^2 m^2, so
the signal grows or dies layer after layer unless s^2 ~ 1 / fan_in. The schemes below pick s:

* Xavier/Glorot (tanh/sigmoid nets): s^2 = gain^2 * 2 / (fan_in + fan_out), a compromise between
  keeping the forward signal (fan_in) and the backward gradient (fan_out) at constant variance.
* Kaiming/He (ReLU nets): s^2 = gain^2 / fan, where gain^2 = 2 / (1 + a^2) makes up for the half
  of the signal a (leaky) ReLU discards.

A uniform distribution U(-b, b) has variance b^2 / 3, so the uniform variants use b = sqrt(3) s.

Fans of a weight of shape (out, in, *kernel): fan_in = in * prod(kernel), fan_out = out *
prod(kernel) (PyTorch's convention, also applied to ConvTranspose weights (in, out/groups, *k)).

Every function takes an optional ``generator`` (an ``fv.Generator``); without one it draws from
the global generator, so ``fv.manual_seed(s)`` makes initialisation reproducible.
"""
from __future__ import annotations

import math
import warnings

from ..autograd import Tensor, no_grad
from ..backend import xp
from ..random import numpy_rng

__all__ = ["calculate_gain", "calculate_fan_in_and_fan_out", "uniform_", "normal_", "trunc_normal_",
           "constant_", "zeros_", "ones_", "eye_", "xavier_uniform_", "xavier_normal_",
           "glorot_uniform_", "glorot_normal_", "kaiming_uniform_", "kaiming_normal_", "he_uniform_",
           "he_normal_", "orthogonal_"]


def _check(tensor, fn: str) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"nn.init.{fn} expects a foveanet Tensor (e.g. a layer's .weight), "
                        f"got {type(tensor).__name__}")
    return tensor


def _fill(tensor, values):
    with no_grad():
        tensor.copy_(xp.asarray(values).astype(tensor.dtype, copy=False))
    return tensor


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's table).

    linear / conv / sigmoid: 1; tanh: 5/3; relu: sqrt(2); leaky_relu: sqrt(2 / (1 + slope^2))
    (slope ``param``, default 0.01); selu: 3/4.
    """
    linear_fns = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                  "conv_transpose3d")
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}; choose one of linear, conv2d, "
                     "sigmoid, tanh, relu, leaky_relu, selu")


def calculate_fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel): in * prod(kernel), out * prod(kernel)."""
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out can not be computed for a tensor with fewer than 2 "
                         f"dimensions (shape {shape})")
    receptive = 1
    for s in shape[2:]:
        receptive *= s
    return shape[1] * receptive, shape[0] * receptive


_calculate_fan_in_and_fan_out = calculate_fan_in_and_fan_out  # PyTorch's private name


def _fan(tensor, mode: str) -> int:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    """Fill with samples of U(a, b)."""
    _check(tensor, "uniform_")
    if a > b:
        raise ValueError(f"uniform_: the lower bound a={a} is above the upper bound b={b}")
    return _fill(tensor, numpy_rng(generator).uniform(a, b, tensor.shape))


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill with samples of N(mean, std^2)."""
    _check(tensor, "normal_")
    if std < 0:
        raise ValueError(f"normal_: std must be non-negative, got {std}")
    return _fill(tensor, numpy_rng(generator).normal(mean, std, tensor.shape))


def trunc_normal_(tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator=None):
    """Fill with N(mean, std^2) samples redrawn until they fall in [a, b] (absolute bounds)."""
    _check(tensor, "trunc_normal_")
    if not a < b:
        raise ValueError(f"trunc_normal_: need a < b, got a={a}, b={b}")
    rng = numpy_rng(generator)
    out = rng.normal(mean, std, tensor.shape)
    bad = (out < a) | (out > b)
    for _ in range(1000):
        if not bad.any():
            break
        out[bad] = rng.normal(mean, std, int(bad.sum()))
        bad = (out < a) | (out > b)
    return _fill(tensor, xp.clip(out, a, b))


def constant_(tensor, val: float):
    """Fill with the constant ``val``."""
    _check(tensor, "constant_")
    with no_grad():
        tensor.fill_(val)
    return tensor


def zeros_(tensor):
    """Fill with 0."""
    return constant_(tensor, 0.0)


def ones_(tensor):
    """Fill with 1."""
    return constant_(tensor, 1.0)


def eye_(tensor):
    """Fill a 2-D tensor with the identity matrix."""
    _check(tensor, "eye_")
    if tensor.ndim != 2:
        raise ValueError(f"eye_ needs a 2-D tensor, got shape {tuple(tensor.shape)}")
    return _fill(tensor, xp.eye(*tensor.shape))


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    """Glorot & Bengio (2010): U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))."""
    _check(tensor, "xavier_uniform_")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out)) if fan_in + fan_out else 0.0
    bound = math.sqrt(3.0) * std
    return _fill(tensor, numpy_rng(generator).uniform(-bound, bound, tensor.shape))


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """Glorot & Bengio (2010): N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    _check(tensor, "xavier_normal_")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out)) if fan_in + fan_out else 0.0
    return _fill(tensor, numpy_rng(generator).normal(0.0, std, tensor.shape))


def _kaiming_std(tensor, a, mode, nonlinearity, fn):
    _check(tensor, fn)
    fan = _fan(tensor, mode)
    if fan == 0:
        warnings.warn(f"{fn}: initialising a zero-element tensor is a no-op", stacklevel=3)
        return None
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator=None):
    """He et al. (2015): U(-b, b), b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a).

    ``mode='fan_in'`` keeps the forward activations' variance, ``'fan_out'`` the backward gradients'.
    (With PyTorch's layer default a = sqrt(5) this gives b = 1 / sqrt(fan_in).)"""
    std = _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_uniform_")
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    return _fill(tensor, numpy_rng(generator).uniform(-bound, bound, tensor.shape))


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator=None):
    """He et al. (2015): N(0, std^2), std = gain / sqrt(fan), gain = calculate_gain(nonlinearity, a)."""
    std = _kaiming_std(tensor, a, mode, nonlinearity, "kaiming_normal_")
    if std is None:
        return tensor
    return _fill(tensor, numpy_rng(generator).normal(0.0, std, tensor.shape))


def orthogonal_(tensor, gain: float = 1.0, generator=None):
    """Saxe et al. (2013): a (semi-)orthogonal matrix (the tensor flattened to (shape[0], -1)), times gain."""
    _check(tensor, "orthogonal_")
    if tensor.ndim < 2:
        raise ValueError(f"orthogonal_ needs a tensor with at least 2 dimensions, got shape "
                         f"{tuple(tensor.shape)}")
    if tensor.numel() == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    flat = numpy_rng(generator).normal(0.0, 1.0, (rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = xp.linalg.qr(flat)
    q = q * xp.sign(xp.diag(r))
    if rows < cols:
        q = q.T
    return _fill(tensor, (gain * q).reshape(tensor.shape))


# the other common names
glorot_uniform_ = xavier_uniform_
glorot_normal_ = xavier_normal_
he_uniform_ = kaiming_uniform_
he_normal_ = kaiming_normal_
