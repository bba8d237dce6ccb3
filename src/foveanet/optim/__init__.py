"""Optimizers, learning-rate schedules and weight penalties (PyTorch's ``torch.optim``).

    opt = fv.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = fv.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)
    for epoch in range(100):
        for x, y in loader:
            opt.zero_grad()
            loss = criterion(model(x), y) + fv.optim.l2_penalty(weights, 1e-3)   # optional
            loss.backward()
            opt.step()
        sched.step()

By name (the names of ``foveanet train --optimizer`` / ``--scheduler``)::

    opt = fv.optim.create("adamw", model.parameters(), lr=3e-3, weight_decay=5e-4)
    sched, interval = fv.optim.create_scheduler("cosine", opt, epochs=100)

Optimizers: SGD (momentum, Nesterov), Adam, AdamW, RMSprop; all update ``p.data`` in place with
NumPy, match PyTorch's update formulas, and save/restore with ``state_dict``/``load_state_dict``.
LBFGS (with the strong-Wolfe line search) re-evaluates the loss within a step, so its
``step(closure)`` needs a closure; it is not one of the names above (``foveanet train`` steps
without one).
"""
from . import lr_scheduler  # noqa: F401
from .adam import Adam, AdamW  # noqa: F401
from .factory import OPTIMIZERS, SCHEDULERS, create, create_scheduler, scheduler_options  # noqa: F401
from .lbfgs import LBFGS  # noqa: F401
from .optimizer import Optimizer, required  # noqa: F401
from .regularization import Regularizer, l1_penalty, l2_penalty, penalty  # noqa: F401
from .rmsprop import RMSprop  # noqa: F401
from .sgd import SGD  # noqa: F401

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "LBFGS", "lr_scheduler", "l1_penalty",
           "l2_penalty", "penalty", "Regularizer", "required",
           "create", "create_scheduler", "scheduler_options", "OPTIMIZERS", "SCHEDULERS"]
