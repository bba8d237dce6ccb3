"""conv2d's Winograd F(4x4, 3x3) path (foveanet.ops._winograd): which convolutions take it, and
for those, PyTorch's outputs and both gradients (float32 and float64, padding 0-2 on each side,
asymmetric padding, output sizes that are not multiples of 4, unbatched input, several chunks,
passes split over 2 and 3 threads), finite differences in float64, the im2col path's results, and
the im2col path when numba is missing."""
import numpy as np
import pytest
import torch
from helpers import check_against_torch, count_calls, disable_compiled, gradcheck

import foveanet as fv
import foveanet.nn.functional as F
from foveanet.backend.cpu import threads as _parallel
from foveanet.ops import _winograd, algorithms, conv

T = torch.nn.functional

pytestmark = pytest.mark.skipif(_winograd._kernels() is None, reason="numba is not installed")


@pytest.fixture
def small(monkeypatch):
    """Winograd for any channel count (the direct path, which takes few-channel convolutions
    first, off), and chunks of a few samples."""
    monkeypatch.setattr(_winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(_winograd, "CHUNK_BYTES", 1 << 14)
    with algorithms.force(conv2d="winograd"):
        yield


@pytest.fixture
def taken(monkeypatch):
    """Counts the convolutions that took the Winograd path."""
    return count_calls(monkeypatch, _winograd, "forward")


def _arr(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("n,c,o,h,w,pad", [
    (3, 5, 4, 9, 7, 1), (2, 3, 2, 8, 8, 0), (2, 3, 4, 6, 11, 2), (5, 2, 3, 4, 4, 1),
    (2, 4, 3, 1, 5, 1), (1, 6, 7, 13, 13, 1), (4, 3, 5, 12, 3, 0)])
def test_matches_torch_and_finite_differences(small, taken, n, c, o, h, w, pad):
    rng = np.random.default_rng(n * 100 + h * 10 + w)
    x, wt, b = _arr(rng, n, c, h, w), _arr(rng, o, c, 3, 3), _arr(rng, o)
    check_against_torch(lambda a, k, z: F.conv2d(a, k, z, padding=pad),
                        lambda a, k, z: T.conv2d(a, k, z, padding=pad), [x, wt, b])
    assert len(taken) == 1
    gradcheck(lambda a, k: F.conv2d(a, k, padding=pad), [x[:2, :, :6, :6], wt * 0.5])


@pytest.mark.parametrize("pads", [(0, 2, 1, 0), (2, 0, 0, 1), (1, 2, 2, 0)])
def test_asymmetric_padding(small, taken, pads):
    # (top, bottom, left, right): the input gradient pads the gradient by 2 - each side
    rng = np.random.default_rng(sum(pads))
    x, wt = _arr(rng, 2, 3, 7, 6, dtype=np.float64), _arr(rng, 4, 3, 3, 3, dtype=np.float64)
    top, bottom, left, right = pads

    def ours(a, k):
        return conv._apply(conv.Conv2d, a, k, None, stride=(1, 1), pads=pads, dilation=(1, 1),
                           groups=1)

    def theirs(a, k):
        return T.conv2d(T.pad(a, (left, right, top, bottom)), k)

    check_against_torch(ours, theirs, [x, wt], rtol=1e-10, atol=1e-12)
    gradcheck(ours, [x, wt])
    assert taken


@pytest.mark.parametrize("threads", [2, 3])
def test_split_over_threads(small, monkeypatch, threads):
    monkeypatch.setattr(_parallel, "MIN_BYTES", 0)
    monkeypatch.setattr(_parallel, "threads", lambda: threads)
    monkeypatch.delenv("FOVEANET_THREADS", raising=False)
    rng = np.random.default_rng(threads)
    x, wt = _arr(rng, 5, 3, 10, 9), _arr(rng, 4, 3, 3, 3)
    check_against_torch(lambda a, k: F.conv2d(a, k, padding=1),
                        lambda a, k: T.conv2d(a, k, padding=1), [x, wt])


def test_same_as_im2col_and_only_what_is_asked(small, monkeypatch):
    # float32 within a few 1e-6 of the im2col path; unbatched input; gradients only where needed
    rng = np.random.default_rng(7)
    x, wt = _arr(rng, 3, 6, 11, 9), _arr(rng, 5, 6, 3, 3)
    outs = []
    for on in (True, False):
        with algorithms.force(conv2d="winograd" if on else "im2col"):
            a, k = fv.tensor(x, requires_grad=True), fv.tensor(wt, requires_grad=True)
            y = F.conv2d(a, k, padding=1)
            (y * y).sum().backward()
            outs.append((y.data, a.grad.data, k.grad.data))
    for ours, ref in zip(*outs):
        assert np.abs(ours - ref).max() <= 2e-5 * np.abs(ref).max()
    check_against_torch(lambda a, k: F.conv2d(a, k, padding=1),
                        lambda a, k: T.conv2d(a, k, padding=1), [x[0], wt])  # (C, H, W)
    k = fv.tensor(wt, requires_grad=True)
    F.conv2d(fv.tensor(x), k, padding=1).sum().backward()  # the input needs no gradient
    a = fv.tensor(x, requires_grad=True)
    F.conv2d(a, fv.tensor(wt), padding=1).sum().backward()  # the weight needs none
    ref_x = torch.tensor(x, requires_grad=True)
    ref_k = torch.tensor(wt, requires_grad=True)
    T.conv2d(ref_x, ref_k, padding=1).sum().backward()
    np.testing.assert_allclose(k.grad.data, ref_k.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a.grad.data, ref_x.grad.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kw,why", [
    (dict(stride=2), "stride"), (dict(dilation=2, padding=2), "dilation"),
    (dict(groups=2), "groups"), (dict(padding=3), "padding over 2"), ("5x5", "kernel")])
def test_other_convolutions_keep_im2col(taken, kw, why):
    rng = np.random.default_rng(1)
    x = _arr(rng, 2, 16, 12, 12)
    if kw == "5x5":
        wt, kw = _arr(rng, 16, 16, 5, 5), {}
    else:
        wt = _arr(rng, 16, 16 // kw.get("groups", 1), 3, 3)
    F.conv2d(fv.tensor(x), fv.tensor(wt), **kw)
    assert not taken, why


def test_channel_threshold_and_numba_missing(taken, monkeypatch):
    rng = np.random.default_rng(2)
    # over _direct.MAX_TAPS, and 17 -> 64 not a narrow layer (C O > 12 (C + O)): not direct
    wide, thin = _arr(rng, 64, 17, 3, 3), _arr(rng, 17, 15, 3, 3)
    F.conv2d(fv.tensor(_arr(rng, 2, 15, 8, 8)), fv.tensor(thin), padding=1)
    assert not taken  # 15 input channels: under MIN_CHANNELS
    x = _arr(rng, 2, 17, 16, 16)  # enough tiles for 64 channels
    ref = T.conv2d(torch.tensor(x), torch.tensor(wide), padding=1).numpy()
    out = F.conv2d(fv.tensor(x), fv.tensor(wide), padding=1).data
    assert len(taken) == 1 and np.abs(out - ref).max() < 1e-5 * np.abs(ref).max()
    disable_compiled(monkeypatch, "_winograd_kernels")  # as without numba
    out = F.conv2d(fv.tensor(x), fv.tensor(wide), padding=1).data
    assert len(taken) == 1 and np.abs(out - ref).max() < 1e-5 * np.abs(ref).max()


def test_weight_transform_as_one_product_equals_g_w_gt():
    """U = G w G^T (and G^T dU G) computed as one product with kron(G, G) equal the per-kernel
    formula, in both layouts."""
    rng = np.random.default_rng(11)
    w = rng.standard_normal((5, 3, 3, 3))
    g = np.asarray(_winograd._G)
    want = np.einsum("ai,ocij,bj->ocab", g, w, g).reshape(5, 3, 36).transpose(2, 0, 1)
    np.testing.assert_allclose(_winograd.transform_weight(w), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_winograd.transform_weight(w, True), want.transpose(0, 2, 1),
                               rtol=1e-12, atol=1e-12)
    du = rng.standard_normal((36, 5, 3))
    want_gw = np.einsum("ai,ocab,bj->ocij", g, du.transpose(1, 2, 0).reshape(5, 3, 6, 6), g)
    np.testing.assert_allclose(_winograd.weight_gradient(du), want_gw, rtol=1e-12, atol=1e-12)


def test_few_tiles_for_many_channels_go_to_im2col_but_a_plan_keeps_winograd():
    """A call whose batch has fewer than max(C, O) / 4 output tiles takes im2col (the weight's
    transform would not pay); a geometry without a batch (an inference plan) takes Winograd."""
    def geom(c, batch=0, out_hw=()):
        return algorithms.ConvGeometry(np.dtype(np.float32), (c, c, 3, 3), (1, 1), (1,) * 4,
                                       (1, 1), 1, batch=batch, out_hw=out_hw)
    assert not _winograd.suits(geom(512, 16, (7, 7)))   # 64 tiles < 128
    assert _winograd.suits(geom(512, 32, (7, 7)))       # 128 tiles
    assert not _winograd.suits(geom(256, 2, (14, 14)))  # 32 tiles < 64
    assert _winograd.suits(geom(256, 4, (14, 14)))
    assert _winograd.suits(geom(512))                    # no batch: a plan
    assert algorithms.select("conv2d", geom(512, 1, (7, 7))).name == "im2col"


def test_only_the_bias_wants_a_gradient():
    # a frozen weight and an input without grad: the backward has nothing to transform
    rng = np.random.default_rng(4)
    x, w = fv.tensor(_arr(rng, 2, 16, 8, 8)), fv.tensor(_arr(rng, 16, 16, 3, 3))
    b = fv.tensor(_arr(rng, 16), requires_grad=True)
    with algorithms.force(conv2d="winograd", strict=True):
        out = F.conv2d(x, w, b, padding=1)
    g = _arr(rng, *out.shape)
    out.backward(fv.tensor(g))
    np.testing.assert_allclose(b.grad.numpy(), g.sum(axis=(0, 2, 3)), rtol=1e-5)
