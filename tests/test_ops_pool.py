"""max_pool2d (values, indices, gradients), max_unpool2d, avg_pool2d and adaptive_avg_pool2d
against PyTorch (float32) and finite differences (float64), plus the error messages."""
import contextlib

import numpy as np
import pytest
import torch
from helpers import check_against_torch, disable_compiled, gradcheck, without_compiled
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import foveanet as fv
from foveanet.ops import pool

F = fv.nn.functional
T = torch.nn.functional

# these properties cover many options each: more examples than the profile's default (still fast)
MORE = settings(max_examples=5 * settings.default.max_examples)


@pytest.fixture(params=["compiled", "numpy"])
def tiling(request, monkeypatch):
    """2x2 tiling windows through the compiled kernels (where numba is installed) and through
    NumPy's passes; yields the list of compiled calls made."""
    calls = []
    if request.param == "numpy":
        disable_compiled(monkeypatch, "_pool_kernels")
    elif pool._kernels() is None:
        pytest.skip("numba is not installed")
    else:
        real = pool._kernels()

        class Counting:
            def __getattr__(self, name):
                return lambda *a: calls.append(name) or getattr(real, name)(*a)

        monkeypatch.setattr(pool, "_kernels", lambda: Counting())
    yield calls
    if request.param == "compiled":
        assert calls, "the compiled kernels were not used"


def _out_size(size, k, s, p, d, ceil):
    n = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (n - 1) * s >= size + p:
        n -= 1
    return n


def _every_window_sees_the_input(hw, k, s, p, d, ceil):
    """PyTorch's behaviour is undefined for a window made only of padding: keep those out."""
    for ax in range(2):
        for i in range(_out_size(hw[ax], k[ax], s[ax], p[ax], d[ax], ceil)):
            if not any(0 <= i * s[ax] - p[ax] + j * d[ax] < hw[ax] for j in range(k[ax])):
                return False
    return True


def _maybe_pair(draw, a, b):
    return a if a == b and draw(st.booleans()) else (a, b)


@st.composite
def pool_cases(draw, dilation=True, max_extra=4, max_n=2, max_c=3):
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride_default = draw(st.booleans())
    if stride_default:
        s = k
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    ceil = draw(st.booleans())
    hw = tuple(max(1, d[i] * (k[i] - 1) + 1 - 2 * p[i]) + draw(st.integers(0, max_extra))
               for i in range(2))
    assume(_every_window_sees_the_input(hw, k, s, p, d, ceil))
    n, c = draw(st.integers(1, max_n)), draw(st.integers(1, max_c))
    shape = (c, *hw) if n == 1 and draw(st.booleans()) else (n, c, *hw)
    kw = dict(kernel_size=_maybe_pair(draw, *k), stride=None if stride_default else _maybe_pair(draw, *s),
              padding=_maybe_pair(draw, *p), ceil_mode=ceil)
    if dilation:
        kw["dilation"] = _maybe_pair(draw, *d)
    return shape, kw, draw(st.booleans()), draw(st.integers(0, 2**16))


