"""Argument and input checks shared by the layers: each error names the layer and says what to do."""
from __future__ import annotations

from ...autograd import Tensor
from ...backend import check_device  # noqa: F401  (a layer's device= argument)
from ...backend import get_default_dtype, xp


def positive_int(owner: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, xp.integer)):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{owner}: {name} must be positive, got {value}")
    return int(value)


def int_pair(owner: str, name: str, value, minimum: int = 0) -> tuple:
    """``value`` as a pair of ints, each at least ``minimum``."""
    if isinstance(value, (int, xp.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    try:
        if isinstance(value, (str, bytes)) or any(isinstance(v, bool) for v in value):
            raise TypeError
        pair = tuple(int(v) for v in value)
        if any(int(v) != v for v in value):
            raise TypeError
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}") from None
    if len(pair) != 2:
        raise ValueError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        need = "positive" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"{owner}: {name} must be {need}, got {value!r}")
    return pair


def float_dtype(owner: str, dtype):
    dt = get_default_dtype() if dtype is None else xp.dtype(dtype)
    if not xp.issubdtype(dt, xp.floating):
        raise TypeError(f"{owner}: dtype must be a floating-point type (float32 or float64), got {dt}")
    return dt




def check_reduction(owner: str, reduction) -> str:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{owner}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def check_probability(owner: str, name: str, p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, xp.floating, xp.integer)):
        raise TypeError(f"{owner}: {name} must be a number, got {p!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{owner}: {name} must be between 0 and 1, got {p}")
    return float(p)


def tensor_input(module, x, what: str = "input") -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{module._short_repr()}: expected a foveanet Tensor as {what}, got "
                        f"{type(x).__name__} (wrap it with fv.tensor(...))")
    return x


def check_dtype(module, x: Tensor, param) -> None:
    """The input must have the layer's floating dtype (NumPy would silently promote otherwise)."""
    if param is None or x.dtype == param.dtype:
        return
    if not xp.issubdtype(x.dtype, xp.floating):
        hint = "convert it with x.float() (images: x.float() / 255)"
    else:
        hint = (f"convert the input with x.to({param.dtype}) or the layer with "
                f"layer.to({x.dtype})")
    raise TypeError(f"{module._short_repr()}: input has dtype {x.dtype} but the layer's parameters "
                    f"are {param.dtype}; {hint}")


def shape_str(shape) -> str:
    return str(tuple(int(s) for s in shape))
