"""``DistributedDataParallel``: gradients averaged across ranks while backward still runs.

How it works (PyTorch's DDP reducer, Horovod's fusion buffers):

- When built, the wrapper broadcasts rank 0's parameters and buffers, so every copy starts equal.
- The parameters are cut into buckets of about ``bucket_cap_mb`` (the first, ``first_bucket_mb``,
  smaller so that communication starts early), in reverse order of ``parameters()``: the order in
  which backward produces their gradients.
- A post-accumulate-grad hook on every parameter counts its gradient in. When all of a bucket's
  parameters are in, its gradients are copied into one flat array and a non-blocking all-reduce
  starts; backward goes on computing the earlier layers meanwhile. Buckets start strictly in
  bucket order on every rank (MPI needs the same sequence of collectives everywhere); the hooks
  also test the buckets in flight, which drives MPI's progress.
- A callback queued on the backward pass (``autograd.queue_callback``) runs when it ends: it
  starts the buckets not yet started, waits for all, divides by the world size and points each
  ``p.grad`` at its slice of the averaged array. A parameter that got no gradient on this rank
  counts as zeros (so ranks whose graphs differ still agree on the collectives).
- A parameter may receive several gradients in one backward (a weight used twice, a cell run
  per time step). The first backward therefore only counts how many each parameter gets and
  starts every bucket at its end; from the second on, a bucket starts once its parameters have
  had that many. If a later backward brings a parameter more gradients after its bucket started,
  that is a RuntimeError naming it (the graph changed shape between steps).

``no_sync()`` skips the all-reduce (gradient accumulation: the gradients add up locally and the
next synchronised backward averages the sum). ``state_dict()``/``load_state_dict()`` are the
wrapped module's, without PyTorch's ``module.`` prefix, so a checkpoint of a distributed run loads
into the plain model and back.
"""
from __future__ import annotations

import contextlib
import time


from ..autograd import Tensor, is_grad_enabled, queue_callback
from ..backend import xp
from ..nn.module import Module

__all__ = ["DistributedDataParallel"]

MB = 1 << 20


class _Bucket:
    """Parameters whose gradients travel in one flat array: ``spans`` are (parameter, start,
    end) in it."""

    __slots__ = ("index", "params", "dtype", "numel", "spans", "work", "flat")

    def __init__(self, index, params, dtype):
        self.index, self.params, self.dtype = index, params, dtype
        self.spans, offset = [], 0
        for p in params:
            self.spans.append((p, offset, offset + p.data.size))
            offset += p.data.size
        self.numel = offset
        self.work = self.flat = None


