"""fv.nn.Module and the containers: registration, traversal, modes, state_dict, hooks, repr, errors."""
from __future__ import annotations

import copy
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

import foveanet as fv
from foveanet import nn


# --------------------------------------------------------------------------------------- models
def fv_cnn():
    return nn.Sequential(OrderedDict([
        ("features", nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Dropout(0.25))),
        ("flatten", nn.Flatten()),
        ("classifier", nn.Sequential(nn.Linear(6 * 1 * 1, 8), nn.ReLU(), nn.Linear(8, 3))),
    ]))


def torch_cnn():
    tn = torch.nn
    return tn.Sequential(OrderedDict([
        ("features", tn.Sequential(
            tn.Conv2d(1, 4, 3, padding=1), tn.BatchNorm2d(4), tn.ReLU(), tn.MaxPool2d(2),
            tn.Conv2d(4, 6, 3), tn.ReLU(), tn.Dropout(0.25))),
        ("flatten", tn.Flatten()),
        ("classifier", tn.Sequential(tn.Linear(6 * 1 * 1, 8), tn.ReLU(), tn.Linear(8, 3))),
    ]))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.scale = nn.Parameter(fv.ones(4))
        self.register_buffer("count", fv.zeros(1))
        self.register_buffer("scratch", fv.zeros(2), persistent=False)
        self.act = nn.Tanh()

    def forward(self, x):
        return self.act(self.fc(x)) * self.scale


