"""Optimizers and learning-rate schedules by name, beside ``fv.models.create``::

    opt = fv.optim.create("momentum", model.parameters(), lr=0.05, weight_decay=5e-4)
    sched, interval = fv.optim.create_scheduler("onecycle", opt, epochs=10, steps_per_epoch=390,
                                                interval="batch")

These are the names ``foveanet train --optimizer`` / ``--scheduler`` take, and the objects it
trains with. ``create`` passes its options to the optimizer's class (so the class's defaults
apply); ``create_scheduler`` plans the schedule for a run of ``epochs`` epochs, as
``foveanet.recipes.SCHEDULES`` describes, and says whether to step it per epoch or per batch.
"""
from __future__ import annotations

import inspect

from . import lr_scheduler as ls
from .adam import Adam, AdamW
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["OPTIMIZERS", "SCHEDULERS", "create", "create_scheduler", "scheduler_options"]

# name -> (class, the options it gets unless they are given)
_OPTIMIZERS = {
    "sgd": (SGD, {}),
    "momentum": (SGD, {"momentum": 0.9}),  # SGD with the lecture's momentum
    "adam": (Adam, {}),
    "adamw": (AdamW, {}),
    "rmsprop": (RMSprop, {}),
}
OPTIMIZERS = tuple(_OPTIMIZERS)

# optimizers whose step re-evaluates the loss through a closure: the trainer's steps have none,
# so they are built by hand, never by name here
_NEED_A_CLOSURE = {"lbfgs": "LBFGS"}

# name -> its options and their defaults (the values of foveanet.recipes.SCHEDULES)
_SCHEDULER_OPTIONS = {
    "step": {"step_size_fraction": 1 / 3, "gamma": 0.1},
    "multistep": {"milestones": (0.5, 0.75), "gamma": 0.1},
    "cosine": {"eta_min": 0.0},
    "onecycle": {"max_lr": None, "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4,
                 "cycle_momentum": None},
    "plateau": {"factor": 0.1, "patience": 2},
}
SCHEDULERS = tuple(_SCHEDULER_OPTIONS)


def _options_of(cls) -> list:
    return [k for k, p in inspect.signature(cls).parameters.items()
            if k not in ("self", "params") and p.kind is not p.VAR_KEYWORD]


def create(name: str, params, lr: float, **options):
    """The optimizer called ``name`` (one of ``OPTIMIZERS``) over ``params`` with learning rate
    ``lr``; ``options`` go to its class (``momentum``, ``weight_decay``, ``betas``, ...).
    ``'momentum'`` is SGD with ``momentum=0.9`` unless ``momentum`` is given.

    Raises ValueError for an unknown name (and for ``'lbfgs'``: LBFGS steps need a closure,
    which the trainer's steps do not have) and TypeError for an option the class does not take
    (Adam's ``momentum``, say), naming the options it does take."""
    key = str(name).lower()
    if key in _NEED_A_CLOSURE:
        cls_name = _NEED_A_CLOSURE[key]
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)} "
                         f"(fv.optim.{cls_name} exists, but it evaluates the loss several times "
                         "per step through a closure, and the steps of `foveanet train` and the "
                         f"Trainer have none: build fv.optim.{cls_name}(params, ...) yourself and "
                         "call opt.step(closure))")
    if key not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    cls, defaults = _OPTIMIZERS[key]
    allowed = _options_of(cls)
    for option in options:
        if option not in allowed:
            hint = " (its beta1 plays that role)" if option == "momentum" else ""
            raise TypeError(f"optimizer {key!r} has no option {option!r}{hint}; its options: "
                            f"{', '.join(k for k in allowed if k != 'lr')}")
    return cls(params, lr=lr, **{**defaults, **options})


def scheduler_options(name: str) -> dict:
    """The options of the scheduler called ``name`` and their defaults."""
    key = str(name).lower()
    if key not in _SCHEDULER_OPTIONS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of none, {', '.join(SCHEDULERS)}")
    return dict(_SCHEDULER_OPTIONS[key])


