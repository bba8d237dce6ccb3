"""Seeded fuzzing of the IDX reader (``read_idx``): valid small files (uint8 images and labels,
int16 and float32 arrays; raw and gzip-compressed) are mutated (bit flips, bytes overwritten with
0, 1, 0x7f, 0x80 or 0xff, truncation, extension, header dimensions, type codes and ranks changed,
random bytes, empty files; for gzip files both the compressed bytes and the IDX inside a valid gzip
stream), and every case must either load or raise ``DatasetError``.

What loads must be what the bytes say: re-encoding the array (header, then the data big-endian)
gives back exactly the file's (decompressed) bytes. Every case runs under ``tracemalloc``, and its
peak allocation must stay within a small multiple of what the file can really hold (for gzip, its
decompressed size), however large the dimensions its header declares.
"""
import gzip
import random
import tracemalloc
import zlib

import numpy as np
import pytest

from foveanet.data import DatasetError, read_idx, write_idx

SEED = 20240611
BOUNDARY = [0, 1, 0x7F, 0x80, 0xFF]
DIM_VALUES = [0, 1, 2, 3, 255, 256, 1 << 16, 1 << 24, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1]
CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _bases(tmp_path):
    """(name, raw IDX bytes) of the valid files the mutations start from."""
    rng = np.random.default_rng(0)
    arrays = {"images-idx3-ubyte": rng.integers(0, 256, (5, 4, 3), dtype=np.uint8),
              "labels-idx1-ubyte": rng.integers(0, 10, 7, dtype=np.uint8),
              "pairs-idx2-short": rng.integers(-300, 300, (3, 2), dtype=np.int16),
              "values-idx2-float": rng.standard_normal((2, 3)).astype(np.float32)}
    out = []
    for name, arr in arrays.items():
        write_idx(tmp_path / name, arr, compress=False)
        out.append((name, (tmp_path / name).read_bytes()))
    return out


