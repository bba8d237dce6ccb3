"""Data augmentation, vectorised over a whole batch and seeded; and the loading transforms that
make images one size before they are batched.

Two kinds of transforms, applied at two places:

- *loading transforms* (``ImageTransform``: ``Resize``, ``CenterCrop``): deterministic, on one
  image at a time (a PIL image or an array (..., H, W)), inside a dataset that reads files
  (``ImageFolder(transform=..., size=...)``), so that images of any size come out one size and
  can be stacked into a batch;
- *batch transforms* (``Transform``: flips, crops, rotations, noise, erasing, ``Normalize``): on
  the float batch (N, C, H, W) after it is stacked, seeded, given to the ``DataLoader``
  (``DataLoader(transform=...)``) or to an in-memory dataset. Augmentation belongs here: one
  vectorised call per batch, and reproducible per batch from the loader's seed.

``Compose`` chains either kind. The rest of this docstring is about batch transforms.

Every transform is called as ``t(batch, rng)``: ``batch`` is a float array (N, C, H, W) (a single
image (C, H, W), or a Tensor, is accepted and given back in the same form) and ``rng`` a NumPy
``Generator`` (or a ``foveanet.Generator``, an int seed, or None for foveanet's global generator),
so the same seed gives the same augmentation. The ``DataLoader`` passes a generator derived from
its own, per batch. Shape and dtype are kept; the input array is never modified.

Random parameters are drawn per image, all at once. Geometric transforms are inverse maps: for
every output pixel, the position it comes from in the input is computed for the whole batch at
once, and the input is sampled there (bilinear or nearest) with index arrays, so there is no
Python loop over images or pixels. Points that come from outside the image take ``fill`` (0).

Conventions: a positive rotation angle turns the image counter-clockwise as displayed (row 0 at
the top), as torchvision does; ``RandomRotation((90, 90))`` equals ``numpy.rot90(x, 1, (-2, -1))``
on square images. A translation by (dy, dx) moves the content down by dy rows and right by dx
columns: ``out[..., i, j] = x[..., i - dy, j - dx]``.

``parse_augment`` builds a pipeline from a command-line string; see its docstring for the names.
``parse_noise`` builds the input corruption of a denoising run (``GaussianNoise`` clipped to
[0, 1], ``SaltPepperNoise``, ``MaskingNoise``); with ``dataset.ReconstructionPairs`` the loader
noises the inputs while the targets stay clean.
"""
from __future__ import annotations

import math
import numbers

from ..autograd import Tensor
from ..backend import xp
from ..random import Generator, numpy_rng

__all__ = ["Transform", "Compose", "RandomHorizontalFlip", "RandomVerticalFlip", "RandomAffine",
           "RandomRotation", "RandomScale", "RandomCrop", "RandomTranslation", "GaussianNoise",
           "Normalize", "RandomErasing", "Lambda", "parse_augment", "AUGMENT_NAMES",
           "ImageTransform", "Resize", "CenterCrop", "SaltPepperNoise", "MaskingNoise",
           "parse_noise", "NOISE_NAMES"]


def as_numpy_rng(rng):
    """A NumPy Generator from ``rng``: a NumPy Generator, a foveanet Generator, an int seed, or
    None (foveanet's global generator)."""
    if rng is None or isinstance(rng, Generator):
        return numpy_rng(rng)
    if isinstance(rng, xp.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return xp.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator, a foveanet.Generator, an int seed or "
                    f"None, not {type(rng).__name__}")


