"""ONNX export of the image-output models (issue 21): each exports with ``fv.onnx.export`` and
onnxruntime gives foveanet's outputs (eval mode) at two batch sizes, the VAE's three outputs and
the conditional GAN's two inputs included. The max-pooling indices -> max-unpooling path is
checked on its own at N > 1 and C > 1 (ONNX's indices are flat over the whole tensor, the
engine's per plane: a mix-up shows only there), with odd sizes, an ``output_size`` that is not
the pooled input's size, overlapping windows and an unbatched input; indices that do not come
from a pooling are refused by name. Import: ``fv.onnx.load`` reads the MaxUnpool back (ONNX's
reference semantics for ``output_shape``; foveanet's own files give the same results and train)."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import foveanet as fv  # noqa: E402
import foveanet.models as M  # noqa: E402
from foveanet import nn  # noqa: E402
from foveanet.interop.onnx_export import ONNXExportError, export  # noqa: E402
from foveanet.interop.onnx_import import OnnxNodeError  # noqa: E402
from foveanet.nn import functional as F  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402


def _session(proto):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _close(got, ref, what="output"):
    assert got.shape == ref.shape and got.dtype == ref.dtype, (what, got.shape, ref.shape)
    tol = 1e-4 * np.abs(ref).max() + 1e-6
    assert np.abs(got - ref).max() <= tol, (what, np.abs(got - ref).max(), tol)


def _inputs(kinds, n, seed):
    """One batch of n per input kind: ('image', C, H, W), ('noise', D) or ('labels', K)."""
    rng = np.random.default_rng(seed)
    out = []
    for kind, *dims in kinds:
        if kind == "image":
            out.append(rng.random((n, *dims), dtype=np.float32))
        elif kind == "noise":
            out.append(rng.standard_normal((n, *dims)).astype(np.float32))
        else:
            out.append(rng.integers(0, dims[0], n).astype(np.int64))
    return out


def round_trip(model, kinds, batches=(2, 3), names=None):
    """Export at the first batch size, run the file in onnxruntime at every batch size against
    foveanet's eval-mode outputs; returns the proto."""
    model.eval()
    proto = export(model, [fv.tensor(a) for a in _inputs(kinds, batches[0], 0)], None,
                   input_names=names)
    sess = _session(proto)
    for k, n in enumerate(batches):
        xs = _inputs(kinds, n, k + 1)
        got = sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), xs)})
        with fv.no_grad():
            ref = model(*[fv.tensor(x) for x in xs])
        ref = list(ref) if isinstance(ref, tuple) else [ref]
        assert len(got) == len(ref)
        for j, (g, r) in enumerate(zip(got, ref)):
            _close(g, r.numpy(), f"output {j} at batch {n}")
    return proto


