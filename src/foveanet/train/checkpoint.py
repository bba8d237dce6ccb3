"""Run-directory checkpoints: everything needed to resume training, without pickle.

A checkpoint is a directory holding::

    model.safetensors      the model's state_dict (parameters and persistent buffers)
    optimizer.safetensors  the arrays of the optimizer's state (momentum buffers, Adam moments)
    callbacks.safetensors  arrays kept by callbacks (EarlyStopping's best weights), when any
    checkpoint.json        everything else, and the index of the files above

A run with several models and optimizers (a GAN's generator and discriminator: the dict form
``save_checkpoint(run_dir, models={...}, optimizers={...}, schedulers={...})``) has one
``model.<name>.safetensors`` per model and one ``optimizer.<name>.safetensors`` per optimizer
instead of the first two; a single-model run (``save_checkpoint(run_dir, model, optimizer,
scheduler)``) keeps the names above, its model called ``"model"`` and its optimizer
``"optimizer"``.

``checkpoint.json`` (format version 2) holds: ``format`` ("foveanet.checkpoint") and
``format_version``; ``models`` (per model name: ``name``, ``class``, the caller's ``config`` dict,
e.g. the CLI's architecture arguments, and its ``file``); ``model`` (the single model's ``name``,
``class`` and ``config``, as version 1 had it; null with several models); ``epoch`` (completed
epochs) and ``global_step`` (training batches with an optimizer step); ``optimizers`` (per
optimizer name: its class, its ``file`` and ``state_dict()``, with every array replaced by
``{"__array__": "<key in its file>"}``); ``schedulers`` (per name of the optimizer it drives:
class and ``state_dict()``); ``task`` (``Task.config()`` of the run's task, or null); ``rng`` (the
global generator's state, the train and validation loaders' states, and the states of generators
owned by modules, all from ``Generator.get_state()``, keyed ``"<module path>:<attribute>"``, and
``"<model name>/<module path>:<attribute>"`` with several models); ``history`` (the per-epoch
metrics); ``callbacks`` (their states); ``extra``; and ``files``: for each array file, its
sha256.

Version 1 (one model and one optimizer) had ``optimizer`` (``{class, state}`` or null) and
``scheduler`` instead of ``models``/``optimizers``/``schedulers``; it is read as the version 2
checkpoint of a single-model run.

Writing (``save_checkpoint``): every file is first written in full to a temporary file in the
directory and fsync'ed; then they are renamed into place one by one, ``checkpoint.json`` last.
A crash while writing leaves the previous checkpoint untouched; the JSON never names weights that
are half-written. (A crash in the microseconds between two renames can leave new weights beside
the old JSON: the sha256 in the JSON catches that, and loading says so.)

Reading (``read_checkpoint`` / ``load_checkpoint``) validates everything before changing anything:
a missing file, a JSON file that is not UTF-8 or not JSON, an unknown format version, a missing
key or a value of the wrong type anywhere in the document (``_check_document``: the schema, one
check per key), a sha256 mismatch, a missing or mis-shaped array, an optimizer/scheduler of
another class or whose saved state does not fit the one given, or a random state NumPy rejects
raise ``CheckpointError`` naming the file and the key. Nothing else escapes, whatever the bytes
on disk (``tests/test_fuzz_rundir.py``).
"""
from __future__ import annotations

import copy
import hashlib
import os
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping

from ..autograd import Tensor
from ..backend import xp
from ..random import Generator
from .io import (CheckpointError, _encode, atomic_write_many, decode_arrays, decode_metadata,
                 dumps_json, encode_arrays, load_arrays, loads_json)

__all__ = ["FORMAT", "FORMAT_VERSION", "SUPPORTED_VERSIONS", "save_checkpoint", "read_checkpoint",
           "load_checkpoint", "read_best", "CheckpointError", "split_arrays", "join_arrays",
           "check_model_state", "check_optimizer_state", "check_scheduler_state",
           "MODEL_FILE", "OPTIMIZER_FILE", "CALLBACKS_FILE", "JSON_FILE", "BEST_FILE",
           "MODEL_NAME", "OPTIMIZER_NAME", "model_file", "optimizer_file", "named", "check_name"]

FORMAT = "foveanet.checkpoint"
FORMAT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
CALLBACKS_FILE = "callbacks.safetensors"
JSON_FILE = "checkpoint.json"
BEST_FILE = "best.json"
MODEL_NAME, OPTIMIZER_NAME = "model", "optimizer"  # the names in a single-model run
_REQUIRED_KEYS = {1: ("format", "format_version", "model", "epoch", "global_step", "optimizer",
                      "scheduler", "rng", "history", "files"),
                  2: ("format", "format_version", "models", "epoch", "global_step", "optimizers",
                      "schedulers", "rng", "history", "files")}
# Names of models and optimizers become parts of file names: keep them plain.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*\Z")


def model_file(name: str, single: bool) -> str:
    """The weights file of model ``name``: ``model.safetensors`` in a single-model run."""
    return MODEL_FILE if single else f"model.{name}.safetensors"


