"""fv.train.TensorBoard and fv.train.KernelSnapshots: what the event files hold, read back with
TensorBoard's own reader (EventAccumulator), against the trainer's history, the batch losses, the
weights and the gradients the optimizers applied; the kernel pictures, their errors."""
import io
import os
import sys

import numpy as np
import pytest

import foveanet as fv
import foveanet.train  # noqa: F401
from foveanet import nn
from foveanet.nn import functional as F
from foveanet.optim.lr_scheduler import StepLR
from foveanet import visual
from foveanet.train import Callback, KernelSnapshots, LambdaCallback, TensorBoard, Trainer
from foveanet.train.kernels_callback import GAP_COLOUR, grid_png, kernel_grid
from test_train_common import TinyLoader

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
Image = pytest.importorskip("PIL.Image")

BATCHES = 3  # per epoch: 24 samples, batches of 8


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((24, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, 24).astype(np.int64)
    return x, y


def convnet(seed=0):
    fv.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))


def loaders(seed=0):
    x, y = data(seed)
    return (TinyLoader(x, y, batch_size=8, shuffle=True, generator=fv.Generator(seed + 1)),
            TinyLoader(x, y, batch_size=8))


def read(log_dir):
    acc = event_accumulator.EventAccumulator(
        os.fspath(log_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    acc.Reload()
    return acc


def decode(png: bytes):
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


class Recorder(Callback):
    """Records what the trainer did: each step's (global step, batch loss, running accuracy),
    the weights after each epoch, and the gradients each optimizer applied at an epoch's last
    step (in on_before_optimizer_step, as TensorBoard reads them)."""

    def __init__(self):
        self.steps, self.weights, self.grads = [], {}, {}
        self.initial = None

    def on_train_begin(self, logs=None):
        self.initial = {n: p.data.copy() for n, p in self._params()}

    def _params(self):
        t = self.trainer
        for name, model in t.models.items():
            for pname, p in model.named_parameters():
                yield (pname if t.single_model else f"{name}/{pname}"), p

    def on_batch_begin(self, batch, logs=None):
        self.batch, self.num_batches = batch, logs["num_batches"]

    def on_before_optimizer_step(self, optimizer):
        if self.batch == self.num_batches:
            ids = {id(p) for g in optimizer.param_groups for p in g["params"]}
            for n, p in self._params():
                if id(p) in ids:
                    self.grads[(self.trainer.epoch + 1, n)] = p.grad.data.copy()

    def on_batch_end(self, batch, logs=None):
        self.steps.append((self.trainer.global_step, logs.get("batch_loss"), logs.get("accuracy")))

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = {n: p.data.copy() for n, p in self._params()}


def train_convnet(tmp_path, epochs=2, callbacks=(), **tb_options):
    model = convnet()
    opt = fv.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    tb = TensorBoard(tmp_path / "tb", **tb_options)
    rec = Recorder()
    trainer = Trainer(model, opt, callbacks=[tb, rec, *callbacks], progress=False)
    train, val = loaders()
    trainer.fit(train, val, epochs=epochs)
    return trainer, rec, read(tmp_path / "tb")


def steps_values(acc, tag):
    events = acc.Scalars(tag)
    return [e.step for e in events], np.array([e.value for e in events])


# -------------------------------------------------------------------------------- scalars
def test_scalars_equal_the_history_and_the_batch_losses(tmp_path):
    trainer, rec, acc = train_convnet(tmp_path)
    history = trainer.history.epochs
    assert len(history) == 2
    expected = {f"epoch/{k}" for r in history for k, v in r.items()
                if k not in ("epoch", "global_step") and isinstance(v, float)}
    assert {"epoch/train_loss", "epoch/val_loss", "epoch/val_accuracy", "epoch/lr"} <= expected
    scalars = set(acc.Tags()["scalars"])
    assert {t for t in scalars if t.startswith("epoch/")} == expected
    for tag in expected:
        steps, values = steps_values(acc, tag)
        key = tag[len("epoch/"):]
        assert steps == [r["global_step"] for r in history] == [BATCHES, 2 * BATCHES], tag
        np.testing.assert_allclose(values, [r[key] for r in history], rtol=1e-6, err_msg=tag)
    # one point per optimizer step: the batch's own loss, and the accuracy so far this epoch
    steps, values = steps_values(acc, "train/loss")
    assert steps == [s for s, _, _ in rec.steps] == list(range(1, 2 * BATCHES + 1))
    np.testing.assert_allclose(values, [loss for _, loss, _ in rec.steps], rtol=1e-6)
    steps, running = steps_values(acc, "train/running_accuracy")
    np.testing.assert_allclose(running, [a for _, _, a in rec.steps], rtol=1e-6)
    np.testing.assert_allclose(running[BATCHES - 1::BATCHES],
                               [r["train_accuracy"] for r in history], rtol=1e-6)
    assert "train/lr" not in scalars  # a constant rate per epoch: in epoch/lr only


def test_per_step_learning_rate_with_a_batch_scheduler(tmp_path):
    model = convnet()
    opt = fv.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(model, opt, scheduler=StepLR(opt, step_size=2, gamma=0.5),
                      scheduler_interval="batch", callbacks=[TensorBoard(tmp_path / "tb")],
                      progress=False)
    trainer.fit(loaders()[0], epochs=2)
    steps, lrs = steps_values(read(tmp_path / "tb"), "train/lr")
    assert steps == list(range(1, 7))
    # the rate each step used: halved after every second step
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rtol=1e-6)


# ----------------------------------------------------------------------------- histograms
def test_histograms_of_every_weight_and_its_last_gradient(tmp_path):
    trainer, rec, acc = train_convnet(tmp_path)
    names = [n for n, _ in trainer.model.named_parameters()]
    assert set(acc.Tags()["histograms"]) == ({f"weights/{n}" for n in names}
                                             | {f"grads/{n}" for n in names})
    end = {1: BATCHES, 2: 2 * BATCHES}  # the global step each epoch ended at
    for n in names:
        weights, grads = acc.Histograms(f"weights/{n}"), acc.Histograms(f"grads/{n}")
        assert [h.step for h in weights] == [0, BATCHES, 2 * BATCHES], n  # 0: the initial weights
        assert [h.step for h in grads] == [BATCHES, 2 * BATCHES], n
        for h, w in zip(weights, [rec.initial, rec.weights[1], rec.weights[2]]):
            v = h.histogram_value
            assert v.num == w[n].size
            w64 = w[n].astype(np.float64)
            np.testing.assert_allclose([v.min, v.max, v.sum], [w64.min(), w64.max(), w64.sum()],
                                       rtol=1e-6, atol=1e-9)
        for h in grads:
            epoch = {s: e for e, s in end.items()}[h.step]
            g = rec.grads[(epoch, n)].astype(np.float64)
            v = h.histogram_value
            assert v.num == g.size
            np.testing.assert_allclose([v.min, v.max, v.sum, v.sum_squares],
                                       [g.min(), g.max(), g.sum(), (g ** 2).sum()],
                                       rtol=1e-6, atol=1e-9)


def test_histogram_every_and_off(tmp_path):
    _, _, acc = train_convnet(tmp_path / "a", epochs=3, histogram_every=2)
    # epochs 2 and 3 (the last of fit), at their global steps, after the initial weights
    assert [h.step for h in acc.Histograms("weights/0.weight")] == [0, 2 * BATCHES, 3 * BATCHES]
    assert [h.step for h in acc.Histograms("grads/0.weight")] == [2 * BATCHES, 3 * BATCHES]
    assert [i.step for i in acc.Images("kernels/0")] == [0, 2 * BATCHES, 3 * BATCHES]
    _, _, acc = train_convnet(tmp_path / "b", epochs=2, histogram_every=0)
    assert acc.Tags()["histograms"] == [] and acc.Tags()["images"] == []
    assert "epoch/train_loss" in acc.Tags()["scalars"]
    _, _, acc = train_convnet(tmp_path / "c", epochs=1, images=False)
    assert acc.Tags()["images"] == [] and "weights/0.weight" in acc.Tags()["histograms"]


# -------------------------------------------------------------------------------- kernels
def scaled(w):
    """What a tile shows: 0.5 + w / (2 max|W|), as uint8 the way tensorboardX converts it."""
    w = w.astype(np.float64)
    return np.floor((0.5 + w / (2 * np.abs(w).max())).astype(np.float32) * 255).astype(np.uint8)


def test_kernel_image_in_the_event_file(tmp_path):
    trainer, rec, acc = train_convnet(tmp_path)
    images = acc.Images("kernels/0")
    assert [i.step for i in images] == [0, BATCHES, 2 * BATCHES]
    zoom, gap = 8, 2  # 3x3 kernels: 24-pixel tiles; 4 filters in one row
    for image in images:
        assert (image.width, image.height) == (4 * 3 * zoom + 3 * gap, 3 * zoom)
    first, last = rec.initial["0.weight"], rec.weights[2]["0.weight"]
    for image, w in ((images[0], first), (images[-1], last)):
        pixels = decode(image.encoded_image_string)
        assert pixels.shape == (3 * zoom, 4 * 3 * zoom + 3 * gap, 3)
        want = scaled(w)
        for f in range(4):  # filter f's weight (i, j) fills a zoom x zoom block of grey
            x0 = f * (3 * zoom + gap)
            block = pixels[:, x0:x0 + 3 * zoom].reshape(3, zoom, 3, zoom, 3)
            assert (block == want[f, 0][:, None, :, None, None]).all(), f
        gap_pixel = pixels[0, 3 * zoom]
        np.testing.assert_array_equal(gap_pixel, np.floor(np.float32(GAP_COLOUR) * 255))
    assert not np.array_equal(decode(images[0].encoded_image_string),
                              decode(images[-1].encoded_image_string))  # the kernels learnt


def test_kernel_grid_layouts():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 3, 2, 2))
    g = kernel_grid(w, zoom=2, cols=4, gap=1)  # colour tiles, rows of 4: 2 rows
    assert g.shape == (3, 2 * 4 + 1, 4 * 4 + 3) and g.dtype == np.float32
    assert g.min() >= 0 and g.max() <= 1
    m = np.abs(w).max()
    np.testing.assert_allclose(g[:, 0:4:2, 0:4:2], 0.5 + w[0] / (2 * m), rtol=1e-6)
    # filter 4 starts the second row; its right neighbours are empty (gap colour)
    np.testing.assert_allclose(g[:, 5:9:2, 0:4:2], 0.5 + w[4] / (2 * m), rtol=1e-6)
    np.testing.assert_allclose(g[:, 6, 6], GAP_COLOUR, rtol=1e-6)
    # a layer of 2 input channels: one row per output channel, one column per input channel
    w2 = rng.standard_normal((3, 2, 3, 3))
    g2 = kernel_grid(w2, zoom=1, gap=1)
    assert g2.shape == (3, 3 * 3 + 2, 2 * 3 + 1)
    np.testing.assert_allclose(g2[0, 4:7, 4:7], 0.5 + w2[1, 1] / (2 * np.abs(w2).max()), rtol=1e-6)
    flat = kernel_grid(np.zeros((2, 1, 3, 3)), gap=0)  # all zero: mid-grey, no NaN
    assert flat.min() == flat.max() == 0.5
    for bad in (np.zeros((2, 3, 3)), np.full((1, 1, 2, 2), np.nan)):
        with pytest.raises(ValueError, match="kernel_grid"):
            kernel_grid(bad)
    with pytest.raises(ValueError, match="3 input channels"):
        kernel_grid(w2, rgb=True)


