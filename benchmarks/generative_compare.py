"""foveanet's image-output networks vs the same networks in PyTorch on the CPU, side by side: a
DCGAN training step (both networks) and a small-SegNet training step, same weights, same
batches, same threads.

    .venv/bin/python benchmarks/generative_compare.py [--cases dcgan28,segnet64] [--repeats N]
                                                      [--json out.json] [--quick] [--threads 2]

==========  ===========================================================================
dcgan28     the DCGAN pair of ``foveanet train --task gan`` (28x28, latent 100, width 64 and
            width 32), batch 128: one discriminator step on real and generated images, then
            one generator step (BCE with logits, Adam(2e-4, betas (0.5, 0.999)))
segnet64    segnet_small (width 16, depth 3, 11 classes) on 64x64 Fashion scenes, batch 32:
            per-pixel cross entropy, backward, Adam step
==========  ===========================================================================

The PyTorch twins are built here from the foveanet modules (the same layer classes and
settings, the weights copied by name), and both sides run from the same noise and images.
Before timing, one step of each without the updates, run in float64 on both sides, must
agree: the losses and every parameter's gradient within 1e-7 (relative to the parameter's
largest gradient, but at least 1e-3 of the network's largest: a convolution's bias before a
batch norm has a gradient of exactly 0, rounding noise in practice). In float32 the losses agree
to ~1e-7, the gradients only to ~1e-2 in SegNet's middle layers: the per-pixel cross entropy on
random labels leaves gradients that are mostly cancellation, which float32 rounding amplifies
(in float64 the same comparison gives ~3e-11).
Timing is compare.py's ``interleaved``
(alternating repeats, a pause between the libraries, the quiet-CPU gate); the figure is the
median time per step; the ratio is PyTorch's time over foveanet's (> 1: foveanet is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import foveanet as fv  # noqa: E402
from compare import (GATE, chosen_cases, interleaved, side_by_side_options,  # noqa: E402
                     side_by_side_start, text_table)

CASES = {"dcgan28-w64": ("dcgan", 64, 128), "dcgan28-w32": ("dcgan", 32, 128),
         "segnet64": ("segnet", 16, 32)}


# ------------------------------------------------------------------------------ twins
def mirror(m):
    """A torch module with the same structure, settings and weights as foveanet module ``m``
    (leaves and Sequential containers; other containers get their children mirrored)."""
    import torch
    from torch import nn as tnn

    name = type(m).__name__
    if name == "Conv2d":
        t = tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                       m.dilation, m.groups, bias=m.bias is not None)
    elif name == "ConvTranspose2d":
        t = tnn.ConvTranspose2d(m.in_channels, m.out_channels, m.kernel_size, m.stride,
                                m.padding, m.output_padding, m.groups, bias=m.bias is not None,
                                dilation=m.dilation)
    elif name == "BatchNorm2d":
        t = tnn.BatchNorm2d(m.num_features, m.eps, m.momentum)
    elif name == "ReLU":
        t = tnn.ReLU()
    elif name == "LeakyReLU":
        t = tnn.LeakyReLU(m.negative_slope)
    elif name == "Tanh":
        t = tnn.Tanh()
    elif name == "MaxPool2d":
        t = tnn.MaxPool2d(m.kernel_size, m.stride, return_indices=m.return_indices)
    elif name == "MaxUnpool2d":
        t = tnn.MaxUnpool2d(m.kernel_size, m.stride)
    elif name == "Sequential":
        t = tnn.Sequential()
        for k, c in m.named_children():
            t.add_module(k, mirror(c))
        return t
    else:
        t = tnn.Module()
        for k, c in m.named_children():
            t.add_module(k, mirror(c))
        return t
    with torch.no_grad():
        for k, v in m.state_dict(keep_vars=False).items():
            if k in t.state_dict():
                t.state_dict()[k].copy_(torch.from_numpy(np.array(v.data)))
    return t


def torch_segnet_forward(t, x, stages):
    memory = []
    for s in range(1, stages + 1):
        x = getattr(t, f"enc{s}")(x)
        size = x.shape[2:]
        x, idx = t.pool(x)
        memory.append((idx, size))
    for s in range(stages, 0, -1):
        idx, size = memory[s - 1]
        x = getattr(t, f"dec{s}")(t.unpool(x, idx, output_size=size))
    return t.classifier(x)


def _conv_bn_relu_forward(block):
    return lambda x: block.relu(block.bn(block.conv(x)))


def patch_conv_bn_relu(t):
    for mod in t.modules():
        if set(dict(mod.named_children())) == {"conv", "bn", "relu"}:
            mod.forward = _conv_bn_relu_forward(mod)


# ------------------------------------------------------------------------------- steps
def cast(module, dtype):
    """A foveanet module's parameters and buffers in ``dtype`` (in place); returns it."""
    for p in module.parameters():
        p.data = p.data.astype(dtype)
    for _, b in module.named_buffers():
        if b.data.dtype.kind == "f":
            b.data = b.data.astype(dtype)
    return module


