"""Weight penalties (value, gradient, the weight_decay equivalence) and gradient clipping, against
PyTorch and finite differences."""
import numpy as np
import pytest
import torch
from helpers import gradcheck, rel_close
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import foveanet as fv
from foveanet.nn.utils import (clip_grad_norm_, clip_grad_value_, parameters_to_vector,
                               vector_to_parameters)

SHAPES = [(4, 3), (3,), (2, 2, 2)]


def arrays(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def both(arrs):
    return ([fv.tensor(a, requires_grad=True) for a in arrs],
            [torch.tensor(a, requires_grad=True) for a in arrs])


# -------------------------------------------------------------------------------- penalties
@pytest.mark.parametrize("kind", ["l1", "l2", "both"])
@pytest.mark.parametrize("alpha", [1e-3, 0.5])
def test_penalty_value_and_gradient_match_torch(kind, alpha):
    ps, ts = both(arrays())
    if kind == "l1":
        ours = fv.optim.l1_penalty(ps, alpha)
        ref = alpha * sum(t.abs().sum() for t in ts)
    elif kind == "l2":
        ours = fv.optim.l2_penalty(ps, alpha)
        ref = alpha * sum((t * t).sum() for t in ts)
    else:
        ours = fv.optim.penalty(ps, l1=alpha, l2=2 * alpha)
        ref = alpha * sum(t.abs().sum() for t in ts) + 2 * alpha * sum((t ** 2).sum() for t in ts)
    assert ours.shape == () and ours.dtype == np.float32 and ours.requires_grad
    rel_close(ours.data, ref.detach().numpy(), 1e-6, 0, what="penalty value")
    ours.backward()
    ref.backward()
    for k, (p, t) in enumerate(zip(ps, ts)):
        rel_close(p.grad.data, t.grad.numpy(), 1e-6, 0, what=f"gradient {k}")
        assert p.grad.dtype == np.float32


def test_penalty_gradient_formulas():
    ps, _ = both(arrays())
    ps[0].data[0, 0] = 0.0  # d|w|/dw at 0 is 0, as in PyTorch
    (fv.optim.l1_penalty(ps, 0.01) + fv.optim.l2_penalty(ps, 0.1)).backward()
    for p in ps:
        np.testing.assert_allclose(p.grad.data, 0.01 * np.sign(p.data) + 2 * 0.1 * p.data, rtol=1e-6)
    assert ps[0].grad.data[0, 0] == 0.0


def test_penalty_finite_differences():
    rng = np.random.default_rng(3)
    inputs = [rng.uniform(0.2, 1.0, s) * rng.choice([-1.0, 1.0], s) for s in SHAPES]  # away from 0
    gradcheck(lambda a, b, c: fv.optim.penalty([a, b, c], l1=0.3, l2=0.7), inputs)
    gradcheck(lambda a, b, c: fv.optim.l2_penalty([a, b, c], 1e-3) * 100.0, inputs)
    gradcheck(lambda a: fv.optim.l1_penalty(a, 0.25) * fv.optim.l2_penalty(a, 2.0), inputs[:1])


@given(arrs=st.lists(hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=4),
                                elements=st.floats(-3, 3, width=32)), min_size=1, max_size=3),
       l1=st.sampled_from([0.0, 1e-3, 0.2]), l2=st.sampled_from([0.0, 1e-3, 0.5]))
def test_penalty_matches_torch_sampled(arrs, l1, l2):
    ps, ts = both(arrs)
    ours = fv.optim.Regularizer(l1=l1, l2=l2)(ps)
    ref = sum(l1 * t.abs().sum() + l2 * (t * t).sum() for t in ts)
    rel_close(ours.data, ref.detach().numpy(), 1e-5, 1e-6, what="value")
    if l1 or l2:
        ours.backward()
        ref.backward()
        for p, t in zip(ps, ts):
            rel_close(p.grad.data, t.grad.numpy(), 1e-6, 1e-7, what="gradient")


