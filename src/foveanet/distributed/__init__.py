"""Data-parallel training on several processes and machines, on MPI (PyTorch's
``torch.distributed`` and ``DistributedDataParallel``, Horovod's design).

Each process (rank) holds a copy of the model and reads its own shard of the data; after every
backward the gradients are averaged across ranks, so all copies take the same step::

    # mpirun -n 2 python train.py
    import foveanet as fv
    from foveanet import distributed as dist

    dist.init_process_group()                     # MPI_COMM_WORLD; threads = cores / local ranks
    model = dist.DistributedDataParallel(fv.nn.SyncBatchNorm.convert_sync_batchnorm(net))
    sampler = fv.data.DistributedSampler(train_set, seed=0)   # rank and size from dist
    loader = fv.data.DataLoader(train_set, batch_size=64, sampler=sampler)
    ...  # the ordinary loop: loss.backward() returns with the averaged gradients in .grad

- ``DistributedDataParallel`` broadcasts parameters and buffers from rank 0 when it is built and
  all-reduces the gradients in buckets that start while backward is still running (see
  :mod:`foveanet.distributed.ddp`);
- ``fv.nn.SyncBatchNorm`` normalises with the statistics of the global batch;
- ``foveanet train --distributed`` does all of it, with rank 0 alone writing the run directory.

Transport: mpi4py over any MPI (``pip install 'foveanet[distributed]'`` brings MPICH's wheel;
a system OpenMPI works too). Collectives have a timeout (``timeout`` seconds, default 300): a rank
that dies or hangs makes the others abort the job with a message, instead of a job that hangs.
"""
from __future__ import annotations

from ..backend import process_group, xp
from .comm import Communicator, Work, mpi

__all__ = ["init_process_group", "destroy_process_group", "is_available", "is_initialized",
           "get_rank", "get_world_size", "get_local_size", "communicator", "all_reduce",
           "broadcast", "barrier", "DistributedDataParallel", "DDP", "DistributedError",
           "Communicator", "Work"]

_comm: Communicator | None = None


class DistributedError(RuntimeError):
    """Distributed training was asked for and cannot run (no MPI, not initialised, ...)."""


def is_available() -> bool:
    """Whether mpi4py (and so an MPI library) can be imported."""
    try:
        mpi()
    except ImportError:
        return False
    return True


def init_process_group(backend: str = "mpi", timeout: float = 300.0, threads="auto",
                       comm=None) -> Communicator:
    """Join the job: the MPI world (or ``comm``, an mpi4py communicator). ``timeout``: seconds a
    collective may wait before the job is aborted. ``threads``: compute threads of this process;
    ``"auto"`` gives each of the ranks on one machine an equal share of its cores (at least one),
    so that ranks do not oversubscribe them; None leaves the setting alone. Run without a
    launcher, the world is this one process (world size 1)."""
    global _comm
    if backend != "mpi":
        raise ValueError(f"init_process_group: foveanet's only backend is 'mpi', got {backend!r}")
    if not timeout > 0:
        raise ValueError(f"init_process_group: timeout must be positive seconds, got {timeout!r}")
    if _comm is not None:
        raise DistributedError("init_process_group: already initialised (call "
                               "destroy_process_group() first)")
    try:
        _comm = Communicator(comm, timeout)
    except ImportError as e:
        raise DistributedError(str(e)) from None
    process_group.set_current(_comm)
    if threads == "auto":
        threads = max(1, process_group.available_cores() // _comm.local_size)
    if threads is not None:
        from ..backend import set_num_threads
        set_num_threads(int(threads))
        _comm.threads = int(threads)
    return _comm


def destroy_process_group() -> None:
    """Leave the process group (MPI itself stays initialised until the process ends)."""
    global _comm
    _comm = None
    process_group.set_current(None)


def is_initialized() -> bool:
    return _comm is not None


def communicator() -> Communicator:
    """The process group's ``Communicator``; DistributedError before ``init_process_group``."""
    if _comm is None:
        raise DistributedError("foveanet.distributed is not initialised: call "
                               "fv.distributed.init_process_group() first (and start the "
                               "processes with mpirun -n N)")
    return _comm


def get_rank() -> int:
    """This process's rank (0 when not initialised, as a single process is rank 0)."""
    return 0 if _comm is None else _comm.rank


def get_world_size() -> int:
    """The number of processes (1 when not initialised)."""
    return 1 if _comm is None else _comm.size


def get_local_size() -> int:
    """The number of processes on this machine (1 when not initialised)."""
    return 1 if _comm is None else _comm.local_size


def _array(tensor, who):
    data = getattr(tensor, "data", tensor)
    if not isinstance(data, xp.ndarray) or not data.flags.c_contiguous:
        raise TypeError(f"{who}: expected a foveanet Tensor or NumPy array backed by a contiguous "
                        f"array, got {type(tensor).__name__}")
    return data


def all_reduce(tensor, op: str = "sum"):
    """Reduce ``tensor`` across ranks in place: ``"sum"`` or ``"mean"`` (``"avg"``)."""
    data = _array(tensor, "all_reduce")
    if op not in ("sum", "mean", "avg"):
        raise ValueError(f"all_reduce: op must be 'sum', 'mean' or 'avg', got {op!r}")
    comm = communicator()
    comm.allreduce(data, "all_reduce")
    if op != "sum":
        data /= comm.size
    return tensor


def broadcast(tensor, src: int = 0):
    """Copy rank ``src``'s ``tensor`` into every rank's, in place."""
    comm = communicator()
    if not 0 <= src < comm.size:
        raise ValueError(f"broadcast: src must be a rank in [0, {comm.size}), got {src}")
    comm.broadcast(_array(tensor, "broadcast"), src, "broadcast")
    return tensor


def barrier() -> None:
    communicator().barrier("barrier")


from .ddp import DistributedDataParallel  # noqa: E402  (ddp uses the functions above)

DDP = DistributedDataParallel
from ..nn import SyncBatchNorm  # noqa: E402,F401  (PyTorch's torch.nn.SyncBatchNorm)

convert_sync_batchnorm = SyncBatchNorm.convert_sync_batchnorm
__all__ += ["SyncBatchNorm", "convert_sync_batchnorm"]
