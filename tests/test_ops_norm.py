"""batch_norm (training and eval, running buffers, affine or not) and local_response_norm against
PyTorch and by finite differences."""
import contextlib
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import foveanet as fv
import foveanet.nn.functional as F
from helpers import check_against_torch, gradcheck, rel_close, without_compiled


norm_module = sys.modules["foveanet.ops.norm"]  # (foveanet.ops.norm is the norm function)
# training-mode batch norm through the compiled loops (where numba is installed) and NumPy's passes
PATHS = (["compiled"] if norm_module._kernels() is not None else []) + ["numpy"]


def _path(name):
    return without_compiled("_norm_kernels") if name == "numpy" else contextlib.nullcontext()


def randn(rng, shape, scale=1.0, shift=0.0, dtype=np.float32):
    return np.asarray(rng.standard_normal(shape) * scale + shift, dtype=dtype)


@st.composite
def bn_shape(draw):
    """(N, C), (N, C, L) or (N, C, H, W) with at least 2 values per channel."""
    ndim = draw(st.sampled_from([2, 3, 4]))
    n = draw(st.integers(1, 5))
    c = draw(st.integers(1, 4))
    spatial = tuple(draw(st.integers(1, 4)) for _ in range(ndim - 2))
    if n * int(np.prod(spatial)) == 1:
        n = 2
    return (n, c) + spatial


bn_settings = dict(training=st.booleans(), momentum=st.floats(0.0, 1.0), eps=st.sampled_from([1e-5, 1e-3, 0.1]),
                   affine=st.sampled_from(["both", "weight", "bias", "none"]))


def _bn_case(seed, shape, dtype=np.float32):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = randn(rng, shape, scale=2.0, shift=1.5, dtype=dtype)
    w = randn(rng, (c,), dtype=dtype)
    b = randn(rng, (c,), dtype=dtype)
    rm = randn(rng, (c,), dtype=dtype)
    rv = np.asarray(rng.random(c) + 0.5, dtype=dtype)
    return x, w, b, rm, rv


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=40)  # many options: more cases than the profile's default
@given(shape=bn_shape(), seed=st.integers(0, 10_000), **bn_settings)
def test_batch_norm_vs_torch_including_running_buffers(path, shape, seed, training, momentum, eps,
                                                       affine):
    with _path(path):
        _check_batch_norm_vs_torch(shape, seed, training, momentum, eps, affine)


def _check_batch_norm_vs_torch(shape, seed, training, momentum, eps, affine):
    x, w, b, rm, rv = _bn_case(seed, shape)
    fv_rm, fv_rv = fv.tensor(rm), fv.tensor(rv)
    th_rm, th_rv = torch.tensor(rm), torch.tensor(rv)
    use_w, use_b = affine in ("both", "weight"), affine in ("both", "bias")
    inputs = [x] + ([w] if use_w else []) + ([b] if use_b else [])

    def split(args):
        args = list(args)
        xx = args.pop(0)
        ww = args.pop(0) if use_w else None
        bb = args.pop(0) if use_b else None
        return xx, ww, bb

    def ours(*args):
        xx, ww, bb = split(args)
        return F.batch_norm(xx, fv_rm, fv_rv, ww, bb, training, momentum, eps)

    def theirs(*args):
        xx, ww, bb = split(args)
        return TF.batch_norm(xx, th_rm, th_rv, ww, bb, training, momentum, eps)

    check_against_torch(ours, theirs, inputs)
    rel_close(fv_rm.data, th_rm.numpy(), what="running_mean")
    rel_close(fv_rv.data, th_rv.numpy(), what="running_var")
    if not training:
        np.testing.assert_array_equal(fv_rm.data, rm)
        np.testing.assert_array_equal(fv_rv.data, rv)


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=40)  # many options: more cases than the profile's default
@given(shape=bn_shape(), seed=st.integers(0, 10_000), **bn_settings)
def test_batch_norm_gradcheck(path, shape, seed, training, momentum, eps, affine):
    with _path(path):
        _check_batch_norm_gradcheck(shape, seed, training, momentum, eps, affine)