class Tied(nn.Module):
    """Two layers sharing one weight (and the same submodule registered twice)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4, bias=False)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight
        self.again = self.a

    def forward(self, x):
        return self.b(self.a(x))


# ---------------------------------------------------------------------------------- parameter
def test_parameter_basics():
    p = nn.Parameter(fv.tensor([1.0, 2.0]))
    assert isinstance(p, fv.Tensor) and p.requires_grad and p.is_leaf
    assert repr(p).startswith("Parameter containing:\ntensor([1., 2.]")
    assert not nn.Parameter(fv.zeros(2), requires_grad=False).requires_grad
    t = fv.tensor(np.arange(3.0))
    assert nn.Parameter(t).data is t.data  # shares the array, as in PyTorch
    assert nn.Parameter().shape == (0,)
    (p * p).sum().backward()
    np.testing.assert_allclose(p.grad.data, [2.0, 4.0])
    q = copy.deepcopy(p)
    assert isinstance(q, nn.Parameter) and q.data is not p.data and q.requires_grad
    r = pickle.loads(pickle.dumps(p))
    assert isinstance(r, nn.Parameter) and np.array_equal(r.data, p.data)


# ------------------------------------------------------------------------------- registration
def test_registration_by_assignment():
    m = Block()
    assert list(m._parameters) == ["scale"]
    assert list(m._modules) == ["fc", "act"]
    assert list(m._buffers) == ["count", "scratch"]
    assert [n for n, _ in m.named_parameters()] == ["scale", "fc.weight", "fc.bias"]
    assert [n for n, _ in m.named_buffers()] == ["count", "scratch"]
    assert list(m.state_dict()) == ["scale", "count", "fc.weight", "fc.bias"]  # scratch: not persistent
    assert m.fc.weight.shape == (4, 3)
    # reassigning a name as another kind moves it between registries
    m.scale = nn.Linear(1, 1)
    assert "scale" not in m._parameters and "scale" in m._modules
    m.scale = nn.Parameter(fv.ones(2))
    assert "scale" in m._parameters and "scale" not in m._modules
    m.count = nn.Parameter(fv.ones(1))
    assert "count" not in m._buffers and "count" in m._parameters
    # a buffer can be replaced by another tensor, a parameter only by a Parameter (or None)
    m.scratch = fv.ones(3)
    assert m._buffers["scratch"].shape == (3,)
    with pytest.raises(TypeError, match="nn.Parameter or None expected"):
        m.scale = fv.ones(2)
    with pytest.raises(TypeError, match="child module"):
        m.fc = 3
    m.fc = None
    assert m.fc is None and "fc" in m._modules
    assert [n for n, _ in m.named_parameters()] == ["scale", "count"]
    m.plain = 3
    assert m.plain == 3 and "plain" not in m._parameters


def test_register_and_delete():
    m = nn.Module()
    m.register_parameter("w", nn.Parameter(fv.ones(2)))
    m.register_parameter("nothing", None)
    m.register_buffer("b", fv.zeros(2))
    m.add_module("sub", nn.ReLU())
    assert m.w is m._parameters["w"] and m.nothing is None and m.sub is m._modules["sub"]
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("w", fv.zeros(1))
    with pytest.raises(KeyError, match='"."'):
        m.register_parameter("a.b", nn.Parameter(fv.ones(1)))
    with pytest.raises(TypeError, match="nn.Parameter or None"):
        m.register_parameter("v", fv.ones(1))
    with pytest.raises(TypeError, match="not a Module"):
        m.add_module("f", lambda x: x)
    with pytest.raises(TypeError, match="buffer"):
        m.register_buffer("c", np.zeros(2))
    del m.w, m.b, m.sub
    assert not m._parameters.get("w") and "b" not in m._buffers and "sub" not in m._modules
    with pytest.raises(AttributeError, match="'Module' object has no attribute 'w'"):
        m.w
    assert "nothing" in dir(m)


def test_forgetting_super_init_is_explained():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Bad()


def test_forward_must_be_defined():
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(fv.ones(1))


# ---------------------------------------------------------------------------------- traversal
def test_shared_parameters_and_modules_are_listed_once():
    m = Tied()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["a.weight", "b.bias"]
    assert len(list(m.parameters())) == 2
    assert m.num_parameters() == 16 + 4
    assert [n for n, _ in m.named_modules()] == ["", "a", "b"]
    assert [n for n, _ in m.named_modules(remove_duplicate=False)] == ["", "a", "b", "again"]
    assert [n for n, _ in m.named_children()] == ["a", "b"]
    # state_dict keeps every key (PyTorch does too), pointing at the same array
    sd = m.state_dict()
    assert list(sd) == ["a.weight", "b.weight", "b.bias", "again.weight"]
    assert sd["a.weight"].data is sd["b.weight"].data
    # the shared weight receives the sum of both uses' gradients
    x = fv.randn(5, 4)
    m(x).sum().backward()
    tm = torch.nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        tm.weight.copy_(torch.from_numpy(m.a.weight.data))
    tb = torch.from_numpy(m.b.bias.data.copy())
    tx = torch.from_numpy(x.data)
    (tm(tm(tx)) + tb).sum().backward()
    np.testing.assert_allclose(m.a.weight.grad.data, tm.weight.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_named_modules_and_parameters_order_match_torch():
    ours, theirs = fv_cnn(), torch_cnn()
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    assert [type(m).__name__ for m in ours.modules()] == [type(m).__name__ for m in theirs.modules()]
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
    assert [n for n, _ in ours.named_parameters(prefix="net", recurse=True)][0] == "net.features.0.weight"
    assert list(ours.features[0].parameters(recurse=False))[0] is ours.features[0].weight
    assert list(ours.parameters(recurse=False)) == []


def test_get_submodule_and_apply():
    m = fv_cnn()
    assert m.get_submodule("features.4") is m.features[4]
    assert m.get_submodule("") is m
    assert m.get_parameter("classifier.2.bias") is m.classifier[2].bias
    assert m.get_buffer("features.1.running_var") is m.features[1].running_var
    with pytest.raises(AttributeError, match="no submodule '9'"):
        m.get_submodule("features.9")
    seen = []
    assert m.apply(lambda mod: seen.append(type(mod).__name__)) is m
    assert seen[-1] == "Sequential" and seen[0] == "Conv2d" and len(seen) == len(list(m.modules()))

    def init_linear(mod):
        if isinstance(mod, nn.Linear):
            nn.init.zeros_(mod.bias)
    m.apply(init_linear)
    assert not m.classifier[0].bias.data.any() and not m.classifier[2].bias.data.any()


def test_train_eval_recursive():
    m = fv_cnn()
    assert all(mod.training for mod in m.modules())
    assert m.eval() is m
    assert not any(mod.training for mod in m.modules())
    m.features.train()
    assert m.features[6].training and not m.classifier.training and not m.training
    m.train()
    assert all(mod.training for mod in m.modules())
    with pytest.raises(ValueError, match="bool"):
        m.train("yes")


def test_zero_grad_and_freezing():
    fv.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = fv.randn(5, 3)
    m(x).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.data.any() for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())

    assert m[0].requires_grad_(False) is m[0]
    m(x).sum().backward()
    assert m[0].weight.grad is None and m[0].bias.grad is None
    assert m[2].weight.grad is not None and m[2].bias.grad is not None
    assert m.num_parameters(trainable_only=True) == 4 * 2 + 2
    m.requires_grad_()
    assert all(p.requires_grad for p in m.parameters())


# -------------------------------------------------------------------------------- state_dict
def test_state_dict_keys_match_torch():
    ours, theirs = fv_cnn(), torch_cnn()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    sd = ours.state_dict()
    assert isinstance(sd, OrderedDict)
    assert all(type(v) is fv.Tensor and not v.requires_grad for v in sd.values())
    assert sd["features.1.num_batches_tracked"].dtype == np.int64
    assert sd["features.1.num_batches_tracked"].shape == ()
    kept = ours.state_dict(keep_vars=True)
    assert kept["features.0.weight"] is ours.features[0].weight
    assert list(ours.state_dict(prefix="model."))[0] == "model.features.0.weight"
    assert list(Block().state_dict()) == ["scale", "count", "fc.weight", "fc.bias"]


def test_load_state_dict_round_trip():
    fv.manual_seed(1)
    a = fv_cnn()
    a.train()
    a(fv.randn(4, 1, 6, 6))  # moves the BatchNorm statistics away from their initial values
    snapshot = {k: v.data.copy() for k, v in a.state_dict().items()}
    fv.manual_seed(2)
    b = fv_cnn()
    params_before = {n: p for n, p in b.named_parameters()}
    result = b.load_state_dict(a.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v.data, snapshot[k])
    # copied into the existing arrays: the Parameter objects (held by optimizers) are unchanged
    assert all(p is params_before[n] for n, p in b.named_parameters())
    assert b.features[1].num_batches_tracked.item() == 1
    a.eval(), b.eval()
    x = fv.randn(3, 1, 6, 6)
    np.testing.assert_array_equal(a(x).data, b(x).data)
    # the loaded values are copies, not aliases of a's arrays
    assert b.features[0].weight.data is not a.features[0].weight.data


def test_load_state_dict_strict_errors():
    m = fv_cnn()
    sd = m.state_dict()
    del sd["classifier.2.bias"]
    sd["extra.weight"] = fv.zeros(3)
    with pytest.raises(RuntimeError) as info:
        m.load_state_dict(sd)
    msg = str(info.value)
    assert 'Missing key(s) in state_dict: "classifier.2.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in msg
    before = m.classifier[0].weight.data.copy()
    sd["classifier.0.weight"] = fv.ones(8, 6)
    result = m.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["classifier.2.bias"] and result.unexpected_keys == ["extra.weight"]
    assert (m.classifier[0].weight.data == 1).all() and before.shape == (8, 6)


def test_load_state_dict_shape_mismatch_names_key_and_shapes_and_loads_nothing():
    m = fv_cnn()
    sd = {k: v.data.copy() + 1 for k, v in m.state_dict().items()}
    sd["classifier.0.weight"] = np.zeros((8, 7), dtype=np.float32)
    before = m.features[0].weight.data.copy()
    with pytest.raises(RuntimeError, match=r"classifier\.0\.weight.*\(8, 7\).*\(8, 6\)"):
        m.load_state_dict(sd)
    np.testing.assert_array_equal(m.features[0].weight.data, before)  # nothing half-loaded
    with pytest.raises(RuntimeError, match="size mismatch"):
        m.load_state_dict(sd, strict=False)
    with pytest.raises(TypeError, match="mapping"):
        m.load_state_dict([1, 2])


def test_load_state_dict_hints_at_a_key_prefix():
    m = nn.Sequential(nn.Linear(2, 2))
    sd = {"module." + k: v for k, v in m.state_dict().items()}
    with pytest.raises(RuntimeError, match="extra prefix 'module.'"):
        m.load_state_dict(sd)


def test_load_torch_state_dict_as_numpy():
    torch.manual_seed(0)
    theirs = torch_cnn()
    theirs.train()
    theirs(torch.randn(4, 1, 6, 6))  # non-trivial running statistics
    theirs.eval()
    ours = fv_cnn().eval()
    arrays = {k: v.detach().numpy().copy() for k, v in theirs.state_dict().items()}
    ours.load_state_dict(arrays)
    assert ours.features[1].num_batches_tracked.dtype == np.int64
    x = np.random.default_rng(0).standard_normal((5, 1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(ours(fv.tensor(x)).data, theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    # torch tensors themselves are accepted too, and float64 values are cast to float32
    ours.load_state_dict({k: (v.double() if v.is_floating_point() else v)
                          for k, v in theirs.state_dict().items()})
    assert ours.features[0].weight.dtype == np.float32
    np.testing.assert_allclose(ours.features[0].weight.data, theirs[0][0].weight.detach().numpy())


def test_to_dtype_in_place():
    m = fv_cnn()
    w = m.features[0].weight
    m(fv.randn(2, 1, 6, 6)).sum().backward()
    assert m.double() is m
    assert m.features[0].weight is w and w.dtype == np.float64 and w.grad.dtype == np.float64
    assert m.features[1].running_mean.dtype == np.float64
    assert m.features[1].num_batches_tracked.dtype == np.int64
    assert m(fv.randn(2, 1, 6, 6, dtype=np.float64)).dtype == np.float64
    m.float()
    assert all(p.dtype == np.float32 for p in m.parameters())
    m.to(fv.float64)
    assert all(p.dtype == np.float64 for p in m.parameters())
    m.to("cpu", dtype=np.float32)
    assert all(p.dtype == np.float32 for p in m.parameters())
    with pytest.raises(TypeError, match="floating point"):
        m.to(np.int32)
    with pytest.raises(ValueError, match="CPU"):
        m.to("cuda")


def test_deepcopy_is_independent():
    m = fv_cnn()
    c = copy.deepcopy(m)
    assert list(c.state_dict()) == list(m.state_dict())
    nn.init.zeros_(c.features[0].weight)
    assert m.features[0].weight.data.any()
    assert isinstance(c.features[0].weight, nn.Parameter)
    p = pickle.loads(pickle.dumps(m))
    assert list(p.state_dict()) == list(m.state_dict())
    np.testing.assert_array_equal(p.classifier[2].weight.data, m.classifier[2].weight.data)
    x = fv.randn(2, 1, 6, 6)
    m.eval(), p.eval()
    np.testing.assert_array_equal(p(x).data, m(x).data)


# -------------------------------------------------------------------------------------- hooks
def test_forward_hooks_record_and_modify():
    fv.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    maps = []
    handle = m[1].register_forward_hook(lambda mod, args, out: maps.append(out.detach()))
    x = fv.randn(5, 3)
    y = m(x)
    assert len(maps) == 1 and maps[0].shape == (5, 4) and (maps[0].data >= 0).all()
    handle.remove()
    m(x)
    assert len(maps) == 1
    # a pre-hook may replace the arguments, a forward hook the output
    with m[0].register_forward_pre_hook(lambda mod, args: (args[0] * 0,)):
        with m.register_forward_hook(lambda mod, args, out: out + 1):
            z = m(x)
    np.testing.assert_allclose(z.data, m(fv.zeros(5, 3)).data + 1, rtol=1e-6)
    np.testing.assert_array_equal(m(x).data, y.data)  # both removed on leaving the with blocks
    # gradients flow through a hook's replacement output
    h = m.register_forward_hook(lambda mod, args, out: out * 2)
    xg = fv.randn(2, 3, requires_grad=True)
    m(xg).sum().backward()
    g2 = xg.grad.data.copy()
    h.remove()
    xg.grad = None
    m(xg).sum().backward()
    np.testing.assert_allclose(g2, 2 * xg.grad.data, rtol=1e-6)


# --------------------------------------------------------------------------------------- repr
def test_repr_matches_torch():
    assert repr(fv_cnn()) == repr(torch_cnn())
    layers = [
        (nn.Conv2d(3, 8, 5, stride=2, padding=2, dilation=2, groups=1, bias=False, padding_mode="reflect"),
         torch.nn.Conv2d(3, 8, 5, stride=2, padding=2, dilation=2, bias=False, padding_mode="reflect")),
        (nn.ConvTranspose2d(4, 2, 3, stride=2, output_padding=1, groups=2),
         torch.nn.ConvTranspose2d(4, 2, 3, stride=2, output_padding=1, groups=2)),
        (nn.Conv2d(2, 2, 3, padding="same"), torch.nn.Conv2d(2, 2, 3, padding="same")),
        (nn.AvgPool2d(3, 2, 1), torch.nn.AvgPool2d(3, 2, 1)),
        (nn.MaxUnpool2d(2), torch.nn.MaxUnpool2d(2)),
        (nn.AdaptiveAvgPool2d((3, 4)), torch.nn.AdaptiveAvgPool2d((3, 4))),
        (nn.BatchNorm1d(5, momentum=None, affine=False), torch.nn.BatchNorm1d(5, momentum=None, affine=False)),
        (nn.LocalResponseNorm(5, 1e-3, 0.5, 2.0), torch.nn.LocalResponseNorm(5, 1e-3, 0.5, 2.0)),
        (nn.LeakyReLU(0.2), torch.nn.LeakyReLU(0.2)), (nn.ELU(), torch.nn.ELU()),
        (nn.Sigmoid(), torch.nn.Sigmoid()), (nn.Tanh(), torch.nn.Tanh()),
        (nn.Softmax(dim=1), torch.nn.Softmax(dim=1)), (nn.LogSoftmax(1), torch.nn.LogSoftmax(1)),
        (nn.Identity(), torch.nn.Identity()), (nn.Unflatten(1, (2, 3)), torch.nn.Unflatten(1, (2, 3))),
        (nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()), (nn.MSELoss(), torch.nn.MSELoss()),
        (nn.Dropout2d(0.1), torch.nn.Dropout2d(0.1)),
    ]
    for ours, theirs in layers:
        assert repr(ours) == repr(theirs)
    assert repr(nn.Sigmoid(sigma=2.0)) == "Sigmoid(sigma=2.0)"
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)] + [nn.ReLU()])
    tl = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)] + [torch.nn.ReLU()])
    assert repr(ml) == repr(tl)
    md = nn.ModuleDict({"a": nn.ReLU(), "b": nn.Sequential(nn.Tanh())})
    assert repr(md) == repr(torch.nn.ModuleDict({"a": torch.nn.ReLU(), "b": torch.nn.Sequential(torch.nn.Tanh())}))


# ---------------------------------------------------------------------------- error prefixing
def test_error_in_a_submodule_names_its_path():
    model = nn.Sequential(OrderedDict([
        ("features", nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 8, 3))),
        ("head", nn.Linear(8, 2)),
    ]))
    with pytest.raises(ValueError) as info:
        model(fv.randn(2, 1, 12, 12))
    msg = str(info.value)
    assert msg.startswith("features.3 (Conv2d(16, 8, kernel_size=(3, 3), stride=(1, 1))): expected "
                          "input of shape (N, 16, H, W) or (16, H, W), got (2, 3, 5, 5) — 3 channels "
                          "instead of 16"), msg
    assert msg.count("Conv2d(16") == 1  # prefixed once, the layer's own name not repeated
    # the same error again: still prefixed only once
    with pytest.raises(ValueError) as again:
        model(fv.randn(2, 1, 12, 12))
    assert str(again.value) == msg
    # called directly, the layer names itself without a path
    with pytest.raises(ValueError, match=r"^Conv2d\(16, 8"):
        model.features[3](fv.randn(2, 3, 5, 5))
    # called through a sub-container, the path is relative to what was called
    with pytest.raises(ValueError, match=r"^3 \(Conv2d\(16, 8"):
        model.features(fv.randn(2, 1, 12, 12))


def test_error_prefix_keeps_the_exception_type_and_reaches_custom_forwards():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
            self.out = nn.Linear(4, 1)

        def forward(self, x):
            return self.out(self.body(x))

    net = Net()
    with pytest.raises(TypeError, match=r"^body\.0 \(Linear\(in_features=4.*dtype float64"):
        net(fv.randn(2, 4, dtype=np.float64))
    with pytest.raises(ValueError, match=r"^body\.0 \(Linear.*last dimension 4.*got \(2, 5\)"):
        net(fv.randn(2, 5))
    # an error raised by an op inside a custom forward is attributed to that module
    class Inner(nn.Module):
        def forward(self, x):
            return fv.reshape(x, (7, 7))

    outer = nn.Sequential(nn.Identity(), Inner())
    with pytest.raises(ValueError, match=r"^1 \(Inner\(\)\): cannot reshape"):
        outer(fv.randn(2, 3))


# ----------------------------------------------------------------------------------- containers
def test_sequential_container():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    s = nn.Sequential(*layers)
    assert len(s) == 3 and list(s) == layers
    assert s[0] is layers[0] and s[-1] is layers[2] and s[-3] is layers[0]
    sub = s[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == layers[1:]
    assert list(sub._modules) == ["1", "2"]  # slices keep the keys, as in PyTorch
    with pytest.raises(IndexError, match="out of range"):
        s[3]
    s.append(nn.Sigmoid())
    assert len(s) == 4 and isinstance(s[3], nn.Sigmoid)
    s.insert(1, nn.Identity())
    assert [type(m).__name__ for m in s] == ["Linear", "Identity", "ReLU", "Linear", "Sigmoid"]
    del s[1]
    assert list(s._modules) == ["0", "1", "2", "3"] and isinstance(s[1], nn.ReLU)
    s[1] = nn.Tanh()
    assert isinstance(s[1], nn.Tanh) and isinstance(s.pop(), nn.Sigmoid) and len(s) == 3
    x = fv.randn(4, 2)
    np.testing.assert_array_equal(s(x).data, s[2](s[1](s[0](x))).data)
    named = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 1, 1)), ("act", nn.ReLU())]))
    assert named.conv is named[0] and list(named.state_dict()) == ["conv.weight", "conv.bias"]
    with pytest.raises(TypeError, match="nn.ReLU\\(\\) rather than F.relu"):
        nn.Sequential(nn.Linear(1, 1), fv.relu)
    with pytest.raises(TypeError, match="instantiate it"):
        nn.Sequential(nn.ReLU)


def test_module_list_and_dict():
    ml = nn.ModuleList([nn.Linear(2, 2), nn.ReLU()])
    ml.append(nn.Linear(2, 1))
    ml.extend([nn.Tanh()])
    ml.insert(0, nn.Identity())
    assert len(ml) == 5 and isinstance(ml[0], nn.Identity) and isinstance(ml[-1], nn.Tanh)
    assert isinstance(ml[1:3], nn.ModuleList) and len(ml[1:3]) == 2
    assert [type(m).__name__ for m in ml] == ["Identity", "Linear", "ReLU", "Linear", "Tanh"]
    del ml[0]
    assert list(ml._modules) == ["0", "1", "2", "3"]
    ml += [nn.Sigmoid()]
    assert len(ml) == 5

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = ml
            self.heads = nn.ModuleDict({"a": nn.Linear(2, 3), "b": nn.Linear(2, 4)})

    h = Holder()
    assert [n for n, _ in h.named_parameters()][:2] == ["layers.0.weight", "layers.0.bias"]
    assert "heads.b.bias" in h.state_dict()
    d = h.heads
    assert list(d.keys()) == ["a", "b"] and "a" in d and len(d) == 2 and list(d) == ["a", "b"]
    d["c"] = nn.ReLU()
    d.update({"e": nn.Tanh()})
    assert list(d) == ["a", "b", "c", "e"] and isinstance(d.pop("c"), nn.ReLU)
    assert [k for k, _ in d.items()] == ["a", "b", "e"]
    with pytest.raises(KeyError, match="no module 'zz'"):
        d["zz"]
    with pytest.raises(NotImplementedError, match="container"):
        ml(fv.ones(1))
    with pytest.raises(TypeError, match="not a Module"):
        ml.append(3)
