"""Losses (mse, sum of squared errors, cross entropy, nll, binary cross entropy with and without
logits) and one_hot against PyTorch, by finite differences, and their error messages."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import foveanet as fv
import foveanet.nn.functional as F
from helpers import check_against_torch, gradcheck

REDUCTIONS = ["mean", "sum", "none"]
reduction_st = st.sampled_from(REDUCTIONS)


def randn(rng, shape, scale=1.0, dtype=np.float32):
    return np.asarray(rng.standard_normal(shape) * scale, dtype=dtype)


def th(a):
    return None if a is None else torch.tensor(a)


def f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


# ------------------------------------------------------------------------------ squared errors
shape_st = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


@given(shape=shape_st, seed=st.integers(0, 10_000), reduction=reduction_st)
def test_mse_loss(shape, seed, reduction):
    rng = np.random.default_rng(seed)
    y, d = randn(rng, shape), randn(rng, shape)
    check_against_torch(lambda a, b: F.mse_loss(a, b, reduction),
                        lambda a, b: TF.mse_loss(a, b, reduction=reduction), [y, d])
    gradcheck(lambda a, b: F.mse_loss(a, b, reduction), [y, d])


def test_mse_loss_broadcast_warns_like_torch():
    rng = np.random.default_rng(0)
    y, d = randn(rng, (3, 4)), randn(rng, (4,))
    with pytest.warns(UserWarning, match=r"target size \(4,\) that is different to the input size \(3, 4\)"):
        ours = F.mse_loss(fv.tensor(y), fv.tensor(d))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_against_torch(lambda a, b: F.mse_loss(a, b), lambda a, b: TF.mse_loss(a, b), [y, d])
        gradcheck(lambda a, b: F.mse_loss(a, b, "none"), [y, d])
    assert ours.shape == ()
    with pytest.raises(ValueError, match=r"target shape \(5,\) does not broadcast with input shape \(3, 4\)"):
        F.mse_loss(fv.tensor(y), fv.zeros(5))


@given(shape=shape_st, seed=st.integers(0, 10_000))
def test_sum_squared_error(shape, seed):
    """E = 1/2 sum (y - d)^2 and dE/dy = y - d (the lecture's error)."""
    rng = np.random.default_rng(seed)
    y, d = randn(rng, shape), randn(rng, shape)
    check_against_torch(F.sum_squared_error, lambda a, b: 0.5 * ((a - b) ** 2).sum(), [y, d])
    gradcheck(F.sum_squared_error, [y, d])
    yt = fv.tensor(y, requires_grad=True)
    F.sum_squared_error(yt, fv.tensor(d)).backward()
    np.testing.assert_allclose(yt.grad.data, y - d, rtol=1e-6)


def test_squared_errors_accept_integer_one_hot_targets():
    y = fv.tensor(np.array([[0.2, 0.7, 0.1], [0.5, 0.1, 0.4]], dtype=np.float32), requires_grad=True)
    d = F.one_hot(fv.tensor([1, 0]), 3)
    e = F.sum_squared_error(y, d)
    assert e.dtype == np.float32
    np.testing.assert_allclose(e.item(), 0.5 * ((y.data - d.data) ** 2).sum(), rtol=1e-6)
    e.backward()
    np.testing.assert_allclose(y.grad.data, y.data - d.data, rtol=1e-6)
    assert F.mse_loss(y, d).dtype == np.float32
    assert F.mse_loss(fv.tensor(y.data.astype(np.float64)), d).dtype == np.float64


# ------------------------------------------------------------------------------- cross entropy
@st.composite
def ce_case(draw, allow_probabilities=True):
    """Input shape (C,), (N, C), (N, C, d1) or (N, C, d1, d2) and every option."""
    ndim = draw(st.sampled_from([1, 2, 2, 3, 4]))
    c = draw(st.integers(1, 5))
    if ndim == 1:
        shape = (c,)
    else:
        shape = (draw(st.integers(1, 4)), c) + tuple(draw(st.integers(1, 3)) for _ in range(ndim - 2))
    return dict(shape=shape, seed=draw(st.integers(0, 10_000)),
                kind=draw(st.sampled_from(["index", "probs", "onehot"] if allow_probabilities else ["index"])),
                weighted=draw(st.booleans()),
                ignore=draw(st.sampled_from(["none", "default", "class"])),
                reduction=draw(reduction_st),
                smoothing=draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0])),
                scale=draw(st.sampled_from([1.0, 5.0])))


