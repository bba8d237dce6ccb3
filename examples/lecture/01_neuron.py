"""Slide "Fully Connected Neural Network": a single neuron, y = f(w_1 x_1 + ... + w_i x_i + b).

One ``fv.nn.Linear(3, 1)`` followed by the sigmoid is one neuron; its output equals the formula
computed by hand from its weights.

    python examples/lecture/01_neuron.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn as nn


def main():
    fv.manual_seed(0)
    neuron = nn.Sequential(nn.Linear(3, 1), nn.Sigmoid())
    x = fv.tensor([[0.5, -1.0, 2.0]])
    y = neuron(x).item()

    w, b = neuron[0].weight.detach().numpy()[0], neuron[0].bias.detach().numpy()[0]
    z = float(np.dot(w, x.numpy()[0]) + b)          # w1 x1 + w2 x2 + w3 x3 + b
    by_hand = 1.0 / (1.0 + np.exp(-z))              # f = the sigmoid
    print(f"weights {[round(float(v), 4) for v in w]}  bias {b:.4f}")
    print(f"z = w.x + b = {z:.6f}")
    print(f"neuron output y = f(z) = {y:.6f}   by hand: {by_hand:.6f}")
    return {"y": y, "by_hand": float(by_hand), "params": sum(p.numel() for p in neuron.parameters())}


if __name__ == "__main__":
    main()
