"""Slide "LeNet (1998)": the first "true" convolutional network, for characters and digits.

``fv.models.lenet5`` is LeCun's conv5-pool-conv5-pool-fc120-fc84-fc10 (61,706 parameters for
28x28 inputs); ``fv.models.summary`` lists its layers and shapes. A few Adam steps on 200 real
Fashion-MNIST images lower its loss.

    python examples/lecture/06_lenet.py
"""
import foveanet as fv
import foveanet.nn.functional as F


def main(n=200, steps=15):
    fv.manual_seed(0)
    x, y = fv.data.FashionMNIST(train=False).arrays()
    x, y = fv.tensor(x[:n]), fv.tensor(y[:n])
    model = fv.models.lenet5()
    s = fv.models.summary(model, (1, 1, 28, 28))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"lenet5: {n_params:,} parameters, output {tuple(model(x[:1]).shape)}")

    opt = fv.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"loss on {n} images: step 1 {losses[0]:.4f} -> step {steps} {losses[-1]:.4f}")
    return {"params": n_params, "loss_first": losses[0], "loss_last": losses[-1],
            "summary_lines": len(str(s).splitlines())}


if __name__ == "__main__":
    main()
