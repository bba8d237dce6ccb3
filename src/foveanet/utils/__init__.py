"""Utilities around training (PyTorch's ``torch.utils``): activation checkpointing.

``checkpoint(fn, *args)`` runs a segment of a network without keeping its activations and
recomputes them during backward; ``checkpoint_sequential(model, segments, x)`` does that for the
pieces of an ``nn.Sequential`` (see :mod:`foveanet.utils.checkpoint`).
"""
from .checkpoint import checkpoint, checkpoint_sequential  # noqa: F401

# ``fv.utils.checkpoint`` is the function, as the short spelling wants; PyTorch's longer
# ``torch.utils.checkpoint.checkpoint(...)`` / ``.checkpoint_sequential(...)`` work as well.
checkpoint.checkpoint, checkpoint.checkpoint_sequential = checkpoint, checkpoint_sequential

__all__ = ["checkpoint", "checkpoint_sequential"]
