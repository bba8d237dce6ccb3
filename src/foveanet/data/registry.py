"""One place that opens a data set by name or path: what ``--dataset SPEC`` on a command line needs.

::

    from foveanet.data import open_dataset, dataset_info

    train = open_dataset("cifar10", train=True, root="~/data", download=True)
    test = open_dataset("photos/", train=False, size=64)   # ImageFolder
    info = dataset_info("points.csv", task="regression")   # classes, input_shape, num_classes, task

A spec is one of:

- a known name (``DATASETS``): 'fashion-mnist', 'mnist', 'cifar10', 'cifar100' (found on disk as
  their classes find them: ``root``, ``$FOVEANET_DATA``, the cache; fetched with ``download``),
  or one of TensorFlow Playground's 2-D sets ('circle', 'xor', 'gauss', 'spiral', 'reg-plane',
  'reg-gauss'; the test split is drawn with ``seed + 1``). Names are case-insensitive and '_' is
  '-'. A known name wins over a directory of that name: write ``./mnist`` for the directory;
- a directory: an ``ImageFolder``. When it has ``train/`` and ``test/`` (or ``val/``)
  sub-folders, those are the splits (with the same class folders); otherwise it is one set, split
  by the held-out rule below;
- a file ending in ``.csv``: a ``CSVDataset``, split by the held-out rule;
- a time series, 'co2' or 'sunspots' (``foveanet.data.series``: the files statsmodels ships):
  windows of ``window`` past values (default 24) and the ``horizon`` values after them (default
  1), split in time: ``train=True`` gives the windows before the last ``test_fraction`` (default
  0.2) of the series, ``train=False`` those in it (``forecast_splits`` also holds out a
  validation part). Its info's task is 'forecast'.
- 'fashion-scenes' (``SEGMENTATION_SETS``): ``FashionScenes``, Fashion-MNIST items pasted on a
  canvas with per-pixel class masks (``foveanet.data.scenes``), found as Fashion-MNIST is.
  ``train=True`` gives its 'train' split, ``train=False`` its 'test' split; the option ``split``
  ('train', 'val', 'test') names one instead. Its own fixed splits, not the held-out rule. Its
  info's task is 'segmentation'. It is kept out of ``DATASETS``, the list of what ``foveanet
  train`` trains as classifiers (or forecasts).

The held-out rule: the test split is ``test_fraction`` (default 0.2) of the samples, drawn with
``foveanet.Generator(seed)`` (default seed 0): stratified by class (each class's share within one
sample of ``test_fraction``; ``stratified_indices``) for classification, a plain random part for
regression. ``train=True`` gives the rest. The same spec and options always give the same split,
so the two calls (train, then test) never overlap.

Options (``**options``) depend on the spec; values may be strings, as a command line gives them
('32', '32x48', 'true'), and are converted. ``OPTIONS`` lists them; an option a spec does not take,
an unknown spec, a missing path: a ``DatasetError`` that says what is accepted.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..random import Generator
from .cifar import CIFAR10, CIFAR100, CIFAR100_COARSE
from .folder import ImageFolder
from .idx import DatasetError
from .scenes import CLASSES as _SCENE_CLASSES
from .scenes import FashionScenes
from .sources import MNIST, FashionMNIST
from .splits import train_val_split
from .tabular import TASKS, CSVDataset
from .series import SERIES, forecast_splits, load_series
from .toy import REGRESSION, ToyDataset
from .toy import canonical_name as _toy_name

__all__ = ["open_dataset", "dataset_info", "DATASETS", "SEGMENTATION_SETS", "OPTIONS", "resolve"]

_IMAGE_SETS = {"fashion-mnist": FashionMNIST, "mnist": MNIST, "cifar10": CIFAR10,
               "cifar100": CIFAR100}
_IMAGE_ALIASES = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-100": "cifar100"}

DATASETS = {
    "fashion-mnist": "Zalando's Fashion-MNIST: 28x28 grey images of clothes, 10 classes",
    "mnist": "handwritten digits: 28x28 grey images, 10 classes",
    "cifar10": "CIFAR-10: 32x32 colour images, 10 classes",
    "cifar100": "CIFAR-100: 32x32 colour images, 100 classes (label=coarse: 20)",
    "circle": "Playground 2-D points: a disc inside a ring, 2 classes",
    "xor": "Playground 2-D points: the four quadrants, 2 classes",
    "gauss": "Playground 2-D points: two Gaussian blobs, 2 classes",
    "spiral": "Playground 2-D points: two spirals, 2 classes",
    "reg-plane": "Playground 2-D points: a plane, regression",
    "reg-gauss": "Playground 2-D points: six Gaussian bumps, regression",
    **{name: info["description"] for name, info in SERIES.items()},
}
SEGMENTATION_SETS = {  # opened like the others, listed apart: not classification sets
    "fashion-scenes": "Fashion-MNIST items on a 64x64 canvas, per-pixel masks of 11 classes "
                      "(segmentation)",
}


# ------------------------------------------------------------------------------ option values
def _to_int(value):
    return int(value) if isinstance(value, str) else value


def _to_float(value):
    return float(value) if isinstance(value, str) else value


def _to_size(value):
    """'32' -> 32, '32x48' or '32,48' -> (32, 48); other values as they are."""
    if not isinstance(value, str):
        return value
    parts = value.lower().replace(",", "x").split("x")
    return int(parts[0]) if len(parts) == 1 else tuple(int(p) for p in parts)


def _to_column(value):
    """'3' / '-1' -> an index, any other string a column name."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value.strip()
    return value


