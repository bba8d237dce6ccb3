"""Slides "Back Propagation" and "Chain Rule": dE/dw_jk = dE/dy_k * dy_k/dz_k * dz_k/dw_jk.

For one sigmoid neuron of steepness sigma, z = sum_j x_j w_j, y = 1 / (1 + e^(-sigma z)) and
E = 1/2 (y - d)^2, the chain rule gives dE/dw_j = (y - d) sigma y (1 - y) x_j. foveanet's
reverse-mode autograd (``Tensor.backward``) computes the same numbers; the update is
delta-W = -alpha sum_s dE_s/dW over the p samples (batch gradient descent).

    python examples/lecture/03_backprop_chain_rule.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn.functional as F


def main(sigma=2.0, alpha=0.5):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3))                       # p = 4 samples, 3 inputs
    d = np.array([[0.0], [1.0], [1.0], [0.0]])
    w = fv.tensor(rng.normal(size=(3, 1)), requires_grad=True)

    y = F.sigmoid(fv.tensor(x) @ w, sigma=sigma)      # y_k = 1 / (1 + e^(-sigma z_k))
    E = F.sum_squared_error(y, fv.tensor(d))           # E = 1/2 sum_s (y_s - d_s)^2
    E.backward()

    yv = y.detach().numpy()
    by_hand = (x * ((yv - d) * sigma * yv * (1 - yv))).sum(axis=0, keepdims=True).T
    err = float(np.abs(w.grad.numpy() - by_hand).max())
    print(f"autograd dE/dw  = {[round(float(v), 6) for v in w.grad.numpy().ravel()]}")
    print(f"chain rule      = {[round(float(v), 6) for v in by_hand.ravel()]}")
    print(f"largest difference {err:.2e}")

    with fv.no_grad():                                 # delta-W = -alpha sum_s dE_s/dW
        w -= alpha * w.grad
        E_after = F.sum_squared_error(F.sigmoid(fv.tensor(x) @ w, sigma=sigma), fv.tensor(d)).item()
    print(f"E before the step {E.item():.6f}, after one step {E_after:.6f}")
    return {"max_diff": err, "E_before": E.item(), "E_after": E_after}


if __name__ == "__main__":
    main()