class DistributedDataParallel(Module):
    """Wrap ``module`` so that ``loss.backward()`` leaves in every parameter's ``.grad`` the mean
    of the ranks' gradients. Needs ``fv.distributed.init_process_group()`` first.

    ``bucket_cap_mb``: the size of a gradient bucket (MiB), ``first_bucket_mb``: the first one's;
    ``broadcast_buffers``: broadcast rank 0's buffers (batch-norm statistics) before every
    training forward, as PyTorch does, so that all copies evaluate alike."""

    def __init__(self, module: Module, bucket_cap_mb: float = 25.0, first_bucket_mb: float = 1.0,
                 broadcast_buffers: bool = True):
        from . import communicator
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected an fv.nn.Module, got "
                            f"{type(module).__name__}")
        for name, value in (("bucket_cap_mb", bucket_cap_mb), ("first_bucket_mb", first_bucket_mb)):
            if not value > 0:
                raise ValueError(f"DistributedDataParallel: {name} must be positive, got {value!r}")
        super().__init__()
        self.module = module
        self.__dict__["_comm"] = communicator()
        self.broadcast_buffers = bool(broadcast_buffers)
        params, seen = [], set()
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
        self._sync_state(initial=True)
        self.__dict__["_buckets"] = self._make_buckets(params[::-1], bucket_cap_mb * MB,
                                                       first_bucket_mb * MB)
        self.__dict__["_bucket_of"] = {id(p): b for b in self._buckets for p in b.params}
        self.__dict__["_expected"] = None   # {id(p): gradients per backward}, after the first
        self.__dict__["_counts"] = {}
        self.__dict__["_next"] = 0          # the next bucket to start
        self.__dict__["_syncing"] = True
        self.__dict__["_armed"] = False     # the end-of-backward callback is queued
        self.__dict__["_handles"] = [p.register_post_accumulate_grad_hook(self._on_grad)
                                     for p in params]
        self.__dict__["comm_seconds"] = 0.0  # the last backward's wait for its all-reduces
        self.__dict__["steps"] = 0           # training forwards so far

    # ---------------------------------------------------------------------------- set-up
    @staticmethod
    def _make_buckets(params, cap, first_cap):
        buckets, current, size, dtype = [], [], 0, None
        for p in params:
            nbytes = p.data.nbytes
            limit = first_cap if not buckets else cap
            if current and (p.data.dtype != dtype or size + nbytes > limit):
                buckets.append(_Bucket(len(buckets), current, dtype))
                current, size = [], 0
            current.append(p)
            size += nbytes
            dtype = p.data.dtype
        if current:
            buckets.append(_Bucket(len(buckets), current, dtype))
        return buckets

    def _sync_state(self, initial=False):
        """Broadcast rank 0's parameters (at the start) and buffers, one flat array per dtype."""
        comm = self._comm
        if comm.size == 1:
            return
        tensors = ([p for p in self.module.parameters()] if initial else []) + \
            [b for b in self.module.buffers() if b is not None]
        by_dtype = {}
        for t in tensors:
            by_dtype.setdefault(t.data.dtype, []).append(t)
        for dtype, group in by_dtype.items():
            flat = xp.concatenate([t.data.ravel() for t in group])
            comm.broadcast(flat, 0, "the broadcast of rank 0's parameters" if initial
                           else "the broadcast of rank 0's buffers")
            offset = 0
            for t in group:
                n = t.data.size
                t.data[...] = flat[offset:offset + n].reshape(t.data.shape)
                offset += n

    # ----------------------------------------------------------------------------- forward
    def forward(self, *args, **kwargs):
        if self._armed:
            raise RuntimeError("DistributedDataParallel: the previous backward pass did not end "
                               "(it raised), so its all-reduces are incomplete; the ranks can no "
                               "longer agree: restart from the last checkpoint")
        if self.module.training and is_grad_enabled():
            self.__dict__["steps"] += 1
            self._comm.step = self.steps  # named if a collective of this step times out
            if self.broadcast_buffers:
                self._sync_state()
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes inside accumulate gradients locally, without communicating."""
        previous = self._syncing
        self.__dict__["_syncing"] = False
        try:
            yield
        finally:
            self.__dict__["_syncing"] = previous

    # ---------------------------------------------------------------------------- reducer
    def _on_grad(self, p) -> None:
        if not self._syncing:
            return
        if not self._armed:
            queue_callback(self._finish)
            self.__dict__["_armed"] = True
        counts = self._counts
        counts[id(p)] = counts.get(id(p), 0) + 1
        bucket = self._bucket_of[id(p)]
        expected = self._expected
        if expected is None:
            return  # the first backward: counting only
        if bucket.work is not None:
            raise RuntimeError(
                f"DistributedDataParallel: a parameter of shape {tuple(p.shape)} received a "
                f"gradient after its bucket's all-reduce had started (it got "
                f"{counts[id(p)]} this backward, {expected.get(id(p), 0)} in the first): the "
                "graph changed between steps; keep each step's graph the same, or use no_sync()")
        self._launch_ready()
        for b in self._buckets[:self._next]:  # drive MPI's progress on the buckets in flight
            if b.work is not None and not b.work.complete:
                b.work.done()
                break

    def _launch_ready(self):
        expected, counts = self._expected, self._counts
        while self._next < len(self._buckets):
            b = self._buckets[self._next]
            if any(counts.get(id(p), 0) < expected.get(id(p), 1) for p in b.params):
                return
            self._launch(b)

    def _launch(self, b):
        flat = xp.empty(b.numel, dtype=b.dtype)
        for p, lo, hi in b.spans:
            flat[lo:hi] = 0 if p.grad is None else p.grad.data.reshape(-1)
        b.flat = flat
        b.work = self._comm.iallreduce(flat, f"the all-reduce of gradient bucket {b.index} "
                                       f"of {len(self._buckets)}")
        self.__dict__["_next"] = b.index + 1

    def _finish(self):
        if self._expected is None:
            self.__dict__["_expected"] = dict(self._counts)
        while self._next < len(self._buckets):
            self._launch(self._buckets[self._next])
        t0 = time.perf_counter()
        size = self._comm.size
        for b in self._buckets:
            b.work.wait()
        self.__dict__["comm_seconds"] = time.perf_counter() - t0
        for b in self._buckets:
            flat = b.flat
            if size > 1:
                flat /= size
            for p, lo, hi in b.spans:
                p.grad = Tensor._wrap(flat[lo:hi].reshape(p.data.shape))
            b.work = b.flat = None
        self.__dict__["_counts"] = {}
        self.__dict__["_next"] = 0
        self.__dict__["_armed"] = False

    # ------------------------------------------------------------------------ checkpoints
    def state_dict(self, *, destination=None, prefix: str = "", keep_vars: bool = False):
        """The wrapped module's state dict (no ``module.`` prefix)."""
        return self.module.state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)

    def load_state_dict(self, state_dict, strict: bool = True):
        return self.module.load_state_dict(state_dict, strict=strict)

    def extra_repr(self) -> str:
        return (f"world_size={self._comm.size}, buckets={len(self._buckets)}, "
                f"broadcast_buffers={self.broadcast_buffers}")
