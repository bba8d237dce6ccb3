"""Element-wise primitives: arithmetic with broadcasting, exp/log/sqrt/pow/abs/clamp, where, casts.

Each Function's backward sits beside its forward. Operands may be Tensors, arrays or Python
scalars; a Python scalar takes the tensor's dtype (NumPy's weak scalar promotion)."""
from __future__ import annotations

from ..autograd import Function, Tensor
from ..backend import xp
from ..backend.cpu import threads
from ._util import dtype_of, operand, shape_of, unbroadcast


def _same_shape(ufunc, a, b):
    """``ufunc(a, b)``; for two arrays of one shape and dtype (a residual sum, a gate) split over
    the engine's threads: ResNet's 256x16x32x32 sums 3.6 -> 3.1-3.3 ms (PyTorch's 2.8-3.0;
    the pass is bound by memory bandwidth)."""
    if isinstance(a, xp.ndarray) and isinstance(b, xp.ndarray) and a.ndim and \
            a.shape == b.shape and a.dtype == b.dtype:
        return threads.binary(ufunc, a, b, xp.empty(a.shape, dtype=a.dtype))
    return ufunc(a, b)


class Add(Function):
    def forward(self, a, b):
        self.sa, self.sb, self.da, self.db = shape_of(a), shape_of(b), dtype_of(a), dtype_of(b)
        return _same_shape(xp.add, a, b)

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (unbroadcast(g, self.sa, self.da) if na else None,
                unbroadcast(g, self.sb, self.db) if nb else None)


class Sub(Function):
    def forward(self, a, b):
        self.sa, self.sb, self.da, self.db = shape_of(a), shape_of(b), dtype_of(a), dtype_of(b)
        return _same_shape(xp.subtract, a, b)

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (unbroadcast(g, self.sa, self.da) if na else None,
                unbroadcast(-g, self.sb, self.db) if nb else None)


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return _same_shape(xp.multiply, a, b)

    def backward(self, g):
        a, b = self.a, self.b
        na, nb = self.needs_input_grad
        return (unbroadcast(g * b, shape_of(a), dtype_of(a)) if na else None,
                unbroadcast(g * a, shape_of(b), dtype_of(b)) if nb else None)


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        a, b = self.a, self.b
        na, nb = self.needs_input_grad
        ga = unbroadcast(g / b, shape_of(a), dtype_of(a)) if na else None
        gb = unbroadcast(-g * a / (b * b), shape_of(b), dtype_of(b)) if nb else None
        return ga, gb


