"""``foveanet train``: resolve the configuration from the recipe and the options, train in a run
directory (or continue one with ``--resume``), then test the best weights and write the report.

The configuration is ``foveanet.recipes.recipe_for(dataset, model)`` with the options given laid
over it (``resolve_config``); it is printed first and saved as ``RUN_DIR/config.json``
(``foveanet.train.run``). Determinism: the weights are initialised from ``seed`` (the global
generator), the training subset (``--limit-train``) and the validation split are drawn from their
own generators seeded from ``seed``, and the training loader shuffles and augments from another
one; the checkpoint stores every generator's state, so ``--resume`` after an interruption (even
``kill -9``) ends with the same weights, bit for bit, as a run that was never interrupted.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from ..backend import set_num_threads
from ..data import DATASETS as KNOWN_DATASETS
from ..data import REGRESSION, DatasetError
from ..data.registry import resolve
from ..data.series import SERIES, is_series_name
from ..optim import OPTIMIZERS, SCHEDULERS
from ..recipes import DEFAULT_RECIPE, NAMED_RECIPES, SCHEDULES, recipe_for
from ..train import Trainer, tasks
from ..train.evaluation import TTA_MODES, compute_test_metrics, predict_loader
from ..train.forecast import (Forecast, forecast_metrics, is_forecast, predict_forecast,
                              series_option)
from ..train.run import (BEST_FILE, IMAGE_DATASETS, TOY_DATASETS, ConfigError, augmentation,
                         build_model,
                         build_optimizer, build_scheduler, canonical_model, check_data_options,
                         check_model_fits, check_model_options, data_files,
                         data_files_note, data_info, data_kind, dataset_classes, describe_data,
                         feature_names, jsonable_options, load_test,
                         load_train_val, load_weights, make_loader, model_record,
                         regression_message, transfer_source, write_results)
from .common import (Formatter, UsageError, add_observers, fit_run, fraction, momentum,
                     nonneg_float, nonneg_int, observers, open_run, out, record_command, parse_data_options,
                     parse_model_options, positive_float, positive_int, probability, run_report,
                     takes_points, usage_text, version)
from . import train_images, train_language
from .distributed import Distributed
from .distributed import add_arguments as add_distributed_arguments

# the known names --dataset trains on: the registry's, less the regression sets and the series
CLASSIFICATION_SETS = tuple(n for n in KNOWN_DATASETS if n not in REGRESSION and n not in SERIES)
# what --task trains: classifiers (the default), forecasters (a series: --dataset co2, sunspots
# or FILE.csv)
TASKS = ("classification", "forecast", "language_model",  # language_model: train_language.py
         "autoencode", "denoise", "segment", "vae", "gan")  # train_images.py
# options of `train` that are not part of a run's configuration: they may differ on --resume
ENVIRONMENT_OPTIONS = ("data_dir", "download", "no_progress", "resume", "out", "tensorboard",
                       "save_kernels", "distributed", "sync_bn", "comm_timeout")

EPILOG = """\
examples:
  foveanet train                                 the default recipe on Fashion-MNIST
  foveanet train --download                      ... downloading Fashion-MNIST if needed
  foveanet train --model mlp --model-option hidden=256,256 --optimizer momentum --lr 0.05 \\
                 --scheduler cosine --epochs 10 --dropout 0.2
  foveanet train --model lenet5 --augment flip,crop=2 --l2 1e-4 --out runs/lenet
  foveanet train --dataset spiral                a 2-D toy set (an MLP on (x, y) points)
  foveanet train --dataset cifar10 --data-dir ~/data     CIFAR-10 (cifar100: --data-option
                                                 label=coarse for its 20 super-classes)
  foveanet train --dataset photos/ --data-option size=64  a folder of images, one folder per
                                                 class (or train/ and test/ of them)
  foveanet train --dataset iris.csv --data-option label_column=species   a CSV table
  foveanet train --limit-train 2000 --limit-test 500 --epochs 1     a quick smoke run
  foveanet train --resume runs/lenet --epochs 20 continue (and extend) an interrupted run
  foveanet train --dataset co2 --window 52 --horizon 4    forecast weekly CO2 4 weeks ahead
  foveanet train --dataset sales.csv --task forecast --data-option column=units   a CSV column

--dataset takes a known name (fashion-mnist, mnist, cifar10, cifar100; the toy sets circle,
xor, gauss, spiral), a directory of images (ImageFolder: one sub-folder per class, or train/
and test/ (or val/) sub-folders of them; the models take square images: --data-option size=N
resizes and crops every image to N x N, and is needed when the images differ in size) or a
.csv file (CSVDataset: numeric feature columns and a label column, by default the last; class
labels may be words). A folder without test/ and a CSV file are split by --data-option
test_fraction (default 0.2, stratified, drawn from --data-option seed, default 0).
--data-option KEY=VALUE (repeatable) sets the data set's options: label=fine|coarse (cifar100);
size=N, mode=RGB|L, test_fraction, seed (folders); label_column, feature_columns=a,b,
header=auto|true|false, delimiter, test_fraction, seed (CSV); n, noise (toy sets). Regression
data (reg-plane, reg-gauss, a CSV with task=regression) is trained from Python:
fv.train.Trainer(model, optimizer, task='regression').

