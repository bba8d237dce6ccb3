"""The MPI layer under ``fv.distributed``: one ``Communicator`` per process, over mpi4py.

Every collective is non-blocking underneath (``Iallreduce``, ``Ibcast``, ``Iallgather(v)``,
``Ibarrier``) and waited for by polling with a deadline: a rank that died or hangs would otherwise
leave the others blocked inside MPI for ever. When the deadline passes, the waiting rank prints
which collective it waited for, for how long and at which training step, and calls
``MPI_Abort``, which ends every process of the job (the MPI launcher kills the rest). A rank that
dies outright is noticed sooner by the launcher itself (MPICH's ``mpiexec`` prints "BAD
TERMINATION ... KILLED BY SIGNAL: 9" and ends the job).

Only buffers move: arrays through MPI's typed buffer calls, and small Python values (a run's
configuration, metric states) as UTF-8 JSON bytes. mpi4py's lower-case methods, which pickle, are
never used, so no process ever unpickles what another sent.
"""
from __future__ import annotations

import json
import os
import sys
import time

from ..backend import xp

_MPI = None
ABORT_GRACE_S = 1.0  # seconds between printing why the job ends and MPI_Abort


def mpi():
    """The ``mpi4py.MPI`` module (importing it initialises MPI), or a clear ImportError."""
    global _MPI
    if _MPI is None:
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise ImportError(
                "foveanet.distributed needs mpi4py and an MPI library; install them with "
                "pip install 'foveanet[distributed]' (mpi4py and the MPICH wheel), or mpi4py "
                f"beside a system MPI (Debian: openmpi-bin libopenmpi-dev) ({e})") from None
        _MPI = MPI
    return _MPI


class Work:
    """A collective in flight: ``done()`` tests (and drives MPI's progress), ``wait()`` blocks
    until it is complete or the communicator's timeout has passed."""

    def __init__(self, comm: "Communicator", requests, what: str):
        self.comm, self.requests, self.what = comm, list(requests), what
        self.complete = False

    def done(self) -> bool:
        if not self.complete:
            self.complete = mpi().Request.Testall(self.requests)
        return self.complete

    def wait(self):
        if not self.complete:
            self.comm._wait(self.requests, self.what)
            self.complete = True
        return self


class Communicator:
    """A process's place in the job and the collectives foveanet uses.

    ``timeout``: seconds any one collective may wait for the other ranks before the job is
    aborted. ``step``: the training step now running (``DistributedDataParallel`` counts its
    steps here), named in the timeout message."""

    def __init__(self, comm=None, timeout: float = 300.0):
        MPI = mpi()
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self.host = MPI.Get_processor_name()
        self.timeout = float(timeout)
        self.step = None
        self.threads = None  # compute threads, when init_process_group set them

    # ---------------------------------------------------------------------------- waiting
    def _wait(self, requests, what: str) -> None:
        Testall = mpi().Request.Testall
        if Testall(requests):
            return
        t0 = time.monotonic()
        spin_until, deadline = t0 + 0.002, t0 + self.timeout
        while not Testall(requests):
            now = time.monotonic()
            if now > deadline:
                self.abort(f"waited {now - t0:.0f} s (the timeout) for {what}: another rank "
                           "died or hangs")
            if now > spin_until:  # poll tightly for a couple of milliseconds, then yield
                time.sleep(0.0002)

    def abort(self, reason: str, code: int = 1):
        """Print ``reason`` (with this rank and the step) to stderr and end the whole job."""
        step = "" if self.step is None else f" at step {self.step}"
        sys.stderr.write(f"foveanet.distributed: rank {self.rank} of {self.size} on {self.host}"
                         f"{step}: {reason}. Aborting the job (the last checkpoint stays valid: "
                         "resume from it).\n")
        sys.stderr.flush()
        # the launcher forwards a rank's output through its own pipes and stops forwarding once
        # MPI_Abort reaches it: give it a moment to pass the sentence on first
        time.sleep(ABORT_GRACE_S)
        self.comm.Abort(code)
        os._exit(code)  # pragma: no cover - Abort does not return

    # -------------------------------------------------------------------------- collectives
    def iallreduce(self, array: xp.ndarray, what: str = "an all-reduce") -> Work:
        """Start summing ``array`` (contiguous) across ranks, in place."""
        return Work(self, [self.comm.Iallreduce(mpi().IN_PLACE, array, op=mpi().SUM)], what)

    def allreduce(self, array: xp.ndarray, what: str = "an all-reduce") -> xp.ndarray:
        """Sum ``array`` across ranks, in place; returns it."""
        self.iallreduce(array, what).wait()
        return array

    def allgather(self, array: xp.ndarray, what: str = "an all-gather") -> xp.ndarray:
        """Every rank's ``array`` (the same shape on all), stacked in rank order: (size, ...)."""
        out = xp.empty((self.size,) + array.shape, dtype=array.dtype)
        Work(self, [self.comm.Iallgather(xp.ascontiguousarray(array), out)], what).wait()
        return out

    def broadcast(self, array: xp.ndarray, root: int = 0, what: str = "a broadcast") -> xp.ndarray:
        """Copy rank ``root``'s ``array`` into every rank's, in place; returns it."""
        Work(self, [self.comm.Ibcast(array, root=root)], what).wait()
        return array

    def barrier(self, what: str = "a barrier") -> None:
        Work(self, [self.comm.Ibarrier()], what).wait()

    def broadcast_json(self, value=None, root: int = 0, what: str = "a broadcast"):
        """Rank ``root``'s ``value`` (anything JSON can hold) on every rank."""
        data = json.dumps(value).encode() if self.rank == root else b""
        n = self.broadcast(xp.array([len(data)], dtype=xp.int64), root, what)
        buf = xp.frombuffer(data, dtype=xp.uint8).copy() if self.rank == root else \
            xp.empty(int(n[0]), dtype=xp.uint8)
        self.broadcast(buf, root, what)
        return json.loads(buf.tobytes().decode())

    def allgather_json(self, value, what: str = "an all-gather") -> list:
        """Every rank's ``value`` (JSON), in rank order, on every rank."""
        data = xp.frombuffer(json.dumps(value).encode(), dtype=xp.uint8)
        sizes = xp.empty(self.size, dtype=xp.int64)
        Work(self, [self.comm.Iallgather(xp.array([data.size], dtype=xp.int64), sizes)], what).wait()
        offsets = xp.concatenate([[0], xp.cumsum(sizes)[:-1]])
        out = xp.empty(int(sizes.sum()), dtype=xp.uint8)
        req = self.comm.Iallgatherv(data, [out, sizes, offsets, mpi().BYTE])
        Work(self, [req], what).wait()
        return [json.loads(out[o:o + s].tobytes().decode()) for o, s in zip(offsets, sizes)]
