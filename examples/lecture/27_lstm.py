"""Slide "Recurrent Neural Nets" (Long Short Term Memory): networks with state, for signals and
text; backpropagation through time keeps the partial derivatives of the whole input series.

``fv.nn.LSTM`` (also ``fv.nn.RNN``, ``fv.nn.GRU`` and their cells; ``ops/rnn.py`` runs a whole
sequence as one Function). ``fv.models.lstm_rows`` reads an image row by row,
``fv.models.char_lstm`` is the character language model of ``foveanet train --model
char_lstm``. Here an LSTM learns to predict the next value of a sine wave, and its training
loss falls. ``benchmarks/rnn_memory.py`` measures the memory that backpropagation through time
needs against the sequence length (plain, truncated, with checkpointing).

    python examples/lecture/27_lstm.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn as nn
import foveanet.nn.functional as F


class NextValue(nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x):                            # x: (batch, time, 1)
        y, (h, c) = self.lstm(x)
        return self.out(y)


def main(steps=40, length=30):
    fv.manual_seed(0)
    t = np.linspace(0, 4 * np.pi, length + 1, dtype=np.float32)
    phases = np.linspace(0, np.pi, 8, dtype=np.float32)[:, None]
    wave = np.sin(t[None] + phases)[..., None]                    # (8, 31, 1)
    x, target = fv.tensor(wave[:, :-1]), fv.tensor(wave[:, 1:])
    model = NextValue()
    opt = fv.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(steps):
        loss = F.mse_loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    y, (h, c) = model.lstm(x)
    print(f"LSTM(1, 16): input {tuple(x.shape)} -> outputs {tuple(y.shape)}, h_n {tuple(h.shape)}, "
          f"c_n {tuple(c.shape)}")
    print(f"next-value MSE: step 1 {losses[0]:.4f} -> step {steps} {losses[-1]:.4f}")
    return {"y_shape": tuple(y.shape), "h_shape": tuple(h.shape), "loss_first": losses[0],
            "loss_last": losses[-1]}


if __name__ == "__main__":
    main()
