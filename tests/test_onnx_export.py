"""ONNX export: every zoo model and a custom forward round-trip through onnxruntime at two batch
sizes; names map back to module paths and state_dict keys; opsets 13/17/18; clear errors."""
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import foveanet as fv  # noqa: E402
from foveanet import nn  # noqa: E402
from foveanet.interop.onnx_export import ONNXExportError, export  # noqa: E402
from foveanet.models.registry import model_options  # noqa: E402
from foveanet.nn import functional as F  # noqa: E402


# ------------------------------------------------------------------------------------- helpers
def _session(proto):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # a small shared machine
    opts.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _assert_close(got, ref):
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert np.isfinite(ref).all()
    tol = 1e-4 * np.abs(ref).max() + 1e-5
    assert np.abs(got - ref).max() <= tol, (np.abs(got - ref).max(), tol)


def _reference(model, *xs):
    model.eval()
    with fv.no_grad():
        out = model(*xs)
    return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])]


def _round_trip(model, shape, batches=(2, 3), opset=None, seed=0, **kw):
    """Export at the first batch size, check the file fully, run it at every batch size."""
    g = fv.Generator().manual_seed(seed)
    xs = {n: fv.randn(n, *shape, generator=g) for n in batches}
    proto = export(model, xs[batches[0]], None, opset=opset, **kw)
    onnx.checker.check_model(proto, full_check=True)
    sess = _session(proto)
    for n, x in xs.items():
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        ref = _reference(model, x)
        assert len(got) == len(ref)
        for g_, r in zip(got, ref):
            _assert_close(g_, r)
    return proto


def _assert_shapes_match_the_trace(model, x, proto):
    """onnx's (strict) shape inference must give every converted node output the traced shape:
    this catches a wrong rank that onnxruntime's broadcasting could otherwise hide."""
    from foveanet.interop import trace
    model.eval()
    with fv.no_grad():
        graph = trace(model, x)
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True).graph
    shapes = {vi.name: vi.type.tensor_type.shape for vi in list(inferred.value_info)
              + list(inferred.output)}
    checked = 0
    for node in graph.nodes:
        shape = shapes.get(node.output.name)
        if shape is None:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else x.shape[0] if d.dim_param == "batch"
                else None for d in shape.dim]
        assert len(dims) == len(node.output.shape), (node, dims)
        assert all(d is None or d == s for d, s in zip(dims, node.output.shape)), (node, dims)
        checked += 1
    assert checked >= len(graph.nodes) - len(graph.outputs)


# -------------------------------------------------------------------------------------- the zoo
# Construction and the forward passes dominate; these run in CI under the slow mark.
SLOW = {"alexnet", "densenet121", "densenet169", "densenet201", "densenet_bc", "preact_resnet",
        "pyramidnet", "resnet_cifar", "resnet32", "resnet34", "resnet44", "resnet50", "resnet56",
        "resnet101", "resnet110", "resnet1202", "resnet152", "vgg11", "vgg11_bn", "vgg13",
        "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "wide_resnet"}


IMAGE_OUTPUT = {"conv_ae", "dense_ae", "vae", "dcgan_generator", "dcgan_discriminator", "segnet",
                "segnet_small", "unet", "transform_net"}


def _zoo_case(name):
    """Small classes and inputs: ImageNet models (1000 classes by default) at 3x64x64 with 10
    classes, the others at their own in_channels x input_size (28) or 3x32x32."""
    if name == "lstm_forecaster":  # windows of a series, (N, W): 24 past values
        return {}, (24,)
    opts = model_options(name)
    kwargs = {}
    imagenet = opts.get("num_classes", 10) >= 1000
    if imagenet:
        kwargs["num_classes"] = 10
    if name == "perceptron":
        kwargs["num_classes"] = 3
    if name.startswith("vgg"):  # the same graph without torchvision's slow re-initialisation
        kwargs["init_weights"] = False
    side = opts.get("input_size", 64 if imagenet else 32)
    if name == "resnet1202":  # 4,210 primitives: the graph is the point, not the image size
        side = 16
    return kwargs, (opts.get("in_channels", 3), side, side)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in fv.models.list_models()])
