"""foveanet's L-BFGS style transfer (``foveanet.visual.style.stylize``'s loop) beside the same loop
in PyTorch on the CPU: the same feature network and weights, pictures, losses, optimizer, dtype
and threads.

    .venv/bin/python benchmarks/style_compare.py [--sizes 256,128] [--iters 10] [--repeats N]
                                                 [--json out.json] [--quick] [--threads 2]

The feature network is the default one of ``stylize``, ``fv.models.style_features(seed=0)``
(random filters 3x3, 5x5, 7x7 and 11x11, 32 of each, at 4 scales), rebuilt in PyTorch from the
same weights (``torch.nn.Conv2d`` per kernel size, ``torch.cat``, ReLU, ``avg_pool2d`` of the
image between the scales). The losses are ``stylize``'s: the content loss at ``scale2``, the
style loss (Gram matrices F F^T / (C H W), MSE) at every scale, the total variation per pixel
value, with the default weights 1, 1e6 and 10, on inputs normalised with ImageNet's mean/std.
The pictures are synthetic and seeded (a smooth landscape-like content, a striped style).

Equal work first, in float64: both libraries compute the losses and the image gradient of the
same (noisy) image and must agree to 1e-10 (losses, relative) and 1e-8 (the gradient, relative
to its largest entry); then, also in float64, the first L-BFGS iterations of both must give the
same losses (1e-7). The timed runs are float32: one repeat of a library is whole calls of
``LBFGS([image], max_iter=--iters, line_search_fn='strong_wolfe').step(closure)`` from the
content picture with a new optimizer each call (``fv.optim.LBFGS`` / ``torch.optim.LBFGS``), run
for at least ``--min-time`` seconds; the two libraries alternate repeat by repeat
(``compare.py``'s ``interleaved``: alternating order, a pause between them, the quiet-CPU gate).
A step is one L-BFGS iteration; the figure per library is the median over the repeats of the
seconds per iteration (iterations/s is its inverse) and the closure evaluations each call took
(float32 rounding may let the two line searches differ by an evaluation now and then). The ratio
is PyTorch's time over foveanet's (> 1: foveanet is faster), per iteration and per evaluation.
``--quick`` runs one small size with few, short repeats (a smoke test, not a measurement).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import foveanet as fv  # noqa: E402
from compare import GATE, interleaved, side_by_side_options, side_by_side_start  # noqa: E402
from foveanet.models.stylenet import IMAGENET_MEAN, IMAGENET_STD, RandomFeatures  # noqa: E402
from foveanet.visual import style  # noqa: E402

CONTENT_LAYER = "scale2"
WEIGHTS = dict(content=1.0, style=1e6, tv=style.DEFAULT_TV_WEIGHT)


# ------------------------------------------------------------------------------- pictures
def pictures(size, seed=0):
    """(content, style): float arrays (3, size, size) in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    content = np.stack([0.3 + 0.5 * y, 0.5 + 0.3 * np.sin(6 * x), 0.9 - 0.6 * y])
    hill = y > 0.55 + 0.1 * np.sin(9 * x)
    content[:, hill] = np.array([0.2, 0.45, 0.2])[:, None]
    sun = np.hypot(x - 0.7, y - 0.25) < 0.1
    content[:, sun] = np.array([1.0, 0.85, 0.3])[:, None]
    content += rng.normal(0, 0.02, content.shape)
    stripes = 0.5 + 0.5 * np.sin(40 * (x + 0.3 * y) + 3 * np.sin(8 * y))
    style_img = np.stack([0.9 * stripes, 0.7 * stripes ** 2, 1 - 0.8 * stripes])
    style_img += rng.normal(0, 0.05, style_img.shape)
    return np.clip(content, 0, 1), np.clip(style_img, 0, 1)


