"""Inference optimisation: same eval-mode outputs at any batch size, folded BatchNorm, fused
activations, the original model untouched, clear errors."""
import numpy as np
import pytest
from helpers import count_calls

import foveanet as fv
from foveanet import nn
from foveanet.interop.optimize import InferenceModel, OptimizationError
from foveanet.ops import _winograd
from foveanet.ops import conv as conv_module


def _randomise_bn(model, seed=0):
    """Non-trivial BatchNorm statistics and affine parameters, so that folding is really tested
    (fresh ones are the identity: mean 0, var 1, weight 1, bias 0)."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.running_mean.shape
            m.running_mean.data[...] = rng.normal(0, 0.2, c)
            m.running_var.data[...] = rng.uniform(0.5, 2.0, c)
            if m.weight is not None:
                m.weight.data[...] = rng.uniform(0.5, 1.5, c)
                m.bias.data[...] = rng.normal(0, 0.2, c)
    return model


def _assert_close(ref, got):
    ref, got = np.asarray(ref), np.asarray(got)
    assert ref.shape == got.shape and got.dtype == ref.dtype
    diff = float(np.max(np.abs(ref.astype(np.float64) - got)))
    assert diff <= 1e-5 * float(np.max(np.abs(ref))) + 1e-6, diff


def _check(model, sample_shape, batches=(1, 7), example=None, verify=True):
    """Optimise ``model`` and compare it with the eval-mode model at batch sizes other than the
    traced ones."""
    model.eval()
    opt = fv.optimize_for_inference(model, sample_shape if example is None else example, verify=verify)
    assert isinstance(opt, InferenceModel)
    for n in batches:
        x = fv.randn(n, *sample_shape)
        with fv.no_grad():
            ref = model(x)
        got = opt(x)
        assert isinstance(got, fv.Tensor) and not got.requires_grad
        _assert_close(ref.numpy(), got.numpy())
    return opt


# name, options, one sample's shape, BN folded, BN left as scale+shift, ReLU fused
ZOO = [
    ("lenet5", {}, (1, 28, 28), 0, 0, 4),
    ("cnn_bn", {"width": 16}, (1, 28, 28), 4, 0, 5),
    # 0.2 s with one BLAS thread, 8 s with two on a busy 2-core machine (the engine's per-sample
    # products wait for the second thread at every call)
    pytest.param("resnet20", {}, (3, 32, 32), 19, 0, 19, marks=pytest.mark.slow),
    ("mlp", {"hidden": (64, 32)}, (1, 28, 28), 0, 0, 2),
    # dense layers: conv1x1 -> norm2 folds; norm1 (after the concatenation), the transitions'
    # and the final norm cannot (no convolution right before them) and become scale+shift
    ("densenet_bc", {"depth": 16, "growth_rate": 6}, (3, 32, 32), 6, 9, 15),
    # the stem's BN and each block's bn2, bn3 fold (1 + 3 x 2); each block's bn1 reads the block
    # input, which the shortcut reads too, and the final BN follows an addition (3 + 1 stay)
    ("pyramidnet", {"depth": 8, "alpha": 12}, (3, 32, 32), 7, 4, 4),
]


@pytest.mark.parametrize("name,options,shape,folded,affine,relus", ZOO,
                         ids=[z.values[0] if hasattr(z, "values") else z[0] for z in ZOO])
def test_zoo_models_same_outputs_any_batch(name, options, shape, folded, affine, relus):
    fv.manual_seed(0)
    model = _randomise_bn(fv.models.create(name, **options))
    # small models from a shape (the model is run once more to read it), larger from a Tensor
    example = fv.randn(1, *shape) if name in ("resnet20", "densenet_bc", "pyramidnet") else None
    opt = _check(model, shape, example=example)
    assert opt.stats["bn_folded"] == folded
    assert opt.stats["bn_affine"] == affine
    assert opt.stats["relu_fused"] == relus
    assert f"{folded} BN folded" in repr(opt) and f"{relus} ReLU fused" in repr(opt)
    assert f"{opt.stats['steps']} steps" in repr(opt)
    assert opt.stats["steps"] < opt.stats["nodes"]
    if _winograd._kernels() is not None:  # the compiled convolutions, as in training
        if name in ("cnn_bn", "resnet20"):
            assert "winograd" in opt.describe()  # 3x3 layers with more than 150 taps
        if name in ("lenet5", "cnn_bn", "resnet20"):
            assert " direct" in opt.describe()  # the few-tap layers
        if name in ("resnet20", "pyramidnet"):  # the 3x3 stride-2 layers on phase planes
            assert " direct s2" in opt.describe()


@pytest.mark.slow
@pytest.mark.parametrize("name,shape,folded,relus", [
    ("vgg11_bn", (3, 32, 32), 8, 10),   # 129M parameters (the 25088 x 4096 classifier)
    ("alexnet", (3, 63, 63), 0, 7),     # the smallest input AlexNet takes
])
def test_large_zoo_models(name, shape, folded, relus):
    fv.manual_seed(0)
    model = _randomise_bn(fv.models.create(name, num_classes=10)).eval()
    example = fv.randn(1, *shape)       # a Tensor: no extra forward pass to read the shape
    opt = _check(model, shape, batches=(1, 3), example=example, verify=False)
    assert opt.stats["bn_folded"] == folded and opt.stats["relu_fused"] == relus
    assert opt.stats["dropped"] == 0    # eval-mode Dropout is not even traced


class Custom(nn.Module):
    """Residual addition, concatenation, BatchNorm after a Linear (BatchNorm1d), dropout."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.3)
        self.fc1 = nn.Linear(16 * 6 * 6, 32)
        self.bn3 = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 5)

    def forward(self, x):
        y = fv.relu(self.bn1(self.conv1(x)))
        r = fv.relu(self.bn2(self.conv2(y)) + y)       # residual add, ReLU fused into the add
        c = fv.cat([r, y], 1)
        h = self.drop(c).flatten(1)
        h = fv.relu(self.bn3(self.fc1(h)))             # BN1d folded into the Linear
        return self.fc2(self.drop(h))


