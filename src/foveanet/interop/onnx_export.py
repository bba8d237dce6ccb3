"""ONNX export: ``fv.onnx.export(model, example_input, path)``.

How it works. The model runs once (twice, see below) in evaluation mode under ``no_grad`` with the
graph tracer on (:func:`foveanet.interop.trace`), which records every primitive (a ``Function``
subclass of ``foveanet.ops``) with its arguments and the module path it ran under. Each recorded
node then goes through a converter, one small function per primitive in ``_CONVERTERS`` (keyed by
the Function's class name), which emits the equivalent ONNX node or nodes. Because the tracer sees
primitives rather than layers, a custom ``forward`` (residual additions, slicing, arithmetic with
Python scalars, ...) exports like any built-in layer.

Names. Initializers are the parameters and buffers the graph uses, named by their ``state_dict``
keys, so a weight in the ONNX file is found under the same name as in the model. Each ONNX node is
named ``module.path/OnnxOp`` (``layer1.0.conv1/Conv``), so a node maps back to the layer that ran
it. Graph inputs are ``input`` (``input_1``, ...) and outputs ``output`` (``output_1``, ...) unless
``input_names`` / ``output_names`` say otherwise. Tensors made inside ``forward`` (Python scalars,
``fv.tensor(...)``) become ``Constant`` nodes in the dtype the engine computed with, so a float32
model stays float32 (a Python float never becomes a float64 constant).

Dynamic batch. A traced graph holds concrete shapes, and a shape copied from ``x.shape[0]`` (the
usual ``x.reshape(x.shape[0], -1)``) would pin the batch size. So with ``dynamic_batch=True`` the
model is traced a second time on the example batch grown by one sample and the two graphs are
compared: a ``reshape`` target whose first entry followed the batch becomes ONNX's ``0`` ("copy
this input dimension"), an ``expand`` keeps the dimensions its input already has, and anything
else that changed with the batch or with the input's values (a constant computed from the input
behind the engine's back, a data-dependent ``where`` condition) is a clear error instead of a file
that silently gives wrong answers at another batch size. Dimension 0 of every input, and every
output dimension that followed it, is the symbolic ``batch``.

Opsets 13 and newer are supported (13 made Softmax single-axis and moved the axes of ReduceSum,
Squeeze and Unsqueeze to inputs; 18 did the same for the other reductions, which the converters
handle); the default is 17. Every exported model passes ``onnx.checker.check_model(...,
full_check=True)``, which ``export`` runs before writing the file.

``onnx`` is imported when ``export`` is called, never by ``import foveanet``.
"""
from __future__ import annotations

import contextlib
import os

from ..autograd import Function, Tensor, no_grad
from ..backend import xp
from ..ops.pool import adaptive_matrix, window_counts
from .trace import Node, Value, trace, unique_name

__all__ = ["export", "ONNXExportError", "DEFAULT_OPSET", "MIN_OPSET", "supported_ops"]

DEFAULT_OPSET = 17
MIN_OPSET = 13
_INT64_MAX = 2 ** 63 - 1
_INT64_MIN = -2 ** 63


class ONNXExportError(RuntimeError):
    """The model cannot be exported: an operation without an ONNX converter, a setting the
    converter cannot express, or a graph that changes with the batch size."""


# ============================================================================== public entry point
def export(model, example_input, path, opset=None, input_names=None, output_names=None,
           dynamic_batch=True, optimize=False):
    """Export ``model`` to ONNX and return the ``onnx.ModelProto``; write it to ``path`` too.

    ``example_input``: a Tensor (or array), or a tuple/list of them for a model with several
    inputs; it fixes every dimension but the batch. ``path``: where to write the file (atomically:
    a failed export leaves no file, nor a partial one, and keeps an older file at ``path``);
    ``None`` writes nothing. ``opset``: the ONNX opset (default 17, 13 at least).
    ``input_names`` / ``output_names``: graph input and output names (default ``input``,
    ``input_1``, ... and ``output``, ``output_1``, ...). ``dynamic_batch``: make dimension 0 of
    the inputs (and the output dimensions that follow it) the symbolic ``batch``; with ``False``
    the file only accepts the example's shapes. ``optimize``: fold each BatchNormalization into
    the convolution before it (when that convolution feeds nothing else) and drop Identity
    nodes, as ``fv.optimize_for_inference`` does in foveanet; the outputs stay the same to
    float32 rounding.

    The model is run in evaluation mode under ``no_grad``; its train/eval mode is restored
    afterwards. Raises :class:`ONNXExportError` naming the operation and the module path where it
    ran when something cannot be exported."""
    onnx = _import_onnx()
    opset = _check_opset(onnx, opset)
    inputs = _as_inputs(example_input)
    input_names = _io_names(input_names, len(inputs), "input")
    with _export_mode(model):
        graph = _trace(model, inputs, input_names)
        _check_supported(graph)
        twin = _trace(model, _grown(inputs), input_names) if dynamic_batch else None
    output_names = _io_names(output_names, len(graph.outputs), "output")
    if twin is not None:
        _check_twins(graph, twin)
    _check_size(graph)
    proto = _Builder(onnx, opset, graph, twin, input_names, output_names).build(model)
    if optimize:
        fold_batchnorm_into_conv(proto)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # a converter bug, not the user's: say so plainly
        raise ONNXExportError(f"ONNX export: the exported graph fails onnx's checker ({e}); "
                              "this is a bug in foveanet's exporter, please report it") from e
    if path is not None:
        from ..train.io import atomic_write_bytes
        atomic_write_bytes(os.fspath(path), proto.SerializeToString())
    return proto


