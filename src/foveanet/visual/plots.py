"""The pictures of ``fv.visual``: each function draws one figure, writes it as a PNG (atomically,
through ``foveanet.train.io``) and returns the path.

- ``plot_kernels(model, layer, out)``: a convolution's weights. A layer with one input channel
  per filter (the first layer of a grey-image network) shows each filter as a grey image, the
  first layer of an RGB network each filter as a colour image; deeper layers show one row per
  output channel and one column per input channel (the first ``max_out`` / ``max_in``), in a
  diverging colormap symmetric around 0, so that a weight's sign reads as its colour. One
  normalisation holds for the whole grid (a colour bar shows it): the grid compares kernels,
  which a per-kernel rescaling would hide.
- ``plot_activations(acts, out)``: one grid of feature maps per layer, titled with the layer's
  name and the maps' shape, each layer with its own colour scale and colour bar.
- ``plot_overlay(image, maps, out)`` (and its two names ``plot_saliency``, ``plot_gradcam``): the
  input, then each map over it in a colormap with transparency ``alpha``.
- ``plot_maximized(images, out)``: the inputs activation maximisation grew, each rescaled to its
  own range (their values have no common scale).

A grid of maps is drawn as one image (a mosaic with blank gaps) rather than one matplotlib axes
per map: 256 kernels are then one ``imshow``, not 256. Figures use matplotlib's object-oriented
API on an Agg canvas (no display, no pyplot state), as ``foveanet.report`` does; matplotlib is
imported only when a picture is drawn.
"""
from __future__ import annotations

import io
import math
import os

from ..backend import xp
from .maps import VisualError, conv_layers, describe_layer, get_layer, kernels

__all__ = ["plot_kernels", "plot_activations", "plot_overlay", "plot_saliency", "plot_gradcam",
           "plot_maximized", "mosaic", "display_image"]

DIVERGING = "RdBu_r"
GAP = {"gray": "#6fa8dc", DIVERGING: "#8c8c8c"}  # gaps unlike any value of the colormap
MAPS_CMAP = "viridis"
OVERLAY_CMAP = "jet"