def optimizer_file(name: str, single: bool) -> str:
    """The state file of optimizer ``name``: ``optimizer.safetensors`` in a single-model run."""
    return OPTIMIZER_FILE if single else f"optimizer.{name}.safetensors"


def check_name(name, what: str) -> str:
    """``name`` if it can name a model or optimizer (letters, digits, ``_``, ``-``), else a
    ValueError saying so."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"{what} names must be letters, digits, '_' or '-' (they become file "
                         f"names), got {name!r}")
    return name


def named(model=None, optimizer=None, scheduler=None, models=None, optimizers=None,
          schedulers=None, who="save_checkpoint"):
    """``(models, optimizers, schedulers, single)``: the single form's objects under the names
    ``"model"`` / ``"optimizer"`` (``single=True``), or the dict form's mappings (copied; with
    ``optimizers``, each scheduler's name must be one of theirs)."""
    if models is None and optimizers is None and schedulers is None:
        return ({} if model is None else {MODEL_NAME: model},
                {} if optimizer is None else {OPTIMIZER_NAME: optimizer},
                {} if scheduler is None else {OPTIMIZER_NAME: scheduler}, True)
    if model is not None or optimizer is not None or scheduler is not None:
        raise ValueError(f"{who}: give model/optimizer/scheduler or models/optimizers/schedulers, "
                         "not both")
    out = []
    for what, d in (("model", models), ("optimizer", optimizers), ("scheduler", schedulers)):
        if d is not None and not isinstance(d, Mapping):
            raise TypeError(f"{who}: {what}s must be a dict of names to {what}s, got "
                            f"{type(d).__name__}")
        out.append(dict(d or {}))
        for name in out[-1]:
            check_name(name, f"{who}: {what}")
    for name in out[2] if optimizers is not None else ():
        if name not in out[1]:
            raise ValueError(f"{who}: the scheduler {name!r} has no optimizer of that name (the "
                             f"optimizers are {sorted(out[1])}): key schedulers by the name of "
                             "the optimizer they drive")
    return out[0], out[1], out[2], False


