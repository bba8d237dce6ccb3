"""ONNX export: ``fv.onnx.export(model, example_input, path)``.

How it works. The model runs once (and once more per dynamic dimension, see below) in evaluation
mode under ``no_grad`` with the graph tracer on (:func:`foveanet.interop.trace`), which records
every primitive (a ``Function`` subclass of ``foveanet.ops``) with its arguments and the module
path it ran under (an ``nn.RNN`` / ``LSTM`` / ``GRU`` as one, see below). Each recorded
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
compared: a ``reshape`` target entry that followed the batch becomes ONNX's ``0`` ("copy this
input dimension") where it is the input's own size there, else ``-1``, an ``expand`` keeps the
dimensions its input already has, and anything else that changed with the batch or with the
input's values (a constant computed from the input behind the engine's back, a data-dependent
``where`` condition) is a clear error instead of a file that silently gives wrong answers at
another batch size. Dimension 0 of every input, and every output dimension that followed it, is
the symbolic ``batch``. ``dynamic_axes={"input": {0: "seq", 1: "batch"}, ...}`` names other
dimensions instead (a sequence's length, a recurrent state's batch in dimension 1): one more trace
per symbol, each growing that symbol's dimensions by one, all compared the same way; an output
dimension that followed one symbol is named by it, one that followed several (a reshape's
``batch * seq``) is dynamic without a name.

Recurrent layers. An ``nn.RNN`` / ``LSTM`` / ``GRU`` module is exported whole, not as the
primitives its ``forward`` runs: during the trace its ``forward`` records one
:class:`RecurrentLayer` (its input, initial states and parameters), and the converter writes one
ONNX ``RNN`` / ``LSTM`` / ``GRU`` operator per layer, both directions in one
(``direction="bidirectional"``). The primitive (``ops.rnn.Recurrence``, one layer and one
direction over rows in time order) would do for a fixed input, but its arguments are the rows of
a reshaped (T B, in) matrix and a list of T step sizes, so the sequence length would be pinned in
the file and each direction would need its own operator and a Concat; at the module level
nothing depends on the sizes (the per-layer plumbing is Transpose, Squeeze and Reshape with
``0``/``-1``), so batch and sequence length stay dynamic, and the graph reads as PyTorch's
exporter writes it. The parameters stay the initializers, under their ``state_dict`` names: the
change to ONNX's gate order (LSTM i, o, f, c for PyTorch's i, f, g, o; GRU z, r, h for r, z, n)
is a Gather in the graph, which onnxruntime folds, and the GRU is written with
``linear_before_reset=1``, PyTorch's candidate state. ``batch_first`` and unbatched inputs get
Transposes / Unsqueezes around the chain; ONNX's Y (T, D, B, H) becomes the next layer's
(T, B, D H) by a Transpose and a Reshape. Not exportable, each refused by name: ``proj_size``
(ONNX's LSTM has no projection) and ``PackedSequence`` inputs (their batch sizes are data fixed
at the trace). The primitive itself still converts where it runs outside such a module's
``forward`` (the cells, a subclass's own ``forward``): one operator per call, over a fixed number
of steps. onnxruntime's recurrent kernels run float32 only (a float64 model exports, and imports
back, but onnxruntime refuses it).

Max unpooling. ``max_pool2d(..., return_indices=True)`` becomes a MaxPool with its second
output, ``Indices``, and ``max_unpool2d`` a MaxUnpool that reads those Indices directly: the
engine's indices are arrays the tracer sees only as the pooling's ``sink`` (not a traced tensor),
so the converter finds, by identity, the pooling that produced the unpooling's index array;
indices from anywhere else (a graph input, arithmetic on them) are refused. ONNX's indices are
flat over the whole (N, C, H, W) input while the engine's (PyTorch's) count within one H x W
plane; inside one graph MaxPool's Indices feed MaxUnpool directly, so the convention is ONNX's
throughout. Where the unpooled plane differs in size from the pooled input's (an
``output_size`` other than the input's size, or the default size of an odd input), each plane's
block of indices is moved: i + (i div HW_in) (OH OW - HW_in). The MaxUnpool carries no
``output_shape`` input (onnxruntime places indices flat in that shape, ONNX's reference pads
the inferred shape instead: they disagree whenever the two differ): its kernel and pads are
chosen so that ONNX's inferred size, (in - 1) stride + kernel - pads, is the engine's.

``nn.Embedding`` is a Gather (its ``max_norm``, which rewrites the weight at every call, is
refused); ``nn.LayerNorm`` is LayerNormalization from opset 17, its parts (ReduceMean, Sub, Sqrt,
Div, Mul, Add) before.

Opsets 13 and newer are supported (13 made Softmax single-axis and moved the axes of ReduceSum,
Squeeze and Unsqueeze to inputs; 18 did the same for the other reductions, which the converters
handle); the default is 17. Every exported model passes ``onnx.checker.check_model(...,
full_check=True)``, which ``export`` runs before writing the file.

``onnx`` is imported when ``export`` is called, never by ``import foveanet``.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from .. import autograd
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
           dynamic_batch=True, optimize=False, dynamic_axes=None, quantize=None,
           calibration=None, calibration_method="minmax"):
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
    float32 rounding. ``dynamic_axes``: instead of dimension 0 of every input, the dimensions
    named here are dynamic: ``{input name: {axis: symbol}}`` (a list of axes names them
    ``{input}_{axis}``); a symbol shared by several inputs is one size, grown together (a
    recurrent model: ``{"input": {0: "seq", 1: "batch"}, "h0": {1: "batch"}}``). With it,
    ``dynamic_batch`` is not consulted. ``quantize="int8"``: post-training static quantisation
    (:mod:`foveanet.interop.quantize`): int8 weights with a scale per output channel, uint8
    activations with scales calibrated on ``calibration`` (samples, or an iterable of batches,
    e.g. a DataLoader; ``calibration_method``: "minmax", "percentile" or "entropy"), written as
    QuantizeLinear / DequantizeLinear pairs that onnxruntime runs with its int8 kernels; it implies
    ``optimize``.

    The model is run in evaluation mode under ``no_grad``; its train/eval mode is restored
    afterwards. Raises :class:`ONNXExportError` naming the operation and the module path where it
    ran when something cannot be exported."""
    onnx = _import_onnx()
    opset = _check_opset(onnx, opset)
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize={quantize!r}: the supported quantisation is 'int8' (or None)")
    inputs = _as_inputs(example_input)
    input_names = _io_names(input_names, len(inputs), "input")
    dynamic = _dynamic_axes(dynamic_axes, dynamic_batch, inputs, input_names)
    with _export_mode(model):
        graph = _trace(model, inputs, input_names)
        _check_supported(graph)
        _check_unpool_indices(graph)
        twins = [_trace_twin(model, inputs, input_names, twin) for twin in dynamic]
    output_names = _io_names(output_names, len(graph.outputs), "output")
    for twin in twins:
        _check_twins(graph, twin)
    _check_size(graph)
    batches = None
    if quantize:  # checked before the export's work, so bad calibration data fails fast
        from .quantize import calibration_batches
        batches = calibration_batches(calibration, len(inputs),
                                      [tuple(t.shape[1:]) for t in inputs])
    proto = _Builder(onnx, opset, graph, twins, input_names, output_names).build(model)
    if optimize or quantize:
        fold_batchnorm_into_conv(proto)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # a converter bug, not the user's: say so plainly
        raise ONNXExportError(f"ONNX export: the exported graph fails onnx's checker ({e}); "
                              "this is a bug in foveanet's exporter, please report it") from e
    if quantize:
        from .quantize import quantize_qdq
        proto = quantize_qdq(proto, batches, input_names, calibration_method)
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