def _ce_arrays(case):
    rng = np.random.default_rng(case["seed"])
    shape = case["shape"]
    c = shape[0] if len(shape) == 1 else shape[1]
    x = randn(rng, shape, case["scale"])
    idx_shape = () if len(shape) == 1 else shape[:1] + shape[2:]
    t = np.asarray(rng.integers(0, c, idx_shape), dtype=np.int64)
    ignore_index = -100
    if case["ignore"] == "default" and t.size > 1:
        t.flat[0] = -100
    elif case["ignore"] == "class":
        ignore_index = int(t.flat[0])  # a real class, so some targets are ignored
    w = np.asarray(rng.random(c) + 0.2, dtype=np.float32) if case["weighted"] else None
    if case["kind"] == "index":
        target = t
    elif case["kind"] == "onehot":
        target = np.moveaxis(np.eye(c, dtype=np.float32)[np.maximum(t, 0)], -1,
                             0 if len(shape) == 1 else 1).copy()
    else:
        p = rng.random(shape) + 0.05
        target = np.asarray(p / p.sum(axis=0 if len(shape) == 1 else 1, keepdims=True), dtype=np.float32)
    return x, target, w, ignore_index


@settings(max_examples=40)  # many options: more cases than the profile's default
@given(case=ce_case())
def test_cross_entropy_vs_torch_and_gradcheck(case):
    x, target, w, ignore_index = _ce_arrays(case)
    red, ls = case["reduction"], case["smoothing"]
    if case["kind"] != "index" and ignore_index != -100:
        with pytest.raises(ValueError, match="ignore_index .* applies to class-index targets only"):
            F.cross_entropy(fv.tensor(x), fv.tensor(target), ignore_index=ignore_index)
        ignore_index = -100
    check_against_torch(
        lambda a, t: F.cross_entropy(a, t, w, ignore_index, red, ls),
        lambda a, t: TF.cross_entropy(a, t, th(w), ignore_index=ignore_index, reduction=red, label_smoothing=ls),
        [x, target])
    if red == "mean" and case["kind"] == "index" and np.all(target == ignore_index):
        return  # the loss is nan (0 / 0, as PyTorch); its gradient is zero, checked above
    gradcheck(lambda a, t: F.cross_entropy(a, t, f64(w), ignore_index, red, ls), [x, target])


@pytest.mark.parametrize("kind", ["index", "probs", "onehot"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.25])
def test_cross_entropy_every_option_combination(kind, reduction, weighted, smoothing):
    """Every combination once on a spatial input (N, C, d), besides the random cases above."""
    case = dict(shape=(2, 4, 3), seed=11, kind=kind, weighted=weighted,
                ignore="class" if kind == "index" else "default", reduction=reduction,
                smoothing=smoothing, scale=2.0)
    x, target, w, ignore_index = _ce_arrays(case)
    check_against_torch(
        lambda a, t: F.cross_entropy(a, t, w, ignore_index, reduction, smoothing),
        lambda a, t: TF.cross_entropy(a, t, th(w), ignore_index=ignore_index, reduction=reduction,
                                      label_smoothing=smoothing), [x, target])
    gradcheck(lambda a, t: F.cross_entropy(a, t, f64(w), ignore_index, reduction, smoothing), [x, target])


@settings(max_examples=40)  # many options: more cases than the profile's default
@given(case=ce_case(allow_probabilities=False))
def test_nll_loss_vs_torch_and_gradcheck(case):
    x, t, w, ignore_index = _ce_arrays(case)
    red = case["reduction"]
    logp = np.asarray(torch.log_softmax(torch.tensor(x), 0 if x.ndim == 1 else 1).numpy())
    check_against_torch(lambda a, tt: F.nll_loss(a, tt, w, ignore_index, red),
                        lambda a, tt: TF.nll_loss(a, tt, th(w), ignore_index=ignore_index, reduction=red),
                        [logp, t])
    if red == "mean" and np.all(t == ignore_index):
        return  # nan loss, zero gradient (as PyTorch), checked above
    gradcheck(lambda a, tt: F.nll_loss(a, tt, f64(w), ignore_index, red), [logp, t])
    # cross entropy is log_softmax followed by nll
    check_against_torch(lambda a, tt: F.nll_loss(F.log_softmax(a, 0 if a.ndim == 1 else 1), tt, w, ignore_index, red),
                        lambda a, tt: TF.cross_entropy(a, tt, th(w), ignore_index=ignore_index, reduction=red),
                        [x, t])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_plain_case_same_bits_as_general_path(reduction):
    # (N, C) logits, no weights or smoothing, no ignored target: the short path; class weights of
    # exactly 1 take the general one, which must give the same bits, loss and gradient
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((37, 10)) * 3).astype(np.float32)
    t = rng.integers(0, 10, 37)
    out = []
    for w in (None, np.ones(10, dtype=np.float32)):
        a = fv.tensor(x, requires_grad=True)
        loss = F.cross_entropy(a, fv.tensor(t), weight=w, reduction=reduction)
        assert loss.grad_fn.plain == (w is None)
        loss.backward()
        out.append((loss.item(), a.grad.numpy()))
    assert out[0][0] == out[1][0] and np.array_equal(out[0][1], out[1][1])


