"""Interrupt-and-resume gives bit-identical weights to an uninterrupted run with the same seed.

Every source of randomness is on: the loader shuffles and adds noise (augmentation) from its own
generator, Dropout draws from the global generator (and, in the second case, from a generator of
its own), the validation loader also draws, Adam keeps moments, a scheduler decays the rate, and
EarlyStopping/BestCheckpoint carry state across the interruption.
"""
import numpy as np
import pytest

import foveanet as fv
import foveanet.train  # noqa: F401
from foveanet import nn
from foveanet.train import BestCheckpoint, EarlyStopping, Trainer
from test_train_common import TinyLoader, assert_bitwise_equal, blobs, weights_of

X, Y = blobs(72, classes=3, seed=1)


def _build(seed, own_dropout_generator=False):
    """Model, optimizer, scheduler, loaders and callbacks of a fresh run."""
    fv.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 24), nn.ReLU(), nn.Dropout(0.3), nn.Linear(24, 24),
                          nn.BatchNorm1d(24), nn.ReLU(),
                          nn.Dropout(0.2, generator=fv.Generator(seed + 7) if own_dropout_generator
                                     else None),
                          nn.Linear(24, 3))
    opt = fv.optim.Adam(model.parameters(), lr=2e-2)
    sched = fv.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.8)
    train = TinyLoader(X[:56], Y[:56], batch_size=8, shuffle=True, generator=fv.Generator(seed + 1),
                       noise=0.1)
    val = TinyLoader(X[56:], Y[56:], batch_size=8, shuffle=True, generator=fv.Generator(seed + 2))
    return model, opt, sched, train, val


def _trainer(model, opt, sched, run_dir=None):
    return Trainer(model, opt, scheduler=sched, l2=1e-3, clip_grad_norm=5.0, progress=False,
                   run_dir=run_dir, callbacks=[EarlyStopping(patience=10)])


@pytest.mark.parametrize("own_dropout_generator", [False, True])
def test_resume_is_bit_identical(tmp_path, own_dropout_generator):
    # uninterrupted: 4 epochs
    model, opt, sched, train, val = _build(0, own_dropout_generator)
    straight = _trainer(model, opt, sched)
    hist_a = straight.fit(train, val, epochs=4)
    w_a = weights_of(model)

    # interrupted after 2 epochs ...
    model, opt, sched, train, val = _build(0, own_dropout_generator)
    _trainer(model, opt, sched, tmp_path).fit(train, val, epochs=2)
    fv.randn(1000)  # ... the process goes on doing random things, then ends

    # ... and resumed with new objects (even built from another seed: everything is restored)
    model, opt, sched, train, val = _build(123, own_dropout_generator)
    resumed = _trainer(model, opt, sched, tmp_path)
    hist_b = resumed.fit(train, val, epochs=4, resume=tmp_path)
    assert resumed.epoch == 4 and len(hist_b) == 4
    assert_bitwise_equal(w_a, weights_of(model))
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "global_step"):
        assert hist_a[key] == hist_b[key], key
    assert sched.last_epoch == 4
    es = [cb for cb in resumed._cbs if isinstance(cb, EarlyStopping)][0]
    es_a = [cb for cb in straight._cbs if isinstance(cb, EarlyStopping)][0]
    assert (es.best, es.best_epoch, es.wait) == (es_a.best, es_a.best_epoch, es_a.wait)
    best = [cb for cb in resumed._cbs if isinstance(cb, BestCheckpoint)][0]
    assert best.best == min(hist_a["val_loss"])
    assert fv.train.read_checkpoint(tmp_path)["epoch"] == 4


def test_resume_method_then_fit_and_nothing_left_to_do(tmp_path):
    model, opt, sched, train, val = _build(0)
    _trainer(model, opt, sched, tmp_path).fit(train, val, epochs=3)
    w = weights_of(model)
    model, opt, sched, train, val = _build(5)
    tr = _trainer(model, opt, sched)
    info = tr.resume(tmp_path, train, val)
    assert info["epoch"] == 3 and tr.epoch == 3 and tr.run_dir == str(tmp_path)
    assert_bitwise_equal(w, weights_of(model))
    hist = tr.fit(train, val, epochs=3)  # already complete: no epoch runs
    assert len(hist) == 3 and hist.status == "completed"
    assert_bitwise_equal(w, weights_of(model))


def test_resume_with_the_real_dataloader(tmp_path):
    data = pytest.importorskip("foveanet.data")
    if not hasattr(data, "DataLoader") or not hasattr(data, "TensorDataset"):
        pytest.skip("foveanet.data has no DataLoader yet")

    def build(seed):
        fv.manual_seed(seed)
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
        opt = fv.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        train = data.DataLoader(data.TensorDataset(X[:56], Y[:56]), batch_size=8, shuffle=True,
                                generator=fv.Generator(seed + 1))
        val = data.DataLoader(data.TensorDataset(X[56:], Y[56:]), batch_size=8)
        return model, opt, train, val

    model, opt, train, val = build(0)
    Trainer(model, opt, progress=False).fit(train, val, epochs=3)
    w_a = weights_of(model)
    model, opt, train, val = build(0)
    Trainer(model, opt, progress=False, run_dir=tmp_path).fit(train, val, epochs=1)
    model, opt, train, val = build(9)
    Trainer(model, opt, progress=False).fit(train, val, epochs=3, resume=tmp_path)
    assert_bitwise_equal(w_a, weights_of(model))
    assert np.isfinite(w_a["0.weight"]).all()
