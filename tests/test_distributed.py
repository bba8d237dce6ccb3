"""Data-parallel training (fv.distributed): the engine's gradient hooks and backward callbacks,
the bucketed reducer, SyncBatchNorm (against PyTorch and by finite differences), metrics merged
across ranks, and, under ``mpirun`` (marked slow), 2 ranks against 1 process, the command line
with resume on another number of ranks, a rank killed mid-epoch and a rank that hangs."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import foveanet as fv
from foveanet import distributed as dist
from foveanet.backend import process_group
from foveanet.distributed.launch import find_mpirun, mpirun_command
from foveanet.train import tasks
from foveanet.train.forecast import ForecastMetrics
from helpers import gradcheck, rel_close

torch = pytest.importorskip("torch")

HERE = Path(__file__).parent
WORKER = HERE / "distributed_worker.py"


# ------------------------------------------------------------------ engine: hooks and callbacks
def test_post_accumulate_grad_hook_fires_once_per_accumulation():
    w = fv.tensor(np.ones(3, np.float32), requires_grad=True)
    seen = []
    handle = w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.data.copy()))
    ((w * 2).sum() + (w * 3).sum()).backward()  # w used twice: two accumulations
    assert len(seen) == 2
    np.testing.assert_allclose(seen[-1], [5, 5, 5])
    handle.remove()
    (w * 1).sum().backward()
    assert len(seen) == 2
    with pytest.raises(RuntimeError, match="non-leaf"):
        (w * 2).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(TypeError, match="callable"):
        w.register_post_accumulate_grad_hook(3)


def test_queue_callback_runs_once_after_the_outermost_backward():
    from foveanet.autograd import queue_callback
    lin = fv.nn.Linear(4, 4)
    calls = []

    def hook(p):
        if not calls:
            calls.append("queued")
            queue_callback(lambda: calls.append(("done", lin.bias.grad is not None)))

    lin.weight.register_post_accumulate_grad_hook(hook)
    x = fv.randn(2, 4)
    fv.utils.checkpoint(lin, x).sum().backward()  # a backward inside the backward
    assert calls == ["queued", ("done", True)]
    with pytest.raises(RuntimeError, match="no backward pass"):
        queue_callback(lambda: None)


# ----------------------------------------------------------------- the reducer, without MPI
class _Done:
    complete = True

    def done(self):
        return True

    def wait(self):
        return self


class FakeGroup:
    """Two identical ranks: an all-reduce doubles, an all-gather repeats."""

    size, local_size, host = 2, 2, "fake"

    def __init__(self):
        self.rank = 0
        self.launches = []

    def iallreduce(self, array, what=""):
        array *= 2
        self.launches.append((what, fv.autograd._state.callbacks is not None))
        return _Done()

    def allreduce(self, array, what=""):
        array *= 2
        return array

    def allgather(self, array, what=""):
        return np.stack([array, array])

    def broadcast(self, array, root=0, what=""):
        return array


@pytest.fixture
def fake_group(monkeypatch):
    group = FakeGroup()
    monkeypatch.setattr(dist, "_comm", group)
    process_group.set_current(group)
    yield group
    process_group.set_current(None)


def _mlp():
    fv.manual_seed(0)
    return fv.nn.Sequential(fv.nn.Linear(6, 16), fv.nn.Tanh(), fv.nn.Linear(16, 16), fv.nn.Tanh(),
                            fv.nn.Linear(16, 3))


def test_ddp_buckets_start_during_backward_from_the_second_step(fake_group):
    plain, model = _mlp(), _mlp()
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=1e-4, first_bucket_mb=1e-4)
    assert len(ddp._buckets) >= 3  # tiny buckets: one or two parameters each
    x, y = fv.randn(8, 6), fv.tensor(np.arange(8) % 3)
    for step in range(2):
        fake_group.launches.clear()
        for m in (plain, ddp):
            for p in m.parameters():
                p.grad = None
            fv.nn.functional.cross_entropy(m(x), y).backward()
        during = [inside for _, inside in fake_group.launches]
        assert len(during) == len(ddp._buckets)
        # step 1 counts the gradients and starts every bucket from the callback at the end;
        # from step 2 on each bucket starts from a gradient hook, while backward runs
        assert during == ([False] * len(during) if step == 0 else [True] * len(during))
        names = [w for w, _ in fake_group.launches]
        assert names == [f"the all-reduce of gradient bucket {i} of {len(names)}"
                         for i in range(len(names))]
        for p, q in zip(plain.parameters(), model.parameters()):  # (2 g) / 2 == g
            rel_close(q.grad.data, p.grad.data, what="averaged gradient")
    assert ddp.state_dict().keys() == plain.state_dict().keys()  # no "module." prefix


def test_ddp_names_a_parameter_whose_gradient_comes_after_its_bucket(fake_group):
    lin = fv.nn.Linear(4, 4)
    ddp = dist.DistributedDataParallel(fv.nn.Sequential(lin), bucket_cap_mb=1e-5,
                                       first_bucket_mb=1e-5)
    x = fv.randn(2, 4)
    ddp(x).sum().backward()          # first step: the weight gets one gradient
    ddp(x).sum().backward()
    with pytest.raises(RuntimeError, match=r"shape \(4, 4\).*after its bucket"):
        lin(ddp(x)).sum().backward()  # the weight now gets two


def test_ddp_no_sync_skips_the_all_reduce(fake_group):
    ddp = dist.DistributedDataParallel(_mlp())
    with ddp.no_sync():
        ddp(fv.randn(4, 6)).sum().backward()
    assert fake_group.launches == []


def test_ddp_and_collectives_need_an_initialised_group():
    assert not dist.is_initialized() and dist.get_world_size() == 1 and dist.get_rank() == 0
    with pytest.raises(dist.DistributedError, match="init_process_group"):
        dist.DistributedDataParallel(_mlp())
    with pytest.raises(dist.DistributedError, match="mpirun"):
        dist.all_reduce(fv.zeros(3))
    with pytest.raises(ValueError, match="only backend is 'mpi'"):
        dist.init_process_group(backend="gloo")


# ------------------------------------------------------------------------------ SyncBatchNorm
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 3, 4, 4)])
def test_sync_batch_norm_alone_matches_torch_batch_norm(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32) * 3 + 1
    w = rng.standard_normal(3).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    fx, fw, fb = (fv.tensor(a.copy(), requires_grad=True) for a in (x, w, b))
    frm, frv = fv.tensor(rm), fv.tensor(rv)
    out = fv.nn.functional.sync_batch_norm(fx, frm, frv, fw, fb, 0.1, 1e-5)
    trm, trv = torch.zeros(3), torch.ones(3)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ref = torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, True, 0.1, 1e-5)
    out.backward(fv.tensor(g))
    ref.backward(torch.tensor(g))
    rel_close(out.data, ref.detach().numpy(), what="output")
    for ours, theirs, name in ((fx, tx, "x"), (fw, tw, "weight"), (fb, tb, "bias")):
        rel_close(ours.grad.data, theirs.grad.numpy(), what=f"d {name}")
    rel_close(frm.data, trm.numpy(), what="running mean")
    rel_close(frv.data, trv.numpy(), what="running var")
    layer, tlayer = fv.nn.SyncBatchNorm(3), torch.nn.BatchNorm1d(3)
    for _ in range(2):
        layer(fv.tensor(x))
        tlayer(torch.tensor(x).reshape(shape[0], 3, -1))
    rel_close(layer.running_mean.data, tlayer.running_mean.numpy(), what="running mean")
    rel_close(layer.running_var.data, tlayer.running_var.numpy(), what="running var")
    assert int(layer.num_batches_tracked.data) == 2


def test_sync_batch_norm_finite_differences_float64():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 2, 3))
    w, b = rng.standard_normal(2), rng.standard_normal(2)
    gradcheck(lambda x, w, b: fv.nn.functional.sync_batch_norm(x, None, None, w, b),
              [x, w, b])


def test_sync_batch_norm_over_two_identical_ranks_is_batch_norm_of_both(fake_group):
    """Each rank holds x: the global batch is [x, x], whose statistics are x's own and whose
    gradient sums are twice x's, so the result equals plain batch norm on x."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    sync, plain = fv.nn.SyncBatchNorm(3), fv.nn.BatchNorm2d(3)
    xs, xp_ = fv.tensor(x, requires_grad=True), fv.tensor(x, requires_grad=True)
    out_s, out_p = sync(xs), plain(xp_)
    out_s.backward(fv.tensor(g))
    out_p.backward(fv.tensor(g))
    rel_close(out_s.data, out_p.data, what="output")
    rel_close(xs.grad.data, xp_.grad.data, what="d x")
    # the running variance uses the global count (32 values, unbiased by 32/31, not 16/15)
    var = x.transpose(1, 0, 2, 3).reshape(3, -1).var(axis=1)
    rel_close(sync.running_var.data, 0.9 + 0.1 * var * 32 / 31, what="running var")


