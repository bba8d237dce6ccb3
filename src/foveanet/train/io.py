"""Files without pickle: atomic writes, safetensors for arrays, strict JSON for everything else.

Every file foveanet.train writes goes through ``atomic_write``: the bytes go to a temporary file
in the same directory (``.NAME.XXXX.tmp``), are flushed and fsync'ed, and only then
``os.replace`` puts the file in place (an atomic rename on POSIX and Windows). A crash at any
moment leaves either the previous file or the new one, never half of one, and the temporary file
is removed when the write fails.

Arrays are stored with `safetensors <https://huggingface.co/docs/safetensors>`_ (a JSON header and
raw little-endian buffers: nothing is executed when loading, unlike pickle). JSON is written
strictly (no ``NaN``/``Infinity`` tokens): non-finite floats are encoded as
``{"__float__": "nan" | "inf" | "-inf"}``, so any JSON reader can read the files.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import tempfile
from collections import OrderedDict
from collections.abc import Mapping

from ..autograd import Tensor
from ..backend import xp

__all__ = ["atomic_write", "atomic_write_many", "atomic_write_bytes", "atomic_write_text", "save_state_dict",
           "load_state_dict", "encode_arrays", "decode_arrays", "decode_metadata", "save_arrays",
           "load_arrays", "read_safetensors_metadata", "dumps_json", "loads_json", "sha256_file",
           "CheckpointError"]


class CheckpointError(RuntimeError):
    """A checkpoint or state file that cannot be read: missing, corrupt, of an unknown version, or
    not matching the model. ``path`` is the file, ``key`` the entry inside it (or None)."""

    def __init__(self, message: str, path=None, key=None):
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)
        self.key = key


# ----------------------------------------------------------------------------------- atomic writes
def _fsync_dir(directory: str) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _stage(path, write) -> str:
    """Fill a new temporary file next to ``path`` with ``write(f)``, flush and fsync it; returns
    its name. The temporary file is removed if anything fails."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode instead
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _remove(tmp)
        raise
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove(tmp) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def atomic_write(path, write) -> None:
    """Create or replace ``path`` atomically: ``write(f)`` fills a binary temporary file in the
    same directory, which is flushed, fsync'ed and renamed over ``path``. If ``write`` (or the
    flush, fsync or rename) raises, the temporary file is deleted, ``path`` is left as it was,
    and the exception propagates."""
    atomic_write_many([(path, write)])


def atomic_write_many(items) -> None:
    """Write several files so that each is replaced atomically and in the order given.

    ``items``: ``(path, bytes or write(f) callable)`` pairs. Every file is first written in full
    to its temporary file (and fsync'ed); only when all of them are on disk are they renamed into
    place, one after the other, in order: put the file that refers to the others (a JSON index)
    last. If any write fails, no file is replaced and every temporary file is removed."""
    staged = []
    try:
        for path, content in items:
            write = content if callable(content) else (lambda f, data=content: f.write(data))
            staged.append((_stage(path, write), os.fspath(path)))
        while staged:
            tmp, path = staged[0]
            os.replace(tmp, path)
            staged.pop(0)
            _fsync_dir(os.path.dirname(os.path.abspath(path)))
    finally:
        for tmp, _ in staged:
            _remove(tmp)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_write``)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see ``atomic_write``)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -------------------------------------------------------------------------------------------- JSON
def _encode(obj, where: str):
    """``obj`` as plain JSON values; non-finite floats tagged; anything else a TypeError that
    names where it was."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, xp.generic):  # a NumPy scalar
        return _encode(obj.item(), where)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if isinstance(k, (bool, xp.bool_)) or not isinstance(k, (str, int, xp.integer)):
                raise TypeError(f"cannot write {where}: key {k!r} is a {type(k).__name__} "
                                "(JSON keys are strings)")
            out[str(k)] = _encode(v, f"{where}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"cannot write {where} as JSON: it is a {type(obj).__name__} "
                    f"({obj!r:.80})")


def _decode_hook(d):
    if len(d) == 1 and "__float__" in d:
        value = d["__float__"]
        if not isinstance(value, str):  # a ValueError, as any other invalid JSON value
            raise ValueError(f"a tagged float must be 'nan', 'inf' or '-inf', got {value!r:.40}")
        return float(value)
    return d


def dumps_json(obj, where: str = "value") -> str:
    """Strict JSON text of ``obj`` (tuples become lists; NaN/inf are tagged objects)."""
    return json.dumps(_encode(obj, where), indent=1, allow_nan=False) + "\n"


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def loads_json(text: str):
    """The inverse of ``dumps_json``. Invalid text is a ValueError, also when it nests deeper
    than Python's parser can follow."""
    try:
        return json.loads(text, object_hook=_decode_hook, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("the JSON nests too deeply to be read") from None


# ------------------------------------------------------------------------------------- safetensors
_ORDER_KEY = "foveanet.key_order"  # metadata entry: the keys in the order they were given


def _safetensors():
    try:
        import safetensors.numpy as stn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("foveanet.train stores arrays with safetensors: pip install safetensors "
                          "(or pip install 'foveanet[train]')") from exc
    return stn


def _to_array(value, key: str):
    if isinstance(value, Tensor):
        value = value.data
    elif hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu().numpy()
    arr = xp.asarray(value)
    if arr.dtype == object or not (xp.issubdtype(arr.dtype, xp.number) or arr.dtype == xp.bool_):
        raise TypeError(f"state_dict value for {key!r} has dtype {arr.dtype}, which safetensors "
                        "cannot store (numbers and booleans only)")
    return arr if arr.flags.c_contiguous else arr.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)