def fold_batchnorm_into_conv(proto) -> int:
    """Fold ``Conv -> BatchNormalization`` pairs of an ONNX ``ModelProto`` in place and remove
    Identity nodes; returns the number of BatchNormalizations folded.

    With s = scale / sqrt(var + eps): W' = W * s (per output channel), b' = (b - mean) * s + B.
    The fold is computed in float64 and stored in the weight's dtype. A pair is folded only when
    the Conv's output feeds that BatchNormalization alone and every tensor involved is an
    initializer used by nothing else (shared weights are left alone)."""
    from onnx import numpy_helper
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    uses: dict = {}
    for n in g.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    outputs = {o.name for o in g.output}
    producer = {o: n for n in g.node for o in n.output}
    folded, dead = 0, []
    for bn in [n for n in g.node if n.op_type == "BatchNormalization"]:
        conv = producer.get(bn.input[0])
        if (conv is None or conv.op_type != "Conv" or uses.get(conv.output[0]) != 1
                or conv.output[0] in outputs or len(bn.output) != 1
                or not all(i in inits and uses.get(i) == 1 for i in list(bn.input[1:5]) + list(conv.input[1:]))):
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale, beta, mean, var = (numpy_helper.to_array(inits[i]).astype(xp.float64)
                                  for i in bn.input[1:5])
        w_init = inits[conv.input[1]]
        w = numpy_helper.to_array(w_init)
        s_ = scale / xp.sqrt(var + eps)
        b = (numpy_helper.to_array(inits[conv.input[2]]).astype(xp.float64) if len(conv.input) > 2
             else xp.zeros_like(mean))
        w_init.CopyFrom(numpy_helper.from_array(
            (w.astype(xp.float64) * s_.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype), w_init.name))
        bias = ((b - mean) * s_ + beta).astype(w.dtype)
        if len(conv.input) > 2:
            inits[conv.input[2]].CopyFrom(numpy_helper.from_array(bias, conv.input[2]))
        else:
            name = bn.input[2]  # the BN's shift becomes the folded bias: its name is free now
            inits[name].CopyFrom(numpy_helper.from_array(bias, name))
            conv.input.append(name)
        dead += [i for i in bn.input[1:5] if i not in conv.input]
        conv.output[0] = bn.output[0]
        g.node.remove(bn)
        folded += 1
    for n in [n for n in g.node if n.op_type == "Identity" and n.output[0] not in outputs]:
        for m in g.node:
            for k, i in enumerate(m.input):
                if i == n.output[0]:
                    m.input[k] = n.input[0]
        g.node.remove(n)
    for t in [t for t in g.initializer if t.name in set(dead)]:
        g.initializer.remove(t)
    return folded


def supported_ops() -> list:
    """Names of the engine's primitives (Function classes) that the exporter converts."""
    return sorted(_CONVERTERS)


# ====================================================================================== preparation
def _import_onnx():
    try:
        import onnx
        import onnx.checker
        import onnx.helper
        import onnx.numpy_helper
    except ImportError:
        raise ImportError("fv.onnx.export needs the onnx package: pip install 'foveanet[onnx]'") \
            from None
    return onnx


def _check_opset(onnx, opset):
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        return DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"ONNX export: opset must be an int from {MIN_OPSET} to {newest} (the "
                         f"newest this onnx {onnx.__version__} knows), got {opset!r}")
    return opset


def _as_inputs(example_input):
    items = list(example_input) if isinstance(example_input, (tuple, list)) else [example_input]
    if not items:
        raise ValueError("ONNX export: example_input is empty")
    out = []
    for x in items:
        if not isinstance(x, Tensor):
            try:
                x = Tensor(xp.asarray(x))
            except (TypeError, ValueError):
                raise TypeError(f"ONNX export: example inputs must be Tensors or arrays, got "
                                f"{type(x).__name__}") from None
        out.append(x.detach())
    return out


def _io_names(names, n, base):
    if names is None:
        names = []
    elif isinstance(names, str):
        names = [names]
    names = list(names)
    if len(names) > n:
        raise ValueError(f"ONNX export: {len(names)} {base} names given for {n} {base}s")
    names += [base if i == 0 else f"{base}_{i}" for i in range(len(names), n)]
    if len(set(names)) != len(names) or not all(isinstance(s, str) and s for s in names):
        raise ValueError(f"ONNX export: {base} names must be distinct non-empty strings, got "
                         f"{names}")
    return names


def _trace(model, inputs, input_names):
    try:
        return trace(model, *inputs, input_names=input_names)
    except RuntimeError as e:
        if not str(e).startswith("trace:"):
            raise
        raise ONNXExportError(
            f"ONNX export: {e}. The exporter follows foveanet's primitives only: an output made "
            f"from raw arrays (.numpy(), .data, NumPy functions) cannot be exported; compute it "
            f"with foveanet operations") from None


def _check_size(graph):
    """A protobuf message is limited to 2 GB; the weights are stored inside the file."""
    total = sum(v.tensor.data.nbytes for v in graph.initializers())
    if total >= 2 ** 31 - 2 ** 24:
        raise ONNXExportError(f"ONNX export: the weights take {total / 2 ** 30:.2f} GB, more than "
                              f"the 2 GB a single ONNX file (a protobuf message) can hold")


def _grown(inputs):
    """The example inputs with their first sample appended: batch size + 1, for the second trace."""
    out = []
    for x in inputs:
        if x.ndim == 0:
            raise ValueError("ONNX export: dynamic_batch=True needs inputs with a batch dimension; "
                             "a 0-d example input has none (pass dynamic_batch=False)")
        out.append(Tensor(xp.concatenate([x.data, x.data[:1]], axis=0)))
    return out


class ThresholdStep(Function):
    """step(v) = 1 where v >= 0, else ``low`` (0, or -1 for a bipolar unit): the perceptron's
    threshold as a primitive the tracer can see (the model computes it on raw arrays, which a trace
    cannot follow). Export only: it has no useful derivative."""

    def forward(self, v, low):
        return xp.where(v >= 0, 1, low).astype(v.dtype)

    def backward(self, g):  # pragma: no cover - export runs under no_grad
        raise RuntimeError("ThresholdStep has no derivative; it exists for ONNX export only")


