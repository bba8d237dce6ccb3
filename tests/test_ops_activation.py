"""Activations (sigmoid with steepness, tanh, relu, leaky_relu, elu, softmax, log_softmax) against
PyTorch and by finite differences."""
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import foveanet as fv
import foveanet.nn.functional as F
from helpers import check_against_torch, gradcheck

shape_st = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)
nonscalar_shape_st = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


def randn(seed, shape, scale=1.0, dtype=np.float32):
    return np.asarray(np.random.default_rng(seed).standard_normal(shape) * scale, dtype=dtype)


def away_from_zero(x, gap=1e-3):
    """Inputs kept off the kink at 0, so central differences never straddle it."""
    return np.asarray(np.where(np.abs(x) < gap, gap, x), dtype=x.dtype)


# ------------------------------------------------------------------------------ pointwise ones
@given(shape=shape_st, seed=st.integers(0, 10_000), sigma=st.floats(0.1, 5.0))
def test_sigmoid_with_sigma_vs_torch(shape, seed, sigma):
    x = randn(seed, shape, 3.0)
    check_against_torch(lambda a: F.sigmoid(a, sigma=sigma), lambda a: torch.sigmoid(sigma * a), [x])
    gradcheck(lambda a: F.sigmoid(a, sigma), [x.astype(np.float64)])


def test_sigmoid_default_and_method():
    x = randn(1, (3, 4), 2.0)
    check_against_torch(F.sigmoid, torch.sigmoid, [x])
    check_against_torch(lambda a: a.sigmoid(), torch.sigmoid, [x])
    check_against_torch(fv.sigmoid, torch.sigmoid, [x])


def test_sigmoid_derivative_is_sigma_y_one_minus_y():
    x = fv.tensor(randn(2, (5,)), requires_grad=True)
    y = F.sigmoid(x, sigma=2.5)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, 2.5 * y.data * (1 - y.data), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sigma", [1.0, 4.0])