def _data(shape, seed, ties=False, dtype=np.float32):
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: many windows have several maxima
        return rng.integers(-2, 3, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------------------------ max pool
# the properties run twice: with the compiled loops (where numba is installed: the 2x2 tiles and
# the general windows) and through NumPy's passes alone
PATHS = ["compiled", "numpy"] if pool._kernels() is not None else ["numpy"]


def _path(name):
    return contextlib.nullcontext() if name == "compiled" else without_compiled("_pool_kernels")


@pytest.mark.parametrize("path", PATHS)
@MORE
@given(pool_cases(), st.booleans())
def test_max_pool2d_matches_torch(path, case, return_indices):
    shape, kw, ties, seed = case
    # values, PyTorch's indices (compared exactly) and gradients (ties: the first maximum wins)
    with _path(path):
        check_against_torch(lambda x: F.max_pool2d(x, return_indices=return_indices, **kw),
                            lambda x: T.max_pool2d(x, return_indices=return_indices, **kw),
                            [_data(shape, seed, ties)])
        with fv.no_grad():  # values only (an inference's path)
            out = F.max_pool2d(fv.tensor(_data(shape, seed, ties)), **kw)
    np.testing.assert_array_equal(out.numpy(), T.max_pool2d(torch.tensor(_data(shape, seed, ties)),
                                                            **kw).numpy())


@pytest.mark.parametrize("path", PATHS)
@MORE
@given(pool_cases(max_extra=2, max_c=2))
def test_max_pool2d_gradcheck(path, case):
    shape, kw, _, seed = case
    with _path(path):
        gradcheck(lambda x: F.max_pool2d(x, **kw), [_data(shape, seed, dtype=np.float64)])


@pytest.mark.parametrize("path", PATHS)
@MORE
@given(pool_cases(dilation=False))
def test_max_unpool2d_inverts_max_pool2d_like_torch(path, case):
    with _path(path):
        _unpool_inverts_pool(case)


def _unpool_inverts_pool(case):
    shape, kw, ties, seed = case
    assume(not kw["ceil_mode"])  # unpool's output sizes are the floor-mode inverse
    kw.pop("ceil_mode")
    kw["output_size"] = shape[-2:]  # the input's size: the default may be smaller (padding)
    pool_kw = {k: v for k, v in kw.items() if k != "output_size"}
    x = _data(shape, seed, ties)
    out, idx = F.max_pool2d(fv.tensor(x), return_indices=True, **pool_kw)
    t_out, t_idx = T.max_pool2d(torch.tensor(x), return_indices=True, **pool_kw)
    np.testing.assert_array_equal(idx.numpy(), t_idx.numpy())
    assert idx.dtype == np.int64
    un = F.max_unpool2d(out, idx, **kw)
    np.testing.assert_array_equal(un.numpy(), T.max_unpool2d(t_out, t_idx, **kw).numpy())
    # and the composition's gradient (the unpool gathers, the pool scatters)
    check_against_torch(lambda v: F.max_unpool2d(*F.max_pool2d(v, return_indices=True, **pool_kw), **kw),
                        lambda v: T.max_unpool2d(*T.max_pool2d(v, return_indices=True, **pool_kw), **kw),
                        [x])


@pytest.mark.parametrize("output_size", [None, (9, 8), [2, 3, 9, 8], (9, 9)])
def test_max_unpool2d_output_size(output_size):
    x = _data((2, 3, 9, 8), 1)
    t_out, t_idx = T.max_pool2d(torch.tensor(x), 2, return_indices=True)
    idx = fv.tensor(t_idx.numpy())
    check_against_torch(lambda v: F.max_unpool2d(v, idx, 2, output_size=output_size),
                        lambda v: T.max_unpool2d(v, t_idx, 2, output_size=output_size),
                        [t_out.numpy()])
    gradcheck(lambda v: F.max_unpool2d(v, idx, 2, output_size=output_size),
              [t_out.numpy().astype(np.float64)])


@pytest.mark.parametrize("kw,unique", [(dict(kernel_size=3, stride=2, padding=1), False),
                                       (dict(kernel_size=(2, 3), stride=1), False),
                                       (dict(kernel_size=(2, 3), stride=(2, 3)), True),
                                       (dict(kernel_size=2, stride=3, padding=1), True)])
def test_max_unpool2d_unbatched(kw, unique):
    x = _data((2, 5, 6), 2)
    t_out, t_idx = T.max_pool2d(torch.tensor(x), return_indices=True, **kw)
    idx = fv.tensor(t_idx.numpy())
    kw = dict(kw, output_size=x.shape[-2:])
    check_against_torch(lambda v: F.max_unpool2d(v, idx, **kw), lambda v: T.max_unpool2d(v, t_idx, **kw),
                        [t_out.numpy()])
    if unique:  # a repeated index keeps one value but, as in PyTorch, every copy gets the gradient
        gradcheck(lambda v: F.max_unpool2d(v, idx, **kw), [t_out.numpy().astype(np.float64)])


@pytest.mark.parametrize("kw", [
    dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, stride=1),
    dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True),
])
def test_max_pool2d_nan_and_inf_like_torch(tiling, kw):
    if kw != dict(kernel_size=2):
        tiling.append("not a tiling case")
    x = _data((2, 2, 7, 7), 3, ties=True)
    x[0, 0, :3, :3] = np.nan  # several NaNs in a window: PyTorch reports the last one
    x[0, 1, 2, 4] = np.nan
    x[1, 0] = -np.inf  # a plane of -inf: the index of the first in-image position
    x[1, 1, :, :3] = np.inf
    check_against_torch(lambda v: F.max_pool2d(v, return_indices=True, **kw),
                        lambda v: T.max_pool2d(v, return_indices=True, **kw), [x], check_grads=False)


