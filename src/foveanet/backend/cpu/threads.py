"""The second core for NumPy's own passes: ``split`` runs one over slices of the batch at once.

Why. BLAS products use every thread they are given, but NumPy's copies and element-wise passes
(im2col, col2im, batch norm, ReLU, pooling) run on the calling thread alone: on a 2-core machine
one core idled for about half of a CNN training step. ``split(fn, n, nbytes)`` calls ``fn(lo, hi)``
for T contiguous slices of ``range(n)`` (usually the batch axis), the calling thread doing the
first and T - 1 persistent workers the others (``_Worker``); NumPy and the compiled kernels
release the GIL inside their loops, so the slices run in parallel. T is the BLAS thread limit
(``fv.set_num_threads`` or threadpoolctl), so the engine never uses more threads than it was
given; passes under ``MIN_BYTES`` stay on one thread (figures: benchmarks/RESULTS.md, "The
engine's thread pool").

This pays only with OpenBLAS's idle workers asleep: they spin ~0.1 s (2^28 cycles) after every
product, holding the second core exactly when a pass would use it. So the first parallel pass
shortens that spin (``blas.quiet_openblas``), through OpenBLAS's own environment variable and its
post-``fork`` restart of the thread pool. ``FOVEANET_THREADS=1`` (or
``fv.set_num_threads(1)``) keeps every pass on the calling thread and OpenBLAS untouched.
"""
from __future__ import annotations

import os
import threading

import numpy

from .blas import blas_threads, quiet_openblas

__all__ = ["split", "copy", "binary", "threads", "MIN_BYTES"]

MIN_BYTES = 1 << 20  # passes touching fewer bytes stay on one thread (a hand-off is ~12-35 us)

_state: dict = {"pool": None}
_local = threading.local()
_busy = threading.Lock()  # held by the thread whose pass is on the pool


def threads() -> int:
    """How many threads ``split`` uses now: the BLAS limit, 1 when unknown or FOVEANET_THREADS=1."""
    if os.environ.get("FOVEANET_THREADS") == "1":
        return 1
    return blas_threads() or 1


class _Worker:
    """One persistent thread of the pool, handed one slice at a time through a pair of locks: a
    round trip costs ~12 us here, against ~45 us through ``concurrent.futures`` (a queue, a
    Future and two condition variables per slice). resnet20's training step makes ~200 such
    hand-offs, LeNet-5's ~10."""

    def __init__(self, index: int):
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.job = self.error = None
        threading.Thread(target=self._run, name=f"foveanet-{index}", daemon=True).start()

    def _run(self):
        _local.worker = True
        while True:
            self.go.acquire()
            job = self.job
            if job is None:  # stop
                return
            try:
                job[0](job[1], job[2])
            except BaseException as e:  # noqa: BLE001 - handed back to the caller as it is
                self.error = e
            finally:
                self.job = None
                self.done.release()

    def start(self, fn, lo: int, hi: int) -> None:
        self.error, self.job = None, (fn, lo, hi)
        self.go.release()

    def wait(self):
        """Block until the slice has run; its exception, or None."""
        self.done.acquire()
        error, self.error = self.error, None
        return error

    def stop(self) -> None:
        self.job = None
        self.go.release()


def _workers(count: int) -> list:
    """The pool of ``count`` workers (rebuilt when the thread count changed)."""
    if len(_state["pool"] or ()) != count:
        for w in _state["pool"] or ():
            w.stop()
        _state["pool"] = [_Worker(i) for i in range(1, count + 1)]
    return _state["pool"]


def _after_fork_in_child():
    """A forked child has none of the parent's threads (and the parent's lock may have been held
    at the fork): it starts its own pool when it needs one."""
    global _busy
    _busy = threading.Lock()
    _state["pool"] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def split(fn, n: int, nbytes: int) -> None:
    """``fn(lo, hi)`` for contiguous slices [lo, hi) that together cover ``range(n)``, run at once
    on up to ``threads()`` threads when the pass touches at least ``MIN_BYTES`` (``nbytes``).

    ``fn`` must write disjoint outputs for disjoint slices (each slice its own rows of an output
    array); results are the same as ``fn(0, n)``. Inside a worker, or while another thread's
    pass holds the pool, the pass runs unsplit on the calling thread."""
    t = min(threads(), n) if nbytes >= MIN_BYTES and n > 1 else 1
    if t < 2 or getattr(_local, "worker", False) or not _busy.acquire(blocking=False):
        fn(0, n)
        return
    try:
        quiet_openblas()
        workers = _workers(t - 1)
        bounds = [n * i // t for i in range(t + 1)]
        for i, w in enumerate(workers, 1):
            w.start(fn, bounds[i], bounds[i + 1])
        try:
            fn(bounds[0], bounds[1])
        finally:
            try:
                errors = [w.wait() for w in workers]
            except BaseException:  # interrupted while waiting: these workers may still run
                _state["pool"] = None  # a fresh pool next time (the old threads finish, idle)
                raise
        for e in errors:
            if e is not None:
                raise e  # a worker's exception, re-raised here
    finally:
        _busy.release()


def copy(view, out=None):
    """A contiguous copy of ``view`` (e.g. im2col's strided view), or ``view`` copied into ``out``,
    split over the first axis."""
    if out is None:
        out = numpy.empty(view.shape, dtype=view.dtype)
    split(lambda lo, hi: numpy.copyto(out[lo:hi], view[lo:hi]), view.shape[0], out.nbytes)
    return out


def binary(ufunc, a, b, out):
    """``ufunc(a, b, out=out)`` split over the first axis of ``out``; an operand with fewer axes
    or a first axis of 1 (broadcasting) goes whole to every slice."""
    if out.ndim == 0:
        return ufunc(a, b, out=out)
    n = out.shape[0]

    def part(x, lo, hi):
        return x[lo:hi] if getattr(x, "ndim", 0) == out.ndim and x.shape[0] == n else x

    split(lambda lo, hi: ufunc(part(a, lo, hi), part(b, lo, hi), out=out[lo:hi]), n, out.nbytes)
    return out
