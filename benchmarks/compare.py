"""foveanet vs PyTorch on the CPU, side by side: the same models, weights, batches, dtype and threads.

    .venv/bin/python benchmarks/compare.py [--models mlp,lenet5,cnn-bn,resnet20] [--repeats N]
                                           [--json out.json] [--quick] [--threads 2]

For each model it measures, in foveanet and in PyTorch, in the same process and interleaved:

- training throughput: images/s of forward + cross-entropy + backward + SGD-momentum step, batch 128;
- inference throughput: images/s in eval mode under no_grad, batch 256;
- peak memory of training: the growth of the peak resident set (VmHWM, i.e. ``ru_maxrss`` of the
  process itself) over a few training steps, each library measured in a fresh child process of
  its own (see ``memory_child``);
- achieved GFLOP/s: FLOPs per image (from ``fv.models.summary``'s multiply-adds: x2 for the forward,
  x3 that for a training step: the forward product and the two backward products, for the input
  and for the weights) times images/s, shown as a share of a 2048x2048 float32 matmul's rate
  in NumPy on the same machine and thread count (the SGEMM rate: the best of 9, i.e. what the
  machine reaches; measured at the start and at the end, the higher is the reference; the medians
  are printed too).

Method. Both libraries are limited to the same thread count (``torch.set_num_threads`` and
threadpoolctl's ``threadpool_limits`` for NumPy's BLAS). The foveanet model is built with a fixed
seed; its ``state_dict`` is copied into the PyTorch model (the parameter names are the same). Before
any timing, both compute the logits and the cross-entropy of the same batch from the same weights,
in eval mode and in training mode (batch statistics; dropout switched off for this check only),
and must agree (loss within 1e-4 relative, logits within 1e-4 of their largest magnitude), so the
timings compare equal work. Each figure is then timed after warm-up steps: one repeat runs whole
steps until at least ``--min-time`` seconds have passed and gives seconds per step; foveanet and
PyTorch alternate repeat by repeat (and which one goes first alternates too), with a pause
(``SETTLE_S``) between them so that one library's spinning idle threads do not eat into the
other's timing, then one untimed step of the library about to be timed (``RESUME_STEPS``: idle
CPUs slow the next step down), and the figure is the median over ``--repeats`` repeats. Before each repeat it waits (``--quiet-wait``) until other
processes leave the CPUs quiet, since a shared 2-core machine otherwise distorts 2-thread timings
many times over. The ratio foveanet/PyTorch is > 1 where foveanet is faster (for
throughput and GFLOP/s), and for memory it is foveanet's peak growth over PyTorch's (< 1 where
foveanet uses less).

Output: one table (model, figure, foveanet, PyTorch, foveanet/PyTorch) after a header with the
machine (CPU model, BLAS library and the CPU architecture it chose, versions, threads, date), and
the same figures in JSON with ``--json``. ``--quick`` runs few, short repeats (a smoke test).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import foveanet as fv
from foveanet import nn
from foveanet.nn import functional as F

MODELS = ("mlp", "lenet5", "cnn-bn", "resnet20")
INPUT = {"mlp": (1, 28, 28), "lenet5": (1, 28, 28), "cnn-bn": (1, 28, 28), "resnet20": (3, 32, 32)}
TRAIN_BATCH, INFER_BATCH, CLASSES = 128, 256, 10
LR, MOMENTUM = 0.01, 0.9


# ------------------------------------------------------------------------------------- the models
class FvBasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut (a 1x1 conv + BN where the
    shape changes), then ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class FvResNet20(nn.Module):
    """He et al. (2016)'s CIFAR ResNet-20: conv 16, three stages of three basic blocks (16, 32, 64
    channels; stride 2 at the start of stages 2 and 3), global average pool, Linear(64, classes)."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for i, cout in enumerate((16, 32, 64)):
            stage = []
            for j in range(3):
                stage.append(FvBasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
            blocks.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3 = blocks
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x).flatten(1))


