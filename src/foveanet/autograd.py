"""The engine core: Tensor, Function and reverse-mode automatic differentiation.

How it works, in one paragraph. A ``Tensor`` wraps an array (``.data``). Every differentiable
primitive is a ``Function`` subclass with ``forward`` (arrays in, one array out) and ``backward``
(the gradient of the output in, one gradient per input out), written side by side. When any input
requires a gradient and grad mode is on, ``Function.apply`` records the call: the output tensor
points at its Function (``grad_fn``), which points at its input tensors. ``Tensor.backward`` orders
that graph topologically without recursion, walks it from the output to the leaves applying the
chain rule, sums the contributions that meet at a tensor, adds the result into ``.grad`` of every
leaf that requires it, and frees each Function's saved arrays as soon as it has been used (unless
``retain_graph=True``).

Tensor's mathematical methods are thin calls into ``foveanet.ops``, where the primitives live.
This file is the engine's line budget (see tests/test_engine_budget.py).
"""
from __future__ import annotations

import contextlib
import threading
import time
import weakref

from .backend import device_of, get_default_dtype, parse_to, xp
from .hooks import RemovableHandle

# ----------------------------------------------------------------------------------------- modes
_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


def set_grad_enabled(mode: bool) -> None:
    _state.grad_enabled = bool(mode)


class _GradMode(contextlib.ContextDecorator):
    def __init__(self, mode: bool):
        self.mode = mode

    def __enter__(self):
        self.prev = is_grad_enabled()
        set_grad_enabled(self.mode)

    def __exit__(self, *exc):
        set_grad_enabled(self.prev)
        return False


def no_grad():
    """Context manager / decorator: operations inside build no graph (inference, weight updates)."""
    return _GradMode(False)


def enable_grad():
    """Context manager / decorator: switch graph building back on inside a ``no_grad`` block."""
    return _GradMode(True)


# Hooks, per thread (two sessions in one process, a web server's, never see each other's ops):
# - "profiler" (see foveanet.profiler): an object whose ``record(name, phase, seconds)`` is told
#   how long each forward and backward took;
# - "tracer" (see foveanet.interop.trace): an object whose ``record(fn, args, kwargs, result)``
#   sees every primitive as it runs (ONNX export, inference optimisation).
# ``foveanet.autograd.profiler`` / ``.tracer`` read the calling thread's. Function.apply tests
# one global count first, so ops pay nothing while no thread has a hook.
HOOKS = ("profiler", "tracer")
_hooked = 0
_hook_lock = threading.Lock()


def set_hook(kind: str, hook):
    """Install ``hook`` (None removes it) as this thread's ``kind`` hook; returns the previous."""
    global _hooked
    if kind not in HOOKS:
        raise ValueError(f"unknown hook {kind!r}; hooks: {', '.join(HOOKS)}")
    with _hook_lock:
        prev = getattr(_state, kind, None)
        setattr(_state, kind, hook)
        _hooked += (hook is not None) - (prev is not None)
    return prev


def __getattr__(name):  # autograd.profiler / autograd.tracer: the calling thread's hook
    if name in HOOKS:
        return getattr(_state, name, None)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -------------------------------------------------------------------------------------- function
class Function:
    """A differentiable primitive. Subclasses define ``forward`` and ``backward`` on raw arrays.

    ``forward(*args, **kwargs)`` receives the arrays of the Tensor arguments (other arguments as they
    are) and returns one array; it may keep on ``self`` whatever backward needs. ``backward(grad)``
    returns one gradient per positional argument (``None`` where there is none); it may consult
    ``self.needs_input_grad`` to skip work.

    A primitive with several results (a recurrent layer's outputs and final states) returns a
    tuple of arrays: ``apply`` then returns a tuple of tensors, and ``backward`` receives a tuple
    with one gradient per result, ``None`` for a result no gradient reached.
    """

    inputs: tuple = ()
    needs_input_grad: tuple = ()
    # True where ``backward`` returns arrays made by that call alone (no view of its incoming
    # gradient, of another returned gradient or of a saved array): a leaf then keeps the array
    # as its ``.grad`` instead of copying it (the MLP benchmark's 2.7 MB of weight gradients:
    # 0.2-0.3 ms a training step).
    fresh_grads = False

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs) -> "Tensor":
        fn = cls()
        needs, arrays = [], []
        for a in args:  # one loop, not two generator passes: ~1.3 us an op less
            if isinstance(a, Tensor):
                needs.append(a.requires_grad)
                arrays.append(a.data)
            else:
                needs.append(False)
                arrays.append(a)
        fn.needs_input_grad = needs = tuple(needs)
        track = True in needs and getattr(_state, "grad_enabled", True)
        profiler = getattr(_state, "profiler", None) if _hooked else None
        if profiler is not None:
            t0 = time.perf_counter()
        out = fn.forward(*arrays, **kwargs)
        if profiler is not None:
            profiler.record(cls.__name__, "forward", time.perf_counter() - t0)
        if type(out) is tuple:  # several results: each remembers its place (``_output``)
            result = tuple(Tensor._wrap(o, track and o.dtype.kind == "f") for o in out)
            fn.n_outputs = len(out)
            for i, r in enumerate(result):
                if r.requires_grad:
                    r._grad_fn, r._output = fn, i
        else:
            result = Tensor._wrap(out, track)
            result._grad_fn = fn if track else None
        if _hooked and (tracer := getattr(_state, "tracer", None)) is not None:
            tracer.record(fn, args, kwargs, result)
        if track:
            fn.inputs = args
        return result

    @property
    def name(self) -> str:
        return type(self).__name__ + "Backward"

    def __repr__(self):
        return f"<{self.name}>"


