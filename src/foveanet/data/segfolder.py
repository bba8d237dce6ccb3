"""``SegmentationFolder``: the user's own segmentation data, a directory of images and a
directory of masks paired by file name.

::

    photos/a.jpg   photos/b.png   ...        masks/a.png   masks/b.png   ...

    ds = SegmentationFolder("photos", "masks", size=128, classes=["sky", "road", "car"])
    image, mask = ds[0]        # float32 (C, 128, 128) in [0, 1], int64 (128, 128)

Pairing: image ``a.<ext>`` (any of ``IMG_EXTENSIONS``, case-insensitive) goes with mask
``a.png`` (same stem). Both directories are read flat (no sub-folders); names starting with '.'
are skipped. Every image needs a mask and every mask an image; two images with one stem
(``a.jpg`` and ``a.png``) are ambiguous. Each is a ``DatasetError`` naming the file, checked when
the set is made, as are the masks' modes and sizes (from the file headers).

Masks are single-channel PNGs whose pixel values are the class indices: grey ('L', 16-bit 'I;16'
/ 'I', bilevel '1') or palette ('P', where the value is the palette index, not its colour, as in
Pascal VOC). An RGB mask is refused: its colours would have to be mapped to classes first. A mask
must be the size of its image.

``ignore_index`` (default 255, Pascal VOC's "border / don't care" value): mask pixels of this
value come out as **-100**, the value foveanet's ``cross_entropy`` and the segmentation task
ignore by default, so they count neither in the loss nor in the metrics. ``ignore_index=None``
keeps every value as a class.

Classes: ``classes`` (names; ``num_classes`` is then ``len(classes)``, and a mask value at or past
it is an error naming the file when that item is read), else ``num_classes`` is the largest index
(ignore value aside) over all the masks + 1, read once when the set is made, and the names are
``class_0``, ``class_1``, ....

``size``: an int (the shorter side scaled to it, then the centre square cut, as ``ImageFolder``)
or (h, w) (resized to exactly that); the image is resized bilinearly, the mask with nearest
neighbours, so every mask value is one of the file's (no blended labels). ``grayscale``: True
(1 channel), False (3, RGB), None (1 when every image is grey, 3 otherwise).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..autograd import Tensor
from ..backend import xp
from .dataset import Dataset, _index
from .folder import IMG_EXTENSIONS
from .idx import DatasetError
from .transforms import CenterCrop, Resize

__all__ = ["SegmentationFolder", "IGNORE_LABEL", "MASK_MODES"]

IGNORE_LABEL = -100                       # what ignore_index pixels become: cross_entropy's default
MASK_MODES = ("L", "P", "I", "I;16", "1")  # single-channel integer modes
_GREY_MODES = ("L", "LA", "I", "I;16", "1", "F")


def _pil():
    try:
        from PIL import Image  # here, not at import: only image files need Pillow
    except ImportError:  # pragma: no cover - Pillow is in foveanet[train]
        raise ImportError("SegmentationFolder needs Pillow: pip install pillow (or "
                          "'foveanet[train]')") from None
    return Image


def _files(directory: Path, what: str, extensions) -> dict:
    """{stem: path} of the visible files of ``directory`` ending in ``extensions``."""
    if not directory.is_dir():
        raise DatasetError(f"{directory}: not a directory (SegmentationFolder expects a directory "
                           f"of {what})")
    found: dict = {}
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        if not entry.name.lower().endswith(extensions):
            continue
        stem = os.path.splitext(entry.name)[0]
        if stem in found:
            raise DatasetError(f"{directory / entry.name}: two {what} named {stem!r} "
                               f"({found[stem].name} too): which one goes with mask {stem}.png?")
        found[stem] = directory / entry.name
    if not found:
        raise DatasetError(f"{directory}: no {what} ({', '.join(extensions)})")
    return found


class SegmentationFolder(Dataset):
    """Images and their class-index masks from two directories (see the module docstring).

    ``images``, ``masks``: the directories. ``size``: None, an int or (h, w). ``grayscale``:
    None (auto), True or False. ``classes``: the class names, or None. ``ignore_index``: the
    mask value that becomes -100 (ignored), or None.

    ``samples``: the sorted (image path, mask path) pairs; ``classes``, ``num_classes``. Items:
    (image float32 Tensor (C, H, W) in [0, 1], mask int64 Tensor (H, W)). Read file by file: the
    ``DataLoader`` stacks items (give ``size`` when the images are not all one size).
    """

    def __init__(self, images, masks, size=None, grayscale=None, classes=None,
                 ignore_index: int | None = 255):
        if grayscale not in (None, True, False):
            raise ValueError(f"SegmentationFolder: grayscale must be None, True or False, got "
                             f"{grayscale!r}")
        if ignore_index is not None and (not isinstance(ignore_index, int)
                                         or isinstance(ignore_index, bool)):
            raise ValueError(f"SegmentationFolder: ignore_index must be an int or None, got "
                             f"{ignore_index!r}")
        self.images_dir = Path(os.path.expanduser(os.fspath(images)))
        self.masks_dir = Path(os.path.expanduser(os.fspath(masks)))
        self.size = size
        self.ignore_index = ignore_index
        if size is None:
            self._resize = self._crop = None
        else:
            self._resize_image = Resize(size)
            self._resize = Resize(size, interpolation="nearest")
            self._crop = CenterCrop(size)
        image_files = _files(self.images_dir, "images", tuple(e.lower() for e in IMG_EXTENSIONS))
        mask_files = _files(self.masks_dir, "masks", (".png",))
        for stem, path in image_files.items():
            if stem not in mask_files:
                raise DatasetError(f"{path}: no mask for this image (expected "
                                   f"{self.masks_dir / (stem + '.png')})")
        for stem, path in mask_files.items():
            if stem not in image_files:
                raise DatasetError(f"{path}: no image for this mask (expected {stem}.<ext> in "
                                   f"{self.images_dir})")
        self.samples = [(image_files[s], mask_files[s]) for s in sorted(image_files)]
        grey = self._check_headers()
        self.grayscale = grey if grayscale is None else grayscale
        self.mode = "L" if self.grayscale else "RGB"
        if classes is not None:
            self.classes = [str(c) for c in classes]
            if not self.classes:
                raise ValueError("SegmentationFolder: classes is empty")
        else:
            top = max(self._largest(m) for _, m in self.samples)
            self.classes = [f"class_{k}" for k in range(top + 1)]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # ------------------------------------------------------------------------------- checking
    def _check_headers(self) -> bool:
        """Check every mask's mode and size against its image (headers only); True when every
        image is grey."""
        image = _pil()
        grey = True
        for img_path, mask_path in self.samples:
            img_mode, img_size = self._header(image, img_path, "image")
            mask_mode, mask_size = self._header(image, mask_path, "mask")
            grey = grey and img_mode in _GREY_MODES
            if mask_mode not in MASK_MODES:
                raise DatasetError(f"{mask_path}: the mask is a {mask_mode} image; masks must be "
                                   "single-channel PNGs (grey 'L' or palette 'P') whose values are "
                                   "class indices (map an RGB mask's colours to indices first)")
            if mask_size != img_size:
                raise DatasetError(f"{mask_path}: the mask is {mask_size[0]}x{mask_size[1]} but "
                                   f"its image {img_path.name} is {img_size[0]}x{img_size[1]} "
                                   "(width x height): they must be the same size")
        return grey

    @staticmethod
    def _header(image, path, what):
        try:
            with image.open(path) as f:
                return f.mode, f.size
        except (OSError, ValueError, SyntaxError) as e:
            raise DatasetError(f"{path}: cannot read the {what} ({e})") from e

    def _largest(self, mask_path) -> int:
        """The largest class index in a mask file (the ignore value aside), -1 if none."""
        m = self._read_mask(mask_path)
        if self.ignore_index is not None:
            m = m[m != self.ignore_index]
        return int(m.max()) if m.size else -1

    # -------------------------------------------------------------------------------- reading
    def _read_mask(self, path):
        """The mask file's values as an int64 array (H, W), before resizing."""
        image = _pil()
        try:
            with image.open(path) as f:
                if f.mode not in MASK_MODES:
                    raise DatasetError(f"{path}: the mask is a {f.mode} image; masks must be "
                                       "single-channel (grey 'L' or palette 'P')")
                return xp.asarray(f).astype(xp.int64)  # 'P': the palette indices
        except (OSError, ValueError, SyntaxError, image.DecompressionBombError) as e:
            if isinstance(e, DatasetError):
                raise
            raise DatasetError(f"{path}: cannot read the mask ({e})") from e

    def load(self, index):
        """(image float32 (C, H, W) in [0, 1], mask int64 (H, W)) of sample ``index`` as arrays,
        resized, the ignore value mapped to -100."""
        i = _index(index, len(self), "SegmentationFolder")
        img_path, mask_path = self.samples[i]
        image = _pil()
        try:
            with image.open(img_path) as f:
                img = f.convert(self.mode)
        except (OSError, ValueError, SyntaxError, image.DecompressionBombError) as e:
            raise DatasetError(f"{img_path}: cannot read the image ({e})") from e
        mask = self._read_mask(mask_path)
        if mask.shape != (img.size[1], img.size[0]):
            raise DatasetError(f"{mask_path}: the mask is {mask.shape[1]}x{mask.shape[0]} but its "
                               f"image is {img.size[0]}x{img.size[1]}: they must be the same size")
        if self._resize is not None:
            img = self._crop(self._resize_image(img))
            mask = self._crop(self._resize.on_array(mask))  # nearest: the file's values only
        arr = xp.asarray(img, dtype=xp.float32)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        arr *= xp.float32(1 / 255)
        if self.ignore_index is not None:
            ignored = mask == self.ignore_index
        else:
            ignored = xp.zeros(mask.shape, dtype=bool)
        bad = (mask >= self.num_classes) & ~ignored
        if bad.any():
            extra = (f" (or {self.ignore_index}, ignored)" if self.ignore_index is not None else "")
            raise DatasetError(f"{mask_path}: mask value {int(mask[bad].max())} is not a class "
                               f"index 0..{self.num_classes - 1}{extra}")
        mask = xp.where(ignored, IGNORE_LABEL, mask)
        return xp.ascontiguousarray(arr), xp.ascontiguousarray(mask)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):
        """(image float32 Tensor (C, H, W) in [0, 1], mask int64 Tensor (H, W))."""
        img, mask = self.load(index)
        return Tensor._wrap(img), Tensor._wrap(mask)

    def __repr__(self):
        return (f"SegmentationFolder({self.images_dir}, {self.masks_dir}, {len(self)} pairs, "
                f"{self.num_classes} classes, mode={self.mode!r}, size={self.size!r})")
