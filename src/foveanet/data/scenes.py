"""``FashionScenes``: a semantic-segmentation data set made offline, and reproducibly, from
Fashion-MNIST: a few clothes pasted on a black canvas, with a mask of which class each pixel shows.

::

    from foveanet.data import FashionScenes, DataLoader

    train = FashionScenes("train")                   # 10,000 scenes of 64x64, 1 to 4 items each
    image, mask = train[0]                           # float32 (1, 64, 64) in [0, 1], int64 (64, 64)
    weights = 1 / train.class_frequencies()          # pixel share of each class: class weights
    for x, y in DataLoader(train, batch_size=32):    # y: (32, 64, 64), 0 = background, 1..10
        ...

Why a made-up set: a segmentation network (SegNet, a U-Net) needs images with a label per pixel,
and the real ones (Pascal VOC, Cityscapes) are large downloads that a lecture machine does not
have. Pasting Fashion-MNIST items gives a set with the same structure (several objects of known
classes per image, overlaps, a dominant background) that trains in minutes on a CPU, from files
foveanet already finds (or from any 28x28 items, ``source=``, which is how the tests run).

The construction (``FashionScenes.describe()`` says it with the numbers of a split):

1. **Splits draw from disjoint images.** 'train' scenes take their items from Fashion-MNIST
   training images 0..49,999, 'val' from training images 50,000..59,999, 'test' from the 10,000
   test images. (A ``source`` of M items stands for the file the split reads: 'train' takes its
   first ``M * 5 // 6`` items, 'val' the rest, 'test' all of them; give the test split its own
   source.) Default counts: train 10,000, val 1,000, test 2,000 (``count=`` overrides).
2. **Scene i is its own random stream**: ``numpy.random.default_rng([seed, split_code, i])``
   (split codes train 0, val 1, test 2) draws the number of items k, uniform in ``objects``
   (inclusive), then k rows (source image, top, left): an image uniform in the split's range
   (with replacement), a position uniform among those that keep the 28x28 item fully inside the
   ``size`` x ``size`` canvas. So a scene does not depend on ``count``, on the other scenes, or on
   the order scenes are read in; only the layouts (a few integers per scene) are drawn up front,
   the pixels are drawn when a batch is asked for (vectorised over the batch).
3. **Items are drawn in order, each over the ones before.** An item's *mask* is its pixels whose
   intensity (scaled to [0, 1]) is above ``threshold`` (0.2). Where its mask is on, the item
   replaces the image and the label (its Fashion-MNIST class + 1), so overlaps are resolved by
   drawing order: the later item is in front. Where its mask is off, the item changes nothing over
   an earlier item's mask; over background it leaves its faint edge, ``max(image, value)`` (a
   value at most ``threshold``), so the clothes keep their soft outlines.

The rule that results, which the tests check: **a pixel's label is not 0 exactly where its
intensity is above the threshold**, and then it is the class of the last item whose mask covers
it (and the intensity is that item's). Pixels at or below the threshold are background, also
inside an item (Fashion-MNIST's dark patterns and gaps are holes in its mask). The comparison is
made on the float32 intensities the images hold (a byte ``v`` is ``float32(v) * float32(1/255)``),
so the rule holds exactly on the images handed out.

Classes (``CLASSES``, ``num_classes`` 11): 0 'background', then Fashion-MNIST's ten in order
(1 'T-shirt/top' ... 10 'Ankle boot'). Items: (image float32 Tensor (1, size, size) in [0, 1],
mask int64 Tensor (size, size)); the ``DataLoader`` takes whole batches (``get_batch``). A
loader ``transform`` changes the images only (noise for denoising; geometric augmentation would
need the same map on the masks, which the loader's transforms do not do).
"""
from __future__ import annotations

import numbers

from ..autograd import Tensor
from ..backend import xp
from .dataset import Dataset, _index
from .sources import FashionMNIST

__all__ = ["FashionScenes", "CLASSES", "SPLITS", "DEFAULT_COUNTS", "THRESHOLD"]

