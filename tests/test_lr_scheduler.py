"""Learning-rate schedulers against torch.optim.lr_scheduler: the same sequences of rates (and of
momenta / betas for OneCycleLR), step by step, and state_dict round trips."""
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import foveanet as fv

LR = fv.optim.lr_scheduler
TLR = torch.optim.lr_scheduler


def make_opts(opt="SGD", lrs=(0.1, 0.02), **kw):
    """The same optimizer in both libraries, one parameter group per learning rate."""
    fv_groups = [dict(params=[fv.tensor(np.ones(2, np.float32), requires_grad=True)], lr=lr)
                 for lr in lrs]
    th_groups = [dict(params=[torch.ones(2, requires_grad=True)], lr=lr) for lr in lrs]
    return getattr(fv.optim, opt)(fv_groups, **kw), getattr(torch.optim, opt)(th_groups, **kw)


def assert_same(ours, theirs, what):
    assert len(ours) == len(theirs), what
    for a, b in zip(ours, theirs):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), f"{what}: {ours} vs torch {theirs}"


def run_both(fv_sched, th_sched, fv_opt, th_opt, steps=30, keys=("lr",)):
    assert_same(fv_sched.get_last_lr(), th_sched.get_last_lr(), "after construction")
    for step in range(1, steps + 1):
        fv_opt.step()
        th_opt.step()
        fv_sched.step()
        th_sched.step()
        assert fv_sched.last_epoch == th_sched.last_epoch
        assert_same(fv_sched.get_last_lr(), th_sched.get_last_lr(), f"step {step}")
        for key in keys:
            for g, h in zip(fv_opt.param_groups, th_opt.param_groups):
                a, b = g[key], h[key]
                if isinstance(b, tuple):
                    assert_same(list(a), list(b), f"{key} at step {step}")
                else:
                    assert_same([a], [b], f"{key} at step {step}")


