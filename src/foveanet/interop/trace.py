"""Capture the graph of primitives a module runs: the common ground of ONNX export and
inference optimisation.

``trace(model, *inputs)`` runs ``model`` once (eval mode and ``no_grad`` are the caller's choice)
with the engine's tracer hook set, and returns a :class:`Graph`: every primitive that ran, in order,
as a :class:`Node` (the Function instance, its arguments, the module path it ran under), and every
tensor it touched as a :class:`Value` (a graph input, a parameter or buffer named by its
``state_dict`` key, a constant made inside ``forward``, or the output of a node). Because it sees
primitives rather than modules, custom ``forward`` code is traced like any built-in layer; what it
cannot see is arithmetic done on raw arrays behind the engine's back, which therefore must not
feed the result (``Graph.outputs`` names what did).

A primitive with several results (a recurrent layer's output and final states) is one Node with
one Value per result (``Node.outputs``; ``Node.output`` is the first). A primitive that receives a
graph input's array rather than the Tensor (``embedding`` takes its indices' array) is traced as
reading that input, as batch norm's running statistics are traced as the buffers.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .. import autograd
from ..autograd import Function, Tensor


@dataclass(eq=False)
class Value:
    """A tensor in the graph. ``kind``: 'input', 'param', 'buffer', 'const' or 'node'."""
    name: str
    tensor: Tensor
    kind: str
    producer: "Node | None" = None

    @property
    def shape(self):
        return tuple(self.tensor.shape)

    @property
    def dtype(self):
        return self.tensor.dtype

    def __repr__(self):
        return f"Value({self.name!r}, {self.kind}, shape={self.shape})"


@dataclass(eq=False)
class Node:
    """One primitive as it ran. ``args`` holds a Value for each Tensor argument and the plain
    value (int, tuple, array, ...) for the rest, in the order ``Function.apply`` received them.
    ``outputs``: one Value per result (a Function that returns a tuple has several); ``output`` is
    the first."""
    fn: Function
    args: tuple
    kwargs: dict
    output: Value
    scope: str
    users: list = field(default_factory=list)
    outputs: list = field(default_factory=list)

    @property
    def op(self) -> str:
        return type(self.fn).__name__

    @property
    def inputs(self) -> list:
        """The Value arguments, in order."""
        return [a for a in self.args if isinstance(a, Value)]

    def __repr__(self):
        ins = ", ".join(a.name if isinstance(a, Value) else repr(a) for a in self.args)
        outs = ", ".join(v.name for v in self.outputs) or self.output.name
        return f"{outs} = {self.op}({ins}) [{self.scope or '<root>'}]"


class Graph:
    """The result of :func:`trace`: ``inputs``, ``nodes`` (in execution order), ``outputs``."""

    def __init__(self, inputs, nodes, outputs, values):
        self.inputs: list[Value] = inputs
        self.nodes: list[Node] = nodes
        self.outputs: list[Value] = outputs
        self.values: list[Value] = values

    def initializers(self) -> list[Value]:
        """Parameters, buffers and constants, in first-use order."""
        return [v for v in self.values if v.kind in ("param", "buffer", "const")]

    def __repr__(self):
        lines = [f"Graph(inputs={[v.name for v in self.inputs]}, outputs="
                 f"{[v.name for v in self.outputs]})"]
        lines += [f"  {n!r}" for n in self.nodes]
        return "\n".join(lines)


def unique_name(base: str, taken: set) -> str:
    """``base``, or ``base_2``, ``base_3``, ... : the first not in ``taken`` (which it joins)."""
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


class _Tracer:
    def __init__(self, model):
        self.by_id: dict[int, Value] = {}
        self.values: list[Value] = []
        self.nodes: list[Node] = []
        self.scope: list[str] = []
        self.names: dict[int, tuple[str, str]] = {}
        self.used: set[str] = set()
        self._consts = 0
        for name, p in model.named_parameters(remove_duplicate=False):
            self.names.setdefault(id(p), ("param", name))
        # Some primitives receive a buffer's array rather than the buffer (batch_norm updates
        # its running statistics in place): those arrays are traced as the buffer.
        self.arrays: dict[int, Tensor] = {}
        for name, b in model.named_buffers(remove_duplicate=False):
            if b is not None:
                self.names.setdefault(id(b), ("buffer", name))
                self.arrays.setdefault(id(b.data), b)

    def add(self, tensor: Tensor, kind: str, name: str, producer=None) -> Value:
        v = Value(unique_name(name, self.used), tensor, kind, producer)
        self.by_id[id(tensor)] = v
        self.values.append(v)
        return v

    def value_of(self, tensor: Tensor) -> Value:
        v = self.by_id.get(id(tensor))
        if v is not None and v.tensor is tensor:
            return v
        kind, name = self.names.get(id(tensor), (None, None))
        if kind is None:
            self._consts += 1
            kind, name = "const", f"const_{self._consts}"
        return self.add(tensor, kind, name)

    def record(self, fn, args, kwargs, result):
        vargs = tuple(self.value_of(a) if isinstance(a, Tensor)
                      else self.value_of(self.arrays[id(a)]) if id(a) in self.arrays
                      and self.arrays[id(a)].data is a else a for a in args)
        scope = self.scope[-1] if self.scope else ""
        op = type(fn).__name__
        name = f"{scope}/{op}" if scope else op
        node = Node(fn, vargs, dict(kwargs), None, scope)
        results = result if type(result) is tuple else (result,)
        node.outputs = [self.add(r, "node", name if i == 0 else f"{name}:{i}", node)
                        for i, r in enumerate(results)]
        node.output = node.outputs[0]
        for a in vargs:
            if isinstance(a, Value) and a.producer is not None:
                a.producer.users.append(node)
        self.nodes.append(node)


def _flatten(out):
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flatten(o)]
    raise TypeError(f"trace: the model returned a {type(out).__name__}; expected Tensors "
                    "(alone, or in tuples, lists or dicts)")


def trace(model, *inputs, input_names=None) -> Graph:
    """Run ``model(*inputs)`` once and return the :class:`Graph` of primitives it ran.

    ``inputs`` are Tensors; ``input_names`` (default ``input``, ``input_1``, ...) name them.
    Module paths come from the model's own ``named_modules``; a node records the innermost
    module that was running when it ran."""
    if autograd.tracer is not None:
        raise RuntimeError("trace: a trace is already running (traces do not nest)")
    inputs = [x if isinstance(x, Tensor) else Tensor(x) for x in inputs]
    names = list(input_names or [])
    names += ["input" if i == 0 else f"input_{i}" for i in range(len(names), len(inputs))]
    t = _Tracer(model)
    graph_inputs = [t.add(x, "input", n) for x, n in zip(inputs, names)]
    for x in inputs:  # a primitive given an input's array (embedding's indices) reads the input
        t.arrays.setdefault(id(x.data), x)
    handles = []
    me = threading.get_ident()  # the hooks are on the model: another thread's calls don't count
    for path, mod in model.named_modules():
        if not path:
            continue

        def pre(m, args, path=path):
            if threading.get_ident() == me:
                t.scope.append(path)

        def post(m, args, out):
            if threading.get_ident() == me:
                t.scope.pop()

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))
    autograd.set_hook("tracer", t)  # this thread's: other threads' ops are not recorded
    try:
        out = model(*inputs)
    finally:
        autograd.set_hook("tracer", None)
        for h in handles:
            h.remove()
    outputs = []
    for o in _flatten(out):
        v = t.by_id.get(id(o))
        if v is None or v.tensor is not o:
            raise RuntimeError("trace: an output of the model was not computed by foveanet's "
                               "primitives from its inputs (was it built from raw arrays?)")
        outputs.append(v)
    return Graph(graph_inputs, t.nodes, outputs, t.values)
