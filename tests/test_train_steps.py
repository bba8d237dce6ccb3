"""Trainer.train_step / eval_step overrides, the step helpers (zero_grad, backward, step), the
hooks between backward and the optimizer step, several models and optimizers in one run, process
ranks, and checkpoint format version 2 beside version 1."""
import json
import os
import shutil

import numpy as np
import pytest

import foveanet as fv
import foveanet.train  # noqa: F401
from foveanet import nn
from foveanet.nn import functional as F
from foveanet.train import (Callback, CheckpointError, EarlyStopping, LambdaCallback, Trainer,
                            TrainingDiverged)
from foveanet.train import checkpoint as ck
from test_train_common import TinyLoader, assert_bitwise_equal, blobs, mlp, weights_of

X, Y = blobs(40, seed=2)


# ------------------------------------------------------------------------------- custom steps
class Scaled(Trainer):
    """A step of one's own: the default loss, plus two values of its own to log."""

    def train_step(self, batch):
        x, y = batch
        self.zero_grad()
        out = self.model(x)
        loss = F.cross_entropy(out, y)
        self.backward(loss)
        self.step()
        return {"loss": loss, "double": loss * 2, "size": float(len(y)), "skipped": None}

    def eval_step(self, batch):
        x, y = batch
        out = self.model(x)
        return {"loss": F.cross_entropy(out, y), "top": float(out.data.max())}


def test_custom_steps_log_batch_weighted_means():
    fv.manual_seed(0)
    model = mlp()
    seen = []
    spy = LambdaCallback(on_batch_end=lambda b, logs: seen.append(
        (logs["batch_size"], logs["batch_loss"], logs["batch_double"])))
    tr = Scaled(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=False, callbacks=[spy])
    hist = tr.fit(TinyLoader(X[:30], Y[:30], 8), TinyLoader(X[30:], Y[30:], 4), epochs=1)
    sizes, losses, doubles = map(np.array, zip(*seen))
    assert sizes.tolist() == [8, 8, 8, 6]  # the last batch is smaller: weighted means
    rec = hist[0]
    assert rec["train_loss"] == sum(losses * sizes) / 30
    assert rec["train_double"] == sum(doubles * sizes) / 30
    assert rec["train_size"] == (3 * 8 * 8 + 6 * 6) / 30
    assert "train_skipped" not in rec and "train_accuracy" not in rec  # the step updated no metric
    assert list(rec)[:3] == ["epoch", "global_step", "train_loss"]
    assert rec["val_loss"] > 0 and rec["val_top"] > 0 and "val_accuracy" not in rec


def test_default_step_returns_its_logged_values():
    fv.manual_seed(0)
    model = mlp()
    tr = Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), l2=1e-2)
    x, y = fv.tensor(X[:8]), fv.tensor(Y[:8])
    got = tr.train_step((x, y))
    assert set(got) == {"loss", "cost"} and got["cost"].item() > got["loss"].item()
    assert tr.train_metrics.compute()["accuracy"] == tr.train_metrics.correct / 8
    with pytest.raises(ValueError, match="a batch must be \\(input, target, ...\\), got Tensor"):
        tr.train_step(x)


def test_bad_step_values_are_named():
    class Vector(Trainer):
        def train_step(self, batch):
            return {"loss": fv.ones(3)}
    model = mlp()
    tr = Vector(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=False)
    with pytest.raises(TypeError, match=r"train_step returned 'loss' = Tensor of shape \(3,\): "
                                        "logged values must be numbers"):
        tr.fit(TinyLoader(X, Y, 8), epochs=1)


def test_gradient_accumulation_counts_only_stepping_batches():
    class Accumulate(Trainer):
        def train_step(self, batch):
            x, y = batch
            loss = F.cross_entropy(self.model(x), y)
            self.backward(loss / 2)
            if self.batches % 2 == 0:
                self.step()
                self.zero_grad()
            self.batches += 1
            return {"loss": loss}
    fv.manual_seed(0)
    model = mlp()
    tr = Accumulate(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=False)
    tr.batches = 1
    tr.fit(TinyLoader(X, Y, 5), epochs=2)  # 8 batches an epoch, a step every second one
    assert tr.global_step == 8


