"""Hopfield networks: the classical binary network (``fv.models.HopfieldNetwork``: Hebb's and
Storkey's rules against their formulas, fixed points, recall, the energy under asynchronous
updates, synchronous 2-cycles, errors) and the modern continuous layer (``fv.nn.Hopfield``:
against its closed form in NumPy and the same computation in PyTorch, finite differences,
retrieval with a large beta), and the two example scripts in a quick mode."""
import os
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import foveanet as fv
from foveanet.models import HopfieldNetwork, to_binary, to_bipolar
from helpers import check_against_torch, gradcheck

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def random_patterns(p, n, seed=0):
    return np.random.default_rng(seed).choice(np.array([-1.0, 1.0]), size=(p, n))


def flip(patterns, fraction, seed=1):
    rng = np.random.default_rng(seed)
    out = patterns.copy()
    k = int(round(fraction * patterns.shape[1]))
    for row in out:
        row[rng.choice(patterns.shape[1], size=k, replace=False)] *= -1
    return out


def storkey_reference(patterns, w=None):
    """Storkey (1997), element by element: for i != j,
    w_ij += (xi_i xi_j - xi_i h_ji - h_ij xi_j) / n with h_ij = sum_{k != i, j} w_ik xi_k."""
    p, n = patterns.shape
    w = np.zeros((n, n)) if w is None else w.copy()
    for xi in patterns:
        h = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                h[i, j] = sum(w[i, k] * xi[k] for k in range(n) if k != i and k != j)
        new = w.copy()
        for i in range(n):
            for j in range(n):
                if i != j:
                    new[i, j] += (xi[i] * xi[j] - xi[i] * h[j, i] - h[i, j] * xi[j]) / n
        w = new
    return w


# ------------------------------------------------------------------------------ learning rules
def test_hebbian_weights_are_the_closed_form_and_accumulate():
    x = random_patterns(7, 30)
    net = HopfieldNetwork(30).store(x)
    expected = x.T @ x / 30
    np.fill_diagonal(expected, 0)
    np.testing.assert_allclose(net.weight.numpy(), expected, atol=1e-15)
    assert net.weight.dtype == np.float64 and int(net.num_patterns.item()) == 7
    assert net.load == pytest.approx(7 / 30)
    # storing in two goes gives the same weights (the rule is a sum)
    two = HopfieldNetwork(30).store(x[:3]).store(x[3:])
    np.testing.assert_allclose(two.weight.numpy(), expected, atol=1e-15)
    net.reset()
    assert not net.weight.numpy().any() and int(net.num_patterns.item()) == 0


def test_storkey_matches_the_element_by_element_rule():
    x = random_patterns(5, 12, seed=3)
    net = HopfieldNetwork(12).store(x, rule="storkey")
    ref = storkey_reference(x)
    np.testing.assert_allclose(net.weight.numpy(), ref, atol=1e-12)
    w = net.weight.numpy()
    np.testing.assert_array_equal(w, w.T)
    assert not np.diag(w).any()
    # incremental: a trained network learns more, as if stored in one go in that order
    more = random_patterns(2, 12, seed=4)
    net.store(more, rule="storkey")
    np.testing.assert_allclose(net.weight.numpy(), storkey_reference(np.concatenate([x, more])),
                               atol=1e-12)
    # ... also on top of Hebbian weights
    mixed = HopfieldNetwork(12).store(x).store(more, rule="storkey")
    np.testing.assert_allclose(mixed.weight.numpy(), storkey_reference(more, w=HopfieldNetwork(12)
                                                                       .store(x).weight.numpy()),
                               atol=1e-12)


@pytest.mark.parametrize("rule", ["hebbian", "storkey"])
def test_stored_patterns_are_fixed_points_at_low_load(rule):
    x = random_patterns(6, 200, seed=5)  # alpha = 0.03
    net = HopfieldNetwork(200).store(x, rule=rule)
    for mode in ("async", "sync"):
        np.testing.assert_array_equal(net.update(x, mode=mode, generator=0).numpy(), x)
        out, info = net.recall(x, mode=mode, generator=0, return_info=True)
        np.testing.assert_array_equal(out.numpy(), x)
        assert info.converged.all() and (info.sweeps == 1).all() and not info.cycle.any()
    # so are their negatives (the energy is even in s)
    np.testing.assert_array_equal(net.recall(-x, generator=0).numpy(), -x)


