"""The lecture's first network: a 2-2-1 net of sigmoid neurons learns XOR by back-propagation.

Every piece is the slide's: neurons y = f(sum w x + b) with the sigmoid f(z) = 1/(1+e^(-sigma z)),
the error E = 1/2 sum (y - d)^2, and plain gradient descent delta-W = -alpha dE/dw (batch learning:
the four patterns' gradients are summed before each update).

    python examples/xor.py
"""
import foveanet as fv
import foveanet.nn as nn
import foveanet.nn.functional as F


def train_xor(seed: int = 0, epochs: int = 3000, lr: float = 2.0, sigma: float = 1.0, verbose=True):
    fv.manual_seed(seed)
    x = fv.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    d = fv.tensor([[0.0], [1.0], [1.0], [0.0]])
    model = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(sigma), nn.Linear(2, 1), nn.Sigmoid(sigma))
    opt = fv.optim.SGD(model.parameters(), lr=lr)
    for epoch in range(1, epochs + 1):
        opt.zero_grad()
        y = model(x)
        E = F.sum_squared_error(y, d)      # E = 1/2 sum (y - d)^2
        E.backward()                       # dE/dw for every weight, by the chain rule
        opt.step()                         # w <- w - alpha dE/dw
        if verbose and (epoch % 500 == 0 or epoch == 1):
            print(f"epoch {epoch:5d}  E = {E.item():.5f}")
    with fv.no_grad():
        y = model(x)
    correct = int(((y.numpy() > 0.5) == (d.numpy() > 0.5)).sum())
    return model, y, correct


if __name__ == "__main__":
    model, y, correct = train_xor()
    for inp, out in zip([(0, 0), (0, 1), (1, 0), (1, 1)], y.numpy().ravel()):
        print(f"XOR{inp} -> {out:.3f}")
    print(f"training accuracy: {correct}/4 = {100 * correct / 4:.0f}%")
