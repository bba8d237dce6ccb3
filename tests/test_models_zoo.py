"""The model zoo: published sizes, torchvision layouts (state dicts load and give the same
outputs as a plain-torch re-implementation), a forward pass and a training step per family, the
perceptron learning rule, and the lecture's bottleneck arithmetic computed by ``summary``."""
import numpy as np
import pytest
import torch
import torch.nn as tnn

import foveanet as fv
import foveanet.models as M
import foveanet.nn.functional as F
from zoo_twins import TAlexNet, TBasic, TBottleneck, TDenseNet, TResNet, twin

ZOO = {"perceptron", "mlp", "lenet5", "alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16",
       "vgg16_bn", "vgg19", "vgg19_bn", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
       "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202", "resnet_cifar",
       "preact_resnet", "wide_resnet", "densenet121", "densenet169", "densenet201", "densenet_bc",
       "pyramidnet"}


def test_every_network_of_the_lecture_is_registered_with_num_classes_and_in_channels():
    assert ZOO <= set(M.list_models())
    for name in ZOO:
        opts = M.model_options(name)
        assert "num_classes" in opts and "in_channels" in opts, name
    assert M.model_options("resnet50")["num_classes"] == 1000  # torchvision's defaults
    assert M.model_options("resnet110")["num_classes"] == 10   # CIFAR's
    wrn = M.model_options("wide_resnet")
    assert wrn["depth"] == 28 and wrn["widen_factor"] == 10


# ----------------------------------------------------------------------------- parameter counts
# torchvision's num_params (checked against its model documentation pages)
TORCHVISION = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
               "resnet101": 44_549_160, "resnet152": 60_192_808, "alexnet": 61_100_840,
               "densenet121": 7_978_856, "densenet169": 14_149_480, "densenet201": 20_013_928}
VGG = {"vgg11": 132_863_336, "vgg11_bn": 132_868_840, "vgg13": 133_047_848, "vgg13_bn": 133_053_736,
       "vgg16": 138_357_544, "vgg16_bn": 138_365_992, "vgg19": 143_667_240, "vgg19_bn": 143_678_248}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_imagenet_parameter_counts_equal_torchvision(name):
    assert M.create(name).num_parameters() == TORCHVISION[name]


@pytest.mark.slow
def test_vgg_parameter_counts_equal_torchvision():
    for name, count in VGG.items():
        model = M.create(name, init_weights=False)
        assert model.num_parameters() == count, name
        del model


# (constructor, options, published figure in millions, the table's decimals)
CIFAR = [
    ("resnet20", {}, 0.27, 2), ("resnet32", {}, 0.46, 2), ("resnet44", {}, 0.66, 2),
    ("resnet56", {}, 0.85, 2), ("resnet110", {}, 1.7, 1), ("resnet1202", {}, 19.4, 1),  # He 2016a, Table 6
    ("preact_resnet", {"depth": 164}, 1.7, 1),                                          # He 2016b, Table 3
    ("wide_resnet", {"depth": 28, "widen_factor": 10}, 36.5, 1),                 # Zagoruyko & Komodakis
    ("wide_resnet", {"depth": 40, "widen_factor": 4}, 8.9, 1),
    ("densenet_bc", {"depth": 100, "growth_rate": 12}, 0.8, 1),                         # Huang 2017, Table 2
    ("densenet_bc", {"depth": 250, "growth_rate": 24}, 15.3, 1),
    ("densenet_bc", {"depth": 190, "growth_rate": 40}, 25.6, 1),
]


@pytest.mark.parametrize("name,kw,published,decimals", CIFAR)
def test_cifar_parameter_counts_equal_the_papers_tables(name, kw, published, decimals):
    assert round(M.create(name, **kw).num_parameters() / 1e6, decimals) == published


def _weights_only(model):
    """Parameters of the convolutions and the fc layer (BatchNorm's scale and shift left out)."""
    return sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
               for m in model.modules() if isinstance(m, (fv.nn.Conv2d, fv.nn.Linear)))


def test_preact_resnet_110_and_1001():
    # He et al. 2016b give ResNet-1001 10.2M: the count of its convolution and fc weights. With
    # BatchNorm's scales and shifts (which the 1.7M of ResNet-164 and every other table include
    # without changing the rounding) it has 10,327,706.
    m = M.create("preact_resnet", depth=1001)
    assert round(_weights_only(m) / 1e6, 1) == 10.2
    assert m.num_parameters() == 10_327_706
    assert round(M.create("preact_resnet", depth=110).num_parameters() / 1e6, 1) == 1.7


