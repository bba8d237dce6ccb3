"""Runs as a library: a ``foveanet train`` run directory, read back, rebuilt and used from Python.

::

    import foveanet as fv

    run = fv.load_run("runs/cnn_bn-fashion-mnist-20250101-120000")   # best.safetensors
    run.model                     # the network, rebuilt from config.json, in eval mode
    run.classes, run.input_shape  # ['T-shirt/top', ...], (1, 28, 28)
    run.epoch, run.history        # which epoch's weights; the per-epoch records
    run.evaluate()["accuracy"]    # on the run's own test set
    x, inverted = run.prepare_image("shirt.png")
    run.probabilities(x[None])    # (1, 10) class probabilities

A run directory holds::

    config.json            the run's configuration (below): everything needed to rebuild it
    checkpoint.json, model.safetensors, optimizer.safetensors
                           the last epoch's resumable checkpoint (foveanet.train.checkpoint)
    best.json, best.safetensors
                           the weights of the epoch with the lowest validation loss
    history.csv, history.jsonl
                           the per-epoch metrics
    results.json           the final test metrics
    report.md, curves.png, confusion_matrix.png, misclassified.png

``config.json`` is one JSON object: ``format`` ("foveanet.run") and ``format_version`` (1); the
keys of ``foveanet.recipes.DEFAULT_RECIPE`` resolved for the run (``model``, ``model_options``,
``dataset``, ``epochs``, ``optimizer``, ``lr``, ``seed``, ...); the data set's ``classes``,
``input_shape`` and ``num_classes``; ``data_options`` (the ``--data-option`` settings of a data
set opened through ``fv.data.open_dataset``: CIFAR, an image folder, a CSV file; ``dataset`` is
then the known name or the absolute path); ``feature_names`` (a CSV run's feature columns);
``data_dir`` and ``data_files`` (where the data was read);
``scheduler_interval`` and ``schedule_epochs`` (the length the schedule was planned for); for a
transfer-learning run ``from`` (an ONNX file or a run directory), ``from_kind`` (``onnx`` or
``run``), ``freeze`` and ``head_classes``; optionally ``task`` (``foveanet.train.tasks``; a run
without one is a classification run); and ``command``, ``resumed``, ``created``,
``foveanet_version``.

The model is rebuilt the way ``foveanet train`` built it: ``fv.models.create(model, **options)``
with the data set's ``num_classes`` / ``in_channels`` / ``input_size`` where the constructor takes
them, initialised from ``seed`` (``build_model`` seeds the global generator), ``dropout`` applied;
a transfer run loads its source (the ONNX file, or the source run's best or last weights),
replaces the classifier head and freezes what ``freeze`` names. Then the run's own weights are
loaded into it. Problems are ``RunError`` (a run directory that is missing, broken or does not fit
its weights, naming the directory or file) or ``ConfigError`` (a configuration naming something
impossible, naming the key).
"""
from __future__ import annotations

import os
import re

from ..autograd import no_grad
from ..backend import xp
from ..data import MNIST, Compose, DataLoader, DatasetError, FashionMNIST, Normalize, Subset
from ..data import ToyDataset, dataset_info, open_dataset, parse_augment, train_val_split
from ..data.registry import OPTIONS, resolve
from ..models import create as create_model
from ..models import list_models, model_options
from ..nn import Dropout
from ..ops import softmax, tensor, zeros
from ..optim import create as create_optimizer
from ..optim import create_scheduler
from ..random import Generator, manual_seed, randperm
from . import forecast, tasks
from .checkpoint import JSON_FILE, check_model_state, load_checkpoint
from .io import CheckpointError, atomic_write_text, dumps_json, load_state_dict, loads_json
from .transfer import freeze, replace_head

__all__ = ["Run", "load_run", "RunError", "ConfigError", "CONFIG_FILE", "RESULTS_FILE", "BEST_FILE",
           "RUN_FORMAT", "IMAGE_DATASETS", "TOY_DATASETS", "DATASETS", "RESERVED_OPTIONS",
           "load_run_config", "write_run_config", "checkpoint_epoch", "read_results",
           "write_results", "read_history", "canonical_model", "check_model_options",
           "coerce_option", "jsonable_options", "model_kwargs", "model_record", "build_model",
           "transfer_source", "build_transfer_model", "check_model_fits", "load_weights",
           "data_info", "describe_data", "regression_message", "data_kind", "forecast_data",
           "forecast_info",
           "check_data_options", "dataset_classes",
           "feature_names", "load_train_val", "load_test", "make_loader", "evaluation_arrays",
           "augmentation",
           "eval_transform", "data_files", "data_files_note", "build_optimizer", "build_scheduler"]

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
BEST_FILE = "best.safetensors"
BEST_JSON = "best.json"
HISTORY_FILE = "history.jsonl"
RUN_FORMAT = "foveanet.run"
RUN_FORMAT_VERSION = 1
CHECKPOINTS = ("best", "last")
IMAGE_DATASETS = ("fashion-mnist", "mnist")
TOY_DATASETS = ("circle", "xor", "gauss", "spiral")
DATASETS = IMAGE_DATASETS + TOY_DATASETS  # read as they always were; any other spec goes
# through fv.data.open_dataset (CIFAR-10/100, an image folder, a CSV file) with data_options
RESERVED_OPTIONS = ("num_classes", "in_channels", "input_size", "horizon")  # set from the data
# set (a forecaster's horizon from the run's)
# what rebuilding a model needs from config.json
REQUIRED_KEYS = ("model", "dataset", "seed", "input_shape", "num_classes", "classes")
TOY_CLASSES = ["negative (-1)", "positive (+1)"]