# ------------------------------------------------------------------------ arrays out of a tree
def split_arrays(tree, prefix: str = ""):
    """``(json_tree, arrays)``: ``tree`` with every array (NumPy array or scalar, Tensor) replaced
    by ``{"__array__": key}`` and ``arrays`` the ``{key: array}`` taken out (keys are the dotted
    paths). NumPy scalars are kept as 0-d arrays (``"scalar": true``) so their dtype survives."""
    arrays: "OrderedDict[str, object]" = OrderedDict()

    def walk(obj, path):
        if isinstance(obj, Tensor):
            obj = obj.data
        if isinstance(obj, xp.ndarray):
            arrays[path] = obj
            return {"__array__": path}
        if isinstance(obj, xp.generic) and not isinstance(obj, (xp.str_, xp.bytes_)):
            arrays[path] = xp.asarray(obj)
            return {"__array__": path, "scalar": True}
        if isinstance(obj, Mapping):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [walk(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(obj)]
        return obj

    return walk(tree, prefix), arrays


def join_arrays(tree, arrays: Mapping, file: str, where: str):
    """The inverse of ``split_arrays``: put the arrays back; a missing one is a CheckpointError
    naming ``file`` and the key."""
    def walk(obj, path):
        if isinstance(obj, dict):
            if "__array__" in obj and set(obj) <= {"__array__", "scalar"}:
                key = obj["__array__"]
                if not isinstance(key, str):
                    raise CheckpointError(f"{JSON_FILE}: key {path + '.__array__'!r} must name an "
                                          f"array of {file}, got {key!r:.40}", JSON_FILE, path)
                if key not in arrays:
                    raise CheckpointError(f"{file}: missing array {key!r} (referenced by "
                                          f"{JSON_FILE} at {path})", file, key)
                a = arrays[key]
                return a[()] if obj.get("scalar") else a
            return {k: walk(v, f"{path}.{k}") for k, v in obj.items()}
        if isinstance(obj, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(obj)]
        return obj
    return walk(tree, where)


# -------------------------------------------------------------------------------------- saving
def _class_state(obj):
    if obj is None:
        return None
    return {"class": type(obj).__name__, "state": obj.state_dict()}


def _model_configs(models, model_config, single) -> dict:
    """``{model name: config dict or None}`` from ``model_config`` (one config, or one per name)."""
    if single:
        return {name: dict(model_config) if model_config is not None else None for name in models}
    configs = dict(model_config or {})
    unknown = [k for k in configs if k not in models]
    if unknown:
        raise ValueError(f"save_checkpoint: model_config names {unknown[0]!r}, which is not one of "
                         f"the models ({', '.join(models)})")
    return {name: dict(configs[name]) if configs.get(name) is not None else None for name in models}


def save_checkpoint(run_dir, model=None, optimizer=None, scheduler=None, *, models=None,
                    optimizers=None, schedulers=None, epoch: int = 0, global_step: int = 0,
                    history=None, rng=None, callbacks=None, model_name: str | None = None,
                    model_config: Mapping | None = None, task=None,
                    extra: Mapping | None = None) -> str:
    """Write a resumable checkpoint into ``run_dir`` (created if needed); returns the path of
    ``checkpoint.json``. Everything is serialised in memory first (a value JSON cannot hold is a
    TypeError naming it, and nothing is written), then written atomically, the JSON last.

    One model: ``save_checkpoint(run_dir, model, optimizer, scheduler)`` (``model_name`` and
    ``model_config`` describe it). Several: ``models={name: model}``, ``optimizers={name:
    optimizer}``, ``schedulers={optimizer name: scheduler}`` (``model_config``: ``{model name:
    config}``). ``history``: a History, a list of records or None; ``rng``: a JSON-able dict of
    generator states; ``callbacks``: ``{name: state_dict}`` whose arrays go to
    ``callbacks.safetensors``; ``task``: a Task (or its config) to record; ``extra``: more
    JSON-able information."""
    run_dir = os.fspath(run_dir)
    models, optimizers, schedulers, single = named(model, optimizer, scheduler, models,
                                                   optimizers, schedulers)
    if not models:
        raise ValueError("save_checkpoint: no model to save")
    configs = _model_configs(models, model_config, single)
    meta = {"format": FORMAT, "epoch": str(int(epoch))}
    files = {}
    models_json = {}
    for name, m in models.items():
        fname = model_file(name, single)
        files[fname] = encode_arrays(m.state_dict(), meta)
        display = name
        if single:
            display = model_name or (configs[name] or {}).get("name") or type(m).__name__
        models_json[name] = {"name": display, "class": type(m).__name__, "config": configs[name],
                             "file": fname}
    optimizers_json = {}
    for name, opt in optimizers.items():
        fname = optimizer_file(name, single)
        opt_state, opt_arrays = split_arrays(opt.state_dict(), "")
        optimizers_json[name] = {"class": type(opt).__name__, "file": fname, "state": opt_state}
        files[fname] = encode_arrays(opt_arrays, meta)
    cb_json, cb_arrays = split_arrays(dict(callbacks or {}), "")
    if cb_arrays:
        files[CALLBACKS_FILE] = encode_arrays(cb_arrays, meta)

    if history is not None and hasattr(history, "state_dict"):
        history = history.state_dict()
    if task is not None and hasattr(task, "config"):
        task = task.config()
    first = next(iter(models_json.values()))
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        # the version 1 description of the one model, for tools that read a single-model run
        "model": {k: first[k] for k in ("name", "class", "config")} if single else None,
        "models": models_json,
        "epoch": int(epoch),
        "global_step": int(global_step),
        "optimizers": optimizers_json,
        "schedulers": {name: _class_state(s) for name, s in schedulers.items()},
        "task": task,
        "rng": rng,
        "history": history,
        "callbacks": cb_json,
        "extra": dict(extra) if extra is not None else None,
        "files": {f: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)}
                  for f, b in files.items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = dumps_json(doc, JSON_FILE)
    json_path = os.path.join(run_dir, JSON_FILE)
    atomic_write_many([(os.path.join(run_dir, f), b) for f, b in files.items()]
                      + [(json_path, text.encode("utf-8"))])
    return json_path


