"""Slides "Activation Functions", "ReLU (Rectified Linear Unit)", "Leaky ReLU" and "Softmax".

``fv.nn.ReLU`` / ``F.relu``, ``fv.nn.LeakyReLU`` / ``F.leaky_relu``, ``fv.nn.Sigmoid``,
``fv.nn.Tanh`` and ``F.softmax``. ReLU's derivative is 0 below zero (the "dead" neuron), Leaky
ReLU's is its slope; softmax turns scores into probabilities that sum to 1, keeps their order,
and is differentiable.

    python examples/lecture/12_activations.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn.functional as F


def grad_of(fn, x):
    t = fv.tensor(x, requires_grad=True)
    fn(t).sum().backward()
    return t.grad.numpy()


def main():
    x = np.array([-10.0, -1.0, 0.5, 10.0], dtype=np.float32)
    relu = F.relu(fv.tensor(x)).numpy()
    leaky = F.leaky_relu(fv.tensor(x), 0.1).numpy()
    g_relu, g_leaky = grad_of(F.relu, x), grad_of(lambda t: F.leaky_relu(t, 0.1), x)
    def r(a):
        return [round(float(v), 4) for v in a]

    print(f"x               {r(x)}")
    print(f"ReLU            {r(relu)}   d/dx {r(g_relu)}")
    print(f"LeakyReLU(0.1)  {r(leaky)}   d/dx {r(g_leaky)}")

    z = fv.tensor([[2.0, 1.0, 0.1]])
    p = F.softmax(z, dim=1).numpy()[0]
    print(f"softmax({r(z.numpy()[0])}) = {r(p)}, sum {p.sum():.4f}")
    return {"relu_grad": g_relu.tolist(), "leaky_grad": g_leaky.tolist(),
            "softmax": p.tolist(), "softmax_sum": float(p.sum())}


if __name__ == "__main__":
    main()