def encode_arrays(arrays: Mapping, metadata: Mapping | None = None) -> bytes:
    """The safetensors bytes of a ``{name: array or Tensor}`` mapping (``metadata``: string pairs
    stored in the header). Raises TypeError for a non-string key or a non-numeric value."""
    stn = _safetensors()
    if not isinstance(arrays, Mapping):
        raise TypeError(f"expected a mapping from names to arrays, got {type(arrays).__name__}")
    tensors = {}
    for k, v in arrays.items():
        if not isinstance(k, str):
            raise TypeError(f"state_dict keys must be strings, got {k!r}")
        tensors[k] = _to_array(v, k)
    meta = {} if metadata is None else {str(k): str(v) for k, v in metadata.items()}
    meta[_ORDER_KEY] = json.dumps(list(tensors))  # safetensors sorts its entries: keep ours
    return stn.save(tensors, metadata=meta)


def save_arrays(arrays: Mapping, path, metadata: Mapping | None = None) -> None:
    """Write a ``{name: array}`` mapping to ``path`` as safetensors, atomically."""
    atomic_write_bytes(path, encode_arrays(arrays, metadata))


def _read(path, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CheckpointError(f"{what} not found: {os.fspath(path)}", path) from None
    except OSError as exc:  # a directory, no permission
        raise CheckpointError(f"{os.fspath(path)}: cannot be read ({exc.strerror or exc})",
                              path) from None


def _header(data: bytes, path) -> dict:
    """The JSON header of safetensors ``data``: an object of entries and ``__metadata__``
    (string pairs); CheckpointError when it is anything else."""
    def bad(problem):
        return CheckpointError(f"{os.fspath(path)} is not a valid safetensors file: {problem}", path)
    if len(data) < 8:
        raise CheckpointError(f"{os.fspath(path)} is not a safetensors file (only {len(data)} bytes)",
                              path)
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise bad("header runs past the end of the file")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise bad(exc if not isinstance(exc, RecursionError) else "the header nests too deeply") from None
    if not isinstance(header, dict):
        raise bad(f"the header is a JSON {type(header).__name__}, not an object")
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict)
                                 and all(isinstance(v, str) for v in meta.values())):
        raise bad("'__metadata__' must be an object of strings")
    return header


def decode_metadata(data: bytes, path) -> dict:
    """The string metadata in the header of safetensors ``data``."""
    meta = dict(_header(data, path).get("__metadata__") or {})
    meta.pop(_ORDER_KEY, None)
    return meta


def decode_arrays(data: bytes, path) -> tuple[dict, dict]:
    """``(arrays, metadata)`` of safetensors ``data`` (read from ``path``, named in errors):
    arrays in the order they were saved, writable; CheckpointError when the bytes are not a
    valid safetensors file."""
    stn = _safetensors()
    header = _header(data, path)
    try:
        arrays = stn.load(data)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type
        raise CheckpointError(f"{os.fspath(path)} is not a valid safetensors file: {exc}", path) from None
    meta = dict(header.get("__metadata__") or {})
    try:
        order = json.loads(meta.pop(_ORDER_KEY, "[]"))
    except (ValueError, RecursionError):
        order = []
    if not isinstance(order, list) or sorted(map(str, order)) != sorted(arrays):
        # safetensors validated the entries: each is an object with its data_offsets
        order = sorted(arrays, key=lambda k: header[k]["data_offsets"][0])
    out = OrderedDict((k, xp.array(arrays[k], copy=True)) for k in order)
    return out, meta


def load_arrays(path, what: str = "safetensors file") -> tuple[dict, dict]:
    """``(arrays, metadata)`` from a safetensors file; arrays in the file's order, writable.
    A missing or corrupt file is a ``CheckpointError`` naming it."""
    return decode_arrays(_read(path, what), path)


def read_safetensors_metadata(path) -> dict:
    """The string metadata stored in a safetensors file's header (without reading the arrays)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{os.fspath(path)} is not a safetensors file", path)
            (n,) = struct.unpack("<Q", head)
            if n > os.fstat(f.fileno()).st_size - 8:  # never allocate what the file cannot hold
                raise CheckpointError(f"{os.fspath(path)} is not a valid safetensors file: header "
                                      "runs past the end of the file", path)
            return decode_metadata(head + f.read(n), path)
    except FileNotFoundError:
        raise CheckpointError(f"file not found: {os.fspath(path)}", path) from None
    except OSError as exc:
        raise CheckpointError(f"{os.fspath(path)}: cannot be read ({exc.strerror or exc})",
                              path) from None


def save_state_dict(state_dict: Mapping, path, metadata: Mapping | None = None) -> None:
    """Save a model's ``state_dict()`` (or any ``{name: tensor or array}``) to ``path`` in the
    safetensors format, atomically. No pickle: the file holds only arrays and string metadata."""
    save_arrays(state_dict, path, metadata)


def load_state_dict(path) -> "OrderedDict[str, Tensor]":
    """The ``{name: Tensor}`` saved by ``save_state_dict``, ready for ``model.load_state_dict``."""
    arrays, _ = load_arrays(path, "state_dict file")
    return OrderedDict((k, Tensor._wrap(v)) for k, v in arrays.items())