# ------------------------------------------------------------------ the network in PyTorch
def torch_network(net):
    """The random feature network in PyTorch with ``net``'s weights: a function of the
    normalised images giving {scale name: features}."""
    import torch
    import torch.nn.functional as TF

    banks = []
    for s in range(net.scales):
        bank = getattr(net, f"scale{s}")
        convs = []
        for k in net.kernel_sizes:
            c = getattr(bank, f"k{k}")
            conv = torch.nn.Conv2d(net.in_channels, net.width, k, padding=k // 2)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(np.array(c.weight.data)))
                conv.bias.copy_(torch.from_numpy(np.array(c.bias.data)))
            conv.requires_grad_(False)
            convs.append(conv)
        banks.append(convs)

    def run(x):
        out = {}
        for s, convs in enumerate(banks):
            if s:
                x = TF.avg_pool2d(x, 2)
            out[f"scale{s}"] = torch.relu(torch.cat([c(x) for c in convs], dim=1))
        return out

    def to(dtype):
        for convs in banks:
            for c in convs:
                c.to(dtype)
    run.to = to
    return run


def torch_losses(run, style_layers):
    import torch

    def gram(f):
        n, c, h, w = f.shape
        flat = f.reshape(n, c, h * w)
        return flat @ flat.transpose(1, 2) / (c * h * w)

    def normalised(x):
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).reshape(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype).reshape(1, 3, 1, 1)
        return (x - mean) / std

    def targets(content, style_img):
        with torch.no_grad():
            fc = run(normalised(content))[CONTENT_LAYER]
            fs = run(normalised(style_img))
            return fc, {k: gram(fs[k]) for k in style_layers}

    def total(x, fc, grams):
        f = run(normalised(x))
        c = torch.nn.functional.mse_loss(f[CONTENT_LAYER], fc)
        s = sum(torch.nn.functional.mse_loss(gram(f[k]), grams[k]) for k in style_layers)
        dy = x[:, :, 1:, :] - x[:, :, :-1, :]
        dx = x[:, :, :, 1:] - x[:, :, :, :-1]
        tv = ((dy * dy).sum() + (dx * dx).sum()) / x.numel()
        return WEIGHTS["content"] * c + WEIGHTS["style"] * s + WEIGHTS["tv"] * tv
    return targets, total


# ------------------------------------------------------------------------- foveanet's loop
def fv_setup(net, content, style_img):
    fnet = style.feature_network(net)
    layers = fnet.default_style_layers
    sweights = {k: 1.0 for k in layers}
    with fv.no_grad():
        fc = fnet.features(fv.tensor(content[None]), [CONTENT_LAYER])[CONTENT_LAYER]
        fs = fnet.features(fv.tensor(style_img[None]), layers)
        grams = {k: style.gram_matrix(v) for k, v in fs.items()}

    def total(x):
        f = fnet.features(x, [CONTENT_LAYER] + layers)
        c = style.content_loss(f[CONTENT_LAYER], fc)
        s = style.style_loss({k: f[k] for k in layers}, grams, sweights)
        return WEIGHTS["content"] * c + WEIGHTS["style"] * s + WEIGHTS["tv"] * style.tv_loss(x)
    for p in net.parameters():
        p.requires_grad = False
    return total, layers


def check_equal_work(size=32, iters=4):
    """Losses and image gradient in float64, then the first L-BFGS iterations' losses."""
    import torch

    net = RandomFeatures(seed=0).double()
    content, style_img = pictures(size)
    fv_total, layers = fv_setup(net, content, style_img)
    run = torch_network(net)
    run.to(torch.float64)
    targets, th_total = torch_losses(run, layers)
    fc, grams = targets(torch.from_numpy(content[None]), torch.from_numpy(style_img[None]))
    image = np.clip(content + np.random.default_rng(3).normal(0, 0.1, content.shape), 0, 1)[None]
    xf = fv.tensor(image.copy(), requires_grad=True)
    lf = fv_total(xf)
    lf.backward()
    xt = torch.from_numpy(image.copy()).requires_grad_(True)
    lt = th_total(xt, fc, grams)
    lt.backward()
    loss_err = abs(lf.item() - lt.item()) / abs(lt.item())
    g_ref = xt.grad.numpy()
    grad_err = float(np.abs(xf.grad.data - g_ref).max() / np.abs(g_ref).max())
    # the first L-BFGS iterations from the content picture
    hist_f, hist_t = [], []
    xf = fv.tensor(content[None].copy(), requires_grad=True)
    of = fv.optim.LBFGS([xf], max_iter=iters, line_search_fn="strong_wolfe")

    def cf():
        of.zero_grad()
        v = fv_total(xf)
        v.backward()
        hist_f.append(v.item())
        return v
    of.step(cf)
    xt = torch.from_numpy(content[None].copy()).requires_grad_(True)
    ot = torch.optim.LBFGS([xt], max_iter=iters, line_search_fn="strong_wolfe")

    def ct():
        ot.zero_grad()
        v = th_total(xt, fc, grams)
        v.backward()
        hist_t.append(v.item())
        return v
    ot.step(ct)
    n = min(len(hist_f), len(hist_t))
    iter_err = max(abs(a - b) / abs(b) for a, b in zip(hist_f[:n], hist_t[:n]))
    if loss_err > 1e-10 or grad_err > 1e-8 or iter_err > 1e-7 or len(hist_f) != len(hist_t):
        raise SystemExit(f"the two loops disagree: loss {loss_err:.2e}, gradient {grad_err:.2e}, "
                         f"L-BFGS losses {iter_err:.2e} over {len(hist_f)} / {len(hist_t)} "
                         "evaluations")
    return dict(size=size, loss_rel_error=loss_err, grad_rel_error=grad_err,
                lbfgs_loss_rel_error=iter_err, lbfgs_evaluations=len(hist_f))


