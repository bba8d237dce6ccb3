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