def test_sigmoid_stable_for_large_inputs(dtype, sigma):
    x = fv.tensor(np.array([-1e4, -800.0, -100.0, 0.0, 100.0, 800.0, 1e4], dtype=dtype),
                  requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning from NumPy
        y = F.sigmoid(x, sigma)
        y.sum().backward()
    assert y.dtype == dtype
    assert np.all(np.isfinite(y.data)) and np.all(np.isfinite(x.grad.data))
    np.testing.assert_array_equal(y.data[[0, 1, -2, -1]], [0, 0, 1, 1])
    assert y.data[3] == 0.5
    ref = torch.sigmoid(sigma * torch.tensor(x.data)).numpy()
    np.testing.assert_allclose(y.data, ref, rtol=1e-6)


UNARY = {
    "tanh": (F.tanh, torch.tanh),
    "relu": (F.relu, torch.relu),
    "relu_inplace": (lambda a: F.relu(a, inplace=True), torch.relu),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=shape_st, seed=st.integers(0, 10_000))
def test_unary_vs_torch_and_gradcheck(name, shape, seed):
    ours, theirs = UNARY[name]
    x = away_from_zero(randn(seed, shape, 2.0))
    check_against_torch(ours, theirs, [x])
    gradcheck(ours, [x.astype(np.float64)])


@pytest.mark.parametrize("shape", [(7,), (3, 5), (300, 2000), (4, 3, 2, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_compiled_loop_gives_numpys_bits_and_pytorchs(shape, dtype):
    from foveanet.ops.activation import relu_into
    from helpers import without_compiled

    x = randn(3, shape, dtype=dtype)
    flat = x.reshape(-1)
    flat[:4] = [-0.0, 0.0, np.nan, -np.inf][:flat.size]  # signs of zero and NaN kept as PyTorch
    with without_compiled("_activation_kernels"):
        plain = relu_into(x)
    for got in (relu_into(x), relu_into(x.copy(), out=None), F.relu(fv.tensor(x)).data):
        assert got.tobytes() == plain.tobytes()
    assert plain.tobytes() == torch.relu(torch.from_numpy(x)).numpy().tobytes()
    inplace = x.copy()
    relu_into(inplace, out=inplace)  # the inference plan's form
    assert inplace.tobytes() == plain.tobytes()


@pytest.mark.parametrize("shape", [(7,), (3, 5), (300, 2000), (4, 3, 2, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_compiled_pass_gives_pytorchs_bits(shape, dtype):
    from helpers import without_compiled

    x = randn(4, shape, dtype=dtype)
    g = randn(5, shape, dtype=dtype)
    xf, gf = x.reshape(-1), g.reshape(-1)
    xf[:3] = [0.0, -0.0, np.nan][:xf.size]  # no gradient at 0; at NaN it passes, as PyTorch's
    gf[-2:] = [np.nan, np.inf][-min(2, gf.size):]  # where x < 0 these give 0, as PyTorch, not NaN
    want = torch.ops.aten.threshold_backward(torch.from_numpy(g), torch.relu(torch.from_numpy(x)), 0)

    def ours():
        t = fv.tensor(x, requires_grad=True)
        F.relu(t).backward(fv.tensor(g))
        return t.grad.data

    got = ours()
    assert got.dtype == dtype and got.tobytes() == want.numpy().tobytes()
    with without_compiled("_activation_kernels"):  # NumPy's where: the same bits
        plain = ours()
    assert plain.tobytes() == got.tobytes()


@given(shape=shape_st, seed=st.integers(0, 10_000), slope=st.floats(-2.0, 2.0),
       inplace=st.booleans())
def test_leaky_relu(shape, seed, slope, inplace):
    x = away_from_zero(randn(seed, shape, 2.0))
    check_against_torch(lambda a: F.leaky_relu(a, slope, inplace),
                        lambda a: torch.nn.functional.leaky_relu(a, slope), [x])
    gradcheck(lambda a: F.leaky_relu(a, slope, inplace), [x.astype(np.float64)])


@given(shape=shape_st, seed=st.integers(0, 10_000), alpha=st.floats(0.1, 3.0),
       inplace=st.booleans())
def test_elu(shape, seed, alpha, inplace):
    x = away_from_zero(randn(seed, shape, 2.0))
    check_against_torch(lambda a: F.elu(a, alpha, inplace),
                        lambda a: torch.nn.functional.elu(a, alpha), [x])
    gradcheck(lambda a: F.elu(a, alpha, inplace), [x.astype(np.float64)])


def test_gradients_at_zero_follow_pytorch():
    x = np.zeros(3, dtype=np.float32)
    check_against_torch(F.relu, torch.relu, [x])
    check_against_torch(lambda a: F.leaky_relu(a, 0.2), lambda a: torch.nn.functional.leaky_relu(a, 0.2), [x])
    check_against_torch(lambda a: F.elu(a, 0.7), lambda a: torch.nn.functional.elu(a, 0.7), [x])


def test_elu_no_overflow_for_large_positive_inputs():
    x = fv.tensor(np.array([-1000.0, 0.5, 1000.0], dtype=np.float32), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = F.elu(x)
        y.sum().backward()
    np.testing.assert_allclose(y.data, [-1.0, 0.5, 1000.0])
    np.testing.assert_allclose(x.grad.data, [0.0, 1.0, 1.0])


@pytest.mark.parametrize("fn", [lambda a: F.relu(a, inplace=True),
                                lambda a: F.leaky_relu(a, 0.1, inplace=True),
                                lambda a: F.elu(a, inplace=True)])
def test_inplace_flag_computes_out_of_place(fn):
    data = np.array([-1.0, 2.0], dtype=np.float32)
    x = fv.tensor(data)
    y = fn(x)
    assert y is not x
    np.testing.assert_array_equal(x.data, data)  # the input is left as it was (documented)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "leaky_relu", "elu"])
def test_float64_stays_float64(name):
    x = fv.tensor(randn(3, (2, 3), dtype=np.float64), requires_grad=True)
    y = getattr(F, name)(x)
    y.sum().backward()
    assert y.dtype == np.float64 and x.grad.dtype == np.float64


# ------------------------------------------------------------------------------------- softmax
@st.composite
def shape_and_dim(draw):
    shape = draw(nonscalar_shape_st)
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    return shape, dim


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(sd=shape_and_dim(), seed=st.integers(0, 10_000), scale=st.sampled_from([1.0, 10.0]))
def test_softmax_family_vs_torch(name, sd, seed, scale):
    shape, dim = sd
    x = randn(seed, shape, scale)
    ours, theirs = getattr(F, name), getattr(torch.nn.functional, name)
    check_against_torch(lambda a: ours(a, dim), lambda a: theirs(a, dim), [x])
    gradcheck(lambda a: ours(a, dim), [x.astype(np.float64)])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", [(), (4,), (2, 3), (2, 3, 2), (2, 2, 2, 2)])
def test_implicit_dim_follows_pytorch_and_warns(name, shape):
    x = randn(5, shape)
    ours, theirs = getattr(F, name), getattr(torch.nn.functional, name)
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        y = ours(fv.tensor(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = theirs(torch.tensor(x)).numpy()
    np.testing.assert_allclose(y.data, ref, rtol=1e-5, atol=1e-6)


def test_softmax_of_scalar_is_one():
    x = fv.tensor(3.0, requires_grad=True)
    y = F.softmax(x, 0)
    assert y.shape == () and y.item() == 1.0
    y.backward()
    assert x.grad.item() == 0.0
    check_against_torch(lambda a: F.log_softmax(a, -1), lambda a: torch.log_softmax(a, -1),
                        [np.array(2.0, dtype=np.float32)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_stable_for_huge_logits(dtype):
    x = np.array([[1e4, 0.0, -1e4], [3e4, 3e4, 3e4]], dtype=dtype)
    check_against_torch(lambda a: F.softmax(a, 1), lambda a: torch.softmax(a, 1), [x])
    check_against_torch(lambda a: F.log_softmax(a, 1), lambda a: torch.log_softmax(a, 1), [x])
    y = F.log_softmax(fv.tensor(x), 1)
    assert y.dtype == dtype and np.all(np.isfinite(y.data))


def test_softmax_methods_and_top_level():
    x = randn(7, (3, 5))
    check_against_torch(lambda a: a.softmax(1), lambda a: a.softmax(1), [x])
    check_against_torch(lambda a: a.log_softmax(0), lambda a: a.log_softmax(0), [x])
    check_against_torch(lambda a: fv.softmax(a, -1), lambda a: torch.softmax(a, -1), [x])


def test_softmax_bad_dim():
    with pytest.raises(IndexError, match="out of range"):
        F.softmax(fv.tensor(randn(0, (2, 3))), 2)
