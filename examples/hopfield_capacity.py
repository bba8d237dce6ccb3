"""How many random patterns a Hopfield network recalls: the storage capacity of Hebb's rule.

P random patterns of N bits (+-1, each bit a fair coin) are stored with Hebb's rule in an
N-neuron ``fv.models.HopfieldNetwork``; the network then runs asynchronously to a fixed point
from each stored pattern (and from copies with a fraction ``--noise`` of their bits flipped),
and the recall error is the fraction of bits of the final state that differ from the stored
pattern. This is repeated over a range of loads alpha = P / N and averaged over ``--seeds``
random pattern sets.

Theory (Amit, Gutfreund and Sompolinsky 1985, N -> infinity): below alpha_c ~= 0.138 a fixed
point lies next to each stored pattern, with at most ~1.6% of its bits wrong (at alpha_c); above
it the retrieval states vanish and the error jumps to tens of percent. The simplest estimate,
one update from the stored pattern treating the other patterns' crosstalk as Gaussian noise,
gives a fraction Phi(-1/sqrt(alpha)) of unstable bits (the right-hand panel).

The measured threshold printed is the load where the mean final bit error from the stored
patterns first reaches ``--level`` (1% by default), interpolated linearly between the two
grid points around it; the theory's error reaches 1% at alpha = 0.135. For finite N the jump is
smeared out and the mean crosses 1% earlier (0.13 for N = 200 and 500): the recalls that stay
near their pattern have about the theory's error, but already below alpha_c a few percent of
them run off to states far from it (an avalanche of flips), and those dominate the mean. The
script prints both parts at alpha = 0.12, 0.13 and 0.14; the inset plots the first (dotted).

    python examples/hopfield_capacity.py --out docs/images/hopfield_capacity.png
    python examples/hopfield_capacity.py --n 200 500 1000 --seeds 5
    python examples/hopfield_capacity.py --quick      # a few seconds: N=100, 2 seeds
"""
import argparse
import math
import time

import numpy as np

import foveanet as fv


ESCAPED = 0.1  # a recall that ends with more than 10% of its bits wrong has left its pattern


def recall_errors(n: int, p: int, seed: int, noise: float = 0.1, max_sweeps: int = 200):
    """Store ``p`` random patterns in ``n`` neurons (Hebb) and recall each from itself and from a
    copy with a fraction ``noise`` of its bits flipped. Returns the bit error fraction of each
    recall, (p,) each: one step from the stored patterns, final from the stored patterns, final
    from the noisy copies (empty without noise); and whether every recall converged."""
    rng = np.random.default_rng([n, p, seed])
    patterns = rng.choice(np.array([-1.0, 1.0]), size=(p, n))
    net = fv.models.HopfieldNetwork(n).store(patterns, rule="hebbian")
    one_step = net.update(patterns, mode="sync").numpy()
    noisy = patterns.copy()
    flips = rng.random(patterns.shape) < noise
    noisy[flips] *= -1
    starts = np.concatenate([patterns, noisy]) if noise > 0 else patterns
    final, info = net.recall(starts, mode="async", max_sweeps=max_sweeps,
                             generator=fv.Generator(seed), return_info=True)
    wrong = (final.numpy() != np.concatenate([patterns] * (2 if noise > 0 else 1))).mean(axis=1)
    return (one_step != patterns).mean(axis=1), wrong[:p], wrong[p:], info.all_converged


def capacity_curve(n: int, alphas, seeds: int, noise: float = 0.1):
    """Over ``seeds`` pattern sets for each load in ``alphas``, arrays (len(alphas),): the mean
    bit errors (``one_step``, ``final``, ``noisy``), the fraction of stored patterns whose recall
    ``escaped`` (ended more than 10% away) and the mean error of the others (``stayed``)."""
    keys = ("one_step", "final", "noisy", "escaped", "stayed", "alpha")
    out = {k: [] for k in keys}
    for alpha in alphas:
        p = max(1, int(round(alpha * n)))
        runs = [recall_errors(n, p, s, noise) for s in range(seeds)]
        if not all(r[3] for r in runs):
            print(f"  warning: N={n}, P={p}: a recall did not converge in 200 sweeps")
        one, final, noisy = (np.concatenate([r[k] for r in runs]) for k in range(3))
        kept = final[final <= ESCAPED]
        out["one_step"].append(one.mean())
        out["final"].append(final.mean())
        out["noisy"].append(noisy.mean() if noisy.size else float("nan"))
        out["escaped"].append((final > ESCAPED).mean())
        out["stayed"].append(kept.mean() if kept.size else float("nan"))
        out["alpha"].append(p / n)
    return {k: np.array(v) for k, v in out.items()}


