"""Inference optimisation (the lecture's TensorRT slide): ``optimize_for_inference(model)``.

A trained network is run far more often than it is trained, and at inference its graph is fixed:
no gradients, BatchNorm's statistics frozen, Dropout switched off. So one can pay once, ahead of
time, to make every later forward pass cheaper. That is what TensorRT (and ONNX Runtime, and
``torch.jit.freeze``) do, and what this module does for foveanet, in four steps:

1. **Capture.** The model is traced (:func:`foveanet.interop.trace`) in eval mode under
   ``no_grad``: the list of primitives it runs, with their parameters and settings. It is traced
   *twice*, at two batch sizes, and the two traces are compared: a recorded integer that follows
   the batch size (the ``(N, 400)`` target of a flatten, say) becomes "k x batch", so that the
   result runs at any batch size; any other difference (a constant built from the batch, a
   different sequence of operations) is a clear error instead of a silently wrong plan.
2. **Rewrite** (graph passes, each counted in :attr:`InferenceModel.stats`):
   - constant folding: a primitive whose inputs are all weights is computed once, now;
   - Dropout, Clone and reshapes to the same shape are dropped (identities at inference);
   - **BatchNorm folding**: an eval-mode BatchNorm that directly follows a Conv2d (or a Linear)
     whose output feeds nothing else is a per-channel affine map of that layer's output, so it is
     folded into the layer's weights: ``w' = w * g / sqrt(v + eps)``,
     ``b' = (b - mean) * g / sqrt(v + eps) + beta`` (computed in float64, then cast). A BatchNorm
     that cannot be folded becomes a precomputed scale-and-shift (two passes instead of five);
   - **activation fusion**: a ReLU (LeakyReLU, clamp) whose input comes from a convolution,
     linear layer, scale-and-shift or addition with no other user is applied in place on that
     producer's fresh output (ReLU: ``activation.relu_into(out, out=out)``): no new array, one
     pass fewer.
3. **Pre-pack.** Convolution weights are reshaped once into the (O, C*KH*KW) matrix the GEMM
   uses; Linear weights are stored transposed and contiguous.
4. **Plan.** The result is a flat list of steps on raw NumPy arrays: no Tensor, no autograd
   bookkeeping, no module calls per operation. Each intermediate array is released right after
   its last use, and an addition writes into an operand that nothing reads afterwards.

The convolution kernel used by the plan differs from the training one (``ops/conv.py``) when the
BLAS runs several threads: it computes a whole chunk of the batch as ONE matrix product
``W (O, K) @ cols (K, m*OH*OW)`` and keeps the result in the channel-major layout (C, N, H, W) that
this product produces, returned as an (N, C, H, W) *view*; the next convolution reads its columns
from any layout, and pooling, padding, concatenation and element-wise steps keep it (a flatten
before the classifier turns it back into NCHW order). The training kernel needs one product per
sample to return a contiguous NCHW array (its backward wants that layout); at inference nothing
else looks at the memory order. Why: every threaded BLAS call hands work to the other threads and
waits for them, and a batch of 256 makes 256 such calls per layer in the training kernel against
a handful here (figures: benchmarks/RESULTS.md, "Inference plan: the im2col kernel"). With ONE
BLAS thread nothing is handed off and the per-sample products are faster (a sample's columns,
0.5 MB, stay in cache; a chunk's do not), so then, and for layers so small that OpenBLAS runs
their per-sample products on one thread anyway (LeNet-5's, ``SMALL_GEMM_MACS``), the plan uses
the training kernel's per-sample products (on the folded weights, with the fused epilogue).
Where the training path takes a compiled kernel the plan does too, on the folded weights:
stride-1 layers with few taps per output the direct loops (``ops/_direct.py``; without them
LeNet-5's plan was slower than the engine), the other 3x3 stride-1 layers with at least 16
channels each way Winograd F(4x4, 3x3) (``ops/_winograd.py``, with the folded weights
transformed once at planning). Figures: benchmarks/RESULTS.md, "Direct convolutions" and
"Winograd convolutions".

Every primitive the plan has no kernel of its own for runs through the engine's own ``forward``
on raw arrays, so any model the tracer can capture runs; only stateful or batch-dependent
patterns are refused, with the operation and module path named.

The result, an :class:`InferenceModel`, is a Module: ``opt(x)`` takes a Tensor or a NumPy array
of shape (N, *sample_shape) at any N and returns Tensors (``opt.run(array)`` returns arrays), in
the model's output structure. It only ever does inference: train mode, ``requires_grad`` inputs
and ``enable_grad`` change nothing and no graph is built. Its weights are a snapshot (copies):
the original model is not modified (its modes are restored) and later changes to it do not
reach the optimised copy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import autograd
from ..autograd import Tensor
from ..backend import get_default_dtype, xp
from ..nn.module import Module
from ..ops import algorithms
from ..ops.activation import LeakyReLU, ReLU, relu_into
from ..ops.conv import Conv2d, out_size
from ..ops.dropout import Dropout
from ..ops.elementwise import Add, Cast, Clamp, Clone
from ..ops.linalg import Linear
from ..ops.norm import BatchNorm
from ..ops.pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from ..ops.shape import Concat, Expand, Pad, Reshape
from .trace import Value, trace

__all__ = ["optimize_for_inference", "InferenceModel", "OptimizationError"]

# The two batch sizes the model is traced at. Odd primes, so that an integer equal to a batch size
# in one trace and to the other in the second is very unlikely to be anything but the batch.
TRACE_BATCHES = (5, 7)


class OptimizationError(ValueError):
    """The model contains something the optimiser cannot turn into a plan (the message names the
    operation and the module path it ran under)."""


# ------------------------------------------------------------------------------------ batch sizes
@dataclass(frozen=True)
class _Batch:
    """An integer recorded in the trace that is ``k`` times the batch size."""
    k: int

    def __repr__(self):
        return "N" if self.k == 1 else f"{self.k}*N"


def _symbolic(obj) -> bool:
    if isinstance(obj, _Batch):
        return True
    if isinstance(obj, (tuple, list)):
        return any(_symbolic(o) for o in obj)
    if isinstance(obj, dict):
        return any(_symbolic(o) for o in obj.values())
    return False


def _resolve(obj, n: int):
    """The template ``obj`` with every ``_Batch(k)`` replaced by ``k * n``."""
    if isinstance(obj, _Batch):
        return obj.k * n
    if isinstance(obj, tuple):
        return tuple(_resolve(o, n) for o in obj)
    if isinstance(obj, list):
        return [_resolve(o, n) for o in obj]
    if isinstance(obj, dict):
        return {k: _resolve(v, n) for k, v in obj.items()}
    return obj


def _where(node) -> str:
    """'Conv2d (module 'layer1.0.conv1')': a trace Node or an _Op, for error messages."""
    return f"{node.op} (module '{node.scope}')" if node.scope else f"{node.op} (in the model's own forward)"


# ---------------------------------------------------------------------------------- the IR
@dataclass(eq=False)
class _Op:
    """One operation of the plan being built. ``args``: for each positional argument, a trace
    Value (runtime or constant) or a plain template value (possibly holding ``_Batch``)."""
    kind: str              # conv, linear, affine, add, pool, concat, pad, reshape, generic
    fn_cls: type
    args: list
    kwargs: dict
    out: Value
    scope: str
    op: str
    params: dict = field(default_factory=dict)   # pre-packed arrays and settings of a kernel
    epilogue: tuple | None = None                # ('relu',) / ('leaky', slope) / ('clamp', lo, hi)
    folded_bn: bool = False

    @property
    def values(self):
        return [a for a in self.args if isinstance(a, Value)]


# ------------------------------------------------------------------------------ example inputs
def _as_array(x):
    if isinstance(x, Tensor):
        return x.data
    return xp.asarray(x)


def _accepts(model, shape, dtype) -> Exception | None:
    """Run the model on zeros of ``shape``; the exception it raised, or None."""
    try:
        with autograd.no_grad():
            model(Tensor(xp.zeros(shape, dtype=dtype)))
    except Exception as exc:  # noqa: BLE001 - any failure means "not this shape"
        return exc
    return None


def _sample_shape_and_data(model, example_input):
    """(one sample's shape, dtype, example rows or None) from the example input."""
    source = "example_input"
    if example_input is None:
        example_input = getattr(model, "input_shape", None)
        source = f"{type(model).__name__}.input_shape"
        if example_input is None:
            raise ValueError(
                "optimize_for_inference: an example input is needed to trace the model: pass a "
                "Tensor batch, e.g. optimize_for_inference(model, fv.randn(1, 1, 28, 28)), or one "
                "sample's shape, e.g. optimize_for_inference(model, (1, 28, 28)) (or give the "
                "model an `input_shape` attribute)")
    if isinstance(example_input, (Tensor, xp.ndarray)):
        arr = _as_array(example_input)
        if arr.ndim < 1 or arr.shape[0] < 1:
            raise ValueError(f"optimize_for_inference: {source} must be a batch (N, ...) with N >= 1, "
                             f"got shape {tuple(arr.shape)}")
        return tuple(arr.shape[1:]), arr.dtype, arr
    try:
        shape = tuple(int(s) for s in example_input)
    except TypeError:
        raise TypeError(f"optimize_for_inference: {source} must be a Tensor, a NumPy array or a shape "
                        f"tuple, got {type(example_input).__name__}") from None
    if not shape or min(shape) < 1:
        raise ValueError(f"optimize_for_inference: {source} {shape} is not a valid shape")
    dtype = get_default_dtype()
    # A shape is read as ONE sample's shape (the batch is added), unless the model rejects that
    # and accepts it as a whole batch's shape: (1, 28, 28) and (N, 1, 28, 28) both work for LeNet.
    err = _accepts(model, (2,) + shape, dtype)
    if err is None:
        return shape, dtype, None
    if len(shape) > 1 and _accepts(model, (2,) + shape[1:], dtype) is None:
        return shape[1:], dtype, None
    raise ValueError(f"optimize_for_inference: the model does not accept input of shape "
                     f"(N, *{shape}) (nor (N, *{shape[1:]})): {err}") from err


def _batch_of(sample_shape, dtype, rows, n, seed):
    """A batch of ``n`` inputs: the example's rows repeated (so that values stay in the range the
    model expects, integer inputs included), or standard normal values when only a shape was
    given."""
    if rows is not None:
        return xp.ascontiguousarray(rows[xp.arange(n) % rows.shape[0]])
    return xp.random.default_rng(seed).standard_normal((n,) + sample_shape).astype(dtype)


# ------------------------------------------------------------------------------------ tracing
def _trace_once(model, x):
    """Trace ``model(x)`` and capture the output's structure (nested tuples/lists/dicts)."""
    captured = []
    handle = model.register_forward_hook(lambda m, args, out: captured.append(out))
    try:
        with autograd.no_grad():
            graph = trace(model, Tensor(x))
    except RuntimeError as exc:
        if not str(exc).startswith("trace:"):
            raise
        raise OptimizationError(f"optimize_for_inference: cannot capture the model's graph: "
                                f"{exc}") from exc
    finally:
        handle.remove()
    for n in graph.nodes:
        if len(n.outputs) > 1:  # a plan step has one result
            raise OptimizationError(
                f"optimize_for_inference: {_where(n)} returns {len(n.outputs)} results (a "
                "recurrent layer); primitives with several results are not compiled into a "
                "plan: run the model itself")
    counter = iter(range(len(graph.outputs)))

    def template(o):  # the tracer's flattening order: tensors, lists/tuples, dict values
        if isinstance(o, Tensor):
            return _Out(next(counter))
        if isinstance(o, (list, tuple)):
            return (list if isinstance(o, list) else tuple)(template(v) for v in o)
        if isinstance(o, dict):
            return {k: template(v) for k, v in o.items()}
        return o
    return graph, template(captured[-1])


@dataclass(frozen=True)
class _Out:
    """Where output ``i`` of the plan goes in the model's output structure."""
    i: int


def _merge_plain(a, b, n1, n2, where):
    """The template for a plain argument seen as ``a`` at batch n1 and ``b`` at batch n2."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        if a is b or (type(a) is type(b) and a == b):
            return a
    elif isinstance(a, (int, xp.integer)) and isinstance(b, (int, xp.integer)):
        a, b = int(a), int(b)
        if a == b:
            return a
        if a * n2 == b * n1 and a % n1 == 0 and a // n1 > 0:
            return _Batch(a // n1)
        raise OptimizationError(f"optimize_for_inference: {where()} records the number {a} at batch "
                                f"size {n1} and {b} at batch size {n2}: an argument that depends on "
                                "the batch size in a way other than k x batch is not supported")
    elif isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return tuple(_merge_plain(x, y, n1, n2, where) for x, y in zip(a, b))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [_merge_plain(x, y, n1, n2, where) for x, y in zip(a, b)]
    elif isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return {k: _merge_plain(a[k], b[k], n1, n2, where) for k in a}
    elif isinstance(a, xp.ndarray) and isinstance(b, xp.ndarray):
        if a.shape == b.shape and a.dtype == b.dtype and xp.array_equal(a, b, equal_nan=True):
            return a
    elif isinstance(a, slice) and isinstance(b, slice):
        parts = [_merge_plain(x, y, n1, n2, where) for x, y in
                 ((a.start, b.start), (a.stop, b.stop), (a.step, b.step))]
        if not _symbolic(parts):
            return slice(*parts)
    else:
        try:
            if type(a) is type(b) and bool(a == b):
                return a
        except Exception:  # noqa: BLE001 - incomparable values are "different"
            pass
    raise OptimizationError(f"optimize_for_inference: {where()} was called with an argument that "
                            f"changes with the batch size ({_short(a)} at batch {n1}, {_short(b)} at "
                            f"batch {n2}); the plan cannot reproduce it at other batch sizes")


def _short(v):
    if isinstance(v, xp.ndarray):
        return f"an array of shape {v.shape}"
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _merge_traces(g1, g2, n1, n2):
    """Check that the two traces ran the same operations on the same weights and return, per node
    of ``g1``, (args template, kwargs template): its plain arguments with the integers that follow
    the batch size replaced by ``_Batch``."""
    differ = [i for i, (a, b) in enumerate(zip(g1.nodes, g2.nodes))
              if type(a.fn) is not type(b.fn) or a.scope != b.scope]
    if differ or len(g1.nodes) != len(g2.nodes):
        first = differ[0] if differ else min(len(g1.nodes), len(g2.nodes))
        what = _where(g1.nodes[first]) if first < len(g1.nodes) else "the end of the model"
        raise OptimizationError(
            f"optimize_for_inference: the model runs different operations at batch sizes {n1} and "
            f"{n2} (they first differ at operation {first}, {what}): its forward depends on the "
            "batch size or on the input values, which a fixed plan cannot reproduce")
    if len(g1.values) != len(g2.values):
        raise OptimizationError(f"optimize_for_inference: the model touches different tensors at batch "
                                f"sizes {n1} and {n2}")
    pair = {id(v1): v2 for v1, v2 in zip(g1.values, g2.values)}
    for v1 in g1.values:
        v2 = pair[id(v1)]
        s1, s2 = v1.shape, v2.shape
        if v1.kind in ("param", "buffer", "const") and v1.tensor is not v2.tensor and (
                s1 != s2 or not xp.array_equal(v1.tensor.data, v2.tensor.data, equal_nan=True)):
            user = next((n for n in g1.nodes if any(a is v1 for a in n.args)), None)
            where = _where(user) if user is not None else "the model"
            raise OptimizationError(
                f"optimize_for_inference: {where} uses a tensor created inside forward ({v1.name}, "
                f"shape {s1} at batch {n1}, {s2} at batch {n2}) that depends on the batch or the "
                "input values, which the plan cannot rebuild at other batch sizes; give it a batch "
                "dimension of 1 so that it broadcasts, or register it as a buffer")
    merged = []
    for a, b in zip(g1.nodes, g2.nodes):
        def where(a=a):
            return _where(a)
        if isinstance(a.fn, _DROPPED):  # dropped from the plan: its random mask does not matter
            merged.append((list(a.args), dict(a.kwargs)))
            continue
        args = []
        for x, y in zip(a.args, b.args, strict=True):
            if isinstance(x, Value):
                if not isinstance(y, Value) or pair.get(id(x)) is not y:
                    raise OptimizationError(f"optimize_for_inference: {where()} reads different tensors "
                                            f"at batch sizes {n1} and {n2}")
                args.append(x)
            else:
                args.append(_merge_plain(x, y, n1, n2, where))
        kwargs = _merge_plain(a.kwargs, b.kwargs, n1, n2, where)
        merged.append((args, kwargs))
    return merged


# ----------------------------------------------------------------------------------- the passes
_DROPPED = (Dropout, Clone)
_ACTIVATIONS = (ReLU, LeakyReLU, Clamp)


class _Builder:
    """Builds the plan from two traces; each pass is a method, run in order by :meth:`build`."""

    def __init__(self, g1, g2, n1, n2):
        merged = _merge_traces(g1, g2, n1, n2)
        self.input = g1.inputs[0]
        self.outputs = list(g1.outputs)
        self.shape2 = {id(v1): v2.shape for v1, v2 in zip(g1.values, g2.values)}
        # constants: weights, buffers and constants made in forward. They are the model's own
        # arrays until the plan binds them: ``own`` copies those it uses unchanged (the plan is a
        # snapshot that never shares memory with the model); re-packed and folded ones are new.
        self.const = {}
        self.borrowed = set()
        for v in g1.values:
            if v.kind in ("param", "buffer", "const"):
                self.const[v] = v.tensor.data
                self.borrowed.add(id(v.tensor.data))
        self.ops = [_Op("generic", type(n.fn), args, kwargs, n.output, n.scope, n.op)
                    for n, (args, kwargs) in zip(g1.nodes, merged)]
        self.stats = dict(nodes=len(g1.nodes), constants_folded=0, dropped=0, bn_folded=0,
                          bn_affine=0, relu_fused=0, activations_fused=0, inplace_adds=0)

    # ---------------------------------------------------------------------- helpers
    def _same_shape_both(self, a: Value, b: Value) -> bool:
        return a.shape == b.shape and self.shape2[id(a)] == self.shape2[id(b)]

    def _users(self):
        users = {}
        for op in self.ops:
            for v in op.values:
                users.setdefault(v, []).append(op)
        return users

    def _replace(self, old: Value, new: Value):
        for op in self.ops:
            op.args = [new if a is old else a for a in op.args]
        self.outputs = [new if o is old else o for o in self.outputs]

    def own(self, a):
        """``a`` if the optimiser made it, else a copy of it (``a`` is, or is a view of, one of
        the model's arrays)."""
        if not isinstance(a, xp.ndarray):
            return a
        root = a
        while isinstance(root.base, xp.ndarray):
            root = root.base
        return xp.array(a, copy=True) if id(root) in self.borrowed else a

    def _arg(self, a):
        return self.const[a] if isinstance(a, Value) and a in self.const else a

    # ---------------------------------------------------------------------- passes
    def check_supported(self):
        for op in self.ops:
            if op.fn_cls is BatchNorm:
                training = op.kwargs.get("training")
                rm, rv = op.args[3], op.args[4]
                if training and (rm is not None or rv is not None):
                    raise OptimizationError(
                        f"optimize_for_inference: {_where(op)} uses batch statistics and updates "
                        "its running statistics even in eval mode (it was called with "
                        "training=True); a fixed inference plan cannot reproduce that")
            if op.fn_cls is MaxPool2d and op.kwargs.get("sink") is not None:
                raise OptimizationError(
                    f"optimize_for_inference: {_where(op)} returns its indices "
                    "(max_pool2d(..., return_indices=True)); the indices are not traced, so the "
                    "plan cannot pass them on (e.g. to max_unpool2d)")

    def fold_constants(self):
        """A primitive computed from weights only gives the same array every time: compute it now."""
        kept = []
        for op in self.ops:
            if op.values and all(v in self.const for v in op.values) and not _symbolic(op.args) \
                    and not _symbolic(op.kwargs) and op.fn_cls not in _DROPPED:
                fn = op.fn_cls()
                fn.needs_input_grad = (False,) * len(op.args)
                self.const[op.out] = fn.forward(*[self._arg(a) for a in op.args], **op.kwargs)
                self.stats["constants_folded"] += 1
            else:
                kept.append(op)
        self.ops = kept

    def drop_identities(self):
        """Dropout (its mask is a training device), Clone (the plan never writes into an array
        that is read later, so copies to protect one are not needed) and reshapes, expansions and
        casts that change nothing."""
        kept = []
        for op in self.ops:
            src = op.args[0] if op.args and isinstance(op.args[0], Value) else None
            same = src is not None and self._same_shape_both(src, op.out) and src.dtype == op.out.dtype
            identity = op.fn_cls in _DROPPED or (
                same and op.fn_cls in (Reshape, Expand, Cast))
            if identity and src is not None:
                self._replace(op.out, src)
                self.stats["dropped"] += 1
            else:
                kept.append(op)
        self.ops = kept

    def fold_batchnorm(self):
        """Eval BatchNorm after a Conv2d / Linear whose output feeds only it: into the weights.
        The remaining eval BatchNorms become a precomputed per-channel scale and shift."""
        users = self._users()
        outputs = set(self.outputs)
        producer = {op.out: op for op in self.ops}
        kept = []
        for op in self.ops:
            if op.fn_cls is not BatchNorm or op.kwargs.get("training") or not all(
                    a is None or (isinstance(a, Value) and a in self.const) for a in op.args[1:5]):
                kept.append(op)
                continue
            x, w, b, rm, rv = op.args[:5]
            # y = x * scale + shift per channel, in float64
            invstd = 1.0 / xp.sqrt(self.const[rv].astype(xp.float64) + op.kwargs["eps"])
            scale = invstd if w is None else invstd * self.const[w].astype(xp.float64)
            shift = -self.const[rm].astype(xp.float64) * scale
            if b is not None:
                shift += self.const[b]
            layer = producer.get(x)
            if layer is not None and self._foldable(layer, x, users, outputs):
                wv, bv = layer.args[1], (layer.args[2] if len(layer.args) > 2 else None)
                dt = self.const[wv].dtype
                weight = self.const[wv].astype(xp.float64)
                bias = 0.0 if bv is None else self.const[bv].astype(xp.float64)
                # w' = w * scale (per output channel, axis 0), b' = b * scale + shift
                wnew = _new_const(f"{wv.name}(bn folded)", (weight * scale.reshape(
                    (-1,) + (1,) * (weight.ndim - 1))).astype(dt))
                bnew = _new_const(f"{op.out.name}(bias)", (bias * scale + shift).astype(dt))
                self.const[wnew], self.const[bnew] = wnew.tensor.data, bnew.tensor.data
                layer.args = [layer.args[0], wnew, bnew]
                layer.folded_bn = True
                self._replace(op.out, x)
                users[x] = users.pop(op.out, [])  # x now feeds what the BatchNorm fed
                if op.out in outputs:
                    outputs.add(x)
                self.stats["bn_folded"] += 1
                continue
            dt = x.dtype
            bshape = (-1,) + (1,) * (len(x.shape) - 2)
            kept.append(_Op("affine", op.fn_cls, [x], {}, op.out, op.scope, op.op,
                            params=dict(scale=scale.astype(dt).reshape(bshape),
                                        shift=shift.astype(dt).reshape(bshape))))
            self.stats["bn_affine"] += 1
        self.ops = kept

    def _foldable(self, layer, x, users, outputs):
        if x in outputs or len(users.get(x, [])) != 1:
            return False
        if layer.fn_cls is Conv2d:
            return layer.args[1] in self.const and (len(layer.args) < 3 or layer.args[2] in self.const)
        if layer.fn_cls is Linear:
            # BatchNorm normalises axis 1, the Linear's output features only for 2-D output
            return len(x.shape) == 2 and layer.args[1] in self.const and (
                len(layer.args) < 3 or layer.args[2] in self.const)
        return False

    def select_kernels(self):
        """Give the operations the plan has its own kernels for their kind and pre-packed weights."""
        for op in self.ops:
            a = op.args
            if _symbolic(op.args) or _symbolic(op.kwargs):
                continue  # batch-dependent settings: the generic step resolves them per call
            if op.fn_cls is Conv2d and len(op.out.shape) == 4 and a[1] in self.const \
                    and (len(a) < 3 or a[2] in self.const) and op.kwargs["groups"] == 1:
                w = self.const[a[1]]
                op.kind = "conv"
                op.params = dict(wm=self.own(xp.ascontiguousarray(w.reshape(w.shape[0], -1))),
                                 bias=self.own(self.const[a[2]]) if len(a) > 2 else None,
                                 kernel=w.shape[2:], stride=op.kwargs["stride"],
                                 pads=op.kwargs["pads"], dilation=op.kwargs["dilation"])
                op.args = [a[0]]
            elif op.fn_cls is Conv2d and a[1] in self.const:
                op.kind = "conv_generic"  # grouped or unbatched: the engine's kernel + epilogue
            elif op.fn_cls is Linear and a[1] in self.const and (len(a) < 3 or a[2] in self.const) \
                    and isinstance(a[0], Value) and a[0] not in self.const:
                op.kind = "linear"
                op.params = dict(wt=_transposed(self.const[a[1]]),
                                 bias=self.own(self.const[a[2]]) if len(a) > 2 else None)
                op.args = [a[0]]
            elif op.fn_cls is Add and all(isinstance(v, Value) for v in a) \
                    and any(v not in self.const for v in a):
                op.kind = "add"
            elif op.fn_cls in (MaxPool2d, AvgPool2d, AdaptiveAvgPool2d) \
                    and len(op.out.shape) == 4:
                op.kind = "pool"
            elif op.fn_cls is Concat and op.kwargs["axis"] == 1 and len(op.out.shape) == 4 \
                    and all(isinstance(v, Value) and v.dtype == op.out.dtype for v in a):
                op.kind = "concat"
            elif op.fn_cls is Pad and len(op.out.shape) == 4 and a[2] == "constant":
                op.kind = "pad"
            elif op.fn_cls is Reshape:
                op.kind = "reshape"

    def fuse_activations(self):
        """ReLU / LeakyReLU / clamp applied in place on the fresh output of the producer."""
        users = self._users()
        outputs = set(self.outputs)
        producer = {op.out: op for op in self.ops}
        kept = []
        for op in self.ops:
            if op.fn_cls in _ACTIVATIONS and isinstance(op.args[0], Value):
                x = op.args[0]
                p = producer.get(x)
                ep = _epilogue(op, self.const)
                if p is not None and p.kind in ("conv", "conv_generic", "linear", "affine", "add") \
                        and p.epilogue is None and ep is not None and x not in outputs \
                        and len(users.get(x, [])) == 1 and x.dtype == op.out.dtype \
                        and self._same_shape_both(x, op.out):
                    p.epilogue = ep
                    p.out = op.out
                    producer[op.out] = p
                    key = "relu_fused" if op.fn_cls is ReLU else "activations_fused"
                    self.stats[key] += 1
                    continue
            kept.append(op)
        self.ops = kept

    def remove_dead(self):
        """Operations whose result no output depends on (computed by forward, then unused)."""
        needed = set(self.outputs)
        kept = []
        for op in reversed(self.ops):
            if op.out in needed:
                kept.append(op)
                needed.update(op.values)
        self.stats["dead_removed"] = len(self.ops) - len(kept)
        self.ops = kept[::-1]

    def build(self):
        self.check_supported()
        self.fold_constants()
        self.drop_identities()
        self.fold_batchnorm()
        self.select_kernels()
        self.fuse_activations()
        self.remove_dead()
        return self


def _new_const(name, array):
    """A new constant Value (a folded weight)."""
    return Value(name, Tensor._wrap(array), "const")


def _transposed(w):
    """A contiguous copy of w.T (a Linear weight as the right operand of ``x @ wT``), copied in
    blocks of 64 rows: a plain ``ascontiguousarray(w.T)`` of VGG's 4096 x 25088 weight took 1.5-2 s
    here, the blocked copy 0.36 s. (``x @ wT`` measured 5-10% faster than ``x @ w.T`` at batch 1,
    the same at batch 256.)"""
    o = w.shape[0]
    out = xp.empty(w.shape[::-1], dtype=w.dtype)
    for j in range(0, o, 64):
        out[:, j:j + 64] = w[j:j + 64].T
    return out


def _epilogue(op, const):
    """The in-place form of an activation node, or None where it has none (array bounds)."""
    if op.fn_cls is ReLU:
        return ("relu",)
    if op.fn_cls is LeakyReLU:
        return ("leaky", float(op.args[1]))
    if op.fn_cls is Clamp:
        lo, hi = op.args[1], op.args[2]
        if all(v is None or isinstance(v, (int, float, xp.integer, xp.floating)) and not isinstance(v, bool)
               for v in (lo, hi)):
            return ("clamp", lo, hi)
    return None


# -------------------------------------------------------------------------------- the kernels
def _apply_epilogue(out, ep):
    """Apply a fused activation to ``out`` in place (``out`` is a fresh array nothing else holds)."""
    kind = ep[0]
    if kind == "relu":
        relu_into(out, out=out)  # in place, split over the threads (activation.py)
    elif kind == "leaky":
        slope = ep[1]
        if 0.0 <= slope <= 1.0:      # max(x, s*x) is x for x > 0 and s*x for x < 0
            xp.maximum(out, out * slope, out=out)
        elif slope > 1.0:
            xp.minimum(out, out * slope, out=out)
        else:
            xp.copyto(out, out * slope, where=~(out > 0))
    else:  # clamp, a missing bound as -inf / inf (NumPy's SIMD clip wants both; see Clamp)
        _, lo, hi = ep
        xp.clip(out, -xp.inf if lo is None else lo, xp.inf if hi is None else hi, out=out)
    return out


def _cnhw(x) -> bool:
    """Is ``x`` (N, C, H, W) stored channel-major, i.e. a transposed contiguous (C, N, H, W)?"""
    return x.ndim == 4 and not x.flags.c_contiguous and x.transpose(1, 0, 2, 3).flags.c_contiguous


def _empty_as(x, shape, dtype):
    """An uninitialised array of ``shape``, stored channel-major like ``x`` if ``x`` is."""
    if _cnhw(x):
        return xp.empty((shape[1], shape[0]) + tuple(shape[2:]), dtype=dtype).transpose(1, 0, 2, 3)
    return xp.empty(shape, dtype=dtype)


def _planewise(fn, x):
    """Run a per-(sample, channel)-plane operation (pooling) on ``x`` in its stored layout: for a
    channel-major array the planes of the contiguous (C, N, H, W) view are the same planes, and
    the result keeps that layout."""
    if _cnhw(x):
        return fn(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    return fn(x)


def _forward_of(cls):
    """``cls().forward`` with no input needing a gradient (a fresh instance per call keeps nothing
    alive between calls)."""
    def run(*args, **kwargs):
        fn = cls()
        fn.needs_input_grad = (False,) * len(args)
        return fn.forward(*args, **kwargs)
    return run


# ------------------------------------------------------------------------------- lowering
@dataclass
class _Step:
    """One step of the plan: ``fn(*inputs)`` into slot ``out``; ``free``: slots dead afterwards."""
    fn: object
    ins: tuple
    out: int
    free: tuple
    label: str


def _lower(b: _Builder):
    """Turn the IR into steps on numbered slots, with liveness (frees and in-place additions)."""
    ops = b.ops
    const = b.const
    # which fresh buffers each value may share memory with (views, generic ops that may return
    # their input); the graph input and constants are never written to
    fresh_kinds = ("conv", "conv_generic", "linear", "affine", "add", "pool", "concat", "pad")
    bases = {b.input: frozenset()}
    for op in ops:
        if op.kind in fresh_kinds:
            bases[op.out] = frozenset([op.out])
        else:
            bases[op.out] = frozenset().union(*[bases.get(v, frozenset()) for v in op.values
                                                if v not in const])
    last_use = {}
    for i, op in enumerate(ops):
        for v in op.values:
            if v not in const:
                last_use[v] = i
    outputs = set(b.outputs)
    for v in outputs:
        last_use[v] = len(ops)
    holders = {}  # fresh buffer -> values that may share it
    for v, bs in bases.items():
        for base in bs:
            holders.setdefault(base, []).append(v)

    def writable_after(v, i):
        """May op i write into v's buffer? Only if v is a fresh buffer that nothing reads later."""
        if v in const or v not in bases or bases[v] != frozenset([v]):
            return False
        return all(last_use.get(u, -1) <= i and u not in outputs for u in holders.get(v, [v]))

    slots = {b.input: 0}
    steps = []
    for i, op in enumerate(ops):
        sym = _symbolic(op.args) or _symbolic(op.kwargs)
        runtime = [v for v in op.values if v not in const]
        fn, label = _make_step(op, b, runtime, writable_after, i)
        ins = tuple(slots[v] for v in runtime)
        if sym:
            ins = (1,) + ins  # slot 1 holds the batch size
        out = slots.setdefault(op.out, len(slots) + 1)  # 0: the input, 1: the batch size
        steps.append((fn, ins, out, label, runtime))
    # frees: a slot is released after the last step that reads it (outputs never)
    final = []
    for i, (fn, ins, out, label, runtime) in enumerate(steps):
        dead = tuple(sorted({slots[v] for v in runtime if last_use.get(v) == i and v not in outputs
                             and slots[v] != out}))
        final.append(_Step(fn, ins, out, dead, label))
    out_slots = [slots[v] if v in slots else ("const", b.own(const[v])) for v in b.outputs]
    n_slots = max([s.out for s in final] + [1]) + 1
    return final, out_slots, n_slots


def _make_step(op, b, runtime, writable_after, i):
    """The callable for one op and its one-line description."""
    const = b.const
    ep = op.epilogue
    tag = f" + {ep[0]}" if ep else ""
    scope = f"  [{op.scope}]" if op.scope else ""
    if op.kind == "conv":
        p = op.params
        wm, bias, kernel = p["wm"], p["bias"], tuple(p["kernel"])
        stride, pads, dilation = p["stride"], p["pads"], p["dilation"]

        w4 = xp.ascontiguousarray(wm.reshape(wm.shape[0], -1, *kernel))
        # the algorithm training would take for this geometry (ops.algorithms), on the folded
        # weights, for inputs of the weights' dtype (another dtype: im2col's inference kernel)
        geom = algorithms.ConvGeometry(w4.dtype, w4.shape, stride, pads, dilation, 1)
        algo = algorithms.select("conv2d", geom)
        im2col = algorithms.get("conv2d", "im2col").impl.inference(w4, wm, bias, geom)
        run = algo.impl.inference(w4, wm, bias, geom)
        takes_epilogue = getattr(run, "takes_epilogue", False)
        epilogue = None if ep is None else (lambda out: _apply_epilogue(out, ep))
        # an algorithm whose choice depends on the batch (Winograd's tiles) decides per call
        per_call = getattr(algo.impl, "inference_suits", None)
        by_batch = {}  # batch size -> does the plan's algorithm take a call of that batch?

        def suits_batch(x):
            n = x.shape[0]
            if n not in by_batch:
                hw = (out_size(x.shape[2] + pads[0] + pads[1], kernel[0], stride[0], dilation[0]),
                      out_size(x.shape[3] + pads[2] + pads[3], kernel[1], stride[1], dilation[1]))
                by_batch[n] = per_call(geom._replace(batch=n, out_hw=hw))
            return by_batch[n]

        def conv(x):
            if x.dtype != w4.dtype or (per_call is not None and not suits_batch(x)):
                return im2col(x, epilogue)
            if takes_epilogue:
                return run(x, epilogue)
            out = run(x)
            return epilogue(out) if epilogue is not None else out
        bn = " (BN folded)" if op.folded_bn else ""
        how = "" if algo.name == "im2col" else " " + algo.name.replace("_", " ")
        if per_call is not None:
            how += " (im2col at small batches)"
        return conv, (f"conv {wm.shape[0]}x{wm.shape[1]} k{kernel[0]}x{kernel[1]} s{stride[0]}{how}"
                      f"{bn}{tag}{scope}")
    if op.kind == "linear":
        wt, bias = op.params["wt"], op.params["bias"]

        def linear(x):
            out = x @ wt
            if bias is not None:
                out += bias
            if ep is not None:
                _apply_epilogue(out, ep)
            return out
        bn = " (BN folded)" if op.folded_bn else ""
        return linear, f"linear {wt.shape[0]}->{wt.shape[1]}{bn}{tag}{scope}"
    if op.kind == "affine":
        scale, shift = op.params["scale"], op.params["shift"]

        def affine(x):
            out = _empty_as(x, x.shape, x.dtype)
            xp.multiply(x, scale, out=out)
            out += shift
            if ep is not None:
                _apply_epilogue(out, ep)
            return out
        return affine, f"batchnorm as scale+shift{tag}{scope}"
    if op.kind == "add":
        a0, a1 = op.args
        cons = [b.own(const[a]) if a in const else None for a in (a0, a1)]
        into = None
        for k, v in enumerate((a0, a1)):
            if cons[k] is None and v.dtype == op.out.dtype and b._same_shape_both(v, op.out) \
                    and writable_after(v, i):
                into = k
                break
        if into is not None:
            b.stats["inplace_adds"] += 1
        if cons[0] is None and cons[1] is None:
            def add(x, y):
                out = xp.add(x, y, out=(x, y)[into]) if into is not None else xp.add(x, y)
                return _apply_epilogue(out, ep) if ep is not None else out
        else:
            c = cons[0] if cons[0] is not None else cons[1]
            first_const = cons[0] is not None

            def add(x):
                if into is not None:
                    out = xp.add(x, c, out=x)
                else:
                    out = xp.add(c, x) if first_const else xp.add(x, c)
                return _apply_epilogue(out, ep) if ep is not None else out
        return add, f"add{' (in place)' if into is not None else ''}{tag}{scope}"
    if op.kind == "conv_generic":
        run = _forward_of(op.fn_cls)
        args = [b.own(const[a]) if isinstance(a, Value) and a in const else a for a in op.args]
        kwargs = op.kwargs

        def conv_generic(x):
            out = run(x, *args[1:], **kwargs)
            return _apply_epilogue(out, ep) if ep is not None else out
        return conv_generic, f"conv (grouped/engine kernel){tag}{scope}"
    if op.kind == "pool":
        run = _forward_of(op.fn_cls)
        rest, kwargs = op.args[1:], op.kwargs

        def pool(x):
            return _planewise(lambda y: run(y, *rest, **kwargs), x)
        return pool, f"{op.op}{scope}"
    if op.kind == "concat":
        def concat(*xs):
            n = xs[0].shape[0]
            total = sum(x.shape[1] for x in xs)
            out = _empty_as(xs[0], (n, total) + xs[0].shape[2:], xs[0].dtype)
            c0 = 0
            for x in xs:
                out[:, c0:c0 + x.shape[1]] = x
                c0 += x.shape[1]
            return out
        return concat, f"concat {len(op.args)} on channels{scope}"
    if op.kind == "pad":
        widths, value = op.args[1], op.args[3]

        def pad(x):
            shape = tuple(s + lo + hi for s, (lo, hi) in zip(x.shape, widths))
            out = _empty_as(x, shape, x.dtype)
            out.fill(value)
            out[tuple(slice(lo, lo + s) for s, (lo, _) in zip(x.shape, widths))] = x
            return out
        return pad, f"pad{scope}"
    sym = _symbolic(op.args) or _symbolic(op.kwargs)
    if op.kind == "reshape":
        target = op.args[1]
        if sym:
            def reshape(n, x):
                return x.reshape(_resolve(target, n))
        else:
            def reshape(x):
                return x.reshape(target)
        return reshape, f"reshape to {target}{scope}"
    # anything else: the engine's own forward on raw arrays
    run = _forward_of(op.fn_cls)
    template = [("slot", k) if isinstance(a, Value) and a not in const else
                ("const", b.own(const[a])) if isinstance(a, Value) else ("plain", a)
                for k, a in enumerate(op.args)]
    kwargs = op.kwargs
    positions = [k for k, (t, _) in enumerate(template) if t == "slot"]

    def generic(*xs):
        if sym:
            n, xs = xs[0], xs[1:]
        args = [v for _, v in template]
        for k, x in zip(positions, xs):
            args[k] = x
        if sym:
            return run(*_resolve(args, n), **_resolve(kwargs, n))
        return run(*args, **kwargs)
    return generic, f"{op.op}{scope}"


# ------------------------------------------------------------------------------ the module
class InferenceModel(Module):
    """An inference-only, optimised copy of a model (see :mod:`foveanet.interop.optimize`).

    ``opt(x)``: ``x`` a Tensor or array of shape (N, *sample_shape), any N; returns Tensors in the
    model's output structure. ``opt.run(x)`` returns NumPy arrays (no Tensor wrapping). Train mode,
    ``requires_grad`` inputs and ``enable_grad`` are ignored: it always runs inference and never
    builds a graph. ``stats`` holds what the passes did; ``describe()`` lists the steps."""

    def __init__(self, steps, n_slots, out_slots, structure, sample_shape, dtype, stats, name):
        super().__init__()
        self._steps = [(s.fn, s.ins, s.out, s.free) for s in steps]
        self._labels = [s.label for s in steps]
        self._n_slots = n_slots
        self._out_slots = out_slots
        self._structure = structure
        self.sample_shape = tuple(sample_shape)
        self.dtype = xp.dtype(dtype)
        self.stats = dict(stats, steps=len(steps))
        self._name = name
        self.eval()

    def run(self, x):
        """The plan on a raw array (or Tensor) of shape (N, *sample_shape), cast to the dtype the
        model was optimised for; returns the outputs as arrays, in the model's structure."""
        x = _as_array(x)
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        if x.ndim != len(self.sample_shape) + 1 or tuple(x.shape[1:]) != self.sample_shape:
            raise ValueError(f"{type(self).__name__}: expected input of shape (N, "
                             f"{', '.join(map(str, self.sample_shape))}) (the shape it was optimised "
                             f"for, any batch size N), got {tuple(x.shape)}")
        regs = [None] * self._n_slots
        regs[0], regs[1] = x, x.shape[0]
        for fn, ins, out, free in self._steps:
            regs[out] = fn(*[regs[i] for i in ins])
            for i in free:
                regs[i] = None
        outs = []
        for s in self._out_slots:
            if isinstance(s, tuple):           # an output that is a weight: never hand it out
                outs.append(xp.array(s[1], copy=True))
            else:
                a = regs[s]
                outs.append(a if a is x else xp.ascontiguousarray(a))
        return _rebuild(self._structure, outs)

    def forward(self, x):
        return _wrap_arrays(self.run(x))

    def describe(self) -> str:
        """The plan, one line per step."""
        lines = [self._summary_line()]
        lines += [f"  {i:3d}  {label}" for i, label in enumerate(self._labels)]
        return "\n".join(lines)

    def _summary_line(self) -> str:
        s = self.stats
        parts = [f"{s['steps']} steps (from {s['nodes']} traced operations)",
                 f"{s['bn_folded']} BN folded", f"{s['relu_fused']} ReLU fused"]
        parts += [f"{s[key]} {label}" for key, label in _OPTIONAL_STATS if s[key]]
        return f"InferenceModel({self._name}): " + ", ".join(parts)

    def __repr__(self):
        return self._summary_line()


# counts the summary line shows only when they are not zero
_OPTIONAL_STATS = (("activations_fused", "other activations fused"),
                   ("bn_affine", "BN as scale+shift"), ("dropped", "identities dropped"),
                   ("constants_folded", "constants folded"),
                   ("dead_removed", "unused operations removed"),
                   ("inplace_adds", "additions in place"))


def _rebuild(structure, outs):
    """Put the flat list of outputs back into the model's output structure."""
    if isinstance(structure, _Out):
        return outs[structure.i]
    if isinstance(structure, (list, tuple)):
        return type(structure)(_rebuild(v, outs) for v in structure)
    if isinstance(structure, dict):
        return {k: _rebuild(v, outs) for k, v in structure.items()}
    return structure


def _wrap_arrays(obj):
    """The same structure with every array wrapped in a Tensor (no graph, no gradient)."""
    if isinstance(obj, xp.ndarray):
        return Tensor._wrap(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_wrap_arrays(v) for v in obj)
    if isinstance(obj, dict):
        return {k: _wrap_arrays(v) for k, v in obj.items()}
    return obj


# ------------------------------------------------------------------------------ entry point
def _modes(model):
    return [(m, m.training) for m in model.modules()]


def optimize_for_inference(model, example_input=None, *, verify=True):
    """An inference-only, faster copy of ``model`` that computes the same eval-mode outputs at
    any batch size: BatchNorm folded into the preceding convolution / linear layer, Dropout and
    identities dropped, ReLU fused into its producer, weights pre-packed, one flat plan of NumPy
    steps (see the module docstring for the why of each).

    ``example_input``: a Tensor (or array) batch of inputs, or a shape: one sample's, e.g.
    ``(1, 28, 28)``, or a batch's, e.g. ``(N, 1, 28, 28)`` (read as one sample's shape unless the
    model rejects that). ``None``: ``model.input_shape`` if the model has one, else an error. The
    input's sample shape (all but the batch axis) and dtype are fixed by it.

    ``verify`` (default True): run the model and the plan on one more batch and raise if they
    disagree (a safety net for patterns the tracer cannot see). The model's modes are restored;
    its weights are copied, not shared."""
    if not isinstance(model, Module):
        raise TypeError(f"optimize_for_inference: expected a foveanet Module, got {type(model).__name__}")
    if isinstance(model, InferenceModel):
        raise TypeError("optimize_for_inference: this model is already an optimised InferenceModel")
    modes = _modes(model)
    try:
        model.eval()
        sample_shape, dtype, rows = _sample_shape_and_data(model, example_input)
        n1, n2 = TRACE_BATCHES
        g1, structure = _trace_once(model, _batch_of(sample_shape, dtype, rows, n1, 1))
        g2, _ = _trace_once(model, _batch_of(sample_shape, dtype, rows, n2, 2))
        if len(g1.inputs) != 1:
            raise OptimizationError("optimize_for_inference: only models with one input are supported")
        builder = _Builder(g1, g2, n1, n2).build()
        steps, out_slots, n_slots = _lower(builder)
        opt = InferenceModel(steps, n_slots, out_slots, structure, sample_shape, dtype,
                             builder.stats, type(model).__name__)
        if verify:
            _verify(model, opt, _batch_of(sample_shape, dtype, rows, 2, 3))
    finally:
        for m, mode in modes:
            m.training = mode
    return opt


def _verify(model, opt, x):
    with autograd.no_grad():
        ref = model(Tensor(x))
    got = opt.run(x)
    flat_ref, flat_got = [], []

    def flat(o, acc):
        if isinstance(o, Tensor):
            acc.append(o.data)
        elif isinstance(o, xp.ndarray):
            acc.append(o)
        elif isinstance(o, (list, tuple)):
            for v in o:
                flat(v, acc)
        elif isinstance(o, dict):
            for v in o.values():
                flat(v, acc)
    flat(ref, flat_ref)
    flat(got, flat_got)
    for k, (r, g) in enumerate(zip(flat_ref, flat_got, strict=True)):
        if r.shape != g.shape:
            raise OptimizationError(f"optimize_for_inference: output {k} of the plan has shape {g.shape}, "
                                    f"the model's {r.shape}")
        if r.size and xp.issubdtype(r.dtype, xp.floating):
            scale = float(xp.max(xp.abs(r))) if xp.isfinite(r).all() else math.inf
            diff = float(xp.max(xp.abs(r.astype(xp.float64) - g)))
            if not diff <= 1e-3 * scale + 1e-5:
                raise OptimizationError(
                    f"optimize_for_inference: the optimised plan disagrees with the model on a test "
                    f"batch (output {k}: max difference {diff:.3g}, largest value {scale:.3g}). The "
                    "model may do something the tracer cannot see (arithmetic on raw arrays, "
                    "randomness in eval mode); pass verify=False to keep the plan anyway")
        elif not xp.array_equal(r, g):
            raise OptimizationError(f"optimize_for_inference: the optimised plan disagrees with the "
                                    f"model on a test batch (output {k})")