Forecasting (--task forecast; implied by the series co2 and sunspots, which statsmodels ships:
pip install 'foveanet[timeseries]'): windows of --window past values -> the next --horizon
values, split in time (training, then --val-split for validation, then --data-option
test_fraction, default 0.2, for the test; never shuffled across a boundary), normalised by the
training part's mean and deviation. A CSV series is one column (--data-option column=NAME or
an index; default the last), with optional time_column=NAME (numbers or ISO dates, for the
plot), missing=interpolate (fill empty cells linearly; otherwise they are errors) and
delimiter. The report sets the test MAE and RMSE (in the series' units) beside those of the
naive forecast (the window's last value) and plots the forecasts against the truth.

Defaults come from foveanet.recipes.DEFAULT_RECIPE (the CNN, for every image data set, at its
channels and size; TOY_RECIPE, a small MLP without augmentation, for the toy sets and CSV
tables); the resolved configuration is printed first and saved as RUN_DIR/config.json. The
test set is evaluated with the weights of the epoch with the lowest validation loss
(best.safetensors).
--resume continues from the run's last checkpoint with its config.json; other options must
agree with it, except --epochs (which may extend the run), --data-dir, --download and
--no-progress. A resumed run ends bit-identical to an uninterrupted one.
"""


def add_parser(sub):
    R = DEFAULT_RECIPE
    S = argparse.SUPPRESS  # options are absent unless given (to tell given from default)
    t = sub.add_parser("train", help="train a model (default: the recipe on Fashion-MNIST)",
                       description="Train a model and write a run directory with checkpoints, "
                       "history, report and plots.", epilog=EPILOG,
                       formatter_class=Formatter, argument_default=S)
    g = t.add_argument_group("model")
    g.add_argument("--recipe", metavar="NAME", choices=sorted(NAMED_RECIPES),
                   help="start from a named recipe (foveanet.recipes.NAMED_RECIPES: "
                   f"{', '.join(sorted(NAMED_RECIPES))}); the options given still win")
    g.add_argument("--model", metavar="NAME", help=f"a registered model (default {R['model']}; "
                   "see 'foveanet models')")
    g.add_argument("--model-option", metavar="KEY=VALUE", action="append", dest="model_option",
                   help="a keyword of the model's constructor, e.g. width=8 or hidden=256,256 "
                   "(repeatable)")
    g.add_argument("--from", metavar="SOURCE", dest="from_",
                   help="transfer learning: start from an ONNX file or a run directory instead of "
                   "a fresh --model")
    g.add_argument("--freeze", metavar="NAMES",
                   help="with --from: freeze 'features' (all but the new head) or the listed "
                   "parameter-name prefixes, comma-separated")
    g.add_argument("--num-classes", type=positive_int, metavar="N", dest="num_classes",
                   help="with --from: outputs of the new classifier head (default: the data "
                   "set's classes)")
    g.add_argument("--dropout", type=probability, metavar="P",
                   help="set the p of every Dropout layer (or the model's dropout option)")
    g = t.add_argument_group("data")
    g.add_argument("--dataset", type=dataset_spec, metavar="SPEC",
                   help=f"a known name ({', '.join(CLASSIFICATION_SETS)}), a directory of images "
                   f"(one folder per class), a .csv file, or a series to forecast "
                   f"({', '.join(SERIES)}) (default {R['dataset']})")
    g.add_argument("--data-option", metavar="KEY=VALUE", action="append", dest="data_option",
                   help="an option of the data set, e.g. size=32, label=coarse, label_column=y, "
                   "test_fraction=0.25 (repeatable; see below)")
    g.add_argument("--data-dir", metavar="DIR",
                   help="where the data set files are (searched first)")
    g.add_argument("--download", action="store_true",
                   help="download the data set (with checksums) when it is not found")
    g.add_argument("--augment", metavar="SPEC",
                   help=f"augmentation, e.g. flip,crop=2,rotate=10 or none "
                   f"(default {R['augment']!r})")
    g.add_argument("--tta", choices=TTA_MODES,
                   help="test-time augmentation: flip scores each test image by the mean softmax "
                   f"of it and its mirror image (the plain score is reported too; default "
                   f"{R['tta']})")
    g.add_argument("--val-split", type=fraction, metavar="F", dest="val_split",
                   help=f"validation fraction, stratified (default {R['val_split']}; 0: none)")
    g.add_argument("--limit-train", type=positive_int, metavar="N", dest="limit_train",
                   help="train on a random subset of N images (quick runs)")
    g.add_argument("--limit-test", type=positive_int, metavar="N", dest="limit_test",
                   help="test on a random subset of N images")
    g = t.add_argument_group("task and forecasting")
    g.add_argument("--task", choices=TASKS,
                   help="classification (default) or forecast (a series: co2, sunspots or one "
                   "column of a .csv file; implied by co2 and sunspots); language_model: see "
                   "'language model' below; autoencode, denoise, segment, vae, gan: see 'image-output "
                   "tasks' below")
    g.add_argument("--window", type=positive_int, metavar="W",
                   help="forecast: past values each window holds (default 52 for co2, 22 for "
                   "sunspots, else 24)")
    g.add_argument("--horizon", type=positive_int, metavar="H",
                   help="forecast: values ahead each window forecasts (default 1)")
    train_language.add_arguments(t)  # --text, --bptt, ... (--task language_model)
    train_images.add_arguments(t)  # --noise, --latent, ... (--task autoencode ... gan)
    g = t.add_argument_group("optimisation")
    g.add_argument("--epochs", type=positive_int, metavar="N", help=f"default {R['epochs']}")
    g.add_argument("--batch-size", type=positive_int, metavar="N", dest="batch_size",
                   help=f"default {R['batch_size']}")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help=f"default {R['optimizer']}")
    g.add_argument("--lr", type=positive_float, metavar="X",
                   help=f"learning rate (OneCycle's peak; default {R['lr']:g})")
    g.add_argument("--momentum", type=momentum, metavar="M",
                   help=f"momentum of sgd/momentum/rmsprop ('momentum' default {R['momentum']})")
    g.add_argument("--weight-decay", type=nonneg_float, metavar="X", dest="weight_decay",
                   help=f"the optimizer's weight decay (default {R['weight_decay']:g})")
    g.add_argument("--scheduler", choices=("none",) + SCHEDULERS,
                   help=f"learning-rate schedule (default {R['scheduler']})")
    g.add_argument("--label-smoothing", type=fraction, metavar="EPS", dest="label_smoothing",
                   help="classification: mix the cross-entropy's target with the uniform "
                   f"distribution (default {R['label_smoothing']:g})")
    g.add_argument("--l1", type=nonneg_float, metavar="ALPHA", help="L1 penalty: Cost = Loss + "
                   "ALPHA * sum |w|")
    g.add_argument("--l2", type=nonneg_float, metavar="ALPHA", help="L2 penalty: Cost = Loss + "
                   "ALPHA * sum w^2")
    g = t.add_argument_group("run")
    g.add_argument("--seed", type=nonneg_int, metavar="N", help=f"default {R['seed']}")
    g.add_argument("--threads", type=positive_int, metavar="N", help=f"BLAS threads (default "
                   f"{R['threads']})")
    g.add_argument("--out", metavar="DIR", help="run directory (default runs/MODEL-DATASET-TIME)")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    g.add_argument("--no-progress", action="store_true", dest="no_progress",
                   help="no progress bar (one line per epoch)")
    add_observers(g)
    add_distributed_arguments(t.add_argument_group("several processes (MPI)"))
    return t


# ------------------------------------------------------------------------------- data sets
def dataset_spec(text):
    """``--dataset``: the canonical name of a known data set, or the absolute path of a directory
    or .csv file (config.json records it, so that the run finds its data from anywhere)."""
    try:
        kind, key = resolve(text)
    except DatasetError as exc:
        message = str(exc)
        if message.startswith("unknown data set"):
            message = (f"invalid choice: {text!r} (give a known name: "
                       f"{', '.join(CLASSIFICATION_SETS)}; a directory with "
                       "one folder of images per class; a .csv file; or a series to forecast: "
                       f"{', '.join(SERIES)})")
        raise argparse.ArgumentTypeError(message) from None
    return os.path.abspath(key) if kind in ("folder", "csv") else key


def dataset_label(name: str) -> str:
    """A data set's name for a run directory: a path's last part (without .csv)."""
    if name in KNOWN_DATASETS:
        return name
    base = os.path.basename(os.path.normpath(name))
    return base[:-4] if base.lower().endswith(".csv") else base


def is_table(name: str) -> bool:
    """Whether ``name`` (a --dataset value) is a CSV file: feature vectors, as the toy sets."""
    return name not in KNOWN_DATASETS and name.lower().endswith(".csv")


def _augment_given(spec) -> bool:
    return bool(spec) and str(spec).strip().lower() not in ("none", "off", "no")


def toy_options(name, options: dict) -> dict:
    """``--data-option`` n / noise of a toy set as the configuration's ``toy_n`` / ``toy_noise``
    (the keys those runs have always had)."""
    cfg = {}
    for key, value in options.items():
        item = f"{key}={value}"
        if key == "seed":
            raise UsageError(f"--data-option {item}: the toy sets are drawn from --seed (the "
                             "test set from seed + 1)")
        if key not in ("n", "noise"):
            raise UsageError(f"--data-option {item}: {name} has no such option; it takes n, noise")
        try:
            v = int(value) if key == "n" else float(value)
        except ValueError:
            v = None
        if key == "n" and (v is None or v < 1):
            raise UsageError(f"--data-option {item}: expected a positive integer (points in each "
                             "of the training and test sets)")
        if key == "noise" and (v is None or not 0.0 <= v <= 0.5):
            raise UsageError(f"--data-option {item}: expected a number from 0 to 0.5 "
                             "(Playground's noise / 100)")
        cfg["toy_n" if key == "n" else "toy_noise"] = v
    return cfg


def data_options_config(name, items, task: str = "classification") -> dict:
    """The configuration entries of ``--data-option`` items for data set ``name``: ``toy_n`` /
    ``toy_noise`` for a toy set, nothing for Fashion-MNIST/MNIST (they take none), else
    ``data_options`` (checked against what the data set, or for ``task='forecast'`` the series,
    takes; kept as strings)."""
    options = parse_data_options(items)
    if name in TOY_DATASETS:
        return toy_options(name, options)
    if name in IMAGE_DATASETS:
        check_data_options(name, options)  # refuses any: these sets take none
        return {}
    if task == "forecast":
        for key, value in options.items():
            try:
                series_option(name, key, value)
            except (ValueError, TypeError) as exc:
                raise ConfigError(str(exc), "data_options", f"{key}={value}") from None
        return {"data_options": options}
    return {"data_options": check_data_options(name, options)}


def run_task(given: dict) -> str:
    """What a new run trains, from the options given: 'forecast' (--task forecast, or the series
    co2 and sunspots) or 'classification'. UsageError for --task or --window/--horizon that do
    not fit the data set."""
    name = str(given.get("dataset") or DEFAULT_RECIPE["dataset"])
    task = given.get("task") or ("forecast" if is_series_name(name) else "classification")
    if task == "forecast" and not (is_series_name(name) or is_table(name)):
        raise UsageError(f"--task forecast: --dataset {dataset_label(name)} is not a series: give "
                         f"{', '.join(SERIES)} or a .csv file (its column: --data-option "
                         "column=NAME)")
    if task != "forecast":
        if is_series_name(name):
            raise UsageError(f"--task {task}: {name} is a series: forecast it (--task forecast)")
        for opt in ("window", "horizon"):
            if opt in given:
                raise UsageError(f"--{opt} applies to forecasting: give --task forecast (a series: "
                                 f"{', '.join(SERIES)} or a .csv file)")
    return task


def check_forecast(cfg, given) -> None:
    """UsageError for options that a forecasting run does not take."""
    for opt in ("limit_train", "limit_test"):
        if opt in given:
            raise UsageError(f"--{opt.replace('_', '-')}: a series is split in time, not sampled; "
                             "shorten it with --val-split and --data-option test_fraction=F")
    if _augment_given(cfg["augment"]):
        raise UsageError(f"--augment {cfg['augment']!r}: augmentation applies to image data sets, "
                         f"not to the windows of a series (use --augment none)")


def check_classification(name, data_options) -> None:
    """UsageError for regression data, which the command line does not train (yet)."""
    if name in REGRESSION or (is_table(name) and
                              str((data_options or {}).get("task", "")).strip() == "regression"):
        raise UsageError(f"--dataset {name}: {regression_message(name)}")


def dataset_config(cfg) -> dict:
    """``classes``, ``input_shape``, ``num_classes`` of the configured data set, read as the run
    will read it; UsageError for a --data-option value the data set refuses, and for what the
    models cannot take (regression data, images of several sizes or not square) and an option
    would fix. Other problems of the data (a bad CSV row, an unreadable image) stay
    DatasetErrors: runtime errors. A forecasting run's also include ``series`` (``foveanet.train.
    run.forecast_info``)."""
    name = cfg["dataset"]
    if is_forecast(cfg):
        try:
            return data_info(cfg)
        except ConfigError as exc:
            raise UsageError(usage_text(exc)) from None
    if name in IMAGE_DATASETS or name in TOY_DATASETS:
        return data_info(cfg)
    kind = data_kind(name)
    options = cfg.get("data_options") or {}
    try:
        info = describe_data(cfg)
    except DatasetError as exc:
        text = str(exc)
        if kind == "folder" and "not all one size" in text:
            raise UsageError(f"--dataset {name}: {text.split(': ', 1)[-1].split(': give')[0]}: "
                             "give --data-option size=N to resize and crop every image to N x N"
                             ) from None
        # the registry says "data set SPEC: ..." of a value its data set refused (size=0); the
        # CSV reader names the option of a column that is not there (label_column)
        wrapped = f"data set {name!r}: "
        named = [k for k in options if k in text]
        if options and (text.startswith(wrapped) or named):
            items = " ".join(f"{k}={options[k]}" for k in (named or options))
            raise UsageError(f"--data-option {items}: {text.removeprefix(wrapped)}") from None
        raise
    if info["task"] != "classification":
        raise UsageError(f"--dataset {name}: {regression_message(name)}")
    shape = info["input_shape"]
    if len(shape) == 3 and shape[1] != shape[2]:
        if "size" in options:
            raise UsageError(f"--data-option size={options['size']}: the models take square "
                             f"images: give one number (e.g. size={min(shape[1:])})")
        raise UsageError(f"--dataset {name}: the images are {shape[2]}x{shape[1]}, and the models "
                         "take square images: give --data-option size=N to resize and crop them "
                         "to N x N")
    return {k: info[k] for k in ("classes", "input_shape", "num_classes")}


# ------------------------------------------------------------------------- configuration
def resolve_config(given: dict) -> dict:
    """The full configuration of a new run from the options given on the command line (``given``:
    only the options that were given) and the recipe for the data set."""
    task = run_task(given)
    recipe = recipe_for(given.get("dataset"), given.get("model"), task, given.get("recipe"))
    # regression data first: no other option matters for a data set that is refused
    if task != "forecast":
        check_classification(recipe["dataset"], parse_data_options(given.get("data_option")))
    cfg = {k: given.get(k, v) for k, v in recipe.items()}
    if task == "forecast":
        check_forecast(cfg, given)
        # the task's offset and scale are the training part's, known once the series is read
        cfg["task"] = {"name": "forecast", "horizon": cfg["horizon"]}
    source = given.get("from_")
    if source is None:
        for opt in ("freeze", "num_classes"):
            if opt in given:
                raise UsageError(f"--{opt.replace('_', '-')} applies to transfer learning: give "
                                 "the model to start from with --from")
        cfg["model"] = canonical_model(cfg["model"])
        recipe_model = canonical_model(recipe["model"])
        options = dict(recipe["model_options"]) if cfg["model"] == recipe_model else {}
        options.update(parse_model_options(given.get("model_option")))
        cfg["model_options"] = jsonable_options(check_model_options(cfg["model"], options))
    else:
        for opt in ("model", "model_option", "dropout"):
            if opt in given:
                raise UsageError(f"--{opt.replace('_', '-')} and --from exclude each other: the "
                                 "model is the one --from names")
        cfg.update(transfer_source(source))
        cfg["freeze"] = given.get("freeze")
        cfg["head_classes"] = given.get("num_classes")
    toy = cfg["dataset"] in TOY_DATASETS
    if toy and cfg["augment"] and str(cfg["augment"]).strip().lower() not in ("none", "off", "no"):
        raise UsageError(f"--augment {cfg['augment']!r}: augmentation applies to image data sets, "
                         f"not to the 2-D points of {cfg['dataset']!r} (use --augment none)")
    if is_table(cfg["dataset"]) and _augment_given(cfg["augment"]):
        raise UsageError(f"--augment {cfg['augment']!r}: augmentation applies to image data sets, "
                         f"not to the feature vectors of {dataset_label(cfg['dataset'])!r} (use "
                         "--augment none)")
    try:
        cfg.update(data_options_config(cfg["dataset"], given.get("data_option"), task))
    except ConfigError as exc:
        raise UsageError(usage_text(exc)) from None
    augmentation(cfg["augment"])  # a bad spec is a usage error now, not after loading data
    if cfg.get("tta", "none") != "none" and (toy or is_table(cfg["dataset"]) or task == "forecast"):
        raise UsageError(f"--tta {cfg['tta']}: test-time augmentation mirrors images; "
                         f"{dataset_label(cfg['dataset'])!r} is not an image data set")
    if cfg.get("label_smoothing") and task == "forecast":
        raise UsageError(f"--label-smoothing {cfg['label_smoothing']:g} applies to "
                         "classification; a forecaster's loss is the mean squared error")
    # momentum: the recipe's for the 'momentum' optimizer; otherwise only when given
    opt = cfg["optimizer"]
    if "momentum" in given:
        if opt in ("adam", "adamw"):
            raise UsageError(f"--momentum does not apply to {opt} (its beta1 plays that role); use "
                             "--optimizer sgd, momentum or rmsprop")
        cfg["momentum"] = given["momentum"]
    else:
        cfg["momentum"] = (recipe["momentum"] if opt == "momentum" else
                           0.0 if opt in ("sgd", "rmsprop") else None)
    if cfg["scheduler"] not in ("onecycle", "cosine"):
        cfg["scheduler_interval"] = "epoch"
    cfg["schedule_epochs"] = cfg["epochs"]
    cfg["data_dir"] = os.path.abspath(given["data_dir"]) if given.get("data_dir") else None
    return cfg


def config_lines(cfg: dict, given: dict) -> list:
    """The configuration as printed before training, options from the command line marked."""
    keys = ["recipe"] if cfg.get("recipe") else []
    keys += ["model", "model_options", "dropout", "dataset", "data_dir", "limit_train", "limit_test",
            "val_split", "augment", "tta", "epochs", "batch_size", "optimizer", "lr", "momentum",
            "weight_decay", "scheduler", "scheduler_interval", "label_smoothing", "l1", "l2", "seed",
            "threads"]
    if cfg["dataset"] in TOY_DATASETS:
        keys += ["toy_n", "toy_noise"]
    if "data_options" in cfg:
        keys.insert(keys.index("data_dir"), "data_options")
    if is_forecast(cfg):
        keys[keys.index("dataset"):keys.index("dataset") + 1] = ["task", "dataset", "window",
                                                                 "horizon"]
        keys = [k for k in keys if k not in ("limit_train", "limit_test", "label_smoothing")]
    flag = {"model_options": "model_option", "data_options": "data_option"}
    # a toy set's --data-option n / noise set toy_n / toy_noise
    toy_given = {f"toy_{k}" for k in parse_data_options(given.get("data_option"))}
    lines = []
    for k in keys:
        v = cfg.get(k)
        if k == "task" and isinstance(v, dict):
            v = v.get("name")
        src = "  (command line)" if flag.get(k, k) in given or k in toy_given else ""
        if not src and cfg.get("recipe") and k in NAMED_RECIPES.get(cfg["recipe"], {}):
            src = f"  (recipe {cfg['recipe']})"
        lines.append(f"  {k:<19}{v if not isinstance(v, float) else f'{v:g}'}{src}")
    return lines


def default_run_dir(cfg) -> str:
    base = os.path.join("runs", f"{cfg['model']}-{dataset_label(cfg['dataset'])}-"
                                f"{time.strftime('%Y%m%d-%H%M%S')}")
    path, i = base, 2
    while os.path.exists(path):
        path, i = f"{base}-{i}", i + 1
    return path


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def check_resume_data_options(cfg, items) -> None:
    """``--data-option`` items given with --resume must say what the run's config.json says."""
    if cfg["dataset"] in TOY_DATASETS:
        have = {"n": cfg.get("toy_n"), "noise": cfg.get("toy_noise")}
        wanted = {("n" if k == "toy_n" else "noise"): v
                  for k, v in toy_options(cfg["dataset"], parse_data_options(items)).items()}
    else:
        have = cfg.get("data_options") or {}
        wanted = parse_data_options(items)
    for k, v in wanted.items():
        if not _same(v, have.get(k)) and str(v) != str(have.get(k)):
            was = f"{k}={have[k]}" if have.get(k) is not None else f"no {k}"
            raise UsageError(f"--data-option {k}={v} contradicts the run's config.json ({was}); "
                             "a resumed run keeps its configuration (only --epochs may change)")


def check_resume_options(cfg, given, completed):
    """Options given with --resume must agree with the run's config.json (--epochs may extend)."""
    if "out" in given:
        raise UsageError("--out cannot be combined with --resume: the run continues in its own "
                         "directory")
    for key, value in given.items():
        if key in ENVIRONMENT_OPTIONS or key == "epochs":
            continue
        if key in ("from_", "freeze", "num_classes"):
            raise UsageError(f"--{key.strip('_').replace('_', '-')} cannot be combined with "
                             "--resume: a resumed run keeps its configuration")
        if key == "data_option":
            check_resume_data_options(cfg, value)
            continue
        if key == "task":
            have = "forecast" if is_forecast(cfg) else "classification"
            if value != have:
                raise UsageError(f"--task {value} contradicts the run's config.json (a {have} "
                                 "run); a resumed run keeps its configuration (only --epochs may "
                                 "change)")
            continue
        if key == "model_option":
            for k, v in parse_model_options(value).items():
                have = cfg["model_options"].get(k)
                want = jsonable_options(check_model_options(cfg["model"], {k: v}))[k]
                if not _same(want, have):
                    raise UsageError(f"--model-option {k}={v!r} contradicts the run's config.json "
                                     f"({k}={have!r}); only --epochs may change on --resume")
            continue
        have = cfg.get(key)
        if key == "model":
            value = canonical_model(value)
        if not _same(value, have):
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"{flag} {value} contradicts the run's config.json ({key} = {have}); "
                             "a resumed run keeps its configuration (only --epochs may change)")
    if "epochs" in given:
        epochs = given["epochs"]
        if epochs < completed:
            raise UsageError(f"--epochs {epochs}: the run has already completed {completed} epochs")
        if (epochs != cfg["schedule_epochs"] and cfg["scheduler"] == "onecycle"):
            raise UsageError(f"--epochs {epochs}: this run's onecycle schedule was planned for "
                             f"{cfg['schedule_epochs']} epochs and cannot be extended")
        cfg["epochs"] = epochs


