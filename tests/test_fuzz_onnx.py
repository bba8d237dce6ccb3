"""Seeded fuzzing of the ONNX importer (``fv.onnx.load`` and the first forward of what it returns).

Three surfaces, all deterministic (every case is seeded by its name and number):

- structured mutations of a handful of small valid models built with ``onnx.helper`` (an MLP, a CNN
  with Conv, BatchNorm, MaxPool, AveragePool, Flatten and Gemm, a 1-D CNN, a graph of shape
  arithmetic with Reshape, Concat, Pad, Split, Slice, Gather..., a graph of data-sized outputs with
  ConstantOfShape, Expand, Tile, Range, Resize, ConvTranspose, LRN, an old-opset graph whose
  settings are attributes, and an opset-19 graph with Resize to sizes, Split into num_outputs, 3-D
  and integer pooling): attribute values (0, -1, huge, 2**31-1, 2**62, nan, inf, lists shortened
  or lengthened, attributes removed, added or retyped), initializer dims, data types, raw data and
  values, node inputs and outputs renamed or removed, operator types swapped, opset versions,
  declared input types and shapes;
- byte-level mutations of the same models' serialized files;
- every operator foveanet imports, alone in a one-node graph with attributes drawn by its schema's
  types (boundary values mostly) and inputs that mostly fit one another.

Each case must either load and run one forward on an input of the declared shape (symbolic
dimensions set to 2), or raise an ``OnnxLoadError`` (subclasses included) at load or at that
forward. Anything else (a MemoryError, a ZeroDivisionError, a RecursionError, a bare NumPy error,
...) is an escape, reported with the model, seed and mutation that produced it. Every case runs
under a memory bound: ``tracemalloc`` measures its peak (NumPy's allocations included), and an
address-space limit turns an absurd allocation into a MemoryError (an escape) instead of a machine
that runs out of memory.
"""
import math
import random
import resource
import tracemalloc

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import AttributeProto, TensorProto, helper, numpy_helper  # noqa: E402

import foveanet as fv  # noqa: E402
from foveanet.interop.onnx_import import MAX_OPSET, OnnxLoadError  # noqa: E402
from foveanet.interop.onnx_ops import OPS, STATIC_INPUTS  # noqa: E402

TENSOR_LIMIT = 1 << 20        # max_tensor_bytes for the fuzzed models: 1 MiB
# The most one case may allocate (its tracemalloc peak): far above what a case needs (tensors of
# at most 1 MiB; the largest peaks, ~30 MiB, are Numba compiling a kernel for a new dtype), far
# below what an absurd size asks for (gigabytes)
PEAK_LIMIT = 256 << 20
ADDRESS_HEADROOM = 3 << 30    # address space allowed beyond what the process has at the start
SEED = 20240611
INT_VALUES = [0, -1, 1, 2, 3, 7, 1 << 20, 2 ** 31 - 1, 2 ** 31, 2 ** 62, -2 ** 62, 2 ** 63 - 1]
FLOAT_VALUES = [math.nan, math.inf, -math.inf, 1e30, -1e30, 0.0, -1.0, 1e-30]


# ================================================================================ the base models
def _f32(rng, *shape):
    return (rng.standard_normal(shape) * 0.5).astype(np.float32)


def _init(arr, name):
    return numpy_helper.from_array(np.asarray(arr), name)


