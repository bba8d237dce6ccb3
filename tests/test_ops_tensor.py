"""Tensor primitives (elementwise, reductions, shape, matmul, linear) against PyTorch and by
finite differences."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import foveanet as fv
import foveanet.nn.functional as F
from helpers import check_against_torch, gradcheck


def arrays(seed, *shapes, positive=False, dtype=np.float32):
    rng = np.random.default_rng(seed)
    out = []
    for s in shapes:
        a = rng.standard_normal(s)
        if positive:
            a = np.abs(a) + 0.5
        out.append(np.asarray(a, dtype=dtype))
    return out


shape_st = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


@st.composite
def broadcast_pair(draw):
    """Two shapes that broadcast together, one of them possibly with fewer or stretched dims."""
    full = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    other = [draw(st.sampled_from([n, 1])) for n in full]
    drop = draw(st.integers(0, len(other)))
    other = other[drop:]
    if draw(st.booleans()):
        return tuple(full), tuple(other)
    return tuple(other), tuple(full)


BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / b, lambda a, b: a / b),
    "maximum": (fv.maximum, torch.maximum),
    "minimum": (fv.minimum, torch.minimum),
    "pow": (lambda a, b: a ** b, lambda a, b: a ** b),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(shapes=broadcast_pair(), seed=st.integers(0, 1000))
def test_binary_broadcast_vs_torch(name, shapes, seed):
    ours, theirs = BINARY[name]
    a, b = arrays(seed, *shapes, positive=name in ("div", "pow"))
    check_against_torch(ours, theirs, [a, b])


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_gradcheck(name):
    ours, _ = BINARY[name]
    a, b = arrays(1, (3, 1, 4), (2, 4), positive=name in ("div", "pow"), dtype=np.float64)
    gradcheck(ours, [a, b])


@pytest.mark.parametrize("scalar", [2, 0.5, -1.5])
def test_scalar_operands_keep_dtype_and_match_torch(scalar):
    (a,) = arrays(2, (3, 4), positive=True)
    for ours, theirs in [(lambda x: x + scalar, lambda x: x + scalar), (lambda x: scalar - x, lambda x: scalar - x),
                         (lambda x: x * scalar, lambda x: x * scalar), (lambda x: scalar / x, lambda x: scalar / x),
                         (lambda x: x ** scalar, lambda x: x ** scalar), (lambda x: scalar ** x, lambda x: scalar ** x)
                         if scalar > 0 else (lambda x: x, lambda x: x)]:
        out, _ = check_against_torch(ours, theirs, [a])
        assert out[0].dtype == np.float32


UNARY = {
    "neg": (lambda x: -x, lambda x: -x, False),
    "exp": (fv.exp, torch.exp, False),
    "log": (fv.log, torch.log, True),
    "sqrt": (fv.sqrt, torch.sqrt, True),
    "abs": (fv.abs, torch.abs, False),
    "clamp": (lambda x: fv.clamp(x, -0.5, 0.7), lambda x: torch.clamp(x, -0.5, 0.7), False),
    "clamp_min": (lambda x: x.clamp(min=0.1), lambda x: x.clamp(min=0.1), False),
    "square": (lambda x: x ** 2, lambda x: x ** 2, False),
    "clone": (fv.clone, torch.clone, False),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=shape_st, seed=st.integers(0, 1000))
def test_unary_vs_torch(name, shape, seed):
    ours, theirs, pos = UNARY[name]
    check_against_torch(ours, theirs, arrays(seed, shape, positive=pos))


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_gradcheck(name):
    ours, _, pos = UNARY[name]
    (x,) = arrays(3, (3, 5), positive=pos, dtype=np.float64)
    if name in ("abs", "clamp", "clamp_min"):  # keep away from the kinks
        x = np.where(np.abs(x) < 0.05, 0.3, x)
        x = np.where(np.abs(x - 0.7) < 0.05, 0.8, x)
        x = np.where(np.abs(x + 0.5) < 0.05, -0.8, x)
        x = np.where(np.abs(x - 0.1) < 0.05, 0.3, x)
    gradcheck(ours, [x])


def test_where_vs_torch_and_gradcheck():
    a, b = arrays(4, (3, 4), (4,))
    cond = a > 0
    check_against_torch(lambda x, y: fv.where(fv.tensor(cond), x, y),
                        lambda x, y: torch.where(torch.tensor(cond), x, y), [a, b])
    gradcheck(lambda x, y: fv.where(fv.tensor(cond), x, y), [a.astype(np.float64), b.astype(np.float64)])


@st.composite
def reduce_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    ndim = len(shape)
    dims = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1),
                          st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple)))
    return shape, dims, draw(st.booleans()), draw(st.integers(0, 1000))


def _torch_dims(d):
    return d if d is not None else None


@given(case=reduce_case())
def test_sum_mean_vs_torch(case):
    shape, dims, keep, seed = case
    x = arrays(seed, shape)
    if dims is None:
        check_against_torch(lambda t: t.sum(), lambda t: t.sum(), x)
        check_against_torch(lambda t: t.mean(), lambda t: t.mean(), x)
    else:
        check_against_torch(lambda t: t.sum(dims, keep), lambda t: t.sum(dims, keep), x)
        check_against_torch(lambda t: t.mean(dims, keep), lambda t: t.mean(dims, keep), x)


@given(case=reduce_case(), correction=st.sampled_from([0, 1]))
def test_var_std_vs_torch(case, correction):
    shape, dims, keep, seed = case
    x = arrays(seed, shape)
    n = np.prod([shape[d] for d in ((dims,) if isinstance(dims, int) else dims or range(len(shape)))])
    if n <= correction:
        return  # torch gives nan/inf with a warning; ours too, covered separately
    check_against_torch(lambda t: t.var(dims, keep, correction=correction),
                        lambda t: t.var(dims, keepdim=keep, correction=correction), x)
    check_against_torch(lambda t: t.std(dims, keep, correction=correction),
                        lambda t: t.std(dims, keepdim=keep, correction=correction), x)


@given(case=reduce_case())
def test_amax_amin_vs_torch(case):
    shape, dims, keep, seed = case
    x = arrays(seed, shape)
    d = dims if dims is not None else tuple(range(len(shape)))
    check_against_torch(lambda t: fv.amax(t, d, keep), lambda t: torch.amax(t, d, keep), x)
    check_against_torch(lambda t: fv.amin(t, d, keep), lambda t: torch.amin(t, d, keep), x)


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), keep=st.booleans(),
       seed=st.integers(0, 1000), data=st.data())
def test_max_min_with_dim_vs_torch(shape, keep, seed, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = arrays(seed, shape)
    check_against_torch(lambda t: tuple(t.max(dim, keep)), lambda t: tuple(t.max(dim, keep)), x)
    check_against_torch(lambda t: tuple(t.min(dim, keep)), lambda t: tuple(t.min(dim, keep)), x)
    check_against_torch(lambda t: t.max(), lambda t: t.max(), x)
    check_against_torch(lambda t: t.argmax(dim), lambda t: t.argmax(dim), x)


def test_max_ties_share_gradient_like_torch():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], dtype=np.float32)
    check_against_torch(lambda t: t.max(), lambda t: t.max(), [x])
    check_against_torch(lambda t: fv.amax(t, 1), lambda t: torch.amax(t, 1), [x])


def test_logsumexp_and_norm_vs_torch():
    (x,) = arrays(5, (3, 4))
    check_against_torch(lambda t: fv.logsumexp(t, 1), lambda t: torch.logsumexp(t, 1), [x])
    check_against_torch(lambda t: (t * 100).logsumexp(0) if hasattr(t, "logsumexp") and isinstance(t, torch.Tensor)
                        else fv.logsumexp(t * 100, 0), lambda t: torch.logsumexp(t * 100, 0), [x])
    for p in (1, 2, 3, float("inf")):
        check_against_torch(lambda t: t.norm(p), lambda t: torch.linalg.vector_norm(t, p), [x])
        check_against_torch(lambda t: t.norm(p, dim=1), lambda t: torch.linalg.vector_norm(t, p, dim=1), [x])


@pytest.mark.parametrize("fn", [
    lambda t: t.sum(1), lambda t: t.mean((0, 2), keepdim=True), lambda t: t.var(1), lambda t: t.std(),
    lambda t: t.max(1)[0], lambda t: t.min(), lambda t: fv.amax(t, (1, 2)), lambda t: fv.logsumexp(t, 2),
    lambda t: t.norm(), lambda t: t.norm(1, dim=0), lambda t: t.var(0, correction=0),
])
def test_reductions_gradcheck(fn):
    (x,) = arrays(6, (2, 3, 4), dtype=np.float64)
    gradcheck(fn, [x])


# ------------------------------------------------------------------------------------ shape ops
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), seed=st.integers(0, 1000),
       data=st.data())
def test_reshape_permute_transpose_vs_torch(shape, seed, data):
    x = arrays(seed, shape)
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    n = int(np.prod(shape))
    check_against_torch(lambda t: t.reshape(-1), lambda t: t.reshape(-1), x)
    check_against_torch(lambda t: t.reshape(n, 1), lambda t: t.reshape(n, 1), x)
    check_against_torch(lambda t: t.view(1, -1), lambda t: t.view(1, -1), x)
    check_against_torch(lambda t: t.permute(*perm), lambda t: t.permute(*perm), x)
    d0, d1 = data.draw(st.integers(0, len(shape) - 1)), data.draw(st.integers(0, len(shape) - 1))
    check_against_torch(lambda t: t.transpose(d0, d1), lambda t: t.transpose(d0, d1), x)
    check_against_torch(lambda t: t.flatten(), lambda t: t.flatten(), x)
    check_against_torch(lambda t: t.unsqueeze(0).squeeze(), lambda t: t.unsqueeze(0).squeeze(), x)


INDEXES = [
    (1,), (slice(None, None, 2),), (Ellipsis, 1), (slice(1, None), None, slice(None, 2)), (-1, -2),
    (np.array([0, 2, 0]),), (slice(None), np.array([1, 1, 0])), (np.array([True, False, True]),),
    (np.array([[0, 1], [2, 2]]), slice(None, 3)),
]


@pytest.mark.parametrize("idx", INDEXES, ids=range(len(INDEXES)))
def test_getitem_vs_torch_and_gradcheck(idx):
    (x,) = arrays(7, (3, 4, 2))
    tidx = tuple(torch.from_numpy(i) if isinstance(i, np.ndarray) else i for i in idx)
    check_against_torch(lambda t: t[idx], lambda t: t[tidx], [x])
    gradcheck(lambda t: t[idx], [x.astype(np.float64)])


def test_getitem_accepts_tensor_index_and_repeated_indices_accumulate():
    x = fv.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x[fv.tensor([0, 0, 2])]
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [2.0, 0.0, 1.0])


@given(n=st.integers(1, 4), shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple),
       seed=st.integers(0, 1000), data=st.data())
def test_cat_stack_split_vs_torch(n, shape, seed, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    xs = arrays(seed, *([shape] * n))
    check_against_torch(lambda *ts: fv.cat(ts, dim), lambda *ts: torch.cat(ts, dim), xs)
    sdim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    check_against_torch(lambda *ts: fv.stack(ts, sdim), lambda *ts: torch.stack(ts, sdim), xs)
    big = np.concatenate(xs, axis=dim)
    size = data.draw(st.integers(1, big.shape[dim]))
    check_against_torch(lambda t: t.split(size, dim), lambda t: t.split(size, dim), [big])
    check_against_torch(lambda t: t.chunk(2, dim), lambda t: t.chunk(2, dim), [big])


def test_split_sections_unbind_expand_gradcheck():
    (x,) = arrays(8, (5, 3), dtype=np.float64)
    gradcheck(lambda t: t.split([2, 3]), [x])
    gradcheck(lambda t: fv.unbind(t, 1), [x])
    gradcheck(lambda t: t[:, :1].expand(5, 4), [x])
    gradcheck(lambda a, b: fv.cat([a, b], 1), [x, x[:, :2].copy()])
    gradcheck(lambda a, b: fv.stack([a, b], 2), [x, x + 1])
    check_against_torch(lambda t: t[None, :, :1].expand(2, -1, 3), lambda t: t[None, :, :1].expand(2, -1, 3),
                        [x.astype(np.float32)])


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("pad", [(1, 2), (0, 1, 2, 1), (2, 0, 1, 1)])
def test_pad_vs_torch_and_gradcheck(mode, pad):
    (x,) = arrays(9, (2, 3, 4, 5))
    if mode != "constant" and len(pad) == 2:
        x = x[0]  # torch pads only the last dim of 2-D/3-D input in these modes
    value = 0.5 if mode == "constant" else 0.0
    kw = {"value": value} if mode == "constant" else {}
    check_against_torch(lambda t: F.pad(t, pad, mode, value), lambda t: torch.nn.functional.pad(t, pad, mode, **kw), [x])
    gradcheck(lambda t: F.pad(t, pad, mode, value), [x[:1, :2].astype(np.float64)])


# ------------------------------------------------------------------------------------- matmul
@st.composite
def matmul_shapes(draw):
    n, k, m = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    kind = draw(st.sampled_from(["mm", "vec_mat", "mat_vec", "vec_vec", "batched", "broadcast"]))
    if kind == "mm":
        return (n, k), (k, m)
    if kind == "vec_mat":
        return (k,), batch + (k, m)
    if kind == "mat_vec":
        return batch + (n, k), (k,)
    if kind == "vec_vec":
        return (k,), (k,)
    if kind == "batched":
        return batch + (n, k), batch + (k, m)
    return batch + (n, k), (k, m)


@given(shapes=matmul_shapes(), seed=st.integers(0, 1000))
def test_matmul_vs_torch(shapes, seed):
    a, b = arrays(seed, *shapes)
    check_against_torch(lambda x, y: x @ y, lambda x, y: x @ y, [a, b])


def test_matmul_gradcheck_and_shape_error():
    for sa, sb in [((3, 4), (4, 2)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,)), ((2, 1, 3, 4), (5, 4, 2))]:
        a, b = arrays(10, sa, sb, dtype=np.float64)
        gradcheck(lambda x, y: x @ y, [a, b])
    with pytest.raises(ValueError, match=r"matmul: shapes \(3, 4\) and \(5, 2\) do not fit"):
        fv.randn(3, 4) @ fv.randn(5, 2)


@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple),
       c=st.integers(1, 6), p=st.integers(1, 9), seed=st.integers(0, 1000))
def test_gram_vs_torch(lead, c, p, seed):
    (a,) = arrays(seed, lead + (c, p))
    check_against_torch(fv.ops.gram, lambda x: x @ x.transpose(-1, -2), [a])


def test_gram_gradcheck_and_shape_error():
    for shape in [(3, 5), (2, 4, 7), (2, 1, 3, 2)]:
        (a,) = arrays(11, shape, dtype=np.float64)
        gradcheck(fv.ops.gram, [a])
    with pytest.raises(ValueError, match=r"gram: expected a matrix .* got shape \(4,\)"):
        fv.ops.gram(fv.randn(4))


@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple), fin=st.integers(1, 5),
       fout=st.integers(1, 5), bias=st.booleans(), seed=st.integers(0, 1000))
def test_linear_vs_torch(lead, fin, fout, bias, seed):
    arrs = arrays(seed, lead + (fin,), (fout, fin), (fout,))
    if bias:
        check_against_torch(F.linear, torch.nn.functional.linear, arrs)
    else:
        check_against_torch(F.linear, torch.nn.functional.linear, arrs[:2])


def test_linear_gradcheck_and_errors():
    arrs = arrays(11, (2, 3, 4), (5, 4), (5,), dtype=np.float64)
    gradcheck(F.linear, arrs)
    gradcheck(F.linear, arrs[:2])
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\) does not fit weight of shape \(5, 4\)"):
        F.linear(fv.randn(2, 3), fv.randn(5, 4))


def test_cast_carries_gradient_back_to_input_dtype():
    x = fv.randn(3, dtype=fv.float32, requires_grad=True)
    y = x.double() * 2
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.data, [2, 2, 2])
    assert x.long().requires_grad is False


def test_comparisons_have_no_gradient():
    x = fv.randn(4, requires_grad=True)
    for c in (x > 0, x >= 0, x < 0, x <= 0, x == x, x != 0):
        assert c.dtype == np.bool_ and not c.requires_grad


@pytest.mark.parametrize("fn", [
    lambda t: t.reshape(4, 6), lambda t: t.view(-1), lambda t: t.permute(2, 0, 1), lambda t: t.transpose(0, 2),
    lambda t: t.flatten(1), lambda t: t.unsqueeze(1).squeeze(1), lambda t: t.T, lambda t: fv.t(t[0]),
])
def test_view_ops_gradcheck(fn):
    (x,) = arrays(12, (2, 3, 4), dtype=np.float64)
    gradcheck(fn, [x])