class _Freed(Function):
    """Stands in for a Function whose saved arrays were released by a backward pass."""

    def __init__(self, name):
        self._name = name

    @property
    def name(self):
        return self._name


def _topological_order(root_fn):
    """Functions reachable from ``root_fn``, each before the Functions that produced its inputs.

    Iterative depth-first search (an explicit stack, so a chain of any length works)."""
    order, visited, stack = [], set(), [(root_fn, False)]
    while stack:
        fn, expanded = stack.pop()
        if expanded:
            order.append(fn)
            continue
        if id(fn) in visited:
            continue
        visited.add(id(fn))
        stack.append((fn, True))
        for inp in fn.inputs:
            if isinstance(inp, Tensor) and inp._grad_fn is not None and id(inp._grad_fn) not in visited:
                stack.append((inp._grad_fn, False))
    order.reverse()
    return order


def _check_grad(fn, i, g, inp):
    if g.shape != inp.data.shape:
        raise RuntimeError(f"{fn.name} returned a gradient of shape {g.shape} for input {i} of "
                           f"shape {inp.data.shape}")


def _add_grad(grads: dict, t: "Tensor", g) -> None:
    """Add ``g`` to the gradient waiting for ``t``'s Function (for one of several results, in
    the dict of that Function's results, under ``t``'s place)."""
    key, i = id(t._grad_fn), t._output
    if i is not None:
        grads, key = grads.setdefault(key, {}), i
    grads[key] = g if key not in grads else grads[key] + g


def queue_callback(fn) -> None:
    """Run ``fn()`` once, when the backward pass now running on this thread ends (PyTorch's
    ``Variable._execution_engine.queue_callback``): a gradient hook uses it to finish work after
    the last gradient is in, e.g. a data-parallel all-reduce waiting for its last bucket. Outside
    a backward pass it raises RuntimeError. Callbacks run in the order queued, after the outermost
    backward (a backward inside a Function's backward, as checkpointing makes, does not end it)."""
    queue = getattr(_state, "callbacks", None)
    if queue is None:
        raise RuntimeError("queue_callback: no backward pass is running on this thread")
    queue.append(fn)


def run_backward(root: "Tensor", grad, retain_graph: bool = False) -> None:
    """Back-propagate ``grad`` (d output / d root) from ``root`` to every leaf that requires it,
    then run the callbacks queued during it (``queue_callback``)."""
    outer = getattr(_state, "callbacks", None) is None  # else the enclosing backward runs them
    queue = _state.callbacks = [] if outer else _state.callbacks
    try:
        _run_backward(root, grad, retain_graph)
    finally:
        _state.callbacks = None if outer else queue
    while outer and queue:  # not on an error: the gradients are incomplete then
        queue.pop(0)()


