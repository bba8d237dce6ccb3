"""MNIST and Fashion-MNIST: found on disk (Debian's package, a cache, a directory of your own) or
downloaded with checksums, and held in memory as uint8 arrays.

Where the four files are looked for, in this order (``name`` is 'fashion-mnist' or 'mnist'):

1. ``root`` and ``root/<name>``, when ``root`` is given;
2. ``$FOVEANET_DATA/<name>`` and ``$FOVEANET_DATA``, when that variable is set;
3. ``~/.cache/foveanet/<name>`` (where ``download=True`` puts them when there is no ``root``);
4. ``/usr/share/datasets/<name>`` (Debian's ``dataset-fashion-mnist`` installs Fashion-MNIST
   there: ``apt-get install dataset-fashion-mnist``).

A directory is used when it holds both files of the split asked for, gzip-compressed
(``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``). Files found on disk are
checked by structure (``read_idx`` checks the header and the length, the loader the shapes and
labels), not by checksum: Debian's package ships the same data recompressed, so its .gz files do
not have the published MD5 sums. Downloads are checked against the published MD5 sums.

The network is touched only by ``download=True`` (or ``download(...)``), never at import.

The other named data sets reuse this module: ``search_dirs`` (the same directories, with their
own name), ``download_file`` (atomic, MD5-checked downloads) and ``InMemoryImageDataset``, the
base of MNIST, Fashion-MNIST and CIFAR (``cifar.py``): images held as one uint8 array, handed
out as float32 in [0, 1], a whole batch per fancy index.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

from ..autograd import Tensor
from ..backend import xp
from ..random import numpy_rng
from .dataset import Dataset
from .idx import DatasetError, read_idx
from .transforms import Transform

SYSTEM_DATA_DIR = "/usr/share/datasets"  # Debian's dataset-* packages install here
ENV_VAR = "FOVEANET_DATA"

_SPLIT_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def cache_dir(name: str | None = None) -> Path:
    """``~/.cache/foveanet`` (or ``~/.cache/foveanet/<name>``)."""
    base = Path.home() / ".cache" / "foveanet"
    return base / name if name else base


def search_dirs(name: str, root=None) -> list[Path]:
    """The directories searched for data set ``name``, in order (see the module docstring)."""
    dirs = []
    if root is not None:
        root = Path(os.path.expanduser(os.fspath(root)))
        dirs += [root, root / name]
    env = os.environ.get(ENV_VAR)
    if env:
        env = Path(os.path.expanduser(env))
        dirs += [env / name, env]
    dirs += [cache_dir(name), Path(SYSTEM_DATA_DIR) / name]
    out = []
    for d in dirs:  # keep the order, drop repeats
        if d not in out:
            out.append(d)
    return out


def _find_file(directory: Path, stem: str):
    for candidate in (directory / stem, directory / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def find_files(name: str, train: bool = True, root=None):
    """(images, labels) paths of one split, from the first directory that holds both; None if
    none does."""
    stems = _SPLIT_FILES[bool(train)]
    for d in search_dirs(name, root):
        found = [_find_file(d, s) for s in stems]
        if all(found):
            return tuple(found)
    return None


def md5sum(path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_file(urls, dest: Path, md5: str, timeout: float = 60.0, quiet: bool = False) -> Path:
    """Download ``dest`` from the first of ``urls`` that gives a file with MD5 ``md5``.

    Streams into a temporary file next to ``dest``, checks the MD5, then renames it into place
    (atomic): an interrupted or failed download, or a wrong checksum, leaves no file behind.
    Raises ``DatasetError`` listing what went wrong with each URL.
    """
    import urllib.error  # here, not at import: only a download touches the network
    import urllib.request

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            h = hashlib.md5(usedforsecurity=False)
            if not quiet:
                print(f"foveanet: downloading {url}", file=sys.stderr)
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                while block := resp.read(1 << 20):
                    h.update(block)
                    out.write(block)
            got = h.hexdigest()
            if got != md5:
                errors.append(f"{url}: MD5 mismatch (expected {md5}, got {got})")
                continue
            os.replace(tmp, dest)
            return dest
        except (urllib.error.URLError, OSError, ValueError) as e:
            errors.append(f"{url}: {getattr(e, 'reason', None) or e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DatasetError(f"could not download {dest.name}:\n  " + "\n  ".join(errors))


class InMemoryImageDataset(Dataset):
    """Images held in memory as one uint8 array ``.data`` and their labels as int64 ``.targets``
    (the base of MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100).

    Items and batches are float32 images (C, H, W) scaled to [0, 1]: ``ds[i]`` one at a time,
    ``get_batch(indices)`` (the ``DataLoader``'s fast path) a whole batch by one fancy index.
    ``transform``: a batch transform (a ``transforms.Transform``, applied to the batch in
    ``get_batch``, seeded by the loader) or a per-item callable (applied in ``ds[i]``; the loader
    then reads item by item). Subclasses call ``__init__`` for the options, then set ``data``,
    ``targets``, ``files`` and the class attributes below.
    """

    title = ""
    classes: list = []
    mean, std = 0.0, 1.0  # of the training images scaled to [0, 1]: numbers, or one per channel

    def __init__(self, root=None, train: bool = True, transform=None, target_transform=None):
        self.root = root
        self.train = bool(train)
        self.transform = transform
        self.target_transform = target_transform

    def _chw(self, images):
        """``data[indices]`` as (B, C, H, W); ``data`` is stored so already unless overridden."""
        return images

    def _floats(self, indices):
        """The images at ``indices`` (an index array) as float32 (B, C, H, W) in [0, 1]."""
        x = self._chw(self.data[indices]).astype(xp.float32)
        x *= xp.float32(1 / 255)
        return x

    # ---------------------------------------------------------------------------------- access
    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index):
        """(image, label): the image a float32 Tensor (C, H, W) in [0, 1] (after ``transform``),
        the label an int (after ``target_transform``)."""
        n = len(self)
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for {self.title} of length {n}")
        img = self._floats([i % n])[0]
        if self.transform is not None:
            if isinstance(self.transform, Transform):  # a batch transform, given a batch of one
                img = self.transform(img, numpy_rng(None))
            else:
                img = self.transform(img)
        label = int(self.targets[i])
        if self.target_transform is not None:
            label = self.target_transform(label)
        return (Tensor._wrap(img) if isinstance(img, xp.ndarray) else img), label

    @property
    def in_memory(self):
        """Batched access works unless a per-item (non-``Transform``) transform is set."""
        per_item = self.transform is not None and not isinstance(self.transform, Transform)
        return not per_item and self.target_transform is None

    @property
    def uses_rng(self):
        return isinstance(self.transform, Transform)

    def get_batch(self, indices, rng=None):
        """Images float32 (B, C, H, W) in [0, 1] (after a batch ``transform``), labels int64."""
        x = self._floats(indices)
        if self.transform is not None:
            x = self.transform(x, rng)
        return x, self.targets[indices]

    def _normalize(self, x, normalize):
        if normalize is None or normalize is False:
            return x
        mean, std = (self.mean, self.std) if normalize is True else normalize
        mean, std = xp.asarray(mean, dtype=xp.float32), xp.asarray(std, dtype=xp.float32)
        if mean.ndim or std.ndim:  # one value per channel
            mean, std = mean.reshape(1, -1, 1, 1), std.reshape(1, -1, 1, 1)
        return (x - mean) / std

    def arrays(self, normalize=False):
        """The whole split as NumPy arrays: images float32 (N, C, H, W) scaled to [0, 1] and
        labels int64 (N,). ``normalize=True`` standardises with the training set's mean and
        std (``.mean``, ``.std``, per channel where they are tuples); a pair (mean, std) uses
        those. No ``transform`` is applied."""
        x = self._floats(slice(None))
        return self._normalize(x, normalize), self.targets.copy()

    def as_tensors(self, normalize=False):
        """``arrays(normalize)`` as foveanet Tensors."""
        x, y = self.arrays(normalize)
        return Tensor._wrap(x), Tensor._wrap(y)

    def class_counts(self):
        return xp.bincount(self.targets, minlength=len(self.classes))

    def __repr__(self):
        split = "train" if self.train else "test"
        return f"{type(self).__name__}({split}, {len(self)} images from {self.files[0].parent})"


class _MNISTLike(InMemoryImageDataset):
    """The 28x28 grey-scale, 10-class data sets stored as four IDX files."""

    name = ""            # directory name: 'mnist' / 'fashion-mnist'
    mirrors: list = []
    resources: dict = {}  # file name -> published MD5
    debian_package = None

    def __init__(self, root=None, train: bool = True, transform=None, target_transform=None,
                 download: bool = False):
        super().__init__(root, train, transform, target_transform)
        files = find_files(self.name, self.train, root)
        if files is None and download:
            try:
                self.download(root)
            except DatasetError as e:
                dirs = ", ".join(str(d) for d in search_dirs(self.name, root))
                raise DatasetError(f"{e} Searched: {dirs}") from e
            files = find_files(self.name, self.train, root)
        if files is None:
            raise DatasetError(self._missing_message(root, download))
        self.files = files
        images, labels = (read_idx(f) for f in files)
        self._check(images, labels)
        self.data = images
        self.targets = labels.astype(xp.int64)

    def _chw(self, images):
        return images[:, None]  # stored (N, 28, 28), as in the files

    # ------------------------------------------------------------------------------ locating
    @classmethod
    def download(cls, root=None, quiet: bool = False) -> Path:
        """Download the four files (those not already there) into ``root`` or the cache."""
        dest = Path(os.path.expanduser(os.fspath(root))) if root is not None else cache_dir(cls.name)
        for fname, md5 in cls.resources.items():
            target = dest / fname
            if target.is_file() and md5sum(target) == md5:
                continue
            try:
                download_file([m + fname for m in cls.mirrors], target, md5, quiet=quiet)
            except DatasetError as e:
                raise DatasetError(f"{cls.title}: {e}\n{cls._how_to_get()}") from e
        return dest

    @classmethod
    def _how_to_get(cls) -> str:
        ways = "pass download=True / --download (needs network)"
        if cls.debian_package:
            ways = (f"install Debian's package {cls.debian_package} (apt-get install "
                    f"{cls.debian_package}) or {ways}")
        else:
            ways = f"{ways}, or put the four files in one of the directories searched"
        return f"To get {cls.title}: {ways}."

    def _missing_message(self, root, download) -> str:
        stems = _SPLIT_FILES[self.train]
        split = "training" if self.train else "test"
        dirs = ", ".join(str(d) for d in search_dirs(self.name, root))
        tried = " (the download did not provide them)" if download else ""
        return (f"{self.title} {split} files not found ({stems[0]}[.gz], {stems[1]}[.gz]){tried}. "
                f"{self._how_to_get()} Searched: {dirs}")

    def _check(self, images, labels):
        where = f"{self.title} ({self.files[0].parent})"
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != xp.uint8:
            raise DatasetError(f"{where}: {self.files[0].name} holds {images.dtype} images of shape "
                               f"{images.shape}, expected uint8 (N, 28, 28)")
        if labels.ndim != 1 or labels.dtype != xp.uint8:
            raise DatasetError(f"{where}: {self.files[1].name} holds {labels.dtype} labels of shape "
                               f"{labels.shape}, expected uint8 (N,)")
        if len(images) != len(labels):
            raise DatasetError(f"{where}: {len(images)} images but {len(labels)} labels")
        if labels.size and labels.max() >= len(self.classes):
            raise DatasetError(f"{where}: label {labels.max()} out of range 0..{len(self.classes) - 1}")


class FashionMNIST(_MNISTLike):
    """Zalando's Fashion-MNIST: 70,000 28x28 grey-scale images of clothes in 10 classes
    (60,000 training, 10,000 test). ``ds.data`` uint8 (N, 28, 28), ``ds.targets`` int64 (N,)."""

    name = "fashion-mnist"
    title = "Fashion-MNIST"
    debian_package = "dataset-fashion-mnist"
    mirrors = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
    resources = {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
               "Bag", "Ankle boot"]
    mean, std = 0.2860, 0.3530


class MNIST(_MNISTLike):
    """LeCun, Cortes and Burges' handwritten digits: 70,000 28x28 grey-scale images in 10
    classes (60,000 training, 10,000 test)."""

    name = "mnist"
    title = "MNIST"
    mirrors = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
    resources = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six",
               "7 - seven", "8 - eight", "9 - nine"]
    mean, std = 0.1307, 0.3081