def test_divergence_in_a_custom_step_names_the_loss():
    class Bad(Trainer):
        def train_step(self, batch):
            self.backward(fv.tensor(float("inf")), "generator loss")
    model = mlp()
    tr = Bad(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=False)
    with pytest.raises(TrainingDiverged, match="epoch 1, batch 1/5: the generator loss is inf"):
        tr.fit(TinyLoader(X, Y, 8), epochs=1)


# --------------------------------------------------------------------------------------- hooks
class Recorder(Callback):
    def __init__(self, log, clip):
        self.log, self.clip = log, clip

    def on_batch_begin(self, batch, logs=None):
        self.log.append(f"begin {batch}")

    def on_after_backward(self):
        self.log.append("cb after_backward")

    def on_before_optimizer_step(self, optimizer):
        norm = np.sqrt(sum(float((p.grad.data ** 2).sum()) for p in self.model.parameters()))
        self.log.append(f"cb before_step {type(optimizer).__name__} clipped={norm <= self.clip + 1e-5}")

    def on_batch_end(self, batch, logs=None):
        self.log.append(f"end {batch}")


def test_hooks_run_between_backward_and_step_in_order():
    log = []

    class Hooked(Trainer):
        def on_after_backward(self):
            log.append("trainer after_backward")

        def on_before_optimizer_step(self, optimizer):
            log.append("trainer before_step")
            super().on_before_optimizer_step(optimizer)  # the clipping
    fv.manual_seed(0)
    model = mlp()
    opt = fv.optim.SGD(model.parameters(), lr=0.1)
    real_step = opt.step
    opt.step = lambda *a: (log.append("optimizer.step"), real_step(*a))[1]
    Hooked(model, opt, clip_grad_norm=1e-3, progress=False,
           callbacks=[Recorder(log, 1e-3)]).fit(TinyLoader(X[:16], Y[:16], 8), epochs=1)
    one = ["trainer after_backward", "cb after_backward", "trainer before_step",
           "cb before_step SGD clipped=True", "optimizer.step"]
    assert log == ["begin 1", *one, "end 1", "begin 2", *one, "end 2"]


def test_overriding_the_hook_without_super_skips_the_clipping():
    log = []

    class NoClip(Trainer):
        def on_before_optimizer_step(self, optimizer):
            pass
    fv.manual_seed(0)
    model = mlp()
    NoClip(model, fv.optim.SGD(model.parameters(), lr=0.1), clip_grad_norm=1e-3, progress=False,
           callbacks=[Recorder(log, 1e-3)]).fit(TinyLoader(X[:8], Y[:8], 8), epochs=1)
    assert "cb before_step SGD clipped=False" in log


# ------------------------------------------------------------------------------ several models
def _two(seed=0):
    fv.manual_seed(seed)
    enc, head = nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Linear(8, 3)
    opts = {"encoder": fv.optim.Adam(enc.parameters(), lr=1e-2),
            "head": fv.optim.SGD(head.parameters(), lr=0.1, momentum=0.9)}
    scheds = {"encoder": fv.optim.lr_scheduler.StepLR(opts["encoder"], 1, 0.5)}
    return {"encoder": enc, "head": head}, opts, scheds


class TwoPart(Trainer):
    """Two models with an optimizer each, stepped one after the other on the same loss."""

    def train_step(self, batch):
        x, y = batch
        enc, head = self.models["encoder"], self.models["head"]
        out = head(enc(x))
        loss = F.cross_entropy(out, y)
        self.zero_grad("encoder")
        self.zero_grad("head")
        self.backward(loss)
        self.step("encoder")
        self.step("head")
        self.train_metrics.update(out, y)
        return {"loss": loss}

    def eval_step(self, batch):
        x, y = batch
        out = self.models["head"](self.models["encoder"](x))
        self.eval_metrics.update(out, y)
        return {"loss": F.cross_entropy(out, y)}