@pytest.mark.parametrize("rule", ["hebbian", "storkey"])
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_recall_from_corrupted_patterns(rule, mode):
    x = random_patterns(10, 200, seed=6)  # alpha = 0.05
    net = HopfieldNetwork(200).store(x, rule=rule)
    noisy = flip(x, 0.2)
    out, info = net.recall(noisy, mode=mode, generator=fv.Generator(1), return_info=True)
    np.testing.assert_array_equal(out.numpy(), x)
    assert info.all_converged and (info.sweeps > 1).all()
    # one state at a time gives the same as the batch (the batch shares the update order)
    one = net.recall(noisy[3], mode=mode, generator=fv.Generator(1))
    assert one.shape == (200,)
    np.testing.assert_array_equal(one.numpy(), x[3])


def test_recall_is_reproducible_from_a_seed_and_the_order_matters():
    x = random_patterns(30, 100, seed=7)  # alpha = 0.3: well past capacity, many fixed points
    net = HopfieldNetwork(100).store(x)
    noisy = flip(x, 0.3)
    a = net.recall(noisy, generator=11).numpy()
    np.testing.assert_array_equal(a, net.recall(noisy, generator=fv.Generator(11)).numpy())
    assert not np.array_equal(a, net.recall(noisy, generator=12).numpy())
    fv.manual_seed(5)
    b = net.recall(noisy).numpy()
    fv.manual_seed(5)
    np.testing.assert_array_equal(b, net(noisy).numpy())


def test_energy_is_the_quadratic_form_batched():
    rng = np.random.default_rng(8)
    net = HopfieldNetwork(16).store(random_patterns(3, 16))
    net.bias.data[...] = rng.standard_normal(16)
    s = random_patterns(5, 16, seed=9)
    w, b = net.weight.numpy(), net.bias.numpy()
    expected = [-0.5 * si @ w @ si - b @ si for si in s]
    np.testing.assert_allclose(net.energy(s).numpy(), expected, rtol=1e-12)
    assert net.energy(s[0]).shape == () and net.energy(fv.tensor(s)).shape == (5,)
    np.testing.assert_allclose(net.local_field(s).numpy(), s @ w.T + b, rtol=1e-12)
    m = net.overlap(s, s[:2]).numpy()
    assert m.shape == (5, 2) and m[0, 0] == m[1, 1] == 1.0


@settings(max_examples=25, deadline=None, derandomize=True)
@given(n=st.integers(2, 24), batch=st.integers(1, 4), seed=st.integers(0, 2**31 - 1),
       biased=st.booleans())
def test_energy_never_rises_under_asynchronous_updates(n, batch, seed, biased):
    # random symmetric couplings with a zero diagonal, random states: every single-neuron
    # update lowers the energy or leaves it (Hopfield 1982), and the end is a fixed point
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    net = HopfieldNetwork(n)
    net.weight.data[...] = (a + a.T) / 2
    np.fill_diagonal(net.weight.data, 0)
    if biased:
        net.bias.data[...] = rng.standard_normal(n)
    s = fv.tensor(rng.choice(np.array([-1.0, 1.0]), size=(batch, n)))
    energy = net.energy(s).numpy()
    for _ in range(3):  # sweeps
        for i in rng.permutation(n):
            s = net.update(s, order=[i])
            e = net.energy(s).numpy()
            assert (e <= energy + 1e-12 * (1 + np.abs(energy))).all(), (i, energy, e)
            energy = e
    out, info = net.recall(s, generator=seed, return_info=True)
    assert info.all_converged
    assert (net.energy(out).numpy() <= energy + 1e-12 * (1 + np.abs(energy))).all()
    np.testing.assert_array_equal(net.update(out, generator=seed).numpy(), out.numpy())


