"""conv2d and conv_transpose2d against PyTorch (forward and every gradient, float32) and against
finite differences (float64), over property-generated shapes and options, plus the error messages.
The properties run twice for conv2d: through NumPy's im2col, and with the compiled paths on (the
direct loops take the stride-1, few-tap cases, see test_ops_direct.py; strided ones take the
compiled im2col / col2im, or the stride-2 kernels where 3x3)."""
import contextlib

import numpy as np
import pytest
import torch
from helpers import check_against_torch, count_calls, gradcheck, without_compiled
from hypothesis import given, settings
from hypothesis import strategies as st

import foveanet as fv
from foveanet.ops import _direct, algorithms
from foveanet.backend.cpu import threads as _parallel
from foveanet.ops import conv as conv_module

F = fv.nn.functional
T = torch.nn.functional

# these properties cover many options each: more examples than the profile's default (still fast)
MORE = settings(max_examples=5 * settings.default.max_examples)

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

PATHS = ["im2col"] + (["compiled"] if _direct._kernels() is not None else [])


@contextlib.contextmanager
def _path(name):
    """Convolutions through NumPy's im2col only, or with the compiled paths allowed where they
    suit (the direct loops, the strided im2col / col2im)."""
    if name == "compiled":
        yield
        return
    with algorithms.force(conv2d="im2col"), without_compiled("_im2col_kernels"):
        yield


@pytest.fixture
def im2col():
    """For the tests of im2col's own choices: the direct path off."""
    with _path("im2col"):
        yield