def test_several_models_with_a_task_and_clipping_per_optimizer(tmp_path):
    models, opts, scheds = _two()
    norms = []

    def norm_of(optimizer):  # what each step applies: its own parameters' gradients, clipped
        params = [p for g in optimizer.param_groups for p in g["params"]]
        norms.append(np.sqrt(sum(float((p.grad.data ** 2).sum()) for p in params)))
    tr = TwoPart(models=models, optimizers=opts, schedulers=scheds, task="classification",
                 clip_grad_norm=0.5, progress=False, run_dir=tmp_path,
                 model_config={"head": {"classes": 3}},
                 callbacks=[LambdaCallback(on_before_optimizer_step=norm_of)])
    hist = tr.fit(TinyLoader(X[:32], Y[:32], 8), TinyLoader(X[32:], Y[32:], 8), epochs=3)
    assert len(norms) == 2 * 12 and max(norms) <= 0.5 + 1e-5
    assert hist["lr_encoder"] == [1e-2, 5e-3, 2.5e-3] and hist["lr_head"] == [0.1] * 3
    assert hist["global_step"] == [4, 8, 12] and hist["train_accuracy"][-1] > 0.5
    assert tr.model is None and tr.optimizer is None and not tr.single_model
    assert sorted(f for f in os.listdir(tmp_path) if f.startswith("best")) == [
        "best.encoder.safetensors", "best.head.safetensors", "best.json"]
    best = ck.read_best(tmp_path)
    assert best["format_version"] == 2 and best["model"]["head"]["config"] == {"classes": 3}
    assert list(best["model_states"]["head"]) == ["weight", "bias"]
    assert best["epoch"] == int(np.argmin(hist["val_loss"])) + 1
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    assert doc["task"] == {"name": "classification", "topk": 5, "label_smoothing": 0.0}
    assert doc["models"]["encoder"]["file"] == "model.encoder.safetensors"
    assert doc["schedulers"].keys() == {"encoder"}


def test_several_models_resume_bit_identical(tmp_path):
    def run(epochs, run_dir=None, resume=None, seed=0):
        models, opts, scheds = _two(seed)
        tr = TwoPart(models=models, optimizers=opts, schedulers=scheds, progress=False,
                     run_dir=run_dir, callbacks=[EarlyStopping("train_loss", restore_best=True)])
        tr.fit(TinyLoader(X, Y, 8, shuffle=True, generator=fv.Generator(seed + 1)),
               epochs=epochs, resume=resume)
        return {name: weights_of(m) for name, m in models.items()}, opts, tr
    want, opts_a, _ = run(4)
    run(2, tmp_path)
    got, opts_b, tr = run(4, resume=tmp_path, seed=7)
    for name in want:
        assert_bitwise_equal(want[name], got[name])
    for name in opts_a:
        assert opts_a[name].param_groups[0]["lr"] == opts_b[name].param_groups[0]["lr"]
    es = [cb for cb in tr._cbs if isinstance(cb, EarlyStopping)][0]
    assert set(es.best_weights) == {"encoder", "head"}  # restore_best keeps every model


def test_several_models_argument_errors():
    models, opts, scheds = _two()
    model = mlp()
    with pytest.raises(ValueError, match="give model/optimizer/scheduler or models/optimizers"):
        Trainer(model, models=models, optimizers=opts)
    with pytest.raises(ValueError, match="the scheduler 'head' has no optimizer of that name"):
        Trainer(models=models, optimizers={"encoder": opts["encoder"]},
                schedulers={"head": scheds["encoder"]})
    with pytest.raises(ValueError, match=r"schedulers\['head'\] drives another optimizer"):
        Trainer(models=models, optimizers=opts, schedulers={"head": scheds["encoder"]})
    with pytest.raises(ValueError, match="names must be letters, digits"):
        Trainer(models={"../evil": model}, optimizers=opts)
    with pytest.raises(TypeError, match=r"models\['head'\] must be a foveanet.nn.Module"):
        Trainer(models={"head": "linear"}, optimizers=opts)
    with pytest.raises(ValueError, match="l1/l2 are added by the default train_step of one model"):
        Trainer(models=models, optimizers=opts, l2=1e-4)
    tr = Trainer(models=models, optimizers=opts, progress=False)
    with pytest.raises(NotImplementedError, match="override train_step"):
        tr.fit(TinyLoader(X, Y, 8), epochs=1)
    with pytest.raises(ValueError, match="several optimizers \\(encoder, head\\): name the one"):
        tr.step()
    with pytest.raises(ValueError, match="no optimizer 'decoder'"):
        tr.zero_grad("decoder")