class RunError(Exception):
    """A run that cannot be loaded or used: not a run directory, a missing or broken file, a
    configuration the model cannot be rebuilt from, weights that do not fit it. The message names
    the run directory or the file; ``run_dir`` is the directory (or None)."""

    def __init__(self, message: str, run_dir=None):
        super().__init__(message)
        self.run_dir = None if run_dir is None else os.fspath(run_dir)


class ConfigError(ValueError):
    """A run configuration that names something impossible: an unknown model, an option its
    constructor does not take, a transfer source that does not fit the data. ``key`` is the
    configuration key at fault (or None when the message says it all), ``value`` its value,
    ``reason`` the message without them."""

    def __init__(self, reason: str, key: str | None = None, value=None):
        self.reason, self.key, self.value = reason, key, value
        if key is None:
            text = reason
        elif value is None:
            text = f"{key}: {reason}"
        else:
            text = f"{key} {value!r}: {reason}"
        super().__init__(text)


# ----------------------------------------------------------------------------- the files
def _read_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return loads_json(f.read())
    except FileNotFoundError:
        raise RunError(f"{what} not found: {path}", os.path.dirname(path)) from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot read {what}: {exc}", os.path.dirname(path)) from None


def _write_json(path, obj):
    atomic_write_text(path, dumps_json(obj, os.path.basename(path)))