def _model(nodes, inputs, outputs, inits, opset):
    graph = helper.make_graph(nodes, "fuzz", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _mlp(rng):
    n = helper.make_node
    nodes = [n("Gemm", ["x", "w1", "b1"], ["h1"], name="fc1", transB=1),
             n("Relu", ["h1"], ["a1"], name="relu1"),
             n("Gemm", ["a1", "w2", "b2"], ["h2"], name="fc2", transB=1, alpha=1.0, beta=1.0),
             n("Softmax", ["h2"], ["y"], name="softmax", axis=1)]
    inits = [_init(_f32(rng, 6, 5), "w1"), _init(_f32(rng, 6), "b1"),
             _init(_f32(rng, 3, 6), "w2"), _init(_f32(rng, 3), "b2")]
    return _model(nodes, [_vi("x", ["batch", 5])], [_vi("y", ["batch", 3])], inits, 13)


def _cnn(rng):
    n = helper.make_node
    nodes = [n("Conv", ["x", "cw", "cb"], ["c1"], name="conv1", kernel_shape=[3, 3],
               pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=1),
             n("BatchNormalization", ["c1", "g", "beta", "mean", "var"], ["bn"], name="bn1",
               epsilon=1e-5, momentum=0.9),
             n("Relu", ["bn"], ["r1"], name="relu1"),
             n("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2],
               pads=[0, 0, 0, 0], dilations=[1, 1], ceil_mode=0),
             n("Conv", ["p1", "cw2"], ["c2"], name="conv2", kernel_shape=[1, 1], group=2,
               auto_pad="SAME_UPPER"),
             n("AveragePool", ["c2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[1, 1],
               pads=[1, 1, 0, 0], count_include_pad=0, ceil_mode=1),
             n("Flatten", ["p2"], ["f"], name="flatten", axis=1),
             n("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    inits = [_init(_f32(rng, 4, 2, 3, 3), "cw"), _init(_f32(rng, 4), "cb"),
             _init(np.ones(4, np.float32), "g"), _init(np.zeros(4, np.float32), "beta"),
             _init(np.zeros(4, np.float32), "mean"), _init(np.ones(4, np.float32), "var"),
             _init(_f32(rng, 4, 2, 1, 1), "cw2"),
             _init(_f32(rng, 3, 4 * 3 * 3), "fw"), _init(_f32(rng, 3), "fb")]
    return _model(nodes, [_vi("x", ["batch", 2, 6, 6])], [_vi("y", ["batch", 3])], inits, 13)


def _cnn1d(rng):
    n = helper.make_node
    nodes = [n("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3], strides=[2], pads=[1, 0],
               dilations=[1]),
             n("MaxPool", ["c"], ["p", "idx"], name="pool", kernel_shape=[2], strides=[1],
               ceil_mode=1, storage_order=0),
             n("AveragePool", ["p"], ["a"], name="avg", kernel_shape=[2], strides=[2], pads=[1, 1],
               count_include_pad=1),
             n("GlobalMaxPool", ["a"], ["y"], name="gmp")]
    return _model(nodes, [_vi("x", [1, 2, 10])],
                  [_vi("y", [1, 3, 1]), _vi("idx", [1, 3, 4], TensorProto.INT64)],
                  [_init(_f32(rng, 3, 2, 3), "w")], 12)


def _shapes(rng):
    n = helper.make_node
    nodes = [n("Pad", ["x", "pads", "pv"], ["xp"], name="pad", mode="constant"),
             n("Shape", ["xp"], ["s"], name="shape"),
             n("Gather", ["s", "zero"], ["b"], name="gather", axis=0),
             n("Unsqueeze", ["b", "axes0"], ["b1"], name="unsq"),
             n("Concat", ["b1", "minus1"], ["target"], name="cat_shape", axis=0),
             n("Reshape", ["xp", "target"], ["flat"], name="reshape"),
             n("Concat", ["flat", "flat"], ["both"], name="cat", axis=1),
             n("Split", ["both", "split"], ["s1", "s2"], name="split", axis=1),
             n("Slice", ["s1", "st", "en", "sax", "sst"], ["sl"], name="slice"),
             n("Reshape", ["sl", "shape3"], ["r3"], name="reshape3"),
             n("Transpose", ["r3"], ["t"], name="transpose", perm=[0, 2, 1]),
             n("ReduceMean", ["t"], ["m"], name="mean", axes=[1], keepdims=1),
             n("Squeeze", ["m", "axes1"], ["sq"], name="squeeze"),
             n("ReduceSum", ["s2", "axes1"], ["s2_sum"], name="sum", keepdims=1),
             n("Add", ["sq", "s2_sum"], ["y0"], name="add"),
             n("Mul", ["y0", "half"], ["y"], name="mul")]
    inits = [_init(np.array([0, 0, 1, 1, 0, 0, 1, 0], np.int64), "pads"),
             _init(np.array(0.5, np.float32), "pv"), _init(np.array(0, np.int64), "zero"),
             _init(np.array([0], np.int64), "axes0"), _init(np.array([-1], np.int64), "minus1"),
             _init(np.array([50, 50], np.int64), "split"),
             _init(np.array([2], np.int64), "st"), _init(np.array([26], np.int64), "en"),
             _init(np.array([1], np.int64), "sax"), _init(np.array([2], np.int64), "sst"),
             _init(np.array([0, 3, 4], np.int64), "shape3"),
             _init(np.array([1], np.int64), "axes1"), _init(np.array(0.5, np.float32), "half")]
    return _model(nodes, [_vi("x", ["batch", 2, 3, 4])], [_vi("y", ["batch", 3])], inits, 13)


def _sized(rng):
    n = helper.make_node
    nodes = [n("ConstantOfShape", ["cshape"], ["c"], name="fill",
               value=numpy_helper.from_array(np.array([0.25], np.float32))),
             n("Expand", ["x", "eshape"], ["e"], name="expand"),
             n("Add", ["e", "c"], ["ec"], name="add"),
             n("Tile", ["ec", "reps"], ["t"], name="tile"),
             n("Resize", ["t", "", "scales"], ["r"], name="resize", mode="nearest",
               coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
             n("ConvTranspose", ["r", "tw"], ["ct"], name="deconv", strides=[2, 2],
               kernel_shape=[2, 2], pads=[0, 0, 1, 1], output_padding=[1, 1]),
             n("LRN", ["ct"], ["l"], name="lrn", size=3, alpha=1e-4, beta=0.75, bias=1.0),
             n("GlobalAveragePool", ["l"], ["g"], name="gap"),
             n("Range", ["r0", "r1", "rd"], ["rg"], name="range"),
             n("Cast", ["rg"], ["rgf"], name="cast", to=TensorProto.FLOAT),
             n("Clip", ["rgf", "lo", "hi"], ["rc"], name="clip"),
             n("Reshape", ["rc", "rshape"], ["rr"], name="rreshape"),
             n("Mul", ["g", "rr"], ["y"], name="mul")]
    inits = [_init(np.array([1, 2, 3, 3], np.int64), "cshape"),
             _init(np.array([1, 2, 3, 3], np.int64), "eshape"),
             _init(np.array([1, 1, 1, 2], np.int64), "reps"),
             _init(np.array([1, 1, 2, 1], np.float32), "scales"),
             _init(_f32(rng, 2, 2, 2, 2), "tw"),
             _init(np.array(0, np.int64), "r0"), _init(np.array(2, np.int64), "r1"),
             _init(np.array(1, np.int64), "rd"),
             _init(np.array(0.0, np.float32), "lo"), _init(np.array(1.5, np.float32), "hi"),
             _init(np.array([1, 2, 1, 1], np.int64), "rshape")]
    return _model(nodes, [_vi("x", [1, 2, 1, 3])], [_vi("y", [1, 2, 1, 1])], inits, 13)


def _legacy(rng):
    """Opset 9: Pad, Slice, Upsample, Split, Squeeze and Dropout settings are attributes."""
    n = helper.make_node
    nodes = [n("Pad", ["x"], ["p"], name="pad", pads=[0, 0, 1, 0, 0, 0, 0, 1], mode="reflect"),
             n("Upsample", ["p", "us"], ["u"], name="up", mode="nearest"),
             n("Slice", ["u"], ["s"], name="slice", starts=[0, 1], ends=[100, -1], axes=[2, 3]),
             n("Split", ["s"], ["a", "b"], name="split", axis=1, split=[1, 1]),
             n("Sub", ["a", "b"], ["d"], name="sub"),
             n("Squeeze", ["d"], ["sq"], name="squeeze", axes=[1]),
             n("Dropout", ["sq"], ["dr"], name="drop", ratio=0.3),
             n("LeakyRelu", ["dr"], ["lr"], name="lrelu", alpha=0.1),
             n("Unsqueeze", ["lr"], ["y"], name="unsqueeze", axes=[0])]
    inits = [_init(np.array([1, 1, 2, 2], np.float32), "us")]
    return _model(nodes, [_vi("x", [1, 2, 3, 3])], [_vi("y", [1, 1, 8, 6])], inits, 9)


def _modern(rng):
    """Opset 19: Pad with axes (wrap), a dilated AveragePool, Resize to sizes with axes and an
    aspect-ratio policy, Split into num_outputs, a 3-D MaxPool, integer pooling, reductions whose
    axes are inputs."""
    n = helper.make_node
    nodes = [n("Pad", ["x", "pads", "", "pax"], ["p"], name="pad", mode="wrap"),
             n("AveragePool", ["p"], ["ap"], name="avg", kernel_shape=[2, 2], dilations=[2, 1],
               strides=[1, 2], pads=[1, 0, 0, 1], count_include_pad=1, ceil_mode=1),
             n("Resize", ["ap", "", "", "sizes"], ["r"], name="resize", axes=[2, 3],
               keep_aspect_ratio_policy="not_larger", mode="nearest",
               nearest_mode="round_prefer_ceil"),
             n("Split", ["r"], ["a", "b"], name="split", axis=1, num_outputs=2),
             n("Max", ["a", "b"], ["m"], name="max"),
             n("Unsqueeze", ["m", "ax2"], ["m5"], name="unsqueeze"),
             n("MaxPool", ["m5"], ["mp"], name="pool3d", kernel_shape=[1, 2, 2],
               pads=[0, 1, 1, 0, 0, 0]),
             n("ReduceMax", ["mp", "ax23"], ["y"], name="rmax", keepdims=0),
             n("Cast", ["x"], ["xi"], name="to_uint8", to=TensorProto.UINT8),
             n("MaxPool", ["xi"], ["pi"], name="pool_int", kernel_shape=[2, 2], strides=[2, 2]),
             n("Cast", ["pi"], ["pf"], name="to_float", to=TensorProto.FLOAT),
             n("ReduceMean", ["pf", "ax23"], ["y2"], name="rmean", keepdims=1)]
    inits = [_init(np.array([1, 1], np.int64), "pads"), _init(np.array([3], np.int64), "pax"),
             _init(np.array([5, 3], np.int64), "sizes"), _init(np.array([2], np.int64), "ax2"),
             _init(np.array([2, 3], np.int64), "ax23")]
    return _model(nodes, [_vi("x", [1, 2, 4, 4])],
                  [_vi("y", [1, 1, 3]), _vi("y2", [1, 2, 1, 1])], inits, 19)


BASES = {"mlp": _mlp, "cnn": _cnn, "cnn1d": _cnn1d, "shapes": _shapes, "sized": _sized,
         "legacy": _legacy, "modern": _modern}


# ======================================================================= running one case
class Tally:
    """Outcomes of one surface's cases, and the first escapes in full."""

    def __init__(self, surface):
        self.surface = surface
        self.cases = self.ran = self.load_errors = self.run_errors = self.peak = 0
        self.escapes = []

    def line(self):
        return (f"{self.surface}: {self.cases} cases, {self.ran} loaded and ran, "
                f"{self.load_errors} OnnxLoadError at load, {self.run_errors} OnnxLoadError at the "
                f"first forward, {len(self.escapes)} escapes; largest peak "
                f"{self.peak / (1 << 20):.1f} MiB")


def _input_for(value_info, base_shapes, rng):
    """An input of the declared type and shape (symbolic dimensions: 2; no shape: the base
    model's); None when the declared size is over the tensor limit (load must refuse those)."""
    t = value_info.type.tensor_type
    dtype = np.dtype(np.float32)
    if t.elem_type:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type))
    if t.HasField("shape"):
        shape = [d.dim_value if d.HasField("dim_value") else 2 for d in t.shape.dim]
    else:
        shape = base_shapes.get(value_info.name, [2])
    if math.prod(shape) * dtype.itemsize > TENSOR_LIMIT:
        return None
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    return rng.integers(0, 3, shape).astype(dtype)


def run_case(tally, label, data_or_model, base_shapes, rng):
    """Load, then run one forward; count the outcome; record anything but an OnnxLoadError."""
    tally.cases += 1
    stage = "load"
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    try:
        m = fv.onnx.load(data_or_model, max_tensor_bytes=TENSOR_LIMIT)
        stage = "forward"
        proto = data_or_model if isinstance(data_or_model, onnx.ModelProto) else \
            onnx.ModelProto.FromString(data_or_model)
        declared = {v.name: v for v in proto.graph.input}
        inputs = {}
        for name in m.input_names:
            inputs[name] = _input_for(declared[name], base_shapes, rng)
            if inputs[name] is None:
                raise AssertionError(f"input {name!r} declares more than {TENSOR_LIMIT} bytes, "
                                     "yet the model loaded")
        with fv.no_grad():
            m(**inputs)
        tally.ran += 1
    except OnnxLoadError:
        if stage == "load":
            tally.load_errors += 1
        else:
            tally.run_errors += 1
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - MemoryError, RecursionError, ... are escapes
        tally.escapes.append(f"{label} [{stage}]: {type(e).__name__}: {str(e)[:300]}")
    peak = tracemalloc.get_traced_memory()[1] - start
    tally.peak = max(tally.peak, peak)
    if peak > PEAK_LIMIT:
        tally.escapes.append(f"{label} [{stage}]: allocated {peak} bytes (limit {PEAK_LIMIT})")


# ================================================================================= mutations
def _mutate_attribute(m, r):
    nodes = [nd for nd in m.graph.node if nd.attribute]
    if not nodes:
        return "no attribute"
    nd = r.choice(nodes)
    a = r.choice(list(nd.attribute))
    what = f"{nd.name}.{a.name}"
    kind = r.random()
    if kind < 0.08:
        nd.attribute.remove(a)
        return f"{what} removed"
    if kind < 0.16:  # retyped: the same name, another kind of value
        name = a.name
        nd.attribute.remove(a)
        value = r.choice([7, [7, 7], 0.5, [0.5], "SAME_UPPER", b"\xff\xfe", []])
        if value == []:
            nd.attribute.append(helper.make_attribute(name, [], attr_type=AttributeProto.INTS))
        else:
            nd.attribute.append(helper.make_attribute(name, value))
        return f"{what} retyped to {value!r}"
    if a.type == AttributeProto.INT:
        a.i = r.choice(INT_VALUES)
        return f"{what} = {a.i}"
    if a.type == AttributeProto.INTS:
        v = list(a.ints)
        op = r.choice(["set", "set", "set", "shorten", "lengthen", "empty"])
        if op == "set" and v:
            v[r.randrange(len(v))] = r.choice(INT_VALUES)
        elif op == "shorten" and v:
            v.pop()
        elif op == "lengthen":
            v.append(r.choice(INT_VALUES))
        else:
            v = []
        del a.ints[:]
        a.ints.extend(v)
        return f"{what} = {v}"
    if a.type == AttributeProto.FLOAT:
        a.f = r.choice(FLOAT_VALUES)
        return f"{what} = {a.f}"
    if a.type == AttributeProto.FLOATS:
        v = list(a.floats)
        if v and r.random() < 0.7:
            v[r.randrange(len(v))] = r.choice(FLOAT_VALUES)
        else:
            v = v[:-1] if r.random() < 0.5 else v + [2.0]
        del a.floats[:]
        a.floats.extend(v)
        return f"{what} = {v}"
    if a.type == AttributeProto.STRING:
        a.s = r.choice([b"", b"SAME_LOWER", b"VALID", b"bogus", b"\xff\x00", b"linear", b"edge"])
        return f"{what} = {a.s!r}"
    if a.type == AttributeProto.TENSOR:
        _mutate_tensor(a.t, r)
        return f"{what} tensor mutated"
    return f"{what} untouched"


_EXTRA_ATTRS = [("strides", [0, 0]), ("strides", [1 << 40, 1]), ("dilations", [0, 1]),
                ("dilations", [1 << 31, 1 << 31]), ("pads", [-1, -1, -1, -1]),
                ("pads", [1 << 40, 0, 0, 0]), ("kernel_shape", [0, 0]),
                ("kernel_shape", [1 << 31, 1]),
                ("group", 0), ("group", -2), ("group", 1 << 40), ("axis", 1 << 62), ("axis", -100),
                ("auto_pad", "SAME_LOWER"), ("auto_pad", "VALID"), ("ceil_mode", 1),
                ("count_include_pad", 1), ("keepdims", 0), ("num_outputs", 0), ("allowzero", 1),
                ("perm", [5, 5, 5]), ("size", 0), ("size", 1 << 40), ("output_padding", [7, 7]),
                ("output_shape", [1 << 30, 1 << 30]), ("transA", 1), ("storage_order", 1),
                ("start", -1 << 62), ("end", 1 << 62), ("split", [-1, 3]), ("to", 8), ("to", 999)]


def _add_attribute(m, r):
    nd = r.choice(list(m.graph.node))
    name, value = r.choice(_EXTRA_ATTRS)
    for a in list(nd.attribute):
        if a.name == name:
            nd.attribute.remove(a)
    nd.attribute.append(helper.make_attribute(name, value))
    return f"{nd.name}.{name} := {value!r}"


def _mutate_tensor(t, r):
    kind = r.random()
    if kind < 0.25 and len(t.dims):
        i = r.randrange(len(t.dims))
        t.dims[i] = r.choice([0, -1, 1, t.dims[i] + 1, 1 << 31, 1 << 62])
    elif kind < 0.35:
        t.dims.append(r.choice([1, 2, 0]))
    elif kind < 0.5:
        t.data_type = r.choice([TensorProto.DOUBLE, TensorProto.INT32, TensorProto.INT64,
                                TensorProto.FLOAT16, TensorProto.UINT8, TensorProto.BOOL,
                                TensorProto.STRING, TensorProto.BFLOAT16, 0, 99])
    elif kind < 0.6 and t.raw_data:
        t.raw_data = t.raw_data[: r.randrange(len(t.raw_data))]
    elif t.raw_data:  # new values: boundaries for integers, specials for floats
        try:
            arr = numpy_helper.to_array(t).copy()
        except Exception:  # noqa: BLE001 - an earlier mutation left it inconsistent: keep that
            return
        if arr.size:
            flat = arr.reshape(-1)
            i = r.randrange(flat.size)
            if arr.dtype.kind == "f":
                flat[i] = r.choice(FLOAT_VALUES + [1e6, 3.0, 0.5])
            elif arr.dtype.kind in "iu":
                info = np.iinfo(arr.dtype)
                flat[i] = min(max(r.choice(INT_VALUES + [-2, 100, 2 ** 40]), info.min), info.max)
            t.raw_data = arr.tobytes()


def _mutate_initializer(m, r):
    t = r.choice(list(m.graph.initializer))
    _mutate_tensor(t, r)
    return f"initializer {t.name} mutated"


def _mutate_wiring(m, r):
    nd = r.choice(list(m.graph.node))
    names = [v.name for v in m.graph.input] + [t.name for t in m.graph.initializer] + \
        [o for x in m.graph.node for o in x.output]
    kind = r.random()
    if kind < 0.3 and nd.input:
        i = r.randrange(len(nd.input))
        nd.input[i] = r.choice(names + ["", "ghost"])
        return f"{nd.name}.input[{i}] = {nd.input[i]!r}"
    if kind < 0.45 and nd.input:
        nd.input.pop()
        return f"{nd.name} lost its last input"
    if kind < 0.55:
        nd.input.append(r.choice(names))
        return f"{nd.name} got an extra input"
    if kind < 0.7:
        nd.output.append(f"extra_{r.randrange(3)}")
        return f"{nd.name} got an extra output"
    if kind < 0.8 and nd.output:
        nd.output[0] = r.choice(names + ["", "renamed"])
        return f"{nd.name}.output[0] = {nd.output[0]!r}"
    nd.op_type = r.choice(["Conv", "MaxPool", "AveragePool", "Gemm", "Reshape", "Split", "Concat",
                           "Pad", "Expand", "Tile", "Range", "ConstantOfShape", "Resize",
                           "ConvTranspose", "LRN", "Slice", "Gather", "Transpose", "Squeeze",
                           "Unsqueeze", "Flatten", "Softmax", "BatchNormalization", "Shape",
                           "Upsample", "ReduceMax", "Sum", "Mean", "Where", "Cast", "Dropout",
                           "InstanceNormalization", "MatMul", "GlobalAveragePool", "Identity"])
    return f"{nd.name}.op_type = {nd.op_type}"


def _mutate_graph_io(m, r):
    kind = r.random()
    if kind < 0.4:
        m.opset_import[0].version = r.choice([6, 7, 9, 10, 11, 12, 13, 17, 18, 19, MAX_OPSET,
                                              MAX_OPSET + 1, 0, -1])
        return f"opset {m.opset_import[0].version}"
    v = m.graph.input[0]
    t = v.type.tensor_type
    if kind < 0.55:
        t.elem_type = r.choice([TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.INT64,
                                TensorProto.UINT8, TensorProto.STRING, TensorProto.BFLOAT16,
                                TensorProto.BOOL, 0, 77])
        return f"input {v.name} elem_type {t.elem_type}"
    dims = t.shape.dim
    if kind < 0.85 and len(dims):
        d = dims[r.randrange(len(dims))]
        d.dim_value = r.choice([0, 1, 3, 1 << 20, 1 << 40])
        return f"input {v.name} dim := {d.dim_value}"
    if len(dims) and r.random() < 0.5:
        del dims[len(dims) - 1]
        return f"input {v.name} lost a dimension"
    dims.add().dim_value = 1
    return f"input {v.name} gained a dimension"


MUTATORS = [(_mutate_attribute, 5), (_add_attribute, 2), (_mutate_initializer, 3),
            (_mutate_wiring, 2), (_mutate_graph_io, 1)]


def _mutate_bytes(data, r):
    b = bytearray(data)
    for _ in range(r.choice([1, 1, 2, 4])):
        kind = r.random()
        i = r.randrange(len(b))
        if kind < 0.35:
            b[i] ^= 1 << r.randrange(8)
        elif kind < 0.7:
            b[i] = r.choice([0, 1, 0x7F, 0x80, 0xFF])
        elif kind < 0.8:
            del b[i:i + r.randrange(1, 8)]
        elif kind < 0.9:
            b[i:i] = bytes(r.randrange(256) for _ in range(r.randrange(1, 6)))
        else:
            b[i:i + 4] = bytes(r.randrange(256) for _ in range(4))
    return bytes(b)


# ================================================================= single operators, generated
# Every operator foveanet imports, in a one-node graph: attributes drawn by their schema's type
# (boundary values mostly), inputs of random small shapes and types, the inputs that hold
# settings (shapes, axes, pads, sizes, scales, repeats) as initializers with boundary values.

STRINGS = {"auto_pad": ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "bogus"],
           "mode": ["nearest", "constant", "reflect", "edge", "wrap", "linear"],
           "coordinate_transformation_mode": ["half_pixel", "asymmetric", "align_corners",
                                              "pytorch_half_pixel", "tf_half_pixel_for_nn",
                                              "half_pixel_symmetric", "tf_crop_and_resize"],
           "nearest_mode": ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"],
           "keep_aspect_ratio_policy": ["stretch", "not_larger", "not_smaller", "bogus"]}
SMALL_INTS = [-2, -1, 0, 1, 1, 1, 2, 2, 3]
DATA_TYPES = [TensorProto.FLOAT] * 6 + [TensorProto.INT64, TensorProto.UINT8, TensorProto.BOOL,
                                        TensorProto.DOUBLE, TensorProto.INT32]
SPATIAL = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool",
           "GlobalMaxPool", "LRN", "InstanceNormalization", "BatchNormalization", "Resize",
           "Upsample"}