@dataclass(eq=False)
class _Twin:
    """One dynamic dimension: the model traced again with every input dimension in ``places``
    ((input index, axis) pairs) grown by one slice. ``sizes``: (the example's size, the grown
    one); ``what``, ``grown`` and ``hint`` word the error messages."""
    symbol: str
    places: list
    sizes: tuple
    what: str
    grown: str
    hint: str
    graph: object = None
    default: bool = False  # the batch of dynamic_batch=True (not named in dynamic_axes)


def _dynamic_axes(dynamic_axes, dynamic_batch, inputs, input_names) -> list:
    """The dynamic dimensions as :class:`_Twin` s (untraced): ``dynamic_axes`` when given, else
    the batch (dimension 0 of every input) with ``dynamic_batch``, else none."""
    if dynamic_axes is None:
        if not dynamic_batch:
            return []
        if any(x.ndim == 0 for x in inputs):
            raise ValueError("ONNX export: dynamic_batch=True needs inputs with a batch dimension; "
                             "a 0-d example input has none (pass dynamic_batch=False)")
        n = inputs[0].shape[0]
        return [_Twin("batch", [(i, 0) for i in range(len(inputs))], (n, n + 1), "batch size",
                      "grown by one sample", "export with dynamic_batch=False", default=True)]
    if not isinstance(dynamic_axes, dict):
        raise TypeError(f"ONNX export: dynamic_axes must be a dict {{input name: {{axis: "
                        f"symbol}}}}, got {type(dynamic_axes).__name__}")
    by_symbol: dict = {}
    for name, axes in dynamic_axes.items():
        if name not in input_names:
            raise ValueError(f"ONNX export: dynamic_axes names {name!r}, which is not an input "
                             f"(inputs: {input_names})")
        i = input_names.index(name)
        if isinstance(axes, (list, tuple)):
            axes = {a: f"{name}_{a}" for a in axes}
        if not isinstance(axes, dict):
            raise TypeError(f"ONNX export: dynamic_axes[{name!r}] must be a dict {{axis: symbol}} "
                            f"or a list of axes, got {type(axes).__name__}")
        ndim = inputs[i].ndim
        for axis, symbol in axes.items():
            if isinstance(axis, bool) or not isinstance(axis, int) or not -ndim <= axis < ndim:
                raise ValueError(f"ONNX export: dynamic_axes[{name!r}]: axis {axis!r} is not a "
                                 f"dimension of the {ndim}-D example input {name!r} (shape "
                                 f"{tuple(inputs[i].shape)})")
            if not isinstance(symbol, str) or not symbol:
                raise ValueError(f"ONNX export: dynamic_axes[{name!r}][{axis}]: the symbol must "
                                 f"be a non-empty string, got {symbol!r}")
            by_symbol.setdefault(symbol, []).append((i, axis % ndim))
    twins = []
    for symbol, places in by_symbol.items():
        sizes = {inputs[i].shape[a] for i, a in places}
        if len(sizes) > 1:
            listing = ", ".join(f"{input_names[i]}[{a}] = {inputs[i].shape[a]}" for i, a in places)
            raise ValueError(f"ONNX export: dynamic_axes: the dimensions named {symbol!r} must "
                             f"have one size in the example inputs, got {listing}")
        n = sizes.pop()
        what = "batch size" if symbol == "batch" else f"{symbol!r} size"
        twins.append(_Twin(symbol, places, (n, n + 1), what, f"grown by one along {symbol!r}",
                           f"leave {symbol!r} out of dynamic_axes"))
    return twins


