"""Hopfield's network (1982): n binary neurons with states in {-1, +1}, symmetric couplings and no
self-coupling, storing patterns as fixed points of its dynamics (an associative memory).

Learning is one-shot: Hebb's rule W = (1/n) sum_mu xi^mu xi^mu^T (zero diagonal) or Storkey's
incremental rule (1997), which stores more patterns and copes better with correlated ones.
Recall runs the dynamics s_i <- sign(h_i), h = W s + b, from a (corrupted) pattern until nothing
changes. Asynchronous updates (one neuron at a time) never raise the energy
E = -1/2 s^T W s - b^T s and so end in a fixed point; synchronous ones (every neuron at once) may
end in a cycle of length two instead.

No gradients are involved: learning and recall work on the arrays directly (as the perceptron's
rule in ``perceptron.py``). The continuous, differentiable "modern" network of Ramsauer et al.
(2020) is ``fv.nn.Hopfield``.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import nn
from ..autograd import Tensor
from ..backend import get_default_dtype, xp
from ..random import Generator, numpy_rng

RULES = ("hebbian", "storkey")
MODES = ("async", "sync")


def _array(x):
    return x.data if isinstance(x, Tensor) else xp.asarray(x)


def _values(a, limit: int = 6) -> str:
    """A few of the distinct values of ``a``, for an error message."""
    vals = xp.unique(a[~xp.isnan(a)]) if xp.issubdtype(a.dtype, xp.floating) else xp.unique(a)
    shown = ", ".join(f"{v:g}" if isinstance(v, (float, xp.floating)) else str(v)
                      for v in vals[:limit].tolist())
    more = ", ..." if vals.size > limit else ""
    nan = " and NaN" if xp.issubdtype(a.dtype, xp.floating) and xp.isnan(a).any() else ""
    return f"{shown}{more}{nan}"


def to_bipolar(x, threshold=None, dtype=None) -> Tensor:
    """Patterns for a ``HopfieldNetwork``: 0/1 (or boolean) values as -1/+1 (``2 x - 1``).

    ``threshold=None`` (the default) accepts only 0, 1, False and True and raises a ValueError
    naming any other value; with a number (or an array that broadcasts against ``x``, such as
    one threshold per image), every value above ``threshold`` becomes +1 and the others -1
    (grey-scale images: ``to_bipolar(images, threshold=0.5)``). Returns a Tensor of
    ``dtype`` (the default float dtype when None) and the shape of ``x``."""
    a = _array(x)
    dt = get_default_dtype() if dtype is None else xp.dtype(dtype)
    if threshold is None:
        if a.dtype != xp.bool_:
            if not (xp.issubdtype(a.dtype, xp.number) and xp.all((a == 0) | (a == 1))):
                raise ValueError(f"to_bipolar: expected only 0 and 1 (or booleans), got values "
                                 f"{_values(a)}; pass threshold=... to binarise other values")
        return Tensor(xp.where(a.astype(bool), 1, -1).astype(dt))
    if not xp.issubdtype(a.dtype, xp.number) and a.dtype != xp.bool_:
        raise TypeError(f"to_bipolar: expected numbers, got an array of {a.dtype}")
    return Tensor(xp.where(a > _array(threshold), 1, -1).astype(dt))


def to_binary(states) -> Tensor:
    """-1/+1 states as 0/1 (``(s + 1) / 2``), the inverse of ``to_bipolar``; same dtype."""
    a = _array(states)
    dt = a.dtype if xp.issubdtype(a.dtype, xp.floating) else get_default_dtype()
    return Tensor((a > 0).astype(dt))


@dataclass
class RecallInfo:
    """How a ``recall`` ended, one entry per state (arrays of the batch's shape: () for one state).

    ``sweeps``: updates run (asynchronous: sweeps over all neurons; synchronous: steps), the last
    one included, which found nothing to change when the state ``converged``;
    ``converged``: the state is a fixed point; ``cycle``: synchronous updates only, the state
    alternates between two states (the returned one and one step away) instead;
    neither: ``max_sweeps`` ran out first."""
    sweeps: object
    converged: object
    cycle: object

    @property
    def all_converged(self) -> bool:
        return bool(xp.all(self.converged))


class HopfieldNetwork(nn.Module):
    """A classical Hopfield network of ``n`` binary neurons with states in {-1, +1}.

    Buffers (saved by ``state_dict``, so a checkpoint holds what was learned): ``weight``
    (n, n), symmetric with a zero diagonal after ``store``; ``bias`` (n,), the neurons' thresholds
    with the sign of an input (zero unless set); ``num_patterns``, how many patterns were stored.

    - ``store(patterns, rule="hebbian" | "storkey")`` adds patterns (P, n) to what is stored;
      ``reset()`` forgets everything.
    - ``energy(states)``: E(s) = -1/2 s^T W s - b^T s, per state.
    - ``update(states, mode="async" | "sync")``: one sweep / step of the dynamics;
      ``recall(states, ...)`` runs them to a fixed point (``net(states)`` is ``recall``).

    States are (n,) or a batch (B, n) of exactly -1 and +1 (Tensors or arrays); 0/1 patterns go
    through ``to_bipolar`` first. Every method works on the whole batch at once and returns a
    Tensor of the weight's dtype and the input's shape.

    The update of neuron i is s_i <- +1 if h_i > 0, -1 if h_i < 0, and unchanged if h_i = 0, with
    the local field h = W s + b. "h_i = 0" allows for rounding: |h_i| <= 2 n eps (sum_j |W_ij| +
    |b_i|), a bound on the rounding of the sums (eps of the weight's dtype), so that Hebb's exact
    ties (an even number of patterns gives fields of exactly zero) keep their state however the
    sum was rounded. The weights are float64 unless ``dtype`` says otherwise (not the global
    default dtype): there the bound is ~1e-12 even for thousands of neurons, far below the
    smallest non-zero field of Hebb's rule, 1/n; in float32 it can reach it for large networks.
    """

    def __init__(self, n: int, dtype=None):
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, (int, xp.integer)):
            raise TypeError(f"HopfieldNetwork: n must be an int (the number of neurons), got {n!r}")
        if n < 2:
            raise ValueError(f"HopfieldNetwork: n must be at least 2 neurons, got {n}")
        dt = xp.float64 if dtype is None else xp.dtype(dtype)
        if not xp.issubdtype(dt, xp.floating):
            raise TypeError(f"HopfieldNetwork: dtype must be a floating-point type (float32 or "
                            f"float64), got {dt}")
        self.n = int(n)
        self.register_buffer("weight", Tensor(xp.zeros((self.n, self.n), dtype=dt)))
        self.register_buffer("bias", Tensor(xp.zeros(self.n, dtype=dt)))
        self.register_buffer("num_patterns", Tensor(xp.zeros((), dtype=xp.int64)))

    def extra_repr(self) -> str:
        return f"n={self.n}, patterns={int(self.num_patterns.data)}"

    @property
    def load(self) -> float:
        """alpha = P / n, the number of stored patterns per neuron (Hebb's rule: below about
        0.138 the stored patterns are recalled with few errors, for large n)."""
        return int(self.num_patterns.data) / self.n

    # ---------------------------------------------------------------------------- checks
    def _states(self, states, what: str = "states"):
        """``states`` as a float array (B, n) of -1/+1, and whether it was one state (n,)."""
        if isinstance(states, Tensor):
            a = states.data
        else:
            try:
                a = xp.asarray(states)
            except (TypeError, ValueError):
                raise TypeError(f"{self._short_repr()}: {what} must be a Tensor or an array of -1 "
                                f"and +1, got {type(states).__name__}") from None
        if a.dtype == xp.bool_ or not xp.issubdtype(a.dtype, xp.number):
            raise TypeError(f"{self._short_repr()}: {what} must hold the numbers -1 and +1, got "
                            f"an array of {a.dtype} (0/1 or boolean patterns: fv.models.to_bipolar)")
        if a.ndim not in (1, 2) or a.shape[-1] != self.n:
            raise ValueError(f"{self._short_repr()}: {what} must have shape ({self.n},) or "
                             f"(batch, {self.n}), got {tuple(a.shape)}")
        if not xp.all((a == 1) | (a == -1)):
            hint = " (0/1 patterns: convert them with fv.models.to_bipolar)" \
                if xp.all((a == 0) | (a == 1)) else ""
            raise ValueError(f"{self._short_repr()}: {what} must hold only -1 and +1, got values "
                             f"{_values(a)}{hint}")
        single = a.ndim == 1
        return a.reshape(-1, self.n).astype(self.weight.data.dtype), single

    def _out(self, s, single: bool) -> Tensor:
        return Tensor(s[0].copy() if single else s)

    @staticmethod
    def _mode(mode: str) -> str:
        if mode not in MODES:
            raise ValueError(f"HopfieldNetwork: mode must be 'async' (one neuron at a time, in "
                             f"random order) or 'sync' (all at once), got {mode!r}")
        return mode

    @staticmethod
    def _rng(generator):
        """The NumPy generator for a ``fv.Generator``, a seed (int) or None (the global one)."""
        if isinstance(generator, (int, xp.integer)) and not isinstance(generator, bool):
            return Generator(int(generator)).rng
        if generator is not None and not isinstance(generator, Generator):
            raise TypeError(f"HopfieldNetwork: generator must be a fv.Generator, an int seed or "
                            f"None, got {type(generator).__name__}")
        return numpy_rng(generator)

    def _tolerance(self):
        """Per neuron, the largest |h_i| counted as zero: a bound on the rounding of h_i."""
        w, b = self.weight.data, self.bias.data
        return 2 * self.n * xp.finfo(w.dtype).eps * (xp.abs(w).sum(axis=1) + xp.abs(b))

    # ---------------------------------------------------------------------------- learning
    def reset(self) -> "HopfieldNetwork":
        """Forget every stored pattern: weights, bias and the pattern count back to zero."""
        self.weight.data[...] = 0
        self.bias.data[...] = 0
        self.num_patterns.data[...] = 0
        return self

    def store(self, patterns, rule: str = "hebbian") -> "HopfieldNetwork":
        """Add ``patterns`` ((P, n) or one (n,), values -1/+1) to the memory; returns the network.

        ``rule="hebbian"``: W += (1/n) sum_mu xi^mu xi^mu^T with the diagonal left at zero (every
        pattern at once: the order does not matter).

        ``rule="storkey"`` (Storkey 1997), one pattern after the other, for i != j::

            w_ij <- w_ij + (xi_i xi_j - xi_i h_ji - h_ij xi_j) / n,
            h_ij = sum_{k != i, j} w_ik xi_k          (the local field without i and j)

        with w the weights before this pattern; the diagonal stays zero (no self-coupling). Both
        rules are incremental: storing A and then B gives the weights of storing A and B
        together (for Storkey's, in that order), so a trained network can learn more."""
        if rule not in RULES:
            raise ValueError(f"{self._short_repr()}: rule must be 'hebbian' or 'storkey', got "
                             f"{rule!r}")
        x, _ = self._states(patterns, "patterns")
        w = self.weight.data
        n = self.n
        if rule == "hebbian":
            dw = x.T @ x
            dw[xp.diag_indices(n)] = 0
            w += dw / n
        else:
            for xi in x:
                field = w @ xi - xp.diagonal(w) * xi       # sum_{k != i} w_ik xi_k
                h = field[:, None] - w * xi[None, :]        # h_ij: k = j taken out as well
                t = xi[:, None] * h.T                        # xi_i h_ji; its transpose h_ij xi_j
                dw = xp.outer(xi, xi) - (t + t.T)            # symmetric to the last bit
                dw[xp.diag_indices(n)] = 0
                w += dw / n
        self.num_patterns.data[...] += x.shape[0]
        return self

    # ---------------------------------------------------------------------------- energy
    def energy(self, states) -> Tensor:
        """E(s) = -1/2 s^T W s - b^T s: shape () for one state (n,), (B,) for a batch."""
        s, single = self._states(states)
        w, b = self.weight.data, self.bias.data
        e = -0.5 * xp.einsum("bi,bi->b", s @ w.T, s) - s @ b
        return Tensor(e[0] if single else e)

    def local_field(self, states) -> Tensor:
        """h = W s + b for each state, the input each neuron's update looks at."""
        s, single = self._states(states)
        h = s @ self.weight.data.T + self.bias.data
        return Tensor(h[0] if single else h)

    # ---------------------------------------------------------------------------- dynamics
    def _sync_step(self, s, tol):
        h = s @ self.weight.data.T + self.bias.data
        return xp.where(h > tol, 1, xp.where(h < -tol, -1, s)).astype(s.dtype)

    def _async_sweep(self, s, order, tol):
        """Update, in place, neurons ``order[0], order[1], ...`` of every state of the batch ``s``
        (B, n), each seeing the changes before it; returns the number of flips per state.

        The fields are computed by one product and then kept up to date (a flip of s_i to v
        changes h by 2 v W[:, i]), so a step costs O(B) plus O(n) per flip. s_i flips exactly when
        h_i s_i < -tol_i (h_i has the other sign and is not a tie). State-major copies (n, B) make
        each step's reads contiguous."""
        w = self.weight.data
        st = s.T.copy()
        ht = w @ st + self.bias.data[:, None]
        wt = w.T.copy()  # row i: the column W[:, i] that a flip of neuron i adds to h
        flips = xp.zeros(s.shape[0], dtype=xp.int64)
        for i in order.tolist():
            si = st[i]
            changed = xp.flatnonzero(ht[i] * si < -tol[i])
            if changed.size:
                v = -si[changed]
                st[i, changed] = v
                ht[:, changed] += wt[i][:, None] * (2 * v)
                flips[changed] += 1
        s[...] = st.T
        return flips

    def _order(self, order):
        o = xp.asarray(order)
        if not xp.issubdtype(o.dtype, xp.integer) or o.ndim != 1:
            raise ValueError(f"{self._short_repr()}: order must be a 1-D sequence of integer "
                             f"neuron indices, got {o.dtype} of shape {tuple(o.shape)}")
        if o.size and (o.min() < -self.n or o.max() >= self.n):
            raise ValueError(f"{self._short_repr()}: order holds neuron indices outside "
                             f"0..{self.n - 1}: {o.min()}..{o.max()}")
        return o % self.n

    def update(self, states, mode: str = "async", order=None, generator=None) -> Tensor:
        """One step of the dynamics from ``states``; returns the new states (the input is kept).

        ``mode="async"``: one sweep, every neuron once in a random order (drawn from
        ``generator``: a ``fv.Generator``, an int seed, or None for the global one; the same order
        for every state of the batch, so that a state's result does not depend on the others),
        each neuron seeing the updates before it; ``order`` (a sequence of neuron indices)
        updates those neurons in that order instead: ``order=[i]`` is one single-neuron update.
        ``mode="sync"``: every neuron at once, all from the same old state."""
        self._mode(mode)
        s, single = self._states(states)
        s = s.copy()
        tol = self._tolerance()
        if mode == "sync":
            if order is not None:
                raise ValueError(f"{self._short_repr()}: order applies to mode='async' only")
            return self._out(self._sync_step(s, tol), single)
        o = self._rng(generator).permutation(self.n) if order is None else self._order(order)
        self._async_sweep(s, o, tol)
        return self._out(s, single)

    def recall(self, states, mode: str = "async", max_sweeps: int = 100, generator=None,
               return_info: bool = False):
        """Run the dynamics from ``states`` until every state stops changing (or ``max_sweeps``).

        ``mode="async"``: sweeps over all neurons, each in a fresh random order (``generator``
        as in ``update``), until a whole sweep flips nothing: the state is then a fixed point.
        Every flip lowers the energy, so with symmetric weights and a non-negative diagonal this
        always ends. ``mode="sync"``: steps s <- sign(W s + b) until s repeats (a fixed point)
        or comes back after two steps (a 2-cycle, the only other way synchronous updates of
        symmetric weights can end: returned is one of the two states; ``RecallInfo.cycle`` says
        so). A state that has stopped is not updated further while the others of the batch
        continue.

        Returns the final states (a Tensor of the input's shape); with ``return_info=True``,
        ``(states, RecallInfo)`` holding per state the sweeps run, whether it converged and
        whether it ended in a 2-cycle."""
        self._mode(mode)
        if isinstance(max_sweeps, bool) or not isinstance(max_sweeps, (int, xp.integer)) or \
                max_sweeps < 1:
            raise ValueError(f"{self._short_repr()}: max_sweeps must be a positive int, got "
                             f"{max_sweeps!r}")
        s, single = self._states(states)
        s = s.copy()
        batch = s.shape[0]
        tol = self._tolerance()
        sweeps = xp.zeros(batch, dtype=xp.int64)
        converged = xp.zeros(batch, dtype=bool)
        cycle = xp.zeros(batch, dtype=bool)
        active = xp.arange(batch)
        rng = self._rng(generator) if mode == "async" else None
        prev = None  # sync: the states one step back, to detect 2-cycles
        for _ in range(int(max_sweeps)):
            if not active.size:
                break
            sweeps[active] += 1
            if mode == "async":
                sub = s[active]
                flips = self._async_sweep(sub, rng.permutation(self.n), tol)
                s[active] = sub
                done = flips == 0
                converged[active[done]] = True
            else:
                cur = s[active]
                new = self._sync_step(cur, tol)
                fixed = xp.all(new == cur, axis=1)
                two = ~fixed & (xp.all(new == prev, axis=1) if prev is not None else False)
                s[active[~fixed & ~two]] = new[~fixed & ~two]
                converged[active[fixed]] = True
                cycle[active[two]] = True
                done = fixed | two
                prev = cur[~done]
            active = active[~done]
        info = RecallInfo(*(a[0] if single else a for a in (sweeps, converged, cycle)))
        out = self._out(s, single)
        return (out, info) if return_info else out

    def forward(self, states):
        """``recall(states)`` with the defaults (asynchronous, the global generator)."""
        return self.recall(states)

    # ---------------------------------------------------------------------------- helpers
    def overlap(self, states, patterns) -> Tensor:
        """m = s . xi / n between each state (B, n) and each pattern (P, n): (B, P) in [-1, 1];
        1 is the pattern itself, -1 its negative (also a fixed point)."""
        s, single = self._states(states)
        x, _ = self._states(patterns, "patterns")
        m = s @ x.T / self.n
        return Tensor(m[0] if single else m)