# ---------------------------------------------------------------------------------------- ranks
def test_rank_one_writes_and_prints_nothing_and_trains_the_same(tmp_path, capsys):
    calls = []

    class Mine(Callback):
        def on_epoch_end(self, epoch, logs=None):
            calls.append(("mine", self.trainer.rank))

    class RankZeroMine(Mine):
        rank_zero_only = True

    def run(rank, run_dir):
        fv.manual_seed(0)
        model = mlp(dropout=0.2)
        tr = Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=True,
                     run_dir=run_dir, rank=rank, world_size=2, callbacks=[Mine(), RankZeroMine()])
        hist = tr.fit(TinyLoader(X[:32], Y[:32], 8, shuffle=True, generator=fv.Generator(1)),
                      TinyLoader(X[32:], Y[32:], 8), epochs=2)
        return weights_of(model), hist
    w1, h1 = run(1, tmp_path / "rank1")
    assert capsys.readouterr().out == "" and not (tmp_path / "rank1").exists()
    assert calls == [("mine", 1), ("mine", 1)]
    w0, h0 = run(0, tmp_path / "rank0")
    assert "epoch 2/2" in capsys.readouterr().out and (tmp_path / "rank0" / "checkpoint.json").exists()
    assert_bitwise_equal(w0, w1)
    assert h0["train_loss"] == h1["train_loss"] and h0["val_loss"] == h1["val_loss"]
    model = mlp()
    for bad in ({"rank": 2, "world_size": 2}, {"rank": -1}, {"world_size": 0}, {"rank": 0.5}):
        with pytest.raises(ValueError, match="rank|world_size"):
            Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), **bad)


# ------------------------------------------------------------------------ checkpoint versions
def _as_version_1(run_dir):
    """Rewrite a single-model version 2 checkpoint.json as version 1 wrote it (the same files)."""
    path = os.path.join(run_dir, "checkpoint.json")
    doc = json.load(open(path))
    opt, sched = doc["optimizers"].get("optimizer"), doc["schedulers"].get("optimizer")
    v1 = {"format": doc["format"], "format_version": 1, "model": doc["model"],
          "epoch": doc["epoch"], "global_step": doc["global_step"],
          "optimizer": None if opt is None else {"class": opt["class"], "state": opt["state"]},
          "scheduler": sched, "rng": doc["rng"], "history": doc["history"],
          "callbacks": doc["callbacks"], "extra": doc["extra"], "files": doc["files"],
          "created": doc["created"]}
    with open(path, "w") as f:
        json.dump(v1, f)


def _single(seed):
    fv.manual_seed(seed)
    model = mlp(dropout=0.2, generator=fv.Generator(seed + 5))
    opt = fv.optim.Adam(model.parameters(), lr=1e-2)
    sched = fv.optim.lr_scheduler.StepLR(opt, 1, 0.7)
    tr = Trainer(model, opt, scheduler=sched, progress=False, callbacks=[EarlyStopping(patience=9)])
    loaders = (TinyLoader(X[:32], Y[:32], 8, shuffle=True, generator=fv.Generator(seed + 1)),
               TinyLoader(X[32:], Y[32:], 8))
    return model, tr, loaders


def test_version_1_run_directories_still_resume_bit_identical(tmp_path):
    model, tr, loaders = _single(0)
    tr.fit(*loaders, epochs=4)
    want = weights_of(model)
    model, tr, loaders = _single(0)
    tr.run_dir = str(tmp_path)
    tr.fit(*loaders, epochs=2)
    assert sorted(os.listdir(tmp_path)) == ["best.json", "best.safetensors", "checkpoint.json",
                                            "history.csv", "history.jsonl", "model.safetensors",
                                            "optimizer.safetensors"]
    _as_version_1(tmp_path)
    info = ck.read_checkpoint(tmp_path)
    assert info["format_version"] == 1 and list(info["models"]) == ["model"]
    assert info["optimizer"]["class"] == "Adam" and info["scheduler"]["class"] == "StepLR"
    model, tr, loaders = _single(9)
    tr.fit(*loaders, epochs=4, resume=tmp_path)
    assert_bitwise_equal(want, weights_of(model))
    assert json.load(open(tmp_path / "checkpoint.json"))["format_version"] == 2  # rewritten as 2