def dcgan_steps(width, batch, dtype=np.float32):
    import torch
    import torch.nn.functional as TF

    fv.manual_seed(0)
    G = cast(fv.models.create("dcgan_generator", latent=100, width=width), dtype)
    D = cast(fv.models.create("dcgan_discriminator", width=width), dtype)
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    tG, tD = mirror(G.net).to(tdt), mirror(D.net).to(tdt)
    rng = np.random.default_rng(1)
    real = rng.uniform(-1, 1, (batch, 1, 28, 28)).astype(dtype)
    z = rng.standard_normal((batch, 100)).astype(dtype)
    ones, zeros = np.ones((batch, 1), dtype), np.zeros((batch, 1), dtype)
    f_opt_g = fv.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    f_opt_d = fv.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    t_opt_g = torch.optim.Adam(tG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    t_opt_d = torch.optim.Adam(tD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    F = fv.nn.functional
    fr, fz, f1, f0 = fv.tensor(real), fv.tensor(z), fv.tensor(ones), fv.tensor(zeros)
    tr, tz, t1, t0 = (torch.from_numpy(a) for a in (real, z, ones, zeros))

    def f_step(update=True):
        fake = G(fz)
        f_opt_d.zero_grad()
        d = (F.binary_cross_entropy_with_logits(D(fr), f1)
             + F.binary_cross_entropy_with_logits(D(fake.detach()), f0))
        d.backward()
        if update:
            f_opt_d.step()
        f_opt_g.zero_grad()
        g = F.binary_cross_entropy_with_logits(D(fake), f1)
        g.backward()
        if update:
            f_opt_g.step()
        return float(d.item()), float(g.item())

    def t_step(update=True):
        fake = tG(tz.reshape(batch, 100, 1, 1))
        t_opt_d.zero_grad()
        d = (TF.binary_cross_entropy_with_logits(tD(tr).reshape(batch, 1), t1)
             + TF.binary_cross_entropy_with_logits(tD(fake.detach()).reshape(batch, 1), t0))
        d.backward()
        if update:
            t_opt_d.step()
        t_opt_g.zero_grad()
        g = TF.binary_cross_entropy_with_logits(tD(fake).reshape(batch, 1), t1)
        g.backward()
        if update:
            t_opt_g.step()
        return float(d.item()), float(g.item())

    return f_step, t_step, [(G, tG, "net."), (D, tD, "net.")]


def segnet_steps(width, batch, dtype=np.float32):
    import torch
    import torch.nn.functional as TF

    fv.manual_seed(0)
    S = cast(fv.models.create("segnet_small", width=width, depth=3), dtype)
    tS = mirror(S).to(torch.float64 if dtype == np.float64 else torch.float32)
    patch_conv_bn_relu(tS)
    stages = len(S.stages)
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (batch, 1, 64, 64)).astype(dtype)
    y = rng.integers(0, 11, (batch, 64, 64)).astype(np.int64)
    f_opt = fv.optim.Adam(S.parameters(), lr=1e-3)
    t_opt = torch.optim.Adam(tS.parameters(), lr=1e-3)
    fx, fy = fv.tensor(x), fv.tensor(y)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def f_step(update=True):
        f_opt.zero_grad()
        loss = fv.nn.functional.cross_entropy(S(fx), fy)
        loss.backward()
        if update:
            f_opt.step()
        return (float(loss.item()),)

    def t_step(update=True):
        t_opt.zero_grad()
        loss = TF.cross_entropy(torch_segnet_forward(tS, tx, stages), ty)
        loss.backward()
        if update:
            t_opt.step()
        return (float(loss.item()),)

    return f_step, t_step, [(S, tS, "")]


def check_equal_work(f_step, t_step, pairs, tol=1e-7):
    """One step's work without the updates: the losses and every parameter's gradient."""
    a, b = f_step(update=False), t_step(update=False)
    loss_err = max(abs(p - q) / max(abs(q), 1e-12) for p, q in zip(a, b))
    worst = 0.0
    for ours, theirs, prefix in pairs:
        tp = dict(theirs.named_parameters())
        grads = [(p.grad.numpy(), tp[name[len(prefix):] if name.startswith(prefix) else name]
                  .grad.numpy()) for name, p in ours.named_parameters()]
        # per parameter, relative to its largest gradient, but at least 1e-3 of the network's
        # largest: a convolution's bias before a batch norm has a gradient of exactly 0 in
        # theory, float32 noise (~1e-8) in practice
        floor = 1e-3 * max(float(np.abs(r).max()) for _, r in grads)
        for mine, ref in grads:
            worst = max(worst, float(np.abs(mine - ref).max() / max(np.abs(ref).max(), floor)))
    if loss_err > tol or worst > tol:
        raise SystemExit(f"the two sides disagree: losses {loss_err:.2e}, gradients {worst:.2e}")
    return dict(max_rel_loss_error=loss_err, max_rel_grad_error=worst)


def bench_case(name, args):
    kind, width, batch = CASES[name]
    make = dcgan_steps if kind == "dcgan" else segnet_steps
    check = check_equal_work(*make(width, batch, np.float64))  # exact work, in float64
    f_step, t_step, pairs = make(width, batch)
    a, b = f_step(update=False), t_step(update=False)
    check["float32_loss_rel_error"] = max(abs(p - q) / max(abs(q), 1e-12) for p, q in zip(a, b))
    GATE["log"] = []
    fs, ts = interleaved(f_step, t_step, args.repeats, args.warmup, args.min_time)
    res = dict(case=name, kind=kind, width=width, batch=batch, equal_work=check,
               foveanet=dict(step_s=fs, median_s=statistics.median(fs)),
               torch=dict(step_s=ts, median_s=statistics.median(ts)))
    res["ratio"] = res["torch"]["median_s"] / res["foveanet"]["median_s"]
    return res


def table(results):
    head = ("case", "batch", "foveanet ms", "PyTorch ms", "PyTorch/foveanet")
    rows = [(r["case"], str(r["batch"]), f"{1e3 * r['foveanet']['median_s']:.1f}",
             f"{1e3 * r['torch']['median_s']:.1f}", f"{r['ratio']:.3f}") for r in results]
    return text_table(head, rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    side_by_side_options(ap)
    args = ap.parse_args(argv)
    cases = chosen_cases(ap, args.cases, CASES)
    info, limiter = side_by_side_start(args, 1.0)  # noqa: F841 - the limiter is kept for the run
    results = []
    for c in cases:
        r = bench_case(c, args)
        e = r["equal_work"]
        print(f"{c}: equal work (float64: losses {e['max_rel_loss_error']:.1e}, gradients "
              f"{e['max_rel_grad_error']:.1e}; float32 losses {e['float32_loss_rel_error']:.1e})",
              flush=True)
        results.append(r)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(machine=info, results=results), f, indent=1)


if __name__ == "__main__":
    main()