def _perceptron_forward(module):
    """A primitive-only ``forward`` for :class:`~foveanet.models.perceptron.Perceptron`: the
    same arithmetic as its ``net_input`` (flatten, x W^T + b) followed by :class:`ThresholdStep`."""
    from ..nn import functional as F

    def forward(x):
        x = x if isinstance(x, Tensor) else Tensor(xp.asarray(x))
        a = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)
        if a.dtype != module.weight.dtype:
            a = a.to(module.weight.dtype)
        v = F.linear(a, module.weight, module.bias)
        return ThresholdStep.apply(v, -1.0 if module.bipolar else 0.0)
    return forward


def _export_forwards():
    """Module classes whose ``forward`` works on raw arrays, with a primitive-only replacement."""
    from ..models.perceptron import Perceptron
    return {Perceptron: _perceptron_forward}


@contextlib.contextmanager
def _export_mode(model):
    """Evaluation mode, ``no_grad`` and the export forwards for the duration of the trace; every
    module's own train/eval flag (and any instance-level ``forward``) is put back afterwards."""
    modules = list(model.modules())
    modes = [m.training for m in modules]
    replaced = []
    try:
        model.eval()
        shims = _export_forwards()
        for m in modules:
            for cls, make in shims.items():
                if isinstance(m, cls):
                    replaced.append((m, m.__dict__.get("forward")))
                    object.__setattr__(m, "forward", make(m))
        with no_grad():
            yield
    finally:
        for m, old in replaced:
            if old is None:
                m.__dict__.pop("forward", None)
            else:
                object.__setattr__(m, "forward", old)
        for m, mode in zip(modules, modes):
            m.training = mode


# ============================================================================= checks on the graph
_HINTS = {
    "Dropout": "dropout ran during the trace: a functional dropout called with training=True "
               "(F.dropout(x, p, training=self.training) turns off in eval mode)",
    "MaxUnpool2d": "max_unpool2d scatters by indices, which this exporter does not convert",
}


def _where(node: Node) -> str:
    return f"module '{node.scope}'" if node.scope else "the model's own forward"


def _check_supported(graph):
    missing = [n for n in graph.nodes if n.op not in _CONVERTERS]
    if not missing:
        return
    first = missing[0]
    seen, listing = set(), []
    for n in missing:
        key = (n.op, n.scope)
        if key not in seen:
            seen.add(key)
            listing.append(f"{n.op} at {n.scope or '<root>'}")
    hint = f" ({_HINTS[first.op]})" if first.op in _HINTS else ""
    raise ONNXExportError(
        f"ONNX export: no converter for the operation {first.op}{hint}, which ran in "
        f"{_where(first)}. Unsupported operations in this graph: {', '.join(listing)}. "
        f"Supported: {', '.join(supported_ops())}")


_BATCH_AWARE = {"Reshape", "Expand"}  # their converters read the twin trace's shapes
_NOT_COMPARED = {"sink"}  # max_pool2d(return_indices=True) collects the indices here


