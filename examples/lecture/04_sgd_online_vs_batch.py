"""Slides "Stochastic Gradient Descent" and "Batch Learning": on-line, mini-batch and full-batch
updates of the same network.

SGD estimates the gradient of the total error from a few randomly chosen samples; on-line
learning updates after every sample (batch size 1), batch learning averages delta-w over a
batch. ``fv.optim.SGD`` makes the step, ``fv.data.DataLoader(shuffle=True)`` draws the samples.
Here a 784-32-10 network learns 256 real Fashion-MNIST images for the same number of samples
seen (one epoch) with each batch size.

    python examples/lecture/04_sgd_online_vs_batch.py
"""
import foveanet as fv
import foveanet.nn as nn
import foveanet.nn.functional as F


def train(x, y, batch_size, lr):
    fv.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = fv.optim.SGD(model.parameters(), lr=lr)
    loader = fv.data.DataLoader(fv.data.TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                                generator=fv.Generator().manual_seed(0))
    steps = 0
    for xb, yb in loader:
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    with fv.no_grad():
        return steps, F.cross_entropy(model(x), y).item()


def main(n=256):
    x, y = fv.data.FashionMNIST(train=False).arrays()
    x, y = fv.tensor(x[:n]), fv.tensor(y[:n])
    with fv.no_grad():
        fv.manual_seed(0)
        start = F.cross_entropy(nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(),
                                              nn.Linear(32, 10))(x), y).item()
    print(f"loss before training {start:.4f}  ({n} Fashion-MNIST images, one pass each)")
    out = {"start": start}
    for name, bs, lr in [("on-line", 1, 0.01), ("mini-batch", 16, 0.1), ("full batch", n, 0.1)]:
        steps, loss = train(x, y, bs, lr)
        print(f"{name:>10} (batch {bs:>3}): {steps:>3} updates, loss after {loss:.4f}")
        out[name] = {"steps": steps, "loss": loss}
    return out


if __name__ == "__main__":
    main()
