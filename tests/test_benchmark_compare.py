"""The side-by-side benchmark runs (quick mode, one model) and checks equal work first."""
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_compare_quick_mlp(tmp_path):
    out = tmp_path / "compare.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--quick", "--models", "mlp",
                        "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())["results"][0]
    assert res["equal_work"]["train"]["ok"] and res["equal_work"]["eval"]["ok"]
    for lib in ("foveanet", "torch"):
        assert res[lib]["train_images_per_s"] > 0 and res[lib]["train_peak_growth_mib"] >= 0
    assert "train_images_per_s" in res["ratio"]


@pytest.mark.parametrize("resume", [0, 1, 2])
def test_interleaved_alternates_and_pauses_between_libraries(monkeypatch, resume):
    # each repeat times both libraries (which goes first alternates), with SETTLE_S of idle time
    # between them so that one library's spinning idle threads do not eat into the other's timing,
    # and `resume` untimed steps of a library right before its timed ones
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import compare

    events = []
    monkeypatch.setattr(compare.time, "sleep", lambda s: events.append(("sleep", s)))
    monkeypatch.setattr(compare, "time_steps", lambda step, min_time: events.append("timed") or step())
    monkeypatch.setitem(compare.GATE, "max_wait", 0.0)
    monkeypatch.setitem(compare.GATE, "resume_steps", resume)
    f = lambda: events.append("fv") or 1.0  # noqa: E731
    t = lambda: events.append("torch") or 2.0  # noqa: E731
    fs, ts = compare.interleaved(f, t, repeats=3, warmup=0, min_time=0)
    pause = ("sleep", compare.SETTLE_S)

    def run(lib):
        return [lib] * resume + ["timed", lib]

    assert events == run("fv") + [pause] + run("torch") + run("torch") + [pause] + run("fv") + \
        run("fv") + [pause] + run("torch")
    assert fs == [1.0] * 3 and ts == [2.0] * 3 and compare.SETTLE_S >= 0.2
    assert compare.RESUME_STEPS == 1


@pytest.mark.slow
@pytest.mark.parametrize("ab", ["threads", "wide", "winograd"])
def test_ab_steps_runs_every_variant(ab):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ab_steps.py"), "--ab", ab,
                        "--models", "lenet5", "--pairs", "1", "--min-time", "0"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("lenet5 train:") and line.count(" ms (") == 2, line


@pytest.mark.parametrize("backward", [False, True])
def test_layer_compare_checks_equal_work_and_times_every_layer(tmp_path, backward):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import layer_compare
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    out = tmp_path / "layers.json"
    argv = ["--batch", "4", "--samples", "2", "--calls", "1", "--json", str(out)]
    rows = layer_compare.main(argv + (["--backward"] if backward else []))
    saved = json.loads(out.read_text())
    assert saved["backward"] is backward
    assert [r["layer"] for r in saved["layers"]] == [r["layer"] for r in rows]
    assert len(rows) == 9 and all(r["max_rel_diff"] <= 1e-4 for r in rows)
    assert {r["algorithm"] for r in rows[:6]} <= {"direct", "winograd", "im2col"}
    for r in rows:
        assert 0 < r["foveanet_min_ms"] <= r["foveanet_median_ms"]
        assert 0 < r["torch_min_ms"] <= r["torch_median_ms"]
