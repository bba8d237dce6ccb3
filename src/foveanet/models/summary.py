"""``summary(model, input_shape)``: one row per layer with its output shape, parameters and
multiply-adds, totals at the bottom (like Keras' ``model.summary()`` or torchinfo)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import nn
from ..autograd import Tensor, no_grad
from ..backend import xp
from ..random import randn


def _prod(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


def layer_macs(module, inputs, output) -> int:
    """Multiply-accumulate operations of one layer for ONE sample (batch dimension excluded).
    A module that computes weighted sums of its own (not through Conv2d/Linear submodules)
    says how many with a ``macs_per_sample()`` method."""
    if hasattr(module, "macs_per_sample"):
        return int(module.macs_per_sample())
    out = output.shape[1:] if hasattr(output, "shape") else ()
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return _prod(out) * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.ConvTranspose2d):
        kh, kw = module.kernel_size
        return _prod(inputs[0].shape[1:]) * (module.out_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return _prod(out) * module.in_features
    return 0


@dataclass
class Row:
    name: str
    kind: str
    output_shape: tuple
    params: int
    macs: int


@dataclass
class Summary:
    rows: list = field(default_factory=list)
    input_shape: tuple = ()
    total_params: int = 0
    trainable_params: int = 0
    total_macs: int = 0

    def __str__(self):
        head = ("Layer", "Type", "Output shape", "Params", "Mult-adds")
        body = [(r.name, r.kind, str(tuple(r.output_shape)), f"{r.params:,}", f"{r.macs:,}") for r in self.rows]
        widths = [max(len(x[i]) for x in [head] + body) for i in range(5)]
        line = "-" * (sum(widths) + 8)
        fmt = lambda row: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
        out = [line, fmt(head), line] + [fmt(b) for b in body] + [line]
        out.append(f"Input shape: {tuple(self.input_shape)}")
        out.append(f"Total params: {self.total_params:,} (trainable {self.trainable_params:,})")
        out.append(f"Total mult-adds per sample: {self.total_macs:,} ({self.total_macs / 1e6:.2f} M)")
        return "\n".join(out)


def _is_shape(obj) -> bool:
    return isinstance(obj, (tuple, list)) and all(
        isinstance(d, (int, xp.integer)) and not isinstance(d, bool) for d in obj)


def _example_inputs(input_shape, dtype):
    """The forward's arguments and the shape(s) to report: one random batch for a shape; for a
    sequence of shapes and tensors (a model with several inputs), a random batch per shape and
    each tensor as given (the integer labels of a conditional model)."""
    if _is_shape(input_shape):
        return [randn(*input_shape, dtype=dtype)], tuple(input_shape)
    if not isinstance(input_shape, (tuple, list)) or not input_shape:
        raise TypeError(f"summary: input_shape must be a shape such as (1, 1, 28, 28), or a "
                        f"sequence of shapes and tensors (one per input), got {input_shape!r}")
    inputs = []
    for i, item in enumerate(input_shape):
        if _is_shape(item):
            inputs.append(randn(*item, dtype=dtype))
        elif isinstance(item, Tensor):
            inputs.append(item)
        else:
            raise TypeError(f"summary: input {i} must be a shape (a tuple of ints) or a Tensor, "
                            f"got {type(item).__name__}")
    return inputs, tuple(tuple(x.shape) for x in inputs)


def _output_shape(output) -> tuple:
    """A layer's output shape; for a tuple of results (max pooling with its indices), the
    first's."""
    if hasattr(output, "shape"):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)) and output and hasattr(output[0], "shape"):
        return tuple(output[0].shape)
    return ()


def summary(model, input_shape, dtype=None) -> Summary:
    """Run one forward pass on a random batch of ``input_shape`` (with the batch dimension, e.g.
    (1, 1, 28, 28)) and record every leaf layer. Multiply-adds are per sample.

    A model with several inputs takes a sequence, one entry per input: a shape (a random normal
    batch) or a Tensor used as it is, e.g. a conditional generator's ``((1, 100),
    fv.tensor([3]))``."""
    inputs, shown = _example_inputs(input_shape, dtype or xp.float32)
    rows, handles = [], []
    for name, mod in model.named_modules():
        if next(iter(mod.children()), None) is not None:
            continue  # containers: their layers are listed instead

        def hook(m, inputs, output, name=name):
            own = sum(p.numel() for p in m.parameters(recurse=False))
            rows.append(Row(name or type(m).__name__, type(m).__name__, _output_shape(output),
                            own, layer_macs(m, inputs, output)))
        handles.append(mod.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = list(model.parameters())
    return Summary(rows, shown, sum(p.numel() for p in params),
                   sum(p.numel() for p in params if p.requires_grad), sum(r.macs for r in rows))
