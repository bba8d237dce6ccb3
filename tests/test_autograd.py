"""The engine: graph recording, backward order, accumulation, freeing, modes, Tensor basics."""
import gc
import sys
import weakref

import numpy as np
import pytest

import foveanet as fv


def test_chain_rule_on_the_lecture_neuron():
    # y = sigmoid(sigma * (w.x + b)), E = 1/2 (y - d)^2: dE/dw = (y - d) sigma y (1 - y) x
    x = fv.tensor([0.5, -1.0, 2.0], dtype=fv.float64)
    w = fv.tensor([0.1, 0.2, -0.3], dtype=fv.float64, requires_grad=True)
    b = fv.tensor(0.05, dtype=fv.float64, requires_grad=True)
    sigma, d = 2.0, 1.0
    z = (w * x).sum() + b
    y = 1 / (1 + fv.exp(-sigma * z))
    E = 0.5 * (y - d) ** 2
    E.backward()
    yv = y.item()
    np.testing.assert_allclose(w.grad.data, (yv - d) * sigma * yv * (1 - yv) * x.data, rtol=1e-12)
    np.testing.assert_allclose(b.grad.item(), (yv - d) * sigma * yv * (1 - yv), rtol=1e-12)


def test_gradients_accumulate_across_backward_calls():
    x = fv.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [3 + 2, 3 + 4])


def test_shared_subexpression_gets_summed_gradient():
    x = fv.tensor(3.0, requires_grad=True)
    y = x * x          # used twice below
    z = y + y * x      # z = x^2 + x^3, dz/dx = 2x + 3x^2 = 33
    z.backward()
    assert x.grad.item() == pytest.approx(33.0)


def test_leaf_grads_are_independent_copies():
    a = fv.tensor([1.0, 2.0], requires_grad=True)
    b = fv.tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward()      # Add passes the same gradient array to both inputs
    a.grad.data *= 10
    np.testing.assert_array_equal(b.grad.data, [1.0, 1.0])


def test_fresh_gradients_are_kept_without_a_copy_and_stay_independent():
    x = fv.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    lin = fv.nn.Linear(3, 4, dtype=fv.float64)
    out = lin(x)
    out.backward(fv.tensor(np.ones((2, 4))))
    w, b = lin.weight.grad.data, lin.bias.grad.data
    for g in (w, b, x.grad.data):  # each its own writable array (Linear's products and sum)
        assert g.base is None and g.flags.writeable and g.flags.c_contiguous
    np.testing.assert_array_equal(w, np.tile(x.data.sum(0), (4, 1)))
    w *= 10  # an optimiser edits one gradient in place: nothing else moves
    np.testing.assert_array_equal(x.grad.data, np.tile(lin.weight.data.sum(0), (2, 1)))
    np.testing.assert_array_equal(b, [2.0] * 4)
    # one tensor as both operands: the first gradient is kept, the second added into a new array
    a = fv.tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True)
    (a @ a).sum().backward()
    ones = np.ones((2, 2))
    np.testing.assert_array_equal(a.grad.data, ones @ a.data.T + a.data.T @ ones)
    # Add hands one (fresh, not a view) array to both inputs: each leaf still gets its own
    p, q = (fv.tensor([1.0, 2.0], requires_grad=True) for _ in range(2))
    ((p + q) * 3).sum().backward()
    p.grad.data *= 10
    np.testing.assert_array_equal(q.grad.data, [3.0, 3.0])
    # ReLU's gradient is new too: a leaf input keeps it, and it is not the upstream array
    r = fv.tensor(np.array([[-1.0, 2.0], [3.0, -4.0]]), requires_grad=True)
    up = np.full((2, 2), 5.0)
    fv.nn.functional.relu(r).backward(fv.tensor(up))
    assert r.grad.data.base is None and r.grad.data.flags.writeable and r.grad.data is not up
    r.grad.data *= 10
    np.testing.assert_array_equal(up, np.full((2, 2), 5.0))
    np.testing.assert_array_equal(r.grad.data, [[0.0, 50.0], [50.0, 0.0]])
    # a float32 gradient for a float64 leaf is cast, as before
    c = fv.tensor(np.ones((2, 2)), requires_grad=True)
    (fv.tensor(np.ones((2, 2), np.float32)) @ c.float()).sum().backward()
    assert c.grad.dtype == np.float64