def _arr(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------------------------ strategies
@st.composite
def conv_cases(draw, max_hw=7, max_c=3, max_n=2):
    """A valid conv2d call: shapes, stride, padding (int, pair, 'same', 'valid'), dilation, groups."""
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(1, max_c))
    cout = groups * draw(st.integers(1, 2))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    kind = draw(st.sampled_from(["int", "pair", "same", "valid"]))
    stride = (1, 1) if kind == "same" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if kind == "int":
        padding = draw(st.integers(0, 2))
        pads = (padding, padding)
    elif kind == "pair":
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        pads = padding
    else:
        padding, pads = kind, (0, 0) if kind == "valid" else (None, None)
    ext = [dil[i] * (k[i] - 1) + 1 for i in range(2)]
    hw = []
    for i in range(2):
        smallest = ext[i] if pads[i] is None else max(1, ext[i] - 2 * pads[i])
        hw.append(min(smallest + draw(st.integers(0, 4)), max(max_hw, smallest)))
    n = draw(st.integers(1, max_n))
    unbatched = draw(st.booleans()) and n == 1
    shape = (cin, *hw) if unbatched else (n, cin, *hw)
    return dict(x=shape, w=(cout, cin // groups, *k), b=draw(st.booleans()), stride=stride,
                padding=padding, dilation=dil, groups=groups, seed=draw(st.integers(0, 2**16)))


@st.composite
def conv_transpose_cases(draw, max_hw=5, max_c=3, max_n=2):
    groups = draw(st.integers(1, 2))
    cin = groups * draw(st.integers(1, max_c))
    cout_g = draw(st.integers(1, 2))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    out_pad = tuple(draw(st.integers(0, max(stride[i], dil[i]) - 1)) for i in range(2))
    hw = (draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw)))
    # padding may not eat the whole output: (H-1)s + d(k-1) + op + 1 - 2p >= 1
    full = [(hw[i] - 1) * stride[i] + dil[i] * (k[i] - 1) + out_pad[i] + 1 for i in range(2)]
    padding = tuple(draw(st.integers(0, min(2, (full[i] - 1) // 2))) for i in range(2))
    n = draw(st.integers(1, max_n))
    unbatched = draw(st.booleans()) and n == 1
    shape = (cin, *hw) if unbatched else (n, cin, *hw)
    return dict(x=shape, w=(cin, cout_g, *k), b=draw(st.booleans()), stride=stride, padding=padding,
                output_padding=out_pad, dilation=dil, groups=groups, seed=draw(st.integers(0, 2**16)))


def _inputs(case, dtype=np.float32):
    rng = np.random.default_rng(case["seed"])
    x, w = _arr(rng, *case["x"], dtype=dtype), _arr(rng, *case["w"], dtype=dtype)
    b = _arr(rng, case["w"][0] if "output_padding" not in case else case["w"][1] * case["groups"],
             dtype=dtype)
    return [x, w, b] if case["b"] else [x, w]


def _conv_kwargs(case):
    return {k: case[k] for k in ("stride", "padding", "dilation", "groups")}


def _convt_kwargs(case):
    return {k: case[k] for k in ("stride", "padding", "output_padding", "groups", "dilation")}


# ------------------------------------------------------------------------------------- conv2d
@pytest.mark.parametrize("path", PATHS)
@MORE
@given(conv_cases())
def test_conv2d_matches_torch(path, case):
    kw = _conv_kwargs(case)
    with _path(path):
        check_against_torch(lambda *a: F.conv2d(*a, **kw), lambda *a: T.conv2d(*a, **kw),
                            _inputs(case))


@pytest.mark.parametrize("path", PATHS)
@MORE
@given(conv_cases(max_hw=5, max_c=2), st.integers(0, 2))
def test_conv2d_gradcheck(path, case, which):
    kw = _conv_kwargs(case)
    inputs = _inputs(case, np.float64)
    wrt = [which] if which < len(inputs) else None  # one input per example keeps it fast
    with _path(path):
        gradcheck(lambda *a: F.conv2d(*a, **kw), inputs, wrt=wrt)


@pytest.mark.parametrize("k,dilation", [((2, 2), 1), ((4, 3), 1), ((2, 3), 2), ((3, 3), 3), ((1, 4), (1, 2))])
def test_conv2d_same_padding_uneven_total(k, dilation):
    # an odd total padding puts the extra row/column at the bottom/right, as PyTorch
    rng = np.random.default_rng(0)
    x, w, b = _arr(rng, 2, 3, 7, 6), _arr(rng, 4, 3, *k), _arr(rng, 4)
    out, _ = check_against_torch(lambda *a: F.conv2d(*a, padding="same", dilation=dilation),
                                 lambda *a: T.conv2d(*a, padding="same", dilation=dilation), [x, w, b])
    assert out[0].shape == (2, 4, 7, 6)
    gradcheck(lambda *a: F.conv2d(*a, padding="same", dilation=dilation),
              [x[:1, :2].astype(np.float64), w[:2, :2].astype(np.float64)])


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 0), ((1, 2), (0, 1))])
def test_conv2d_1x1(stride, padding):
    rng = np.random.default_rng(1)
    x, w, b = _arr(rng, 3, 8, 5, 6), _arr(rng, 6, 4, 1, 1), _arr(rng, 6)
    kw = dict(stride=stride, padding=padding, groups=2)
    check_against_torch(lambda *a: F.conv2d(*a, **kw), lambda *a: T.conv2d(*a, **kw), [x, w, b])


@pytest.mark.parametrize("grad", [[True, False, False], [False, True, False], [False, False, True]])
def test_conv2d_partial_gradients(grad):
    rng = np.random.default_rng(2)
    x, w, b = _arr(rng, 2, 4, 6, 6), _arr(rng, 6, 2, 3, 3), _arr(rng, 6)
    kw = dict(stride=2, padding=1, groups=2)
    check_against_torch(lambda *a: F.conv2d(*a, **kw), lambda *a: T.conv2d(*a, **kw), [x, w, b],
                        grad=grad)


@pytest.mark.parametrize("as_conv", [True, False])
@pytest.mark.parametrize("cin,cout,k,pad", [(2, 5, 5, 0), (4, 2, 3, 1), (3, 3, 3, 1), (2, 4, (3, 2), (2, 1))])
def test_conv2d_input_grad_both_ways(im2col, monkeypatch, as_conv, cin, cout, k, pad):
    # stride 1: the input gradient is a convolution of the gradient or GEMM + col2im, chosen by
    # size; both ways must give PyTorch's gradients, whichever the choice would be
    monkeypatch.setattr(conv_module, "_input_grad_is_a_conv",
                        lambda fn: as_conv and conv_module._fits_as_conv(fn))
    rng = np.random.default_rng(4)
    kk = k if isinstance(k, tuple) else (k, k)
    x, w, b = _arr(rng, 3, cin, 7, 6), _arr(rng, cout, cin, *kk), _arr(rng, cout)
    kw = dict(padding=pad)
    check_against_torch(lambda *a: F.conv2d(*a, **kw), lambda *a: T.conv2d(*a, **kw), [x, w, b])
    gradcheck(lambda *a: F.conv2d(*a, **kw), [a.astype(np.float64) for a in (x, w, b)], wrt=[0])


@pytest.mark.parametrize("chunk_bytes", [1, 5000, 1 << 30])
def test_conv_batch_chunks(im2col, monkeypatch, chunk_bytes):
    # the batch is processed in cache-sized chunks: one sample each, a few, all at once
    monkeypatch.setattr(conv_module, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(3)
    x, w, b = _arr(rng, 7, 4, 6, 5), _arr(rng, 6, 2, 3, 2), _arr(rng, 6)
    kw = dict(stride=(1, 2), padding=1, groups=2)
    check_against_torch(lambda *a: F.conv2d(*a, **kw), lambda *a: T.conv2d(*a, **kw), [x, w, b])
    wt = _arr(rng, 4, 3, 3, 2)
    kw = dict(stride=2, padding=(1, 0), output_padding=1, groups=2)
    check_against_torch(lambda *a: F.conv_transpose2d(*a, **kw),
                        lambda *a: T.conv_transpose2d(*a, **kw), [x, wt, b])


@pytest.mark.skipif(conv_module._strided_kernels() is None, reason="numba is not installed")
@pytest.mark.parametrize("kw", [
    dict(stride=2, padding=1), dict(stride=2, padding=3), dict(stride=(1, 3), padding=(2, 4)),
    dict(stride=3, padding=2, dilation=2), dict(stride=2, padding=(0, 1), groups=2)])
def test_strided_im2col_reads_the_padding(monkeypatch, kw):
    # the compiled strided im2col reads the padding as zeros (rows and columns wholly or partly
    # outside the input, with dilation, groups, several chunks): no padded copy of the input,
    # the input itself kept for the weight gradient, PyTorch's results
    monkeypatch.setattr(conv_module, "WIDE_MACS", 0)
    monkeypatch.setattr(conv_module, "FEW_POSITIONS", 0)
    monkeypatch.setattr(conv_module, "CHUNK_BYTES", 3000)
    monkeypatch.setattr(_direct, "S2_MAX_MACS", 0)  # 3x3 stride 2 would take the phase loops
    copies = count_calls(monkeypatch, conv_module, "pad_array")
    rng = np.random.default_rng(11)
    x, w, b = _arr(rng, 5, 4, 9, 8), _arr(rng, 6, 4 // kw.get("groups", 1), 3, 3), _arr(rng, 6)
    y = F.conv2d(fv.tensor(x), fv.tensor(w, requires_grad=True), **kw)
    assert not copies and y.grad_fn.xpad is not None and y.grad_fn.xpad.shape == x.shape
    check_against_torch(lambda *a: F.conv2d(*a, **kw), lambda *a: T.conv2d(*a, **kw), [x, w, b])
    gradcheck(lambda *a: F.conv2d(*a, **kw), [x[:2].astype(np.float64), w.astype(np.float64),
                                               b.astype(np.float64)])


@pytest.mark.parametrize("wide_macs", [0, 1 << 40], ids=["per-sample", "side-by-side"])
@pytest.mark.parametrize("as_conv", [False, True])
def test_conv2d_both_product_layouts(im2col, monkeypatch, wide_macs, as_conv):
    # small per-sample products run as one product over a chunk's samples side by side, larger
    # ones per sample: both layouts (and both input-gradient ways) give PyTorch's results
    monkeypatch.setattr(conv_module, "WIDE_MACS", wide_macs)
    monkeypatch.setattr(conv_module, "FEW_POSITIONS", 0 if wide_macs == 0 else 64)
    monkeypatch.setattr(conv_module, "WIDE_POSITIONS", 1 << 20)
    monkeypatch.setattr(conv_module, "CHUNK_BYTES", 3000)  # several chunks, the last one short
    monkeypatch.setattr(conv_module, "_input_grad_is_a_conv",
                        lambda fn: as_conv and conv_module._fits_as_conv(fn))
    rng = np.random.default_rng(5)
    x, w, b = _arr(rng, 7, 3, 8, 7), _arr(rng, 4, 3, 3, 2), _arr(rng, 4)
    for kw in (dict(padding=1), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))):
        check_against_torch(lambda *a: F.conv2d(*a, **kw), lambda *a: T.conv2d(*a, **kw), [x, w, b])
        gradcheck(lambda *a: F.conv2d(*a, **kw), [a.astype(np.float64) for a in (x, w, b)])


def test_conv2d_dtypes():
    rng = np.random.default_rng(3)
    x, w, b = _arr(rng, 2, 16, 12, 12), _arr(rng, 8, 16, 3, 3), _arr(rng, 8)
    for dt in (np.float32, np.float64):
        out = F.conv2d(fv.tensor(x.astype(dt)), fv.tensor(w.astype(dt)), fv.tensor(b.astype(dt)))
        assert out.dtype == dt


def test_conv2d_accepts_arrays_and_no_grad():
    rng = np.random.default_rng(4)
    x, w = _arr(rng, 1, 2, 5, 5), _arr(rng, 3, 2, 3, 3)
    with fv.no_grad():
        out = F.conv2d(fv.tensor(x, requires_grad=True), w)
    assert out.grad_fn is None
    ref = T.conv2d(torch.tensor(x), torch.tensor(w)).numpy()
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- conv_transpose2d
@MORE
@given(conv_transpose_cases())
def test_conv_transpose2d_matches_torch(case):
    kw = _convt_kwargs(case)
    check_against_torch(lambda *a: F.conv_transpose2d(*a, **kw),
                        lambda *a: T.conv_transpose2d(*a, **kw), _inputs(case))


@MORE
@given(conv_transpose_cases(max_hw=3, max_c=2), st.integers(0, 2))
def test_conv_transpose2d_gradcheck(case, which):
    kw = _convt_kwargs(case)
    inputs = _inputs(case, np.float64)
    wrt = [which] if which < len(inputs) else None
    gradcheck(lambda *a: F.conv_transpose2d(*a, **kw), inputs, wrt=wrt)


def test_conv_transpose2d_is_adjoint_of_conv2d():
    # <conv2d(x, w), y> == <x, conv_transpose2d(y, w)> for matching geometry
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 2))
    y = F.conv2d(fv.tensor(x), fv.tensor(w), stride=2, padding=1, dilation=(1, 2))
    r = rng.standard_normal(y.shape)
    back = F.conv_transpose2d(fv.tensor(r), fv.tensor(w), stride=2, padding=1, dilation=(1, 2),
                              output_padding=(0, 1))
    assert back.shape == x.shape
    np.testing.assert_allclose((y.numpy() * r).sum(), (x * back.numpy()).sum(), rtol=1e-10)