def load_run_config(run_dir, need_checkpoint: bool = True) -> dict:
    """The ``config.json`` of ``run_dir``. RunError when it is not a run directory (no such
    directory, no ``checkpoint.json`` when ``need_checkpoint``, no or a broken ``config.json``)
    or the configuration lacks a key that rebuilding the model needs."""
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise RunError(f"{run_dir}: not a foveanet run directory (no such directory)", run_dir)
    if need_checkpoint and not os.path.isfile(os.path.join(run_dir, JSON_FILE)):
        raise RunError(f"{run_dir}: not a foveanet run directory (no {JSON_FILE})", run_dir)
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise RunError(f"{run_dir}: not a foveanet run directory (no {CONFIG_FILE}; "
                       "it was not made by 'foveanet train')", run_dir)
    cfg = _read_json(path, CONFIG_FILE)
    if not isinstance(cfg, dict) or cfg.get("format") != RUN_FORMAT:
        raise RunError(f"{path}: not a foveanet run configuration (format "
                       f"{cfg.get('format') if isinstance(cfg, dict) else None!r})", run_dir)
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise RunError(f"{path}: missing key {missing[0]!r}", run_dir)
    shape = cfg["input_shape"]
    if not (isinstance(shape, list) and len(shape) in (1, 3)
            and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise RunError(f"{path}: key 'input_shape' must be a list of 1 or 3 positive integers, "
                       f"got {shape!r}", run_dir)
    return cfg


def write_run_config(run_dir, config: dict) -> str:
    """Write ``config`` as ``run_dir/config.json`` (atomically; ``format`` and ``format_version``
    added when missing); returns the path."""
    doc = dict(config)
    doc.setdefault("format", RUN_FORMAT)
    doc.setdefault("format_version", RUN_FORMAT_VERSION)
    path = os.path.join(os.fspath(run_dir), CONFIG_FILE)
    _write_json(path, doc)
    return path


def checkpoint_epoch(run_dir) -> int | None:
    """The epochs completed by the run's last checkpoint, or None when it has none yet."""
    path = os.path.join(os.fspath(run_dir), JSON_FILE)
    if not os.path.isfile(path):
        return None
    doc = _read_json(path, JSON_FILE)
    return int(doc.get("epoch", 0)) if isinstance(doc, dict) else 0


def read_results(run_dir) -> dict | None:
    """``results.json`` (the final test metrics), or None when the run has none."""
    path = os.path.join(os.fspath(run_dir), RESULTS_FILE)
    return _read_json(path, RESULTS_FILE) if os.path.isfile(path) else None


def write_results(run_dir, results: dict) -> str:
    """Write ``results`` as ``run_dir/results.json`` (atomically); returns the path."""
    path = os.path.join(os.fspath(run_dir), RESULTS_FILE)
    _write_json(path, results)
    return path


def read_history(run_dir) -> list:
    """The per-epoch records of a run: ``history.jsonl``, else the checkpoint's history, else []."""
    path = os.path.join(os.fspath(run_dir), HISTORY_FILE)
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                return [loads_json(line) for line in f if line.strip()]
        except (OSError, ValueError) as exc:
            raise RunError(f"{path}: cannot read {HISTORY_FILE}: {exc}", run_dir) from None
    ck = os.path.join(os.fspath(run_dir), JSON_FILE)
    if os.path.isfile(ck):
        doc = _read_json(ck, JSON_FILE)
        hist = (doc.get("history") if isinstance(doc, dict) else None) or {}
        return list(hist.get("epochs", []) if isinstance(hist, dict) else hist)
    return []


# ------------------------------------------------------------------------- model options
def canonical_model(name: str) -> str:
    """The registered name of model ``name`` (dashes and underscores interchangeable)."""
    names = list_models()
    for cand in (name, name.replace("-", "_"), name.replace("_", "-")):
        if cand in names:
            return cand
    raise ConfigError(f"unknown model {name!r}; available: {', '.join(names)}")


def coerce_option(value, default):
    """A model option's value in the type of its default (tuples from lists and scalars)."""
    if isinstance(default, tuple):
        if isinstance(value, (list, tuple)):
            return tuple(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (value,)
    if isinstance(default, bool) or isinstance(value, bool):
        return value
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    return value


def check_model_options(model: str, options: dict) -> dict:
    """``options`` checked against the constructor of ``model`` and coerced to its types; the
    options the data set sets (``RESERVED_OPTIONS``) are refused."""
    defaults = model_options(model)
    out = {}
    for key, value in options.items():
        if key in RESERVED_OPTIONS:
            source = "the run's horizon" if key == "horizon" else "the data set"
            raise ConfigError(f"set from {source}, not as a model option", "model_options", key)
        if key not in defaults:
            avail = ", ".join(k for k in defaults if k not in RESERVED_OPTIONS) or "none"
            raise ConfigError(f"model {model!r} has no option {key!r}; its options: {avail}")
        out[key] = coerce_option(value, defaults[key])
    return out


def jsonable_options(options: dict) -> dict:
    """Model options as config.json holds them (lists for tuples)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


def model_kwargs(config) -> dict:
    """The keyword arguments ``build_model`` gives the model's constructor: the data set's
    ``num_classes`` / ``in_channels`` / ``input_size`` (and a forecasting run's ``horizon``)
    where it takes them, then ``model_options`` (``{"from": source}`` for a transfer run)."""
    if config.get("from"):
        return {"from": config["from"]}
    info = {"num_classes": config["num_classes"]}
    shape = config["input_shape"]
    if len(shape) == 3:
        if shape[1] != shape[2]:
            raise ConfigError("the models take square images", "input_shape", tuple(shape))
        info.update(in_channels=shape[0], input_size=shape[1])
    else:  # feature vectors, e.g. the toy sets' (x, y): an MLP with in_channels features of 1x1
        info.update(in_channels=shape[0], input_size=1)
    if config.get("horizon") is not None:  # a forecasting run: windows of input_shape[0] values
        info["horizon"] = config["horizon"]
    params = model_options(canonical_model(config["model"]))
    kwargs = {k: v for k, v in info.items() if k in params}
    kwargs.update({k: coerce_option(v, params.get(k))
                   for k, v in (config.get("model_options") or {}).items()})
    return kwargs


def model_record(config) -> dict:
    """What checkpoints store about the model (``Trainer(model_config=...)``): its name, options,
    dropout and constructor arguments, as JSON values."""
    record = {"name": config["model"], "options": config["model_options"],
              "dropout": config.get("dropout"), **model_kwargs(config)}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in record.items()}


# --------------------------------------------------------------------------------- models
def build_model(config):
    """The model of a run configuration, freshly initialised from ``config['seed']`` (this seeds
    the global generator), in training mode. A transfer run (``from``) is built by
    ``build_transfer_model``. ConfigError when the configuration cannot be built."""
    if config.get("from"):
        return build_transfer_model(config)
    name = canonical_model(config["model"])
    kwargs = model_kwargs(config)
    options = model_options(name)
    p = config.get("dropout")
    if p is not None and "dropout" in options:
        kwargs["dropout"] = p
    manual_seed(config["seed"])
    try:
        model = create_model(name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot build model {name!r} with {kwargs}: {exc}") from None
    if p is not None and "dropout" not in options:
        drops = [m for m in model.modules() if isinstance(m, Dropout)]
        if not drops:
            raise ConfigError(f"model {name!r} has no Dropout layer and no dropout option",
                              "dropout")
        for m in drops:
            m.p = float(p)
    return model


def transfer_source(source) -> dict:
    """The configuration entries of a run that starts from ``source``: an ONNX file or the run
    directory of an earlier ``foveanet train`` (``from``, ``from_kind``, ``model``,
    ``model_options``)."""
    path = os.path.abspath(os.fspath(source))
    if os.path.isdir(path):
        src = load_run_config(path)
        return {"from": path, "from_kind": "run", "model": src["model"], "model_options": {}}
    if not os.path.isfile(path):
        raise ConfigError("no such file or run directory", "from", source)
    return {"from": path, "from_kind": "onnx", "model": "onnx", "model_options": {}}


def _load_onnx(path):
    try:
        from ..interop.onnx_import import OnnxLoadError, load
    except ImportError as exc:
        raise ConfigError(f"reading ONNX needs the onnx extra (pip install 'foveanet[onnx]'): "
                          f"{exc}", "from", path) from None
    try:
        return load(path)
    except OnnxLoadError:
        raise  # it names the file and what is wrong with it
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        raise RunError(f"{path}: cannot load the ONNX model: {exc}") from None


def build_transfer_model(config):
    """The model a transfer run trains: the source's network and weights (an ONNX file, or the
    source run's best weights, else its last), a new classifier head when the number of classes
    differs or ``head_classes`` asks for one (initialised from ``config['seed']``), and the
    parameters ``freeze`` names frozen. ``load_run`` rebuilds it the same way, then loads the
    run's own weights."""
    path = config["from"]
    if config.get("from_kind") == "run":
        which = "best" if os.path.isfile(os.path.join(path, BEST_FILE)) else "last"
        model = load_run(path, which).model
    else:
        model = _load_onnx(path)
    classes = int(config.get("head_classes") or config["num_classes"])
    if classes != int(config["num_classes"]):
        raise ConfigError(f"the data set {config['dataset']} has {config['num_classes']} classes",
                          "head_classes", classes)
    with no_grad():
        model.eval()
        try:
            out = model(zeros(1, *config["input_shape"]))
        except (ValueError, TypeError, RuntimeError) as exc:
            raise ConfigError(f"the model does not accept inputs of shape "
                              f"{tuple(config['input_shape'])} ({config['dataset']}): {exc}",
                              "from", path) from None
        model.train()
    head = []
    manual_seed(config["seed"])
    if config.get("head_classes") or out.shape[-1] != classes:
        try:
            head = replace_head(model, classes)
        except ValueError as exc:
            raise ConfigError(str(exc), "from", path) from None
    if config.get("freeze"):
        try:
            freeze(model, config["freeze"], head=head)
        except ValueError as exc:
            raise ConfigError(str(exc), "freeze", config["freeze"]) from None
    return model


def check_model_fits(model, config) -> None:
    """One forward pass on a dummy batch of the data set's shape: ConfigError when the model does
    not take it or does not give one output per class."""
    try:
        with no_grad():
            model.eval()
            out = model(zeros(2, *config["input_shape"]))
            model.train()
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"model {config['model']!r} does not accept inputs of shape "
                          f"{tuple(config['input_shape'])} ({config['dataset']}): {exc}") from None
    if tuple(out.shape) != (2, config["num_classes"]):
        raise ConfigError(f"model {config['model']!r} gives outputs of shape "
                          f"{tuple(out.shape)[1:]} for {config['num_classes']} classes")


def load_weights(model, run_dir, checkpoint: str = "best"):
    """Load the run's weights into ``model``: ``'best'`` (best.safetensors, the epoch with the
    lowest validation loss) or ``'last'`` (the last checkpoint's model.safetensors). Returns
    ``(file name, epoch)``; RunError when the file is missing or does not fit the model (nothing
    is loaded then)."""
    run_dir = os.fspath(run_dir)
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    if checkpoint == "best":
        path = os.path.join(run_dir, BEST_FILE)
        if not os.path.isfile(path):
            raise RunError(f"{run_dir}: no {BEST_FILE} (the run has no validation set, or no "
                           "epoch finished); use the last checkpoint (--checkpoint last)", run_dir)
        try:
            state = load_state_dict(path)
        except CheckpointError as exc:
            raise RunError(f"{run_dir}: cannot read {BEST_FILE}: {exc}", run_dir) from None
        try:
            check_model_state(model, state, path)
            model.load_state_dict(state)
        except (CheckpointError, RuntimeError, ValueError) as exc:
            raise RunError(f"{run_dir}: the weights do not fit the model rebuilt from "
                           f"{CONFIG_FILE}: {exc}", run_dir) from None
        best = os.path.join(run_dir, BEST_JSON)
        info = _read_json(best, BEST_JSON) if os.path.isfile(best) else {}
        return BEST_FILE, info.get("epoch") if isinstance(info, dict) else None
    try:
        ck = load_checkpoint(run_dir, model)
    except CheckpointError as exc:
        raise RunError(str(exc), run_dir) from None
    return "model.safetensors", ck["epoch"]


# ----------------------------------------------------------------------------------- data
def data_info(config) -> dict:
    """``classes``, ``input_shape`` and ``num_classes`` of the configured data set (without
    loading it; for an image folder or a CSV file, ``describe_data`` reads what it must).
    ConfigError for a regression data set: runs are classifiers, or forecasters (``task``
    forecast: ``forecast_info``)."""
    name = config["dataset"]
    if forecast.is_forecast(config):
        return forecast_info(config)
    if name in TOY_DATASETS:
        return {"classes": list(TOY_CLASSES), "input_shape": [2], "num_classes": 2}
    if name in IMAGE_DATASETS:
        cls = _image_class(name)
        return {"classes": list(cls.classes), "input_shape": [1, 28, 28],
                "num_classes": len(cls.classes)}
    info = describe_data(config)
    if info["task"] != "classification":
        raise ConfigError(regression_message(name), "dataset", name)
    return {k: info[k] for k in ("classes", "input_shape", "num_classes")}


def forecast_data(config):
    """``(series, train, val or None, test)`` of a forecasting run (``foveanet.train.forecast.
    forecast_data``); ConfigError naming ``data_options`` for an option the series does not
    take, DatasetError when the series cannot be read or is too short."""
    try:
        return forecast.forecast_data(config)
    except DatasetError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc), "data_options") from None