def _run_backward(root, grad, retain_graph):
    if root._grad_fn is None:  # a leaf: its gradient is the seed itself
        root._accumulate(grad)
        return
    grads = {}
    _add_grad(grads, root, grad)
    profiler = getattr(_state, "profiler", None) if _hooked else None
    for fn in _topological_order(root._grad_fn):
        if isinstance(fn, _Freed):
            raise RuntimeError(f"Trying to backward through {fn.name} a second time: its saved "
                               "arrays were freed. Pass retain_graph=True to the first backward.")
        g = grads.pop(id(fn), None)
        if g is None:  # no path from the root carries a gradient here
            continue
        if type(g) is dict:  # a Function with several results: one gradient (or None) each
            g = tuple(g.get(i) for i in range(fn.n_outputs))
        for i, ref in (fn._retained or {}).items():
            if (t := ref()) is not None and (gi := g if i is None else g[i]) is not None:
                t._accumulate(gi)
        if profiler is not None:
            t0 = time.perf_counter()
        in_grads = fn.backward(g)
        if profiler is not None:
            profiler.record(type(fn).__name__, "backward", time.perf_counter() - t0)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        for i, (inp, ig) in enumerate(zip(fn.inputs, in_grads)):
            if ig is None or not fn.needs_input_grad[i]:
                continue
            _check_grad(fn, i, ig, inp)
            if inp._grad_fn is None:
                inp._accumulate(ig, fn.fresh_grads)
            else:
                _add_grad(grads, inp, ig)
        if not retain_graph:
            fn.__dict__.clear()  # drop inputs and saved arrays now, not when the graph dies
            fn.__class__, fn._name = _Freed, fn.name


Function._retained = None  # {result's place (None for a single result): weakref to it}


# ---------------------------------------------------------------------------------------- tensor
def as_array(data, dtype=None):
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return xp.asarray(data, dtype=dtype)
    if isinstance(data, xp.ndarray):
        return data
    arr = xp.asarray(data)
    if arr.dtype == xp.float64 and not isinstance(data, xp.generic):
        arr = arr.astype(get_default_dtype())  # Python floats become the default float dtype
    return arr