CLASSES = ("background", *FashionMNIST.classes)
SPLITS = {"train": 0, "val": 1, "test": 2}          # the split codes seeded into each scene
DEFAULT_COUNTS = {"train": 10000, "val": 1000, "test": 2000}
THRESHOLD = 0.2
ITEM = 28            # the items' side, Fashion-MNIST's
_CHUNK = 256         # scenes rendered at a time by class_frequencies


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _objects(objects):
    """(lo, hi) from an int n (exactly n items) or a pair of ints 1 <= lo <= hi."""
    if _is_int(objects):
        objects = (objects, objects)
    try:
        lo, hi = objects
    except (TypeError, ValueError):
        raise ValueError(f"FashionScenes: objects must be an int or a (min, max) pair, got "
                         f"{objects!r}") from None
    if not (_is_int(lo) and _is_int(hi) and 1 <= lo <= hi):
        raise ValueError(f"FashionScenes: objects must be integers 1 <= min <= max, got "
                         f"{objects!r}")
    return int(lo), int(hi)


def _plain(a):
    return a.data if isinstance(a, Tensor) else xp.asarray(a)


def _source_arrays(source):
    """(images (M, 28, 28) uint8 or float32 in [0, 1], labels int64 (M,), class names or None)
    from a pair or a dataset."""
    names = getattr(source, "classes", None)
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        raise TypeError(f"FashionScenes: source must be an (images, labels) pair or a dataset, not "
                        f"a path ({source!r}); open the files first (e.g. with read_idx)")
    if isinstance(source, (tuple, list)):
        if len(source) != 2:
            raise ValueError(f"FashionScenes: source must be an (images, labels) pair or a "
                             f"dataset, got a {type(source).__name__} of {len(source)} items")
        images, labels = (_plain(a) for a in source)
    elif getattr(source, "data", None) is not None and getattr(source, "targets", None) is not None:
        images, labels = _plain(source.data), _plain(source.targets)  # MNIST, Fashion-MNIST
    elif getattr(source, "in_memory", False):
        images, labels = (_plain(a) for a in source.get_batch(xp.arange(len(source)))[:2])
    elif hasattr(source, "__len__") and hasattr(source, "__getitem__"):
        items = [source[i] for i in range(len(source))]
        if not items or not all(isinstance(it, (tuple, list)) and len(it) >= 2 for it in items):
            raise ValueError("FashionScenes: a source dataset must give (image, label) items")
        images = xp.stack([_plain(it[0]) for it in items])
        labels = xp.asarray([int(_plain(it[1])) for it in items])
    else:
        raise TypeError(f"FashionScenes: source must be an (images, labels) pair or a dataset, got "
                        f"{type(source).__name__}")
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or images.shape[1:] != (ITEM, ITEM):
        raise ValueError(f"FashionScenes: source images must be (M, 28, 28) (or (M, 1, 28, 28)), "
                         f"got shape {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"FashionScenes: source labels must be (M,) = ({images.shape[0]},), got "
                         f"shape {tuple(labels.shape)}")
    if labels.size and not xp.issubdtype(labels.dtype, xp.integer):
        raise ValueError(f"FashionScenes: source labels must be integers, got dtype {labels.dtype}")
    if images.dtype != xp.uint8:
        if xp.issubdtype(images.dtype, xp.integer) or images.dtype == xp.bool_:
            if images.size and (images.min() < 0 or images.max() > 255):
                raise ValueError("FashionScenes: integer source images must hold 0..255, got "
                                 f"{images.min()}..{images.max()}")
            images = images.astype(xp.uint8)
        elif xp.issubdtype(images.dtype, xp.floating):
            images = images.astype(xp.float32)
            if images.size and not (xp.isfinite(images).all() and images.min() >= 0
                                    and images.max() <= 1):
                raise ValueError("FashionScenes: float source images must be finite and in [0, 1] "
                                 f"(scale them), got {images.min()}..{images.max()}")
        else:
            raise ValueError(f"FashionScenes: source images must be uint8 or float, got dtype "
                             f"{images.dtype}")
    if names is not None:
        names = [str(c) for c in names]
    return images, labels.astype(xp.int64), names


