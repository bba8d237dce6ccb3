"""The convolution arithmetic: how big a convolution's output is, and a picture of why.

Along one axis, an input of ``n`` positions, zero-padded by ``padding`` on both sides, is
covered by a kernel of ``f`` taps spaced ``dilation`` apart (an extent of ``dilation (f - 1) + 1``
positions) moved ``stride`` positions at a time. The number of positions it takes is

    out = floor((n + 2 padding - dilation (f - 1) - 1) / stride) + 1

(PyTorch's formula for ``Conv2d``; ``foveanet.nn.Conv2d`` uses the same). Without padding and
dilation this is the lecture's ``(N - F) / stride + 1``: a 32x32 input and a 5x5 kernel at stride
1 give 28x28; a 7x7 input and a 3x3 kernel give 5x5 at stride 1, 3x3 at stride 2, and at stride 3
``(7 - 3) / 3 + 1 = 2.33``: that stride does not fit (the floor drops the last column, which the
kernel never reaches; ``exact=True`` refuses it). Padding ``(F - 1) / 2`` on each side keeps the
size at stride 1 ("same" padding, ``same_padding``); a kernel wider than the padded input has no
position at all, which is an error naming the numbers.

``plot_sliding_kernel(n, f, stride, padding, out)`` draws the kernel sliding over the padded
input: a strip of its first positions beside the output grid and the formula with the numbers
filled in (a PNG), or every position as a frame of an animation (``out`` ending in ``.gif``,
written with Pillow).
"""
from __future__ import annotations

import io
import os

from .maps import VisualError

__all__ = ["conv_output_size", "same_padding", "fits", "plot_sliding_kernel", "MAX_DRAWN",
           "MAX_FRAMES"]

MAX_DRAWN = 48   # the largest padded input plot_sliding_kernel draws, in cells per side
MAX_FRAMES = 144  # the most positions a GIF shows (the first ones, row by row)


def _int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise VisualError(f"conv_output_size: {name} must be an integer, got {value!r}")
    v = int(value.__index__())
    if v < low:
        raise VisualError(f"conv_output_size: {name} must be >= {low}, got {v}")
    return v


def _geometry(n, f, stride, padding, dilation):
    n, f = _int("n (the input size)", n, 1), _int("f (the kernel size)", f, 1)
    s, p, d = _int("stride", stride, 1), _int("padding", padding, 0), _int("dilation", dilation, 1)
    extent = d * (f - 1) + 1
    padded = n + 2 * p
    if extent > padded:
        dil = f" (dilation {d}: an extent of {extent})" if d > 1 else ""
        raise VisualError(f"the kernel does not fit: a kernel of {f}{dil} is larger than the "
                          f"padded input of {padded} (n={n} + 2 x padding {p}), so it has no "
                          f"position; pad by at least {(extent - n + 1) // 2} or use a smaller "
                          "kernel")
    return n, f, s, p, d, extent, padded


def conv_output_size(n, f, stride=1, padding=0, dilation=1, exact: bool = False) -> int:
    """``floor((n + 2 padding - dilation (f - 1) - 1) / stride) + 1``: the output size along one
    axis. VisualError (a ValueError) when the kernel is larger than the padded input, and with
    ``exact`` when the stride does not fit (``(n + 2p - extent) / stride`` is not an integer:
    the last rows or columns of the padded input would never be reached)."""
    n, f, s, p, d, extent, padded = _geometry(n, f, stride, padding, dilation)
    out = (padded - extent) // s + 1
    left = (padded - extent) % s
    if exact and left:
        raise VisualError(f"stride {s} does not fit: (n + 2p - f) / stride + 1 = ({n} + {2 * p} - "
                          f"{extent}) / {s} + 1 = {(padded - extent) / s + 1:.4g} is not an "
                          f"integer; the last {left} of the {padded} padded positions are never "
                          f"covered (out = {out} with the floor)")
    return out


def fits(n, f, stride=1, padding=0, dilation=1) -> bool:
    """Whether the kernel has a position and the stride covers the padded input exactly."""
    try:
        conv_output_size(n, f, stride, padding, dilation, exact=True)
    except VisualError:
        return False
    return True


def same_padding(f, dilation=1) -> int:
    """The padding that keeps the size at stride 1: ``dilation (f - 1) / 2`` on each side (the
    lecture's ``(F - 1) / 2``); VisualError for an even extent, which no symmetric padding keeps."""
    f, d = _int("f (the kernel size)", f, 1), _int("dilation", dilation, 1)
    total = d * (f - 1)
    if total % 2:
        raise VisualError(f"a kernel of {f} (dilation {d}) needs {total} padding positions in "
                          "all to keep the size: no symmetric padding does (use an odd kernel)")
    return total // 2


# ------------------------------------------------------------------------------ the picture
def _formula(n, f, s, p, d, out) -> str:
    dil = f"{d} x ({f} - 1)" if d > 1 else f"({f} - 1)"
    return (f"out = floor((n + 2p - d(f - 1) - 1) / s) + 1\n"
            f"    = floor(({n} + {2 * p} - {dil} - 1) / {s}) + 1 = {out}")


