"""foveanet.train.Trainer / fit: the loop, penalties, callbacks, divergence, progress output."""
import csv
import json
import math
import os

import numpy as np
import pytest

import foveanet as fv
import foveanet.train  # noqa: F401
from foveanet import nn
from foveanet.nn import functional as F
from foveanet.train import (BestCheckpoint, Checkpoint, EarlyStopping, LambdaCallback,
                            LRSchedulerCallback, Trainer, TrainingDiverged)
from test_train_common import (TinyLoader, assert_bitwise_equal, blobs, mlp, snapshot_dir,
                               weights_of)


def _data(n=96, classes=3, seed=0):
    x, y = blobs(n, classes=classes, seed=seed)
    return x[: n * 3 // 4], y[: n * 3 // 4], x[n * 3 // 4:], y[n * 3 // 4:]


def test_fit_reduces_the_loss_and_records_history(tmp_path):
    fv.manual_seed(0)
    xt, yt, xv, yv = _data()
    model = mlp()
    hist = fv.train.fit(model, TinyLoader(xt, yt, 8, shuffle=True, generator=fv.Generator(1)),
                        TinyLoader(xv, yv, 16), epochs=6, optimizer="sgd", lr=0.1,
                        optimizer_options={"momentum": 0.9}, progress=False, run_dir=tmp_path,
                        model_config={"name": "mlp", "hidden": 16})
    assert hist.status == "completed" and len(hist) == 6
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    assert hist["val_accuracy"][-1] > 0.85
    assert hist["epoch"] == [1, 2, 3, 4, 5, 6]
    assert hist["global_step"][-1] == 6 * 9
    for key in ("train_accuracy", "val_loss", "lr", "epoch_time", "images_per_sec"):
        assert all(v is not None for v in hist[key]), key
    assert hist.trainer.evaluate(TinyLoader(xv, yv))["accuracy"] == hist["val_accuracy"][-1]
    # logs in the run directory: CSV and JSONL, one row per epoch
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 7))
    assert float(rows[-1]["val_loss"]) == hist["val_loss"][-1]
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, 7))
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    assert doc["epoch"] == 6 and doc["model"]["config"] == {"name": "mlp", "hidden": 16}
    assert {"model.safetensors", "optimizer.safetensors", "best.safetensors",
            "best.json"} <= set(os.listdir(tmp_path))


def test_batch_size_one_online_learning():
    fv.manual_seed(0)
    x, y = blobs(24)
    model = mlp()
    tr = Trainer(model, fv.optim.SGD(model.parameters(), lr=0.05), progress=False)
    hist = tr.fit(TinyLoader(x, y, batch_size=1, shuffle=True, generator=fv.Generator(2)), epochs=3)
    assert tr.global_step == 72 and tr.epoch == 3
    assert hist["train_loss"][-1] < hist["train_loss"][0]


def test_penalized_parameters_are_the_weights_only():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    got = fv.train.penalized_parameters(model)
    assert [id(p) for p in got] == [id(model[0].weight), id(model[3].weight)]


@pytest.mark.parametrize("l1,l2", [(1e-2, 0.0), (0.0, 1e-2), (3e-3, 2e-2)])
def test_penalties_match_the_manual_loop(l1, l2):
    x, y = blobs(32)
    fv.manual_seed(0)
    a = mlp()
    b = mlp()
    b.load_state_dict(a.state_dict())
    opt_a = fv.optim.SGD(a.parameters(), lr=0.1, momentum=0.5)
    Trainer(a, opt_a, l1=l1, l2=l2, clip_grad_norm=1.0, progress=False).fit(
        TinyLoader(x, y, 8), epochs=2)
    # the documented loop, by hand
    opt_b = fv.optim.SGD(b.parameters(), lr=0.1, momentum=0.5)
    weights = [p for p in b.parameters() if p.ndim >= 2]
    for _ in range(2):
        for xb, yb in TinyLoader(x, y, 8):
            opt_b.zero_grad()
            cost = F.cross_entropy(b(xb), yb)
            if l1 > 0:
                cost = cost + fv.optim.l1_penalty(weights, l1)
            if l2 > 0:
                cost = cost + fv.optim.l2_penalty(weights, l2)
            cost.backward()
            fv.nn.utils.clip_grad_norm_(b.parameters(), 1.0)
            opt_b.step()
    assert_bitwise_equal(weights_of(a), weights_of(b))


