"""Compression by an autoencoder: reconstruction error against the size of the code.

The lecture's encoder reduces an image to a small vector and expands it back. Here a dense
(``dense_ae``) and a convolutional (``conv_ae``) autoencoder are trained on Fashion-MNIST for
each bottleneck size (2 to 256 numbers per 784-pixel image), each with the same budget (Adam,
lr 1e-3, ``--epochs`` over ``--train`` training images, seed 0), and their test MSE and PSNR
over the 10,000 test images are printed and plotted against the bottleneck. The 2-number codes
of the test set are drawn as a map coloured by class (the right-hand panel): similar clothes
land near each other without the labels ever being used.

    python examples/ae_compression.py --out docs/images/ae_compression.png --json ae.json
    python examples/ae_compression.py --quick     # a smoke test: 2 sizes, 500 images
"""
import argparse
import json
import time

import numpy as np

import foveanet as fv
from foveanet.data import DataLoader, ReconstructionPairs, open_dataset
from foveanet.train import Trainer

SIZES = (2, 4, 8, 16, 32, 64, 128, 256)
MODELS = ("dense_ae", "conv_ae")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


def subset(ds, n, seed):
    if n >= len(ds):
        return ds
    idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    return fv.data.Subset(ds, idx)


def train_one(name, k, train, test, epochs, batch_size=128, seed=0):
    fv.manual_seed(seed)
    model = fv.models.create(name, bottleneck=k)
    opt = fv.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(ReconstructionPairs(train), batch_size=batch_size, shuffle=True,
                        generator=fv.Generator(seed + 1))
    trainer = Trainer(model, opt, task="reconstruction", progress=False)
    t0 = time.perf_counter()
    trainer.fit(loader, epochs=epochs)
    seconds = time.perf_counter() - t0
    model.eval()
    sq, n, codes, labels = 0.0, 0, [], []
    with fv.no_grad():
        for x, y in DataLoader(test, batch_size=500):
            out = model(x).numpy()
            sq += float(((out - x.numpy()) ** 2).sum())
            n += out.size
            if k == 2:
                codes.append(model.encode(x).numpy())
                labels.append(y.numpy())
    mse = sq / n
    res = {"model": name, "bottleneck": k, "mse": mse, "psnr_of_mse": 10 * np.log10(1 / mse),
           "train_seconds": seconds,
           "parameters": sum(p.numel() for p in model.parameters())}
    if k == 2:
        res["codes"] = np.concatenate(codes)
        res["labels"] = np.concatenate(labels)
    return res


def plot(results, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    for name, style in zip(MODELS, ("o-", "s-")):
        rs = sorted((r for r in results if r["model"] == name), key=lambda r: r["bottleneck"])
        ax.plot([r["bottleneck"] for r in rs], [r["mse"] for r in rs], style, label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted({r["bottleneck"] for r in results})
    ax.set_xticks(sizes, [str(k) for k in sizes])
    ax.set_xlabel("bottleneck (numbers per 784-pixel image)")
    ax.set_ylabel("test MSE (pixels in [0, 1])")
    ax.set_title("Reconstruction error against the code's size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    two = [r for r in results if r["bottleneck"] == 2 and "codes" in r]
    if two:
        r = next((r for r in two if r["model"] == "conv_ae"), two[0])
        cmap = plt.get_cmap("tab10")
        for c in range(10):
            sel = r["labels"] == c
            ax2.scatter(r["codes"][sel, 0], r["codes"][sel, 1], s=2, color=cmap(c),
                        label=CLASSES[c])
        ax2.set_title(f"The test set in {r['model']}'s 2-D code (coloured by class)")
        ax2.set_xlabel("z[0]")
        ax2.set_ylabel("z[1]")
        ax2.legend(markerscale=5, fontsize=7, loc="best")
    fig.savefig(out, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="write the plot to this PNG file")
    ap.add_argument("--json", help="write the figures to this JSON file")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train", type=int, default=20000, help="training images per model")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.train, args.epochs = [2, 32], 500, 1
    fv.set_num_threads(args.threads)
    train = subset(open_dataset("fashion-mnist", train=True), args.train, 0)
    test = open_dataset("fashion-mnist", train=False)
    if args.quick:
        test = subset(test, 500, 1)
    results = []
    print(f"{'model':<9} {'bottleneck':>10} {'test MSE':>10} {'PSNR dB':>8} {'params':>10} "
          f"{'train s':>8}")
    for name in args.models:
        for k in args.sizes:
            r = train_one(name, k, train, test, args.epochs)
            results.append(r)
            print(f"{name:<9} {k:>10} {r['mse']:>10.5f} {r['psnr_of_mse']:>8.2f} "
                  f"{r['parameters']:>10,} {r['train_seconds']:>8.1f}", flush=True)
    if args.out:
        plot(results, args.out)
        print(f"wrote {args.out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: v for k, v in r.items() if k not in ("codes", "labels")}
                       for r in results], f, indent=1)


if __name__ == "__main__":
    main()