# ------------------------------------------------------------------------ several models
class TwoModels(Trainer):
    """An encoder (a convolution) and a head, each with its optimizer: the head steps first; the
    encoder's backward afterwards adds to the head's .grad (not zeroed), as a GAN's generator
    step adds to the discriminator's."""

    def train_step(self, batch):
        enc, head = self.models["encoder"], self.models["head"]
        x, y = batch
        self.zero_grad("head")
        head_loss = F.cross_entropy(head(enc(x)), y)
        self.backward(head_loss)
        self.step("head")
        self.zero_grad("encoder")
        enc_loss = F.cross_entropy(head(enc(x)), y)
        self.backward(enc_loss)
        self.step("encoder")
        return {"head_loss": head_loss, "enc_loss": enc_loss}


def test_several_models_are_named_by_model(tmp_path):
    fv.manual_seed(0)
    enc = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten())
    head = nn.Sequential(nn.Linear(64, 3))
    opts = {"encoder": fv.optim.SGD(enc.parameters(), lr=0.1),
            "head": fv.optim.Adam(head.parameters(), lr=0.01)}
    rec = Recorder()
    trainer = TwoModels(models={"encoder": enc, "head": head}, optimizers=opts,
                        callbacks=[TensorBoard(tmp_path / "tb"), rec], progress=False)
    trainer.fit(loaders()[0], epochs=2)
    acc = read(tmp_path / "tb")
    tags = acc.Tags()
    params = ["encoder/0.weight", "encoder/0.bias", "head/0.weight", "head/0.bias"]
    assert set(tags["histograms"]) == {f"{k}/{p}" for k in ("weights", "grads") for p in params}
    assert tags["images"] == ["kernels/encoder/0"]  # the head has no convolution
    assert {"train/head_loss", "train/enc_loss", "epoch/train_head_loss", "epoch/train_enc_loss",
            "epoch/lr_encoder", "epoch/lr_head"} <= set(tags["scalars"])
    _, lrs = steps_values(acc, "epoch/lr_head")
    np.testing.assert_allclose(lrs, [0.01, 0.01], rtol=1e-6)
    # the head's gradient is the one its optimizer applied, not .grad at the end of the epoch
    last = acc.Histograms("grads/head/0.weight")[-1].histogram_value
    applied = rec.grads[(2, "head/0.weight")]
    applied = applied.astype(np.float64)
    np.testing.assert_allclose([last.sum, last.sum_squares], [applied.sum(), (applied ** 2).sum()],
                               rtol=1e-6)
    final = head[0].weight.grad.data
    assert not np.isclose(final.sum(), applied.sum(), rtol=1e-3)  # the test can tell them apart