# PyramidNet (Han et al. 2017, Table 4): the authors' code (dyhan0920/PyramidNet-PyTorch) builds
# networks with these exact counts; the paper's table lists 1.7M/3.8M/28.3M/27.0M/26.0M.
PYRAMID = [({"depth": 110, "alpha": 48}, 1_772_706, 1.7), ({"depth": 110, "alpha": 84}, 3_904_446, 3.8),
           ({"depth": 110, "alpha": 270}, 28_485_477, 28.3),
           ({"depth": 164, "alpha": 270, "bottleneck": True}, 27_216_021, 27.0),
           ({"depth": 272, "alpha": 200, "bottleneck": True}, 26_210_842, 26.0)]


@pytest.mark.parametrize("kw,exact,paper", PYRAMID)
def test_pyramidnet_parameter_counts(kw, exact, paper):
    n = M.create("pyramidnet", **kw).num_parameters()
    assert n == exact
    assert abs(n / 1e6 - paper) / paper < 0.045  # within 4.5% of the paper's table


# ------------------------------------------------------------ torchvision layout: load and compare
def _randomise_bn_stats(model):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, tnn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + 0.5 * torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))


def _load_and_compare(ref, ours, shape):
    torch.manual_seed(0)
    _randomise_bn_stats(ref)
    ref.eval()
    sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    ours_sd = ours.state_dict()
    assert list(ours_sd) == list(sd)  # the same keys in the same order
    for k, v in ours_sd.items():
        assert tuple(v.shape) == sd[k].shape, k
    ours.load_state_dict(sd, strict=True)
    ours.eval()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    with fv.no_grad():
        got = ours(fv.tensor(x)).numpy()
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= 1e-4 * max(1.0, np.max(np.abs(want)))


def test_resnet18_loads_a_torchvision_layout_state_dict_and_matches_its_outputs():
    _load_and_compare(TResNet(TBasic, [2, 2, 2, 2]), M.create("resnet18"), (2, 3, 64, 64))


@pytest.mark.slow
def test_resnet50_loads_a_torchvision_layout_state_dict_and_matches_its_outputs():
    _load_and_compare(TResNet(TBottleneck, [3, 4, 6, 3], num_classes=10),
                      M.create("resnet50", num_classes=10), (1, 3, 64, 64))


@pytest.mark.slow
def test_alexnet_loads_a_torchvision_layout_state_dict_and_matches_its_outputs():
    _load_and_compare(TAlexNet(10), M.create("alexnet", num_classes=10), (2, 3, 64, 64))


@pytest.mark.slow
def test_vgg16_loads_a_torchvision_layout_state_dict_and_matches_its_outputs():
    _load_and_compare(twin("vgg16", 10), M.create("vgg16", num_classes=10), (1, 3, 32, 32))


def test_densenet_loads_a_torchvision_layout_state_dict_and_matches_its_outputs():
    ref = TDenseNet(8, (2, 3, 2, 2), 16, num_classes=5)
    ours = M.DenseNet(8, (2, 3, 2, 2), 16, num_classes=5)
    _load_and_compare(ref, ours, (2, 3, 64, 64))


def test_densenet121_has_torchvisions_state_dict_keys():
    keys = [k for k in M.create("densenet121").state_dict() if not k.endswith("num_batches_tracked")]
    assert keys[:6] == ["features.conv0.weight", "features.norm0.weight", "features.norm0.bias",
                        "features.norm0.running_mean", "features.norm0.running_var",
                        "features.denseblock1.denselayer1.norm1.weight"]
    assert "features.transition3.conv.weight" in keys
    assert "features.denseblock4.denselayer16.conv2.weight" in keys
    assert keys[-6:] == ["features.norm5.weight", "features.norm5.bias", "features.norm5.running_mean",
                         "features.norm5.running_var", "classifier.weight", "classifier.bias"]


@pytest.mark.slow
def test_alexnet_and_vgg_have_torchvisions_state_dict_keys():
    a = M.create("alexnet", num_classes=10).state_dict()
    assert [k for k in a if k.endswith("weight")] == [
        "features.0.weight", "features.3.weight", "features.6.weight", "features.8.weight",
        "features.10.weight", "classifier.1.weight", "classifier.4.weight", "classifier.6.weight"]
    assert a["classifier.1.weight"].shape == (4096, 9216)
    v = M.VGG(M.vgg.make_layers([8, "M", 16, "M"], batch_norm=True), num_classes=10)
    assert list(v.state_dict())[:7] == ["features.0.weight", "features.0.bias", "features.1.weight",
                                        "features.1.bias", "features.1.running_mean", "features.1.running_var",
                                        "features.1.num_batches_tracked"]
    assert "features.4.weight" in v.state_dict() and "classifier.6.bias" in v.state_dict()


