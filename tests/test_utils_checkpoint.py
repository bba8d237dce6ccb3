"""Activation checkpointing (fv.utils.checkpoint, checkpoint_sequential): the gradients of the
plain computation (inputs and parameters), PyTorch's results, finite differences, the memory it
saves, random ops, batch norm, several outputs, nesting, the hooks, and the error cases."""
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
import torch.utils.checkpoint

import foveanet as fv
from foveanet.interop.trace import trace
from foveanet.utils import checkpoint, checkpoint_sequential
from helpers import check_against_torch, copy_params_to_torch, gradcheck

nn = fv.nn


def assert_same(ours, ref, what="value"):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-6, atol=1e-7,
                               err_msg=what)


def grads_of(model, *inputs):
    """The gradients of the inputs, then of every parameter, by name."""
    out = {f"input {i}": x.grad.data.copy() for i, x in enumerate(inputs) if x.grad is not None}
    out.update({n: p.grad.data.copy() for n, p in model.named_parameters() if p.grad is not None})
    return out


def compare(model, make_inputs, run_plain, run_checkpointed, seed=0):
    """Run the plain and the checkpointed computation from the same generator state on fresh
    inputs; their outputs and gradients (inputs and parameters) must agree."""
    results = []
    for run in (run_plain, run_checkpointed):
        model.zero_grad()
        inputs = make_inputs()
        fv.manual_seed(seed)
        out = run(*inputs)
        g = fv.tensor(np.random.default_rng(1).standard_normal(out.shape).astype(out.dtype))
        (out * g).sum().backward()
        results.append((out.detach().numpy().copy(), grads_of(model, *inputs)))
    (out_a, grads_a), (out_b, grads_b) = results
    assert_same(out_b, out_a, "output")
    assert grads_a.keys() == grads_b.keys() and grads_a, (sorted(grads_a), sorted(grads_b))
    for k in grads_a:
        assert_same(grads_b[k], grads_a[k], k)
    return results


def mlp():
    fv.manual_seed(3)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, 4))


def x_input(*shape, requires_grad=True):
    return lambda: [fv.tensor(np.random.default_rng(7).standard_normal(shape).astype(np.float32),
                              requires_grad=requires_grad)]


# ------------------------------------------------------------------ the plain computation's grads
def test_mlp_gradients_match_the_plain_computation():
    m = mlp()
    compare(m, x_input(5, 6), m, lambda x: checkpoint(m, x))
    out = checkpoint(m, x_input(5, 6)()[0])
    assert out.grad_fn.name == "CheckpointBackward"


def test_parameters_get_gradients_when_no_input_requires_grad():
    # the first segment of a network reads data that requires no gradient: the node is still
    # recorded (the parameters inside count), and the parameters get theirs
    m = mlp()
    compare(m, x_input(5, 6, requires_grad=False), m, lambda x: checkpoint(m, x))


def test_small_cnn_with_batch_norm_in_train_mode():
    fv.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.Tanh(),
                      nn.Flatten(), nn.Linear(4, 3))
    m.train()
    bn = m[1]
    state = {k: v.data.copy() for k, v in m.named_buffers()}
    compare(m, x_input(3, 2, 6, 6), m, lambda x: checkpoint(m, x))
    # the plain step updated the running statistics once, the checkpointed one twice (its
    # forward and its recomputation), as in PyTorch
    assert int(bn.num_batches_tracked.item()) == int(state["1.num_batches_tracked"]) + 3
    x = x_input(3, 2, 6, 6)()[0]
    for k, v in m.named_buffers():
        v.data[...] = state[k]
    m(x)
    once = bn.running_mean.data.copy()
    for k, v in m.named_buffers():
        v.data[...] = state[k]
    checkpoint(m, x).sum().backward()
    twice = bn.running_mean.data.copy()
    assert not np.allclose(twice, once)
    for k, v in m.named_buffers():
        v.data[...] = state[k]
    m(x)
    m(x)
    assert_same(twice, bn.running_mean.data)


def test_dropout_gets_the_same_mask_in_the_recomputation():
    fv.manual_seed(2)
    m = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 32), nn.Tanh(),
                      nn.Dropout(0.3), nn.Linear(32, 2))
    m.train()
    compare(m, x_input(6, 8), m, lambda x: checkpoint(m, x))


