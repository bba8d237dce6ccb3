"""Slide "Perceptron and Fully Connected NN" (history): Rosenblatt's 1958 perceptron.

``fv.models.perceptron`` (class ``Perceptron``) is one threshold unit over the flattened image:
785 weights for 28x28. ``Perceptron.perceptron_update`` is one pass of the perceptron rule
w <- w + lr (d - y) x, sample by sample; here it separates two Fashion-MNIST classes
(T-shirt/top against Trouser) in a few passes over 200 images.

    python examples/lecture/05_perceptron.py
"""
import numpy as np

import foveanet as fv


def main(n=200, epochs=5):
    x, y = fv.data.FashionMNIST(train=False).arrays()
    keep = np.flatnonzero(y <= 1)[:n]                     # class 0 (T-shirt/top) and 1 (Trouser)
    x, d = x[keep], y[keep].astype(np.float32)

    model = fv.models.perceptron(num_classes=1)
    n_params = sum(p.numel() for p in model.parameters())
    errors = [model.perceptron_update(x, d) for _ in range(epochs)]   # mistakes in each pass
    acc = model.score(x, d)
    print(f"fv.models.perceptron(): {n_params} parameters (784 weights + 1 bias)")
    print(f"mistakes per pass over {len(d)} images: {errors}")
    print(f"training accuracy after {epochs} passes: {acc:.3f}")
    return {"params": n_params, "errors": errors, "accuracy": acc}


if __name__ == "__main__":
    main()
