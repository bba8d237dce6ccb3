"""The process group this process computes in, as the layers below ``fv.distributed`` see it.

``fv.distributed.init_process_group()`` sets it; ``fv.nn.SyncBatchNorm`` reads it, without the
layer importing the MPI package above it. ``None``: one process (no group). The group is duck
typed: ``size``, ``rank``, ``allgather(array, what)`` and ``allreduce(array, what)``."""
from __future__ import annotations

import os

__all__ = ["current", "set_current", "available_cores"]

_group = None


def current():
    """The process group, or None outside one."""
    return _group


def set_current(group) -> None:
    global _group
    _group = group


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