def _schema(op, opset):
    try:
        return onnx.defs.get_schema(op, opset, "")
    except onnx.defs.SchemaError:
        return onnx.defs.get_schema(op, MAX_OPSET, "")


def _an_int(r):
    return r.choice(INT_VALUES) if r.random() < 0.25 else r.choice(SMALL_INTS)


def _attribute_value(name, kind, r):
    if kind == AttributeProto.INT:
        if name == "to":
            return r.choice([1, 1, 7, 2, 9, 11, 10, 16, 8, 0, 999])
        return _an_int(r)
    if kind == AttributeProto.INTS:
        return [_an_int(r) for _ in range(r.choice([0, 1, 2, 2, 2, 3, 4, 4]))]
    if kind == AttributeProto.FLOAT:
        return r.choice(FLOAT_VALUES) if r.random() < 0.3 else r.choice([0.1, 0.5, 1.0, 2.0])
    if kind == AttributeProto.FLOATS:
        return [r.choice(FLOAT_VALUES + [1.0, 2.0, 2.0, 0.5]) for _ in range(r.randrange(5))]
    if kind == AttributeProto.STRING:
        return r.choice(STRINGS.get(name, ["", "bogus"]))
    if kind == AttributeProto.TENSOR:
        return numpy_helper.from_array(
            np.array([r.choice([0.5, -1.0, math.nan])] * r.choice([1, 1, 1, 0, 2]), np.float32))
    return None