def test_resnet_keys_include_downsample():
    keys = M.create("resnet50").state_dict()
    assert "layer1.0.downsample.0.weight" in keys and "layer4.0.downsample.1.running_var" in keys
    assert "layer3.5.conv3.weight" in keys and "fc.weight" in keys


# --------------------------------------------------------------------- forward and training step
def _train_step(model, x, classes):
    y = fv.tensor(np.arange(x.shape[0]) % classes)
    opt = fv.optim.SGD(model.parameters(), lr=0.01)
    before = [p.data.copy() for p in model.parameters()]
    out = model(x)
    assert out.shape == (x.shape[0], classes)
    loss = F.cross_entropy(out, y)
    assert np.isfinite(loss.item())
    loss.backward()
    opt.step()
    changed = sum(not np.array_equal(b, p.data) for b, p in zip(before, model.parameters()))
    assert changed == len(before)  # every parameter received a gradient
    model.eval()
    with fv.no_grad():
        out = model(x[:1])
    assert out.shape == (1, classes) and np.all(np.isfinite(out.numpy()))


CIFAR_FAMILIES = [("resnet20", {}), ("resnet_cifar", {"depth": 8}),
                  ("preact_resnet", {"depth": 20}), ("preact_resnet", {"depth": 11, "bottleneck": True}),
                  ("wide_resnet", {"depth": 10, "widen_factor": 2, "dropout_rate": 0.3}),
                  ("densenet_bc", {"depth": 16, "growth_rate": 6}),
                  ("pyramidnet", {"depth": 8, "alpha": 12}),
                  ("pyramidnet", {"depth": 11, "alpha": 12, "bottleneck": True})]


@pytest.mark.parametrize("name,kw", CIFAR_FAMILIES)
@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_cifar_families_forward_and_train(name, kw, size, channels):
    fv.manual_seed(0)
    model = M.create(name, num_classes=7, in_channels=channels, **kw)
    _train_step(model, fv.randn(3, channels, size, size), 7)


# AlexNet needs 63x63 or more; the others run from 32x32 (adaptive pooling), but a batch of two
# 1x1 maps in the last stage makes BatchNorm's gradients explode (in torch as well): 64x64.
IMAGENET_FAMILIES = [("alexnet", 64), ("resnet18", 64), ("resnet50", 64),
                     pytest.param("densenet121", 64, marks=pytest.mark.slow)]


@pytest.mark.parametrize("name,size", IMAGENET_FAMILIES)
def test_imagenet_families_forward_and_train_at_a_small_size(name, size):
    fv.manual_seed(0)
    model = M.create(name, num_classes=5, in_channels=3)
    _train_step(model, fv.randn(2, 3, size, size), 5)


def test_imagenet_models_take_224x224_colour_images():
    x = fv.randn(1, 3, 224, 224)
    for model in (M.create("resnet18"), M.create("alexnet", lrn=True)):
        model.eval()
        with fv.no_grad():
            out = model(x)
        assert out.shape == (1, 1000) and np.all(np.isfinite(out.numpy()))


@pytest.mark.slow
def test_vgg11_bn_forward_and_train_at_32x32_grey():
    fv.manual_seed(0)
    model = M.create("vgg11_bn", num_classes=4, in_channels=1)
    _train_step(model, fv.randn(2, 1, 32, 32), 4)


@pytest.mark.slow
@pytest.mark.parametrize("name,kw", [("resnet110", {}), ("preact_resnet", {"depth": 164}),
                                     ("wide_resnet", {"depth": 16, "widen_factor": 4}),
                                     ("densenet_bc", {"depth": 40, "growth_rate": 12}),
                                     ("pyramidnet", {"depth": 110, "alpha": 48})])
def test_published_cifar_models_train_one_step_at_28x28(name, kw):
    fv.manual_seed(0)
    model = M.create(name, num_classes=10, in_channels=1, **kw)
    _train_step(model, fv.randn(2, 1, 28, 28), 10)


def test_cifar_models_reject_depths_that_do_not_fit():
    with pytest.raises(ValueError, match="6n\\+2"):
        M.create("resnet_cifar", depth=21)
    with pytest.raises(ValueError, match="6n\\+4"):
        M.create("wide_resnet", depth=27)
    with pytest.raises(ValueError, match="6n\\+4"):
        M.create("densenet_bc", depth=101)
    with pytest.raises(ValueError, match="9n\\+2"):
        M.create("pyramidnet", depth=111, bottleneck=True)


# ---------------------------------------------------------------------------------- perceptron
X2 = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)


