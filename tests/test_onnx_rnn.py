"""Recurrent layers through ONNX: nn.RNN / LSTM / GRU (and Embedding, LayerNorm, the cells) export
as ONNX's RNN / LSTM / GRU operators with dynamic batch and sequence axes, run in onnxruntime at
two shapes and import back; ONNX's recurrent nodes (every direction, layout, sequence_lens,
initial states, GRU's linear_before_reset 0 and 1) and torch.onnx's exports import and match;
what cannot be exact is refused by name."""
import contextlib
import io
import os
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from helpers import rel_close  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

import foveanet as fv  # noqa: E402
from foveanet import nn  # noqa: E402
from foveanet.interop.onnx_export import ONNXExportError, export  # noqa: E402
from foveanet.interop.onnx_import import OnnxLoadError, OnnxNodeError  # noqa: E402
from foveanet.interop.optimize import OptimizationError  # noqa: E402


# ------------------------------------------------------------------------------------- helpers
def _session(proto):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # a small shared machine
    opts.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [out]


def _run_fv(model, *xs):
    with fv.no_grad():
        return [o.numpy() for o in _flat(model(*[fv.tensor(x) for x in xs]))]


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _check_everywhere(model, proto, feeds_list, names=None):
    """The file in onnxruntime and imported back into foveanet gives the model's outputs, for
    every set of inputs (several shapes: the axes are dynamic)."""
    sess = _session(proto)
    names = names or [i.name for i in sess.get_inputs()]
    back = fv.onnx.load(proto.SerializeToString())
    for feeds in feeds_list:
        ref = _run_fv(model, *feeds)
        got = sess.run(None, dict(zip(names, feeds)))
        assert len(got) == len(ref)
        for k, (g, r) in enumerate(zip(got, ref)):
            assert g.dtype == r.dtype
            rel_close(g, r, rtol=1e-4, what=f"onnxruntime output {k} at {feeds[0].shape}")
        for k, (g, r) in enumerate(zip(_run_fv(back, *feeds), ref)):
            rel_close(g, r, rtol=1e-4, what=f"imported output {k} at {feeds[0].shape}")
    return back


def _randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _seq_axes(batch_first):
    return {0: "batch", 1: "seq"} if batch_first else {0: "seq", 1: "batch"}


# ----------------------------------------------------------------------------------- the trace
def test_trace_records_every_result_and_the_inputs_arrays():
    """A primitive with several results is one node with a Value per result (h_n and c_n were
    constants before); embedding's index array is traced as the graph input it came from."""
    from foveanet.interop import trace
    m = TinyLM().eval()
    with fv.no_grad():
        g = trace(m, fv.tensor(np.array([[1, 2, 3]])))
    emb = g.nodes[0]
    assert emb.op == "Embedding" and emb.inputs[0] is g.inputs[0]
    rec = [n for n in g.nodes if n.op == "Recurrence"]
    assert len(rec) == 2 and all(len(n.outputs) == 3 for n in rec)
    assert rec[0].output is rec[0].outputs[0]
    assert [v.name for v in rec[0].outputs] == ["rnn/Recurrence", "rnn/Recurrence:1",
                                                "rnn/Recurrence:2"]
    stacks = [n for n in g.nodes if n.op == "Stack"]
    assert [v.producer for v in stacks[0].inputs] == rec  # h_n of both layers
    assert not any(v.kind == "const" for v in g.values if v.tensor.ndim == 2)