def _check_batch_norm_gradcheck(shape, seed, training, momentum, eps, affine):
    x, w, b, rm, rv = _bn_case(seed, shape, np.float64)
    x = x[: max(2, 150 // x[0].size)]  # keep the input under ~150 elements
    use_w, use_b = affine in ("both", "weight"), affine in ("both", "bias")

    def fn(xx, ww, bb):
        # fresh buffers each call: a training call updates them
        return F.batch_norm(xx, fv.tensor(rm), fv.tensor(rv), ww if use_w else None,
                            bb if use_b else None, training, momentum, eps)

    gradcheck(fn, [x, w, b], wrt=[0] + ([1] if use_w else []) + ([2] if use_b else []))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_several_steps_then_eval_like_torch(dtype, path):
    with _path(path):
        _check_several_steps_then_eval(dtype)


def _check_several_steps_then_eval(dtype):
    rng = np.random.default_rng(3)
    c = 3
    fv_rm, fv_rv = fv.zeros(c, dtype=dtype), fv.ones(c, dtype=dtype)
    th_rm, th_rv = torch.zeros(c, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype), \
        torch.ones(c, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype)
    w, b = randn(rng, (c,), dtype=dtype), randn(rng, (c,), dtype=dtype)
    for step in range(4):
        x = randn(rng, (4, c, 3, 2), scale=3.0, shift=step, dtype=dtype)
        y = F.batch_norm(fv.tensor(x), fv_rm, fv_rv, fv.tensor(w), fv.tensor(b), True, 0.3)
        ref = TF.batch_norm(torch.tensor(x), th_rm, th_rv, torch.tensor(w), torch.tensor(b), True, 0.3)
        assert y.dtype == dtype and fv_rm.dtype == dtype
        rel_close(y.data, ref.numpy())
        rel_close(fv_rm.data, th_rm.numpy(), what="running_mean")
        rel_close(fv_rv.data, th_rv.numpy(), what="running_var")
    x = randn(rng, (2, c, 3, 2), dtype=dtype)
    check_against_torch(lambda a, ww, bb: F.batch_norm(a, fv_rm, fv_rv, ww, bb),
                        lambda a, ww, bb: TF.batch_norm(a, th_rm, th_rv, ww, bb), [x, w, b])


def test_batch_norm_updates_buffers_in_place():
    rm, rv = fv.zeros(2), fv.ones(2)
    arrays = rm.data, rv.data
    F.batch_norm(fv.tensor(np.array([[1.0, 2.0], [3.0, 6.0]], dtype=np.float32)), rm, rv,
                 training=True, momentum=0.5)
    assert rm.data is arrays[0] and rv.data is arrays[1]
    np.testing.assert_allclose(rm.data, [1.0, 2.0])          # 0.5 * 0 + 0.5 * mean
    np.testing.assert_allclose(rv.data, [0.5 + 1.0, 0.5 + 4.0])  # unbiased var 2 and 8, halved


def test_batch_norm_without_running_buffers_in_training():
    x = randn(np.random.default_rng(0), (5, 3, 2))
    check_against_torch(lambda a: F.batch_norm(a, None, None, training=True),
                        lambda a: TF.batch_norm(a, None, None, training=True), [x])


def test_batch_norm_parameter_grads_when_input_needs_none():
    x, w, b, rm, rv = _bn_case(4, (3, 2, 5))
    for training in (True, False):
        check_against_torch(lambda a, ww, bb: F.batch_norm(a, fv.tensor(rm), fv.tensor(rv), ww, bb, training),
                            lambda a, ww, bb: TF.batch_norm(a, torch.tensor(rm), torch.tensor(rv), ww, bb, training),
                            [x, w, b], grad=[False, True, True])


@pytest.mark.parametrize("path", PATHS)
def test_batch_norm_large_offset_is_stable(path):
    x, w, b, rm, rv = _bn_case(5, (8, 3, 4, 4))
    x = x + np.float32(1000.0)
    with _path(path):
        check_against_torch(lambda a, ww, bb: F.batch_norm(a, None, None, ww, bb, True),
                            lambda a, ww, bb: TF.batch_norm(a, None, None, ww, bb, True),
                            [x, w, b], rtol=2e-4)


@pytest.mark.parametrize("path", PATHS)
def test_batch_norm_large_channels_split_over_threads(path, monkeypatch):
    # larger planes (the sums run per row, then across rows) and channels split over 3 threads
    from foveanet.backend.cpu import threads as _parallel
    monkeypatch.setattr(_parallel, "MIN_BYTES", 0)
    monkeypatch.setattr(_parallel, "threads", lambda: 3)
    monkeypatch.delenv("FOVEANET_THREADS", raising=False)
    x, w, b, rm, rv = _bn_case(6, (16, 7, 12, 11))
    with _path(path):
        check_against_torch(lambda a, ww, bb: F.batch_norm(a, None, None, ww, bb, True),
                            lambda a, ww, bb: TF.batch_norm(a, None, None, ww, bb, True),
                            [x, w, b], rtol=1e-4)


def test_batch_norm_errors():
    rm, rv = fv.zeros(3), fv.ones(3)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        F.batch_norm(fv.ones(1, 3), rm, rv, training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        F.batch_norm(fv.ones(1, 3, 1, 1), rm, rv, training=True)
    F.batch_norm(fv.ones(1, 3), rm, rv, training=False)  # fine in eval
    with pytest.raises(ValueError, match="running_mean and running_var must be given"):
        F.batch_norm(fv.ones(2, 3), None, None, training=False)
    with pytest.raises(TypeError, match="momentum=None"):
        F.batch_norm(fv.ones(2, 3), rm, rv, training=True, momentum=None)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\).*got \(4,\)"):
        F.batch_norm(fv.ones(2, 3), rm, rv, fv.ones(4))
    with pytest.raises(ValueError, match=r"running_var must be a tensor of shape \(3,\)"):
        F.batch_norm(fv.ones(2, 3), rm, fv.ones(2))
    with pytest.raises(ValueError, match=r"shape \(N, C, \.\.\.\)"):
        F.batch_norm(fv.ones(3), rm, rv)


# --------------------------------------------------------------------------------------- LRN
@st.composite
def lrn_case(draw):
    ndim = draw(st.sampled_from([3, 4, 5]))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 7))) + tuple(
        draw(st.integers(1, 3)) for _ in range(ndim - 2))
    return shape, draw(st.integers(1, 6))


