"""Broken and hostile ONNX files: each is refused with an OnnxLoadError (a ValueError) that names the
file and the tensor, node or value at fault, before any large allocation, and without touching
files outside the model's folder. Also a missing file, files that are not ONNX at all, operators
from other domains and opsets out of range."""
import os
import tracemalloc

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import foveanet as fv  # noqa: E402
from foveanet.interop.onnx_import import OnnxFileNotFoundError, OnnxLoadError  # noqa: E402


def _model(nodes=None, inits=(), inputs=None, outputs=None, opset=13, domains=()):
    """x (2, 3) -> MatMul with 'w' (3, 4) -> + 'b' -> Relu -> y, unless told otherwise."""
    if nodes is None:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                 helper.make_node("Add", ["h", "b"], ["hb"], name="add"),
                 helper.make_node("Relu", ["hb"], ["y"], name="relu")]
        inits = [numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "w"),
                 numpy_helper.from_array(np.ones(4, dtype=np.float32), "b")]
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])]
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=opsets)


def _save(model, folder, name="model.onnx"):
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


def test_the_reference_model_loads(tmp_path):
    m = fv.onnx.load(_save(_model(), tmp_path))
    out = m(np.ones((2, 3), dtype=np.float32))
    np.testing.assert_array_equal(out.detach().numpy(), np.ones((2, 3)) @ np.arange(12).reshape(3, 4) + 1)


# ------------------------------------------------------------------------------ not a model
def test_missing_file(tmp_path):
    path = tmp_path / "nope.onnx"
    with pytest.raises(OnnxFileNotFoundError, match="nope.onnx: no such file") as e:
        fv.onnx.load(path)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, OnnxLoadError)
    with pytest.raises(OnnxLoadError, match="not a regular file"):
        fv.onnx.load(tmp_path)


@pytest.mark.parametrize("content", [
    b"",                                                 # empty
    b"hello, this is a text file, not a model\n",         # text
    b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,          # an image header and noise
    b'{"model": "resnet", "layers": [1, 2, 3]}',          # JSON
    bytes([0x0A, 0x05, 0x68, 0x65]),                      # a protobuf field cut short
])
def test_not_an_onnx_file(tmp_path, content):
    path = tmp_path / "fake.onnx"
    path.write_bytes(content)
    with pytest.raises(OnnxLoadError, match="fake.onnx: .*(not a valid ONNX file|not an ONNX model|"
                                            "empty)"):
        fv.onnx.load(path)


def test_truncated_protobuf_at_every_cut(tmp_path):
    # every prefix of a real model is refused with an OnnxLoadError: never another exception,
    # never a crash (cuts inside varints, inside raw_data, between fields)
    data = _model().SerializeToString()
    path = tmp_path / "cut.onnx"
    for cut in range(0, len(data) - 1, 3):
        path.write_bytes(data[:cut])
        with pytest.raises(OnnxLoadError, match="cut.onnx"):
            fv.onnx.load(path)
    # and as bytes, without a file name
    with pytest.raises(OnnxLoadError, match="<bytes>"):
        fv.onnx.load(data[: len(data) // 2])


def test_wrong_source_type():
    with pytest.raises(TypeError, match="path, bytes or an onnx.ModelProto"):
        fv.onnx.load(12)


# ------------------------------------------------------------------------------ the graph
def test_graph_with_a_cycle():
    nodes = [helper.make_node("Add", ["x", "c"], ["a"], name="first"),
             helper.make_node("Relu", ["a"], ["c"], name="second"),
             helper.make_node("Identity", ["a"], ["y"], name="out")]
    with pytest.raises(OnnxLoadError, match=r"cycle: nodes 'first', 'second'"):
        fv.onnx.load(_model(nodes))


def test_value_read_before_anyone_writes_it():
    nodes = [helper.make_node("Relu", ["ghost"], ["y"], name="r")]
    with pytest.raises(OnnxLoadError, match=r"node r reads 'ghost', which no node"):
        fv.onnx.load(_model(nodes))


def test_value_written_twice_and_inputs_overwritten():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="a"),
             helper.make_node("Neg", ["x"], ["y"], name="b")]
    with pytest.raises(OnnxLoadError, match="'y' is produced by two nodes, a and b"):
        fv.onnx.load(_model(nodes))
    nodes = [helper.make_node("Relu", ["x"], ["x"], name="self"),
             helper.make_node("Relu", ["x"], ["y"])]
    with pytest.raises(OnnxLoadError, match="node self overwrites 'x'"):
        fv.onnx.load(_model(nodes))