# ------------------------------------------------------------------------------------- reading
def _read_json(path, what: str = JSON_FILE):
    """The JSON document in ``path``: a CheckpointError when it is missing, unreadable, not
    UTF-8 or not (strict) JSON."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        hint = (f" (no checkpoint has been saved in {os.path.dirname(path) or '.'})"
                if what == JSON_FILE else "")
        raise CheckpointError(f"{what} not found: {path}{hint}", path) from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})", path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: not UTF-8 text (byte {data[exc.start]:#04x} at offset "
                              f"{exc.start}): the file is damaged or is not a {what}", path) from None
    try:
        return loads_json(text)
    except ValueError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})", path) from None


# The schema of checkpoint.json: one check per key, each failure a CheckpointError that names the
# file and the dotted key. After _check_document every value has the type the code reading it
# expects, so nothing further down meets a boolean where it wants an object.
def _describe(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= 24 else text[:21] + "..."
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _bad(path, key, problem) -> CheckpointError:
    return CheckpointError(f"{path}: key {key!r} {problem}", path, key)


def _need(value, types, path, key, what):
    """``value`` when it is one of the JSON ``types`` (a boolean counts as an int only when
    ``bool`` is listed), else a CheckpointError: ``key 'x.y' must be <what>, got <value>``."""
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
        return value
    raise _bad(path, key, f"must be {what}, got {_describe(value)}")


def _field(obj, name, types, path, key, what, required=True):
    """``obj[name]`` checked by ``_need`` (``key``: the dotted path of ``obj``); a missing
    required key is a CheckpointError, a missing optional one None."""
    full = f"{key}.{name}" if key else name
    if name not in obj:
        if required:
            raise CheckpointError(f"{path}: missing key {full!r}", path, full)
        return None
    return _need(obj[name], types, path, full, what)


def _count(value, path, key):
    _need(value, int, path, key, "a non-negative integer")
    if value < 0:
        raise _bad(path, key, f"must be a non-negative integer, got {value!r}")
    return value


def _file_name(value, path, key):
    """A weights file named in the document: a plain ``*.safetensors`` name in the run
    directory (never a path that leads out of it)."""
    _need(value, str, path, key, "a file name")
    if (os.path.basename(value) != value or value in (".", "..") or "\0" in value
            or "/" in value or "\\" in value or not value.endswith(".safetensors")):
        raise _bad(path, key, f"must be the name of a .safetensors file in the run directory, "
                              f"got {value[:60]!r}")
    return value


def _check_described_model(entry, path, key, file_required):
    _need(entry, dict, path, key, "an object")
    _field(entry, "name", (str, type(None)), path, key, "a string or null", required=False)
    _field(entry, "class", (str, type(None)), path, key, "a string", required=file_required)
    _field(entry, "config", (dict, type(None)), path, key, "an object or null", required=False)
    if file_required:
        _file_name(_field(entry, "file", str, path, key, "a file name"), path, f"{key}.file")


def _check_class_entry(entry, path, key, file_required=False):
    """``{"class": str, "state": object}`` (and ``"file"`` for an optimizer of version 2)."""
    if not isinstance(entry, dict) or "class" not in entry or "state" not in entry:
        raise _bad(path, key, f"must be an object with 'class' and 'state', got {_describe(entry)}")
    _field(entry, "class", str, path, key, "a class name")
    _field(entry, "state", dict, path, key, "an object")
    if file_required:
        _file_name(_field(entry, "file", str, path, key, "a file name"), path, f"{key}.file")


def _check_optimizer_document(state, path, key):
    """An optimizer ``state_dict()``: ``{"state": {index: {...}}, "param_groups": [{"params":
    [index, ...], ...}]}``."""
    groups = _field(state, "param_groups", list, path, key, "a list")
    for i, group in enumerate(groups):
        gkey = f"{key}.param_groups[{i}]"
        _need(group, dict, path, gkey, "an object")
        for j, index in enumerate(_field(group, "params", list, path, gkey, "a list of indices")):
            _count(index, path, f"{gkey}.params[{j}]")
    for index, values in _field(state, "state", dict, path, key, "an object").items():
        if not index.isdigit():
            raise _bad(path, f"{key}.state", f"has the entry {index[:40]!r}: the keys are "
                                             "parameter indices (0, 1, ...)")
        _need(values, dict, path, f"{key}.state.{index}", "an object")


def _check_generator_state(state, path, key):
    """A ``Generator.get_state()`` value that NumPy accepts (tried on a scratch generator: NumPy
    alone knows which bit-generator states are valid)."""
    _need(state, dict, path, key, "a random generator state (an object)")
    _field(state, "seed", int, path, key, "an integer")
    _field(state, "bit_generator", dict, path, key, "an object")
    try:
        Generator(0).set_state(state)
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise _bad(path, key, f"is not a random generator state NumPy accepts ({exc})") from None


def _check_rng(rng, path):
    if rng is None:
        return
    _need(rng, dict, path, "rng", "an object or null")
    if rng.get("global") is not None:
        _check_generator_state(rng["global"], path, "rng.global")
    for which in ("train_loader", "val_loader"):
        saved, key = rng.get(which), f"rng.{which}"
        if saved is None:
            continue
        _need(saved, dict, path, key, "an object or null")
        kind = _field(saved, "kind", str, path, key, "'state_dict' or 'generator'")
        state = _field(saved, "state", dict, path, key, "an object")
        if kind == "generator":
            _check_generator_state(state, path, f"{key}.state")
        elif kind == "state_dict":  # a DataLoader's: {"epoch", "generator", "sampler", "batch"}
            if state.get("generator") is not None:
                _check_generator_state(state["generator"], path, f"{key}.state.generator")
            sampler = _field(state, "sampler", (dict, type(None)), path, f"{key}.state",
                             "an object or null", required=False)
            if (sampler or {}).get("generator") is not None:
                _check_generator_state(sampler["generator"], path,
                                       f"{key}.state.sampler.generator")
            for name in ("epoch", "batch"):
                if name in state:
                    _count(state[name], path, f"{key}.state.{name}")
        else:
            raise _bad(path, f"{key}.kind", f"must be 'state_dict' or 'generator', got "
                                            f"{_describe(kind)}")
    modules = _field(rng, "modules", (dict, type(None)), path, "rng", "an object or null",
                     required=False)
    for name, state in (modules or {}).items():
        _check_generator_state(state, path, f"rng.modules.{name}")


def _check_history(history, path):
    if history is None:
        return
    if isinstance(history, list):
        records, key = history, "history"
    else:
        _need(history, dict, path, "history", "an object, a list or null")
        records = _field(history, "epochs", list, path, "history", "a list", required=False) or []
        _field(history, "status", str, path, "history", "a string", required=False)
        _field(history, "stop_reason", (str, type(None)), path, "history", "a string or null",
               required=False)
        key = "history.epochs"
    for i, record in enumerate(records):
        _need(record, dict, path, f"{key}[{i}]", "an object (one epoch's metrics)")


def _check_document(doc, path):
    """Check checkpoint.json's document ``doc`` key by key; returns ``(models, optimizers,
    schedulers)``, the version 2 view (a version 1 document's ``model``/``optimizer``/
    ``scheduler`` under the names ``"model"`` and ``"optimizer"``), each entry with the
    ``json_key`` it came from."""
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {_describe(doc)}", path)
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{path}: key 'format' is {doc.get('format')!r:.60}, expected "
                              f"{FORMAT!r} (not a foveanet checkpoint)", path, "format")
    version = doc.get("format_version")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise CheckpointError(f"{path}: key 'format_version' is {version!r:.40}; this foveanet "
                              f"reads versions {', '.join(map(str, SUPPORTED_VERSIONS))}", path,
                              "format_version")
    for key in _REQUIRED_KEYS[version]:
        if key not in doc:
            raise CheckpointError(f"{path}: missing key {key!r}", path, key)
    for key in ("epoch", "global_step"):
        _count(doc[key], path, key)
    for fname, entry in _need(doc["files"], dict, path, "files", "an object").items():
        _need(entry, dict, path, f"files.{fname}", "an object with 'sha256'")
        _field(entry, "sha256", str, path, f"files.{fname}", "a hex string")
    if version == 1:
        _check_described_model(doc["model"], path, "model", file_required=False)
        models = {MODEL_NAME: {**doc["model"], "file": MODEL_FILE, "json_key": "model"}}
        optimizers, schedulers = {}, {}
        if doc["optimizer"] is not None:
            _check_class_entry(doc["optimizer"], path, "optimizer")
            optimizers[OPTIMIZER_NAME] = {**doc["optimizer"], "file": OPTIMIZER_FILE,
                                          "json_key": "optimizer"}
        if doc["scheduler"] is not None:
            _check_class_entry(doc["scheduler"], path, "scheduler")
            schedulers[OPTIMIZER_NAME] = {**doc["scheduler"], "json_key": "scheduler"}
    else:
        models, optimizers, schedulers = {}, {}, {}
        for kind, out in (("models", models), ("optimizers", optimizers),
                          ("schedulers", schedulers)):
            for name, entry in _need(doc[kind], dict, path, kind, "an object").items():
                key = f"{kind}.{name}"
                if kind == "models":
                    _check_described_model(entry, path, key, file_required=True)
                else:
                    _check_class_entry(entry, path, key, file_required=kind == "optimizers")
                out[name] = {**entry, "json_key": key}
        if not models:
            raise _bad(path, "models", "is empty: a checkpoint holds at least one model")
        if doc.get("model") is not None:
            _check_described_model(doc["model"], path, "model", file_required=False)
    for entry in optimizers.values():
        _check_optimizer_document(entry["state"], path, f"{entry['json_key']}.state")
    _check_rng(doc["rng"], path)
    _check_history(doc["history"], path)
    callbacks = _field(doc, "callbacks", (dict, type(None)), path, "", "an object or null",
                       required=False)
    for name, state in (callbacks or {}).items():
        _need(state, dict, path, f"callbacks.{name}", "an object")
    task = _field(doc, "task", (dict, type(None)), path, "", "an object or null", required=False)
    if task is not None:
        _field(task, "name", str, path, "task", "a string")
    _field(doc, "extra", (dict, type(None)), path, "", "an object or null", required=False)
    return models, optimizers, schedulers


def _check_file(run_dir, fname, doc):
    """The arrays of ``fname``, once its bytes match the sha256 that ``doc`` records."""
    path = os.path.join(run_dir, fname)
    json_path = os.path.join(run_dir, JSON_FILE)
    entry = doc["files"].get(fname)
    if entry is None:
        raise CheckpointError(f"{json_path}: key 'files' has no entry for {fname!r}", json_path,
                              f"files.{fname}")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: file missing (listed in {JSON_FILE})", path)
    with open(path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise CheckpointError(
            f"{path}: sha256 {digest[:12]}... does not match the {entry['sha256'][:12]}... "
            f"recorded in {JSON_FILE} (epoch {doc['epoch']}, metadata epoch "
            f"{_metadata_epoch(data, path)}): the file was replaced or damaged after the "
            "checkpoint was written", path, "sha256")
    arrays, _ = decode_arrays(data, path)
    return arrays


def _metadata_epoch(data, path):
    try:
        return decode_metadata(data, path).get("epoch")
    except CheckpointError:
        return "unreadable"


def read_checkpoint(run_dir) -> dict:
    """Read and validate the checkpoint in ``run_dir`` without applying it.

    Returns the JSON document with its arrays put back: ``models`` (per name: ``name``,
    ``class``, ``config``, ``file``), ``model_states`` (per name: ``{key: array}``),
    ``optimizers`` / ``schedulers`` (per name: ``{"class", "state", ...}``), ``callbacks``,
    ``rng``, ``history``, ``epoch``, ``global_step``, ``task``, ``run_dir``; and for a
    checkpoint with one model ``model_state``, and ``optimizer`` / ``scheduler`` (the only one,
    or None), as version 1 returned them."""
    run_dir = os.fspath(run_dir)
    json_path = os.path.join(run_dir, JSON_FILE)
    if not os.path.isdir(run_dir):
        raise CheckpointError(f"checkpoint directory not found: {run_dir}", run_dir)
    doc = _read_json(json_path)
    models, optimizers, schedulers = _check_document(doc, json_path)
    states = {name: _check_file(run_dir, entry["file"], doc) for name, entry in models.items()}
    for entry in optimizers.values():
        arrays = _check_file(run_dir, entry["file"], doc)
        entry["state"] = join_arrays(entry["state"], arrays, entry["file"],
                                     f"{entry['json_key']}.state")
    callbacks = doc.get("callbacks") or {}
    if CALLBACKS_FILE in doc["files"]:
        arrays = _check_file(run_dir, CALLBACKS_FILE, doc)
        callbacks = join_arrays(callbacks, arrays, CALLBACKS_FILE, "callbacks")

    def only(entries):
        return next(iter(entries.values())) if len(entries) == 1 else None
    doc.update(models=models, optimizers=optimizers, schedulers=schedulers, model_states=states,
               model_state=only(states), optimizer=only(optimizers), scheduler=only(schedulers),
               callbacks=callbacks, run_dir=run_dir)
    doc.setdefault("task", None)
    return doc


def check_model_state(model, state: Mapping, file: str = MODEL_FILE) -> None:
    """CheckpointError naming ``file`` and the key when ``state`` does not fit ``model``: a
    missing or unexpected key, or a shape mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise CheckpointError(f"{file}: missing key {missing[0]!r} that the model "
                              f"({type(model).__name__}) needs"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                              file, missing[0])
    if unexpected:
        raise CheckpointError(f"{file}: unexpected key {unexpected[0]!r}: the model "
                              f"({type(model).__name__}) has no such parameter or buffer"
                              + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""),
                              file, unexpected[0])
    for k, t in expected.items():
        shape = tuple(xp.shape(state[k].data if isinstance(state[k], Tensor) else state[k]))
        if shape != tuple(t.shape):
            raise CheckpointError(f"{file}: key {k!r} has shape {shape}, but the model "
                                  f"({type(model).__name__}) expects {tuple(t.shape)}", file, k)