def test_cross_entropy_mean_divides_by_weight_of_non_ignored_targets():
    x = np.zeros((3, 2), dtype=np.float64)  # every log-probability is log(1/2)
    w = np.array([1.0, 3.0])
    t = np.array([0, 1, -100])
    loss = F.cross_entropy(fv.tensor(x), fv.tensor(t), weight=w).item()
    np.testing.assert_allclose(loss, (1 + 3) * np.log(2) / (1 + 3))
    loss = F.cross_entropy(fv.tensor(x), fv.tensor(t), weight=w, reduction="sum").item()
    np.testing.assert_allclose(loss, 4 * np.log(2))


def test_cross_entropy_all_ignored_is_nan_like_torch():
    x = randn(np.random.default_rng(0), (2, 3))
    t = np.array([-100, -100])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = F.cross_entropy(fv.tensor(x), fv.tensor(t)).item()
    assert np.isnan(ours) and np.isnan(TF.cross_entropy(torch.tensor(x), torch.tensor(t)).item())
    assert F.cross_entropy(fv.tensor(x), fv.tensor(t), reduction="sum").item() == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_stable_for_huge_logits_and_keeps_dtype(dtype):
    x = np.array([[1e4, 0.0, -1e4], [-3e4, 3e4, 0.0]], dtype=dtype)
    t = np.array([1, 1])
    check_against_torch(lambda a, tt: F.cross_entropy(a, tt, label_smoothing=0.2),
                        lambda a, tt: TF.cross_entropy(a, tt, label_smoothing=0.2), [x, t])
    xt = fv.tensor(x, requires_grad=True)
    loss = F.cross_entropy(xt, fv.tensor(t))
    loss.backward()
    assert loss.dtype == dtype and xt.grad.dtype == dtype
    assert np.isfinite(loss.item()) and np.all(np.isfinite(xt.grad.data))


def test_cross_entropy_errors():
    x = fv.tensor(randn(np.random.default_rng(0), (3, 5)))
    with pytest.raises(TypeError, match=r"class indices, which must be integers, got float32.*target.long\(\)"):
        F.cross_entropy(x, fv.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match=r"probabilities, which must be floating point, got int64"):
        F.cross_entropy(x, fv.zeros(3, 5, dtype=fv.int64))
    with pytest.raises(ValueError, match=r"target shape \(3, 4\) does not fit input shape \(3, 5\)"):
        F.cross_entropy(x, fv.zeros(3, 4))
    with pytest.raises(ValueError, match=r"target shape \(4,\) does not fit input shape \(3, 5\)"):
        F.cross_entropy(x, fv.tensor([0, 1, 2, 3]))
    with pytest.raises(IndexError, match=r"target class index 7 is out of range for 5 classes"):
        F.cross_entropy(x, fv.tensor([0, 7, 1]))
    with pytest.raises(ValueError, match=r"target class index -3 is out of range for 5 classes"):
        F.cross_entropy(x, fv.tensor([0, -3, 1]))
    with pytest.raises(ValueError, match=r"'avg' is not a valid value for reduction.*'none', 'mean' or 'sum'"):
        F.cross_entropy(x, fv.tensor([0, 1, 2]), reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
        F.cross_entropy(x, fv.tensor([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"weight must have shape \(5,\)"):
        F.cross_entropy(x, fv.tensor([0, 1, 2]), weight=np.ones(4))
    with pytest.raises(TypeError, match="input must be floating point"):
        F.cross_entropy(fv.zeros(3, 5, dtype=fv.int64), fv.tensor([0, 1, 2]))


def test_nll_loss_errors():
    x = fv.tensor(randn(np.random.default_rng(0), (3, 5)))
    with pytest.raises(TypeError, match="must be integers, got float32"):
        F.nll_loss(x, fv.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"target shape \(3, 5\) does not fit input shape \(3, 5\)"):
        F.nll_loss(x, fv.zeros(3, 5))
    with pytest.raises(IndexError, match=r"target class index 5 is out of range for 5 classes"):
        F.nll_loss(x, fv.tensor([0, 5, 1]))
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        F.nll_loss(x, fv.tensor([0, 1, 2]), reduction="mean ")


# ------------------------------------------------------------------------ binary cross entropy
bce_shape_st = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


@settings(max_examples=40)  # many options: more cases than the profile's default
@given(shape=bce_shape_st, seed=st.integers(0, 10_000), reduction=reduction_st,
       weight=st.sampled_from([None, "full", "last"]))
def test_binary_cross_entropy(shape, seed, reduction, weight):
    rng = np.random.default_rng(seed)
    x = np.asarray(rng.random(shape) * 0.9 + 0.05, dtype=np.float32)
    t = np.asarray(rng.random(shape), dtype=np.float32)
    w = None if weight is None else np.asarray(rng.random(shape if weight == "full" else shape[-1:]) + 0.1,
                                                dtype=np.float32)
    check_against_torch(lambda a, b: F.binary_cross_entropy(a, b, w, reduction),
                        lambda a, b: TF.binary_cross_entropy(a, b, th(w), reduction=reduction), [x, t])
    gradcheck(lambda a, b: F.binary_cross_entropy(a, b, f64(w), reduction), [x, t])


def test_binary_cross_entropy_clamps_log_at_minus_100():
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.5], dtype=np.float32)
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.3], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = F.binary_cross_entropy(fv.tensor(x), fv.tensor(t), reduction="none").data
    ref = TF.binary_cross_entropy(torch.tensor(x), torch.tensor(t), reduction="none").numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    np.testing.assert_allclose(ours[:2], [100.0, 100.0])