class Tensor:
    """An n-dimensional array that remembers how it was computed, so it can be differentiated."""

    __slots__ = ("data", "requires_grad", "grad", "_grad_fn", "__weakref__", "__dict__")
    __array_priority__ = 1000  # ndarray (op) Tensor defers to Tensor's reflected operator

    def __init__(self, data, dtype=None, requires_grad: bool = False):
        self.data = as_array(data, dtype)
        self.grad = None
        self._grad_fn = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    _output = None  # this tensor's place among its Function's results, when it has several

    @classmethod
    def _wrap(cls, array, requires_grad=False):
        if type(array) is not xp.ndarray:  # NumPy returns scalars for 0-d results: keep arrays
            array = xp.asarray(array)
        t = object.__new__(Tensor)
        t.data, t.requires_grad, t.grad, t._grad_fn = array, requires_grad, None, None
        return t

    # ----- autograd
    @property
    def grad_fn(self):
        return self._grad_fn

    @property
    def is_leaf(self) -> bool:
        return self._grad_fn is None

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and not xp.issubdtype(self.data.dtype, xp.inexact):
            raise TypeError(f"only floating-point tensors can require gradients, not {self.data.dtype}")
        if not self.is_leaf and not requires_grad:
            raise RuntimeError("requires_grad_(False) is only allowed on leaf tensors; use .detach()")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor after backward (leaves always keep theirs)."""
        if self._grad_fn is not None:
            fn = self._grad_fn
            fn._retained = {**(fn._retained or {}), self._output: weakref.ref(self)}

    def _accumulate(self, g, fresh: bool = False) -> None:
        if self.grad is None:  # an owned, writable array: optimizers and clipping edit it in place
            if not (fresh and g.base is None and g.dtype == self.data.dtype and g.flags.c_contiguous
                    and g.flags.writeable):
                g = g.astype(self.data.dtype, copy=True)
            self.grad = Tensor._wrap(g)
        else:  # a new array: gradient arrays may be shared between inputs of one Function
            self.grad = Tensor._wrap(self.grad.data + g)
        for hook in tuple(self.__dict__.get("_post_accumulate_hooks", {}).values()):
            hook(self)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(tensor)`` each time backward has added a gradient into this leaf's
        ``.grad`` (PyTorch's hook of the same name; a leaf used twice in one graph gets two
        calls). Returns a handle whose ``remove()`` unregisters it. Data-parallel training starts
        a bucket's all-reduce from here while the rest of backward runs."""
        if self._grad_fn is not None or not callable(hook):
            raise (RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
                   if callable(hook) else TypeError(f"register_post_accumulate_grad_hook: hook "
                                                    f"must be callable, got {type(hook).__name__}"))
        handle = RemovableHandle(self.__dict__.setdefault("_post_accumulate_hooks", {}))
        handle.hooks[handle.id] = hook
        return handle

    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Compute d self / d leaf for every leaf that requires grad and add it into ``leaf.grad``."""
        if not self.requires_grad:
            raise RuntimeError("backward() called on a tensor that does not require grad "
                               "(no input of the computation has requires_grad=True)")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a scalar output; this one "
                                   f"has shape {self.shape}. Pass gradient=... of that shape.")
            g = xp.ones_like(self.data)
        else:
            g = as_array(gradient, self.data.dtype)
            if g.shape != self.data.shape:
                raise ValueError(f"gradient has shape {g.shape} but the tensor has shape {self.shape}")
        run_backward(self, g, retain_graph)

    def detach(self) -> "Tensor":
        """The same data, cut from the graph (no gradient flows through it)."""
        return Tensor._wrap(self.data)

    # ----- array-like
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def device(self):
        """Where the array lives (``fv.backend.Device``; compares equal to 'cpu')."""
        return device_of(self.data)

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self.data.item()

    def numpy(self):
        if self.requires_grad:
            raise RuntimeError("numpy() on a tensor that requires grad: call .detach().numpy()")
        return self.data

    def tolist(self):
        return self.data.tolist()

    def __repr__(self):
        body = xp.array2string(self.data, separator=", ", precision=4, prefix="tensor(")
        extra = "" if self.data.dtype in (xp.float32, xp.int64, xp.bool_) else f", dtype={self.dtype}"
        if self._grad_fn is not None:
            extra += f", grad_fn=<{self._grad_fn.name}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        return int(self.data.__index__())

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    __hash__ = object.__hash__

    # ----- dtype conversion
    def to(self, *args, **kwargs) -> "Tensor":
        """PyTorch's ``to``: a device (checked; 'cpu' is the one there is), a dtype, or both."""
        _, dtype = parse_to("Tensor", args, kwargs)
        return self if dtype is None else _ops.cast(self, dtype)

    def float(self):
        return _ops.cast(self, xp.float32)

    def double(self):
        return _ops.cast(self, xp.float64)

    def long(self):
        return _ops.cast(self, xp.int64)

    def int(self):
        return _ops.cast(self, xp.int32)

    def bool(self):
        return _ops.cast(self, xp.bool_)

    def type(self, dtype):
        return _ops.cast(self, dtype)

    def clone(self):
        return _ops.clone(self)

    def contiguous(self):
        return self

    def cpu(self):
        return self

    # ----- in-place updates (no graph: for initialisation and optimizers)
    def _inplace_check(self):
        if self.requires_grad and self.is_leaf and is_grad_enabled():
            raise RuntimeError("a leaf tensor that requires grad cannot be changed in place outside "
                               "fv.no_grad()")

    def copy_(self, src):
        self._inplace_check()
        self.data[...] = as_array(src)
        return self

    def fill_(self, value):
        self._inplace_check()
        self.data.fill(value)
        return self

    def zero_(self):
        return self.fill_(0)

    def add_(self, other, alpha=1):
        self._inplace_check()
        self.data += alpha * as_array(other) if alpha != 1 else as_array(other)
        return self

    def sub_(self, other, alpha=1):
        return self.add_(other, alpha=-alpha)

    def mul_(self, other):
        self._inplace_check()
        self.data *= as_array(other)
        return self

    def div_(self, other):
        self._inplace_check()
        self.data /= as_array(other)
        return self

    def clamp_(self, min=None, max=None):
        self._inplace_check()
        xp.clip(self.data, min, max, out=self.data)
        return self

    def uniform_(self, a=0.0, b=1.0, generator=None):
        from .random import numpy_rng
        return self.copy_(numpy_rng(generator).uniform(a, b, self.shape))

    def normal_(self, mean=0.0, std=1.0, generator=None):
        from .random import numpy_rng
        return self.copy_(numpy_rng(generator).normal(mean, std, self.shape))

    # ----- arithmetic (NumPy broadcasting; gradients are summed back to each operand's shape)
    def __add__(self, o): return _ops.add(self, o)
    def __radd__(self, o): return _ops.add(o, self)
    def __sub__(self, o): return _ops.sub(self, o)
    def __rsub__(self, o): return _ops.sub(o, self)
    def __mul__(self, o): return _ops.mul(self, o)
    def __rmul__(self, o): return _ops.mul(o, self)
    def __truediv__(self, o): return _ops.div(self, o)
    def __rtruediv__(self, o): return _ops.div(o, self)
    def __pow__(self, o): return _ops.pow(self, o)
    def __rpow__(self, o): return _ops.pow(o, self)
    def __matmul__(self, o): return _ops.matmul(self, o)
    def __rmatmul__(self, o): return _ops.matmul(o, self)
    def __neg__(self): return _ops.neg(self)
    def __pos__(self): return self
    def __abs__(self): return _ops.abs(self)
    def __getitem__(self, idx): return _ops.getitem(self, idx)

    def __setitem__(self, idx, value):
        self._inplace_check()
        if self._grad_fn is not None and is_grad_enabled():
            raise RuntimeError("item assignment on a tensor that is part of a graph is not supported;"
                               " build a new tensor (fv.where, fv.cat) instead")
        self.data[_ops.index_arrays(idx)] = as_array(value)

    # comparisons: results carry no gradient
    def __eq__(self, o): return _ops.compare(self, o, "equal")
    def __ne__(self, o): return _ops.compare(self, o, "not_equal")
    def __lt__(self, o): return _ops.compare(self, o, "less")
    def __le__(self, o): return _ops.compare(self, o, "less_equal")
    def __gt__(self, o): return _ops.compare(self, o, "greater")
    def __ge__(self, o): return _ops.compare(self, o, "greater_equal")

    def __invert__(self): return Tensor._wrap(xp.logical_not(self.data) if self.dtype == xp.bool_ else ~self.data)
    def __and__(self, o): return Tensor._wrap(self.data & as_array(o))
    def __or__(self, o): return Tensor._wrap(self.data | as_array(o))

    def eq(self, o): return self == o
    def ne(self, o): return self != o
    def lt(self, o): return self < o
    def le(self, o): return self <= o
    def gt(self, o): return self > o
    def ge(self, o): return self >= o

    # ----- mathematical methods (the primitives are in foveanet.ops)
    def add(self, o, alpha=1): return _ops.add(self, o if alpha == 1 else _ops.mul(o, alpha))
    def sub(self, o, alpha=1): return _ops.sub(self, o if alpha == 1 else _ops.mul(o, alpha))
    def mul(self, o): return _ops.mul(self, o)
    def div(self, o): return _ops.div(self, o)
    def pow(self, e): return _ops.pow(self, e)
    def matmul(self, o): return _ops.matmul(self, o)
    def mm(self, o): return _ops.matmul(self, o)
    def neg(self): return _ops.neg(self)
    def exp(self): return _ops.exp(self)
    def log(self): return _ops.log(self)
    def sqrt(self): return _ops.sqrt(self)
    def abs(self): return _ops.abs(self)
    def sign(self): return Tensor._wrap(xp.sign(self.data))
    def clamp(self, min=None, max=None): return _ops.clamp(self, min, max)
    clip = clamp
    def sigmoid(self): return _ops.sigmoid(self)
    def tanh(self): return _ops.tanh(self)
    def relu(self): return _ops.relu(self)
    def softmax(self, dim): return _ops.softmax(self, dim)
    def log_softmax(self, dim): return _ops.log_softmax(self, dim)
    def sum(self, dim=None, keepdim=False): return _ops.sum(self, dim, keepdim)
    def mean(self, dim=None, keepdim=False): return _ops.mean(self, dim, keepdim)
    def var(self, dim=None, keepdim=False, unbiased=True, correction=None):
        return _ops.var(self, dim, keepdim, unbiased, correction)
    def std(self, dim=None, keepdim=False, unbiased=True, correction=None):
        return _ops.std(self, dim, keepdim, unbiased, correction)
    def max(self, dim=None, keepdim=False): return _ops.max(self, dim, keepdim)
    def min(self, dim=None, keepdim=False): return _ops.min(self, dim, keepdim)
    def argmax(self, dim=None, keepdim=False): return _ops.argmax(self, dim, keepdim)
    def argmin(self, dim=None, keepdim=False): return _ops.argmin(self, dim, keepdim)
    def norm(self, p=2, dim=None, keepdim=False): return _ops.norm(self, p, dim, keepdim)
    def reshape(self, *shape): return _ops.reshape(self, *shape)
    view = reshape
    def view_as(self, other): return _ops.reshape(self, other.shape)
    def flatten(self, start_dim=0, end_dim=-1): return _ops.flatten(self, start_dim, end_dim)
    def squeeze(self, dim=None): return _ops.squeeze(self, dim)
    def unsqueeze(self, dim): return _ops.unsqueeze(self, dim)
    def expand(self, *shape): return _ops.expand(self, *shape)
    def expand_as(self, other): return _ops.expand(self, other.shape)
    def permute(self, *dims): return _ops.permute(self, *dims)
    def transpose(self, dim0, dim1): return _ops.transpose(self, dim0, dim1)
    def split(self, split_size_or_sections, dim=0): return _ops.split(self, split_size_or_sections, dim)
    def chunk(self, chunks, dim=0): return _ops.chunk(self, chunks, dim)

    @property
    def T(self):
        return _ops.permute(self, *reversed(range(self.ndim)))


from . import ops as _ops  # noqa: E402  (ops imports Tensor and Function from this module)
