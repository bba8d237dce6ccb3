"""The op-level profiler (foveanet.profiler): counts per op and phase, hook restored, table text.
No timing assertions: only that times are recorded and non-negative."""
import numpy as np
import pytest

import foveanet as fv
import foveanet.autograd as ag
from foveanet import nn
from foveanet.nn import functional as F
from foveanet.profiler import Profile, profile


def _model():
    fv.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def _step(model, opt=None):
    x = fv.randn(4, 6)
    y = fv.tensor(np.array([0, 1, 2, 1]))
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    if opt is not None:
        opt.step()
        opt.zero_grad()
    return loss


def test_counts_forward_and_backward_per_op():
    model = _model()
    opt = fv.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    n = 3
    with profile(print_on_exit=False) as prof:
        for _ in range(n):
            _step(model, opt)
    rec = prof.records
    assert rec[("Linear", "forward")][0] == 2 * n
    assert rec[("Linear", "backward")][0] == 2 * n
    assert rec[("ReLU", "forward")][0] == n
    assert rec[("ReLU", "backward")][0] == n
    assert all(s >= 0 for _, s in rec.values())
    assert prof.wall >= prof.op_seconds >= 0
    stats = prof.stats()
    assert [r["total_ms"] for r in stats] == sorted((r["total_ms"] for r in stats), reverse=True)
    assert abs(sum(r["share"] for r in stats) - 1) < 1e-9 or prof.op_seconds == 0


def test_no_grad_records_forward_only():
    model = _model()
    with profile(print_on_exit=False) as prof, fv.no_grad():
        model(fv.randn(2, 6))
    assert prof.records[("Linear", "forward")][0] == 2
    assert not any(phase == "backward" for _, phase in prof.records)


def test_hook_restored_and_nesting():
    assert ag.profiler is None
    model = _model()
    with profile(print_on_exit=False) as outer:
        assert ag.profiler is outer
        with profile(print_on_exit=False) as inner:
            assert ag.profiler is inner
            model(fv.randn(2, 6))
        assert ag.profiler is outer
        model(fv.randn(2, 6))
    assert ag.profiler is None
    assert inner.records[("Linear", "forward")][0] == 2
    assert outer.records[("Linear", "forward")][0] == 2  # the inner block's ops are not seen twice


def test_hook_restored_on_error():
    with pytest.raises(ZeroDivisionError):
        with profile(print_on_exit=False):
            1 / 0
    assert ag.profiler is None


def test_nothing_recorded_outside_block():
    model = _model()
    prof = Profile(print_on_exit=False)
    with prof:
        pass
    _step(model)
    assert prof.records == {}


def test_table_text_and_print_on_exit(capsys):
    model = _model()
    with profile(top=3) as prof:
        _step(model)
    printed = capsys.readouterr().out
    # which 3 of the 6 rows print depends on their timings (Linear usually, not always, among them)
    shown = [line.split()[0] for line in printed.splitlines() if line.endswith("%")]
    assert len(shown) == 3 and set(shown) <= {"Linear", "ReLU", "CrossEntropyIndex"}, printed
    assert "... 3 more rows" in printed
    text = prof.table()
    for word in ("op", "phase", "calls", "total ms", "ms/call", "share", "Linear", "ReLU", "backward",
                 "wall time of the block", "outside ops"):
        assert word in text
    assert str(prof) == prof.table(3)
    assert "Linear" in repr(prof) or "Profile" in repr(prof)
    prof.reset()
    assert prof.records == {} and prof.wall == 0


def test_exported_as_fv_profile():
    if not hasattr(fv, "profile"):
        pytest.skip("fv.profile is not exported yet")
    assert fv.profile is profile
