"""Slide "One HotEnd Encoding" (one-hot encoding): one output neuron per class, 1 for "my class",
0 for "not my class".

``fv.nn.functional.one_hot`` turns Fashion-MNIST's class indices into one-hot rows; the
network's ten outputs go through softmax, and ``F.cross_entropy`` against the index equals
-sum(one_hot * log softmax). A single output neuron predicting the index 0..9 would make
"Sneaker" (7) look closer to "Bag" (8) than to "Sandal" (5), which means nothing.

    python examples/lecture/15_one_hot.py
"""
import foveanet as fv
import foveanet.nn.functional as F


def main():
    ds = fv.data.FashionMNIST(train=False)
    _, y = ds.arrays()
    labels = fv.tensor(y[:4])
    hot = F.one_hot(labels, 10).numpy()
    for lab, row in zip(labels.numpy(), hot):
        print(f"{ds.classes[lab]:>12} ({lab}) -> {row.astype(int).tolist()}")

    fv.manual_seed(0)
    scores = fv.randn(4, 10)
    ce = F.cross_entropy(scores, labels).item()
    by_hand = float(-(hot * F.log_softmax(scores, dim=1).numpy()).sum(1).mean())
    print(f"cross entropy {ce:.6f} = -mean(sum(one_hot * log softmax)) {by_hand:.6f}")
    return {"one_hot": hot.tolist(), "row_sums": hot.sum(1).tolist(), "ce": ce, "by_hand": by_hand}


if __name__ == "__main__":
    main()
