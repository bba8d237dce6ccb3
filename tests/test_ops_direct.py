"""conv2d's direct path for few-channel convolutions (foveanet.ops._direct): which convolutions
take it, and for those PyTorch's outputs and all three gradients (float32 and float64, LeNet-5's
layers, kernel widths from 1 to 11 so that the five-tap blocks end short or run twice, odd output
channel counts, asymmetric padding, unbatched input, passes split over 2 and 3 threads),
finite differences in float64, im2col's results, and im2col when numba is missing; the same for
the 3x3 stride-2 kernels on phase planes (``forward_s2``), and which convolutions they take."""
import numpy as np
import pytest
import torch
from helpers import check_against_torch, count_calls, disable_compiled, gradcheck

import foveanet as fv
import foveanet.nn.functional as F
from foveanet.backend.cpu import threads as _parallel
from foveanet.ops import _direct, algorithms, conv

T = torch.nn.functional

pytestmark = pytest.mark.skipif(_direct._kernels() is None, reason="numba is not installed")


@pytest.fixture
def taken(monkeypatch):
    """Counts the convolutions that took the direct path."""
    return count_calls(monkeypatch, _direct, "forward")


def _arr(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def _conv(pads, stride=1):
    """conv2d with explicit (top, bottom, left, right) padding, as ours and as PyTorch's."""
    top, bottom, left, right = pads

    def ours(a, k, *b):
        return conv._apply(conv.Conv2d, a, k, b[0] if b else None, stride=(stride, stride),
                           pads=pads, dilation=(1, 1), groups=1)

    def theirs(a, k, *b):
        return T.conv2d(T.pad(a, (left, right, top, bottom)), k, *b, stride=stride)

    return ours, theirs


@pytest.mark.parametrize("n,c,o,h,w,k,pad", [
    (6, 1, 6, 28, 28, 5, 2),     # LeNet-5's first layer
    (5, 6, 16, 14, 14, 5, 0),    # and its second
    (3, 1, 7, 9, 8, 3, 1),       # odd output channels, 3x3: the five-tap block ends short
    (2, 3, 5, 12, 11, 7, 3),     # 7 wide: two blocks
    (2, 1, 4, 13, 12, 11, 5),    # 11 wide: three blocks
    (4, 2, 3, 5, 6, 2, 1),       # even kernel
    (2, 4, 1, 6, 3, 3, 2),       # one output channel, output wider than the input
    (3, 2, 8, 9, 10, 3, 1),      # 3x3 with channels a multiple of 4: four per pass
    (2, 16, 16, 12, 12, 3, 1),   # resnet20's 16->16 (its input gradient too: four per pass)
    (3, 4, 11, 9, 8, 3, 1),      # 3x3 to 11 (a segmentation head): two fours, then pairs
    (2, 3, 6, 7, 7, 3, 1),       # a four, then one pair
    (2, 3, 5, 7, 7, 3, 0),       # a four, then the last channel alone (computed twice)
])
def test_matches_torch(taken, n, c, o, h, w, k, pad):
    rng = np.random.default_rng(n * 100 + h * 10 + w)
    x, wt, b = _arr(rng, n, c, h, w), _arr(rng, o, c, k, k), _arr(rng, o)
    check_against_torch(lambda a, kk, z: F.conv2d(a, kk, z, padding=pad),
                        lambda a, kk, z: T.conv2d(a, kk, z, padding=pad), [x, wt, b], rtol=1e-4,
                        atol=1e-4)
    assert len(taken) == 1


@pytest.mark.parametrize("kh,kw,pads,o", [
    (3, 3, (0, 2, 1, 0), 3), (3, 3, (2, 1, 0, 2), 4), (5, 5, (4, 0, 0, 3), 3),
    (2, 6, (1, 0, 3, 5), 3), (4, 1, (2, 3, 0, 0), 3), (1, 7, (0, 0, 6, 2), 3),
    (3, 3, (1, 1, 1, 1), 7)])
def test_float64_and_finite_differences(taken, kh, kw, pads, o):
    # (top, bottom, left, right); the input gradient pads the gradient by k - 1 - each side
    rng = np.random.default_rng(kh * 10 + kw)
    x, wt, b = (_arr(rng, 2, 4, 7, 8, dtype=np.float64), _arr(rng, o, 4, kh, kw, dtype=np.float64),
                _arr(rng, o, dtype=np.float64))
    ours, theirs = _conv(pads)
    check_against_torch(ours, theirs, [x, wt, b], rtol=1e-10, atol=1e-12)
    gradcheck(ours, [x[:, :2, :5, :6], wt[:, :2], b])
    assert taken


@pytest.mark.parametrize("threads", [2, 3])
def test_split_over_threads(monkeypatch, taken, threads):
    # each thread sums its own weight gradient: the parts must add up
    monkeypatch.setattr(_parallel, "MIN_BYTES", 0)
    monkeypatch.setattr(_parallel, "threads", lambda: threads)
    monkeypatch.delenv("FOVEANET_THREADS", raising=False)
    rng = np.random.default_rng(threads)
    x, wt, b = _arr(rng, 7, 2, 10, 9), _arr(rng, 5, 2, 5, 5), _arr(rng, 5)
    check_against_torch(lambda a, k, z: F.conv2d(a, k, z, padding=2),
                        lambda a, k, z: T.conv2d(a, k, z, padding=2), [x, wt, b], rtol=1e-4,
                        atol=1e-4)
    assert taken


@pytest.mark.parametrize("tile", [1, 23, 4096])
@pytest.mark.parametrize("n,o,k", [(1, 5, 3), (1, 8, 3), (1, 4, 7), (2, 6, 5), (1, 1, 5),
                                   (1, 11, 3), (2, 7, 3)])
def test_tiles_and_a_small_batch_split_over_its_output_channels(monkeypatch, taken, tile, n, o,
                                                                 k):
    # tiles of a few padded rows (one row, a ragged last tile, the whole plane), and fewer
    # samples than threads: the output channels split instead (two or four a pass, an odd last
    # one computed twice, a single channel on one thread)
    monkeypatch.setattr(_direct, "TILE", tile)
    monkeypatch.setattr(_parallel, "MIN_BYTES", 0)
    monkeypatch.setattr(_parallel, "threads", lambda: 2)
    monkeypatch.delenv("FOVEANET_THREADS", raising=False)
    rng = np.random.default_rng(tile + 10 * n + o)
    x, wt, b = _arr(rng, n, 3, 13, 11), _arr(rng, o, 3, k, k), _arr(rng, o)
    check_against_torch(lambda a, kk, z: F.conv2d(a, kk, z, padding=k // 2),
                        lambda a, kk, z: T.conv2d(a, kk, z, padding=k // 2), [x, wt, b],
                        rtol=1e-4, atol=1e-4)
    assert taken
    ours, _ = _conv((k // 2, 0, 1, k // 2))
    x64, w64, b64 = (a.astype(np.float64) for a in (x, wt, b))
    gradcheck(ours, [x64[:, :2, :6, :7], w64[:, :2], b64])


def test_few_channels_take_the_loops_up_to_11x11(taken):
    rng = np.random.default_rng(3)
    for c, k, direct in [(3, 11, True), (4, 11, True), (3, 13, False), (5, 11, False)]:
        before = len(taken)
        x, wt = _arr(rng, 1, c, 16, 16), _arr(rng, 8, c, k, k)
        out = F.conv2d(fv.tensor(x), fv.tensor(wt), padding=k // 2).data
        ref = T.conv2d(torch.tensor(x), torch.tensor(wt), padding=k // 2).numpy()
        assert np.abs(out - ref).max() < 1e-5 * np.abs(ref).max()
        assert (len(taken) > before) == direct, (c, k)


def test_same_as_im2col_and_only_what_is_asked(monkeypatch, taken):
    # float32 within a few 1e-6 of the im2col path; unbatched input; gradients only where needed
    rng = np.random.default_rng(7)
    x, wt = _arr(rng, 3, 6, 11, 9), _arr(rng, 5, 6, 5, 5)
    outs = []
    for on in (True, False):
        with algorithms.force(conv2d="direct" if on else "im2col"):
            a, k = fv.tensor(x, requires_grad=True), fv.tensor(wt, requires_grad=True)
            y = F.conv2d(a, k, padding=2)
            (y * y).sum().backward()
            outs.append((y.data, a.grad.data, k.grad.data))
    assert len(taken) == 1
    for ours, ref in zip(*outs):
        assert np.abs(ours - ref).max() <= 2e-5 * np.abs(ref).max()
    check_against_torch(lambda a, k: F.conv2d(a, k, padding=1),
                        lambda a, k: T.conv2d(a, k, padding=1), [x[0], wt], rtol=1e-4,
                        atol=1e-4)  # (C, H, W)
    k = fv.tensor(wt, requires_grad=True)
    F.conv2d(fv.tensor(x), k, padding=1).sum().backward()  # the input needs no gradient
    a = fv.tensor(x, requires_grad=True)
    F.conv2d(a, fv.tensor(wt), padding=1).sum().backward()  # the weight needs none
    ref_x = torch.tensor(x, requires_grad=True)
    ref_k = torch.tensor(wt, requires_grad=True)
    T.conv2d(ref_x, ref_k, padding=1).sum().backward()
    np.testing.assert_allclose(k.grad.data, ref_k.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a.grad.data, ref_x.grad.numpy(), rtol=1e-4, atol=1e-4)
    before = len(taken)
    with fv.no_grad():  # nothing kept for a backward
        y = F.conv2d(fv.tensor(x, requires_grad=True), fv.tensor(wt, requires_grad=True))
    assert y.grad_fn is None and len(taken) == before + 1


@pytest.mark.parametrize("c,k,kw,why", [
    (2, 3, dict(stride=2), "stride"), (2, 3, dict(dilation=2, padding=2), "dilation"),
    (2, 3, dict(groups=2), "groups"), (2, 3, dict(padding=3), "padding as wide as the kernel"),
    (2, 1, {}, "1x1 kernel"), (17, 3, dict(out=64), "more than MAX_TAPS taps"),
    (49, 5, {}, "more than MAX_TAPS_FIVES taps"),
    (32, 3, dict(padding=1, out=32), "Winograd's"),
    (33, 3, dict(padding=1), "more than MAX_TAPS_NARROW taps"),
])
def test_other_convolutions_keep_their_path(taken, c, k, kw, why):
    # (16 output channels but where ``out`` says: 17 -> 16 and 32 -> 16 are narrow layers, which
    # take the direct loops on CPUs without AVX-512; see test_ops_algorithms)
    rng = np.random.default_rng(1)
    kw = dict(kw)
    o = kw.pop("out", 16)
    x = _arr(rng, 2, c, 12, 12)
    wt = _arr(rng, o, c // kw.get("groups", 1), k, k)
    F.conv2d(fv.tensor(x), fv.tensor(wt), **kw)
    assert not taken, why


def test_taps_threshold_and_numba_missing(taken, monkeypatch):
    rng = np.random.default_rng(2)
    x, wt = _arr(rng, 2, 48, 10, 10), _arr(rng, 4, 48, 5, 5)  # 1200 taps: at MAX_TAPS_FIVES
    ref = T.conv2d(torch.tensor(x), torch.tensor(wt)).numpy()
    out = F.conv2d(fv.tensor(x), fv.tensor(wt)).data
    assert len(taken) == 1 and np.abs(out - ref).max() < 1e-5 * np.abs(ref).max()
    disable_compiled(monkeypatch, "_direct_kernels")  # as without numba
    out = F.conv2d(fv.tensor(x), fv.tensor(wt)).data
    assert len(taken) == 1 and np.abs(out - ref).max() < 1e-5 * np.abs(ref).max()


# ------------------------------------------------------------------------- 3x3 stride 2 (phases)
@pytest.fixture
def taken_s2(monkeypatch):
    """Counts the convolutions that took the stride-2 kernels."""
    return count_calls(monkeypatch, _direct, "forward_s2")


@pytest.mark.parametrize("n,c,o,h,w,pads", [
    (2, 16, 32, 32, 32, (1, 1, 1, 1)),  # resnet20's 16->32 downsampling layer
    (13, 32, 64, 16, 16, (1, 1, 1, 1)),  # its 32->64: 6 samples a pass, the last pass 1
    (45, 2, 4, 8, 8, (1, 1, 1, 1)),      # 4x4 outputs: 20 samples a pass, the last pass 5
    (3, 3, 5, 9, 8, (1, 1, 1, 1)),      # odd output channels (two per pass, the last twice)
    (2, 4, 8, 8, 8, (0, 0, 0, 0)),      # no padding: the last row and column of x unread
    (2, 2, 4, 7, 10, (2, 2, 2, 2)),     # padding 2, odd height
    (2, 3, 6, 6, 7, (0, 1, 1, 0)),      # asymmetric padding
    (1, 1, 1, 3, 3, (0, 0, 0, 0)),      # one output pixel, one channel
])
def test_stride2_matches_torch(taken_s2, n, c, o, h, w, pads):
    rng = np.random.default_rng(n * 100 + h * 10 + w)
    x, wt, b = _arr(rng, n, c, h, w), _arr(rng, o, c, 3, 3), _arr(rng, o)
    ours, theirs = _conv(pads, stride=2)
    check_against_torch(ours, theirs, [x, wt, b], rtol=1e-4, atol=1e-4)
    assert len(taken_s2) == 1


@pytest.mark.parametrize("pads,o", [((1, 1, 1, 1), 4), ((2, 0, 1, 2), 3), ((0, 2, 0, 1), 1)])
def test_stride2_float64_and_finite_differences(taken_s2, pads, o):
    rng = np.random.default_rng(sum(pads) + o)
    x, wt, b = (_arr(rng, 2, 3, 7, 8, dtype=np.float64), _arr(rng, o, 3, 3, 3, dtype=np.float64),
                _arr(rng, o, dtype=np.float64))
    ours, theirs = _conv(pads, stride=2)
    check_against_torch(ours, theirs, [x, wt, b], rtol=1e-10, atol=1e-12)
    gradcheck(ours, [x[:, :2, :5, :6], wt[:, :2], b])
    assert taken_s2


@pytest.mark.parametrize("threads", [2, 3])
def test_stride2_split_over_threads(monkeypatch, taken_s2, threads):
    monkeypatch.setattr(_parallel, "MIN_BYTES", 0)
    monkeypatch.setattr(_parallel, "threads", lambda: threads)
    monkeypatch.delenv("FOVEANET_THREADS", raising=False)
    rng = np.random.default_rng(threads)
    x, wt, b = _arr(rng, 7, 2, 10, 9), _arr(rng, 6, 2, 3, 3), _arr(rng, 6)
    check_against_torch(lambda a, k, z: F.conv2d(a, k, z, stride=2, padding=1),
                        lambda a, k, z: T.conv2d(a, k, z, stride=2, padding=1), [x, wt, b],
                        rtol=1e-4, atol=1e-4)
    assert taken_s2


def test_stride2_same_as_im2col_and_only_what_is_asked(monkeypatch, taken_s2):
    rng = np.random.default_rng(8)
    x, wt = _arr(rng, 3, 5, 12, 11), _arr(rng, 8, 5, 3, 3)
    outs = []
    for on in (True, False):
        with algorithms.force(conv2d="direct_s2" if on else "im2col"):
            a, k = fv.tensor(x, requires_grad=True), fv.tensor(wt, requires_grad=True)
            y = F.conv2d(a, k, stride=2, padding=1)
            (y * y).sum().backward()
            outs.append((y.data, a.grad.data, k.grad.data))
    assert len(taken_s2) == 1
    for ours, ref in zip(*outs):
        assert np.abs(ours - ref).max() <= 2e-5 * np.abs(ref).max()
    check_against_torch(lambda a, k: F.conv2d(a, k, stride=2, padding=1),
                        lambda a, k: T.conv2d(a, k, stride=2, padding=1), [x[0], wt], rtol=1e-4,
                        atol=1e-4)  # (C, H, W)
    ref_x, ref_k = torch.tensor(x, requires_grad=True), torch.tensor(wt, requires_grad=True)
    T.conv2d(ref_x, ref_k, stride=2).sum().backward()
    k = fv.tensor(wt, requires_grad=True)
    F.conv2d(fv.tensor(x), k, stride=2).sum().backward()  # the input needs no gradient
    a = fv.tensor(x, requires_grad=True)
    F.conv2d(a, fv.tensor(wt), stride=2).sum().backward()  # the weight needs none
    np.testing.assert_allclose(k.grad.data, ref_k.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a.grad.data, ref_x.grad.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("c,o,hw,kw,why", [
    (16, 32, 32, dict(stride=2, padding=1), None),  # resnet20's 16->32
    (32, 64, 16, dict(stride=2, padding=1), None),  # and 32->64: 8x8 outputs, 6 samples a pass
    (64, 64, 8, dict(stride=2, padding=1), None),   # at S2_MAX_MACS
    (64, 65, 8, dict(stride=2, padding=1), "over S2_MAX_MACS"),
    (4, 8, 32, dict(stride=(2, 1), padding=1), "stride 1 along the width"),
    (4, 8, 32, dict(stride=2, dilation=2, padding=2), "dilation"),
    (4, 8, 32, dict(stride=2, groups=2, padding=1), "groups"),
    (4, 8, 32, dict(stride=2, padding=3), "padding as wide as the kernel"),
])
def test_stride2_which_convolutions(monkeypatch, c, o, hw, kw, why):
    taken = count_calls(monkeypatch, _direct, "forward_s2")
    rng = np.random.default_rng(3)
    x, wt = _arr(rng, 1, c, hw, hw), _arr(rng, o, c // kw.get("groups", 1), 3, 3)
    ref = T.conv2d(torch.tensor(x), torch.tensor(wt), **kw).numpy()
    out = F.conv2d(fv.tensor(x), fv.tensor(wt), **kw).data
    assert np.abs(out - ref).max() < 1e-4 * np.abs(ref).max()
    assert len(taken) == (1 if why is None else 0), why


def test_stride2_numba_missing(taken_s2, monkeypatch):
    rng = np.random.default_rng(4)
    x, wt = _arr(rng, 2, 3, 9, 9), _arr(rng, 4, 3, 3, 3)
    ref = T.conv2d(torch.tensor(x), torch.tensor(wt), stride=2, padding=1).numpy()
    disable_compiled(monkeypatch, "_direct_kernels")  # as without numba
    out = F.conv2d(fv.tensor(x), fv.tensor(wt), stride=2, padding=1).data
    assert not taken_s2 and np.abs(out - ref).max() < 1e-5 * np.abs(ref).max()


def test_warm_compiles_both_dtypes():
    assert _direct.warm() == "direct convolutions: numba kernels compiled"
