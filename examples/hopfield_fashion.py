"""A Hopfield network as an associative memory for pictures: Fashion-MNIST images recalled from
copies with 30% of their pixels flipped.

The images stored are chosen by a fixed rule, not by how well they come back: the first
training image of each class (``--classes``, all ten by default), binarised into 784-neuron
patterns: a pixel brighter than its image's mean is +1, the others -1. (A fixed threshold of 127
leaves the first coat, a dark one, with 2.7% of its pixels set: almost a blank pattern.) They are
stored twice, in one network with Hebb's rule and in one with Storkey's (1997). Each picture
then has ``--flip`` of its pixels flipped (exactly that fraction, at places drawn with
``--seed``) and both networks run asynchronously to a fixed point from the corrupted copy.
"Recovered" is the fraction of the 784 pixels of the final state equal to the stored picture;
"nearest" is the stored picture with the largest overlap with the final state (a recall that
ends nearer another picture is a wrong one, however many pixels agree).

Pictures of clothes are strongly correlated (large shared background, similar silhouettes:
overlaps of 0.3-0.8 between patterns where random ones have ~0), so Hebb's rule mixes them into
spurious states well below its capacity for random patterns (0.138 x 784 ~ 108); Storkey's
rule subtracts the crosstalk each new pattern would meet and recalls most of them.

    python examples/hopfield_fashion.py --out docs/images/hopfield_recall.png
    python examples/hopfield_fashion.py --classes 0 1 7 8 9 --flip 0.2
"""
import argparse
import time

import numpy as np

import foveanet as fv


def load_patterns(classes, train: bool = True, root=None):
    """The first image of each class in ``classes`` as -1/+1 patterns (len(classes), 784), the
    grey-scale originals and their class names."""
    ds = fv.data.FashionMNIST(root=root, train=train)
    index = [int(np.flatnonzero(ds.targets == c)[0]) for c in classes]
    grey = ds.data[index].reshape(len(index), -1)
    threshold = grey.mean(axis=1, keepdims=True)  # one per image: its mean brightness
    patterns = fv.models.to_bipolar(grey, threshold=threshold, dtype=np.float64).numpy()
    return patterns, grey, [ds.classes[c] for c in classes]


def corrupt(patterns, fraction: float, seed: int):
    """A copy with exactly round(fraction * n) pixels of each pattern flipped, chosen at random."""
    rng = np.random.default_rng(seed)
    out = patterns.copy()
    k = int(round(fraction * patterns.shape[1]))
    for row in out:
        row[rng.choice(patterns.shape[1], size=k, replace=False)] *= -1
    return out


def recall_demo(classes=tuple(range(10)), flip: float = 0.3, seed: int = 0,
                rules=("storkey", "hebbian")):
    """Store, corrupt, recall. Returns a dict: patterns, corrupted, names, and per rule the
    recalled states and the fraction of pixels recovered per image."""
    patterns, _, names = load_patterns(classes)
    noisy = corrupt(patterns, flip, seed)
    result = {"patterns": patterns, "corrupted": noisy, "names": names, "recalled": {},
              "recovered": {}, "nearest": {}, "info": {}}
    for rule in rules:
        net = fv.models.HopfieldNetwork(patterns.shape[1]).store(patterns, rule=rule)
        states, info = net.recall(noisy, mode="async", generator=fv.Generator(seed),
                                  return_info=True)
        result["recalled"][rule] = states.numpy()
        result["recovered"][rule] = (states.numpy() == patterns).mean(axis=1)
        result["nearest"][rule] = np.argmax(net.overlap(states, patterns).numpy(), axis=1)
        result["info"][rule] = info
    return result


def plot(result, out, flip):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = list(result["recalled"])
    rows = [("stored", result["patterns"]), (f"{100 * flip:.0f}% flipped", result["corrupted"])]
    rows += [(f"recalled\n({rule})", result["recalled"][rule]) for rule in rules]
    cols = len(result["names"])
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.25 * cols + 1.2, 1.45 * len(rows) + 0.4),
                             squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(images[c].reshape(28, 28), cmap="gray_r", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(result["names"][c], fontsize=9)
            if r >= 2:
                rule = rules[r - 2]
                got, near = result["recovered"][rule][c], result["nearest"][rule][c]
                text = f"{100 * got:.1f}%" + ("" if near == c else f"\n-> {result['names'][near]}")
                ax.set_xlabel(text, fontsize=8.5, color="black" if got == 1 else "firebrick")
        axes[r, 0].set_ylabel(label, fontsize=9)
    means = ", ".join(f"{rule} {100 * result['recovered'][rule].mean():.1f}%" for rule in rules)
    fig.suptitle(f"Hopfield recall of {cols} Fashion-MNIST pictures (784 neurons); pixels "
                 f"recovered: {means}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="write the picture to this PNG file")
    ap.add_argument("--classes", type=int, nargs="+", default=list(range(10)),
                    help="the classes whose first training image is stored (0-9)")
    ap.add_argument("--flip", type=float, default=0.3, help="fraction of pixels flipped")
    ap.add_argument("--seed", type=int, default=0, help="seed of the flips and the update order")
    ap.add_argument("--quick", action="store_true", help="three classes only (a smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.classes = [1, 7, 8]
    if not all(0 <= c <= 9 for c in args.classes) or len(set(args.classes)) != len(args.classes):
        ap.error("--classes: distinct class numbers 0-9")
    if not 0 <= args.flip <= 1:
        ap.error("--flip: a fraction between 0 and 1")
    start = time.perf_counter()
    result = recall_demo(args.classes, args.flip, args.seed)
    names = result["names"]
    width = max(len(n) for n in names)
    rules = list(result["recovered"])
    print(f"pixels recovered from {100 * args.flip:g}% flipped (nearest stored picture at the end)")
    print(f"{'image':{width}s}  " + "".join(f"{r:>{width + 11}s}" for r in rules))
    for k, name in enumerate(names):
        cells = []
        for rule in rules:
            near = result["nearest"][rule][k]
            where = "itself" if near == k else names[near]
            cells.append(f"{100 * result['recovered'][rule][k]:6.1f}% ({where})")
        print(f"{name:{width}s}  " + "".join(f"{c:>{width + 11}s}" for c in cells))
    print(f"{'mean':{width}s}  " + "".join(f"{100 * result['recovered'][r].mean():{width + 10}.1f}%"
                                          for r in rules))
    for rule, info in result["info"].items():
        perfect = int((result["recovered"][rule] == 1).sum())
        right = int((result["nearest"][rule] == np.arange(len(names))).sum())
        print(f"{rule}: {perfect} of {len(names)} recalled exactly, {right} nearest to their own "
              f"picture; every recall converged: {info.all_converged} "
              f"({int(info.sweeps.max())} sweeps at most)")
    if args.out:
        plot(result, args.out, args.flip)
        print(f"wrote {args.out}")
    print(f"{time.perf_counter() - start:.1f} s")
    return result


if __name__ == "__main__":
    main()
