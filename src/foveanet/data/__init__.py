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

    test = open_dataset("cifar10", train=False)      # any data set by name or path (--dataset)

Modules: ``idx`` (the IDX file format), ``sources`` (MNIST, Fashion-MNIST: finding, downloading,
loading; the local-first search every named set uses), ``cifar`` (CIFAR-10, CIFAR-100 from the
official binary files or archive), ``folder`` (ImageFolder: a directory of images, one folder
per class), ``tabular`` (CSVDataset), ``toy`` (TensorFlow Playground's 2-D sets), ``registry``
(open_dataset / dataset_info: a data set by name or path), ``dataset`` (Dataset, TensorDataset,
Subset), ``samplers`` (the order of the samples, DistributedSampler), ``loader`` (DataLoader),
``splits`` (random_split, train_val_split, k-fold), ``transforms`` (batched, seeded augmentation,
the noise of denoising runs, and the per-image loading transforms Resize and CenterCrop),
``scenes`` (FashionScenes: a segmentation set made from Fashion-MNIST), ``segfolder``
(SegmentationFolder: a directory of images and one of class-index masks).

In-memory sets (MNIST, Fashion-MNIST, CIFAR, CSV tables, the toy sets, TensorDataset) hand the
loader whole batches by fancy-indexing; ImageFolder reads and decodes files item by item. Image
items are float32 (C, H, W) in [0, 1], labels int64 once batched.
"""
from . import transforms  # noqa: F401
from .cifar import CIFAR10, CIFAR100  # noqa: F401
from .dataset import ArrayDataset, ConcatDataset, Dataset, Subset, TensorDataset, targets_of  # noqa: F401
from .dataset import ReconstructionPairs  # noqa: F401
from .folder import IMG_EXTENSIONS, ImageFolder  # noqa: F401
from .idx import DatasetError, read_idx, write_idx  # noqa: F401
from .images import ImageError, prepare_image  # noqa: F401
from .loader import DataLoader, default_collate  # noqa: F401
from .registry import DATASETS, SEGMENTATION_SETS, dataset_info, open_dataset  # noqa: F401
from .scenes import CLASSES as SCENE_CLASSES  # noqa: F401
from .scenes import FashionScenes  # noqa: F401
from .segfolder import SegmentationFolder  # noqa: F401
from .samplers import (DistributedSampler, RandomSampler, Sampler, SequentialSampler,  # noqa: F401
                       SubsetRandomSampler)
from .sources import MNIST, FashionMNIST, cache_dir, find_files, search_dirs  # noqa: F401
from .splits import (KFold, StratifiedKFold, cross_validate, random_split,  # noqa: F401
                     stratified_indices, train_val_split)
from .tabular import CSVDataset  # noqa: F401
from .toy import CLASSIFICATION, REGRESSION, TOY_DATASETS, ToyDataset, make_toy  # noqa: F401
from .transforms import (CenterCrop, Compose, GaussianNoise, Normalize, RandomAffine,  # noqa: F401
                         RandomCrop, RandomErasing, RandomHorizontalFlip, RandomRotation,
                         RandomScale, RandomTranslation, RandomVerticalFlip, Resize,
                         parse_augment)
from .transforms import MaskingNoise, SaltPepperNoise, parse_noise  # noqa: F401

__all__ = [
    "ImageError", "prepare_image",
    "Dataset", "TensorDataset", "ArrayDataset", "Subset", "ConcatDataset", "targets_of",
    "DatasetError", "read_idx", "write_idx", "DataLoader", "default_collate",
    "Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "DistributedSampler",
    "MNIST", "FashionMNIST", "cache_dir", "find_files", "search_dirs", "CIFAR10", "CIFAR100",
    "random_split", "train_val_split", "stratified_indices", "KFold", "StratifiedKFold",
    "cross_validate", "make_toy", "ToyDataset", "TOY_DATASETS", "CLASSIFICATION", "REGRESSION",
    "transforms", "Compose", "RandomHorizontalFlip", "RandomVerticalFlip", "RandomRotation",
    "RandomScale", "RandomAffine", "RandomCrop", "RandomTranslation", "GaussianNoise", "Normalize",
    "RandomErasing", "parse_augment", "Resize", "CenterCrop",
    "ImageFolder", "IMG_EXTENSIONS", "CSVDataset", "open_dataset", "dataset_info", "DATASETS",
    "FashionScenes", "SCENE_CLASSES", "SegmentationFolder", "SEGMENTATION_SETS",
    "ReconstructionPairs", "SaltPepperNoise", "MaskingNoise", "parse_noise",
]
