"""What an installation gives: ``pip install foveanet`` alone (no extras) runs the compiled
kernels, and ``FOVEANET_KERNELS=numpy`` selects the NumPy paths, which give the same results."""
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# one declared module per compiled-kernel file of the source tree
KERNEL_FILES = str(len(list((REPO / "src" / "foveanet").rglob("*_kernels.py"))))

# every declared kernel module loads, and a training step's convolution, pooling and batch norm
# take compiled algorithms (prints the algorithms and the kernel count)
CHECK = """
import foveanet as fv
from foveanet.backend.cpu import kernels
mods = [k.module for k in kernels.declared()]
missing = [m for m in mods if kernels.load(m) is None]
model = fv.nn.Sequential(fv.nn.Conv2d(1, 6, 5), fv.nn.BatchNorm2d(6), fv.nn.MaxPool2d(2))
y = model(fv.randn(2, 1, 12, 12, requires_grad=True))
fns, fn = [], y.grad_fn
while fn is not None:
    fns.append(fn)
    fn = next((t.grad_fn for t in fn.inputs if isinstance(t, fv.Tensor) and t.grad_fn), None)
print(len(mods), len(missing), " ".join(f.algorithm.name for f in reversed(fns)))
"""


def _run(python, code, **env):
    full = {k: v for k, v in os.environ.items() if k != "FOVEANET_KERNELS"}
    full.update(env)
    out = subprocess.run([str(python), "-c", code], env=full, capture_output=True, text=True,
                         timeout=600, cwd="/")
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.split()


def test_numpy_paths_on_request():
    got = _run(sys.executable, CHECK, FOVEANET_KERNELS="numpy")
    assert got[:2] == [KERNEL_FILES, KERNEL_FILES]  # every kernel module declared, none loaded
    assert got[2:] == ["im2col", "numpy", "tiles"]


def test_the_numpy_paths_give_the_compiled_paths_results():
    code = """
import numpy as np, foveanet as fv
fv.manual_seed(0)
m = fv.models.create("lenet5", num_classes=10, in_channels=1)
x = fv.randn(4, 1, 28, 28)
loss = fv.nn.functional.cross_entropy(m(x), fv.tensor(np.arange(4)))
loss.backward()
print(repr(float(loss)), repr(float(next(iter(m.parameters())).grad.sum())))
"""
    fast, slow = _run(sys.executable, code), _run(sys.executable, code, FOVEANET_KERNELS="numpy")
    assert abs(float(fast[0]) - float(slow[0])) <= 1e-5 * abs(float(slow[0]))
    assert abs(float(fast[1]) - float(slow[1])) <= 1e-4 * max(1.0, abs(float(slow[1])))


@pytest.mark.slow
def test_pip_install_without_extras_runs_the_compiled_kernels(tmp_path):
    # a fresh virtual environment, `pip install .` and nothing else: numba comes with foveanet
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    src = tmp_path / "src"  # a copy without the checkout's environment and build leftovers
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis",
        ".pytest_cache"))
    out = subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(src)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True)
    assert "numba" in freeze.stdout and "torch" not in freeze.stdout, freeze.stdout
    got = _run(python, CHECK)
    assert got[:2] == [KERNEL_FILES, "0"], got  # every kernel module loads
    assert got[2:] == ["direct", "compiled", "compiled_2x2"], got
