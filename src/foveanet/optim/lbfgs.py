"""L-BFGS: a quasi-Newton method that builds its curvature model from the last gradients.

Exactly PyTorch's ``torch.optim.LBFGS`` (itself a port of Lua torch's ``optim.lbfgs`` and
``lswolfe``), iterate for iterate, including the optional strong-Wolfe line search. Unlike the
other optimizers one ``step(closure)`` runs up to ``max_iter`` iterations and evaluates the loss
several times, so it needs a closure that re-evaluates it::

    opt = fv.optim.LBFGS([image], lr=1, max_iter=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = style_loss(image)
        loss.backward()
        return loss

    for _ in range(10):
        opt.step(closure)           # returns the loss of the first evaluation

One iteration (g the gradient of all parameters flattened into one vector, s/y the last
``history_size`` steps and gradient changes with ``y.s > 1e-10``)::

    d = -g                                   first iteration ever
    d = -H g                                 afterwards: the two-loop recursion over (s, y), with
                                             H0 = (y.s / y.y) I from the newest pair
    t = min(1, 1 / sum|g|) * lr              first iteration ever, else t = lr
    w = w + t d                              or t from the strong-Wolfe line search (which
                                             evaluates the closure at trial points w + t d)

and the step stops after ``max_iter`` iterations, ``max_eval`` evaluations, when
``max|g| <= tolerance_grad``, ``g.d > -tolerance_change``, ``max|t d| <= tolerance_change`` or the
loss changed by less than ``tolerance_change``.

Why it is written as it is:

- The whole state is global (there are no per-parameter buffers), so, as in PyTorch, it is kept
  under the first parameter (``state[params[0]]``), and only one parameter group is allowed.
- The scalars PyTorch keeps as 0-d tensors (``y.s``, ``ro``, ``H_diag``, ``g.d`` in the line
  search) are NumPy scalars of the parameters' dtype here, and the ones it keeps as Python floats
  (the losses) are Python floats. NumPy's promotion of Python numbers (NEP 50) is PyTorch's: a
  float32 scalar times a Python float is float32. So float32 runs round where PyTorch rounds, and
  where PyTorch divides a number by a 0-d tensor as ``reciprocal() * number`` so does
  ``_cubic_interpolate`` (a branch of the line search can hang on that bit). What remains are
  last-bit differences of the vector kernels (PyTorch's dot products, fused multiply-adds and
  sqrt round differently from NumPy's), which L-BFGS carries along: float64 runs agree with
  PyTorch's to ~1e-10 and take the same number of evaluations; float32 ones drift further.
- ``state_dict()`` follows the other optimizers' layout (``{'state': {0: {...}}, 'param_groups':
  [...]}``), with the flat vectors ``d`` and ``prev_flat_grad`` as arrays of the parameters' total
  size, the history ``old_dirs`` / ``old_stps`` as lists of such arrays, and the scalars (``t``,
  ``H_diag``, ``ro``, ``al``, ``prev_loss``) as Python numbers (exact: a float32 value is a
  double), so the rest is plain JSON. ``load_state_dict`` casts them back to the parameters'
  dtype: a resumed optimisation continues bit for bit like an uninterrupted one.
"""
from __future__ import annotations

import copy
import numbers

from ..autograd import Tensor
from ..backend import xp
from .optimizer import Optimizer, _check_range

LINE_SEARCHES = (None, "strong_wolfe")

# the entries of the state: flat vectors, lists of flat vectors, lists of scalars, scalars
_VECTORS = ("d", "prev_flat_grad")
_HISTORIES = ("old_dirs", "old_stps")
_SCALAR_LISTS = ("ro", "al")
_SCALARS = ("t", "H_diag")
_COUNTS = ("func_evals", "n_iter")

_CLOSURE_HELP = ("LBFGS.step needs a closure that zeroes the gradients, computes the loss, calls "
                 "backward() and returns the loss: def closure(): opt.zero_grad(); loss = ...; "
                 "loss.backward(); return loss, then opt.step(closure)")


