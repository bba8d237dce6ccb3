"""Run by tests/test_distributed.py under ``mpirun -n N`` (or alone): trains a small model for a
few steps and writes what the test compares to ``OUT`` (rank 0 only).

    distributed_worker.py equivalence OUT   # a CNN without batch norm, global batch 128
    distributed_worker.py syncbn OUT        # a CNN with (Sync)BatchNorm, global batch 64
    distributed_worker.py hooks OUT         # weight sharing + no_sync accumulation

With one process (no ``mpirun``) the same global batches are used on one copy of the model,
without ``fv.distributed`` at all: the reference the ranks must match.
"""
import contextlib
import json
import os
import sys

import numpy as np

import foveanet as fv
from foveanet import distributed as dist

STEPS = int(os.environ.get("WORKER_STEPS", "20"))


def data(n, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 5, n)
    return x, y


def cnn(bn):
    fv.manual_seed(0)
    layers = [fv.nn.Conv2d(1, 6, 3, padding=1)]
    if bn:
        layers.append(fv.nn.BatchNorm2d(6))
    # with batch norm: smooth layers, no ReLU/max-pool kinks (where 1e-7 differences in the
    # statistics could flip a unit and change a gradient by a finite step)
    layers += [fv.nn.Tanh() if bn else fv.nn.ReLU(), fv.nn.AvgPool2d(2) if bn else fv.nn.MaxPool2d(2),
               fv.nn.Flatten(), fv.nn.Linear(6 * 36, 32)]
    if bn:
        layers.append(fv.nn.BatchNorm1d(32))
    layers += [fv.nn.Tanh(), fv.nn.Linear(32, 5)]
    return fv.nn.Sequential(*layers)


def main(mode, out):
    distributed = "OMPI_COMM_WORLD_SIZE" in os.environ or "PMI_SIZE" in os.environ
    if distributed:
        dist.init_process_group(timeout=60)
    rank, world = dist.get_rank(), dist.get_world_size()
    global_batch = 64 if mode == "syncbn" else 128
    model = cnn(bn=mode == "syncbn")
    if rank:  # a different start on the other ranks: the broadcast must overwrite it
        for p in model.parameters():
            p.data[...] = 0.5
    if mode == "syncbn" and distributed:
        model = fv.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = dist.DistributedDataParallel(model) if distributed else model
    opt = fv.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x_all, y_all = data(global_batch * STEPS)
    share = global_batch // world
    comm_times, grads = [], []
    for step in range(STEPS):
        lo = step * global_batch + rank * share
        x, y = fv.tensor(x_all[lo:lo + share]), fv.tensor(y_all[lo:lo + share])
        opt.zero_grad()
        if mode == "hooks":  # two half-batches accumulated, the first unsynced
            half = share // 2
            with net.no_sync() if distributed else contextlib.nullcontext():
                (fv.nn.functional.cross_entropy(net(x[:half]), y[:half]) / 2).backward()
            loss = fv.nn.functional.cross_entropy(net(x[half:]), y[half:]) / 2
        else:
            loss = fv.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        if distributed:
            comm_times.append(net.comm_seconds)
        grads.append(float(sum(float((p.grad.data.astype(np.float64) ** 2).sum())
                               for p in model.parameters()) ** 0.5))
        opt.step()
    if rank == 0:
        state = {k: v.data for k, v in model.state_dict().items()}
        np.savez(out, **state)
        with open(out + ".json", "w") as f:
            json.dump({"world": world, "loss": float(loss.item()),
                       "threads": dist.communicator().threads if distributed
                       else None, "comm_seconds": comm_times, "grad_norms": grads}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