def _grown(inputs, places):
    """The example inputs with the first slice along each dimension in ``places`` appended: that
    size + 1, for a second trace."""
    out = [x.data for x in inputs]
    for i, axis in places:
        first = xp.take(out[i], [0], axis=axis)
        out[i] = xp.concatenate([out[i], first], axis=axis)
    return [Tensor(a) for a in out]


def _trace_twin(model, inputs, input_names, twin):
    """Trace ``model`` on the inputs grown along ``twin``'s dimension; the twin with its graph."""
    try:
        twin.graph = _trace(model, _grown(inputs, twin.places), input_names)
    except ONNXExportError:
        raise
    except Exception as e:
        where = ", ".join(f"{input_names[i]}[{a}]" for i, a in twin.places)
        advice = ("pass dynamic_axes to say which dimensions are dynamic (a recurrent layer's "
                  "batch is dimension 1 of its input and states unless batch_first), or "
                  if twin.default else "")
        raise ONNXExportError(
            f"ONNX export: the model fails on the example input {twin.grown} ({where}), so the "
            f"{twin.symbol!r} size cannot be dynamic ({type(e).__name__}: {e}); "
            f"{advice}{twin.hint}") from e
    return twin


class ThresholdStep(Function):
    """step(v) = 1 where v >= 0, else ``low`` (0, or -1 for a bipolar unit): the perceptron's
    threshold as a primitive the tracer can see (the model computes it on raw arrays, which a trace
    cannot follow). Export only: it has no useful derivative."""

    def forward(self, v, low):
        return xp.where(v >= 0, 1, low).astype(v.dtype)

    def backward(self, g):  # pragma: no cover - export runs under no_grad
        raise RuntimeError("ThresholdStep has no derivative; it exists for ONNX export only")


def _perceptron_forward(module, path):
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


class RecurrentLayer(Function):
    """An ``nn.RNN`` / ``LSTM`` / ``GRU`` module as one primitive, so that the exporter converts
    the layer as a whole (see "Recurrent layers" in the module docstring).

    ``apply(x, h0, c0, *weights, module=)``: the module's input and initial states (None when
    not given) and its parameters in ``_flat_weights_names`` order (the tracer names them by
    their ``state_dict`` keys). Forward runs the module's own ``forward`` with the tracer paused,
    so the per-direction primitives inside are not recorded; results (output, h_n) and, for the
    LSTM, c_n. Export only: it has no derivative."""

    def forward(self, x, h0, c0, *weights, module):
        from ..nn.layers.rnn import RNNBase
        prev = autograd.set_hook("tracer", None)
        try:
            hx = None if h0 is None else (Tensor(h0), Tensor(c0)) if module.mode == "LSTM" \
                else Tensor(h0)
            y, state = RNNBase.forward(module, Tensor(x), hx)
        finally:
            autograd.set_hook("tracer", prev)
        if module.mode == "LSTM":
            return y.data, state[0].data, state[1].data
        return y.data, state.data

    def backward(self, g):  # pragma: no cover - export runs under no_grad
        raise RuntimeError("RecurrentLayer has no derivative; it exists for ONNX export only")


def _recurrent_forward(module, path):
    """``forward`` for an ``nn.RNN`` / ``LSTM`` / ``GRU`` that records one :class:`RecurrentLayer`
    (None, keeping the module's own, for a subclass with its own ``forward``: its primitives
    are traced, see ``_recurrence``)."""
    from ..nn.layers.rnn import RNNBase
    from ..nn.utils.rnn import PackedSequence
    if type(module).forward is not RNNBase.forward:
        return None
    where = f"module '{path}'" if path else "the model itself"
    name = type(module).__name__

    def forward(input, hx=None):  # noqa: A002 - the module's signature
        if isinstance(input, PackedSequence):
            raise ONNXExportError(
                f"ONNX export: {name} in {where} received a PackedSequence: packed sequences "
                f"(nn.utils.rnn) are not exported (their batch sizes are data, fixed at the "
                f"trace); export the layer on a padded batch (T, B, ...) instead")
        h0 = c0 = None
        if hx is not None:
            if module.mode != "LSTM":
                h0 = hx
            elif isinstance(hx, (tuple, list)) and len(hx) == 2:
                h0, c0 = hx
            else:  # the module's own error
                return RNNBase.forward(module, input, hx)
        weights = [module._parameters[n] for n in module._flat_weights_names]
        res = RecurrentLayer.apply(input, h0, c0, *weights, module=module)
        return (res[0], (res[1], res[2])) if module.mode == "LSTM" else (res[0], res[1])
    return forward