# ------------------------------------------------------------------------------ helpers
def figure(w, h, layout=None):
    """A matplotlib Figure on an Agg canvas (``w`` x ``h`` inches, 100 dpi)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig, tight: bool = True) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight" if tight else None)
    return buf.getvalue()


def save_png(fig, out) -> str:
    """Write ``fig`` as the PNG ``out`` (its directory made when missing); returns the path."""
    from ..train.io import atomic_write_bytes
    out = os.fspath(out)
    folder = os.path.dirname(out)
    if folder:
        os.makedirs(folder, exist_ok=True)
    atomic_write_bytes(out, png_bytes(fig))
    return out


def mosaic(maps, cols: int, gap: int = 1, fill=float("nan")):
    """``maps`` (K, h, w) or (K, h, w, 3) laid out in rows of ``cols``, ``gap`` pixels of
    ``fill`` between them (NaN: drawn blank): one array to draw with one ``imshow``."""
    maps = xp.asarray(maps, dtype=xp.float64)
    k, h, w = maps.shape[:3]
    cols = max(1, min(cols, k))
    rows = math.ceil(k / cols)
    shape = (rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap) + maps.shape[3:]
    grid = xp.full(shape, fill, dtype=xp.float64)
    for i in range(k):
        r, c = divmod(i, cols)
        grid[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = maps[i]
    return grid


def _cmap(name, bad="white"):
    import matplotlib
    return matplotlib.colormaps[name].with_extremes(bad=bad)


def _no_ticks(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def display_image(image):
    """``(H, W)`` grey or ``(H, W, 3)`` RGB in [0, 1] from an input (C, H, W) (or (H, W)):
    values already in [0, 1] are kept, others rescaled from their minimum and maximum."""
    img = xp.asarray(image, dtype=xp.float64)
    if img.ndim == 3 and img.shape[0] == 1:
        img = img[0]
    elif img.ndim == 3 and img.shape[0] == 3:
        img = img.transpose(1, 2, 0)
    elif img.ndim == 3:
        img = img.mean(axis=0)  # any other channel count: their mean, in grey
    if img.ndim not in (2, 3):
        raise VisualError(f"an image is (C, H, W) or (H, W), got shape {tuple(img.shape)}")
    lo, hi = float(img.min()), float(img.max())
    if lo < 0 or hi > 1:
        img = (img - lo) / (hi - lo) if hi > lo else xp.zeros_like(img)
    return img


def _show_image(ax, image):
    img = display_image(image)
    if img.ndim == 2:
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(img, interpolation="nearest")
    _no_ticks(ax)


# ------------------------------------------------------------------------------ kernels
def plot_kernels(model, layer: str | None = None, out="kernels.png", max_out: int | None = None,
                 max_in: int = 16, title: str | None = None) -> str:
    """The weights of the convolution ``layer`` (default: the first), drawn as the module
    docstring says, titled with the layer's name, its module and weight shape; returns ``out``.
    ``max_out`` filters are shown (default: 64 as images, 16 rows in the grid of a deeper
    layer), with ``max_in`` input channels each in the grid."""
    w = kernels(model, layer)
    if layer is None:
        layer = conv_layers(model)[0][0]
    module = get_layer(model, layer)
    first = conv_layers(model)[0][0] == layer
    c_out, c_in, kh, kw = w.shape
    as_images = c_in == 1 or (c_in == 3 and first)
    shown_out = min(c_out, max_out or (64 if as_images else 16))
    head = title or f"{layer}: {describe_layer(module)}\nweight {tuple(w.shape)}"
    if as_images:
        k = w[:shown_out, :, :, :].astype(xp.float64)
        lo, hi = float(w.min()), float(w.max())
        if hi <= lo:
            hi = lo + 1
        cols = min(8, shown_out)
        if c_in == 1:
            grid = mosaic(k[:, 0], cols)
            what = "grey images"
        else:
            grid = mosaic(((k - lo) / (hi - lo)).transpose(0, 2, 3, 1), cols, fill=1.0)
            what = "RGB images"
        rows = math.ceil(shown_out / cols)
        fig = figure(max(3.5, 0.9 * cols + 1.6), max(2.6, 0.9 * rows + 1.2))
        ax = fig.subplots()
        if c_in == 1:
            im = ax.imshow(grid, cmap=_cmap("gray", GAP["gray"]), vmin=lo, vmax=hi,
                           interpolation="nearest")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="weight")
        else:
            ax.imshow(grid, interpolation="nearest")
            from matplotlib.cm import ScalarMappable
            from matplotlib.colors import Normalize
            sm = ScalarMappable(norm=Normalize(lo, hi), cmap="gray")
            fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.04, label="weight (each of R, G, B)")
        _no_ticks(ax)
        note = f", first {shown_out} of {c_out}" if shown_out < c_out else ""
        ax.set_title(f"{head}\n{shown_out} filters as {what}{note}", fontsize=9)
        return save_png(fig, out)
    shown_in = min(c_in, max_in)
    k = w[:shown_out, :shown_in].astype(xp.float64)  # (rows, cols, kh, kw)
    m = float(xp.abs(w).max()) or 1.0
    gap = 1
    grid = mosaic(k.reshape(shown_out * shown_in, kh, kw), shown_in, gap)
    fig = figure(max(4.0, 0.35 * shown_in * max(kw, 3) / 3 + 2.0),
                 max(3.0, 0.35 * shown_out * max(kh, 3) / 3 + 1.4))
    ax = fig.subplots()
    im = ax.imshow(grid, cmap=_cmap(DIVERGING, GAP[DIVERGING]), vmin=-m, vmax=m,
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="weight (symmetric around 0)")
    step_r, step_c = kh + gap, kw + gap
    ax.set_xticks([c * step_c + (kw - 1) / 2 for c in range(shown_in)])
    ax.set_xticklabels([str(c) for c in range(shown_in)], fontsize=6)
    ax.set_yticks([r * step_r + (kh - 1) / 2 for r in range(shown_out)])
    ax.set_yticklabels([str(r) for r in range(shown_out)], fontsize=6)
    ax.tick_params(length=0)
    cut_in = f" (first {shown_in} of {c_in})" if shown_in < c_in else ""
    cut_out = f" (first {shown_out} of {c_out})" if shown_out < c_out else ""
    ax.set_xlabel(f"input channel{cut_in}", fontsize=8)
    ax.set_ylabel(f"output channel{cut_out}", fontsize=8)
    ax.set_title(head, fontsize=9)
    return save_png(fig, out)


# --------------------------------------------------------------------------- activations
def plot_activations(acts: dict, out="activations.png", max_channels: int = 16, cols: int = 8,
                     model=None, title: str | None = None) -> str:
    """One grid per layer of ``acts`` (``activations``' ``{name: (C, H, W)}``): the first
    ``max_channels`` maps in rows of ``cols``, titled with the layer's name, its module (when
    ``model`` is given) and the maps' shape; returns ``out``."""
    if not acts:
        raise VisualError("plot_activations: no layer to draw")
    layout = []
    for name, maps in acts.items():
        maps = xp.asarray(maps)
        if maps.ndim != 3:
            raise VisualError(f"plot_activations: layer {name!r} has maps of shape "
                              f"{tuple(maps.shape)}, expected (C, H, W)")
        k = min(maps.shape[0], max_channels)
        c = min(cols, k)
        layout.append((name, maps, k, c, math.ceil(k / c)))
    heights = [max(1.0, r * 1.0) + 0.6 for *_, r in layout]
    fig = figure(max(6.0, 1.0 * max(c for *_, c, _ in layout) + 2.0), sum(heights) + 0.5)
    axes = fig.subplots(len(layout), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (name, maps, k, c, _) in zip(axes[:, 0], layout):
        shown = maps[:k].astype(xp.float64)
        lo, hi = float(shown.min()), float(shown.max())
        im = ax.imshow(mosaic(shown, c), cmap=_cmap(MAPS_CMAP), vmin=lo, vmax=hi if hi > lo
                       else lo + 1, interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        _no_ticks(ax)
        kind = ""
        if model is not None:
            try:
                kind = f" {describe_layer(get_layer(model, name))}"
            except VisualError:
                kind = ""
        note = f", first {k} of {maps.shape[0]} channels" if k < maps.shape[0] else ""
        ax.set_title(f"{name}:{kind} -> {tuple(maps.shape)}{note}", fontsize=9)
    if title:
        fig.suptitle(title)
    return save_png(fig, out)


# ------------------------------------------------------------------------------- overlays
def plot_overlay(image, maps: dict, out="overlay.png", title: str | None = None,
                 alpha: float = 0.5, cmap: str = OVERLAY_CMAP) -> str:
    """The input ``image`` (C, H, W), then each map of ``maps`` (``{caption: (H, W)}``) drawn
    over it in ``cmap`` with transparency ``alpha``, scaled to [0, its maximum] with a colour
    bar; returns ``out``."""
    if not maps:
        raise VisualError("plot_overlay: no map to draw")
    if not 0 <= alpha <= 1:
        raise VisualError(f"plot_overlay: alpha must be in [0, 1], got {alpha!r}")
    img = display_image(image)
    n = len(maps) + 1
    fig = figure(3.2 * n + 0.5, 3.6)
    axes = fig.subplots(1, n, squeeze=False)[0]
    _show_image(axes[0], image)
    axes[0].set_title("input", fontsize=9)
    for ax, (caption, m) in zip(axes[1:], maps.items()):
        m = xp.asarray(m, dtype=xp.float64)
        if m.shape != img.shape[:2]:
            raise VisualError(f"plot_overlay: map {caption!r} has shape {tuple(m.shape)}, the "
                              f"image {img.shape[:2]}")
        _show_image(ax, image)
        top = float(m.max())
        im = ax.imshow(m, cmap=cmap, alpha=alpha, vmin=0, vmax=top if top > 0 else 1,
                       interpolation="bilinear")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(caption, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_png(fig, out)


def plot_saliency(image, saliency_map, out="saliency.png", smoothgrad_map=None,
                  title: str | None = None, alpha: float = 0.6) -> str:
    """``plot_overlay`` of a saliency map (and a SmoothGrad map) over the input."""
    maps = {"saliency |d score / d x|": saliency_map}
    if smoothgrad_map is not None:
        maps["SmoothGrad"] = smoothgrad_map
    return plot_overlay(image, maps, out, title=title, alpha=alpha, cmap="inferno")


def plot_gradcam(image, cam, out="gradcam.png", layer: str | None = None,
                 title: str | None = None, alpha: float = 0.5) -> str:
    """``plot_overlay`` of a Grad-CAM map over the input."""
    caption = f"Grad-CAM at {layer}" if layer else "Grad-CAM"
    return plot_overlay(image, {caption: cam}, out, title=title, alpha=alpha, cmap=OVERLAY_CMAP)


# ------------------------------------------------------------------------- maximisation
def plot_maximized(images, out="maximized.png", titles=None, title: str | None = None,
                   cols: int = 8) -> str:
    """A grid of inputs (K, C, H, W) from ``maximize``, each rescaled to its own range, titled
    by ``titles``; returns ``out``."""
    images = xp.asarray(images)
    if images.ndim != 4 or images.shape[0] < 1:
        raise VisualError(f"plot_maximized: expected images (K, C, H, W), got shape "
                          f"{tuple(images.shape)}")
    k = images.shape[0]
    titles = list(titles) if titles is not None else [str(i) for i in range(k)]
    if len(titles) != k:
        raise VisualError(f"plot_maximized: {len(titles)} titles for {k} images")
    c = min(cols, k)
    rows = math.ceil(k / c)
    fig = figure(1.7 * c + 0.4, 1.9 * rows + (0.5 if title else 0.1))
    axes = fig.subplots(rows, c, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.axis("off")
            continue
        img = images[i].astype(xp.float64)
        lo, hi = float(img.min()), float(img.max())
        _show_image(ax, (img - lo) / (hi - lo) if hi > lo else xp.zeros_like(img))
        ax.set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_png(fig, out)
