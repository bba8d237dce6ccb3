"""Read an ONNX file into a trainable foveanet Module: ``fv.onnx.load(path)``.

What ``load`` returns is an :class:`OnnxModule`, whose ``forward`` interprets the graph node by
node with foveanet's differentiable ops (:mod:`foveanet.interop.onnx_ops`), so an imported network
is trained, fine-tuned or frozen like any other Module:

- floating-point initializers are ``Parameter``s, named by their ONNX names
  (``named_parameters()``, ``state_dict()`` and ``load_state_dict()`` use ``conv1.weight``,
  ``onnx::Conv_23``, ... exactly as the file spells them);
- the running mean and variance that feed BatchNormalization are buffers, updated in train mode
  as fv's batch norm updates its own;
- integer initializers and Constant nodes (shapes, axes, indices) are plain data, and floating
  initializers used only as settings (Resize scales, Clip bounds, ...) are too;
- ``replace_head(num_classes)`` swaps the final classifier for a fresh one (transfer learning), and
  ``save(path)`` writes the graph back with the current weights.

Why an interpreter rather than a translation into fv layers: ONNX graphs are arbitrary dataflow
(shape arithmetic on int64 tensors, Concat of computed shapes, Reshape with a dynamic batch), which
a fixed set of layers cannot express; interpreting every node on every call keeps that exact.

A file is untrusted input. Everything is validated before memory is committed: the file size, the
protobuf, every tensor's declared size against the data it really holds (``raw_data`` shorter than
its dims claim, absurd or negative dims), external data (only files inside the model's folder: no
absolute paths, no ``..``, no symbolic link out of it; offsets and lengths checked against the file
size), the graph (operators, opset, domains, every value produced once and before it is read, no
cycles, text that is text), the declared graph inputs (a known type, a size within the limit), and
every node against its operator's ONNX schema (the number of inputs and outputs, required inputs
and attributes present, attributes of the right type) and the settings the operator can judge
alone (strides, kernel sizes and dilations of at least 1, pads of at least 0, 0/1 flags, ...).
Each problem is an :class:`OnnxLoadError` naming the file and the tensor, node or value at fault.
Nothing is ever unpickled, and ``onnx.load``'s own external-data loader is not used.

What only the input shapes can refute (an axis out of range, a kernel larger than the padded input,
a size computed from data, a padded size over the memory limit) is checked when the node first
runs, and raises an :class:`OnnxNodeError`, an OnnxLoadError too, naming the node and its operator:
"load" ends with the first forward on an input of the declared shape, which either runs or raises
one of these, and allocates nothing that the limit forbids.
"""
from __future__ import annotations

import copy
import math
import os
from collections import OrderedDict, deque

import onnx
from onnx import TensorProto

from ..autograd import Tensor, no_grad
from ..backend import xp
from ..nn import init
from ..nn.module import Module
from ..nn.parameter import Parameter
from .onnx_ops import (BUFFER_INPUTS, OPS, STATIC_INPUTS, NodeInfo, check_node, onnx_dtype,
                       value_dtype)

__all__ = ["load", "OnnxModule", "OnnxLoadError", "OnnxFileNotFoundError", "OnnxNodeError",
           "MIN_OPSET", "MAX_OPSET", "DEFAULT_MAX_TENSOR_BYTES", "supported_ops"]

MIN_OPSET = 6                                  # old PyTorch exports (legacy broadcast) and newer
MAX_OPSET = onnx.defs.onnx_opset_version()     # what the installed onnx package knows
DEFAULT_MAX_TENSOR_BYTES = 2 << 30             # one tensor (initializer or computed): 2 GiB
MAX_FILE_BYTES = 2 << 30                       # protobuf's own limit for one message


class OnnxLoadError(ValueError):
    """The file is not a model foveanet can load: broken, hostile or unsupported. The message names
    the file and the tensor, node or value at fault."""


class OnnxFileNotFoundError(OnnxLoadError, FileNotFoundError):
    """The path does not exist (both an OnnxLoadError and a FileNotFoundError)."""


class OnnxNodeError(OnnxLoadError):
    """A node of a loaded model cannot run on the values that reach it: a setting only the input
    shapes refute (an axis out of range, a kernel larger than the padded input), a size computed
    from data over the memory limit, a Reshape target that does not fit, or inputs that do not fit
    the graph. Raised by ``OnnxModule.forward``; the message names the node and its operator.

    It is an OnnxLoadError because what fails is the file: many settings can only be judged
    against the shapes of a first forward, which is where loading an interpreted graph ends."""


