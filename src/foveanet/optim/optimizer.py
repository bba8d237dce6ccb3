"""The Optimizer base class: parameter groups, per-parameter state, zero_grad, state_dict.

An optimizer holds ``param_groups``, a list of dicts, each with its ``params`` (a list of leaf
tensors) and its own copy of every hyper-parameter (``lr``, ``momentum``, ...; missing ones are
taken from the constructor's ``defaults``). ``state`` maps each parameter to a dict of NumPy arrays
and numbers (momentum buffers, moment estimates, the step count), created lazily on its first
update. ``step()`` updates ``p.data`` in place with NumPy: no graph is built and parameters whose
``grad`` is ``None`` are skipped.

``state_dict()`` has PyTorch's layout, with parameters replaced by their position in the order
they appear in the groups::

    {'state': {0: {'step': 3, 'exp_avg': array(...), ...}, 1: {...}},
     'param_groups': [{'lr': 0.001, 'betas': (0.9, 0.999), ..., 'params': [0, 1]}]}

Its values are NumPy arrays, numbers, strings, booleans, tuples and lists, so a checkpoint writer
can store the arrays as safetensors and the rest as JSON; ``load_state_dict`` accepts the result
back (string keys, lists for tuples, 0-d arrays for numbers).
"""
from __future__ import annotations

import copy
import warnings
from collections import defaultdict

from ..autograd import Tensor, enable_grad
from ..backend import xp


class _RequiredParameter:
    """Marks a hyper-parameter that has no default: every group must give it."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


def _check_range(name, value, low=0.0, high=None, high_open=True, low_open=False):
    """ValueError in PyTorch's words (``Invalid learning rate: -1``) when value is out of range."""
    ok = value > low if low_open else value >= low
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        raise ValueError(f"Invalid {name}: {value}")


def _writable_copy(arr, dtype):
    return xp.array(arr, dtype=dtype, copy=True)


