"""foveanet.train.tasks: each task's loss against PyTorch, each metric against a hand computation
or a NumPy reference, metrics accumulated over batches equal to the whole set's, the registry and
configs, and the Trainer running each task."""
import math

import numpy as np
import pytest
import torch

import foveanet as fv
import foveanet.train  # noqa: F401
from foveanet import nn
from foveanet.nn import functional as F
from foveanet.train import Trainer, tasks
from test_train_common import TinyLoader, blobs, mlp


def _batches(n, rng, sizes=(1, 2, 3, 5, 8)):
    """Uneven batch boundaries covering range(n)."""
    cuts, i = [], 0
    while i < n:
        step = int(rng.choice(sizes))
        cuts.append(slice(i, min(n, i + step)))
        i += step
    return cuts


def _accumulated(metric, output, target, rng):
    metric.reset()
    for s in _batches(len(output), rng):
        metric.update(output[s], target[s])
    return metric.compute()


# ---------------------------------------------------------------------------------- classification
def test_classification_metrics_by_hand():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = np.array([1, 1, 0, 0])
    m = tasks.Classification(topk=2).metrics("val")
    m.update(scores, labels)
    # predictions 1, 0, 2, 0: rows 0 and 3 right; top-2: row 1 (1 is 2nd), row 2 (0 is 3rd: no)
    assert m.compute() == {"accuracy": 0.5, "top2": 0.75}
    res = m.results()
    assert res["confusion_matrix"].tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    np.testing.assert_array_equal(res["per_class_accuracy"], [0.5, 0.5, np.nan])
    assert res["num_classes"] == 3
    # training: accuracy only; fewer classes than k: no top-k, and None in the results
    t = tasks.Classification().metrics("train")
    t.update(scores, labels)
    assert t.compute() == {"accuracy": 0.5}
    v = tasks.Classification(topk=5).metrics("val")
    v.update(scores, labels)
    assert "top5" not in v.compute() and v.results()["top5"] is None
    # one-hot / probability targets count by their argmax
    p = tasks.Classification().metrics("train")
    p.update(scores, np.eye(3, dtype=np.float32)[labels])
    assert p.compute() == {"accuracy": 0.5}


@pytest.mark.parametrize("seed", range(4))
def test_classification_accumulates_to_the_whole_set_exactly(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(5, 60)), int(rng.integers(5, 9))
    scores, labels = rng.standard_normal((n, c)), rng.integers(0, c, n)
    whole = tasks.Classification().metrics("val")
    whole.update(scores, labels)
    assert _accumulated(tasks.Classification().metrics("val"), scores, labels, rng) == whole.compute()
    assert whole.compute()["accuracy"] == fv.train.accuracy(scores, labels)
    assert whole.compute()["top5"] == fv.train.topk_accuracy(scores, labels, 5)
    top5 = torch.topk(torch.from_numpy(scores), 5).indices.numpy()
    assert whole.compute()["top5"] == np.mean([labels[i] in top5[i] for i in range(n)])


def test_classification_loss_is_pytorchs():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 4)).astype(np.float32), rng.integers(0, 4, 7)
    for smoothing in (0.0, 0.1):
        got = tasks.Classification(label_smoothing=smoothing).loss(fv.tensor(x), fv.tensor(y))
        want = torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(y),
                                                 label_smoothing=smoothing)
        np.testing.assert_allclose(got.item(), want.item(), rtol=1e-6)


def test_classification_rejects_other_shapes():
    m = tasks.Classification().metrics()
    with pytest.raises(ValueError, match=r"classification: the output must be scores of shape \(N, C\)"):
        m.update(np.zeros((4, 3, 2)), np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match="classification: target must be integer class labels"):
        m.update(np.zeros((4, 3)), np.zeros(4))


# ------------------------------------------------------------------------------------- regression
def _r2_reference(pred, target):
    """scikit-learn's r2_score (uniform average over the outputs), in NumPy."""
    pred, target = pred.reshape(len(pred), -1), target.reshape(len(target), -1)
    sse = ((pred - target) ** 2).sum(axis=0)
    sst = ((target - target.mean(axis=0)) ** 2).sum(axis=0)
    return float(np.mean(1 - sse / sst))


def test_regression_metrics_by_hand():
    m = tasks.Regression().metrics()
    m.update(np.array([[1.0], [2.0], [4.0]]), np.array([1.0, 3.0, 2.0]))  # (N,) for (N, 1): fine
    got = m.compute()
    # errors 0, -1, 2: mse 5/3, mae 1; targets mean 2, SST 2, SSE 5: r2 = 1 - 5/2
    assert got["mse"] == pytest.approx(5 / 3) and got["mae"] == pytest.approx(1.0)
    assert got["r2"] == pytest.approx(-1.5)
    const = tasks.Regression().metrics()
    const.update(np.array([1.0, 2.0]), np.array([3.0, 3.0]))
    assert math.isnan(const.compute()["r2"])  # a constant target has no variance to explain


