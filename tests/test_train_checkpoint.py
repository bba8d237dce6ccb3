"""foveanet.train.checkpoint: the run-directory format, its validation and its atomicity."""
import json
import os
import re

import numpy as np
import pytest

import foveanet as fv
import foveanet.train  # noqa: F401
from foveanet.train import checkpoint as ck
from foveanet.train import io as tio
from test_train_common import assert_bitwise_equal, blobs, mlp, snapshot_dir, weights_of


def _trained(seed=0, steps=3):
    fv.manual_seed(seed)
    model = mlp()
    opt = fv.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    sched = fv.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    x, y = blobs(16)
    for _ in range(steps):
        opt.zero_grad()
        fv.nn.functional.cross_entropy(model(fv.tensor(x)), fv.tensor(y)).backward()
        opt.step()
        sched.step()
    return model, opt, sched


def _save(path, model, opt, sched, epoch=3, **kw):
    return ck.save_checkpoint(path, model, opt, sched, epoch=epoch, global_step=7,
                              history=[{"epoch": 1, "val_loss": 0.5}],
                              rng={"global": fv.random.default_generator.get_state()},
                              model_config={"name": "mlp", "hidden": 16}, **kw)


def test_round_trip_restores_everything(tmp_path):
    model, opt, sched = _trained()
    _save(tmp_path, model, opt, sched,
          callbacks={"EarlyStopping": {"wait": 2, "best": float("inf"),
                                       "best_weights": {"w": np.arange(3.0)}}})
    assert sorted(os.listdir(tmp_path)) == ["callbacks.safetensors", "checkpoint.json",
                                            "model.safetensors", "optimizer.safetensors"]
    doc = json.loads((tmp_path / "checkpoint.json").read_text())  # strict JSON, any reader
    assert doc["format_version"] == ck.FORMAT_VERSION and doc["epoch"] == 3
    assert doc["model"] == {"name": "mlp", "class": "Sequential", "config": {"name": "mlp", "hidden": 16}}

    fv.manual_seed(1)
    model2 = mlp()
    opt2 = fv.optim.Adam(model2.parameters(), lr=1.0)
    sched2 = fv.optim.lr_scheduler.StepLR(opt2, step_size=5, gamma=0.1)
    got = ck.load_checkpoint(tmp_path, model2, opt2, sched2)
    assert_bitwise_equal(weights_of(model), weights_of(model2))
    assert opt2.param_groups[0]["betas"] == (0.8, 0.95)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for p, p2 in zip(model.parameters(), model2.parameters()):
        s, s2 = opt.state[p], opt2.state[p2]
        assert s["step"] == s2["step"] == 3
        for k in ("exp_avg", "exp_avg_sq"):
            assert s[k].tobytes() == s2[k].tobytes()
    assert sched2.state_dict() == sched.state_dict()
    assert got["epoch"] == 3 and got["global_step"] == 7
    assert got["history"] == [{"epoch": 1, "val_loss": 0.5}]
    assert got["callbacks"]["EarlyStopping"]["best"] == float("inf")
    assert np.array_equal(got["callbacks"]["EarlyStopping"]["best_weights"]["w"], np.arange(3.0))
    # both models now take the same step
    x, y = blobs(16, seed=3)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        fv.nn.functional.cross_entropy(m(fv.tensor(x)), fv.tensor(y)).backward()
        o.step()
    assert_bitwise_equal(weights_of(model), weights_of(model2))


def test_errors_name_the_file_and_key(tmp_path):
    model, opt, sched = _trained()
    with pytest.raises(ck.CheckpointError, match="checkpoint directory not found"):
        ck.read_checkpoint(tmp_path / "missing")
    with pytest.raises(ck.CheckpointError, match="checkpoint.json not found"):
        ck.read_checkpoint(tmp_path)
    _save(tmp_path, model, opt, sched)
    good = (tmp_path / "checkpoint.json").read_text()

    def edit(fn):
        doc = json.loads(good)
        fn(doc)
        (tmp_path / "checkpoint.json").write_text(json.dumps(doc))

    edit(lambda d: d.update(format_version=99))
    with pytest.raises(ck.CheckpointError, match=r"checkpoint.json: key 'format_version' is 99") as e:
        ck.read_checkpoint(tmp_path)
    assert e.value.key == "format_version" and e.value.path.endswith("checkpoint.json")
    edit(lambda d: d.pop("epoch"))
    with pytest.raises(ck.CheckpointError, match="checkpoint.json: missing key 'epoch'"):
        ck.read_checkpoint(tmp_path)
    (tmp_path / "checkpoint.json").write_text("{oops")
    with pytest.raises(ck.CheckpointError, match="checkpoint.json: not valid JSON"):
        ck.read_checkpoint(tmp_path)

    (tmp_path / "checkpoint.json").write_text(good)
    # a model of another shape: the file and the key
    fv.manual_seed(0)
    wider = mlp(hidden=8)
    with pytest.raises(ck.CheckpointError, match=r"model.safetensors: key '0.weight' has shape "
                                                 r"\(16, 4\), but the model .* expects \(8, 4\)") as e:
        ck.load_checkpoint(tmp_path, wider)
    assert e.value.key == "0.weight"
    deeper = fv.nn.Sequential(*mlp(), fv.nn.Linear(3, 3))
    with pytest.raises(ck.CheckpointError, match="model.safetensors: missing key '3.weight'"):
        ck.load_checkpoint(tmp_path, deeper)
    # another optimizer class
    m2 = mlp()
    with pytest.raises(ck.CheckpointError, match="optimizer.class' is 'Adam'.*SGD"):
        ck.load_checkpoint(tmp_path, m2, fv.optim.SGD(m2.parameters(), lr=0.1))
    # a missing or replaced array file
    opt_bytes = (tmp_path / "optimizer.safetensors").read_bytes()
    os.remove(tmp_path / "optimizer.safetensors")
    with pytest.raises(ck.CheckpointError, match="optimizer.safetensors: file missing"):
        ck.read_checkpoint(tmp_path)
    (tmp_path / "optimizer.safetensors").write_bytes(opt_bytes)
    tio.save_arrays({k: v.data * 2 for k, v in model.state_dict().items()}, tmp_path / "model.safetensors")
    with pytest.raises(ck.CheckpointError, match="model.safetensors: sha256 .* does not match"):
        ck.read_checkpoint(tmp_path)