def _export_forwards():
    """Module classes whose ``forward`` the export replaces: ``make(module, path)`` returns the
    replacement (or None to keep the module's own). The perceptron's works on raw arrays; the
    recurrent layers become one primitive each."""
    from ..models.perceptron import Perceptron
    from ..nn.layers.rnn import RNNBase
    return {Perceptron: _perceptron_forward, RNNBase: _recurrent_forward}


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
        for path, m in model.named_modules():
            for cls, make in shims.items():
                shim = make(m, path) if isinstance(m, cls) else None
                if shim is not None:
                    replaced.append((m, m.__dict__.get("forward")))
                    object.__setattr__(m, "forward", shim)
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


def _pool_sinks(graph) -> dict:
    """id(index array) -> (position, node) of every ``max_pool2d(return_indices=True)`` node:
    the engine hands its indices over in the call's ``sink`` list, outside the traced values."""
    out = {}
    for k, n in enumerate(graph.nodes):
        sink = n.kwargs.get("sink") if n.op == "MaxPool2d" else None
        if sink:
            out[id(sink[0])] = (k, n)
    return out


def _check_unpool_indices(graph):
    """Every ``max_unpool2d`` must read the indices of a ``max_pool2d(return_indices=True)`` of
    the same forward: the one kind of indices ONNX's MaxPool -> MaxUnpool pair expresses."""
    pools = _pool_sinks(graph)
    for n in graph.nodes:
        if n.op == "MaxUnpool2d" and (isinstance(n.args[1], Value) or id(n.args[1]) not in pools):
            raise ONNXExportError(
                f"ONNX export: MaxUnpool2d in {_where(n)}: its indices do not come from a "
                f"max_pool2d(..., return_indices=True) of this forward; only indices passed "
                f"straight from such a pooling to max_unpool2d can be exported (ONNX's MaxPool "
                f"Indices output feeds MaxUnpool), not indices given as an input or computed")


_BATCH_AWARE = {"Reshape", "Expand", "Recurrence"}  # their converters read the twin traces
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


def _changed(node, what, array_a, array_b, twin):
    if array_a.shape != array_b.shape:
        return ONNXExportError(
            f"ONNX export: {what} of {node.op} in {_where(node)} has shape {array_a.shape} at one "
            f"{twin.what} and {array_b.shape} at another: it was made from the input's shape "
            f"outside foveanet's primitives, which would pin the {twin.what} in the file. Build "
            f"it from the input with foveanet operations, or {twin.hint}")
    return ONNXExportError(
        f"ONNX export: {what} of {node.op} in {_where(node)} changes with the input's values: "
        f"it was computed from the input outside foveanet's primitives (raw arrays, .numpy(), "
        f"a comparison such as x > 0, whose result the engine does not trace), so the file "
        f"would hold this one input's result as a constant. Compute it with foveanet operations")


def _check_twins(graph, tw):
    """The graph at size n and at n + 1 of a dynamic dimension (the :class:`_Twin` ``tw``) must
    be the same graph, up to that size."""
    twin = tw.graph
    if [n.op for n in graph.nodes] != [n.op for n in twin.nodes] or \
            len(graph.outputs) != len(twin.outputs):
        raise ONNXExportError(
            f"ONNX export: the model runs different operations at different {tw.what}s, so no "
            f"single graph with a dynamic {tw.symbol!r} describes it; {tw.hint}")
    pools1, pools2 = _pool_sinks(graph), _pool_sinks(twin)
    for n1, n2 in zip(graph.nodes, twin.nodes):
        keys = [k for k in n1.kwargs if k not in _NOT_COMPARED]
        args1 = list(n1.args) + [n1.kwargs[k] for k in keys]
        args2 = list(n2.args) + [n2.kwargs.get(k) for k in keys]
        for i, (a, b) in enumerate(zip(args1, args2)):
            if n1.op == "MaxUnpool2d" and i == 1:  # the indices: the same pooling's, both times
                if pools1.get(id(a), (None,))[0] != pools2.get(id(b), (-1,))[0]:
                    raise ONNXExportError(
                        f"ONNX export: MaxUnpool2d in {_where(n1)} unpools by the indices of "
                        f"different poolings at different {tw.what}s; {tw.hint}")
                continue
            if isinstance(a, Value) and isinstance(b, Value):
                if a.kind != b.kind or a.name != b.name:
                    raise ONNXExportError(
                        f"ONNX export: {n1.op} in {_where(n1)} takes different tensors at "
                        f"different {tw.what}s; {tw.hint}")
                if a.kind == "const":
                    if not _same_array(a.tensor.data, b.tensor.data):
                        raise _changed(n1, f"the constant tensor {a.name}", a.tensor.data,
                                       b.tensor.data, tw)
            elif n1.op not in _BATCH_AWARE and not _same(a, b):
                if isinstance(a, xp.ndarray) and isinstance(b, xp.ndarray):
                    raise _changed(n1, f"array argument {i}", a, b, tw)
                raise ONNXExportError(
                    f"ONNX export: argument {i} of {n1.op} in {_where(n1)} is {a!r} for the "
                    f"example input but {b!r} for the same input {tw.grown}: it was "
                    f"computed from the input (its shape or its values) outside foveanet's "
                    f"primitives, so the file would hold this one input's value. Compute it with "
                    f"foveanet operations, or, if only the {tw.what} is involved, {tw.hint}")