# ---------------------------------------------------------------------------- export: layers
LAYERS = {
    "lstm": lambda: nn.LSTM(3, 5),
    "lstm_2_layers": lambda: nn.LSTM(3, 5, num_layers=2),
    "lstm_bidirectional_2_layers": lambda: nn.LSTM(3, 5, num_layers=2, bidirectional=True),
    "lstm_batch_first": lambda: nn.LSTM(3, 5, batch_first=True, bidirectional=True),
    "gru": lambda: nn.GRU(3, 5),
    "gru_bidirectional_no_bias": lambda: nn.GRU(3, 4, num_layers=2, bidirectional=True,
                                               bias=False),
    "rnn_tanh": lambda: nn.RNN(3, 4, num_layers=2),
    "rnn_relu_bidirectional": lambda: nn.RNN(3, 4, nonlinearity="relu", bidirectional=True),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_recurrent_layer_exports_one_onnx_op_per_layer(name):
    fv.manual_seed(0)
    m = LAYERS[name]()
    rng = np.random.default_rng(1)
    bf = m.batch_first

    def x(t, b):
        return _randn(rng, b, t, 3) if bf else _randn(rng, t, b, 3)
    proto = export(m, fv.tensor(x(5, 2)), None, dynamic_axes={"input": _seq_axes(bf)})
    op = {"LSTM": "LSTM", "GRU": "GRU"}.get(m.mode, "RNN")
    rec = [n for n in proto.graph.node if n.op_type == op]
    assert len(rec) == m.num_layers
    for n in rec:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        assert attrs["hidden_size"] == m.hidden_size
        assert attrs.get("direction", b"forward") == (b"bidirectional" if m.bidirectional
                                                      else b"forward")
        if op == "GRU":
            assert attrs["linear_before_reset"] == 1
        if m.mode == "RNN_RELU":
            assert attrs["activations"] == [b"Relu"] * m.num_directions
    # the parameters stay initializers under their state_dict names (reordered in the graph)
    assert {t.name for t in proto.graph.initializer} == set(m.state_dict())
    order = ["batch", "seq"] if bf else ["seq", "batch"]
    assert _dims(proto.graph.input[0]) == order + [3]
    assert _dims(proto.graph.output[0]) == order + [m.hidden_size * m.num_directions]
    assert _dims(proto.graph.output[1]) == [m.num_layers * m.num_directions, "batch",
                                            m.hidden_size]
    back = _check_everywhere(m, proto, [[x(5, 2)], [x(7, 3)], [x(1, 1)]])
    assert sorted(back.state_dict()) == sorted(m.state_dict())
    for k, v in m.state_dict().items():  # same names, same values: the file is the model
        np.testing.assert_array_equal(back.state_dict()[k].numpy(), v.numpy())


class WithStates(nn.Module):
    """A recurrent layer called with its initial states, taken as graph inputs."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, h0, c0=None):
        return self.rnn(x, (h0, c0) if c0 is not None else h0)


@pytest.mark.parametrize("layer", [
    lambda: nn.LSTM(3, 4, num_layers=2, bidirectional=True),
    lambda: nn.GRU(3, 4, num_layers=2, batch_first=True),
    lambda: nn.RNN(3, 4, bidirectional=True),
])
def test_initial_states_as_graph_inputs(layer):
    fv.manual_seed(0)
    m = WithStates(layer())
    rnn, rng = m.rnn, np.random.default_rng(2)
    lstm = rnn.mode == "LSTM"

    def feeds(t, b):
        x = _randn(rng, b, t, 3) if rnn.batch_first else _randn(rng, t, b, 3)
        states = [_randn(rng, rnn.num_layers * rnn.num_directions, b, 4)
                  for _ in range(2 if lstm else 1)]
        return [x] + states
    names = ["x", "h0", "c0"][:3 if lstm else 2]
    axes = {"x": _seq_axes(rnn.batch_first), "h0": {1: "batch"}, "c0": {1: "batch"}}
    axes = {k: v for k, v in axes.items() if k in names}
    proto = export(m, [fv.tensor(a) for a in feeds(4, 2)], None, input_names=names,
                   dynamic_axes=axes)
    assert [_dims(i)[1] for i in proto.graph.input[1:]] == ["batch"] * (len(names) - 1)
    _check_everywhere(m, proto, [feeds(4, 2), feeds(6, 3)], names)


class TinyLM(nn.Module):
    """Embedding -> 2-layer LSTM (batch_first) -> Linear: a word-level language model."""

    def __init__(self, vocab=11, dim=6, hidden=8):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.rnn = nn.LSTM(dim, hidden, num_layers=2, batch_first=True)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, tokens):
        out, (h, c) = self.rnn(self.embedding(tokens))
        return self.decoder(out), h, c


@pytest.mark.parametrize("opset", [13, 17])
def test_language_model_embedding_lstm_linear(opset):
    fv.manual_seed(0)
    m = TinyLM()
    rng = np.random.default_rng(3)

    def tokens(b, t):
        return rng.integers(0, 11, size=(b, t)).astype(np.int64)
    proto = export(m, fv.tensor(tokens(2, 5)), None, opset=opset,
                   dynamic_axes={"input": {0: "batch", 1: "seq"}})
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LSTM") == 2 and "Gather" in ops
    assert proto.graph.input[0].type.tensor_type.elem_type == TensorProto.INT64
    assert _dims(proto.graph.output[0]) == ["batch", "seq", 11]
    _check_everywhere(m, proto, [[tokens(2, 5)], [tokens(3, 9)]])


class RowReader(nn.Module):
    """Rows of a (N, H, W) batch through a batch_first GRU, the last hidden state to a Linear:
    exported with the default dynamic batch (dimension 0 of the input)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 6, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        _, h = self.rnn(x)
        last = h[2:].permute(1, 0, 2)
        return self.fc(last.reshape(last.shape[0], -1))


def test_default_dynamic_batch_of_a_batch_first_model():
    fv.manual_seed(0)
    m = RowReader()
    rng = np.random.default_rng(4)
    proto = export(m, fv.tensor(_randn(rng, 2, 5, 4)), None)
    assert _dims(proto.graph.input[0]) == ["batch", 5, 4]
    assert _dims(proto.graph.output[0]) == ["batch", 3]
    _check_everywhere(m, proto, [[_randn(rng, 2, 5, 4)], [_randn(rng, 3, 5, 4)]])


def test_unbatched_input():
    fv.manual_seed(0)
    m = nn.LSTM(3, 4, num_layers=2)
    rng = np.random.default_rng(5)
    proto = export(m, fv.tensor(_randn(rng, 5, 3)), None, dynamic_axes={"input": {0: "seq"}})
    assert _dims(proto.graph.output[0]) == ["seq", 4] and _dims(proto.graph.output[1]) == [2, 4]
    _check_everywhere(m, proto, [[_randn(rng, 5, 3)], [_randn(rng, 8, 3)]])


class Unrolled(nn.Module):
    """Cells over a fixed number of steps: each step is the engine's primitive, one ONNX op."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, x):  # x (B, 3 steps, in)
        state = None
        outs = []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
            outs.append(state[0] if isinstance(state, tuple) else state)
        return fv.stack(outs, 1)


@pytest.mark.parametrize("cell", [lambda: nn.LSTMCell(3, 4), lambda: nn.GRUCell(3, 4),
                                  lambda: nn.RNNCell(3, 4, nonlinearity="relu")])
def test_cells_unrolled_over_fixed_steps(cell):
    fv.manual_seed(0)
    m = Unrolled(cell())
    rng = np.random.default_rng(6)
    proto = export(m, fv.tensor(_randn(rng, 2, 3, 3)), None)
    assert sum(n.op_type in ("LSTM", "GRU", "RNN") for n in proto.graph.node) == 3
    _check_everywhere(m, proto, [[_randn(rng, 2, 3, 3)], [_randn(rng, 4, 3, 3)]])


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(opset, affine):
    fv.manual_seed(0)
    norm = nn.LayerNorm((4, 5), elementwise_affine=affine)
    if affine:
        norm.weight.data[...] = fv.randn(4, 5).numpy()
        norm.bias.data[...] = fv.randn(4, 5).numpy()
    m = nn.Sequential(nn.Linear(5, 5), norm)
    rng = np.random.default_rng(7)
    proto = export(m, fv.tensor(_randn(rng, 2, 4, 5)), None, opset=opset)
    ops = {n.op_type for n in proto.graph.node}
    assert ("LayerNormalization" in ops) == (opset >= 17)
    _check_everywhere(m, proto, [[_randn(rng, 2, 4, 5)], [_randn(rng, 3, 4, 5)]])


# ------------------------------------------------------------------------------ export: errors
def test_export_errors_name_the_layer():
    rng = np.random.default_rng(8)
    x = fv.tensor(_randn(rng, 5, 2, 3))
    proj = nn.Sequential(nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ONNXExportError, match=r"module '0'.*proj_size=2.*no projection"):
        export(proj, x, None, dynamic_axes={"input": {0: "seq", 1: "batch"}})

    class Packed(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 4)

        def forward(self, x):
            packed = nn.utils.rnn.pack_padded_sequence(x, [5, 3])
            return self.rnn(packed)[1]
    with pytest.raises(ONNXExportError, match=r"GRU in module 'rnn' received a PackedSequence"):
        export(Packed(), x, None, dynamic_axes={"input": {0: "seq", 1: "batch"}})

    with pytest.raises(ONNXExportError, match=r"Embedding in module '0': max_norm=1.0"):
        export(nn.Sequential(nn.Embedding(5, 3, max_norm=1.0)),
               fv.tensor(np.array([[1, 2]])), None)

    # the default dynamic batch grows dimension 0 of every input: not a recurrent state's batch
    m = WithStates(nn.GRU(3, 4))
    h0 = fv.tensor(_randn(rng, 1, 2, 4))
    with pytest.raises(ONNXExportError, match=r"grown by one sample.*pass dynamic_axes"):
        export(m, (x, h0), None)
    with pytest.raises(ValueError, match=r"dynamic_axes names 'x'"):
        export(m, (x, h0), None, dynamic_axes={"x": {0: "seq"}})
    with pytest.raises(ValueError, match=r"axis 3 is not a dimension"):
        export(m, (x, h0), None, dynamic_axes={"input": {3: "seq"}})
    with pytest.raises(ValueError, match=r"must have one size"):
        export(m, (x, h0), None, dynamic_axes={"input": {0: "n", 1: "n"}})
    class Direct(nn.Module):  # the primitive called directly with a state made of raw arrays
        def __init__(self):
            super().__init__()
            self.cell = nn.GRUCell(3, 4)

        def forward(self, x):
            c = self.cell
            h0 = np.ones((x.shape[0], 4), np.float32)
            return fv.ops.rnn.recurrence(x, c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh, h0,
                                         mode="gru")[1]
    with pytest.raises(ONNXExportError, match=r"Recurrence in the model's own forward: an "
                                              r"initial state given as a plain array"):
        export(Direct(), fv.tensor(_randn(rng, 2, 3)), None)
    # a cell loop has a fixed number of steps: a dynamic one is refused, not written wrong
    cells = Unrolled(nn.GRUCell(3, 4))
    with pytest.raises(ONNXExportError, match="different operations at different 'seq' sizes"):
        export(cells, fv.tensor(_randn(rng, 2, 3, 3)), None,
               dynamic_axes={"input": {0: "batch", 1: "seq"}})


def test_optimize_for_inference_refuses_recurrent_layers():
    with pytest.raises(OptimizationError, match=r"Recurrence .*module 'rnn'.*several results"):
        fv.optimize_for_inference(RowReader(), (5, 4))


# ----------------------------------------------------------------------- import: ONNX's nodes
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def _node_model(op, direction="forward", layout=0, lens=None, states=True, bias=True,
                hidden=4, size=3, steps=5, batch=3, seed=0, **attrs):
    """A one-node model with random weights as initializers; X, sequence_lens and the initial
    states as graph inputs. Returns (model, feeds)."""
    rng = np.random.default_rng(seed)
    d = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    weights = {"W": (d, g * hidden, size), "R": (d, g * hidden, hidden), "B": (d, 2 * g * hidden)}
    inits = [helper.make_tensor(n, TensorProto.FLOAT, shape, (_randn(rng, *shape) * 0.5).ravel())
             for n, shape in weights.items()]
    x_shape = (batch, steps, size) if layout else (steps, batch, size)
    s_shape = (batch, d, hidden) if layout else (d, batch, hidden)
    feeds = {"X": _randn(rng, *x_shape)}
    inputs = ["X", "W", "R", "B" if bias else ""]
    if lens is not None:
        feeds["sequence_lens"] = np.asarray(lens, dtype=np.int32)
    inputs.append("sequence_lens" if lens is not None else "")
    n_states = (2 if op == "LSTM" else 1) if states else 0
    for name in ["initial_h", "initial_c"][:n_states]:
        feeds[name] = _randn(rng, *s_shape)
        inputs.append(name)
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    y_shape = (batch, steps, d, hidden) if layout else (steps, d, batch, hidden)
    node = helper.make_node(op, inputs, outputs, hidden_size=hidden, direction=direction,
                            **({"layout": layout} if layout else {}), **attrs)
    graph_inputs = [helper.make_tensor_value_info(
        k, TensorProto.INT32 if k == "sequence_lens" else TensorProto.FLOAT, v.shape)
        for k, v in feeds.items()]
    graph = helper.make_graph([node], op, graph_inputs,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT,
                                                             y_shape if o == "Y" else s_shape)
                               for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    return model, feeds


def _to_layout_0(model, feeds):
    """The same node in layout 0 and its feeds (onnxruntime runs layout 0 only): the reference
    for a layout-1 node."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    node = m.graph.node[0]
    keep = [a for a in node.attribute if a.name != "layout"]
    del node.attribute[:]
    node.attribute.extend(keep)
    f = {k: (np.swapaxes(v, 0, 1).copy() if k != "sequence_lens" else v) for k, v in feeds.items()}
    for vi in m.graph.input:
        if vi.name in f:
            vi.CopyFrom(helper.make_tensor_value_info(
                vi.name, vi.type.tensor_type.elem_type, f[vi.name].shape))
    for vi in m.graph.output:
        vi.type.tensor_type.ClearField("shape")
    return m, f


NODE_CASES = [
    ("LSTM", dict()), ("LSTM", dict(direction="reverse", lens=[5, 2, 4])),
    ("LSTM", dict(direction="bidirectional", lens=[3, 5, 1])),
    ("LSTM", dict(direction="bidirectional", states=False, bias=False)),
    ("LSTM", dict(layout=1, direction="bidirectional", lens=[4, 5, 2])),
    ("GRU", dict(linear_before_reset=1, direction="bidirectional", lens=[2, 5, 3])),
    ("GRU", dict()), ("GRU", dict(direction="bidirectional", lens=[2, 5, 3])),
    ("GRU", dict(direction="reverse", layout=1, lens=[1, 4, 5], states=False)),
    ("RNN", dict(direction="bidirectional", lens=[5, 1, 3])),
    ("RNN", dict(activations=["Relu"], direction="reverse", lens=[2, 2, 5])),
    ("RNN", dict(activations=["Tanh", "Relu"], direction="bidirectional", layout=1)),
]


@pytest.mark.parametrize("op,kw", NODE_CASES)
def test_onnx_recurrent_nodes_match_onnxruntime(op, kw):
    model, feeds = _node_model(op, **kw)
    onnx.checker.check_model(model, full_check=True)
    ref_model, ref_feeds = _to_layout_0(model, feeds) if kw.get("layout") else (model, feeds)
    ref = _session(ref_model).run(None, ref_feeds)
    if kw.get("layout"):  # Y (T, D, B, H) -> (B, T, D, H); Y_h, Y_c (D, B, H) -> (B, D, H)
        ref = [np.transpose(ref[0], (2, 0, 1, 3))] + [np.swapaxes(r, 0, 1) for r in ref[1:]]
    module = fv.onnx.load(model)
    with fv.no_grad():
        got = module(**{k: fv.tensor(v) for k, v in feeds.items()})
    assert len(got) == len(ref)
    for name, g, r in zip(module.output_names, got, ref):
        rel_close(g.numpy(), r, rtol=1e-4, what=f"{op} {kw} {name}")


@pytest.mark.parametrize("op,kw", [("LSTM", dict(lens=[5, 2, 4], direction="bidirectional")),
                                   ("GRU", dict(lens=[5, 2, 4]))])
def test_imported_recurrent_node_trains(op, kw):
    model, feeds = _node_model(op, **kw)
    module = fv.onnx.load(model).train()
    y, y_h = module(**{k: fv.tensor(v) for k, v in feeds.items()})[:2]
    ((y * y).sum() + y_h.sum()).backward()
    for name in ("W", "R", "B"):
        grad = module.get_parameter(name).grad
        assert grad is not None and np.isfinite(grad).all() and np.abs(grad).max() > 0, name


@pytest.mark.parametrize("op,attrs,inputs,match", [
    ("LSTM", dict(clip=1.0), None, r"node rec \(LSTM\): clip=1.0 \(cell clipping\)"),
    ("LSTM", dict(input_forget=1), None, r"input_forget=1"),
    ("LSTM", dict(), ["X", "W", "R", "", "", "", "", "P"], r"peepholes \(input P\)"),
    ("LSTM", dict(activations=["HardSigmoid", "Tanh", "Tanh"]), None,
     r"activations=\['HardSigmoid', 'Tanh', 'Tanh'\] are not supported"),
    ("GRU", dict(activations=["Sigmoid"]), None, r"GRU takes 2 per direction"),
    ("RNN", dict(activations=["Tanh"], activation_alpha=[0.5]), None, r"activation_alpha"),
    ("GRU", dict(direction="sideways"), None, r"direction='sideways'"),
    ("RNN", dict(layout=2), None, r"layout=2: must be 0 or 1"),
    ("GRU", dict(linear_before_reset=3), None, r"linear_before_reset=3: must be 0 or 1"),
])
def test_unsupported_recurrent_settings_are_refused_at_load(op, attrs, inputs, match):
    g = GATES[op]
    node = helper.make_node(op, inputs or ["X", "W", "R"], ["Y"], name="rec", hidden_size=2,
                            **attrs)
    inits = [helper.make_tensor("W", TensorProto.FLOAT, (1, g * 2, 3), np.ones(g * 6)),
             helper.make_tensor("R", TensorProto.FLOAT, (1, g * 2, 2), np.ones(g * 4)),
             helper.make_tensor("P", TensorProto.FLOAT, (1, 6), np.ones(6))]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "X", TensorProto.FLOAT, (2, 1, 3))], [helper.make_tensor_value_info(
            "Y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    with pytest.raises(OnnxLoadError, match=match):
        fv.onnx.load(model)


def test_recurrent_node_shape_errors_name_the_node():
    model, feeds = _node_model("LSTM", lens=[5, 2, 4])
    module = fv.onnx.load(model)
    bad = dict(feeds, sequence_lens=np.array([5, 0, 9], np.int32))
    with pytest.raises(OnnxNodeError, match=r"\(LSTM\): sequence_lens \[5, 0, 9\] must hold"):
        module(**{k: fv.tensor(v) for k, v in bad.items()})
    bad = dict(feeds, initial_h=feeds["initial_h"][:, :2])
    with pytest.raises(OnnxNodeError, match=r"initial_h has shape \(1, 2, 4\).*should be "
                                            r"\(1, 3, 4\)"):
        module(**{k: fv.tensor(v) for k, v in bad.items()})


def test_recurrent_node_memory_is_bounded():
    # X and the weights fit the limit, the gates of all steps (5 x 3 x 16 floats) do not
    model, feeds = _node_model("LSTM", states=False)
    module = fv.onnx.load(model, max_tensor_bytes=400)
    with pytest.raises(OnnxNodeError, match=r"\(LSTM\): the output shape \(5, 3, 16\) needs 960 "
                                            r"bytes, over the limit of 400"):
        module(fv.tensor(feeds["X"]))


# ---------------------------------------------------------------- import: torch.onnx's exports
def _torch_export(torch, m, x, dynamo):
    f = io.BytesIO()
    with warnings.catch_warnings(), open(os.devnull, "w") as null, \
            contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        warnings.simplefilter("ignore")
        if dynamo:
            return torch.onnx.export(m, (x,), dynamo=True, verbose=False).model_proto
        torch.onnx.export(m, (x,), f, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "a", 1: "b"}})
    return onnx.load_from_string(f.getvalue())