def threshold(alphas, errors, level: float):
    """The first load where ``errors`` reaches ``level``, interpolated linearly between grid points
    (None if it never does; the first grid point if it starts above)."""
    above = np.flatnonzero(np.asarray(errors) >= level)
    if not above.size:
        return None
    k = above[0]
    if k == 0:
        return float(alphas[0])
    a0, a1, e0, e1 = alphas[k - 1], alphas[k], errors[k - 1], errors[k]
    return float(a0 + (level - e0) * (a1 - a0) / (e1 - e0))


def retrieval_theory(alpha: float):
    """The bit error (1 - m) / 2 of the retrieval fixed point for N -> infinity at load ``alpha``
    (replica-symmetric theory at zero temperature, Amit, Gutfreund and Sompolinsky 1987): the
    overlap is m = erf(y) where y is the largest root of
    y (sqrt(2 alpha) + 2 / sqrt(pi) exp(-y^2)) = erf(y); None above alpha_c ~= 0.1379, where
    that root is gone."""
    def f(y):
        return y * (math.sqrt(2 * alpha) + 2 / math.sqrt(math.pi) * math.exp(-y * y)) - math.erf(y)
    ys = np.linspace(0.01, 6.0, 3000)
    v = np.array([f(y) for y in ys])
    roots = np.flatnonzero(np.sign(v[:-1]) != np.sign(v[1:]))
    if not roots.size:
        return None
    lo, hi = ys[roots[-1]], ys[roots[-1] + 1]
    for _ in range(60):  # bisection
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.sign(f(mid)) == np.sign(f(lo)) else (lo, mid)
    return (1 - math.erf(lo)) / 2


def gaussian_estimate(alpha):
    """Phi(-1/sqrt(alpha)): the fraction of bits one update flips at a stored pattern."""
    return np.array([0.5 * math.erfc(1 / math.sqrt(2 * a)) for a in alpha])


