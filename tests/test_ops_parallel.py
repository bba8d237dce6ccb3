"""The engine's own threads (foveanet.backend.cpu.threads): ``split`` covers its range exactly once, on
several threads, re-raises a slice's error, never nests, runs a second thread's pass inline while
the pool is busy and retires a pool whose caller stopped waiting; every op that splits its passes
(conv2d's im2col and bias, conv_transpose2d's col2im, padding, batch norm, ReLU, 2x2 max pooling,
same-shape add / subtract / multiply,
SGD's momentum update) gives PyTorch's outputs and gradients and passes finite differences with the splitting forced on
tiny inputs, on 2 and 3 threads (uneven slices); and the OpenBLAS spin setting in a fresh
interpreter."""
import os
import select
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from helpers import check_against_torch, gradcheck

import foveanet as fv
import foveanet.nn.functional as F
from foveanet.backend.cpu import blas
from foveanet.backend.cpu import threads as _parallel

T = torch.nn.functional


@pytest.fixture(params=[2, 3], ids=["2threads", "3threads"])
def forced(request, monkeypatch):
    """Split every pass, however small, over ``request.param`` threads."""
    monkeypatch.setattr(_parallel, "MIN_BYTES", 0)
    monkeypatch.setattr(_parallel, "threads", lambda: request.param)
    monkeypatch.delenv("FOVEANET_THREADS", raising=False)
    return request.param