def test_failed_load_changes_nothing(tmp_path):
    model, opt, sched = _trained()
    _save(tmp_path, model, opt, sched)
    fv.manual_seed(5)
    m2 = mlp()
    before = weights_of(m2)
    with pytest.raises(ck.CheckpointError):
        ck.load_checkpoint(tmp_path, m2, fv.optim.SGD(m2.parameters(), lr=0.1))
    assert_bitwise_equal(before, weights_of(m2))


def test_crash_during_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    model, opt, sched = _trained()
    _save(tmp_path, model, opt, sched, epoch=1)
    before = snapshot_dir(tmp_path)
    model2, opt2, sched2 = _trained(steps=5)
    real_stage = tio._stage
    calls = []

    def stage(path, write):
        calls.append(os.path.basename(path))
        if len(calls) == 2:  # the optimizer file: fail half way through writing it
            def half(f):
                f.write(b"partial")
                raise OSError("disk full (simulated)")
            return real_stage(path, half)
        return real_stage(path, write)
    monkeypatch.setattr(tio, "_stage", stage)
    with pytest.raises(OSError, match="simulated"):
        _save(tmp_path, model2, opt2, sched2, epoch=2)
    monkeypatch.undo()
    assert calls == ["model.safetensors", "optimizer.safetensors"]
    assert snapshot_dir(tmp_path) == before  # bit-identical, and no temporary files
    assert ck.read_checkpoint(tmp_path)["epoch"] == 1


def test_non_json_values_fail_before_writing(tmp_path):
    model, opt, sched = _trained()
    with pytest.raises(TypeError, match="checkpoint.json.extra.fn"):
        _save(tmp_path, model, opt, sched, extra={"fn": lambda: 0})
    assert os.listdir(tmp_path) == []


def test_hostile_documents_are_checkpoint_errors(tmp_path):
    """The two escapes the run-directory fuzz first found, and the schema's other checks."""
    model, opt, sched = _trained()
    _save(tmp_path, model, opt, sched)
    good = (tmp_path / "checkpoint.json").read_bytes()
    (tmp_path / "checkpoint.json").write_bytes(good[:40] + b"\xff" + good[41:])
    with pytest.raises(ck.CheckpointError, match=r"checkpoint.json: not UTF-8 text \(byte 0xff at "
                                                 r"offset 40\)"):
        ck.load_checkpoint(tmp_path, mlp())

    def edit(fn):
        doc = json.loads(good)
        fn(doc)
        (tmp_path / "checkpoint.json").write_text(json.dumps(doc))

    for change, key, problem in [
            (lambda d: d["files"].update({"model.safetensors": True}), "files.model.safetensors",
             "must be an object with 'sha256', got true"),
            (lambda d: d.update(optimizers=False), "optimizers", "must be an object, got false"),
            (lambda d: d["models"]["model"].update(file="../model.safetensors"), "models.model.file",
             "must be the name of a .safetensors file in the run directory"),
            (lambda d: d["rng"]["global"].update(bit_generator={"state": 1}), "rng.global",
             "is not a random generator state NumPy accepts"),
            (lambda d: d["optimizers"]["optimizer"]["state"]["param_groups"][0].update(lr="fast"),
             "optimizers.optimizer.state.param_groups[0].lr", "must be a number, got the string"),
            (lambda d: d["schedulers"]["optimizer"]["state"].pop("last_epoch"),
             "schedulers.optimizer.state.last_epoch", None),
            (lambda d: d.update(history={"epochs": [1]}), "history.epochs[0]",
             "must be an object \\(one epoch's metrics\\), got 1")]:
        edit(change)
        with pytest.raises(ck.CheckpointError) as e:
            ck.load_checkpoint(tmp_path, mlp(), fv.optim.Adam(mlp().parameters()), sched)
        assert e.value.key == key and "checkpoint.json" in str(e.value), str(e.value)
        if problem:
            assert re.search(problem, str(e.value)), str(e.value)
