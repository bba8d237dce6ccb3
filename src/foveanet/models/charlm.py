"""Character-level language models: ``char_lstm``, ``char_gru``, ``char_rnn``.

One class, ``CharRNN``: character indices (N, T) -> ``nn.Embedding`` (``embedding_dim``) ->
``layers`` recurrent layers of ``hidden`` units (``nn.LSTM``, ``nn.GRU`` or Elman's ``nn.RNN``
with tanh; ``dropout`` between them) -> ``nn.Dropout`` (``dropout``) -> ``nn.Linear`` to one
score per character of the vocabulary. ``forward(x, state=None)`` returns ``(logits (N, T, V),
state)``: the recurrent layers' final state (``(h_n, c_n)`` for the LSTM, ``h_n`` otherwise),
which the next window of the same streams continues from (truncated back-propagation through
time, ``foveanet.train.language.BPTTTrainer``). ``num_classes`` is the vocabulary's size: the
classes of the next character, set from the text as a classifier's are from its data set.
"""
from __future__ import annotations

from .. import nn
from ..autograd import Tensor
from ..backend import xp
from .registry import register_model

__all__ = ["CharRNN", "char_lstm", "char_gru", "char_rnn", "CELLS", "LANGUAGE_MODELS"]

CELLS = ("lstm", "gru", "rnn")
LANGUAGE_MODELS = ("char_lstm", "char_gru", "char_rnn")  # what --task language_model trains


class CharRNN(nn.Module):
    """A character language model (see the module docstring). ``cell``: ``'lstm'``, ``'gru'``
    or ``'rnn'``."""

    def __init__(self, num_classes: int, embedding_dim: int = 64, hidden: int = 256,
                 layers: int = 2, dropout: float = 0.0, cell: str = "lstm"):
        super().__init__()
        cell = str(cell).lower()
        if cell not in CELLS:
            raise ValueError(f"CharRNN: unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
        self.cell = cell
        self.num_classes = int(num_classes)
        self.embedding = nn.Embedding(num_classes, embedding_dim)
        layer = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.rnn = layer(embedding_dim, hidden, num_layers=layers, batch_first=True,
                         dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden, num_classes)

    def forward(self, x, state=None):
        if not isinstance(x, Tensor) or x.ndim != 2 or not xp.issubdtype(x.dtype, xp.integer):
            what = (f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, Tensor)
                    else type(x).__name__)
            raise ValueError(f"char_{self.cell}: expected character indices, an integer tensor "
                             f"(N, T), got {what}")
        out, state = self.rnn(self.embedding(x), state)
        return self.decoder(self.dropout(out)), state

    def extra_repr(self) -> str:
        return f"cell={self.cell!r}, vocabulary={self.num_classes}"


@register_model("char_lstm")
def char_lstm(num_classes: int = 96, embedding_dim: int = 64, hidden: int = 256, layers: int = 2,
              dropout: float = 0.0):
    """A character-level language model (``CharRNN``): an embedding, ``layers`` LSTM layers of
    ``hidden`` units, a linear layer to the next character's scores; ``num_classes`` is the
    vocabulary's size (set from the text)."""
    return CharRNN(num_classes, embedding_dim, hidden, layers, dropout, "lstm")


@register_model("char_gru")
def char_gru(num_classes: int = 96, embedding_dim: int = 64, hidden: int = 256, layers: int = 2,
             dropout: float = 0.0):
    """A character-level language model with GRU layers (``CharRNN`` with ``cell='gru'``): an
    embedding, ``layers`` GRU layers, a linear layer to the next character's scores."""
    return CharRNN(num_classes, embedding_dim, hidden, layers, dropout, "gru")


@register_model("char_rnn")
def char_rnn(num_classes: int = 96, embedding_dim: int = 64, hidden: int = 256, layers: int = 2,
             dropout: float = 0.0):
    """A character-level language model with Elman RNN layers (tanh; ``CharRNN`` with
    ``cell='rnn'``): an embedding, ``layers`` recurrent layers, a linear layer to the next
    character's scores."""
    return CharRNN(num_classes, embedding_dim, hidden, layers, dropout, "rnn")