# ----------------------------------------------------------------------- rank, resume, extra
def test_a_process_of_rank_1_writes_nothing(tmp_path):
    model = convnet()
    trainer = Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), rank=1, world_size=2,
                      callbacks=[TensorBoard(tmp_path / "tb"), KernelSnapshots(tmp_path, (0, 1))],
                      progress=False)
    trainer.fit(loaders()[0], epochs=1)
    assert os.listdir(tmp_path) == []


class Crash(RuntimeError):
    pass


def test_resume_after_a_crash_shows_each_step_once(tmp_path):
    run, log = tmp_path / "run", tmp_path / "tb"

    def build(callbacks):
        model = convnet()
        opt = fv.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        train, val = loaders()
        return Trainer(model, opt, run_dir=run, callbacks=callbacks, progress=False), train, val

    def crash(epoch, logs):  # after TensorBoard wrote epoch 3 (order 50), before its checkpoint
        if epoch == 3:
            raise Crash("killed")

    trainer, train, val = build([TensorBoard(log), LambdaCallback(order=99, on_epoch_end=crash)])
    with pytest.raises(Crash):
        trainer.fit(train, val, epochs=3)
    crashed = read(log)
    assert steps_values(crashed, "train/loss")[0] == list(range(1, 3 * BATCHES + 1))

    trainer, train, val = build([TensorBoard(log)])
    trainer.fit(train, val, epochs=3, resume=run)
    assert trainer.epoch == 3 and len(os.listdir(log)) == 2
    acc = read(log)
    steps, losses = steps_values(acc, "train/loss")
    assert steps == list(range(1, 3 * BATCHES + 1))  # the crashed run's epoch 3 is hidden
    np.testing.assert_allclose(losses, steps_values(crashed, "train/loss")[1], rtol=1e-6)
    steps, values = steps_values(acc, "epoch/val_loss")
    assert steps == [r["global_step"] for r in trainer.history.epochs] == [3, 6, 9]
    np.testing.assert_allclose(values, [r["val_loss"] for r in trainer.history.epochs], rtol=1e-6)
    assert [h.step for h in acc.Histograms("weights/0.weight")] == [0, 3, 6, 9]