# ================================================================================== graph building
class _Builder:
    """Turns a traced Graph into an ONNX ModelProto; the converters call its small helpers."""

    def __init__(self, onnx, opset, graph, twins, input_names, output_names):
        self.onnx, self.helper, self.nph = onnx, onnx.helper, onnx.numpy_helper
        self.opset, self.graph = opset, graph
        self.twins = [(t, dict(zip(graph.nodes, t.graph.nodes))) for t in twins]
        self.model = None
        self.nodes, self.initializers = [], []
        self.tensor_names: dict[int, str] = {}      # id(Value) -> ONNX tensor name
        self.taken = set(input_names) | set(output_names)
        self.node_names: set = set()
        self.node: Node | None = None                # the node being converted
        self.out_name = ""
        self.outs: list = []                         # its outputs' names (several: a tuple)
        self.pool_indices: dict = {}                 # id(index array) -> its MaxPool's Indices
        self.read = {id(a) for n in graph.nodes for a in n.inputs} | \
            {id(v) for v in graph.outputs}           # Values something reads
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

    def multi(self, op_type: str, inputs, outs, **attrs) -> list:
        """Emit one ONNX node with several outputs: ``outs`` holds a name, None (a new
        intermediate name) or "" (an optional output left out) for each; trailing empty inputs
        and outputs are dropped. Returns the output names."""
        outs = [self.tmp(f"{op_type}_{k}") if o is None else o for k, o in enumerate(outs)]
        inputs, names = list(inputs), list(outs)
        while inputs and not inputs[-1]:
            inputs.pop()
        while names and not names[-1]:
            names.pop()
        self.nodes.append(self.helper.make_node(op_type, inputs, names,
                                                name=self._node_name(op_type), **attrs))
        return outs

    def is_read(self, v: Value) -> bool:
        """Does a node or a graph output read the traced Value ``v``?"""
        return id(v) in self.read

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

    def twin_nodes(self) -> list:
        """(twin, node) for the current node in each second trace (one per dynamic dimension,
        grown by one); empty when every size is static."""
        return [(t, nodes[self.node]) for t, nodes in self.twins]

    def module_at(self, scope: str):
        """The submodule at path ``scope`` of the exported model (None for the model itself or
        a path it does not have)."""
        if not scope or self.model is None:
            return None
        try:
            return self.model.get_submodule(scope)
        except (AttributeError, KeyError, ValueError):
            return None

    def fail(self, message: str):
        return ONNXExportError(f"ONNX export: {self.node.op} in {_where(self.node)}: {message}")

    # ------------------------------------------------------------------------------------ build
    def build(self, model):
        helper = self.helper
        self.model = model
        for node in self.graph.nodes:
            self.node = node
            names = []
            for v in node.outputs or [node.output]:
                name = self.tensor_names.get(id(v))
                if name is None:
                    name = self.fresh(v.name)
                    self.tensor_names[id(v)] = name
                else:
                    self.taken.add(name)
                names.append(name)
            self.outs, self.out_name = names, names[0]
            _CONVERTERS[node.op](self, node, names[0])
        self.node, self.out_name, self.outs = None, "", []
        for v, name in self.pending_outputs:
            self.nodes.append(helper.make_node("Identity", [self.value(v)], [name],
                                               name=self._node_name("Identity")))
        inputs = [helper.make_tensor_value_info(name, self.onnx_type(v.dtype),
                                                self._dims(k, "inputs"))
                  for k, (v, name) in enumerate(zip(self.graph.inputs, self.input_names))]
        outputs = [helper.make_tensor_value_info(name, self.onnx_type(v.dtype),
                                                 self._dims(k, "outputs"))
                   for k, (v, name) in enumerate(zip(self.graph.outputs, self.output_names))]
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

    def _dims(self, k, which):
        """The sizes of graph input or output ``k``: static where no second trace changed them,
        the symbol ('batch', ...) where exactly one did and the size followed its dimension, and
        unnamed (None) where it changed otherwise (a reshape's batch * seq)."""
        v = getattr(self.graph, which)[k]
        others = [(t, getattr(t.graph, which)[k].shape) for t, _ in self.twins]
        dims = []
        for j, d1 in enumerate(v.shape):
            moved = [(t, shape[j]) for t, shape in others if shape[j] != d1]
            if not moved:
                dims.append(d1)
            elif len(moved) == 1 and (d1, moved[0][1]) == moved[0][0].sizes:
                dims.append(moved[0][0].symbol)
            else:
                dims.append(None)
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
    """Padding is -inf for a max, so extra end padding stands in for ceil_mode exactly. With
    ``return_indices`` (a ``sink`` in the call) the MaxPool's second output, Indices, is kept
    for the MaxUnpool that reads them (see "Max unpooling" in the module docstring)."""
    x, kernel, stride, padding, dilation, out_hw = node.args[:6]
    ends = _end_pads(node, x.shape[-2:], kernel, stride, padding, dilation, out_hw)
    attrs = dict(kernel_shape=list(kernel), strides=list(stride),
                 pads=[padding[0], padding[1]] + ends, dilations=list(dilation))
    sink = node.kwargs.get("sink")
    if not sink:
        _batched(b, node, lambda xn, o: b.op("MaxPool", [xn], o, **attrs), out)
        return
    unbatched = len(x.shape) == 3
    xn = b.op("Unsqueeze", [b.arg(0), b.ints([0])]) if unbatched else b.arg(0)
    y, idx = b.multi("MaxPool", [xn], [None if unbatched else out, None], **attrs)
    if unbatched:
        b.op("Squeeze", [y, b.ints([0])], out)
        idx = b.op("Squeeze", [idx, b.ints([0])])
    b.pool_indices[id(sink[0])] = (idx, tuple(stride), tuple(x.shape[-2:]))