def plot(curves, level, out, noise):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (n, c), color in zip(curves.items(), colors):
        ax.plot(c["alpha"], 100 * c["final"], "o-", ms=3.5, color=color,
                label=f"N={n}, from the stored patterns")
        if noise > 0:
            ax.plot(c["alpha"], 100 * c["noisy"], "--", color=color, alpha=0.8,
                    label=f"N={n}, from {100 * noise:.0f}% flipped bits")
        t = threshold(c["alpha"], c["final"], level)
        if t is not None:
            ax.plot([t], [100 * level], "kx", ms=8, mew=2)
        ax2.plot(c["alpha"], 100 * c["one_step"], "o", ms=3.5, color=color, label=f"N={n}")
    alpha_grid = np.linspace(min(c["alpha"][0] for c in curves.values()),
                             max(c["alpha"][-1] for c in curves.values()), 200)
    theory = [(a, retrieval_theory(a)) for a in np.linspace(alpha_grid[0], 0.1379, 120)]
    ax.plot([a for a, _ in theory], [100 * e for _, e in theory], "k-", lw=1,
            label="theory, N -> infinity (ends at alpha_c)")
    for a in (ax, ax2):
        a.axvline(0.138, color="grey", ls=":", lw=1.5)
        a.set_xlabel("load alpha = P / N")
        a.grid(alpha=0.3)
    ax.axhline(100 * level, color="k", lw=0.8, alpha=0.5)
    ax.text(0.141, 0.97, "alpha_c = 0.138", transform=ax.get_xaxis_transform(), va="top",
            color="grey")
    zoom = ax.inset_axes([0.08, 0.22, 0.42, 0.36])  # the region of the jump, magnified
    for (n, c), color in zip(curves.items(), colors):
        zoom.plot(c["alpha"], 100 * c["final"], "o-", ms=3, color=color)
        zoom.plot(c["alpha"], 100 * c["stayed"], ":", color=color)
    zoom.plot([a for a, _ in theory], [100 * e for _, e in theory], "k-", lw=1)
    zoom.axvline(0.138, color="grey", ls=":", lw=1.5)
    zoom.axhline(100 * level, color="k", lw=0.8, alpha=0.5)
    zoom.set_xlim(0.09, 0.16)
    zoom.set_ylim(0, 4)
    zoom.tick_params(labelsize=7)
    zoom.set_title("dotted: recalls that stayed within 10%", fontsize=7)
    zoom.grid(alpha=0.3)
    ax.set_ylabel("wrong bits after convergence (%)")
    ax.set_title(f"Hebbian recall error (x: error reaches {100 * level:g}%)")
    ax.legend(fontsize=8, loc="upper left")
    ax2.plot(alpha_grid, 100 * gaussian_estimate(alpha_grid), "k-", lw=1,
             label="Gaussian estimate Phi(-1/sqrt(alpha))")
    ax2.set_ylabel("bits flipped by one update (%)")
    ax2.set_title("One step from the stored patterns")
    ax2.legend(fontsize=8, loc="upper left")
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="write the plot to this PNG file")
    ap.add_argument("--n", type=int, nargs="+", default=[200, 500], help="network sizes N")
    ap.add_argument("--seeds", type=int, default=6, help="random pattern sets per load")
    ap.add_argument("--alpha-min", type=float, default=0.02)
    ap.add_argument("--alpha-max", type=float, default=0.24)
    ap.add_argument("--alpha-step", type=float, default=0.01)
    ap.add_argument("--noise", type=float, default=0.1,
                    help="fraction of bits flipped for the corrupted starts (0: none)")
    ap.add_argument("--level", type=float, default=0.01,
                    help="bit error that defines the measured threshold")
    ap.add_argument("--quick", action="store_true", help="N=100, 2 seeds, a coarse grid")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.seeds, args.alpha_step = [100], 2, 0.04
    if min(args.n) < 2 or args.seeds < 1 or not 0 < args.alpha_min <= args.alpha_max:
        ap.error("need N >= 2, --seeds >= 1 and 0 < --alpha-min <= --alpha-max")
    alphas = np.arange(args.alpha_min, args.alpha_max + 1e-9, args.alpha_step)
    start = time.perf_counter()
    curves, results = {}, {}
    for n in args.n:
        t0 = time.perf_counter()
        c = curves[n] = capacity_curve(n, alphas, args.seeds, args.noise)
        t = threshold(c["alpha"], c["final"], args.level)
        results[n] = t
        shown = "never reached" if t is None else f"{t:.3f}"
        print(f"N={n:5d}: threshold (bit error reaches {100 * args.level:g}%) at alpha = {shown} "
              f"({args.seeds} seeds, {time.perf_counter() - t0:.1f} s)")
        for target in (0.12, 0.13, 0.14):
            k = int(np.argmin(np.abs(c["alpha"] - target)))
            a = c["alpha"][k]
            theory = retrieval_theory(a)
            print(f"         alpha={a:.3f}: bit error {100 * c['final'][k]:.2f}%; "
                  f"{100 * c['escaped'][k]:.1f}% of the recalls escaped (> 10% wrong), the others "
                  f"{100 * c['stayed'][k]:.2f}% wrong (theory: "
                  + ("no retrieval state)" if theory is None else f"{100 * theory:.2f}%)"))
    lo, hi = 0.05, 0.1379  # the theory's crossing of the same level, by bisection
    if retrieval_theory(hi) < args.level:
        print(f"theory (N -> infinity): alpha_c = 0.138, where the error jumps from "
              f"{100 * retrieval_theory(hi):.1f}%; total {time.perf_counter() - start:.1f} s")
    else:
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if retrieval_theory(mid) < args.level else (lo, mid)
        print(f"theory (N -> infinity): the error reaches {100 * args.level:g}% at alpha = "
              f"{lo:.3f} and {100 * retrieval_theory(0.1379):.1f}% at alpha_c = 0.138, then jumps; "
              f"total {time.perf_counter() - start:.1f} s")
    if args.out:
        plot(curves, args.level, args.out, args.noise)
        print(f"wrote {args.out}")
    return curves, results


if __name__ == "__main__":
    main()
