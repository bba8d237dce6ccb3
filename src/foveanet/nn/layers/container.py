"""Containers: ``Sequential`` (a pipeline), ``ModuleList`` and ``ModuleDict`` (registered
collections: a plain Python list of layers would hide their parameters from the model)."""
from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Mapping

from ..module import Module, _addindent


def _check_module(owner: str, where: str, m) -> None:
    if isinstance(m, Module):
        return
    if isinstance(m, type) and issubclass(m, Module):
        raise TypeError(f"{owner}: {where} is the class {m.__name__}, not a Module instance; "
                        f"instantiate it: {m.__name__}(...)")
    hint = " (a function: use the layer class, e.g. nn.ReLU() rather than F.relu)" if callable(m) else ""
    raise TypeError(f"{owner}: {where} is a {type(m).__name__}, not a Module{hint}")


def _index(owner, n: int, idx) -> int:
    try:
        idx = operator.index(idx)
    except TypeError:
        raise TypeError(f"{owner} indices must be integers or slices, not {type(idx).__name__}") from None
    if not -n <= idx < n:
        raise IndexError(f"index {idx} is out of range for a {owner} of length {n}")
    return idx % n


class Sequential(Module):
    """Modules applied one after the other: ``Sequential(Conv2d(1, 6, 5), ReLU(), ...)``, or from an
    ``OrderedDict`` of named modules. The children are named "0", "1", ... (or by the dict's keys),
    which gives state_dict keys like ``features.0.weight``.

    Supports ``len``, iteration, indexing (negative too; a slice is a new Sequential sharing the
    modules), ``append``, ``extend``, ``insert``, ``pop`` and ``del``."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], Mapping):
            for key, module in args[0].items():
                _check_module("Sequential", f"entry {key!r}", module)
                self.add_module(key, module)
        else:
            for i, module in enumerate(args):
                _check_module("Sequential", f"argument {i}", module)
                self.add_module(str(i), module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(OrderedDict(list(self._modules.items())[idx]))
        keys = list(self._modules)
        return self._modules[keys[_index("Sequential", len(keys), idx)]]

    def __setitem__(self, idx, module) -> None:
        _check_module("Sequential", f"item {idx}", module)
        keys = list(self._modules)
        setattr(self, keys[_index("Sequential", len(keys), idx)], module)

    def __delitem__(self, idx) -> None:
        keys = list(self._modules)
        if isinstance(idx, slice):
            for key in keys[idx]:
                del self._modules[key]
        else:
            del self._modules[keys[_index("Sequential", len(keys), idx)]]
        self._renumber()

    def _renumber(self) -> None:
        items = list(self._modules.values())
        self._modules.clear()
        for i, m in enumerate(items):
            self._modules[str(i)] = m

    def append(self, module) -> "Sequential":
        _check_module("Sequential", "the appended item", module)
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules) -> "Sequential":
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module) -> "Sequential":
        _check_module("Sequential", "the inserted item", module)
        n = len(self)
        if not -n <= index <= n:
            raise IndexError(f"index {index} is out of range for inserting into a Sequential of length {n}")
        items = list(self._modules.values())
        items.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(items):
            self._modules[str(i)] = m
        return self

    def pop(self, idx: int = -1) -> Module:
        m = self[idx]
        del self[idx]
        return m

    def forward(self, input):  # noqa: A002
        for module in self._modules.values():
            input = module(input)
        return input


class ModuleList(Module):
    """A list of modules, registered (their parameters belong to the model). Indexing, negative
    indices, slices (a new ModuleList), ``append``, ``extend``, ``insert``, ``len``, iteration.
    It has no ``forward``: call its items."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(list(self._modules.values())[idx])
        return self._modules[str(_index("ModuleList", len(self), idx))]

    def __setitem__(self, idx, module) -> None:
        _check_module("ModuleList", f"item {idx}", module)
        setattr(self, str(_index("ModuleList", len(self), idx)), module)

    def __delitem__(self, idx) -> None:
        if isinstance(idx, slice):
            for k in range(len(self))[idx]:
                del self._modules[str(k)]
        else:
            del self._modules[str(_index("ModuleList", len(self), idx))]
        items = list(self._modules.values())
        self._modules.clear()
        for i, m in enumerate(items):
            self._modules[str(i)] = m

    def __iadd__(self, modules) -> "ModuleList":
        return self.extend(modules)

    def __add__(self, other) -> "ModuleList":
        return type(self)(list(self) + list(other))

    def append(self, module) -> "ModuleList":
        _check_module("ModuleList", "the appended item", module)
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules) -> "ModuleList":
        if isinstance(modules, (Module, str)) or not hasattr(modules, "__iter__"):
            raise TypeError(f"ModuleList.extend expects an iterable of Modules, got {type(modules).__name__}")
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module) -> None:
        _check_module("ModuleList", "the inserted item", module)
        items = list(self._modules.values())
        items.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(items):
            self._modules[str(i)] = m

    def pop(self, idx: int = -1) -> Module:
        m = self[idx]
        del self[idx]
        return m

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList is a container, not a layer: call its items "
                                  "(for layer in self.layers: x = layer(x))")

    def __repr__(self):
        """Runs of identical items are compressed, as PyTorch does: ``(0-2): 3 x Linear(...)``."""
        reprs = [repr(m) for m in self]
        if not reprs:
            return self._get_name() + "()"
        blocks = []  # [start, end, repr]
        for i, r in enumerate(reprs):
            if blocks and blocks[-1][2] == r:
                blocks[-1][1] = i
            else:
                blocks.append([i, i, r])
        lines = []
        for start, end, r in blocks:
            line = f"({start}): {r}" if start == end else f"({start}-{end}): {end - start + 1} x {r}"
            lines.append(_addindent(line, 2))
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"


class ModuleDict(Module):
    """A dict of modules, registered under their keys (``model.heads['age']``); keeps insertion
    order. ``keys``, ``values``, ``items``, ``update``, ``pop``, ``clear``, ``in``, ``len``."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        if key not in self._modules:
            raise KeyError(f"ModuleDict has no module {key!r} (keys: {list(self._modules)})")
        return self._modules[key]

    def __setitem__(self, key: str, module) -> None:
        _check_module("ModuleDict", f"the value for {key!r}", module)
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key) -> bool:
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules) -> None:
        items = modules.items() if isinstance(modules, (Mapping, ModuleDict)) else modules
        for entry in items:
            try:
                key, module = entry
            except (TypeError, ValueError):
                raise TypeError("ModuleDict.update expects a mapping or an iterable of (key, module) "
                                f"pairs, got an item {entry!r}") from None
            self[key] = module

    def pop(self, key: str) -> Module:
        m = self[key]
        del self._modules[key]
        return m

    def clear(self) -> None:
        self._modules.clear()

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict is a container, not a layer: call its items")