def fv_model(name):
    fv.manual_seed(0)
    if name == "mlp":
        return fv.models.create("mlp", hidden=(512, 512))
    if name == "lenet5":
        return fv.models.create("lenet5")
    if name == "cnn-bn":
        return fv.models.create("cnn_bn", width=32)
    if name == "resnet20":
        return FvResNet20()
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def torch_model(name):
    import torch
    from torch import nn as tnn

    if name == "mlp":
        return tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 512), tnn.ReLU(), tnn.Linear(512, 512), tnn.ReLU(),
                              tnn.Linear(512, 10))
    if name == "lenet5":
        return tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                              tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                              tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(),
                              tnn.Linear(84, 10))
    if name == "cnn-bn":
        def block(i, o):
            return [tnn.Conv2d(i, o, 3, padding=1, bias=False), tnn.BatchNorm2d(o), tnn.ReLU()]
        return tnn.Sequential(*block(1, 32), *block(32, 32), tnn.MaxPool2d(2),
                              *block(32, 64), *block(64, 64), tnn.MaxPool2d(2),
                              tnn.Flatten(), tnn.Dropout(0.25), tnn.Linear(3136, 256), tnn.ReLU(),
                              tnn.Linear(256, 10))
    if name != "resnet20":
        raise ValueError(f"unknown model {name!r}")

    class Block(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.shortcut = (tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            tnn.BatchNorm2d(cout))
                             if stride != 1 or cin != cout else tnn.Identity())

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + self.shortcut(x))

    class ResNet20(tnn.Module):
        def __init__(self, num_classes=10, in_channels=3):
            super().__init__()
            self.conv1 = tnn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
            self.bn1 = tnn.BatchNorm2d(16)
            blocks, cin = [], 16
            for i, cout in enumerate((16, 32, 64)):
                stage = []
                for j in range(3):
                    stage.append(Block(cin, cout, 2 if (i > 0 and j == 0) else 1))
                    cin = cout
                blocks.append(tnn.Sequential(*stage))
            self.layer1, self.layer2, self.layer3 = blocks
            self.pool = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(64, num_classes)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(self.pool(x).flatten(1))

    return ResNet20()


def copy_weights(fmodel, tmodel):
    """fv -> torch through state_dict: the keys must be the same sets."""
    import torch

    sd = {k: torch.from_numpy(np.array(v.data, copy=True)) for k, v in fmodel.state_dict().items()}
    tkeys = set(tmodel.state_dict())
    if set(sd) != tkeys:
        raise RuntimeError(f"state_dict keys differ: only in foveanet {sorted(set(sd) - tkeys)}, "
                           f"only in torch {sorted(tkeys - set(sd))}")
    tmodel.load_state_dict(sd, strict=True)


def batch(name, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + INPUT[name], dtype=np.float32)
    y = rng.integers(0, CLASSES, n).astype(np.int64)
    return x, y


def macs_per_image(name):
    return fv.models.summary(fv_model(name), (1,) + INPUT[name]).total_macs


# ------------------------------------------------------------------------------------- one step
class FvRunner:
    def __init__(self, name, model, xt, yt, xi):
        self.model = model
        self.opt = fv.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        self.xt, self.yt, self.xi = fv.tensor(xt), fv.tensor(yt), fv.tensor(xi)

    def train_step(self):
        self.opt.zero_grad()
        loss = F.cross_entropy(self.model(self.xt), self.yt)
        loss.backward()
        self.opt.step()

    def infer_step(self):
        with fv.no_grad():
            self.model(self.xi)


class TorchRunner:
    def __init__(self, name, model, xt, yt, xi):
        import torch

        self.torch = torch
        self.model = model
        self.opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        self.xt, self.yt, self.xi = torch.from_numpy(xt), torch.from_numpy(yt), torch.from_numpy(xi)

    def train_step(self):
        self.opt.zero_grad(set_to_none=True)
        loss = self.torch.nn.functional.cross_entropy(self.model(self.xt), self.yt)
        loss.backward()
        self.opt.step()

    def infer_step(self):
        with self.torch.no_grad():
            self.model(self.xi)


