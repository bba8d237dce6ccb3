"""The array-module seam: the one place that knows which library computes, and on which device.

Every numerical module reaches its array library through this package, never through an
``import numpy`` of its own (a test keeps that true; only this package and the compiled-kernel
files ``*_kernels.py`` import NumPy). Two ways:

- ``get_array_module(*arrays)``: the module that computes on these arrays (NumPy for NumPy
  arrays; CuPy for CuPy arrays once a GPU backend exists), as dezero and CuPy's own helper do.
  Code that must work on any device asks this.
- ``xp``: the host array module (NumPy). The CPU paths (and everything today) use it directly;
  a path that only exists on the CPU says so in the algorithm registry (``ops.algorithms``:
  each algorithm declares its devices).

Devices: ``device_of(array)`` is where an array lives (``Tensor.device`` asks it),
``to_device(array, device)`` moves one (``Tensor.to`` / ``Module.to``); ``device(spec)`` parses
``"cpu"``, ``"cuda:0"``, a ``Device``. Only the CPU exists in this release: asking for another
device is a ``DeviceError`` that says so. The dtype policy (default float dtype) lives here too,
and the CPU runtime below the ops (``backend.cpu``: threads, BLAS, compiled kernels, allocator).
"""
from __future__ import annotations

import sys

import numpy as xp

__all__ = ["xp", "get_array_module", "Device", "DeviceError", "device", "device_of", "to_device",
           "available_devices", "check_device", "parse_to", "get_default_dtype", "set_default_dtype", "is_floating",
           "set_num_threads"]

# Public dtypes, PyTorch-named. They are the array module's own dtype objects.
float16 = xp.float16
float32 = xp.float32
float64 = xp.float64
int8 = xp.int8
int16 = xp.int16
int32 = xp.int32
int64 = xp.int64
uint8 = xp.uint8
bool_ = xp.bool_

float = float32  # noqa: A001 - PyTorch's alias: fv.float is float32
double = float64
long = int64

_default_float = xp.dtype(xp.float32)


def get_default_dtype():
    """The dtype of new floating-point tensors (float32 unless changed)."""
    return _default_float


def set_default_dtype(dtype) -> None:
    """Set the dtype that Python floats and ``fv.randn`` etc. produce: float32 or float64."""
    global _default_float
    dt = xp.dtype(dtype)
    if dt not in (xp.dtype(xp.float32), xp.dtype(xp.float64)):
        raise TypeError(f"default dtype must be float32 or float64, got {dt}")
    _default_float = dt


def is_floating(dtype) -> bool:
    return xp.issubdtype(xp.dtype(dtype), xp.floating)


# ---------------------------------------------------------------------------------- devices
class DeviceError(ValueError):
    """A device that does not exist here, or that an operation cannot run on."""


class Device:
    """Where arrays live and ops run (PyTorch's ``torch.device``): ``type`` ('cpu', 'cuda') and
    ``index`` (None or the GPU's number). Compares equal to its string (``Device('cpu') ==
    'cpu'``)."""

    __slots__ = ("type", "index")
    TYPES = ("cpu", "cuda")

    def __init__(self, type: str, index: int | None = None):  # noqa: A002 - PyTorch's name
        if isinstance(type, Device):
            type, index = type.type, type.index if index is None else index
        if not isinstance(type, str):
            raise DeviceError(f"a device is a string such as 'cpu' or 'cuda:0', got {type!r}")
        name, sep, num = type.strip().lower().partition(":")
        if sep:
            if index is not None or not num.isdigit():
                raise DeviceError(f"invalid device {type!r}: expected 'cpu', 'cuda' or 'cuda:N'")
            index = int(num)
        if name not in self.TYPES:
            raise DeviceError(f"unknown device type {name!r} in {type!r}: expected one of "
                              f"{', '.join(self.TYPES)}")
        if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
            raise DeviceError(f"invalid device index {index!r}: expected an int >= 0")
        if name == "cpu" and index not in (None, 0):
            raise DeviceError(f"invalid device 'cpu:{index}': there is one CPU device")
        self.type, self.index = name, None if name == "cpu" else index

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        extra = "" if self.index is None else f", index={self.index}"
        return f"device(type={self.type!r}{extra})"

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = Device(other)
            except DeviceError:
                return False
        if not isinstance(other, Device):
            return NotImplemented
        return (self.type, self.index or 0) == (other.type, other.index or 0)

    def __hash__(self):
        return hash((self.type, self.index or 0))