@pytest.mark.parametrize("kw", [
    dict(kernel_size=2), dict(kernel_size=(2, 3), stride=(1, 2)), dict(kernel_size=3, padding=1),
    dict(kernel_size=3, stride=2, padding=(1, 0)), dict(kernel_size=2, dilation=2),
    dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=2, stride=2, ceil_mode=True),
])
def test_max_pool2d_gradcheck_options(kw):
    gradcheck(lambda x: F.max_pool2d(x, **kw), [_data((2, 2, 5, 6), 4, dtype=np.float64)])
    gradcheck(lambda x: F.max_pool2d(x, return_indices=True, **kw)[0],
              [_data((2, 5, 6), 5, dtype=np.float64)])


def test_max_pool2d_indices_carry_no_gradient():
    x = fv.tensor(_data((1, 2, 4, 4), 10), requires_grad=True)
    out, idx = F.max_pool2d(x, 2, return_indices=True)
    assert out.requires_grad and not idx.requires_grad and idx.grad_fn is None
    assert idx.dtype == np.int64 and idx.shape == out.shape


def test_max_pool2d_large_fast_paths(tiling):
    # kernel == stride (tiling windows, scatter-assign backward) and overlapping windows (bincount)
    x = _data((8, 16, 24, 24), 6, ties=True)
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=4, stride=4)):
        check_against_torch(lambda v: F.max_pool2d(v, return_indices=True, **kw),
                            lambda v: T.max_pool2d(v, return_indices=True, **kw), [x])
    with fv.no_grad():  # values only
        out = F.max_pool2d(fv.tensor(x, requires_grad=True), 3, 2, 1)
    np.testing.assert_array_equal(out.numpy(), T.max_pool2d(torch.tensor(x), 3, 2, 1).numpy())


# ------------------------------------------------------------------------------------ avg pool
@st.composite
def avg_cases(draw, max_extra=4, max_c=3):
    shape, kw, _, seed = draw(pool_cases(dilation=False, max_extra=max_extra, max_c=max_c))
    kw["count_include_pad"] = draw(st.booleans())
    kw["divisor_override"] = draw(st.sampled_from([None, None, 1, 3, -2]))
    return shape, kw, seed


@MORE
@given(avg_cases())
def test_avg_pool2d_matches_torch(case):
    shape, kw, seed = case
    check_against_torch(lambda x: F.avg_pool2d(x, **kw), lambda x: T.avg_pool2d(x, **kw),
                        [_data(shape, seed)])


@MORE
@given(avg_cases(max_extra=2, max_c=2))
def test_avg_pool2d_gradcheck(case):
    shape, kw, seed = case
    gradcheck(lambda x: F.avg_pool2d(x, **kw), [_data(shape, seed, dtype=np.float64)])


@pytest.mark.parametrize("kw", [
    dict(kernel_size=2), dict(kernel_size=(2, 3), stride=(1, 2)), dict(kernel_size=3, padding=1),
    dict(kernel_size=3, padding=1, count_include_pad=False), dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=2, divisor_override=3), dict(kernel_size=2, stride=2, ceil_mode=True),
])
def test_avg_pool2d_options(kw):
    x = _data((2, 2, 5, 7), 7)
    check_against_torch(lambda v: F.avg_pool2d(v, **kw), lambda v: T.avg_pool2d(v, **kw), [x])
    gradcheck(lambda v: F.avg_pool2d(v, **kw), [x.astype(np.float64)])


# ------------------------------------------------------------------------------------ adaptive
@MORE
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9),
       st.one_of(st.integers(1, 6), st.tuples(st.one_of(st.none(), st.integers(1, 6)),
                                               st.one_of(st.none(), st.integers(1, 6)))),
       st.booleans(), st.integers(0, 2**16))
def test_adaptive_avg_pool2d_matches_torch(n, c, h, w, size, unbatched, seed):
    shape = (c, h, w) if unbatched else (n, c, h, w)
    check_against_torch(lambda x: F.adaptive_avg_pool2d(x, size), lambda x: T.adaptive_avg_pool2d(x, size),
                        [_data(shape, seed)])