def test_single_model_checkpoints_keep_their_file_names_and_keys(tmp_path):
    model, tr, loaders = _single(0)
    tr.run_dir = str(tmp_path)
    tr.fit(*loaders, epochs=1)
    doc = json.load(open(tmp_path / "checkpoint.json"))
    assert doc["format_version"] == 2 == ck.FORMAT_VERSION
    assert doc["model"] == {"name": "Sequential", "class": "Sequential", "config": None}
    assert doc["models"]["model"]["file"] == "model.safetensors"
    assert doc["optimizers"]["optimizer"]["file"] == "optimizer.safetensors"
    assert doc["task"]["name"] == "classification"
    best = ck.read_best(tmp_path)
    assert best["format_version"] == 1 and best["weights"] == "best.safetensors"
    assert best["model_state"].keys() == weights_of(model).keys()


def test_load_checkpoint_pairs_models_by_name(tmp_path):
    models, opts, scheds = _two()
    ck.save_checkpoint(tmp_path, models=models, optimizers=opts, schedulers=scheds)
    fresh, fresh_opts, fresh_scheds = _two(3)
    got = ck.load_checkpoint(tmp_path, models={"head": fresh["head"]})  # a subset is fine
    assert_bitwise_equal(weights_of(models["head"]), weights_of(fresh["head"]))
    assert got["model_state"] is None and set(got["model_states"]) == {"encoder", "head"}
    with pytest.raises(CheckpointError, match="key 'models' has no model 'decoder' \\(it has "
                                              "'encoder', 'head'\\)"):
        ck.load_checkpoint(tmp_path, models={"decoder": fresh["head"]})
    with pytest.raises(CheckpointError, match="key 'models' has no model 'model'"):
        ck.load_checkpoint(tmp_path, fresh["head"])  # one model given, the checkpoint has two
    with pytest.raises(CheckpointError, match="key 'models.head' is a model that is not given"):
        ck.load_checkpoint(tmp_path, models={"encoder": fresh["encoder"]}, strict=True)
    with pytest.raises(CheckpointError, match="optimizers.head.class' is 'SGD'.*Adam"):
        ck.load_checkpoint(tmp_path, optimizers={"head": fresh_opts["encoder"]})
    # a dict-form run with one model loads into the single form, whatever the names
    one = tmp_path / "one"
    ck.save_checkpoint(one, models={"net": models["head"]}, optimizers={"net": opts["head"]})
    assert ck.load_checkpoint(one, fresh["head"], fresh_opts["head"])["models"]["net"]["file"] == \
        "model.net.safetensors"


def test_resume_refuses_a_checkpoint_of_other_models(tmp_path):
    models, opts, scheds = _two()
    TwoPart(models=models, optimizers=opts, schedulers=scheds, progress=False,
            run_dir=tmp_path).fit(TinyLoader(X, Y, 8), epochs=1)
    models, opts, _ = _two()
    del models["head"], opts["head"]
    with pytest.raises(CheckpointError, match="key 'models.head' is a model that is not given"):
        Trainer(models=models, optimizers=opts).resume(tmp_path)
    models, opts, _ = _two()
    with pytest.warns(RuntimeWarning, match="StepLR scheduler for optimizer 'encoder'.*has none"):
        Trainer(models=models, optimizers=opts).resume(tmp_path)


def test_a_callback_state_it_rejects_is_a_checkpoint_error(tmp_path):
    model, tr, loaders = _single(0)
    tr.run_dir = str(tmp_path)
    tr.fit(*loaders, epochs=1)
    path = tmp_path / "checkpoint.json"
    doc = json.load(open(path))
    doc["callbacks"]["EarlyStopping"]["wait"] = "two"
    json.dump(doc, open(path, "w"))
    model, tr, loaders = _single(0)
    with pytest.raises(CheckpointError, match="key 'callbacks.EarlyStopping' is not a state of "
                                              "EarlyStopping: 'wait' must be an integer"):
        tr.fit(*loaders, epochs=2, resume=tmp_path)


def test_v1_fixture_matches_what_version_1_wrote(tmp_path):
    """_as_version_1 writes exactly the keys foveanet 1 wrote (so the test above is honest)."""
    model, tr, loaders = _single(0)
    tr.run_dir = str(tmp_path)
    tr.fit(*loaders, epochs=1)
    shutil.copy(tmp_path / "checkpoint.json", tmp_path / "v2.json")
    _as_version_1(tmp_path)
    doc = json.load(open(tmp_path / "checkpoint.json"))
    assert set(doc) == set(ck._REQUIRED_KEYS[1]) | {"callbacks", "extra", "created"}
    assert doc["optimizer"]["state"]["param_groups"][0]["params"] == [0, 1, 2, 3]