def test_zoo_model_round_trips_at_two_batch_sizes(name):
    if name in IMAGE_OUTPUT:
        pytest.skip(f"{name} outputs images or takes noise: tests/test_onnx_generative.py exports "
                    "it at its own shapes")
    if name in fv.models.charlm.LANGUAGE_MODELS:
        pytest.skip(f"{name} reads character indices and returns (logits, state), not an image "
                    "classifier's graph")
    fv.manual_seed(0)
    kwargs, shape = _zoo_case(name)
    model = fv.models.create(name, **kwargs)
    if name == "perceptron":  # zero weights give all ones: make the threshold decide something
        model.weight.data[...] = fv.randn(*model.weight.shape).numpy() * 0.05
        model.bias.data[...] = fv.randn(*model.bias.shape).numpy() * 0.05
    if name == "resnet1202":  # 600 blocks at their initial scale overflow float32: damp them
        for path, m in model.named_modules():
            if path.endswith(".bn2"):
                m.weight.data *= 0.01
    proto = _round_trip(model, shape, batches=(1, 2) if name in SLOW else (2, 3))
    inputs, outputs = proto.graph.input, proto.graph.output
    assert [i.name for i in inputs] == ["input"] and [o.name for o in outputs] == ["output"]
    assert inputs[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert outputs[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert proto.producer_name == "foveanet" and proto.producer_version == fv.__version__


# --------------------------------------------------------------------------- smaller variants
@pytest.mark.parametrize("name,kwargs,shape", [
    ("preact_resnet", {"depth": 8}, (3, 16, 16)),
    ("preact_resnet", {"depth": 11, "bottleneck": True}, (3, 16, 16)),
    ("pyramidnet", {"depth": 8, "alpha": 12}, (3, 18, 18)),   # 18 -> 9 -> 5: ceil_mode pools
    ("pyramidnet", {"depth": 11, "alpha": 12, "bottleneck": True}, (3, 18, 18)),
    ("densenet_bc", {"depth": 10, "growth_rate": 4}, (3, 16, 16)),
    ("wide_resnet", {"depth": 10, "widen_factor": 1}, (3, 16, 16)),
    pytest.param("alexnet", {"num_classes": 10, "lrn": True}, (3, 63, 63),
                 marks=pytest.mark.slow),
])
def test_small_variants_of_the_large_architectures(name, kwargs, shape):
    """The same code paths as the slow zoo cases, at a size that runs on every test run."""
    fv.manual_seed(0)
    _round_trip(fv.models.create(name, **kwargs), shape)


# ------------------------------------------------------------------------ a custom forward
class Custom(nn.Module):
    """Residual add, cat, slicing, indexing, reductions, scalar arithmetic, sigmoid(sigma != 1)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(4 * 6, 5)
        self.bn.running_mean.data[...] = np.linspace(-0.2, 0.3, 6)
        self.bn.running_var.data[...] = np.linspace(0.5, 2.0, 6)

    def forward(self, x):
        y = fv.relu(self.bn(self.conv(x)))
        y = y + 0.5 * y - 1 + 2 / (1 + y * y)            # residual add, scalars both sides
        z = fv.cat([y[:, :3], y[:, 3:, ::2, 1::2].mean(dim=(2, 3), keepdim=True) + y[:, 3:]], 1)
        z = z[:, :, 1:-1] - z[..., -1, None, :]           # negative slices, int index, None
        feats = fv.cat([z.mean(dim=(2, 3)), fv.amax(z, dim=(2, 3)), fv.amin(z, dim=(2, 3)),
                        z.sum(dim=(2, 3)) / 10], dim=1)
        h = fv.sigmoid(feats, sigma=2.5) * fv.tanh(feats).abs().sqrt() + fv.exp(-feats.abs())
        logits = self.fc(fv.clamp(h, -3.0, 3.0) ** 2)
        return fv.softmax(logits, dim=1), F.log_softmax(logits, dim=-1), feats.std(dim=1)


def test_custom_forward_round_trips():
    fv.manual_seed(0)
    model = Custom()
    proto = _round_trip(model, (3, 8, 8))
    _assert_shapes_match_the_trace(model, fv.randn(2, 3, 8, 8), proto)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Sigmoid", "Softmax", "LogSoftmax", "Slice", "Gather", "Concat", "ReduceMax",
            "ReduceMin", "ReduceSum", "Clip", "Pow"} <= ops
    assert [o.name for o in proto.graph.output] == ["output", "output_1", "output_2"]


def test_constants_keep_the_model_dtype():
    """Python floats in forward become float32 constants in a float32 model (no float64 that
    would break the type check), and float64 models export as float64."""
    class Scale(nn.Module):
        def forward(self, x):
            return fv.maximum(x * 0.1 + 1e-3, fv.tensor(0.05)) / 3.0

    proto = _round_trip(Scale(), (4,))
    consts = [n for n in proto.graph.node if n.op_type == "Constant"]
    assert consts and all(c.attribute[0].t.data_type == onnx.TensorProto.FLOAT for c in consts)

    model = nn.Linear(3, 2).double()
    x = fv.randn(2, 3).double()
    sess = _session(export(model, x, None))
    _assert_close(sess.run(None, {"input": x.numpy()})[0], _reference(model, x)[0])


# ------------------------------------------------------------------------------- primitives
class Ops(nn.Module):
    """One primitive per branch, selected by name; the converters' settings in one place."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.ct = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.gconv = nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=4, bias=False)
        self.lrn = nn.LocalResponseNorm(4, alpha=1e-2, beta=0.75, k=1.5)  # even size: composed
        self.w = nn.Parameter(fv.randn(7, 3).numpy())

    def forward(self, x):  # x: (N, 4, 7, 7)
        k = self.kind
        if k == "conv":
            return self.gconv(x), self.ct(x)
        if k == "pool":
            return (F.max_pool2d(x, 3, 2, padding=1, ceil_mode=True),
                    F.max_pool2d(x, 2, dilation=2),
                    F.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True, count_include_pad=False),
                    F.avg_pool2d(x, 2, ceil_mode=True),
                    F.avg_pool2d(x, 3, 2, divisor_override=4),
                    F.adaptive_avg_pool2d(x, (3, 2)), F.adaptive_avg_pool2d(x, 1))
        if k == "norm":
            return self.lrn(x), F.local_response_norm(x, 3), F.batch_norm(
                x, fv.zeros(4), fv.ones(4) * 2, training=False)
        if k == "pad":
            return (F.pad(x, (1, 2, 0, 1)), F.pad(x, (2, 1, 1, 2), mode="reflect"),
                    F.pad(x, (1, 1, 2, 0), mode="replicate"),
                    F.pad(x, (2, 1, 1, 3), mode="circular"), F.pad(x, (1, 1), value=-2.5))
        if k == "shape":
            y = x.permute(0, 2, 3, 1)
            flat = y.reshape(y.shape[0], -1, 4)                       # batch copied, -1 inferred
            return (flat, fv.stack([x[:, 0], x[:, 1]], dim=1), x.transpose(1, 3).flatten(1),
                    x[:, [2, 0]], x[:, 1:2].expand(x.shape[0], 3, 7, 7), x[:, ::-2, 6:0:-3],
                    x.unsqueeze(2).squeeze(2).clone())
        if k == "math":
            a = x[:, :3, 0, :3]
            return (a @ self.w.transpose(0, 1), fv.matmul(x, x.transpose(2, 3)), fv.where(
                fv.tensor(np.array([True, False, True])), a, -a), fv.minimum(a, 0.25),
                x.var(dim=1), fv.logsumexp(x, dim=(2, 3)), x.max(dim=2)[0], fv.log(x.abs() + 1),
                F.leaky_relu(x, 0.2), F.elu(x, 0.7), x.double().float(), fv.clamp(x, max=0.5),
                -x.pow(3), 2 ** a)
        raise AssertionError(k)


@pytest.mark.parametrize("kind", ["conv", "pool", "norm", "pad", "shape", "math"])
def test_primitive_converters(kind):
    fv.manual_seed(1)
    model = Ops(kind)
    proto = _round_trip(model, (4, 7, 7))
    _assert_shapes_match_the_trace(model, fv.randn(2, 4, 7, 7), proto)


# --------------------------------------------------------------------------- opsets and names
@pytest.mark.parametrize("opset", [13, 17, 18])
def test_opsets(opset):
    fv.manual_seed(0)
    proto = _round_trip(Custom(), (3, 8, 8), opset=opset)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [opset]


def test_bad_opset_is_a_clear_error():
    with pytest.raises(ValueError, match="opset must be an int from 13"):
        export(nn.Linear(2, 2), fv.randn(1, 2), None, opset=11)


def test_names_map_back_to_module_paths_and_state_dict_keys():
    fv.manual_seed(0)
    model = fv.models.create("resnet20")
    proto = export(model, fv.randn(2, 3, 32, 32), None)
    convs = [n.name for n in proto.graph.node if n.op_type == "Conv"]
    assert convs[0] == "conv1/Conv" and convs[1].startswith("layer1.0.conv1")
    state = model.state_dict()
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert set(inits) == {k for k in state if not k.endswith("num_batches_tracked")}
    for k, arr in inits.items():
        np.testing.assert_array_equal(arr, state[k].numpy())
    names = [n.name for n in proto.graph.node]
    assert len(set(names)) == len(names)


def test_custom_io_names_and_static_batch():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    proto = export(model, fv.randn(2, 3), None, input_names=["x"], output_names=["y"],
                   dynamic_batch=False)
    assert [i.name for i in proto.graph.input] == ["x"] and proto.graph.output[0].name == "y"
    dims = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [2, 4]


def test_train_mode_is_restored_and_dropout_is_absent():
    model = fv.models.create("cnn_bn")
    model.train()
    model[1].eval()  # a mixed state comes back as it was
    proto = export(model, fv.randn(2, 1, 28, 28), None)
    assert model.training and not model[1].training and model[0].training
    assert "Dropout" not in {n.op_type for n in proto.graph.node}


# --------------------------------------------------------------------------- the perceptron
@pytest.mark.parametrize("bipolar", [False, True])
def test_perceptron_step_exports_as_greater_or_equal_and_where(bipolar):
    """The perceptron's step is computed on raw arrays; export gives it a traced primitive and
    writes it as Where(v >= 0, 1, low)."""
    fv.manual_seed(3)
    model = fv.models.create("perceptron", num_classes=4, input_size=6, bipolar=bipolar)
    model.weight.data[...] = fv.randn(4, 36).numpy()
    model.bias.data[...] = np.array([0.0, 1.0, -1.0, 0.5], dtype=np.float32)
    proto = _round_trip(model, (1, 6, 6))
    ops = [n.op_type for n in proto.graph.node]
    assert "GreaterOrEqual" in ops and "Where" in ops
    assert model.forward.__func__ is type(model).forward  # the export forward is gone again
    sess = _session(proto)
    zeros = np.zeros((2, 1, 6, 6), np.float32)  # v = bias: the threshold at exactly 0 gives 1
    out = sess.run(None, {"input": zeros})[0]
    low = -1.0 if bipolar else 0.0
    np.testing.assert_array_equal(out, [[1.0, 1.0, low, 1.0]] * 2)


# ------------------------------------------------------------------------------- errors, files
class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 4)

    def forward(self, x):  # an element-wise loss: no ONNX converter
        h = self.head(x.reshape(x.shape[0], -1))
        return F.mse_loss(h, h * 0.5, reduction="none")