def _bn_statistics(model, seed=0):
    """Running statistics away from (0, 1), so that the exported BatchNormalization matters."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.data[...] = rng.uniform(-0.1, 0.1, m.running_mean.shape)
            m.running_var.data[...] = rng.uniform(0.5, 1.5, m.running_var.shape)
    return model


# ---------------------------------------------------------------------------------- the models
@pytest.mark.parametrize("name,kw,kinds", [
    ("dense_ae", {"hidden": (64,)}, [("image", 1, 28, 28)]),
    ("conv_ae", {"width": 8}, [("image", 1, 28, 28)]),
    ("conv_ae", {"in_channels": 3, "image_size": 32, "width": 4}, [("image", 3, 32, 32)]),
    ("segnet_small", {"depth": 2, "width": 8}, [("image", 1, 28, 28)]),
    ("segnet_small", {"in_channels": 3, "width": 4}, [("image", 3, 32, 32)]),
    ("unet", {"depth": 2, "width": 8}, [("image", 1, 28, 28)]),
    ("unet", {"in_channels": 3, "num_classes": 2, "width": 4}, [("image", 3, 32, 32)]),
    ("dcgan_generator", {"width": 8}, [("noise", 100)]),
    ("dcgan_generator", {"image_size": 64, "out_channels": 3, "width": 4}, [("noise", 100)]),
    ("dcgan_discriminator", {"width": 8}, [("image", 1, 28, 28)]),
    ("dcgan_discriminator", {"image_size": 32, "in_channels": 3, "width": 4},
     [("image", 3, 32, 32)]),
])
def test_model_exports_and_onnxruntime_agrees(name, kw, kinds):
    fv.manual_seed(0)
    model = _bn_statistics(M.create(name, **kw))
    proto = round_trip(model, kinds)
    ops = {n.op_type for n in proto.graph.node}
    if name == "segnet_small":
        assert {"MaxPool", "MaxUnpool"} <= ops
        pools = [n for n in proto.graph.node if n.op_type == "MaxPool"]
        assert all(len(n.output) == 2 for n in pools)  # (values, Indices)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_vae_exports_its_three_outputs():
    fv.manual_seed(0)
    model = _bn_statistics(M.create("vae", latent=6, width=8))
    proto = round_trip(model, [("image", 1, 28, 28)])
    assert [o.name for o in proto.graph.output] == ["output", "output_1", "output_2"]
    dims = [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
            for o in proto.graph.output]
    assert dims == [["batch", 1, 28, 28], ["batch", 6], ["batch", 6]]


@pytest.mark.parametrize("name,kinds", [
    ("dcgan_generator", [("noise", 100), ("labels", 10)]),
    ("dcgan_discriminator", [("image", 1, 28, 28), ("labels", 10)]),
])
def test_conditional_gan_exports_with_the_labels_as_a_second_input(name, kinds):
    fv.manual_seed(0)
    model = _bn_statistics(M.create(name, num_classes=10, width=8))
    proto = round_trip(model, kinds, names=["input", "labels"])
    labels = proto.graph.input[1]
    assert labels.name == "labels" and labels.type.tensor_type.elem_type == TensorProto.INT64
    assert labels.type.tensor_type.shape.dim[0].dim_param == "batch"
    # the labels matter in the file too
    sess = _session(proto)
    x = _inputs(kinds[:1], 2, 5)[0]
    a = sess.run(None, {"input": x, "labels": np.array([1, 2])})[0]
    b = sess.run(None, {"input": x, "labels": np.array([1, 3])})[0]
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], b[1])


@pytest.mark.slow
def test_full_segnet_exports():
    fv.manual_seed(0)
    round_trip(_bn_statistics(M.create("segnet", num_classes=4)), [("image", 3, 45, 38)],
               batches=(1, 2))


# ----------------------------------------------------------------- max pooling and unpooling
class PoolUnpool(nn.Module):
    """max_pool2d with indices, arithmetic on the pooled values, max_unpool2d; both maps out
    (compared exactly: no arithmetic that could round differently)."""

    def __init__(self, kernel=2, stride=None, padding=0, output_size=None):
        super().__init__()
        self.k, self.s, self.p, self.size = kernel, stride, padding, output_size

    def forward(self, x):
        y, idx = F.max_pool2d(x, self.k, self.s, self.p, return_indices=True)
        up = F.max_unpool2d(y * 2.0, idx, self.k, self.s, self.p, output_size=self.size)
        return up - 0.5, y


@pytest.mark.parametrize("kw,shape", [
    ({}, (2, 3, 8, 8)),
    ({"output_size": (7, 7)}, (2, 3, 7, 7)),          # odd: the last row and column unpool to 0
    ({"output_size": (9, 9)}, (2, 3, 8, 8)),          # planes of 81 for indices over 64
    ({"output_size": (5, 7)}, (3, 3, 4, 6)),          # default 4x6: grown in both directions
    ({"kernel": 3, "stride": 2, "padding": 1}, (2, 3, 9, 9)),   # overlapping, padded windows
    ({"kernel": 3, "stride": 2, "padding": 1, "output_size": (10, 10)}, (2, 3, 10, 10)),
    ({"kernel": (2, 3), "stride": (2, 1)}, (2, 3, 6, 7)),
])
def test_max_unpool_by_the_pooling_indices_round_trips(kw, shape):
    fv.manual_seed(0)
    model = PoolUnpool(**kw)
    model.eval()
    x = fv.randn(*shape)
    proto = export(model, x, None)
    assert [n.op_type for n in proto.graph.node].count("MaxUnpool") == 1
    sess = _session(proto)
    for n in (shape[0], shape[0] + 2):
        xs = np.random.default_rng(n).standard_normal((n, *shape[1:])).astype(np.float32)
        got = sess.run(None, {"input": xs})
        with fv.no_grad():
            ref = model(fv.tensor(xs))
        for g, r in zip(got, ref):
            np.testing.assert_array_equal(g, r.numpy())
    # and the unpooled map is not trivially zero: each distinct index of a plane holds a value
    with fv.no_grad():
        y, idx = F.max_pool2d(x, model.k, model.s, model.p, return_indices=True)
        up = F.max_unpool2d(y, idx, model.k, model.s, model.p, output_size=model.size)
    planes = idx.numpy().reshape(shape[0] * shape[1], -1)
    assert np.count_nonzero(up.numpy()) == sum(len(np.unique(p)) for p in planes)


def test_unbatched_max_unpool_round_trips():
    class Plain(nn.Module):
        def forward(self, x):
            y, idx = F.max_pool2d(x, 2, return_indices=True)
            return F.max_unpool2d(y, idx, 2, output_size=(7, 7))
    x = fv.randn(3, 7, 7)
    proto = export(Plain(), x, None, dynamic_batch=False)
    got = _session(proto).run(None, {"input": x.numpy()})[0]
    np.testing.assert_array_equal(got, Plain()(x).numpy())


def test_indices_that_do_not_come_from_a_pooling_are_refused():
    class FromArray(nn.Module):
        def forward(self, x):
            y, idx = F.max_pool2d(x, 2, return_indices=True)
            return F.max_unpool2d(y, fv.tensor(idx.numpy().copy()), 2)

    class FromInput(nn.Module):
        def forward(self, x, idx):
            return F.max_unpool2d(x, idx, 2)
    with pytest.raises(ONNXExportError, match=r"MaxUnpool2d in the model's own forward: its "
                                              r"indices do not come from a max_pool2d"):
        export(FromArray(), fv.randn(2, 3, 4, 4), None)
    idx = fv.tensor(np.zeros((2, 3, 2, 2), dtype=np.int64))
    with pytest.raises(ONNXExportError, match="indices do not come from a max_pool2d"):
        export(FromInput(), [fv.randn(2, 3, 2, 2), idx], None)


# ----------------------------------------------------------------------------------- import
def test_exported_segnet_small_loads_back_gives_the_same_scores_and_trains(tmp_path):
    fv.manual_seed(0)
    model = _bn_statistics(M.create("segnet_small", num_classes=3, in_channels=2, width=4))
    model.eval()
    path = tmp_path / "segnet.onnx"
    export(model, fv.rand(2, 2, 32, 32), path)
    back = fv.onnx.load(path)
    back.eval()
    x = fv.rand(3, 2, 32, 32)
    with fv.no_grad():
        _close(back(x).numpy(), model(x).numpy())
    back.train()
    x.requires_grad = True
    back(x).sum().backward()
    assert np.abs(x.grad.numpy()).sum() > 0
    assert all(p.grad is not None for p in back.parameters())


def _unpool_graph(output_shape=None, pads=None):
    node = helper.make_node("MaxUnpool", ["x", "i"] + (["shape"] if output_shape else []), ["y"],
                            kernel_shape=[2, 2], strides=[2, 2], **({"pads": pads} if pads else {}))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2, 2, 2]),
              helper.make_tensor_value_info("i", TensorProto.INT64, [2, 2, 2, 2])]
    inits = [onnx.numpy_helper.from_array(np.array(output_shape, np.int64), "shape")] \
        if output_shape else []
    graph = helper.make_graph([node], "unpool", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_imported_max_unpool_follows_onnx_reference():
    from onnx.reference import ReferenceEvaluator
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 2, 2)).astype(np.float32)
    # each plane's values at positions of its own 4x4 plane, flat over the whole (2, 2, 4, 4)
    local = np.stack([rng.permutation(16)[:4] for _ in range(4)]).reshape(2, 2, 2, 2)
    flat = local + (np.arange(4) * 16).reshape(2, 2, 1, 1)
    for shape in (None, [2, 2, 5, 6]):
        proto = _unpool_graph(shape)
        ref = ReferenceEvaluator(proto).run(None, {"x": x, "i": flat})[0]
        back = fv.onnx.load(proto)
        got = back(fv.tensor(x), fv.tensor(flat)).numpy()
        np.testing.assert_array_equal(got, ref)
        assert got.shape == ((2, 2, 4, 4) if shape is None else tuple(shape))
    with pytest.raises(OnnxNodeError, match="does not fall in its own"):
        fv.onnx.load(_unpool_graph())(fv.tensor(x), fv.tensor(local))  # per-plane indices
    with pytest.raises(OnnxNodeError, match="at least the inferred unpooled size"):
        fv.onnx.load(_unpool_graph([2, 2, 3, 3]))(fv.tensor(x), fv.tensor(flat))