def test_output_nobody_computes():
    outputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])]
    with pytest.raises(OnnxLoadError, match="graph output 'z' is computed by no node"):
        fv.onnx.load(_model(outputs=outputs))


def test_negative_declared_dimension():
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-3, 3])]
    with pytest.raises(OnnxLoadError, match="'x' declares a negative dimension -3"):
        fv.onnx.load(_model(inputs=inputs))


# ---------------------------------------------------------------------------- the tensors
def _tensor(name, dims, raw=b"", dtype=TensorProto.FLOAT):
    t = TensorProto()
    t.name, t.data_type = name, dtype
    t.dims.extend(dims)
    t.raw_data = raw
    return t


def _with_weight(w):
    return _model(inits=[w, numpy_helper.from_array(np.ones(4, dtype=np.float32), "b")],
                  nodes=[helper.make_node("MatMul", ["x", "w"], ["h"]),
                         helper.make_node("Add", ["h", "b"], ["y"])])


def test_raw_data_shorter_than_the_shape(tmp_path):
    path = _save(_with_weight(_tensor("w", [3, 4], raw=b"\0" * 16)), tmp_path)
    with pytest.raises(OnnxLoadError, match=r"model.onnx: initializer 'w': its shape \[3, 4\] \(float32\) "
                                            r"needs 48 bytes of raw_data but the file holds 16"):
        fv.onnx.load(path)


def test_typed_data_count_mismatch():
    w = _tensor("w", [3, 4])
    w.ClearField("raw_data")
    w.float_data.extend([1.0] * 5)
    with pytest.raises(OnnxLoadError, match=r"initializer 'w': its shape \[3, 4\] declares 12 values "
                                            r"but it holds 5"):
        fv.onnx.load(_with_weight(w))


def test_absurd_shape_is_refused_before_allocating():
    w = _tensor("w", [2 ** 40, 2 ** 40], raw=b"\0" * 64)
    tracemalloc.start()
    try:
        with pytest.raises(OnnxLoadError, match=r"initializer 'w': its shape \[1099511627776, "
                                                r"1099511627776\] declares \d+ bytes, more than the "
                                                r"limit"):
            fv.onnx.load(_with_weight(w))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, f"peak allocation {peak} bytes while refusing the tensor"


def test_tensor_limit_is_configurable():
    w = numpy_helper.from_array(np.zeros((3, 4), dtype=np.float32), "w")
    with pytest.raises(OnnxLoadError, match="more than the limit of 40"):
        fv.onnx.load(_with_weight(w), max_tensor_bytes=40)
    fv.onnx.load(_with_weight(w), max_tensor_bytes=48)


def test_negative_tensor_dims():
    with pytest.raises(OnnxLoadError, match=r"initializer 'w': negative dimension in its shape \[-1, 4\]"):
        fv.onnx.load(_with_weight(_tensor("w", [-1, 4], raw=b"\0" * 16)))


@pytest.mark.parametrize("dtype,name", [(TensorProto.STRING, "STRING"), (TensorProto.COMPLEX64, "COMPLEX64"),
                                        (0, "UNDEFINED")])
def test_unsupported_tensor_types(dtype, name):
    with pytest.raises(OnnxLoadError, match=f"initializer 'w': ONNX data type {dtype} \\({name}\\)"):
        fv.onnx.load(_with_weight(_tensor("w", [3, 4], dtype=dtype)))