SCHEDULES = {
    "StepLR": dict(step_size=7, gamma=0.5),
    "StepLR-default": dict(step_size=3),
    "MultiStepLR": dict(milestones=[3, 8, 8, 20], gamma=0.3),
    "CosineAnnealingLR": dict(T_max=10, eta_min=0.001),  # 30 steps: goes through 1.5 periods
    "CosineAnnealingLR-default": dict(T_max=30),
    "LinearLR": dict(start_factor=0.25, end_factor=1.0, total_iters=8),
    "LinearLR-decay": dict(start_factor=1.0, end_factor=0.1, total_iters=12),
    "ExponentialLR": dict(gamma=0.9),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_matches_torch(name):
    kw = SCHEDULES[name]
    cls = name.split("-")[0]
    fo, to = make_opts(momentum=0.9)
    run_both(getattr(LR, cls)(fo, **kw), getattr(TLR, cls)(to, **kw), fo, to)
    assert fo.param_groups[0]["initial_lr"] == 0.1


def test_lambda_lr_matches_torch():
    fns = [lambda e: 0.95 ** e, lambda e: 1.0 / (1 + e // 4)]
    fo, to = make_opts()
    run_both(LR.LambdaLR(fo, fns), TLR.LambdaLR(to, fns), fo, to)
    fo, to = make_opts()
    run_both(LR.LambdaLR(fo, fns[0]), TLR.LambdaLR(to, fns[0]), fo, to)


@given(step_size=st.integers(1, 10), gamma=st.floats(0.05, 0.99),
       t_max=st.integers(1, 12), eta_min=st.sampled_from([0.0, 1e-4]))
def test_step_and_cosine_sampled(step_size, gamma, t_max, eta_min):
    fo, to = make_opts()
    run_both(LR.StepLR(fo, step_size, gamma), TLR.StepLR(to, step_size, gamma), fo, to, steps=25)
    fo, to = make_opts()
    run_both(LR.CosineAnnealingLR(fo, t_max, eta_min), TLR.CosineAnnealingLR(to, t_max, eta_min),
             fo, to, steps=25)


ONE_CYCLE = [
    dict(max_lr=0.5, total_steps=30),
    dict(max_lr=[0.5, 0.1], epochs=3, steps_per_epoch=10, pct_start=0.25, anneal_strategy="linear"),
    dict(max_lr=0.3, total_steps=30, three_phase=True, div_factor=10.0, final_div_factor=100.0),
    dict(max_lr=0.3, total_steps=30, base_momentum=[0.8, 0.7], max_momentum=0.9),
    dict(max_lr=0.3, total_steps=30, cycle_momentum=False),
]


@pytest.mark.parametrize("kw", ONE_CYCLE, ids=str)
@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_one_cycle_matches_torch_with_momentum(opt, kw):
    fo, to = make_opts(opt, **({"momentum": 0.9} if opt == "SGD" else {}))
    keys = ("lr", "betas" if opt == "Adam" else "momentum")
    fs, ts = LR.OneCycleLR(fo, **kw), TLR.OneCycleLR(to, **kw)
    for key in keys + ("initial_lr", "max_lr", "min_lr"):
        assert fo.param_groups[0][key] == to.param_groups[0][key], key
    run_both(fs, ts, fo, to, steps=30, keys=keys)
    with pytest.raises(ValueError, match="Tried to step 31 times. The specified number of total steps is 30"):
        fs.step()
    with pytest.raises(ValueError, match="Tried to step 31 times"):
        ts.step()


def test_one_cycle_sets_momentum_on_plain_sgd_and_trains():
    """SGD built without momentum: OneCycleLR switches it on, the trajectories stay equal."""
    w0 = np.linspace(-1, 1, 5).astype(np.float32)
    w, wt = fv.tensor(w0, requires_grad=True), torch.tensor(w0, requires_grad=True)
    fo, to = fv.optim.SGD([w], lr=0.1), torch.optim.SGD([wt], lr=0.1)
    fs, ts = LR.OneCycleLR(fo, max_lr=0.2, total_steps=10), TLR.OneCycleLR(to, max_lr=0.2, total_steps=10)
    for _ in range(10):
        fo.zero_grad()
        (w * w).sum().backward()
        fo.step()
        fs.step()
        to.zero_grad()
        (wt * wt).sum().backward()
        to.step()
        ts.step()
    np.testing.assert_allclose(w.data, wt.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_one_cycle_argument_errors():
    fo, _ = make_opts()
    with pytest.raises(ValueError, match="You must define either total_steps OR"):
        LR.OneCycleLR(fo, max_lr=0.1)
    with pytest.raises(ValueError, match="Expected positive integer total_steps"):
        LR.OneCycleLR(fo, max_lr=0.1, total_steps=0)
    with pytest.raises(ValueError, match="pct_start"):
        LR.OneCycleLR(fo, max_lr=0.1, total_steps=10, pct_start=1.5)
    with pytest.raises(ValueError, match="anneal_strategy"):
        LR.OneCycleLR(fo, max_lr=0.1, total_steps=10, anneal_strategy="exp")
    with pytest.raises(ValueError, match="max_lr must have the same length"):
        LR.OneCycleLR(fo, max_lr=[0.1, 0.2, 0.3], total_steps=10)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        LR.StepLR(object(), step_size=2)


# ------------------------------------------------------------------------- ReduceLROnPlateau
METRICS = [1.0, 0.9, 0.9, 0.9, 0.95, 0.899995, 0.8, 0.8, 0.8, 0.8, 0.81, 0.7, 0.7, 0.7, 0.7, 0.7,
           0.69, 0.69, 0.69, 0.69, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
PLATEAU = [
    dict(patience=2),
    dict(patience=1, cooldown=2, factor=0.5),
    dict(patience=0, threshold=0.05, threshold_mode="abs", min_lr=[0.01, 0.001]),
    dict(mode="max", patience=1, factor=0.3, min_lr=0.005),
    dict(mode="max", patience=2, threshold_mode="abs", threshold=0.0, cooldown=1),
    dict(patience=0, factor=0.9, eps=0.01),  # changes below eps are skipped
]


@pytest.mark.parametrize("kw", PLATEAU, ids=str)
def test_reduce_lr_on_plateau_matches_torch(kw):
    fo, to = make_opts(momentum=0.5)
    fs, ts = LR.ReduceLROnPlateau(fo, **kw), TLR.ReduceLROnPlateau(to, **kw)
    assert_same(fs.get_last_lr(), ts.get_last_lr(), "start")
    for epoch, metric in enumerate(METRICS, 1):
        fs.step(fv.tensor(metric, dtype=np.float64) if epoch % 2 else metric)  # tensor or number
        ts.step(metric)
        assert_same(fs.get_last_lr(), ts.get_last_lr(), f"epoch {epoch}")
        assert (fs.num_bad_epochs, fs.cooldown_counter, fs.best) == \
            (ts.num_bad_epochs, ts.cooldown_counter, ts.best)
    assert fs.last_epoch == ts.last_epoch == len(METRICS)


def test_reduce_lr_on_plateau_errors():
    fo, _ = make_opts()
    with pytest.raises(ValueError, match="Factor should be < 1.0."):
        LR.ReduceLROnPlateau(fo, factor=1.0)
    with pytest.raises(ValueError, match="mode avg is unknown!"):
        LR.ReduceLROnPlateau(fo, mode="avg")
    with pytest.raises(ValueError, match="threshold mode x is unknown!"):
        LR.ReduceLROnPlateau(fo, threshold_mode="x")
    with pytest.raises(ValueError, match="expected 2 min_lrs, got 3"):
        LR.ReduceLROnPlateau(fo, min_lr=[0, 0, 0])


# ---------------------------------------------------------------------------- state dicts
RESUMABLE = [
    ("StepLR", dict(step_size=4, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[5, 12, 15], gamma=0.5)),
    ("CosineAnnealingLR", dict(T_max=8, eta_min=0.01)),
    ("LinearLR", dict(start_factor=0.2, total_iters=15)),
    ("ExponentialLR", dict(gamma=0.8)),
    ("OneCycleLR", dict(max_lr=0.4, total_steps=20)),
]


@pytest.mark.parametrize("name,kw", RESUMABLE, ids=[r[0] for r in RESUMABLE])
@pytest.mark.parametrize("through_json", [False, True])
def test_scheduler_state_dict_round_trip(name, kw, through_json):
    cls = getattr(LR, name)
    fo, _ = make_opts(momentum=0.9)
    sched = cls(fo, **kw)
    for _ in range(10):
        fo.step()
        sched.step()
    opt_sd, sched_sd = fo.state_dict(), sched.state_dict()
    if through_json:
        opt_sd = json.loads(json.dumps(opt_sd))
        sched_sd = json.loads(json.dumps(sched_sd))
    fo2, _ = make_opts(momentum=0.9, lrs=(0.7, 0.7))
    sched2 = cls(fo2, **kw)  # build the scheduler first, then load both (as PyTorch advises)
    fo2.load_state_dict(opt_sd)
    sched2.load_state_dict(sched_sd)
    assert sched2.last_epoch == 10 and sched2.get_last_lr() == sched.get_last_lr()
    for _ in range(10):
        fo.step()
        sched.step()
        fo2.step()
        sched2.step()
        assert sched2.get_last_lr() == sched.get_last_lr()
        assert fo2.param_groups[0]["momentum"] == fo.param_groups[0]["momentum"]


def test_reduce_lr_on_plateau_state_dict_round_trip():
    fo, _ = make_opts()
    sched = LR.ReduceLROnPlateau(fo, patience=1, cooldown=1)
    for m in METRICS[:12]:
        sched.step(m)
    fo2, _ = make_opts()
    sched2 = LR.ReduceLROnPlateau(fo2)
    fo2.load_state_dict(fo.state_dict())
    sched2.load_state_dict(sched.state_dict())
    for m in METRICS[12:]:
        sched.step(m)
        sched2.step(m)
        assert sched2.get_last_lr() == sched.get_last_lr()
    assert "optimizer" not in sched.state_dict()


def test_resuming_with_last_epoch_needs_initial_lr():
    fo, _ = make_opts()
    with pytest.raises(KeyError, match="initial_lr"):
        LR.StepLR(fo, step_size=3, last_epoch=5)
