"""The channels-last columns (``ops._nhwc``): conv2d and conv_transpose2d through them, against
PyTorch (forward and every gradient, float32) and against finite differences (float64), over
property-drawn strided geometries; the rule that picks them; the fallback without numba.

The properties lower ``MIN_CHANNELS`` and ``MIN_POSITIONS`` to 1 so that small shapes (quick
finite differences) take the path; one case per op runs at the real thresholds, on a DCGAN
layer's shapes."""
import numpy as np
import pytest
import torch
from helpers import check_against_torch, gradcheck, without_compiled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import foveanet as fv
from foveanet.ops import _nhwc, algorithms

F = fv.nn.functional
T = torch.nn.functional

pytestmark = pytest.mark.skipif(_nhwc._kernels() is None, reason="needs numba")
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def small(monkeypatch):
    """The path for any channel count and any number of positions."""
    monkeypatch.setattr(_nhwc, "MIN_CHANNELS", 1)
    monkeypatch.setattr(_nhwc, "MIN_POSITIONS", 1)


def _strided(draw):
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return s if max(s) >= 2 else (s[0], 2)


@st.composite
def conv_cases(draw):
    c, o = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    k = (draw(st.integers(1, 4)), draw(st.integers(2, 4)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    hw = [max(1, d[i] * (k[i] - 1) + 1 - 2 * p[i]) + draw(st.integers(0, 5)) for i in range(2)]
    n = draw(st.integers(1, 3))
    x = (c, *hw) if n == 1 and draw(st.booleans()) else (n, c, *hw)
    return dict(x=x, w=(o, c, *k), b=draw(st.booleans()), kw=dict(
        stride=_strided(draw), padding=p, dilation=d), seed=draw(st.integers(0, 2**16)))


@st.composite
def transpose_cases(draw):
    c, o = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    k = (draw(st.integers(1, 4)), draw(st.integers(2, 4)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    s = _strided(draw)
    op = tuple(draw(st.integers(0, max(s[i], d[i]) - 1)) for i in range(2))
    hw = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    full = [(hw[i] - 1) * s[i] + d[i] * (k[i] - 1) + op[i] + 1 for i in range(2)]
    p = tuple(draw(st.integers(0, min(2, (full[i] - 1) // 2))) for i in range(2))
    n = draw(st.integers(1, 3))
    x = (c, *hw) if n == 1 and draw(st.booleans()) else (n, c, *hw)
    return dict(x=x, w=(c, o, *k), b=draw(st.booleans()), kw=dict(
        stride=s, padding=p, output_padding=op, dilation=d), seed=draw(st.integers(0, 2**16)))


def _inputs(case, dtype, transposed):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["x"]).astype(dtype)
    w = rng.standard_normal(case["w"]).astype(dtype)
    b = rng.standard_normal(case["w"][1 if transposed else 0]).astype(dtype)
    return [x, w, b] if case["b"] else [x, w]


def _conv(kw):
    def run(*a):
        with algorithms.force(conv2d="nhwc", strict=True):  # an error if the rule refused it
            return F.conv2d(*a, **kw)
    return run


def _transpose(kw):
    def run(*a):
        with algorithms.force(conv_transpose2d="nhwc", strict=True):
            return F.conv_transpose2d(*a, **kw)
    return run


@SETTINGS
@given(conv_cases())
def test_conv2d_matches_torch(small, case):
    check_against_torch(_conv(case["kw"]), lambda *a: T.conv2d(*a, **case["kw"]),
                        _inputs(case, np.float32, False))


@SETTINGS
@given(conv_cases(), st.integers(0, 2))
def test_conv2d_gradcheck(small, case, which):
    inputs = _inputs(case, np.float64, False)
    gradcheck(_conv(case["kw"]), inputs, wrt=[which] if which < len(inputs) else None)


@SETTINGS
@given(transpose_cases())
def test_conv_transpose2d_matches_torch(small, case):
    check_against_torch(_transpose(case["kw"]), lambda *a: T.conv_transpose2d(*a, **case["kw"]),
                        _inputs(case, np.float32, True))


@SETTINGS
@given(transpose_cases(), st.integers(0, 2))
def test_conv_transpose2d_gradcheck(small, case, which):
    inputs = _inputs(case, np.float64, True)
    gradcheck(_transpose(case["kw"]), inputs, wrt=[which] if which < len(inputs) else None)


def _chosen(op, x, w, **kw):
    """The algorithm a call takes, from its output's grad_fn."""
    fn = F.conv2d if op == "conv2d" else F.conv_transpose2d
    out = fn(fv.tensor(x, requires_grad=True), fv.tensor(w), **kw)
    return out.grad_fn.algorithm.name


def test_dcgan_layers_take_it_at_the_real_thresholds():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 32, 14, 14)).astype(np.float32)
    w = rng.standard_normal((64, 32, 4, 4)).astype(np.float32) * 0.1
    assert _chosen("conv2d", x, w, stride=2, padding=1) == "nhwc"
    check_against_torch(lambda *a: F.conv2d(*a, stride=2, padding=1),
                        lambda *a: T.conv2d(*a, stride=2, padding=1), [x, w])
    xt = rng.standard_normal((16, 64, 7, 7)).astype(np.float32)
    wt = rng.standard_normal((64, 32, 4, 4)).astype(np.float32) * 0.1
    assert _chosen("conv_transpose2d", xt, wt, stride=2, padding=1) == "nhwc"
    check_against_torch(lambda *a: F.conv_transpose2d(*a, stride=2, padding=1),
                        lambda *a: T.conv_transpose2d(*a, stride=2, padding=1), [xt, wt])


@pytest.mark.parametrize("what,x,w,kw,expected", [
    ("few input channels (an image's)", (16, 3, 28, 28), (32, 3, 4, 4), dict(stride=2), "im2col"),
    ("stride 1", (16, 32, 14, 14), (32, 32, 5, 5), dict(padding=2), None),
    ("1x1 kernel", (16, 32, 14, 14), (64, 32, 1, 1), dict(stride=2), "im2col"),
    ("batch 1 on a 14x14 map", (1, 256, 14, 14), (512, 256, 3, 3), dict(stride=2, padding=1),
     None),
    ("groups", (16, 32, 14, 14), (32, 16, 4, 4), dict(stride=2, groups=2), "im2col"),
    ("float64 too", (16, 32, 14, 14), (64, 32, 4, 4), dict(stride=2, padding=1), "nhwc"),
])
def test_conv2d_rule(what, x, w, kw, expected):
    dt = np.float64 if "float64" in what else np.float32
    name = _chosen("conv2d", np.zeros(x, dt), np.zeros(w, dt), **kw)
    if expected is None:
        assert name != "nhwc", what
    else:
        assert name == expected, what


@pytest.mark.parametrize("what,x,w,kw,expected", [
    ("a DCGAN generator's last layer (1 channel out)", (16, 64, 14, 14), (64, 1, 4, 4),
     dict(stride=2, padding=1), "cols"),
    ("the projection from 1x1 noise (stride 1)", (16, 110, 1, 1), (110, 128, 7, 7), {}, "cols"),
    ("a 4x4 stride-2 upsampling", (16, 128, 7, 7), (128, 64, 4, 4), dict(stride=2, padding=1),
     "nhwc"),
    ("groups", (16, 32, 7, 7), (32, 16, 4, 4), dict(stride=2, groups=2), "cols"),
])
def test_conv_transpose2d_rule(what, x, w, kw, expected):
    assert _chosen("conv_transpose2d", np.zeros(x, np.float32), np.zeros(w, np.float32),
                   **kw) == expected, what


def test_without_numba_the_columns_stay_nchw():
    x, w = np.zeros((16, 32, 14, 14), np.float32), np.zeros((64, 32, 4, 4), np.float32)
    with without_compiled("_nhwc_kernels"):
        assert _chosen("conv2d", x, w, stride=2, padding=1) != "nhwc"
        assert _chosen("conv_transpose2d", np.zeros((16, 64, 7, 7), np.float32),
                       np.zeros((64, 16, 4, 4), np.float32), stride=2) == "cols"


def test_inference_plans_keep_the_nchw_columns():
    geom = algorithms.ConvGeometry(np.float32, (64, 32, 4, 4), (2, 2), (1, 1, 1, 1), (1, 1), 1)
    assert algorithms.select("conv2d", geom).name == "im2col"  # batch unknown: not nhwc