@converts("MaxUnpool2d")
def _max_unpool2d(b, node, out):
    """MaxUnpool on the Indices of the MaxPool that produced them (``_check_unpool_indices``
    made sure there is one). ONNX's indices are flat over the pooled input (N, C, H_in, W_in);
    MaxUnpool reads them as flat over its output (N, C, OH, OW), so where OH OW differs from
    H_in W_in each plane's block moves by (OH OW - H_in W_in) per plane. The kernel and end
    pads make ONNX's inferred output size, (h - 1) stride + kernel - pads, equal to the
    engine's (OH, OW), with no output_shape input (see the module docstring)."""
    x, _, out_hw = node.args
    idx, stride, in_hw = b.pool_indices[id(node.args[1])]
    h_w = x.shape[-2:]
    plane_in, plane_out = in_hw[0] * in_hw[1], out_hw[0] * out_hw[1]
    if plane_in != plane_out:
        blocks = b.op("Div", [idx, b.const(plane_in, xp.int64)])
        idx = b.op("Add", [idx, b.op("Mul", [blocks, b.const(plane_out - plane_in, xp.int64)])])
    kernels, ends = [], []
    for n_, s, o in zip(h_w, stride, out_hw):
        k = max(1, o - (n_ - 1) * s)
        kernels.append(k)
        ends.append((n_ - 1) * s + k - o)
    unbatched = len(x.shape) == 3
    xn = b.op("Unsqueeze", [b.arg(0), b.ints([0])]) if unbatched else b.arg(0)
    if unbatched:
        idx = b.op("Unsqueeze", [idx, b.ints([0])])
    y = b.op("MaxUnpool", [xn, idx], None if unbatched else out, kernel_shape=kernels,
             strides=list(stride), pads=[0, 0] + ends)
    if unbatched:
        b.op("Squeeze", [y, b.ints([0])], out)


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
    twins = b.twin_nodes()
    moved = set()
    for tw, twin in twins:
        shape2 = list(twin.args[1])
        if len(shape) != len(shape2):  # pragma: no cover - the same op gives the same rank
            raise b.fail(f"the target shape {tuple(shape)} has another rank at the next "
                         f"{tw.what} ({tuple(shape2)}); {tw.hint}")
        moved |= {i for i, (s1, s2) in enumerate(zip(shape, shape2)) if s1 != s2}

    def copies(i):  # the entry is the input's own size there, in every trace: ONNX's 0
        return i < len(x.shape) and x.shape[i] == shape[i] and \
            all(t.args[0].shape[i] == t.args[1][i] for _, t in twins)
    inferred = sorted(i for i in moved if not copies(i))
    if len(inferred) > 1:
        one = twins[0][0] if len(twins) == 1 else None
        what, hint = (one.what, one.hint) if one else ("dynamic sizes",
                                                       "make fewer dimensions dynamic")
        raise b.fail(f"the target shape {tuple(shape)} changes with the {what} in more than "
                     f"one place that is not the input's own size there (entries {inferred}); "
                     f"only one can be inferred (-1): reshape so that only one dimension "
                     f"depends on it, or {hint}")
    for i in moved:
        shape[i] = -1 if i in inferred else 0
    b.op("Reshape", [b.arg(0), b.ints(shape)], out)


@converts("Expand")
def _expand(b, node, out):
    """ONNX Expand broadcasts both ways, so a 1 keeps the input's own size: every dimension the
    input already has at full size (the batch among them) is written as 1."""
    x, shape = node.args[0], list(node.args[1])
    lead = len(shape) - len(x.shape)
    target = [1 if i >= lead and x.shape[i - lead] == s else s for i, s in enumerate(shape)]
    for tw, twin in b.twin_nodes():
        x2, shape2 = twin.args[0], list(twin.args[1])
        target2 = [1 if i >= lead and x2.shape[i - lead] == s else s for i, s in enumerate(shape2)]
        if target != target2:
            raise b.fail(f"the expanded shape {tuple(shape)} changes with the {tw.what} along a "
                         f"dimension the input does not have; {tw.hint}")
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



# -------------------------------------------------------------------------------- recurrent layers
# ONNX's gate order differs from PyTorch's (the engine's): LSTM i, o, f, c against i, f, g, o;
# GRU z, r, h against r, z, n. ONNX block j is PyTorch block _ONNX_GATES[mode][j].
_ONNX_GATES = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2)}
_ONNX_RNN = {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}
_OP_MODES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU"}


