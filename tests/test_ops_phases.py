"""conv2d's ``phases`` algorithm (``ops._phases``): strided convolutions on few channels as
Winograd convolutions over the input's phase planes. Against PyTorch (forward and every gradient,
float32), finite differences (float64), the phase split's own adjoints, the rule, and the
inference plan."""
import numpy as np
import pytest
import torch
from helpers import check_against_torch, gradcheck

import foveanet as fv
from foveanet import nn
from foveanet.ops import _phases, _winograd, algorithms

F = fv.nn.functional
T = torch.nn.functional

pytestmark = pytest.mark.skipif(_winograd._kernels() is None, reason="needs numba")


def _forced(**kw):
    def run(*a):
        with algorithms.force(conv2d="phases", strict=True):
            out = F.conv2d(*a, **kw)
        assert out.grad_fn is None or out.grad_fn.algorithm.name == "phases"
        return out
    return run


@pytest.mark.parametrize("n,c,hw,o,k,s,p", [
    (2, 3, (63, 61), 64, 11, 4, 2),     # AlexNet's first layer, smaller
    (2, 4, (17, 19), 16, (5, 6), 2, (2, 1)),  # 5x5-ish stride 2 on 4 channels: 16 phase channels
    (3, 2, (40, 37), 24, (9, 7), 3, (3, 1)),  # stride 3: 18 phase channels
    (2, 1, (70, 70), 16, 12, 4, 0),     # a kernel that is a whole multiple of the stride
    (1, 3, (60, 58), 32, (11, 5), (4, 2), (2, 2)),  # different strides per axis
])
def test_matches_torch(n, c, hw, o, k, s, p):
    rng = np.random.default_rng(n + c + o)
    k2 = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal((n, c, *hw)).astype(np.float32)
    w = (rng.standard_normal((o, c, *k2)) * 0.1).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    check_against_torch(_forced(stride=s, padding=p), lambda *a: T.conv2d(*a, stride=s, padding=p),
                        [x, w, b], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_finite_differences(which):
    rng = np.random.default_rng(which)
    x, w, b = rng.standard_normal((4, 2, 26, 25)), rng.standard_normal((16, 2, 8, 7)), \
        rng.standard_normal(16)
    # stride 3, padding (2, 1): kernels 8x7 -> 3x3 phase kernels on 18 channels
    gradcheck(_forced(stride=3, padding=(2, 1)), [x, w, b], wrt=[which])


def test_phase_splits_and_their_adjoints():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((5, 2, 11, 9))
    w2 = _phases.phase_weight(w, (4, 3))
    assert w2.shape == (5, 2 * 12, 3, 3)
    # tap (u*s + a, v*s + b) of channel c sits at phase channel (c, a, b), tap (u, v)
    assert w2[3, 1 * 12 + 2 * 3 + 1, 2, 1] == w[3, 1, 2 * 4 + 2, 1 * 3 + 1]
    assert np.all(w2[:, :, 2, :][:, [c * 12 + 3 * 3 + b for c in range(2) for b in range(3)]] == 0)
    g2 = rng.standard_normal(w2.shape)  # <phase_weight(w), g2> == <w, adjoint(g2)>
    np.testing.assert_allclose((w2 * g2).sum(), (w * _phases.phase_weight_adjoint(
        g2, w.shape, (4, 3))).sum(), rtol=1e-12)
    x = rng.standard_normal((2, 2, 21, 17))
    x2 = _phases.phase_input(x, (4, 3), (2, 2, 1, 1), (5, 5), (3, 3))
    assert x2.shape == (2, 24, 7, 7)
    r = rng.standard_normal(x2.shape)
    np.testing.assert_allclose((x2 * r).sum(), (x * _phases.phase_input_adjoint(
        r, x.shape, (4, 3), (2, 2, 1, 1))).sum(), rtol=1e-12)


def _chosen(x, w, **kw):
    return F.conv2d(fv.tensor(np.zeros(x, np.float32), requires_grad=True),
                    fv.tensor(np.zeros(w, np.float32)), **kw).grad_fn.algorithm.name


def test_the_rule():
    assert _chosen((2, 3, 224, 224), (64, 3, 11, 11), stride=4, padding=2) == "phases"  # AlexNet
    # ResNet's 7x7 stride 2 on RGB: 4x4 phase kernels on 12 channels, not Winograd's
    assert _chosen((2, 3, 64, 64), (64, 3, 7, 7), stride=2, padding=3) != "phases"
    # many input channels: the columns are not the problem there
    assert _chosen((2, 16, 64, 64), (32, 16, 5, 5), stride=2, padding=2) != "phases"
    # too few output tiles for Winograd (one sample, a 7x7 output): the columns instead
    assert _chosen((1, 3, 31, 31), (16, 3, 11, 11), stride=4, padding=2) != "phases"
    assert _chosen((2, 3, 64, 64), (64, 3, 11, 11), stride=4, padding=2, dilation=2) != "phases"


def test_inference_plan_takes_it_and_agrees():
    fv.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU()).eval()
    opt = fv.optimize_for_inference(model, (3, 99, 99))
    assert "phases" in opt.describe()
    for n in (1, 3):
        x = fv.randn(n, 3, 99, 99)
        with fv.no_grad():
            ref = model(x).numpy()
        np.testing.assert_allclose(opt(x).numpy(), ref, rtol=1e-4, atol=1e-4)
