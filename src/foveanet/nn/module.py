"""``Module``: the base class of every layer and model (PyTorch's ``torch.nn.Module``).

A Module owns three registries, filled automatically by attribute assignment:

* ``_parameters``: the ``Parameter``s it learns (``self.weight = Parameter(...)``),
* ``_buffers``: tensors that are state but not learned (BatchNorm's running statistics), added
  with ``register_buffer``,
* ``_modules``: its sub-Modules (``self.conv1 = Conv2d(...)``), which makes models trees.

Everything else follows from walking that tree: ``parameters()`` for the optimizer, ``state_dict()``
for checkpoints (keys are dotted paths such as ``features.0.weight``), ``train()``/``eval()``,
``to(dtype)``, the nested ``repr``. ``__call__`` runs ``forward`` between the forward hooks, and when
a layer deep inside a model raises, it names that layer by its path (``features.3 (Conv2d(...))``).
"""
from __future__ import annotations

import threading
from collections import OrderedDict, namedtuple
from collections.abc import Mapping

from ..autograd import Tensor
from ..hooks import RemovableHandle
from ..backend import parse_to, to_device, xp
from .parameter import Parameter

__all__ = ["Module", "RemovableHandle"]


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` returns: the keys it expected but did not get, and the reverse."""

    __slots__ = ()

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


_call_state = threading.local()
_ANNOTATED_ERRORS = (ValueError, TypeError, IndexError)


def _addindent(s: str, spaces: int) -> str:
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _as_array(value, key):
    """A state_dict value as an array: fv Tensors, NumPy arrays, anything array-like (torch too)."""
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        arr = xp.asarray(value)
    except Exception as exc:  # noqa: BLE001 - report what the value was
        raise TypeError(f"state_dict value for {key!r} is a {type(value).__name__}, which cannot be "
                        "turned into an array") from exc
    if arr.dtype == object or not (xp.issubdtype(arr.dtype, xp.number) or arr.dtype == xp.bool_):
        raise TypeError(f"state_dict value for {key!r} has non-numeric dtype {arr.dtype}")
    return arr


def _check_name(name, kind: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name must be a string, got {type(name).__name__}")
    if name == "":
        raise KeyError(f'{kind} name can\'t be empty string ""')
    if "." in name:
        raise KeyError(f'{kind} name can\'t contain ".", got {name!r}')


class Module:
    """Base class for all layers and models.

    Subclass it, call ``super().__init__()`` first in ``__init__``, assign layers and Parameters as
    attributes, and define ``forward``. Call the module (``model(x)``), not ``forward``, so hooks
    run and errors name the layer they come from.
    """

    training: bool

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # ------------------------------------------------------------------------------ registration
    def _registries(self):
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(f"cannot assign parameters, buffers or modules to "
                                 f"{type(self).__name__} before Module.__init__() call: call "
                                 "super().__init__() first in __init__")
        return d["_parameters"], d["_buffers"], d["_modules"]

    def register_parameter(self, name: str, param) -> None:
        """Register ``param`` (a ``Parameter`` or None) under ``name``."""
        params, _, _ = self._registries()
        _check_name(name, "parameter")
        if hasattr(self, name) and name not in params:
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign a {type(param).__name__} as parameter '{name}' "
                            "(nn.Parameter or None expected)")
        params[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Register a state tensor that is not learned (saved in ``state_dict`` when ``persistent``)."""
        _, buffers, _ = self._registries()
        _check_name(name, "buffer")
        if hasattr(self, name) and name not in buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign a {type(tensor).__name__} as buffer '{name}' "
                            "(a foveanet Tensor or None expected)")
        buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module) -> None:
        """Register ``module`` (a ``Module`` or None) as a child called ``name``."""
        _, _, modules = self._registries()
        _check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if hasattr(self, name) and name not in modules:
            raise KeyError(f"attribute '{name}' already exists")
        modules[name] = module

    register_module = add_module

    def _forget(self, name: str, *registries) -> None:
        """Remove ``name`` from the given registries (it is being reassigned as something else)."""
        for reg in registries:
            if name in reg:
                del reg[name]
                if reg is self.__dict__.get("_buffers"):
                    self._non_persistent_buffers.discard(name)

    def __setattr__(self, name: str, value) -> None:
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            params, buffers, modules = self._registries()
            self._forget(name, d, buffers, modules)
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            params, buffers, modules = self._registries()
            self._forget(name, d, params, buffers)
            modules[name] = value
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} as parameter '{name}' "
                                "(nn.Parameter or None expected); wrap it: nn.Parameter(value)")
            params[name] = None
        elif d.get("_modules") is not None and name in d["_modules"]:
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} as child module '{name}' "
                                "(nn.Module or None expected)")
            d["_modules"][name] = None
        elif d.get("_buffers") is not None and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign a {type(value).__name__} as buffer '{name}' "
                                "(a foveanet Tensor or None expected)")
            d["_buffers"][name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            r = d.get(reg)
            if r is not None and name in r:
                return r[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            r = d.get(reg)
            if r is not None and name in r:
                del r[name]
                if reg == "_buffers":
                    self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        keys = list(super().__dir__())
        keys += list(self._parameters) + list(self._buffers) + list(self._modules)
        return sorted(set(k for k in keys if not k[:1].isdigit()))

    # ----------------------------------------------------------------------------------- calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward(): define "
                                  "forward(self, ...) in your Module subclass")

    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """``hook(module, args)`` runs before ``forward``; returning a value replaces the arguments
        (a tuple, or a single value wrapped into one)."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook) -> RemovableHandle:
        """``hook(module, args, output)`` runs after ``forward``; returning a value replaces the
        output. Use it to record activation maps: ``layer.register_forward_hook(lambda m, i, o:
        maps.append(o.detach()))``."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def __call__(self, *args, **kwargs):
        depth = getattr(_call_state, "depth", 0)
        _call_state.depth = depth + 1
        try:
            if self._forward_pre_hooks:
                for hook in list(self._forward_pre_hooks.values()):
                    result = hook(self, args)
                    if result is not None:
                        args = result if isinstance(result, tuple) else (result,)
            out = self.forward(*args, **kwargs)
            if self._forward_hooks:
                for hook in list(self._forward_hooks.values()):
                    result = hook(self, args, out)
                    if result is not None:
                        out = result
            return out
        except _ANNOTATED_ERRORS as exc:
            chain = exc.__dict__.setdefault("_fv_module_chain", [])
            chain.append(self)
            if depth == 0:
                self._annotate_error(exc)
            raise
        finally:
            _call_state.depth = depth

    def _annotate_error(self, exc) -> None:
        """Prefix the message of an error raised inside a submodule with that submodule's path."""
        chain = exc.__dict__.pop("_fv_module_chain", [])
        if exc.__dict__.get("_fv_annotated"):
            return
        names = {}
        for name, mod in self.named_modules():
            names.setdefault(id(mod), name)
        for mod in chain:  # innermost first: the first one reachable from here by a name
            name = names.get(id(mod))
            if name is None:
                continue
            if name == "":
                return  # raised by the module called itself: its message already names it
            desc = mod._short_repr()
            msg = str(exc.args[0]) if exc.args else ""
            if msg.startswith(desc + ": "):
                msg = msg[len(desc) + 2:]
            exc.args = (f"{name} ({desc}): {msg}",) + tuple(exc.args[1:])
            exc._fv_annotated = True
            return

    # ---------------------------------------------------------------------------------- walking
    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        """(qualified name, module) for this module and every descendant, depth first."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, kind: str, prefix: str, recurse: bool, remove_duplicate: bool = True):
        seen = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else [(prefix, self)]
        for mod_prefix, mod in mods:
            for name, value in mod.__dict__[kind].items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield mod_prefix + ("." if mod_prefix else "") + name, value

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """(qualified name, Parameter) pairs; a parameter shared by two layers appears once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> "Module":
        """The descendant at dotted path ``target`` (``""`` is this module)."""
        if target == "":
            return self
        mod = self
        for i, item in enumerate(target.split(".")):
            sub = mod._modules.get(item)
            if sub is None:
                where = ".".join(target.split(".")[:i]) or "the model"
                raise AttributeError(f"{where} ({mod._get_name()}) has no submodule '{item}' "
                                     f"(looking up '{target}')")
            mod = sub
        return mod

    def get_parameter(self, target: str) -> Parameter:
        path, _, name = target.rpartition(".")
        mod = self.get_submodule(path)
        if name not in mod._parameters or mod._parameters[name] is None:
            raise AttributeError(f"{mod._get_name()} has no parameter '{name}' (looking up '{target}')")
        return mod._parameters[name]

    def get_buffer(self, target: str) -> Tensor:
        path, _, name = target.rpartition(".")
        mod = self.get_submodule(path)
        if name not in mod._buffers or mod._buffers[name] is None:
            raise AttributeError(f"{mod._get_name()} has no buffer '{name}' (looking up '{target}')")
        return mod._buffers[name]

    def apply(self, fn) -> "Module":
        """Call ``fn(module)`` on every descendant (children first) and on this module; returns self.

        Typical use: custom initialisation, ``model.apply(init_weights)``."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------------------------- modes
    def train(self, mode: bool = True) -> "Module":
        """Set training mode (``True``) or evaluation mode (``False``) here and in every descendant.

        It matters for Dropout (off in eval) and BatchNorm (running statistics in eval)."""
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be a bool, got {mode!r}")
        self.training = mode
        for module in self.children():
            module.train(mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Switch gradient tracking of every parameter (``False`` freezes the module)."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of every parameter (``None``, or zeros with ``set_to_none=False``)."""
        for p in self.parameters():
            if p.grad is not None:
                p.grad = None if set_to_none else Tensor._wrap(xp.zeros_like(p.grad.data))

    def num_parameters(self, trainable_only: bool = False) -> int:
        """How many numbers the model learns (shared parameters counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------------------- state dict
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                destination[prefix + name] = b if keep_vars else b.detach()

    def state_dict(self, *, destination=None, prefix: str = "", keep_vars: bool = False):
        """An OrderedDict from dotted names (``features.0.weight``, ``bn.running_mean``) to the
        parameters and persistent buffers, detached (they share memory with the model: copy them
        to keep a snapshot). Keys are PyTorch's for the same architecture."""
        if destination is None:
            destination = OrderedDict()
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination=destination, prefix=prefix + name + ".",
                                  keep_vars=keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values from ``state_dict`` into the parameters and buffers, in place.

        Values may be fv Tensors, NumPy arrays or anything array-like; they are converted to each
        parameter's dtype. Returns ``(missing_keys, unexpected_keys)``. With ``strict=True`` any
        missing or unexpected key is a RuntimeError; a shape mismatch always is. Nothing is copied
        unless every value fits."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"expected a mapping (e.g. the OrderedDict of state_dict()), got "
                            f"{type(state_dict).__name__}")
        expected = self.state_dict(keep_vars=True)
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in expected]
        errors, plan = [], []
        for key, target in expected.items():
            if key not in state_dict:
                continue
            arr = _as_array(state_dict[key], key)
            if tuple(arr.shape) != tuple(target.shape):
                errors.append(f"size mismatch for {key}: copying a value of shape {tuple(arr.shape)} "
                              f"from the state_dict, the shape in the current model is "
                              f"{tuple(target.shape)}.")
            else:
                plan.append((target, arr))
        if strict:
            msgs = []
            if missing:
                msgs.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
            if unexpected:
                msgs.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected)
                            + ".")
            hint = _prefix_hint(missing, unexpected)
            if hint:
                msgs.append(hint)
            errors = msgs + errors
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {self._get_name()}:\n\t"
                               + "\n\t".join(errors))
        for target, arr in plan:
            target.data[...] = arr.astype(target.data.dtype, copy=False)
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------------------------ dtypes
    def to(self, *args, **kwargs) -> "Module":
        """PyTorch's ``Module.to``: ``to(dtype)`` converts every floating parameter (and its
        gradient) and floating buffer in place; ``to(device)`` moves them there (checked: only
        the CPU exists in this release, where it changes nothing); ``to(device, dtype)`` both."""
        dev, dtype = parse_to(type(self).__name__, args, kwargs)
        if dtype is not None and not xp.issubdtype(dtype, xp.floating):
            raise TypeError(f"Module.to only accepts floating point dtypes, got {dtype}")
        for p in self.parameters():
            p.data = self._moved(p.data, dev, dtype)
            if p.grad is not None:
                p.grad = Tensor._wrap(self._moved(p.grad.data, dev, dtype))
        for b in self.buffers():
            b.data = self._moved(b.data, dev, dtype if xp.issubdtype(b.data.dtype, xp.floating)
                                 else None)
        return self

    @staticmethod
    def _moved(array, dev, dtype):
        if dev is not None:
            array = to_device(array, dev)
        return array if dtype is None else array.astype(dtype)

    def float(self) -> "Module":
        return self.to(xp.float32)

    def double(self) -> "Module":
        return self.to(xp.float64)

    def half(self) -> "Module":
        return self.to(xp.float16)

    def cpu(self) -> "Module":
        return self

    # -------------------------------------------------------------------------------------- repr
    def _get_name(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        """The text inside the parentheses of this module's repr (override in layers)."""
        return ""

    def _short_repr(self) -> str:
        extra = self.extra_repr().split("\n")[0]
        if not extra and any(m is not None for m in self._modules.values()):
            return self._get_name()
        return f"{self._get_name()}({extra})"

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({key}): " + _addindent(repr(module), 2)
                       for key, module in self._modules.items()]
        lines = extra_lines + child_lines
        main = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                main += extra_lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"


def _prefix_hint(missing, unexpected) -> str:
    """Spot the common case of keys that differ only by a leading 'module.'-like prefix."""
    if not missing or not unexpected:
        return ""
    heads = {k.split(".", 1)[0] for k in unexpected if "." in k}
    if len(heads) == 1:
        head = heads.pop()
        stripped = {k.split(".", 1)[1] for k in unexpected if "." in k}
        if set(missing) <= stripped:
            return f"(the state_dict's keys carry an extra prefix '{head}.'; strip it before loading)"
    return ""
