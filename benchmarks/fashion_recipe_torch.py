"""The default `foveanet train` recipe, trained in plain PyTorch on the same data, for comparison.

Same model (cnn_bn with the recipe's width), same split (foveanet's stratified train/validation
split with the recipe's seed), same normalisation, same augmentation (random horizontal flip),
same optimizer (AdamW), OneCycle schedule stepped per batch, same batch size and epochs, same
thread count. It prints the wall time of training and the test accuracy of the best-validation
epoch, the figures `make demo` prints for foveanet.

    .venv/bin/python benchmarks/fashion_recipe_torch.py [--epochs N]
"""
import argparse
import copy
import time

import numpy as np
import torch

import foveanet as fv
from foveanet.data import FashionMNIST, train_val_split
from foveanet.recipes import DEFAULT_RECIPE


def cnn_bn(width, hidden=256, dropout=0.25, classes=10):
    def block(i, o):
        return [torch.nn.Conv2d(i, o, 3, padding=1, bias=False), torch.nn.BatchNorm2d(o), torch.nn.ReLU()]
    return torch.nn.Sequential(*block(1, width), *block(width, width), torch.nn.MaxPool2d(2),
                               *block(width, 2 * width), *block(2 * width, 2 * width), torch.nn.MaxPool2d(2),
                               torch.nn.Flatten(), torch.nn.Dropout(dropout),
                               torch.nn.Linear(2 * width * 49, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes))


def accuracy(model, x, y, bs=500):
    model.eval()
    with torch.no_grad():
        correct = loss = 0.0
        for i in range(0, len(x), bs):
            out = model(torch.from_numpy(x[i:i + bs]))
            t = torch.from_numpy(y[i:i + bs])
            loss += torch.nn.functional.cross_entropy(out, t, reduction="sum").item()
            correct += (out.argmax(1) == t).sum().item()
    return correct / len(x), loss / len(x)


def main():
    r = DEFAULT_RECIPE
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=r["epochs"])
    args = ap.parse_args()
    torch.set_num_threads(r["threads"])
    torch.manual_seed(r["seed"])
    rng = np.random.default_rng(r["seed"])
    train, test = FashionMNIST(train=True), FashionMNIST(train=False)
    tr_idx, va_idx = train_val_split(train, r["val_split"], stratify=True, generator=fv.Generator(r["seed"]))
    tr_idx, va_idx = np.asarray(tr_idx.indices if hasattr(tr_idx, "indices") else tr_idx), \
        np.asarray(va_idx.indices if hasattr(va_idx, "indices") else va_idx)
    x = train.data.astype(np.float32)[:, None] / 255
    xt = test.data.astype(np.float32)[:, None] / 255
    xtr, ytr = x[tr_idx], train.targets[tr_idx].astype(np.int64)
    xva, yva = x[va_idx], train.targets[va_idx].astype(np.int64)
    yte = test.targets.astype(np.int64)
    model = cnn_bn(r["model_options"]["width"])
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    bs = r["batch_size"]
    steps = args.epochs * -(-len(xtr) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r["lr"], total_steps=steps)
    best = (float("inf"), None, 0)
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = rng.permutation(len(xtr))
        for i in range(0, len(perm), bs):
            b = perm[i:i + bs]
            xb = xtr[b].copy()
            flip = rng.random(len(b)) < 0.5
            xb[flip] = xb[flip][..., ::-1]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(xb)), torch.from_numpy(ytr[b]))
            loss.backward()
            opt.step()
            sched.step()
        va_acc, va_loss = accuracy(model, xva, yva)
        print(f"epoch {epoch}: val loss {va_loss:.4f} val accuracy {100 * va_acc:.2f}%  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        if va_loss < best[0]:
            best = (va_loss, copy.deepcopy(model.state_dict()), epoch)
    train_time = time.perf_counter() - t0
    model.load_state_dict(best[1])
    te_acc, _ = accuracy(model, xt, yte)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: training {train_time:.0f} s "
          f"({args.epochs * len(xtr) / train_time:.0f} images/s), test accuracy {100 * te_acc:.2f}% "
          f"(best epoch {best[2]})")


if __name__ == "__main__":
    main()