def test_backward_through_5000_operations_no_recursion_and_graph_freed():
    assert sys.getrecursionlimit() < 5000 * 2
    x = fv.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001 + 0.0
    probe = weakref.ref(y.grad_fn)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, [1.0001 ** 5000], rtol=1e-3)
    # after backward every Function has released its inputs and saved arrays
    assert y.grad_fn.name == "AddBackward"
    assert not y.grad_fn.__dict__.get("inputs")
    with pytest.raises(RuntimeError, match="a second time"):
        y.sum().backward()
    del y
    gc.collect()
    assert probe() is None


def test_saved_arrays_are_released_after_backward():
    x = fv.randn(1000, requires_grad=True)
    y = fv.exp(x)
    fn = y.grad_fn
    assert hasattr(fn, "out")
    y.sum().backward()
    assert not hasattr(fn, "out")


def test_retain_graph_allows_second_backward():
    x = fv.tensor([2.0], requires_grad=True)
    y = (x ** 3).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.data, [24.0])


def test_no_grad_and_enable_grad_and_decorator():
    x = fv.tensor([1.0], requires_grad=True)
    with fv.no_grad():
        y = x * 2
        with fv.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad

    @fv.no_grad()
    def f(t):
        return t * 3
    assert not f(x).requires_grad
    assert fv.is_grad_enabled()


def test_detach_cuts_the_graph():
    x = fv.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2).detach()
    assert not y.requires_grad and y.is_leaf
    z = (x * y).sum()
    z.backward()
    np.testing.assert_array_equal(x.grad.data, [2.0, 4.0])


def test_retain_grad_keeps_intermediate_gradient():
    x = fv.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    (y * y).sum().backward()
    np.testing.assert_array_equal(y.grad.data, [6.0, 12.0])


def test_backward_with_explicit_gradient_and_errors():
    x = fv.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match="scalar output"):
        y.backward()
    with pytest.raises(ValueError, match="gradient has shape"):
        y.backward(fv.ones(3))
    y.backward(fv.tensor([1.0, 0.5]))
    np.testing.assert_array_equal(x.grad.data, [2.0, 1.0])
    with pytest.raises(RuntimeError, match="does not require grad"):
        fv.tensor([1.0]).sum().backward()


def test_dtypes_default_float32_and_float64_preserved():
    assert fv.tensor([1.0, 2.0]).dtype == np.float32
    assert fv.tensor([1, 2]).dtype == np.int64
    assert fv.tensor(np.zeros(2)).dtype == np.float64
    assert fv.randn(2).dtype == np.float32
    assert fv.randn(2, dtype=fv.float64).dtype == np.float64
    x = fv.randn(3, dtype=fv.float64, requires_grad=True)
    (x * 2.5).sum().backward()
    assert x.grad.dtype == np.float64
    assert (fv.randn(2) * 2.5).dtype == np.float32
    with pytest.raises(TypeError, match="only floating-point"):
        fv.tensor([1, 2], requires_grad=True)


def test_item_numpy_tolist_and_repr():
    x = fv.tensor([[1.5, 2.0]])
    assert x.shape == (1, 2) and x.ndim == 2 and x.numel() == 2 and len(x) == 1
    assert x.sum().item() == 3.5
    assert x.numpy() is x.data
    assert x.tolist() == [[1.5, 2.0]]
    with pytest.raises(ValueError, match="one element"):
        x.item()
    with pytest.raises(RuntimeError, match="detach"):
        fv.tensor([1.0], requires_grad=True).numpy()
    assert "grad_fn=<MulBackward>" in repr(fv.tensor([1.0], requires_grad=True) * 2)


