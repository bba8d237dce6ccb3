"""``foveanet train --distributed``: the same run on N MPI processes (``mpirun -n N foveanet
train --distributed ...``), data-parallel.

- ``--batch-size`` stays the GLOBAL batch: each rank takes ``batch_size / N`` samples of every
  step (an error unless N divides it), so a recipe, its learning rate and its schedule mean the
  same on any number of ranks, and a run resumed with another N continues the same schedule.
- Rank 0 resolves the configuration and opens the run directory, then broadcasts both; it alone
  writes config.json, checkpoints, logs, the test results and the report (the others write
  nothing). On ``--resume`` every rank reads the checkpoint: the run directory must be on a file
  system all hosts see (on one machine it is).
- The training set is sharded by a ``DistributedSampler`` (a permutation from the seed and the
  epoch, the same on every rank, so the shards are disjoint and reshuffled every epoch); the
  validation set by a strided split, without padding, so its metrics are exact.
- Randomness (augmentation, dropout) is reseeded at the start of every epoch from (seed, epoch,
  rank): the ranks draw differently, and a run resumed with the same N is bit-identical to one
  that was never interrupted.
- Threads: each of the ranks on one machine gets an equal share of its cores (``--threads`` caps
  it), so N ranks never oversubscribe them.
- ``--sync-bn``: batch norm with the global batch's statistics (``fv.nn.SyncBatchNorm``).
- ``--comm-timeout S``: a rank that waits longer than S seconds for the others (one died or
  hangs) aborts the whole job with a message; the last checkpoint stays valid.
"""
from __future__ import annotations

from .. import random as fv_random
from ..backend import xp
from ..train.callbacks import Callback
from .common import UsageError

__all__ = ["add_arguments", "Distributed"]


def add_arguments(group) -> None:
    group.add_argument("--distributed", action="store_true",
                       help="data-parallel training on the ranks of an MPI job: mpirun -n N "
                       "foveanet train --distributed ... (--batch-size is the global batch)")
    group.add_argument("--sync-bn", action="store_true", dest="sync_bn",
                       help="with --distributed: batch norm over the global batch (SyncBatchNorm)")
    group.add_argument("--comm-timeout", type=float, metavar="S", dest="comm_timeout",
                       help="with --distributed: seconds a rank waits for the others before the "
                       "job is aborted (default 300)")


class Distributed:
    """The run's place in the MPI job (one process: rank 0 of 1, and every method a no-op)."""

    def __init__(self, given: dict):
        self.enabled = bool(given.get("distributed"))
        for flag in ("sync_bn", "comm_timeout"):
            if given.get(flag) is not None and given.get(flag) is not False and not self.enabled:
                raise UsageError(f"--{flag.replace('_', '-')} needs --distributed")
        self.rank, self.size, self.comm = 0, 1, None
        if not self.enabled:
            return
        timeout = given.get("comm_timeout")
        if timeout is not None and not timeout > 0:
            raise UsageError(f"--comm-timeout must be positive seconds, got {timeout:g}")
        from .. import distributed
        try:
            self.comm = distributed.init_process_group(timeout=timeout or 300.0, threads=None)
        except distributed.DistributedError as exc:
            raise UsageError(str(exc)) from None
        self.rank, self.size = self.comm.rank, self.comm.size
        self.sync_bn = bool(given.get("sync_bn"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shared(self, fn):
        """``fn()`` on rank 0, its (JSON) result on every rank; an error on rank 0 ends every
        rank (rank 0 reports it, the others exit quietly with the same status)."""
        if self.size == 1:
            return fn()
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except UsageError as exc:
                error = exc
        status = self.comm.broadcast_json({"ok": error is None, "result": result})
        if error is not None:
            raise error
        if not status["ok"]:
            raise SystemExit(2)
        return status["result"]

    def sharded(self, cfg: dict, resuming: bool) -> bool:
        """Whether the run's loaders are sharded (a ``DistributedSampler``, reseeded per epoch and
        rank): a run started with ``--distributed`` always is, so that it resumes on any number
        of ranks, one process without ``--distributed`` included (its sampler state is the
        same kind). A run started on one process without it resumes the same way."""
        if self.enabled and resuming and not cfg.get("data_parallel"):
            raise UsageError("this run was started without --distributed: resume it without "
                             "--distributed (its data order is a single process's)")
        if self.enabled:
            cfg["data_parallel"] = True
        return bool(cfg.get("data_parallel"))

    def threads(self, configured: int) -> int:
        """Compute threads of this rank: the configured number, capped by its share of the
        machine's cores."""
        if not self.enabled:
            return configured
        from ..backend.process_group import available_cores
        return max(1, min(configured, available_cores() // self.comm.local_size))

    def batch_size(self, global_batch: int) -> int:
        if global_batch % self.size:
            raise UsageError(f"--batch-size {global_batch} does not split over {self.size} ranks: "
                             f"use a multiple of {self.size} (it is the global batch)")
        return global_batch // self.size

    def shard_train(self, dataset, seed: int):
        from ..data import DistributedSampler
        return DistributedSampler(dataset, num_replicas=self.size, rank=self.rank, shuffle=True,
                                  seed=seed)

    def shard_eval(self, dataset):
        from ..data import Subset
        return Subset(dataset, list(range(self.rank, len(dataset), self.size)))

    def wrap(self, model):
        """The model for the Trainer: in DistributedDataParallel (with SyncBatchNorm layers
        under ``--sync-bn``); the model itself on one process."""
        if not self.enabled:
            return model
        from ..distributed import DistributedDataParallel, convert_sync_batchnorm
        if self.sync_bn:
            convert_sync_batchnorm(model)
        return DistributedDataParallel(model)

    def callbacks(self, seed: int, loader, sharded: bool) -> list:
        return [EpochReseed(seed, self.rank, loader)] if sharded else []

    def describe(self) -> str:
        c = self.comm
        return (f"distributed: {self.size} ranks, {c.local_size} on this machine ({c.host}), "
                f"global batch split {self.size} ways")


class EpochReseed(Callback):
    """At every epoch's start, the global generator and ``loader``'s reseeded from (seed, epoch,
    rank): the ranks draw differently, and an epoch's draws do not depend on what came before."""

    order = -100  # before anything that draws

    def __init__(self, seed: int, rank: int, loader):
        self.seed, self.rank, self.loader = seed, rank, loader

    def on_epoch_begin(self, epoch, logs):
        s = int(xp.random.SeedSequence([self.seed, epoch, self.rank, 24]).generate_state(1)[0])
        fv_random.manual_seed(s)
        if self.loader.generator is not None:
            self.loader.generator.manual_seed(s + 1)