def _same_array(a, b) -> bool:
    """Equal shape, dtype and values (NaN equal to NaN: a NaN constant is still the same one)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(xp.array_equal(a, b, equal_nan=bool(xp.issubdtype(a.dtype, xp.inexact))))


def _same(a, b) -> bool:
    """Are two plain arguments of a Function call (numbers, tuples, slices, arrays) the same?"""
    if isinstance(a, xp.ndarray) or isinstance(b, xp.ndarray):
        return isinstance(a, xp.ndarray) and isinstance(b, xp.ndarray) and _same_array(a, b)
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, slice) and isinstance(b, slice):
        return _same((a.start, a.stop, a.step), (b.start, b.stop, b.step))
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return False


def _changed(node, what, array_a, array_b):
    if array_a.shape != array_b.shape:
        return ONNXExportError(
            f"ONNX export: {what} of {node.op} in {_where(node)} has shape {array_a.shape} at one "
            f"batch size and {array_b.shape} at another: it was made from the input's shape "
            f"outside foveanet's primitives, which would pin the batch size in the file. Build "
            f"it from the input with foveanet operations, or export with dynamic_batch=False")
    return ONNXExportError(
        f"ONNX export: {what} of {node.op} in {_where(node)} changes with the input's values: "
        f"it was computed from the input outside foveanet's primitives (raw arrays, .numpy(), "
        f"a comparison such as x > 0, whose result the engine does not trace), so the file "
        f"would hold this one input's result as a constant. Compute it with foveanet operations")


def _check_twins(graph, twin):
    """The graph at batch size n and at n + 1 must be the same graph, up to the batch."""
    if [n.op for n in graph.nodes] != [n.op for n in twin.nodes] or \
            len(graph.outputs) != len(twin.outputs):
        raise ONNXExportError(
            "ONNX export: the model runs different operations at different batch sizes, so no "
            "single graph with a dynamic batch describes it; export with dynamic_batch=False")
    for n1, n2 in zip(graph.nodes, twin.nodes):
        keys = [k for k in n1.kwargs if k not in _NOT_COMPARED]
        args1 = list(n1.args) + [n1.kwargs[k] for k in keys]
        args2 = list(n2.args) + [n2.kwargs.get(k) for k in keys]
        for i, (a, b) in enumerate(zip(args1, args2)):
            if isinstance(a, Value) and isinstance(b, Value):
                if a.kind != b.kind or a.name != b.name:
                    raise ONNXExportError(
                        f"ONNX export: {n1.op} in {_where(n1)} takes different tensors at "
                        f"different batch sizes; export with dynamic_batch=False")
                if a.kind == "const":
                    if not _same_array(a.tensor.data, b.tensor.data):
                        raise _changed(n1, f"the constant tensor {a.name}", a.tensor.data,
                                       b.tensor.data)
            elif n1.op not in _BATCH_AWARE and not _same(a, b):
                if isinstance(a, xp.ndarray) and isinstance(b, xp.ndarray):
                    raise _changed(n1, f"array argument {i}", a, b)
                raise ONNXExportError(
                    f"ONNX export: argument {i} of {n1.op} in {_where(n1)} is {a!r} for the "
                    f"example input but {b!r} for the same input grown by one sample: it was "
                    f"computed from the input (its shape or its values) outside foveanet's "
                    f"primitives, so the file would hold this one input's value. Compute it with "
                    f"foveanet operations, or, if only the batch size is involved, export with "
                    f"dynamic_batch=False")


# ================================================================================== graph building
class _Builder:
    """Turns a traced Graph into an ONNX ModelProto; the converters call its small helpers."""

    def __init__(self, onnx, opset, graph, twin, input_names, output_names):
        self.onnx, self.helper, self.nph = onnx, onnx.helper, onnx.numpy_helper
        self.opset, self.graph = opset, graph
        self.twins = dict(zip(graph.nodes, twin.nodes)) if twin is not None else None
        self.twin_graph = twin
        self.nodes, self.initializers = [], []
        self.tensor_names: dict[int, str] = {}      # id(Value) -> ONNX tensor name
        self.taken = set(input_names) | set(output_names)
        self.node_names: set = set()
        self.node: Node | None = None                # the node being converted
        self.out_name = ""
        for v, name in zip(graph.inputs, input_names):
            self.tensor_names[id(v)] = name
        # outputs are named on their producing node; a repeated or non-node output gets Identity
        self.pending_outputs = []
        for v, name in zip(graph.outputs, output_names):
            if v.kind == "node" and id(v) not in self.tensor_names:
                self.tensor_names[id(v)] = name
            else:
                self.pending_outputs.append((v, name))
        self.output_names = output_names
        self.input_names = input_names

    # ------------------------------------------------------------------------------------ names
    def fresh(self, base: str) -> str:
        return unique_name(base, self.taken)

    def _node_name(self, op_type: str) -> str:
        scope = self.node.scope if self.node is not None else ""
        return unique_name(f"{scope}/{op_type}" if scope else op_type, self.node_names)

    def tmp(self, hint: str) -> str:
        """A new intermediate tensor name inside the current node's conversion."""
        return self.fresh(f"{self.out_name}/{hint}")

    # ----------------------------------------------------------------------------------- values
    def value(self, v: Value) -> str:
        """The ONNX name of a traced Value; parameters, buffers and constants are emitted on
        first use (initializers named by state_dict key; constants as Constant nodes)."""
        name = self.tensor_names.get(id(v))
        if name is not None:
            return name
        if v.kind in ("param", "buffer"):
            name = self.fresh(v.name)
            self.initializers.append(self.nph.from_array(v.tensor.data, name))
        elif v.kind == "const":
            name = self.const(v.tensor.data, hint=v.name)
        else:  # pragma: no cover - the tracer records producers before users
            raise ONNXExportError(f"ONNX export: tensor {v.name} is used before it is computed")
        self.tensor_names[id(v)] = name
        return name

    def const(self, value, dtype=None, hint="const") -> str:
        """A Constant node holding ``value`` (in ``dtype`` when given)."""
        arr = xp.asarray(value, dtype=dtype)
        name = self.fresh(f"{self.out_name}/{hint}" if self.out_name else hint)
        tensor = self.nph.from_array(arr, name)  # tobytes(): C order, 0-d kept
        self.nodes.append(self.helper.make_node("Constant", [], [name],
                                                name=self._node_name("Constant"), value=tensor))
        return name

    def ints(self, values) -> str:
        """A 1-D int64 constant (axes, shapes, pads, slice bounds)."""
        return self.const(xp.asarray(list(values), dtype=xp.int64), hint="ints")

    def arg(self, i: int, dtype=None) -> str:
        """The ONNX name of the current node's argument ``i``: a Value, or a plain scalar or array
        turned into a constant. With ``dtype`` the result is cast to it when it differs (a Python
        scalar takes ``dtype`` directly: NumPy's weak scalar promotion, as the engine computed)."""
        a = self.node.args[i]
        if isinstance(a, Value):
            return self.cast(self.value(a), a.dtype, dtype)
        if isinstance(a, (bool, int, float)) and dtype is not None:
            return self.const(a, dtype=dtype)
        arr = xp.asarray(a)
        return self.cast(self.const(arr), arr.dtype, dtype)

    def dtype_of(self, i: int):
        a = self.node.args[i]
        return a.dtype if isinstance(a, Value) else xp.asarray(a).dtype

    def cast(self, name: str, have, want) -> str:
        if want is None or xp.dtype(have) == xp.dtype(want):
            return name
        return self.op("Cast", [name], to=self.onnx_type(want))

    def onnx_type(self, dtype) -> int:
        return self.helper.np_dtype_to_tensor_dtype(xp.dtype(dtype))

    # -------------------------------------------------------------------------------------- ops
    def op(self, op_type: str, inputs, out: str | None = None, **attrs) -> str:
        """Emit one ONNX node; returns its output name (``out``, or a new intermediate name)."""
        out = out or self.tmp(op_type)
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out],
                                                name=self._node_name(op_type), **attrs))
        return out

    def reduce(self, op_type: str, x: str, axes, keepdims: bool, out=None) -> str:
        """A Reduce* node over ``axes``: the axes are an input for ReduceSum from opset 13 and for
        the others from opset 18, an attribute before. No axes means no reduction (ONNX would
        reduce everything), so that is an Identity."""
        axes = [int(a) for a in axes]
        if not axes:
            return self.op("Identity", [x], out)
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.ints(axes)], out, keepdims=int(keepdims))
        return self.op(op_type, [x], out, axes=axes, keepdims=int(keepdims))

    def twin(self) -> Node | None:
        """The current node in the second trace (batch size + 1); None without a dynamic batch."""
        return None if self.twins is None else self.twins[self.node]

    def fail(self, message: str):
        return ONNXExportError(f"ONNX export: {self.node.op} in {_where(self.node)}: {message}")

    # ------------------------------------------------------------------------------------ build
    def build(self, model):
        helper = self.helper
        for node in self.graph.nodes:
            self.node = node
            out = self.tensor_names.get(id(node.output))
            if out is None:
                out = self.fresh(node.output.name)
                self.tensor_names[id(node.output)] = out
            else:
                self.taken.add(out)
            self.out_name = out
            _CONVERTERS[node.op](self, node, out)
        self.node, self.out_name = None, ""
        for v, name in self.pending_outputs:
            self.nodes.append(helper.make_node("Identity", [self.value(v)], [name],
                                               name=self._node_name("Identity")))
        inputs = [helper.make_tensor_value_info(name, self.onnx_type(v.dtype),
                                                self._dims(v, self._twin_value(v, "inputs")))
                  for v, name in zip(self.graph.inputs, self.input_names)]
        outputs = [helper.make_tensor_value_info(name, self.onnx_type(v.dtype),
                                                 self._dims(v, self._twin_value(v, "outputs")))
                   for v, name in zip(self.graph.outputs, self.output_names)]
        from ..version import __version__
        title = type(model).__name__
        graph = helper.make_graph(self.nodes, title, inputs, outputs, self.initializers,
                                  doc_string=f"{title} exported by foveanet {__version__}")
        opsets = [helper.make_opsetid("", self.opset)]
        proto = helper.make_model(graph, opset_imports=opsets, producer_name="foveanet",
                                  producer_version=__version__,
                                  doc_string=f"foveanet {__version__}: {title}")
        proto.ir_version = helper.find_min_ir_version_for(opsets)
        return proto

    def _twin_value(self, v, which):
        if self.twin_graph is None:
            return None
        return getattr(self.twin_graph, which)[getattr(self.graph, which).index(v)]

    def _dims(self, v, twin_v):
        """Static sizes, with 'batch' where the size followed the batch between the two traces."""
        if twin_v is None:
            return list(v.shape)
        n1, n2 = self.graph.inputs[0].shape[0], self.twin_graph.inputs[0].shape[0]
        dims = []
        for d1, d2 in zip(v.shape, twin_v.shape):
            dims.append(d1 if d1 == d2 else "batch" if (d1, d2) == (n1, n2) else None)
        return dims