def supported_ops() -> list:
    """The ONNX operators (default domain) that ``load`` can import, sorted."""
    return sorted(OPS)


# ======================================================================================== reading
def load(source, *, base_dir=None,
         max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> "OnnxModule":
    """Load an ONNX model as a trainable :class:`OnnxModule`.

    ``source``: a path, the file's bytes, or an ``onnx.ModelProto``. ``base_dir``: where tensors
    stored as external data live (default: the model file's folder; needed for bytes or a
    ModelProto that use external data). ``max_tensor_bytes``: the largest tensor accepted, at load
    and when the graph computes one from data (ConstantOfShape, Expand, ...).

    The module starts in eval mode (as the exported network was); call ``.train()`` to fine-tune.
    Raises :class:`OnnxLoadError` (a ValueError) for anything it cannot load, with the reason."""
    model, base_dir, label = _read(source, base_dir)
    return OnnxModule(model, base_dir=base_dir, source=label, max_tensor_bytes=max_tensor_bytes)


def _read(source, base_dir):
    if isinstance(source, onnx.ModelProto):
        _check_is_model(source, "<ModelProto>")
        return source, base_dir, "<ModelProto>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _parse(bytes(source), "<bytes>"), base_dir, "<bytes>"
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"load() expects a path, bytes or an onnx.ModelProto, got "
                        f"{type(source).__name__}")
    path = os.fspath(source)
    if not os.path.exists(path):
        raise OnnxFileNotFoundError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise OnnxLoadError(f"{path}: not a regular file")
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise OnnxLoadError(f"{path}: {size} bytes, more than one protobuf message can hold "
                            f"({MAX_FILE_BYTES}); large weights belong in external data files")
    with open(path, "rb") as f:
        data = f.read()
    if base_dir is None:
        base_dir = os.path.dirname(os.path.abspath(path))
    return _parse(data, path), base_dir, path


