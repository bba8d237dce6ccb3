"""Run-directory checkpoints: everything needed to resume training, without pickle.

A checkpoint is a directory holding::

    model.safetensors      the model's state_dict (parameters and persistent buffers)
    optimizer.safetensors  the arrays of the optimizer's state (momentum buffers, Adam moments)
    callbacks.safetensors  arrays kept by callbacks (EarlyStopping's best weights), when any
    checkpoint.json        everything else, and the index of the files above

``checkpoint.json`` holds: ``format`` ("foveanet.checkpoint") and ``format_version``; ``model``
(``name`` and the caller's ``config`` dict, e.g. the CLI's architecture arguments); ``epoch``
(completed epochs) and ``global_step`` (optimizer steps); ``optimizer`` (its class and
``state_dict()``, with every array replaced by ``{"__array__": "<key in optimizer.safetensors>"}``);
``scheduler`` (class and ``state_dict()``); ``rng`` (the global generator's state, the train and
validation loaders' generator states, and the states of generators owned by modules, all from
``Generator.get_state()``); ``history`` (the per-epoch metrics); ``callbacks`` (their states);
and ``files``: for each array file, its sha256.

Writing (``save_checkpoint``): every file is first written in full to a temporary file in the
directory and fsync'ed; then they are renamed into place one by one, ``checkpoint.json`` last.
A crash while writing leaves the previous checkpoint untouched; the JSON never names weights that
are half-written. (A crash in the microseconds between two renames can leave new weights beside
the old JSON: the sha256 in the JSON catches that, and loading says so.)

Reading (``read_checkpoint`` / ``load_checkpoint``) validates everything before changing anything:
a missing file, invalid JSON, an unknown format version, a missing key, a sha256 mismatch, a
missing or mis-shaped array, or an optimizer/scheduler of another class raise ``CheckpointError``
naming the file and the key.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Mapping

from ..autograd import Tensor
from ..backend import xp
from .io import (CheckpointError, _encode, atomic_write_many, dumps_json, encode_arrays, load_arrays,
                 loads_json)

__all__ = ["FORMAT", "FORMAT_VERSION", "SUPPORTED_VERSIONS", "save_checkpoint", "read_checkpoint",
           "load_checkpoint", "CheckpointError", "split_arrays", "join_arrays",
           "MODEL_FILE", "OPTIMIZER_FILE", "CALLBACKS_FILE", "JSON_FILE"]

FORMAT = "foveanet.checkpoint"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
CALLBACKS_FILE = "callbacks.safetensors"
JSON_FILE = "checkpoint.json"
_REQUIRED_KEYS = ("format", "format_version", "model", "epoch", "global_step", "optimizer",
                  "scheduler", "rng", "history", "files")


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


def save_checkpoint(run_dir, model, optimizer=None, scheduler=None, *, epoch: int = 0,
                    global_step: int = 0, history=None, rng=None, callbacks=None,
                    model_name: str | None = None, model_config: Mapping | None = None,
                    extra: Mapping | None = None) -> str:
    """Write a resumable checkpoint of ``model`` (and optimizer, scheduler, ...) into ``run_dir``
    (created if needed); returns the path of ``checkpoint.json``. Everything is serialised in
    memory first (a value JSON cannot hold is a TypeError naming it, and nothing is written), then
    written atomically, the JSON last. ``history``: a History, a list of records or None;
    ``rng``: a JSON-able dict of generator states; ``callbacks``: ``{name: state_dict}`` whose
    arrays go to ``callbacks.safetensors``; ``extra``: more JSON-able information."""
    run_dir = os.fspath(run_dir)
    meta = {"format": FORMAT, "epoch": str(int(epoch))}
    model_bytes = encode_arrays(model.state_dict(), meta)

    opt_json, opt_bytes = None, None
    if optimizer is not None:
        opt_state, opt_arrays = split_arrays(optimizer.state_dict(), "")
        opt_json = {"class": type(optimizer).__name__, "state": opt_state}
        opt_bytes = encode_arrays(opt_arrays, meta)
    cb_json, cb_arrays = split_arrays(dict(callbacks or {}), "")
    cb_bytes = encode_arrays(cb_arrays, meta) if cb_arrays else None

    if history is not None and hasattr(history, "state_dict"):
        history = history.state_dict()
    files = {MODEL_FILE: model_bytes}
    if opt_bytes is not None:
        files[OPTIMIZER_FILE] = opt_bytes
    if cb_bytes is not None:
        files[CALLBACKS_FILE] = cb_bytes
    name = model_name
    if name is None and isinstance(model_config, Mapping):
        name = model_config.get("name")
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": {"name": name or type(model).__name__, "class": type(model).__name__,
                  "config": dict(model_config) if model_config is not None else None},
        "epoch": int(epoch),
        "global_step": int(global_step),
        "optimizer": opt_json,
        "scheduler": _class_state(scheduler),
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
def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"{JSON_FILE} not found: {path} (no checkpoint has been saved in "
                              f"{os.path.dirname(path) or '.'})", path) from None
    try:
        return loads_json(text)
    except ValueError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})", path) from None


def _check_file(run_dir, fname, doc):
    path = os.path.join(run_dir, fname)
    entry = doc["files"].get(fname)
    if entry is None:
        raise CheckpointError(f"{os.path.join(run_dir, JSON_FILE)}: key 'files' has no entry for "
                              f"{fname!r}", os.path.join(run_dir, JSON_FILE), f"files.{fname}")
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: file missing (listed in {JSON_FILE})", path)
    arrays, meta = load_arrays(path, fname)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != entry.get("sha256"):
        raise CheckpointError(
            f"{path}: sha256 {digest[:12]}... does not match the {entry.get('sha256', '')[:12]}... "
            f"recorded in {JSON_FILE} (epoch {doc['epoch']}, metadata epoch {meta.get('epoch')}): "
            "the file was replaced or damaged after the checkpoint was written", path, "sha256")
    return arrays


def read_checkpoint(run_dir) -> dict:
    """Read and validate the checkpoint in ``run_dir`` without applying it.

    Returns the JSON document with its arrays put back: ``model_state`` (``{name: array}``),
    ``optimizer``/``scheduler`` (``{"class", "state"}`` or None), ``callbacks``, ``rng``,
    ``history``, ``epoch``, ``global_step``, ``model`` (name, class, config), ``run_dir``."""
    run_dir = os.fspath(run_dir)
    json_path = os.path.join(run_dir, JSON_FILE)
    if not os.path.isdir(run_dir):
        raise CheckpointError(f"checkpoint directory not found: {run_dir}", run_dir)
    doc = _read_json(json_path)
    if not isinstance(doc, dict):
        raise CheckpointError(f"{json_path}: expected a JSON object, got {type(doc).__name__}", json_path)
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{json_path}: key 'format' is {doc.get('format')!r}, expected "
                              f"{FORMAT!r} (not a foveanet checkpoint)", json_path, "format")
    version = doc.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        raise CheckpointError(f"{json_path}: key 'format_version' is {version!r}; this foveanet reads "
                              f"versions {', '.join(map(str, SUPPORTED_VERSIONS))}", json_path,
                              "format_version")
    for key in _REQUIRED_KEYS:
        if key not in doc:
            raise CheckpointError(f"{json_path}: missing key {key!r}", json_path, key)
    for key in ("epoch", "global_step"):
        if not isinstance(doc[key], int) or isinstance(doc[key], bool) or doc[key] < 0:
            raise CheckpointError(f"{json_path}: key {key!r} must be a non-negative integer, got "
                                  f"{doc[key]!r}", json_path, key)
    if not isinstance(doc["files"], dict):
        raise CheckpointError(f"{json_path}: key 'files' must be an object", json_path, "files")

    doc["model_state"] = _check_file(run_dir, MODEL_FILE, doc)
    if doc["optimizer"] is not None:
        arrays = _check_file(run_dir, OPTIMIZER_FILE, doc)
        _check_class_state(doc["optimizer"], json_path, "optimizer")
        doc["optimizer"]["state"] = join_arrays(doc["optimizer"]["state"], arrays, OPTIMIZER_FILE,
                                                "optimizer.state")
    if doc["scheduler"] is not None:
        _check_class_state(doc["scheduler"], json_path, "scheduler")
    callbacks = doc.get("callbacks") or {}
    if CALLBACKS_FILE in doc["files"]:
        arrays = _check_file(run_dir, CALLBACKS_FILE, doc)
        callbacks = join_arrays(callbacks, arrays, CALLBACKS_FILE, "callbacks")
    doc["callbacks"] = callbacks
    doc["run_dir"] = run_dir
    return doc


def _check_class_state(entry, json_path, key):
    if not isinstance(entry, dict) or "class" not in entry or "state" not in entry:
        raise CheckpointError(f"{json_path}: key {key!r} must be an object with 'class' and "
                              "'state'", json_path, key)


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


def load_checkpoint(run_dir, model=None, optimizer=None, scheduler=None) -> dict:
    """Validate the checkpoint in ``run_dir`` and restore it into the objects given (any of them
    may be None). Nothing is changed unless everything fits. Returns ``read_checkpoint``'s dict
    (the caller restores epoch, history, RNG states and callbacks from it)."""
    ck = read_checkpoint(run_dir)
    model_file = os.path.join(ck["run_dir"], MODEL_FILE)
    opt_file = os.path.join(ck["run_dir"], OPTIMIZER_FILE)
    json_path = os.path.join(ck["run_dir"], JSON_FILE)
    if model is not None:
        check_model_state(model, ck["model_state"], model_file)
    for key, obj, article in (("optimizer", optimizer, "an"), ("scheduler", scheduler, "a")):
        if obj is None:
            continue
        saved = ck[key]
        if saved is None:
            raise CheckpointError(f"{json_path}: key '{key}' is null (the checkpoint was saved "
                                  f"without {article} {key})", json_path, key)
        if saved["class"] != type(obj).__name__:
            raise CheckpointError(f"{json_path}: key '{key}.class' is {saved['class']!r}, but "
                                  f"the {key} given is {type(obj).__name__}", json_path,
                                  f"{key}.class")
    if optimizer is not None:
        try:
            optimizer.load_state_dict(ck["optimizer"]["state"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{opt_file} / {JSON_FILE} key 'optimizer': {exc}", opt_file,
                                  "optimizer") from exc
    if scheduler is not None:
        scheduler.load_state_dict(ck["scheduler"]["state"])
    if model is not None:
        model.load_state_dict(ck["model_state"])
    return ck


def jsonable(obj, where="value"):
    """``obj`` as plain JSON values (raises TypeError naming ``where`` otherwise)."""
    return _encode(obj, where)
