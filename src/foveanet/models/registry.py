"""The model registry: every architecture by name, for ``fv.models.create`` and the command line."""
from __future__ import annotations

import inspect

_MODELS: dict = {}


def register_model(name: str | None = None):
    """Decorator: register a constructor under ``name`` (default: the function's name, with
    underscores shown as dashes on the command line too)."""
    def deco(fn):
        key = name or fn.__name__
        if key in _MODELS:
            raise ValueError(f"a model named {key!r} is already registered")
        _MODELS[key] = fn
        return fn
    return deco


def list_models() -> list:
    """Names of all registered models, sorted."""
    return sorted(_MODELS)


def lookup(name: str):
    """The constructor registered under ``name`` (dashes and underscores interchangeable)."""
    key = name if name in _MODELS else name.replace("-", "_")
    if key not in _MODELS:
        alt = name.replace("_", "-")
        if alt in _MODELS:
            key = alt
        else:
            raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _MODELS[key]


def create(name: str, **kwargs):
    """Build a registered model: ``fv.models.create('lenet5', num_classes=10, in_channels=1)``."""
    fn = lookup(name)
    params = inspect.signature(fn).parameters
    unknown = [k for k in kwargs if k not in params
               and not any(p.kind is p.VAR_KEYWORD for p in params.values())]
    if unknown:
        raise TypeError(f"model {name!r} has no option {', '.join(map(repr, unknown))}; its options: "
                        f"{', '.join(params)}")
    return fn(**kwargs)


def model_options(name: str) -> dict:
    """The constructor's keyword arguments and their defaults."""
    return {k: p.default for k, p in inspect.signature(lookup(name)).parameters.items()
            if p.default is not inspect.Parameter.empty}
