"""First-layer kernels while a network learns: ``KernelSnapshots`` saves a picture of a
convolution's weights at the epochs you list, and ``kernel_grid`` is the picture itself (the
``TensorBoard`` callback shows the same grid as an image).

::

    trainer = fv.train.Trainer(model, opt, run_dir="runs/lenet", callbacks=[
        fv.train.KernelSnapshots("runs/lenet", epochs=(0, 1, 5, 10))])
    trainer.fit(train_loader, val_loader, epochs=10)
    # runs/lenet/kernels/epoch_000.png (the initial weights), epoch_001.png, epoch_005.png, ...

Why the choices:

- **Layering.** ``train`` sits below ``visual`` (``tests/test_layering.py``), so this module
  cannot call ``foveanet.visual.plot_kernels``. It draws the grid itself with Pillow (a plain
  image, no labels: one tile per filter), and takes ``draw=``: a function ``draw(model, layer,
  path)`` that writes the PNG at ``path``, e.g. ``foveanet.visual.plot_kernels`` itself, which a
  caller above both (the command line) can pass for the labelled matplotlib figure.
- **One normalisation for the whole grid, symmetric around 0.** A weight ``w`` is shown as
  ``0.5 + w / (2 max|W|)``: 0 is mid-grey, positive weights lighter, negative darker, and every
  tile on the same scale, so the tiles can be compared (a per-tile rescaling would hide which
  filters are weak). A colour (RGB) tile, for the first layer of a 3-channel network, uses the
  same scale on each of R, G and B.
- **Layouts** follow ``foveanet.visual.plot_kernels``: a layer with one input channel (a grey
  network's first layer) gives one grey tile per filter, the first layer of an RGB network one
  colour tile per filter, in rows of ``cols``; any other layer one row per output channel and
  one column per input channel (the first 16 of each). Tiles are enlarged by whole pixels
  (nearest neighbour, ``zoom``: by default to about 24 pixels a side) and separated by ``gap``
  pixels of a blue that no weight takes (the gaps never read as weights).
- **Atomic files.** Each PNG is written to a temporary file and renamed into place (through
  ``foveanet.train.io``), so a run killed mid-write leaves the previous picture, never half of
  one.
- Errors are found before the first epoch: a model without a convolution, or a ``layer`` that is
  not one of its convolutions, is a ``ValueError`` at ``on_train_begin`` naming the model (and
  listing its convolutions).
"""
from __future__ import annotations

import io
import math
import numbers
import os
import tempfile

from ..autograd import Tensor
from ..backend import xp
from ..nn import Conv2d
from .callbacks import Callback
from .io import atomic_write_bytes

__all__ = ["KernelSnapshots", "kernel_grid", "grid_png", "conv_layers", "find_conv"]

CONV_TYPES = (Conv2d,)
GAP_COLOUR = (0.435, 0.659, 0.863)  # #6fa8dc, plot_kernels' gap colour: no weight maps to it
TILE_PIXELS = 24  # the default zoom enlarges a kernel's side to about this many pixels
MAX_IMAGE_TILES = 256  # filters shown as images (one tile each)
MAX_GRID = 16  # output channels (rows) and input channels (columns) of a deeper layer's grid


# --------------------------------------------------------------------------------- layers
def conv_layers(model) -> list:
    """``[(name, Conv2d)]``: every 2-D convolution of ``model``, in registration order."""
    return [(n, m) for n, m in model.named_modules() if n and isinstance(m, CONV_TYPES)]


def _describe(module) -> str:
    extra = module.extra_repr().split("\n")[0]
    return f"{type(module).__name__}({extra})" if extra else type(module).__name__


def find_conv(model, layer: str | None = None, who: str = "kernels", label: str | None = None):
    """``(name, module)`` of the convolution ``layer`` of ``model`` (by module name; None: its
    first). ``who`` starts the error messages, ``label`` names the model in them (default: its
    class). A model without a convolution, or a ``layer`` that is not one of its convolutions, is
    a ValueError that lists the convolutions it has."""
    label = label or type(model).__name__
    convs = conv_layers(model)
    if not convs:
        raise ValueError(f"{who}: the model {label} has no convolution layer (nn.Conv2d) whose "
                         f"kernels could be drawn")
    if layer is None:
        return convs[0]
    listed = ", ".join(f"{n} ({_describe(m)})" for n, m in convs)
    for n, m in model.named_modules():
        if n == layer and n:
            if isinstance(m, CONV_TYPES):
                return n, m
            raise ValueError(f"{who}: layer {layer!r} of the model {label} is a {_describe(m)}, "
                             f"not a convolution; its convolution layers: {listed}")
    raise ValueError(f"{who}: the model {label} has no layer {layer!r}; its convolution layers: "
                     f"{listed}")


# ---------------------------------------------------------------------------------- the grid
def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"kernel_grid: {name} must be an int >= {low}, got {value!r}")
    return int(value)


