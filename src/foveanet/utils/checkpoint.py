"""Activation checkpointing (PyTorch's ``torch.utils.checkpoint``): trade compute for memory.

    h = checkpoint(block, x)                          # block: any callable, a Module too
    y = checkpoint_sequential(model, 4, x)            # an nn.Sequential cut into 4 segments

Normally every primitive of a forward pass keeps what its backward needs (its inputs, masks,
normalised activations) until ``backward`` reaches it, so the memory of a training step grows
with the depth of the network. ``checkpoint(fn, *args)`` runs ``fn`` without building a graph:
the graph keeps only the segment's inputs and outputs, in one ``Checkpoint`` node. When backward
reaches that node, it runs ``fn`` again from the saved inputs, this time recording the graph, and
back-propagates the incoming gradients through it. The trade: the memory of the segment's
intermediate activations, for one more forward pass of the segment during backward (about a
third more compute for a whole network checkpointed segment by segment).

What it gives:

- the gradients of the plain computation: to the inputs of ``fn`` that require grad (the
  tensors among ``args`` and ``kwargs``, also inside tuples, lists and dicts, such as a
  recurrent layer's ``(h, c)``; other values pass through unchanged), and to every tensor
  requiring grad that ``fn`` uses inside (the parameters of a module), which, as in PyTorch's
  reentrant variant, receive theirs directly from the backward of the recomputed graph;
- ``fn`` may return a tensor, or tuples, lists and dicts of them, nested (``output, (h, c)``);
  non-tensor items come back as they are, integer tensors without a gradient;
- random ops draw the same numbers the second time: with ``preserve_rng_state=True`` (the
  default) the global generator's state (``fv.get_rng_state``) is saved before the first run,
  put back for the recomputation, and restored afterwards, so dropout applies the same mask.
  A ``fv.Generator`` passed explicitly to an op inside ``fn`` is not rewound: pass the global
  one, or reseed it yourself;
- checkpoints nest (the recomputation of the outer segment checkpoints the inner one again);
  under ``fv.no_grad()`` (evaluation) ``checkpoint`` just calls ``fn``.

What to know:

- ``fn`` runs twice in a training step, so its side effects happen twice: batch norm in train
  mode updates its running statistics (and ``num_batches_tracked``) once in the forward pass and
  once in the recomputation, as in PyTorch; forward hooks of modules inside fire twice too. The
  gradients are unaffected (train-mode batch norm normalises with the batch's statistics);
- the saved inputs are the arrays themselves, not copies: changing them in place between the
  forward and the backward pass changes the recomputation;
- a tensor that requires grad and was computed outside ``fn`` (not a leaf) must be passed as an
  argument rather than captured by ``fn`` (or hidden in an object other than a tuple, list or
  dict): the recomputation's backward would otherwise run into the outer graph (an error says
  so);
- if no input and no tensor used by ``fn`` requires grad, there is nothing to differentiate: a
  warning says so and the result is returned without a graph (PyTorch warns too);
- a second backward through the same checkpoint needs ``retain_graph=True`` on the first, as
  for any part of the graph (the engine's error says so); each backward recomputes the segment;
- profiling (``fv.profile``): the first run's primitives are recorded as usual; the
  recomputation and the backward of the segment show as one row, ``Checkpoint`` / backward
  (the profiler is paused inside it, so no time is counted twice);
- tracing (``foveanet.interop.trace``, ONNX export): while a trace runs, ``checkpoint`` calls
  ``fn`` directly, so the trace sees the segment's primitives.
"""
from __future__ import annotations

import contextlib
import warnings

from .. import autograd
from ..autograd import Function, Tensor, enable_grad, is_grad_enabled, no_grad, run_backward
from ..backend import xp
from ..random import get_rng_state, set_rng_state

__all__ = ["checkpoint", "checkpoint_sequential"]


