"""Slide "https://playground.tensorflow.org": a small network learning 2-D points in the browser
(noise 20, batch size 25, sigmoid activations, L1 regularisation 0.001, classification), with its
test and training loss.

``fv.data.make_toy`` generates Playground's data sets (circle, xor, gauss, spiral and two
regression sets; ``noise`` is Playground's noise / 100); ``foveanet train --dataset circle``
trains on them from the shell. The browser page itself is ``foveanet playground`` (being built:
the Playground part of the project). Here the slide's settings on the circle set, half train
and half test.

    python examples/lecture/34_playground.py
"""
import foveanet as fv
import foveanet.nn as nn
import foveanet.nn.functional as F


def main(epochs=100):
    fv.manual_seed(0)
    x, y = fv.data.make_toy("circle", n=400, noise=0.2, seed=0)
    xt, yt, xv, yv = fv.tensor(x[:200]), fv.tensor(y[:200]), fv.tensor(x[200:]), fv.tensor(y[200:])
    model = nn.Sequential(nn.Linear(2, 8), nn.Sigmoid(), nn.Linear(8, 4), nn.Sigmoid(),
                          nn.Linear(4, 2))
    opt = fv.optim.SGD(model.parameters(), lr=1.0)
    weights = fv.train.penalized_parameters(model)
    loader = fv.data.DataLoader(fv.data.TensorDataset(xt, yt), batch_size=25, shuffle=True,
                                generator=fv.Generator().manual_seed(0))

    def losses():
        with fv.no_grad():
            return F.cross_entropy(model(xt), yt).item(), F.cross_entropy(model(xv), yv).item()

    start = losses()
    for _ in range(epochs):
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb) + fv.optim.l1_penalty(weights, 0.001)
            opt.zero_grad()
            loss.backward()
            opt.step()
    end = losses()
    with fv.no_grad():
        acc = float((model(xv).numpy().argmax(1) == y[200:]).mean())
    print(f"circle, noise 20, batch size 25, sigmoid, L1 0.001: {len(x)} points")
    print(f"before: training loss {start[0]:.3f}, test loss {start[1]:.3f}")
    print(f"after {epochs} epochs: training loss {end[0]:.3f}, test loss {end[1]:.3f}, "
          f"test accuracy {acc:.3f}")
    return {"train_before": start[0], "test_before": start[1], "train_after": end[0],
            "test_after": end[1], "test_accuracy": acc}


if __name__ == "__main__":
    main()
