"""Slide "Regularisation": cost = loss + alpha sum |w| (L1) or alpha sum w^2 (L2), alpha about
0.001; it penalises the large weights that come with overfitting.

``fv.optim.l1_penalty`` / ``fv.optim.l2_penalty`` compute the terms, ``fv.optim.Regularizer``
holds the coefficients, ``fv.train.fit(..., l1=, l2=)`` and ``foveanet train --l1/--l2`` add
them to the loss (on weights only: ``fv.train.penalized_parameters``). Training the same
network on 100 Fashion-MNIST images with and without L2 shows the smaller weights.

    python examples/lecture/18_regularization.py
"""
import foveanet as fv
import foveanet.nn as nn
import foveanet.nn.functional as F


def train(x, y, l2, steps=40):
    fv.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    opt = fv.optim.SGD(model.parameters(), lr=0.5)
    weights = fv.train.penalized_parameters(model)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y) + fv.optim.l2_penalty(weights, l2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(sum((w.detach().numpy() ** 2).sum() for w in weights))


def main(n=100, alpha=0.01):
    w = fv.tensor([[1.0, -2.0], [0.5, 0.0]])
    l1, l2 = fv.optim.l1_penalty([w], 0.001).item(), fv.optim.l2_penalty([w], 0.001).item()
    print(f"w = {w.numpy().tolist()}: L1 = 0.001 * 3.5 = {l1:.4f}, L2 = 0.001 * 5.25 = {l2:.5f}")

    x, y = fv.data.FashionMNIST(train=False).arrays()
    x, y = fv.tensor(x[:n]), fv.tensor(y[:n])
    plain, shrunk = train(x, y, 0.0), train(x, y, alpha)
    print(f"sum w^2 after training: without L2 {plain:.3f}, with L2 (alpha {alpha}) {shrunk:.3f}")
    return {"l1": l1, "l2": l2, "norm_plain": plain, "norm_l2": shrunk}


if __name__ == "__main__":
    main()