def _mismatch(live, saved):
    """Why ``saved`` (a JSON value) cannot stand in for ``live`` (the value of a fresh object),
    or None: the same kind of value (numbers for numbers, a list of the same length, ...).
    Values of nested objects are compared where both have the key."""
    if live is None:
        return None
    if isinstance(live, (bool, xp.bool_)):
        return None if isinstance(saved, bool) else f"must be true or false, got {_describe(saved)}"
    if isinstance(live, (int, float, xp.integer, xp.floating)):
        ok = isinstance(saved, (int, float)) and not isinstance(saved, bool)
        return None if ok else f"must be a number, got {_describe(saved)}"
    if isinstance(live, str):
        return None if isinstance(saved, str) else f"must be a string, got {_describe(saved)}"
    if isinstance(live, (list, tuple)):
        if not isinstance(saved, list) or len(saved) != len(live):
            return f"must be a list of {len(live)}, got {_describe(saved)}" + (
                f" of {len(saved)}" if isinstance(saved, list) else "")
        for i, (a, b) in enumerate(zip(live, saved)):
            problem = _mismatch(a, b)
            if problem:
                return f"[{i}] {problem}"
        return None
    if isinstance(live, Mapping):
        if not isinstance(saved, dict):
            return f"must be an object, got {_describe(saved)}"
        for k, v in live.items():
            if str(k) in saved:
                problem = _mismatch(v, saved[str(k)])
                if problem:
                    return f".{k} {problem}"
    return None


