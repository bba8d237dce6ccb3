"""A `foveanet train` recipe on Fashion-MNIST, trained in plain PyTorch on the same data, for
comparison: the default recipe (what `make demo` runs), or a named one (`--recipe fashion95`:
`foveanet train --recipe fashion95`).

Same model (cnn_bn with the recipe's width), same split (foveanet's stratified train/validation
split with the recipe's seed), same inputs (pixels / 255), the same augmentation (the recipe's
``augment`` string through foveanet's own batch transforms, ``fv.data.parse_augment``, so both
libraries train on identically distributed batches), same optimizer (AdamW, or SGD with momentum
for ``momentum``; the recipe's rate and decay), the same label smoothing (in the validation loss
too, as foveanet's task computes it), OneCycle schedule stepped per batch with foveanet's
parameters (``SCHEDULES``), same batch size and epochs, same thread count; the test set is scored once, with the weights of the
epoch of lowest validation loss. It prints the wall time of training and that test accuracy, the
figures `foveanet train` prints.

    .venv/bin/python benchmarks/fashion_recipe_torch.py [--recipe NAME] [--epochs N]
"""
import argparse
import copy
import time

import numpy as np
import torch

import foveanet as fv
from foveanet.data import FashionMNIST, parse_augment, train_val_split
from foveanet.recipes import NAMED_RECIPES, SCHEDULES, recipe_for


def cnn_bn(width, hidden=256, dropout=0.25, classes=10):
    def block(i, o):
        return [torch.nn.Conv2d(i, o, 3, padding=1, bias=False), torch.nn.BatchNorm2d(o), torch.nn.ReLU()]
    return torch.nn.Sequential(*block(1, width), *block(width, width), torch.nn.MaxPool2d(2),
                               *block(width, 2 * width), *block(2 * width, 2 * width), torch.nn.MaxPool2d(2),
                               torch.nn.Flatten(), torch.nn.Dropout(dropout),
                               torch.nn.Linear(2 * width * 49, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes))


def accuracy(model, x, y, bs=500, tta="none", smoothing=0.0):
    """(accuracy, mean loss); tta "flip": scored by the mean softmax of each image and its mirror
    image, as foveanet's ``--tta flip``."""
    model.eval()
    with torch.no_grad():
        correct = loss = 0.0
        for i in range(0, len(x), bs):
            xb = torch.from_numpy(x[i:i + bs])
            out = model(xb)
            if tta == "flip":
                p = (out.softmax(1) + model(xb.flip(-1)).softmax(1)) / 2
                out = p.clamp_min(torch.finfo(p.dtype).tiny).log()
            t = torch.from_numpy(y[i:i + bs])
            loss += torch.nn.functional.cross_entropy(out, t, reduction="sum",
                                                      label_smoothing=smoothing).item()
            correct += (out.argmax(1) == t).sum().item()
    return correct / len(x), loss / len(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", choices=sorted(NAMED_RECIPES), default=None,
                    help="a named recipe (default: the default recipe)")
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    args = ap.parse_args()
    r = recipe_for(recipe=args.recipe)
    if r["model"] != "cnn_bn" or r["optimizer"] not in ("adamw", "momentum") \
            or r["scheduler"] != "onecycle":
        raise SystemExit(f"this script builds cnn_bn with AdamW or momentum and OneCycle; the recipe has "
                         f"{r['model']}, {r['optimizer']}, {r['scheduler']}")
    epochs = args.epochs or r["epochs"]
    augment = parse_augment(r["augment"])
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
    opts = r["model_options"]
    model = cnn_bn(opts.get("width", 32), opts.get("hidden", 256), opts.get("dropout", 0.25))
    if r["optimizer"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=r["weight_decay"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=r["lr"], momentum=r["momentum"],
                              weight_decay=r["weight_decay"])
    smoothing = float(r.get("label_smoothing") or 0.0)
    bs = r["batch_size"]
    steps = epochs * -(-len(xtr) // bs)
    one = SCHEDULES["onecycle"]
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=r["lr"], total_steps=steps, pct_start=one["pct_start"],
        div_factor=one["div_factor"], final_div_factor=one["final_div_factor"])
    best = (float("inf"), None, 0)
    t0 = time.perf_counter()
    print(f"recipe {r.get('recipe', 'default')}: cnn_bn {opts}, {epochs} epochs, augment "
          f"{r['augment']!r}, {type(opt).__name__} lr {r['lr']:g} decay {r['weight_decay']:g}, "
          f"label smoothing {smoothing:g}, batch {bs}",
          flush=True)
    for epoch in range(1, epochs + 1):
        model.train()
        perm = rng.permutation(len(xtr))
        for i in range(0, len(perm), bs):
            b = perm[i:i + bs]
            xb = np.ascontiguousarray(augment(xtr[b], rng)) if augment is not None else xtr[b]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(xb)), torch.from_numpy(ytr[b]),
                                                     label_smoothing=smoothing)
            loss.backward()
            opt.step()
            sched.step()
        va_acc, va_loss = accuracy(model, xva, yva, smoothing=smoothing)
        print(f"epoch {epoch}: val loss {va_loss:.4f} val accuracy {100 * va_acc:.2f}%  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        if va_loss < best[0]:
            best = (va_loss, copy.deepcopy(model.state_dict()), epoch)
    train_time = time.perf_counter() - t0
    model.load_state_dict(best[1])
    te_acc, _ = accuracy(model, xt, yte)
    tta = r.get("tta") or "none"
    with_tta = ""
    if tta != "none":
        with_tta = f", {100 * accuracy(model, xt, yte, tta=tta)[0]:.2f}% with {tta} averaging"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: training {train_time:.0f} s "
          f"({epochs * len(xtr) / train_time:.0f} images/s), test accuracy {100 * te_acc:.2f}%"
          f"{with_tta} (best epoch {best[2]})")


if __name__ == "__main__":
    main()