def kernel_grid(weight, rgb: bool | None = None, zoom: int | None = None, cols: int = 8,
                gap: int = 2, max_out: int | None = None, max_in: int = MAX_GRID):
    """A convolution's weights ``(C_out, C_in, kH, kW)`` as one ``(3, H, W)`` float32 image in
    [0, 1] (CHW, what ``SummaryWriter.add_image`` takes), laid out and normalised as the module
    docstring says. ``rgb``: draw each filter as a colour image (needs ``C_in == 3``; default:
    when ``C_in == 3``). ``zoom``: pixels per weight (default: about 24 pixels per tile side);
    ``cols``: tiles per row of the image layout; ``gap``: pixels between tiles; ``max_out``:
    filters shown (default: 256 as images, 16 rows in the grid of a deeper layer); ``max_in``:
    input channels (columns) of that grid."""
    w = xp.asarray(weight.data if isinstance(weight, Tensor) else weight, dtype=xp.float64)
    if w.ndim != 4 or 0 in w.shape:
        raise ValueError(f"kernel_grid: a convolution weight has shape (C_out, C_in, kH, kW), got "
                         f"{tuple(w.shape)}")
    c_out, c_in, kh, kw = w.shape
    rgb = c_in == 3 if rgb is None else bool(rgb)
    if rgb and c_in != 3:
        raise ValueError(f"kernel_grid: colour tiles need 3 input channels, the weight "
                         f"{tuple(w.shape)} has {c_in}")
    if zoom is None:
        zoom = max(1, math.ceil(TILE_PIXELS / max(kh, kw)))
    zoom = _check_int("zoom", zoom, 1)
    cols, gap = _check_int("cols", cols, 1), _check_int("gap", gap, 0)
    max_in = _check_int("max_in", max_in, 1)
    if max_out is not None:
        max_out = _check_int("max_out", max_out, 1)
    m = float(xp.abs(w).max())
    if not math.isfinite(m):
        raise ValueError(f"kernel_grid: the weight {tuple(w.shape)} has NaN or infinite entries")
    scaled = 0.5 + w / (2.0 * m) if m > 0 else xp.full_like(w, 0.5)
    if rgb or c_in == 1:  # one tile per filter
        n = min(c_out, max_out or MAX_IMAGE_TILES)
        tiles = scaled[:n] if rgb else xp.repeat(scaled[:n, :1], 3, axis=1)
        cols = min(cols, n)
        rows = math.ceil(n / cols)
    else:  # one row per output channel, one column per input channel
        rows, cols = min(c_out, max_out or MAX_GRID), min(c_in, max_in)
        tiles = xp.repeat(scaled[:rows, :cols].reshape(rows * cols, 1, kh, kw), 3, axis=1)
    tiles = xp.repeat(xp.repeat(tiles, zoom, axis=2), zoom, axis=3)
    th, tw = kh * zoom, kw * zoom
    grid = xp.empty((3, rows * th + (rows - 1) * gap, cols * tw + (cols - 1) * gap), xp.float32)
    grid[:] = xp.asarray(GAP_COLOUR, dtype=xp.float32)[:, None, None]
    for i in range(tiles.shape[0]):
        r, c = divmod(i, cols)
        grid[:, r * (th + gap):r * (th + gap) + th, c * (tw + gap):c * (tw + gap) + tw] = tiles[i]
    return grid


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("drawing kernels needs Pillow: pip install 'foveanet[train]' (or pass "
                          "draw=foveanet.visual.plot_kernels)") from None
    return Image


def grid_png(grid) -> bytes:
    """A ``(3, H, W)`` image in [0, 1] (``kernel_grid``'s) as PNG bytes; values become
    ``floor(255 v)``, as tensorboardX converts the image it is given."""
    image = _pillow()
    g = xp.asarray(grid, dtype=xp.float32)
    if g.ndim != 3 or g.shape[0] != 3:
        raise ValueError(f"grid_png: an image is (3, H, W), got shape {tuple(g.shape)}")
    hwc = xp.ascontiguousarray((xp.clip(g, 0.0, 1.0) * 255).astype(xp.uint8).transpose(1, 2, 0))
    buf = io.BytesIO()
    image.fromarray(hwc, "RGB").save(buf, format="PNG")
    return buf.getvalue()


# -------------------------------------------------------------------------------- the callback
def _epochs(epochs):
    if isinstance(epochs, str):
        if epochs == "all":
            return None
        raise ValueError(f"KernelSnapshots: epochs must be ints >= 0 or 'all', got {epochs!r}")
    if isinstance(epochs, numbers.Integral) and not isinstance(epochs, bool):
        epochs = (epochs,)
    try:
        items = list(epochs)
    except TypeError:
        raise ValueError(f"KernelSnapshots: epochs must be ints >= 0 or 'all', got "
                         f"{epochs!r}") from None
    for e in items:
        if isinstance(e, bool) or not isinstance(e, numbers.Integral) or e < 0:
            raise ValueError(f"KernelSnapshots: epochs must be ints >= 0 (0: before training), got "
                             f"{e!r} in {epochs!r}")
    if not items:
        raise ValueError("KernelSnapshots: epochs is empty: list at least one epoch")
    return tuple(sorted({int(e) for e in items}))


