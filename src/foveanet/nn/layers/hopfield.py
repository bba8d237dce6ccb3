"""The modern (continuous) Hopfield network of Ramsauer et al. (2020), "Hopfield Networks is All
You Need", as a layer: stored patterns X = (x_1, ..., x_N) and a state pattern xi, updated by

    xi_new = X softmax(beta X^T xi)

which minimises the energy E = -lse(beta, X^T xi) + 1/2 xi^T xi + const, converges in about one
step when the patterns are well separated, and stores exponentially many patterns in their
dimension. With learned projections it is the attention of a transformer,
softmax(beta Q K^T) V, with beta = 1/sqrt(d_k).

Patterns are rows here, as in the paper's ``hopfield-layers`` package (batch first): stored
patterns (B, N, d), state patterns (B, S, d), and the update of all S states at once is
softmax(beta xi X^T) X. Everything is built from matmul, softmax and linear, so autograd
differentiates it, iterations included.
"""
from __future__ import annotations

import math

from ...autograd import Tensor, no_grad
from ...backend import xp
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from ._util import check_device, check_dtype, check_probability, float_dtype, positive_int, \
    shape_str, tensor_input
from .linear import Linear


def _positive_number(owner: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, xp.integer, xp.floating)):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be positive and finite, got {value}")
    return float(value)


def _retrieve(q, k, v, beta: float, steps: int, eps, dropout: float, training: bool):
    """``steps`` updates q <- softmax(beta q k^T) k of the states (rows of q), the last one
    through the values: softmax(beta q k^T) v. Works on the last two dimensions, broadcasting
    the others (heads, batch). Returns (output, the association matrix of the last step)."""
    kt = k.transpose(-1, -2)
    for _ in range(steps - 1):
        new = F.softmax((q * beta) @ kt, dim=-1) @ k
        if eps is not None:
            change = xp.sqrt(((new.data - q.data) ** 2).sum(axis=-1)).max(initial=0.0)
            q = new
            if change < eps:
                break
        else:
            q = new
    a = F.softmax((q * beta) @ kt, dim=-1)
    if dropout:
        a = F.dropout(a, dropout, training=training)
    return a @ v, a


def hopfield_retrieval(state, stored, projection=None, beta=None, update_steps: int = 1):
    """The modern Hopfield update without parameters: ``softmax(beta xi X^T) V`` for the state
    patterns ``state`` (..., S, d), stored patterns ``stored`` (..., N, d) and the patterns to
    read out ``projection`` (..., N, d_v; default: ``stored``, so the result is the retrieved
    pattern). ``beta`` defaults to 1/sqrt(d); ``update_steps`` > 1 first updates the state that
    many times minus one (xi <- softmax(beta xi X^T) X), then reads out."""
    return Hopfield(scaling=beta, update_steps=update_steps)((stored, state, projection))