def test_the_generator_continues_as_after_the_plain_step():
    fv.manual_seed(2)
    m = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
    x = fv.randn(4, 8, requires_grad=True)
    after = []
    for run in (m, lambda x: checkpoint(m, x)):
        fv.manual_seed(5)
        run(x).sum().backward()  # the recomputation puts the generator back where it was
        after.append(fv.rand(3).numpy().copy())
    np.testing.assert_array_equal(after[1], after[0])


def test_without_preserve_rng_state_the_masks_differ():
    fv.manual_seed(2)
    m = nn.Sequential(nn.Linear(8, 64), nn.Dropout(0.5))
    x = fv.randn(4, 8)
    fv.manual_seed(0)
    m(x).sum().backward()
    plain = m[0].weight.grad.data.copy()
    m.zero_grad()
    fv.manual_seed(0)
    checkpoint(m, x, preserve_rng_state=False).sum().backward()
    assert not np.allclose(m[0].weight.grad.data, plain)


def test_several_outputs_and_partial_gradients():
    fv.manual_seed(4)
    lin = nn.Linear(5, 3)

    def fn(x, w):
        h = lin(x).tanh()
        return h @ w, (h * h).sum(1), h.argmax(1), "tag"

    def make():
        rng = np.random.default_rng(0)
        return [fv.tensor(rng.standard_normal((4, 5)).astype(np.float32), requires_grad=True),
                fv.tensor(rng.standard_normal((3, 2)).astype(np.float32), requires_grad=True)]

    def loss(outs, which):
        a, b, idx, tag = outs
        assert tag == "tag" and idx.dtype == np.int64 and not idx.requires_grad
        return sum([(a * a).sum(), (b * 3).sum()][i] for i in which)

    for which in ([0, 1], [0], [1]):
        got = []
        for run in (fn, lambda x, w: checkpoint(fn, x, w)):
            lin.zero_grad()
            x, w = make()
            outs = run(x, w)
            assert isinstance(outs, tuple) and len(outs) == 4
            loss(outs, which).backward()
            got.append([x.grad, w.grad, lin.weight.grad, lin.bias.grad])
        for a, b in zip(*got):
            assert (a is None) == (b is None)
            if a is not None:
                assert_same(b.data, a.data)


def test_outputs_that_are_inputs_or_lists():
    x = fv.tensor([1.0, -2.0, 3.0], requires_grad=True)
    a, b = checkpoint(lambda t: [t, t * 2], x)
    (a * 5 + b).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [7.0, 7.0, 7.0])


def test_non_tensor_arguments_and_keyword_tensors_pass_through():
    fv.manual_seed(6)
    lin = nn.Linear(4, 4)
    mask = np.array([1.0, 0.0, 1.0, 1.0], dtype=np.float32)

    def fn(x, scale, mode, mask, *, bias, flags):
        h = lin(x) * scale * fv.tensor(mask)
        h = h.relu() if mode == "relu" else h.tanh()
        return h + bias if flags["bias"] else h

    def make():
        rng = np.random.default_rng(3)
        return [fv.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True),
                fv.tensor(rng.standard_normal(4).astype(np.float32), requires_grad=True)]

    class Both(nn.Module):  # so that compare() sees lin's parameters
        def __init__(self):
            super().__init__()
            self.lin = lin

    both = Both()
    for mode in ("relu", "tanh"):
        compare(both, make, lambda x, b: fn(x, 2.0, mode, mask, bias=b, flags={"bias": True}),
                lambda x, b: checkpoint(fn, x, 2.0, mode, mask, bias=b, flags={"bias": True}))


def test_nested_inputs_and_outputs_like_a_recurrent_cell():
    # (h, c) in and out, as a recurrent layer takes and returns them; the states fed in are
    # computed outside the segment (not leaves): their gradients flow on through the outer graph
    fv.manual_seed(10)
    gates = nn.Linear(3 + 4, 2 * 4)

    def cell(x, state, cfg):
        h, c = state
        i, f = gates(fv.cat([x, h], 1)).sigmoid().chunk(2, 1)
        c = f * c + i * cfg["scale"]
        return {"out": c.tanh() * h}, (c.tanh(), c)

    def make():
        rng = np.random.default_rng(4)
        return [fv.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
                for s in ((2, 3), (2, 4), (2, 4))]

    def run(step):
        def steps(x, h0, c0):
            state = (h0 * 1.5, c0 - 0.5)
            for _ in range(3):
                out, state = step(x, state, {"scale": 0.7})
            return out["out"] * 2 + state[0] + state[1]
        return steps

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.gates = gates

    compare(Holder(), make, run(cell), run(lambda *a: checkpoint(cell, *a)))