@pytest.mark.parametrize("target", [[0, 0, 0, 1], [0, 1, 1, 1]], ids=["AND", "OR"])
def test_perceptron_learns_linearly_separable_functions(target):
    p = M.Perceptron(2)
    history = p.fit(X2, np.array(target), epochs=50, lr=1.0)
    assert history[-1] == 0 and len(history) < 50
    assert p.forward(X2).detach().numpy().ravel().tolist() == target
    assert p.score(X2, np.array(target)) == 1.0


def test_perceptron_cannot_learn_xor():
    p = M.Perceptron(2)
    history = p.fit(X2, np.array([0, 1, 1, 0]), epochs=200)
    assert len(history) == 200 and min(history) > 0
    assert p.score(X2, np.array([0, 1, 1, 0])) <= 0.75


def test_perceptron_update_is_the_rule():
    p = M.Perceptron(3)
    x, d = np.array([[1.0, -2.0, 0.5]], dtype=np.float32), np.array([0.0])
    p.weight.data[...] = [[1.0, 0.0, 0.0]]  # y = step(1) = 1, d = 0: w -= lr x, b -= lr
    assert p.perceptron_update(x, d, lr=0.5) == 1
    np.testing.assert_allclose(p.weight.data, [[0.5, 1.0, -0.25]])
    np.testing.assert_allclose(p.bias.data, [-0.5])
    assert p.perceptron_update(x, d, lr=0.5) == 0  # now y = step(-2.625) = 0 = d: no change


def test_perceptron_from_the_registry_takes_images_and_class_indices():
    p = M.create("perceptron", num_classes=3, in_channels=1, input_size=4)
    x = np.zeros((3, 1, 4, 4), dtype=np.float32)
    for i in range(3):
        x[i, 0, i, :] = 1.0
    p.fit(x, np.array([0, 1, 2]), epochs=20)
    assert p.score(x, np.array([0, 1, 2])) == 1.0
    assert p(fv.tensor(x)).shape == (3, 3)


def test_sgd_on_the_perceptron_error_is_the_perceptron_rule():
    """Batch size 1, lr 1: SGD on E = 1/2 sum (y - d)^2 through the straight-through step makes
    exactly the updates of ``perceptron_update``, sample after sample (the CLI's recipe)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1, 2, 3)).astype(np.float32)
    d = rng.integers(0, 3, size=40)
    rule = M.Perceptron(6, 3)
    sgd = M.Perceptron(6, 3)
    opt = fv.optim.SGD(sgd.parameters(), lr=1.0)
    changed = 0
    for i in range(40):
        changed += rule.perceptron_update(x[i:i + 1], d[i:i + 1], lr=1.0)
        opt.zero_grad()
        loss = sgd.loss_fn(sgd(fv.tensor(x[i:i + 1])), fv.tensor(d[i:i + 1]))
        loss.backward()
        opt.step()
        np.testing.assert_array_equal(sgd.weight.data, rule.weight.data)
        np.testing.assert_array_equal(sgd.bias.data, rule.bias.data)
    assert changed > 5  # the rule did change the weights along the way
    with fv.no_grad():
        np.testing.assert_array_equal(sgd(fv.tensor(x)).numpy(), rule.forward(x).numpy())


# ---------------------------------------------------------------------- the bottleneck arithmetic
def test_summary_computes_the_lectures_bottleneck_arithmetic():
    plain = fv.nn.Sequential(fv.nn.Conv2d(256, 256, 3, padding=1, bias=False))
    bottleneck = fv.nn.Sequential(fv.nn.Conv2d(256, 64, 1, bias=False),
                                  fv.nn.Conv2d(64, 64, 3, padding=1, bias=False),
                                  fv.nn.Conv2d(64, 256, 1, bias=False))
    a, b = M.summary(plain, (1, 256, 14, 14)), M.summary(bottleneck, (1, 256, 14, 14))
    assert a.total_params == 256 * 256 * 9 == 589_824
    assert b.total_params == 256 * 64 + 64 * 64 * 9 + 64 * 256 == 69_632
    assert a.total_macs == 14 * 14 * 589_824 and b.total_macs == 14 * 14 * 69_632
    assert [r.macs for r in b.rows] == [14 * 14 * 16_384, 14 * 14 * 36_864, 14 * 14 * 16_384]
    assert 8.4 < a.total_macs / b.total_macs < 8.5


def test_summary_of_resnet50_gives_torchvisions_multiply_adds():
    s = M.summary(M.create("resnet50"), (1, 3, 224, 224))
    assert s.total_params == 25_557_032
    assert round(s.total_macs / 1e9, 2) == 4.09  # torchvision: 4.09 GFLOPS (multiply-adds)