class Pow(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a ** b
        return self.out

    def backward(self, g):
        a, b = self.a, self.b
        na, nb = self.needs_input_grad
        ga = gb = None
        if na:
            ga = unbroadcast(g * b * a ** (b - 1), shape_of(a), dtype_of(a))
        if nb:  # d(a^b)/db = a^b ln a, taken as 0 where a == 0 (the limit for b > 0)
            with xp.errstate(divide="ignore", invalid="ignore"):
                lg = xp.where(a > 0, xp.log(xp.where(a > 0, a, 1)), 0)
            gb = unbroadcast(g * self.out * lg, shape_of(b), dtype_of(b))
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


class Exp(Function):
    def forward(self, a):
        self.out = xp.exp(a)
        return self.out

    def backward(self, g):
        return g * self.out


class Log(Function):
    def forward(self, a):
        self.a = a
        return xp.log(a)

    def backward(self, g):
        return g / self.a


class Sqrt(Function):
    def forward(self, a):
        self.out = xp.sqrt(a)
        return self.out

    def backward(self, g):
        return g / (2 * self.out)


class Abs(Function):
    def forward(self, a):
        self.a = a
        return xp.abs(a)

    def backward(self, g):
        return g * xp.sign(self.a)  # 0 at 0, as PyTorch


class Clamp(Function):
    def forward(self, a, lo, hi):
        self.a, self.lo, self.hi = a, lo, hi
        if a.dtype.kind == "f":  # a missing bound as -inf / inf: NumPy's SIMD clip wants both
            # (one-sided, it measured ~4x slower on 128x512 float32: 69 vs 18 us)
            return xp.clip(a, -xp.inf if lo is None else lo, xp.inf if hi is None else hi)
        return xp.clip(a, lo, hi)

    def backward(self, g):
        a, lo, hi = self.a, self.lo, self.hi
        mask = xp.ones(a.shape, dtype=bool)
        if lo is not None:
            mask &= a >= lo
        if hi is not None:
            mask &= a <= hi
        return g * mask, None, None


class Maximum(Function):
    """Element-wise max of two tensors; where they tie each gets half the gradient (as PyTorch)."""

    def forward(self, a, b, minimum=False):
        self.a, self.b = a, b
        self.minimum = minimum
        return xp.minimum(a, b) if minimum else xp.maximum(a, b)

    def backward(self, g):
        a, b = self.a, self.b
        wa = (a < b) if self.minimum else (a > b)
        wa = wa + 0.5 * (a == b)
        na, nb = self.needs_input_grad
        return (unbroadcast(g * wa, shape_of(a), dtype_of(a)) if na else None,
                unbroadcast(g * (1 - wa), shape_of(b), dtype_of(b)) if nb else None)


class Where(Function):
    def forward(self, cond, a, b):
        self.cond, self.sa, self.sb, self.da, self.db = cond, shape_of(a), shape_of(b), dtype_of(a), dtype_of(b)
        return xp.where(cond, a, b)

    def backward(self, g):
        _, na, nb = self.needs_input_grad
        zero = xp.zeros((), dtype=g.dtype)
        return (None,
                unbroadcast(xp.where(self.cond, g, zero), self.sa, self.da) if na else None,
                unbroadcast(xp.where(self.cond, zero, g), self.sb, self.db) if nb else None)


class Cast(Function):
    def forward(self, a, dtype):
        self.dtype = a.dtype
        return a.astype(dtype, copy=False)

    def backward(self, g):
        return g.astype(self.dtype), None


class Clone(Function):
    def forward(self, a):
        return a.copy()

    def backward(self, g):
        return g


# ------------------------------------------------------------------------------- public functions
def add(a, b):
    return Add.apply(operand(a), operand(b))


def sub(a, b):
    return Sub.apply(operand(a), operand(b))


def mul(a, b):
    return Mul.apply(operand(a), operand(b))


def div(a, b):
    return Div.apply(operand(a), operand(b))


def pow(a, b):  # noqa: A001 - PyTorch's name
    return Pow.apply(operand(a), operand(b))


def neg(a):
    return Neg.apply(a)


def exp(a):
    return Exp.apply(a)


def log(a):
    return Log.apply(a)


def sqrt(a):
    return Sqrt.apply(a)


def abs(a):  # noqa: A001
    return Abs.apply(a)


def clamp(a, min=None, max=None):  # noqa: A002
    if min is None and max is None:
        raise ValueError("clamp needs at least one of min and max")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = a
        if min is not None:
            out = maximum(out, min)
        if max is not None:
            out = minimum(out, max)
        return out
    return Clamp.apply(a, min, max)


clip = clamp


def maximum(a, b):
    return Maximum.apply(operand(a), operand(b))


def minimum(a, b):
    return Maximum.apply(operand(a), operand(b), minimum=True)


def where(condition, a, b):
    cond = condition.data if isinstance(condition, Tensor) else xp.asarray(condition)
    if cond.dtype != xp.bool_:
        raise TypeError(f"where() needs a boolean condition, got {cond.dtype}")
    return Where.apply(cond, operand(a), operand(b))


def cast(a, dtype):
    dtype = xp.dtype(dtype)
    if a.dtype == dtype:
        return a
    if a.requires_grad and not xp.issubdtype(dtype, xp.inexact):
        return Tensor._wrap(a.data.astype(dtype))  # integer results carry no gradient
    return Cast.apply(a, dtype)


def clone(a):
    return Clone.apply(a)


def compare(a, b, op: str):
    """Comparison ops: boolean results, outside the graph."""
    bd = b.data if isinstance(b, Tensor) else b
    return Tensor._wrap(getattr(xp, op)(a.data, bd))