@pytest.mark.parametrize("threads,split", [(1, True), (2, True), (2, False)])
def test_both_convolution_kernels(monkeypatch, threads, split):
    """One BLAS thread: per-sample products (NCHW); several: one product per chunk, channel-major
    output, small ones cut into single-thread pieces (or not). All with several chunks, strides,
    dilation, 1x1 convolutions, padding and pooling in between."""
    from foveanet.ops import algorithms
    from foveanet.ops import conv as optimize  # im2col's inference kernel lives there

    monkeypatch.setattr(optimize, "blas_threads", lambda: threads)
    if not split:
        monkeypatch.setattr(optimize, "SPLIT_GEMM_MACS", 0)
    monkeypatch.setattr(optimize, "INFER_CHUNK_BYTES", 1 << 18)   # chunks of 2 samples and 1
    fv.manual_seed(2)
    model = _randomise_bn(nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=(1, 2), dilation=(1, 2)), nn.ReLU(),
        nn.Conv2d(32, 64, 1), nn.BatchNorm2d(64), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(256, 5)))
    with algorithms.force(conv2d="im2col"):  # the 3->32 layer through the im2col kernel
        _check(model, (3, 32, 32), batches=(1, 9))


def test_custom_module_residual_cat_bn1d_dropout():
    fv.manual_seed(1)
    model = _randomise_bn(Custom())
    opt = _check(model, (3, 6, 6))
    assert opt.stats["bn_folded"] == 3 and opt.stats["bn_affine"] == 0
    assert opt.stats["relu_fused"] == 3


