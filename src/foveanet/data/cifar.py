"""CIFAR-10 and CIFAR-100 from their official binary version, held in memory as uint8 arrays.

The binary version (never the pickled "python version", which cannot be read safely) is a set of
``.bin`` files of fixed-size records: CIFAR-10's are one label byte then 3072 pixel bytes,
CIFAR-100's a coarse label byte, a fine label byte, then the pixels. The pixels are the 32x32
red plane, then the green, then the blue, each row by row: exactly an image (3, 32, 32) in C
order, so ``ds.data`` is uint8 (N, 3, 32, 32) with no reordering.

::

    cifar-10-batches-bin/   data_batch_1.bin .. data_batch_5.bin (training), test_batch.bin,
                            batches.meta.txt (the class names, one per line)
    cifar-100-binary/       train.bin, test.bin, coarse_label_names.txt, fine_label_names.txt

Where they are looked for: the directories of ``sources.search_dirs`` ('cifar10' / 'cifar100':
``root``, ``root/cifar10``, ``$FOVEANET_DATA/cifar10``, ``$FOVEANET_DATA``,
``~/.cache/foveanet/cifar10``, ``/usr/share/datasets/cifar10``). In each, in this order: the
extracted folder (``cifar-10-batches-bin/``), the directory itself when it holds the ``.bin``
files, then the archive as published (``cifar-10-binary.tar.gz``), which is read with ``tarfile``
in one pass, without extracting anything to disk. The first of these found is used; a file it
lacks is an error, not a reason to look further (a half-extracted folder should be noticed).

``download=True`` fetches the archive into ``root`` (or the cache) when none is found, checked
against the published MD5 and written atomically (``sources.download_file``). Files found on disk
are checked by structure: every ``.bin`` must be a whole number of records and every label in
range, else a ``DatasetError`` names the file.
"""
from __future__ import annotations

import os
import tarfile
import zlib
from pathlib import Path

from ..backend import xp
from .idx import DatasetError
from .sources import InMemoryImageDataset, cache_dir, download_file, md5sum, search_dirs

__all__ = ["CIFAR10", "CIFAR100"]

_PIXELS = 3 * 32 * 32

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck"]
CIFAR100_COARSE = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2"]
CIFAR100_FINE = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup",
    "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house",
    "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
    "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy",
    "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal",
    "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar",
    "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman",
    "worm"]


