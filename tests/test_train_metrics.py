"""foveanet.train.metrics against hand-computed values and plain-loop references."""
import math

import numpy as np
import pytest

import foveanet as fv
import foveanet.train  # noqa: F401
from foveanet import nn
from foveanet.train import metrics as M
from test_train_common import TinyLoader, blobs, mlp

SCORES = np.array([[0.1, 0.7, 0.2],    # pred 1, true 1
                   [0.8, 0.1, 0.1],    # pred 0, true 2 (true class ranks 2nd: 0.1 == 0.1 tie)
                   [0.3, 0.3, 0.4],    # pred 2, true 0 (true ranks 2nd: tie with class 1)
                   [0.2, 0.5, 0.3]],   # pred 1, true 2 (true ranks 2nd)
                  dtype=np.float32)
TARGET = np.array([1, 2, 0, 2])


def test_hand_computed():
    assert M.accuracy(SCORES, TARGET) == 0.25
    assert M.accuracy(fv.tensor(SCORES), fv.tensor(TARGET)) == 0.25
    assert M.accuracy(np.array([1, 0, 2, 2]), TARGET) == 0.5  # labels, not scores
    assert M.topk_accuracy(SCORES, TARGET, k=1) == 0.25
    assert M.topk_accuracy(SCORES, TARGET, k=2) == 1.0
    assert M.topk_accuracy(SCORES, TARGET, k=3) == 1.0
    cm = M.confusion_matrix(TARGET, SCORES)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[0, 0, 1],
                           [0, 1, 0],
                           [1, 1, 0]]
    pca = M.per_class_accuracy(cm)
    assert pca.tolist() == [0.0, 1.0, 0.0]
    cm5 = M.confusion_matrix([0, 1], [0, 0], num_classes=4)
    pca5 = M.per_class_accuracy(cm5)
    assert pca5[0] == 1.0 and pca5[1] == 0.0 and math.isnan(pca5[2]) and math.isnan(pca5[3])


def test_against_plain_loops():
    rng = np.random.default_rng(0)
    n, c = 500, 7
    scores = rng.standard_normal((n, c)).astype(np.float32)
    target = rng.integers(0, c, n)
    pred = scores.argmax(1)
    ref_cm = np.zeros((c, c), np.int64)
    for t, p in zip(target, pred):
        ref_cm[t, p] += 1
    assert np.array_equal(M.confusion_matrix(target, scores), ref_cm)
    assert M.accuracy(scores, target) == sum(int(p == t) for p, t in zip(pred, target)) / n
    for k in (1, 3, 5):
        ref = sum(int(t in np.argsort(-s, kind="stable")[:k]) for s, t in zip(scores, target)) / n
        assert M.topk_accuracy(scores, target, k) == ref
    for cls in range(c):
        rows = target == cls
        assert M.per_class_accuracy(ref_cm)[cls] == (pred[rows] == cls).mean()


def test_argument_errors():
    with pytest.raises(ValueError, match="k=4"):
        M.topk_accuracy(SCORES, TARGET, k=4)
    with pytest.raises(ValueError, match="integer class labels"):
        M.accuracy(SCORES, TARGET.astype(np.float32))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        M.confusion_matrix([0, 2], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="3 labels but the output has 4"):
        M.accuracy(SCORES, TARGET[:3])


def test_running_average():
    m = M.RunningAverage()
    assert math.isnan(m.avg)
    m.update(1.0, n=3)
    m.update(fv.tensor(np.float32(3.0)), n=1)
    assert m.avg == 1.5 and m.count == 4 and m.val == 3.0
    m.reset()
    assert m.count == 0