def _arr(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------------------------- split
@pytest.mark.parametrize("n", [1, 2, 5, 7, 64])
def test_split_covers_the_range_once_on_several_threads(forced, n):
    seen, slices = [], []
    lock = threading.Lock()

    def fn(lo, hi):
        with lock:
            seen.extend(range(lo, hi))
            slices.append((lo, threading.current_thread() is threading.main_thread()))

    _parallel.split(fn, n, nbytes=1)
    assert sorted(seen) == list(range(n))
    assert len(slices) == min(forced, n)  # one slice per thread
    assert [main for lo, main in slices if lo == 0] == [True]  # the first on the calling thread
    assert all(not main for lo, main in slices if lo > 0)  # the others on the engine's workers


def test_split_small_passes_stay_on_the_calling_thread(monkeypatch):
    monkeypatch.setattr(_parallel, "threads", lambda: 2)
    calls = []
    _parallel.split(lambda lo, hi: calls.append((lo, hi, threading.current_thread().name)), 10,
                    nbytes=_parallel.MIN_BYTES - 1)
    assert calls == [(0, 10, threading.current_thread().name)]


def test_split_one_thread_on_request(monkeypatch):
    monkeypatch.setenv("FOVEANET_THREADS", "1")
    assert _parallel.threads() == 1
    calls = []
    _parallel.split(lambda lo, hi: calls.append((lo, hi)), 10, nbytes=1 << 30)
    assert calls == [(0, 10)]


def test_split_reraises_a_slice_error_after_all_slices_end(forced):
    done = []

    def fn(lo, hi):
        if lo > 0:
            raise ValueError(f"slice {lo}:{hi} failed")
        done.append(lo)

    with pytest.raises(ValueError, match="slice"):
        _parallel.split(fn, 6, nbytes=1)
    assert done == [0]  # the caller's own slice ran, and the error still came back


def test_split_inside_a_worker_runs_unsplit(forced):
    inner = []
    lock = threading.Lock()

    def outer(lo, hi):
        def fn(a, b):
            with lock:
                inner.append((lo, a, b))
        _parallel.split(fn, 4, nbytes=1)

    _parallel.split(outer, forced, nbytes=1)
    worker_calls = [c for c in inner if c[0] > 0]
    assert worker_calls and all((a, b) == (0, 4) for _, a, b in worker_calls)


# ---------------------------------------------------------------------- ops with split passes
@pytest.mark.parametrize("kw", [dict(padding=1), dict(stride=2, padding=(1, 0), groups=2),
                                dict(padding=2, dilation=2)])
def test_conv2d_split(forced, kw):
    rng = np.random.default_rng(0)
    x, w, b = _arr(rng, 5, 4, 7, 6), _arr(rng, 6, 4 // kw.get("groups", 1), 3, 3), _arr(rng, 6)
    check_against_torch(lambda *a: F.conv2d(*a, **kw), lambda *a: T.conv2d(*a, **kw), [x, w, b])
    gradcheck(lambda *a: F.conv2d(*a, **kw), [a.astype(np.float64) for a in (x, w, b)])


def test_conv_transpose2d_split(forced):
    rng = np.random.default_rng(1)
    x, w, b = _arr(rng, 5, 4, 5, 4), _arr(rng, 4, 3, 3, 3), _arr(rng, 3)
    kw = dict(stride=2, padding=1, output_padding=1)
    check_against_torch(lambda *a: F.conv_transpose2d(*a, **kw),
                        lambda *a: T.conv_transpose2d(*a, **kw), [x, w, b])
    gradcheck(lambda *a: F.conv_transpose2d(*a, **kw), [a.astype(np.float64) for a in (x, w, b)])


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_split(forced, training):
    rng = np.random.default_rng(2)
    x = _arr(rng, 4, 5, 3, 3) * 2 + 1
    w, b = _arr(rng, 5), _arr(rng, 5)
    rm, rv = _arr(rng, 5), np.abs(_arr(rng, 5)) + 0.5

    def ours(x, w, b):
        return F.batch_norm(x, rm.copy(), rv.copy(), w, b, training=training, eps=1e-3)

    def theirs(x, w, b):
        return T.batch_norm(x, torch.tensor(rm), torch.tensor(rv), w, b, training=training,
                            eps=1e-3)

    check_against_torch(ours, theirs, [x, w, b], atol=1e-5)
    gradcheck(ours, [a.astype(np.float64) for a in (x, w, b)])


@pytest.mark.parametrize("op", ["add", "sub", "mul"])
def test_same_shape_binary_split(forced, op):
    # two arrays of one shape and dtype: the pass splits; broadcasting operands take NumPy's own
    rng = np.random.default_rng(8)
    a, b = _arr(rng, 5, 3, 4), _arr(rng, 5, 3, 4)
    ours = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y}[op]
    check_against_torch(ours, ours, [a, b])
    check_against_torch(ours, ours, [a, b[:1]])
    gradcheck(ours, [a.astype(np.float64), b.astype(np.float64)])


def test_relu_split(forced):
    rng = np.random.default_rng(3)
    x = _arr(rng, 5, 3, 4)
    x[0, 0, :2] = 0.0  # the gradient at 0 is 0, as PyTorch
    check_against_torch(F.relu, T.relu, [x])
    gradcheck(F.relu, [x.astype(np.float64) + np.where(x >= 0, 1e-3, -1e-3)])  # off the kink


def test_relu_clip(forced):
    # ReLU is np.clip(a, 0, inf) split over the threads: PyTorch's values including -0.0's sign
    # and NaN, non-contiguous and channel-major inputs, in place (the inference optimiser's
    # epilogue), both dtypes
    from foveanet.ops import activation
    rng = np.random.default_rng(4)
    x = _arr(rng, 5, 3, 4)
    x[0, 0, 0], x[1, 1, 1], x[2, 2, 2] = np.nan, -0.0, 0.0
    theirs = torch.relu(torch.tensor(x)).numpy()
    ours = F.relu(x).data
    assert np.array_equal(ours, theirs, equal_nan=True)
    assert np.array_equal(np.signbit(ours), np.signbit(theirs))
    x[0, 0, 0] = 1.0
    check_against_torch(F.relu, T.relu, [x])
    check_against_torch(F.relu, T.relu, [np.ascontiguousarray(x.transpose(2, 0, 1))[::2]])
    gradcheck(F.relu, [x.astype(np.float64) + np.where(x >= 0, 1e-3, -1e-3)])
    cm = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)  # dense, another order
    expect = torch.relu(torch.tensor(cm)).numpy()
    assert np.array_equal(activation.relu_into(cm), expect)
    activation.relu_into(cm, out=cm)  # in place
    assert np.array_equal(cm, expect)


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.7), (None, 0.3), (-0.2, None), (0.6, -0.6)])
def test_clamp_one_sided_and_crossed_bounds(lo, hi):
    # clamp passes a missing bound to np.clip as -inf / inf (its fast loop): PyTorch's values and
    # gradients, NaN kept, lo > hi giving hi everywhere; the inference optimiser's epilogue alike
    from foveanet.interop.optimize import _apply_epilogue
    rng = np.random.default_rng(6)
    x = _arr(rng, 5, 3, 4)
    x[0, 0, 0] = np.nan
    theirs = torch.clamp(torch.tensor(x), lo, hi).numpy()
    assert np.array_equal(fv.clamp(fv.tensor(x), lo, hi).data, theirs, equal_nan=True)
    assert np.array_equal(_apply_epilogue(x.copy(), ("clamp", lo, hi)), theirs, equal_nan=True)
    x[0, 0, 0] = 0.1
    x = x + np.where(np.abs(x - (lo or 0)) < 1e-2, 0.05, 0).astype(np.float32)  # off the kinks
    check_against_torch(lambda a: fv.clamp(a, lo, hi), lambda a: torch.clamp(a, lo, hi), [x])
    gradcheck(lambda a: fv.clamp(a, lo, hi), [x.astype(np.float64)])


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, 1.0, 1.5, -0.3])
def test_leaky_relu_without_where(forced, slope):
    # for 0 <= slope <= 1 LeakyReLU runs as max(a, slope * a) and g * clip(mask, slope): the same
    # bits as np.where's form, NaN and -0.0 included; other slopes keep np.where
    rng = np.random.default_rng(5)
    x = _arr(rng, 5, 3, 4)
    x[0, 0, :3] = np.nan, -0.0, 0.0
    g = _arr(rng, 5, 3, 4)
    g[1, 1, 1] = np.nan
    xt = fv.tensor(x, requires_grad=True)
    y = F.leaky_relu(xt, slope)
    y.backward(fv.tensor(g))
    s32 = np.float32(slope)
    assert np.array_equal(y.data, np.where(x > 0, x, x * s32), equal_nan=True)
    assert np.array_equal(np.signbit(y.data), np.signbit(np.where(x > 0, x, x * s32)))
    assert np.array_equal(xt.grad.data, np.where(x > 0, g, g * s32), equal_nan=True)
    x[0, 0, 0], g[1, 1, 1] = 1.0, 1.0
    kw = dict(negative_slope=slope)
    check_against_torch(lambda a: F.leaky_relu(a, **kw), lambda a: T.leaky_relu(a, **kw), [x])
    gradcheck(lambda a: F.leaky_relu(a, **kw), [x.astype(np.float64) + np.where(x >= 0, 1e-3, -1e-3)])