def check_optimizer_state(optimizer, state, file: str, json_path: str, key: str) -> None:
    """CheckpointError unless ``state`` (a saved ``state_dict()``, arrays put back) fits
    ``optimizer``: the same number of parameter groups and of parameters in each, every option
    of the optimizer present with a value of its kind, and per-parameter arrays of the
    parameter's shape, floating point like it. The states of the parameters of one group must
    have the same entries, arrays where the others have arrays (an optimizer keeps the same
    buffers for each parameter it has stepped): a damaged entry stands out."""
    name = type(optimizer).__name__
    saved_groups, groups = state["param_groups"], optimizer.param_groups
    if len(saved_groups) != len(groups):
        raise _bad(json_path, f"{key}.param_groups", f"has {len(saved_groups)} parameter groups, "
                                                     f"but the {name} given has {len(groups)}")
    by_index = {}
    for i, (saved, group) in enumerate(zip(saved_groups, groups)):
        gkey = f"{key}.param_groups[{i}]"
        if len(saved["params"]) != len(group["params"]):
            raise _bad(json_path, f"{gkey}.params", f"lists {len(saved['params'])} parameters, "
                                                    f"but group {i} of the {name} given has "
                                                    f"{len(group['params'])}")
        _check_entries({k: v for k, v in group.items() if k != "params"}, saved, json_path, gkey,
                       f"an option of {name}")
        by_index.update(zip(saved["params"], group["params"]))
        _check_alike(saved["params"], state["state"], file, f"{key}.state", i)
    for index, values in state["state"].items():
        p = by_index.get(int(index))
        if p is None:
            continue  # load_state_dict skips state of parameters it does not have
        for vname, v in values.items():
            where = f"{key}.state.{index}.{vname}"
            if isinstance(v, (xp.ndarray, xp.generic)):
                if v.ndim and tuple(v.shape) != tuple(p.shape):
                    raise CheckpointError(f"{file}: {where} has shape {tuple(v.shape)}, but the "
                                          f"parameter has shape {tuple(p.shape)}", file, where)
                if v.ndim and not xp.issubdtype(v.dtype, xp.floating):
                    raise CheckpointError(f"{file}: {where} has dtype {v.dtype}; optimizer "
                                          "state arrays are floating point, as the parameters",
                                          file, where)
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _bad(json_path, where, f"must be an array or a number, got {_describe(v)}")


