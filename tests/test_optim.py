"""Optimizers against torch.optim: the same float32 start, the same data and loss, every parameter
and every state array compared after every step; state_dict round trips; error messages."""
import json

import numpy as np
import pytest
import torch
from helpers import rel_close
from hypothesis import given
from hypothesis import strategies as st

import foveanet as fv

RTOL = 1e-5
NAMES = ("W1", "b1", "W2", "b2")


def make_problem(seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"W1": (4, 5), "b1": (5,), "W2": (5, 3), "b2": (3,)}
    init = {k: (0.5 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.standard_normal((8, 3)).astype(np.float32)
    return init, x, y


def fv_loss(P, x, y):
    h = fv.tanh(fv.tensor(x) @ P["W1"] + P["b1"])
    d = h @ P["W2"] + P["b2"] - fv.tensor(y)
    return (d * d).mean()


def torch_loss(T, x, y):
    h = torch.tanh(torch.from_numpy(x) @ T["W1"] + T["b1"])
    d = h @ T["W2"] + T["b2"] - torch.from_numpy(y)
    return (d * d).mean()


def param_spec(D, groups):
    """groups: None (one list of all parameters) or [(names, options)]."""
    if groups is None:
        return [D[n] for n in NAMES]
    return [dict(opts, params=[D[n] for n in names]) for names, opts in groups]


def compare_state(fo, to, P, T, what):
    for n in NAMES:
        ours, theirs = fo.state.get(P[n], {}), to.state.get(T[n], {})
        theirs = {k: v for k, v in theirs.items() if v is not None}
        assert set(ours) == set(theirs), f"{what}: state keys of {n}: {sorted(ours)} vs {sorted(theirs)}"
        for k, v in theirs.items():
            if k == "step":
                assert ours[k] == float(v), f"{what}: step of {n}"
            else:
                rel_close(ours[k], v.numpy(), RTOL, 1e-6, what=f"{what}: state {k} of {n}")


def run_pair(fv_cls, th_cls, kwargs, groups=None, steps=5, seed=0, rtol=RTOL):
    init, x, y = make_problem(seed)
    P = {k: fv.tensor(v, requires_grad=True) for k, v in init.items()}
    T = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    fo = fv_cls(param_spec(P, groups), **kwargs)
    to = th_cls(param_spec(T, groups), **kwargs)
    for step in range(1, steps + 1):
        fo.zero_grad()
        fv_loss(P, x, y).backward()
        fo.step()
        to.zero_grad()
        torch_loss(T, x, y).backward()
        to.step()
        for n in NAMES:
            rel_close(P[n].data, T[n].detach().numpy(), rtol, 1e-6, what=f"{n} after step {step}")
            assert P[n].data.dtype == np.float32
    compare_state(fo, to, P, T, f"after {steps} steps")
    return fo, P


# ---------------------------------------------------------------------------------------- SGD
SGD_GRID = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.5),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, weight_decay=0.1),
    dict(lr=0.1, momentum=0.8, weight_decay=0.05, nesterov=True),
    dict(lr=0.05, momentum=0.5, dampening=0.1, weight_decay=0.01, maximize=True),
    dict(lr=0.1, maximize=True),
]


@pytest.mark.parametrize("kw", SGD_GRID, ids=str)
def test_sgd_matches_torch(kw):
    run_pair(fv.optim.SGD, torch.optim.SGD, kw)


@given(lr=st.floats(1e-3, 0.3), momentum=st.sampled_from([0.0, 0.5, 0.9]),
       dampening=st.sampled_from([0.0, 0.3]), nesterov=st.booleans(),
       weight_decay=st.sampled_from([0.0, 1e-3, 0.1]), maximize=st.booleans())
def test_sgd_matches_torch_sampled(lr, momentum, dampening, nesterov, weight_decay, maximize):
    if nesterov and (momentum == 0 or dampening != 0):
        nesterov = False
    run_pair(fv.optim.SGD, torch.optim.SGD, dict(lr=lr, momentum=momentum, dampening=dampening,
                                                 nesterov=nesterov, weight_decay=weight_decay,
                                                 maximize=maximize))