def test_convert_sync_batchnorm_shares_tensors_and_keeps_the_state_dict():
    net = fv.nn.Sequential(fv.nn.Conv2d(1, 4, 3), fv.nn.BatchNorm2d(4), fv.nn.ReLU(),
                           fv.nn.Flatten(), fv.nn.Linear(4 * 4 * 4, 8), fv.nn.BatchNorm1d(8))
    weight, keys = net[1].weight, list(net.state_dict())
    x = fv.randn(3, 1, 6, 6)
    net(x)
    net.eval()
    before = net(x).data.copy()
    dist.convert_sync_batchnorm(net)
    assert isinstance(net[1], fv.nn.SyncBatchNorm) and isinstance(net[5], fv.nn.SyncBatchNorm)
    assert net[1].weight is weight and list(net.state_dict()) == keys
    np.testing.assert_array_equal(net(x).data, before)  # eval: the same running statistics
    with pytest.raises(ValueError, match=r"SyncBatchNorm.*expected input of shape \(N, 4, \.\.\.\)"):
        fv.nn.SyncBatchNorm(4)(fv.randn(2, 3, 5))


# ------------------------------------------------------------------- metrics across ranks
def _halves(metric_factory, batches):
    whole, a, b = metric_factory(), metric_factory(), metric_factory()
    for i, (o, t) in enumerate(batches):
        whole.update(o, t)
        (a if i % 2 == 0 else b).update(o, t)
    merged = metric_factory()
    for state in (a.state(), b.state()):
        merged.merge_state(json.loads(json.dumps(state)))  # as the ranks exchange them
    return whole, merged