@pytest.mark.parametrize("size", [1, 3, (2, 5), (None, 2), (4, None), (7, 8), 2])
def test_adaptive_avg_pool2d_gradcheck(size):
    x = _data((2, 2, 5, 6), 8, dtype=np.float64)
    gradcheck(lambda v: F.adaptive_avg_pool2d(v, size), [x])
    check_against_torch(lambda v: F.adaptive_avg_pool2d(v, size), lambda v: T.adaptive_avg_pool2d(v, size),
                        [x.astype(np.float32)])


def test_pools_keep_float64():
    x = fv.tensor(_data((1, 2, 6, 6), 9, dtype=np.float64))
    assert F.max_pool2d(x, 2).dtype == np.float64
    assert F.avg_pool2d(x, 3, 2, 1).dtype == np.float64
    assert F.adaptive_avg_pool2d(x, 4).dtype == np.float64
    assert F.max_unpool2d(*F.max_pool2d(x, 2, return_indices=True), 2).dtype == np.float64


# -------------------------------------------------------------------------------------- errors
def _t(*shape, dtype=np.float32):
    return fv.tensor(np.zeros(shape, dtype=dtype))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: F.max_pool2d(_t(1, 1, 5, 5), 3, padding=2), ValueError,
     r"max_pool2d: padding \(2, 2\) must be at most half the kernel size \(3, 3\)"),
    (lambda: F.max_pool2d(_t(1, 1, 2, 2), 3), ValueError,
     r"max_pool2d: input of shape \(1, 1, 2, 2\) is too small for kernel \(3, 3\).*would be 0x0"),
    (lambda: F.max_pool2d(_t(1, 1, 5, 5), 3, dilation=3), ValueError, r"max_pool2d: input of shape"),
    (lambda: F.max_pool2d(_t(1, 1, 5, 5), 0), ValueError, r"max_pool2d: kernel_size must be positive"),
    (lambda: F.max_pool2d(_t(1, 1, 5, 5), 2, stride=0), ValueError, r"max_pool2d: stride must be positive"),
    (lambda: F.max_pool2d(_t(1, 1, 5, 5), 2, padding=-1), ValueError,
     r"max_pool2d: padding must be non-negative"),
    (lambda: F.max_pool2d(_t(1, 1, 5, 5), 2, dilation=0), ValueError, r"max_pool2d: dilation must be positive"),
    (lambda: F.max_pool2d(_t(5, 5), 2), ValueError,
     r"max_pool2d: expected a 4-D \(N, C, H, W\) or 3-D \(C, H, W\) input, got shape \(5, 5\)"),
    (lambda: F.max_pool2d(_t(1, 1, 4, 4, dtype=np.int64), 2), TypeError,
     r"max_pool2d: input must be a floating-point tensor, got int64"),
    (lambda: F.max_pool2d(_t(1, 1, 4, 4), (1, 2, 3)), ValueError,
     r"max_pool2d: kernel_size must be an int or a pair of ints"),
    (lambda: F.avg_pool2d(_t(1, 1, 5, 5), 2, padding=2), ValueError,
     r"avg_pool2d: padding \(2, 2\) must be at most half the kernel size \(2, 2\)"),
    (lambda: F.avg_pool2d(_t(1, 1, 5, 5), 2, divisor_override=0), ValueError,
     r"avg_pool2d: divisor_override must be a non-zero int"),
    (lambda: F.avg_pool2d(_t(1, 1, 1, 5), 2), ValueError, r"avg_pool2d: input of shape \(1, 1, 1, 5\)"),
    (lambda: F.avg_pool2d(_t(1, 5, 5, 5, 5), 2), ValueError, r"avg_pool2d: expected a 4-D"),
    (lambda: F.adaptive_avg_pool2d(_t(1, 1, 5, 5), 0), ValueError,
     r"adaptive_avg_pool2d: output_size \(0, 0\) must be positive"),
    (lambda: F.adaptive_avg_pool2d(_t(1, 1, 5, 5), (1, 2, 3)), ValueError,
     r"adaptive_avg_pool2d: output_size must be an int or a pair"),
    (lambda: F.adaptive_avg_pool2d(_t(5, 5), 2), ValueError, r"adaptive_avg_pool2d: expected a 4-D"),
    (lambda: F.adaptive_avg_pool2d(_t(1, 1, 4, 4, dtype=np.int32), 2), TypeError,
     r"adaptive_avg_pool2d: input must be a floating-point tensor"),
    (lambda: F.max_unpool2d(_t(1, 1, 2, 2), fv.tensor(np.zeros((1, 1, 2, 2), np.int64) + 16), 2), ValueError,
     r"max_unpool2d: index 16 is out of range for an output plane of 4x4"),
    (lambda: F.max_unpool2d(_t(1, 1, 2, 2), fv.tensor(np.zeros((1, 1, 2, 3), np.int64)), 2), ValueError,
     r"max_unpool2d: indices of shape \(1, 1, 2, 3\) do not match the input of shape \(1, 1, 2, 2\)"),
    (lambda: F.max_unpool2d(_t(1, 1, 2, 2), _t(1, 1, 2, 2), 2), TypeError,
     r"max_unpool2d: indices must be an integer tensor"),
    (lambda: F.max_unpool2d(_t(1, 1, 2, 2), fv.tensor(np.zeros((1, 1, 2, 2), np.int64)), 2,
                            output_size=(6, 4)), ValueError,
     r"max_unpool2d: invalid output_size \(6, 4\).*dim 0 must be between 2 and 6"),
    (lambda: F.max_unpool2d(_t(1, 1, 2, 2), fv.tensor(np.zeros((1, 1, 2, 2), np.int64)), 2,
                            output_size=(4, 4, 4)), ValueError,
     r"max_unpool2d: output_size should hold 2 \(or 4\) sizes"),
])
def test_pool_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("shape,k", [((4, 3, 8, 8), 2), ((2, 3, 9, 7), 2), ((2, 2, 9, 9), 3),
                                     ((3, 6, 6), 2), ((2, 3, 8, 6), (2, 3))])