def test_sgd_parameter_groups_match_torch():
    groups = [(("W1", "b1"), dict(lr=0.2, momentum=0.9)),
              (("W2",), dict(nesterov=True, momentum=0.5)),
              (("b2",), dict(lr=0.01, weight_decay=0.5))]
    run_pair(fv.optim.SGD, torch.optim.SGD, dict(lr=0.05), groups=groups)


# ------------------------------------------------------------------------------ Adam, AdamW
ADAM_GRID = [
    dict(lr=1e-2),
    dict(lr=5e-2, betas=(0.8, 0.99)),
    dict(lr=1e-2, amsgrad=True),
    dict(lr=1e-2, weight_decay=0.1),
    dict(lr=1e-2, weight_decay=0.1, amsgrad=True, maximize=True),
    dict(lr=2e-2, betas=(0.3, 0.9), eps=1e-6),  # beta1 < 0.5: the other branch of lerp
]


@pytest.mark.parametrize("kw", ADAM_GRID, ids=str)
@pytest.mark.parametrize("cls", ["Adam", "AdamW"])
def test_adam_matches_torch(cls, kw):
    run_pair(getattr(fv.optim, cls), getattr(torch.optim, cls), kw)


@given(lr=st.floats(1e-4, 0.05), beta1=st.sampled_from([0.0, 0.5, 0.9]),
       beta2=st.sampled_from([0.9, 0.999]), weight_decay=st.sampled_from([0.0, 0.01, 0.2]),
       amsgrad=st.booleans(), maximize=st.booleans(), decoupled=st.booleans())
def test_adam_matches_torch_sampled(lr, beta1, beta2, weight_decay, amsgrad, maximize, decoupled):
    cls = "AdamW" if decoupled else "Adam"
    run_pair(getattr(fv.optim, cls), getattr(torch.optim, cls),
             dict(lr=lr, betas=(beta1, beta2), weight_decay=weight_decay, amsgrad=amsgrad,
                  maximize=maximize))


def test_adam_parameter_groups_match_torch():
    groups = [(("W1", "W2"), dict(lr=0.03, betas=(0.5, 0.9))),
              (("b1", "b2"), dict(weight_decay=0.0, amsgrad=True))]
    run_pair(fv.optim.AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1), groups=groups)


def test_adamw_default_weight_decay():
    init, _, _ = make_problem()
    assert fv.optim.AdamW([fv.tensor(init["W1"], requires_grad=True)]).defaults["weight_decay"] == 1e-2
    assert fv.optim.Adam([fv.tensor(init["W1"], requires_grad=True)]).defaults["weight_decay"] == 0


# ---------------------------------------------------------------------------------- RMSprop
RMS_GRID = [
    dict(lr=1e-2),
    dict(lr=1e-2, centered=True),
    dict(lr=5e-3, momentum=0.9),
    dict(lr=5e-3, momentum=0.9, centered=True, weight_decay=0.1),
    dict(lr=1e-2, alpha=0.9, eps=1e-6, maximize=True),
]


@pytest.mark.parametrize("kw", RMS_GRID, ids=str)
def test_rmsprop_matches_torch(kw):
    run_pair(fv.optim.RMSprop, torch.optim.RMSprop, kw)


@given(lr=st.floats(1e-4, 0.02), alpha=st.sampled_from([0.5, 0.9, 0.99]),
       momentum=st.sampled_from([0.0, 0.9]), centered=st.booleans(),
       weight_decay=st.sampled_from([0.0, 0.05]), maximize=st.booleans())
def test_rmsprop_matches_torch_sampled(lr, alpha, momentum, centered, weight_decay, maximize):
    run_pair(fv.optim.RMSprop, torch.optim.RMSprop,
             dict(lr=lr, alpha=alpha, momentum=momentum, centered=centered,
                  weight_decay=weight_decay, maximize=maximize))


def test_rmsprop_parameter_groups_match_torch():
    groups = [(("W1",), dict(centered=True)), (("b1", "W2", "b2"), dict(lr=3e-3, momentum=0.5))]
    run_pair(fv.optim.RMSprop, torch.optim.RMSprop, dict(lr=1e-2), groups=groups)


# ------------------------------------------------------------------------------- behaviour
OPTIMIZERS = [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    ("AdamW", dict(lr=0.01, betas=(0.8, 0.99))),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
]