# ===================================================================================== converters
# One function per engine primitive: ``convert(b, node, out)`` reads the node's arguments (as the
# Function's ``apply`` received them) and emits ONNX nodes whose final output is named ``out``.
_CONVERTERS: dict = {}


def converts(*names):
    def deco(fn):
        for name in names:
            _CONVERTERS[name] = fn
        return fn
    return deco


def _kw(node, i, name, default=None):
    """Argument ``name`` of a Function call, given by position ``i`` or by keyword."""
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[i] if len(node.args) > i else default


# ----------------------------------------------------------------------------------- element-wise
_BINARY = {"Add": "Add", "Sub": "Sub", "Mul": "Mul", "Div": "Div", "Pow": "Pow"}


@converts(*_BINARY)
def _binary(b, node, out):
    """Both operands in the result's dtype (a Python scalar becomes a constant of that dtype)."""
    dt = node.output.dtype
    b.op(_BINARY[node.op], [b.arg(0, dt), b.arg(1, dt)], out)


_UNARY = {"Neg": "Neg", "Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt", "Abs": "Abs", "Tanh": "Tanh",
          "ReLU": "Relu", "Clone": "Identity"}


@converts(*_UNARY)
def _unary(b, node, out):
    b.op(_UNARY[node.op], [b.arg(0)], out)


@converts("Maximum")
def _maximum(b, node, out):
    dt = node.output.dtype
    b.op("Min" if node.kwargs.get("minimum") else "Max", [b.arg(0, dt), b.arg(1, dt)], out)


@converts("Clamp")
def _clamp(b, node, out):
    dt = node.output.dtype
    lo, hi = node.args[1], node.args[2]
    b.op("Clip", [b.arg(0, dt), "" if lo is None else b.const(lo, dt),
                  "" if hi is None else b.const(hi, dt)], out)


@converts("Where")
def _where_op(b, node, out):
    dt = node.output.dtype
    b.op("Where", [b.arg(0, xp.bool_), b.arg(1, dt), b.arg(2, dt)], out)


@converts("Cast")
def _cast(b, node, out):
    b.op("Cast", [b.arg(0)], out, to=b.onnx_type(node.args[1]))


# ------------------------------------------------------------------------------------ activations
@converts("Sigmoid")
def _sigmoid(b, node, out):
    """The engine's sigmoid has a steepness: 1 / (1 + exp(-sigma z)), so z is scaled first."""
    sigma = float(node.args[1])
    x = b.arg(0)
    if sigma != 1.0:
        x = b.op("Mul", [x, b.const(sigma, node.output.dtype)])
    b.op("Sigmoid", [x], out)


@converts("LeakyReLU")
def _leaky_relu(b, node, out):
    b.op("LeakyRelu", [b.arg(0)], out, alpha=float(node.args[1]))


@converts("ELU")
def _elu(b, node, out):
    b.op("Elu", [b.arg(0)], out, alpha=float(node.args[1]))


@converts("Softmax", "LogSoftmax")
def _softmax(b, node, out):
    """From opset 13 both normalise along the one ``axis`` (before, they flattened from it)."""
    if node.args[0].tensor.ndim == 0:
        raise b.fail("softmax of a 0-d tensor has no axis in ONNX")
    b.op(node.op, [b.arg(0)], out, axis=int(node.args[1]))


@converts("ThresholdStep")
def _threshold_step(b, node, out):
    """The perceptron's step: Where(v >= 0, 1, low)."""
    dt = node.output.dtype
    cond = b.op("GreaterOrEqual", [b.arg(0), b.const(0, dt)])
    b.op("Where", [cond, b.const(1, dt), b.const(node.args[1], dt)], out)