def test_training_mode_dropout_node_is_dropped():
    """A Dropout that runs even in eval mode (F.dropout(training=True)) is an identity in the
    plan: inference is deterministic."""
    class AlwaysDrop(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(fv.nn.functional.dropout(x, 0.5, training=True))

    fv.manual_seed(0)
    m = AlwaysDrop()
    opt = fv.optimize_for_inference(m, (4,), verify=False)
    assert opt.stats["dropped"] == 1
    x = fv.randn(7, 4)
    with fv.no_grad():
        _assert_close(m.fc(x).numpy(), opt(x).numpy())


def test_bn_whose_conv_output_has_two_users_is_not_folded():
    class TwoUsers(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return fv.relu(self.bn(y)) + y

    fv.manual_seed(0)
    opt = _check(_randomise_bn(TwoUsers()), (2, 5, 5))
    assert opt.stats["bn_folded"] == 0 and opt.stats["bn_affine"] == 1
    assert opt.stats["relu_fused"] == 1           # into the scale+shift


def test_bn_after_grouped_conv_folds_and_leaky_relu_clamp_fuse():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 8, 3, groups=2, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.act = nn.LeakyReLU(0.1)
            self.fc = nn.Linear(8 * 3 * 3, 6)

        def forward(self, x):
            y = self.act(self.bn(self.conv(x)))
            return fv.clamp(self.fc(y.flatten(1)), 0.0, 0.05)  # ReLU6-like

    fv.manual_seed(0)
    opt = _check(_randomise_bn(Net()), (4, 5, 5))
    assert opt.stats["bn_folded"] == 1 and opt.stats["activations_fused"] == 2


def test_original_model_untouched_modes_restored_weights_copied():
    fv.manual_seed(0)
    model = _randomise_bn(fv.models.create("cnn_bn", width=8))
    model.train()
    model[1].eval()                                    # mixed modes must come back as they were
    modes = [m.training for m in model.modules()]
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    opt = fv.optimize_for_inference(model, (1, 28, 28))
    assert [m.training for m in model.modules()] == modes
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k].numpy())
    x = fv.randn(3, 1, 28, 28)
    model.eval()
    with fv.no_grad():
        ref = model(x).numpy()
    # the plan is a snapshot: changing the model afterwards does not reach it
    for p in model.parameters():
        p.data[...] = 0.0
    _assert_close(ref, opt(x).numpy())


def test_inputs_outputs_and_modes_of_the_optimised_model():
    fv.manual_seed(0)
    model = fv.models.create("lenet5").eval()
    opt = fv.optimize_for_inference(model, fv.randn(2, 1, 28, 28))   # a Tensor example
    x = fv.randn(4, 1, 28, 28, requires_grad=True)
    with fv.no_grad():
        ref = model(x).numpy()
    opt.train()                              # ignored: it only does inference
    with fv.enable_grad():
        out = opt(x)
    assert isinstance(out, fv.Tensor) and not out.requires_grad and out.grad_fn is None
    _assert_close(ref, out.numpy())
    out_np = opt(x.detach().numpy().astype(np.float64))  # an array, cast to the optimised dtype
    assert isinstance(out_np, fv.Tensor)
    _assert_close(ref, out_np.numpy())
    raw = opt.run(x.detach().numpy())
    assert isinstance(raw, np.ndarray)
    _assert_close(ref, raw)
    # a batch's shape works as the example too
    opt2 = fv.optimize_for_inference(model, (8, 1, 28, 28))
    _assert_close(ref, opt2(x).numpy())
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 1, 28, 28\)"):
        opt(fv.randn(4, 1, 32, 32))
    assert "InferenceModel" in repr(opt) and "ReLU fused" in repr(opt)
    assert len(opt.describe().splitlines()) == opt.stats["steps"] + 1
    assert list(opt.parameters()) == []


def test_output_structure_and_outputs_that_are_read_again():
    class Multi(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 4)
            self.b = nn.Linear(3, 4)

        def forward(self, x):
            a, b = self.a(x), self.b(x)
            s = a + b              # b is dead afterwards (may be overwritten), a is not
            return s * a, {"a": a, "s": s}

    fv.manual_seed(0)
    m = Multi().eval()
    opt = fv.optimize_for_inference(m, (3,))
    x = fv.randn(7, 3)
    with fv.no_grad():
        ref = m(x)
    got = opt(x)
    assert isinstance(got, tuple) and isinstance(got[1], dict) and set(got[1]) == {"a", "s"}
    _assert_close(ref[0].numpy(), got[0].numpy())
    _assert_close(ref[1]["a"].numpy(), got[1]["a"].numpy())
    _assert_close(ref[1]["s"].numpy(), got[1]["s"].numpy())


