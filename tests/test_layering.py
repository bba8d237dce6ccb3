"""The layering contract of the source tree, read from every import statement (those inside
functions too), without importing anything:

    backend (with the CPU runtime), hooks <- autograd, random <- ops, profiler <- nn, optim,
        utils <- data, models, train, interop, onnx, distributed <- recipes, report, visual,
        playground <- cli, the package itself

- a module imports only from its own layer or a lower one; the one documented exception is
  ``autograd`` -> ``ops`` (Tensor's methods call the primitives; ops needs Tensor first);
- no module imports another package's private names (``from ..x import _name``,
  ``from ..x._module import ...``);
- nothing imports NumPy or numba except the backend package and the compiled-kernel files
  (``*_kernels.py``).
"""
import ast
import sys
from pathlib import Path

import pytest

import foveanet

ROOT = Path(foveanet.__file__).parent
LAYERS = [
    {"backend", "version", "hooks"},
    {"autograd", "random"},
    {"ops", "profiler"},
    {"nn", "optim", "utils"},
    {"data", "models", "train", "interop", "onnx", "distributed"},
    {"recipes", "report", "visual", "playground"},
    {"cli", "__main__", "__init__"},
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
ALLOWED_UPWARD = {("autograd", "ops")}


def _unit(path: Path) -> str:
    """The top-level unit a file belongs to: its package (ops, nn, ...) or its module name."""
    return path.relative_to(ROOT).with_suffix("").parts[0]


def _imports(path: Path):
    """(line, target path as a list of names under foveanet, imported names) of every import of
    foveanet code in ``path``."""
    package = list(path.relative_to(ROOT).parent.parts)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(package):
                    continue
                base = package[:len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "foveanet":
                target = node.module.split(".")[1:]
            else:
                continue
            yield node.lineno, target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "foveanet":
                    yield node.lineno, a.name.split(".")[1:], []


def _sources():
    return sorted(ROOT.rglob("*.py"))


def _resolved(target, names):
    """The foveanet paths an import reaches: ``from .. import ops`` reaches ['ops']."""
    if target:
        return [target]
    return [[n] for n in names]


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in _sources()}
    assert units <= set(RANK), f"add these to LAYERS: {sorted(units - set(RANK))}"


def test_imports_point_inwards():
    bad = []
    for path in _sources():
        src = _unit(path)
        for line, target, names in _imports(path):
            for t in _resolved(target, names):
                dst = t[0] if t else "__init__"
                if dst == src or dst not in RANK:
                    continue
                if RANK[dst] > RANK[src] and (src, dst) not in ALLOWED_UPWARD:
                    bad.append(f"{path.relative_to(ROOT)}:{line}: {src} imports {'.'.join(t)} "
                               f"(layer {RANK[dst]} above {RANK[src]})")
    assert not bad, "\n".join(bad)


def test_no_private_names_across_packages():
    bad = []
    for path in _sources():
        src = _unit(path)
        for line, target, names in _imports(path):
            dst = target[0] if target else None
            if dst is None or dst == src:
                continue
            private = [p for p in target[1:] if p.startswith("_") and not p.startswith("__")]
            private += [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                bad.append(f"{path.relative_to(ROOT)}:{line}: from {'.'.join(target)} imports "
                           f"private {', '.join(private)}")
    assert not bad, "\n".join(bad)


def _imports_numpy(path: Path) -> list:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
        out += [(node.lineno, m) for m in mods if m.split(".")[0] in ("numpy", "numba")]
    return out


def test_only_the_backend_and_kernel_files_import_numpy():
    bad = []
    for path in _sources():
        if _unit(path) == "backend" or path.name.endswith("_kernels.py"):
            continue
        bad += [f"{path.relative_to(ROOT)}:{line}: import {m}" for line, m in _imports_numpy(path)]
    assert not bad, "reach NumPy through foveanet.backend (xp, get_array_module):\n" + "\n".join(bad)


@pytest.mark.parametrize("code,expected", [
    ("from ..ops._util import pad_array\n", "private _util"),
    ("from ..ops.conv import _correlate\n", "private _correlate"),
    ("import numpy as np\n", "import numpy"),
])
def test_the_checks_catch_what_they_look_for(tmp_path, monkeypatch, code, expected):
    # a planted file in a copy of the layout trips the check it is aimed at
    fake = tmp_path / "foveanet"
    (fake / "nn").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "nn" / "planted.py").write_text(code)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake)
    with pytest.raises(AssertionError, match=expected):
        test_no_private_names_across_packages()
        test_only_the_backend_and_kernel_files_import_numpy()


def test_the_layer_check_catches_an_outward_import(tmp_path, monkeypatch):
    fake = tmp_path / "foveanet"
    (fake / "ops").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "ops" / "planted.py").write_text("def f():\n    from ..train import fit\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake)
    with pytest.raises(AssertionError, match="ops imports train"):
        test_imports_point_inwards()
