"""``ImageFolder``: a directory of images, one sub-folder per class (torchvision's ``ImageFolder``).

::

    root/cat/001.png
    root/cat/kitten/002.jpg      (sub-folders of a class folder count for that class)
    root/dog/003.bmp

Classes are the sorted names of the sub-folders of ``root`` (``.classes``, ``.class_to_idx``);
``.samples`` is the sorted list of (path, class index) of the files whose extension is one of
``extensions`` (case-insensitive). Departure from torchvision: folders and files whose names
start with '.' are skipped (``.ipynb_checkpoints`` is not a class).

Images are read with Pillow when an item is asked for, converted to ``mode`` ('RGB', or 'L' for
grey), then passed through the loading transforms: ``transform`` (``Resize``, ``CenterCrop``, a
``Compose`` of them, or any callable on a PIL image), then ``size`` (``Resize(size)`` followed by
``CenterCrop(size)``: the shorter side scaled to ``size``, the centre cut out). An item is
(float32 Tensor (C, H, W) in [0, 1], int label), as MNIST's and CIFAR's are, so the
``DataLoader`` stacks items into batches; its ``transform`` then augments the whole batch.
Images of different sizes need ``size`` (or a transform that makes them one size) to be
batched. The batch transforms of ``foveanet.data.transforms`` (flips, noise, ...) are refused as
``transform`` here: they belong to the loader.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..autograd import Tensor
from ..backend import xp
from .dataset import Dataset
from .idx import DatasetError
from .transforms import CenterCrop, Compose, Resize, Transform

__all__ = ["ImageFolder", "IMG_EXTENSIONS"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_CHANNELS = {"RGB": 3, "L": 1}


def _pil():
    try:
        from PIL import Image  # here, not at import: only image folders need Pillow
    except ImportError:  # pragma: no cover - Pillow is in foveanet[train]
        raise ImportError("ImageFolder needs Pillow: pip install pillow (or 'foveanet[train]')") \
            from None
    return Image


def _check_loading(transform):
    """Refuse batch transforms (``Transform``s other than a ``Compose`` of loading ones)."""
    if isinstance(transform, Compose):
        for t in transform.transforms:
            _check_loading(t)
    elif isinstance(transform, Transform):
        raise TypeError(f"ImageFolder(transform=...) takes loading transforms (Resize, CenterCrop, "
                        f"or a callable on a PIL image); {type(transform).__name__} is a batch "
                        "transform: give it to DataLoader(transform=...)")


def _visible(name: str) -> bool:
    return not name.startswith(".")


class ImageFolder(Dataset):
    """The images under ``root``, one sub-folder per class (see the module docstring).

    ``transform``: loading transforms applied to each PIL image; ``target_transform``: applied to
    each label; ``size``: an int or (h, w), shorthand for a final ``Resize(size)`` then
    ``CenterCrop(size)``; ``mode``: 'RGB' (3 channels) or 'L' (1); ``extensions``: the file
    endings taken as images. Raises ``DatasetError`` when ``root`` has no class folder or a class
    folder has no image, and when a file cannot be read as an image (naming it).
    """

    def __init__(self, root, transform=None, target_transform=None, size=None, mode: str = "RGB",
                 extensions=IMG_EXTENSIONS):
        if mode not in _CHANNELS:
            raise ValueError(f"ImageFolder: mode must be 'RGB' or 'L', got {mode!r}")
        _check_loading(transform)
        self.root = Path(os.path.expanduser(os.fspath(root)))
        self.transform = transform
        self.target_transform = target_transform
        self.mode = mode
        self.size = size
        self._fit = None if size is None else Compose([Resize(size), CenterCrop(size)])
        self._out_size = None if size is None else self._fit.transforms[1].size  # (h, w)
        self.extensions = tuple(e.lower() for e in extensions)
        self.classes, self.class_to_idx = self.find_classes(self.root)
        self.samples = self.make_dataset(self.root, self.class_to_idx, self.extensions)
        self.imgs = self.samples  # torchvision's other name for them
        self.targets = xp.asarray([label for _, label in self.samples], dtype=xp.int64)

    @staticmethod
    def find_classes(root: Path):
        """(sorted class names, {name: index}) of the sub-folders of ``root``."""
        if not root.is_dir():
            raise DatasetError(f"{root}: not a directory (ImageFolder expects a directory with one "
                               "sub-folder of images per class)")
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and _visible(e.name))
        if not classes:
            raise DatasetError(f"{root}: no class folders (ImageFolder expects one sub-folder of "
                               f"images per class, e.g. {root / 'cat' / '001.png'})")
        return classes, {c: i for i, c in enumerate(classes)}

    @staticmethod
    def make_dataset(root: Path, class_to_idx: dict, extensions):
        """[(path, class index)] of the image files in every class folder, sorted."""
        samples, empty = [], []
        for name, label in sorted(class_to_idx.items(), key=lambda kv: kv[1]):
            found = []
            for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if _visible(d))
                found += [(os.path.join(dirpath, f), label) for f in sorted(filenames)
                          if _visible(f) and f.lower().endswith(extensions)]
            if not found:
                empty.append(name)
            samples += found
        if empty:
            raise DatasetError(f"{root}: no images ({', '.join(extensions)}) in the class "
                               f"folder{'s' if len(empty) > 1 else ''} {', '.join(empty)}")
        return samples

    # ---------------------------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index):
        """The image of sample ``index`` as a PIL image in ``mode``, before any transform."""
        path = self.samples[index][0]
        image = _pil()
        try:
            with image.open(path) as img:
                return img.convert(self.mode)  # reads the pixels: a damaged file fails here
        except (OSError, ValueError, SyntaxError, image.DecompressionBombError) as e:
            raise DatasetError(f"{path}: cannot read the image ({e})") from e

    def __getitem__(self, index):
        """(image, label): the image a float32 Tensor (C, H, W) in [0, 1] after the loading
        transforms, the label an int (after ``target_transform``)."""
        n = len(self)
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for ImageFolder of length {n}")
        img = self.load(i)
        if self.transform is not None:
            img = self.transform(img)
        if self._fit is not None:
            img = self._fit(img)
        label = self.samples[i][1]
        if self.target_transform is not None:
            label = self.target_transform(label)
        return Tensor._wrap(self._to_float(img, self.samples[i][0])), label

    @staticmethod
    def _to_float(img, path):
        """float32 (C, H, W): uint8 values scaled to [0, 1], floats kept as they are."""
        if isinstance(img, Tensor):
            arr = img.data
        elif isinstance(img, xp.ndarray):
            arr = img
        else:  # a PIL image: (H, W) or (H, W, C)
            arr = xp.asarray(img)
            arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise DatasetError(f"{path}: the transform gave an image of shape {tuple(arr.shape)}, "
                               "expected (C, H, W)")
        if xp.issubdtype(arr.dtype, xp.floating):
            return xp.ascontiguousarray(arr, dtype=xp.float32)
        out = arr.astype(xp.float32)
        out *= xp.float32(1 / 255)
        return out

    def sample_shape(self):
        """(C, H, W) of the items. Without ``size`` or ``transform``, every image's header is read
        to check that they are all one size (a ``DatasetError`` naming two that differ, if not)."""
        channels = _CHANNELS[self.mode]
        if self._out_size is not None:
            return (channels, *self._out_size)
        if self.transform is not None:
            return tuple(self[0][0].shape)
        image, first = _pil(), None
        for path, _ in self.samples:
            try:
                with image.open(path) as img:
                    w, h = img.size  # the header only: no pixels decoded
            except (OSError, ValueError, SyntaxError) as e:
                raise DatasetError(f"{path}: cannot read the image ({e})") from e
            if first is None:
                first = (path, h, w)
            elif (h, w) != first[1:]:
                raise DatasetError(f"{self.root}: the images are not all one size ({first[0]} is "
                                   f"{first[2]}x{first[1]}, {path} is {w}x{h}): give a size "
                                   "(ImageFolder(size=...)) to resize and crop them to one")
        return channels, first[1], first[2]

    def class_counts(self):
        return xp.bincount(self.targets, minlength=len(self.classes))

    def __repr__(self):
        return (f"ImageFolder({self.root}, {len(self)} images in {len(self.classes)} classes, "
                f"mode={self.mode!r}, size={self.size!r})")