@pytest.mark.parametrize("name", ["classification", "regression", "segmentation",
                                  "reconstruction", "forecast", "guessed"])
def test_metric_states_merged_across_ranks_equal_one_epoch(name):
    rng = np.random.default_rng(3)
    factories = {
        "classification": lambda: tasks.ClassificationMetrics(topk=2, confusion=True),
        "regression": tasks.RegressionMetrics, "reconstruction": tasks.ReconstructionMetrics,
        "segmentation": tasks.SegmentationMetrics, "forecast": lambda: ForecastMetrics(2.0),
        "guessed": lambda: tasks._GuessedMetrics("val")}
    if name in ("classification", "guessed"):
        batches = [(rng.standard_normal((5, 4)), rng.integers(0, 4, 5)) for _ in range(4)]
    elif name == "segmentation":
        batches = [(rng.standard_normal((2, 3, 4, 4)), rng.integers(0, 3, (2, 4, 4)))
                   for _ in range(4)]
    else:
        batches = [(rng.standard_normal((5, 2)), rng.standard_normal((5, 2)) * 2 + 1)
                   for _ in range(4)]
    whole, merged = _halves(factories[name], batches)
    want, got = whole.results(), merged.results()
    assert want.keys() == got.keys() and want
    for key in want:
        np.testing.assert_allclose(np.asarray(got[key], float), np.asarray(want[key], float),
                                   rtol=1e-12, err_msg=key)