class _Uses:
    """The tracer hook during the first run of a segment: notes every tensor that requires grad
    which the segment's primitives read, other than the segment's inputs."""

    def __init__(self, inputs):
        self.inputs = {id(t) for t in inputs}
        self.leaves = {}          # id -> leaf tensor requiring grad (parameters)
        self.computed = None      # a non-leaf requiring grad captured from outside, if any

    def record(self, fn, args, kwargs, result):
        for a in args:
            if isinstance(a, Tensor) and a.requires_grad and id(a) not in self.inputs:
                if a.grad_fn is None:
                    self.leaves.setdefault(id(a), a)
                elif self.computed is None:
                    self.computed = a


class _Nest:
    """A tuple, list or dict with tensors somewhere inside, in a template (see ``_flatten``)."""

    def __init__(self, obj, items):
        self.obj, self.items = obj, items

    def build(self, tensors):
        items = [_fill(t, tensors) for t in self.items]
        obj = self.obj
        if isinstance(obj, dict):
            return type(obj)(zip(obj.keys(), items))
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
            return type(obj)(*items)
        return type(obj)(items)


_TENSOR = object()  # a tensor's place in a template


def _flatten(obj, tensors: list):
    """A template of ``obj``: each tensor in it (also inside nested tuples, lists and dict
    values) is appended to ``tensors`` and its place marked; everything else is kept as it is
    (containers without tensors too: the same objects)."""
    if isinstance(obj, Tensor):
        tensors.append(obj)
        return _TENSOR
    if isinstance(obj, (tuple, list, dict)):
        n = len(tensors)
        items = [_flatten(o, tensors) for o in (obj.values() if isinstance(obj, dict) else obj)]
        return obj if len(tensors) == n else _Nest(obj, items)
    return obj


def _fill(template, tensors):
    """The object of ``template`` with the tensors of the iterator ``tensors`` in their places."""
    if template is _TENSOR:
        return next(tensors)
    return template.build(tensors) if isinstance(template, _Nest) else template


def _outputs(out):
    """(the tensors in ``fn``'s result, its template)."""
    tensors = []
    template = _flatten(out, tensors)
    if not tensors:
        what = type(out).__name__ + (" without tensors" if isinstance(out, (tuple, list, dict))
                                     else "")
        raise TypeError(f"checkpoint: the function must return a Tensor, or tuples, lists or "
                        f"dicts of them, got a {what}")
    return tensors, template


@contextlib.contextmanager
def _rng_as(state):
    """Run the block with the global generator in ``state`` (None: as it is); restore it after."""
    if state is None:
        yield
        return
    now = get_rng_state()
    set_rng_state(state)
    try:
        yield
    finally:
        set_rng_state(now)


class _Seed(Function):
    """A scalar whose backward hands each of its inputs a given gradient: back-propagates the
    gradients of several outputs in one pass (their shared part once, summed as usual)."""

    def forward(self, *outputs, grads):
        self.grads = grads
        return xp.zeros((), dtype=grads[0].dtype)

    def backward(self, grad):
        return tuple(self.grads)


class Checkpoint(Function):
    """A segment run without a graph: ``forward`` hands back the outputs of the first run
    (computed under ``no_grad`` by :func:`checkpoint`, which also saved the generator's state);
    ``backward`` runs the segment again with grad enabled on fresh leaves holding the saved
    inputs, back-propagates the incoming gradients through that graph, and returns the leaves'
    gradients. Tensors requiring grad that the segment uses inside (passed after its own inputs,
    so that the node is recorded even when no input requires grad) get their gradients directly
    from that inner backward."""

    # the returned arrays are the .grad of leaves made by backward alone
    fresh_grads = True

    def forward(self, *arrays, outputs, function, template, n_inputs, rng_state):
        self.function, self.template, self.rng_state = function, template, rng_state
        self.n_inputs = n_inputs
        self.shapes = [o.shape for o in outputs]
        return outputs

    def backward(self, grads):
        n = self.n_inputs
        leaves = [x.detach().requires_grad_(True) if need else x
                  for x, need in zip(self.inputs[:n], self.needs_input_grad)]
        args, kwargs = _fill(self.template, iter(leaves))
        profiler = autograd.set_hook("profiler", None)  # the row of this backward includes it all
        try:
            with _rng_as(self.rng_state), enable_grad():
                outs, _ = _outputs(self.function(*args, **kwargs))
            shapes = [o.shape for o in outs]
            if shapes != self.shapes:
                raise RuntimeError(f"checkpoint: recomputing the segment gave outputs of shapes "
                                   f"{shapes}, the first run {self.shapes}; the function must "
                                   "compute the same thing both times")
            roots = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
            if len(roots) == 1:
                run_backward(roots[0][0], roots[0][1])
            elif roots:
                seed = _Seed.apply(*(o for o, _ in roots), grads=[g for _, g in roots])
                run_backward(seed, xp.ones((), dtype=seed.dtype))
        finally:
            autograd.set_hook("profiler", profiler)
        in_grads = [leaf.grad.data if need and leaf.grad is not None else None
                    for leaf, need in zip(leaves, self.needs_input_grad)]
        return tuple(in_grads) + (None,) * (len(self.inputs) - n)