def test_nested_checkpoints():
    fv.manual_seed(8)
    m = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 16), nn.Tanh(),
                      nn.Linear(16, 4))

    def inner(x):
        return m[3:5](x)

    def outer(x):
        return m[5](checkpoint(inner, m[0:3](x)))

    compare(m, x_input(5, 6), m, lambda x: checkpoint(outer, x))
    compare(m, x_input(5, 6), m, lambda x: checkpoint(lambda y: checkpoint(outer, y), x))


@pytest.mark.parametrize("as_list", [False, True])
def test_checkpoint_sequential_every_segment_count(as_list):
    fv.manual_seed(9)
    m = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Dropout(0.25), nn.Linear(12, 12), nn.ReLU(),
                      nn.Linear(12, 3))
    for segments in range(1, len(m) + 1):
        layers = list(m) if as_list else m
        compare(m, x_input(4, 6), m, lambda x: checkpoint_sequential(layers, segments, x))


def test_checkpoint_sequential_checks_the_segment_count():
    m = mlp()
    x = fv.randn(2, 6)
    for bad in (0, len(m) + 1, 2.0, True):
        with pytest.raises(ValueError, match="segments must be an int from 1 to the number of "
                                             "functions"):
            checkpoint_sequential(m, bad, x)


# --------------------------------------------------------------------- against PyTorch, gradcheck
def test_against_torch_utils_checkpoint():
    m = mlp()
    tm = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16),
                             torch.nn.ReLU(), torch.nn.Linear(16, 4))
    copy_params_to_torch(m, tm)
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    for use_reentrant in (True, False):
        m.zero_grad()
        tm.zero_grad()
        check_against_torch(lambda t: checkpoint_sequential(m[1:], 2, checkpoint(m[0], t)),
                            lambda t: torch.utils.checkpoint.checkpoint_sequential(
                                tm[1:], 2, torch.utils.checkpoint.checkpoint(
                                    tm[0], t, use_reentrant=use_reentrant),
                                use_reentrant=use_reentrant),
                            [x], fv_module=m, torch_module=tm)


def test_several_outputs_against_torch():
    def fv_fn(x, w):
        return checkpoint(lambda a, b: ((a @ b).tanh(), (a * a).sum(1)), x, w)

    def torch_fn(x, w):
        return torch.utils.checkpoint.checkpoint(lambda a, b: ((a @ b).tanh(), (a * a).sum(1)),
                                                 x, w, use_reentrant=False)

    rng = np.random.default_rng(1)
    check_against_torch(fv_fn, torch_fn, [rng.standard_normal((4, 3)).astype(np.float32),
                                          rng.standard_normal((3, 5)).astype(np.float32)])


def test_gradcheck_float64():
    def segment(x, w, b):
        return ((x @ w + b).tanh() * x.sum(1, keepdim=True)).sigmoid()

    def nested(x, w, b):
        return checkpoint(lambda u, v: checkpoint(segment, u, v, b) * 2.0, x, w)

    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)]
    gradcheck(lambda x, w, b: checkpoint(segment, x, w, b), inputs)
    gradcheck(nested, inputs)


# ---------------------------------------------------------------------------------- memory saved
def held_bytes(run, x):
    """Bytes allocated by ``run(x)`` that are still alive while its output is (the graph)."""
    tracing = tracemalloc.is_tracing()  # python -X tracemalloc: leave it on
    if not tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = run(x)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    del out
    return held