# ----------------------------------------------------------------------------- matrices and convs
@converts("MatMul")
def _matmul(b, node, out):
    dt = node.output.dtype
    b.op("MatMul", [b.arg(0, dt), b.arg(1, dt)], out)


@converts("Linear")
def _linear(b, node, out):
    """x W^T + b: Gemm (transB=1) for a 2-D x, else MatMul with the transposed weight (+ Add)."""
    x, w = b.arg(0), b.arg(1)
    bias = b.arg(2) if len(node.args) > 2 and node.args[2] is not None else None
    if node.args[0].tensor.ndim == 2:
        b.op("Gemm", [x, w] + ([bias] if bias else []), out, transB=1)
        return
    y = b.op("MatMul", [x, b.op("Transpose", [w], perm=[1, 0])], None if bias else out)
    if bias:
        b.op("Add", [y, bias], out)


def _batched(b, node, convert, out):
    """Run ``convert(x, out)`` on a 4-D input: an unbatched (C, H, W) input gets a batch of one."""
    if node.args[0].tensor.ndim == 4:
        convert(b.arg(0), out)
        return
    x = b.op("Unsqueeze", [b.arg(0), b.ints([0])])
    b.op("Squeeze", [convert(x, None), b.ints([0])], out)


@converts("Conv2d")
def _conv2d(b, node, out):
    w = node.args[1].tensor
    top, bottom, left, right = node.kwargs["pads"]
    inputs = [b.arg(1)] + ([b.arg(2)] if len(node.args) > 2 and node.args[2] is not None else [])

    def convert(x, o):
        return b.op("Conv", [x] + inputs, o, kernel_shape=list(w.shape[2:]),
                    strides=list(node.kwargs["stride"]), pads=[top, left, bottom, right],
                    dilations=list(node.kwargs["dilation"]), group=int(node.kwargs["groups"]))
    _batched(b, node, convert, out)


@converts("ConvTranspose2d")
def _conv_transpose2d(b, node, out):
    w = node.args[1].tensor
    ph, pw = node.kwargs["padding"]
    inputs = [b.arg(1)] + ([b.arg(2)] if len(node.args) > 2 and node.args[2] is not None else [])

    def convert(x, o):
        return b.op("ConvTranspose", [x] + inputs, o, kernel_shape=list(w.shape[2:]),
                    strides=list(node.kwargs["stride"]), pads=[ph, pw, ph, pw],
                    output_padding=list(node.kwargs["output_padding"]),
                    dilations=list(node.kwargs["dilation"]), group=int(node.kwargs["groups"]))
    _batched(b, node, convert, out)


# ---------------------------------------------------------------------------------------- pooling
def _end_pads(node, size_hw, kernel, stride, padding, dilation, out_hw):
    """Bottom/right padding so that ONNX's floor-mode output size equals the engine's (which may
    come from ceil_mode): the engine pads the end only as far as the last window reaches."""
    ends = []
    for size, k, s, p, d, n in zip(size_hw, kernel, stride, padding, dilation, out_hw):
        need = (n - 1) * s + d * (k - 1) + 1
        e = max(need - size - p, 0)
        if (size + p + e - d * (k - 1) - 1) // s + 1 != n:  # pragma: no cover - defensive
            raise ONNXExportError(f"ONNX export: cannot reproduce the output size {out_hw} of "
                                  f"{node.op} in {_where(node)}")
        ends.append(e)
    return ends


@converts("MaxPool2d")
def _max_pool2d(b, node, out):
    """Padding is -inf for a max, so extra end padding stands in for ceil_mode exactly."""
    x, kernel, stride, padding, dilation, out_hw = node.args[:6]
    ends = _end_pads(node, x.shape[-2:], kernel, stride, padding, dilation, out_hw)

    def convert(xn, o):
        return b.op("MaxPool", [xn], o, kernel_shape=list(kernel), strides=list(stride),
                    pads=[padding[0], padding[1]] + ends, dilations=list(dilation))
    _batched(b, node, convert, out)


@converts("AvgPool2d")
def _avg_pool2d(b, node, out):
    """A whole-plane average is GlobalAveragePool. Otherwise AveragePool with the padding counted
    (window sum / window area), then a multiplication by a constant (H_out, W_out) map of
    area / divisor wherever the engine divides by something else (count_include_pad=False,
    windows clipped by ceil_mode, divisor_override): exact for every combination."""
    x, kernel, stride, padding, out_hw, include_pad, divisor = node.args[:7]
    h, w = x.shape[-2:]
    if tuple(out_hw) == (1, 1) and tuple(kernel) == (h, w) and tuple(padding) == (0, 0):
        _batched(b, node, lambda xn, o: b.op("GlobalAveragePool", [xn], o), out)
        return
    ends = _end_pads(node, (h, w), kernel, stride, padding, (1, 1), out_hw)
    area = kernel[0] * kernel[1]
    if divisor:
        factor = xp.full(tuple(out_hw), area / divisor)
    else:
        ch = window_counts(h, out_hw[0], kernel[0], stride[0], padding[0], include_pad)
        cw = window_counts(w, out_hw[1], kernel[1], stride[1], padding[1], include_pad)
        factor = area / (ch.reshape(-1, 1) * cw)
    dt = node.output.dtype

    def convert(xn, o):
        uniform = bool(xp.all(factor == 1))
        y = b.op("AveragePool", [xn], o if uniform else None, kernel_shape=list(kernel),
                 strides=list(stride), pads=[padding[0], padding[1]] + ends, count_include_pad=1)
        return y if uniform else b.op("Mul", [y, b.const(factor, dt)], o)
    _batched(b, node, convert, out)