def test_penalty_moves_weights_not_biases_or_batchnorm():
    """With a loss whose gradient is zero, one step changes only the weights, by exactly
    -lr * (l1 sign(w) + 2 l2 w)."""
    fv.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))
    before = weights_of(model)
    lr, l1, l2 = 0.1, 0.01, 0.05
    x, y = blobs(8)
    tr = Trainer(model, fv.optim.SGD(model.parameters(), lr=lr), loss_fn=lambda out, t: (out * 0).sum(),
                 l1=l1, l2=l2, progress=False)
    tr.fit(TinyLoader(x, y, 8), epochs=1)
    after = weights_of(model)
    for k in ("0.weight", "2.weight"):
        w = before[k]
        expected = w - lr * (2 * l2 * w + l1 * np.sign(w))
        np.testing.assert_allclose(after[k], expected, rtol=1e-6, atol=1e-7)
    for k in ("0.bias", "1.weight", "1.bias", "2.bias"):
        assert np.array_equal(after[k], before[k]), k
    assert tr.history["train_cost"][0] > tr.history["train_loss"][0] == 0.0


def _scripted(values, key="val_loss"):
    """A callback that overwrites logs[key] with a scripted value per epoch (runs first)."""
    return LambdaCallback(order=-100,
                          on_epoch_end=lambda epoch, logs: logs.__setitem__(key, values[epoch - 1]))


def _snapshots(store):
    return LambdaCallback(order=1000, on_epoch_end=lambda epoch, logs: store.__setitem__(
        epoch, weights_of(store["model"])))


def test_best_checkpoint_keeps_the_lowest_val_loss(tmp_path):
    fv.manual_seed(0)
    xt, yt, xv, yv = _data()
    model = mlp()
    snaps = {"model": model}
    best = BestCheckpoint(tmp_path, monitor="val_loss", mode="min")
    Trainer(model, fv.optim.SGD(model.parameters(), lr=0.05), progress=False,
            callbacks=[_scripted([1.0, 0.8, 0.5, 0.7, 0.6, 0.9]), best, _snapshots(snaps)]).fit(
        TinyLoader(xt, yt), TinyLoader(xv, yv), epochs=6)
    assert best.best_epoch == 3 and best.best == 0.5
    doc = json.loads((tmp_path / "best.json").read_text())
    assert doc["epoch"] == 3 and doc["value"] == 0.5 and doc["monitor"] == "val_loss"
    assert doc["metrics"]["val_loss"] == 0.5 and doc["weights"] == "best.safetensors"
    saved = {k: v.data for k, v in fv.train.load_state_dict(tmp_path / "best.safetensors").items()}
    assert_bitwise_equal(saved, snaps[3])
    assert sorted(os.listdir(tmp_path)) == ["best.json", "best.safetensors"]


def test_best_checkpoint_max_mode_ignores_nan(tmp_path):
    fv.manual_seed(0)
    xt, yt, xv, yv = _data()
    model = mlp()
    best = BestCheckpoint(tmp_path, monitor="val_accuracy", mode="max")
    Trainer(model, fv.optim.SGD(model.parameters(), lr=0.05), progress=False,
            callbacks=[_scripted([0.5, math.nan, 0.9, 0.7], "val_accuracy"), best]).fit(
        TinyLoader(xt, yt), TinyLoader(xv, yv), epochs=4)
    assert best.best_epoch == 3