def checkpoint(function, *args, preserve_rng_state: bool = True, use_reentrant=None, **kwargs):
    """``function(*args, **kwargs)``, keeping none of its intermediate activations for backward:
    they are recomputed when the gradient reaches the segment (see the module doc).

    ``preserve_rng_state``: rewind the global generator for the recomputation, so random ops
    (dropout) draw the same numbers; False skips that when ``function`` draws none.
    ``use_reentrant`` is accepted for code written for PyTorch and changes nothing: there is one
    variant, which gives parameters used inside their gradients whether or not an input requires
    one (what PyTorch's non-reentrant variant does)."""
    if not callable(function):
        raise TypeError(f"checkpoint: function must be callable, got {type(function).__name__}")
    if not is_grad_enabled() or autograd.tracer is not None:
        return function(*args, **kwargs)
    flat = []
    template = _flatten((args, kwargs), flat)
    rng_state = get_rng_state() if preserve_rng_state else None
    uses = _Uses(flat)
    previous = autograd.set_hook("tracer", uses)  # None: a trace would have returned above
    try:
        with no_grad():
            out = function(*args, **kwargs)
    finally:
        autograd.set_hook("tracer", previous)
    tensors, out_template = _outputs(out)
    if uses.computed is not None:
        raise RuntimeError(f"checkpoint: the function uses a tensor that requires grad and was "
                           f"computed outside it (grad_fn={uses.computed.grad_fn.name}); pass it "
                           "to checkpoint as an argument so that its gradient flows back")
    inner = list(uses.leaves.values())
    if not inner and not any(t.requires_grad for t in flat):
        warnings.warn("checkpoint: none of the inputs and none of the tensors the function uses "
                      "require grad; the result has no gradient", UserWarning, stacklevel=2)
        return out
    results = Checkpoint.apply(*flat, *inner, outputs=tuple(t.data for t in tensors),
                               function=function, template=template, n_inputs=len(flat),
                               rng_state=rng_state)
    return _fill(out_template, iter(results))


def checkpoint_sequential(functions, segments: int, input,  # noqa: A002 - PyTorch's name
                          preserve_rng_state: bool = True):
    """Run ``functions`` (an ``nn.Sequential``, or a list of modules or callables) one after the
    other on ``input``, in ``segments`` pieces of ``len(functions) // segments``, all but the last
    under :func:`checkpoint` (the last one's activations are needed right away by backward, so
    it runs normally; ``segments=1`` checkpoints nothing), as PyTorch does."""
    functions = list(functions)
    if isinstance(segments, bool) or not isinstance(segments, int) or \
            not 1 <= segments <= len(functions):
        raise ValueError(f"checkpoint_sequential: segments must be an int from 1 to the number of "
                         f"functions ({len(functions)}), got {segments!r}")

    def run(start, end):
        def forward(x):
            for f in functions[start:end + 1]:
                x = f(x)
            return x
        return forward

    size = len(functions) // segments
    end = -1
    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        input = checkpoint(run(start, end), input, preserve_rng_state=preserve_rng_state)
    return run(end + 1, len(functions) - 1)(input)