def test_sync_updates_can_cycle_and_recall_says_so():
    # two neurons that want to differ: synchronously (1, 1) -> (-1, -1) -> (1, 1) -> ...
    net = HopfieldNetwork(2)
    net.weight.data[...] = [[0.0, -1.0], [-1.0, 0.0]]
    start = np.array([[1.0, 1.0], [1.0, -1.0]])
    np.testing.assert_array_equal(net.update(start, mode="sync").numpy(), [[-1, -1], [1, -1]])
    out, info = net.recall(start, mode="sync", return_info=True)
    assert info.cycle.tolist() == [True, False] and info.converged.tolist() == [False, True]
    np.testing.assert_array_equal(out.numpy()[1], [1, -1])
    assert not info.all_converged and info.sweeps.tolist() == [2, 1]
    # asynchronous updates cannot cycle: both states end in a fixed point (one of +-(1, -1))
    out, info = net.recall(start, mode="async", generator=0, return_info=True)
    assert info.all_converged and (out.numpy().sum(axis=1) == 0).all()
    # max_sweeps runs out: neither converged nor a cycle
    x = random_patterns(4, 60, seed=2)
    big = HopfieldNetwork(60).store(x)
    _, info = big.recall(flip(x, 0.45), mode="async", max_sweeps=1, generator=0, return_info=True)
    assert (info.sweeps == 1).all() and not info.cycle.any()


def test_a_zero_field_keeps_the_state():
    # Hebb's rule with an even number of patterns gives fields of exactly zero, which the
    # floating-point sums miss by a rounding error (here 1e-17 in float64, 1e-8 in float32): the
    # neuron keeps its state there, and follows the sign of the field elsewhere
    x = np.array([[1] * 30, [1] * 15 + [-1] * 15])
    s = random_patterns(64, 30, seed=5)
    c = x.T @ x - 2 * np.eye(30, dtype=int)     # n W, in integers
    exact = s.astype(int) @ c.T                 # n h, exactly
    ties = exact == 0
    assert ties.any()
    for dtype in (np.float64, np.float32):
        net = HopfieldNetwork(30, dtype=dtype).store(x)
        assert (net.local_field(s).numpy()[ties] != 0).any()  # rounding at the ties
        new = net.update(s, mode="sync").numpy()
        np.testing.assert_array_equal(new[ties], s[ties])
        np.testing.assert_array_equal(new[~ties], np.sign(exact[~ties]))
        # asynchronously, one neuron at a time, the same rule
        for i in range(30):
            one = net.update(s, order=[i]).numpy()
            expect = np.where(exact[:, i] == 0, s[:, i], np.sign(exact[:, i]))
            np.testing.assert_array_equal(one[:, i], expect)


def test_state_dict_round_trip_keeps_what_was_learned():
    x = random_patterns(8, 50, seed=10)
    net = HopfieldNetwork(50).store(x, rule="storkey")
    sd = net.state_dict()
    assert sorted(sd) == ["bias", "num_patterns", "weight"] and not list(net.parameters())
    other = HopfieldNetwork(50)
    other.load_state_dict(sd)
    np.testing.assert_array_equal(other.weight.numpy(), net.weight.numpy())
    assert other.load == net.load and "patterns=8" in repr(other)
    noisy = flip(x, 0.1)
    np.testing.assert_array_equal(other.recall(noisy, generator=0).numpy(),
                                  net.recall(noisy, generator=0).numpy())
    with pytest.raises(RuntimeError, match="size mismatch for weight"):
        HopfieldNetwork(40).load_state_dict(sd)


def test_to_bipolar_and_back():
    np.testing.assert_array_equal(to_bipolar([0, 1, 1, 0]).numpy(), [-1, 1, 1, -1])
    np.testing.assert_array_equal(to_bipolar(np.array([True, False])).numpy(), [1, -1])
    np.testing.assert_array_equal(to_bipolar([0.2, 0.7], threshold=0.5).numpy(), [-1, 1])
    np.testing.assert_array_equal(to_bipolar([[1, 5], [1, 5]], threshold=[[0], [2]]).numpy(),
                                  [[1, 1], [-1, 1]])
    np.testing.assert_array_equal(to_binary([-1.0, 1.0, 1.0]).numpy(), [0, 1, 1])
    with pytest.raises(ValueError, match=r"to_bipolar: expected only 0 and 1.*got values 0, 0.5, 2"):
        to_bipolar([0, 0.5, 2])


