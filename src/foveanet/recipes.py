"""Training recipes: the settings ``foveanet train`` uses when an option is not given.

``DEFAULT_RECIPE`` is the one place where the defaults of ``foveanet train`` live: the command
line reads every default from it (and prints the resolved configuration before training), so
tuning the default run means editing the numbers below and nothing else. The image data sets
(Fashion-MNIST, MNIST, CIFAR-10/100, an image folder) take ``DEFAULT_RECIPE``, the CNN built
for the data set's channels and (square) size. ``TOY_RECIPE`` holds the values that replace it
for feature vectors: the 2-D toy data sets (``--dataset circle|xor|gauss|spiral``) and CSV
tables (``--dataset FILE.csv``): a small MLP, no image augmentation, more epochs of smaller
batches. ``FORECAST_RECIPE`` replaces it for forecasting (``--task forecast``, the series
``co2`` and ``sunspots``): a small LSTM forecaster on windows of the series (``window`` past
values, ``FORECAST_WINDOWS`` per known series, -> ``horizon`` values ahead). ``SCHEDULES`` says
how each ``--scheduler`` is parameterised from the run's length.

Keys (the names of ``config.json`` in a run directory, and of the command-line options with
``_`` for ``-``):

=================  ===============================================================================
model              a registered model (``fv.models.list_models()``)
model_options      keyword arguments of the model's constructor (``--model-option KEY=VALUE``)
dataset            a known name: ``fashion-mnist``, ``mnist``, ``cifar10``, ``cifar100``, or a toy
                   set: ``circle``, ``xor``, ``gauss``, ``spiral``; or the (absolute) path of a
                   directory of images (``ImageFolder``: one folder per class, or ``train/``
                   and ``test/`` of them) or of a ``.csv`` file (``CSVDataset``): anything
                   ``fv.data.open_dataset`` opens (``fv.data.registry``), regression sets aside
data_options       the data set's options (``--data-option KEY=VALUE``, values kept as strings):
                   ``label`` (cifar100), ``size``, ``mode`` (folders), ``label_column``,
                   ``feature_columns``, ``header``, ``delimiter`` (CSV), ``test_fraction`` and
                   ``seed`` of the held-out test split (folders without ``test/``, CSV)
epochs             epochs to train
batch_size         mini-batch size (1: on-line learning)
eval_batch_size    batch size for validation and test (no effect on the results)
optimizer          ``sgd``, ``momentum`` (SGD with momentum), ``adam``, ``adamw``, ``rmsprop``
lr                 learning rate (OneCycle's peak rate)
momentum           the momentum of the ``momentum`` optimizer; ``sgd``/``rmsprop`` use none unless
                   ``--momentum`` is given; Adam(W) has none (its beta1 plays that role)
weight_decay       the optimizer's weight decay (decoupled for AdamW)
scheduler          ``none``, ``step``, ``multistep``, ``cosine``, ``onecycle``, ``plateau``
scheduler_interval ``batch`` or ``epoch``: when ``onecycle``/``cosine`` step (the others always
                   step per epoch)
augment            ``--augment`` string (``fv.data.parse_augment``): ``flip``, ``flip,crop=2``, ...
tta                test-time augmentation of the test set: ``none`` or ``flip`` (each image scored
                   by the mean softmax of it and its mirror image; the plain score is kept too)
label_smoothing    classification: the cross-entropy's target mixed with the uniform distribution
                   (``F.cross_entropy(label_smoothing=...)``; the validation loss uses it too)
l1, l2             the lecture's penalties on the weights: Cost = Loss + alpha * sum |w| (or w^2)
dropout            None, or the p of every Dropout layer
val_split          fraction of the training set held out for validation (0: none)
stratify           keep each class's share in the validation split
seed               seeds the weights, the split, the shuffling and the augmentation
threads            BLAS threads (``fv.set_num_threads``)
limit_train        use only this many training images (None: all), for quick runs
limit_test         evaluate on only this many test images (None: all)
toy_n, toy_noise   toy sets: points in the training and in the test set; Playground's noise / 100
window, horizon    forecasting: past values a window holds; values ahead it forecasts
=================  ===============================================================================
"""
from __future__ import annotations

import copy
import os

from .data import DATASETS

__all__ = ["DEFAULT_RECIPE", "TOY_RECIPE", "FORECAST_RECIPE", "FORECAST_WINDOWS", "MODEL_RECIPES",
           "NAMED_RECIPES", "SCHEDULES", "recipe_for"]