@pytest.mark.parametrize("hw", [(6, 8), (7, 9)])
def test_max_pool2d_tiles_split(forced, hw):
    rng = np.random.default_rng(4)
    x = np.round(_arr(rng, 5, 3, *hw), 1)  # rounded: ties inside windows go to the first tap
    check_against_torch(lambda a: F.max_pool2d(a, 2), lambda a: T.max_pool2d(a, 2), [x])
    distinct = rng.permutation(np.prod(x.shape)).reshape(x.shape).astype(np.float64)
    gradcheck(lambda a: F.max_pool2d(a, 2), [distinct])


def test_a_second_thread_splits_inline_while_the_pool_is_busy(forced):
    # one thread's pass holds the workers: another thread's pass runs whole on its own thread
    # (not queued behind it, not mixed into its slices)
    started, release, other = threading.Event(), threading.Event(), []

    def slow(lo, hi):
        if lo == 0:
            started.set()
            release.wait(30)

    t = threading.Thread(target=_parallel.split, args=(slow, 4), kwargs=dict(nbytes=1))
    t.start()
    assert started.wait(30)
    try:
        _parallel.split(lambda lo, hi: other.append((lo, hi, threading.current_thread().name)), 6,
                        nbytes=1)
    finally:
        release.set()
        t.join(30)
    assert other == [(0, 6, threading.current_thread().name)] and not t.is_alive()
    seen = []
    _parallel.split(lambda lo, hi: seen.append(lo), 6, nbytes=1)  # the pool is free again
    assert len(seen) == forced