def test_a_metric_without_state_says_it_cannot_combine_ranks():
    class Odd(tasks.Metric):
        def compute(self):
            return {"odd": 1.0}

    with pytest.raises(NotImplementedError, match="Odd cannot be combined across ranks"):
        Odd().state()


# ---------------------------------------------------------------------- under mpirun (slow)
def _mpi_skip_reason():
    if not dist.is_available():
        return "mpi4py is not installed (pip install 'foveanet[distributed]')"
    if find_mpirun() is None:
        return "no mpirun/mpiexec beside this Python or on PATH"
    return None


needs_mpi = pytest.mark.skipif(_mpi_skip_reason() is not None, reason=str(_mpi_skip_reason()))


def _env():
    env = dict(os.environ)
    env.pop("FOVEANET_NUM_THREADS", None)
    return env


def _run(cmd, timeout=240, check=True):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(),
                          cwd=HERE)
    if check and proc.returncode:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _worker(mode, out, ranks):
    cmd = [sys.executable, str(WORKER), mode, str(out)]
    _run(cmd if ranks == 1 else mpirun_command(ranks) + cmd)
    return np.load(out), json.loads(Path(str(out) + ".json").read_text())


def _max_rel(a, b):
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max()
                     / max(float(np.abs(a[k]).max()), 1e-12)) for k in a.files)


@pytest.mark.slow
@needs_mpi
@pytest.mark.parametrize("mode", ["equivalence", "syncbn", "hooks"])
def test_two_ranks_match_one_process(tmp_path, mode):
    """equivalence: 2 ranks x batch 64 against 1 x 128 after 20 steps (a CNN without batch
    norm); syncbn: SyncBatchNorm on 2 x 32 against BatchNorm on 1 x 64; hooks: no_sync
    accumulation. The summation order is the only difference: within 1e-5 relative (of each
    tensor's largest magnitude; float32's epsilon is 1.2e-7). Measured: below 1e-6 on an AVX-512
    machine, 1.37e-6 for syncbn on an AVX2 one, whose shorter vectors sum in another order."""
    one, _ = _worker(mode, tmp_path / "one.npz", 1)
    two, info = _worker(mode, tmp_path / "two.npz", 2)
    assert info["world"] == 2 and info["threads"] == 1  # 2 cores shared by 2 ranks
    rel = _max_rel(one, two)
    print(f"{mode}: largest relative difference after 20 steps {rel:.2e}")
    assert rel < 1e-5
    if mode == "syncbn":  # and plain batch norm per shard would not match
        assert "0.weight" in one.files


def _train_cmd(out, *extra, ranks=2):
    cmd = [sys.executable, "-m", "foveanet", "train", "--model", "lenet5", "--limit-train",
           "6000", "--limit-test", "300", "--batch-size", "64", "--scheduler", "none",
           "--no-progress", *extra]
    if out is not None:
        cmd += ["--out", str(out)]
    return (mpirun_command(ranks) + cmd + ["--distributed"]) if ranks > 1 else cmd


def _weights(run_dir):
    run = fv.load_run(run_dir)
    return {k: v.data.copy() for k, v in run.model.state_dict().items()}