def test_evaluate_matches_direct_computation_and_restores_mode():
    fv.manual_seed(0)
    x, y = blobs(50, classes=6)
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.ReLU(), nn.Linear(16, 6))
    model.train()
    res = fv.train.evaluate(model, TinyLoader(x, y, batch_size=7))
    assert model.training  # mode restored
    model.eval()
    with fv.no_grad():
        out = model(fv.tensor(x))
        loss = float(fv.nn.functional.cross_entropy(out, fv.tensor(y)).data)
    model.train()
    assert res["num_samples"] == 50 and res["num_classes"] == 6
    assert res["loss"] == pytest.approx(loss, rel=1e-5)
    assert res["accuracy"] == M.accuracy(out, y)
    assert res["top5"] == M.topk_accuracy(out, y, 5)
    assert np.array_equal(res["confusion_matrix"], M.confusion_matrix(y, out))
    assert np.array_equal(res["per_class_accuracy"], M.per_class_accuracy(res["confusion_matrix"]),
                          equal_nan=True)
    # eval mode is also kept, and evaluation builds no graph
    model.eval()
    fv.train.evaluate(model, TinyLoader(x, y, batch_size=50))
    assert not model.training


def test_evaluate_few_classes_regression_and_errors():
    fv.manual_seed(0)
    x, y = blobs(20, classes=3)
    res = fv.train.evaluate(mlp(), TinyLoader(x, y))
    assert res["top5"] is None and res["confusion_matrix"].shape == (3, 3)
    reg = nn.Linear(4, 1)
    t = x[:, :1] * 2
    res = fv.train.evaluate(reg, TinyLoader(x, t), fv.nn.functional.mse_loss)
    assert res["accuracy"] is None and res["loss"] > 0

    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")
    m = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        fv.train.evaluate(m, TinyLoader(x, y))
    assert m.training
    with pytest.raises(ValueError, match="no samples"):
        fv.train.evaluate(mlp(), [])


def test_flip_test_time_augmentation():
    """predict_loader(tta="flip"): the logits are log((softmax(f(x)) + softmax(f(mirror x))) / 2),
    computed here by hand; the loss is their cross-entropy; a flip-symmetric input scores as the
    plain pass does; inputs that are not images and unknown modes are refused by name."""
    from foveanet.train.evaluation import predict_loader
    rng = np.random.default_rng(0)
    fv.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 5 * 6, 4))
    x = rng.standard_normal((10, 1, 5, 6)).astype(np.float32)
    y = rng.integers(0, 4, 10)

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    with fv.no_grad():
        plain = model(fv.tensor(x)).data
        mirrored = model(fv.tensor(np.ascontiguousarray(x[..., ::-1]))).data
    want = np.log((softmax(plain) + softmax(mirrored)) / 2)
    got = predict_loader(model, TinyLoader(x, y, 4), tta="flip")
    np.testing.assert_allclose(got["logits"], want, rtol=1e-5, atol=1e-6)
    assert abs(got["loss"] - float(np.mean(-want[np.arange(10), y]))) < 1e-5
    np.testing.assert_allclose(got["plain"]["logits"], plain, rtol=1e-6)  # the same pass's
    assert not np.allclose(got["logits"], plain - np.log(np.exp(plain).sum(1, keepdims=True)))
    sym = np.concatenate([x, x[..., ::-1]], axis=3)[..., 3:9]  # symmetric about the middle
    sym = np.ascontiguousarray((sym + sym[..., ::-1]) / 2)
    a = predict_loader(model, TinyLoader(sym, y, 4), tta="flip")["logits"]
    b = predict_loader(model, TinyLoader(sym, y, 4))["logits"]
    np.testing.assert_allclose(a, b - np.log(np.exp(b).sum(1, keepdims=True)), rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ValueError, match="tta must be one of none, flip, got 'rotate'"):
        predict_loader(model, TinyLoader(x, y, 4), tta="rotate")
    flat = mlp(4, 3)
    with pytest.raises(ValueError, match=r"mirrors images \(N, C, H, W\); the inputs have shape"):
        predict_loader(flat, TinyLoader(rng.standard_normal((6, 4)).astype(np.float32),
                                        rng.integers(0, 3, 6), 3), tta="flip")