def _onnx_weights(b, mode, hidden, directions):
    """ONNX's W (D, G H, in), R (D, G H, H) and B (D, 2 G H) (None without biases) from each
    direction's PyTorch (w_ih, w_hh, b_ih, b_hh) ONNX names: a Gather with the gate permutation
    (a (1, G H) index, so it adds the direction axis too; an Unsqueeze for the RNN, which has
    one gate), then a Concat of the directions. The parameters stay the initializers, under
    their state_dict names."""
    order = _ONNX_GATES.get(mode)
    index = None
    if order is not None:
        perm = xp.concatenate([xp.arange(hidden, dtype=xp.int64) + k * hidden for k in order])
        index = b.const(perm.reshape(1, -1), hint="gate_order")

    def lift(name):  # (G H, ...) -> (1, G H, ...) in ONNX's gate order
        if index is None:
            return b.op("Unsqueeze", [name, b.ints([0])])
        return b.op("Gather", [name, index], axis=0)

    def stack(parts, axis=0):
        return parts[0] if len(parts) == 1 else b.op("Concat", parts, axis=axis)

    def lift_bias(name, dtype):  # a missing b_hh (a GRU step given b_ih alone) is zeros
        if name is not None:
            return lift(name)
        return b.const(xp.zeros((1, len(order or (0,)) * hidden)), dtype, hint="zero_bias")

    w = stack([lift(d[0]) for d in directions])
    r = stack([lift(d[1]) for d in directions])
    bias = None
    if directions[0][2] is not None:
        dt = b.node.output.dtype
        bias = stack([b.op("Concat", [lift(d[2]), lift_bias(d[3], dt)], axis=1)
                      for d in directions])
    return w, r, bias


def _emit_recurrent(b, mode, hidden, directions, x, h0, c0, outs, reverse=False):
    """One ONNX RNN / GRU / LSTM node over ``x`` (T, B, in) (layout 0); ``h0``/``c0`` (D, B, H)
    names or None (zeros); ``outs``: names for Y, Y_h (and Y_c), None for a new one, "" to leave
    it out. GRU gets linear_before_reset=1, PyTorch's (and the engine's) candidate state."""
    w, r, bias = _onnx_weights(b, mode, hidden, directions)
    attrs = {"hidden_size": int(hidden)}
    if len(directions) == 2:
        attrs["direction"] = "bidirectional"
    elif reverse:
        attrs["direction"] = "reverse"
    if mode == "GRU":
        attrs["linear_before_reset"] = 1
    if mode == "RNN_RELU":
        attrs["activations"] = ["Relu"] * len(directions)
    inputs = [x, w, r, bias or "", "", h0 or ""]
    if mode == "LSTM":
        inputs.append(c0 or "")
    return b.multi(_ONNX_RNN[mode], inputs, outs, **attrs)


def _no_projection(b, what):
    raise b.fail(f"{what}: ONNX's LSTM has no projection (proj_size, weight_hr), so a projected "
                 f"LSTM cannot be exported; use proj_size=0")