class KernelSnapshots(Callback):
    """Save a picture of a convolution's kernels as ``run_dir/kernels/epoch_NNN.png`` at the end
    of each epoch in ``epochs`` (1-based; ``0``: before the first epoch, the initial weights;
    ``"all"``: every epoch), each written atomically.

    ``layer``: the convolution's module name (default: the model's first convolution).
    ``model``: with several models (``Trainer(models=...)``), the one to draw (default: the first
    that has a convolution). ``draw``: ``draw(model, layer, path)`` writes the PNG at ``path``
    (e.g. ``foveanet.visual.plot_kernels``); default: ``kernel_grid`` drawn with Pillow.
    ``written`` maps each epoch drawn by this callback to its file. A model without a
    convolution, or a ``layer`` that is not one, is a ValueError at ``on_train_begin``, before
    any training. After a resume, the epochs already done are not drawn again. Rank 0 only.
    """

    order = 50
    rank_zero_only = True

    def __init__(self, run_dir, epochs=(1,), layer: str | None = None, model: str | None = None,
                 draw=None):
        if run_dir is None:
            raise ValueError("KernelSnapshots: a run directory is needed")
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise ValueError(f"KernelSnapshots: layer must be a module name such as '0' or "
                             f"'features.0' (or None: the first convolution), got {layer!r}")
        if model is not None and not isinstance(model, str):
            raise ValueError(f"KernelSnapshots: model must be a model's name, got {model!r}")
        if draw is not None and not callable(draw):
            raise TypeError(f"KernelSnapshots: draw must be a function (model, layer, path), got "
                            f"{type(draw).__name__}")
        if draw is None:
            _pillow()  # a missing Pillow fails here, not after the first epoch
        self.run_dir = os.fspath(run_dir)
        self.folder = os.path.join(self.run_dir, "kernels")
        self.epochs = _epochs(epochs)
        self.layer, self.model_key, self.draw = layer, model, draw
        self.layer_name = None  # the convolution drawn, known from on_train_begin
        self.written: dict = {}

    def path(self, epoch: int) -> str:
        """The file of ``epoch``'s picture."""
        return os.path.join(self.folder, f"epoch_{int(epoch):03d}.png")

    def due(self, epoch: int) -> bool:
        """Whether ``epoch`` (0: before training) is one to draw."""
        return epoch >= 1 if self.epochs is None else epoch in self.epochs

    def _target(self):
        t = self.trainer
        models = t.models
        if self.model_key is not None:
            if self.model_key not in models:
                raise ValueError(f"KernelSnapshots: this Trainer has no model {self.model_key!r}; "
                                 f"its models: {', '.join(models)}")
            names = [self.model_key]
        elif len(models) == 1:
            names = list(models)
        else:
            names = [n for n, m in models.items() if conv_layers(m)] or list(models)
            if not conv_layers(models[names[0]]):
                listed = ", ".join(f"{n} ({type(m).__name__})" for n, m in models.items())
                raise ValueError(f"KernelSnapshots: none of the models {listed} has a convolution "
                                 f"layer (nn.Conv2d) whose kernels could be drawn")
        name = names[0]
        model = models[name]
        cls = type(model).__name__
        if t.single_model:
            label = cls if t.model_name == cls else f"{t.model_name} ({cls})"
        else:
            label = f"{name!r} ({cls})"
        layer, module = find_conv(model, self.layer, "KernelSnapshots", label)
        return model, layer, module

    def on_train_begin(self, logs=None):
        self._model, self.layer_name, self._module = self._target()
        first = conv_layers(self._model)[0][1] is self._module
        self._rgb = first and self._module.weight.shape[1] == 3
        if self.due(0) and self.trainer.epoch == 0:
            self.snapshot(0)

    def on_epoch_end(self, epoch, logs=None):
        if self.due(epoch):
            self.snapshot(epoch)

    def snapshot(self, epoch: int) -> str:
        """Draw the kernels now as ``epoch``'s picture; returns its path."""
        path = self.path(epoch)
        os.makedirs(self.folder, exist_ok=True)
        if self.draw is None:
            data = grid_png(kernel_grid(self._module.weight.data, rgb=self._rgb))
        else:
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".epoch_{int(epoch):03d}.",
                                       suffix=".png")
            os.close(fd)
            try:
                self.draw(self._model, self.layer_name, tmp)
                with open(tmp, "rb") as f:
                    data = f.read()
            finally:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            if not data:
                who = getattr(self.draw, "__name__", repr(self.draw))
                raise RuntimeError(f"KernelSnapshots: draw={who} wrote nothing for epoch {epoch} "
                                   f"(it must write a PNG at the path it is given)")
        atomic_write_bytes(path, data)
        self.written[int(epoch)] = path
        return path