def _train(opt, P, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        fv_loss(P, x, y).backward()
        opt.step()


@pytest.mark.parametrize("name,kw", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
@pytest.mark.parametrize("through_json", [False, True])
def test_state_dict_round_trip(name, kw, through_json):
    init, x, y = make_problem(1)
    cls = getattr(fv.optim, name)
    P = {k: fv.tensor(v, requires_grad=True) for k, v in init.items()}
    groups = [dict(params=[P["W1"], P["b1"]]), dict(params=[P["W2"], P["b2"]], lr=0.003)]
    opt = cls(groups, **kw)
    _train(opt, P, x, y, 3)
    sd = opt.state_dict()
    assert sorted(sd["state"]) == [0, 1, 2, 3]
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2, 3]]
    for values in sd["state"].values():
        for v in values.values():
            assert isinstance(v, (np.ndarray, int, float)), type(v)
    if through_json:  # what a checkpoint writer does: arrays aside, the rest as JSON
        arrays = {f"{k}.{n}": v for k, s in sd["state"].items() for n, v in s.items()
                  if isinstance(v, np.ndarray)}
        meta = json.loads(json.dumps({
            "param_groups": sd["param_groups"],
            "scalars": {str(k): {n: v for n, v in s.items() if not isinstance(v, np.ndarray)}
                        for k, s in sd["state"].items()}}))
        state = {k: dict(scalars) for k, scalars in meta["scalars"].items()}
        for key, arr in arrays.items():
            k, n = key.split(".")
            state[k][n] = np.array(arr)
        sd = {"state": state, "param_groups": meta["param_groups"]}
    P2 = {k: fv.tensor(v.data, requires_grad=True) for k, v in P.items()}
    opt2 = cls([dict(params=[P2["W1"], P2["b1"]]), dict(params=[P2["W2"], P2["b2"]])],
               **dict(kw, lr=0.5))
    opt2.load_state_dict(sd)
    assert opt2.param_groups[1]["lr"] == 0.003 and opt2.param_groups[0]["lr"] == kw["lr"]
    if "betas" in opt.param_groups[0]:
        assert isinstance(opt2.param_groups[0]["betas"], tuple)
    _train(opt, P, x, y, 2)
    _train(opt2, P2, x, y, 2)
    for n in NAMES:
        np.testing.assert_array_equal(P2[n].data, P[n].data, err_msg=n)


def test_state_dict_is_a_snapshot():
    init, x, y = make_problem()
    P = {k: fv.tensor(v, requires_grad=True) for k, v in init.items()}
    opt = fv.optim.Adam(list(P.values()), lr=0.1)
    _train(opt, P, x, y, 1)
    sd = opt.state_dict()
    saved = sd["state"][0]["exp_avg"].copy()
    _train(opt, P, x, y, 1)
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], saved)
    assert sd["state"][0]["step"] == 1


def test_load_state_dict_mismatch_is_value_error():
    init, x, y = make_problem()
    P = {k: fv.tensor(v, requires_grad=True) for k, v in init.items()}
    opt = fv.optim.SGD(list(P.values()), lr=0.1, momentum=0.9)
    _train(opt, P, x, y, 1)
    sd = opt.state_dict()
    two_groups = fv.optim.SGD([dict(params=[P["W1"]]), dict(params=[P["b1"]])], lr=0.1)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        two_groups.load_state_dict(sd)
    fewer = fv.optim.SGD([P["W1"], P["b1"]], lr=0.1)
    with pytest.raises(ValueError, match="parameter group \\(0\\) with 4 parameters"):
        fewer.load_state_dict(sd)
    other_shapes = fv.optim.SGD([P["b1"], P["W1"], P["W2"], P["b2"]], lr=0.1)
    with pytest.raises(ValueError, match="shape"):
        other_shapes.load_state_dict(sd)