CPU = Device("cpu")


def device(spec) -> Device:
    """``spec`` ('cpu', 'cuda', 'cuda:1', a Device) as a Device; DeviceError for anything else."""
    return spec if isinstance(spec, Device) else Device(spec)


def available_devices() -> list:
    """The devices this installation can compute on: the CPU (a GPU backend comes later)."""
    return [CPU]


def _cupy():
    """CuPy when it has been imported (an array of it can exist only then), else None."""
    return sys.modules.get("cupy")


def get_array_module(*arrays):
    """The array module that computes on ``arrays``: NumPy, or CuPy for CuPy arrays. Tensors are
    looked through (``.data``); other values (Python scalars) do not decide."""
    cp = _cupy()
    if cp is not None:
        for a in arrays:
            if not isinstance(a, xp.ndarray):  # an ndarray's .data is its buffer, not an array
                a = getattr(a, "data", a)  # a Tensor's is its array
            if isinstance(a, cp.ndarray):
                return cp
    return xp


def device_of(array) -> Device:
    """The device ``array`` lives on (the CPU for NumPy arrays and scalars)."""
    cp = _cupy()
    if cp is not None and isinstance(array, cp.ndarray):
        return Device("cuda", int(array.device.id))
    return CPU


def to_device(array, target):
    """``array`` on device ``target`` (the same array when it is there already)."""
    dev, src = device(target), device_of(array)
    if dev == src:
        return array
    raise DeviceError(f"cannot move an array from {src} to {dev}: foveanet computes on the CPU "
                      f"only in this release (available: "
                      f"{', '.join(map(str, available_devices()))})")


def check_device(owner: str, target) -> None:
    """A DeviceError naming ``owner`` unless ``target`` (None: the default) is available."""
    if target is None:
        return
    dev = device(target)
    if dev not in available_devices():
        raise DeviceError(f"{owner}: device {str(dev)!r} is not available: foveanet computes on "
                          f"the CPU only in this release")


def parse_to(owner: str, args, kwargs):
    """``(device, dtype)`` from the arguments of PyTorch's ``.to(...)``: a device ('cpu',
    'cuda:0', a Device), a dtype, a tensor (its device and dtype), or ``device=`` / ``dtype=``
    keywords (``non_blocking`` and ``copy`` are accepted and mean nothing on the CPU). Either
    may be None. The device is checked: one that is not available is a DeviceError."""
    dev, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    kwargs.pop("non_blocking", None)
    kwargs.pop("copy", None)
    if kwargs:
        raise TypeError(f"{owner}.to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if a is None:
            continue
        if isinstance(a, Device) or (isinstance(a, str) and
                                     a.strip().lower().partition(":")[0] in Device.TYPES):
            dev = a
        elif hasattr(a, "dtype") and hasattr(a, "device") and not isinstance(a, type):
            dev, dtype = a.device, a.dtype  # a tensor
        else:
            dtype = a
    if dev is not None:
        check_device(owner, dev)
        dev = device(dev)
    if dtype is not None:
        try:
            dtype = xp.dtype(dtype)
        except TypeError:
            raise TypeError(f"{owner}.to(): {dtype!r} is neither a device ({', '.join(Device.TYPES)}) "
                            f"nor a dtype") from None
    return dev, dtype


def set_num_threads(n: int) -> None:
    """Limit the threads foveanet computes with (PyTorch's ``torch.set_num_threads``): NumPy's BLAS
    and the engine's own thread pool (see ``backend.cpu``)."""
    cpu.blas.set_num_threads(n)


from . import cpu  # noqa: E402  (the CPU runtime: it uses nothing above)

cpu.allocator.tune_allocator()