def test_errors_name_the_problem():
    net = HopfieldNetwork(4).store([[1, -1, 1, -1]])
    with pytest.raises(ValueError, match=r"states must have shape \(4,\) or \(batch, 4\), got \(3,\)"):
        net.recall([1, 1, 1])
    with pytest.raises(ValueError, match=r"only -1 and \+1, got values 0, 1 \(0/1 patterns: "
                                         r"convert them with fv.models.to_bipolar\)"):
        net.recall([0, 1, 1, 0])
    with pytest.raises(ValueError, match=r"only -1 and \+1, got values -1, 0.5, 1"):
        net.energy([1, -1, 0.5, 1])
    with pytest.raises(ValueError, match="got values 1 and NaN"):
        net.update([1, 1, np.nan, 1])
    with pytest.raises(TypeError, match="boolean patterns: fv.models.to_bipolar"):
        net.recall(np.array([True, False, True, True]))
    with pytest.raises(ValueError, match=r"patterns must have shape \(4,\) or \(batch, 4\)"):
        net.store(np.ones((2, 5)))
    with pytest.raises(ValueError, match="rule must be 'hebbian' or 'storkey', got 'oja'"):
        net.store([[1, 1, 1, 1]], rule="oja")
    with pytest.raises(ValueError, match="mode must be 'async' .* or 'sync' .*, got 'parallel'"):
        net.recall([1, 1, 1, 1], mode="parallel")
    with pytest.raises(ValueError, match="max_sweeps must be a positive int, got 0"):
        net.recall([1, 1, 1, 1], max_sweeps=0)
    with pytest.raises(ValueError, match=r"order holds neuron indices outside 0..3: 0..4"):
        net.update([1, 1, 1, 1], order=[0, 4])
    with pytest.raises(ValueError, match="order must be a 1-D sequence of integer neuron indices"):
        net.update([1, 1, 1, 1], order=[0.5])
    with pytest.raises(ValueError, match="order applies to mode='async' only"):
        net.update([1, 1, 1, 1], mode="sync", order=[0])
    with pytest.raises(TypeError, match="generator must be a fv.Generator, an int seed or None"):
        net.recall([1, 1, 1, 1], generator=np.random.default_rng(0))
    with pytest.raises(ValueError, match="n must be at least 2 neurons, got 1"):
        HopfieldNetwork(1)
    with pytest.raises(TypeError, match="n must be an int"):
        HopfieldNetwork(4.0)
    with pytest.raises(TypeError, match="dtype must be a floating-point type"):
        HopfieldNetwork(4, dtype=np.int32)


# ------------------------------------------------------------------------------ the modern layer
def softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def numpy_hopfield(stored, state, projection, beta, steps, wq=None, wk=None, wv=None, wo=None,
                   heads=1):
    """The closed form, heads split by hand (weights (out, in); biases left out)."""
    q, k, v = state, stored, projection
    if wq is not None:
        q, k, v = state @ wq.T, stored @ wk.T, projection @ wv.T
    split = [np.split(t, heads, axis=-1) for t in (q, k, v)]
    outs = []
    for qh, kh, vh in zip(*split):
        for _ in range(steps - 1):
            qh = softmax(beta * qh @ np.swapaxes(kh, -1, -2)) @ kh
        outs.append(softmax(beta * qh @ np.swapaxes(kh, -1, -2)) @ vh)
    z = np.concatenate(outs, axis=-1)
    return z @ wo.T if wo is not None else z