class FashionScenes(Dataset):
    """Scenes of Fashion-MNIST items on a black canvas, with per-pixel class masks (see the module
    docstring for the construction).

    ``split``: 'train', 'val' or 'test' (the disjoint ranges of source images). ``size``: the
    canvas side (>= 28). ``objects``: (min, max) items per scene, inclusive (an int: exactly
    that many). ``count``: scenes in the split (default ``DEFAULT_COUNTS[split]``). ``seed``:
    with the split and the scene's index, seeds each scene. ``root`` / ``download``: where
    Fashion-MNIST is found, as ``FashionMNIST`` finds it (``root``, ``$FOVEANET_DATA``, the cache,
    ``/usr/share/datasets/fashion-mnist``). ``source``: an (images (M, 28, 28) uint8 or float in
    [0, 1], labels (M,)) pair or a dataset of such items to draw from instead (its ``classes``
    name the labels, if it has them). ``threshold``: the intensity an item's pixel must exceed to
    be in its mask.

    Attributes: ``classes`` (``CLASSES``), ``num_classes`` (11), ``source_range`` (start, stop)
    of the source images this split draws from, ``n_items`` (N,), ``source_index``, ``labels``,
    ``top``, ``left`` (N, max items; -1 past a scene's items): the layouts, in drawing order.
    """

    in_memory = True
    uses_rng = False

    def __init__(self, split: str = "train", root=None, size: int = 64, objects=(1, 4),
                 count: int | None = None, seed: int = 0, download: bool = False, source=None,
                 threshold: float = THRESHOLD):
        if split not in SPLITS:
            raise ValueError(f"FashionScenes: split must be one of {', '.join(SPLITS)}, got "
                             f"{split!r}")
        if not _is_int(size) or size < ITEM:
            raise ValueError(f"FashionScenes: size must be an int >= {ITEM} (the items are "
                             f"{ITEM}x{ITEM}), got {size!r}")
        count = DEFAULT_COUNTS[split] if count is None else count
        if not _is_int(count) or count < 1:
            raise ValueError(f"FashionScenes: count must be a positive int, got {count!r}")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"FashionScenes: seed must be a non-negative int, got {seed!r}")
        threshold = float(threshold)
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"FashionScenes: threshold must be in [0, 1), got {threshold}")
        self.split, self.size, self.objects = split, int(size), _objects(objects)
        self.count, self.seed, self.threshold = int(count), int(seed), threshold

        if source is None:
            fm = FashionMNIST(root=root, train=split != "test", download=download)
            images, labels, names = fm.data, fm.targets, None
            self.origin = (f"Fashion-MNIST {'test' if split == 'test' else 'training'} images "
                           f"({fm.files[0].parent})")
        else:
            images, labels, names = _source_arrays(source)
            self.origin = f"a source of {len(images)} items ({type(source).__name__})"
        names = list(FashionMNIST.classes) if names is None else names
        if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(f"FashionScenes: source labels must be in 0..{len(names) - 1} (one "
                             f"per class name), got {labels.min()}..{labels.max()}")
        self.classes = ["background", *names]
        m = len(images)
        cut = m * 5 // 6  # Fashion-MNIST's 60,000 training images: 50,000 / 10,000
        self.source_range = {"train": (0, cut), "val": (cut, m), "test": (0, m)}[split]
        start, stop = self.source_range
        if stop <= start:
            raise ValueError(f"FashionScenes: the {split} split has no source images to draw from "
                             f"({self.origin}: range {start}..{stop - 1})")
        self._images, self._labels = images, labels
        self._layouts(start, stop)

    # ------------------------------------------------------------------------------- layouts
    def _layouts(self, start, stop):
        """Draw every scene's items (index, top, left) from its own generator."""
        lo, hi = self.objects
        n, code = self.count, SPLITS[self.split]
        highs = xp.asarray([stop - start, self.size - ITEM + 1, self.size - ITEM + 1])
        n_items = xp.empty(n, dtype=xp.int64)
        rows = xp.full((n, hi, 3), -1, dtype=xp.int64)  # (source index, top, left)
        for i in range(n):
            rng = xp.random.default_rng([self.seed, code, i])
            k = int(rng.integers(lo, hi + 1))
            n_items[i] = k
            rows[i, :k] = rng.integers(0, highs, size=(k, 3))
        present = rows[..., 0] >= 0
        rows[..., 0] = xp.where(present, rows[..., 0] + start, -1)
        self.n_items = n_items
        self.source_index, self.top, self.left = rows[..., 0], rows[..., 1], rows[..., 2]
        self.labels = xp.where(present, self._labels[xp.maximum(rows[..., 0], 0)], -1)

    def layout(self, index) -> list:
        """The items of scene ``index`` in drawing order (the last in front): a list of dicts
        ``{"source_index", "label" (the source's class), "top", "left"}``."""
        i = _index(index, len(self), "FashionScenes")
        return [{"source_index": int(self.source_index[i, j]), "label": int(self.labels[i, j]),
                 "top": int(self.top[i, j]), "left": int(self.left[i, j])}
                for j in range(int(self.n_items[i]))]

    # ------------------------------------------------------------------------------ drawing
    def _items(self, indices):
        """Source images at ``indices`` as float32 (n, 28, 28) in [0, 1]."""
        x = self._images[indices]
        if x.dtype == xp.uint8:
            x = x.astype(xp.float32)
            x *= xp.float32(1 / 255)
        return x

    def render(self, scenes):
        """Images float32 (B, 1, size, size) and masks int64 (B, size, size) of the scenes at
        ``scenes`` (an index array), all at once: one pass per drawing slot, vectorised over the
        batch."""
        scenes = xp.asarray(scenes, dtype=xp.int64).reshape(-1)
        b, s = len(scenes), self.size
        img = xp.zeros((b, s, s), dtype=xp.float32)
        lab = xp.zeros((b, s, s), dtype=xp.int64)
        t = xp.float32(self.threshold)
        r = xp.arange(ITEM)
        counts = self.n_items[scenes]
        for j in range(self.objects[1]):
            act = xp.flatnonzero(counts > j)  # the scenes with a j-th item
            if not act.size:
                break
            sc = scenes[act]
            obj = self._items(self.source_index[sc, j])
            ii = act[:, None, None]
            rr = (self.top[sc, j][:, None] + r)[:, :, None]
            cc = (self.left[sc, j][:, None] + r)[:, None, :]
            old_img, old_lab = img[ii, rr, cc], lab[ii, rr, cc]
            on = obj > t
            img[ii, rr, cc] = xp.where(on, obj, xp.where(old_lab == 0, xp.maximum(old_img, obj),
                                                         old_img))
            lab[ii, rr, cc] = xp.where(on, (self.labels[sc, j] + 1)[:, None, None], old_lab)
        return img[:, None], lab

    # ------------------------------------------------------------------------------- access
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        """(image float32 Tensor (1, size, size) in [0, 1], mask int64 Tensor (size, size))."""
        i = _index(index, len(self), "FashionScenes")
        img, lab = self.render([i])
        return Tensor._wrap(img[0]), Tensor._wrap(lab[0])

    def get_batch(self, indices, rng=None):
        """Images float32 (B, 1, size, size) and masks int64 (B, size, size) (the loader's fast
        path). ``indices``: an index array, a list or a slice."""
        return self.render(xp.arange(len(self))[indices])

    def class_frequencies(self):
        """The share of the split's pixels of each class, float64 (num_classes,), summing to 1
        (e.g. ``1 / f`` or ``median(f) / f`` as cross-entropy class weights). Renders every scene
        once (in chunks) and keeps the result."""
        if getattr(self, "_frequencies", None) is None:
            counts = xp.zeros(self.num_classes, dtype=xp.int64)
            for start in range(0, len(self), _CHUNK):
                _, lab = self.render(xp.arange(start, min(start + _CHUNK, len(self))))
                counts += xp.bincount(lab.reshape(-1), minlength=self.num_classes)
            self._frequencies = counts / counts.sum()
        return self._frequencies.copy()

    def describe(self) -> str:
        """How this split was made, in a paragraph (for a README or a report)."""
        lo, hi = self.objects
        start, stop = self.source_range
        n_items = f"{lo}" if lo == hi else f"{lo} to {hi}"
        return (f"FashionScenes {self.split}: {self.count} scenes of {self.size}x{self.size} "
                f"pixels, each {n_items} items (uniform) of 28x28 drawn with replacement from "
                f"{self.origin}, indices {start}..{stop - 1}, placed uniformly fully inside the "
                f"canvas; scene i drawn by numpy.random.default_rng([{self.seed}, "
                f"{SPLITS[self.split]}, i]). Items are drawn in order, later in front: an item's "
                f"pixels above {self.threshold:g} (intensity in [0, 1]) set the image to their "
                f"value and the label to its class + 1; its fainter pixels only brighten the "
                f"background (max). So label > 0 exactly where the intensity is above "
                f"{self.threshold:g}. {self.num_classes} classes: 0 = background, "
                f"1..{self.num_classes - 1} = {', '.join(self.classes[1:])}.")

    def __repr__(self):
        return (f"FashionScenes({self.split}, {self.count} scenes of {self.size}x{self.size}, "
                f"objects={self.objects}, seed={self.seed}, from {self.origin})")
