"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` over whole sequences and their one-step cells
``RNNCell``, ``LSTMCell``, ``GRUCell`` (the lecture's nets "used for signal and text processing
and generation").

PyTorch's arguments, equations, gate order, parameter names and initialisation, so a state dict
moves between the two unchanged:

- RNN:  h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)   (or ReLU)
- LSTM: i, f, g, o = sigma, sigma, tanh, sigma of (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), in
  that order; c_t = f c_{t-1} + i g; h_t = o tanh(c_t) (times W_hr with ``proj_size``)
- GRU:  r, z = sigma(W_i{r,z} x_t + b_i{r,z} + W_h{r,z} h_{t-1} + b_h{r,z});
  n = tanh(W_in x_t + b_in + r (W_hn h_{t-1} + b_hn)); h_t = (1 - z) n + z h_{t-1}

Parameters per layer k and direction (suffix ``_reverse`` for the second): ``weight_ih_l{k}``
(G H, in), ``weight_hh_l{k}`` (G H, H or proj_size), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (G H,),
``weight_hr_l{k}`` (proj_size, H); every one drawn from U(-1/sqrt(H), 1/sqrt(H)).

Each layer and direction is one primitive (``ops.rnn.Recurrence``): one product for the input's
part of all steps, then one compiled loop. Input (T, B, in) (``batch_first``: (B, T, in)), an
unbatched (T, in), or a ``PackedSequence`` (``nn.utils.rnn``), whose sequences each stop at
their own end.
"""
from __future__ import annotations

import math
import warnings

from ...autograd import Tensor
from ...backend import xp
from ... import ops
from .. import init
from ..module import Module
from ..parameter import Parameter
from ..utils.rnn import PackedSequence
from ._util import check_device, check_dtype, check_probability, float_dtype, positive_int, shape_str

GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
_OP_MODE = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}


def _nonlinearity_mode(owner: str, nonlinearity) -> str:
    if nonlinearity == "tanh":
        return "RNN_TANH"
    if nonlinearity == "relu":
        return "RNN_RELU"
    raise ValueError(f"{owner}: unknown nonlinearity {nonlinearity!r}; choose 'tanh' or 'relu'")


class RNNBase(Module):
    """The shared machinery of ``RNN``, ``LSTM`` and ``GRU`` (PyTorch's ``nn.RNNBase``)."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None):
        super().__init__()
        name = {"RNN_TANH": "RNN", "RNN_RELU": "RNN"}.get(mode, mode)
        check_device(name, device)
        self.mode = mode
        self.input_size = positive_int(name, "input_size", input_size)
        self.hidden_size = positive_int(name, "hidden_size", hidden_size)
        self.num_layers = positive_int(name, "num_layers", num_layers)
        self.bias, self.batch_first = bool(bias), bool(batch_first)
        self.dropout = check_probability(name, "dropout", dropout)
        self.bidirectional = bool(bidirectional)
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, xp.integer)) or proj_size < 0:
            raise ValueError(f"{name}: proj_size should be a non-negative integer, got {proj_size!r}")
        if proj_size and mode != "LSTM":
            raise ValueError(f"{name}: proj_size argument is only supported for LSTM, not {name}")
        if proj_size >= hidden_size:
            raise ValueError(f"{name}: proj_size ({proj_size}) has to be smaller than hidden_size "
                             f"({hidden_size})")
        self.proj_size = int(proj_size)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(f"{name}: dropout adds dropout after all but the last recurrent layer, so "
                          f"a non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", UserWarning, stacklevel=3)
        dt = float_dtype(name, dtype)
        gate_size = GATES[mode] * self.hidden_size
        real_hidden = self.proj_size or self.hidden_size
        self._flat_weights_names = []
        for layer in range(self.num_layers):
            layer_in = self.input_size if layer == 0 else real_hidden * self.num_directions
            for direction in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = [("weight_ih", (gate_size, layer_in)), ("weight_hh", (gate_size, real_hidden))]
                if self.bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                if self.proj_size:
                    shapes.append(("weight_hr", (self.proj_size, self.hidden_size)))
                for pname, shape in shapes:
                    setattr(self, pname + sfx, Parameter(xp.empty(shape, dtype=dt)))
                    self._flat_weights_names.append(pname + sfx)
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def reset_parameters(self, generator=None) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for name in self._flat_weights_names:
            init.uniform_(self._parameters[name], -stdv, stdv, generator=generator)

    def flatten_parameters(self) -> None:
        """PyTorch's cuDNN hint; the weights are always used where they are."""

    @property
    def all_weights(self) -> list:
        """The parameters per layer and direction, in PyTorch's order."""
        per = len(self._flat_weights_names) // (self.num_layers * self.num_directions)
        names = self._flat_weights_names
        return [[self._parameters[n] for n in names[i:i + per]] for i in range(0, len(names), per)]

    def _weights(self, layer: int, direction: int):
        sfx = f"_l{layer}" + ("_reverse" if direction else "")
        p = self._parameters
        return (p["weight_ih" + sfx], p["weight_hh" + sfx], p.get("bias_ih" + sfx),
                p.get("bias_hh" + sfx), p.get("weight_hr" + sfx))

    # ------------------------------------------------------------------------------ checks
    def _state_shapes(self, batch: int):
        layers = self.num_layers * self.num_directions
        return (layers, batch, self.proj_size or self.hidden_size), (layers, batch, self.hidden_size)

    def _check_state(self, state, shape, what: str, batched: bool):
        if not isinstance(state, Tensor):
            raise TypeError(f"{self._short_repr()}: {what} must be a foveanet Tensor, got "
                            f"{type(state).__name__}")
        want = shape if batched else (shape[0], shape[2])
        if tuple(state.shape) != want:
            raise ValueError(f"{self._short_repr()}: expected {what} of shape {shape_str(want)} "
                             f"(num_layers * num_directions, batch, size), got "
                             f"{shape_str(state.shape)}")
        check_dtype(self, state, self._parameters[self._flat_weights_names[0]])

    def _rows(self, input):
        """(x rows (N, in), sizes, batch, sorted_indices, how to rebuild the output)."""
        if isinstance(input, PackedSequence):
            x = input.data
            if not isinstance(x, Tensor) or x.ndim != 2:
                raise ValueError(f"{self._short_repr()}: a PackedSequence's data must be a 2-D "
                                 f"(rows, {self.input_size}) tensor, got "
                                 f"{shape_str(getattr(x, 'shape', ()))}")
            sizes = xp.asarray(input.batch_sizes.data, dtype=xp.int64)
            order = None if input.sorted_indices is None else \
                xp.asarray(input.sorted_indices.data, dtype=xp.int64)
            return x, sizes, int(sizes[0]), order, "packed"
        if not isinstance(input, Tensor):
            raise TypeError(f"{self._short_repr()}: expected a foveanet Tensor or a PackedSequence as "
                            f"input, got {type(input).__name__}")
        if input.ndim not in (2, 3):
            raise ValueError(f"{self._short_repr()}: expected a 3-D input (seq_len, batch, "
                             f"{self.input_size}) (batch_first: (batch, seq_len, {self.input_size})) "
                             f"or a 2-D unbatched (seq_len, {self.input_size}), got "
                             f"{shape_str(input.shape)}")
        x = input
        if x.ndim == 2:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        steps, batch = x.shape[0], x.shape[1]
        x = x.reshape(steps * batch, x.shape[2])
        sizes = xp.full(steps, batch, dtype=xp.int64)
        return x, sizes, batch, None, "unbatched" if input.ndim == 2 else "batched"

    # ----------------------------------------------------------------------------- forward
    def forward(self, input, hx=None):  # noqa: A002 - PyTorch's name
        x, sizes, batch, order, kind = self._rows(input)
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{self._short_repr()}: input.size(-1) must be equal to input_size. "
                             f"Expected {self.input_size}, got {x.shape[-1]} (input of shape "
                             f"{shape_str(getattr(input, 'data', input).shape)})")
        weight = self._parameters[self._flat_weights_names[0]]
        check_dtype(self, x, weight)
        if x.shape[0] == 0:
            raise ValueError(f"{self._short_repr()}: the input has no time steps "
                             f"(shape {shape_str(getattr(input, 'data', input).shape)})")
        lstm = self.mode == "LSTM"
        h_shape, c_shape = self._state_shapes(batch)
        h0 = c0 = None
        if hx is not None:
            if lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(f"{self._short_repr()}: hx must be a tuple (h_0, c_0), got "
                                    f"{type(hx).__name__}")
                h0, c0 = hx
                self._check_state(c0, c_shape, "c_0", kind != "unbatched")
            else:
                h0 = hx
            self._check_state(h0, h_shape, "hx" if not lstm else "h_0", kind != "unbatched")
            if kind == "unbatched":
                h0 = h0.unsqueeze(1)
                c0 = c0.unsqueeze(1) if c0 is not None else None
            if order is not None:  # the states follow the batch into its sorted order
                h0 = h0[:, order]
                c0 = c0[:, order] if c0 is not None else None
        dt = weight.dtype
        mode = _OP_MODE[self.mode]
        h_n, c_n = [], []
        inp = x
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                w_ih, w_hh, b_ih, b_hh, w_hr = self._weights(layer, direction)
                h_k = xp.zeros(h_shape[1:], dtype=dt) if h0 is None else h0[k]
                c_k = None
                if lstm:
                    c_k = xp.zeros(c_shape[1:], dtype=dt) if c0 is None else c0[k]
                res = ops.rnn.Recurrence.apply(inp, w_ih, w_hh, b_ih, b_hh, h_k, c_k, w_hr,
                                               mode=mode, sizes=sizes, reverse=direction == 1)
                outs.append(res[0])
                h_n.append(res[1])
                if lstm:
                    c_n.append(res[2])
            inp = outs[0] if len(outs) == 1 else ops.cat(outs, dim=1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                inp = ops.dropout(inp, self.dropout, True)
        h_n = ops.stack(h_n, 0)
        c_n = ops.stack(c_n, 0) if lstm else None
        if order is not None:  # back to the caller's order
            inv = xp.asarray(input.unsorted_indices.data, dtype=xp.int64)
            h_n = h_n[:, inv]
            c_n = c_n[:, inv] if lstm else None
        if kind == "packed":
            output = PackedSequence(inp, input.batch_sizes, input.sorted_indices,
                                    input.unsorted_indices)
        else:
            steps = len(sizes)
            if inp.data.flags.f_contiguous and not inp.data.flags.c_contiguous:
                # the compiled loop's feature-major output: (T, B, F) as a view, without a copy
                output = inp.T.reshape(inp.shape[-1], steps, batch).permute(1, 2, 0)
            else:
                output = inp.reshape(steps, batch, inp.shape[-1])
            if kind == "unbatched":
                output, h_n = output.squeeze(1), h_n.squeeze(1)
                c_n = c_n.squeeze(1) if lstm else None
            elif self.batch_first:
                output = output.transpose(0, 1)
        return (output, (h_n, c_n)) if lstm else (output, h_n)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = tanh (or relu)(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), stacked
    ``num_layers`` deep. Returns (output (T, B, D H), h_n (num_layers D, B, H))."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None):
        super().__init__(_nonlinearity_mode("RNN", nonlinearity), input_size, hidden_size,
                         num_layers, bias, batch_first, dropout, bidirectional, 0, device, dtype)

    @property
    def nonlinearity(self) -> str:
        return "relu" if self.mode == "RNN_RELU" else "tanh"


class LSTM(RNNBase):
    """Long short-term memory (Hochreiter & Schmidhuber 1997), PyTorch's equations. Returns
    (output (T, B, D P), (h_n (num_layers D, B, P), c_n (num_layers D, B, H))), P = proj_size
    or hidden_size."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device, dtype)


class GRU(RNNBase):
    """Gated recurrent unit (Cho et al. 2014), PyTorch's equations. Returns (output (T, B, D H),
    h_n (num_layers D, B, H))."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype)