def test_penalty_adds_to_the_loss_gradient():
    ps, _ = both(arrays())
    x = fv.tensor(np.ones((5, 4), np.float32))
    loss = (x @ ps[0]).sum()
    (loss + fv.optim.l2_penalty(ps[:1], 0.05)).backward()
    np.testing.assert_allclose(ps[0].grad.data, 5.0 + 0.1 * ps[0].data, rtol=1e-6)
    assert ps[1].grad is None  # not penalised, not in the loss


def test_penalty_arguments():
    p = fv.tensor(np.array([1.0, -2.0], np.float32), requires_grad=True)
    frozen = fv.tensor(np.array([3.0], np.float32))
    value = fv.optim.l1_penalty([p, frozen], 0.5)
    assert value.item() == pytest.approx(3.0)
    value.backward()
    assert frozen.grad is None
    assert fv.optim.l2_penalty(p, 1.0).item() == pytest.approx(5.0)  # a single tensor
    assert fv.optim.l2_penalty((q for q in [p]), 1.0).item() == pytest.approx(5.0)  # a generator
    empty = fv.optim.penalty([], l1=1.0)
    assert empty.item() == 0.0 and not empty.requires_grad
    assert not fv.optim.l2_penalty([frozen], 1.0).requires_grad
    with pytest.raises(ValueError, match="Invalid l1 coefficient: -0.1"):
        fv.optim.l1_penalty([p], -0.1)
    with pytest.raises(ValueError, match="Invalid l2 coefficient"):
        fv.optim.Regularizer(l2=-1)
    with pytest.raises(TypeError, match="penalties take tensors"):
        fv.optim.l2_penalty([np.ones(2)], 0.1)
    reg = fv.optim.Regularizer(l1=1e-4, l2=1e-3)
    assert reg.weight_decay_equivalent == pytest.approx(2e-3)
    assert "l2=0.001" in repr(reg)


# ---------------------------------------------------------------- weight_decay = 2 * alpha
def _quadratic_problem():
    rng = np.random.default_rng(7)
    w0 = rng.standard_normal((6, 3)).astype(np.float32)
    x = rng.standard_normal((10, 6)).astype(np.float32)
    y = rng.standard_normal((10, 3)).astype(np.float32)
    return w0, fv.tensor(x), fv.tensor(y)


def _loss(w, x, y):
    d = x @ w - y
    return (d * d).mean()


@pytest.mark.parametrize("opt,kw", [("SGD", dict(lr=0.1)), ("SGD", dict(lr=0.05, momentum=0.9)),
                                    ("Adam", dict(lr=0.01)), ("RMSprop", dict(lr=0.01))])
def test_weight_decay_equals_l2_penalty(opt, kw):
    """``weight_decay = 2 alpha`` and ``loss + alpha * sum w^2`` give the same trajectory."""
    alpha = 0.05
    w0, x, y = _quadratic_problem()
    w_decay, w_pen = fv.tensor(w0, requires_grad=True), fv.tensor(w0, requires_grad=True)
    o_decay = getattr(fv.optim, opt)([w_decay], weight_decay=2 * alpha, **kw)
    o_pen = getattr(fv.optim, opt)([w_pen], **kw)
    for _ in range(5):
        o_decay.zero_grad()
        _loss(w_decay, x, y).backward()
        o_decay.step()
        o_pen.zero_grad()
        (_loss(w_pen, x, y) + fv.optim.l2_penalty([w_pen], alpha)).backward()
        o_pen.step()
        rel_close(w_pen.data, w_decay.data, 1e-5, 1e-7, what="L2 penalty vs weight_decay")
    assert np.abs(w_pen.data - w0).max() > 1e-3  # the weights did move


