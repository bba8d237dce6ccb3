"""The IDX reader reads what the writer writes and names the file and the fault in every error."""
import gzip

import numpy as np
import pytest

from foveanet.data import DatasetError, read_idx, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_round_trip_every_type_raw_and_gzip(tmp_path, dtype, name):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        a = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True).astype(dtype)
    else:
        a = (rng.standard_normal((3, 4, 5)) * 1e3).astype(dtype)
    write_idx(tmp_path / name, a)
    b = read_idx(tmp_path / name)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative and b.shape == (3, 4, 5)
    np.testing.assert_array_equal(a, b)
    b[0, 0, 0] = 0  # writable


def test_data_is_big_endian_on_disk(tmp_path):
    write_idx(tmp_path / "x", np.array([1, -2], dtype=np.int32))
    raw = (tmp_path / "x").read_bytes()
    assert raw == bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + b"\x00\x00\x00\x01\xff\xff\xff\xfe"


def test_gzip_told_by_magic_bytes_not_by_name(tmp_path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "compressed-but-named-raw", a, compress=True)
    write_idx(tmp_path / "raw-but-named.gz", a, compress=False)
    assert (tmp_path / "compressed-but-named-raw").read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(tmp_path / "compressed-but-named-raw"), a)
    np.testing.assert_array_equal(read_idx(tmp_path / "raw-but-named.gz"), a)


def test_one_dimensional_labels(tmp_path):
    write_idx(tmp_path / "labels-idx1-ubyte", np.array([3, 1, 4, 1, 5], dtype=np.uint8))
    np.testing.assert_array_equal(read_idx(tmp_path / "labels-idx1-ubyte"), [3, 1, 4, 1, 5])


def _valid(tmp_path, shape=(3, 4, 5)):
    p = tmp_path / "train-images-idx3-ubyte"
    write_idx(p, np.zeros(shape, dtype=np.uint8))
    return p, p.read_bytes()


def test_truncated_file_names_file_and_sizes(tmp_path):
    p, raw = _valid(tmp_path)
    p.write_bytes(raw[:-10])
    with pytest.raises(DatasetError) as e:
        read_idx(p)
    assert str(e.value) == (f"{p}: truncated: header declares 3x4x5 uint8 = 60 bytes of data, "
                            "file has 50")
    assert isinstance(e.value, ValueError)


def test_truncated_data_inside_a_valid_gzip_stream(tmp_path):
    _, raw = _valid(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(raw[:-1]))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz: truncated: header "
                       r"declares 3x4x5 uint8 = 60 bytes of data, file has 59"):
        read_idx(p)


def test_extra_bytes(tmp_path):
    p, raw = _valid(tmp_path)
    p.write_bytes(raw + b"\x00\x00\x00")
    with pytest.raises(DatasetError, match=r"3 extra bytes after the data: header declares 3x4x5 "
                       r"uint8 = 60 bytes of data, file has 63"):
        read_idx(p)


def test_truncated_header(tmp_path):
    p, raw = _valid(tmp_path)
    p.write_bytes(raw[:9])
    with pytest.raises(DatasetError, match=r"truncated header: 3 dimensions need 16 header bytes, "
                       r"file has 9"):
        read_idx(p)
    p.write_bytes(raw[:2])
    with pytest.raises(DatasetError, match="too short for an IDX header"):
        read_idx(p)


def test_wrong_magic(tmp_path):
    p, raw = _valid(tmp_path)
    p.write_bytes(b"\x08\x03\xff\x12" + raw[4:])
    with pytest.raises(DatasetError, match=r"bad magic number 0x0803ff12: not an IDX file"):
        read_idx(p)
    p.write_bytes(b"PK\x03\x04 a zip file, not IDX")
    with pytest.raises(DatasetError, match=f"{p.name}: bad magic number 0x504b0304"):
        read_idx(p)


@pytest.mark.parametrize("code", [0x07, 0x0A, 0x0F, 0xFF])
def test_wrong_type_code(tmp_path, code):
    p, raw = _valid(tmp_path)
    p.write_bytes(raw[:2] + bytes([code]) + raw[3:])
    with pytest.raises(DatasetError, match=f"unknown data type code 0x{code:02X} in magic number "
                       f"0x0000{code:02x}03 \\(IDX types: 0x08 uint8, 0x09 int8"):
        read_idx(p)


def test_zero_dimensions(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\x00\x00\x08\x00")
    with pytest.raises(DatasetError, match="declares 0 dimensions"):
        read_idx(p)


def test_corrupt_gzip_stream(tmp_path):
    _, raw = _valid(tmp_path, shape=(50, 28, 28))
    packed = gzip.compress(np.random.default_rng(0).integers(0, 255, 4000, dtype=np.uint8).tobytes()
                           + raw)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(packed[: len(packed) // 2])  # a download cut in the middle
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz: corrupt gzip stream"):
        read_idx(p)
    p.write_bytes(packed[:10] + b"\xde\xad\xbe\xef" * 8 + packed[42:])  # damaged deflate data
    with pytest.raises(DatasetError, match="corrupt gzip stream"):
        read_idx(p)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="nope: cannot read"):
        read_idx(tmp_path / "nope")


def test_write_rejects_types_idx_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="no IDX type code"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
