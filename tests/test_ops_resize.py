"""Nearest-neighbour resizing (foveanet.ops.resize): forward and gradient against PyTorch's
F.interpolate (nearest, nearest-exact) in float32, central finite differences in float64, the
general index-map primitive (non-monotone maps, downsampling, empty outputs) and the errors."""
import numpy as np
import pytest
import torch
from helpers import check_against_torch, gradcheck
from hypothesis import given
from hypothesis import strategies as st

import foveanet as fv
from foveanet.ops.resize import interpolate_nearest, nearest_source_indices, resize_nearest

T = torch.nn.functional


@st.composite
def interp_cases(draw):
    spatial = draw(st.integers(1, 3))
    in_sizes = [draw(st.integers(1, 5)) for _ in range(spatial)]
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *in_sizes)
    mode = draw(st.sampled_from(["nearest", "nearest-exact"]))
    if draw(st.booleans()):
        size = [draw(st.integers(1, 9)) for _ in range(spatial)]
        kw = dict(size=size if spatial > 1 or draw(st.booleans()) else size[0])
    else:
        factors = [draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 0.75])) for _ in range(spatial)]
        kw = dict(scale_factor=factors if len(set(factors)) > 1 else factors[0])
        if any(int(np.floor(n * f)) < 1 for n, f in zip(in_sizes, factors)):
            kw = dict(size=[max(1, n) for n in in_sizes])
    return shape, mode, kw, draw(st.integers(0, 2**16))


@given(interp_cases())
def test_interpolate_nearest_matches_torch(case):
    shape, mode, kw, seed = case
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    check_against_torch(lambda t: interpolate_nearest(t, mode=mode, **kw),
                        lambda t: T.interpolate(t, mode=mode, **kw), [x])


@pytest.mark.parametrize("n_in,n_out", [(3, 9), (3, 5), (7, 3), (5, 5), (6, 12), (1, 4), (4, 1)])
def test_source_indices_match_torch_exactly(n_in, n_out):
    # the float32 arithmetic matters: in 3 -> out 9 maps output 3 to input 1, not 0
    x = torch.arange(n_in, dtype=torch.float32).reshape(1, 1, n_in)
    for exact, mode in ((False, "nearest"), (True, "nearest-exact")):
        ref = T.interpolate(x, size=n_out, mode=mode).reshape(-1).long().numpy()
        np.testing.assert_array_equal(nearest_source_indices(n_in, n_out, exact=exact), ref)


@pytest.mark.parametrize("maps", [
    {2: [0, 0, 1, 1, 2, 2], 3: [0, 0, 0, 1]},        # upsampling (monotone, covers every input)
    {2: [0, 2], 3: [1]},                            # downsampling (monotone, skips inputs)
    {2: [2, 0, 1, 0, 2], 3: [1, 0]},                # arbitrary order, repeated: the add.at path
    {0: [1, 1, 0], 3: [1, 1]},                      # any axis, batch included
])
def test_resize_nearest_gradcheck(maps):
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 2))
    gradcheck(lambda t: resize_nearest(t, maps), [x])


def test_resize_nearest_matches_numpy_take_and_keeps_dtype():
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    out = resize_nearest(fv.tensor(x), {1: [2, 2, 0], 2: [3]})
    np.testing.assert_array_equal(out.numpy(), x[:, [2, 2, 0]][:, :, [3]])
    assert out.dtype == np.float64
    ints = resize_nearest(fv.tensor(np.arange(6).reshape(2, 3)), {1: [0, 0, 2]})
    np.testing.assert_array_equal(ints.numpy(), [[0, 0, 2], [3, 3, 5]])


def test_resize_nearest_empty_output_has_zero_gradient():
    x = fv.tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    out = resize_nearest(x, {1: np.zeros(0, dtype=np.int64)})
    assert out.shape == (2, 0)
    (out.sum() + (x * 1.0).sum()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((2, 3)))


def test_resize_nearest_errors():
    x = fv.tensor(np.zeros((1, 2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="out of range for axis 2 of size 3"):
        resize_nearest(x, {2: [0, 3]})
    with pytest.raises(ValueError, match="1-D integer array"):
        resize_nearest(x, {2: [0.5]})
    with pytest.raises(IndexError):
        resize_nearest(x, {3: [0]})
    with pytest.raises(TypeError, match="dict"):
        resize_nearest(x, [0, 1])
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        interpolate_nearest(x)
    with pytest.raises(ValueError, match="mode"):
        interpolate_nearest(x, size=4, mode="bilinear")
    with pytest.raises(ValueError, match="one entry per spatial axis"):
        interpolate_nearest(x, size=(2, 2))
