"""Dropout: mask statistics, inverted scaling, seeded determinism, identity in eval, and the
gradient (the mask times the scale); channel-wise dropout2d."""
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import foveanet as fv
import foveanet.nn.functional as F
from foveanet.ops.dropout import dropout2d
from helpers import check_against_torch, gradcheck

shape_st = st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple)
p_st = st.sampled_from([0.1, 0.25, 0.5, 0.8])


def randn(seed, shape, dtype=np.float32):
    return np.asarray(np.random.default_rng(seed).standard_normal(shape), dtype=dtype)


def mask_of(p, shape, seed, dtype=np.float32):
    """The mask dropout draws from ``fv.Generator(seed)``: dropout of ones is the mask itself."""
    return F.dropout(fv.ones(*shape, dtype=dtype), p, generator=fv.Generator(seed)).data


@given(p=st.floats(0.05, 0.95), seed=st.integers(0, 2**31))
def test_mask_statistics_and_scaling(p, seed):
    y = F.dropout(fv.ones(200, 250), p, generator=fv.Generator(seed)).data
    dropped = (y == 0).mean()
    # 50 000 Bernoulli draws: the fraction is within 5 standard deviations of p
    assert abs(dropped - p) < 5 * np.sqrt(p * (1 - p) / y.size)
    kept = y[y != 0]
    np.testing.assert_allclose(kept, 1.0 / (1.0 - p), rtol=1e-6)  # inverted dropout
    assert abs(y.mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / y.size)  # expectation preserved


@given(shape=shape_st, p=p_st, seed=st.integers(0, 1000))
def test_same_seed_same_mask(shape, p, seed):
    x = fv.tensor(randn(seed, shape))
    a = F.dropout(x, p, generator=fv.Generator(seed))
    b = F.dropout(x, p, generator=fv.Generator(seed))
    np.testing.assert_array_equal(a.data, b.data)


def test_global_seed_and_generator_advance():
    x = fv.ones(50, 50)
    fv.manual_seed(123)
    a = F.dropout(x, 0.5).data
    b = F.dropout(x, 0.5).data
    fv.manual_seed(123)
    np.testing.assert_array_equal(F.dropout(x, 0.5).data, a)
    assert not np.array_equal(a, b)  # the generator moves on between calls
    g = fv.Generator(7)
    c, d = F.dropout(x, 0.5, generator=g).data, F.dropout(x, 0.5, generator=g).data
    assert not np.array_equal(c, d)
    assert not np.array_equal(F.dropout(x, 0.5, generator=fv.Generator(8)).data,
                              F.dropout(x, 0.5, generator=fv.Generator(9)).data)


@given(shape=shape_st, p=p_st, seed=st.integers(0, 1000), dtype=st.sampled_from([np.float32, np.float64]))
def test_gradient_is_mask_times_scale(shape, p, seed, dtype):
    x = fv.tensor(randn(seed, shape, dtype), requires_grad=True)
    y = F.dropout(x, p, generator=fv.Generator(seed))
    assert y.dtype == dtype
    mask = mask_of(p, shape, seed, dtype)  # 0 or 1 / (1 - p)
    assert set(np.unique(mask)) <= {0.0, dtype(1.0 / (1.0 - p))}
    np.testing.assert_allclose(y.data, x.data * mask, rtol=1e-6)
    g = randn(seed + 1, shape, dtype)
    y.backward(g)
    np.testing.assert_allclose(x.grad.data, g * mask, rtol=1e-6)
    assert x.grad.dtype == dtype


@given(shape=shape_st, p=p_st, seed=st.integers(0, 1000))
def test_vs_torch_with_the_same_mask_and_gradcheck(shape, p, seed):
    mask = mask_of(p, shape, seed)
    x = randn(seed, shape)
    check_against_torch(lambda a: F.dropout(a, p, generator=fv.Generator(seed)),
                        lambda a: a * torch.from_numpy(np.array(mask)), [x])
    gradcheck(lambda a: F.dropout(a, p, generator=fv.Generator(seed)), [x.astype(np.float64)])