class Hopfield(Module):
    """The modern Hopfield layer (Ramsauer et al. 2020; the ``Hopfield`` module of their
    ``hopfield-layers`` package, batch first).

    ``forward(input)``: ``input`` is one tensor (B, N, input_size), used as stored patterns,
    state patterns and pattern projections at once (self-association), or a tuple
    ``(stored_pattern, state_pattern, pattern_projection)`` of (B, N, stored_pattern_size),
    (B, S, input_size), (B, N, pattern_projection_size); a pair ``(stored, state)`` reads out the
    stored patterns themselves. 2-D inputs (no batch) work too, and a 2-D stored pattern is
    shared by a batch of states. Output: (B, S, output_size).

    With projections (``input_size`` given), per head::

        Q = state W_Q^T,  K = stored W_K^T,  V = projection W_V^T     (+ biases)
        Q <- softmax(beta Q K^T) K       update_steps - 1 times (retrieval in the Hopfield space)
        Z = softmax(beta Q K^T) V,       output = concat_heads(Z) W_O^T + b_O

    Parameters: ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` (Linear layers; no ``out_proj``
    with ``out_projection=False``). ``hidden_size``: d_k per head (default input_size //
    num_heads); ``pattern_size``: d_v per head (default d_k); ``output_size`` (default
    input_size). Initialisation as in PyTorch's MultiheadAttention (and hopfield-layers):
    Xavier-uniform weights, zero biases.

    Without projections (``input_size=None``, the pure retrieval of the paper): no parameters,
    one head, Z = softmax(beta xi X^T) V with the inputs as they are; with one tensor or a pair
    the output is the retrieved stored pattern xi_new = X softmax(beta X^T xi).

    ``scaling``: beta, default 1/sqrt(d_k) (without projections d_k is the pattern dimension;
    hopfield-layers takes 1 there).
    ``update_steps``: how many updates of the state (the last one through V); with
    ``update_steps_eps`` the iteration stops early once no state moved by more than that
    (L2 norm) in an update. ``dropout``: on the association matrix, in training mode.
    The patterns are not normalised (hopfield-layers puts layer norms before the association by
    default): normalise them first where that is wanted.
    """

    def __init__(self, input_size: int | None = None, hidden_size: int | None = None,
                 output_size: int | None = None, pattern_size: int | None = None,
                 num_heads: int = 1, scaling: float | None = None, update_steps: int = 1,
                 update_steps_eps: float | None = None, stored_pattern_size: int | None = None,
                 pattern_projection_size: int | None = None, bias: bool = True,
                 out_projection: bool = True, dropout: float = 0.0, device=None, dtype=None):
        super().__init__()
        name = "Hopfield"
        check_device(name, device)
        self.num_heads = positive_int(name, "num_heads", num_heads)
        self.update_steps = positive_int(name, "update_steps", update_steps)
        self.update_steps_eps = None if update_steps_eps is None else \
            _positive_number(name, "update_steps_eps", update_steps_eps)
        self.scaling = None if scaling is None else _positive_number(name, "scaling", scaling)
        self.dropout = check_probability(name, "dropout", dropout)
        self.input_size = None if input_size is None else positive_int(name, "input_size", input_size)
        if self.input_size is None:
            given = [k for k, v in (("hidden_size", hidden_size), ("output_size", output_size),
                                    ("pattern_size", pattern_size),
                                    ("stored_pattern_size", stored_pattern_size),
                                    ("pattern_projection_size", pattern_projection_size))
                     if v is not None]
            if given or self.num_heads != 1:
                what = ", ".join(given + (["num_heads"] if self.num_heads != 1 else []))
                verb = "needs" if len(given) + (self.num_heads != 1) == 1 else "need"
                raise ValueError(f"{name}: {what} {verb} learned projections: give input_size too "
                                 f"(input_size=None is the pure retrieval, one head, no parameters)")
            self.head_dim = self.pattern_dim = self.output_size = None
            self.stored_pattern_size = self.pattern_projection_size = None
            self.q_proj = self.k_proj = self.v_proj = self.out_proj = None
            return
        if hidden_size is None:
            if self.input_size % self.num_heads:
                raise ValueError(f"{name}: input_size {self.input_size} is not divisible by "
                                 f"num_heads {self.num_heads}; give hidden_size (per head)")
            hidden_size = self.input_size // self.num_heads
        self.head_dim = positive_int(name, "hidden_size", hidden_size)
        def size(what, value, default):
            return positive_int(name, what, default if value is None else value)

        self.pattern_dim = size("pattern_size", pattern_size, self.head_dim)
        self.stored_pattern_size = size("stored_pattern_size", stored_pattern_size, self.input_size)
        self.pattern_projection_size = size("pattern_projection_size", pattern_projection_size,
                                            self.input_size)
        dt = float_dtype(name, dtype)
        h = self.num_heads
        self.q_proj = Linear(self.input_size, h * self.head_dim, bias=bias, dtype=dt)
        self.k_proj = Linear(self.stored_pattern_size, h * self.head_dim, bias=bias, dtype=dt)
        self.v_proj = Linear(self.pattern_projection_size, h * self.pattern_dim, bias=bias, dtype=dt)
        if out_projection:
            self.output_size = size("output_size", output_size, self.input_size)
            self.out_proj = Linear(h * self.pattern_dim, self.output_size, bias=bias, dtype=dt)
        else:
            if output_size is not None and output_size != h * self.pattern_dim:
                raise ValueError(f"{name}: without the output projection the output size is "
                                 f"num_heads * pattern_size = {h * self.pattern_dim}, got "
                                 f"output_size={output_size}")
            self.output_size = h * self.pattern_dim
            self.out_proj = None
        self.reset_parameters()

    def reset_parameters(self, generator=None) -> None:
        for layer in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            if layer is None:
                continue
            init.xavier_uniform_(layer.weight, generator=generator)
            if layer.bias is not None:
                init.zeros_(layer.bias)

    @property
    def projected(self) -> bool:
        """Whether the layer has learned projections (``input_size`` was given)."""
        return self.input_size is not None

    def beta(self, d_k: int | None = None) -> float:
        """The inverse temperature: ``scaling``, else 1/sqrt(d_k)."""
        if self.scaling is not None:
            return self.scaling
        return 1.0 / math.sqrt(self.head_dim if self.projected else d_k)

    # ----------------------------------------------------------------------------- inputs
    def _inputs(self, input):  # noqa: A002
        if isinstance(input, (tuple, list)):
            if len(input) not in (2, 3):
                raise ValueError(f"{self._short_repr()}: expected one tensor or a tuple "
                                 f"(stored_pattern, state_pattern[, pattern_projection]), got a "
                                 f"{type(input).__name__} of {len(input)}")
            stored, state = input[0], input[1]
            projection = input[2] if len(input) == 3 and input[2] is not None else stored
        else:
            stored = state = projection = input
        names = ("stored_pattern", "state_pattern", "pattern_projection")
        tensors = [tensor_input(self, t, what) for t, what in zip((stored, state, projection), names)]
        for t, what in zip(tensors, names):
            if t.ndim not in (2, 3):
                raise ValueError(f"{self._short_repr()}: {what} must be (batch, patterns, size) "
                                 f"or (patterns, size), got shape {shape_str(t.shape)}")
            if not xp.issubdtype(t.dtype, xp.floating):
                raise TypeError(f"{self._short_repr()}: {what} has dtype {t.dtype}; the patterns "
                                f"must be floating point (convert with x.float())")
        stored, state, projection = tensors
        if self.projected:
            for t, what, size in zip(tensors, names, (self.stored_pattern_size, self.input_size,
                                                      self.pattern_projection_size)):
                if t.shape[-1] != size:
                    raise ValueError(f"{self._short_repr()}: {what} must have {size} features "
                                     f"(last dimension), got shape {shape_str(t.shape)}")
                check_dtype(self, t, self.q_proj.weight)
        elif stored.shape[-1] != state.shape[-1]:
            raise ValueError(f"{self._short_repr()}: stored and state patterns must have the same "
                             f"size without projections, got {shape_str(stored.shape)} and "
                             f"{shape_str(state.shape)}")
        if stored.shape[-2] != projection.shape[-2]:
            raise ValueError(f"{self._short_repr()}: stored_pattern and pattern_projection must "
                             f"hold the same number of patterns, got {shape_str(stored.shape)} "
                             f"and {shape_str(projection.shape)}")
        batches = {t.shape[0] for t in tensors if t.ndim == 3}
        if len(batches) > 1:
            raise ValueError(f"{self._short_repr()}: the batch sizes differ: "
                             + ", ".join(f"{w} {shape_str(t.shape)}" for t, w in zip(tensors, names)))
        return stored, state, projection

    def _heads(self, x, d):
        """(..., N, heads * d) -> (..., heads, N, d)."""
        x = x.reshape(*x.shape[:-1], self.num_heads, d)
        return x.transpose(-3, -2)

    def _associate(self, input):  # noqa: A002
        stored, state, projection = self._inputs(input)
        if not self.projected:
            return _retrieve(state, stored, projection, self.beta(state.shape[-1]),
                             self.update_steps, self.update_steps_eps, self.dropout, self.training)
        q = self._heads(self.q_proj(state), self.head_dim)
        k = self._heads(self.k_proj(stored), self.head_dim)
        v = self._heads(self.v_proj(projection), self.pattern_dim)
        z, a = _retrieve(q, k, v, self.beta(), self.update_steps, self.update_steps_eps,
                         self.dropout, self.training)
        z = z.transpose(-3, -2)
        z = z.reshape(*z.shape[:-2], self.num_heads * self.pattern_dim)
        return (z if self.out_proj is None else self.out_proj(z)), a

    def forward(self, input):  # noqa: A002 - PyTorch's name
        return self._associate(input)[0]

    def association_matrix(self, input) -> Tensor:  # noqa: A002
        """softmax(beta Q K^T) of the last update, without gradients: (B, heads, S, N) with
        projections, (B, S, N) without (no batch dimension for 2-D inputs)."""
        with no_grad():
            return self._associate(input)[1]

    def extra_repr(self) -> str:
        beta = "1/sqrt(d_k)" if self.scaling is None else f"{self.scaling:g}"
        steps = f", update_steps={self.update_steps}" if self.update_steps != 1 else ""
        if not self.projected:
            return f"scaling={beta}{steps}"
        return (f"input_size={self.input_size}, hidden_size={self.head_dim}, "
                f"output_size={self.output_size}, num_heads={self.num_heads}, "
                f"scaling={beta}{steps}")