@pytest.mark.parametrize("seed", range(4))
def test_regression_accumulates_to_the_whole_set(seed):
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(4, 50)), int(rng.integers(1, 4))
    target = rng.standard_normal((n, d)) * 3 + 10  # far from zero: a naive sum of squares would lose digits
    pred = target + rng.standard_normal((n, d))
    got = _accumulated(tasks.Regression().metrics(), pred, target, rng)
    assert got["mse"] == pytest.approx(np.mean((pred - target) ** 2), rel=1e-12)
    assert got["mae"] == pytest.approx(np.mean(np.abs(pred - target)), rel=1e-12)
    assert got["r2"] == pytest.approx(_r2_reference(pred, target), rel=1e-10, abs=1e-12)


def test_regression_loss_is_pytorchs():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 1)).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    got = tasks.Regression().loss(fv.tensor(x), fv.tensor(y))
    want = torch.nn.functional.mse_loss(torch.from_numpy(x), torch.from_numpy(y).reshape(6, 1))
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-6)


# ----------------------------------------------------------------------------------- segmentation
def test_segmentation_metrics_by_hand():
    # 1 image, 3 classes, 2x2 pixels; predictions by argmax over the class axis
    pred = np.array([[0, 1], [1, 1]])
    target = np.array([[0, 1], [2, 255]])                     # one pixel ignored
    scores = np.eye(3)[pred].transpose(2, 0, 1)[None]         # (1, 3, 2, 2)
    m = tasks.Segmentation(ignore_index=255).metrics()
    m.update(scores, target[None])
    got = m.compute()
    # labelled pixels: (0->0), (1->1), (2->1): 2 of 3 right; IoU: class 0 1/1, class 1 1/2,
    # class 2 0/1 (present in the target)
    assert got["pixel_accuracy"] == pytest.approx(2 / 3)
    assert got["mean_iou"] == pytest.approx((1 + 0.5 + 0) / 3)
    np.testing.assert_allclose(m.results()["per_class_iou"], [1, 0.5, 0])
    # a class in neither target nor prediction does not count
    m4 = tasks.Segmentation(ignore_index=255).metrics()
    m4.update(np.concatenate([scores, np.full((1, 1, 2, 2), -1.0)], axis=1), target[None])
    assert m4.compute()["mean_iou"] == pytest.approx(0.5)


def _iou_reference(pred, target, c, ignore):
    keep = target != ignore
    p, t = pred[keep], target[keep]
    ious = []
    for k in range(c):
        union = np.sum((p == k) | (t == k))
        if union:
            ious.append(np.sum((p == k) & (t == k)) / union)
    return float(np.mean(ious)), float(np.mean(p == t))


@pytest.mark.parametrize("seed", range(4))
def test_segmentation_accumulates_to_the_whole_set_exactly(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(3, 12)), int(rng.integers(2, 6))
    scores = rng.standard_normal((n, c, 5, 4))
    target = rng.integers(0, c, (n, 5, 4))
    target[rng.random(target.shape) < 0.1] = -100
    whole = tasks.Segmentation().metrics()
    whole.update(scores, target)
    assert _accumulated(tasks.Segmentation().metrics(), scores, target, rng) == whole.compute()
    miou, acc = _iou_reference(scores.argmax(axis=1), target, c, -100)
    assert whole.compute()["mean_iou"] == pytest.approx(miou, rel=1e-12)
    assert whole.compute()["pixel_accuracy"] == pytest.approx(acc, rel=1e-12)


def test_segmentation_loss_is_pytorchs_with_ignore_index():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, (2, 4, 4))
    y[0, 0] = 255
    got = tasks.Segmentation(ignore_index=255).loss(fv.tensor(x), fv.tensor(y))
    want = torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(y), ignore_index=255)
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-6)


def test_segmentation_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"segmentation: the output must be \(N, C, d1, ...\)"):
        tasks.Segmentation().metrics().update(np.zeros((2, 3, 4, 4)), np.zeros((2, 4, 5), np.int64))
    with pytest.raises(ValueError, match=r"target labels must be in \[0, 3\)"):
        tasks.Segmentation().metrics().update(np.zeros((1, 3, 1, 1)), np.full((1, 1, 1), 7))