@given(shape=shape_st, p=st.sampled_from([0.0, 0.3, 1.0]), inplace=st.booleans())
def test_identity_in_eval(shape, p, inplace):
    x = fv.tensor(randn(0, shape), requires_grad=True)
    assert F.dropout(x, p, training=False, inplace=inplace) is x
    check_against_torch(lambda a: F.dropout(a, p, training=False),
                        lambda a: torch.nn.functional.dropout(a, p, training=False), [x.data])


def test_p_zero_is_identity_and_p_one_zeroes():
    x = fv.tensor(randn(1, (4, 5)), requires_grad=True)
    assert F.dropout(x, 0.0) is x
    y = F.dropout(x, 1.0)
    assert not np.any(y.data) and np.all(np.isfinite(y.data))
    y.backward(np.ones((4, 5), dtype=np.float32))
    assert not np.any(x.grad.data) and np.all(np.isfinite(x.grad.data))
    check_against_torch(lambda a: F.dropout(a, 1.0), lambda a: torch.nn.functional.dropout(a, 1.0),
                        [x.data])


def test_inplace_flag_computes_out_of_place():
    x = fv.ones(10, 10)
    y = F.dropout(x, 0.5, inplace=True, generator=fv.Generator(0))
    assert y is not x and np.all(x.data == 1)  # documented: the input is left untouched


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_bad_probability(p):
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        F.dropout(fv.ones(3), p)
    with pytest.raises(ValueError, match="between 0 and 1"):
        dropout2d(fv.ones(2, 3, 4, 4), p)


def test_bad_generator():
    with pytest.raises(TypeError, match="foveanet.Generator"):
        F.dropout(fv.ones(3), 0.5, generator=np.random.default_rng(0))


# -------------------------------------------------------------------------------- dropout2d
@given(n=st.integers(1, 4), c=st.integers(1, 5), hw=st.integers(1, 3), p=p_st, seed=st.integers(0, 1000))
def test_dropout2d_drops_whole_channels(n, c, hw, p, seed):
    x = fv.tensor(randn(seed, (n, c, hw, hw)) + 10.0, requires_grad=True)  # no zero inputs
    y = dropout2d(x, p, generator=fv.Generator(seed))
    ratio = y.data / x.data
    per_map = ratio.reshape(n, c, -1)
    np.testing.assert_allclose(per_map, per_map[:, :, :1].repeat(hw * hw, axis=2), rtol=1e-6)
    assert np.all((per_map == 0) | np.isclose(per_map, 1.0 / (1.0 - p), rtol=1e-5))
    mask = ratio
    check_against_torch(lambda a: dropout2d(a, p, generator=fv.Generator(seed)),
                        lambda a: a * torch.from_numpy(mask.astype(np.float32)), [x.data],
                        rtol=1e-4)
    gradcheck(lambda a: dropout2d(a, p, generator=fv.Generator(seed)),
              [x.data.astype(np.float64)[:2, :3]])


def test_dropout2d_statistics_eval_and_3d_input():
    y = dropout2d(fv.ones(100, 100, 2, 2), 0.3, generator=fv.Generator(1)).data
    assert abs((y[:, :, 0, 0] == 0).mean() - 0.3) < 0.025
    x = fv.ones(2, 3, 4, 4)
    assert dropout2d(x, 0.5, training=False) is x
    with pytest.warns(UserWarning, match=r"interpreted as shape \(N, C, L\)"):
        z = dropout2d(fv.ones(6, 7, 5), 0.5, generator=fv.Generator(2)).data
    np.testing.assert_array_equal(z, z[:, :, :1].repeat(5, axis=2))
    with pytest.raises(ValueError, match="3-D or 4-D"):
        dropout2d(fv.ones(3, 4), 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dropout2d(fv.ones(2, 3, 4, 4), 0.5)  # no warning for 4-D input