# ----------------------------------------------------------------------------------- equal work
def _set_dropout_eval(module, is_torch):
    kinds = ()
    if is_torch:
        import torch
        kinds = (torch.nn.Dropout,)
    else:
        kinds = (nn.Dropout,)
    for m in module.modules():
        if isinstance(m, kinds):
            m.eval()


def equal_work_check(name, fmodel, tmodel, x, y):
    """Same logits and loss from the same weights, eval mode and training mode (dropout off)."""
    import torch

    out = {}
    for mode in ("eval", "train"):
        fmodel.train(mode == "train")
        tmodel.train(mode == "train")
        _set_dropout_eval(fmodel, False)
        _set_dropout_eval(tmodel, True)
        with fv.no_grad():
            fl = fmodel(fv.tensor(x))
            floss = float(F.cross_entropy(fl, fv.tensor(y)).item())
        with torch.no_grad():
            tl = tmodel(torch.from_numpy(x))
            tloss = float(torch.nn.functional.cross_entropy(tl, torch.from_numpy(y)).item())
        tl = tl.numpy()
        dlogit = float(np.max(np.abs(fl.data - tl)))
        rel = abs(floss - tloss) / max(abs(tloss), 1e-12)
        ok = rel <= 1e-4 and dlogit <= 1e-4 * float(np.max(np.abs(tl))) + 1e-6
        out[mode] = dict(loss_foveanet=floss, loss_torch=tloss, loss_rel_diff=rel, logits_max_abs_diff=dlogit,
                         ok=bool(ok))
        if not ok:
            raise SystemExit(f"{name}: foveanet and PyTorch disagree in {mode} mode (loss {floss:.6f} vs "
                             f"{tloss:.6f}, relative {rel:.2e}; logits differ by up to {dlogit:.2e}): "
                             "the timings would not compare equal work")
    fmodel.train()
    tmodel.train()
    # training-mode forwards moved both models' BatchNorm running statistics the same way; copy again
    # so that both start timing from the identical state
    copy_weights(fmodel, tmodel)
    return out


# -------------------------------------------------------------------------------------- timing
def time_steps(step, min_time):
    """Seconds per step: whole steps until at least ``min_time`` seconds (at least one step)."""
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time:
            return elapsed / n


def _cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]  # total, idle + iowait


def other_load(interval=0.2):
    """Busy share of all CPUs over ``interval`` seconds while this process sleeps, i.e. what other
    processes use (0..1); None where /proc/stat is missing."""
    try:
        t0, i0 = _cpu_times()
        time.sleep(interval)
        t1, i1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def wait_quiet(max_busy, max_wait):
    """Before a repeat: wait (up to ``max_wait`` seconds) until other processes use at most
    ``max_busy`` of the CPUs. Returns (seconds waited, last busy share)."""
    if max_wait <= 0:
        return 0.0, None
    t0 = time.perf_counter()
    while True:
        busy = other_load()
        if busy is None or busy <= max_busy or time.perf_counter() - t0 >= max_wait:
            return time.perf_counter() - t0, busy
        time.sleep(0.3)


GATE = dict(max_busy=0.15, max_wait=0.0, log=[])

# Seconds of idle time between the two libraries' halves of a repeat. Thread pools keep their
# idle workers spinning for a while after the last task (OpenBLAS's for 2^28 cycles, ~0.1 s, by
# default; OpenMP's for its spin count), and inside one process those spinning workers take a core
# from whatever runs next: PyTorch's MLP inference measured 36-39 k images/s right after foveanet's
# steps against 44-46 k with NumPy's OpenBLAS workers asleep. The pause lets them go idle, so
# neither library's timing pays for the other's threads.
SETTLE_S = 0.25