@pytest.mark.slow
@needs_mpi
def test_cli_two_ranks_then_resume_on_one_and_on_two(tmp_path):
    run = tmp_path / "run"
    first = _run(_train_cmd(run, "--epochs", "1"))
    assert "distributed: 2 ranks" in first.stdout and "data-parallel on 2 ranks" in first.stdout
    assert first.stdout.count("epoch 1/1") == 1  # rank 0 alone prints
    hist = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert len(hist) == 1 and hist[0]["train_loss"] < 2.3
    # another number of ranks: the global batch stays 64, the schedule continues
    _run(_train_cmd(None, "--resume", str(run), "--epochs", "2", ranks=1))
    _run(_train_cmd(None, "--resume", str(run), "--epochs", "3", ranks=2))
    hist = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[2]["train_loss"] < hist[0]["train_loss"]
    results = json.loads((run / "results.json").read_text())
    assert results["epochs"] == 3 and results["test"]["accuracy"] > 0.5
    bad = _run(_train_cmd(tmp_path / "bad", "--epochs", "1", "--batch-size", "63"), check=False)
    assert bad.returncode == 2 and "--batch-size 63 does not split over 2 ranks" in bad.stderr


def _rank_pids(marker):
    """{rank: pid} of the Python processes of the job whose command line holds ``marker``."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in b" ".join(cmd) and b"foveanet" in b" ".join(cmd):
            for item in env:
                if item.startswith((b"PMI_RANK=", b"OMPI_COMM_WORLD_RANK=")):
                    out[int(item.split(b"=")[1])] = int(pid)
    return out


def _start_and_wait_for_epoch(cmd, run, epoch=1, timeout=120):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), cwd=HERE)
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if json.loads((run / "checkpoint.json").read_text())["epoch"] >= epoch:
                break
        except (OSError, ValueError, KeyError):
            pass
        if proc.poll() is not None:
            raise AssertionError(f"the job ended early:\n{proc.communicate()}")
        time.sleep(0.05)
    return proc


@pytest.mark.slow
@needs_mpi
def test_a_rank_killed_mid_epoch_ends_the_job_and_resume_continues_bit_for_bit(tmp_path):
    ref = tmp_path / "ref"
    _run(_train_cmd(ref, "--epochs", "3"))
    run = tmp_path / "run"
    proc = _start_and_wait_for_epoch(_train_cmd(run, "--epochs", "3"), run, epoch=1)
    pids = _rank_pids(str(run))
    assert set(pids) == {0, 1}, pids
    t_kill = time.time()
    os.kill(pids[1], signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    ended_after = time.time() - t_kill
    done = json.loads((run / "checkpoint.json").read_text())["epoch"]
    print(f"job ended {ended_after:.1f} s after kill -9 of rank 1, checkpoint epoch {done}")
    assert proc.returncode != 0 and ended_after < 30 and 1 <= done < 3
    fv.load_run(run)  # the last checkpoint is valid
    _run(_train_cmd(None, "--resume", str(run), "--epochs", "3"))
    a, b = _weights(ref), _weights(run)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.slow
@needs_mpi
def test_a_hanging_rank_makes_the_others_abort_within_the_timeout(tmp_path):
    run = tmp_path / "run"
    proc = _start_and_wait_for_epoch(_train_cmd(run, "--epochs", "3", "--comm-timeout", "5"),
                                     run, epoch=1)
    pids = _rank_pids(str(run))
    t_stop = time.time()
    os.kill(pids[1], signal.SIGSTOP)
    try:
        _, err = proc.communicate(timeout=90)
    finally:
        for pid in pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    ended_after = time.time() - t_stop
    print(f"job ended {ended_after:.1f} s after SIGSTOP of rank 1")
    assert proc.returncode != 0 and ended_after < 60
    assert "rank 0 of 2" in err and "waited 5 s (the timeout)" in err and "Aborting" in err
    fv.load_run(run)


def test_distributed_sampler_takes_rank_and_size_from_the_group(fake_group):
    fake_group.rank = 1
    sampler = fv.data.DistributedSampler(list(range(10)), seed=3)
    assert (sampler.num_replicas, sampler.rank) == (2, 1) and len(sampler) == 5
    other = fv.data.DistributedSampler(list(range(10)), seed=3, rank=0)
    assert sorted(list(sampler) + list(other)) == list(range(10))
