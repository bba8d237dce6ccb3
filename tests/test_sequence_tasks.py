"""Sequence classification: ``lstm_rows`` reads an image row by row (Fashion-MNIST: 28 steps of
28 pixels) with an LSTM/GRU/RNN and classifies the last hidden state; it takes the image
pipeline's (N, C, H, W) batches, so ``foveanet train --model lstm_rows`` trains, resumes (bit for
bit), reports, evaluates and predicts like the CNNs (on the small synthetic Fashion-MNIST files of
``test_cli``)."""
import json
import os
import re

import numpy as np
import pytest

import foveanet as fv
from foveanet.cli import main
from test_cli import ACC_LINE, PNG_MAGIC, make_fake_fashion

ROWS = ["--model", "lstm_rows", "--model-option", "hidden=16", "--threads", "1",
        "--no-progress", "--limit-train", "200", "--limit-test", "50", "--batch-size", "50"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_fake_fashion(tmp_path_factory.mktemp("fake-fashion"), n_train=240, n_test=60)


def _np(t):
    return t.detach().numpy()


def test_rows_are_the_steps_and_the_last_hidden_state_is_classified():
    fv.manual_seed(0)
    model = fv.models.create("lstm_rows", hidden=12)
    x = fv.rand(5, 1, 28, 28)
    out = model(x)
    assert tuple(out.shape) == (5, 10)
    # the same computation by hand: 28 steps of 28 pixels, the last step's output, the head
    seq, _ = model.rnn(x.reshape(5, 28, 28))
    np.testing.assert_allclose(_np(out), _np(model.fc(seq[:, -1])), rtol=1e-5, atol=1e-6)
    # reading the rows in another order gives another answer
    assert not np.allclose(_np(out), _np(model(fv.tensor(x.numpy()[:, :, ::-1].copy()))), atol=1e-4)
    out.sum().backward()
    assert all(p.grad is not None and np.isfinite(p.grad.numpy()).all()
               for p in model.parameters())


def test_bidirectional_takes_both_directions_last_states():
    fv.manual_seed(0)
    model = fv.models.create("lstm_rows", hidden=6, bidirectional=True, cell="gru")
    x = fv.rand(3, 1, 28, 28)
    seq, _ = model.rnn(x.reshape(3, 28, 28))
    # forward direction: its state after the last row; backward: its state after the first row
    feat = fv.cat([seq[:, -1, :6], seq[:, 0, 6:]], dim=1)
    np.testing.assert_allclose(_np(model(x)), _np(model.fc(feat)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options,shape", [
    ({"cell": "rnn", "pool": "mean"}, (2, 1, 28, 28)),
    ({"num_layers": 2, "dropout": 0.1}, (2, 1, 28, 28)),
    ({"in_channels": 3, "input_size": 32, "num_classes": 100}, (2, 3, 32, 32)),
])
def test_options_and_other_image_sizes(options, shape):
    model = fv.models.create("lstm_rows", hidden=8, **options)
    assert tuple(model(fv.rand(*shape)).shape) == (2, options.get("num_classes", 10))


def test_refuses_what_it_cannot_read():
    model = fv.models.create("lstm_rows", hidden=4)
    with pytest.raises(ValueError, match=r"expected images \(N, C, H, W\)"):
        model(fv.rand(2, 28, 28))
    with pytest.raises(ValueError, match="built for rows of 28 values"):
        model(fv.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="pool must be 'last' or 'mean'"):
        fv.models.create("lstm_rows", pool="max")
    with pytest.raises(ValueError, match="unknown cell 'transformer'"):
        fv.models.create("lstm_rows", cell="transformer")


def test_cli_lstm_rows_trains_evaluates_predicts(tmp_path, data_dir, capsys):
    run = str(tmp_path / "rows")
    assert main(["train", "--data-dir", data_dir, "--epochs", "2", "--out", run] + ROWS) == 0
    out = capsys.readouterr().out
    assert "fit RowClassifier" in out and ACC_LINE.search(out), out
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["model"] == "lstm_rows" and cfg["model_options"] == {"hidden": 16}
    assert cfg["task"]["name"] == "classification"
    for name in ("curves.png", "confusion_matrix.png", "misclassified.png"):
        with open(os.path.join(run, name), "rb") as f:
            assert f.read(8) == PNG_MAGIC, name
    acc = json.load(open(os.path.join(run, "results.json")))["test"]["accuracy"]
    r = fv.load_run(run)
    assert r.evaluate()["accuracy"] == pytest.approx(acc)
    assert main(["evaluate", run]) == 0
    assert "Per-class accuracy" in capsys.readouterr().out
    # a picture file through the run's preparation
    from PIL import Image
    img = str(tmp_path / "boot.png")
    Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)).save(img)
    assert main(["predict", run, img, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    probs = [t["probability"] for t in res[0]["top"]]
    assert res[0]["prediction"] in cfg["classes"] and len(probs) == 3
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_cli_lstm_rows_resume_is_bit_identical(tmp_path, data_dir, capsys):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    common = ["--data-dir", data_dir, "--scheduler", "none", "--model-option", "cell=gru"] + ROWS
    assert main(["train", "--epochs", "2", "--out", straight] + common) == 0
    assert main(["train", "--epochs", "1", "--out", resumed] + common) == 0
    assert main(["train", "--resume", resumed, "--epochs", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "resumed after epoch 1" in out
    for name in ("model.safetensors", "best.safetensors", "optimizer.safetensors"):
        a = fv.train.load_state_dict(os.path.join(straight, name))
        b = fv.train.load_state_dict(os.path.join(resumed, name))
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), name
    lines = re.findall(r"^test accuracy: .*$", out, re.M)
    assert lines and lines[-1].startswith("test accuracy:")