def test_writers_opened_in_the_same_second_keep_both_files(tmp_path, monkeypatch):
    # tensorboardX names an event file by the second it was opened: a second fit (or a resume)
    # within that second must not overwrite the first file
    import time
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
    model = convnet()
    trainer = Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=False,
                      callbacks=[TensorBoard(tmp_path / "tb")])
    train = loaders()[0]
    trainer.fit(train, epochs=1)
    trainer.fit(train, epochs=2)  # continues: epoch 2, global steps 4..6
    assert len(os.listdir(tmp_path / "tb")) == 2
    assert steps_values(read(tmp_path / "tb"), "train/loss")[0] == list(range(1, 2 * BATCHES + 1))


def test_missing_tensorboardx_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import tensorboardX fails
    with pytest.raises(ImportError, match=r"pip install 'foveanet\[tensorboard\]'"):
        TensorBoard(tmp_path / "tb")
    assert not (tmp_path / "tb").exists()


@pytest.mark.parametrize("options,match", [
    ({"histogram_every": -1}, "histogram_every"), ({"histogram_every": 1.5}, "histogram_every"),
    ({"flush_secs": 0}, "flush_secs"), ({"batch_lr": "yes"}, "batch_lr"),
])
def test_tensorboard_arguments_are_checked(tmp_path, options, match):
    with pytest.raises(ValueError, match=match):
        TensorBoard(tmp_path, **options)