def test_adamw_decay_is_not_an_l2_penalty():
    alpha = 0.05
    w0, x, y = _quadratic_problem()
    w_decay, w_pen = fv.tensor(w0, requires_grad=True), fv.tensor(w0, requires_grad=True)
    o_decay = fv.optim.AdamW([w_decay], lr=0.01, weight_decay=2 * alpha)
    o_pen = fv.optim.AdamW([w_pen], lr=0.01, weight_decay=0)
    for _ in range(5):
        o_decay.zero_grad()
        _loss(w_decay, x, y).backward()
        o_decay.step()
        o_pen.zero_grad()
        (_loss(w_pen, x, y) + fv.optim.l2_penalty([w_pen], alpha)).backward()
        o_pen.step()
    assert np.abs(w_pen.data - w_decay.data).max() > 1e-5


# ----------------------------------------------------------------------- gradient clipping
def _with_grads(seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    ps, ts = both(arrays(seed))
    for p, t in zip(ps, ts):
        g = (scale * rng.standard_normal(p.shape)).astype(np.float32)
        p.grad = fv.tensor(g)
        t.grad = torch.tensor(g)
    return ps, ts


@pytest.mark.parametrize("norm_type", [2.0, 1, float("inf"), "inf", 3.0, 0.5])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    ps, ts = _with_grads()
    ours = clip_grad_norm_(ps, max_norm, norm_type)
    ref = torch.nn.utils.clip_grad_norm_(ts, max_norm, norm_type)
    assert isinstance(ours, fv.Tensor) and ours.shape == () and ours.dtype == np.float32
    rel_close(ours.data, ref.numpy(), 1e-6, 0, what="total norm")
    for p, t in zip(ps, ts):
        rel_close(p.grad.data, t.grad.numpy(), 1e-6, 0, what="clipped gradient")
    if max_norm == 0.5:  # the clipped gradients have norm max_norm
        again = clip_grad_norm_(ps, 1e9, norm_type)
        assert again.item() == pytest.approx(0.5, rel=1e-5)


@given(scale=st.floats(1e-3, 1e3), max_norm=st.floats(1e-2, 10.0),
       norm_type=st.sampled_from([1.0, 2.0, float("inf")]), seed=st.integers(0, 5))
def test_clip_grad_norm_sampled(scale, max_norm, norm_type, seed):
    ps, ts = _with_grads(seed, scale)
    ours = clip_grad_norm_(iter(ps), max_norm, norm_type)
    ref = torch.nn.utils.clip_grad_norm_(iter(ts), max_norm, norm_type)
    rel_close(ours.data, ref.numpy(), 1e-6, 0, what="total norm")
    for p, t in zip(ps, ts):
        rel_close(p.grad.data, t.grad.numpy(), 1e-6, 1e-12, what="clipped gradient")


def test_clip_grad_norm_skips_missing_grads_and_keeps_the_grad_objects():
    ps, ts = _with_grads()
    ps[1].grad, ts[1].grad = None, None
    grad0 = ps[0].grad
    ours = clip_grad_norm_(ps, 0.1)
    ref = torch.nn.utils.clip_grad_norm_(ts, 0.1)
    rel_close(ours.data, ref.numpy(), 1e-6, 0)
    assert ps[1].grad is None and ps[0].grad is grad0
    rel_close(ps[0].grad.data, ts[0].grad.numpy(), 1e-6, 0)
    before = float(np.linalg.norm(ps[2].grad.data.astype(np.float64)))
    single = clip_grad_norm_(ps[2], 1e-3)  # a single tensor
    assert single.item() == pytest.approx(before, rel=1e-6)
    assert np.linalg.norm(ps[2].grad.data) == pytest.approx(1e-3, rel=1e-4)
    assert clip_grad_norm_([], 1.0).item() == 0.0


def test_clip_grad_norm_nonfinite():
    ps, ts = _with_grads()
    ps[0].grad.data[0, 0] = np.nan
    ts[0].grad[0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError):
        torch.nn.utils.clip_grad_norm_(ts, 1.0, error_if_nonfinite=True)
    ps, ts = _with_grads()
    ps[1].grad.data[0] = np.inf
    ts[1].grad[0] = float("inf")
    with pytest.raises(RuntimeError, match="order 2.0"):
        clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)
    ours = clip_grad_norm_(ps, 1.0)  # allowed: the gradients become 0 (and nan where inf)
    ref = torch.nn.utils.clip_grad_norm_(ts, 1.0)
    assert np.isinf(ours.item()) and np.isinf(ref.item())
    for p, t in zip(ps, ts):
        np.testing.assert_array_equal(p.grad.data, t.grad.numpy())