def _shape(r, op):
    rank = r.choice([3, 4, 4, 4, 5]) if op in SPATIAL and r.random() < 0.85 else r.randrange(5)
    return [r.choice([0, 1, 1, 2, 2, 3, 4]) if r.random() < 0.1 else r.randint(1, 4)
            for _ in range(rank)]


def _setting(r, op, position, n_data):
    """An initializer for a settings input: int64 values (mostly small, some boundary), or floats
    for scales, ratios, bounds and pad values."""
    floats = (op in ("Resize", "Upsample") and position in (1, 2)) or op in ("Clip", "Dropout") \
        or (op == "Pad" and position == 2)
    size = r.choice([0, 1, 1, n_data, n_data, 2 * n_data, 5])
    if op in ("Range", "Clip", "Dropout") or (op == "Pad" and position == 2):
        size = None  # scalars
    if floats:
        values = [r.choice([0.5, 1.0, 2.0, 3.0] + FLOAT_VALUES) for _ in range(size or 1)]
        arr = np.array(values, np.float32)
    else:
        arr = np.array([_an_int(r) for _ in range(size or 1)], np.int64)
    return arr.reshape(()) if size is None else arr


def _fitting(op, r, opset):
    """For the operators whose inputs must fit one another (convolution and pooling windows,
    normalisation parameters, matrix shapes, resize factors, pads), settings and shapes that
    mostly do, so that the boundary values meet the code that runs, not the first shape check:
    (attributes, [("data", shape) | ("init", array) | ("", None)]), or None for other operators."""
    def ints(n, lo, hi):
        return [r.randint(lo, hi) if r.random() < 0.92 else _an_int(r) for _ in range(n)]

    nd = r.choice([1, 2, 2, 2, 3])
    group = r.choice([1, 1, 1, 2]) if op in ("Conv", "ConvTranspose") else 1
    n, c = r.randint(1, 2), group * r.randint(1, 2)
    x = [n, c] + [r.randint(1, 6) for _ in range(nd)]
    attrs = {}
    if op in ("Conv", "ConvTranspose", "MaxPool", "AveragePool"):
        if op in ("MaxPool", "AveragePool") or r.random() < 0.3:
            attrs["kernel_shape"] = ints(nd, 1, 3)
        for key, lo, hi, p in (("strides", 1, 3, 0.5), ("dilations", 1, 2, 0.4),
                               ("pads", 0, 2, 0.5), ("output_padding", 0, 1, 0.2),
                               ("output_shape", 1, 12, 0.1)):
            if (key not in ("output_padding", "output_shape") or op == "ConvTranspose") \
                    and r.random() < p:
                attrs[key] = ints(2 * nd if key == "pads" else nd, lo, hi)
        if r.random() < 0.25:
            attrs["auto_pad"] = r.choice(STRINGS["auto_pad"])
        if op in ("MaxPool", "AveragePool"):
            attrs["ceil_mode"] = r.choice([0, 1])
            if op == "AveragePool":
                attrs["count_include_pad"] = r.choice([0, 1])
            if op == "MaxPool" and r.random() < 0.3:
                attrs["storage_order"] = r.choice([0, 1])
            return attrs, [("data", x)]
        if group > 1:
            attrs["group"] = group
        kernel = attrs.get("kernel_shape") or ints(nd, 1, 3)
        m = group * r.randint(1, 2)
        w = [m, c // group] + kernel if op == "Conv" else [c, m // group] + kernel
        bias = [("data", [m])] if r.random() < 0.5 else []
        return attrs, [("data", x), ("data", w)] + bias
    if op in ("BatchNormalization", "InstanceNormalization"):
        attrs["epsilon"] = r.choice([1e-5, 1e-3] + FLOAT_VALUES)
        params = 4 if op == "BatchNormalization" else 2
        inits = [("init", np.abs(_f32(np.random.default_rng(r.randrange(99)), c)) + 0.1)
                 for _ in range(params)]
        return attrs, [("data", x)] + inits
    if op in ("Resize", "Upsample"):
        rank = len(x)
        factors = np.array([r.choice([1.0, 1.0, 2.0, 0.5, 3.0, 1.5] + FLOAT_VALUES[:3])
                            for _ in range(rank)], np.float32)
        attrs["mode"] = "nearest"
        if op == "Upsample":
            return attrs, [("data", x), ("init", factors)]
        modes = STRINGS["coordinate_transformation_mode"][:6]  # not tf_crop_and_resize (linear)
        attrs["coordinate_transformation_mode"] = r.choice(modes)
        attrs["nearest_mode"] = r.choice(STRINGS["nearest_mode"])
        if opset < 11:
            return attrs, [("data", x), ("init", factors)]
        if r.random() < 0.5:
            return attrs, [("data", x), ("", None), ("init", factors)]
        if opset >= 18 and r.random() < 0.5:
            attrs["keep_aspect_ratio_policy"] = r.choice(STRINGS["keep_aspect_ratio_policy"])
            if r.random() < 0.5:
                attrs["axes"] = [rank - 2, rank - 1]
                rank = 2
        sizes = np.array([r.randint(0, 7) if r.random() < 0.9 else _an_int(r)
                          for _ in range(rank)], np.int64)
        return attrs, [("data", x), ("", None), ("", None), ("init", sizes)]
    if op == "Pad":
        rank = len(x)
        attrs["mode"] = r.choice(["constant", "reflect", "edge", "wrap"])
        pads = np.array(ints(2 * rank, -1, 2), np.int64)
        if opset < 11:
            attrs["pads"] = pads.tolist()
            return attrs, [("data", x)]
        return attrs, [("data", x), ("init", pads)]
    if op in ("Gemm", "MatMul"):
        a, k, b = r.randint(1, 4), r.randint(1, 4), r.randint(1, 4)
        if op == "MatMul":
            batch = [r.randint(1, 3) for _ in range(r.randrange(3))]
            return attrs, [("data", batch + [a, k]), ("data", [k, b])]
        attrs.update(transA=r.choice([0, 1]), transB=r.choice([0, 1]),
                     alpha=r.choice([1.0, 0.5] + FLOAT_VALUES), beta=r.choice([1.0, 2.0]))
        sa = [k, a] if attrs["transA"] else [a, k]
        sb = [b, k] if attrs["transB"] else [k, b]
        bias = [("data", r.choice([[b], [a, b], [1], []]))] if r.random() < 0.7 else []
        return attrs, [("data", sa), ("data", sb)] + bias
    return None


def _single_op_model(op, r):
    opset = r.choice([MAX_OPSET, 19, 18, 13, 13, 11, 9])
    schema = _schema(op, opset)
    fitting = _fitting(op, r, opset) if r.random() < 0.85 else None
    if fitting is not None:
        return _fitting_model(op, r, opset, schema, *fitting)
    attrs = {}
    for name, spec in schema.attributes.items():
        if r.random() < (0.95 if spec.required else 0.5):
            value = _attribute_value(name, int(spec.type), r)
            if value is not None:
                attrs[name] = value
    lo, hi = schema.min_input, schema.max_input
    n_in = r.randint(lo, min(hi, lo + 3))
    shape = _shape(r, op)
    dtype = r.choice(DATA_TYPES)
    inputs, graph_inputs, inits = [], [], []
    for i in range(n_in):
        name = f"in{i}"
        formal = schema.inputs[min(i, len(schema.inputs) - 1)]
        if i >= lo and formal.option == onnx.defs.OpSchema.FormalParameterOption.Optional \
                and r.random() < 0.3:
            inputs.append("")
            continue
        if i in STATIC_INPUTS.get(op, ()) or formal.type_str == "tensor(int64)":
            inits.append(numpy_helper.from_array(_setting(r, op, i, len(shape)), name))
        else:
            s = shape if r.random() < 0.7 else _shape(r, op)
            t = dtype if r.random() < 0.9 else r.choice(DATA_TYPES)
            graph_inputs.append(_vi(name, s, t))
        inputs.append(name)
    return _assemble(op, r, opset, schema, attrs, inputs, graph_inputs, inits)


def _fitting_model(op, r, opset, schema, attrs, specs):
    inputs, graph_inputs, inits = [], [], []
    for i, (kind, value) in enumerate(specs):
        name = f"in{i}" if kind else ""
        if kind == "data":
            graph_inputs.append(_vi(name, value))
        elif kind == "init":
            inits.append(numpy_helper.from_array(value, name))
        inputs.append(name)
    return _assemble(op, r, opset, schema, attrs, inputs, graph_inputs, inits)


def _assemble(op, r, opset, schema, attrs, inputs, graph_inputs, inits):
    """The one-node model, and a label that says what it holds."""
    if not graph_inputs:  # a graph needs an input to feed
        graph_inputs.append(_vi("unused", [1]))
    attrs = {k: v for k, v in attrs.items() if k in schema.attributes}
    n_out = r.randint(schema.min_output, min(schema.max_output, schema.min_output + 2))
    outputs = [f"out{i}" for i in range(n_out)]
    node = helper.make_node(op, inputs, outputs, name=f"the_{op.lower()}")
    for name, value in attrs.items():  # typed by the schema: an empty list needs its type
        node.attribute.append(helper.make_attribute(
            name, value, attr_type=int(schema.attributes[name].type)))
    graph = helper.make_graph([node], "single", graph_inputs,
                              [helper.make_tensor_value_info(o, 0, None) for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    shapes = [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph_inputs]
    settings = [numpy_helper.to_array(t).tolist() for t in inits]
    return model, f"{op} opset {opset} {attrs} inputs {shapes} settings {settings}"


# ====================================================================================== the test
@pytest.fixture
def bounded_memory():
    """An address-space limit a little above what the process uses, for the test's duration, and
    tracemalloc on, so an absurd allocation fails fast (as a MemoryError, counted as an escape)."""
    with open("/proc/self/statm") as f:
        vm_pages = int(f.read().split()[0])
    current = vm_pages * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    target = current + ADDRESS_HEADROOM
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    resource.setrlimit(resource.RLIMIT_AS, (target, hard))
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _base_shapes(model):
    return {v.name: [d.dim_value if d.HasField("dim_value") else 2 for d in
                     v.type.tensor_type.shape.dim] for v in model.graph.input}


def test_the_base_models_run():
    rng = np.random.default_rng(0)
    for name, build in BASES.items():
        model = build(np.random.default_rng(1))
        onnx.checker.check_model(model, full_check=True)
        tally = Tally(name)
        run_case(tally, name, model, _base_shapes(model), rng)
        assert tally.ran == 1, (name, tally.escapes)


STRUCTURED_CASES_PER_MODEL = 250
BYTE_CASES_PER_MODEL = 80


SINGLE_OP_CASES = 25  # per operator


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # nan and inf are what the cases feed
def test_fuzz_onnx_single_operators(bounded_memory, capsys):
    tally = Tally("ONNX single operators")
    for op in sorted(set(OPS) - {"Constant"}):
        for case in range(SINGLE_OP_CASES):
            r = random.Random(f"{SEED}-{op}-{case}")
            model, label = _single_op_model(op, r)
            run_case(tally, f"case {case}: {label}", model, {}, np.random.default_rng(case))
    with capsys.disabled():
        print("\n" + tally.line())
    assert not tally.escapes, f"{len(tally.escapes)} escapes:\n" + "\n".join(tally.escapes[:40])
    assert tally.ran >= tally.cases // 10, tally.line()
    assert tally.load_errors + tally.run_errors >= tally.cases // 10, tally.line()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # nan and inf are what the mutations feed
def test_fuzz_onnx_mutations(bounded_memory, capsys):
    tallies = {"structured": Tally("ONNX structured mutations"),
               "bytes": Tally("ONNX byte-level mutations")}
    weights = [w for _, w in MUTATORS]
    for name, build in BASES.items():
        base = build(np.random.default_rng(1))
        shapes = _base_shapes(base)
        fv.onnx.load(base)(**{k: _input_for(v, shapes, np.random.default_rng(0))
                              for k, v in ((v.name, v) for v in base.graph.input)})  # warm up
        for case in range(STRUCTURED_CASES_PER_MODEL):
            r = random.Random(f"{SEED}-{name}-{case}")
            m = onnx.ModelProto()
            m.CopyFrom(base)
            done = []
            for _ in range(r.choice([1, 1, 1, 2, 3])):
                fn = r.choices([f for f, _ in MUTATORS], weights)[0]
                done.append(fn(m, r))
            run_case(tallies["structured"], f"{name} case {case}: {'; '.join(done)}", m, shapes,
                     np.random.default_rng(case))
        data = base.SerializeToString()
        for case in range(BYTE_CASES_PER_MODEL):
            r = random.Random(f"{SEED}-{name}-bytes-{case}")
            run_case(tallies["bytes"], f"{name} bytes case {case}", _mutate_bytes(data, r), shapes,
                     np.random.default_rng(case))
    with capsys.disabled():
        for t in tallies.values():
            print("\n" + t.line())
    for t in tallies.values():
        assert not t.escapes, f"{len(t.escapes)} escapes:\n" + "\n".join(t.escapes[:40])
        # both outcomes in meaningful numbers: the mutations neither break everything nor nothing
        assert t.ran >= t.cases // 10, t.line()
        assert t.load_errors + t.run_errors >= t.cases // 10, t.line()