@pytest.mark.parametrize("steps", [1, 3])
def test_pure_retrieval_is_the_closed_form(steps):
    rng = np.random.default_rng(0)
    stored = rng.standard_normal((2, 7, 5))
    state = rng.standard_normal((2, 3, 5))
    layer = fv.nn.Hopfield(scaling=0.7, update_steps=steps)
    assert not list(layer.parameters())
    out = layer((fv.tensor(stored), fv.tensor(state)))
    np.testing.assert_allclose(out.numpy(), numpy_hopfield(stored, state, stored, 0.7, steps),
                               rtol=1e-12)
    # paper's column form: xi_new = X softmax(beta X^T xi), one state, one memory
    x, xi = stored[0].T, state[0, 0]
    np.testing.assert_allclose(
        fv.nn.layers.hopfield.hopfield_retrieval(fv.tensor(xi[None]), fv.tensor(x.T), beta=0.7)
        .numpy()[0], x @ softmax(0.7 * x.T @ xi), rtol=1e-12)
    # beta defaults to 1/sqrt(d); separate pattern projections are read out
    proj = rng.standard_normal((2, 7, 4))
    out = fv.nn.Hopfield()((fv.tensor(stored), fv.tensor(state), fv.tensor(proj)))
    np.testing.assert_allclose(out.numpy(), numpy_hopfield(stored, state, proj, 5 ** -0.5, 1),
                               rtol=1e-12)
    # one memory (N, d) shared by a batch of states
    shared = fv.nn.Hopfield()((fv.tensor(stored[0]), fv.tensor(state)))
    np.testing.assert_allclose(shared.numpy(), numpy_hopfield(stored[0], state, stored[0],
                                                              5 ** -0.5, 1), rtol=1e-12)


def test_projected_layer_is_the_closed_form():
    rng = np.random.default_rng(1)
    layer = fv.nn.Hopfield(6, hidden_size=4, pattern_size=3, num_heads=2, output_size=5,
                           update_steps=2, stored_pattern_size=7, pattern_projection_size=8,
                           bias=False, dtype=np.float64)
    stored, state, proj = (rng.standard_normal(s) for s in ((2, 9, 7), (2, 4, 6), (2, 9, 8)))
    out = layer((fv.tensor(stored), fv.tensor(state), fv.tensor(proj)))
    assert out.shape == (2, 4, 5)
    w = {name: p.data for name, p in layer.named_parameters()}
    ref = numpy_hopfield(stored, state, proj, 0.5, 2, w["q_proj.weight"], w["k_proj.weight"],
                         w["v_proj.weight"], w["out_proj.weight"], heads=2)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-10)
    a = layer.association_matrix((fv.tensor(stored), fv.tensor(state), fv.tensor(proj)))
    assert a.shape == (2, 2, 4, 9) and not a.requires_grad
    np.testing.assert_allclose(a.numpy().sum(-1), 1.0)


class TorchHopfield(torch.nn.Module):
    """The same layer in PyTorch, parameter names as ours."""

    def __init__(self, ours):
        super().__init__()
        self.h, self.dk, self.dv = ours.num_heads, ours.head_dim, ours.pattern_dim
        self.beta, self.steps = ours.beta(), ours.update_steps
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            layer = getattr(ours, name)
            if layer is not None:
                setattr(self, name, torch.nn.Linear(layer.in_features, layer.out_features,
                                                    bias=layer.bias is not None))
            else:
                setattr(self, name, None)

    def heads(self, x, d):
        return x.reshape(*x.shape[:-1], self.h, d).transpose(-3, -2)

    def forward(self, stored, state, proj):
        q = self.heads(self.q_proj(state), self.dk)
        k = self.heads(self.k_proj(stored), self.dk)
        v = self.heads(self.v_proj(proj), self.dv)
        for _ in range(self.steps - 1):
            q = torch.softmax(self.beta * q @ k.transpose(-1, -2), dim=-1) @ k
        z = torch.softmax(self.beta * q @ k.transpose(-1, -2), dim=-1) @ v
        z = z.transpose(-3, -2).reshape(*z.shape[:-3], z.shape[-2], self.h * self.dv)
        return z if self.out_proj is None else self.out_proj(z)