def test_constant_node_tensor_is_checked_too():
    bad = _tensor("", [1000, 1000], raw=b"\0" * 8)
    nodes = [helper.make_node("Constant", [], ["c"], name="k", value=bad),
             helper.make_node("Add", ["x", "c"], ["y"])]
    with pytest.raises(OnnxLoadError, match=r"node k: attribute 'value': its shape \[1000, 1000\]"):
        fv.onnx.load(_model(nodes))


def test_data_driven_allocation_is_bounded_at_run_time():
    # ConstantOfShape with a huge shape computed from data: a clear error, no MemoryError
    shape = numpy_helper.from_array(np.array([1 << 20, 1 << 20], dtype=np.int64), "shape")
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"], name="fill"),
             helper.make_node("Add", ["x", "big"], ["y"])]
    m = fv.onnx.load(_model(nodes, inits=[shape]))
    with pytest.raises(ValueError, match=r"node 'fill' \(ConstantOfShape\): the output shape "
                                         r"\(1048576, 1048576\) needs 4398046511104 bytes, over "
                                         r"the limit"):
        m(np.ones((2, 3), dtype=np.float32))


# ---------------------------------------------------------------------------- external data
def _external(name, location, offset=None, length=None, dims=(3, 4)):
    t = _tensor(name, list(dims))
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    entries = {"location": location}
    if offset is not None:
        entries["offset"] = str(offset)
    if length is not None:
        entries["length"] = str(length)
    for k, v in entries.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def test_external_data_inside_the_folder_loads(tmp_path):
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    (tmp_path / "weights.bin").write_bytes(b"\xff" * 8 + w.tobytes())
    path = _save(_with_weight(_external("w", "weights.bin", offset=8, length=48)), tmp_path)
    m = fv.onnx.load(path)
    np.testing.assert_array_equal(m.get_parameter("w").data, w)
    saved = m.to_model_proto()  # written back inline
    assert saved.graph.initializer[0].data_location == TensorProto.DEFAULT
    np.testing.assert_array_equal(numpy_helper.to_array(saved.graph.initializer[0]), w)
    # in a sub-folder too
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "w.bin").write_bytes(w.tobytes())
    m = fv.onnx.load(_save(_with_weight(_external("w", "data/w.bin")), tmp_path, "sub.onnx"))
    np.testing.assert_array_equal(m.get_parameter("w").data, w)
    # from bytes, with base_dir given
    data = _with_weight(_external("w", "data/w.bin")).SerializeToString()
    with pytest.raises(OnnxLoadError, match="pass base_dir= to load"):
        fv.onnx.load(data)
    np.testing.assert_array_equal(fv.onnx.load(data, base_dir=tmp_path).get_parameter("w").data, w)


@pytest.mark.parametrize("location", ["/etc/passwd", "../secret.bin", "data/../../secret.bin",
                                      "..\\secret.bin", "C:\\Windows\\win.ini", ""])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 48)
    path = _save(_with_weight(_external("w", location)), folder)
    with pytest.raises(OnnxLoadError, match=r"initializer 'w': external data location .* points "
                                            r"outside the model's folder"):
        fv.onnx.load(path)


def test_external_data_symlink_out_of_the_folder_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 48)
    try:
        os.symlink(tmp_path / "secret.bin", folder / "w.bin")
    except (OSError, NotImplementedError):
        pytest.skip("no symbolic links here")
    path = _save(_with_weight(_external("w", "w.bin")), folder)
    with pytest.raises(OnnxLoadError, match=r"resolves to .*secret.bin, outside the model's folder"):
        fv.onnx.load(path)