def test_early_stopping_after_patience_and_restore_best():
    fv.manual_seed(0)
    xt, yt, xv, yv = _data()
    model = mlp()
    snaps = {"model": model}
    es = EarlyStopping(monitor="val_loss", patience=3, restore_best=True)
    tr = Trainer(model, fv.optim.SGD(model.parameters(), lr=0.05), progress=False,
                 callbacks=[_scripted([1.0, 0.9, 0.95, 0.96, 0.97, 0.1, 0.1, 0.1]), es,
                            _snapshots(snaps)])
    hist = tr.fit(TinyLoader(xt, yt), TinyLoader(xv, yv), epochs=8)
    assert len(hist) == 5 and tr.epoch == 5 and es.stopped_epoch == 5
    assert hist.status == "early_stopped" and "val_loss has not improved for 3 epochs" in hist.stop_reason
    assert es.best_epoch == 2
    assert_bitwise_equal(weights_of(model), snaps[2])  # restore_best


def test_early_stopping_min_delta():
    fv.manual_seed(0)
    xt, yt, xv, yv = _data()
    model = mlp()
    es = EarlyStopping(patience=2, min_delta=0.1)
    tr = Trainer(model, fv.optim.SGD(model.parameters(), lr=0.05), progress=False,
                 callbacks=[_scripted([1.0, 0.95, 0.92, 0.5, 0.45])])
    tr.callbacks.append(es)
    tr.fit(TinyLoader(xt, yt), TinyLoader(xv, yv), epochs=5)
    assert tr.epoch == 3  # 0.95 and 0.92 are not better than 1.0 by more than 0.1


def test_reduce_lr_on_plateau_is_fed_the_monitored_metric():
    fv.manual_seed(0)
    x, y = blobs(16)
    model = mlp()
    opt = fv.optim.SGD(model.parameters(), lr=0.1)
    sched = fv.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
    const = lambda out, t: (out * 0).sum() + 1.0  # noqa: E731 - a flat loss: a plateau
    hist = Trainer(model, opt, loss_fn=const, scheduler=sched, progress=False).fit(
        TinyLoader(x, y), TinyLoader(x, y), epochs=4)
    assert hist["lr"] == [0.1, 0.1, 0.05, 0.025]
    # the callback form, with a scripted validation loss
    model = mlp()
    opt = fv.optim.SGD(model.parameters(), lr=0.1)
    sched = fv.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    hist = Trainer(model, opt, progress=False, callbacks=[
        _scripted([1.0, 0.5, 0.6, 0.7, 0.8]), LRSchedulerCallback(sched)]).fit(
        TinyLoader(x, y), TinyLoader(x, y), epochs=5)
    assert hist["lr"] == [0.1, 0.1, 0.1, 0.1, 0.05]


def test_batch_interval_scheduler():
    fv.manual_seed(0)
    x, y = blobs(16)
    model = mlp()
    opt = fv.optim.SGD(model.parameters(), lr=0.1)
    sched = fv.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=8)
    Trainer(model, opt, scheduler=sched, scheduler_interval="batch", progress=False).fit(
        TinyLoader(x, y, 4), epochs=2)
    assert sched.last_epoch == 8


def test_nan_loss_stops_at_once_and_keeps_the_last_checkpoint(tmp_path):
    fv.manual_seed(0)
    xt, yt, xv, yv = _data()
    model = mlp()
    calls = {"n": 0}

    def loss_fn(out, t):
        calls["n"] += 1
        loss = F.cross_entropy(out, t)
        # epoch 3, batch 2 (9 batches per epoch) gets a NaN loss
        return loss * float("nan") if calls["n"] == 2 * 9 + 2 else loss

    snaps = {}
    snap = LambdaCallback(order=1000,
                          on_epoch_end=lambda e, logs: snaps.__setitem__(e, snapshot_dir(tmp_path)))
    tr = Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), loss_fn=loss_fn, progress=False,
                 run_dir=tmp_path, callbacks=[snap])
    with pytest.raises(TrainingDiverged) as e:
        tr.fit(TinyLoader(xt, yt, 8), epochs=5)
    msg = str(e.value)
    assert "epoch 3, batch 2/9" in msg and "nan" in msg
    assert "learning rate" in msg and "clip" in msg and "epoch 2" in msg
    assert e.value.epoch == 3 and e.value.batch == 2 and math.isnan(e.value.loss)
    assert e.value.checkpoint_epoch == 2 and e.value.history.status == "diverged"
    assert len(e.value.history) == 2
    assert snapshot_dir(tmp_path) == snaps[2]  # bit-identical, nothing new, no temp files
    assert fv.train.read_checkpoint(tmp_path)["epoch"] == 2