@pytest.mark.parametrize("options", [
    dict(),
    dict(num_heads=2, update_steps=3),
    dict(num_heads=2, hidden_size=3, pattern_size=2, output_size=5, stored_pattern_size=4,
         pattern_projection_size=7, scaling=0.8),
    dict(bias=False, out_projection=False, num_heads=3, hidden_size=2),
])
def test_projected_layer_against_torch(options):
    fv.manual_seed(0)
    ours = fv.nn.Hopfield(6, **options)
    theirs = TorchHopfield(ours)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            dict(theirs.named_parameters())[name].copy_(torch.from_numpy(p.data.copy()))
    rng = np.random.default_rng(2)
    stored = rng.standard_normal((3, 5, ours.stored_pattern_size)).astype(np.float32)
    state = rng.standard_normal((3, 4, 6)).astype(np.float32)
    proj = rng.standard_normal((3, 5, ours.pattern_projection_size)).astype(np.float32)
    check_against_torch(lambda s, q, v: ours((s, q, v)), theirs, [stored, state, proj],
                        fv_module=ours, torch_module=theirs)


def test_self_association_against_torch():
    fv.manual_seed(1)
    ours = fv.nn.Hopfield(8, num_heads=2, update_steps=2)
    theirs = TorchHopfield(ours)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            dict(theirs.named_parameters())[name].copy_(torch.from_numpy(p.data.copy()))
    x = np.random.default_rng(3).standard_normal((2, 6, 8)).astype(np.float32)
    check_against_torch(ours, lambda t: theirs(t, t, t), [x], fv_module=ours, torch_module=theirs)


def test_gradcheck_inputs_and_parameters_float64():
    fv.manual_seed(2)
    layer = fv.nn.Hopfield(4, num_heads=2, update_steps=2, scaling=0.9).double()
    names = [name for name, _ in layer.named_parameters()]
    owners = {name: layer.get_submodule(name.rsplit(".", 1)[0]) for name in names}
    params = [p.data.copy() for _, p in layer.named_parameters()]
    rng = np.random.default_rng(4)
    inputs = [rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 2, 4)),
              rng.standard_normal((2, 3, 4))]

    def fn(stored, state, proj, *weights):
        for name, w in zip(names, weights):  # the parameters as inputs of the check
            owners[name]._parameters[name.rsplit(".", 1)[1]] = w
        return layer((stored, state, proj))

    gradcheck(fn, inputs + params)
    # pure retrieval, iterated
    gradcheck(lambda s, q: fv.nn.Hopfield(scaling=1.3, update_steps=3)((s, q)),
              [rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 2, 3))])


def test_large_beta_retrieves_the_nearest_stored_pattern():
    rng = np.random.default_rng(5)
    stored = rng.standard_normal((20, 64))
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)  # unit patterns: nearest = largest dot
    which = rng.integers(0, 20, size=8)
    queries = stored[which] + 0.15 * rng.standard_normal((8, 64))
    layer = fv.nn.Hopfield(scaling=60.0)
    out = layer((fv.tensor(stored), fv.tensor(queries)))
    np.testing.assert_allclose(out.numpy(), stored[which], atol=1e-4)
    assert (layer.association_matrix((fv.tensor(stored), fv.tensor(queries))).numpy()
            .argmax(-1) == which).all()
    # a small beta averages instead: the result is far from every stored pattern
    soft = fv.nn.Hopfield(scaling=0.5)((fv.tensor(stored), fv.tensor(queries))).numpy()
    assert np.abs(soft - stored[which]).max() > 0.3


def test_update_steps_eps_stops_the_iteration():
    rng = np.random.default_rng(6)
    stored, state = fv.tensor(rng.standard_normal((6, 4))), fv.tensor(rng.standard_normal((3, 4)))
    once = fv.nn.Hopfield(update_steps=2)((stored, state))
    early = fv.nn.Hopfield(update_steps=50, update_steps_eps=1e9)((stored, state))
    np.testing.assert_array_equal(early.numpy(), once.numpy())
    a = fv.nn.Hopfield(scaling=3.0, update_steps=200, update_steps_eps=1e-12)((stored, state))
    b = fv.nn.Hopfield(scaling=3.0, update_steps=400)((stored, state))
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-10)


