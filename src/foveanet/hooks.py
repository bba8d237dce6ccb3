"""``RemovableHandle``: what every ``register_*_hook`` returns (PyTorch's
``torch.utils.hooks.RemovableHandle``). A module of its own so that the engine and ``nn`` share it
without importing each other."""
from __future__ import annotations

import itertools

__all__ = ["RemovableHandle"]


class RemovableHandle:
    """Returned by ``register_forward_hook``, ``register_post_accumulate_grad_hook`` and friends:
    ``handle.remove()`` unregisters the hook.

    Also a context manager: ``with model.register_forward_hook(f): ...`` removes it on exit."""

    _next_id = itertools.count()

    def __init__(self, hooks: dict):
        self.hooks = hooks
        self.id = next(RemovableHandle._next_id)

    def remove(self) -> None:
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False