def forecast_info(config) -> dict:
    """A forecasting run's ``classes`` (its outputs' names, ``t+1`` ...), ``input_shape``
    (``[window]``), ``num_classes`` (``horizon``) and ``series`` (what was read, how it is split
    and normalised), after reading the series once (so that a short series is refused before
    training)."""
    series, train, val, test = forecast_data(config)
    parts = {"train": train, "val": val, "test": test}
    split = {name: {"windows": len(p), "first": series.time_of(p.span[0]),
                    "last": series.time_of(p.span[1])} for name, p in parts.items() if p}
    return {"classes": forecast.output_names(config["horizon"]),
            "input_shape": [int(config["window"])], "num_classes": int(config["horizon"]),
            "series": {**series.describe(), "offset": train.offset, "scale": train.scale,
                       "split": split}}


def _image_class(name):
    if name not in IMAGE_DATASETS:
        raise ConfigError(f"unknown data set; known: {', '.join(DATASETS)}", "dataset", name)
    return FashionMNIST if name == "fashion-mnist" else MNIST


def regression_message(name) -> str:
    """Why regression data set ``name`` is refused (the reason, without the name first), and
    where to train it instead."""
    table = str(name).lower().endswith(".csv")
    task = ", task='regression'" if table else ""
    series = (" (a series of values in time order is forecast by foveanet train --task "
              "forecast)") if table else ""
    return ("a regression data set, and runs of foveanet train are classifiers: train it in "
            "Python with fv.train.Trainer(model, optimizer, task='regression') on "
            f"fv.data.open_dataset({str(name)!r}{task}){series}")