@pytest.mark.parametrize("offset,length,match", [
    (0, 47, "external data length 47 does not match the 48 bytes"),
    (16, 48, r"needs 48 bytes at offset 16 but .* has only 48 bytes"),
    (-4, None, "negative external data offset -4"),
    ("x", None, "are not integers"),
])
def test_external_data_sizes_are_checked(tmp_path, offset, length, match):
    (tmp_path / "w.bin").write_bytes(b"\0" * 48)
    path = _save(_with_weight(_external("w", "w.bin", offset=offset, length=length)), tmp_path)
    with pytest.raises(OnnxLoadError, match=match):
        fv.onnx.load(path)


def test_external_data_file_missing(tmp_path):
    path = _save(_with_weight(_external("w", "gone.bin")), tmp_path)
    with pytest.raises(OnnxLoadError, match=r"initializer 'w': external data file .*gone.bin does not "
                                            r"exist"):
        fv.onnx.load(path)


# ----------------------------------------------------------------- operators and opsets
def test_operator_from_another_domain():
    nodes = [helper.make_node("FusedConv", ["x"], ["h"], name="fc", domain="com.microsoft"),
             helper.make_node("Relu", ["h"], ["y"])]
    with pytest.raises(OnnxLoadError, match=r"operators from other domains .*: "
                                            r"com.microsoft:FusedConv \('fc'\)"):
        fv.onnx.load(_model(nodes, domains=["com.microsoft"]))


def test_unused_domain_import_is_harmless():
    fv.onnx.load(_model(domains=["ai.onnx.ml"]))


@pytest.mark.parametrize("opset", [1, 5, 999])
def test_opset_out_of_range(opset):
    with pytest.raises(OnnxLoadError, match=f"opset {opset} is not supported"):
        fv.onnx.load(_model(opset=opset))


def test_no_default_opset():
    m = _model()
    del m.opset_import[:]
    m.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    with pytest.raises(OnnxLoadError, match="imports no version of the default ONNX operator set"):
        fv.onnx.load(m)


def test_many_nodes_load_without_recursion_limits():
    # a long chain (deeper than Python's recursion limit) sorts and runs iteratively
    n = 3000
    nodes = [helper.make_node("Relu", ["x" if i == 0 else f"v{i}"], [f"v{i + 1}"]) for i in range(n)]
    nodes.append(helper.make_node("Identity", [f"v{n}"], ["y"]))
    m = fv.onnx.load(_model(nodes, outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]))
    with fv.no_grad():
        out = m(np.array([[-1.0, 0.5, 2.0]], dtype=np.float32))
    np.testing.assert_array_equal(out.numpy(), [[0.0, 0.5, 2.0]])


@pytest.mark.parametrize("op,attrs", [
    ("ConvTranspose", {"strides": [1 << 30, 1 << 30]}),
    ("Conv", {"pads": [1 << 30, 0, 0, 1 << 30]}),
    ("MaxPool", {"kernel_shape": [1, 1], "pads": [0, 0, 1 << 31, 1 << 31]}),
])
def test_attribute_driven_sizes_are_bounded(op, attrs):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inputs, inits = ["x"], []
    if op != "MaxPool":
        inputs.append("w")
        inits.append(numpy_helper.from_array(np.ones((1, 1, 1, 1), dtype=np.float32), "w"))
    graph = helper.make_graph([helper.make_node(op, inputs, ["y"], name="big", **attrs)], "g", [x],
                              [y], inits)
    m = fv.onnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    with pytest.raises(ValueError, match=rf"node 'big' \({op}\): the output shape .* over the limit"):
        m(np.ones((1, 1, 2, 2), dtype=np.float32))


def test_long_identity_chain_from_an_initializer():
    n = 3000
    nodes = [helper.make_node("Identity", ["w" if i == 0 else f"w{i}"], [f"w{i + 1}"]) for i in range(n)]
    nodes.append(helper.make_node("Add", ["x", f"w{n}"], ["y"]))
    w = numpy_helper.from_array(np.ones(3, dtype=np.float32), "w")
    m = fv.onnx.load(_model(nodes, inits=[w]))
    assert [k for k, _ in m.named_parameters()] == ["w"]  # seen through the chain: a parameter