@settings(max_examples=40)  # many options: more cases than the profile's default
@given(case=lrn_case(), seed=st.integers(0, 10_000), alpha=st.sampled_from([1e-4, 0.1, 1.0]),
       beta=st.sampled_from([0.5, 0.75, 1.3]), k=st.sampled_from([0.5, 1.0, 2.0]))
def test_local_response_norm(case, seed, alpha, beta, k):
    shape, size = case
    x = randn(np.random.default_rng(seed), shape, scale=2.0)
    check_against_torch(lambda a: F.local_response_norm(a, size, alpha, beta, k),
                        lambda a: TF.local_response_norm(a, size, alpha, beta, k), [x])
    gradcheck(lambda a: F.local_response_norm(a, size, alpha, beta, k), [x.astype(np.float64)])


def test_local_response_norm_alexnet_defaults_and_dtype():
    x = randn(np.random.default_rng(1), (2, 8, 3, 3), scale=5.0)
    check_against_torch(lambda a: F.local_response_norm(a, 5), lambda a: TF.local_response_norm(a, 5), [x])
    check_against_torch(lambda a: F.local_response_norm(a, 5, 1e-4, 0.75, 2.0),
                        lambda a: TF.local_response_norm(a, 5, 1e-4, 0.75, 2.0), [x])
    y = F.local_response_norm(fv.tensor(x.astype(np.float64)), 3)
    assert y.dtype == np.float64


def test_local_response_norm_formula():
    """b_c = a_c / (k + alpha / size * sum over channels c - size//2 .. c + (size-1)//2 of a^2)^beta."""
    a = np.arange(1.0, 5.0).reshape(1, 4, 1)
    size, alpha, beta, k = 4, 0.3, 0.6, 1.5
    y = F.local_response_norm(fv.tensor(a), size, alpha, beta, k).data
    sq = np.pad(a[0, :, 0] ** 2, (size // 2, (size - 1) // 2))
    expect = [a[0, c, 0] / (k + alpha / size * sq[c:c + size].sum()) ** beta for c in range(4)]
    np.testing.assert_allclose(y[0, :, 0], expect, rtol=1e-12)


def test_local_response_norm_errors():
    with pytest.raises(ValueError, match=r"3D or higher.*got 2 dimensions"):
        F.local_response_norm(fv.ones(2, 3), 2)
    with pytest.raises(ValueError, match="size must be a positive int"):
        F.local_response_norm(fv.ones(2, 3, 4), 0)


def test_warm_compiles_the_batch_norm_kernels():
    expected = "batch norm: numba kernels compiled" if norm_module._kernels() is not None else \
        "batch norm: numba is not installed, NumPy passes instead"
    assert norm_module.warm() == expected


def test_compiled_batch_norm_gives_nan_not_an_exception_when_training_diverges():
    # a diverged network's activations overflow to inf; the compiled kernel once raised
    # ZeroDivisionError there (numba's Python error model) instead of letting NaN through to the
    # Trainer's divergence check (a real diverging run's step count depends on rounding)
    x = np.ones((4, 3, 5, 5), np.float32)
    x[0, 1, 2, 2] = np.inf
    bn = fv.nn.BatchNorm2d(3)
    out = bn(fv.tensor(x))
    assert np.isnan(out.data[:, 1]).all() and np.isfinite(out.data[:, [0, 2]]).all()