class Transform:
    """Base class: subclasses implement ``apply(x, rng)`` on a float array (N, C, H, W)."""

    needs_image = True  # False: works on arrays of any shape (noise, normalisation)

    def __call__(self, x, rng=None):
        is_tensor = isinstance(x, Tensor)
        arr = x.data if is_tensor else xp.asarray(x)
        single = self.needs_image and arr.ndim == 3
        if single:
            arr = arr[None]
        if self.needs_image and arr.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects a batch of images (N, C, H, W) or one "
                             f"image (C, H, W), got shape {tuple(arr.shape)}")
        if not xp.issubdtype(arr.dtype, xp.floating):
            raise TypeError(f"{type(self).__name__} expects floating-point images (scale uint8 "
                            f"images to [0, 1] first), got dtype {arr.dtype}")
        out = self.apply(arr, as_numpy_rng(rng))
        out = out.astype(arr.dtype, copy=False)
        if single:
            out = out[0]
        return Tensor._wrap(out) if is_tensor else out

    def apply(self, x, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply ``transforms`` one after the other, all drawing from the same generator. Chains
    batch transforms, or loading transforms (``Resize``, ``CenterCrop``), or both."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    @property
    def needs_image(self):
        return any(getattr(t, "needs_image", True) for t in self.transforms)

    def __call__(self, x, rng=None):
        rng = as_numpy_rng(rng)
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __len__(self):
        return len(self.transforms)

    def __repr__(self):
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])" if inner else "Compose([])"


class Lambda(Transform):
    """Wrap a function ``fn(batch, rng) -> batch`` as a transform."""

    needs_image = False

    def __init__(self, fn):
        self.fn = fn

    def apply(self, x, rng):
        return xp.asarray(self.fn(x, rng))


def _check_p(p, name):
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name}: p must be in [0, 1], got {p}")
    return float(p)


# ------------------------------------------------------------------------------------------ flips
class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = _check_p(p, "RandomHorizontalFlip")

    def apply(self, x, rng):
        flip = rng.random(x.shape[0]) < self.p
        return xp.where(flip[:, None, None, None], x[..., ::-1], x)