def test_exploding_learning_rate_is_reported():
    fv.manual_seed(0)
    x, y = blobs(32)
    model = nn.Linear(4, 1)
    t = (x[:, :1] * 100).astype(np.float32)
    tr = Trainer(model, fv.optim.SGD(model.parameters(), lr=10.0), loss_fn=F.mse_loss, progress=False)
    with pytest.raises(TrainingDiverged, match="training diverged at .*Lower the learning rate"):
        tr.fit(TinyLoader(x, t, 4), epochs=50)


def test_progress_plain_output_when_not_a_terminal(capsys):
    fv.manual_seed(0)
    xt, yt, xv, yv = _data()
    model = mlp()
    Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=True,
            callbacks=[EarlyStopping(patience=1, monitor="val_loss"), _scripted([1, 1, 1, 1])]).fit(
        TinyLoader(xt, yt), TinyLoader(xv, yv), epochs=4)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].startswith("fit Sequential: epochs 1..4, 9 batches/epoch")
    assert lines[1].startswith("epoch 1/4  train_loss ")
    assert lines[2].startswith("epoch 2/4  train_loss ")
    for part in ("train_acc", "val_loss 1.0000", "val_acc", "lr 0.1", "img/s"):
        assert part in lines[1]
    assert lines[3].startswith("stopped after epoch 2: early stopping")
    assert len(lines) == 4 and "\x1b" not in out and "\r" not in out


def test_progress_disabled_prints_nothing(capsys):
    fv.manual_seed(0)
    x, y = blobs(16)
    model = mlp()
    Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=False).fit(TinyLoader(x, y), epochs=2)
    assert capsys.readouterr().out == ""


def test_progress_bar_mode_renders():
    import io
    pytest.importorskip("rich")
    fv.manual_seed(0)
    x, y = blobs(16)
    model = mlp()
    buf = io.StringIO()
    bar = fv.train.ProgressCallback("bar", stream=buf)
    Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=False, callbacks=[bar]).fit(
        TinyLoader(x, y, 4), epochs=2)
    text = buf.getvalue()
    assert "epoch 2/2" in text and "img/s" in text and "train_loss" in text


def test_argument_checks(tmp_path):
    model = mlp()
    opt = fv.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="Optimizer"):
        Trainer(model, "sgd")
    with pytest.raises(ValueError, match="scheduler_interval"):
        Trainer(model, opt, scheduler_interval="step")
    with pytest.raises(ValueError, match="l2"):
        Trainer(model, opt, l2=-1)
    with pytest.raises(ValueError, match="unknown optimizer"):
        fv.train.fit(model, [], optimizer="lbfgs")
    with pytest.raises(fv.train.CheckpointError, match="not found"):
        Trainer(model, opt, progress=False).fit(TinyLoader(*blobs(8)), epochs=1, resume=tmp_path / "x")
    with pytest.raises(ValueError, match="no batches"):
        Trainer(model, opt, progress=False).fit([], epochs=1)


def test_checkpoint_every_n_epochs(tmp_path):
    fv.manual_seed(0)
    x, y = blobs(16)
    model = mlp()
    saved = []
    cp = Checkpoint(tmp_path, every=2)
    spy = LambdaCallback(order=1000, on_epoch_end=lambda e, logs: saved.append(cp.last_saved_epoch))
    Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=False, callbacks=[cp, spy]).fit(
        TinyLoader(x, y), epochs=5)
    assert saved == [None, 2, 2, 4, 5]  # every 2nd epoch, and the last one