class _CIFAR(InMemoryImageDataset):
    """What CIFAR-10 and CIFAR-100 share: finding, downloading and reading the binary files."""

    name = ""             # the directory name searched: 'cifar10' / 'cifar100'
    folder = ""           # the archive's top folder
    archive = ""          # the archive's file name
    md5 = ""              # the archive's published MD5
    urls: list = []
    split_files: dict = {}  # train (bool) -> the .bin files of that split
    labels: tuple = ()    # (label kind, names file, built-in names), in record order

    def __init__(self, root=None, train: bool = True, transform=None, target_transform=None,
                 download: bool = False):
        super().__init__(root, train, transform, target_transform)
        source = self.find(root)
        if source is None and download:
            self.download(root)
            source = self.find(root)
        if source is None:
            raise DatasetError(self._missing_message(root, download))
        self.source = source
        blobs = self._read(source)
        images, labels = [], []
        for fname in self.split_files[self.train]:
            img, lab = self._parse(blobs[fname], self._where(fname))
            images.append(img)
            labels.append(lab)
        self.data = xp.concatenate(images)                          # uint8 (N, 3, 32, 32)
        self._labels = xp.concatenate(labels).astype(xp.int64)      # (N, label bytes)
        self.names = {kind: self._names(blobs.get(fname), fname, builtin)
                      for kind, fname, builtin in self.labels}
        self.files = ([source / f for f in self.split_files[self.train]] if source.is_dir()
                      else [source])

    # ------------------------------------------------------------------------------ locating
    @classmethod
    def find(cls, root=None):
        """The folder holding the ``.bin`` files, or the archive, that would be read; None when
        there is neither in the directories searched (see the module docstring)."""
        stems = [f for files in cls.split_files.values() for f in files] + \
            [fname for _, fname, _ in cls.labels]
        for d in search_dirs(cls.name, root):
            if (d / cls.folder).is_dir():
                return d / cls.folder
            if any((d / f).is_file() for f in stems):
                return d
            if (d / cls.archive).is_file():
                return d / cls.archive
        return None

    @classmethod
    def download(cls, root=None, quiet: bool = False) -> Path:
        """Download the archive into ``root`` (or the cache) unless a copy with the published MD5
        is there; returns its path."""
        dest = Path(os.path.expanduser(os.fspath(root))) if root is not None else cache_dir(cls.name)
        target = dest / cls.archive
        if target.is_file() and md5sum(target) == cls.md5:
            return target
        try:
            return download_file(cls.urls, target, cls.md5, timeout=120.0, quiet=quiet)
        except DatasetError as e:
            dirs = ", ".join(str(d) for d in search_dirs(cls.name, root))
            raise DatasetError(f"{cls.title}: {e}\n{cls._how_to_get()} Searched: {dirs}") from e

    @classmethod
    def _how_to_get(cls) -> str:
        return (f"To get {cls.title}: pass download=True / --download (needs network: "
                f"{cls.urls[0]}), or put {cls.archive} (or the {cls.folder}/ folder extracted "
                "from it) in one of the directories searched.")

    def _missing_message(self, root, download) -> str:
        dirs = ", ".join(str(d) for d in search_dirs(self.name, root))
        tried = " (the download did not provide it)" if download else ""
        return (f"{self.title} not found: no {self.folder}/ folder, {self.archive} or "
                f"{self.split_files[self.train][0]}{tried}. {self._how_to_get()} Searched: {dirs}")

    # ------------------------------------------------------------------------------- reading
    def _where(self, fname) -> str:
        """How to name file ``fname`` of the source in a message."""
        if self.source.is_dir():
            return str(self.source / fname)
        return f"{self.source} (member {self.folder}/{fname})"

    def _read(self, source: Path) -> dict:
        """{file name: bytes} of the split's ``.bin`` files and of the class-name files found."""
        needed = list(self.split_files[self.train])
        optional = [fname for _, fname, _ in self.labels]
        if source.is_dir():
            blobs = {}
            for fname in needed + optional:
                path = source / fname
                if not path.is_file():
                    if fname in optional:
                        continue
                    raise DatasetError(f"{self.title}: {path} is missing (the "
                                       f"{'training' if self.train else 'test'} split needs "
                                       f"{', '.join(needed)} in {source})")
                try:
                    blobs[fname] = path.read_bytes()
                except OSError as e:
                    raise DatasetError(f"{path}: cannot read: {e.strerror or e}") from e
            return blobs
        return self._read_archive(source, needed, optional)

    def _read_archive(self, path: Path, needed, optional) -> dict:
        wanted = {f"{self.folder}/{f}": f for f in needed + optional}
        blobs = {}
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:  # one pass through the compressed stream
                    fname = wanted.get(member.name.removeprefix("./"))
                    if fname is not None and member.isfile():
                        blobs[fname] = tar.extractfile(member).read()
                        if len(blobs) == len(wanted):
                            break
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"{path}: corrupt or unreadable archive ({e}); the file is damaged "
                               "or was only partly downloaded: delete it and get it again") from e
        missing = [f"{self.folder}/{f}" for f in needed if f not in blobs]
        if missing:
            raise DatasetError(f"{path}: the archive has no {', '.join(missing)}: not the "
                               f"{self.title} binary version ({self.archive})")
        return blobs

    def _parse(self, raw: bytes, where: str):
        """(images uint8 (n, 3, 32, 32), labels uint8 (n, label bytes)) of one ``.bin`` file."""
        k = len(self.labels)
        size = k + _PIXELS
        if not raw or len(raw) % size:
            raise DatasetError(f"{where}: {len(raw)} bytes is not a whole number of {size}-byte "
                               f"records ({k} label byte{'s' if k > 1 else ''} + {_PIXELS} pixels):"
                               " the file is truncated or not a CIFAR binary batch")
        records = xp.frombuffer(raw, dtype=xp.uint8).reshape(-1, size)
        labels = records[:, :k]
        for column, (kind, _, names) in enumerate(self.labels):
            bad = xp.flatnonzero(labels[:, column] >= len(names))
            if bad.size:
                r = int(bad[0])
                raise DatasetError(f"{where}: record {r} has {kind} label {labels[r, column]}, "
                                   f"expected 0..{len(names) - 1}")
        return records[:, k:].reshape(-1, 3, 32, 32), labels

    def _names(self, raw, fname, builtin) -> list:
        """The class names of a names file (one per line, blank lines ignored); the published
        names when the file is absent."""
        if raw is None:
            return list(builtin)
        where = self._where(fname)
        try:
            names = [line.strip() for line in raw.decode("utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as e:
            raise DatasetError(f"{where}: not a text file of class names ({e})") from e
        if len(names) != len(builtin):
            raise DatasetError(f"{where}: {len(names)} class names, expected {len(builtin)}")
        return names

    def __repr__(self):
        split = "train" if self.train else "test"
        return f"{type(self).__name__}({split}, {len(self)} images from {self.source})"


class CIFAR10(_CIFAR):
    """Krizhevsky's CIFAR-10: 60,000 32x32 colour images in 10 classes (50,000 training in five
    batches, 10,000 test). ``ds.data`` uint8 (N, 3, 32, 32), ``ds.targets`` int64 (N,),
    ``ds.classes`` from ``batches.meta.txt``; items float32 (3, 32, 32) in [0, 1]."""

    name = "cifar10"
    title = "CIFAR-10"
    folder = "cifar-10-batches-bin"
    archive = "cifar-10-binary.tar.gz"
    md5 = "c32a1d4ab5d03f1284b67883e8d87530"
    urls = ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]
    split_files = {True: tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
                   False: ("test_batch.bin",)}
    labels = (("class", "batches.meta.txt", CIFAR10_CLASSES),)
    classes = CIFAR10_CLASSES
    mean = (0.4914, 0.4822, 0.4465)  # per channel, of the training images in [0, 1]
    std = (0.2470, 0.2435, 0.2616)

    def __init__(self, root=None, train: bool = True, transform=None, target_transform=None,
                 download: bool = False):
        super().__init__(root, train, transform, target_transform, download)
        self.targets = xp.ascontiguousarray(self._labels[:, 0])
        self.classes = self.names["class"]


class CIFAR100(_CIFAR):
    """Krizhevsky's CIFAR-100: 60,000 32x32 colour images in 100 fine classes grouped into 20
    coarse ones (50,000 training, 10,000 test). ``label``: 'fine' (default) or 'coarse' picks
    ``targets`` and ``classes``; ``fine_targets`` and ``coarse_targets`` hold both."""

    name = "cifar100"
    title = "CIFAR-100"
    folder = "cifar-100-binary"
    archive = "cifar-100-binary.tar.gz"
    md5 = "03b5dce01913d631647c71ecec9e9cb8"
    urls = ["https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"]
    split_files = {True: ("train.bin",), False: ("test.bin",)}
    labels = (("coarse", "coarse_label_names.txt", CIFAR100_COARSE),
              ("fine", "fine_label_names.txt", CIFAR100_FINE))
    classes = CIFAR100_FINE
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)

    def __init__(self, root=None, train: bool = True, transform=None, target_transform=None,
                 download: bool = False, label: str = "fine"):
        if label not in ("fine", "coarse"):
            raise ValueError(f"CIFAR100: label must be 'fine' or 'coarse', got {label!r}")
        super().__init__(root, train, transform, target_transform, download)
        self.label = label
        self.coarse_targets = xp.ascontiguousarray(self._labels[:, 0])
        self.fine_targets = xp.ascontiguousarray(self._labels[:, 1])
        self.targets = self.fine_targets if label == "fine" else self.coarse_targets
        self.classes = self.names[label]