class Optimizer:
    """Base class of all optimizers (PyTorch's ``torch.optim.Optimizer``).

    ``params``: an iterable of tensors, or of dicts (parameter groups) each with a ``params`` entry
    and any per-group options. ``defaults``: the options of groups that do not set them.
    Subclasses implement ``step`` and may override ``_validate(group)`` to check hyper-parameters.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self._validate(self.defaults)
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got a Tensor")
        if isinstance(params, dict):
            params = [params]
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict] = []
        groups = list(params)
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------------------- groups
    def _validate(self, group: dict) -> None:
        """Raise ValueError for invalid hyper-parameters of one group (or of the defaults)."""

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters, with its own options, to ``param_groups`` (e.g. layers
        unfrozen while fine-tuning). Options it does not give are taken from ``defaults``."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        group = dict(param_group)  # the caller's dict is left as it was
        if "params" not in group:
            raise ValueError("a parameter group needs a 'params' entry")
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but "
                            "the ordering of tensors in sets will change between runs. Please use "
                            "a list instead.")
        else:
            params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names:
            if len(names) != len(params):
                raise ValueError("all optimizer params should be with/without names. Some param "
                                 "names are missing")
            group["param_names"] = names
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                f"{type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        group["params"] = params
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError("parameter group didn't specify a value of required optimization "
                                 f"parameter {name}")
            group.setdefault(name, default)
        self._validate(group)
        if len({id(p) for p in params}) != len(params):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; in "
                          "future, this will cause an error", stacklevel=3)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    # ---------------------------------------------------------------------------- gradients
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: ``p.grad = None`` (default), or fill them with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    g = p.grad.data
                    if isinstance(g, xp.ndarray) and g.flags.writeable and g.flags.owndata:
                        g.fill(0)
                    else:  # a read-only or borrowed array (e.g. a broadcast gradient)
                        p.grad.data = xp.zeros_like(g)

    def step(self, closure=None):
        """Update every parameter that has a gradient; ``closure`` (optional) re-evaluates the
        loss (with gradients) and its result is returned."""
        raise NotImplementedError

    @staticmethod
    def _run_closure(closure):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    def _params_with_grad(self, group):
        for p in group["params"]:
            if p.grad is not None:
                yield p, p.grad.data, self.state[p]

    # --------------------------------------------------------------------------- state dict
    def state_dict(self) -> dict:
        """``{'state': {index: {name: array or number}}, 'param_groups': [{..., 'params':
        [indices]}]}``: copies, so later steps do not change a saved dict."""
        index: dict[int, int] = {}
        groups = []
        start = 0
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            for i, p in enumerate(group["params"], start):
                index.setdefault(id(p), i)
            packed["params"] = [index[id(p)] for p in group["params"]]
            start += len(packed["params"])
            groups.append(packed)
        state = {}
        for p, s in self.state.items():
            if id(p) in index and s:
                state[index[id(p)]] = {k: (v.copy() if isinstance(v, xp.ndarray) else copy.deepcopy(v))
                                       for k, v in s.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what ``state_dict`` saved, into an optimizer over parameters of the same shapes
        in the same groups (ValueError otherwise). Arrays are copied and cast to the parameter's
        dtype; the saved group options replace the current ones."""
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict:
            raise ValueError("expected a dict with 'state' and 'param_groups' (from state_dict())")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has a different number of parameter groups "
                             f"({len(saved_groups)}) than the optimizer ({len(self.param_groups)})")
        for i, (g, s) in enumerate(zip(self.param_groups, saved_groups)):
            if len(s["params"]) != len(g["params"]):
                raise ValueError(f"loaded state dict contains a parameter group ({i}) with "
                                 f"{len(s['params'])} parameters, but the optimizer's group has "
                                 f"{len(g['params'])}: the parameter lists do not match")
        by_index = {}
        for g, s in zip(self.param_groups, saved_groups):
            for k, p in zip(s["params"], g["params"]):
                by_index[int(k)] = p
        saved_state = state_dict.get("state", {})
        if not isinstance(saved_state, dict) or \
                not all(isinstance(v, dict) for v in saved_state.values()):
            raise ValueError("the state dict's 'state' must map parameter indices to dicts of "
                             "that parameter's state")
        new_state: defaultdict = defaultdict(dict)
        for k, values in saved_state.items():
            p = by_index.get(int(k))
            if p is None:
                continue
            new_state[p] = {name: self._load_value(name, v, p, k) for name, v in values.items()}
        new_groups = []
        for g, s in zip(self.param_groups, saved_groups):
            group = {}
            for name, v in s.items():
                if name == "params":
                    continue
                v = copy.deepcopy(v)
                if isinstance(g.get(name), tuple) and isinstance(v, list):
                    v = tuple(v)  # betas stored as a JSON list
                group[name] = v
            group["params"] = g["params"]
            self._validate(group)  # saved options are checked like given ones, before any change
            new_groups.append(group)
        self.state = new_state
        self.param_groups = new_groups

    @staticmethod
    def _load_value(name, v, p, k):
        if isinstance(v, Tensor):
            v = v.data
        if not isinstance(v, xp.ndarray) and not isinstance(v, xp.generic):
            return copy.deepcopy(v)
        v = xp.asarray(v)
        if name == "step" or (v.ndim == 0 and p.data.ndim != 0):
            return v.item()
        if v.shape != p.data.shape:
            raise ValueError(f"loaded state of parameter {k} has '{name}' of shape "
                             f"{tuple(v.shape)}, but the parameter has shape {tuple(p.data.shape)}")
        dtype = p.data.dtype if xp.issubdtype(v.dtype, xp.floating) else v.dtype
        return _writable_copy(v, dtype)

    # ---------------------------------------------------------------------------------- misc
    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _direction(grad, param, weight_decay, maximize):
    """``(-grad if maximize else grad) + weight_decay * param``, as a new array only when needed
    (the result must then not be written to unless ``owned`` is True). Returns (array, owned)."""
    if weight_decay != 0:
        d = xp.multiply(param, weight_decay)
        if maximize:
            xp.subtract(d, grad, out=d)
        else:
            xp.add(d, grad, out=d)
        return d, True
    if maximize:
        return xp.negative(grad), True
    return grad, False


def _lerp_(a, b, weight):
    """``a += weight * (b - a)`` in place, evaluated as PyTorch's ``lerp_`` does."""
    diff = xp.subtract(b, a)
    if abs(weight) < 0.5:
        diff *= weight
        a += diff
    else:
        diff *= (1.0 - weight)
        xp.subtract(b, diff, out=a)
    return a