# Untimed steps of a library right before its timed steps, after the pauses above. Both CPUs idle
# for 0.1 s or more slows the next step of a process whose threads hand work to each other many
# times a step (the VM's idle vCPUs are slow to wake again for a while): foveanet's resnet20
# inference step measured 491-499 ms back to back, 530-636 ms right after a 0.25 s sleep, 518 ms
# after 0.25 s of one core kept busy; PyTorch's 439 ms and 460 ms (benchmarks/RESULTS.md,
# 2026-11-28). A training loop runs its steps back to back, so each library's timed steps start
# from that state: one untimed step first, for both libraries alike.
RESUME_STEPS = 1


def interleaved(fstep, tstep, repeats, warmup, min_time):
    for _ in range(warmup):
        fstep()
        tstep()
    fs, ts = [], []
    for r in range(repeats):
        waited, busy = wait_quiet(GATE["max_busy"], GATE["max_wait"])
        if GATE["max_wait"] > 0:
            GATE["log"].append((round(waited, 2), None if busy is None else round(busy, 3)))
        first, second = (fstep, tstep) if r % 2 == 0 else (tstep, fstep)
        resume = GATE.get("resume_steps", RESUME_STEPS)
        for _ in range(resume):
            first()
        a = time_steps(first, min_time)
        time.sleep(SETTLE_S)
        for _ in range(resume):
            second()
        b = time_steps(second, min_time)
        fs.append(a if r % 2 == 0 else b)
        ts.append(b if r % 2 == 0 else a)
    return fs, ts