def test_manual_seed_reproducible():
    fv.manual_seed(123)
    a = fv.randn(5).numpy().copy()
    fv.manual_seed(123)
    b = fv.randn(5).numpy()
    np.testing.assert_array_equal(a, b)
    g1, g2 = fv.Generator(7), fv.Generator(7)
    np.testing.assert_array_equal(fv.rand(3, generator=g1).numpy(), fv.rand(3, generator=g2).numpy())
    p = fv.randperm(10, generator=fv.Generator(1)).numpy()
    assert sorted(p.tolist()) == list(range(10))


def test_inplace_on_leaf_requiring_grad_is_refused_outside_no_grad():
    w = fv.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="in place"):
        w.add_(1.0)
    with fv.no_grad():
        w.add_(1.0).mul_(2.0).zero_()
    np.testing.assert_array_equal(w.data, [0, 0, 0])


def test_integer_and_bool_ops_and_creation():
    a = fv.arange(5)
    assert a.dtype == np.int64 and a.tolist() == [0, 1, 2, 3, 4]
    assert fv.zeros(2, 3).shape == (2, 3) and fv.ones((2,)).dtype == np.float32
    assert fv.full((2,), 3).dtype == np.int64
    assert fv.eye(2).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    mask = (a > 1) & (a < 4)
    assert mask.tolist() == [False, False, True, True, False]
    assert (~mask).tolist() == [True, True, False, False, True]


def test_error_messages_name_shapes():
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\) \(6 elements\) to \(4, 2\)"):
        fv.zeros(2, 3).reshape(4, 2)
    with pytest.raises(ValueError, match=r"cat: tensor 1 has shape \(2, 4\)"):
        fv.cat([fv.zeros(3, 3), fv.zeros(2, 4)], 0)
    with pytest.raises(IndexError, match="out of range"):
        fv.zeros(2, 3).sum(2)
    with pytest.raises(ValueError, match="do not add up"):
        fv.zeros(5).split([2, 2])


def test_zero_dim_results_are_arrays_not_numpy_scalars():
    a = fv.tensor(2.0, requires_grad=True)
    for t in (a + 1, -a, a.sum(), a * a, fv.maximum(a, 1.0)):
        assert isinstance(t.data, np.ndarray) and t.data.shape == ()
    b = fv.tensor(1.0)
    b.copy_(3.0)
    assert b.item() == 3.0


# ---------------------------------------------------------------- Functions with several results
class _TwoResults(fv.Function):
    """(2 x, 3 x, argmax index): two differentiable results and an integer one."""

    def forward(self, x):
        return x * 2, x * 3, np.argmax(x, keepdims=True)

    def backward(self, grads):
        ga, gb, gi = grads
        assert gi is None  # an integer result never carries a gradient
        out = np.zeros(1)
        if ga is not None:
            out = out + 2 * ga
        if gb is not None:
            out = out + 3 * gb
        return out


def test_a_function_with_several_results_gets_one_gradient_each():
    x = fv.tensor([1.0, 2.0, 3.0], requires_grad=True)
    a, b, i = _TwoResults.apply(x)
    assert a.grad_fn is b.grad_fn and i.grad_fn is None and not i.requires_grad
    a.retain_grad()
    b.retain_grad()
    (a.sum() * 5 + (b * b).sum()).backward()
    np.testing.assert_allclose(x.grad.data, 10 + 18 * x.data)  # d/dx (10 x + 9 x^2)
    np.testing.assert_allclose(a.grad.data, [5, 5, 5])
    np.testing.assert_allclose(b.grad.data, 2 * b.data)


def test_a_gradient_through_one_result_leaves_the_others_none():
    x = fv.tensor([1.0, -1.0], requires_grad=True)
    _, b, _ = _TwoResults.apply(x)
    b.sum().backward()
    np.testing.assert_allclose(x.grad.data, [3, 3])
    x.grad = None
    a, b, _ = _TwoResults.apply(x)
    (a + b).sum().backward(retain_graph=True)  # both results meet again downstream
    np.testing.assert_allclose(x.grad.data, [5, 5])
    a.sum().backward()
    np.testing.assert_allclose(x.grad.data, [7, 7])
    with pytest.raises(RuntimeError, match="a second time"):
        b.sum().backward()