def test_an_interrupted_wait_retires_the_pool(forced, monkeypatch):
    # the caller stopped waiting (e.g. Ctrl-C): its workers may still be running their slices, so
    # the next pass must not reuse them
    _parallel.split(lambda lo, hi: None, 4, nbytes=1)
    old = list(_parallel._state["pool"])

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(_parallel._Worker, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _parallel.split(lambda lo, hi: None, 4, nbytes=1)
    monkeypatch.undo()
    monkeypatch.setattr(_parallel, "MIN_BYTES", 0)
    monkeypatch.setattr(_parallel, "threads", lambda: forced)
    seen = []
    _parallel.split(lambda lo, hi: seen.append(hi - lo), 7, nbytes=1)
    assert sum(seen) == 7 and len(seen) == forced
    assert not set(map(id, _parallel._state["pool"])) & set(map(id, old))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_split_in_a_forked_child_uses_its_own_pool(forced):
    seen = []
    _parallel.split(lambda lo, hi: seen.append(lo), 4, nbytes=1)  # the parent's pool exists
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a split must finish (the parent's workers do not exist here)
        os.close(r)
        done = []
        _parallel.split(lambda lo, hi: done.append(hi - lo), 4, nbytes=1)
        os.write(w, str(sum(done)).encode())
        os._exit(0)
    os.close(w)
    ready, _, _ = select.select([r], [], [], 60)
    if not ready:  # the child hangs: end it and fail (rather than hang the suite)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        pytest.fail("a split in a forked child never finished")
    with os.fdopen(r) as f:
        got = f.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and got == "4"


# ---------------------------------------------------------------------------- OpenBLAS spin
SPIN = """
import os, numpy as np
import foveanet as fv
from foveanet.backend.cpu import blas
from foveanet.backend.cpu import threads as _parallel
fv.set_num_threads(2)
a = np.random.default_rng(0).standard_normal((300, 300))
ref = a @ a
_parallel.MIN_BYTES = 0
_parallel.split(lambda lo, hi: None, 2, 1)
print(os.environ.get("OPENBLAS_THREAD_TIMEOUT"), bool(np.allclose(a @ a, ref)),
      _parallel.blas_threads())
"""


# ------------------------------------------------------------------------------ SGD momentum
@pytest.mark.parametrize("kernel", ["compiled", "numpy"])
def test_sgd_momentum_split_update(forced, monkeypatch, kernel):
    # SGD's common case (momentum, no dampening, no Nesterov) updates flat slices on the threads,
    # in one compiled pass or NumPy's three: bit for bit the general path, PyTorch's parameters
    # and buffers; arrays that do not flatten to views take the general path
    from helpers import disable_compiled

    from foveanet.backend.cpu import kernels
    from foveanet.optim import sgd
    if kernel == "numpy":
        disable_compiled(monkeypatch, "_sgd_kernels")
    elif kernels.load(sgd.KERNELS) is None:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(8)
    init = [_arr(rng, 7, 5), _arr(rng, 3), _arr(rng, 4, 3, 2)]
    grads = [[_arr(rng, *w.shape) for w in init] for _ in range(4)]
    real_flat_views = sgd._flat_views
    assert real_flat_views(init[0], init[0]) and not real_flat_views(init[0], init[0].T)
    assert not real_flat_views(init[0], init[0].astype(np.float64))

    def run(fast, weight_decay=0.0):
        calls = []
        monkeypatch.setattr(sgd, "_flat_views", lambda *a: fast and real_flat_views(*a) and
                            not calls.append(1))
        ps = [fv.tensor(w.copy(), requires_grad=True) for w in init]
        opt = fv.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=weight_decay)
        for gs in grads:
            for p, g in zip(ps, gs):
                p.grad = fv.tensor(g)
            opt.step()
        return [p.data for p in ps], [opt.state[p]["momentum_buffer"] for p in ps], len(calls)

    for wd in (0.0, 0.01):
        (w_fast, b_fast, n), (w_slow, b_slow, _) = run(True, wd), run(False, wd)
        assert n == 3 * 3  # steps 2-4 (the first creates the buffer) of the three parameters
        for a, b in zip(w_fast + b_fast, w_slow + b_slow):
            assert np.array_equal(a, b)
        ts = [torch.tensor(w.copy(), requires_grad=True) for w in init]
        topt = torch.optim.SGD(ts, lr=0.05, momentum=0.9, weight_decay=wd)
        for gs in grads:
            for t, g in zip(ts, gs):
                t.grad = torch.tensor(np.ascontiguousarray(g))
            topt.step()
        for w, b, t in zip(w_fast, b_fast, ts):
            np.testing.assert_allclose(w, t.detach().numpy(), rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(b, topt.state[t]["momentum_buffer"].numpy(), rtol=1e-6,
                                       atol=1e-7)


def _spin_run(**env):
    full = {k: v for k, v in os.environ.items()
            if k not in ("OPENBLAS_THREAD_TIMEOUT", "FOVEANET_THREADS")}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", SPIN], env=full, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def _uses_openblas():
    from threadpoolctl import threadpool_info

    return any(i.get("internal_api") == "openblas" for i in threadpool_info())


@pytest.mark.skipif(not _uses_openblas(), reason="NumPy's BLAS here is not OpenBLAS")
def test_first_split_quiets_openblas_and_products_stay_right():
    assert _spin_run() == [str(blas.BLAS_SPIN_LOG2), "True", "2"]


def test_a_user_set_openblas_timeout_is_left_alone():
    assert _spin_run(OPENBLAS_THREAD_TIMEOUT="20") == ["20", "True", "2"]