# -------------------------------------------------------------------------------------- memory
def _peak_rss_kib():
    """The peak resident set of this process in KiB: VmHWM of /proc/self/status where there is one
    (Linux), else ru_maxrss. The two are the same high-water mark of the process's memory map,
    except that ru_maxrss of a child process also includes the peak of the process it was
    spawned from (the kernel carries it over at exec), which would hide a smaller child's own peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_child(lib, name, steps, threads):
    """Run in a fresh process: set up the model, optimizer and batch; reset the resident set's
    high-water mark to the current resident set (Linux: "5" written to /proc/self/clear_refs;
    without it the transient peak of importing the library would be the baseline); run ``steps``
    training steps; report how far the peak resident set rose above the set-up state, in MiB. That
    growth is what a training step needs beyond the model, the data and the libraries: activations
    and saved tensors, gradients, the optimizer's momentum buffers, workspace. (foveanet's
    compiled kernels are loaded at set-up, as importing torch loads PyTorch's: numba and the
    cached Winograd transforms are ~135 MiB of resident set that would otherwise be counted as the
    first step's.)"""
    limiter = threadpool_limits(threads)  # noqa: F841 - kept alive for the process
    x, y = batch(name, TRAIN_BATCH, 1)
    xi = x[:1].copy()
    if lib == "torch":
        import torch

        torch.set_num_threads(threads)
        runner = TorchRunner(name, torch_model(name), x, y, xi)
    else:
        from foveanet.backend.cpu import warm

        runner = FvRunner(name, fv_model(name), x, y, xi)
        warm()  # load numba and the compiled kernels (~140 MiB) as torch loads its own
    gc.collect()
    setup_peak = _peak_rss_kib()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    before = _peak_rss_kib()
    for _ in range(steps):
        runner.train_step()
    after = _peak_rss_kib()
    return dict(setup_peak_mib=setup_peak / 1024, baseline_mib=before / 1024, peak_mib=after / 1024,
                peak_growth_mib=(after - before) / 1024, steps=steps, high_water_mark_reset=reset,
                ru_maxrss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def measure_memory(lib, name, steps, threads):
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", f"{lib}:{name}", "--memory-steps",
           str(steps), "--threads", str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"memory child {lib}:{name} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------- machine
def _gemm_rate(matmul, a, b, n, repeats):
    matmul(a, b)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul(a, b)
        ts.append(time.perf_counter() - t0)
    return 2 * n ** 3 / min(ts) / 1e9, 2 * n ** 3 / statistics.median(ts) / 1e9


def sgemm_gflops(n=2048, repeats=9):
    """(best, median) GFLOP/s of an n x n float32 matmul in NumPy. The best of the repeats is what
    the machine can reach on these threads (the reference for the shares); the median shows how
    much other jobs took."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    return _gemm_rate(np.matmul, a, b, n, repeats)


def torch_sgemm_gflops(n=2048, repeats=9):
    import torch

    return _gemm_rate(torch.matmul, torch.randn(n, n), torch.randn(n, n), n, repeats)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def text_table(head, rows, left: int = 1) -> str:
    """``head`` and ``rows`` (tuples of strings) as a plain-text table between rules, the first
    ``left`` columns left-aligned and the others right-aligned (the side-by-side scripts' tables)."""
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    fmt = lambda row: "  ".join(c.ljust(w) if i < left else c.rjust(w)  # noqa: E731
                                for i, (c, w) in enumerate(zip(row, widths)))
    line = "-" * (sum(widths) + 2 * (len(head) - 1))
    return "\n".join([line, fmt(head), line] + [fmt(r) for r in rows] + [line])


def side_by_side_options(ap, warmup=2):
    """The options every side-by-side script shares: --repeats, --warmup, --min-time, --threads,
    --json, --quick, --quiet-wait, --quiet-busy (``ap``: the script's parser)."""
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--min-time", type=float, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    ap.add_argument("--quick", action="store_true", help="few, short repeats (a smoke test)")
    ap.add_argument("--quiet-wait", type=float, default=None)
    ap.add_argument("--quiet-busy", type=float, default=0.15)
    return ap


def side_by_side_start(args, min_time: float):
    """The shared defaults (--quick: 2 repeats, no minimum time, no waiting for quiet; else 7
    repeats of at least ``min_time`` s, waiting up to 30 s), both libraries on ``--threads``
    threads, the machine line printed; returns (machine info, the thread limiter to keep)."""
    import torch

    import foveanet as fv
    args.repeats = args.repeats or (2 if args.quick else 7)
    args.min_time = args.min_time if args.min_time is not None else (0.0 if args.quick else min_time)
    GATE["max_wait"] = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 30.0)
    GATE["max_busy"] = args.quiet_busy
    torch.set_num_threads(args.threads)
    fv.set_num_threads(args.threads)
    limiter = threadpool_limits(args.threads)
    info = machine_info(args.threads)
    print(f"{info['date']}  {info['cpu']}  numpy {info['numpy']}  torch {info['torch']}  "
          f"threads {args.threads}  load {info['load_average']}", flush=True)
    return info, limiter


def chosen_cases(ap, spec, cases) -> list:
    """The comma-separated ``spec`` as a list of case names, ``ap.error`` for unknown ones."""
    chosen = [c.strip() for c in spec.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in cases]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; cases: {', '.join(cases)}")
    return chosen


def machine_info(threads):
    import torch

    blas = [dict(user_api=i.get("user_api"), internal_api=i.get("internal_api"), version=i.get("version"),
                 architecture=i.get("architecture"), threading_layer=i.get("threading_layer"),
                 num_threads=i.get("num_threads"), library=os.path.basename(i.get("filepath", "")))
            for i in threadpool_info()]
    return dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                cpu=cpu_model(), logical_cpus=os.cpu_count(), platform=platform.platform(),
                python=platform.python_version(), numpy=np.__version__, torch=torch.__version__,
                foveanet=fv.__version__, threads=threads, torch_threads=torch.get_num_threads(),
                threadpools=blas, load_average=_loadavg())


