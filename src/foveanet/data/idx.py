"""The IDX file format (MNIST, Fashion-MNIST): a reader that checks everything, and a writer.

An IDX file is a 4-byte magic number, then one big-endian uint32 per dimension, then the data,
big-endian, in C order. The magic number is two zero bytes, a type code and the number of
dimensions::

    0x08 uint8   0x09 int8   0x0B int16   0x0C int32   0x0D float32   0x0E float64

(0x0A is not assigned.) Files may be gzip-compressed; ``read_idx`` tells by the gzip magic bytes
(0x1f 0x8b), not by the file name. Every way a file can be damaged (truncated, extra bytes, wrong
magic, unknown type, corrupt gzip) raises a ``DatasetError`` that names the file and what is wrong.
"""
from __future__ import annotations

import gzip
import os
import zlib

from ..backend import xp

_TYPES = {
    0x08: xp.dtype(xp.uint8), 0x09: xp.dtype(xp.int8), 0x0B: xp.dtype(">i2"),
    0x0C: xp.dtype(">i4"), 0x0D: xp.dtype(">f4"), 0x0E: xp.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_NDIM = 16


class DatasetError(ValueError):
    """A data set is missing, damaged or not what it claims to be."""


def _name(dt) -> str:
    """The dtype's name without byte order ('int16' for '>i2')."""
    return dt.newbyteorder("=").name if dt.itemsize > 1 else dt.name


_CODES = {_name(dt): code for code, dt in _TYPES.items()}


def _type_names() -> str:
    return ", ".join(f"0x{c:02X} {_name(dt)}" for c, dt in _TYPES.items())


def _read_bytes(path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DatasetError(f"{name}: cannot read: {e.strerror or e}") from e
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DatasetError(f"{name}: corrupt gzip stream ({e}); the file is damaged or was only "
                           "partly downloaded: delete it and get it again") from e


def read_idx(path):
    """Read an IDX file (raw or gzip-compressed) into a NumPy array in native byte order.

    Raises ``DatasetError`` (a ``ValueError``) naming the file and the problem when the magic
    number, the type code, the dimensions or the length of the data are wrong.
    """
    name = os.fspath(path)
    buf = _read_bytes(path)
    if len(buf) < 4:
        raise DatasetError(f"{name}: {len(buf)} bytes: too short for an IDX header (4-byte magic "
                           "number, then the dimensions)")
    if buf[0] != 0 or buf[1] != 0:
        raise DatasetError(f"{name}: bad magic number 0x{buf[:4].hex()}: not an IDX file (an IDX "
                           "file starts with two zero bytes, a type code and the number of "
                           "dimensions)")
    code, ndim = buf[2], buf[3]
    if code not in _TYPES:
        raise DatasetError(f"{name}: unknown data type code 0x{code:02X} in magic number "
                           f"0x{buf[:4].hex()} (IDX types: {_type_names()})")
    if ndim == 0 or ndim > _MAX_NDIM:
        raise DatasetError(f"{name}: magic number 0x{buf[:4].hex()} declares {ndim} dimensions "
                           f"(expected 1 to {_MAX_NDIM})")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DatasetError(f"{name}: truncated header: {ndim} dimensions need {header} header "
                           f"bytes, file has {len(buf)}")
    dims = tuple(int(d) for d in xp.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    dtype = _TYPES[code]
    expected = int(xp.prod(dims, dtype=xp.int64)) * dtype.itemsize
    actual = len(buf) - header
    if actual != expected:
        what = "truncated" if actual < expected else f"{actual - expected} extra bytes after the data"
        shape = "x".join(str(d) for d in dims)
        raise DatasetError(f"{name}: {what}: header declares {shape} {_name(dtype)} = {expected} "
                           f"bytes of data, file has {actual}")
    arr = xp.frombuffer(buf, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return arr.astype(dtype.newbyteorder("="), copy=True).reshape(dims)  # writable, native order


def write_idx(path, array, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file; gzip-compressed when ``compress`` (default: the name ends
    in ``.gz``). Supported dtypes: uint8, int8, int16, int32, float32, float64."""
    arr = xp.asarray(array)
    key = _name(arr.dtype)
    if key not in _CODES:
        raise TypeError(f"write_idx: dtype {arr.dtype} has no IDX type code (IDX types: "
                        f"{_type_names()})")
    if arr.ndim == 0 or arr.ndim > _MAX_NDIM:
        raise ValueError(f"write_idx: arrays of 1 to {_MAX_NDIM} dimensions, got {arr.ndim}")
    code = _CODES[key]
    header = bytes([0, 0, code, arr.ndim]) + xp.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + xp.ascontiguousarray(arr, dtype=_TYPES[code]).tobytes()
    name = os.fspath(path)
    if compress is None:
        compress = name.endswith(".gz")
    if compress:
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    with open(name, "wb") as f:
        f.write(payload)