TORCH_LAYERS = {
    "lstm_2_layers_bidirectional": lambda nn_: nn_.LSTM(3, 4, num_layers=2, bidirectional=True),
    "gru_batch_first": lambda nn_: nn_.GRU(3, 4, batch_first=True),
    "rnn_relu_2_layers": lambda nn_: nn_.RNN(3, 4, num_layers=2, nonlinearity="relu"),
}


@pytest.mark.parametrize("dynamo", [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", list(TORCH_LAYERS))
def test_torch_onnx_exports_import_and_match_torch(name, dynamo):
    torch = pytest.importorskip("torch")
    if dynamo:
        pytest.importorskip("onnxscript")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        m = TORCH_LAYERS[name](torch.nn).eval()
        x = torch.randn(5, 2, 3)
        module = fv.onnx.load(_torch_export(torch, m, x, dynamo))
        shapes = [(5, 2, 3)] if dynamo else [(5, 2, 3), (7, 3, 3)]  # dynamo: static shapes
        for shape in shapes:
            xs = torch.randn(*shape)
            with torch.no_grad():
                ref = [t.numpy() for t in _flat(m(xs))]
            got = _run_fv(module, xs.numpy())
            assert len(got) == len(ref)
            for k, (g, r) in enumerate(zip(got, ref)):
                rel_close(g, r, rtol=1e-4, what=f"{name} output {k} at {shape}")
    finally:
        torch.set_num_threads(threads)