# ---------------------------------------------------------------------------------------- main
def bench_model(name, args):
    import torch

    fmodel, tmodel = fv_model(name), torch_model(name)
    copy_weights(fmodel, tmodel)
    xt, yt = batch(name, TRAIN_BATCH, 1)
    xi, _ = batch(name, INFER_BATCH, 2)
    check = equal_work_check(name, fmodel, tmodel, xt, yt)
    fr, tr = FvRunner(name, fmodel, xt, yt, xi), TorchRunner(name, tmodel, xt, yt, xi)

    GATE["log"] = []
    fmodel.train(), tmodel.train()
    f_train, t_train = interleaved(fr.train_step, tr.train_step, args.repeats, args.warmup, args.min_time)
    fmodel.eval(), tmodel.eval()
    f_inf, t_inf = interleaved(fr.infer_step, tr.infer_step, args.repeats, args.warmup, args.min_time)
    del fr, tr, fmodel, tmodel
    gc.collect()

    mem = {lib: measure_memory(lib, name, args.memory_steps, args.threads) for lib in ("foveanet", "torch")}
    macs = macs_per_image(name)
    res = dict(model=name, input=list(INPUT[name]), macs_per_image=macs, equal_work=check,
               train_batch=TRAIN_BATCH, infer_batch=INFER_BATCH, repeats=args.repeats,
               quiet_gate=[dict(waited_s=w, other_busy=b) for w, b in GATE["log"]])
    for lib, tr_s, inf_s in (("foveanet", f_train, f_inf), ("torch", t_train, t_inf)):
        tr_med, inf_med = statistics.median(tr_s), statistics.median(inf_s)
        train_ips, infer_ips = TRAIN_BATCH / tr_med, INFER_BATCH / inf_med
        res[lib] = dict(train_step_s=tr_s, infer_step_s=inf_s, train_step_min_s=min(tr_s),
                        infer_step_min_s=min(inf_s), train_images_per_s=train_ips,
                        infer_images_per_s=infer_ips, train_gflops=train_ips * 6 * macs / 1e9,
                        infer_gflops=infer_ips * 2 * macs / 1e9, train_peak_growth_mib=mem[lib]["peak_growth_mib"],
                        memory=mem[lib])
    f, t = res["foveanet"], res["torch"]
    res["ratio"] = dict(train_images_per_s=f["train_images_per_s"] / t["train_images_per_s"],
                        infer_images_per_s=f["infer_images_per_s"] / t["infer_images_per_s"],
                        train_peak_growth_mib=(f["train_peak_growth_mib"] / t["train_peak_growth_mib"]
                                               if t["train_peak_growth_mib"] > 0 else float("nan")),
                        train_gflops=f["train_gflops"] / t["train_gflops"],
                        infer_gflops=f["infer_gflops"] / t["infer_gflops"])
    # from the fastest repeat of each: the least disturbed estimate on a shared machine
    res["ratio_best_repeat"] = dict(train_images_per_s=t["train_step_min_s"] / f["train_step_min_s"],
                                    infer_images_per_s=t["infer_step_min_s"] / f["infer_step_min_s"])
    del torch
    return res


def add_shares(results, sgemm):
    for r in results:
        for lib in ("foveanet", "torch"):
            r[lib]["train_share_of_sgemm"] = r[lib]["train_gflops"] / sgemm
            r[lib]["infer_share_of_sgemm"] = r[lib]["infer_gflops"] / sgemm


FIGURES = (("train_images_per_s", "train images/s (b128)", "{:,.0f}"),
           ("infer_images_per_s", "infer images/s (b256)", "{:,.0f}"),
           ("train_peak_growth_mib", "train peak memory MiB", "{:,.1f}"),
           ("train_gflops", "train GFLOP/s", None),
           ("infer_gflops", "infer GFLOP/s", None))