# --------------------------------------------------------------------------------- reconstruction
def test_reconstruction_metrics_and_psnr():
    rng = np.random.default_rng(3)
    target = rng.random((10, 1, 4, 4))
    out = np.clip(target + 0.05 * rng.standard_normal(target.shape), 0, 1)
    got = _accumulated(tasks.Reconstruction().metrics(), out, target, rng)
    mse = np.mean((out - target) ** 2)
    assert got["mse"] == pytest.approx(mse, rel=1e-12)
    assert got["psnr"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-12)
    # the same PSNR with torch, and data_range scales it as the squared range
    t = 10 * torch.log10(1 / torch.mean((torch.from_numpy(out) - torch.from_numpy(target)) ** 2))
    assert got["psnr"] == pytest.approx(t.item(), rel=1e-10)
    m255 = tasks.Reconstruction(data_range=255).metrics()
    m255.update(out * 255, target * 255)
    assert m255.compute()["psnr"] == pytest.approx(got["psnr"], rel=1e-10)
    perfect = tasks.Reconstruction().metrics()
    perfect.update(target, target)
    assert perfect.compute() == {"mse": 0.0, "psnr": math.inf}


def test_reconstruction_targets_and_loss():
    x, y = fv.tensor(np.ones((2, 3), np.float32)), fv.tensor(np.zeros(2))
    assert tasks.Reconstruction().unpack((x, y))[1] is x          # an autoencoder: the input
    assert tasks.Reconstruction(target="target").unpack((x, y))[1] is y
    out = np.full((2, 3), 0.5, np.float32)
    got = tasks.Reconstruction().loss(fv.tensor(out), x)
    assert got.item() == pytest.approx(torch.nn.functional.mse_loss(
        torch.from_numpy(out), torch.ones(2, 3)).item())


# ----------------------------------------------------------------------------- registry, configs
def test_configs_round_trip_and_registry():
    made = [tasks.Classification(topk=3, label_smoothing=0.1), tasks.Regression(),
            tasks.Segmentation(ignore_index=255), tasks.Reconstruction(data_range=255, target="target")]
    for task in made:
        again = tasks.from_config(task.config())
        assert type(again) is type(task) and again.config() == task.config()
        assert again.name == task.config()["name"]
    assert tasks.create("segmentation", ignore_index=0).ignore_index == 0
    assert {"classification", "regression", "segmentation", "reconstruction",
            "custom_loss"} <= set(tasks.available())
    custom = tasks.CustomLoss(F.mse_loss)
    assert custom.config() == {"name": "custom_loss", "loss_name": "foveanet.ops.loss.mse_loss"}
    rebuilt = tasks.from_config(custom.config())
    with pytest.raises(RuntimeError, match="loss function .*mse_loss.* is not recorded"):
        rebuilt.loss(fv.zeros(1), fv.zeros(1))


def test_bad_configs_say_what_is_wrong():
    with pytest.raises(ValueError, match="unknown task 'detection'; the tasks are classification"):
        tasks.from_config({"name": "detection"})
    with pytest.raises(ValueError, match=r"task 'regression' has no option 'topk' \(its options: none\)"):
        tasks.from_config({"name": "regression", "topk": 5})
    with pytest.raises(ValueError, match="a task config must be an object"):
        tasks.from_config(["classification"])
    with pytest.raises(ValueError, match="needs a 'name' string"):
        tasks.from_config({"topk": 5})
    with pytest.raises(ValueError, match="reconstruction: data_range must be a finite positive number"):
        tasks.from_config({"name": "reconstruction", "data_range": -1})
    with pytest.raises(ValueError, match="segmentation: ignore_index must be an integer"):
        tasks.create("segmentation", ignore_index=True)


def test_register_a_task_of_ones_own():
    @tasks.register
    class SumOfSquares(tasks.Regression):
        name = "sum_of_squares_test"

        def loss(self, output, target):
            return F.sum_squared_error(output, target)
    task = tasks.from_config({"name": "sum_of_squares_test"})
    assert isinstance(task, SumOfSquares)
    assert task.loss(fv.ones(2, 1), fv.zeros(2, 1)).item() == 1.0  # 1/2 * (1 + 1)
    with pytest.raises(ValueError, match="needs a name"):
        tasks.register(type("Nameless", (tasks.Task,), {}))