class HopfieldPooling(Module):
    """Pools a set of patterns (B, N, input_size) into ``quantity`` vectors (B, quantity *
    output_size) (hopfield-layers' ``HopfieldPooling``): the state patterns are learned
    (``pooling_weights``, (quantity, input_size), initialised U(-1/sqrt(input_size),
    1/sqrt(input_size))) and query the input as stored patterns and projections, through a
    ``Hopfield`` layer ``hopfield`` with projections (the keyword arguments go to it). With
    ``quantity=1`` and beta large it picks the pattern most similar to what it learned;
    multiple-instance learning (a label per bag of patterns) is its use in the paper."""

    def __init__(self, input_size: int, quantity: int = 1, generator=None, device=None,
                 dtype=None, **hopfield_options):
        super().__init__()
        self.quantity = positive_int("HopfieldPooling", "quantity", quantity)
        dt = float_dtype("HopfieldPooling", dtype)
        self.hopfield = Hopfield(input_size, device=device, dtype=dt, **hopfield_options)
        self.pooling_weights = Parameter(xp.empty((self.quantity, self.hopfield.input_size),
                                                  dtype=dt))
        bound = 1 / math.sqrt(self.hopfield.input_size)
        init.uniform_(self.pooling_weights, -bound, bound, generator=generator)

    def forward(self, input):  # noqa: A002
        x = tensor_input(self, input)
        if x.ndim not in (2, 3):
            raise ValueError(f"{self._short_repr()}: expected patterns (batch, N, "
                             f"{self.hopfield.input_size}) or (N, {self.hopfield.input_size}), "
                             f"got shape {shape_str(x.shape)}")
        out = self.hopfield((x, self.pooling_weights, x))
        return out.flatten(-2)

    def extra_repr(self) -> str:
        return f"quantity={self.quantity}"