def data_kind(name) -> str:
    """The kind of data set ``name`` is, as ``fv.data.registry.resolve`` says: 'fashion-mnist',
    'mnist', 'cifar10', 'cifar100', 'toy', 'folder' or 'csv'. ConfigError (key ``dataset``) when
    it names none (an unknown name, a missing path)."""
    try:
        return resolve(name)[0]
    except DatasetError as exc:
        raise ConfigError(str(exc), "dataset") from None


def check_data_options(name, options) -> dict:
    """``options`` (``{key: value}``, values as a command line gives them: strings) checked
    against what data set ``name`` takes (``fv.data.registry.OPTIONS``); returns them as they
    are. ConfigError (key ``data_options``, value ``KEY=VALUE``) naming the option and what is
    accepted."""
    kind = data_kind(name)
    accepted = OPTIONS[kind]
    for key, value in (options or {}).items():
        item = f"{key}={value}"
        if key not in accepted:
            takes = f"it takes {', '.join(accepted)}" if accepted else "it takes none"
            raise ConfigError(f"{name} has no such option; {takes}", "data_options", item)
        try:
            converted = accepted[key](value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc), "data_options", item) from None
        # the registry checks these only when it splits the data: say so before training
        if key == "test_fraction" and not 0.0 < converted < 1.0:
            raise ConfigError("expected a fraction between 0 and 1", "data_options", item)
        if key == "seed" and converted < 0:
            raise ConfigError("expected an integer >= 0", "data_options", item)
    return dict(options or {})


def describe_data(config) -> dict:
    """``fv.data.dataset_info`` of a data set read through ``fv.data.open_dataset`` (CIFAR, an
    image folder, a CSV file) with the configuration's ``data_options``: ``name``, ``classes``,
    ``input_shape``, ``num_classes``, ``task``. ConfigError for a spec or an option it does not
    take; DatasetError when its files cannot be read."""
    name = config["dataset"]
    options = check_data_options(name, config.get("data_options"))
    return dataset_info(name, root=config.get("data_dir"), **options)


def _registry_set(config, train, data_dir, download):
    return open_dataset(config["dataset"], train=train, root=data_dir, download=download,
                        **(config.get("data_options") or {}))


def _innermost(dataset, attribute):
    """``dataset.attribute``, looked for through Subsets; None when no level has it."""
    while dataset is not None:
        value = getattr(dataset, attribute, None)
        if value is not None:
            return value
        dataset = getattr(dataset, "dataset", None)
    return None


def dataset_classes(dataset) -> list | None:
    """The class names ``dataset`` (or the set a Subset of it is of) was read with, or None:
    CIFAR's come from its files (``batches.meta.txt``), which ``describe_data`` does not read."""
    classes = _innermost(dataset, "classes")
    return None if classes is None else [str(c) for c in classes]


def feature_names(dataset) -> list | None:
    """The feature columns of a CSV data set (or a Subset of one): the header's names ('price'
    of CSVDataset's 'column 3 (price)'), else 'column 3'; None for other sets."""
    names = _innermost(dataset, "feature_names")
    if names is None:
        return None
    return [m.group(1) if (m := re.fullmatch(r"column \d+ \((.*)\)", str(n))) else str(n)
            for n in names]


def augmentation(spec):
    """The training transform of an ``augment`` string (``fv.data.parse_augment``), or None."""
    try:
        return parse_augment(spec)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def eval_transform(spec):
    """The deterministic part of the augmentation (Normalize), which evaluation and prediction
    must apply too; None when there is none."""
    aug = augmentation(spec)
    if aug is None:
        return None
    norm = [t for t in aug.transforms if isinstance(t, Normalize)]
    return Compose(norm) if norm else None


def _subsample(dataset, n, seed):
    if n is None or n >= len(dataset):
        return dataset
    idx = randperm(len(dataset), generator=Generator(seed)).numpy()[:n]
    idx.sort()
    return Subset(dataset, idx)


def load_train_val(config, data_dir=None, download=False):
    """``(train, validation or None)`` of the configuration, deterministically from its seed: the
    ``limit_train`` subset and the (stratified) ``val_split`` each drawn from a generator of
    their own. A forecasting run's parts are split in time instead (``forecast_data``)."""
    if forecast.is_forecast(config):
        return forecast_data(config)[1:3]
    seed = config["seed"]
    if config["dataset"] in TOY_DATASETS:
        full = ToyDataset(config["dataset"], n=config["toy_n"], noise=config["toy_noise"],
                          seed=seed)
    elif config["dataset"] in IMAGE_DATASETS:
        full = _image_class(config["dataset"])(root=data_dir, train=True, download=download)
    else:  # CIFAR, an image folder, a CSV file: its training split, as the registry defines it
        full = _registry_set(config, True, data_dir, download)
    full = _subsample(full, config["limit_train"], seed + 11)
    if not config["val_split"]:
        return full, None
    train, val = train_val_split(full, config["val_split"], stratify=config.get("stratify", True),
                                 generator=Generator(seed + 12))
    if len(train) == 0 or len(val) == 0:
        raise ConfigError(f"leaves {len(train)} training and {len(val)} validation samples of "
                          f"{len(full)}", "val_split", config["val_split"])
    return train, val


