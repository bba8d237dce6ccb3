"""The compiled-kernel registry: which numba kernel modules exist, loading them, warming them.

A kernel module is a file ``*_kernels.py`` beside the op that uses it (``ops/_direct_kernels.py``,
``optim/_sgd_kernels.py``, ...): plain numba functions, compiled on first use and cached on disk.
The op's module declares it once, at import::

    kernels.declare("foveanet.ops._direct_kernels", "direct convolutions", warm)

and asks for it when it runs: ``kernels.load("foveanet.ops._direct_kernels")`` gives the module,
or None when the compiled paths are off, and the op then takes its NumPy path. They are off

- when numba cannot be imported (an environment without it: foveanet still works, slower),
- for every kernel when ``FOVEANET_KERNELS=numpy`` is set (before the first use), and
- for the kernels named in a ``with kernels.disabled(...)`` block (tests run both paths).

``warm()`` compiles (or loads from numba's cache) every declared module for float32 and float64,
each through its op's own ``warm`` function, so that no training run waits for a compile:
``make install`` runs it. Declaring is the only step: a new kernel module is found by itself.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import os
import threading
from dataclasses import dataclass

__all__ = ["declare", "declared", "load", "enabled", "disabled", "resolve", "warm", "KernelModule",
           "cpu_flags", "wide_vectors"]

ENV_VAR = "FOVEANET_KERNELS"  # "numpy": every op takes its NumPy path


@dataclass(frozen=True)
class KernelModule:
    """A declared kernel module: its import name, what it computes (for ``warm``'s lines), and the
    function that compiles it for float32 and float64 and returns one line saying so."""
    module: str
    what: str
    warm: object


_declared: dict = {}
_loaded: dict = {}
_off: set = set()
_lock = threading.Lock()


def declare(module: str, what: str, warm) -> None:
    """Register the kernel module ``module`` (a full import name); ``warm()`` -> a line."""
    _declared[module] = KernelModule(module, what, warm)


def declared() -> list:
    """The declared kernel modules, in declaration order."""
    return list(_declared.values())


def enabled() -> bool:
    """Whether the compiled paths may run at all (not ``FOVEANET_KERNELS=numpy``)."""
    return os.environ.get(ENV_VAR, "").strip().lower() != "numpy"


def load(module: str):
    """The kernel module ``module`` (compiled or loaded from numba's disk cache when first used),
    or None when the compiled paths are off for it (see the module docstring)."""
    if module in _off:
        return None
    try:
        return _loaded[module]
    except KeyError:
        pass
    with _lock:
        if module not in _loaded:
            found = None
            if enabled():
                try:
                    found = importlib.import_module(module)
                except ImportError:  # numba missing (or broken): the NumPy paths run
                    found = None
            _loaded[module] = found
    return _loaded[module]


def resolve(*modules: str) -> set:
    """The full names of declared kernel modules given by full name (``foveanet.ops._x``) or by
    the file's stem (``_x_kernels``); KeyError for one that is not declared."""
    names = set()
    for m in modules:
        found = {d for d in _declared if m in (d, d.rpartition(".")[2])}
        if not found:
            raise KeyError(f"no declared kernel module {m!r}; declared: "
                           f"{', '.join(sorted(d.rpartition('.')[2] for d in _declared))}")
        names |= found
    return names


@contextlib.contextmanager
def disabled(*modules: str):
    """Inside the block the named kernel modules (see ``resolve``) count as missing, as without
    numba, so their ops take the NumPy paths; afterwards, as before."""
    added = resolve(*modules) - _off
    _off.update(added)
    try:
        yield
    finally:
        _off.difference_update(added)


def warm() -> str:
    """Compile (or load from numba's cache) every declared kernel module for float32 and
    float64; one line per module, from its op's ``warm``."""
    return "\n".join(k.warm() for k in _declared.values())


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU's feature flags as /proc/cpuinfo lists them ("avx2", "avx512f", ...); empty where
    it cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        line = ""
    return frozenset(line.partition(":")[2].split())


def wide_vectors() -> bool:
    """Whether this CPU has AVX-512 (512-bit vectors, 32 vector registers), which the compiled
    kernels then use. Some thresholds that choose among an op's algorithms were measured on
    both kinds of CPU and differ (benchmarks/RESULTS.md). False where the flags cannot be read."""
    return "avx512f" in cpu_flags()