def test_unsupported_op_is_a_clear_error_and_writes_nothing(tmp_path):
    path = tmp_path / "model.onnx"
    with pytest.raises(ONNXExportError) as info:
        export(Unsupported(), fv.randn(2, 1, 2, 2), path)
    msg = str(info.value)
    assert "SquaredError" in msg and "Unsupported operations in this graph: SquaredError at <root>" \
        in msg
    assert os.listdir(tmp_path) == []

    path.write_bytes(b"old")  # a failed export keeps the previous file whole
    with pytest.raises(ONNXExportError):
        export(Unsupported(), fv.randn(2, 1, 2, 2), path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.onnx"]


def test_unsupported_op_names_the_module_path():
    class Inner(nn.Module):
        def forward(self, x):
            return F.dropout(x, 0.5, training=True)

    model = nn.Sequential(nn.Linear(3, 3), Inner())
    with pytest.raises(ONNXExportError, match=r"Dropout .*training=True.*module '1'"):
        export(model, fv.randn(2, 3), None)


def test_batch_dependent_constants_are_refused():
    class Pinned(nn.Module):
        def forward(self, x):
            return x + fv.ones(x.shape[0], 1)  # a constant as tall as the batch

    class DataDependent(nn.Module):
        def forward(self, x):
            return x * float(x.numpy().mean())  # a number computed behind the engine's back

    class RawWhere(nn.Module):
        def forward(self, x):
            return fv.where(x > 0, x, 0.0)  # the comparison is not traced

    with pytest.raises(ONNXExportError, match="shape .* at one batch size"):
        export(Pinned(), fv.randn(2, 3), None)
    with pytest.raises(ONNXExportError, match="from the input .its shape or its values"):
        export(DataDependent(), fv.randn(2, 3), None)
    with pytest.raises(ONNXExportError, match="at one batch size"):
        export(RawWhere(), fv.randn(2, 3), None)
    proto = export(Pinned(), fv.randn(2, 3), None, dynamic_batch=False)  # fixed batch: fine
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


def test_written_file_is_the_returned_proto(tmp_path):
    path = tmp_path / "sub" / "lenet.onnx"
    model = fv.models.create("lenet5")
    proto = fv.onnx.export(model, fv.randn(2, 1, 28, 28), path)
    assert path.read_bytes() == proto.SerializeToString()
    assert onnx.load(str(path)) == proto
    assert sorted(os.listdir(path.parent)) == ["lenet.onnx"]  # no temporary file left


def test_importing_foveanet_does_not_import_onnx():
    import subprocess
    import sys
    code = ("import sys, foveanet; bad = [m for m in ('onnx', 'onnxruntime', "
            "'foveanet.interop.onnx_export') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pass_through_outputs_indices_and_nested_perceptrons():
    """An input returned as it is (an Identity to the output name), max_pool2d's indices thrown
    away, and a perceptron inside a larger model."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.unit = fv.models.create("perceptron", num_classes=2, in_channels=2, input_size=3)
            self.unit.weight.data[...] = np.linspace(-1, 1, 36).reshape(2, 18)

        def forward(self, x):
            pooled, _ = F.max_pool2d(self.conv(x), 2, return_indices=True)
            return x, self.unit(pooled)

    fv.manual_seed(0)
    model = Net()
    proto = _round_trip(model, (1, 6, 6))
    assert [n.op_type for n in proto.graph.node if n.output[0] == "output"] == ["Identity"]
    assert any(n.name.startswith("unit/") and n.op_type == "Where" for n in proto.graph.node)


def test_outputs_built_from_raw_arrays_are_a_clear_error():
    class Raw(nn.Module):
        def forward(self, x):
            return fv.tensor(x.numpy() * 2)

    with pytest.raises(ONNXExportError, match="not computed by foveanet's primitives"):
        export(Raw(), fv.randn(2, 3), None)


def test_optimize_folds_batchnorm_into_conv_and_keeps_the_outputs():
    """export(optimize=True): every Conv -> BatchNormalization pair of resnet20 folded (19 BN
    layers), no Identity left, outputs as before (running statistics made non-trivial)."""
    model = fv.models.create("resnet20", in_channels=1)
    rng = np.random.default_rng(0)
    for m in model.modules():
        if isinstance(m, fv.nn.BatchNorm2d):
            m.running_mean.data[...] = rng.normal(size=m.num_features)
            m.running_var.data[...] = rng.random(m.num_features) + 0.5
            m.weight.data[...] = rng.random(m.num_features) + 0.5
            m.bias.data[...] = rng.normal(size=m.num_features)
    plain = _round_trip(model, (1, 28, 28))
    folded = _round_trip(model, (1, 28, 28), optimize=True)
    ops = lambda p: [n.op_type for n in p.graph.node]  # noqa: E731
    assert ops(plain).count("BatchNormalization") == 19
    assert "BatchNormalization" not in ops(folded) and "Identity" not in ops(folded)
    assert ops(folded).count("Conv") == 19
    names = {i.name for i in folded.graph.initializer}
    assert "conv1.weight" in names and "bn1.running_mean" not in names