def table(results, sgemm):
    head = ("model", "figure", "foveanet", "PyTorch", "foveanet/PyTorch")
    rows = []
    for r in results:
        for key, label, fmt in FIGURES:
            cells = []
            for lib in ("foveanet", "torch"):
                v = r[lib][key]
                if fmt is None:
                    share = v / sgemm
                    cells.append(f"{v:.1f} ({100 * share:.0f}% SGEMM)")
                else:
                    cells.append(fmt.format(v))
            rows.append((r["model"], label, *cells, f"{r['ratio'][key]:.3f}"))
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(5)]
    line = "-" * (sum(widths) + 8)

    def fmt_row(row):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    out = [line, fmt_row(head), line]
    prev = None
    for row in rows:
        if prev is not None and row[0] != prev:
            out.append("")
        out.append(fmt_row(row if row[0] != prev else ("",) + row[1:]))
        prev = row[0]
    out.append(line)
    return "\n".join(out)


def sgemm_line(sgemm, torch_sgemm, when):
    return (f"SGEMM 2048x2048 float32 {when}, best (median) of 9: NumPy {sgemm[0]:.1f} ({sgemm[1]:.1f}) GFLOP/s, "
            f"torch {torch_sgemm[0]:.1f} ({torch_sgemm[1]:.1f}) GFLOP/s")