@converts("AdaptiveAvgPool2d")
def _adaptive_avg_pool2d(b, node, out):
    """Unequal windows (the size does not divide): out = A_h @ x @ A_w^T with the engine's own
    averaging matrices, two MatMuls (equal windows arrive here as AvgPool2d already)."""
    x, out_hw = node.args[0].tensor, node.args[1]
    h, w = x.shape[-2:]
    ah = adaptive_matrix(h, out_hw[0], x.dtype)
    aw = adaptive_matrix(w, out_hw[1], x.dtype)
    y = b.op("MatMul", [b.arg(0), b.const(xp.ascontiguousarray(aw.T), hint="adaptive_w")])
    b.op("MatMul", [b.const(ah, hint="adaptive_h"), y], out)


# ---------------------------------------------------------------------------------- normalisation
@converts("BatchNorm")
def _batch_norm(b, node, out):
    """Eval-mode batch norm (running statistics); a missing affine weight/bias is 1/0."""
    if node.kwargs.get("training"):
        raise b.fail("batch_norm ran in training mode (batch statistics); ONNX inference uses "
                     "the running statistics: call it with training=False (model.eval())")
    x = node.args[0]
    dt, c = x.dtype, x.shape[1]
    scale = b.arg(1, dt) if node.args[1] is not None else b.const(xp.ones(c), dt)
    bias = b.arg(2, dt) if node.args[2] is not None else b.const(xp.zeros(c), dt)
    b.op("BatchNormalization", [b.arg(0), scale, bias, b.arg(3, dt), b.arg(4, dt)], out,
         epsilon=float(node.kwargs["eps"]))


@converts("LocalResponseNorm")
def _local_response_norm(b, node, out):
    """ONNX's LRN centres an even window one channel later than PyTorch's (size // 2 before), so
    LRN serves odd sizes on 4-D input; otherwise the same formula from parts: a channel-window
    average of x^2 by an AveragePool over a new unit axis, then x * (k + alpha * avg)^-beta."""
    x, size, alpha, beta, k = node.args
    if size % 2 == 1 and x.tensor.ndim == 4:
        b.op("LRN", [b.arg(0)], out, size=int(size), alpha=float(alpha), beta=float(beta),
             bias=float(k))
        return
    if x.tensor.ndim > 4:
        raise b.fail(f"local_response_norm of a {x.tensor.ndim}-D tensor (3-D and 4-D convert)")
    dt, rank = x.dtype, x.tensor.ndim
    xn = b.arg(0)
    sq = b.op("Unsqueeze", [b.op("Mul", [xn, xn]), b.ints([1])])
    spatial = rank - 1
    avg = b.op("AveragePool", [sq], kernel_shape=[size] + [1] * (spatial - 1),
               pads=[size // 2] + [0] * (spatial - 1) + [(size - 1) // 2] + [0] * (spatial - 1),
               count_include_pad=1)
    avg = b.op("Squeeze", [avg, b.ints([1])])
    d = b.op("Add", [b.op("Mul", [avg, b.const(alpha, dt)]), b.const(k, dt)])
    b.op("Mul", [xn, b.op("Pow", [d, b.const(-beta, dt)])], out)


# ------------------------------------------------------------------------------------- reductions
_REDUCE = {"Sum": "ReduceSum", "Mean": "ReduceMean", "LogSumExp": "ReduceLogSumExp"}


@converts(*_REDUCE)
def _reduce(b, node, out):
    b.reduce(_REDUCE[node.op], b.arg(0), node.args[1], node.args[2], out)


@converts("Amax")
def _amax(b, node, out):
    op = "ReduceMin" if _kw(node, 3, "take_min", False) else "ReduceMax"
    b.reduce(op, b.arg(0), node.args[1], node.args[2], out)


@converts("MaxDim")
def _max_dim(b, node, out):
    """max/min along one dim: the values (the indices are computed outside the graph)."""
    op = "ReduceMin" if _kw(node, 3, "take_min", False) else "ReduceMax"
    b.reduce(op, b.arg(0), [node.args[1]], node.args[2], out)


@converts("Var", "Std")
def _var(b, node, out):
    """sum((x - mean)^2) / (n - correction), and its square root for std."""
    x, axes, keepdim, correction = node.args
    n = int(xp.prod([x.shape[i] for i in axes])) if axes else 1
    dt = x.dtype
    xn = b.arg(0)
    d = b.op("Sub", [xn, b.reduce("ReduceMean", xn, axes, True)])
    s = b.reduce("ReduceSum", b.op("Mul", [d, d]), axes, keepdim)
    v = b.op("Div", [s, b.const(max(n - correction, 0), dt)], out if node.op == "Var" else None)
    if node.op == "Std":
        b.op("Sqrt", [v], out)


# ------------------------------------------------------------------------------------------ shape
@converts("Reshape")
def _reshape(b, node, out):
    """A target entry that followed the batch between the two traces becomes 0 (copy the input's
    dimension) when it is the input's batch, else -1 (inferred); more than one such entry cannot
    be written as a constant shape."""
    x, shape = node.args[0], list(node.args[1])
    twin = b.twin()
    if twin is not None:
        shape2, xin2 = list(twin.args[1]), twin.args[0].shape
        moved = [i for i, (s1, s2) in enumerate(zip(shape, shape2)) if s1 != s2]
        if len(shape) != len(shape2) or len(moved) > 1:
            raise b.fail(f"the target shape {tuple(shape)} changes with the batch size in more "
                         f"than one place ({tuple(shape2)} at the next batch size); reshape so "
                         f"that only one dimension depends on the batch, or export with "
                         f"dynamic_batch=False")
        if moved:
            i = moved[0]
            copies = i == 0 and x.shape and x.shape[0] == shape[0] and xin2[0] == shape2[0]
            shape[i] = 0 if copies else -1
    b.op("Reshape", [b.arg(0), b.ints(shape)], out)


@converts("Expand")
def _expand(b, node, out):
    """ONNX Expand broadcasts both ways, so a 1 keeps the input's own size: every dimension the
    input already has at full size (the batch among them) is written as 1."""
    x, shape = node.args[0], list(node.args[1])
    lead = len(shape) - len(x.shape)
    target = [1 if i >= lead and x.shape[i - lead] == s else s for i, s in enumerate(shape)]
    twin = b.twin()
    if twin is not None:
        x2, shape2 = twin.args[0], list(twin.args[1])
        target2 = [1 if i >= lead and x2.shape[i - lead] == s else s for i, s in enumerate(shape2)]
        if target != target2:
            raise b.fail(f"the expanded shape {tuple(shape)} changes with the batch size along a "
                         f"dimension the input does not have; export with dynamic_batch=False")
    b.op("Expand", [b.arg(0), b.ints(target)], out)


@converts("Permute")
def _permute(b, node, out):
    b.op("Transpose", [b.arg(0)], out, perm=[int(d) for d in node.args[1]])


@converts("Concat")
def _concat(b, node, out):
    dt = node.output.dtype
    b.op("Concat", [b.arg(i, dt) for i in range(len(node.args))], out,
         axis=int(node.kwargs["axis"]))


@converts("Stack")
def _stack(b, node, out):
    axis, dt = int(node.kwargs["axis"]), node.output.dtype
    parts = [b.op("Unsqueeze", [b.arg(i, dt), b.ints([axis])]) for i in range(len(node.args))]
    b.op("Concat", parts, out, axis=axis)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}