def _parse(data: bytes, label: str) -> onnx.ModelProto:
    if not data:
        raise OnnxLoadError(f"{label}: the file is empty, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:  # google.protobuf.message.DecodeError and friends
        raise OnnxLoadError(f"{label}: not a valid ONNX file (the protobuf cannot be decoded: "
                            f"{e}); is it truncated or some other kind of file?") from None
    _check_is_model(model, label)
    return model


def _check_is_model(model, label):
    if model.ir_version <= 0 or not model.HasField("graph") or not model.opset_import:
        raise OnnxLoadError(f"{label}: not an ONNX model (no ir_version, graph or opset_import: "
                            "truncated, or some other protobuf or file)")
    _check_text(model, label)


def _is_repeated(fd):
    repeated = getattr(fd, "is_repeated", None)  # newer protobuf; older ones have only .label
    return fd.label == fd.LABEL_REPEATED if repeated is None else repeated


def _check_text(model, label):
    """Every string field must be text: protobuf's upb parser returns a string field that is not
    valid UTF-8 as bytes instead of refusing the file, and names, operator types and external
    data locations are then compared, sorted and joined as str."""
    todo = [model]
    while todo:  # iterative: subgraphs nest to any depth
        msg = todo.pop()
        for fd, value in msg.ListFields():
            if fd.type not in (fd.TYPE_MESSAGE, fd.TYPE_STRING):
                continue
            values = value if _is_repeated(fd) else [value]
            if fd.type == fd.TYPE_MESSAGE:
                todo.extend(values)
                continue
            for v in values:
                if not isinstance(v, str):
                    raise OnnxLoadError(f"{label}: the {fd.full_name} field {bytes(v)[:40]!r} is "
                                        "not valid UTF-8 text: a damaged file")


# ======================================================================================== tensors
_FIELD_OF = {TensorProto.FLOAT: "float_data", TensorProto.DOUBLE: "double_data",
             TensorProto.INT64: "int64_data", TensorProto.UINT32: "uint64_data",
             TensorProto.UINT64: "uint64_data", TensorProto.INT32: "int32_data",
             TensorProto.INT16: "int32_data", TensorProto.INT8: "int32_data",
             TensorProto.UINT16: "int32_data", TensorProto.UINT8: "int32_data",
             TensorProto.BOOL: "int32_data", TensorProto.FLOAT16: "int32_data"}


class _Loader:
    """Turns TensorProtos into arrays, checking every size before allocating anything."""

    def __init__(self, label, base_dir, max_bytes):
        self.label, self.base_dir, self.max_bytes = label, base_dir, max_bytes

    def fail(self, what, msg):
        raise OnnxLoadError(f"{self.label}: {what}: {msg}")

    def array(self, t: TensorProto, what: str):
        what = f"{what} {t.name!r}" if t.name else what
        try:
            dtype = onnx_dtype(t.data_type)
        except ValueError as e:
            self.fail(what, str(e))
        dims = [int(d) for d in t.dims]
        if any(d < 0 for d in dims):
            self.fail(what, f"negative dimension in its shape {dims}")
        count = math.prod(dims)  # Python ints: no overflow however absurd the dims
        nbytes = count * dtype.itemsize
        if nbytes > self.max_bytes:
            self.fail(what, f"its shape {dims} declares {nbytes} bytes, more than the limit of "
                            f"{self.max_bytes} (load(..., max_tensor_bytes=...) raises it)")
        if t.HasField("segment"):
            self.fail(what, "segmented tensors are not supported")
        if t.data_location == TensorProto.EXTERNAL:
            raw = self._external(t, what, nbytes)
        elif t.HasField("raw_data") or t.raw_data:
            raw = t.raw_data
            if len(raw) != nbytes:
                self.fail(what, f"its shape {dims} ({dtype}) needs {nbytes} bytes of raw_data but "
                                f"the file holds {len(raw)}")
        else:
            return self._typed(t, what, dims, count, dtype)
        return xp.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(dims)

    def _typed(self, t, what, dims, count, dtype):
        field = _FIELD_OF[t.data_type]
        values = getattr(t, field)
        if len(values) != count:
            self.fail(what, f"its shape {dims} declares {count} values but it holds {len(values)}")
        if t.data_type == TensorProto.FLOAT16:  # the half's 16 bits, stored in int32_data
            arr = xp.asarray(values, dtype=xp.uint16).view(xp.float16)
        else:
            arr = xp.asarray(values).astype(dtype)
        return arr.reshape(dims)

    def _external(self, t, what, nbytes):
        """Read external data, refusing anything outside the model's folder."""
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        if self.base_dir is None:
            self.fail(what, f"its data is in an external file {loc!r}, but the model was not read "
                            "from a path: pass base_dir= to load()")
        parts = loc.replace("\\", "/").split("/")
        if not loc or os.path.isabs(loc) or loc.startswith(("/", "\\")) or ".." in parts or \
                (len(loc) > 1 and loc[1] == ":"):
            self.fail(what, f"external data location {loc!r} points outside the model's folder "
                            "(absolute paths and '..' are refused)")
        base = os.path.realpath(self.base_dir)
        path = os.path.realpath(os.path.join(base, loc))
        if os.path.commonpath([base, path]) != base:
            self.fail(what, f"external data location {loc!r} resolves to {path}, outside the "
                            f"model's folder {base} (a symbolic link?)")
        if not os.path.isfile(path):
            self.fail(what, f"external data file {path} does not exist")
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else None
        except ValueError:
            self.fail(what, f"external data offset/length {info.get('offset')!r}/"
                            f"{info.get('length')!r} are not integers")
        size = os.path.getsize(path)
        if offset < 0 or (length is not None and length < 0):
            self.fail(what, f"negative external data offset {offset} or length {length}")
        if length is not None and length != nbytes:
            self.fail(what, f"external data length {length} does not match the {nbytes} bytes its "
                            "shape declares")
        if offset + nbytes > size:
            self.fail(what, f"external data needs {nbytes} bytes at offset {offset} but {path} has "
                            f"only {size} bytes")
        with open(path, "rb") as f:
            f.seek(offset)
            raw = f.read(nbytes)
        if len(raw) != nbytes:
            self.fail(what, f"could read only {len(raw)} of {nbytes} bytes from {path}")
        return raw


def _attributes(node, loader, what):
    """A node's attributes as Python values (floats, ints, str, lists, arrays)."""
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = loader.array(a.t, f"{what}: attribute {a.name!r}")
        elif a.type == onnx.AttributeProto.TENSORS:
            out[a.name] = [loader.array(t, f"{what}: attribute {a.name!r}") for t in a.tensors]
        elif a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            out[a.name] = None  # subgraphs: only control-flow operators have them (unsupported)
        elif a.type == onnx.AttributeProto.SPARSE_TENSOR:
            loader.fail(what, f"sparse tensor attribute {a.name!r} is not supported")
        elif a.type == onnx.AttributeProto.UNDEFINED:  # onnx would read it as None: "absent"
            loader.fail(what, f"attribute {a.name!r} has no type (UNDEFINED)")
        else:
            try:
                v = onnx.helper.get_attribute_value(a)
            except ValueError:  # a type this onnx version does not know
                loader.fail(what, f"attribute {a.name!r} has an unknown type ({a.type})")
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [s.decode("utf-8", "replace") for s in v]
            out[a.name] = v
    return out


def _constant_value(attrs, loader, what):
    """The value of a Constant node (value, value_float(s), value_int(s))."""
    if "value" in attrs:
        return attrs["value"]
    if "value_float" in attrs:
        return xp.asarray(attrs["value_float"], dtype=xp.float32)
    if "value_floats" in attrs:
        return xp.asarray(attrs["value_floats"], dtype=xp.float32)
    if "value_int" in attrs:
        return xp.asarray(attrs["value_int"], dtype=xp.int64)
    if "value_ints" in attrs:
        return xp.asarray(attrs["value_ints"], dtype=xp.int64)
    loader.fail(what, f"Constant without a supported value attribute (has {sorted(attrs)})")


# ====================================================================================== schemas
_SINGLE = onnx.defs.OpSchema.FormalParameterOption.Single
_ATTR_TYPE = onnx.AttributeProto.AttributeType.Name


def _schema(op_type, opset):
    """The operator's ONNX schema at the model's opset; for an operator newer than that opset
    (which foveanet tolerates) the newest schema."""
    try:
        return onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return onnx.defs.get_schema(op_type, MAX_OPSET, "")


def _count_str(lo, hi):
    return str(lo) if lo == hi else f"{lo} or more" if hi >= 1 << 30 else f"{lo} to {hi}"


def _schema_problems(n, opset) -> list:
    """What the operator's ONNX schema refutes in node ``n``, one sentence each: the number of
    inputs and outputs, a required input left empty, an attribute of the wrong type (a list where
    one int belongs), a required attribute missing. The operator functions can then take their
    inputs and attributes as the specification types them."""
    schema = _schema(n.op_type, opset)
    problems = []
    inputs = list(n.input)
    while inputs and not inputs[-1]:
        inputs.pop()
    if not schema.min_input <= len(inputs) <= schema.max_input:
        problems.append(f"{len(inputs)} inputs, but {n.op_type} takes "
                        f"{_count_str(schema.min_input, schema.max_input)}")
    formal = list(schema.inputs)
    for i, name in enumerate(inputs):
        if not name and i < len(formal) and formal[i].option == _SINGLE:
            problems.append(f"input {i} ({formal[i].name}) is required but empty")
    if not schema.min_output <= len(n.output) <= schema.max_output:
        problems.append(f"{len(n.output)} outputs, but {n.op_type} has "
                        f"{_count_str(schema.min_output, schema.max_output)}")
    present = set()
    for a in n.attribute:
        present.add(a.name)
        spec = schema.attributes.get(a.name)
        if spec is not None and a.type != int(spec.type):
            problems.append(f"attribute {a.name!r} is of type {_ATTR_TYPE(a.type)}, but "
                            f"{n.op_type} takes {_ATTR_TYPE(int(spec.type))}")
    for name, spec in schema.attributes.items():
        if spec.required and name not in present:
            problems.append(f"the required attribute {name!r} is missing")
    return problems


# ========================================================================================= graph
def _node_label(node, i):
    return node.name or f"#{i} ({node.op_type})"


def _analyse(model, label):
    """Opset, the nodes in execution order, and a complete list of what cannot be imported."""
    g = model.graph
    opset = None
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = int(imp.version)
    if opset is None:
        raise OnnxLoadError(f"{label}: the model imports no version of the default ONNX operator "
                            "set (opset_import has no '' / 'ai.onnx' domain)")
    if opset < MIN_OPSET or opset > MAX_OPSET:
        raise OnnxLoadError(f"{label}: opset {opset} is not supported (foveanet imports opsets "
                            f"{MIN_OPSET} to {MAX_OPSET})")
    unsupported, bad_domains = {}, {}
    for i, n in enumerate(g.node):
        if n.domain not in ("", "ai.onnx"):
            bad_domains.setdefault(f"{n.domain}:{n.op_type}", []).append(_node_label(n, i))
        elif n.op_type not in OPS:
            unsupported.setdefault(n.op_type, []).append(_node_label(n, i))
    if unsupported or bad_domains:
        parts = []
        if unsupported:
            parts.append(f"unsupported operators (opset {opset}): " + ", ".join(
                f"{op} (node{'s' if len(v) > 1 else ''} {', '.join(repr(x) for x in v[:3])}"
                f"{', ...' if len(v) > 3 else ''})" for op, v in sorted(unsupported.items())))
        if bad_domains:
            parts.append("operators from other domains (foveanet implements only the default "
                         "'ai.onnx' domain): " + ", ".join(
                             f"{op} ({', '.join(repr(x) for x in v[:3])})"
                             for op, v in sorted(bad_domains.items())))
        raise OnnxLoadError(f"{label}: " + "; ".join(parts))

    # every value produced once, before it is read; nodes in a topological order
    init_names = [t.name for t in g.initializer]
    dup = {n for n in init_names if init_names.count(n) > 1}
    if dup:
        raise OnnxLoadError(f"{label}: initializer name(s) {sorted(dup)} appear more than once")
    available = set(init_names) | {v.name for v in g.input}
    producer = {}
    for i, n in enumerate(g.node):
        for o in n.output:
            if not o:
                continue
            if o in producer:
                raise OnnxLoadError(f"{label}: value {o!r} is produced by two nodes, "
                                    f"{_node_label(g.node[producer[o]], producer[o])} and "
                                    f"{_node_label(n, i)}")
            if o in available:
                raise OnnxLoadError(f"{label}: node {_node_label(n, i)} overwrites {o!r}, which is "
                                    "a graph input or initializer")
            producer[o] = i
    deps = []
    for i, n in enumerate(g.node):
        d = set()
        for name in n.input:
            if not name or name in available:
                continue
            if name not in producer:
                raise OnnxLoadError(f"{label}: node {_node_label(n, i)} reads {name!r}, which no "
                                    "node, initializer or graph input provides")
            d.add(producer[name])
        deps.append(d)
    users = [[] for _ in g.node]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    remaining = [len(d) for d in deps]
    ready = deque(i for i, r in enumerate(remaining) if r == 0)
    order = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for u in users[i]:
            remaining[u] -= 1
            if remaining[u] == 0:
                ready.append(u)
    if len(order) != len(g.node):
        stuck = [_node_label(g.node[i], i) for i in range(len(g.node)) if remaining[i] > 0]
        names = ", ".join(map(repr, stuck[:8])) + (" ..." if len(stuck) > 8 else "")
        raise OnnxLoadError(f"{label}: the graph has a cycle: nodes {names} each wait for one "
                            "another")
    for o in g.output:
        if o.name not in producer and o.name not in available:
            raise OnnxLoadError(f"{label}: graph output {o.name!r} is computed by no node")
    for v in list(g.input) + list(g.output):
        for d in v.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value < 0:
                raise OnnxLoadError(f"{label}: {v.name!r} declares a negative dimension "
                                    f"{d.dim_value}")
    return opset, order


def _check_graph_inputs(g, label, max_bytes):
    """The graph's inputs (those without an initializer) must be tensors of a type onnx knows, of a
    declared size within the tensor limit: an input nobody could pass is a broken file."""
    init_names = {t.name for t in g.initializer}
    for v in g.input:
        if v.name in init_names:
            continue
        t = v.type.tensor_type
        dtype = xp.dtype(xp.float32)
        if t.elem_type:
            try:
                dtype = value_dtype(t.elem_type)
            except ValueError as e:
                raise OnnxLoadError(f"{label}: graph input {v.name!r}: {e}") from None
        dims = [d.dim_value for d in t.shape.dim if d.HasField("dim_value")]
        nbytes = math.prod(dims) * dtype.itemsize
        if nbytes > max_bytes:
            raise OnnxLoadError(f"{label}: graph input {v.name!r} declares the shape "
                                f"{_shape_str(t.shape)}, {nbytes} bytes or more, over the limit of "
                                f"{max_bytes} (load(..., max_tensor_bytes=...) raises it)")


class _Step:
    __slots__ = ("fn", "info", "inputs", "outputs", "free")

    def __init__(self, fn, info, inputs, outputs):
        self.fn, self.info, self.inputs, self.outputs, self.free = fn, info, inputs, outputs, ()


# ===================================================================================== the module
class OnnxModule(Module):
    """An ONNX graph as a foveanet Module (see the module docstring). Built by :func:`load`.

    ``forward(*inputs, **named_inputs)`` takes the graph's inputs (those without an initializer) in
    order or by name, as fv Tensors or arrays, and returns a Tensor, or a tuple when the graph has
    several outputs. Attributes: ``input_names``, ``output_names``, ``opset``, ``source``."""

    def __init__(self, model: onnx.ModelProto, *, base_dir=None, source="<model>",
                 max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES):
        super().__init__()
        _check_is_model(model, source)
        self.source = source
        self.max_tensor_bytes = int(max_tensor_bytes)
        g = model.graph
        self.opset, order = _analyse(model, source)
        _check_graph_inputs(g, source, self.max_tensor_bytes)
        loader = _Loader(source, base_dir, self.max_tensor_bytes)

        # nodes: attributes parsed (tensor attributes validated), load-time checks run
        problems, infos = [], {}
        for i in order:
            n = g.node[i]
            what = f"node {_node_label(n, i)}"
            attrs = _attributes(n, loader, what)
            info = NodeInfo(name=n.name or f"{n.op_type}_{i}", op_type=n.op_type, attrs=attrs,
                            inputs=list(n.input), outputs=list(n.output), opset=self.opset,
                            module=self)
            found = _schema_problems(n, self.opset)
            if not found:  # the operators' checks read attributes of the types they expect
                msg = check_node(info)
                found = [msg] if msg else []
            problems += [f"{what} ({n.op_type}): {msg}" for msg in found]
            infos[i] = info
        if problems:
            raise OnnxLoadError(f"{source}: invalid or unsupported settings: " +
                                "; ".join(problems))

        # initializers: how each one is used decides what it becomes
        arrays = OrderedDict((t.name, loader.array(t, "initializer")) for t in g.initializer)
        kinds = self._classify(g, arrays)
        consts = {}
        for name, arr in arrays.items():
            kind = kinds.get(name, "const")
            if kind == "param":
                self._parameters[name] = Parameter(arr)   # ONNX names may contain dots: see below
            elif kind == "buffer":
                self._buffers[name] = Tensor(arr)
            else:
                consts[name] = Tensor._wrap(arr)
        buffer_names = frozenset(self._buffers)

        # the plan: Constant nodes folded now, every other node a step
        plan = []
        for i in order:
            n, info = g.node[i], infos[i]
            info.buffers = buffer_names
            if n.op_type == "Constant":
                consts[n.output[0]] = Tensor._wrap(_constant_value(info.attrs, loader,
                                                                   f"node {_node_label(n, i)}"))
                continue
            inputs, outputs = list(n.input), list(n.output)
            while inputs and not inputs[-1]:
                inputs.pop()
            while outputs and not outputs[-1]:  # optional outputs nobody asked for
                outputs.pop()
            plan.append(_Step(OPS[n.op_type], info, inputs, outputs))
        self._consts = consts
        init_names = set(arrays)
        self.input_names = [v.name for v in g.input if v.name not in init_names]
        self.output_names = [v.name for v in g.output]
        # the graph without initializer data (the arrays live in the registries and _consts), for
        # to_model_proto: no second copy of the weights, and the caller's ModelProto is untouched
        self._skeleton = _skeleton(model)
        self._input_info = {v.name: v for v in self._skeleton.graph.input}
        last_use = {}
        for k, step in enumerate(plan):
            for name in step.inputs:
                last_use[name] = k
        keep = set(self.output_names) | init_names | set(consts)
        frees = [[] for _ in plan]
        for name, k in last_use.items():
            if name and name not in keep:
                frees[k].append(name)
        for step, f in zip(plan, frees):
            step.free = tuple(f)
        self._plan = plan
        self.eval()

    # ---------------------------------------------------------------------------- classification
    @staticmethod
    def _classify(g, arrays):
        """'param' for a floating initializer used as data somewhere, 'buffer' for one used only as
        BatchNormalization's running statistics, 'const' otherwise (integers, settings, unused).
        Identity nodes are seen through: the uses of their output count as uses of their input."""
        uses_of = {}
        for n in g.node:
            for pos, name in enumerate(n.input):
                if name:
                    uses_of.setdefault(name, []).append((n, pos))

        outputs = {o.name for o in g.output}

        def roles(name):
            # iterative walk through Identity chains (a hostile file may make them long)
            out, seen, todo = set(), {name}, [name]
            while todo:
                value = todo.pop()
                if value in outputs:
                    out.add("data")
                for n, pos in uses_of.get(value, []):
                    if n.op_type == "Identity":
                        if n.output[0] not in seen:
                            seen.add(n.output[0])
                            todo.append(n.output[0])
                    elif pos in BUFFER_INPUTS.get(n.op_type, ()):
                        out.add("buffer")
                    elif pos in STATIC_INPUTS.get(n.op_type, ()):
                        out.add("static")
                    else:
                        out.add("data")
            return out

        kinds = {}
        for name, arr in arrays.items():
            if not xp.issubdtype(arr.dtype, xp.floating):
                kinds[name] = "const"
                continue
            r = roles(name)
            kinds[name] = "param" if "data" in r else "buffer" if "buffer" in r else "const"
        return kinds

    # ------------------------------------------------------------------------------------ naming
    # Parameters and buffers sit in the Module registries under their ONNX names, which may hold
    # dots ("conv1.weight"): register_parameter refuses those (a dot means a submodule path), so
    # they are put in the registries directly. named_parameters()/state_dict()/load_state_dict()
    # then use the ONNX names unchanged; get_parameter/get_buffer look the full name up first.
    def get_parameter(self, target: str):
        if target in self._parameters and self._parameters[target] is not None:
            return self._parameters[target]
        return super().get_parameter(target)

    def get_buffer(self, target: str):
        if target in self._buffers and self._buffers[target] is not None:
            return self._buffers[target]
        return super().get_buffer(target)

    def extra_repr(self) -> str:
        ops = sorted({s.info.op_type for s in self._plan})
        return (f"source={self.source!r}, opset={self.opset}, inputs={self.input_names}, "
                f"outputs={self.output_names}, nodes={len(self._plan)}, "
                f"parameters={len(self._parameters)}, ops={ops}")

    # ----------------------------------------------------------------------------------- forward
    def _bind(self, args, kwargs):
        if len(args) > len(self.input_names):
            raise TypeError(f"the model takes {len(self.input_names)} input(s) {self.input_names}, "
                            f"got {len(args)}")
        bound = dict(zip(self.input_names, args))
        for k, v in kwargs.items():
            if k not in self.input_names:
                raise TypeError(f"unknown input {k!r}; the model's inputs are {self.input_names}")
            if k in bound:
                raise TypeError(f"input {k!r} given twice")
            bound[k] = v
        missing = [n for n in self.input_names if n not in bound]
        if missing:
            raise TypeError(f"missing input(s) {missing}; the model's inputs are "
                            f"{self.input_names}")
        out = {}
        for name, v in bound.items():
            t = v if isinstance(v, Tensor) else Tensor(v)
            info = self._input_info[name].type.tensor_type
            if info.HasField("shape") and len(info.shape.dim) != t.ndim:
                raise ValueError(f"input {name!r} should have {len(info.shape.dim)} dimensions "
                                 f"({_shape_str(info.shape)}), got shape {tuple(t.shape)}")
            out[name] = t
        return out

    def forward(self, *args, **kwargs):
        env = dict(self._consts)
        env.update(self._parameters)
        env.update(self._buffers)
        env.update(self._bind(args, kwargs))
        for step in self._plan:
            try:
                ins = [env[name] if name else None for name in step.inputs]
            except KeyError as e:  # unreachable when every producer makes all its outputs
                raise OnnxNodeError(f"node {step.info.name!r} ({step.info.op_type}) reads "
                                    f"{e.args[0]!r}, which its producer did not compute") from None
            try:
                out = step.fn(step.info, *ins)
            except (ValueError, TypeError, IndexError) as e:
                # the operators (and fv's ops under them) name the problem; the node is added here
                raise OnnxNodeError(f"node {step.info.name!r} ({step.info.op_type}): {e}") from e
            if not isinstance(out, tuple):
                out = (out,)
            if len(out) < len(step.outputs):
                raise OnnxNodeError(f"node {step.info.name!r} ({step.info.op_type}) declares "
                                    f"{len(step.outputs)} outputs but computes {len(out)}")
            for name, value in zip(step.outputs, out):
                if name:
                    env[name] = value
            for name in step.free:
                env.pop(name, None)
        outs = tuple(env[name] for name in self.output_names)
        return outs[0] if len(outs) == 1 else outs

    # ------------------------------------------------------------------------- transfer learning
    def replace_head(self, num_classes: int, generator=None) -> list:
        """Replace the final classifier by a freshly initialised one with ``num_classes`` outputs.

        The classifier is the last Gemm, or MatMul (+ Add of a bias), whose result reaches the
        graph's output directly or through Softmax, LogSoftmax, Sigmoid, Flatten, Dropout or
        Identity. Its weight and bias become new Parameters of the new size, initialised as
        ``fv.nn.Linear`` initialises its own (U(-1/sqrt(fan_in), 1/sqrt(fan_in))), and the graph
        output's declared shape is updated. Returns the names of the replaced parameters."""
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"replace_head: num_classes must be a positive int, got "
                             f"{num_classes!r}")
        if len(self.output_names) != 1:
            raise ValueError(f"replace_head: the model has {len(self.output_names)} outputs; it "
                             "needs exactly one")
        producer = {o: s for s in self._plan for o in s.outputs if o}
        through = {"Softmax", "LogSoftmax", "Sigmoid", "Flatten", "Dropout", "Identity"}
        name, step = self.output_names[0], None
        while True:
            step = producer.get(name)
            if step is None or step.info.op_type not in through:
                break
            name = step.inputs[0]
        bias_name = None
        if step is not None and step.info.op_type == "Add":
            a, b = step.inputs[:2]
            mm = producer.get(a) if a in producer else producer.get(b)
            bias_name = b if a in producer else a
            if mm is None or mm.info.op_type != "MatMul":
                step = None
            else:
                step = mm
        if step is None or step.info.op_type not in ("Gemm", "MatMul"):
            raise ValueError("replace_head: found no Gemm or MatMul (+ Add) feeding the graph "
                             "output (through Softmax, LogSoftmax, Sigmoid, Flatten, Dropout, "
                             "Identity)")
        w_name = step.inputs[1]
        if w_name not in self._parameters:
            raise ValueError(f"replace_head: the classifier's weight {w_name!r} is not an "
                             "initializer (a Parameter) of the model")
        n_uses = sum(w_name in s.inputs for s in self._plan)
        if n_uses != 1:
            raise ValueError(f"replace_head: the weight {w_name!r} is used by {n_uses} nodes; "
                             "refusing to resize a shared weight")
        w = self._parameters[w_name]
        if w.ndim != 2:
            raise ValueError(f"replace_head: the weight {w_name!r} has shape {tuple(w.shape)}, "
                             "not 2-D")
        trans_b = step.info.op_type == "Gemm" and bool(step.info.attr("transB", 0))
        fan_in = w.shape[1] if trans_b else w.shape[0]
        new_shape = (num_classes, fan_in) if trans_b else (fan_in, num_classes)
        if step.info.op_type == "Gemm" and len(step.inputs) > 2:
            bias_name = step.inputs[2]
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        replaced = [w_name]
        new_w = Parameter(xp.empty(new_shape, dtype=w.dtype))
        init.uniform_(new_w, -bound, bound, generator=generator)
        if bias_name:
            b = self._parameters.get(bias_name)
            if b is None or b.size(-1) != (w.shape[0] if trans_b else w.shape[1]) \
                    or sum(bias_name in s.inputs for s in self._plan) != 1:
                raise ValueError(f"replace_head: the bias {bias_name!r} is not a Parameter of the "
                                 "classifier alone, with one entry per class")
            new_b = Parameter(xp.empty(tuple(b.shape[:-1]) + (num_classes,), dtype=b.dtype))
            init.uniform_(new_b, -bound, bound, generator=generator)
            self._parameters[bias_name] = new_b
            replaced.append(bias_name)
        self._parameters[w_name] = new_w
        out = self._skeleton.graph.output[0].type.tensor_type
        if out.HasField("shape") and out.shape.dim:
            last = out.shape.dim[len(out.shape.dim) - 1]
            last.Clear()
            last.dim_value = num_classes
        return replaced

    # ----------------------------------------------------------------------------------- saving
    def to_model_proto(self) -> onnx.ModelProto:
        """The original graph with the current parameters and buffers as its initializers (and
        the output shape ``replace_head`` changed): a fine-tuned model, ready for onnxruntime.
        Every initializer is written inline (also those that came from external data)."""
        model = copy.deepcopy(self._skeleton)
        current = dict(self._consts)
        current.update(self._parameters)
        current.update(self._buffers)
        with no_grad():
            for t in model.graph.initializer:
                t.CopyFrom(onnx.numpy_helper.from_array(
                    xp.ascontiguousarray(current[t.name].data), t.name))
        return model

    def save(self, path) -> None:
        """Write :meth:`to_model_proto` to ``path`` (weights inline: under 2 GiB)."""
        onnx.save_model(self.to_model_proto(), os.fspath(path))


def _copy_fields(dst, src, skip=()):
    """Copy the set fields of protobuf message ``src`` into ``dst``, except those in ``skip``."""
    for fd, value in src.ListFields():
        if fd.name in skip:
            continue
        if _is_repeated(fd):
            getattr(dst, fd.name).extend(value)
        elif fd.type == fd.TYPE_MESSAGE:
            getattr(dst, fd.name).CopyFrom(value)
        else:
            setattr(dst, fd.name, value)


def _skeleton(model):
    """``model`` with its initializers reduced to name, type and dims."""
    skel = onnx.ModelProto()
    _copy_fields(skel, model, skip=("graph",))
    _copy_fields(skel.graph, model.graph, skip=("initializer",))
    for t in model.graph.initializer:
        stub = skel.graph.initializer.add()
        stub.name, stub.data_type = t.name, t.data_type
        stub.dims.extend(t.dims)
    return skel


def _shape_str(shape) -> str:
    return "(" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
                           for d in shape.dim) + ")"