DEFAULT_RECIPE = {
    "model": "cnn_bn",
    "model_options": {"width": 16},
    "dataset": "fashion-mnist",
    "epochs": 5,
    "batch_size": 128,
    "eval_batch_size": 500,
    "optimizer": "adamw",
    "lr": 3e-3,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "scheduler": "onecycle",
    "scheduler_interval": "batch",
    "augment": "flip",
    "tta": "none",
    "label_smoothing": 0.0,
    "l1": 0.0,
    "l2": 0.0,
    "dropout": None,
    "val_split": 0.1,
    "stratify": True,
    "seed": 0,
    "threads": 2,
    "limit_train": None,
    "limit_test": None,
    "toy_n": 500,
    "toy_noise": 0.1,
}

# For feature vectors (the 2-D toy sets, CSV tables) these values replace DEFAULT_RECIPE's
# (options given on the command line still win).
TOY_RECIPE = {
    "model": "mlp",
    "model_options": {"hidden": [32, 32]},
    "epochs": 60,
    "batch_size": 16,
    "lr": 1e-2,
    "weight_decay": 0.0,
    "augment": "none",
}

# For forecasting (--task forecast; the series co2 and sunspots) these values replace
# DEFAULT_RECIPE's; the window is FORECAST_WINDOWS' for a known series (a year of CO2's weeks, two
# solar cycles of sunspot years), else FORECAST_RECIPE's.
FORECAST_RECIPE = {
    "model": "lstm_forecaster",
    "model_options": {"hidden": 32},
    "epochs": 30,
    "batch_size": 32,
    "lr": 3e-3,
    "weight_decay": 0.0,
    "augment": "none",
    "window": 24,
    "horizon": 1,
}
FORECAST_WINDOWS = {"co2": 52, "sunspots": 22}

# A character-level language model (--task language_model, --model char_lstm|char_gru|char_rnn,
# --text FILE): its own recipe, not laid over DEFAULT_RECIPE (no images, no augmentation, no
# test set). dataset "stdlib" is the Python standard library's sources (foveanet.data.text;
# max_chars None: its 2,000,000-character cap, or the whole --text file); bptt is the window of
# truncated back-propagation through time; steps_per_epoch None: an epoch is one pass over the
# training text; clip_grad_norm clips the gradient's norm before every update; val_split is the
# last part of the text, by position. The options are read by foveanet.cli.train_language.
LANGUAGE_MODEL_RECIPE = {
    "task": {"name": "language_model"},
    "model": "char_lstm",
    "model_options": {"embedding_dim": 64, "hidden": 256, "layers": 2},
    "dropout": None,
    "dataset": "stdlib",
    "max_chars": None,
    "bptt": 100,
    "steps_per_epoch": None,
    "epochs": 5,
    "batch_size": 32,
    "optimizer": "adam",
    "lr": 2e-3,
    "momentum": None,
    "weight_decay": 0.0,
    "scheduler": "cosine",
    "scheduler_interval": "batch",
    "clip_grad_norm": 5.0,
    "l1": 0.0,
    "l2": 0.0,
    "val_split": 0.1,
    "seed": 0,
    "threads": 2,
}
__all__ += ["LANGUAGE_MODEL_RECIPE"]

# The networks that output images (``foveanet train --task autoencode|denoise|segment|vae|gan``,
# ``cli/train_images.py``): per task, the model, its options and the optimisation. Fashion-MNIST
# in [0, 1] for all but segmentation, which trains on Fashion scenes (``data.scenes``). ``noise``:
# what a denoiser's inputs get (``data.transforms.parse_noise``); ``classifier``: the run
# directory of a Fashion-MNIST classifier whose features measure generated images (the Frechet
# distance "FID (cnn_bn features)") and which recognises class-conditional samples.
IMAGE_TASK_COMMON = {
    "dataset": "fashion-mnist", "data_options": {}, "limit_train": None, "limit_test": None,
    "val_split": 0.1, "optimizer": "adam", "lr": 1e-3, "momentum": None, "weight_decay": 0.0,
    "scheduler": "none", "scheduler_interval": "epoch", "seed": 0, "threads": 2,
}
IMAGE_TASK_RECIPES = {
    "autoencode": {"model": "conv_ae", "model_options": {"bottleneck": 32}, "epochs": 5,
                   "batch_size": 128},
    "denoise": {"model": "conv_ae", "model_options": {"bottleneck": 128}, "epochs": 5,
                "batch_size": 128, "noise": "gaussian=0.3"},
    "segment": {"model": "segnet_small", "model_options": {}, "dataset": "fashion-scenes",
                "epochs": 5, "batch_size": 32, "loss": "ce", "class_weights": "none"},
    "vae": {"model": "vae", "model_options": {"latent": 16}, "epochs": 10, "batch_size": 128},
    "gan": {"model": "dcgan", "model_options": {"latent": 100, "width": 64}, "epochs": 10,
            "batch_size": 128, "lr": 2e-4, "betas": [0.5, 0.999], "conditional": False,
            "val_split": 0.0, "classifier": None},
}
__all__ += ["IMAGE_TASK_COMMON", "IMAGE_TASK_RECIPES"]