# --------------------------------------------------------------------------- KernelSnapshots
def test_snapshots_at_the_chosen_epochs(tmp_path):
    model = convnet()
    seen = {}
    keep = LambdaCallback(on_epoch_end=lambda e, logs: seen.update({e: model[0].weight.data + 0}))
    snaps = KernelSnapshots(tmp_path, epochs=(0, 2, 7))
    trainer = Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=False,
                      callbacks=[keep, snaps])
    seen[0] = model[0].weight.data.copy()
    trainer.fit(loaders()[0], epochs=3)
    folder = tmp_path / "kernels"
    assert sorted(os.listdir(folder)) == ["epoch_000.png", "epoch_002.png"]  # no temporary files
    assert snaps.written == {0: str(folder / "epoch_000.png"), 2: str(folder / "epoch_002.png")}
    assert snaps.layer_name == "0"
    pictures = {e: decode((folder / f"epoch_{e:03d}.png").read_bytes()) for e in (0, 2)}
    for e, pixels in pictures.items():  # each is the grid of that epoch's weights
        np.testing.assert_array_equal(pixels, decode(grid_png(kernel_grid(seen[e]))))
        assert pixels.shape == (24, 4 * 24 + 3 * 2, 3)
    assert not np.array_equal(pictures[0], pictures[2])  # the weights moved


def test_snapshots_of_a_named_layer_and_a_draw_function(tmp_path):
    fv.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 3, 3), nn.Flatten(),
                          nn.Linear(12, 3))
    calls = []

    def draw(m, layer, path):
        calls.append((m, layer, os.path.dirname(path)))
        with open(path, "wb") as f:
            f.write(grid_png(kernel_grid(dict(m.named_modules())[layer].weight)))

    snaps = KernelSnapshots(tmp_path, epochs=1, layer="2", draw=draw)
    Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=False,
            callbacks=[snaps]).fit(loaders()[0], epochs=1)
    assert calls == [(model, "2", str(tmp_path / "kernels"))]
    assert os.listdir(tmp_path / "kernels") == ["epoch_001.png"]
    pixels = decode((tmp_path / "kernels" / "epoch_001.png").read_bytes())
    assert pixels.shape == (3 * 24 + 2 * 2, 2 * 24 + 2, 3)  # 3 rows (out) x 2 columns (in)


