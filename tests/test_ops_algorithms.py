"""The algorithm registry (foveanet.ops.algorithms): which algorithm each convolution, pooling and
batch norm takes, that training and ``fv.optimize_for_inference`` take the same one, that
forcing each algorithm gives PyTorch's results (forward and every gradient, through the shared
helpers), and how forcing behaves (fallback, strict, unknown names, nesting, per thread)."""
import re
import threading

import numpy as np
import pytest
import torch
from helpers import check_against_torch, without_compiled

import foveanet as fv
from foveanet import nn
from foveanet.backend import CPU, Device
from foveanet.backend.cpu import kernels
from foveanet.ops import algorithms

F = fv.nn.functional
T = torch.nn.functional

COMPILED = kernels.load("foveanet.ops._direct_kernels") is not None
needs_numba = pytest.mark.skipif(not COMPILED, reason="numba is not installed")
WIDE = kernels.wide_vectors()  # AVX-512: the narrow 3x3 layers stay Winograd's (or im2col's)

# (in, out, kernel, stride, padding, dilation, size) -> the algorithm the rules pick
GEOMETRIES = [
    ((1, 6, 5, 1, 0, 1, 28), "direct"),       # LeNet-5's first layer
    ((6, 16, 5, 1, 0, 1, 14), "direct"),      # and its second
    ((16, 16, 3, 1, 1, 1, 16), "direct"),     # resnet20's first stage (144 taps)
    ((32, 32, 3, 1, 1, 1, 8), "winograd"),
    ((17, 20, 3, 1, 2, 1, 9), "winograd" if WIDE else "direct"),  # C O <= 12 (C + O)
    ((32, 16, 3, 1, 1, 1, 16), "winograd" if WIDE else "direct"),  # SegNet's narrowing layer
    ((32, 8, 3, 1, 1, 1, 12), "im2col" if WIDE else "direct"),     # too few outputs for Winograd
    ((48, 24, 3, 1, 1, 1, 16), "winograd"),                       # 432 taps: over MAX_TAPS_NARROW
    ((16, 32, 3, 2, 1, 1, 16), "direct_s2"),  # resnet20's downsampling layers
    ((32, 64, 3, 2, 1, 1, 8), "direct_s2"),
    ((64, 128, 3, 2, 1, 1, 8), "im2col"),     # over S2_MAX_MACS
    ((8, 16, 1, 1, 0, 1, 8), "im2col"),       # 1x1
    ((3, 16, 7, 2, 3, 1, 20), "im2col"),      # a 7x7 stride-2 stem
    ((4, 8, 3, 1, 2, 2, 12), "im2col"),       # dilation
]


def _geometry(c, o, k, s, p, d, dtype=np.float32):
    return algorithms.ConvGeometry(np.dtype(dtype), (o, c, k, k), (s, s), (p, p, p, p), (d, d), 1)


def _conv_model(c, o, k, s, p, d):
    fv.manual_seed(0)
    return nn.Sequential(nn.Conv2d(c, o, k, stride=s, padding=p, dilation=d))


@needs_numba
@pytest.mark.parametrize("geom,expected", GEOMETRIES, ids=[e for _, e in GEOMETRIES])
def test_training_and_inference_pick_the_same_algorithm(geom, expected):
    c, o, k, s, p, d, size = geom
    assert algorithms.select("conv2d", _geometry(c, o, k, s, p, d)).name == expected
    model = _conv_model(c, o, k, s, p, d)
    x = fv.randn(2, c, size, size)
    out = model(x)  # training: the Conv2d Function records the algorithm it ran
    assert out.grad_fn.algorithm.name == expected
    model.eval()
    plan = fv.optimize_for_inference(model, (c, size, size))
    labels = [line for line in plan.describe().splitlines() if re.search(r"\bconv\b", line)]
    assert len(labels) == 1, plan.describe()
    m = re.search(r"conv \S+ k\S+ s\d+(?: (direct s2|direct|winograd))?", labels[0])
    assert m and (m.group(1) or "im2col").replace(" ", "_") == expected, labels[0]
    np.testing.assert_allclose(plan(x).numpy(), out.detach().numpy(), rtol=1e-4, atol=1e-5)


def _cases_for(name):
    return [g for g, e in GEOMETRIES
            if algorithms.get("conv2d", name).suits(_geometry(*g[:6]))]