class RandomVerticalFlip(Transform):
    """Mirror each image top-bottom with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = _check_p(p, "RandomVerticalFlip")

    def apply(self, x, rng):
        flip = rng.random(x.shape[0]) < self.p
        return xp.where(flip[:, None, None, None], x[..., ::-1, :], x)


# ------------------------------------------------------------------------------ the affine sampler
def _gather(xpad, rows, cols):
    """``xpad[n, :, rows[n], cols[n]]`` for index arrays (N, H, W): result (N, C, H, W).

    One ``take`` from the flattened batch with flat indices (faster than fancy indexing)."""
    n, c, hp, wp = xpad.shape
    flat = rows * wp + cols                                   # (N, H, W) within one image plane
    base = (xp.arange(n) * (c * hp * wp))[:, None, None, None] + \
        (xp.arange(c) * (hp * wp))[None, :, None, None]       # (N, C, 1, 1) plane offsets
    return xp.take(xpad.reshape(-1), base + flat[:, None])


def affine_sample(x, inv, shift, mode="bilinear", fill=0.0):
    """Resample a batch through per-image affine maps, all images at once.

    Output pixel (i, j) of image n takes the input at ``inv[n] @ ((i, j) - centre - shift[n]) +
    centre``: ``inv`` (N, 2, 2) is the inverse of the linear part (row, column coordinates) and
    ``shift`` (N, 2) the translation in pixels. Points outside the input read ``fill``.
    """
    n, c, h, w = x.shape
    f = xp.float32
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    inv, shift = inv.astype(f), shift.astype(f)
    dr = (xp.arange(h, dtype=f) - f(cy))[None, :, None] - shift[:, 0, None, None]   # (N, H, 1)
    dc = (xp.arange(w, dtype=f) - f(cx))[None, None, :] - shift[:, 1, None, None]   # (N, 1, W)
    sr = inv[:, 0, 0, None, None] * dr + inv[:, 0, 1, None, None] * dc + f(cy)      # (N, H, W)
    sc = inv[:, 1, 0, None, None] * dr + inv[:, 1, 1, None, None] * dc + f(cx)
    # snap coordinates within rounding error of a pixel centre onto it: exact 90-degree turns
    rr, rc = xp.rint(sr), xp.rint(sc)
    sr = xp.where(xp.abs(sr - rr) < 1e-4, rr, sr)
    sc = xp.where(xp.abs(sc - rc) < 1e-4, rc, sc)
    xpad = xp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=fill)  # a frame of fill
    if mode == "nearest":
        rows = xp.clip(xp.rint(sr), -1, h).astype(xp.intp) + 1
        cols = xp.clip(xp.rint(sc), -1, w).astype(xp.intp) + 1
        return _gather(xpad, rows, cols)
    if mode != "bilinear":
        raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {mode!r}")
    sr, sc = xp.clip(sr, -1, h), xp.clip(sc, -1, w)
    r0, c0 = xp.floor(sr), xp.floor(sc)
    wr, wc = (sr - r0).astype(x.dtype)[:, None], (sc - c0).astype(x.dtype)[:, None]
    r0, c0 = r0.astype(xp.intp) + 1, c0.astype(xp.intp) + 1
    r1, c1 = xp.minimum(r0 + 1, h + 1), xp.minimum(c0 + 1, w + 1)
    top = _gather(xpad, r0, c0) * (1 - wc) + _gather(xpad, r0, c1) * wc
    bottom = _gather(xpad, r1, c0) * (1 - wc) + _gather(xpad, r1, c1) * wc
    return top * (1 - wr) + bottom * wr


def _range(v, name, centre=None, positive=False):
    """(lo, hi) from a number (symmetric around ``centre``, or 0) or a pair."""
    if isinstance(v, numbers.Real):
        if v < 0:
            raise ValueError(f"{name} must be non-negative, got {v}")
        lo, hi = (-v, v) if centre is None else (centre - v, centre + v)
    else:
        lo, hi = (float(a) for a in v)
    if lo > hi or (positive and lo <= 0):
        raise ValueError(f"{name}: bad range {(lo, hi)}" + (" (must be > 0)" if positive else ""))
    return float(lo), float(hi)


class RandomAffine(Transform):
    """A random rotation, translation and scaling per image, resampled in one pass.

    ``degrees``: rotation angle range, a number d meaning (-d, d), or (lo, hi); counter-clockwise
    positive. ``translate``: (fy, fx) maximal shift as fractions of height and width (a number for
    both), or None. ``scale``: (lo, hi) zoom factors (> 1 enlarges), a number s meaning
    (1 - s, 1 + s), or None. ``interpolation``:
    'bilinear' (default) or 'nearest'. ``fill``: value of points from outside the image.
    """

    def __init__(self, degrees=0.0, translate=None, scale=None, interpolation="bilinear", fill=0.0):
        self.degrees = _range(degrees, "degrees")
        if translate is not None:
            translate = (translate, translate) if isinstance(translate, numbers.Real) else tuple(translate)
            if not all(0 <= t <= 1 for t in translate):
                raise ValueError(f"translate fractions must be in [0, 1], got {translate}")
        self.translate = translate
        self.scale = None if scale is None else _range(scale, "scale", centre=1.0, positive=True)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
        self.interpolation = interpolation
        self.fill = float(fill)

    def apply(self, x, rng):
        n, _, h, w = x.shape
        theta = xp.deg2rad(rng.uniform(*self.degrees, size=n))
        s = rng.uniform(*self.scale, size=n) if self.scale is not None else xp.ones(n)
        shift = xp.zeros((n, 2))
        if self.translate is not None:
            shift[:, 0] = xp.rint(rng.uniform(-1, 1, n) * self.translate[0] * h)
            shift[:, 1] = xp.rint(rng.uniform(-1, 1, n) * self.translate[1] * w)
        cos, sin = xp.cos(theta) / s, xp.sin(theta) / s
        inv = xp.stack([xp.stack([cos, sin], -1), xp.stack([-sin, cos], -1)], 1)  # R(theta)^T / s
        return affine_sample(x, inv, shift, self.interpolation, self.fill)


class RandomRotation(RandomAffine):
    """Rotate each image by an angle drawn from ``degrees`` (d means (-d, d)), about its centre."""

    def __init__(self, degrees, interpolation="bilinear", fill=0.0):
        super().__init__(degrees=degrees, interpolation=interpolation, fill=fill)


class RandomScale(RandomAffine):
    """Zoom each image about its centre by a factor drawn from ``scale`` (> 1 enlarges)."""

    def __init__(self, scale=(0.9, 1.1), interpolation="bilinear", fill=0.0):
        super().__init__(degrees=0.0, scale=scale, interpolation=interpolation, fill=fill)


# --------------------------------------------------------------------------- integer-pixel windows
def _window(x, top, left, out_h, out_w, pad, fill):
    """Per image n, the ``out_h`` x ``out_w`` window at (top[n], left[n]) of x padded by ``pad``.

    A strided view of all windows, from which one fancy index picks each image's own: the copy
    is of the chosen windows only."""
    if pad:
        x = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    windows = xp.lib.stride_tricks.sliding_window_view(x, (out_h, out_w), axis=(2, 3))
    return windows[xp.arange(x.shape[0]), :, top, left]  # (N, C, out_h, out_w)


def _pair(v, name):
    if isinstance(v, numbers.Integral):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


class RandomCrop(Transform):
    """Pad each image by ``padding`` pixels of ``fill``, then cut a ``size`` window at a random
    place (per image). ``size``: an int, (h, w), or None for the input's own size (the usual
    "pad 4 and crop back" augmentation, a random shift of up to ``padding`` pixels)."""

    def __init__(self, size=None, padding: int = 0, fill: float = 0.0):
        self.size = None if size is None else _pair(size, "size")
        if not isinstance(padding, numbers.Integral) or padding < 0:
            raise ValueError(f"RandomCrop: padding must be a non-negative int, got {padding!r}")
        self.padding = int(padding)
        self.fill = float(fill)

    def apply(self, x, rng):
        n, _, h, w = x.shape
        oh, ow = (h, w) if self.size is None else self.size
        ph, pw = h + 2 * self.padding, w + 2 * self.padding
        if oh > ph or ow > pw or oh < 1 or ow < 1:
            raise ValueError(f"RandomCrop: crop size {(oh, ow)} does not fit images of size "
                             f"{(h, w)} padded by {self.padding}")
        top = rng.integers(0, ph - oh + 1, size=n)
        left = rng.integers(0, pw - ow + 1, size=n)
        return _window(x, top, left, oh, ow, self.padding, self.fill)


class RandomTranslation(Transform):
    """Shift each image by a whole number of pixels, drawn uniformly from [-max_shift, max_shift]
    per axis (``max_shift``: an int or (rows, columns)); uncovered pixels take ``fill``."""

    def __init__(self, max_shift=2, fill: float = 0.0):
        self.max_shift = _pair(max_shift, "max_shift")
        if min(self.max_shift) < 0:
            raise ValueError(f"max_shift must be non-negative, got {max_shift}")
        self.fill = float(fill)

    def apply(self, x, rng):
        n, _, h, w = x.shape
        my, mx = self.max_shift
        dy = rng.integers(-my, my + 1, size=n)
        dx = rng.integers(-mx, mx + 1, size=n)
        return translate(x, dy, dx, self.fill)


def translate(x, dy, dx, fill=0.0):
    """Shift image n of ``x`` (N, C, H, W) down by dy[n] and right by dx[n] pixels (exact)."""
    n, _, h, w = x.shape
    dy = xp.broadcast_to(xp.asarray(dy, dtype=xp.int64), (n,))
    dx = xp.broadcast_to(xp.asarray(dx, dtype=xp.int64), (n,))
    pad = int(max(xp.abs(dy).max(initial=0), xp.abs(dx).max(initial=0)))
    pad = min(pad, max(h, w))  # a shift past the border gives all fill either way
    dy, dx = xp.clip(dy, -pad, pad), xp.clip(dx, -pad, pad)
    return _window(x, pad - dy, pad - dx, h, w, pad, fill)


# ---------------------------------------------------------------------------------------- values
class GaussianNoise(Transform):
    """Add N(0, std^2) noise to every value; ``clip=(lo, hi)`` clips the result (e.g. (0, 1))."""

    needs_image = False

    def __init__(self, std: float = 0.05, clip=None):
        if std < 0:
            raise ValueError(f"GaussianNoise: std must be non-negative, got {std}")
        self.std = float(std)
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))

    def apply(self, x, rng):
        out = x + rng.standard_normal(x.shape, dtype=xp.float64 if x.dtype == xp.float64
                                      else xp.float32) * x.dtype.type(self.std)
        if self.clip is not None:
            out = xp.clip(out, *self.clip)
        return out


def _uniform(x, rng):
    """Uniform [0, 1) numbers of ``x``'s shape, float32 unless ``x`` is float64 (half the work and
    memory of float64 on float32 batches)."""
    return rng.random(x.shape, dtype=xp.float64 if x.dtype == xp.float64 else xp.float32)


class SaltPepperNoise(Transform):
    """Salt-and-pepper noise: each value independently becomes ``low`` (pepper) with probability
    ``p / 2``, ``high`` (salt) with probability ``p / 2``, and is kept otherwise (one uniform draw
    per value: below p/2 pepper, below p salt). For denoising autoencoders: give it to
    ``DataLoader(transform=...)``, which noises the inputs only."""

    needs_image = False

    def __init__(self, p: float = 0.1, low: float = 0.0, high: float = 1.0):
        self.p = _check_p(p, "SaltPepperNoise")
        self.low, self.high = float(low), float(high)

    def apply(self, x, rng):
        u = _uniform(x, rng)
        half = self.p / 2
        return xp.where(u < half, x.dtype.type(self.low),
                        xp.where(u < self.p, x.dtype.type(self.high), x))


class MaskingNoise(Transform):
    """Masking noise (Vincent et al. 2008's corruption of a denoising autoencoder): each value
    independently set to ``fill`` (0) with probability ``p``, kept otherwise."""

    needs_image = False

    def __init__(self, p: float = 0.25, fill: float = 0.0):
        self.p = _check_p(p, "MaskingNoise")
        self.fill = float(fill)

    def apply(self, x, rng):
        return xp.where(_uniform(x, rng) < self.p, x.dtype.type(self.fill), x)


class Normalize(Transform):
    """``(x - mean) / std`` per channel (scalars: for every value). Not random."""

    needs_image = False

    def __init__(self, mean, std):
        self.mean = tuple(float(m) for m in xp.atleast_1d(mean))
        self.std = tuple(float(s) for s in xp.atleast_1d(std))
        if any(s <= 0 for s in self.std):
            raise ValueError(f"Normalize: std must be positive, got {self.std}")

    def apply(self, x, rng):
        mean = xp.asarray(self.mean, dtype=x.dtype)
        std = xp.asarray(self.std, dtype=x.dtype)
        if mean.size > 1 or std.size > 1:
            if x.ndim < 3 or x.shape[-3] not in (mean.size, std.size):
                raise ValueError(f"Normalize: {max(mean.size, std.size)} channel values for "
                                 f"input of shape {tuple(x.shape)}")
            mean, std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
        return (x - mean) / std


class RandomErasing(Transform):
    """With probability ``p`` per image, set a random rectangle to ``value`` (Zhong et al. 2017).

    The rectangle covers a fraction of the area drawn from ``scale`` with aspect ratio (h / w)
    drawn log-uniformly from ``ratio``. ``value``: a number, or 'random' for N(0, 1) noise.
    Departure from torchvision: instead of retrying until a rectangle fits, a rectangle larger
    than the image is clipped to it (no loop, one draw per image).
    """

    def __init__(self, p: float = 0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0):
        self.p = _check_p(p, "RandomErasing")
        self.scale = _range(scale, "scale")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"RandomErasing: scale is a range of area fractions in (0, 1], got "
                             f"{scale}")
        self.ratio = _range(ratio, "ratio", positive=True)
        if not (isinstance(value, numbers.Real) or value == "random"):
            raise ValueError(f"RandomErasing: value must be a number or 'random', got {value!r}")
        self.value = value

    def apply(self, x, rng):
        n, c, h, w = x.shape
        erase = rng.random(n) < self.p
        area = rng.uniform(*self.scale, size=n) * h * w
        aspect = xp.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), size=n))
        eh = xp.clip(xp.rint(xp.sqrt(area * aspect)), 1, h).astype(xp.int64)
        ew = xp.clip(xp.rint(xp.sqrt(area / aspect)), 1, w).astype(xp.int64)
        top = (rng.random(n) * (h - eh + 1)).astype(xp.int64)
        left = (rng.random(n) * (w - ew + 1)).astype(xp.int64)
        r, cc = xp.arange(h)[None, :, None], xp.arange(w)[None, None, :]
        mask = ((r >= top[:, None, None]) & (r < (top + eh)[:, None, None])
                & (cc >= left[:, None, None]) & (cc < (left + ew)[:, None, None])
                & erase[:, None, None])[:, None]
        if self.value == "random":
            fill = rng.standard_normal(x.shape).astype(x.dtype)
        else:
            fill = x.dtype.type(self.value)
        return xp.where(mask, fill, x)


# ---------------------------------------------------------------------- loading transforms (one image)
def _pil():
    try:
        from PIL import Image  # here, not at import: Pillow is needed for image files only
    except ImportError:  # pragma: no cover - Pillow is in foveanet[train]
        raise ImportError("resizing images needs Pillow: pip install pillow (or "
                          "'foveanet[train]')") from None
    return Image


_RESAMPLING = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def _size_pair(size, name):
    """(h, w) from an int or a pair of positive ints."""
    pair = (size, size) if isinstance(size, numbers.Integral) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                 and v > 0 for v in pair):
        raise ValueError(f"{name}: size must be a positive int or (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])


class ImageTransform:
    """Base of the loading transforms: deterministic, on one image, before batching.

    Called as ``t(img)`` on a PIL image or an array / Tensor (..., H, W) (channels first, as
    everywhere in foveanet; a 2-D array is one grey plane), it gives back the same kind. It also
    takes (and ignores) an ``rng``, so it can sit in a ``Compose``. Subclasses implement
    ``on_pil(img)`` and ``on_array(arr)``.
    """

    def __call__(self, img, rng=None):
        if isinstance(img, Tensor):
            return Tensor._wrap(self.on_array(img.data))
        if isinstance(img, xp.ndarray):
            if img.ndim < 2:
                raise ValueError(f"{type(self).__name__} expects an image (..., H, W), got shape "
                                 f"{tuple(img.shape)}")
            return self.on_array(img)
        if isinstance(img, _pil().Image):
            return self.on_pil(img)
        raise TypeError(f"{type(self).__name__} expects a PIL image, an array or a Tensor, got "
                        f"{type(img).__name__}")

    def on_pil(self, img):  # pragma: no cover - abstract
        raise NotImplementedError

    def on_array(self, arr):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Resize(ImageTransform):
    """Resize an image (torchvision's ``Resize``): ``size`` an int makes the shorter side that
    long, keeping the aspect ratio (the longer side is ``int(size * long / short)``); ``size``
    (h, w) gives exactly that. ``interpolation``: 'bilinear' (default), 'nearest', 'bicubic',
    'lanczos', 'box' or 'hamming', done by Pillow (which filters when it shrinks). Arrays are
    resized plane by plane in float32 and cast back (integers rounded and clipped)."""

    def __init__(self, size, interpolation: str = "bilinear"):
        self.size = int(size) if isinstance(size, numbers.Integral) else _size_pair(size, "Resize")
        if isinstance(self.size, int) and self.size < 1:
            raise ValueError(f"Resize: size must be a positive int or (height, width), got {size!r}")
        if interpolation not in _RESAMPLING:
            raise ValueError(f"Resize: interpolation must be one of {', '.join(_RESAMPLING)}, got "
                             f"{interpolation!r}")
        self.interpolation = interpolation

    def output_size(self, h: int, w: int):
        """(height, width) of the result for an input of ``h`` x ``w``."""
        if not isinstance(self.size, int):
            return self.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.size, int(self.size * long / short)
        return (new_long, new_short) if w <= h else (new_short, new_long)

    def _filter(self):
        return getattr(_pil().Resampling, self.interpolation.upper())

    def on_pil(self, img):
        w, h = img.size
        oh, ow = self.output_size(h, w)
        return img if (oh, ow) == (h, w) else img.resize((ow, oh), self._filter())

    def on_array(self, arr):
        h, w = arr.shape[-2:]
        oh, ow = self.output_size(h, w)
        if (oh, ow) == (h, w):
            return arr
        image, resample = _pil(), self._filter()
        planes = arr.reshape(-1, h, w).astype(xp.float32)
        out = xp.stack([xp.asarray(image.fromarray(p).resize((ow, oh), resample)) for p in planes])
        if xp.issubdtype(arr.dtype, xp.integer):
            info = xp.iinfo(arr.dtype)
            out = xp.clip(xp.rint(out), info.min, info.max)
        return out.astype(arr.dtype).reshape(*arr.shape[:-2], oh, ow)


class CenterCrop(ImageTransform):
    """Cut the central ``size`` (an int, or (h, w)) window of an image (torchvision's
    ``CenterCrop``); an image smaller than that is padded with zeros around it first."""

    def __init__(self, size):
        self.size = _size_pair(size, "CenterCrop")

    def _offsets(self, h, w):
        """(top, left) of the window; negative where the window is larger (torchvision's rule:
        padding (crop - image) // 2 before, the rest after, then the centre's rounding)."""
        ch, cw = self.size
        top = -((ch - h) // 2) if ch > h else int(round((h - ch) / 2.0))
        left = -((cw - w) // 2) if cw > w else int(round((w - cw) / 2.0))
        return top, left

    def on_pil(self, img):
        w, h = img.size
        top, left = self._offsets(h, w)
        ch, cw = self.size
        return img.crop((left, top, left + cw, top + ch))  # Pillow fills outside with zeros

    def on_array(self, arr):
        h, w = arr.shape[-2:]
        top, left = self._offsets(h, w)
        ch, cw = self.size
        pad_t, pad_l = max(0, -top), max(0, -left)
        pad_b, pad_r = max(0, top + ch - h), max(0, left + cw - w)
        if pad_t or pad_l or pad_b or pad_r:
            arr = xp.pad(arr, [(0, 0)] * (arr.ndim - 2) + [(pad_t, pad_b), (pad_l, pad_r)])
            top, left = top + pad_t, left + pad_l
        return arr[..., top:top + ch, left:left + cw]


# ------------------------------------------------------------------------------ the --augment string
AUGMENT_NAMES = {
    "flip": "RandomHorizontalFlip(p=VALUE or 0.5)   (alias: hflip)",
    "vflip": "RandomVerticalFlip(p=VALUE or 0.5)",
    "rotate": "RandomRotation(degrees=VALUE or 10): angle in (-VALUE, VALUE)",
    "scale": "RandomScale: VALUE s gives factors (1-s, 1+s), default 0.1; or LO:HI",
    "affine": "RandomAffine(degrees=D, translate=T, scale=(1-S, 1+S)) from VALUE D:T:S",
    "shift": "RandomTranslation(max_shift=VALUE or 2) in whole pixels   (alias: translate)",
    "crop": "RandomCrop(size=input size, padding=VALUE or 2): pad and crop back",
    "noise": "GaussianNoise(std=VALUE or 0.05)",
    "erase": "RandomErasing(p=VALUE or 0.25)",
    "normalize": "Normalize(mean, std) from VALUE MEAN:STD (no default)",
}
_ALIASES = {"hflip": "flip", "translate": "shift", "rotation": "rotate", "erasing": "erase"}


def _floats(value, name, n_min=1, n_max=1):
    try:
        vals = [float(v) for v in value.split(":")]
    except ValueError:
        raise ValueError(f"--augment: {name}={value!r}: expected a number"
                         + (f" or {n_max} numbers separated by ':'" if n_max > 1 else "")) from None
    if not n_min <= len(vals) <= n_max:
        raise ValueError(f"--augment: {name}={value!r}: expected {n_min} to {n_max} numbers")
    return vals


def parse_augment(spec):
    """Build a ``Compose`` from a command-line string such as ``"flip,rotate=10,crop=2,noise=0.05"``.

    Comma-separated items, each ``NAME`` or ``NAME=VALUE``, applied in the order given. Names (see
    ``AUGMENT_NAMES``): flip (hflip) [=p], vflip [=p], rotate=degrees, scale=s or lo:hi,
    affine=degrees:translate:scale, shift (translate)=pixels, crop=padding, noise=std, erase=p,
    normalize=mean:std. An empty string, 'none' or None gives None (no augmentation).
    """
    if spec is None or not spec.strip() or spec.strip().lower() in ("none", "off", "no"):
        return None
    out = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, value = item.partition("=")
        name = _ALIASES.get(name.strip().lower(), name.strip().lower())
        value = value.strip()
        if name not in AUGMENT_NAMES:
            accepted = "\n  ".join(f"{k}: {v}" for k, v in AUGMENT_NAMES.items())
            raise ValueError(f"--augment: unknown augmentation {name!r}; accepted names:\n  {accepted}")
        v = _floats(value, name, 1, 3 if name == "affine" else 2) if value else None
        if name in ("flip", "vflip", "rotate", "shift", "crop", "noise", "erase") and v and len(v) > 1:
            raise ValueError(f"--augment: {name}={value!r}: expected one number")
        if name == "flip":
            out.append(RandomHorizontalFlip(v[0] if v else 0.5))
        elif name == "vflip":
            out.append(RandomVerticalFlip(v[0] if v else 0.5))
        elif name == "rotate":
            out.append(RandomRotation(v[0] if v else 10.0))
        elif name == "scale":
            s = v or [0.1]
            out.append(RandomScale((1 - s[0], 1 + s[0]) if len(s) == 1 else (s[0], s[1])))
        elif name == "affine":
            d, t, s = ((v or []) + [10.0, 0.1, 0.1][len(v or []):])[:3]
            out.append(RandomAffine(degrees=d, translate=t or None, scale=(1 - s, 1 + s) if s else None))
        elif name == "shift":
            out.append(RandomTranslation(int(v[0]) if v else 2))
        elif name == "crop":
            out.append(RandomCrop(None, padding=int(v[0]) if v else 2))
        elif name == "noise":
            out.append(GaussianNoise(v[0] if v else 0.05))
        elif name == "erase":
            out.append(RandomErasing(v[0] if v else 0.25))
        elif name == "normalize":
            if not v or len(v) != 2:
                raise ValueError("--augment: normalize needs MEAN:STD, e.g. normalize=0.286:0.353")
            out.append(Normalize(v[0], v[1]))
    return Compose(out) if out else None


# ------------------------------------------------------------------------------- the --noise string
NOISE_NAMES = {
    "gaussian": "GaussianNoise(std=VALUE or 0.3, clip=(0, 1))   (alias: gauss)",
    "saltpepper": "SaltPepperNoise(p=VALUE or 0.1): values set to 0 or 1   (alias: sp)",
    "masking": "MaskingNoise(p=VALUE or 0.25): values set to 0   (alias: mask, dropout)",
    "none": "no noise",
}
_NOISE_ALIASES = {"gauss": "gaussian", "normal": "gaussian", "salt-pepper": "saltpepper",
                  "salt_pepper": "saltpepper", "sp": "saltpepper", "mask": "masking",
                  "dropout": "masking"}


def parse_noise(spec):
    """The input corruption of a denoising run from a command-line string: ``"gaussian=0.3"``
    (N(0, 0.3^2) added, clipped to [0, 1]), ``"saltpepper=0.1"``, ``"masking=0.25"`` (see
    ``NOISE_NAMES``; the value may be left out for its default), or ``"none"`` / '' / None (None:
    no noise). One noise per string. Anything else is a ``ValueError`` listing what is
    accepted."""
    if spec is None or not spec.strip() or spec.strip().lower() in ("none", "off", "no"):
        return None
    accepted = "\n  ".join(f"{k}: {v}" for k, v in NOISE_NAMES.items())
    text = spec.strip()
    if "," in text:
        raise ValueError(f"--noise: {spec!r}: give one noise (NAME or NAME=VALUE); accepted:"
                         f"\n  {accepted}")
    name, eq, value = text.partition("=")
    name = name.strip().lower()
    name = _NOISE_ALIASES.get(name, name)
    if name not in NOISE_NAMES or name == "none":
        raise ValueError(f"--noise: unknown noise {name!r}; accepted:\n  {accepted}")
    value = value.strip()
    if eq and not value:
        raise ValueError(f"--noise: {spec!r}: expected a number after '='")
    try:
        v = float(value) if value else None
    except ValueError:
        v = math.nan
    if v is not None and not math.isfinite(v):
        raise ValueError(f"--noise: {spec!r}: expected a (finite) number after '='")
    try:
        if name == "gaussian":
            return GaussianNoise(0.3 if v is None else v, clip=(0.0, 1.0))
        if name == "saltpepper":
            return SaltPepperNoise(0.1 if v is None else v)
        return MaskingNoise(0.25 if v is None else v)
    except ValueError as e:
        raise ValueError(f"--noise: {spec!r}: {e}") from None
