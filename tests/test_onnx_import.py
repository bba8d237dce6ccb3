"""ONNX import (fv.onnx.load): networks written in plain PyTorch, exported by torch.onnx at several
opsets (the legacy TorchScript exporter, and the dynamo exporter once), loaded by foveanet and
compared with PyTorch in eval mode at two batch sizes; gradients against PyTorch's in train mode;
fine-tuning (loss decreases, BatchNorm buffers move, frozen parameters stay put); parameter naming
(ONNX names, dots included); replace_head for transfer learning; saving back to ONNX and running
the result in onnxruntime."""
import io
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from helpers import rel_close  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import foveanet as fv  # noqa: E402
from foveanet.interop.onnx_import import OnnxLoadError, OnnxModule  # noqa: E402

nn = torch.nn
TF = torch.nn.functional


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """PyTorch's thread pool spins against the other processes on a small machine (0.6 s instead
    of 2 ms per forward of these tiny networks): the reference runs on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------ the networks
class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 with BatchNorm, and a projection shortcut when the shape changes."""

    def __init__(self, cin, mid, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3, self.bn3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        y = TF.relu(self.bn1(self.conv1(x)))
        y = TF.relu(self.bn2(self.conv2(y)))
        return TF.relu(self.bn3(self.conv3(y)) + self.shortcut(x))


class ResNetLike(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.layer1 = Bottleneck(8, 4, 16, 1)
        self.layer2 = Bottleneck(16, 8, 32, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layer2(self.layer1(self.stem(x)))), 1))


class VGGLike(nn.Module):
    """Conv-BN-ReLU blocks; the classifier input is x.view(x.size(0), -1), which the legacy
    exporter writes as Shape -> Gather -> Unsqueeze -> Concat -> Reshape (run-time shape
    arithmetic on int64 tensors)."""

    def __init__(self, classes=10, p=0.5):
        super().__init__()

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        self.features = nn.Sequential(*block(3, 8), *block(8, 8), nn.MaxPool2d(2),
                                      *block(8, 16), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Dropout(p),
                                        nn.Linear(32, classes))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(cin), nn.Conv2d(cin, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(TF.relu(self.bn(x)))], 1)


class DenseNetLike(nn.Module):
    def __init__(self, classes=10, growth=4):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.block = nn.Sequential(*[DenseLayer(8 + i * growth, growth) for i in range(3)])
        c = 8 + 3 * growth
        self.transition = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, 10, 1, bias=False),
                                        nn.AvgPool2d(2))
        self.norm = nn.BatchNorm2d(10)
        self.fc = nn.Linear(10, classes)

    def forward(self, x):
        x = TF.relu(self.norm(self.transition(self.block(self.stem(x)))))
        return self.fc(TF.adaptive_avg_pool2d(x, 1).flatten(1))


class _LRNOp(torch.autograd.Function):
    """PyTorch's local response norm, exported as ONE ONNX LRN node (the legacy exporter writes
    nn.LocalResponseNorm as a decomposition with a 5-D AveragePool, and from opset 13 with an If)."""

    @staticmethod
    def forward(ctx, x):
        return TF.local_response_norm(x, 5, alpha=1e-2, beta=0.75, k=2.0)

    @staticmethod
    def symbolic(g, x):
        return g.op("LRN", x, size_i=5, alpha_f=1e-2, beta_f=0.75, bias_f=2.0)


class OnnxLRN(nn.Module):
    def forward(self, x):
        return _LRNOp.apply(x)