def header(info, sgemm, torch_sgemm):
    lines = [f"foveanet {info['foveanet']} vs PyTorch {info['torch']} (CPU), {info['date']}",
             f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs; {info['platform']}",
             f"python {info['python']}, numpy {info['numpy']}, torch {info['torch']}; threads: {info['threads']} "
             f"(torch.get_num_threads() = {info['torch_threads']})"]
    for p in info["threadpools"]:
        lines.append(f"threadpool: {p['user_api']} {p['internal_api']} {p['version']} ({p['library']}), "
                     f"architecture {p['architecture']}, {p['threading_layer']}, {p['num_threads']} threads")
    if info.get("load_average"):
        lines.append("load average at start (other processes share the CPUs; figures are medians): "
                     + ", ".join(f"{v:.2f}" for v in info["load_average"]))
    lines.append(sgemm_line(sgemm, torch_sgemm, "at start"))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated, from " + ", ".join(MODELS))
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per figure (median; default 7, "
                    "quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2, quick 1)")
    ap.add_argument("--min-time", type=float, default=None, help="seconds per repeat, at least one step "
                    "(default 0.5, quick 0)")
    ap.add_argument("--memory-steps", type=int, default=None, help="training steps in each memory child "
                    "(default 3, quick 1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quiet-wait", type=float, default=None, help="before each repeat, wait up to this "
                    "many seconds until other processes use at most --quiet-busy of the CPUs (Linux "
                    "/proc/stat; default 30, quick 0 = off)")
    ap.add_argument("--quiet-busy", type=float, default=0.15, help="the busy share counted as quiet "
                    "(default 0.15)")
    ap.add_argument("--resume-steps", type=int, default=RESUME_STEPS, help="untimed steps of a "
                    f"library right before its timed steps in each repeat (default {RESUME_STEPS}; 0 "
                    "times the first step after the pauses)")
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    ap.add_argument("--quick", action="store_true", help="a short run: few, short repeats")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    quick = args.quick
    if args.repeats is None:
        args.repeats = 2 if quick else 7
    if args.warmup is None:
        args.warmup = 1 if quick else 2
    if args.min_time is None:
        args.min_time = 0.0 if quick else 0.5
    if args.memory_steps is None:
        args.memory_steps = 1 if quick else 3
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if quick else 30.0
    GATE.update(max_busy=args.quiet_busy, max_wait=args.quiet_wait, resume_steps=args.resume_steps)
    if args.repeats < 1 or args.warmup < 0 or args.memory_steps < 1 or args.threads < 1:
        ap.error("--repeats, --memory-steps and --threads must be >= 1, --warmup >= 0")

    if args.memory_child:
        lib, name = args.memory_child.split(":", 1)
        print(json.dumps(memory_child(lib, name, args.memory_steps, args.threads)))
        return 0

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {', '.join(bad)}; choose from {', '.join(MODELS)}")

    import torch

    torch.set_num_threads(args.threads)
    limiter = threadpool_limits(args.threads)  # noqa: F841 - kept alive for the whole run
    info = machine_info(args.threads)
    sgemm, tsgemm = sgemm_gflops(), torch_sgemm_gflops()
    print(header(info, sgemm, tsgemm), flush=True)
    print(f"method: batch {TRAIN_BATCH} training (SGD momentum {MOMENTUM}), batch {INFER_BATCH} inference; "
          f"{args.warmup} warm-up steps, median of {args.repeats} interleaved repeats of >= {args.min_time} s, "
          f"each after {args.resume_steps} untimed step(s); "
          f"memory: peak RSS (VmHWM) growth over {args.memory_steps} training steps in a fresh process per "
          "library; " + (f"each repeat waits (<= {args.quiet_wait:g} s) until other processes use <= "
                         f"{100 * args.quiet_busy:.0f}% of the CPUs" if args.quiet_wait > 0
                         else "no wait for a quiet machine"),
          flush=True)
    results = []
    for name in models:
        t0 = time.perf_counter()
        r = bench_model(name, args)
        results.append(r)
        eq = r["equal_work"]
        print(f"{name}: equal work checked (loss {eq['train']['loss_foveanet']:.6f} vs "
              f"{eq['train']['loss_torch']:.6f}, relative difference {eq['train']['loss_rel_diff']:.1e}; "
              f"eval logits within {eq['eval']['logits_max_abs_diff']:.1e}); "
              f"{r['macs_per_image'] / 1e6:.2f} M multiply-adds per image; {time.perf_counter() - t0:.0f} s"
              + (f" (waited {sum(g['waited_s'] for g in r['quiet_gate']):.0f} s for quiet; "
                 f"{sum(1 for g in r['quiet_gate'] if (g['other_busy'] or 0) > args.quiet_busy)} of "
                 f"{len(r['quiet_gate'])} repeats started busy)" if r["quiet_gate"] else ""),
              flush=True)
    # the SGEMM rate again at the end: the reference is the best seen (other jobs may have slowed one)
    sgemm_end, tsgemm_end = sgemm_gflops(), torch_sgemm_gflops()
    print(sgemm_line(sgemm_end, tsgemm_end, "at end"))
    ref = max(sgemm[0], sgemm_end[0])
    add_shares(results, ref)
    print(f"SGEMM reference for the shares below: NumPy's best, {ref:.1f} GFLOP/s")
    print(table(results, ref))
    print("ratios from the fastest repeat of each library (least disturbed by other jobs): "
          + "; ".join(f"{r['model']} train {r['ratio_best_repeat']['train_images_per_s']:.3f}, "
                      f"infer {r['ratio_best_repeat']['infer_images_per_s']:.3f}" for r in results))
    print("ratios: foveanet/PyTorch; > 1 = foveanet faster for images/s and GFLOP/s, < 1 = foveanet "
          "smaller for memory. GFLOP/s: 2 x multiply-adds per image (inference), 6 x (training).")
    if args.json:
        doc = dict(machine=info, load_average_end=_loadavg(),
                   sgemm_gflops_numpy=dict(best=sgemm[0], median=sgemm[1], best_end=sgemm_end[0],
                                           median_end=sgemm_end[1], reference=ref),
                   sgemm_gflops_torch=dict(best=tsgemm[0], median=tsgemm[1], best_end=tsgemm_end[0],
                                           median_end=tsgemm_end[1]),
                   command=" ".join([os.path.basename(sys.executable), "benchmarks/compare.py"] +
                                    (sys.argv[1:] if argv is None else list(argv))),
                   settings=dict(repeats=args.repeats, warmup=args.warmup, min_time=args.min_time,
                                 memory_steps=args.memory_steps, threads=args.threads, quick=quick,
                                 quiet_wait=args.quiet_wait, quiet_busy=args.quiet_busy,
                                 resume_steps=args.resume_steps, lr=LR, momentum=MOMENTUM),
                   results=results)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        print(f"written: {args.json}")
    print(f"load average at the end: {', '.join(f'{v:.2f}' for v in (_loadavg() or []))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