def test_reshape_targets_that_are_multiples_of_the_batch_and_constant_folding():
    class Groups(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(fv.randn(4, 6))

        def forward(self, x):
            n = x.shape[0]
            y = x.reshape(n * 4, -1).sum(1).reshape(n, 4)     # (4N, 6) then (N, 4)
            return y @ (self.w * 2.0)                          # w * 2 is computed once

    fv.manual_seed(0)
    m = Groups()
    opt = _check(m, (24,))
    assert opt.stats["constants_folded"] == 1


def test_unused_operations_are_removed():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            self.last_mean = x.mean()          # computed, then never used by the output
            return self.fc(x)

    fv.manual_seed(0)
    opt = _check(Unused(), (3,))
    assert opt.stats["dead_removed"] == 1 and opt.stats["steps"] == 1


def test_needs_an_example_input_unless_the_model_has_input_shape():
    model = fv.models.create("lenet5")
    with pytest.raises(ValueError, match="an example input is needed"):
        fv.optimize_for_inference(model)
    model.input_shape = (1, 28, 28)
    opt = fv.optimize_for_inference(model)
    assert opt.sample_shape == (1, 28, 28)


def test_clear_errors_for_what_a_plan_cannot_do():
    class BatchConst(nn.Module):
        def forward(self, x):
            return x + fv.zeros(x.shape[0], 4)      # a constant built from the batch size

    with pytest.raises(OptimizationError, match="depends on the batch"):
        fv.optimize_for_inference(BatchConst(), (4,))

    class Branchy(nn.Module):
        def forward(self, x):
            return x * 2 if x.shape[0] > 6 else x + 1

    with pytest.raises(OptimizationError, match="runs different operations"):
        fv.optimize_for_inference(Branchy(), (4,))

    class AlwaysTrainingBN(nn.BatchNorm1d):
        def forward(self, x):
            return fv.nn.functional.batch_norm(x, self.running_mean, self.running_var,
                                               self.weight, self.bias, training=True)

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = AlwaysTrainingBN(4)

        def forward(self, x):
            return self.inner(x)

    with pytest.raises(OptimizationError, match=r"BatchNorm \(module 'inner'\).*running statistics"):
        fv.optimize_for_inference(Outer(), (4,))
    with pytest.raises(ValueError, match="does not accept input"):
        fv.optimize_for_inference(fv.models.create("lenet5"), (3, 5))
    # the perceptron's forward builds its output from raw arrays: the tracer cannot see it
    with pytest.raises(OptimizationError, match="cannot capture the model's graph"):
        fv.optimize_for_inference(fv.models.create("perceptron"), (784,))
    with pytest.raises(TypeError, match="already an optimised"):
        fv.optimize_for_inference(fv.optimize_for_inference(nn.Linear(2, 2), (2,)), (2,))


@pytest.mark.skipif(_winograd._kernels() is None, reason="needs numba")
def test_winograd_steps_take_im2col_at_small_batches(monkeypatch):
    # a plan serves any batch, so Winograd's step decides per call: 512 channels on a 7x7 map at
    # batch 1 (4 tiles) is a read of the 36 x 512 x 512 transformed weight for little work,
    # im2col's product is faster there; at batch 8 the tiles pay for it
    fv.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(512, 512, 3, padding=1), nn.ReLU()).eval()
    opt = fv.optimize_for_inference(model, (512, 7, 7))
    assert "winograd (im2col at small batches)" in opt.describe()
    xs = {n: fv.randn(n, 512, 7, 7) for n in (1, 8)}
    with fv.no_grad():
        refs = {n: model(x).numpy() for n, x in xs.items()}
    im2col = count_calls(monkeypatch, conv_module, "infer_im2col")
    winograd = count_calls(monkeypatch, _winograd, "forward")
    for n, via in ((1, im2col), (8, winograd), (1, im2col)):
        before = (len(im2col), len(winograd))
        np.testing.assert_allclose(opt(xs[n]).numpy(), refs[n], rtol=1e-4, atol=1e-4)
        assert (len(im2col), len(winograd)) == (before[0] + (via is im2col),
                                                before[1] + (via is winograd)), n