@pytest.mark.parametrize("make,message", [
    (lambda p: fv.optim.SGD(p, lr=-0.1), "Invalid learning rate: -0.1"),
    (lambda p: fv.optim.SGD(p, momentum=-0.5), "Invalid momentum value: -0.5"),
    (lambda p: fv.optim.SGD(p, weight_decay=-1), "Invalid weight_decay value: -1"),
    (lambda p: fv.optim.SGD(p, nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (lambda p: fv.optim.SGD(p, momentum=0.9, dampening=0.1, nesterov=True),
     "Nesterov momentum requires a momentum and zero dampening"),
    (lambda p: fv.optim.Adam(p, lr=-1e-3), "Invalid learning rate"),
    (lambda p: fv.optim.Adam(p, betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    (lambda p: fv.optim.Adam(p, betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
    (lambda p: fv.optim.AdamW(p, betas=(0.9, 1.5)), "Invalid beta parameter at index 1: 1.5"),
    (lambda p: fv.optim.Adam(p, eps=0.0), "Invalid epsilon value: 0.0"),
    (lambda p: fv.optim.AdamW(p, eps=-1e-8), "Invalid epsilon value"),
    (lambda p: fv.optim.Adam(p, weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    (lambda p: fv.optim.RMSprop(p, eps=0), "Invalid epsilon value: 0"),
    (lambda p: fv.optim.RMSprop(p, alpha=-0.1), "Invalid alpha value: -0.1"),
    (lambda p: fv.optim.RMSprop(p, momentum=-0.1), "Invalid momentum value: -0.1"),
    (lambda p: fv.optim.RMSprop(p, lr=-1), "Invalid learning rate: -1"),
    (lambda p: fv.optim.SGD([dict(params=p, lr=-2.0)], lr=0.1), "Invalid learning rate: -2.0"),
    (lambda p: fv.optim.SGD([], lr=0.1), "empty parameter list"),
    (lambda p: fv.optim.SGD([dict(params=p), dict(params=p[:1])]), "more than one parameter group"),
    (lambda p: fv.optim.SGD([p[0] * 2]), "non-leaf"),
])
def test_invalid_arguments_are_value_errors(make, message):
    params = [fv.tensor(np.ones(3, np.float32), requires_grad=True),
              fv.tensor(np.ones(2, np.float32), requires_grad=True)]
    with pytest.raises(ValueError, match=message.replace("(", "\\(").replace(")", "\\)")):
        make(params)


def test_type_errors():
    p = fv.tensor(np.ones(3, np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="iterable of Tensors or dicts"):
        fv.optim.SGD(p)
    with pytest.raises(TypeError, match="ordered collections"):
        fv.optim.SGD([dict(params={p})])
    with pytest.raises(TypeError, match="can only optimize Tensors"):
        fv.optim.SGD([np.ones(3)])
    with pytest.raises(TypeError, match="must be a dict"):
        fv.optim.SGD([p]).add_param_group([p])


def test_params_without_grad_are_skipped():
    init, x, y = make_problem()
    P = {k: fv.tensor(v, requires_grad=True) for k, v in init.items()}
    unused = fv.tensor(np.ones(3, np.float32), requires_grad=True)
    for cls, kw in [(fv.optim.SGD, dict(momentum=0.9)), (fv.optim.Adam, {}), (fv.optim.RMSprop, {})]:
        opt = cls(list(P.values()) + [unused], lr=0.1, **kw)
        _train(opt, P, x, y, 2)
        np.testing.assert_array_equal(unused.data, np.ones(3, np.float32))
        assert unused not in opt.state and len(opt.state) == 4


def test_zero_grad():
    a = fv.tensor(np.ones(3, np.float32), requires_grad=True)
    b = fv.tensor(np.ones(3, np.float32), requires_grad=True)
    opt = fv.optim.SGD([a, b], lr=0.1)
    (a + b).sum().backward()
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad.data, 0)
    np.testing.assert_array_equal(b.grad.data, 0)
    ((a * 3).sum() + (b * 5).sum()).backward()
    np.testing.assert_array_equal(a.grad.data, 3)
    np.testing.assert_array_equal(b.grad.data, 5)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad.data, 0)
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_step_with_closure_returns_the_loss():
    init, x, y = make_problem()
    P = {k: fv.tensor(v, requires_grad=True) for k, v in init.items()}
    T = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    fo = fv.optim.SGD(list(P.values()), lr=0.1, momentum=0.9)
    to = torch.optim.SGD(list(T.values()), lr=0.1, momentum=0.9)

    def fv_closure():
        fo.zero_grad()
        loss = fv_loss(P, x, y)
        loss.backward()
        return loss

    def torch_closure():
        to.zero_grad()
        loss = torch_loss(T, x, y)
        loss.backward()
        return loss

    for _ in range(3):
        with fv.no_grad():  # the closure turns gradients back on
            ours = fo.step(fv_closure)
        theirs = to.step(torch_closure)
        assert abs(ours.item() - theirs.item()) <= 1e-5 * abs(theirs.item())
    for n in NAMES:
        rel_close(P[n].data, T[n].detach().numpy(), RTOL, what=n)
    assert fo.step() is None


def test_add_param_group_matches_torch():
    init, x, y = make_problem()
    P = {k: fv.tensor(v, requires_grad=True) for k, v in init.items()}
    T = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    fo = fv.optim.SGD([P["W1"], P["b1"]], lr=0.1, momentum=0.9)
    to = torch.optim.SGD([T["W1"], T["b1"]], lr=0.1, momentum=0.9)
    for step in range(4):
        if step == 2:  # unfreeze the second layer
            fo.add_param_group(dict(params=[P["W2"], P["b2"]], lr=0.05))
            to.add_param_group(dict(params=[T["W2"], T["b2"]], lr=0.05))
        fo.zero_grad()
        fv_loss(P, x, y).backward()
        fo.step()
        to.zero_grad()
        torch_loss(T, x, y).backward()
        to.step()
    assert fo.param_groups[1]["momentum"] == 0.9
    for n in NAMES:
        rel_close(P[n].data, T[n].detach().numpy(), RTOL, what=n)


def test_float64_parameters_keep_their_dtype():
    w = fv.tensor(np.linspace(-1, 1, 6).reshape(2, 3), dtype=np.float64, requires_grad=True)
    wt = torch.tensor(w.data.copy(), requires_grad=True)
    fo = fv.optim.Adam([w], lr=0.1, weight_decay=0.1)
    to = torch.optim.Adam([wt], lr=0.1, weight_decay=0.1)
    for _ in range(4):
        fo.zero_grad()
        (w * w * w).sum().backward()
        fo.step()
        to.zero_grad()
        (wt * wt * wt).sum().backward()
        to.step()
    assert w.data.dtype == np.float64 and fo.state[w]["exp_avg"].dtype == np.float64
    rel_close(w.data, wt.detach().numpy(), 1e-12, 0)


def test_momentum_switched_on_later():
    """OneCycleLR sets a group's momentum on an optimizer built without: the state appears then."""
    w = fv.tensor(np.ones(3, np.float32), requires_grad=True)
    wt = torch.tensor(np.ones(3, np.float32), requires_grad=True)
    fo, to = fv.optim.SGD([w], lr=0.1), torch.optim.SGD([wt], lr=0.1)
    for step in range(4):
        if step == 2:
            fo.param_groups[0]["momentum"] = to.param_groups[0]["momentum"] = 0.9
        fo.zero_grad()
        (w * w).sum().backward()
        fo.step()
        to.zero_grad()
        (wt * wt).sum().backward()
        to.step()
    rel_close(w.data, wt.detach().numpy(), RTOL)


def test_repr_lists_the_groups():
    text = repr(fv.optim.SGD([fv.tensor(np.ones(2, np.float32), requires_grad=True)], lr=0.5))
    assert text.startswith("SGD (") and "Parameter Group 0" in text and "lr: 0.5" in text


def test_named_parameters_are_accepted():
    w = fv.tensor(np.ones(3, np.float32), requires_grad=True)
    b = fv.tensor(np.zeros(1, np.float32), requires_grad=True)
    opt = fv.optim.SGD([("layer.weight", w), ("layer.bias", b)], lr=0.1)
    assert opt.param_groups[0]["params"][0] is w and opt.param_groups[0]["params"][1] is b
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["layer.weight", "layer.bias"]
    with pytest.raises(ValueError, match="Some param names are missing"):
        fv.optim.SGD([("w", w), b])


def test_warm_compiles_every_kernel_module():
    # the registry finds every kernel module by itself: one line per *_kernels.py file (Winograd,
    # direct, strided im2col, channels-last columns, pooling, batch norm, SGD, linear's addmm,
    # ReLU, embedding, layer norm, recurrent layers, cross-entropy over positions)
    from pathlib import Path

    from foveanet.backend.cpu import kernels, warm
    files = sorted(Path(fv.__file__).parent.rglob("*_kernels.py"))
    lines = warm().splitlines()
    assert len(lines) == len(files) == 13
    compiled = kernels.load("foveanet.optim._sgd_kernels") is not None
    assert all(("compiled" in line) == compiled for line in lines), lines