def _check_alike(indices, states, file, key, group):
    """The saved states of the parameters ``indices`` (of one group) have the same entries, of
    the same kinds; the odd one out (against the most common shape) is a CheckpointError."""
    def shape(values):
        return tuple(sorted((k, "array" if isinstance(v, xp.ndarray) and v.ndim else "number")
                            for k, v in values.items()))
    present = [str(i) for i in indices if str(i) in states]
    shapes = {index: shape(states[index]) for index in present}
    if len(set(shapes.values())) <= 1:
        return
    usual = Counter(shapes.values()).most_common(1)[0][0]
    odd = next(index for index in present if shapes[index] != usual)
    raise CheckpointError(f"{file}: {key}.{odd} has the entries {dict(shapes[odd])}, but the "
                          f"other parameters of group {group} have {dict(usual)}", file,
                          f"{key}.{odd}")


def _check_entries(expected: dict, saved: dict, json_path, key, what: str) -> None:
    """CheckpointError unless ``saved`` has every key of ``expected`` (a live object's state),
    each with a value of the same kind (``_mismatch``)."""
    for entry, value in expected.items():
        if entry not in saved:
            raise CheckpointError(f"{json_path}: missing key '{key}.{entry}' ({what})", json_path,
                                  f"{key}.{entry}")
        problem = _mismatch(value, saved[entry])
        if problem:
            raise _bad(json_path, f"{key}.{entry}", problem)


def check_scheduler_state(scheduler, state, json_path: str, key: str) -> None:
    """CheckpointError unless ``state`` (a saved ``state_dict()``) fits ``scheduler``: every
    attribute of its own state present with a value of the same kind, and accepted by its
    ``load_state_dict`` (tried on a shallow copy, so ``scheduler`` does not change)."""
    name = type(scheduler).__name__
    _check_entries(scheduler.state_dict(), state, json_path, key, f"an attribute of {name}")
    try:
        copy.copy(scheduler).load_state_dict(copy.deepcopy(state))
    except (TypeError, ValueError, KeyError) as exc:
        raise _bad(json_path, key, f"is not a state of {name} ({exc})") from None


def _match(ck, kind, given, single, strict, what, json_path):
    """``[(object, saved entry, saved name)]`` pairing the objects ``given`` with the
    checkpoint's entries of ``kind`` by name (or the only one with the only one, for the
    single form); CheckpointError for a name the checkpoint lacks, and with ``strict`` for
    a saved one not given."""
    saved = ck[kind]
    if single and len(given) == 1 and len(saved) == 1:
        (obj,), (name,) = given.values(), saved
        return [(obj, saved[name], name)]
    empty_key = what if ck["format_version"] == 1 else kind
    out = []
    for name, obj in given.items():
        if name in saved:
            out.append((obj, saved[name], name))
        elif not saved:
            article = "an" if what[0] in "aeiou" else "a"
            raise CheckpointError(f"{json_path}: key '{empty_key}' is "
                                  f"{'null' if ck['format_version'] == 1 else 'empty'} (the "
                                  f"checkpoint was saved without {article} {what})", json_path,
                                  empty_key)
        else:
            raise CheckpointError(f"{json_path}: key '{kind}' has no {what} {name!r} (it has "
                                  f"{', '.join(map(repr, saved))})", json_path, f"{kind}.{name}")
    extra = [name for name in saved if name not in given]
    if strict and extra:
        raise CheckpointError(f"{json_path}: key '{kind}.{extra[0]}' is a {what} that is not "
                              f"given (given: {', '.join(map(repr, given)) or 'none'})",
                              json_path, f"{kind}.{extra[0]}")
    return out


