"""Slide "Fully Connected Neural Network": Y_10x1 = W_10x100 * X_100x1, the "linear classifier".

A fully connected layer of 10 neurons on 100 inputs is one matrix product: ``fv.nn.Linear(100,
10)`` holds W (10, 100) and b (10,), and its output is ``W @ X + b``. A whole network is a chain
of them (``fv.models.mlp``: 784-512-512-10).

    python examples/lecture/02_fully_connected.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn as nn


def main():
    fv.manual_seed(0)
    layer = nn.Linear(100, 10)
    X = fv.randn(100, 1)                                   # one input, a column vector
    Y = fv.matmul(layer.weight, X) + layer.bias.reshape(10, 1)
    y_layer = layer(X.T)                                 # the layer takes rows: (1, 100) -> (1, 10)
    same = bool(np.allclose(Y.detach().numpy().ravel(), y_layer.detach().numpy().ravel(), atol=1e-5))
    print(f"W {tuple(layer.weight.shape)} x X {tuple(X.shape)} -> Y {tuple(Y.shape)}")
    print(f"nn.Linear(100, 10) gives the same numbers: {same}")

    mlp = fv.models.mlp()
    n_params = sum(p.numel() for p in mlp.parameters())
    print(f"fv.models.mlp() (784-512-512-10): {n_params:,} weights and biases")
    return {"Y_shape": tuple(Y.shape), "W_shape": tuple(layer.weight.shape), "same": same,
            "mlp_params": n_params}


if __name__ == "__main__":
    main()