@converts("Pad")
def _pad(b, node, out):
    """constant/reflect/replicate are ONNX Pad modes; circular is two Slices and a Concat per
    axis (ONNX's 'wrap' only exists from opset 19)."""
    x, widths, mode, value = node.args
    x_name = b.arg(0)
    if not any(lo or hi for lo, hi in widths):
        b.op("Identity", [x_name], out)
        return
    if mode == "circular":
        padded = [(ax, lo, hi) for ax, (lo, hi) in enumerate(widths) if lo or hi]
        for k, (ax, lo, hi) in enumerate(padded):
            parts = []
            if lo:
                parts.append(b.op("Slice", [x_name, b.ints([-lo]), b.ints([_INT64_MAX]),
                                            b.ints([ax])]))
            parts.append(x_name)
            if hi:
                parts.append(b.op("Slice", [x_name, b.ints([0]), b.ints([hi]), b.ints([ax])]))
            x_name = b.op("Concat", parts, out if k == len(padded) - 1 else None, axis=ax)
        return
    if mode not in _PAD_MODES:
        raise b.fail(f"pad mode {mode!r} has no ONNX equivalent")
    pads = [lo for lo, _ in widths] + [hi for _, hi in widths]
    inputs = [x_name, b.ints(pads)]
    if mode == "constant":
        inputs.append(b.const(value, x.dtype))
    b.op("Pad", inputs, out, mode=_PAD_MODES[mode])


def _is_int(i) -> bool:
    return isinstance(i, (int, xp.integer)) and not isinstance(i, (bool, xp.bool_))


@converts("GetItem")
def _getitem(b, node, out):
    """Basic indexing: one Slice for the slices, a Gather per integer (or for one integer index
    array), Unsqueeze for each None, in NumPy's order of output dimensions."""
    x, idx = node.args[0], node.args[1]
    ndim = len(x.shape)
    items = list(idx) if isinstance(idx, tuple) else [idx]
    items = [xp.asarray(i) if isinstance(i, list) else i for i in items]  # x[:, [2, 0]]
    arrays = [i for i in items if isinstance(i, xp.ndarray)]
    if any(a.dtype == xp.bool_ for a in arrays) or len(arrays) > 1 or \
            any(isinstance(i, (bool, xp.bool_)) for i in items):
        raise b.fail(f"index {idx!r}: boolean masks and several index arrays are not supported "
                     f"(basic slices, integers and one integer array are)")
    consumed = sum(1 for i in items if i is not None and i is not Ellipsis)
    if Ellipsis in [i for i in items if not isinstance(i, xp.ndarray)]:
        k = next(j for j, i in enumerate(items) if i is Ellipsis and not isinstance(i, xp.ndarray))
        items[k:k + 1] = [slice(None)] * (ndim - consumed)
    items += [slice(None)] * (ndim - sum(1 for i in items if i is not None))
    starts, ends, axes, steps, gathers, new_axes = [], [], [], [], [], []
    axis = out_pos = 0
    for it in items:
        if it is None:
            new_axes.append(out_pos)
            out_pos += 1
        elif isinstance(it, slice):
            if it != slice(None) and it != slice(None, None, 1):
                step = 1 if it.step is None else int(it.step)
                lo, hi = (0, _INT64_MAX) if step > 0 else (_INT64_MAX, _INT64_MIN)
                starts.append(lo if it.start is None else int(it.start))
                ends.append(hi if it.stop is None else int(it.stop))
                axes.append(axis)
                steps.append(step)
            axis += 1
            out_pos += 1
        elif _is_int(it) or isinstance(it, xp.ndarray):
            gathers.append((axis, it))
            axis += 1
            out_pos += it.ndim if isinstance(it, xp.ndarray) else 0
        else:
            raise b.fail(f"index {idx!r}: cannot convert the index item {it!r}")
    y = b.arg(0)
    last = [("slice", None)] * bool(axes) + [("gather", g) for g in reversed(gathers)] \
        + [("unsqueeze", None)] * bool(new_axes)
    if not last:
        b.op("Identity", [y], out)
        return
    for k, (kind, g) in enumerate(last):
        o = out if k == len(last) - 1 else None
        if kind == "slice":
            y = b.op("Slice", [y, b.ints(starts), b.ints(ends), b.ints(axes), b.ints(steps)], o)
        elif kind == "gather":
            ax, index = g
            y = b.op("Gather", [y, b.const(xp.asarray(index, dtype=xp.int64), hint="index")], o,
                     axis=ax)
        else:
            y = b.op("Unsqueeze", [y, b.ints(new_axes)], o)

