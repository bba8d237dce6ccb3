"""fv.nn.init: each scheme's statistics against its formula, fans, determinism, layer defaults."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import foveanet as fv
from foveanet import nn
from foveanet.nn import init

BIG = (400, 500)  # 200 000 samples: the sample std is within ~0.3% of the true one


def big(shape=BIG, dtype=np.float32):
    return nn.Parameter(fv.zeros(*shape, dtype=dtype))


def test_calculate_gain_matches_torch():
    for name in ["linear", "conv2d", "conv_transpose2d", "sigmoid", "tanh", "relu", "selu"]:
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    for slope in [None, 0.0, 0.2, math.sqrt(5)]:
        assert init.calculate_gain("leaky_relu", slope) == pytest.approx(
            torch.nn.init.calculate_gain("leaky_relu", slope))
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")


@pytest.mark.parametrize("shape", [(7, 5), (16, 3, 5, 5), (4, 2, 3, 1), (3, 6, 2)])
def test_fans_match_torch(shape):
    ours = init.calculate_fan_in_and_fan_out(fv.zeros(*shape))
    assert ours == torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(*shape))


def test_fans_of_layer_weights():
    assert init.calculate_fan_in_and_fan_out(nn.Linear(20, 7).weight) == (20, 7)
    # conv weight (out, in/groups, kh, kw): fan_in = in/groups * kh * kw
    assert init.calculate_fan_in_and_fan_out(nn.Conv2d(6, 8, (3, 5), groups=2).weight) == (3 * 15, 8 * 15)
    # transposed conv weight (in, out/groups, kh, kw): PyTorch's convention reads dim 1 as fan_in
    assert init.calculate_fan_in_and_fan_out(nn.ConvTranspose2d(6, 8, 3).weight) == (8 * 9, 6 * 9)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.calculate_fan_in_and_fan_out(fv.zeros(5))


def test_uniform_and_normal():
    w = big()
    assert init.uniform_(w, -0.5, 2.0) is w
    assert w.data.min() >= -0.5 and w.data.max() <= 2.0
    assert w.data.mean() == pytest.approx(0.75, abs=0.01)
    assert w.data.std() == pytest.approx(2.5 / math.sqrt(12), rel=0.01)
    assert w.grad_fn is None and w.requires_grad and w.dtype == np.float32
    init.normal_(w, 3.0, 0.5)
    assert w.data.mean() == pytest.approx(3.0, abs=0.01)
    assert w.data.std() == pytest.approx(0.5, rel=0.01)
    init.trunc_normal_(w, 0.0, 1.0, -1.0, 1.5)
    assert w.data.min() >= -1.0 and w.data.max() <= 1.5
    with pytest.raises(ValueError, match="lower bound"):
        init.uniform_(w, 1.0, 0.0)


def test_constants_eye_orthogonal():
    w = nn.Parameter(fv.randn(4, 6))
    assert (init.zeros_(w).data == 0).all()
    assert (init.ones_(w).data == 1).all()
    assert (init.constant_(w, 0.3).data == np.float32(0.3)).all()
    np.testing.assert_array_equal(init.eye_(w).data, np.eye(4, 6))
    init.orthogonal_(w, gain=2.0)
    np.testing.assert_allclose(w.data @ w.data.T, 4 * np.eye(4), atol=1e-5)
    c = nn.Parameter(fv.zeros(8, 2, 2, 1))
    init.orthogonal_(c)
    flat = c.data.reshape(8, -1)
    np.testing.assert_allclose(flat.T @ flat, np.eye(4), atol=1e-5)
    with pytest.raises(TypeError, match="foveanet Tensor"):
        init.zeros_(np.zeros(3))


@pytest.mark.parametrize("gain", [1.0, init.calculate_gain("tanh")])
def test_xavier(gain):
    fan_in, fan_out = BIG[1], BIG[0]
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    w = big()
    init.xavier_uniform_(w, gain=gain)
    bound = math.sqrt(3.0) * std
    assert np.abs(w.data).max() <= bound * (1 + 1e-6)
    assert np.abs(w.data).max() > 0.99 * bound
    assert w.data.std() == pytest.approx(std, rel=0.01)
    init.xavier_normal_(w, gain=gain)
    assert w.data.std() == pytest.approx(std, rel=0.01)
    assert abs(w.data.mean()) < 0.01 * std * 10


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
@pytest.mark.parametrize("nonlinearity,a", [("relu", 0), ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)),
                                            ("tanh", 0)])
def test_kaiming(mode, nonlinearity, a):
    shape = (200, 50, 3, 3)  # fan_in 450, fan_out 1800
    fan = 50 * 9 if mode == "fan_in" else 200 * 9
    gain = init.calculate_gain(nonlinearity, a)
    std = gain / math.sqrt(fan)
    w = big(shape)
    init.kaiming_uniform_(w, a=a, mode=mode, nonlinearity=nonlinearity)
    bound = math.sqrt(3.0) * std
    assert np.abs(w.data).max() <= bound * (1 + 1e-6) and np.abs(w.data).max() > 0.99 * bound
    assert w.data.std() == pytest.approx(std, rel=0.01)
    init.kaiming_normal_(w, a=a, mode=mode, nonlinearity=nonlinearity)
    assert w.data.std() == pytest.approx(std, rel=0.01)


def test_kaiming_bad_mode():
    with pytest.raises(ValueError, match="fan_in"):
        init.kaiming_uniform_(big((3, 3)), mode="fan_avg")


def test_aliases():
    assert init.glorot_uniform_ is init.xavier_uniform_ and init.glorot_normal_ is init.xavier_normal_
    assert init.he_uniform_ is init.kaiming_uniform_ and init.he_normal_ is init.kaiming_normal_


def test_determinism_with_a_generator():
    def draw(fn, seed, **kw):
        w = big((30, 20))
        fn(w, generator=fv.Generator(seed), **kw)
        return w.data.copy()

    for fn in [init.uniform_, init.normal_, init.xavier_uniform_, init.xavier_normal_,
               init.kaiming_uniform_, init.kaiming_normal_, init.trunc_normal_, init.orthogonal_]:
        np.testing.assert_array_equal(draw(fn, 7), draw(fn, 7))
        assert not np.array_equal(draw(fn, 7), draw(fn, 8))
    # the generator, not the global state, decides
    fv.manual_seed(1)
    a = draw(init.normal_, 3)
    fv.manual_seed(2)
    np.testing.assert_array_equal(a, draw(init.normal_, 3))


def test_global_seed_makes_models_reproducible():
    def model():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 5),
                             nn.ConvTranspose2d(2, 3, 2))

    fv.manual_seed(123)
    a = model().state_dict()
    fv.manual_seed(123)
    b = model().state_dict()
    fv.manual_seed(124)
    c = model().state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k].data, b[k].data)
    assert not np.array_equal(a["0.weight"].data, c["0.weight"].data)
    # and a layer can be re-initialised from an explicit generator
    lin = nn.Linear(4, 3)
    lin.reset_parameters(fv.Generator(5))
    w1 = lin.weight.data.copy()
    lin.reset_parameters(fv.Generator(5))
    np.testing.assert_array_equal(w1, lin.weight.data)


@pytest.mark.parametrize("layer,fan_in", [
    (lambda: nn.Linear(300, 400), 300),
    (lambda: nn.Conv2d(20, 64, 5), 20 * 25),
    (lambda: nn.Conv2d(20, 64, (3, 2), groups=4), 5 * 6),
    (lambda: nn.ConvTranspose2d(64, 20, 4), 20 * 16),
])
def test_default_layer_init_bound(layer, fan_in):
    fv.manual_seed(0)
    m = layer()
    bound = 1 / math.sqrt(fan_in)
    w, b = m.weight.data, m.bias.data
    assert np.abs(w).max() <= bound * (1 + 1e-6) and np.abs(w).max() > 0.98 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert np.abs(b).max() <= bound * (1 + 1e-6)
    assert b.std() == pytest.approx(bound / math.sqrt(3), rel=0.35)
    # PyTorch's layers have the same bound
    tm = {nn.Linear: torch.nn.Linear, nn.Conv2d: torch.nn.Conv2d,
          nn.ConvTranspose2d: torch.nn.ConvTranspose2d}[type(m)]
    theirs = torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(m.weight.shape))[0]
    assert theirs == fan_in and tm is not None


def test_default_batchnorm_init_and_dtype():
    bn = nn.BatchNorm2d(5, dtype=np.float64)
    assert (bn.weight.data == 1).all() and (bn.bias.data == 0).all()
    assert bn.weight.dtype == np.float64 and bn.running_var.dtype == np.float64
    assert nn.Linear(2, 2, dtype=fv.float64).weight.dtype == np.float64
    with pytest.raises(TypeError, match="floating-point"):
        nn.Linear(2, 2, dtype=np.int64)


def test_zero_element_kaiming_warns():
    w = nn.Parameter(fv.zeros(3, 0))
    with pytest.warns(UserWarning, match="no-op"):
        assert init.kaiming_uniform_(w) is w