def new_run_data(cfg, train_set, test_set) -> None:
    """What a new run on a data set of the registry records once its data is read: the files
    (CIFAR), the class names as the files give them (CIFAR's batches.meta.txt, which
    ``describe_data`` does not read), a CSV table's feature columns."""
    files = {"train": data_files(train_set), "test": data_files(test_set)}
    if files["train"] or files["test"]:
        cfg["data_files"] = files
    classes = dataset_classes(train_set)
    if classes is not None and len(classes) == cfg["num_classes"]:
        cfg["classes"] = classes
    names = feature_names(train_set)
    if names is not None:
        cfg["feature_names"] = names


def forecast_lines(test: dict, where: str) -> list:
    """The summary of a forecasting run's test metrics: the model's MAE and RMSE beside the naive
    last-value forecast's on the same windows."""
    unit = f" {test['unit']}" if test.get("unit") else ""
    skill = test.get("skill")
    verdict = ("" if skill is None else f"; RMSE {100 * abs(skill):.1f}% "
               f"{'below' if skill >= 0 else 'above'} the naive forecast's")
    return [f"test MAE {test['mae']:.4g}{unit}, RMSE {test['rmse']:.4g}{unit} ({where})",
            f"naive last-value forecast on the same {test['num_samples']} windows: MAE "
            f"{test['naive_mae']:.4g}{unit}, RMSE {test['naive_rmse']:.4g}{unit}{verdict}"]


