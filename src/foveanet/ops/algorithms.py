"""One place per algorithm choice: the registry of the ops that can be computed several ways.

An op with several algorithms registers each one here: its name, the devices it runs on, the
compiled kernel module it needs (None: it is plain NumPy), a priority, ``suits(geometry)`` (does
it apply to this call?) and ``impl``, the object the op calls (for ``conv2d``: forward, backward
and the inference form that ``fv.optimize_for_inference`` plans with). The op asks ``select(op,
geometry)`` and gets the first algorithm, in priority order, that runs on the geometry's device,
whose kernels are there and that suits; the last one registered for each op suits everything
(the fallback). Training and ``optimize_for_inference`` ask the same ``select``, so they agree.

    conv2d       direct (stride 1, few taps) > winograd (3x3 stride 1, >= 16 channels)
                 > direct_s2 (3x3 stride 2, <= 64x64 channels) > phases (strided, <= 4
                 channels, over the phase planes) > nhwc (strided, channels-last columns)
                 > im2col (anything)
    conv_transpose2d  nhwc (strided, >= 16 output channels) > cols (anything)
    max_pool2d   compiled_2x2 (2x2 tiles) > tiles (windows tiling the input) > compiled (any
                 window, compiled loops) > windows (anything, NumPy)
    batch_norm   compiled > numpy

Tests and A/B runs choose instead of the rules, for the calls made inside a block on that thread::

    with fv.ops.algorithms.force(conv2d="winograd"):   # winograd where it suits, else im2col
        ...
    with fv.ops.algorithms.force(conv2d="direct", strict=True):  # AlgorithmError where not
        ...

Adding an algorithm is its own file plus one ``register`` call; nothing else changes.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from ..backend import CPU, Device
from ..backend.cpu import kernels

__all__ = ["Algorithm", "AlgorithmError", "ConvGeometry", "register", "select", "candidates",
           "force", "names", "get"]


class AlgorithmError(ValueError):
    """A forced algorithm that does not exist or (``strict=True``) does not suit a call."""


@dataclass(frozen=True)
class Algorithm:
    """One way to compute ``op``. ``suits(geometry) -> bool``; ``impl``: what the op calls."""
    op: str
    name: str
    suits: Callable
    impl: object = None
    priority: int = 100
    devices: tuple = (CPU,)
    kernels: str | None = None
    doc: str = field(default="", compare=False)

    def available(self, device=CPU) -> bool:
        """Runs on ``device`` and has its compiled kernels (numba present, not disabled)."""
        return device in self.devices and (self.kernels is None or
                                           kernels.load(self.kernels) is not None)


class ConvGeometry(NamedTuple):
    """What the convolution algorithms decide on: dtype, weight shape (O, C/groups, KH, KW),
    stride, padding (top, bottom, left, right), dilation, groups, device; and, where a call
    knows them, its batch size and output size (0 and (): not known, as for an inference plan,
    which serves any batch)."""
    dtype: object
    weight_shape: tuple
    stride: tuple
    pads: tuple
    dilation: tuple
    groups: int
    device: Device = CPU
    batch: int = 0
    out_hw: tuple = ()


_registry: dict = {}
_local = threading.local()


def register(op: str, name: str, suits, impl=None, *, priority: int = 100, devices=(CPU,),
             kernels: str | None = None, doc: str = "") -> Algorithm:
    """Add (or replace) algorithm ``name`` of ``op``; returns it."""
    algo = Algorithm(op, name, suits, impl, priority, tuple(devices), kernels, doc)
    entries = [a for a in _registry.get(op, []) if a.name != name] + [algo]
    _registry[op] = sorted(entries, key=lambda a: a.priority)
    return algo


def candidates(op: str) -> list:
    """The algorithms of ``op`` in the order ``select`` tries them."""
    try:
        return list(_registry[op])
    except KeyError:
        raise AlgorithmError(f"no algorithms are registered for {op!r}; ops with several: "
                             f"{', '.join(sorted(_registry))}") from None


def names(op: str) -> list:
    return [a.name for a in candidates(op)]


def get(op: str, name: str) -> Algorithm:
    for a in candidates(op):
        if a.name == name:
            return a
    raise AlgorithmError(f"{op} has no algorithm {name!r}; it has {', '.join(names(op))}")


def _forced() -> dict:
    f = getattr(_local, "forced", None)
    if f is None:
        f = _local.forced = {}
    return f


def select(op: str, geometry) -> Algorithm:
    """The algorithm ``op`` uses for ``geometry`` (which has a ``device`` attribute, or is on the
    CPU): the forced one if a ``force`` block names one that suits, else the first in priority
    order that is available and suits, else the fallback."""
    entries = _registry[op]
    device = getattr(geometry, "device", CPU)
    forced = _forced().get(op)
    if forced is not None:
        names_, strict = forced
        for name in names_:
            a = get(op, name)
            if a.available(device) and a.suits(geometry):
                return a
        if strict:
            raise AlgorithmError(f"{op}: the forced algorithm{'s' if len(names_) > 1 else ''} "
                                 f"{', '.join(names_)} do{'' if len(names_) > 1 else 'es'} not "
                                 f"suit this call ({_describe(geometry)})")
        return entries[-1]
    for a in entries:
        if a.available(device) and a.suits(geometry):
            return a
    return entries[-1]


def _describe(geometry) -> str:
    if hasattr(geometry, "_asdict"):
        return ", ".join(f"{k}={v}" for k, v in geometry._asdict().items())
    return repr(geometry)


@contextlib.contextmanager
def force(strict: bool = False, **choices):
    """Inside the block, on this thread, ``op=name`` (or ``op=(name, ...)``, tried in order)
    replaces the registry's rules for ``op``: the named algorithm where it suits, the op's
    fallback elsewhere (``strict=True``: an AlgorithmError instead). Blocks nest."""
    for op, value in choices.items():
        for name in (value,) if isinstance(value, str) else value:
            get(op, name)  # an unknown op or name fails here, before anything runs
    forced = _forced()
    saved = dict(forced)
    for op, value in choices.items():
        forced[op] = (((value,) if isinstance(value, str) else tuple(value)), strict)
    try:
        yield
    finally:
        forced.clear()
        forced.update(saved)
