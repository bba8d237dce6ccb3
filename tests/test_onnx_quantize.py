"""Post-training int8 quantisation on export (``fv.onnx.export(..., quantize="int8")``) and the
QuantizeLinear / DequantizeLinear import: the file's structure (per-channel int8 weights, uint8
activations), onnxruntime and foveanet reading it alike, outputs near the float model's, the
operators against ONNX's reference implementation, and clear errors that leave no file."""
import os
import platform

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

import foveanet as fv  # noqa: E402
from foveanet import nn  # noqa: E402
from foveanet.backend.cpu.kernels import cpu_flags  # noqa: E402
from onnx import helper, numpy_helper, TensorProto  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402


def _has_vnni() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return True  # the saturation below is x86's
    flags = cpu_flags()
    return not flags or bool(flags & {"avx512_vnni", "avx_vnni"})  # unreadable: as before, True


# onnxruntime's x86 uint8 x int8 kernels on a CPU without VNNI (AVX2 only) multiply with
# VPMADDUBSW, whose int16 pair sums saturate (onnxruntime's quantization documentation says so):
# measured on such a machine, onnxruntime's outputs 0.107 of the range from the float model's,
# foveanet's exact integer arithmetic 0.076. With VNNI both stay under 0.1 and within 0.02 of
# each other.
ORT_TOL, ORT_FV_TOL = (0.1, 0.02) if _has_vnni() else (0.15, 0.15)


def _session(proto):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _cnn():
    fv.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 6 * 6, 10))


def _data(n, seed):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 12, 12), dtype=np.float32)


def _trained_stats(model, x):
    """A few training-mode passes so BatchNorm's running statistics are not the defaults."""
    model.train()
    with fv.no_grad():
        for i in range(0, len(x), 32):
            model(fv.tensor(x[i:i + 32]))
    model.eval()


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    model = _cnn()
    calib, test = _data(256, 1), _data(64, 2)
    _trained_stats(model, calib)
    path = tmp_path_factory.mktemp("q") / "int8.onnx"
    proto = fv.onnx.export(model, fv.tensor(test[:2]), path, quantize="int8", calibration=calib)
    with fv.no_grad():
        ref = model(fv.tensor(test)).numpy()
    return model, proto, path, test, ref


def test_the_file_holds_per_channel_int8_weights_and_uint8_activations(quantized):
    _, proto, path, _, _ = quantized
    assert os.path.exists(path)
    ops = [n.op_type for n in proto.graph.node]
    assert "BatchNormalization" not in ops  # folded before quantising
    assert ops.count("QuantizeLinear") >= 3 and ops.count("DequantizeLinear") >= 6
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    conv_weights = []
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and inits.get(node.input[0]) is not None \
                and inits[node.input[0]].dtype == np.int8 and inits[node.input[0]].ndim == 4:
            conv_weights.append((inits[node.input[0]], inits[node.input[1]]))
    assert sorted(w.shape[0] for w, _ in conv_weights) == [8, 16]
    for w, scale in conv_weights:
        assert scale.shape == (w.shape[0],)  # one scale per output channel
        assert np.abs(w).max() == 127  # symmetric: each channel's largest weight maps to +-127
    quant_outputs = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    zps = [inits[n.input[2]] for n in quant_outputs if len(n.input) > 2 and n.input[2] in inits]
    assert zps and all(z.dtype == np.uint8 for z in zps)


def test_onnxruntime_and_foveanet_run_the_file_near_the_float_model(quantized):
    _, proto, path, test, ref = quantized
    got_ort = _session(proto).run(None, {"input": test})[0]
    loaded = fv.onnx.load(path)
    loaded.eval()
    with fv.no_grad():
        got_fv = loaded(fv.tensor(test)).numpy()
    scale = np.abs(ref).max()
    # int8 steps: the outputs move by a few percent of their range (this untrained net's logits
    # are small, so relatively more), never more (onnxruntime without VNNI: see ORT_TOL)
    assert np.abs(got_ort - ref).max() <= ORT_TOL * scale
    assert np.abs(got_fv - ref).max() <= 0.1 * scale
    assert np.abs(got_fv - got_ort).max() <= ORT_FV_TOL * scale
    assert (got_ort.argmax(1) == ref.argmax(1)).mean() >= 0.9
    assert (got_fv.argmax(1) == got_ort.argmax(1)).mean() >= 0.95
    # the quantisation did something: not the float model's outputs to float rounding
    assert np.abs(got_ort - ref).max() > 1e-4 * scale


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_other_calibration_methods_and_a_loader_of_batches(method, tmp_path):
    model = _cnn()
    calib = _data(128, 3)
    _trained_stats(model, calib)
    loader = [(fv.tensor(calib[i:i + 32]), np.zeros(32)) for i in range(0, 128, 32)]
    proto = fv.onnx.export(model, fv.tensor(calib[:2]), tmp_path / "q.onnx", quantize="int8",
                           calibration=loader, calibration_method=method)
    test = _data(16, 4)
    with fv.no_grad():
        ref = model(fv.tensor(test)).numpy()
    got = _session(proto).run(None, {"input": test})[0]
    # onnxruntime's outputs; 0.125 of the range measured on a CPU without VNNI (see ORT_TOL)
    assert np.abs(got - ref).max() <= ORT_TOL * np.abs(ref).max()