# ------------------------------------------------------------------------------------------ cells
class RNNCellBase(Module):
    """One step of a recurrent layer: parameters ``weight_ih`` (G H, in), ``weight_hh`` (G H, H),
    ``bias_ih``, ``bias_hh`` (G H,), all from U(-1/sqrt(H), 1/sqrt(H))."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        check_device(name, device)
        self.mode = mode
        self.input_size = positive_int(name, "input_size", input_size)
        self.hidden_size = positive_int(name, "hidden_size", hidden_size)
        self.bias = bool(bias)
        dt = float_dtype(name, dtype)
        g = GATES[mode] * self.hidden_size
        self.weight_ih = Parameter(xp.empty((g, self.input_size), dtype=dt))
        self.weight_hh = Parameter(xp.empty((g, self.hidden_size), dtype=dt))
        if self.bias:
            self.bias_ih = Parameter(xp.empty((g,), dtype=dt))
            self.bias_hh = Parameter(xp.empty((g,), dtype=dt))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self, generator=None) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -stdv, stdv, generator=generator)

    def _input(self, input):
        if not isinstance(input, Tensor):
            raise TypeError(f"{self._short_repr()}: expected a foveanet Tensor as input, got "
                            f"{type(input).__name__}")
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"{self._short_repr()}: expected input of shape (batch, "
                             f"{self.input_size}) or ({self.input_size},), got "
                             f"{shape_str(input.shape)}")
        check_dtype(self, input, self.weight_ih)
        return input.unsqueeze(0) if input.ndim == 1 else input

    def _state(self, state, batch: int, batched: bool, what: str):
        if state is None:
            return xp.zeros((batch, self.hidden_size), dtype=self.weight_ih.dtype)
        if not isinstance(state, Tensor):
            raise TypeError(f"{self._short_repr()}: {what} must be a foveanet Tensor, got "
                            f"{type(state).__name__}")
        want = (batch, self.hidden_size) if batched else (self.hidden_size,)
        if tuple(state.shape) != want:
            raise ValueError(f"{self._short_repr()}: expected {what} of shape {shape_str(want)}, got "
                             f"{shape_str(state.shape)}")
        check_dtype(self, state, self.weight_ih)
        return state if batched else state.unsqueeze(0)

    def _step(self, input, h, c=None):
        batched = input.ndim == 2
        x = self._input(input)
        b = x.shape[0]
        h = self._state(h, b, batched, "hx" if c is None and self.mode != "LSTM" else "h_0")
        if self.mode == "LSTM":
            c = self._state(c, b, batched, "c_0")
        res = ops.rnn.Recurrence.apply(x, self.weight_ih, self.weight_hh, self.bias_ih,
                                       self.bias_hh, h, c, None, mode=_OP_MODE[self.mode],
                                       sizes=xp.array([b], dtype=xp.int64))
        outs = res[1:]
        return tuple(o if batched else o.squeeze(0) for o in outs)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        return s


class RNNCell(RNNCellBase):
    """h' = tanh (or relu)(W_ih x + b_ih + W_hh h + b_hh); ``forward(input, hx=None)`` -> h'."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None):
        super().__init__(_nonlinearity_mode("RNNCell", nonlinearity), input_size, hidden_size,
                         bias, device, dtype)

    @property
    def nonlinearity(self) -> str:
        return "relu" if self.mode == "RNN_RELU" else "tanh"

    def forward(self, input, hx=None):  # noqa: A002
        return self._step(input, hx)[0]


class LSTMCell(RNNCellBase):
    """One LSTM step; ``forward(input, hx=None)`` with hx = (h, c) -> (h', c')."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__("LSTM", input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):  # noqa: A002
        if hx is None:
            h = c = None
        elif isinstance(hx, (tuple, list)) and len(hx) == 2:
            h, c = hx
        else:
            raise TypeError(f"{self._short_repr()}: hx must be a tuple (h_0, c_0), got "
                            f"{type(hx).__name__}")
        return self._step(input, h, c)


class GRUCell(RNNCellBase):
    """One GRU step; ``forward(input, hx=None)`` -> h'."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__("GRU", input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):  # noqa: A002
        return self._step(input, hx)[0]