# ------------------------------------------------- settings found by fuzzing (test_fuzz_onnx.py)
from foveanet.interop.onnx_import import OnnxNodeError  # noqa: E402


def _one_node(op, attrs=None, x_shape=(1, 1, 4, 4), inputs=("x",), inits=(), opset=13,
              outputs=("y",)):
    """A graph of one node reading graph input 'x' and initializers ``inits``."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    ys = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    node = helper.make_node(op, list(inputs), list(outputs), name="n", **(attrs or {}))
    graph = helper.make_graph([node], "g", [x], ys, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


_W = numpy_helper.from_array(np.ones((1, 1, 1, 1), dtype=np.float32), "w")


@pytest.mark.parametrize("op,attrs,match", [
    # a stride of 0 divided the pooling geometry (ZeroDivisionError)
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [0, 0]},
     r"node n \(MaxPool\): strides=\[0, 0\]: every stride must be from 1 to 2147483647"),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [1, -1]}, r"strides=\[1, -1\]"),
    ("MaxPool", {"kernel_shape": [0, 2]}, r"kernel_shape=\[0, 2\]: every kernel size"),
    ("AveragePool", {"kernel_shape": [2, 2], "dilations": [0, 1]}, r"dilations=\[0, 1\]"),
    ("MaxPool", {"kernel_shape": [2, 2], "pads": [-1, 0, 0, 0]},
     r"pads=\[-1, 0, 0, 0\]: every pad must be at least 0"),
    # 2**63 - 1 overflowed the conversion to a C long in the kernels (OverflowError)
    ("Conv", {"strides": [1, 2 ** 63 - 1]}, r"node n \(Conv\): strides=\[1, 9223372036854775807\]"),
    ("Conv", {"group": 0}, r"node n \(Conv\): group=0: the number of groups must be at least 1"),
    ("ConvTranspose", {"output_padding": [-1, 0]}, r"output_padding=\[-1, 0\]"),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [1]},
     r"the window settings disagree on the number of spatial axes: kernel_shape=\[2, 2\], "
     r"strides=\[1\]"),
    ("MaxPool", {"kernel_shape": [2, 2], "pads": [1, 1, 1]}, r"pads=\[1, 1, 1\] should have an even"),
    ("AveragePool", {"kernel_shape": [2, 2], "auto_pad": "SAME_UPPER", "pads": [1, 1, 1, 1]},
     r"auto_pad='SAME_UPPER' and pads=\[1, 1, 1, 1\] cannot be used together"),
    ("ReduceMean", {"keepdims": 2}, r"node n \(ReduceMean\): keepdims=2: must be 0 or 1"),
    ("LRN", {"size": 0}, r"node n \(LRN\): size=0: the window must hold at least 1 channel"),
    ("Transpose", {"perm": [0, 0, 1, 2]}, r"perm=\[0, 0, 1, 2\] is not a permutation"),
    ("Split", {"axis": 1, "num_outputs": 0},
     r"node n \(Split\): num_outputs=0, but the node has 1 outputs"),  # was a ZeroDivisionError
    ("Cast", {"to": 999}, r"node n \(Cast\): attribute to=999: ONNX data type 999 \(unknown\)"),
])
def test_bad_settings_are_refused_at_load(op, attrs, match):
    inputs, inits = ("x",), ()
    if op in ("Conv", "ConvTranspose"):
        inputs, inits = ("x", "w"), (_W,)
    opset = 18 if op == "Split" else 13
    with pytest.raises(OnnxLoadError, match=match):
        fv.onnx.load(_one_node(op, attrs, inputs=inputs, inits=inits, opset=opset))


@pytest.mark.parametrize("node,match", [
    # a list where one float belongs: float() of a list at the first forward (TypeError)
    (helper.make_node("Gemm", ["x", "x"], ["y"], name="n", alpha=[0.5]),
     r"node n \(Gemm\): attribute 'alpha' is of type FLOATS, but Gemm takes FLOAT"),
    # a required attribute missing: int(None) at the first forward (TypeError)
    (helper.make_node("LRN", ["x"], ["y"], name="n"),
     r"node n \(LRN\): the required attribute 'size' is missing"),
    # a required input left empty: None.ndim at the first forward (AttributeError)
    (helper.make_node("Conv", ["x", "", "x"], ["y"], name="n"),
     r"node n \(Conv\): input 1 \(W\) is required but empty"),
    # too many inputs or outputs: a Python call error at the first forward (TypeError)
    (helper.make_node("Relu", ["x", "x"], ["y"], name="n"), r"node n \(Relu\): 2 inputs, but Relu takes 1"),
    (helper.make_node("Relu", ["x"], ["y", "z"], name="n"), r"node n \(Relu\): 2 outputs, but Relu has 1"),
])
def test_nodes_are_checked_against_their_schema(node, match):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(OnnxLoadError, match=match):
        fv.onnx.load(model)


def test_attribute_of_undefined_type():
    model = _one_node("Relu")
    a = model.graph.node[0].attribute.add()
    a.name = "alpha"  # no type: read as None, which the operator then took for a value
    with pytest.raises(OnnxLoadError, match=r"node n: attribute 'alpha' has no type \(UNDEFINED\)"):
        fv.onnx.load(model)


def test_text_that_is_not_utf8():
    # protobuf's upb parser hands invalid UTF-8 in a string field back as bytes: sorting the
    # unsupported operators' names then raised a TypeError
    data = bytearray(_model().SerializeToString())
    at = data.index(b"Relu")
    data[at:at + 4] = b"\xff\xfe\xfd\xfc"
    with pytest.raises(OnnxLoadError, match=r"<bytes>: the onnx.NodeProto.op_type field "
                                            r"b'\\xff\\xfe\\xfd\\xfc' is not valid UTF-8 text"):
        fv.onnx.load(bytes(data))


def test_declared_input_shape_over_the_limit():
    model = _model(inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1 << 40, 3])])
    with pytest.raises(OnnxLoadError, match=r"graph input 'x' declares the shape \(1099511627776, 3\), "
                                            r"13194139533312 bytes or more, over the limit"):
        fv.onnx.load(model)
    with pytest.raises(OnnxLoadError, match=r"graph input 'x': ONNX data type 77 \(unknown\)"):
        fv.onnx.load(_model(inputs=[helper.make_tensor_value_info("x", 77, [2, 3])]))


def _run_one(op, attrs=None, x=None, inits=(), inputs=None, opset=13, outputs=("y",)):
    x = np.ones((1, 1, 4, 4), dtype=np.float32) if x is None else x
    inputs = inputs or ["x"] + [t.name for t in inits]
    m = fv.onnx.load(_one_node(op, attrs, x_shape=x.shape, inputs=inputs, inits=inits, opset=opset,
                               outputs=outputs))
    with fv.no_grad():
        return m(x)


def _i64(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _f32(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.float32), name)


@pytest.mark.parametrize("op,kwargs,match", [
    # an infinite or nan bound: math.ceil(inf) (OverflowError)
    ("Range", dict(inits=[_f32("s", 0.0), _f32("l", np.inf), _f32("d", 1.0)], inputs=["s", "l", "d"]),
     r"node 'n' \(Range\): Range start 0.0, limit inf and delta 1.0 must be finite"),
    # an infinite scale: int(inf) (OverflowError)
    ("Resize", dict(inits=[_f32("scales", [1, 1, np.inf, 1])], inputs=["x", "", "scales"]),
     r"node 'n' \(Resize\): scales=\[1.0, 1.0, inf, 1.0\]: every scale must be positive and finite"),
    # an index out of range: a bare IndexError
    ("Gather", dict(inits=[_i64("i", [7])], attrs={"axis": 2}),
     r"node 'n' \(Gather\): index 7 is out of range for axis 2 of size 4"),
    # fewer split sizes than outputs: the node produced fewer values than it declares, and the
    # reader of the missing one met a RuntimeError
    ("Split", dict(inits=[_i64("split", [4])], attrs={"axis": 2}, outputs=("y", "z")),
     r"node 'n' \(Split\): split sizes \[4\]: one size of at least 0 per output \(2 outputs\)"),
    # a crop larger than the axis, then padding: no one meaning
    ("Pad", dict(inits=[_i64("pads", [0, 0, -5, 0, 0, 0, 1, 0])]),
     r"node 'n' \(Pad\): pads \[0, 0, -5, 0, 0, 0, 1, 0\] remove 5 elements of axis 2, which has 4"),
    ("Tile", dict(inits=[_i64("r", [1, 1, -1, 1])]), r"node 'n' \(Tile\): repeats \[1, 1, -1, 1\] "
                                                     r"cannot be negative"),
    # output_shape far larger than the computed positions: padding without bound
    ("ConvTranspose", dict(inits=[_W], attrs={"output_shape": [1 << 40, 4]}),
     r"node 'n' \(ConvTranspose\): the output shape \(1, 1, 1099511627776, 4\) needs \d+ bytes, "
     r"over the limit"),
])
def test_bad_values_at_the_first_forward(op, kwargs, match):
    with pytest.raises(OnnxNodeError, match=match) as e:
        _run_one(op, **kwargs)
    assert isinstance(e.value, OnnxLoadError) and isinstance(e.value, ValueError)


def test_forward_errors_are_onnx_node_errors():
    m = fv.onnx.load(_model())
    with pytest.raises(OnnxNodeError, match=r"node 'mm' \(MatMul\)") as e:
        m(np.ones((2, 5), dtype=np.float32))  # the right rank, not the right size
    assert isinstance(e.value, OnnxLoadError) and isinstance(e.value, ValueError)


def test_empty_axes_do_not_hide_huge_ones():
    # an empty batch with huge pads: the padded tensor is empty, but per-axis work (window
    # counts, index maps) is sized by the other axes; 0 counts as 1 in the memory check
    x = np.ones((0, 1, 4, 4), dtype=np.float32)
    with pytest.raises(OnnxLoadError, match=r"the output shape \(0, 1, 1099511627780, 4\) is empty, "
                                            r"but its other axes span \d+ bytes, over the limit"):
        _run_one("AveragePool", {"kernel_shape": [1, 1], "pads": [1 << 40, 0, 0, 0]}, x=x)
    # an empty input tiled by a huge count: a list of 2**40 pieces (MemoryError) before
    y = _run_one("Tile", x=np.ones((1, 0, 4, 4), dtype=np.float32), inits=[_i64("r", [1, 1 << 40, 1, 1])])
    assert tuple(y.shape) == (1, 0, 4, 4)


def test_resize_to_size_zero():
    # sizes of 0 with half_pixel_symmetric divided by the scale of 0 (ZeroDivisionError)
    y = _run_one("Resize", {"coordinate_transformation_mode": "half_pixel_symmetric"},
                 inits=[_i64("sizes", [1, 1, 0, 2])], inputs=["x", "", "", "sizes"], opset=19)
    assert tuple(y.shape) == (1, 1, 0, 2)


def test_constant_of_shape_value_must_hold_one_element():
    value = numpy_helper.from_array(np.zeros(0, dtype=np.float32))
    with pytest.raises(OnnxLoadError, match=r"node n \(ConstantOfShape\): value is a tensor of shape "
                                            r"\[0\]; it must hold one element"):
        fv.onnx.load(_one_node("ConstantOfShape", {"value": value}, inputs=["shape"],
                               inits=[_i64("shape", [2])]))