# ------------------------------------------------------------------------------------- errors
def _t(*shape, dtype=np.float32):
    return fv.tensor(np.zeros(shape, dtype=dtype))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: F.conv2d(_t(8, 1, 28, 28), _t(16, 3, 3, 3)), ValueError,
     r"conv2d: input has 1 channels but weight expects 3 \(in_channels=3, groups=1\); "
     r"input shape \(8, 1, 28, 28\), weight shape \(16, 3, 3, 3\)"),
    (lambda: F.conv2d(_t(1, 1, 3, 3), _t(1, 1, 5, 5)), ValueError,
     r"conv2d: kernel 5x5 \(dilated 5x5\) is larger than the padded input 3x3"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(1, 1, 3, 3), dilation=3), ValueError,
     r"conv2d: kernel 3x3 \(dilated 7x7\) is larger than the padded input 5x5"),
    (lambda: F.conv2d(_t(1, 2, 5, 5), _t(2, 2, 3, 3), stride=0), ValueError,
     r"conv2d: stride must be positive"),
    (lambda: F.conv2d(_t(1, 2, 5, 5), _t(2, 2, 3, 3), stride=-1), ValueError,
     r"conv2d: stride must be positive"),
    (lambda: F.conv2d(_t(1, 2, 5, 5), _t(2, 2, 3, 3), padding=-1), ValueError,
     r"conv2d: padding must be non-negative"),
    (lambda: F.conv2d(_t(1, 2, 5, 5), _t(2, 2, 3, 3), dilation=0), ValueError,
     r"conv2d: dilation must be positive"),
    (lambda: F.conv2d(_t(1, 2, 5, 5), _t(2, 2, 3, 3), padding="same", stride=2), ValueError,
     r"conv2d: padding='same' is not supported for strided convolutions"),
    (lambda: F.conv2d(_t(1, 2, 5, 5), _t(2, 2, 3, 3), padding="full"), ValueError,
     r"conv2d: invalid padding string 'full'"),
    (lambda: F.conv2d(_t(1, 3, 5, 5), _t(3, 1, 3, 3), groups=2), ValueError,
     r"conv2d: out_channels=3 is not divisible by groups=2"),
    (lambda: F.conv2d(_t(1, 3, 5, 5), _t(4, 1, 3, 3), groups=2), ValueError,
     r"conv2d: input channels 3 are not divisible by groups=2"),
    (lambda: F.conv2d(_t(1, 4, 5, 5), _t(4, 1, 3, 3), groups=2), ValueError,
     r"conv2d: input has 4 channels but weight expects 2 \(in_channels=2, groups=2\)"),
    (lambda: F.conv2d(_t(1, 2, 5, 5), _t(2, 2, 3, 3), groups=0), ValueError,
     r"conv2d: groups must be a positive int"),
    (lambda: F.conv2d(_t(3, 5, 5), _t(2, 2, 3, 3)), ValueError,
     r"conv2d: input has 3 channels but weight expects 2 \(in_channels=2, groups=1\); "
     r"input shape \(3, 5, 5\)"),
    (lambda: F.conv2d(_t(5, 5), _t(2, 1, 3, 3)), ValueError,
     r"conv2d: expected a 4-D \(N, C, H, W\) or 3-D \(C, H, W\) input, got 2-D; input shape \(5, 5\)"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(1, 3, 3)), ValueError,
     r"conv2d: weight must be 4-D \(out_channels, in_channels/groups, kH, kW\); "
     r"input shape \(1, 1, 5, 5\), weight shape \(1, 3, 3\)"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(4, 1, 3, 3), _t(3)), ValueError,
     r"conv2d: bias has shape \(3,\), expected \(4,\)"),
    (lambda: F.conv2d(_t(1, 1, 5, 5, dtype=np.int64), _t(4, 1, 3, 3, dtype=np.int64)), TypeError,
     r"conv2d: input must be a floating-point tensor, got int64"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(4, 1, 3, 3, dtype=np.float64)), TypeError,
     r"conv2d: input \(float32\), weight \(float64\) must have the same dtype"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(4, 1, 3, 3), stride=(1, 2, 3)), ValueError,
     r"conv2d: stride must be an int or a pair of ints"),
    (lambda: F.conv_transpose2d(_t(1, 3, 5, 5), _t(2, 4, 3, 3)), ValueError,
     r"conv_transpose2d: input has 3 channels but weight expects 2"),
    (lambda: F.conv_transpose2d(_t(1, 3, 5, 5), _t(3, 4, 3, 3), groups=2), ValueError,
     r"conv_transpose2d: in_channels=3 is not divisible by groups=2"),
    (lambda: F.conv_transpose2d(_t(1, 2, 5, 5), _t(2, 4, 3, 3), stride=2, output_padding=2),
     ValueError, r"conv_transpose2d: output_padding \(2, 2\) must be smaller than either stride"),
    (lambda: F.conv_transpose2d(_t(1, 2, 1, 1), _t(2, 4, 1, 1), padding=1), ValueError,
     r"conv_transpose2d: the output would be -1x-1"),
    (lambda: F.conv_transpose2d(_t(1, 2, 3, 3), _t(2, 4, 3, 3), _t(2)), ValueError,
     r"conv_transpose2d: bias has shape \(2,\), expected \(4,\)"),
    (lambda: F.conv_transpose2d(_t(1, 2, 3, 3), _t(2, 4, 3, 3), padding="same"), ValueError,
     r"conv_transpose2d: padding must be an int or a pair"),
    (lambda: F.conv_transpose2d(_t(1, 2, 3, 3), _t(2, 4, 3, 3), stride=0), ValueError,
     r"conv_transpose2d: stride must be positive"),
])
def test_conv_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ------------------------------------------------------- every option through gradcheck, explicitly
@pytest.mark.parametrize("kw", [
    dict(), dict(stride=2), dict(stride=(1, 2)), dict(padding=1), dict(padding=(0, 2)),
    dict(padding="same"), dict(padding="valid"), dict(padding="same", dilation=(2, 1)),
    dict(dilation=2, padding=1), dict(groups=2), dict(groups=2, stride=2, padding=1),
])
@pytest.mark.parametrize("path", PATHS)
def test_conv2d_gradcheck_options(kw, path):
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((2, 2 // kw.get("groups", 1), 2, 3)), \
        rng.standard_normal(2)
    with _path(path):
        gradcheck(lambda *a: F.conv2d(*a, **kw), [x, w, b])


@pytest.mark.parametrize("kw", [
    dict(), dict(stride=2), dict(stride=(2, 1), output_padding=(1, 0)), dict(padding=1),
    dict(padding=(0, 1), stride=2), dict(dilation=2), dict(dilation=(2, 1), output_padding=(1, 0)),
    dict(groups=2), dict(groups=2, stride=2, padding=1, output_padding=1),
])
def test_conv_transpose2d_gradcheck_options(kw):
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((2, 2, 3, 4)), rng.standard_normal((2, 2, 2, 3)), \
        rng.standard_normal(2 * kw.get("groups", 1))
    gradcheck(lambda *a: F.conv_transpose2d(*a, **kw), [x, w, b])


@pytest.mark.parametrize("threads", [2, 3])
def test_batch1_strided_columns_split_their_rows(monkeypatch, threads):
    # fewer samples than threads: the compiled strided im2col splits the output rows (each part
    # reading the padding at its own offset), as an inference plan's batch-1 stem does
    if conv_module._strided_kernels() is None:
        pytest.skip("needs numba")
    monkeypatch.setattr(_parallel, "MIN_BYTES", 0)
    monkeypatch.setattr(_parallel, "threads", lambda: threads)
    monkeypatch.delenv("FOVEANET_THREADS", raising=False)
    rng = np.random.default_rng(threads)
    x, w, b = _arr(rng, 1, 3, 23, 21), _arr(rng, 8, 3, 7, 7), _arr(rng, 8)
    out = conv_module.infer_im2col(x, w.reshape(8, -1), b, (7, 7), (2, 2), (3, 3, 3, 3), (1, 1))
    ref = T.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=2, padding=3)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-4, atol=1e-4)