def load_checkpoint(run_dir, model=None, optimizer=None, scheduler=None, *, models=None,
                    optimizers=None, schedulers=None, strict: bool = False) -> dict:
    """Validate the checkpoint in ``run_dir`` and restore it into the objects given: ``model``,
    ``optimizer``, ``scheduler`` (any may be None), or the dict form ``models`` / ``optimizers``
    / ``schedulers`` (by name; a scheduler under its optimizer's name). A single object is
    paired with the checkpoint's only one whatever its name. ``strict``: every model and
    optimizer in the checkpoint must be given. Nothing is changed unless everything fits.
    Returns ``read_checkpoint``'s dict (the caller restores epoch, history, RNG states and
    callbacks from it)."""
    ck = read_checkpoint(run_dir)
    models, optimizers, schedulers, single = named(model, optimizer, scheduler, models,
                                                   optimizers, schedulers, "load_checkpoint")
    run_dir = ck["run_dir"]
    json_path = os.path.join(run_dir, JSON_FILE)
    plan = {kind: _match(ck, kind, given, single, strict and kind != "schedulers", what, json_path)
            for kind, given, what in (("models", models, "model"),
                                      ("optimizers", optimizers, "optimizer"),
                                      ("schedulers", schedulers, "scheduler"))}
    for obj, entry, name in plan["models"]:
        check_model_state(obj, ck["model_states"][name], os.path.join(run_dir, entry["file"]))
    for kind in ("optimizers", "schedulers"):
        for obj, entry, _ in plan[kind]:
            key = entry["json_key"]
            if entry["class"] != type(obj).__name__:
                what = kind[:-1]
                raise CheckpointError(f"{json_path}: key '{key}.class' is {entry['class']!r:.60}, "
                                      f"but the {what} given is {type(obj).__name__}", json_path,
                                      f"{key}.class")
            if kind == "optimizers":
                check_optimizer_state(obj, entry["state"], os.path.join(run_dir, entry["file"]),
                                      json_path, f"{key}.state")
            else:
                check_scheduler_state(obj, entry["state"], json_path, f"{key}.state")
    for obj, entry, _ in plan["optimizers"]:
        opt_file = os.path.join(run_dir, entry["file"])
        try:
            obj.load_state_dict(entry["state"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{opt_file} / {JSON_FILE} key '{entry['json_key']}': {exc}",
                                  opt_file, entry["json_key"]) from exc
    for obj, entry, _ in plan["schedulers"]:
        obj.load_state_dict(entry["state"])
    for obj, entry, name in plan["models"]:
        obj.load_state_dict(ck["model_states"][name])
    return ck


def read_best(run_dir, filename: str = "best") -> dict:
    """Read and validate ``{filename}.json`` and the weights it names (``BestCheckpoint``'s
    files): returns the JSON document with ``model_states`` (per model name ``{key: array}``)
    and, for a single-model run (format version 1), ``model_state``. Anything malformed is a
    CheckpointError naming the file and the key."""
    run_dir = os.fspath(run_dir)
    path = os.path.join(run_dir, filename + ".json")
    doc = _read_json(path, os.path.basename(path))
    _need(doc, dict, path, "", "a JSON object")
    if doc.get("format") != "foveanet.best":
        raise CheckpointError(f"{path}: key 'format' is {doc.get('format')!r:.60}, expected "
                              "'foveanet.best'", path, "format")
    version = doc.get("format_version")
    if isinstance(version, bool) or version not in (1, 2):
        raise CheckpointError(f"{path}: key 'format_version' is {version!r:.40}; this foveanet "
                              "reads versions 1, 2", path, "format_version")
    _count(_field(doc, "epoch", int, path, "", "an integer"), path, "epoch")
    _field(doc, "monitor", str, path, "", "a metric name")
    if _field(doc, "mode", str, path, "", "'min' or 'max'") not in ("min", "max"):
        raise _bad(path, "mode", f"must be 'min' or 'max', got {_describe(doc['mode'])}")
    _field(doc, "value", (int, float, type(None)), path, "", "a number or null")
    _field(doc, "metrics", (dict, type(None)), path, "", "an object or null", required=False)
    if version == 1:
        files = {MODEL_NAME: _file_name(_field(doc, "weights", str, path, "", "a file name"),
                                        path, "weights")}
        if doc.get("model") is not None:
            _check_described_model(doc["model"], path, "model", file_required=False)
    else:
        files = _field(doc, "weights", dict, path, "", "an object of file names")
        for name, fname in files.items():
            _file_name(fname, path, f"weights.{name}")
        for name, entry in _field(doc, "model", dict, path, "", "an object").items():
            _check_described_model(entry, path, f"model.{name}", file_required=False)
    doc["model_states"] = {name: load_arrays(os.path.join(run_dir, fname), fname)[0]
                           for name, fname in files.items()}
    if version == 1:
        doc["model_state"] = doc["model_states"][MODEL_NAME]
    return doc


def jsonable(obj, where="value"):
    """``obj`` as plain JSON values (raises TypeError naming ``where`` otherwise)."""
    return _encode(obj, where)