def bench_size(size, args):
    import torch

    net = RandomFeatures(seed=0)
    content, style_img = pictures(size)
    content, style_img = content.astype(np.float32), style_img.astype(np.float32)
    fv_total, layers = fv_setup(net, content, style_img)
    run = torch_network(net)
    targets, th_total = torch_losses(run, layers)
    fc, grams = targets(torch.from_numpy(content[None]), torch.from_numpy(style_img[None]))
    evals = {"foveanet": [], "torch": []}

    def f_step():
        x = fv.tensor(content[None].copy(), requires_grad=True)
        opt = fv.optim.LBFGS([x], max_iter=args.iters, line_search_fn="strong_wolfe")
        count = [0]

        def closure():
            opt.zero_grad()
            v = fv_total(x)
            v.backward()
            count[0] += 1
            return v
        opt.step(closure)
        evals["foveanet"].append(count[0])

    def t_step():
        x = torch.from_numpy(content[None].copy()).requires_grad_(True)
        opt = torch.optim.LBFGS([x], max_iter=args.iters, line_search_fn="strong_wolfe")
        count = [0]

        def closure():
            opt.zero_grad()
            v = th_total(x, fc, grams)
            v.backward()
            count[0] += 1
            return v
        opt.step(closure)
        evals["torch"].append(count[0])

    GATE["log"] = []
    f_s, t_s = interleaved(f_step, t_step, args.repeats, args.warmup, args.min_time)
    res = dict(size=size, iters_per_call=args.iters, style_layers=layers,
               content_layer=CONTENT_LAYER, quiet_gate=list(GATE["log"]))
    for lib, secs in (("foveanet", f_s), ("torch", t_s)):
        ev = statistics.median(evals[lib])
        per_iter = [s / args.iters for s in secs]
        res[lib] = dict(call_s=secs, iteration_median_s=statistics.median(per_iter),
                        iterations_per_s=1.0 / statistics.median(per_iter),
                        evaluations_per_call=ev,
                        evaluation_median_s=statistics.median(secs) / ev)
    res["ratio"] = dict(
        iteration=res["torch"]["iteration_median_s"] / res["foveanet"]["iteration_median_s"],
        evaluation=res["torch"]["evaluation_median_s"] / res["foveanet"]["evaluation_median_s"])
    return res


def table(results):
    head = ("size", "figure", "foveanet", "PyTorch", "PyTorch/foveanet")
    rows = []
    for r in results:
        f, t = r["foveanet"], r["torch"]
        rows.append((f"{r['size']}x{r['size']}", "L-BFGS iterations/s",
                     f"{f['iterations_per_s']:.2f}", f"{t['iterations_per_s']:.2f}",
                     f"{r['ratio']['iteration']:.3f}"))
        rows.append(("", "ms per evaluation", f"{1e3 * f['evaluation_median_s']:.1f}",
                     f"{1e3 * t['evaluation_median_s']:.1f}", f"{r['ratio']['evaluation']:.3f}"))
        rows.append(("", f"evaluations per {r['iters_per_call']} iterations",
                     f"{f['evaluations_per_call']:g}", f"{t['evaluations_per_call']:g}", ""))
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(5)]
    fmt = lambda row: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                                for i, (c, w) in enumerate(zip(row, widths)))
    line = "-" * (sum(widths) + 8)
    return "\n".join([line, fmt(head), line] + [fmt(r) for r in rows] + [line])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=None, help="comma-separated picture sides (default "
                    "256,128; quick 48)")
    ap.add_argument("--iters", type=int, default=None, help="L-BFGS iterations per timed call "
                    "(default 10, quick 3)")
    side_by_side_options(ap, warmup=1)
    args = ap.parse_args(argv)
    q = args.quick
    sizes = [int(s) for s in (args.sizes or ("48" if q else "256,128")).split(",") if s.strip()]
    args.iters = args.iters or (3 if q else 10)
    if min(sizes) < 8 or args.iters < 1 or (args.repeats is not None and args.repeats < 1) \
            or args.threads < 1:
        ap.error("--sizes must be >= 8 (4 scales), --iters, --repeats and --threads >= 1")
    info, limiter = side_by_side_start(args, 1.0)  # noqa: F841 - the limiter is kept for the run
    t0 = time.perf_counter()
    check = check_equal_work()
    print(f"equal work (float64, {check['size']}x{check['size']}): losses "
          f"{check['loss_rel_error']:.1e}, image gradient {check['grad_rel_error']:.1e}, first "
          f"{check['lbfgs_evaluations']} L-BFGS evaluations {check['lbfgs_loss_rel_error']:.1e} "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)
    results = []
    for size in sizes:
        results.append(bench_size(size, args))
        print(f"{size}x{size} done", flush=True)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(machine=info, equal_work=check, results=results), f, indent=1)


if __name__ == "__main__":
    main()