class AlexNetLike(nn.Module):
    def __init__(self, classes=10, lrn_node=True):
        super().__init__()

        def lrn():
            return OnnxLRN() if lrn_node else nn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
            nn.Conv2d(16, 24, 3, padding=1), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(24 * 3 * 3, 32), nn.ReLU(),
                                        nn.Dropout(), nn.Linear(32, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class UpNet(nn.Module):
    """Encoder-decoder: a strided conv, a ConvTranspose with output_padding, nearest upsampling."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1)
        self.head = nn.Conv2d(6, 4, 3, padding=1)

    def forward(self, x):
        y = TF.relu(self.up(TF.relu(self.down(x))))
        return self.head(TF.interpolate(y, scale_factor=2, mode="nearest"))


MODELS = {"resnet": (ResNetLike, 16), "vgg": (VGGLike, 16), "densenet": (DenseNetLike, 16),
          "alexnet": (AlexNetLike, 32), "alexnet_decomposed_lrn": (lambda: AlexNetLike(lrn_node=False), 32),
          "upnet": (UpNet, 8)}


def _torch_model(name, seed=0):
    """The network with random weights AND random BatchNorm statistics (a few training-mode
    passes), in eval mode."""
    torch.manual_seed(seed)
    ctor, size = MODELS[name]
    model = ctor()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        model.train()
        for _ in range(2):
            model(torch.randn(4, 3, size, size))
    return model.eval(), size


def _export(model, size, opset, dynamo=False):
    x = torch.randn(2, 3, size, size)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            prog = torch.onnx.export(model, (x,), dynamo=True, opset_version=opset,
                                     dynamic_shapes=({0: torch.export.Dim("batch")},),
                                     verbose=False)
            return prog.model_proto
        torch.onnx.export(model, (x,), f, dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          do_constant_folding=False)
    return onnx.load_from_string(f.getvalue())


def _compare(model, module, size, batches=(2, 3), seed=1):
    rng = np.random.default_rng(seed)
    for n in batches:
        x = rng.standard_normal((n, 3, size, size)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        with fv.no_grad():
            out = module(fv.tensor(x))
        assert out.dtype == np.float32
        rel_close(out.numpy(), ref, rtol=1e-4, what=f"batch {n}")


# ------------------------------------------------------------------------ outputs match torch
@pytest.mark.parametrize("name,opset", [
    ("resnet", 9), ("resnet", 13), ("resnet", 17),
    ("vgg", 11), ("vgg", 13),
    ("densenet", 9), ("densenet", 17),
    ("alexnet", 13), ("alexnet", 17), ("alexnet_decomposed_lrn", 9),
    ("upnet", 9), ("upnet", 11), ("upnet", 13), ("upnet", 17),
])
def test_exported_models_match_torch(name, opset):
    model, size = _torch_model(name)
    proto = _export(model, size, opset)
    module = fv.onnx.load(proto.SerializeToString())
    assert isinstance(module, fv.nn.Module) and not module.training
    assert module.opset == opset
    _compare(model, module, size)


@pytest.mark.slow
def test_dynamo_export_matches_torch():
    # the dynamo exporter (opset 18): different node patterns (Reshape with a computed shape, ...)
    model, size = _torch_model("resnet")
    proto = _export(model, size, 18, dynamo=True)
    module = fv.onnx.load(proto)
    _compare(model, module, size)


def test_load_from_path_bytes_and_proto(tmp_path):
    model, size = _torch_model("upnet")
    proto = _export(model, size, 13)
    path = tmp_path / "up.onnx"
    onnx.save(proto, str(path))
    for source in (path, str(path), path.read_bytes(), proto):
        module = fv.onnx.load(source)
        _compare(model, module, size, batches=(1,))
    assert fv.onnx.load(path).source == str(path)


def test_import_foveanet_does_not_import_onnx():
    code = "import sys, foveanet; assert 'onnx' not in sys.modules, 'onnx imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------- parameters
def test_initializers_become_named_parameters_and_buffers():
    model, size = _torch_model("vgg")
    module = fv.onnx.load(_export(model, size, 13))
    params = dict(module.named_parameters())
    theirs = dict(model.named_parameters())
    assert set(params) == set(theirs)          # the ONNX names are PyTorch's, dots included
    for k, p in params.items():
        assert isinstance(p, fv.nn.Parameter) and p.requires_grad
        np.testing.assert_array_equal(p.data, theirs[k].detach().numpy())
    buffers = dict(module.named_buffers())
    assert set(buffers) == {k for k in model.state_dict() if k.endswith(("running_mean", "running_var"))}
    assert module.get_parameter("features.0.weight") is params["features.0.weight"]
    assert module.get_buffer("features.1.running_mean") is buffers["features.1.running_mean"]
    # state_dict round trip under the ONNX names
    sd = module.state_dict()
    assert list(sd) == list(params) + list(buffers)
    fresh = fv.onnx.load(_export(_torch_model("vgg", seed=5)[0], size, 13))
    fresh.load_state_dict(sd)
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(v.data, sd[k].data)
    # integer initializers and constants are not state
    assert all(np.issubdtype(v.dtype, np.floating) for v in sd.values())
    assert "OnnxModule(" in repr(module) and "opset=13" in repr(module)


def test_gradients_match_torch_in_train_mode():
    # train mode: BatchNorm normalises with the batch statistics, in both frameworks
    model, size = _torch_model("resnet")
    module = fv.onnx.load(_export(model, size, 13))
    module.train()
    model.train()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, size, size)).astype(np.float32)
    out = module(fv.tensor(x))
    ref = model(torch.from_numpy(x))
    rel_close(out.detach().numpy(), ref.detach().numpy(), rtol=1e-4, what="train-mode output")
    up = rng.standard_normal(ref.shape).astype(np.float32)
    (out * fv.tensor(up)).sum().backward()
    ref.backward(torch.from_numpy(up))
    theirs = dict(model.named_parameters())
    for name, p in module.named_parameters():
        rel_close(p.grad.numpy(), theirs[name].grad.numpy(), rtol=1e-4, what=f"gradient of {name}")
    for name, b in module.named_buffers():  # running statistics moved as PyTorch's did
        rel_close(b.numpy(), model.state_dict()[name].numpy(), rtol=1e-4, what=f"buffer {name}")


def test_fine_tuning_and_freezing():
    model, size = _torch_model("vgg")
    module = fv.onnx.load(_export(model, size, 13))
    module.train()
    fv.manual_seed(0)
    rng = np.random.default_rng(0)
    x = fv.tensor(rng.standard_normal((16, 3, size, size)).astype(np.float32))
    y = fv.tensor(rng.integers(0, 10, 16))
    opt = fv.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    mean_before = module.get_buffer("features.1.running_mean").numpy().copy()
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = fv.nn.functional.cross_entropy(module(x), y)
        loss.backward()
        assert all(p.grad is not None for p in module.parameters())  # gradients reach every one
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    assert not np.allclose(module.get_buffer("features.1.running_mean").numpy(), mean_before)

    # freeze everything but the last Gemm: only its weight and bias change
    module.requires_grad_(False)
    head = ["classifier.3.weight", "classifier.3.bias"]
    for name in head:
        module.get_parameter(name).requires_grad_(True)
    before = {k: v.data.copy() for k, v in module.named_parameters()}
    opt = fv.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        fv.nn.functional.cross_entropy(module(x), y).backward()
        opt.step()
    for k, v in module.named_parameters():
        changed = not np.array_equal(v.data, before[k])
        assert changed == (k in head), k

    # eval mode again: deterministic (dropout off, running statistics)
    module.eval()
    with fv.no_grad():
        np.testing.assert_array_equal(module(x).numpy(), module(x).numpy())


def test_float64_and_to():
    model, size = _torch_model("resnet")
    module = fv.onnx.load(_export(model, size, 13)).to(fv.float64)
    x = np.random.default_rng(0).standard_normal((2, 3, size, size))
    with fv.no_grad():
        out = module(fv.tensor(x))
    assert out.dtype == np.float64
    with torch.no_grad():
        ref = model.double()(torch.from_numpy(x)).numpy()
    rel_close(out.numpy(), ref, rtol=1e-9)


# ------------------------------------------------------------------------------ the head
def test_replace_head_gemm_and_save_for_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, size = _torch_model("resnet")
    module = fv.onnx.load(_export(model, size, 13))
    fv.manual_seed(0)
    replaced = module.replace_head(3)
    assert replaced == ["fc.weight", "fc.bias"]
    w, b = module.get_parameter("fc.weight"), module.get_parameter("fc.bias")
    assert w.shape == (3, 32) and b.shape == (3,) and w.requires_grad
    bound = 1 / np.sqrt(32)
    assert np.abs(w.data).max() <= bound and np.abs(b.data).max() <= bound
    # the new head is torch's network with fc swapped for the new weights
    model.fc = nn.Linear(32, 3)
    with torch.no_grad():
        model.fc.weight.copy_(torch.from_numpy(w.data))
        model.fc.bias.copy_(torch.from_numpy(b.data))
    _compare(model, module, size)
    # train the new head a step, save, run in onnxruntime
    module.train()
    x = fv.tensor(np.random.default_rng(0).standard_normal((4, 3, size, size)).astype(np.float32))
    loss = fv.nn.functional.cross_entropy(module(x), fv.tensor(np.array([0, 1, 2, 0])))
    loss.backward()
    fv.optim.SGD(module.parameters(), lr=0.1).step()
    module.eval()
    path = tmp_path / "tuned.onnx"
    module.save(path)
    saved = onnx.load(str(path))
    onnx.checker.check_model(saved)
    dims = saved.graph.output[0].type.tensor_type.shape.dim
    assert dims[len(dims) - 1].dim_value == 3
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (2, 5):
        xn = np.random.default_rng(n).standard_normal((n, 3, size, size)).astype(np.float32)
        (got,) = sess.run(None, {"input": xn})
        with fv.no_grad():
            rel_close(got, module(fv.tensor(xn)).numpy(), rtol=1e-4, what=f"onnxruntime batch {n}")
    # and it loads back into foveanet with the tuned weights
    again = fv.onnx.load(path)
    np.testing.assert_array_equal(again.get_parameter("fc.weight").data, w.data)


def _matmul_head_model(softmax=True):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 5)).astype(np.float32), "body.w"),
             numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "head.w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "head.b")]
    nodes = [helper.make_node("MatMul", ["x", "body.w"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "head.w"], ["logits_mm"]),
             helper.make_node("Add", ["logits_mm", "head.b"], ["logits"])]
    out = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=-1))
        out = "probs"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["n", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_replace_head_matmul_add_through_softmax():
    proto = _matmul_head_model()
    module = fv.onnx.load(proto)
    assert module.replace_head(7) == ["head.w", "head.b"]
    assert module.get_parameter("head.w").shape == (5, 7)
    out = module(np.ones((3, 6), dtype=np.float32))
    assert out.shape == (3, 7)
    np.testing.assert_allclose(out.detach().numpy().sum(axis=1), 1.0, rtol=1e-6)
    assert module.to_model_proto().graph.output[0].type.tensor_type.shape.dim[1].dim_value == 7
    assert proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 4  # caller's untouched


def test_replace_head_errors():
    model = _matmul_head_model(softmax=False)
    model.graph.node.append(helper.make_node("Relu", ["logits"], ["y"]))
    model.graph.ClearField("output")
    model.graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4]))
    module = fv.onnx.load(model)
    with pytest.raises(ValueError, match="found no Gemm or MatMul"):
        module.replace_head(3)
    with pytest.raises(ValueError, match="positive int"):
        fv.onnx.load(_matmul_head_model()).replace_head(0)


# ------------------------------------------------------------------------- the interpreter
def test_inputs_by_name_and_errors():
    module = fv.onnx.load(_matmul_head_model())
    x = np.ones((2, 6), dtype=np.float32)
    np.testing.assert_array_equal(module(x=x).detach().numpy(), module(x).detach().numpy())
    with pytest.raises(TypeError, match="missing input"):
        module()
    with pytest.raises(TypeError, match="unknown input 'y'"):
        module(y=x)
    with pytest.raises(ValueError, match="should have 2 dimensions"):
        module(np.ones((2, 3, 6), dtype=np.float32))
    with pytest.raises(ValueError, match=r"node .*\(MatMul\)"):  # the failing node is named
        module(np.ones((2, 5), dtype=np.float32))


def test_unsupported_operators_are_listed_at_load_time():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Sin", ["x"], ["a"], name="s1"),
                               helper.make_node("Cos", ["a"], ["b"], name="c1"),
                               helper.make_node("Sin", ["b"], ["y"], name="s2")], "g", [x], [y])
    with pytest.raises(OnnxLoadError, match=r"unsupported operators \(opset 13\): Cos \(node 'c1'\), "
                                            r"Sin \(nodes 's1', 's2'\)"):
        fv.onnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def test_unsupported_resize_mode_fails_at_load():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    for attrs, msg in [(dict(mode="linear"), "mode='linear' is not supported"),
                       (dict(coordinate_transformation_mode="tf_crop_and_resize"),
                        "coordinate_transformation_mode='tf_crop_and_resize'")]:
        node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", **attrs)
        graph = helper.make_graph([node], "g", [x], [y], [scales])
        with pytest.raises(OnnxLoadError, match=rf"node up \(Resize\): {msg}"):
            fv.onnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def test_resize_nearest_is_differentiable_and_scales_are_constants():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    scales = numpy_helper.from_array(np.array([1, 1, 2, 3], dtype=np.float32), "scales")
    w = numpy_helper.from_array(np.full((1, 1, 1, 1), 2.0, dtype=np.float32), "w")
    nodes = [helper.make_node("Mul", ["x", "w"], ["xw"]),
             helper.make_node("Resize", ["xw", "", "scales"], ["y"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor")]
    graph = helper.make_graph(nodes, "g", [x], [y], [scales, w])
    module = fv.onnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert [k for k, _ in module.named_parameters()] == ["w"]   # the scales are not trainable
    xin = fv.tensor(np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2), requires_grad=True)
    out = module(xin)
    assert out.shape == (1, 1, 4, 6)
    out.sum().backward()
    np.testing.assert_array_equal(xin.grad.numpy(), np.full((1, 1, 2, 2), 12.0))  # 2 * (2 * 3)
    assert module.get_parameter("w").grad.item() == pytest.approx(6 * 6.0)  # 6 copies of 0+1+2+3


def test_onnx_export_round_trip_of_a_fine_tuned_model(tmp_path):
    """Export the fine-tuned OnnxModule again with foveanet's own exporter and check it in
    onnxruntime (skipped while the exporter is not there)."""
    export = pytest.importorskip("foveanet.interop.onnx_export")
    ort = pytest.importorskip("onnxruntime")
    model, size = _torch_model("vgg")
    module = fv.onnx.load(_export(model, size, 13))
    module.train()
    x = fv.tensor(np.random.default_rng(0).standard_normal((8, 3, size, size)).astype(np.float32))
    fv.nn.functional.cross_entropy(module(x), fv.tensor(np.arange(8) % 10)).backward()
    fv.optim.SGD(module.parameters(), lr=0.05).step()
    module.eval()
    path = tmp_path / "again.onnx"
    export.export(module, x[:2], path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xn = np.random.default_rng(1).standard_normal((3, 3, size, size)).astype(np.float32)
    (got,) = sess.run(None, {sess.get_inputs()[0].name: xn})
    with fv.no_grad():
        rel_close(got, module(fv.tensor(xn)).numpy(), rtol=1e-4)


def test_module_is_an_ordinary_module():
    module = fv.onnx.load(_matmul_head_model())
    assert isinstance(module, OnnxModule)
    assert module.input_names == ["x"] and module.output_names == ["probs"]
    assert module.num_parameters() == 6 * 5 + 5 * 4 + 4
    module.train()
    assert module.training
    module.eval()
    import copy
    clone = copy.deepcopy(module)
    x = np.ones((1, 6), dtype=np.float32)
    np.testing.assert_array_equal(clone(x).detach().numpy(), module(x).detach().numpy())
    clone.get_parameter("head.b").data[...] = 0
    assert module.get_parameter("head.b").data.any()


# ---------------------------------------------------------- opset-dependent attribute forms
def _single_node_model(op, inputs, opset, n_out=1, consts=(), **attrs):
    """One node; ``inputs`` are (name, array) pairs fed at run time, ``consts`` initializers."""
    vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
           for n, a in inputs]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, [n for n, _ in inputs] + [n for n, _ in consts if n], outs, **attrs)
    if any(not n for n, _ in consts):  # an omitted optional input between given ones
        names = [n for n, _ in inputs] + [n for n, _ in consts]
        node = helper.make_node(op, names, outs, **attrs)
    graph = helper.make_graph([node], op, vis,
                              [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outs],
                              [numpy_helper.from_array(a, n) for n, a in consts if n])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


_X3 = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
_X4 = np.random.default_rng(1).standard_normal((1, 2, 3, 4)).astype(np.float32)
_I64 = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
_F32 = lambda *v: np.array(v, dtype=np.float32)  # noqa: E731

ATTRIBUTE_FORMS = [
    # Softmax / LogSoftmax / Flatten: coerced to 2-D at axis before opset 13, one axis from 13
    # (the reference applies the opset-13 rule at every opset: see test_softmax_before_opset_13)
    ("Softmax", 11, [("x", _X3)], [], {"axis": 2}),
    ("Softmax", 13, [("x", _X3)], [], {}), ("Softmax", 13, [("x", _X3)], [], {"axis": 1}),
    ("LogSoftmax", 13, [("x", _X3)], [], {"axis": 0}),
    ("Flatten", 9, [("x", _X3)], [], {}), ("Flatten", 13, [("x", _X3)], [], {"axis": -2}),
    ("Flatten", 13, [("x", _X3)], [], {"axis": 0}),
    # Squeeze / Unsqueeze: axes attribute before 13, input from 13
    ("Squeeze", 11, [("x", _X3[:, :1])], [], {"axes": [1]}),
    ("Squeeze", 13, [("x", _X3[:1, :1])], [("axes", _I64(0, 1))], {}),
    ("Squeeze", 13, [("x", _X3[:1, :1])], [], {}),
    ("Unsqueeze", 11, [("x", _X3)], [], {"axes": [0, 4]}),
    ("Unsqueeze", 13, [("x", _X3)], [("axes", _I64(-1, 1))], {}),
    # Split: split attribute (< 13), input (13), num_outputs (18, uneven)
    ("Split", 11, [("x", _X3)], [], {"axis": 2, "split": [1, 3]}),
    ("Split", 13, [("x", _X3)], [("split", _I64(3, 1))], {"axis": -1}),
    ("Split", 13, [("x", _X3)], [], {"axis": 2}),
    ("Split", 18, [("x", _X3)], [], {"axis": 2, "num_outputs": 3}),
    # ReduceMean: axes attribute (< 18), input (18), keepdims, noop_with_empty_axes
    ("ReduceMean", 13, [("x", _X3)], [], {"axes": [0, 2], "keepdims": 0}),
    ("ReduceMean", 13, [("x", _X3)], [], {}),
    ("ReduceMean", 18, [("x", _X3)], [("axes", _I64(-1))], {}),
    ("ReduceMean", 18, [("x", _X3)], [], {"noop_with_empty_axes": 1}),
    ("ReduceSum", 11, [("x", _X3)], [], {"axes": [1]}),
    ("ReduceSum", 13, [("x", _X3)], [("axes", _I64(1))], {"keepdims": 0}),
    # Clip: attributes before 11, optional inputs from 11
    ("Clip", 6, [("x", _X3)], [], {"min": -0.5, "max": 0.5}), ("Clip", 6, [("x", _X3)], [], {}),
    ("Clip", 11, [("x", _X3)], [("lo", _F32(-0.2)), ("hi", _F32(0.3))], {}),
    ("Clip", 13, [("x", _X3)], [("", None), ("hi", _F32(0.1))], {}),
    # Pad: pads/value attributes (< 11), inputs (11), axes (18), modes
    ("Pad", 10, [("x", _X4)], [], {"pads": [0, 0, 1, 2, 0, 0, 2, 1], "value": 1.5}),
    ("Pad", 10, [("x", _X4)], [], {"pads": [0, 0, 1, 1, 0, 0, 2, 0], "mode": "edge"}),
    ("Pad", 11, [("x", _X4)], [("pads", _I64(0, 0, 1, 0, 0, 0, 0, 2)), ("v", _F32(-1))], {}),
    ("Pad", 11, [("x", _X4)], [("pads", _I64(0, 0, 2, 1, 0, 0, 1, 2))], {"mode": "reflect"}),
    ("Pad", 18, [("x", _X4)], [("pads", _I64(1, 2, 0, 1)), ("", None), ("axes", _I64(-1, 2))], {}),
    ("Pad", 19, [("x", _X4)], [("pads", _I64(0, 0, 1, 2, 0, 0, 2, 1))], {"mode": "wrap"}),
    # Upsample: scales input (9; the attribute form of opset 7 is in test_upsample_opset_7)
    ("Upsample", 9, [("x", _X4)], [("scales", _F32(1, 1, 3, 2))], {"mode": "nearest"}),
    # Dropout in inference: ratio attribute (7), ratio/training_mode inputs (12+), mask output
    ("Dropout", 7, [("x", _X3)], [], {"ratio": 0.3}),
    ("Dropout", 13, [("x", _X3)], [("r", _F32(0.4)), ("t", np.array(False))], {}),
    # Gemm: alpha, beta, transA, transB, broadcast C
    ("Gemm", 13, [("a", _X3[0].T.copy())], [("b", _X3[1].T.copy()), ("c", _F32(1, 2, 3))],
     {"transA": 1, "alpha": 0.5, "beta": -2.0}),
    ("Gemm", 9, [("a", _X3[0])], [("b", _X4[0, 0]), ("c", _F32(7))], {"transB": 1}),
    ("Gemm", 13, [("a", _X3[0])], [("b", _X4[0, 0]), ("c", _X3[1, :, :3].copy())],
     {"transB": 1, "beta": 0.5}),
    ("Gemm", 13, [("a", _X3[0])], [("b", _X4[0, 0])], {"transB": 1}),
    ("Gemm", 11, [("a", _X3[0])], [("b", _X4[0, 0].T.copy()), ("c", _F32(1, 2, 3))], {}),
    # Reshape: 0 copies a dimension unless allowzero
    ("Reshape", 13, [("x", _X3)], [("s", _I64(0, -1))], {}),
    ("Reshape", 14, [("x", _X3)], [("s", _I64(0, 4, -1))], {"allowzero": 0}),
    # Resize nearest: every coordinate transformation and rounding mode
    *[("Resize", 13, [("x", _X4)], [("", None), ("s", _F32(1, 1, 1.7, 0.6))],
       {"mode": "nearest", "coordinate_transformation_mode": c, "nearest_mode": r})
      for c in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
      for r in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")],
    ("Resize", 19, [("x", _X4)], [("", None), ("s", _F32(2.5, 1.5))],
     {"mode": "nearest", "axes": [3, 2], "coordinate_transformation_mode": "half_pixel_symmetric"}),
    ("Resize", 18, [("x", _X4)], [("", None), ("", None), ("sz", _I64(5, 5))],
     {"mode": "nearest", "axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"}),
]


@pytest.mark.parametrize("op,opset,inputs,consts,attrs", ATTRIBUTE_FORMS,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(ATTRIBUTE_FORMS)])
def test_attribute_forms_match_the_onnx_reference(op, opset, inputs, consts, attrs):
    from onnx.reference import ReferenceEvaluator
    n_out = {"Split": attrs.get("num_outputs", 2), "Dropout": 2}.get(op, 1)
    model = _single_node_model(op, inputs, opset, n_out=n_out, consts=consts, **attrs)
    feeds = {n: a for n, a in inputs}
    try:
        ref = ReferenceEvaluator(model).run(None, feeds)
    except Exception as e:  # noqa: BLE001 - the reference lacks some old versions: skip those
        pytest.skip(f"the ONNX reference cannot run this case: {e}")
    module = fv.onnx.load(model)
    with fv.no_grad():
        out = module(**{n: fv.tensor(a) for n, a in feeds.items()})
    outs = out if isinstance(out, tuple) else (out,)
    assert len(outs) == len(ref)
    for o, r in zip(outs, ref):
        assert o.shape == r.shape, (o.shape, r.shape)
        np.testing.assert_allclose(o.numpy(), r, rtol=1e-5, atol=1e-6)


def test_dropout_follows_the_module_mode_and_training_mode_input():
    model = _single_node_model("Dropout", [("x", np.ones((50, 40), dtype=np.float32))], 13, n_out=2,
                               consts=[("r", _F32(0.25))])
    module = fv.onnx.load(model)
    x = fv.tensor(np.ones((50, 40), dtype=np.float32), requires_grad=True)
    y, mask = module(x)
    assert np.array_equal(y.detach().numpy(), x.data) and mask.numpy().all()   # eval: identity
    module.train()
    fv.manual_seed(0)
    y, mask = module(x)
    keep = mask.numpy()
    assert 0.65 < keep.mean() < 0.85
    np.testing.assert_allclose(y.detach().numpy(), keep / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), keep / 0.75, rtol=1e-6)
    # an explicit training_mode input decides, whatever the module's mode
    model = _single_node_model("Dropout", [("x", np.ones((4, 4), dtype=np.float32))], 13,
                               consts=[("r", _F32(0.5)), ("t", np.array(False))])
    module = fv.onnx.load(model).train()
    np.testing.assert_array_equal(module(np.ones((4, 4), dtype=np.float32)).detach().numpy(), 1.0)


@pytest.mark.parametrize("auto_pad,ceil,pads,include", [
    ("SAME_UPPER", 0, None, 0), ("SAME_LOWER", 0, None, 1), ("VALID", 0, None, 0),
    ("NOTSET", 1, [1, 0, 2, 1], 0), ("NOTSET", 1, [1, 0, 2, 1], 1), ("NOTSET", 0, [2, 2, 2, 2], 1),
])
def test_pooling_gradients_flow_with_every_padding_form(auto_pad, ceil, pads, include):
    """The explicit-padding route (asymmetric pads, SAME_*, ceil_mode) is made of differentiable
    ops too: check values against the reference and gradients by finite differences."""
    from onnx.reference import ReferenceEvaluator
    from helpers import gradcheck
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 6))
    for op in ("MaxPool", "AveragePool"):
        attrs = dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad=auto_pad)
        if auto_pad == "NOTSET":
            attrs.update(pads=pads, ceil_mode=ceil)
        if op == "AveragePool":
            attrs["count_include_pad"] = include
        model = _single_node_model(op, [("x", x.astype(np.float32))], 13, **attrs)
        module = fv.onnx.load(model)
        oracle = model
        if op == "MaxPool" and auto_pad == "SAME_LOWER":
            # the reference's MaxPool gives floor(in / stride) outputs for SAME_LOWER, against the
            # specification's ceil(in / stride): compare with the spec's explicit pads instead
            oracle = _single_node_model(op, [("x", x.astype(np.float32))], 13, kernel_shape=[3, 3],
                                        strides=[2, 2], pads=[1, 1, 1, 1])
        (ref,) = ReferenceEvaluator(oracle).run(None, {"x": x.astype(np.float32)})
        with fv.no_grad():
            np.testing.assert_allclose(module(x.astype(np.float32)).numpy(), ref, rtol=1e-5, atol=1e-6)
        gradcheck(lambda t: module(t), [x])


def test_softmax_before_opset_13():
    """Before opset 13 Softmax/LogSoftmax flatten the input to 2-D at ``axis`` (default 1) and
    normalise each row (ONNX's reference evaluator applies the later rule, so the expectation is
    written out here)."""
    x = _X3.astype(np.float64)
    for op, opset, attrs, axis in [("Softmax", 11, {}, 1), ("LogSoftmax", 9, {"axis": 1}, 1),
                                   ("Softmax", 12, {"axis": 0}, 0), ("Softmax", 13, {}, None)]:
        if axis is None:
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            want = e / e.sum(axis=-1, keepdims=True)
        else:
            flat = x.reshape(int(np.prod(x.shape[:axis])), -1)
            e = np.exp(flat - flat.max(axis=1, keepdims=True))
            want = (e / e.sum(axis=1, keepdims=True)).reshape(x.shape)
        if op == "LogSoftmax":
            want = np.log(want)
        module = fv.onnx.load(_single_node_model(op, [("x", _X3)], opset, **attrs))
        with fv.no_grad():
            np.testing.assert_allclose(module(_X3).numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_lrn_window_as_specified(size):
    """LRN's window for channel c is [c - floor((size-1)/2), c + ceil((size-1)/2)] (asymmetric for
    an even size, the other way round from PyTorch's), written out in NumPy here (ONNX's reference
    LRN loops over the batch axis instead of the channels)."""
    x = np.random.default_rng(size).standard_normal((2, 6, 3, 2)).astype(np.float32)
    alpha, beta, bias = 0.3, 0.75, 1.5
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    sq = np.zeros_like(x, dtype=np.float64)
    for c in range(x.shape[1]):
        sq[:, c] = (x[:, max(0, c - lo):min(x.shape[1], c + hi + 1)].astype(np.float64) ** 2).sum(axis=1)
    want = x / (bias + alpha / size * sq) ** beta
    module = fv.onnx.load(_single_node_model("LRN", [("x", x)], 13, size=size, alpha=alpha,
                                             beta=beta, bias=bias))
    xt = fv.tensor(x, requires_grad=True)
    out = module(xt)
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert xt.grad is not None and np.isfinite(xt.grad.numpy()).all()


def test_forms_the_reference_cannot_run():
    """Upsample-7 (scales attribute), Resize-10 (X, scales) and negative Pad widths (cropping),
    which ONNX's reference evaluator does not implement: expectations written out in NumPy."""
    def run(model):
        with fv.no_grad():
            return fv.onnx.load(model)(_X4).numpy()
    repeated = np.repeat(np.repeat(_X4, 2, axis=2), 3, axis=3)
    np.testing.assert_array_equal(
        run(_single_node_model("Upsample", [("x", _X4)], 7, scales=[1.0, 1.0, 2.0, 3.0])), repeated)
    np.testing.assert_array_equal(
        run(_single_node_model("Resize", [("x", _X4)], 10, consts=[("s", _F32(1, 1, 2, 3))],
                               mode="nearest")), repeated)
    out = run(_single_node_model("Pad", [("x", _X4)], 13, consts=[("p", _I64(0, 0, 1, -1, 0, 0, -1, 3))],
                                 mode="edge"))
    # begins (0, 0, 1, -1), ends (0, 0, -1, 3): crop the last row and first column, then pad
    want = np.pad(_X4[:, :, :-1, 1:], ((0, 0), (0, 0), (1, 0), (0, 3)), mode="edge")
    np.testing.assert_array_equal(out, want)
    with pytest.raises(OnnxLoadError, match="mode='linear' is not supported"):
        fv.onnx.load(_single_node_model("Upsample", [("x", _X4)], 7, scales=[1.0, 1.0, 2.0, 2.0],
                                        mode="linear"))