# ------------------------------------------------------------------------------- command
def command(args) -> int:
    t_start = time.perf_counter()
    given = {k: v for k, v in vars(args).items() if k != "command" and not k.startswith("_")}
    own_flow = train_language.wanted(given) or train_images.wanted(given)
    if own_flow and "recipe" in given:
        raise UsageError("--recipe names a classification recipe; the language and image-output "
                         "tasks have their own (foveanet.recipes)")
    if given.get("distributed") and own_flow:
        raise UsageError("--distributed trains classifiers and forecasters so far; the language "
                         "and image-output tasks run on one process")
    if train_language.wanted(given):  # a language model's run: its own flow
        return train_language.command(args, given, t_start)
    if train_images.wanted(given):  # a network that outputs images: its own flow
        return train_images.command(args, given, t_start)

    dist = Distributed(given)
    cfg, run_dir, resume_dir, checkpoint_exists = dist.shared(lambda: open_run(
        given, lambda g: {**(c := resolve_config(g)), **dataset_config(c)}, check_resume_options,
        default_run_dir))
    if not dist.is_main:  # rank 0 alone writes and prints; the others train quietly
        given["no_progress"] = True
    if resume_dir is not None and given.get("data_dir") is not None:
        cfg["data_dir"] = os.path.abspath(given["data_dir"])
    data_dir = cfg.get("data_dir")
    download = bool(given.get("download"))

    set_num_threads(dist.threads(int(cfg["threads"])))
    try:
        model = build_model(cfg)
        check_model_fits(model, cfg)
    except ConfigError as exc:
        if is_forecast(cfg):
            raise UsageError(f"{usage_text(exc)}\na forecaster takes windows of {cfg['window']} "
                             "values: use --model lstm_forecaster (or mlp)") from None
        if cfg["dataset"] in TOY_DATASETS:
            raise UsageError(f"{usage_text(exc)}\nthe toy sets are 2-D points: use an MLP "
                             "(--model mlp)") from None
        if len(cfg["input_shape"]) == 1:
            raise UsageError(f"{usage_text(exc)}\nthe rows of a CSV table are feature vectors: "
                             "use an MLP (--model mlp)") from None
        raise
    smoothing = float(cfg.get("label_smoothing") or 0.0)  # absent from older runs' config.json
    if smoothing and getattr(model, "loss_fn", None) is not None:
        raise UsageError(f"--label-smoothing {smoothing:g}: {cfg['model']} learns by a loss of "
                         "its own (its loss_fn), not by the cross-entropy")
    say = out if dist.is_main else (lambda *a, **k: None)
    say(f"foveanet {version()}: {'resuming' if resume_dir else 'training'} {cfg['model']} on "
        f"{cfg['dataset']}")
    say("configuration:")
    for line in config_lines(cfg, given):
        say(line)
    if dist.enabled:
        say(dist.describe())

    train_set, val_set = load_train_val(cfg, data_dir, download)
    test_set = load_test(cfg, data_dir, download)
    if resume_dir is not None:
        for split, dataset in (("train", train_set), ("test", test_set)):
            note = data_files_note(cfg, split, dataset)
            if note and dist.is_main:
                print(f"note: {note}", file=sys.stderr)
    elif cfg["dataset"] in IMAGE_DATASETS:
        cfg["data_files"] = {"train": data_files(train_set), "test": data_files(test_set)}
    elif is_forecast(cfg):  # the task's normalisation: the training part's (data.series)
        cfg["task"] = Forecast(cfg["horizon"], train_set.offset, train_set.scale).config()
    elif cfg["dataset"] not in TOY_DATASETS:
        new_run_data(cfg, train_set, test_set)
    sharded = dist.sharded(cfg, resume_dir is not None)
    if sharded:  # each rank: its shard, its share of every batch
        train_loader = make_loader(train_set, cfg, True, dist.shard_train(train_set, cfg["seed"]),
                                   dist.batch_size(int(cfg["batch_size"])))
        val_loader = make_loader(dist.shard_eval(val_set), cfg, False) \
            if val_set is not None else None
    else:
        train_loader = make_loader(train_set, cfg, True)
        val_loader = make_loader(val_set, cfg, False) if val_set is not None else None
    test_loader = make_loader(test_set, cfg, False)
    say(f"data: {len(train_set)} training, {len(val_set) if val_set is not None else 0} "
        f"validation, {len(test_set)} test {'windows' if is_forecast(cfg) else 'samples'}; "
        f"{len(train_loader)} batches per epoch")
    for note in (cfg.get("series") or {}).get("notes", []):
        say(f"note: {cfg['dataset'] if is_series_name(cfg['dataset']) else 'the series'}: {note}")
    optimizer = build_optimizer(model, cfg)
    scheduler, interval = build_scheduler(optimizer, cfg, len(train_loader), SCHEDULES)

    record_command(cfg, args, resume_dir is not None)
    task = tasks.from_config(cfg["task"]) if is_forecast(cfg) else \
        tasks.Classification(label_smoothing=smoothing) if smoothing else None
    trainer = Trainer(dist.wrap(model), optimizer, loss_fn=getattr(model, "loss_fn", None),
                      scheduler=scheduler, scheduler_interval=interval,
                      l1=cfg["l1"], l2=cfg["l2"],
                      progress="plain" if given.get("no_progress") else "auto",
                      run_dir=run_dir, model_config=model_record(cfg), model_name=cfg["model"],
                      task=task,
                      callbacks=(observers(given, run_dir) if dist.is_main else [])
                      + dist.callbacks(int(cfg["seed"]), train_loader, sharded),
                      rank=dist.rank, world_size=dist.size)
    cfg["task"] = trainer.task.config()  # what fv.load_run(...).task rebuilds
    history = fit_run(trainer, train_loader, val_loader, int(cfg["epochs"]), run_dir,
                      checkpoint_exists, cfg if dist.is_main else None, resume_dir is not None)
    if history is None:
        return 130
    if not dist.is_main:  # testing and the report: rank 0's
        return 0

    # the lecture: keep the model with the lowest validation error
    epochs_done = len(history)
    if val_loader is not None and os.path.isfile(os.path.join(run_dir, BEST_FILE)):
        which, (_, best_epoch) = "best", load_weights(model, run_dir, "best")
        best_rec = next((e for e in history if e.get("epoch") == best_epoch), None) or {}
        val_loss = best_rec.get("val_loss")
        where = f"best epoch {best_epoch} of {epochs_done}, val loss {val_loss:.4f}" \
            if val_loss is not None else f"best epoch {best_epoch} of {epochs_done}"
    else:
        which, best_epoch, val_loss = "last", trainer.epoch, None
        where = f"last epoch {epochs_done} of {epochs_done}, no validation set"
    if is_forecast(cfg):
        pred = predict_forecast(model, test_loader, trainer.task)
        test = forecast_metrics(pred, cfg["series"].get("unit", ""))
    else:
        tta = cfg.get("tta") or "none"
        pred = predict_loader(model, test_loader, keep_inputs=takes_points(cfg), tta=tta)
        test = compute_test_metrics(pred, cfg["classes"])
        if pred["plain"] is not None:  # the same pass's plain score beside it
            test["tta"] = tta
            test["without_tta"] = {k: v for k, v in compute_test_metrics(
                pred["plain"], cfg["classes"]).items() if k in ("loss", "accuracy", "top5")}
    results = {"checkpoint": which, "epoch": best_epoch, "epochs": epochs_done,
               "val_loss": val_loss, "status": history.status, "test": test}
    wall = time.perf_counter() - t_start
    train_time = sum(e.get("train_time") or 0.0 for e in history)
    seen = sum((e.get("images_per_sec") or 0.0) * (e.get("train_time") or 0.0) for e in history)
    results.update(wall_time=wall, train_time=train_time,
                   images_per_sec=seen / train_time if train_time > 0 else None)
    write_results(run_dir, results)
    run_report(run_dir, cfg, history, results, pred, model)
    if is_forecast(cfg):
        for line in forecast_lines(test, where):
            out(line)
    else:
        plain = test.get("without_tta")
        tta = f" with {test['tta']} averaging ({100 * plain['accuracy']:.2f}% without)" \
            if plain else ""
        out(f"test accuracy: {100 * test['accuracy']:.2f}%{tta} ({where})")
    out(f"run directory: {run_dir}")
    out(f"wall time: {time.perf_counter() - t_start:.1f}s (training {train_time:.1f}s, "
        f"{results['images_per_sec'] or 0:.0f} {'windows' if is_forecast(cfg) else 'images'}/s)")
    return 0