def _encode(arr) -> bytes:
    """The IDX bytes of a loaded array, independently of write_idx: what the file must have held."""
    code = {np.dtype(v).newbyteorder("="): k for k, v in CODES.items()}[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


# ============================================================================== mutations
def _set_dim(b, r):
    ndim = b[3] if len(b) > 3 else 0
    if ndim and len(b) >= 4 + 4 * ndim:
        i = r.randrange(ndim)
        b[4 + 4 * i:8 + 4 * i] = r.choice(DIM_VALUES).to_bytes(4, "big")
    return "a dimension changed"


# dimensions whose product is 2**64: a product taken in int64 wraps to 0
WRAPPING_DIMS = [(1 << 16,) * 4, (1 << 31, 1 << 31, 4), (1 << 21, 1 << 21, 1 << 22),
                 (1 << 31, 1 << 31, 2, 2), (1 << 8,) * 8]


def _new_header(b, r):
    """A header of another rank with huge dimensions, the data kept or dropped."""
    dims = r.choice(WRAPPING_DIMS) if r.random() < 0.5 else \
        tuple(r.choice(DIM_VALUES) for _ in range(r.randrange(1, 5)))
    code = b[2] if len(b) > 2 else 0x08
    data = bytes(b[4 + 4 * b[3]:]) if len(b) > 3 and r.random() < 0.5 else b""
    head = bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    return bytearray(head + data), f"header {dims}, {len(data)} bytes of data"


def _mutate(data: bytes, r: random.Random) -> tuple:
    """(mutated bytes, what was done): one to three mutations of the header or the data."""
    b = bytearray(data)
    done = []
    for _ in range(r.choice([1, 1, 2, 3])):
        kind = r.random()
        if not b:
            b = bytearray(r.randbytes(r.randrange(12)))
            done.append("random bytes")
        elif kind < 0.2:
            i = r.randrange(min(len(b), 24) if r.random() < 0.6 else len(b))  # mostly the header
            b[i] ^= 1 << r.randrange(8)
            done.append(f"bit flip at {i}")
        elif kind < 0.4:
            i = r.randrange(min(len(b), 24) if r.random() < 0.6 else len(b))
            b[i] = r.choice(BOUNDARY)
            done.append(f"byte {i} = {b[i]:#x}")
        elif kind < 0.5:
            cut = r.randrange(len(b))
            del b[cut:]
            done.append(f"truncated to {cut}")
        elif kind < 0.6:
            b += bytes(r.randrange(256) for _ in range(r.choice([1, 2, 4, 13])))
            done.append("extended")
        elif kind < 0.7:
            done.append(_set_dim(b, r))
        elif kind < 0.75:
            b, what = _new_header(b, r)
            done.append(what)
        elif kind < 0.82 and len(b) > 3:
            b[2] = r.choice(list(CODES) + [0x00, 0x0A, 0x0F, 0xFF])
            done.append(f"type code {b[2]:#x}")
        elif kind < 0.9 and len(b) > 3:
            b[3] = r.choice([0, 1, 2, 3, 4, 16, 17, 255])
            done.append(f"rank {b[3]}")
        elif kind < 0.95:
            b = bytearray(r.randbytes(r.randrange(0, 64)))
            done.append("random bytes")
        else:
            b = bytearray()
            done.append("empty")
    return bytes(b), "; ".join(done)


def _mutate_gzip(packed: bytes, r: random.Random) -> tuple:
    """Damage to the compressed bytes themselves: header, deflate data, CRC and size trailer."""
    b = bytearray(packed)
    kind = r.random()
    if kind < 0.35:
        i = r.randrange(len(b))
        b[i] ^= 1 << r.randrange(8)
        what = f"gzip bit flip at {i}"
    elif kind < 0.6:
        i = r.randrange(len(b))
        b[i] = r.choice(BOUNDARY)
        what = f"gzip byte {i} = {b[i]:#x}"
    elif kind < 0.85:
        cut = r.randrange(len(b))
        del b[cut:]
        what = f"gzip truncated to {cut}"
    else:
        b += r.choice([b"\0" * 4, bytes(r.randrange(256) for _ in range(5)), packed])
        what = "gzip extended"
    return bytes(b), what


# ============================================================================== the harness
class Tally:
    def __init__(self, surface):
        self.surface = surface
        self.cases = self.loads = self.errors = 0
        self.escapes = []

    def line(self):
        return (f"{self.surface}: {self.cases} cases, {self.loads} loaded, {self.errors} "
                f"DatasetError, {len(self.escapes)} escapes")


def _content(data: bytes):
    """The IDX bytes a file holds (gunzipped), or None when Python's gzip cannot decompress it."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return None


def run_case(tally, path, data, label):
    tally.cases += 1
    path.write_bytes(data)
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    try:
        arr = read_idx(path)
    except DatasetError as e:
        tally.errors += 1
        if str(path) not in str(e):
            tally.escapes.append(f"{label}: the error does not name the file: {e}")
        return
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - anything but a DatasetError escapes
        tally.escapes.append(f"{label}: {type(e).__name__}: {e}")
        return
    finally:
        peak = tracemalloc.get_traced_memory()[1] - start
    tally.loads += 1
    content = _content(data)
    if content is None:
        tally.escapes.append(f"{label}: loaded a gzip file that Python's gzip refuses")
    elif _encode(arr) != content:
        tally.escapes.append(f"{label}: loaded {arr.dtype} {arr.shape}, which is not what the "
                             "file holds")
    elif not arr.flags.writeable or not arr.dtype.isnative:
        tally.escapes.append(f"{label}: not a writable native-order array")
    # a loaded array justifies itself plus a copy; the reader's pieces are at most 1 MiB
    if peak > 3 * arr.nbytes + (3 << 20):
        tally.escapes.append(f"{label}: allocated {peak} bytes for {arr.nbytes} bytes of data")


@pytest.fixture
def traced():
    tracemalloc.start()
    yield
    tracemalloc.stop()


CASES_PER_BASE = 700      # raw mutations, written plain and written gzip-compressed
GZIP_CASES_PER_BASE = 300


def test_fuzz_idx_mutations(tmp_path, traced, capsys):
    tally = Tally("IDX files")
    path_raw, path_gz = tmp_path / "case-idx-ubyte", tmp_path / "case-idx-ubyte.gz"
    for name, data in _bases(tmp_path):
        for case in range(CASES_PER_BASE):
            r = random.Random(f"{SEED}-{name}-{case}")
            mutated, what = _mutate(data, r)
            run_case(tally, path_raw, mutated, f"{name} case {case} (raw: {what})")
            run_case(tally, path_gz, gzip.compress(mutated, mtime=0),
                     f"{name} case {case} (gzip of: {what})")
        packed = gzip.compress(data, mtime=0)
        for case in range(GZIP_CASES_PER_BASE):
            r = random.Random(f"{SEED}-{name}-gzip-{case}")
            mutated, what = _mutate_gzip(packed, r)
            run_case(tally, path_gz, mutated, f"{name} gzip case {case} ({what})")
        # a .gz name over raw bytes: read by content, whatever the name says
        run_case(tally, path_gz, data, f"{name} raw bytes in a .gz name")
    with capsys.disabled():
        print("\n" + tally.line())
    assert not tally.escapes, f"{len(tally.escapes)} escapes:\n" + "\n".join(tally.escapes[:40])
    assert tally.loads >= tally.cases // 20, tally.line()
    assert tally.errors >= tally.cases // 2, tally.line()


# ============================================================== the shapes fuzzing found
def test_dimensions_whose_product_overflows_int64_are_refused(tmp_path):
    # 4 x 65536 is 2**64 elements: a product in int64 wraps to 0, which a file with no data
    # matched; in Python ints it is the huge number it is
    p = tmp_path / "wrap-idx4-ubyte"
    p.write_bytes(bytes([0, 0, 0x08, 4]) + (1 << 16).to_bytes(4, "big") * 4)
    with pytest.raises(DatasetError, match=r"wrap-idx4-ubyte: truncated: header declares "
                                           r"65536x65536x65536x65536 uint8 = 18446744073709551616 "
                                           r"bytes of data, file has 0"):
        read_idx(p)


def test_empty_shape_no_array_can_have_is_refused(tmp_path):
    # 0 x 2**31 x 255 x 2**24 float32 is 0 bytes, which the file holds, but NumPy refuses the
    # shape ("array is too big"): a DatasetError, not NumPy's ValueError
    p = tmp_path / "empty-idx4-float"
    p.write_bytes(bytes([0, 0, 0x0D, 4]) + b"".join(
        d.to_bytes(4, "big") for d in (0, 1 << 31, 255, 1 << 24)))
    with pytest.raises(DatasetError, match=r"empty-idx4-float: the header declares the shape "
                                           r"0x2147483648x255x16777216, whose non-empty axes span"):
        read_idx(p)
    # an empty array of a sensible shape still loads
    p.write_bytes(bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in (0, 28, 28)))
    assert read_idx(p).shape == (0, 28, 28)


def test_absurd_dimensions_allocate_nothing(tmp_path, traced):
    # a gzip file declaring 4 GiB of data but holding 1 MiB of zeros (a kilobyte compressed): the
    # reader decompresses what is there, never what the header claims
    header = bytes([0, 0, 0x08, 2]) + (1 << 16).to_bytes(4, "big") * 2
    p = tmp_path / "bomb-idx2-ubyte.gz"
    p.write_bytes(gzip.compress(header + bytes(1 << 20), mtime=0))
    assert p.stat().st_size < 4096
    tracemalloc.reset_peak()
    with pytest.raises(DatasetError, match=r"truncated: header declares 65536x65536 uint8 = "
                                           r"4294967296 bytes of data, file has 1048576"):
        read_idx(p)
    assert tracemalloc.get_traced_memory()[1] < 8 << 20


def test_extra_bytes_in_gzip_are_counted_without_keeping_them(tmp_path, traced):
    # 32 MiB of zeros after a 12-byte array, compressed to 32 KiB: counted piece by piece
    header = bytes([0, 0, 0x08, 1]) + (12).to_bytes(4, "big")
    p = tmp_path / "tail-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(header + bytes(12) + bytes(32 << 20), mtime=0))
    tracemalloc.reset_peak()
    with pytest.raises(DatasetError, match=r"33554432 extra bytes after the data"):
        read_idx(p)
    assert tracemalloc.get_traced_memory()[1] < 8 << 20


def test_gzip_members_and_padding_as_gzip_accepts_them(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / "multi-idx3-ubyte.gz"
    write_idx(tmp_path / "x", a, compress=False)
    raw = (tmp_path / "x").read_bytes()
    p.write_bytes(gzip.compress(raw[:10], mtime=0) + gzip.compress(raw[10:], mtime=0) + b"\0" * 7)
    np.testing.assert_array_equal(read_idx(p), a)
    p.write_bytes(gzip.compress(raw, mtime=0) + b"trailing garbage")
    with pytest.raises(DatasetError, match=r"corrupt gzip stream \(16 bytes after the end of the "
                                           r"gzip data are not gzip\)"):
        read_idx(p)


def test_empty_and_raw_bytes_in_a_gz_name(tmp_path):
    p = tmp_path / "empty-idx1-ubyte.gz"
    p.write_bytes(b"")
    with pytest.raises(DatasetError, match=r"empty-idx1-ubyte\.gz: 0 bytes: too short"):
        read_idx(p)
    p.write_bytes(b"PK\x03\x04 not gzip at all")
    with pytest.raises(DatasetError, match=r"bad magic number 0x504b0304: .*\(the name ends in "
                                           r"\.gz, but the bytes are not gzip-compressed\)"):
        read_idx(p)
    p.write_bytes(b"\x1f\x8b")
    with pytest.raises(DatasetError, match="corrupt gzip stream"):
        read_idx(p)