def test_checkpointing_keeps_much_less_of_the_forward_pass():
    fv.manual_seed(0)
    layers = []
    for _ in range(32):
        layers += [nn.Linear(128, 128), nn.Tanh()]
    m = nn.Sequential(*layers)
    x = fv.randn(128, 128, requires_grad=True)
    m(x)  # warm up: one-time allocations (kernel caches) are not the graph's
    plain = held_bytes(m, x)
    whole = held_bytes(lambda t: checkpoint(m, t), x)
    # 7 segment outputs and the last segment's graph (4 layers, run normally)
    segmented = held_bytes(lambda t: checkpoint_sequential(m, 8, t), x)
    activation = 128 * 128 * 4
    assert plain > 32 * activation  # the plain graph keeps two arrays a layer
    assert whole < plain / 3 and whole < 4 * activation, (plain, whole)
    assert segmented < plain / 3, (plain, segmented)
    # and the checkpointed step still trains every layer
    checkpoint_sequential(m, 8, x).sum().backward()
    assert all(p.grad is not None for p in m.parameters())


# ----------------------------------------------------------------------------------- the hooks
def test_under_no_grad_it_just_runs_the_function():
    m = mlp()
    with fv.no_grad():
        out = checkpoint(m, fv.randn(2, 6, requires_grad=True))
    assert out.grad_fn is None and not out.requires_grad


def test_the_profiler_counts_the_segment_once():
    m = mlp()
    x = fv.randn(4, 6, requires_grad=True)
    with fv.profile(print_on_exit=False) as prof:
        checkpoint(m, x).sum().backward()
    rows = {(r["op"], r["phase"]): r["calls"] for r in prof.stats()}
    assert rows[("Checkpoint", "backward")] == 1
    assert rows[("Linear", "forward")] == 3  # the first run's primitives, not the recomputation
    assert ("Linear", "backward") not in rows  # they are inside the Checkpoint backward row
    assert prof.op_seconds <= prof.wall
    assert fv.autograd.profiler is None and fv.autograd.tracer is None
    assert m[0].weight.grad is not None


def test_a_trace_sees_the_segment_primitives():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh())

        def forward(self, x):
            return checkpoint(self.body, x)

    graph = trace(Block(), fv.randn(2, 4))
    assert [n.op for n in graph.nodes] == ["Linear", "Tanh"]
    assert graph.outputs[0].producer is graph.nodes[-1]
    assert fv.autograd.tracer is None


# ------------------------------------------------------------------------------------- errors
def test_backward_twice_needs_retain_graph():
    m = mlp()
    x = fv.randn(3, 6, requires_grad=True)
    out = checkpoint(m, x)
    g = np.ones(out.shape, dtype=np.float32)
    out.backward(g, retain_graph=True)
    once = m[0].weight.grad.data.copy()
    out.backward(g)  # recomputes again: the same gradient once more
    assert_same(m[0].weight.grad.data, 2 * once)
    with pytest.raises(RuntimeError, match="CheckpointBackward a second time.*retain_graph=True"):
        out.backward(g)


def test_nothing_requires_grad_warns():
    with pytest.warns(UserWarning, match="none of the inputs and none of the tensors the function "
                                         "uses require grad"):
        out = checkpoint(lambda t: t * 2, fv.randn(3))
    assert not out.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        out.sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checkpoint(lambda t: t * 2, fv.randn(3, requires_grad=True))  # no warning


def test_a_captured_non_leaf_tensor_is_an_error():
    leaf = fv.randn(3, requires_grad=True)
    w = leaf * 2
    with pytest.raises(RuntimeError, match=r"computed outside it \(grad_fn=MulBackward\); pass it "
                                           "to checkpoint as an argument"):
        checkpoint(lambda t: t * w, fv.randn(3))
    x = fv.randn(3)
    checkpoint(lambda t, u: t * u, x, w).sum().backward()  # as an argument it works
    assert_same(leaf.grad.data, 2 * x.data)


def test_bad_functions_and_results():
    with pytest.raises(TypeError, match="function must be callable, got int"):
        checkpoint(3, fv.randn(2))
    x = fv.randn(2, requires_grad=True)
    with pytest.raises(TypeError, match="must return a Tensor, or tuples, lists or dicts of "
                                        "them, got a NoneType"):
        checkpoint(lambda t: None, x)
    with pytest.raises(TypeError, match="got a tuple without tensors"):
        checkpoint(lambda t: (1, [2]), x)
    calls = []

    def changes(t):
        calls.append(1)
        return t[: len(calls)] * 2

    out = checkpoint(changes, fv.randn(3, requires_grad=True))
    with pytest.raises(RuntimeError, match="recomputing the segment gave outputs of shapes"):
        out.sum().backward()
