"""Slides "Neural Networks Tools", "PyTorch" and "Keras": foveanet has PyTorch's API shape
(``fv.nn``, ``fv.optim``, ``fv.data``) over its own NumPy engine, and a Keras-like one-call
training loop, ``fv.train.fit`` (``foveanet train`` on the command line).

Here the same small network in foveanet and in PyTorch (when PyTorch is installed), with the
same weights, gives the same output and the same gradients; then ``fv.train.fit`` trains it
for three epochs on 256 Fashion-MNIST images, with validation, in one call.

    python examples/lecture/32_frameworks.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn as nn


def compare_with_torch(model, x):
    try:
        import torch
    except ImportError:                                       # PyTorch is optional
        return None
    ref = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 10))
    ref.load_state_dict({k: torch.tensor(v.detach().numpy()) for k, v in model.state_dict().items()})
    xt = torch.tensor(x.numpy())
    ref(xt).sum().backward()
    model(x).sum().backward()
    out = float(np.abs(ref(xt).detach().numpy() - model(x).detach().numpy()).max())
    grad = float(np.abs(ref[1].weight.grad.numpy() - model[1].weight.grad.numpy()).max())
    return out, grad


def main(n=256):
    fv.manual_seed(0)
    images, labels = fv.data.FashionMNIST(train=False).arrays()
    x, y = fv.tensor(images[:n]), fv.tensor(labels[:n])
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    diffs = compare_with_torch(model, x[:8])
    if diffs:
        print(f"foveanet vs PyTorch, same weights: output differs by {diffs[0]:.1e}, "
              f"gradient by {diffs[1]:.1e}")
    model.zero_grad()
    train = fv.data.DataLoader(fv.data.TensorDataset(x[:192], y[:192]), batch_size=32, shuffle=True,
                               generator=fv.Generator().manual_seed(0))
    val = fv.data.DataLoader(fv.data.TensorDataset(x[192:], y[192:]), batch_size=64)
    history = fv.train.fit(model, train, val, epochs=3, optimizer="adam", lr=3e-3, progress=False)
    print(f"fv.train.fit, 3 epochs: metrics {history.keys()}")
    print(f"training loss per epoch {[round(v, 4) for v in history['train_loss']]}")
    return {"torch_diffs": diffs, "train_loss": history["train_loss"], "keys": history.keys()}


if __name__ == "__main__":
    main()