@needs_numba
@pytest.mark.parametrize("name", ["direct", "winograd", "direct_s2", "im2col"])
def test_each_forced_algorithm_matches_torch(name):
    cases = _cases_for(name)
    assert cases, name
    rng = np.random.default_rng(3)
    for c, o, k, s, p, d, size in cases[:3]:
        x = rng.standard_normal((2, c, size, size)).astype(np.float32)
        w = (rng.standard_normal((o, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
        b = rng.standard_normal(o).astype(np.float32)
        kw = dict(stride=s, padding=p, dilation=d)
        with algorithms.force(strict=True, conv2d=name):  # AlgorithmError if not taken
            check_against_torch(lambda *a: F.conv2d(*a, **kw), lambda *a: T.conv2d(*a, **kw),
                                [x, w, b], rtol=1e-4, atol=1e-5)


def test_forced_algorithm_falls_back_or_refuses():
    rng = np.random.default_rng(0)
    x = fv.tensor(rng.standard_normal((1, 2, 6, 6)).astype(np.float32), requires_grad=True)
    w = fv.tensor(rng.standard_normal((3, 2, 1, 1)).astype(np.float32))  # 1x1: only im2col suits
    with algorithms.force(conv2d="winograd"):
        assert F.conv2d(x, w).grad_fn.algorithm.name == "im2col"
    with algorithms.force(conv2d="winograd", strict=True):
        with pytest.raises(algorithms.AlgorithmError, match="winograd does not suit"):
            F.conv2d(x, w)
    with pytest.raises(algorithms.AlgorithmError, match="has no algorithm 'fft'"):
        with algorithms.force(conv2d="fft"):
            pass
    with pytest.raises(algorithms.AlgorithmError, match="no algorithms are registered for 'conv3d'"):
        with algorithms.force(conv3d="im2col"):
            pass


@needs_numba
def test_force_nests_and_is_per_thread():
    g = _geometry(16, 16, 3, 1, 1, 1)
    assert algorithms.select("conv2d", g).name == "direct"
    seen = []
    with algorithms.force(conv2d="im2col"):
        with algorithms.force(conv2d="winograd"):
            assert algorithms.select("conv2d", g).name == "winograd"
        assert algorithms.select("conv2d", g).name == "im2col"
        t = threading.Thread(target=lambda: seen.append(algorithms.select("conv2d", g).name))
        t.start()
        t.join()
    assert seen == ["direct"]  # the other thread keeps the rules
    assert algorithms.select("conv2d", g).name == "direct"


def test_without_kernels_the_numpy_algorithms_run():
    g = _geometry(16, 16, 3, 1, 1, 1)
    with without_compiled("_direct_kernels", "_winograd_kernels"):
        assert algorithms.select("conv2d", g).name == "im2col"
    x = fv.randn(2, 4, 8, 8, requires_grad=True)
    with without_compiled("_pool_kernels"):
        assert F.max_pool2d(x, 2).grad_fn.algorithm.name == "tiles"
        assert F.max_pool2d(x, 3, 1).grad_fn.algorithm.name == "windows"
    with without_compiled("_norm_kernels"):
        y = F.batch_norm(x, None, None, training=True)
        assert y.grad_fn.algorithm.name == "numpy"
    if COMPILED:
        assert F.max_pool2d(x, 2).grad_fn.algorithm.name == "compiled_2x2"
        assert F.max_pool2d(x, 3, 1).grad_fn.algorithm.name == "compiled"
        assert F.batch_norm(x, None, None, training=True).grad_fn.algorithm.name == "compiled"


@pytest.mark.parametrize("op,name", [("max_pool2d", "windows"), ("max_pool2d", "tiles"),
                                     ("max_pool2d", "compiled"), ("batch_norm", "numpy")])
def test_forced_pooling_and_batch_norm_match_torch(op, name):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 8, 8)).astype(np.float32)
    with algorithms.force(strict=True, **{op: name}):
        if op == "max_pool2d":
            check_against_torch(lambda a: F.max_pool2d(a, 2), lambda a: T.max_pool2d(a, 2), [x])
        else:
            check_against_torch(lambda a: F.batch_norm(a, None, None, training=True),
                                lambda a: T.batch_norm(a, None, None, training=True), [x])


def test_algorithms_declare_their_devices():
    fallbacks = {"conv2d": "im2col", "conv_transpose2d": "cols", "max_pool2d": "windows",
                 "batch_norm": "numpy"}
    for op, fallback in fallbacks.items():
        cands = algorithms.candidates(op)
        assert cands[-1].name == fallback and cands[-1].kernels is None  # plain NumPy, last
        assert all(a.devices == (CPU,) for a in cands)  # every path is a CPU path today
    gpu = algorithms.ConvGeometry(np.dtype(np.float32), (4, 4, 3, 3), (1, 1), (1,) * 4, (1, 1), 1,
                                  Device("cuda"))
    # no algorithm runs on a device it does not declare: the fallback is what is left
    assert not any(a.available(gpu.device) for a in algorithms.candidates("conv2d"))


@pytest.mark.parametrize("wide", [False, True])
def test_narrow_3x3_layers_take_the_direct_loops_only_without_avx512(monkeypatch, wide):
    from foveanet.ops import _direct

    monkeypatch.setattr(kernels, "wide_vectors", lambda: wide)
    narrow = [(32, 16), (24, 24), (24, 16), (32, 8), (17, 20)]     # C O <= 12 (C + O), C <= 32
    wider = [(32, 32), (32, 64), (33, 16), (40, 40), (48, 24)]     # C O / (C + O) > 12, or C > 32
    for c, o in narrow:
        assert _direct.suits(_geometry(c, o, 3, 1, 1, 1)) is (not wide), (c, o)
    for c, o in wider:
        assert not _direct.suits(_geometry(c, o, 3, 1, 1, 1)), (c, o)
    assert _direct.suits(_geometry(16, 64, 3, 1, 1, 1))  # 144 taps: direct on both kinds
