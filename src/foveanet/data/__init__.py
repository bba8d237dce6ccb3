"""foveanet.data: datasets, loaders, splits and augmentation.

::

    import foveanet as fv
    from foveanet.data import FashionMNIST, DataLoader, train_val_split, parse_augment

    train = FashionMNIST(train=True)                 # Debian's dataset-fashion-mnist, or download=True
    tr, val = train_val_split(train, 0.1, generator=fv.Generator(0))
    loader = DataLoader(tr, batch_size=128, shuffle=True, generator=fv.Generator(0),
                        transform=parse_augment("flip,crop=2"))
    for x, y in loader:                              # x float32 (128, 1, 28, 28), y int64 (128,)
        ...

Modules: ``idx`` (the IDX file format), ``sources`` (MNIST, Fashion-MNIST: finding, downloading,
loading), ``toy`` (TensorFlow Playground's 2-D sets), ``dataset`` (Dataset, TensorDataset,
Subset), ``loader`` (DataLoader), ``splits`` (random_split, train_val_split, k-fold),
``transforms`` (batched, seeded augmentation).
"""
from . import transforms  # noqa: F401
from .dataset import ArrayDataset, ConcatDataset, Dataset, Subset, TensorDataset, targets_of  # noqa: F401
from .idx import DatasetError, read_idx, write_idx  # noqa: F401
from .loader import DataLoader, default_collate  # noqa: F401
from .sources import MNIST, FashionMNIST, cache_dir, find_files, search_dirs  # noqa: F401
from .splits import (KFold, StratifiedKFold, cross_validate, random_split,  # noqa: F401
                     stratified_indices, train_val_split)
from .toy import CLASSIFICATION, REGRESSION, TOY_DATASETS, ToyDataset, make_toy  # noqa: F401
from .transforms import (Compose, GaussianNoise, Normalize, RandomAffine, RandomCrop,  # noqa: F401
                         RandomErasing, RandomHorizontalFlip, RandomRotation, RandomScale,
                         RandomTranslation, RandomVerticalFlip, parse_augment)

__all__ = [
    "Dataset", "TensorDataset", "ArrayDataset", "Subset", "ConcatDataset", "targets_of",
    "DatasetError", "read_idx", "write_idx", "DataLoader", "default_collate",
    "MNIST", "FashionMNIST", "cache_dir", "find_files", "search_dirs",
    "random_split", "train_val_split", "stratified_indices", "KFold", "StratifiedKFold",
    "cross_validate", "make_toy", "ToyDataset", "TOY_DATASETS", "CLASSIFICATION", "REGRESSION",
    "transforms", "Compose", "RandomHorizontalFlip", "RandomVerticalFlip", "RandomRotation",
    "RandomScale", "RandomAffine", "RandomCrop", "RandomTranslation", "GaussianNoise", "Normalize",
    "RandomErasing", "parse_augment",
]
