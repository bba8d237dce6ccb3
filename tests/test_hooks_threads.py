"""The engine's hooks are per thread: two sessions in one process (a web server's) never record
each other's ops. Two threads run different ops at the same time, interleaved by barriers, one
profiling (or tracing) and the other not, or both profiling with their own profiles."""
import threading

import foveanet as fv
from foveanet import autograd, nn
from foveanet.interop import trace


def _in_threads(*jobs):
    """Run the jobs on their own threads, started together; re-raise the first error."""
    errors = []

    def run(job):
        try:
            job()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


def test_two_profiles_on_two_threads_see_only_their_own_ops():
    barrier = threading.Barrier(2, timeout=30)
    profiles = {}

    def worker(name, op):
        x = fv.randn(8, 8, requires_grad=True)
        with fv.profile(print_on_exit=False) as p:
            for _ in range(5):
                barrier.wait()  # both threads inside their blocks, taking turns op by op
                op(x).sum().backward()
        profiles[name] = {op_name for op_name, _ in p.records}

    _in_threads(lambda: worker("exp", fv.exp), lambda: worker("tanh", fv.tanh))
    assert "Exp" in profiles["exp"] and "Tanh" not in profiles["exp"]
    assert "Tanh" in profiles["tanh"] and "Exp" not in profiles["tanh"]
    assert autograd.profiler is None  # this thread never had one


def test_a_profile_does_not_see_an_unprofiled_thread():
    barrier = threading.Barrier(2, timeout=30)
    seen = {}

    def profiled():
        x = fv.randn(4, 4)
        with fv.profile(print_on_exit=False) as p:
            barrier.wait()
            barrier.wait()  # the other thread ran its ops in between
            fv.sigmoid(x)
        seen["ops"] = {op_name for op_name, _ in p.records}

    def other():
        barrier.wait()
        assert autograd.profiler is None  # the other thread's hook is not this one's
        fv.sqrt(fv.ones(3)) + 1
        barrier.wait()

    _in_threads(profiled, other)
    assert seen["ops"] == {"Sigmoid"}


def test_a_trace_records_only_its_own_thread():
    barrier = threading.Barrier(2, timeout=30)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    graphs = {}

    class Waiting(nn.Module):
        def forward(self, x):
            barrier.wait()
            barrier.wait()  # the other thread runs its ops (and the same model) meanwhile
            return model(x)

    def tracing():
        with fv.no_grad():
            graphs["g"] = trace(Waiting(), fv.randn(2, 3))

    def other():
        barrier.wait()
        with fv.no_grad():
            fv.exp(fv.ones(2)) * 3
            model(fv.randn(5, 3))  # the traced model itself, from another thread
        barrier.wait()

    _in_threads(tracing, other)
    ops = [n.op for n in graphs["g"].nodes]
    assert ops == ["Linear", "ReLU"], ops
    assert all(n.output.shape[0] == 2 for n in graphs["g"].nodes)
    assert autograd.tracer is None