def _has_momentum(optimizer) -> bool:
    """Whether OneCycleLR has a momentum (or Adam's beta1) to cycle in every group."""
    return all("betas" in g or bool(g.get("momentum")) for g in optimizer.param_groups)


def create_scheduler(name, optimizer, *, epochs: int, steps_per_epoch: int = 1,
                     interval: str = "epoch", **options):
    """``(scheduler, interval)``: the learning-rate schedule called ``name`` for ``optimizer``,
    planned for ``epochs`` epochs of ``steps_per_epoch`` optimizer steps, and how to step it
    (``'epoch'`` or ``'batch'``: the Trainer's ``scheduler_interval``). ``name`` None or
    ``'none'`` gives ``(None, 'epoch')``.

    ``interval`` is how you would like it stepped: ``cosine`` and ``onecycle`` follow it (their
    length is ``epochs`` or ``epochs * steps_per_epoch`` steps); ``step``, ``multistep`` and
    ``plateau`` are epoch schedules and always answer ``'epoch'``. Options
    (``scheduler_options(name)`` lists them with their defaults):

    - ``step``: StepLR every ``max(1, round(epochs * step_size_fraction))`` epochs, by ``gamma``;
    - ``multistep``: MultiStepLR by ``gamma`` at the epochs ``max(1, round(epochs * f))`` for
      each fraction ``f`` in ``milestones``;
    - ``cosine``: CosineAnnealingLR down to ``eta_min``;
    - ``onecycle``: OneCycleLR up to ``max_lr`` (default: the optimizer's learning rate) with
      ``pct_start``, ``div_factor``, ``final_div_factor``; ``cycle_momentum`` defaults to whether
      the optimizer has a momentum or betas to cycle;
    - ``plateau``: ReduceLROnPlateau by ``factor`` after ``patience`` epochs without progress
      (step it with the monitored value)."""
    if name is None or str(name).lower() == "none":
        return None, "epoch"
    key = str(name).lower()
    defaults = scheduler_options(key)
    unknown = [k for k in options if k not in defaults]
    if unknown:
        raise TypeError(f"scheduler {key!r} has no option {unknown[0]!r}; its options: "
                        f"{', '.join(defaults) or 'none'}")
    if interval not in ("epoch", "batch"):
        raise ValueError(f"interval must be 'epoch' or 'batch', got {interval!r}")
    for what, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"create_scheduler: {what} must be a positive integer, got {v!r}")
    o = {**defaults, **options}
    E = epochs
    if key == "step":
        size = max(1, round(E * o["step_size_fraction"]))
        return ls.StepLR(optimizer, step_size=size, gamma=o["gamma"]), "epoch"
    if key == "multistep":
        miles = sorted({max(1, round(E * f)) for f in o["milestones"]})
        return ls.MultiStepLR(optimizer, milestones=miles, gamma=o["gamma"]), "epoch"
    if key == "plateau":
        return ls.ReduceLROnPlateau(optimizer, factor=o["factor"], patience=o["patience"]), "epoch"
    steps = E * steps_per_epoch if interval == "batch" else E
    if key == "cosine":
        return ls.CosineAnnealingLR(optimizer, T_max=steps, eta_min=o["eta_min"]), interval
    # onecycle
    max_lr = o["max_lr"]
    if max_lr is None:
        rates = [g["lr"] for g in optimizer.param_groups]
        max_lr = rates[0] if len(rates) == 1 else rates
    cycle = _has_momentum(optimizer) if o["cycle_momentum"] is None else bool(o["cycle_momentum"])
    return ls.OneCycleLR(optimizer, max_lr=max_lr, total_steps=steps,
                         pct_start=float(o["pct_start"]), div_factor=o["div_factor"],
                         final_div_factor=o["final_div_factor"], cycle_momentum=cycle), interval