def _rdiv(num, den):
    """``num / den`` as PyTorch evaluates it where ``den`` is a 0-d tensor (a NumPy scalar here)
    and ``num`` a Python number: ``den.reciprocal() * num``, two roundings. The line search's
    branches can hang on that last bit (a cubic through two points of equal slope)."""
    if isinstance(den, xp.generic) and not isinstance(num, xp.generic):
        return (1.0 / den) * num
    return num / den


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimiser of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2, clamped to
    ``bounds`` (default: between x1 and x2); the middle when the cubic has no minimum."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - _rdiv(3 * (f1 - f2), x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square >= 0:
        d2 = xp.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9,
                  max_ls=25):
    """A step ``t`` along ``d`` from ``x`` meeting the strong Wolfe conditions (sufficient decrease
    ``c1``, curvature ``c2``): bracket, then zoom by cubic interpolation, as PyTorch's
    ``_strong_wolfe``. ``obj_func(x, t, d)`` gives the loss (a float) and the flat gradient at
    ``x + t d``. Returns (loss, flat gradient, t, evaluations)."""
    d_norm = xp.abs(d).max()
    g = g.copy()
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = xp.dot(g_new, d)

    # bracket an interval containing a point satisfying the Wolfe criteria
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        # extrapolate
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                               bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = xp.dot(g_new, d)
        ls_iter += 1

    if ls_iter == max_ls:  # no bracket found within the evaluations allowed
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # zoom: shrink the bracket until a point satisfies the criteria
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0],
                               bracket[1], bracket_f[1], bracket_gtd[1])
        # a trial too close to an end of the bracket (twice, or on it) moves to 10% inside
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False

        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = xp.dot(g_new, d)
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # no sufficient decrease, or not below the lowest point: t is the new high end
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.copy(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True  # the Wolfe conditions hold
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                # the old high end becomes the low end
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            # t is the new low end
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.copy(), gtd_new

    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _plain(v):
    """A state value for ``state_dict``: NumPy scalars as Python numbers, lists copied."""
    if isinstance(v, xp.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(u) for u in v]
    if isinstance(v, xp.ndarray):
        return v.copy()
    return copy.deepcopy(v)


class LBFGS(Optimizer):
    """``LBFGS(params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7,
    tolerance_change=1e-9, history_size=100, line_search_fn=None)``: PyTorch's L-BFGS.

    ``max_eval`` defaults to ``max_iter * 5 // 4``; ``line_search_fn`` is None (fixed steps of
    ``lr``) or ``'strong_wolfe'``. One parameter group only. ``step(closure)`` is required to have
    a closure and returns its first loss. State (under the first parameter): ``func_evals``,
    ``n_iter``, ``d``, ``t``, ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``,
    ``prev_loss``, ``al``. Memory: ``2 * history_size + 3`` vectors of all the parameters' size.
    """

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None):
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval,
                        tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                        history_size=history_size, line_search_fn=line_search_fn)
        super().__init__(params, defaults)

    def _validate(self, group):
        if isinstance(group["lr"], Tensor):
            if group["lr"].numel() != 1:
                raise ValueError("Tensor lr must be 1-element")
            group["lr"] = group["lr"].item()
        _check_range("learning rate", group["lr"])
        for name in ("max_iter", "max_eval"):
            if not _is_int(group[name]) or group[name] < 0:
                raise ValueError(f"LBFGS: {name} must be a non-negative integer, got "
                                 f"{group[name]!r}")
        if not _is_int(group["history_size"]) or group["history_size"] < 1:
            raise ValueError(f"LBFGS: history_size must be a positive integer, got "
                             f"{group['history_size']!r}")
        if group["line_search_fn"] not in LINE_SEARCHES:
            raise ValueError(f"LBFGS: line_search_fn must be None or 'strong_wolfe', got "
                             f"{group['line_search_fn']!r}")

    def add_param_group(self, param_group):
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)

    # ---------------------------------------------------------------- the flat parameter vector
    @property
    def _params(self):
        return self.param_groups[0]["params"]

    def _numel(self) -> int:
        return sum(int(p.data.size) for p in self._params)

    def _flat_dtype(self):
        return xp.result_type(*[p.data.dtype for p in self._params])

    def _gather_flat_grad(self):
        """All gradients as one new vector, zeros for parameters without one."""
        views = []
        for i, p in enumerate(self._params):
            if p.grad is None:
                views.append(xp.zeros(p.data.size, dtype=p.data.dtype))
                continue
            g = p.grad.data
            if g.size != p.data.size:
                raise ValueError(f"LBFGS: parameter {i} has shape {tuple(p.data.shape)} but its "
                                 f"gradient has shape {tuple(g.shape)}")
            views.append(g.reshape(-1))
        return xp.concatenate(views)

    def _add_grad(self, step_size, update) -> None:
        """``w += step_size * update``, each parameter with its slice of ``update``."""
        offset = 0
        for p in self._params:
            w = p.data
            n = w.size
            w += (step_size * update[offset:offset + n]).reshape(w.shape)
            offset += n

    def _clone_param(self):
        return [p.data.copy() for p in self._params]

    def _set_param(self, params_data) -> None:
        for p, data in zip(self._params, params_data):
            xp.copyto(p.data, data)

    def _evaluate(self, closure):
        """(what the closure returned, the loss as a float), with gradients on."""
        out = self._run_closure(closure)
        if out is None:
            raise TypeError("LBFGS: the closure returned None; it must return the loss (after "
                            "calling loss.backward())")
        return out, float(out)

    def _directional_evaluate(self, closure, x, t, d):
        self._add_grad(t, d)
        _, loss = self._evaluate(closure)
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    # ----------------------------------------------------------------------------- the step
    def step(self, closure=None):
        """Up to ``max_iter`` L-BFGS iterations; ``closure`` re-evaluates the loss with its
        gradients. Returns the closure's result at the first evaluation."""
        if closure is None or not callable(closure):
            raise TypeError(_CLOSURE_HELP + (f" (got {type(closure).__name__})"
                                             if closure is not None else ""))
        with xp.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return self._step(closure)

    def _step(self, closure):
        group = self.param_groups[0]
        lr = group["lr"]
        max_iter, max_eval = group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        line_search_fn, history_size = group["line_search_fn"], group["history_size"]

        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss, loss = self._evaluate(closure)
        current_evals = 1
        state["func_evals"] += 1

        flat_grad = self._gather_flat_grad()
        opt_cond = xp.abs(flat_grad).max() <= tolerance_grad
        if opt_cond:
            return orig_loss

        d = state.get("d")
        t = state.get("t")
        old_dirs = state.get("old_dirs")
        old_stps = state.get("old_stps")
        ro = state.get("ro")
        H_diag = state.get("H_diag")
        prev_flat_grad = state.get("prev_flat_grad")
        prev_loss = state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # ---------------------------------------------------------------- the direction
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                H_diag = 1
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = xp.dot(y, s)
                if ys > 1e-10:  # keep the pair only where the curvature is positive
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    H_diag = ys / xp.dot(y, y)

                # the two-loop recursion: d = -H g
                num_old = len(old_dirs)
                if "al" not in state:
                    state["al"] = [None] * history_size
                al = state["al"]
                q = -flat_grad
                for i in range(num_old - 1, -1, -1):
                    al[i] = xp.dot(old_stps[i], q) * ro[i]
                    q -= al[i] * old_dirs[i]
                d = r = q * H_diag
                for i in range(num_old):
                    be_i = xp.dot(old_dirs[i], r) * ro[i]
                    r += (al[i] - be_i) * old_stps[i]

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.copy()
            else:
                xp.copyto(prev_flat_grad, flat_grad)
            prev_loss = loss

            # -------------------------------------------------------------- the step length
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / xp.abs(flat_grad).sum()) * lr
            else:
                t = lr

            gtd = xp.dot(flat_grad, d)  # the directional derivative
            if gtd > -tolerance_change:
                break

            ls_func_evals = 0
            if line_search_fn is not None:
                x_init = self._clone_param()

                def obj_func(x, t, d):
                    return self._directional_evaluate(closure, x, t, d)

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                    obj_func, x_init, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals)
                self._add_grad(t, d)
                opt_cond = xp.abs(flat_grad).max() <= tolerance_grad
            else:
                self._add_grad(t, d)
                if n_iter != max_iter:
                    # not after the last iteration: the next step evaluates there anyway
                    _, loss = self._evaluate(closure)
                    flat_grad = self._gather_flat_grad()
                    opt_cond = xp.abs(flat_grad).max() <= tolerance_grad
                    ls_func_evals = 1

            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            # ------------------------------------------------------------------- stopping
            if n_iter == max_iter:
                break
            if current_evals >= max_eval:
                break
            if opt_cond:
                break
            if xp.abs(d * t).max() <= tolerance_change:  # no progress in the parameters
                break
            if abs(loss - prev_loss) < tolerance_change:  # no progress in the loss
                break

        state["d"] = d
        state["t"] = t
        state["old_dirs"] = old_dirs
        state["old_stps"] = old_stps
        state["ro"] = ro
        state["H_diag"] = H_diag
        state["prev_flat_grad"] = prev_flat_grad
        state["prev_loss"] = prev_loss
        return orig_loss

    # --------------------------------------------------------------------------- state dict
    def state_dict(self) -> dict:
        """The other optimizers' layout; the global state is that of parameter 0. Vectors are
        arrays of the parameters' total size, the history lists of them, scalars Python numbers
        (``al`` may hold None, as PyTorch's)."""
        sd = super().state_dict()
        sd["state"] = {k: {name: _plain(v) for name, v in s.items()}
                       for k, s in sd["state"].items()}
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what ``state_dict`` saved (arrays and numbers, lists for the history; also
        after a JSON round trip), cast to the parameters' dtype; ValueError for state of another
        parameter than the first, vectors of another size or histories of unequal lengths."""
        if isinstance(state_dict, dict) and isinstance(state_dict.get("state"), dict) \
                and isinstance(state_dict.get("param_groups"), list) and state_dict["param_groups"]:
            first = state_dict["param_groups"][0].get("params") or [0]
            for k, values in state_dict["state"].items():
                if str(k) != str(first[0]):
                    raise ValueError(f"LBFGS keeps its state under its first parameter "
                                     f"({first[0]}), but the state dict has state for parameter "
                                     f"{k}: not an LBFGS state dict, or its parameters reordered")
                if isinstance(values, dict):
                    lengths = {name: len(values[name]) for name in ("old_dirs", "old_stps", "ro")
                               if isinstance(values.get(name), (list, tuple))}
                    if len(set(lengths.values())) > 1:
                        raise ValueError(f"loaded LBFGS state has histories of different lengths "
                                         f"{lengths}: they must be equal")
        super().load_state_dict(state_dict)

    def _load_value(self, name, v, p, k):
        dtype, n = self._flat_dtype(), self._numel()

        def vector(a, what):
            if isinstance(a, Tensor):
                a = a.data
            a = xp.asarray(a)
            if a.shape != (n,):
                raise ValueError(f"loaded LBFGS state has '{what}' of shape {tuple(a.shape)}, but "
                                 f"the parameters have {n} elements in all: expected ({n},)")
            if not xp.issubdtype(a.dtype, xp.floating):
                raise ValueError(f"loaded LBFGS state has '{what}' of dtype {a.dtype}: expected "
                                 "floating point")
            return xp.array(a, dtype=dtype, copy=True)

        def scalar(a, what):
            if isinstance(a, Tensor):
                a = a.data
            if isinstance(a, xp.ndarray):
                if a.size != 1:
                    raise ValueError(f"loaded LBFGS state has '{what}' of shape "
                                     f"{tuple(a.shape)}: expected a number")
                a = a.reshape(()).item()
            if isinstance(a, xp.generic):
                a = a.item()
            if _is_int(a):
                return int(a)
            if isinstance(a, float):
                return dtype.type(a)
            raise ValueError(f"loaded LBFGS state has '{what}' = {a!r:.40}: expected a number")

        if v is None:
            return None
        if name in _COUNTS:
            c = scalar(v, name)
            if not _is_int(c) and float(c).is_integer():
                c = int(c)
            if not _is_int(c) or c < 0:
                raise ValueError(f"loaded LBFGS state has '{name}' = {v!r}: expected a "
                                 "non-negative integer")
            return c
        if name == "prev_loss":
            return float(scalar(v, name))
        if name in _VECTORS:
            return vector(v, name)
        if name in _SCALARS:
            return scalar(v, name)
        if name in _HISTORIES or name in _SCALAR_LISTS:
            if not isinstance(v, (list, tuple)):
                raise ValueError(f"loaded LBFGS state has '{name}' of type {type(v).__name__}: "
                                 "expected a list")
            if name in _HISTORIES:
                return [vector(a, f"{name}[{i}]") for i, a in enumerate(v)]
            return [None if a is None else scalar(a, f"{name}[{i}]") for i, a in enumerate(v)]
        return copy.deepcopy(v)