# Models that learn by a rule of their own replace some defaults (options given on the command
# line still win). The perceptron learns by Rosenblatt's rule: plain SGD with lr 1 on
# E = 1/2 sum (y - d)^2 through its straight-through step (see models/perceptron.py), on-line
# (one sample per step), without the schedule, decay or augmentation of the CNN recipe.
MODEL_RECIPES = {
    "perceptron": {"model_options": {}, "optimizer": "sgd", "lr": 1.0, "batch_size": 1,
                   "weight_decay": 0.0, "scheduler": "none", "augment": "none", "epochs": 2},
}

# Named recipes (``foveanet train --recipe NAME``): values laid over the data set's recipe (and a
# model's own), options given on the command line still winning. ``fashion95``: the run to >= 95%
# test accuracy on Fashion-MNIST within two hours on a 2-core machine (docs/MODELS.md, "Towards
# 95% on Fashion-MNIST"; its PyTorch twin: benchmarks/fashion_recipe_torch.py --recipe fashion95).
NAMED_RECIPES = {
    "fashion95": {"model": "cnn_bn", "model_options": {"width": 40}, "epochs": 30,
                  "augment": "flip,crop=2,erase=0.5", "tta": "flip", "lr": 3e-3,
                  "weight_decay": 0.05, "label_smoothing": 0.1},
}

# How each --scheduler is built; E is the number of epochs the schedule was planned for and S
# the number of batches per epoch.
SCHEDULES = {
    "step": {"step_size_fraction": 1 / 3, "gamma": 0.1},        # StepLR(step_size=max(1, E/3))
    "multistep": {"milestones": [0.5, 0.75], "gamma": 0.1},     # MultiStepLR at E/2 and 3E/4
    "cosine": {"eta_min": 0.0},                                 # CosineAnnealingLR(T_max=E or E*S)
    "onecycle": {"pct_start": 0.3, "div_factor": 25.0,          # OneCycleLR(max_lr=lr, E*S steps)
                 "final_div_factor": 1e4},
    "plateau": {"factor": 0.1, "patience": 2},                  # ReduceLROnPlateau on val_loss
}


def _is_table(name: str) -> bool:
    """Whether ``name`` is a CSV file (a path: its case is kept), by its ending alone: the recipe
    does not depend on whether the file is there yet."""
    return name.strip().lower().endswith(".csv")


def _is_path(name: str) -> bool:
    """Whether ``name`` names a file or directory rather than a known data set (known names are
    lower-cased; paths keep their case). A known name wins over a directory of that name, as in
    ``fv.data.open_dataset``."""
    if name.strip().lower().replace("_", "-") in DATASETS:
        return False
    return _is_table(name) or "/" in name or os.sep in name or os.path.isdir(name)


def recipe_for(dataset: str | None = None, model: str | None = None,
               task: str | None = None, recipe: str | None = None) -> dict:
    """A deep copy of the recipe for ``dataset``: ``DEFAULT_RECIPE``, with ``TOY_RECIPE`` laid
    over it for feature vectors (the toy sets, a ``.csv`` file), or ``FORECAST_RECIPE`` for
    ``task='forecast'``, ``NAMED_RECIPES[recipe]`` over that, and ``MODEL_RECIPES[model]`` over
    that for models with a learning rule of their own. A known name is lower-cased; a path is
    kept as it is. ValueError for a ``recipe`` that is not one of ``NAMED_RECIPES``."""
    named = None
    if recipe is not None:
        recipe = str(recipe).strip().lower()
        if recipe not in NAMED_RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; the named recipes are: "
                             f"{', '.join(sorted(NAMED_RECIPES))}")
        named = {**copy.deepcopy(NAMED_RECIPES[recipe]), "recipe": recipe}
    out = copy.deepcopy(DEFAULT_RECIPE)
    given = dataset or out["dataset"]
    name = given if _is_path(given) else given.lower()
    if task == "forecast":
        out.update(copy.deepcopy(FORECAST_RECIPE))
        out["window"] = FORECAST_WINDOWS.get(name, out["window"])
    elif name in ("circle", "xor", "gauss", "spiral") or _is_table(name):
        out.update(copy.deepcopy(TOY_RECIPE))
    if named is not None:
        out.update(named)
    if model is not None and model.lower().replace("-", "_") in MODEL_RECIPES:
        out.update(copy.deepcopy(MODEL_RECIPES[model.lower().replace("-", "_")]))
        out["model"] = model
    if dataset is not None:
        out["dataset"] = name
    return out
