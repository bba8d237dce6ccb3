"""foveanet.train.io: safetensors round trips, atomic writes, strict JSON, no pickle."""
import math
import re
import os
import pathlib

import numpy as np
import pytest

import foveanet as fv
import foveanet.train  # noqa: F401
from foveanet import nn
from foveanet.train import io as tio
from test_train_common import mlp


def test_state_dict_round_trip_bit_exact(tmp_path):
    fv.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 4 * 4, 5))
    model(fv.randn(2, 1, 6, 6))  # BatchNorm running statistics become non-trivial
    sd = model.state_dict()
    path = tmp_path / "model.safetensors"
    fv.train.save_state_dict(sd, path)
    loaded = fv.train.load_state_dict(path)
    assert list(loaded) == list(sd)  # the file's order is the state_dict's
    for k in sd:
        assert isinstance(loaded[k], fv.Tensor)
        assert loaded[k].dtype == sd[k].dtype
        assert loaded[k].data.tobytes() == sd[k].data.tobytes()
    fv.manual_seed(1)
    other = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 4 * 4, 5))
    other.load_state_dict(loaded)
    x = fv.randn(2, 1, 6, 6)
    model.eval(), other.eval()
    assert np.array_equal(model(x).data, other(x).data)


def test_dtypes_scalars_and_metadata(tmp_path):
    arrays = {"f32": np.arange(6, dtype=np.float32).reshape(2, 3), "f64": np.array([math.pi]),
              "i64": np.array([1, -2], dtype=np.int64), "b": np.array([True, False]),
              "scalar": np.array(2.5, dtype=np.float32), "empty": np.zeros((0, 3), np.float32),
              "noncontig": np.arange(12.0).reshape(3, 4).T}
    path = tmp_path / "a.safetensors"
    tio.save_arrays(arrays, path, metadata={"epoch": 3})
    loaded, meta = tio.load_arrays(path)
    assert meta == {"epoch": "3"}
    assert tio.read_safetensors_metadata(path) == {"epoch": "3"}
    for k, v in arrays.items():
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape
        assert np.array_equal(loaded[k], v)
        assert loaded[k].flags.writeable


def test_bad_values_rejected_before_writing(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match="'name'"):
        fv.train.save_state_dict({"name": np.array(["a"])}, path)
    with pytest.raises(TypeError, match="keys must be strings"):
        fv.train.save_state_dict({1: np.zeros(2)}, path)
    assert not path.exists() and os.listdir(tmp_path) == []


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(fv.train.CheckpointError, match="not found.*nope.safetensors"):
        fv.train.load_state_dict(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(fv.train.CheckpointError, match="bad.safetensors"):
        fv.train.load_state_dict(bad)


def _write_half_then_fail(data):
    def write(f):
        f.write(data[: len(data) // 2])
        raise OSError("disk full (simulated)")
    return write


def test_atomic_write_failure_half_way_keeps_previous_file(tmp_path):
    path = tmp_path / "model.safetensors"
    fv.manual_seed(0)
    model = mlp()
    fv.train.save_state_dict(model.state_dict(), path)
    before = path.read_bytes()
    new = tio.encode_arrays({k: v.data + 1 for k, v in model.state_dict().items()})
    with pytest.raises(OSError, match="simulated"):
        tio.atomic_write(path, _write_half_then_fail(new))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.safetensors"]  # no temporary file left behind


def test_atomic_write_fsync_failure_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    fv.train.save_state_dict({"a": np.zeros(3)}, path)
    before = path.read_bytes()

    def failing_fsync(fd):
        raise OSError("I/O error (simulated)")
    monkeypatch.setattr(tio.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="simulated"):
        fv.train.save_state_dict({"a": np.ones(3)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.safetensors"]


def test_atomic_write_many_is_all_or_nothing_before_renaming(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.json"
    tio.atomic_write_many([(a, b"old-a"), (b, b"old-b")])
    with pytest.raises(OSError):
        tio.atomic_write_many([(a, b"new-a"), (b, _write_half_then_fail(b"new-b-data"))])
    assert a.read_bytes() == b"old-a" and b.read_bytes() == b"old-b"
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.json"]
    tio.atomic_write_many([(a, b"new-a"), (b, b"new-b")])
    assert a.read_bytes() == b"new-a" and b.read_bytes() == b"new-b"


def test_strict_json_round_trip():
    obj = {"best": math.inf, "worse": -math.inf, "nan": math.nan, "t": (1, 2.5), "n": None,
           "np": np.float32(0.5), "i": np.int64(7), 3: "int key"}
    text = tio.dumps_json(obj)
    assert "Infinity" not in text and "NaN" not in text
    back = tio.loads_json(text)
    assert back["best"] == math.inf and back["worse"] == -math.inf and math.isnan(back["nan"])
    assert back["t"] == [1, 2.5] and back["np"] == 0.5 and back["i"] == 7 and back["3"] == "int key"
    with pytest.raises(TypeError, match="value.f"):
        tio.dumps_json({"f": object()})


def test_no_pickle_in_the_training_layer():
    src = pathlib.Path(fv.train.__file__).parent
    for f in src.glob("*.py"):
        text = f.read_text()
        assert not re.search(r"import pickle|from pickle|pickle\.(loads?|dumps?)|np\.load\(", text), f.name


def test_atomic_write_gives_files_the_usual_mode(tmp_path):
    import os
    import stat
    from foveanet.train.io import atomic_write_text
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o644
