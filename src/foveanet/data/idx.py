"""The IDX file format (MNIST, Fashion-MNIST): a reader that checks everything, and a writer.

An IDX file is a 4-byte magic number, then one big-endian uint32 per dimension, then the data,
big-endian, in C order. The magic number is two zero bytes, a type code and the number of
dimensions::

    0x08 uint8   0x09 int8   0x0B int16   0x0C int32   0x0D float32   0x0E float64

(0x0A is not assigned.) Files may be gzip-compressed; ``read_idx`` tells by the gzip magic bytes
(0x1f 0x8b), not by the file name. Every way a file can be damaged (truncated, extra bytes, wrong
magic, unknown type, dimensions that do not match the data, corrupt gzip) raises a ``DatasetError``
that names the file and what is wrong.

Nothing is allocated on the header's word alone: a raw file's data is checked against the file's
size before it is copied, and a gzip file is decompressed piece by piece, so the data held is never
more than the stream really contains, however large the dimensions the header declares.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib

from ..backend import xp

_TYPES = {
    0x08: xp.dtype(xp.uint8), 0x09: xp.dtype(xp.int8), 0x0B: xp.dtype(">i2"),
    0x0C: xp.dtype(">i4"), 0x0D: xp.dtype(">f4"), 0x0E: xp.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_NDIM = 16
_CHUNK = 1 << 20  # gzip data is decompressed in pieces of at most 1 MiB


class DatasetError(ValueError):
    """A data set is missing, damaged or not what it claims to be."""


def _name(dt) -> str:
    """The dtype's name without byte order ('int16' for '>i2')."""
    return dt.newbyteorder("=").name if dt.itemsize > 1 else dt.name


_CODES = {_name(dt): code for code, dt in _TYPES.items()}


def _type_names() -> str:
    return ", ".join(f"0x{c:02X} {_name(dt)}" for c, dt in _TYPES.items())


class _Plain:
    """An uncompressed file's bytes, read front to back."""

    def __init__(self, raw):
        self._view, self._pos = memoryview(raw), 0

    def read(self, n):
        """Up to ``n`` bytes (fewer at the end of the file)."""
        out = self._view[self._pos:self._pos + n]
        self._pos += len(out)
        return out

    def count_rest(self):
        return len(self._view) - self._pos


class _Gunzip:
    """A gzip file's decompressed bytes, read front to back and decompressed only as far as they
    are read: what the IDX header declares never sizes an allocation by itself. Several gzip
    members in a row, and zero bytes after the last, are accepted, as ``gzip`` accepts them."""

    def __init__(self, raw, name):
        self.name = name
        self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # the gzip wrapper; CRC checked
        self._input = raw      # compressed bytes the current member has not consumed yet
        self._piece = memoryview(b"")  # decompressed bytes not read yet

    def _fail(self, why):
        raise DatasetError(f"{self.name}: corrupt gzip stream ({why}); the file is damaged or was "
                           "only partly downloaded: delete it and get it again")

    def _next_piece(self) -> bytes:
        """The next decompressed piece (at most _CHUNK bytes); b"" after the last member."""
        while True:
            if self._d.eof:
                rest = self._d.unused_data.lstrip(b"\0")
                if not rest:
                    return b""
                if rest[:2] != _GZIP_MAGIC:
                    self._fail(f"{len(rest)} bytes after the end of the gzip data are not gzip")
                self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                self._input = rest
            try:
                out = self._d.decompress(self._input, _CHUNK)
            except zlib.error as e:
                self._fail(str(e))
            self._input = self._d.unconsumed_tail
            # no end of stream, yet all the input consumed with the output not full (nothing
            # held back), or no progress at all: the file was cut, which is said before any of
            # its data is looked at
            cut = not self._input and len(out) < _CHUNK
            if not self._d.eof and (cut or not out):
                self._fail("the file ends before the end of the compressed data")
            if out:
                return out

    def read(self, n):
        """Up to ``n`` decompressed bytes (fewer at the end of the data)."""
        out = bytearray()
        while len(out) < n:
            if not self._piece:
                self._piece = memoryview(self._next_piece())
                if not self._piece:
                    break
            take = n - len(out)
            out += self._piece[:take]
            self._piece = self._piece[take:]
        return out

    def count_rest(self):
        """How many decompressed bytes are left (decompressed and dropped piece by piece, which
        also checks the CRC at the end of every member)."""
        count, self._piece = len(self._piece), memoryview(b"")
        while True:
            piece = self._next_piece()
            if not piece:
                return count
            count += len(piece)


def _open(name):
    """A reader of the file's bytes, gunzipped when it starts with the gzip magic."""
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DatasetError(f"{name}: cannot read: {e.strerror or e}") from e
    return _Gunzip(raw, name) if raw[:2] == _GZIP_MAGIC else _Plain(raw)


def read_idx(path):
    """Read an IDX file (raw or gzip-compressed) into a NumPy array in native byte order.

    Raises ``DatasetError`` (a ``ValueError``) naming the file and the problem when the magic
    number, the type code, the dimensions or the length of the data are wrong.
    """
    name = os.fspath(path)
    src = _open(name)
    magic = bytes(src.read(4))
    if len(magic) < 4:
        raise DatasetError(f"{name}: {len(magic)} bytes: too short for an IDX header (4-byte magic "
                           "number, then the dimensions)")
    if magic[0] != 0 or magic[1] != 0:
        hint = " (the name ends in .gz, but the bytes are not gzip-compressed)" \
            if name.endswith(".gz") and isinstance(src, _Plain) else ""
        raise DatasetError(f"{name}: bad magic number 0x{magic.hex()}: not an IDX file (an IDX "
                           "file starts with two zero bytes, a type code and the number of "
                           f"dimensions){hint}")
    code, ndim = magic[2], magic[3]
    if code not in _TYPES:
        raise DatasetError(f"{name}: unknown data type code 0x{code:02X} in magic number "
                           f"0x{magic.hex()} (IDX types: {_type_names()})")
    if ndim == 0 or ndim > _MAX_NDIM:
        raise DatasetError(f"{name}: magic number 0x{magic.hex()} declares {ndim} dimensions "
                           f"(expected 1 to {_MAX_NDIM})")
    header = 4 + 4 * ndim
    dim_bytes = bytes(src.read(4 * ndim))
    if len(dim_bytes) < 4 * ndim:
        raise DatasetError(f"{name}: truncated header: {ndim} dimensions need {header} header "
                           f"bytes, file has {4 + len(dim_bytes)}")
    dims = tuple(int.from_bytes(dim_bytes[i:i + 4], "big") for i in range(0, 4 * ndim, 4))
    dtype = _TYPES[code]
    expected = math.prod(dims) * dtype.itemsize  # Python ints: 16 dims of 2**32 do not overflow
    data = src.read(expected)  # what the file holds, up to the declared size: never more
    actual = len(data) if len(data) < expected else expected + src.count_rest()
    shape = "x".join(str(d) for d in dims)
    if actual != expected:
        what = "truncated" if actual < expected else f"{actual - expected} extra bytes after the data"
        raise DatasetError(f"{name}: {what}: header declares {shape} {_name(dtype)} = {expected} "
                           f"bytes of data, file has {actual}")
    if math.prod(d or 1 for d in dims) * dtype.itemsize > xp.iinfo(xp.intp).max:
        # an empty array (the sizes matched: 0 bytes) whose other axes no NumPy array can have
        raise DatasetError(f"{name}: the header declares the shape {shape}, whose non-empty axes "
                           "span more bytes than any array can hold: the header is damaged")
    arr = xp.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize)
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