def test_hopfield_pooling_learns_its_queries():
    fv.manual_seed(3)
    pool = fv.nn.HopfieldPooling(6, quantity=2, num_heads=2, output_size=4)
    x = fv.randn(5, 7, 6)
    out = pool(x)
    assert out.shape == (5, 8) and pool(fv.randn(7, 6)).shape == (8,)
    out.sum().backward()
    assert pool.pooling_weights.grad is not None and pool.pooling_weights.grad.shape == (2, 6)
    assert "pooling_weights" in pool.state_dict() and "hopfield.q_proj.weight" in pool.state_dict()
    # the same as the layer with the learned queries as state patterns
    ref = pool.hopfield((x, pool.pooling_weights, x)).reshape(5, 8)
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-6)


def test_modern_layer_errors():
    with pytest.raises(ValueError, match="hidden_size needs learned projections: give input_size"):
        fv.nn.Hopfield(hidden_size=4)
    with pytest.raises(ValueError, match="input_size 7 is not divisible by num_heads 2"):
        fv.nn.Hopfield(7, num_heads=2)
    with pytest.raises(ValueError, match="scaling must be positive and finite"):
        fv.nn.Hopfield(scaling=0.0)
    with pytest.raises(ValueError, match="update_steps must be positive, got 0"):
        fv.nn.Hopfield(update_steps=0)
    with pytest.raises(ValueError, match="output size is num_heads \\* pattern_size = 8"):
        fv.nn.Hopfield(8, out_projection=False, output_size=5)
    layer = fv.nn.Hopfield(8)
    with pytest.raises(ValueError, match=r"stored_pattern must have 8 features .* got shape \(2, 3, 7\)"):
        layer(fv.randn(2, 3, 7))
    with pytest.raises(ValueError, match="the batch sizes differ"):
        layer((fv.randn(2, 3, 8), fv.randn(3, 3, 8)))
    with pytest.raises(ValueError, match="must hold the same number of patterns"):
        layer((fv.randn(2, 3, 8), fv.randn(2, 3, 8), fv.randn(2, 4, 8)))
    with pytest.raises(ValueError, match=r"expected one tensor or a tuple .* got a tuple of 4"):
        layer((fv.randn(3, 8),) * 4)
    with pytest.raises(TypeError, match="expected a foveanet Tensor as state_pattern"):
        layer((fv.randn(3, 8), np.zeros((3, 8))))
    with pytest.raises(ValueError, match=r"must be \(batch, patterns, size\) or \(patterns, size\)"):
        layer(fv.randn(8))
    with pytest.raises(ValueError, match="same size without projections"):
        fv.nn.Hopfield()((fv.randn(3, 8), fv.randn(3, 5)))


# ------------------------------------------------------------------------------ the examples
def _example(name):
    sys.path.insert(0, EXAMPLES)
    try:
        return __import__(name)
    finally:
        sys.path.remove(EXAMPLES)


def test_capacity_example_quick(tmp_path, capsys):
    capacity = _example("hopfield_capacity")
    out = tmp_path / "capacity.png"
    curves, thresholds = capacity.main(["--quick", "--out", str(out)])
    assert out.stat().st_size > 10_000
    c = curves[100]
    assert c["final"][0] == 0 and c["final"][-1] > 0.05  # no errors at low load, many at 0.22
    assert 0.05 < thresholds[100] < 0.2
    assert "threshold (bit error reaches 1%)" in capsys.readouterr().out
    assert capacity.threshold([0.1, 0.2], [0.0, 0.02], 0.01) == pytest.approx(0.15)
    assert capacity.retrieval_theory(0.1379) == pytest.approx(0.016, abs=1e-3)
    assert capacity.retrieval_theory(0.14) is None


def test_fashion_example_quick(tmp_path, capsys):
    fashion = _example("hopfield_fashion")
    try:
        fv.data.FashionMNIST(train=True)
    except fv.data.DatasetError:
        pytest.skip("Fashion-MNIST is not installed")
    out = tmp_path / "recall.png"
    result = fashion.main(["--quick", "--out", str(out)])
    assert out.stat().st_size > 10_000
    assert result["patterns"].shape == (3, 784) and set(result["recovered"]) == {"storkey", "hebbian"}
    assert (result["nearest"]["storkey"] == np.arange(3)).all()
    assert "recalled exactly" in capsys.readouterr().out