def load_test(config, data_dir=None, download=False):
    """The test set of the configuration (its ``limit_test`` subset, drawn from its seed; a
    forecasting run's last part in time)."""
    if forecast.is_forecast(config):
        return forecast_data(config)[3]
    if config["dataset"] in TOY_DATASETS:
        test = ToyDataset(config["dataset"], n=config["toy_n"], noise=config["toy_noise"],
                          seed=config["seed"] + 1)
    elif config["dataset"] in IMAGE_DATASETS:
        test = _image_class(config["dataset"])(root=data_dir, train=False, download=download)
    else:
        test = _registry_set(config, False, data_dir, download)
    return _subsample(test, config["limit_test"], config["seed"] + 13)


def make_loader(dataset, config, train: bool, sampler=None, batch_size=None):
    """The training loader (shuffled and augmented from a generator of its own) or an evaluation
    loader (in order, ``eval_batch_size``, with the evaluation transform) of ``dataset``.
    ``sampler``/``batch_size``: a rank's shard of the data and its share of the batch."""
    if train:
        return DataLoader(dataset, batch_size=batch_size or config["batch_size"],
                          shuffle=sampler is None, sampler=sampler,
                          generator=Generator(config["seed"] + 14),
                          transform=augmentation(config["augment"]))
    return DataLoader(dataset, batch_size=config.get("eval_batch_size") or 500, shuffle=False,
                      generator=Generator(config["seed"] + 15),
                      transform=eval_transform(config["augment"]))


def evaluation_arrays(dataset, config):
    """The whole of ``dataset`` as (inputs, targets) arrays, through the configuration's
    evaluation loader (in order, its evaluation transform)."""
    xs, ys = [], []
    for x, y in make_loader(dataset, config, train=False):
        xs.append(xp.asarray(getattr(x, "data", x)))
        ys.append(xp.asarray(getattr(y, "data", y)))
    return xp.concatenate(xs), xp.concatenate(ys)


def data_files(dataset):
    """The image and label files a (subset of a) Fashion-MNIST/MNIST split was read from, or
    None for data sets without files."""
    while dataset is not None and not hasattr(dataset, "files"):
        dataset = getattr(dataset, "dataset", None)
    return None if dataset is None else [os.path.abspath(os.fspath(f)) for f in dataset.files]


def data_files_note(config, split, dataset) -> str | None:
    """A note when ``dataset`` is read from other files than the run's ``split`` was trained or
    tested on (``config['data_files']``); None when they are the same or unknown."""
    files, before = data_files(dataset), (config.get("data_files") or {}).get(split)
    if files and before and files != before:
        return (f"the {split} files are read from {os.path.dirname(files[0])}; the run used "
                f"{os.path.dirname(before[0])}")
    return None


# ------------------------------------------------------------------- optimizer, scheduler
def build_optimizer(model, config):
    """The configuration's optimizer over ``model``'s parameters (``fv.optim.create`` with
    ``lr``, ``weight_decay`` and, for sgd/momentum/rmsprop, ``momentum``)."""
    name = config["optimizer"]
    options = {"weight_decay": config["weight_decay"]}
    if name in ("sgd", "momentum", "rmsprop"):
        options["momentum"] = config["momentum"] or 0.0
    try:
        return create_optimizer(name, model.parameters(), lr=config["lr"], **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), "optimizer", name) from None


def build_scheduler(optimizer, config, steps_per_epoch: int, schedules=None):
    """``(scheduler or None, interval)``: the configuration's schedule (``fv.optim.
    create_scheduler``) planned for ``schedule_epochs`` epochs, with the options
    ``schedules[name]`` (``foveanet train`` passes ``foveanet.recipes.SCHEDULES``; without it,
    the factory's defaults, which are the same numbers). OneCycle peaks at ``lr`` and cycles the
    momentum of Adam(W) or of a nonzero ``momentum``."""
    name = config["scheduler"]
    if name in (None, "none"):
        return None, "epoch"
    options = dict((schedules or {}).get(name, {}))
    if name == "onecycle":
        options.update(max_lr=config["lr"],
                       cycle_momentum=config["optimizer"] in ("adam", "adamw")
                       or bool(config.get("momentum")))
    try:
        return create_scheduler(name, optimizer,
                                epochs=int(config.get("schedule_epochs") or config["epochs"]),
                                steps_per_epoch=steps_per_epoch,
                                interval=config.get("scheduler_interval", "epoch"), **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), "scheduler", name) from None