def test_clipping_shared_gradient_arrays_scales_each_once():
    """Two gradients sharing one array, or a read-only (broadcast) gradient array, are each
    clipped exactly once, and the arrays of other tensors are left alone."""
    a = fv.tensor(np.full(4, 3.0, np.float32), requires_grad=True)
    b = fv.tensor(np.full(4, 3.0, np.float32), requires_grad=True)
    shared = np.full(4, 2.0, np.float32)
    a.grad, b.grad = fv.from_numpy(shared), fv.from_numpy(shared)
    total = clip_grad_norm_([a, b], 1.0)
    assert total.item() == pytest.approx(np.sqrt(8 * 4.0))
    np.testing.assert_allclose(a.grad.data, 2.0 / np.sqrt(32.0), rtol=1e-5)
    np.testing.assert_allclose(b.grad.data, 2.0 / np.sqrt(32.0), rtol=1e-5)
    c = fv.tensor(np.ones(3, np.float32), requires_grad=True)
    d = fv.tensor(np.ones(3, np.float32), requires_grad=True)
    source = np.ones(3, np.float32)
    read_only = np.broadcast_to(source, (3,))
    c.grad, d.grad = fv.from_numpy(read_only), fv.from_numpy(read_only)
    clip_grad_value_([c, d], 0.25)
    np.testing.assert_array_equal(c.grad.data, 0.25)
    np.testing.assert_array_equal(d.grad.data, 0.25)
    clip_grad_norm_([c, d], 0.1)
    np.testing.assert_allclose(np.linalg.norm(np.concatenate([c.grad.data, d.grad.data])), 0.1,
                               rtol=1e-4)
    np.testing.assert_array_equal(source, 1.0)
    opt = fv.optim.SGD([c, d])
    c.grad, d.grad = fv.from_numpy(read_only), fv.from_numpy(read_only)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(c.grad.data, 0.0)
    np.testing.assert_array_equal(source, 1.0)


@pytest.mark.parametrize("clip_value", [0.1, 0.7, 5.0])
def test_clip_grad_value_matches_torch(clip_value):
    ps, ts = _with_grads(2)
    ps[0].grad, ts[0].grad = None, None
    assert clip_grad_value_(ps, clip_value) is None
    torch.nn.utils.clip_grad_value_(ts, clip_value)
    assert ps[0].grad is None
    for p, t in zip(ps[1:], ts[1:]):
        np.testing.assert_array_equal(p.grad.data, t.grad.numpy())
        assert np.abs(p.grad.data).max() <= clip_value


def test_parameters_to_vector_and_back():
    ps, ts = both(arrays(4))
    vec = parameters_to_vector(ps)
    ref = torch.nn.utils.parameters_to_vector(ts)
    np.testing.assert_array_equal(vec.data, ref.detach().numpy())
    (vec * fv.tensor(np.arange(vec.shape[0], dtype=np.float32))).sum().backward()
    np.testing.assert_array_equal(np.concatenate([p.grad.data.ravel() for p in ps]),
                                  np.arange(vec.shape[0], dtype=np.float32))
    new = np.arange(vec.shape[0], dtype=np.float32) / 10
    with fv.no_grad():
        vector_to_parameters(fv.tensor(new), ps)
    torch.nn.utils.vector_to_parameters(torch.tensor(new), ts)
    for p, t in zip(ps, ts):
        np.testing.assert_array_equal(p.data, t.detach().numpy())
    with pytest.raises(TypeError, match="expected Tensor"):
        vector_to_parameters(new, ps)
    with pytest.raises(ValueError, match="elements"):
        vector_to_parameters(fv.tensor(new[:-1]), ps)
