"""Transfer learning (the lecture's slide): take a trained network, replace its classifier head
by a fresh one for the new classes, freeze the feature layers, fine-tune the rest.

``replace_head(model, num_classes)`` swaps the last ``Linear`` of a foveanet model (or calls the
model's own ``replace_head``, which models imported from ONNX provide) and returns the names of
the new parameters; ``freeze(model, spec, head=...)`` turns off ``requires_grad`` for the
parameters ``spec`` names and returns their names. The optimizers skip parameters without a
gradient, so frozen weights stay exactly as they were.
"""
from __future__ import annotations

from .. import nn

__all__ = ["replace_head", "freeze", "last_linear"]


def last_linear(model):
    """``(path, module)`` of the last ``nn.Linear`` in ``model`` (module order), or ``(None,
    None)``."""
    found = (None, None)
    for path, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            found = (path, mod)
    return found


def replace_head(model, num_classes: int) -> list[str]:
    """Give ``model`` a new, freshly initialised classifier head with ``num_classes`` outputs;
    returns the names of the new parameters. Uses ``model.replace_head`` where the model has
    one (an imported ONNX graph), else replaces the last ``nn.Linear``."""
    if num_classes < 1:
        raise ValueError(f"replace_head: num_classes must be positive, got {num_classes}")
    before = {id(p) for p in model.parameters()}
    if hasattr(model, "replace_head"):
        model.replace_head(num_classes)
    else:
        path, old = last_linear(model)
        if old is None:
            raise ValueError(f"replace_head: {type(model).__name__} has no Linear layer to "
                             "replace")
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                        dtype=old.weight.dtype)
        parent_path, _, name = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, name, new)
    return [n for n, p in model.named_parameters() if id(p) not in before]


def freeze(model, spec, head=()) -> list[str]:
    """Freeze (``requires_grad = False``) the parameters that ``spec`` names; returns their names.

    ``spec``: ``"features"`` (every parameter except those of ``head``, the names
    ``replace_head`` returned), or a comma-separated string / list of name prefixes (``"layer1,
    layer2.0"`` or ONNX initializer names): a parameter is frozen when its name equals a prefix
    or starts with it followed by a dot. A prefix that names nothing is an error, so a typo
    cannot silently leave the whole network trainable."""
    names = [n for n, _ in model.named_parameters()]
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not items:
        raise ValueError("freeze: nothing to freeze (an empty list)")
    chosen: list[str] = []
    for item in items:
        if item == "features":
            if not head:
                raise ValueError("freeze: 'features' means everything but a new classifier head; "
                                 "there is none (give the new number of classes, or name the "
                                 "layers to freeze)")
            match = [n for n in names if n not in set(head)]
        else:
            match = [n for n in names if n == item or n.startswith(item + ".")]
            if not match:
                shown = ", ".join(sorted({n.split(".")[0] for n in names})[:12])
                raise ValueError(f"freeze: {item!r} names no parameter of the model (its top-level "
                                 f"names: {shown})")
        chosen += [n for n in match if n not in chosen]
    if len(chosen) == len(names):
        raise ValueError("freeze: that freezes every parameter; nothing would be trained")
    params = dict(model.named_parameters())
    for n in chosen:
        params[n].requires_grad_(False)
    return chosen
