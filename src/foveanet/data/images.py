"""Picture files as model inputs: what ``foveanet predict`` does to a PNG or JPEG.

``prepare_image(path, in_channels, size, invert)`` reads the file with Pillow (the ``train``
extra), applies its EXIF orientation, puts a transparent picture on white, converts it to grey
(1 channel) or RGB (3), pads it to a square with the median colour of its border (so the aspect
ratio is kept and the padding is invisible), resizes it with Lanczos and scales it to [0, 1].

The training images of Fashion-MNIST and MNIST are light objects on a black background; a photo
is usually a dark object on a light one. ``invert='auto'`` inverts a picture whose border is
lighter than mid-grey, so the model sees what it was trained on.
"""
from __future__ import annotations

import os

from ..backend import xp
from .idx import DatasetError

__all__ = ["prepare_image", "ImageError", "INVERT_MODES"]

INVERT_MODES = ("auto", "always", "never")


class ImageError(DatasetError):
    """A picture file that cannot be read, or that does not fit the model. ``path`` is the file."""

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)


def prepare_image(path, in_channels: int = 1, size: int = 28, invert: str = "auto"):
    """``(x, inverted)``: the picture file ``path`` as a model input, float32 ``(in_channels,
    size, size)`` in [0, 1], and whether it was inverted. ``invert``: ``'always'``, ``'never'``,
    or ``'auto'`` (invert when the median of the border is lighter than mid-grey: a dark object
    on a light background). Raises ImageError naming the file when it is missing or not a
    picture."""
    if invert not in INVERT_MODES:
        raise ValueError(f"invert must be one of {', '.join(INVERT_MODES)}, got {invert!r}")
    if in_channels not in (1, 3):
        raise ImageError(f"{path}: the model takes {in_channels} channels; pictures give 1 (grey) "
                         "or 3 (RGB)", path)
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            im = im.convert("L" if in_channels == 1 else "RGB")
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file", path) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"{path}: cannot read the picture ({exc})", path) from None
    arr = xp.asarray(im, dtype=xp.float32)
    grey = arr if arr.ndim == 2 else arr.mean(axis=2)
    border = xp.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    w, h = im.size
    if w != h:
        side = max(w, h)
        edge = xp.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
        fill = tuple(int(v) for v in xp.median(edge.reshape(-1, 1 if arr.ndim == 2 else 3), axis=0))
        square = Image.new(im.mode, (side, side), fill[0] if im.mode == "L" else fill)
        square.paste(im, ((side - w) // 2, (side - h) // 2))
        im = square
    im = im.resize((size, size), Image.LANCZOS)
    x = xp.asarray(im, dtype=xp.float32) / xp.float32(255)
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    inverted = invert == "always" or (invert == "auto" and float(xp.median(border)) > 127.5)
    if inverted:
        x = 1 - x
    return x.astype(xp.float32), inverted