def test_snapshots_with_visual_plot_kernels(tmp_path):
    pytest.importorskip("matplotlib")
    model = convnet()
    snaps = KernelSnapshots(tmp_path, epochs=(0,), draw=visual.plot_kernels)
    Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=False,
            callbacks=[snaps]).fit(loaders()[0], epochs=0)
    png = (tmp_path / "kernels" / "epoch_000.png").read_bytes()
    assert png.startswith(b"\x89PNG") and decode(png).shape[0] > 100  # a labelled figure


def test_snapshots_need_a_convolution(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    trainer = Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), model_name="flat_mlp",
                      callbacks=[KernelSnapshots(tmp_path, epochs=(0, 1))], progress=False)
    with pytest.raises(ValueError, match=r"model flat_mlp \(Sequential\) has no convolution"):
        trainer.fit(loaders()[0], epochs=1)
    assert trainer.epoch == 0 and not (tmp_path / "kernels").exists()  # before any training


@pytest.mark.parametrize("layer,match", [
    ("9", r"has no layer '9'; its convolution layers: 0 \(Conv2d\(1, 4"),
    ("1", r"layer '1' of the model .* is a ReLU, not a convolution; its convolution layers: 0 "),
])
def test_snapshots_name_the_convolutions_for_a_bad_layer(tmp_path, layer, match):
    model = convnet()
    trainer = Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=False,
                      callbacks=[KernelSnapshots(tmp_path, epochs=1, layer=layer)])
    with pytest.raises(ValueError, match=match):
        trainer.fit(loaders()[0], epochs=1)
    assert trainer.epoch == 0


@pytest.mark.parametrize("epochs", [(), (-1,), (1.5,), "some", (True,)])
def test_snapshot_epochs_are_checked(tmp_path, epochs):
    with pytest.raises(ValueError, match="KernelSnapshots: epochs"):
        KernelSnapshots(tmp_path, epochs=epochs)


def test_snapshots_pick_the_model_with_a_convolution(tmp_path):
    fv.manual_seed(0)
    enc = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten())
    head = nn.Sequential(nn.Linear(64, 3))
    opts = {"encoder": fv.optim.SGD(enc.parameters(), lr=0.1),
            "head": fv.optim.SGD(head.parameters(), lr=0.1)}
    snaps = KernelSnapshots(tmp_path, epochs=(0,))
    TwoModels(models={"head": head, "encoder": enc}, optimizers=opts, callbacks=[snaps],
              progress=False).fit(loaders()[0], epochs=0)
    assert snaps.layer_name == "0"
    np.testing.assert_array_equal(decode((tmp_path / "kernels" / "epoch_000.png").read_bytes()),
                                  decode(grid_png(kernel_grid(enc[0].weight))))
    bad = KernelSnapshots(tmp_path, epochs=(0,), model="head")
    with pytest.raises(ValueError, match=r"model 'head' \(Sequential\) has no convolution"):
        TwoModels(models={"head": head, "encoder": enc}, optimizers=opts, callbacks=[bad],
                  progress=False).fit(loaders()[0], epochs=0)


def test_snapshots_without_pillow_name_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"pip install 'foveanet\[train\]'"):
        KernelSnapshots(tmp_path, epochs=1)
    KernelSnapshots(tmp_path, epochs=1, draw=lambda model, layer, path: None)  # no Pillow needed


def test_a_draw_that_writes_nothing_is_an_error_and_leaves_no_file(tmp_path):
    model = convnet()
    snaps = KernelSnapshots(tmp_path, epochs=(0,), draw=lambda model, layer, path: None)
    trainer = Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), progress=False,
                      callbacks=[snaps])
    with pytest.raises(RuntimeError, match="wrote nothing for epoch 0"):
        trainer.fit(loaders()[0], epochs=1)
    assert os.listdir(tmp_path / "kernels") == []  # neither the picture nor a temporary file