def test_errors_name_the_problem_and_leave_no_file(tmp_path):
    model = _cnn()
    x = fv.tensor(_data(2, 5))
    path = tmp_path / "q.onnx"
    with pytest.raises(ValueError, match="needs calibration data"):
        fv.onnx.export(model, x, path, quantize="int8")
    with pytest.raises(ValueError, match=r"samples of shape \(1, 10, 10\).*\(1, 12, 12\)"):
        fv.onnx.export(model, x, path, quantize="int8",
                       calibration=np.zeros((4, 1, 10, 10), np.float32))
    with pytest.raises(ValueError, match="calibration method 'median'"):
        fv.onnx.export(model, x, path, quantize="int8", calibration=_data(8, 6),
                       calibration_method="median")
    with pytest.raises(ValueError, match="quantize='int4'"):
        fv.onnx.export(model, x, path, quantize="int4", calibration=_data(8, 6))
    with pytest.raises(ValueError, match="no samples"):
        fv.onnx.export(model, x, path, quantize="int8", calibration=[])
    with pytest.raises(TypeError, match="calibration batch 0"):
        fv.onnx.export(model, x, path, quantize="int8", calibration=[np.array(["a", "b"])])
    assert not path.exists()


# ------------------------------------------------------------ the operators, against ONNX's own
def _model(node, inputs, opset=21):
    names = [f"i{k}" for k in range(len(inputs))]
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in zip(names, inputs)],
        [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), names


def _run_both(node, inputs, opset=21):
    model, names = _model(node, inputs, opset)
    expected = ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))[0]
    ours = fv.onnx.load(model)
    got = ours(*[fv.tensor(a) for a in inputs])
    return got.numpy(), expected


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16])
@pytest.mark.parametrize("per_axis", [False, True])
def test_quantize_linear_matches_onnx_reference(dtype, per_axis):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((2, 3, 4)) * 40).astype(np.float32)
    x[0, 0, :4] = [0.5, 1.5, 2.5, -0.5]  # halves round to even
    scale = np.array([1.0, 0.5, 2.0], np.float32) if per_axis else np.array(0.25, np.float32)
    zp = (np.array([3, 0, 7], dtype) if per_axis else np.array(5, dtype))
    got, want = _run_both(helper.make_node("QuantizeLinear", ["i0", "i1", "i2"], ["y"], axis=1),
                          [x, scale, zp])
    assert got.dtype == want.dtype == dtype
    np.testing.assert_array_equal(got, want)
    info = np.iinfo(dtype)
    if dtype != np.int16:  # saturation reached (and matched)
        assert (want == info.max).any() or (want == info.min).any()


@pytest.mark.parametrize("per_axis", [False, True])
def test_dequantize_linear_matches_onnx_reference(per_axis):
    rng = np.random.default_rng(8)
    q = rng.integers(-128, 128, (3, 5), dtype=np.int8)
    scale = np.array([0.1, 0.2, 0.3], np.float32) if per_axis else np.array(0.05, np.float32)
    zp = np.array([1, -2, 0], np.int8) if per_axis else np.array(-3, np.int8)
    got, want = _run_both(helper.make_node("DequantizeLinear", ["i0", "i1", "i2"], ["y"], axis=0),
                          [q, scale, zp])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_quantize_errors_are_clear():
    x = np.ones((2, 3), np.float32)
    node = helper.make_node("QuantizeLinear", ["i0", "i1"], ["y"], axis=1)
    scale = np.array([1.0, 2.0], np.float32)
    model = fv.onnx.load(_model(node, [x, scale])[0])
    with pytest.raises(ValueError, match=r"QuantizeLinear.*per-axis scale or zero point of 2 "
                                         r"values against axis 1 of size 3"):
        model(fv.tensor(x), fv.tensor(scale))