def _to_columns(value):
    if isinstance(value, str):
        return [_to_column(v) for v in value.split(",") if v.strip()]
    return None if value is None else list(value)


def _to_header(value):
    if isinstance(value, str):
        key = value.strip().lower()
        if key == "auto":
            return "auto"
        if key in ("true", "yes", "1"):
            return True
        if key in ("false", "no", "0"):
            return False
        raise ValueError("expected auto, true or false")
    return value


def _to_objects(value):
    """'1:4' or '1,4' -> (1, 4), '3' -> 3; other values as they are."""
    if not isinstance(value, str):
        return value
    parts = value.replace(",", ":").split(":")
    return int(parts[0]) if len(parts) == 1 else tuple(int(p) for p in parts)


def _choice(*values):
    def convert(value):
        if value not in values:
            raise ValueError(f"expected {' or '.join(values)}")
        return value
    return convert


_SPLIT = {"test_fraction": _to_float, "seed": _to_int}
OPTIONS = {  # kind -> {option: converter of its value}
    "fashion-mnist": {}, "mnist": {}, "cifar10": {}, "cifar100": {"label": _choice("fine", "coarse")},
    "toy": {"n": _to_int, "noise": _to_float, "seed": _to_int},
    "folder": {"size": _to_size, "mode": _choice("RGB", "L"), **_SPLIT},
    "csv": {"label_column": _to_column, "feature_columns": _to_columns, "header": _to_header,
            "task": _choice(*TASKS), "delimiter": str, **_SPLIT},
    "series": {"window": _to_int, "horizon": _to_int, "test_fraction": _to_float},
    "fashion-scenes": {"size": _to_int, "objects": _to_objects, "count": _to_int, "seed": _to_int,
                       "threshold": _to_float, "split": _choice("train", "val", "test")},
}


def resolve(spec):
    """(kind, key) of a spec: ('fashion-mnist' | 'mnist' | 'cifar10' | 'cifar100', name),
    ('toy', name), ('series', name), ('fashion-scenes', name), ('folder', Path) or ('csv', Path).
    Raises ``DatasetError`` for anything else."""
    text = os.fspath(spec).strip()
    if not text:
        raise DatasetError(f"no data set given: give one of {', '.join(DATASETS)}, a directory "
                           "or a .csv file")
    key = text.lower().replace("_", "-")
    key = _IMAGE_ALIASES.get(key, key)
    if key in _IMAGE_SETS:
        return key, key
    if key in SERIES:
        return "series", key
    if key in SEGMENTATION_SETS:
        return key, key
    try:
        return "toy", _toy_name(key)
    except ValueError:
        pass
    path = Path(os.path.expanduser(text))
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise DatasetError(f"{path}: no such CSV file")
        return "csv", path
    if path.is_dir():
        return "folder", path
    if os.sep in text or "/" in text or path.exists():
        raise DatasetError(f"{path}: not a directory of class folders nor a .csv file")
    raise DatasetError(f"unknown data set {text!r}: give one of {', '.join(DATASETS)}, a "
                       "directory with one folder of images per class, or a .csv file (for "
                       f"segmentation: {', '.join(SEGMENTATION_SETS)})")


def _options(kind, spec, options) -> dict:
    accepted = OPTIONS[kind]
    out = {}
    for name, value in options.items():
        if name not in accepted:
            takes = (f"it takes {', '.join(accepted)}" if accepted else "it takes none")
            raise DatasetError(f"data set {os.fspath(spec)!r}: unknown option {name!r}; {takes}")
        try:
            out[name] = accepted[name](value)
        except ValueError as e:
            raise DatasetError(f"data set {os.fspath(spec)!r}: option {name}={value!r}: {e}") \
                from None
    return out


# ------------------------------------------------------------------------------------ opening
def _split_folders(path: Path):
    """(train dir, test dir) when ``path`` has train/ and test/ (or val/); else None."""
    if not (path / "train").is_dir():
        return None
    for name in ("test", "val"):
        if (path / name).is_dir():
            return path / "train", path / name
    return None


def _held_out(full, train: bool, test_fraction, seed, stratify: bool):
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    train_part, test_part = train_val_split(full, test_fraction, stratify=stratify,
                                            generator=Generator(seed))
    return train_part if train else test_part