@converts("RecurrentLayer")
def _recurrent_layer(b, node, out):
    """A whole ``nn.RNN`` / ``LSTM`` / ``GRU``: one ONNX operator per layer (both directions
    in it: direction="bidirectional"), chained. Per layer, Y (T, D, B, H) becomes the next
    input (T, B, D H) by a Squeeze (one direction) or Transpose + Reshape [0, 0, -1] (two);
    the initial states are Slices of h0/c0 (omitted: zeros); h_n/c_n are the layers' Y_h/Y_c
    concatenated. batch_first transposes in and out; an unbatched (T, in) input gets a batch
    axis of one. Nothing depends on the sizes, so batch and sequence length stay dynamic."""
    m = node.kwargs["module"]
    name = type(m).__name__
    if m.proj_size:
        _no_projection(b, f"{name} with proj_size={m.proj_size}")
    mode, lstm = m.mode, m.mode == "LSTM"
    layers, dirs, hidden = m.num_layers, m.num_directions, m.hidden_size
    x_val, h_val, c_val = node.args[:3]
    params = {n: v for n, v in zip(m._flat_weights_names, node.args[3:])}
    unbatched = x_val.tensor.ndim == 2
    x = b.arg(0)
    states = [None if v is None else b.value(v) for v in (h_val, c_val)]
    if unbatched:
        x = b.op("Unsqueeze", [x, b.ints([1])])
        states = [None if s is None else b.op("Unsqueeze", [s, b.ints([1])]) for s in states]
    elif m.batch_first:
        x = b.op("Transpose", [x], perm=[1, 0, 2])
    y_out, h_out = b.outs[0], b.outs[1]
    c_out = b.outs[2] if lstm else None
    want = [b.is_read(v) for v in node.outputs]
    direct = layers == 1 and not unbatched  # the one layer's Y_h / Y_c are h_n / c_n
    finals = {1: [], 2: []}
    for layer in range(layers):
        directions = []
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            directions.append(tuple(b.value(params[p + sfx]) if p + sfx in params else None
                                    for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
        inits = [s if s is None or layers == 1 else
                 b.op("Slice", [s, b.ints([layer * dirs]), b.ints([(layer + 1) * dirs]),
                                b.ints([0])]) for s in states]
        outs = [None]
        for k in (1, 2) if lstm else (1,):
            outs.append((h_out if k == 1 else c_out) if direct else "" if not want[k] else None)
        y, *hc = _emit_recurrent(b, mode, hidden, directions, x, inits[0], inits[1], outs)
        for k, name_k in zip((1, 2), hc):
            finals[k].append(name_k)
        last = layer == layers - 1 and not unbatched and not m.batch_first
        target = y_out if last else None
        if dirs == 1:
            x = b.op("Squeeze", [y, b.ints([1])], target)
        else:
            y = b.op("Transpose", [y], perm=[0, 2, 1, 3])
            x = b.op("Reshape", [y, b.ints([0, 0, -1])], target)
    if unbatched:
        b.op("Squeeze", [x, b.ints([1])], y_out)
    elif m.batch_first:
        b.op("Transpose", [x], y_out, perm=[1, 0, 2])
    for k, target in ((1, h_out), (2, c_out)):
        if k == 2 and not lstm or direct or not want[k]:
            continue
        state = finals[k][0] if layers == 1 else b.op("Concat", finals[k],
                                                       None if unbatched else target, axis=0)
        if unbatched:
            b.op("Squeeze", [state, b.ints([1])], target)


@converts("Recurrence")
def _recurrence(b, node, out):
    """The engine's one-layer, one-direction primitive, where it runs outside an ``nn.RNN`` /
    ``LSTM`` / ``GRU`` module's own forward (the cells, ``ops.rnn.recurrence``, a subclass's
    forward): one ONNX operator over a padded batch of a fixed number of steps, rows (T B, in)
    in, rows (T B, H) and the final states out. Initial states given as arrays must be zeros
    (ONNX's default); packed batches (steps of different sizes) are refused."""
    x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr = node.args
    kw = node.kwargs
    mode = _OP_MODES[kw["mode"]]
    if w_hr is not None:
        _no_projection(b, "a projected LSTM step (w_hr)")
    sizes = xp.asarray(kw["sizes"])
    steps, batch = len(sizes), int(sizes[0])
    if (sizes != batch).any():
        raise b.fail(f"a packed batch (steps of {sorted(set(sizes.tolist()), reverse=True)} "
                     f"rows): packed sequences are not exported; export a padded batch")
    for tw, twin in b.twin_nodes():
        if len(twin.kwargs["sizes"]) != steps:
            raise b.fail(f"the number of time steps changes with the {tw.what} ({steps}, then "
                         f"{len(twin.kwargs['sizes'])}): this primitive is exported with a fixed "
                         f"number of steps; an nn.RNN / LSTM / GRU module exports a dynamic "
                         f"sequence length")
    states = []
    for k, s in ((5, h0), (6, c0)):
        plain = [n.args[k] for n in [node] + [t for _, t in b.twin_nodes()]
                 if n.args[k] is not None and not isinstance(n.args[k], Value)]
        if any(xp.any(xp.asarray(a) != 0) for a in plain):
            raise b.fail("an initial state given as a plain array that is not zero cannot be "
                         "exported; pass it as a Tensor computed from the inputs")
        if s is None or not isinstance(s, Value):
            states.append(None)  # zeros: ONNX's default
        else:
            states.append(b.op("Unsqueeze", [b.arg(k), b.ints([0])]))
    hidden = w_hh.shape[1]
    xs = b.op("Unsqueeze", [b.arg(0), b.ints([0])]) if steps == 1 else \
        b.op("Reshape", [b.arg(0), b.ints([steps, -1, x.shape[1]])])
    direction = [tuple(None if v is None else b.value(v) for v in (w_ih, w_hh, b_ih, b_hh))]
    want = [b.is_read(v) for v in node.outputs]
    lstm = mode == "LSTM"
    outs = [None] + [None if want[k] else "" for k in ((1, 2) if lstm else (1,))]
    y, *hc = _emit_recurrent(b, mode, hidden, direction, xs, states[0], states[1], outs,
                             reverse=bool(kw.get("reverse", False)))
    b.op("Reshape", [y, b.ints([-1, hidden])], b.outs[0])
    for k, name_k in zip((1, 2), hc):
        if want[k]:
            b.op("Squeeze", [name_k, b.ints([0])], b.outs[k])


# ------------------------------------------------------------------------ embedding, layer norm
@converts("Embedding")
def _embedding(b, node, out):
    """weight[indices] along axis 0: Gather. ``max_norm`` rescales the looked-up rows of the
    weight in place at every call, which a file with fixed weights cannot do: refused."""
    from ..nn.layers.embedding import Embedding as EmbeddingLayer
    m = b.module_at(node.scope)
    if isinstance(m, EmbeddingLayer) and m.max_norm is not None:
        raise b.fail(f"max_norm={m.max_norm} renormalises the looked-up rows of the weight in "
                     f"place at every call, which ONNX's Gather cannot do; renormalise the weight "
                     f"once and set max_norm=None before exporting")
    b.op("Gather", [b.arg(1), b.arg(0)], out, axis=0)


@converts("LayerNorm")
def _layer_norm(b, node, out):
    """LayerNormalization (opset 17 and newer; a missing weight is ones), else its parts:
    d = x - mean(x), d / sqrt(mean(d^2) + eps), times the weight, plus the bias."""
    x, weight, bias, ndim, eps = node.args
    dt = x.dtype
    if b.opset >= 17:
        scale = b.arg(1) if weight is not None else \
            b.const(xp.ones(x.shape[len(x.shape) - ndim:]), dt)
        b.op("LayerNormalization", [b.arg(0), scale] + ([b.arg(2)] if bias is not None else []),
             out, axis=-int(ndim), epsilon=float(eps))
        return
    axes = list(range(-int(ndim), 0))
    xn = b.arg(0)
    d = b.op("Sub", [xn, b.reduce("ReduceMean", xn, axes, True)])
    var = b.reduce("ReduceMean", b.op("Mul", [d, d]), axes, True)
    rest = [v for v in (weight, bias) if v is not None]
    y = b.op("Div", [d, b.op("Sqrt", [b.op("Add", [var, b.const(eps, dt)])])],
             None if rest else out)
    if weight is not None:
        y = b.op("Mul", [y, b.arg(1)], None if bias is not None else out)
    if bias is not None:
        b.op("Add", [y, b.arg(2)], out)