# ------------------------------------------------------------------------------------ Run
class Run:
    """A run directory loaded by ``load_run``: its configuration and its model with the weights
    asked for.

    ``run_dir``, ``config`` (config.json), ``model`` (in eval mode), ``checkpoint`` ('best' or
    'last'), ``weights`` (the file loaded: best.safetensors or model.safetensors), ``epoch`` (the
    epoch those weights are from), ``classes``, ``input_shape`` (one sample's, a tuple),
    ``dataset``; read when first asked for: ``history`` (the per-epoch records), ``results``
    (results.json or None), ``task`` (``foveanet.train.tasks``)."""

    def __init__(self, run_dir, config, model, checkpoint, weights, epoch):
        self.run_dir = os.fspath(run_dir)
        self.config = config
        self.model = model
        self.checkpoint = checkpoint
        self.weights = weights
        self.epoch = epoch
        self.classes = list(config["classes"])
        self.input_shape = tuple(config["input_shape"])
        self.dataset = config["dataset"]
        self._history = None
        self._task = None

    def __repr__(self):
        return (f"Run({self.run_dir!r}: {self.config['model']} on {self.dataset}, {self.weights} "
                f"(epoch {self.epoch}))")

    @property
    def history(self) -> list:
        """The per-epoch records (``read_history``), read once."""
        if self._history is None:
            self._history = read_history(self.run_dir)
        return self._history

    @property
    def results(self) -> dict | None:
        """``results.json`` as it is now (``foveanet evaluate --report`` rewrites it), or None."""
        return read_results(self.run_dir)

    @property
    def task(self):
        """The run's ``foveanet.train.tasks`` Task (config.json's ``task``; classification for a
        run without one), built once; RunError naming the key when it cannot be built."""
        if self._task is None:
            spec = self.config.get("task") or {"name": "classification"}
            try:
                self._task = tasks.from_config(spec)
            except (ValueError, TypeError, KeyError) as exc:
                raise RunError(f"{os.path.join(self.run_dir, CONFIG_FILE)}: key 'task': {exc}",
                               self.run_dir) from None
        return self._task

    @property
    def is_toy(self) -> bool:
        """Whether the run is on a 2-D toy set (its inputs are (x, y) points)."""
        return self.dataset in TOY_DATASETS

    @property
    def takes_vectors(self) -> bool:
        """Whether the run's inputs are feature vectors (a toy set's (x, y) points, a CSV
        file's rows), not pictures."""
        return len(self.input_shape) == 1

    @property
    def transform(self):
        """The evaluation transform inputs get before the model (the Normalize of the run's
        augmentation), or None."""
        return eval_transform(self.config.get("augment"))

    @property
    def is_language_model(self) -> bool:
        """Whether the run is a language model's (``task`` language_model: text in, the next
        character's scores out; ``sample`` generates text)."""
        from .language import is_language_model
        return is_language_model(self.config)

    def _refuse_language_model(self, what: str) -> None:
        if self.is_language_model:
            raise RunError(f"{self.run_dir}: a language-model run ({self.config['model']} on "
                           f"{self.dataset}) has no {what}: its validation bits per character "
                           "are in report.md and results.json; generate text with 'foveanet "
                           "sample RUN_DIR' or run.sample(...)", self.run_dir)

    @property
    def vocabulary(self):
        """A language-model run's ``foveanet.data.text.Vocabulary`` (config.json's ``classes``)."""
        from ..data.text import Vocabulary
        if not self.is_language_model:
            raise RunError(f"{self.run_dir}: not a language-model run (its task is "
                           f"{self.task.name}): it has no vocabulary", self.run_dir)
        try:
            return Vocabulary(self.classes)
        except ValueError as exc:
            raise RunError(f"{os.path.join(self.run_dir, CONFIG_FILE)}: key 'classes' is not a "
                           f"vocabulary: {exc}", self.run_dir) from None

    def sample(self, prompt: str = "", length: int = 300, temperature: float = 1.0, seed=None,
               model=None) -> str:
        """``length`` characters a language-model run generates after ``prompt`` (not included),
        each drawn from ``softmax(logits / temperature)`` (``foveanet.train.language.sample``;
        temperature > 0, towards 0 greedy); ``seed`` (an int) makes it repeatable, None draws
        one. RunError for a run that is not a language model; ValueError for a temperature
        <= 0 or a prompt character outside the vocabulary."""
        from .language import sample
        vocab = self.vocabulary
        if seed is None:
            seed = int(xp.random.SeedSequence().entropy % (2**63))
        return sample(model if model is not None else self.model, vocab, prompt, length,
                      temperature, Generator(seed))

    def test_set(self, data_dir=None, download=False):
        """The run's own test set (the same ``limit_test`` subset as in training), read from
        ``data_dir`` (default: where the run found it)."""
        self._refuse_language_model("test set")
        return load_test(self.config, data_dir if data_dir is not None else
                         self.config.get("data_dir"), download)

    def test_loader(self, data_dir=None, download=False):
        """An evaluation loader of ``test_set``."""
        return make_loader(self.test_set(data_dir, download), self.config, False)

    def evaluate(self, data_dir=None, download=False, model=None) -> dict:
        """The test metrics (``compute_test_metrics``: loss, accuracy, top-5, confusion matrix,
        per-class accuracy) of ``model`` (default: the run's) on the run's test set; for a
        forecasting run ``forecast.forecast_metrics`` (MAE, RMSE beside the naive forecast's)."""
        from .evaluation import compute_test_metrics, predict_loader
        model = model if model is not None else self.model
        if forecast.is_forecast(self.config):
            pred = forecast.predict_forecast(model, self.test_loader(data_dir, download), self.task)
            unit = (self.config.get("series") or {}).get("unit", "")
            return forecast.forecast_metrics(pred, unit)
        pred = predict_loader(model, self.test_loader(data_dir, download))
        return compute_test_metrics(pred, self.classes)

    def prepare_image(self, path, invert: str = "auto"):
        """``(x, inverted)``: a picture file as this run's input (``fv.data.images.
        prepare_image`` at its channels and size). ``invert='auto'`` inverts dark-on-light
        pictures only for the Fashion-MNIST/MNIST runs, whose images are light on black."""
        from ..data.images import prepare_image
        self._refuse_language_model("picture inputs")
        if len(self.input_shape) != 3:
            raise RunError(f"{self.run_dir}: a run on {self.dataset} takes points of "
                           f"{self.input_shape[0]} numbers, not pictures", self.run_dir)
        if invert == "auto" and self.dataset not in IMAGE_DATASETS:
            invert = "never"
        return prepare_image(path, self.input_shape[0], self.input_shape[1], invert)

    def probabilities(self, inputs, model=None):
        """Class probabilities, float64 ``(N, num_classes)``, of a batch of ``inputs`` (an array
        ``(N, *input_shape)``), after the run's evaluation transform."""
        if forecast.is_forecast(self.config):
            raise RunError(f"{self.run_dir}: a forecasting run gives values, not probabilities: "
                           "use run.forecast(windows)", self.run_dir)
        self._refuse_language_model("class probabilities of inputs")
        batch = xp.asarray(inputs, dtype=xp.float32)
        if tuple(batch.shape[1:]) != self.input_shape:
            raise ValueError(f"probabilities: expected inputs of shape (N, "
                             f"{', '.join(map(str, self.input_shape))}), got {tuple(batch.shape)}")
        tf = self.transform
        if tf is not None:
            batch = tf(batch, None)
        model = model if model is not None else self.model
        model.eval()
        with no_grad():
            return softmax(model(tensor(batch)), dim=1).numpy().astype(xp.float64)

    def forecast(self, windows, model=None):
        """A forecasting run's forecasts, float64 (N, horizon) in the series' units, of
        ``windows`` (N, window) (or one window) of past values in those units."""
        if not forecast.is_forecast(self.config):
            raise RunError(f"{self.run_dir}: not a forecasting run", self.run_dir)
        w = xp.asarray(windows, dtype=xp.float64)
        size = self.input_shape[0]
        if w.ndim not in (1, 2) or w.shape[-1] != size:
            raise ValueError(f"forecast: expected windows of {size} past values, shape (N, "
                             f"{size}), got shape {tuple(w.shape)}")
        return forecast.forecast_values(model if model is not None else self.model, self.task, w)

    def optimized_model(self):
        """``fv.optimize_for_inference`` of the run's model (batch norm folded, activations
        fused), traced at its input shape; RunError when it cannot be optimised."""
        from ..interop.optimize import optimize_for_inference
        self.model.eval()
        try:
            # one sample's shape: a batch's, (1, C, H, W), would be taken for a sample's by a model
            # that flattens its input (an MLP), which then refuses every real batch
            return optimize_for_inference(self.model, self.input_shape)
        except (ValueError, TypeError, RuntimeError, NotImplementedError) as exc:
            raise RunError(f"{self.run_dir}: cannot optimise {self.config['model']} for "
                           f"inference: {exc}", self.run_dir) from None

    def calibration_samples(self, n: int = 512, data_dir=None):
        """``n`` training samples (all if fewer), drawn with the run's seed from its training
        split and prepared as its evaluation prepares data: the calibration data of int8
        quantisation (the test set stays untouched)."""
        train = load_train_val(self.config, data_dir)[0]
        rng = xp.random.default_rng(self.config["seed"] + 16)
        picked = xp.sort(rng.permutation(len(train))[:n])
        return evaluation_arrays(Subset(train, picked.tolist()), self.config)[0]

    def export_onnx(self, path, opset=None, optimize: bool = False, quantize=None,
                    calibration=None, calibration_method="minmax"):
        """Write the run's model as an ONNX file with a dynamic batch size (``fv.onnx.export``;
        needs the onnx extra); returns the ONNX ModelProto. ``quantize="int8"``: post-training
        quantisation calibrated on ``calibration`` (default: ``calibration_samples()``)."""
        from .. import onnx
        kwargs = {} if opset is None else {"opset": opset}
        if optimize:
            kwargs["optimize"] = True
        if quantize:
            kwargs["quantize"] = quantize
            kwargs["calibration"] = self.calibration_samples() if calibration is None \
                else calibration
            kwargs["calibration_method"] = calibration_method
        self.model.eval()
        try:
            return onnx.export(self.model, zeros(1, *self.input_shape), path, **kwargs)
        except ImportError as exc:
            raise RunError(f"exporting to ONNX needs the onnx extra (pip install "
                           f"'foveanet[onnx]'): {exc}", self.run_dir) from None
        except (ValueError, TypeError, RuntimeError, NotImplementedError) as exc:
            raise RunError(f"{self.run_dir}: cannot export {self.config['model']}: {exc}",
                           self.run_dir) from None


def load_run(run_dir, checkpoint: str = "best") -> Run:
    """The run in ``run_dir`` (a run directory of ``foveanet train``) with its model rebuilt from
    config.json and its weights loaded: ``checkpoint='best'`` (the epoch with the lowest
    validation loss) or ``'last'`` (the last checkpoint). The model is in eval mode. Building it
    seeds the global generator from the run's seed. Raises RunError naming the directory and
    what is missing or broken."""
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"load_run: checkpoint must be 'best' or 'last', got {checkpoint!r}")
    run_dir = os.fspath(run_dir)
    config = load_run_config(run_dir)
    try:
        model = build_model(config)
    except (ConfigError, RunError, ValueError) as exc:  # OnnxLoadError is a ValueError too
        raise RunError(f"{os.path.join(run_dir, CONFIG_FILE)}: cannot rebuild the model: {exc}",
                       run_dir) from None
    weights, epoch = load_weights(model, run_dir, checkpoint)
    model.eval()
    return Run(run_dir, config, model, checkpoint, weights, epoch)