# ---------------------------------------------------------------------------- the Trainer's tasks
def test_trainer_regression_task_logs_its_metrics():
    fv.manual_seed(0)
    x, _ = blobs(48)
    t = (x[:, :1] * 0.5 - x[:, 1:2]).astype(np.float32)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    tr = Trainer(model, fv.optim.Adam(model.parameters(), lr=1e-2), task="regression", progress=False)
    hist = tr.fit(TinyLoader(x[:36], t[:36], 6), TinyLoader(x[36:], t[36:], 4), epochs=8)
    assert hist.keys()[:6] == ["epoch", "global_step", "train_loss", "train_mse", "train_mae", "train_r2"]
    assert "train_accuracy" not in hist.keys() and {"val_mse", "val_mae", "val_r2"} <= set(hist.keys())
    # the loss is the MSE: the same number, the loss a batch-weighted mean of batch MSEs
    assert hist["val_loss"][-1] == pytest.approx(hist["val_mse"][-1], rel=1e-6)
    assert hist["val_r2"][-1] > hist["val_r2"][0]
    ev = tr.evaluate(TinyLoader(x[36:], t[36:], 5))  # other batches: float32 outputs may differ
    assert ev["num_samples"] == 12 and ev["r2"] == pytest.approx(hist["val_r2"][-1], rel=1e-6)


def test_trainer_segmentation_task():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 1, 6, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)  # the class of a pixel is its sign
    y[:, 0, 0] = 255
    fv.manual_seed(0)
    model = nn.Conv2d(1, 2, 3, padding=1)
    tr = Trainer(model, fv.optim.Adam(model.parameters(), lr=5e-2),
                 task=tasks.Segmentation(ignore_index=255), progress=False)
    hist = tr.fit(TinyLoader(x, y, 4), TinyLoader(x, y, 5), epochs=6)
    assert {"train_pixel_accuracy", "train_mean_iou", "val_pixel_accuracy", "val_mean_iou"} <= set(hist.keys())
    assert hist["val_mean_iou"][-1] > max(0.75, hist["val_mean_iou"][0])
    ev = tr.evaluate(TinyLoader(x, y, 12))
    assert ev["confusion_matrix"].sum() == 12 * 36 - 12  # the ignored pixels are not counted


def test_trainer_reconstruction_task_is_an_autoencoder():
    fv.manual_seed(0)
    x, y = blobs(32)
    model = nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 4))
    hist = Trainer(model, fv.optim.Adam(model.parameters(), lr=2e-2), task="reconstruction",
                   progress=False).fit(TinyLoader(x, y, 8), TinyLoader(x, y, 8), epochs=5)
    assert hist["val_psnr"][-1] > hist["val_psnr"][0]
    assert hist["val_mse"][-1] == pytest.approx(hist["val_loss"][-1], rel=1e-6)


def test_loss_fn_with_a_task_uses_the_task_metrics():
    fv.manual_seed(0)
    x, y = blobs(24)
    model = mlp()
    calls = []

    def loss_fn(out, target):
        calls.append(1)
        return F.cross_entropy(out, target, label_smoothing=0.2)
    tr = Trainer(model, fv.optim.SGD(model.parameters(), lr=0.1), loss_fn=loss_fn,
                 task="classification", progress=False)
    hist = tr.fit(TinyLoader(x, y, 8), TinyLoader(x, y, 8), epochs=1)
    assert len(calls) == 3 + 3 and isinstance(tr.task, tasks.Classification)
    assert hist["train_accuracy"][0] is not None and tr.loss_fn is loss_fn


def test_default_and_loss_fn_tasks():
    model = mlp()
    opt = fv.optim.SGD(model.parameters(), lr=0.1)
    default = Trainer(model, opt)
    assert isinstance(default.task, tasks.Classification) and default.task.config()["name"] == "classification"
    legacy = Trainer(model, opt, loss_fn=F.mse_loss)
    assert isinstance(legacy.task, tasks.CustomLoss) and legacy.loss_fn is F.mse_loss
    with pytest.raises(TypeError, match="task must be a foveanet.train.tasks.Task or a task name"):
        Trainer(model, opt, task=3)
    with pytest.raises(ValueError, match="unknown task 'clasification'"):
        Trainer(model, opt, task="clasification")


def test_legacy_loss_fn_guesses_classification_as_before():
    fv.manual_seed(0)
    x, y = blobs(24)
    model = nn.Linear(4, 1)
    t = x[:, :1].astype(np.float32)
    hist = Trainer(model, fv.optim.SGD(model.parameters(), lr=0.01), loss_fn=F.mse_loss,
                   progress=False).fit(TinyLoader(x, t, 8), TinyLoader(x, t, 8), epochs=1)
    assert hist["train_accuracy"] == [None] and hist["val_accuracy"] == [None]
    assert "val_top5" not in hist.keys()
    model = mlp(classes=6)
    hist = Trainer(model, fv.optim.SGD(model.parameters(), lr=0.01), loss_fn=F.cross_entropy,
                   progress=False).fit(TinyLoader(x, y, 8), TinyLoader(x, y, 8), epochs=1)
    assert 0 <= hist["train_accuracy"][0] <= 1 and 0 <= hist["val_top5"][0] <= 1