def _folder(path: Path, train: bool, opts: dict):
    test_fraction, seed = opts.pop("test_fraction", 0.2), opts.pop("seed", 0)
    splits = _split_folders(path)
    if splits is None:
        return _held_out(ImageFolder(path, **opts), train, test_fraction, seed, stratify=True)
    train_dir, test_dir = splits
    ds = ImageFolder(train_dir if train else test_dir, **opts)
    other = sorted(e.name for e in os.scandir(test_dir if train else train_dir)
                   if e.is_dir() and not e.name.startswith("."))
    if other != ds.classes:
        raise DatasetError(f"{path}: {train_dir.name}/ and {test_dir.name}/ have different class "
                           f"folders ({', '.join(sorted(set(other) ^ set(ds.classes)))} in only "
                           "one): the labels would not mean the same")
    return ds


def open_dataset(spec, train: bool = True, root=None, download: bool = False, **options):
    """The training (``train=True``) or test split of the data set ``spec`` (see the module
    docstring for the specs, the held-out rule and the options). ``root`` and ``download`` apply
    to the known image sets."""
    kind, key = resolve(spec)
    opts = _options(kind, spec, options)
    try:
        return _open(kind, key, train, root, download, opts)
    except DatasetError:
        raise
    except ValueError as e:  # an option's value refused by the data set (size=0, n=-1, ...)
        raise DatasetError(f"data set {os.fspath(spec)!r}: {e}") from e


def _open(kind, key, train, root, download, opts):
    if kind in _IMAGE_SETS:
        return _IMAGE_SETS[kind](root=root, train=train, download=download, **opts)
    if kind == "toy":
        seed = opts.pop("seed", 0)
        return ToyDataset(key, seed=seed if train else seed + 1, **opts)
    if kind == "folder":
        return _folder(key, train, opts)
    if kind == "series":
        return _series(key, opts)[0 if train else 1]
    if kind == "fashion-scenes":
        split = opts.pop("split", "train" if train else "test")
        return FashionScenes(split, root=root, download=download, **opts)
    test_fraction, seed = opts.pop("test_fraction", 0.2), opts.pop("seed", 0)
    full = CSVDataset(key, **opts)
    return _held_out(full, train, test_fraction, seed, stratify=full.task == "classification")


def _series(key, opts):
    """(the windows before the test part, the test part's windows) of a known series."""
    train, _, test = forecast_splits(load_series(key), opts.get("window", 24),
                                     opts.get("horizon", 1), 0.0, opts.get("test_fraction", 0.2))
    return train, test


def dataset_info(spec, root=None, **options) -> dict:
    """What a model needs to know of ``spec``: ``{"name", "classes" (None for regression),
    "input_shape" (a list), "num_classes" (0 for regression), "task"}``. The known image sets are
    not read for this; a folder's class folders (and, without ``size``, its image headers) and a
    CSV file are."""
    kind, key = resolve(spec)
    opts = _options(kind, spec, options)
    try:
        return _describe(kind, key, opts)
    except DatasetError:
        raise
    except ValueError as e:
        raise DatasetError(f"data set {os.fspath(spec)!r}: {e}") from e


def _describe(kind, key, opts) -> dict:
    if kind in _IMAGE_SETS:
        cls = _IMAGE_SETS[kind]
        classes = list(cls.classes)
        if kind == "cifar100" and opts.get("label", "fine") == "coarse":
            classes = list(CIFAR100_COARSE)
        shape = [1, 28, 28] if kind in ("fashion-mnist", "mnist") else [3, 32, 32]
        return _info(kind, classes, shape, "classification")
    if kind == "toy":
        task = "regression" if key in REGRESSION else "classification"
        classes = None if task == "regression" else ["negative (-1)", "positive (+1)"]
        return _info(key, classes, [2], task)
    if kind == "series":
        return _info(key, None, [opts.get("window", 24)], "forecast")
    if kind == "fashion-scenes":
        size = opts.get("size", 64)
        if not isinstance(size, int) or size < 28:
            raise ValueError(f"size must be an int >= 28 (the items are 28x28), got {size!r}")
        return _info(key, list(_SCENE_CLASSES), [1, size, size], "segmentation")
    if kind == "folder":
        opts.pop("test_fraction", None)
        opts.pop("seed", None)
        splits = _split_folders(key)
        ds = ImageFolder(splits[0] if splits else key, **opts)
        return _info(str(key), list(ds.classes), list(ds.sample_shape()), "classification")
    for name in ("test_fraction", "seed"):
        opts.pop(name, None)
    ds = CSVDataset(key, **opts)
    return _info(str(key), ds.classes, [len(ds.feature_names)], ds.task)


def _info(name, classes, shape, task) -> dict:
    return {"name": name, "classes": classes, "input_shape": [int(s) for s in shape],
            "num_classes": 0 if classes is None else len(classes), "task": task}