def _draw_input(ax, n, f, s, p, d, r, c):
    """The padded input (padding hatched, positions no kernel reaches in pink) and the kernel's
    taps at output position (r, c)."""
    from matplotlib.patches import Rectangle
    total = n + 2 * p
    extent = d * (f - 1) + 1
    reached = total - (total - extent) % s
    for i in range(total):
        for j in range(total):
            pad = i < p or j < p or i >= p + n or j >= p + n
            never = i >= reached or j >= reached
            ax.add_patch(Rectangle((j, i), 1, 1, facecolor="#fcc5c0" if never else "#d9d9d9"
                                   if pad else "white", edgecolor="#999999", linewidth=0.5,
                                   hatch="//" if pad else None))
    top, left = r * s, c * s
    for a in range(f):
        for b in range(f):
            ax.add_patch(Rectangle((left + b * d, top + a * d), 1, 1, facecolor="#e6550d",
                                   alpha=0.55, edgecolor="none"))
    ax.add_patch(Rectangle((left, top), extent, extent, fill=False, edgecolor="#a63603",
                           linewidth=2))
    ax.set_xlim(-0.2, total + 0.2)
    ax.set_ylim(total + 0.2, -0.2)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_output(ax, out, done, current, marked=()):
    from matplotlib.patches import Rectangle
    for i in range(out):
        for j in range(out):
            k = i * out + j
            color = ("#e6550d" if k == current else "#fdae6b" if (i, j) in marked
                     else "#9ecae1" if k < done else "white")
            ax.add_patch(Rectangle((j, i), 1, 1, facecolor=color, edgecolor="#555555",
                                   linewidth=0.6))
    ax.set_xlim(-0.2, out + 0.2)
    ax.set_ylim(out + 0.2, -0.2)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_sliding_kernel(n, f, stride=1, padding=0, out="sliding_kernel.png", dilation=1,
                        max_frames: int = 6) -> str:
    """A picture of an ``f`` x ``f`` kernel sliding over an ``n`` x ``n`` input padded by
    ``padding`` (hatched cells), at ``stride``: a PNG strip of its first ``max_frames`` positions
    (the first row, then the last position) beside the output grid and the output size computed
    (``conv_output_size``); with ``out`` ending in ``.gif`` an animation of every position (at
    most ``MAX_FRAMES``) with the output filling in. A stride that does not fit is drawn, its
    uncovered positions noted; a kernel larger than the padded input is a VisualError. Returns
    ``out``."""
    n, f, s, p, d, extent, padded = _geometry(n, f, stride, padding, dilation)
    if padded > MAX_DRAWN:
        raise VisualError(f"plot_sliding_kernel: a padded input of {padded} cells per side is too "
                          f"large to draw (at most {MAX_DRAWN})")
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise VisualError(f"plot_sliding_kernel: max_frames must be a positive integer, got "
                          f"{max_frames!r}")
    size = conv_output_size(n, f, s, p, d)
    left = (padded - extent) % s
    positions = [(r, c) for r in range(size) for c in range(size)]
    note = (f"stride {s} does not fit: the last {left} padded row(s)/column(s) (pink) are never "
            "covered" if left else "the stride fits: every padded position is reached")
    head = (f"{f}x{f} kernel{f' (dilation {d})' if d > 1 else ''} over a {n}x{n} input, "
            f"padding {p}, stride {s}: output {size}x{size}")
    out = os.fspath(out)
    folder = os.path.dirname(out)
    if folder:
        os.makedirs(folder, exist_ok=True)
    from .plots import figure, png_bytes, save_png
    if out.lower().endswith(".gif"):
        from PIL import Image
        frames = []
        for k, (r, c) in enumerate(positions[:MAX_FRAMES]):
            fig = figure(8, 4.4)
            ax_in, ax_out = fig.subplots(1, 2, gridspec_kw={"width_ratios": [padded, max(size, 3)]})
            _draw_input(ax_in, n, f, s, p, d, r, c)
            ax_in.set_title(f"input {n}x{n}, padding {p}: position ({r}, {c})", fontsize=9)
            _draw_output(ax_out, size, k, k)
            ax_out.set_title(f"output {size}x{size}", fontsize=9)
            fig.suptitle(head, fontsize=10)
            fig.text(0.5, 0.02, _formula(n, f, s, p, d, size), ha="center", family="monospace",
                     fontsize=8)
            with Image.open(io.BytesIO(png_bytes(fig, tight=False))) as im:
                frames.append(im.convert("RGB").convert("P", palette=Image.ADAPTIVE))
        from ..train.io import atomic_write_bytes
        buf = io.BytesIO()
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=600,
                       loop=0)
        atomic_write_bytes(out, buf.getvalue())
        return out
    if len(positions) > max_frames:
        first_row = positions[:min(size, max_frames - 1)]
        shown = first_row + [positions[-1]]
    else:
        shown = positions
    cols = len(shown) + 1
    fig = figure(2.3 * cols + 0.5, 3.0)
    axes = fig.subplots(1, cols, squeeze=False)[0]
    for ax, (r, c) in zip(axes[:-1], shown):
        _draw_input(ax, n, f, s, p, d, r, c)
        ax.set_title(f"position ({r}, {c})\n-> out[{r}, {c}]", fontsize=8)
    _draw_output(axes[-1], size, 0, -1, marked=set(shown))
    axes[-1].set_title(f"output {size}x{size}\n(the positions shown)", fontsize=8)
    fig.suptitle(head, fontsize=10)
    fig.text(0.5, 0.0, _formula(n, f, s, p, d, size) + f"\n{note}", ha="center", va="top",
             family="monospace", fontsize=8)
    return save_png(fig, out)
