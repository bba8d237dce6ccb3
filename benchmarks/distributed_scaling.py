"""Data-parallel scaling on this machine: training throughput of 1 rank x 1 thread, 1 rank x 2
threads and 2 ranks x 1 thread (MPI, ``fv.distributed.DistributedDataParallel``), the share of
each step spent waiting for the gradient all-reduce, and the all-reduce's latency and bandwidth
(the two figures of the cost model in docs/DISTRIBUTED.md).

    python benchmarks/distributed_scaling.py [--models lenet5,cnn_bn,resnet20] [--batch 64]
                                             [--steps 30] [--json FILE]

Each configuration runs as its own job (``mpirun -n R``), one after the other, so they never
share the cores. Weak scaling: every rank trains on ``--batch`` images per step (the global
batch grows with the ranks, as Horovod's and PyTorch's scaling figures are measured); the
2-rank speed-up is (2 ranks' images/s) / (1 rank's images/s). Also strong scaling: 2 ranks x
``batch/2`` (the same global batch). Synthetic inputs: the timing does not depend on the
values. Take the figures on a quiet machine.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

INPUT = {"lenet5": (1, 28, 28), "cnn_bn": (1, 28, 28), "mlp": (1, 28, 28),
         "resnet20": (3, 32, 32), "resnet50": (3, 224, 224)}
GBIT = 1e9 / 8  # bytes per second of one Gbit/s
# assumed per-message latency of a cluster network (MPI over TCP on 10 GbE; RDMA on 100 Gbit/s)
NETWORKS = {"10 Gbit/s": (10 * GBIT, 30e-6), "100 Gbit/s": (100 * GBIT, 5e-6)}


def worker(args):
    import foveanet as fv
    from foveanet import distributed as dist

    distributed = args.ranks > 1
    if distributed:
        comm = dist.init_process_group(threads=args.threads, timeout=120)
    else:
        fv.set_num_threads(args.threads)
    rank = dist.get_rank()
    fv.manual_seed(0)
    model = fv.models.create(args.model)
    net = dist.DistributedDataParallel(model) if distributed else model
    opt = fv.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(rank)
    x = fv.tensor(rng.standard_normal((args.batch,) + INPUT[args.model]).astype(np.float32))
    y = fv.tensor(rng.integers(0, 10, args.batch))
    times, waits = [], []
    for step in range(args.warmup + args.steps):
        if distributed:
            comm.barrier()  # every step starts together: per-step times compare
        t0 = time.perf_counter()
        opt.zero_grad()
        fv.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        t = time.perf_counter() - t0
        if step >= args.warmup:
            times.append(t)
            waits.append(net.comm_seconds if distributed else 0.0)
    out = {"model": args.model, "ranks": args.ranks, "threads": args.threads,
           "batch_per_rank": args.batch,
           "step_s": statistics.median(times), "wait_s": statistics.median(waits),
           "grad_bytes": sum(p.data.nbytes for p in model.parameters())}
    if distributed:
        every = comm.allgather_json(out)
        out["step_s"] = max(o["step_s"] for o in every)  # the slowest rank sets the pace
        out["wait_s"] = statistics.mean(o["wait_s"] for o in every)
        if args.allreduce:  # a collective: every rank takes part
            out["allreduce"] = allreduce_curve(comm, fv.backend.xp)
    out["images_per_s"] = args.ranks * args.batch / out["step_s"]
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


def allreduce_curve(comm, xp):
    """Median time of a blocking all-reduce (float32, summed) against its size, 2 ranks."""
    rows = []
    for n in (1 << 8, 1 << 12, 1 << 16, 1 << 18, 1 << 20, 1 << 22):
        a = xp.ones(n, dtype=xp.float32)
        ts = []
        for _ in range(30 if n <= 1 << 18 else 10):
            comm.barrier()
            t0 = time.perf_counter()
            comm.allreduce(a)
            ts.append(time.perf_counter() - t0)
        rows.append({"bytes": 4 * n, "seconds": statistics.median(ts)})
    return rows


def fit_alpha_beta(rows):
    """t = alpha + bytes / beta: alpha the smallest message's time, beta the median rate of the
    messages of 1 MiB and more once alpha is taken off."""
    alpha = min(r["seconds"] for r in rows)
    rates = [r["bytes"] / max(r["seconds"] - alpha, 1e-9) for r in rows if r["bytes"] >= 1 << 20]
    return float(alpha), float(statistics.median(rates))


def ring_allreduce_seconds(nbytes, machines, bandwidth, latency, buckets):
    """Ring all-reduce of ``nbytes`` in ``buckets`` messages over ``machines``: 2 (N - 1) steps
    of latency per bucket, and 2 (N - 1) / N of the bytes through each link."""
    n = machines
    return buckets * 2 * (n - 1) * latency + 2 * (n - 1) / n * nbytes / bandwidth


def predict(doc, global_batch=1024, per_machine_batch=64):
    """Throughput of 4 to 64 machines like this one (2 cores, 2 ranks each) for resnet20 and
    resnet50, weak scaling (``per_machine_batch`` images per machine and step) and strong
    scaling (``global_batch`` split over the machines), from the measured compute rate and
    all-reduce figures: step = compute + the local reduction (2 ranks, shared memory) + the
    part of the network all-reduce that backward (two thirds of the step) does not hide."""
    alpha, beta = doc["alpha_s"], doc["beta_bytes_per_s"]
    rows = []
    for model, rate, grad_bytes in doc["compute"]:
        buckets = max(1, int(np.ceil((grad_bytes - (1 << 20)) / (25 << 20))) + 1)
        local = 2 * alpha + grad_bytes / beta
        for net, (bw, lat) in NETWORKS.items():
            for n in (1, 4, 8, 16, 32, 64):
                for kind, batch in (("weak", per_machine_batch), ("strong", global_batch / n)):
                    compute = batch / rate
                    comm = ring_allreduce_seconds(grad_bytes, n, bw, lat, buckets) if n > 1 else 0
                    exposed = local + max(0.0, comm - 2 / 3 * compute)
                    step = compute + exposed
                    rows.append({"model": model, "network": net, "machines": n, "scaling": kind,
                                 "batch_per_machine": batch, "compute_s": compute,
                                 "allreduce_s": comm, "exposed_s": exposed,
                                 "images_per_s": n * batch / step,
                                 "efficiency": compute / step})
    return rows


def hidden_until(doc, global_batch=1024):
    """Per model and network: the most machines (a power of 2, at least one image each) for
    which backward still hides the network all-reduce when ``global_batch`` is split over them,
    and the all-reduce and compute times there and one doubling later."""
    out = []
    for model, rate, grad_bytes in doc["compute"]:
        buckets = max(1, int(np.ceil((grad_bytes - (1 << 20)) / (25 << 20))) + 1)
        for net, (bw, lat) in NETWORKS.items():
            n, last = 2, 1
            while n <= global_batch:
                comm = ring_allreduce_seconds(grad_bytes, n, bw, lat, buckets)
                if comm > 2 / 3 * (global_batch / n) / rate:
                    break
                last, n = n, n * 2
            out.append({"model": model, "network": net, "global_batch": global_batch,
                        "hidden_up_to_machines": last, "exposed_from_machines":
                        n if n <= global_batch else None})
    return out


def print_prediction(rows):
    print(f"{'model':9} {'network':10} {'scaling':7} " + " ".join(f"{n:>9}" for n in
                                                              (1, 4, 8, 16, 32, 64)))
    keys = sorted({(r["model"], r["network"], r["scaling"]) for r in rows},
                  key=lambda k: (k[0], k[1], k[2] == "strong"))
    for key in keys:
        cells = [r for r in rows if (r["model"], r["network"], r["scaling"]) == key]
        print(f"{key[0]:9} {key[1]:10} {key[2]:7} " + " ".join(
            f"{c['images_per_s']:6.0f}/{100 * c['efficiency']:2.0f}" for c in cells))
    print("cells: images/s / efficiency % (compute time over step time)")


def allreduce_estimate(curve, nbytes):
    """A blocking 2-rank all-reduce of ``nbytes``, interpolated on the measured curve."""
    sizes = [r["bytes"] for r in curve]
    return float(np.interp(nbytes, sizes, [r["seconds"] for r in curve]))


def median_run(runs):
    """The run of median throughput among repeats."""
    return sorted(runs, key=lambda r: r["images_per_s"])[len(runs) // 2]


def run_config(model, ranks, threads, batch, steps, allreduce=False, warmup=5):
    from foveanet.distributed.launch import mpirun_command
    cmd = [sys.executable, __file__, "--worker", "--model", model, "--ranks", str(ranks),
           "--threads", str(threads), "--batch", str(batch), "--steps", str(steps),
           "--warmup", str(warmup)]
    if allreduce:
        cmd.append("--allreduce")
    if ranks > 1:
        cmd = mpirun_command(ranks) + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet5,cnn_bn,resnet20")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each configuration (median)")
    ap.add_argument("--resnet50-steps", type=int, default=2, dest="resnet50_steps",
                    help="steps of resnet50 at 224x224 for the prediction (0: leave it out)")
    ap.add_argument("--json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--ranks", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--allreduce", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    results, curve, compute = [], None, []
    print(f"{'model':9} {'1x1 img/s':>10} {'1x2 img/s':>10} {'2x1 img/s':>10} {'2x1/1x1':>8} "
          f"{'2x1/1x2':>8} {'a-r %':>6} {'wait %':>7} {'strong 2x1/1x1':>15}")
    for model in args.models.split(","):
        runs = {"1x1": [], "1x2": [], "2x1": [], "strong": []}
        for _ in range(args.repeats):  # round robin: a noisy minute hits every configuration
            runs["1x1"].append(run_config(model, 1, 1, args.batch, args.steps))
            runs["1x2"].append(run_config(model, 1, 2, args.batch, args.steps))
            runs["2x1"].append(run_config(model, 2, 1, args.batch, args.steps,
                                          allreduce=curve is None))
            runs["strong"].append(run_config(model, 2, 1, args.batch // 2, args.steps))
            curve = curve or runs["2x1"][-1].pop("allreduce", None)
        one, two_threads, two, strong = (median_run(runs[k]) for k in ("1x1", "1x2", "2x1",
                                                                       "strong"))
        row = {"model": model, "one_rank_one_thread": one, "one_rank_two_threads": two_threads,
               "two_ranks_one_thread": two, "two_ranks_strong": strong,
               "speedup_vs_1x1": two["images_per_s"] / one["images_per_s"],
               "speedup_vs_1x2": two["images_per_s"] / two_threads["images_per_s"],
               "wait_share": two["wait_s"] / two["step_s"],
               "allreduce_share": allreduce_estimate(curve, two["grad_bytes"]) / two["step_s"],
               "strong_speedup_vs_1x1": strong["images_per_s"] / one["images_per_s"]}
        results.append(row)
        compute.append([model, two["images_per_s"], two["grad_bytes"]])
        print(f"{model:9} {one['images_per_s']:10.0f} {two_threads['images_per_s']:10.0f} "
              f"{two['images_per_s']:10.0f} {row['speedup_vs_1x1']:8.2f} "
              f"{row['speedup_vs_1x2']:8.2f} {100 * row['allreduce_share']:5.1f}% "
              f"{100 * row['wait_share']:6.1f}% "
              f"{row['strong_speedup_vs_1x1']:15.2f}", flush=True)
    if args.resnet50_steps:  # one machine's compute rate for the big network, 2 threads
        big = run_config("resnet50", 1, 2, 16, args.resnet50_steps, warmup=1)
        compute.append(["resnet50", big["images_per_s"], big["grad_bytes"]])
        print(f"resnet50 224x224, batch 16, 1 rank x 2 threads: {big['step_s']:.2f} s/step, "
              f"{big['images_per_s']:.2f} images/s")
    alpha, beta = fit_alpha_beta(curve)
    print("all-reduce, 2 local ranks: " + ", ".join(
        f"{r['bytes'] / 1024:.0f} KiB {1e6 * r['seconds']:.0f} us" for r in curve))
    print("a-r %: a blocking all-reduce of the gradients as a share of the 2-rank step; wait %: "
          "the part of the step spent waiting for it after backward (what overlap left)")
    print(f"fit t = alpha + bytes / beta: alpha {1e6 * alpha:.1f} us, beta {beta / 1e9:.2f} GB/s")
    doc = {"machine": {"date": datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC"), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
        "load_average": list(os.getloadavg())},
        "batch_per_rank": args.batch, "steps": args.steps, "repeats": args.repeats,
        "results": results,
        "allreduce": curve, "alpha_s": alpha, "beta_bytes_per_s": beta, "compute": compute}
    doc["prediction"] = predict(doc)
    doc["hidden_until"] = hidden_until(doc)
    print_prediction(doc["prediction"])
    for h in doc["hidden_until"]:
        where = (f"exposed from {h['exposed_from_machines']} machines" if
                 h["exposed_from_machines"] else "hidden at every split (one image per machine)")
        print(f"{h['model']:9} {h['network']:10} global batch {h['global_batch']}: the all-reduce "
              f"is hidden up to {h['hidden_up_to_machines']} machines, {where}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
