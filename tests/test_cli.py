"""The ``foveanet`` command line: train / evaluate / predict / summary / models, the run directory,
kill -9 and --resume (bit-identical), and the error messages and exit codes.

Everything runs on a small synthetic data set in the Fashion-MNIST file format (written with
``fv.data.write_idx``) and tiny models, so the whole file takes seconds, not minutes. Most tests
call ``main([...])`` in-process; the kill-and-resume test and the exit-code checks of the real
command run ``python -m foveanet`` as a subprocess.
"""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import foveanet as fv
from foveanet.cli import main, prepare_image
from foveanet.data import write_idx

TINY = ["--model", "mlp", "--model-option", "hidden=32", "--threads", "1", "--no-progress"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ACC_LINE = re.compile(r"^test accuracy: (\d+\.\d\d)% \(best epoch (\d+) of (\d+), val loss "
                      r"(\d+\.\d{4})\)$", re.M)


def make_fake_fashion(root, n_train=400, n_test=120, seed=0):
    """Fashion-MNIST-format files (gzip IDX) with 10 learnable classes: a random binary template
    per class, plus noise strong enough that a tiny model makes some mistakes."""
    rng = np.random.default_rng(seed)
    templates = (rng.random((10, 28, 28)) < 0.25).astype(np.float32)
    d = os.path.join(root, "fashion-mnist")
    os.makedirs(d, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = np.arange(n) % 10
        rng.shuffle(y)
        x = templates[y] * 110 + rng.random((n, 28, 28)) * 145
        write_idx(os.path.join(d, f"{prefix}-images-idx3-ubyte.gz"), x.astype(np.uint8))
        write_idx(os.path.join(d, f"{prefix}-labels-idx1-ubyte.gz"), y.astype(np.uint8))
    return str(root)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_fake_fashion(tmp_path_factory.mktemp("fake-fashion"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """One finished 2-epoch run shared by the tests that only read it: (run_dir, stdout)."""
    run = str(tmp_path_factory.mktemp("runs") / "mlp-run")
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["train", "--data-dir", data_dir, "--epochs", "2", "--out", run] + TINY)
    assert rc == 0, buf.getvalue()
    return run, buf.getvalue()


def run_cli(args, cwd, timeout=120):
    return subprocess.run([sys.executable, "-m", "foveanet", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def kill_after_first_checkpoint(args, run_dir, cwd, epochs=4):
    """Start ``foveanet ARGS --out RUN_DIR`` in a subprocess and SIGKILL it as soon as its first
    checkpoint is written; returns the epoch the checkpoint holds (checked to be before the
    last of ``epochs``)."""
    ck = os.path.join(run_dir, "checkpoint.json")
    proc = subprocess.Popen([sys.executable, "-m", "foveanet", *args, "--out", run_dir], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(ck):
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    epoch_at_kill = json.load(open(ck))["epoch"]
    assert 1 <= epoch_at_kill < epochs, "killed too late to test anything"
    return epoch_at_kill


def safetensors_bits(path):
    """(header, sha256 of the data section) of a safetensors file. The header is compared as a
    dict: safetensors writes its JSON keys in hash-map order, which changes from process to
    process, so two files with the same tensors and metadata need not be byte-identical there;
    the data section holds every tensor's raw bytes and must be identical, bit for bit."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), hashlib.sha256(data[8 + n:]).hexdigest()


def assert_png(path, min_bytes=3000):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) >= min_bytes, (path, len(data))
    from PIL import Image
    with Image.open(path) as im:
        im.verify()
        assert im.size[0] > 100 and im.size[1] > 100


# -------------------------------------------------------------------------------- the basics
def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"foveanet {fv.__version__}"
    for cmd in ("train", "evaluate", "predict", "summary", "models"):
        assert main([cmd, "--help"]) == 0
        out = capsys.readouterr().out
        assert f"usage: foveanet {cmd}" in out and "examples:" in out, cmd
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "required" in capsys.readouterr().err


def test_default_recipe_is_read_from_recipes(monkeypatch):
    """Every default of `train` comes from DEFAULT_RECIPE (the lead tunes it there)."""
    from foveanet import recipes
    from foveanet.cli import resolve_config
    cfg = resolve_config({})
    for key, value in recipes.DEFAULT_RECIPE.items():
        if key not in ("momentum", "model_options"):
            assert cfg[key] == value, key
    assert cfg["model"] == "cnn_bn" and cfg["model_options"] == {"width": 16}
    assert cfg["optimizer"] == "adamw" and cfg["scheduler"] == "onecycle"
    assert cfg["scheduler_interval"] == "batch"
    monkeypatch.setitem(recipes.DEFAULT_RECIPE, "epochs", 7)
    monkeypatch.setitem(recipes.DEFAULT_RECIPE, "lr", 0.123)
    cfg = resolve_config({})
    assert cfg["epochs"] == 7 and cfg["lr"] == 0.123
    cfg = resolve_config({"epochs": 2, "model": "mlp", "model_option": ["hidden=16,8"]})
    assert cfg["epochs"] == 2 and cfg["model_options"] == {"hidden": [16, 8]}
    assert resolve_config({"optimizer": "momentum"})["momentum"] == recipes.DEFAULT_RECIPE["momentum"]
    assert resolve_config({"optimizer": "sgd"})["momentum"] == 0.0
    toy = resolve_config({"dataset": "spiral"})
    assert toy["model"] == recipes.TOY_RECIPE["model"] and toy["augment"] == "none"


def test_named_recipe_lays_over_the_default_and_options_still_win(capsys):
    """--recipe NAME takes NAMED_RECIPES[NAME] over the data set's recipe; options given win; the
    printed configuration says where each value came from; an unknown name is refused."""
    from foveanet import recipes
    from foveanet.cli import resolve_config
    from foveanet.cli.train import config_lines
    named = recipes.NAMED_RECIPES["fashion95"]
    cfg = resolve_config({"recipe": "fashion95"})
    assert cfg["recipe"] == "fashion95"
    for key, value in named.items():
        assert cfg[key] == value, key
    assert cfg["batch_size"] == recipes.DEFAULT_RECIPE["batch_size"]  # not in the named recipe
    given = {"recipe": "fashion95", "epochs": 2, "lr": 0.01}
    cfg = resolve_config(given)
    assert cfg["epochs"] == 2 and cfg["lr"] == 0.01 and cfg["augment"] == named["augment"]
    lines = config_lines(cfg, given)
    assert lines[0].split() == ["recipe", "fashion95", "(command", "line)"]
    assert any(line.split()[0] == "augment" and line.endswith("(recipe fashion95)")
               for line in lines)
    assert any(line.split()[0] == "epochs" and line.endswith("(command line)") for line in lines)
    assert "recipe" not in resolve_config({})  # no named recipe: config.json as before
    with pytest.raises(ValueError, match="unknown recipe 'fast'.*fashion95"):
        recipes.recipe_for(recipe="fast")
    assert main(["train", "--recipe", "fast"]) == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err
    assert main(["train", "--recipe", "fashion95", "--task", "vae"]) == 2
    assert "--recipe names a classification recipe" in capsys.readouterr().err


def test_tta_option(capsys):
    """--tta flip goes into the configuration; images only (the toy sets are refused by name)."""
    from foveanet.cli import resolve_config
    assert resolve_config({})["tta"] == "none"
    assert resolve_config({"tta": "flip"})["tta"] == "flip"
    assert main(["train", "--dataset", "xor", "--tta", "flip"]) == 2
    assert "--tta flip: test-time augmentation mirrors images; 'xor'" in capsys.readouterr().err
    assert main(["train", "--tta", "rotate"]) == 2
    assert "invalid choice: 'rotate'" in capsys.readouterr().err


def test_label_smoothing_option(tmp_path, data_dir, capsys):
    """--label-smoothing EPS trains with the smoothed cross-entropy: config.json keeps it, the
    run's task rebuilds it from there (its loss is F.cross_entropy(..., label_smoothing=EPS));
    forecasters and models with a loss of their own refuse it."""
    from foveanet.cli import resolve_config
    assert resolve_config({})["label_smoothing"] == 0.0
    run = str(tmp_path / "ls")
    assert main(["train", "--data-dir", data_dir, "--epochs", "1", "--limit-train", "100",
                 "--limit-test", "20", "--label-smoothing", "0.2", "--out", run] + TINY) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  label_smoothing\s+0.2  \(command line\)$", out, re.M), out
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["label_smoothing"] == 0.2 and cfg["task"]["label_smoothing"] == 0.2
    task = fv.load_run(run).task
    logits = fv.tensor(np.random.default_rng(0).normal(size=(6, 10)).astype(np.float32))
    target = fv.tensor(np.arange(6))
    smoothed = fv.nn.functional.cross_entropy(logits, target, label_smoothing=0.2).item()
    plain = fv.nn.functional.cross_entropy(logits, target).item()
    assert task.loss(logits, target).item() == pytest.approx(smoothed) != pytest.approx(plain)
    assert main(["train", "--dataset", "co2", "--label-smoothing", "0.1",
                 "--out", str(tmp_path / "f")]) == 2
    assert "--label-smoothing 0.1 applies to classification" in capsys.readouterr().err
    assert main(["train", "--model", "perceptron", "--data-dir", data_dir, "--label-smoothing",
                 "0.1", "--out", str(tmp_path / "p")]) == 2
    assert "perceptron learns by a loss of its own" in capsys.readouterr().err
    assert main(["train", "--label-smoothing", "1.5"]) == 2
    assert "a fraction in [0, 1)" in capsys.readouterr().err


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw", "rmsprop"])
@pytest.mark.parametrize("scheduler", ["none", "step", "multistep", "cosine", "onecycle", "plateau"])
def test_optimizers_and_schedulers(optimizer, scheduler):
    from foveanet.cli import resolve_config
    from foveanet.train.run import build_model, build_optimizer, build_scheduler
    cfg = resolve_config({"dataset": "xor", "optimizer": optimizer, "scheduler": scheduler,
                          "epochs": 6, "lr": 0.1})
    cfg.update(num_classes=2, input_shape=[2], classes=["a", "b"])
    model = build_model(cfg)
    opt = build_optimizer(model, cfg)
    assert type(opt).__name__ == {"sgd": "SGD", "momentum": "SGD", "adam": "Adam", "adamw": "AdamW",
                                  "rmsprop": "RMSprop"}[optimizer]
    if optimizer == "momentum":
        assert opt.param_groups[0]["momentum"] == cfg["momentum"] > 0
    sched, interval = build_scheduler(opt, cfg, steps_per_epoch=5)
    assert (sched is None) == (scheduler == "none")
    assert interval == ("batch" if scheduler in ("onecycle", "cosine") else "epoch")
    steps = 6 * (5 if interval == "batch" else 1)
    lrs = []
    for _ in range(steps):
        opt.step()
        if sched is not None:
            sched.step(1.0) if scheduler == "plateau" else sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert all(lr >= 0 for lr in lrs) and lrs[0] > 0
    if scheduler in ("step", "multistep", "cosine", "onecycle"):
        assert lrs[-1] < 0.1


# ------------------------------------------------------------------------------------ train
def test_train_end_to_end(trained):
    run, out = trained
    for name in ("config.json", "model.safetensors", "optimizer.safetensors", "best.safetensors",
                 "best.json", "checkpoint.json", "history.csv", "history.jsonl", "results.json",
                 "report.md"):
        assert os.path.isfile(os.path.join(run, name)), name
    for name in ("curves.png", "confusion_matrix.png", "misclassified.png"):
        assert_png(os.path.join(run, name))
    assert not [f for f in os.listdir(run) if f.endswith(".tmp")]
    # the resolved configuration is printed first, the result line last
    assert out.index("configuration:") < out.index("epoch 1/2") < out.index("test accuracy:")
    m = ACC_LINE.search(out)
    assert m, out
    acc, best, total = float(m.group(1)), int(m.group(2)), int(m.group(3))
    assert total == 2 and 1 <= best <= 2 and 0 <= acc <= 100
    assert f"run directory: {run}" in out and re.search(r"^wall time: \d+\.\ds", out, re.M)
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["model"] == "mlp" and cfg["model_options"] == {"hidden": [32]}
    assert cfg["epochs"] == 2 and cfg["classes"][0] == "T-shirt/top" and cfg["input_shape"] == [1, 28, 28]
    results = json.load(open(os.path.join(run, "results.json")))
    assert results["checkpoint"] == "best" and results["epoch"] == best
    assert abs(results["test"]["accuracy"] * 100 - acc) < 0.006
    best_json = json.load(open(os.path.join(run, "best.json")))
    assert best_json["epoch"] == best
    assert len(open(os.path.join(run, "history.jsonl")).read().splitlines()) == 2
    report = open(os.path.join(run, "report.md")).read()
    for piece in ("## Configuration", "## Training history", "## Test results",
                  "### Per-class accuracy", "Ankle boot", "](curves.png)",
                  "](confusion_matrix.png)", "](misclassified.png)", "images/s", "wall time"):
        assert piece in report, piece


def test_train_default_out_dir_and_refuses_to_overwrite(tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["train", "--data-dir", data_dir, "--epochs", "1", "--val-split", "0",
            "--limit-train", "100", "--limit-test", "50"] + TINY
    assert main(args) == 0
    out = capsys.readouterr().out
    runs = os.listdir(tmp_path / "runs")
    assert len(runs) == 1 and re.fullmatch(r"mlp-fashion-mnist-\d{8}-\d{6}", runs[0])
    # no validation set: the last weights are tested, and no best checkpoint exists
    assert re.search(r"^test accuracy: \d+\.\d\d% \(last epoch 1 of 1, no validation set\)$", out, re.M)
    assert not os.path.exists(tmp_path / "runs" / runs[0] / "best.safetensors")
    run = str(tmp_path / "runs" / runs[0])
    assert main(args + ["--out", run]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_train_toy_dataset(tmp_path, capsys):
    run = str(tmp_path / "spiral")
    assert main(["train", "--dataset", "spiral", "--epochs", "3", "--out", run, "--threads", "1",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert ACC_LINE.search(out), out
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["model"] == "mlp" and cfg["input_shape"] == [2] and cfg["num_classes"] == 2
    for name in ("curves.png", "confusion_matrix.png", "misclassified.png"):
        assert_png(os.path.join(run, name))
    assert main(["predict", run, "1.5,-2", "0,0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res) == 2 and all(abs(sum(t["probability"] for t in r["top"]) - 1) < 1e-6 for r in res)
    assert main(["train", "--dataset", "xor", "--augment", "flip", "--out", str(tmp_path / "x")]) == 2
    assert "augmentation applies to image data sets" in capsys.readouterr().err
    assert main(["train", "--dataset", "xor", "--model", "lenet5", "--out", str(tmp_path / "x")]) == 2
    assert "use an MLP (--model mlp)" in capsys.readouterr().err


def test_train_perceptron_uses_its_rule(tmp_path, data_dir, capsys):
    """``--model perceptron`` trains by the perceptron rule: the model's own recipe (SGD, lr 1,
    on-line, no schedule) and its error E = 1/2 sum (y - d)^2; it learns the easy fake data."""
    run = str(tmp_path / "perc")
    assert main(["train", "--model", "perceptron", "--data-dir", data_dir, "--limit-train", "300",
                 "--limit-test", "100", "--out", run, "--no-progress", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert (cfg["optimizer"], cfg["lr"], cfg["batch_size"], cfg["scheduler"]) == ("sgd", 1.0, 1, "none")
    acc = float(ACC_LINE.search(out).group(1))
    assert acc >= 80.0, out


def test_transfer_from_a_run_directory(trained, tmp_path, data_dir, capsys):
    """--from RUN_DIR: the source's weights, a new head, the features frozen (they stay equal
    to the source's, bit for bit), the head trained; evaluate rebuilds the same model."""
    src, _ = trained
    run = str(tmp_path / "tl")
    assert main(["train", "--from", src, "--freeze", "features", "--num-classes", "10",
                 "--data-dir", data_dir, "--epochs", "1", "--limit-train", "200",
                 "--limit-test", "50", "--out", run, "--threads", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert ACC_LINE.search(out), out
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["from"] == os.path.abspath(src) and cfg["freeze"] == "features"
    from foveanet.train import load_state_dict
    a = load_state_dict(os.path.join(src, "best.safetensors"))
    b = load_state_dict(os.path.join(run, "model.safetensors"))
    last = max(a, key=lambda k: int(k.split(".")[0]))
    last_layer = last.split(".")[0]
    for k in a:
        if k.split(".")[0] == last_layer:
            assert not np.array_equal(a[k], b[k]), k  # the new head was trained
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # frozen
    assert main(["evaluate", run]) == 0
    capsys.readouterr()
    # the options of transfer learning need --from, and --from excludes --model
    assert main(["train", "--freeze", "features", "--data-dir", data_dir, "--out",
                 str(tmp_path / "x")]) == 2
    assert "give the model to start from with --from" in capsys.readouterr().err
    assert main(["train", "--from", src, "--model", "lenet5", "--data-dir", data_dir, "--out",
                 str(tmp_path / "x")]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main(["train", "--from", src, "--freeze", "nosuchlayer", "--data-dir", data_dir,
                 "--out", str(tmp_path / "y")] + TINY[2 + 2:]) == 2
    assert "names no parameter" in capsys.readouterr().err
    assert main(["train", "--from", str(tmp_path / "missing.onnx"), "--data-dir", data_dir,
                 "--out", str(tmp_path / "z")]) == 2
    assert "no such file or run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_transfer_from_onnx_then_export(tmp_path, data_dir, capsys):
    """The lecture's transfer learning through files: a network written in PyTorch, exported to
    ONNX, fine-tuned by ``foveanet train --from net.onnx --freeze features --num-classes 10``
    (the convolutions frozen, a new head), exported again by ``foveanet export`` (plain and
    --optimize) and run by onnxruntime with foveanet's outputs; --optimize in evaluate agrees."""
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5)).eval()
    src = str(tmp_path / "net.onnx")
    torch.onnx.export(net, (torch.zeros(1, 1, 28, 28),), src, dynamo=False, opset_version=13,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    run = str(tmp_path / "tl-onnx")
    assert main(["train", "--from", src, "--freeze", "features", "--data-dir", data_dir,
                 "--epochs", "1", "--limit-train", "300", "--limit-test", "50", "--lr", "0.01",
                 "--out", run, "--threads", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert ACC_LINE.search(out), out
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["model"] == "onnx" and cfg["from_kind"] == "onnx"
    from foveanet.train.run import build_model, load_run_config, load_weights
    model = build_model(load_run_config(run))
    load_weights(model, run, "best")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 and all(p.shape[0] == 10 for n, p in model.named_parameters()
                                       if n in trainable)
    import onnx
    src_model = onnx.load(src)
    conv_w = next(i for i in src_model.graph.initializer if len(i.dims) == 4)
    np.testing.assert_array_equal(model.state_dict()[conv_w.name].numpy(),
                                  onnx.numpy_helper.to_array(conv_w))  # frozen: unchanged
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    model.eval()
    with fv.no_grad():
        want = model(fv.tensor(x)).numpy()
    for extra in ([], ["--optimize"]):
        dst = str(tmp_path / f"out{len(extra)}.onnx")
        assert main(["export", run, "--onnx", dst] + extra) == 0
        assert "dynamic batch" in capsys.readouterr().out
        sess = ort.InferenceSession(dst, providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    dst = str(tmp_path / "int8.onnx")  # post-training int8, calibrated on training images
    assert main(["export", run, "--onnx", dst, "--int8", "--calibration", "64"]) == 0
    assert "int8 (calibrated on 64 training samples, minmax)" in capsys.readouterr().out
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(dst).graph.node}
    sess = ort.InferenceSession(dst, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert np.abs(got - want).max() <= 0.1 * np.abs(want).max()
    assert main(["evaluate", run]) == 0
    plain = capsys.readouterr().out
    assert main(["evaluate", run, "--optimize"]) == 0
    optimized = capsys.readouterr().out
    acc = re.compile(r"accuracy\D*(\d+\.\d+)%")
    assert acc.search(plain).group(1) == acc.search(optimized).group(1), (plain, optimized)


def test_dropout_option(tmp_path, data_dir, capsys):
    run = str(tmp_path / "drop")
    assert main(["train", "--data-dir", data_dir, "--epochs", "1", "--limit-train", "100",
                 "--limit-test", "20", "--dropout", "0.3", "--out", run] + TINY) == 0
    capsys.readouterr()
    from foveanet.train.run import build_model, load_run_config
    model = build_model(load_run_config(run))
    drops = [m for m in model.modules() if isinstance(m, fv.nn.Dropout)]
    assert drops and all(m.p == 0.3 for m in drops)
    # lenet5 has no Dropout layer and no dropout option
    assert main(["train", "--model", "lenet5", "--dropout", "0.3", "--data-dir", data_dir,
                 "--out", str(tmp_path / "l")]) == 2
    assert "no Dropout layer" in capsys.readouterr().err


# ------------------------------------------------------------------- kill -9 and --resume
@pytest.mark.slow
def test_kill_and_resume_is_bit_identical(tmp_path, data_dir):
    args = ["train", "--data-dir", data_dir, "--model", "cnn_bn", "--model-option", "width=4",
            "--model-option", "hidden=16", "--epochs", "4", "--batch-size", "16", "--seed", "3",
            "--limit-test", "40", "--threads", "1", "--no-progress"]
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    res = run_cli(args + ["--out", straight], tmp_path)
    assert res.returncode == 0, res.stderr
    want = ACC_LINE.search(res.stdout)
    assert want, res.stdout

    epoch_at_kill = kill_after_first_checkpoint(args, killed, tmp_path)
    assert not os.path.exists(os.path.join(killed, "report.md"))

    res = run_cli(["train", "--resume", killed, "--no-progress"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"resumed after epoch {epoch_at_kill}" in res.stdout
    for name in ("model.safetensors", "best.safetensors", "optimizer.safetensors"):
        assert safetensors_bits(os.path.join(killed, name)) == \
            safetensors_bits(os.path.join(straight, name)), name
    got = ACC_LINE.search(res.stdout)
    assert got and got.groups() == want.groups()
    h_a = [json.loads(line) for line in open(os.path.join(straight, "history.jsonl"))]
    h_b = [json.loads(line) for line in open(os.path.join(killed, "history.jsonl"))]
    for a, b in zip(h_a, h_b):
        for key in ("train_loss", "val_loss", "val_accuracy", "lr", "global_step"):
            assert a[key] == b[key], key
    assert len(h_b) == 4


def test_resume_rules(tmp_path, data_dir, capsys):
    run = str(tmp_path / "r")
    base = ["--data-dir", data_dir, "--limit-train", "100", "--limit-test", "20",
            "--scheduler", "cosine"] + TINY
    assert main(["train", "--epochs", "1", "--out", run] + base) == 0
    capsys.readouterr()
    # contradicting the config is a usage error; --epochs may extend the run
    assert main(["train", "--resume", run, "--lr", "0.5"]) == 2
    assert "--lr 0.5 contradicts the run's config.json" in capsys.readouterr().err
    assert main(["train", "--resume", run, "--model-option", "hidden=64"]) == 2
    assert "contradicts" in capsys.readouterr().err
    assert main(["train", "--resume", run, "--out", str(tmp_path / "o")]) == 2
    capsys.readouterr()
    # options that agree with the config are fine
    assert main(["train", "--resume", run, "--epochs", "2", "--model", "mlp", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "resumed after epoch 1" in out and re.search(r"best epoch \d of 2", out)
    assert json.load(open(os.path.join(run, "config.json")))["epochs"] == 2
    assert main(["train", "--resume", run, "--epochs", "1"]) == 2
    assert "already completed 2 epochs" in capsys.readouterr().err
    # a onecycle schedule cannot be stretched
    run2 = str(tmp_path / "oc")
    assert main(["train", "--epochs", "1", "--out", run2, "--data-dir", data_dir, "--limit-train",
                 "60", "--limit-test", "20", "--scheduler", "onecycle"] + TINY) == 0
    capsys.readouterr()
    assert main(["train", "--resume", run2, "--epochs", "3"]) == 2
    assert "onecycle" in capsys.readouterr().err


# ------------------------------------------------------------------------- evaluate, predict
def test_evaluate(trained, capsys):
    run, _ = trained
    assert main(["evaluate", run]) == 0
    out = capsys.readouterr().out
    assert "best.safetensors" in out
    for piece in ("Test metrics", "accuracy", "top-5 accuracy", "Per-class accuracy",
                  "Confusion matrix (rows: true class, columns: predicted class)"):
        assert piece in out, piece
    classes = json.load(open(os.path.join(run, "config.json")))["classes"]
    per_class = out.split("Per-class accuracy")[1].split("Confusion matrix")[0]
    rows = [line for line in per_class.splitlines() if re.match(r"^\d ", line)]
    assert len(rows) == 10
    for i, (row, name) in enumerate(zip(rows, classes)):
        assert row.startswith(f"{i} {name}") and re.search(r"\d+\.\d\d%\s+\d+\s+12$", row), row
    cm_rows = [line for line in out.split("Confusion matrix")[1].splitlines() if re.match(r"^\d ", line)]
    assert len(cm_rows) == 10 and sum(sum(int(v) for v in r.split()[-10:]) for r in cm_rows) == 120
    results = json.load(open(os.path.join(run, "results.json")))
    acc = re.search(r"^accuracy\s+(\d+\.\d\d)%", out, re.M)
    assert float(acc.group(1)) == pytest.approx(100 * results["test"]["accuracy"], abs=0.006)
    assert main(["evaluate", run, "--checkpoint", "last"]) == 0
    assert "model.safetensors (epoch 2)" in capsys.readouterr().out


def test_evaluate_rich_tables(trained, capsys, monkeypatch):
    from foveanet import cli
    run, _ = trained
    monkeypatch.setattr(cli.sys.stdout, "isatty", lambda: True, raising=False)
    assert main(["evaluate", run]) == 0
    out = capsys.readouterr().out
    assert "Per-class accuracy" in out and "Ankle boot" in out and "┃" in out


def test_evaluate_report_regenerates(tmp_path, data_dir, capsys):
    run = str(tmp_path / "rep")
    assert main(["train", "--data-dir", data_dir, "--epochs", "1", "--limit-train", "100",
                 "--limit-test", "30", "--out", run] + TINY) == 0
    os.remove(os.path.join(run, "report.md"))
    os.remove(os.path.join(run, "confusion_matrix.png"))
    assert main(["evaluate", run, "--report", "--checkpoint", "last"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert_png(os.path.join(run, "confusion_matrix.png"))
    assert "last weights" in open(os.path.join(run, "report.md")).read()


def _write_pictures(tmp_path):
    from PIL import Image, ImageDraw
    dark = tmp_path / "dark_on_light.png"
    im = Image.new("L", (60, 40), 255)
    ImageDraw.Draw(im).rectangle([20, 5, 40, 35], fill=0)
    im.save(dark)
    light = tmp_path / "light_on_dark.jpg"
    im = Image.new("RGB", (28, 28), (0, 0, 0))
    ImageDraw.Draw(im).ellipse([5, 5, 22, 22], fill=(255, 255, 255))
    im.save(light)
    return str(dark), str(light)


def test_predict(trained, tmp_path, capsys):
    run, _ = trained
    dark, light = _write_pictures(tmp_path)
    assert main(["predict", run, dark, light, "--top", "10", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    classes = json.load(open(os.path.join(run, "config.json")))["classes"]
    assert [r["image"] for r in res] == [dark, light]
    assert [r["inverted"] for r in res] == [True, False]
    for r in res:
        probs = [t["probability"] for t in r["top"]]
        assert len(probs) == 10 and abs(sum(probs) - 1) < 1e-5
        assert probs == sorted(probs, reverse=True)
        assert r["prediction"] == r["top"][0]["class"] in classes
    assert main(["predict", run, dark, "--top", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{dark}: ") and len(out) == 4
    pcts = [float(re.search(r"(\d+\.\d\d)%$", line).group(1)) for line in out[1:]]
    assert pcts == sorted(pcts, reverse=True)
    assert main(["predict", run, str(tmp_path / "missing.png")]) == 1
    assert "missing.png: no such file" in capsys.readouterr().err
    (tmp_path / "not.png").write_text("hello")
    assert main(["predict", run, str(tmp_path / "not.png")]) == 1
    assert "cannot read the picture" in capsys.readouterr().err


def test_prepare_image(tmp_path):
    dark, light = _write_pictures(tmp_path)
    x, inverted = prepare_image(dark, 1, 28)
    assert x.shape == (1, 28, 28) and x.dtype == np.float32 and inverted
    assert 0 <= x.min() and x.max() <= 1 and x[0, 0, 0] < 0.05  # background now black
    assert x[0, 14, 14] > 0.9                                    # the object now light
    x, inverted = prepare_image(light, 1, 28)
    assert not inverted and x[0, 0, 0] < 0.05 and x[0, 14, 14] > 0.9
    x, _ = prepare_image(light, 3, 32, invert="always")
    assert x.shape == (3, 32, 32) and x[:, 0, 0].min() > 0.95


# -------------------------------------------------------------------------- summary, models
def test_summary_and_models(capsys):
    assert main(["summary", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 61,706" in out and "Conv2d" in out
    assert main(["summary", "cnn_bn", "--input-shape", "1,32,32", "--model-option", "width=8"]) == 0
    out = capsys.readouterr().out
    assert "Input shape: (1, 1, 32, 32)" in out and "width=8" in out
    assert main(["summary", "mlp", "--input-shape", "2", "--num-classes", "2",
                 "--model-option", "hidden=8"]) == 0
    assert "(1, 2)" in capsys.readouterr().out
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in fv.models.list_models())


# ----------------------------------------------------------------------- errors, exit codes
def test_unknown_model(capsys, data_dir):
    assert main(["summary", "resnet9000"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnet9000'" in err and ", ".join(fv.models.list_models()) in err
    assert main(["train", "--model", "resnet9000", "--data-dir", data_dir]) == 2
    assert "available:" in capsys.readouterr().err
    assert main(["train", "--model", "mlp", "--model-option", "widht=3", "--data-dir", data_dir]) == 2
    assert "has no option 'widht'" in capsys.readouterr().err
    assert main(["train", "--model-option", "num_classes=3"]) == 2
    assert "set from the data set" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--epochs", "-1"], "argument --epochs: expected a positive integer, got '-1'"),
    (["--lr", "fast"], "argument --lr: expected a number > 0, got 'fast'"),
    (["--val-split", "1.5"], "argument --val-split: expected a fraction in [0, 1)"),
    (["--optimizer", "lbfgs"], "argument --optimizer: invalid choice: 'lbfgs'"),
    (["--dataset", "cifar"], "argument --dataset: invalid choice"),
    (["--augment", "wobble"], "unknown augmentation 'wobble'"),
    (["--optimizer", "adam", "--momentum", "0.9"], "--momentum does not apply to adam"),
])
def test_bad_option_values(capsys, args, message):
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_dataset(tmp_path, monkeypatch, capsys):
    import foveanet.data.sources as sources
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIR", str(tmp_path / "system"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FOVEANET_DATA", raising=False)
    rc = main(["train", "--data-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "run")] + TINY)
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("foveanet train: error: Fashion-MNIST training files not found")
    assert "apt-get install dataset-fashion-mnist" in err and "--download" in err
    assert "Traceback" not in err


def test_not_a_run_directory(tmp_path, capsys):
    missing = str(tmp_path / "x")
    for cmd in (["evaluate", missing], ["predict", missing, "a.png"]):
        assert main(cmd) == 1
        assert f"{missing}: not a foveanet run directory" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", str(empty)]) == 1
    assert f"{empty}: not a foveanet run directory (no checkpoint.json)" in capsys.readouterr().err
    assert main(["train", "--resume", str(empty)]) == 1
    assert "not a foveanet run directory (no config.json" in capsys.readouterr().err


def test_divergence_keeps_the_last_checkpoint(tmp_path, data_dir, monkeypatch, capsys):
    """A NaN loss in epoch 2: exit 1, the clear message, and epoch 1's checkpoint intact."""
    import foveanet.nn.functional as F
    real = F.cross_entropy
    calls = {"train": 0}

    def poisoned(out, target, *a, **k):
        loss = real(out, target, *a, **k)
        if out.requires_grad:
            calls["train"] += 1
            if calls["train"] > 4:  # 4 training batches per epoch: epoch 2 goes NaN
                return loss * float("nan")
        return loss
    monkeypatch.setattr(F, "cross_entropy", poisoned)
    run = str(tmp_path / "nan")
    rc = main(["train", "--data-dir", data_dir, "--limit-train", "250", "--batch-size", "64",
               "--epochs", "3", "--out", run] + TINY)
    assert rc == 1
    err = capsys.readouterr().err
    assert "training diverged at epoch 2, batch 1/4: the loss is nan" in err
    assert f"The last good checkpoint (epoch 1) is kept in {run}." in err
    assert "Traceback" not in err
    ck = fv.train.read_checkpoint(run)  # validates every file against its sha256
    assert ck["epoch"] == 1 and ck["global_step"] == 4
    assert not os.path.exists(os.path.join(run, "report.md"))
    # once the cause is gone, the run continues from that checkpoint
    monkeypatch.undo()
    assert main(["train", "--resume", run]) == 0
    out = capsys.readouterr().out
    assert "resumed after epoch 1" in out and ACC_LINE.search(out)


def test_resume_before_the_first_checkpoint(tmp_path, data_dir, monkeypatch, capsys):
    """A run stopped before its first checkpoint holds only config.json: --resume starts it
    from epoch 1, with the same configuration."""
    import foveanet.nn.functional as F
    real = F.cross_entropy
    monkeypatch.setattr(F, "cross_entropy", lambda out, t, *a, **k: real(out, t) * float("inf"))
    run = str(tmp_path / "early")
    args = ["--data-dir", data_dir, "--limit-train", "100", "--limit-test", "20", "--epochs", "1"]
    assert main(["train", "--out", run] + args + TINY) == 1
    assert "No checkpoint had been written yet" in capsys.readouterr().err
    assert os.listdir(run) == ["config.json"]
    monkeypatch.undo()
    assert main(["train", "--resume", run, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "no checkpoint yet" in out and ACC_LINE.search(out)


def test_divergence_exit_code_subprocess(tmp_path, data_dir):
    run = str(tmp_path / "nan")
    res = run_cli(["train", "--data-dir", data_dir, "--lr", "1e10", "--optimizer", "sgd",
                   "--epochs", "2", "--out", run] + TINY, tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "foveanet train: error: training diverged" in res.stderr
    assert "Lower the learning rate" in res.stderr and "Traceback" not in res.stderr
    assert "RuntimeWarning" not in res.stderr
    res = run_cli(["evaluate", str(tmp_path / "nope")], tmp_path)
    assert res.returncode == 1 and "not a foveanet run directory" in res.stderr
    res = run_cli(["train", "--epochs", "zero"], tmp_path)
    assert res.returncode == 2 and "argument --epochs" in res.stderr
