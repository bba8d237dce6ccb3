"""``fv.optim.create`` / ``create_scheduler``: the optimizers and schedules of ``foveanet train``
by name, the same objects (and so the same numbers) as building the classes by hand, and clear
errors."""
import numpy as np
import pytest

import foveanet as fv
from foveanet.optim import lr_scheduler as ls
from foveanet.recipes import SCHEDULES


def _params():
    fv.manual_seed(0)
    return [fv.randn(4, 3, requires_grad=True), fv.randn(3, requires_grad=True)]


def _steps(opt, params, n=3):
    """n optimizer steps with fixed gradients; the parameters after them."""
    for i in range(n):
        for p in params:
            p.grad = fv.ones_like(p) * (0.5 + i)
        opt.step()
    return [p.detach().numpy().copy() for p in params]


@pytest.mark.parametrize("name, by_hand", [
    ("sgd", lambda ps: fv.optim.SGD(ps, lr=0.1, weight_decay=1e-3)),
    ("momentum", lambda ps: fv.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3)),
    ("adam", lambda ps: fv.optim.Adam(ps, lr=0.1, weight_decay=1e-3)),
    ("adamw", lambda ps: fv.optim.AdamW(ps, lr=0.1, weight_decay=1e-3)),
    ("rmsprop", lambda ps: fv.optim.RMSprop(ps, lr=0.1, weight_decay=1e-3)),
])
def test_create_is_the_class_by_hand(name, by_hand):
    a, b = _params(), _params()
    got, want = fv.optim.create(name, a, lr=0.1, weight_decay=1e-3), by_hand(b)
    assert type(got) is type(want)
    strip = lambda g: {k: v for k, v in g.items() if k != "params"}  # noqa: E731
    assert [strip(g) for g in got.param_groups] == [strip(g) for g in want.param_groups]
    for x, y in zip(_steps(got, a), _steps(want, b)):
        np.testing.assert_array_equal(x, y)


def test_create_options_and_errors():
    group = lambda *a, **k: fv.optim.create(*a, **k).param_groups[0]  # noqa: E731
    assert group("momentum", _params(), lr=0.1, momentum=0.5)["momentum"] == 0.5
    assert group("SGD", _params(), lr=0.1)["momentum"] == 0
    assert group("adamw", _params(), lr=0.1)["weight_decay"] == 1e-2  # the class's default
    assert fv.optim.OPTIMIZERS == ("sgd", "momentum", "adam", "adamw", "rmsprop")
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'; choose one of sgd, momentum"):
        fv.optim.create("lbfgs", _params(), lr=0.1)
    with pytest.raises(TypeError, match="'adam' has no option 'momentum' .its beta1 plays that"):
        fv.optim.create("adam", _params(), lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="'sgd' has no option 'betas'; its options: momentum"):
        fv.optim.create("sgd", _params(), lr=0.1, betas=(0.9, 0.99))


def _lrs(opt, sched, steps):
    out = []
    for i in range(steps):
        opt.step()
        if isinstance(sched, ls.ReduceLROnPlateau):
            sched.step(1.0)
        else:
            sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


# the schedules as foveanet train built them before the factory, for E epochs of S batches
BY_HAND = {
    "step": lambda o, E, S: (ls.StepLR(o, step_size=max(1, round(E / 3)), gamma=0.1), E),
    "multistep": lambda o, E, S: (ls.MultiStepLR(o, milestones=sorted(
        {max(1, round(E * f)) for f in (0.5, 0.75)}), gamma=0.1), E),
    "plateau": lambda o, E, S: (ls.ReduceLROnPlateau(o, factor=0.1, patience=2), E),
    "cosine": lambda o, E, S: (ls.CosineAnnealingLR(o, T_max=E * S, eta_min=0.0), E * S),
    "onecycle": lambda o, E, S: (ls.OneCycleLR(o, max_lr=0.1, total_steps=E * S, pct_start=0.3,
                                               div_factor=25.0, final_div_factor=1e4,
                                               cycle_momentum=True), E * S),
}


@pytest.mark.parametrize("name", sorted(BY_HAND))
def test_create_scheduler_is_the_schedule_by_hand(name):
    E, S = 7, 4
    a = fv.optim.create("momentum", _params(), lr=0.1)
    b = fv.optim.create("momentum", _params(), lr=0.1)
    got, interval = fv.optim.create_scheduler(name, a, epochs=E, steps_per_epoch=S,
                                              interval="batch")
    want, steps = BY_HAND[name](b, E, S)
    assert type(got) is type(want)
    assert interval == ("batch" if name in ("cosine", "onecycle") else "epoch")
    assert _lrs(a, got, steps) == _lrs(b, want, steps)


def test_scheduler_defaults_are_the_recipes():
    """The factory's defaults are the numbers of foveanet.recipes.SCHEDULES (which foveanet train
    passes), so Python and the command line plan the same schedules."""
    for name, options in SCHEDULES.items():
        defaults = fv.optim.scheduler_options(name)
        assert {k: defaults[k] for k in options} == {k: tuple(v) if isinstance(v, list) else v
                                                     for k, v in options.items()}, name
    assert set(SCHEDULES) == set(fv.optim.SCHEDULERS)


def test_create_scheduler_options_and_errors():
    opt = fv.optim.create("adam", _params(), lr=0.1)
    assert fv.optim.create_scheduler("none", opt, epochs=3) == (None, "epoch")
    assert fv.optim.create_scheduler(None, opt, epochs=3) == (None, "epoch")
    sched, interval = fv.optim.create_scheduler("cosine", opt, epochs=3)
    assert interval == "epoch" and sched.T_max == 3
    sched, _ = fv.optim.create_scheduler("step", opt, epochs=9, gamma=0.5)
    assert sched.step_size == 3 and sched.gamma == 0.5
    # onecycle cycles Adam's beta1, and a momentum only when there is one
    assert fv.optim.create_scheduler("onecycle", opt, epochs=3)[0].cycle_momentum
    plain = fv.optim.create("sgd", _params(), lr=0.1)
    assert not fv.optim.create_scheduler("onecycle", plain, epochs=3)[0].cycle_momentum
    with pytest.raises(ValueError, match="unknown scheduler 'warmup'; choose one of none, step"):
        fv.optim.create_scheduler("warmup", opt, epochs=3)
    with pytest.raises(TypeError, match="'cosine' has no option 'gamma'; its options: eta_min"):
        fv.optim.create_scheduler("cosine", opt, epochs=3, gamma=0.1)
    with pytest.raises(ValueError, match="interval must be 'epoch' or 'batch'"):
        fv.optim.create_scheduler("cosine", opt, epochs=3, interval="step")
    with pytest.raises(ValueError, match="epochs must be a positive integer, got 0"):
        fv.optim.create_scheduler("cosine", opt, epochs=0)
