"""Small helpers shared by the primitives: operand conversion, un-broadcasting, axis handling."""
from __future__ import annotations

from ..autograd import Tensor
from ..backend import xp
from ..backend.cpu import threads


def unbroadcast(grad, shape, dtype=None):
    """Sum ``grad`` over the axes that broadcasting added or stretched, so it has ``shape``.

    The chain rule for y = f(a, b) with broadcasting: each element of ``a`` was used once for every
    position it was copied to, so its gradient is the sum over those positions."""
    if grad.shape != shape:
        lead = grad.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
        if axes:
            grad = grad.sum(axis=axes, keepdims=True)
        grad = grad.reshape(shape)
    if dtype is not None and grad.dtype != dtype:
        grad = grad.astype(dtype)
    return grad


def shape_of(x):
    return getattr(x, "shape", ())  # one lookup (a Tensor's shape is a property)


def dtype_of(x):
    return getattr(x, "dtype", None)


def operand(x):
    """Leave Tensors, arrays and Python scalars as they are; turn lists into arrays."""
    if isinstance(x, (Tensor, xp.ndarray, int, float, bool, xp.generic)):
        return x
    return xp.asarray(x)


def norm_axis(dim, ndim: int, name: str = "dim") -> int:
    if not -ndim <= dim < max(ndim, 1):
        raise IndexError(f"{name}={dim} is out of range for a tensor with {ndim} dimensions")
    return dim % max(ndim, 1)


def norm_axes(dim, ndim: int):
    """``dim`` as a sorted tuple of non-negative axes (None: all axes)."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (int, xp.integer)):
        dim = (dim,)
    axes = tuple(sorted(norm_axis(int(d), ndim) for d in dim))
    if len(set(axes)) != len(axes):
        raise ValueError(f"dim {dim} names an axis twice")
    return axes


def as_tensor_list(tensors, what: str):
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{what} needs at least one tensor")
    return [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]


def pair(v, name: str, allow_zero: bool = True):
    """Normalise an int-or-pair argument (kernel_size, stride, ...) to a checked tuple of two ints."""
    if isinstance(v, (int, xp.integer)) and not isinstance(v, bool):
        v = (int(v), int(v))
    try:
        v = tuple(int(i) for i in v)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    low = 0 if allow_zero else 1
    if v[0] < low or v[1] < low:
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {v}")
    return v


def as_tensor_arg(x, fn: str, what: str) -> Tensor:
    """A Tensor for a Tensor or array-like argument (a clear TypeError for anything else)."""
    if isinstance(x, Tensor):
        return x
    try:
        return Tensor(x)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: {what} must be a tensor, got {type(x).__name__}") from None


def int_pair(v, fn: str, name: str, positive: bool = False):
    """``pair`` with the function's name in its error messages."""
    try:
        return pair(v, name, allow_zero=not positive)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{fn}: {e}") from None


def check_float(x: Tensor, fn: str, what: str = "input") -> None:
    if not xp.issubdtype(x.dtype, xp.floating):
        raise TypeError(f"{fn}: {what} must be a floating-point tensor, got {x.dtype} "
                        f"(shape {tuple(x.shape)})")


def pad_array(x, top: int, bottom: int, left: int, right: int, value=0):
    """``x`` (..., H, W) with ``value`` rows/columns added around it (``x`` itself if none)."""
    if not (top or bottom or left or right):
        return x
    h, w = x.shape[-2:]
    if x.ndim < 3:
        out = xp.full((h + top + bottom, w + left + right), value, dtype=x.dtype)
        out[top:top + h, left:left + w] = x
        return out
    out = xp.empty(x.shape[:-2] + (h + top + bottom, w + left + right), dtype=x.dtype)

    def part(lo, hi):  # the border strips, then the image: every element written once
        o = out[lo:hi]
        o[..., :top, :] = value
        o[..., top + h:, :] = value
        o[..., top:top + h, :left] = value
        o[..., top:top + h, left + w:] = value
        o[..., top:top + h, left:left + w] = x[lo:hi]

    threads.split(part, x.shape[0], out.nbytes)
    return out