def test_tiling_fast_path_ties_nan_and_indices_like_torch(tiling, shape, k):
    if k != 2:
        tiling.append("not 2x2")
    """stride = kernel, no padding: the path that keeps the winning tap; ReLU-style ties at 0 go
    to the first maximum, NaN falls back to PyTorch's rule, indices equal torch's."""
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal(shape).astype(np.float32), 0)
    ours = lambda t: F.max_pool2d(t, k, return_indices=True)  # noqa: E731
    theirs = lambda t: torch.nn.functional.max_pool2d(t, k, return_indices=True)  # noqa: E731
    check_against_torch(ours, theirs, [x])
    # the backward writes every pixel: odd sizes leave a last row / column of zeros
    xt = fv.tensor(x, requires_grad=True)
    (F.max_pool2d(xt, k) * 2).sum().backward()
    tt = torch.tensor(x, requires_grad=True)
    (T.max_pool2d(tt, k) * 2).sum().backward()
    np.testing.assert_array_equal(xt.grad.numpy(), tt.grad.numpy())
    for pos in [(0, 0), (0, 1), (1, 0), (1, 1)]:  # a NaN at each place of a 2x2 window
        y = x.copy()
        y[(..., *pos)] = np.nan
        check_against_torch(ours, theirs, [y])
        with fv.no_grad():  # values only (inference)
            np.testing.assert_array_equal(F.max_pool2d(fv.tensor(y), k).numpy(),
                                          T.max_pool2d(torch.tensor(y), k).numpy())
    gradcheck(lambda t: F.max_pool2d(t, k), [rng.standard_normal(shape)])


@pytest.mark.parametrize("kw", [dict(), dict(divisor_override=3), dict(ceil_mode=True)])
def test_global_average_pooling_like_torch(kw):
    # a window over the whole plane (ResNet's head) takes a matrix-vector product
    x = _data((3, 4, 5, 6), 11)
    check_against_torch(lambda v: F.avg_pool2d(v, (5, 6), **kw),
                        lambda v: T.avg_pool2d(v, (5, 6), **kw), [x])
    check_against_torch(lambda v: F.adaptive_avg_pool2d(v, 1),
                        lambda v: T.adaptive_avg_pool2d(v, 1), [x[0]])
    gradcheck(lambda v: F.avg_pool2d(v, (5, 6), **kw), [x.astype(np.float64)])


def test_warm_compiles_the_pooling_kernels():
    expected = "max pooling: numba kernels compiled" if pool._kernels() is not None else \
        "max pooling: numba is not installed, NumPy passes instead"
    assert pool.warm() == expected
