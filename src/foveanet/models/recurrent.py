"""Recurrent networks (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``) for the command line's tasks.

- ``lstm_rows``: an image read row by row, a sequence classifier. A (N, C, H, W) batch is H steps
  of C x W values (Fashion-MNIST: 28 steps of 28 pixels); the recurrent layers' last hidden state
  (or their outputs' mean over the steps) goes through a Linear layer to the class scores. It
  takes the same batches as the CNNs, so ``foveanet train --model lstm_rows`` trains on any image
  data set.
- ``lstm_forecaster``: a window of past values of a series, (N, window) or (N, window, 1), to
  the next ``horizon`` values, (N, horizon): the recurrent layers' last hidden state through a
  Linear layer. With ``relative=True`` (the default) the network sees the window relative to its
  last value and forecasts the change from it, so it forecasts a series that leaves the range it
  was trained on (CO2's rising level) as well as one that stays in it.

``cell`` chooses the layer ('lstm', 'gru', 'rnn': Elman's, tanh), ``hidden`` its width,
``num_layers`` the stack, ``bidirectional`` a second direction (``lstm_rows``).
"""
from __future__ import annotations

from .. import nn
from .registry import register_model

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
POOLS = ("last", "mean")


def _cell(owner, cell):
    key = str(cell).lower()
    if key not in CELLS:
        raise ValueError(f"{owner}: unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
    return CELLS[key]


def _last_hidden(state, layers, directions):
    """The last layer's final hidden state, (N, directions * hidden), of an RNN's h_n (or an
    LSTM's (h_n, c_n)): both directions' last steps, as PyTorch's classifiers take it."""
    h_n = state[0] if isinstance(state, tuple) else state
    last = h_n[(layers - 1) * directions:]                 # (directions, N, hidden)
    return last.permute(1, 0, 2).reshape(last.shape[1], -1)


class RowClassifier(nn.Module):
    """Images (N, C, H, W) as sequences of H rows of C x W values -> recurrent layers -> the last
    hidden state (``pool='last'``; both directions' when bidirectional) or the outputs' mean over
    the rows (``pool='mean'``) -> Dropout (when > 0) -> Linear(num_classes)."""

    def __init__(self, num_classes=10, in_channels=1, input_size=28, hidden=128, num_layers=1,
                 cell="lstm", bidirectional=False, pool="last", dropout=0.0):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"lstm_rows: pool must be 'last' or 'mean', got {pool!r}")
        self.pool, self.cell = pool, str(cell).lower()
        self.steps, self.features = int(input_size), int(in_channels) * int(input_size)
        self.rnn = _cell("lstm_rows", cell)(self.features, hidden, num_layers=num_layers,
                                            batch_first=True, bidirectional=bidirectional,
                                            dropout=dropout if num_layers > 1 else 0.0)
        width = hidden * (2 if bidirectional else 1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"lstm_rows: expected images (N, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        if c * w != self.features:
            raise ValueError(f"lstm_rows: built for rows of {self.features} values (channels x "
                             f"width), got images of shape {tuple(x.shape[1:])}")
        rows = x.permute(0, 2, 1, 3).reshape(n, h, c * w)   # (N, H steps, C * W)
        out, state = self.rnn(rows)
        if self.pool == "mean":
            feat = out.mean(dim=1)
        else:
            feat = _last_hidden(state, self.rnn.num_layers, self.rnn.num_directions)
        return self.fc(self.dropout(feat))


class Forecaster(nn.Module):
    """Windows (N, window) or (N, window, 1) of a series -> recurrent layers -> the last hidden
    state -> Dropout (when > 0) -> Linear(horizon). ``relative``: the window enters as its
    differences from its last value, and that value is added to every output."""

    def __init__(self, horizon=1, hidden=64, num_layers=1, cell="lstm", dropout=0.0,
                 relative=True):
        super().__init__()
        self.horizon, self.relative, self.cell = int(horizon), bool(relative), str(cell).lower()
        self.rnn = _cell("lstm_forecaster", cell)(1, hidden, num_layers=num_layers,
                                                  batch_first=True,
                                                  dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(hidden, self.horizon)

    def forward(self, x):
        if x.ndim == 3 and x.shape[2] == 1:
            x = x.reshape(x.shape[0], x.shape[1])
        if x.ndim != 2:
            raise ValueError(f"lstm_forecaster: expected windows (N, window) or (N, window, 1), "
                             f"got shape {tuple(x.shape)}")
        n, steps = x.shape
        last = x[:, steps - 1:]                              # (N, 1)
        seq = x - last if self.relative else x
        _, state = self.rnn(seq.reshape(n, steps, 1))
        out = self.fc(self.dropout(_last_hidden(state, self.rnn.num_layers, 1)))
        return out + last if self.relative else out


@register_model("lstm_rows")
def lstm_rows(num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
              hidden: int = 128, num_layers: int = 1, cell: str = "lstm",
              bidirectional: bool = False, pool: str = "last", dropout: float = 0.0):
    """An image classifier that reads the image row by row (``RowClassifier``): Fashion-MNIST's
    28 rows of 28 pixels through an LSTM (``cell='gru'``/``'rnn'``), its last hidden state to the
    ``num_classes`` scores."""
    return RowClassifier(num_classes, in_channels, input_size, hidden, num_layers, cell,
                         bidirectional, pool, dropout)


@register_model("lstm_forecaster")
def lstm_forecaster(horizon: int = 1, hidden: int = 64, num_layers: int = 1, cell: str = "lstm",
                    dropout: float = 0.0, relative: bool = True):
    """A forecaster (``Forecaster``): a window of past values through an LSTM (``cell='gru'``/
    ``'rnn'``), its last hidden state to the next ``horizon`` values; ``relative`` forecasts the
    change from the window's last value."""
    return Forecaster(horizon, hidden, num_layers, cell, dropout, relative)