@settings(max_examples=40)  # many options: more cases than the profile's default
@given(shape=bce_shape_st, seed=st.integers(0, 10_000), reduction=reduction_st,
       weight=st.sampled_from([None, "full", "last"]), pos_weight=st.booleans(),
       scale=st.sampled_from([1.0, 4.0]))
def test_binary_cross_entropy_with_logits(shape, seed, reduction, weight, pos_weight, scale):
    rng = np.random.default_rng(seed)
    x = randn(rng, shape, scale)
    t = np.asarray(rng.random(shape), dtype=np.float32)
    w = None if weight is None else np.asarray(rng.random(shape if weight == "full" else shape[-1:]) + 0.1,
                                                dtype=np.float32)
    pw = np.asarray(rng.random(shape[-1:]) * 3 + 0.1, dtype=np.float32) if pos_weight else None
    check_against_torch(lambda a, b: F.binary_cross_entropy_with_logits(a, b, w, reduction, pw),
                        lambda a, b: TF.binary_cross_entropy_with_logits(a, b, th(w), reduction=reduction,
                                                                         pos_weight=th(pw)), [x, t])
    gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b, f64(w), reduction, f64(pw)), [x, t])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_with_logits_stable(dtype):
    x = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=dtype)
    t = np.array([1.0, 0.0, 0.5, 1.0, 0.0], dtype=dtype)
    pw = np.array([2.0], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_against_torch(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction="none", pos_weight=pw),
                            lambda a, b: TF.binary_cross_entropy_with_logits(a, b, reduction="none",
                                                                             pos_weight=th(pw)), [x, t])
    xt = fv.tensor(x, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(xt, fv.tensor(t))
    loss.backward()
    assert loss.dtype == dtype and np.all(np.isfinite(xt.grad.data))


def test_binary_cross_entropy_errors():
    x = fv.tensor(np.array([0.2, 0.7, 0.5], dtype=np.float32))
    for fn in (F.binary_cross_entropy, F.binary_cross_entropy_with_logits):
        with pytest.raises(ValueError, match=r"target shape \(4,\) must equal input shape \(3,\)"):
            fn(x, fv.zeros(4))
        with pytest.raises(TypeError, match=r"must be floating point, got int64.*target.float\(\)"):
            fn(x, fv.tensor([0, 1, 1]))
        with pytest.raises(ValueError, match="is not a valid value for reduction"):
            fn(x, fv.zeros(3), reduction="elementwise_mean")
        with pytest.raises(ValueError, match=r"weight of shape \(2,\) does not broadcast to the input shape \(3,\)"):
            fn(x, fv.zeros(3), weight=np.ones(2))
    with pytest.raises(ValueError, match="all elements of input should be between 0 and 1"):
        F.binary_cross_entropy(fv.tensor([0.5, 1.2]), fv.zeros(2))


# ------------------------------------------------------------------------------------ one_hot
@given(shape=shape_st, seed=st.integers(0, 10_000), extra=st.integers(0, 3))
def test_one_hot_vs_torch(shape, seed, extra):
    t = np.asarray(np.random.default_rng(seed).integers(0, 4, shape), dtype=np.int64)
    n = int(t.max()) + 1 + extra
    for num_classes in (-1, n):
        ours = F.one_hot(fv.tensor(t), num_classes)
        ref = TF.one_hot(torch.tensor(t), num_classes).numpy()
        assert ours.dtype == np.int64
        np.testing.assert_array_equal(ours.data, ref)


def test_one_hot_errors():
    with pytest.raises(ValueError, match=r"non-negative, got -1"):
        F.one_hot(fv.tensor([0, -1, 2]))
    with pytest.raises(ValueError, match=r"class value 3 is out of range for num_classes=3"):
        F.one_hot(fv.tensor([0, 3, 2]), 3)
    with pytest.raises(TypeError, match="integer class-index tensors, got float32"):
        F.one_hot(fv.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="empty tensor"):
        F.one_hot(fv.zeros(0, dtype=fv.int64))
    assert F.one_hot(fv.zeros(0, dtype=fv.int64), 3).shape == (0, 3)


# ------------------------------------------- cross-entropy over positions, compiled (float32)
@pytest.mark.parametrize("shape", [(2, 3, 5), (4, 11, 16, 16), (1, 2, 3, 4, 5), (3, 1, 7)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [None, 255])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_over_positions_compiled_matches_torch_and_numpy(shape, weighted, ignore,
                                                                        reduction):
    from helpers import without_compiled

    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    x.reshape(-1)[:2] = [60.0, -60.0]  # far from the others: the exponential's range
    t = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    if ignore is not None:
        t.reshape(-1)[::3] = ignore
    w = rng.uniform(0.2, 3.0, shape[1]).astype(np.float32) if weighted else None
    kw = dict(reduction=reduction, **({} if ignore is None else {"ignore_index": ignore}))

    def ours():
        a = fv.tensor(x, requires_grad=True)
        loss = F.cross_entropy(a, fv.tensor(t), weight=None if w is None else fv.tensor(w), **kw)
        loss.backward()
        return float(loss.item()), a.grad.data

    ta = torch.tensor(x, requires_grad=True)
    tl = TF.cross_entropy(ta, torch.tensor(t), weight=None if w is None else torch.tensor(w), **kw)
    tl.backward()
    loss, grad = ours()
    assert grad.dtype == np.float32 and grad.shape == x.shape
    np.testing.assert_allclose(loss, tl.item(), rtol=2e-6)
    np.testing.assert_allclose(grad, ta.grad.numpy(), rtol=1e-5, atol=1e-6 * np.abs(grad).max())
    with without_compiled("_loss_kernels"):  # NumPy's general path: the same within rounding
        plain_loss, plain_grad = ours()
    np.testing.assert_allclose(loss, plain_loss, rtol=2e-6)
    np.testing.assert_allclose(grad, plain_grad, rtol=1e-5, atol=1e-6 * np.abs(grad).max())


def test_cross_entropy_over_positions_all_ignored_is_nan_with_zero_gradient():
    x = fv.tensor(np.ones((2, 3, 4), np.float32), requires_grad=True)
    t = np.full((2, 4), -100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = F.cross_entropy(x, fv.tensor(t))
        loss.backward()
    assert np.isnan(loss.item()) and np.isnan(TF.cross_entropy(torch.ones(2, 3, 4), torch.tensor(t)).item())
    assert np.array_equal(x.grad.data, np.zeros((2, 3, 4), np.float32))
    assert F.cross_entropy(x, fv.tensor(t), reduction="sum").item() == 0.0


def test_compiled_exponential_within_one_ulp():
    from foveanet.backend.cpu import kernels

    k = kernels.load("foveanet.ops._loss_kernels")
    if k is None:
        pytest.skip("numba is not installed")
    x = np.concatenate([np.linspace(-87.3, 88.3, 400_001), [0.0, -0.0, 1.0, -1.0]]).astype(np.float32)
    out = np.empty_like(x)
    k.exp_f32(x, out, 0, x.size)
    exact = np.exp(x.astype(np.float64))
    ulp = np.abs(out - exact) / np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert ulp.max() <= 1.0
    edges = np.array([-1e4, -np.inf, 1e4, np.nan], np.float32)  # the clamps, and NaN through
    got = np.empty_like(edges)
    k.exp_f32(edges, got, 0, 4)
    assert got[0] == got[1] and 1.17e-38 < got[0] < 1.18e-38  # e^-87.34: the smallest normal
    assert np.isfinite(got[2]) and got[2] > 1e38 and np.isnan(got[3])
