"""``fv.load_run``: a run directory rebuilt as a model with its weights, for every model
``foveanet train`` can produce, for transfer-learning runs, and the errors of broken runs.

Most run directories here are written without training, by the code ``foveanet train`` writes
them with (``write_run_config``, ``BestCheckpoint``, ``Trainer.save_checkpoint``), from the
configuration the command line resolves (``resolve_config`` + ``data_info``); the weights are
moved off their initial values first, so that a model merely rebuilt from the seed would not
pass. The toy-set and transfer runs are real one-epoch ``foveanet train`` runs of a few batches.
"""
import json
import os

import numpy as np
import pytest

import foveanet as fv
from foveanet.cli import main, resolve_config
from foveanet.train import BestCheckpoint, Trainer, load_state_dict
from foveanet.train.run import (ConfigError, Run, RunError, build_model, build_optimizer,
                                check_model_fits, data_info, load_run, model_record,
                                write_run_config)

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]
# The models that halve their input too often for Fashion-MNIST's 28x28 (foveanet train refuses
# them there), with the smallest input of a data set they are meant for: CIFAR-10's 32x32 RGB,
# or 64x64 pictures (an image folder) for AlexNet's stride-4 stem and three poolings.
LARGER_INPUTS = {**{n: ("cifar10", (3, 32, 32)) for n in ("densenet121", "densenet169",
                                                         "densenet201", "vgg11_bn")},
                 "alexnet": ("imagefolder", (3, 64, 64))}
# VGG's other configurations: vgg11_bn's constructor (vgg.py's _register) with other layer
# counts; each has 130M+ parameters, ~15 s to build twice on this project's 2-core machines.
SAME_AS = {n: "vgg11_bn" for n in ("vgg11", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19",
                                   "vgg19_bn")}
# resnet1202's 600 residual blocks with untrained batch-norm statistics (mean 0, variance 1)
# overflow in eval mode on any input: its outputs say nothing (its weights are still compared)
OVERFLOWS_UNTRAINED = {"resnet1202"}
# Forecasters take windows of a series, not pictures: rebuilt from a run on the sunspots series
# (statsmodels' bundled data)
FORECASTERS = {"lstm_forecaster": "sunspots"}
TOY = ["--dataset", "xor", "--limit-train", "40", "--batch-size", "16", "--epochs", "1",
       "--threads", "1", "--no-progress"]


def cli_config(name, **given):
    """The configuration ``foveanet train --model NAME`` resolves (before it adds its format and
    command keys), on Fashion-MNIST or on the data set of ``LARGER_INPUTS``."""
    cfg = resolve_config({"model": name, **given})
    cfg.update(data_info(cfg))
    if name in LARGER_INPUTS:
        dataset, shape = LARGER_INPUTS[name]
        cfg.update(dataset=dataset, input_shape=list(shape), classes=CIFAR_CLASSES,
                   num_classes=len(CIFAR_CLASSES))
    return cfg


def scale_weights(model, scale):
    """Every floating parameter and buffer w becomes scale * w, in place (a scale near 1 keeps a
    deep network's outputs finite, which an offset on every weight would not)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if np.issubdtype(t.data.dtype, np.floating):
            t.data[...] = t.data * scale


def outputs(model, x):
    """The eval-mode outputs on ``x`` (overflows are not warned about: the callers check)."""
    model.eval()
    with fv.no_grad(), np.errstate(over="ignore", invalid="ignore"):
        return model(fv.tensor(x)).numpy()


def write_run(run_dir, cfg, model, x):
    """Write ``run_dir`` as ``foveanet train`` leaves it after 2 epochs whose best was the first:
    config.json, best.json + best.safetensors, the checkpoint of epoch 2 with other weights.
    Returns (best weights as arrays, the outputs on ``x`` with them)."""
    scale_weights(model, 0.9)
    want = outputs(model, x)
    best = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    trainer = Trainer(model, build_optimizer(model, cfg), run_dir=run_dir, progress=False,
                      model_config=model_record(cfg), model_name=cfg["model"])
    write_run_config(run_dir, cfg)
    cb = BestCheckpoint(run_dir)
    cb.set_trainer(trainer)
    cb.on_epoch_end(1, {"val_loss": 0.5})
    scale_weights(model, 1.02)  # the last epoch's weights are not the best ones
    trainer.epoch = 2
    trainer.save_checkpoint()
    return best, want


def best_weights(run_dir):
    """The arrays of ``run_dir/best.safetensors``."""
    state = load_state_dict(os.path.join(run_dir, "best.safetensors"))
    return {k: v.numpy() for k, v in state.items()}


def assert_same_weights(model, want):
    got = model.state_dict()
    assert list(got) == list(want)
    for k, v in want.items():
        np.testing.assert_array_equal(got[k].numpy(), v, err_msg=k)


# ------------------------------------------------------------------------- every model
IMAGE_OUTPUT = {"conv_ae", "dense_ae", "vae", "dcgan_generator", "dcgan_discriminator", "segnet",
                "segnet_small", "unet", "style_features", "transform_net"}


@pytest.mark.parametrize("name", fv.models.list_models())
def test_every_model_is_rebuilt_with_its_weights(name, tmp_path):
    if name in SAME_AS:
        pytest.skip(f"{name} is {SAME_AS[name]}'s constructor with other layer counts")
    if name in fv.models.charlm.LANGUAGE_MODELS:
        pytest.skip(f"{name} reads characters, not images: tests/test_language_model.py rebuilds "
                    "its runs")
    if name in IMAGE_OUTPUT:
        pytest.skip(f"{name} outputs images or takes noise: foveanet train --task ... builds it "
                    "(tests/test_image_tasks.py)")
    if name in FORECASTERS:
        pytest.importorskip("statsmodels")
    cfg = cli_config(name, dataset=FORECASTERS[name]) if name in FORECASTERS else cli_config(name)
    model = build_model(cfg)
    check_model_fits(model, cfg)  # foveanet train would train it at this input shape
    x = np.random.default_rng(0).random((2, *cfg["input_shape"]), dtype=np.float32)
    best, want = write_run(str(tmp_path), cfg, model, x)
    del model
    run = load_run(tmp_path)
    assert isinstance(run, Run) and run.weights == "best.safetensors" and run.epoch == 1
    assert run.checkpoint == "best" and run.input_shape == tuple(cfg["input_shape"])
    assert run.classes == cfg["classes"] and run.config["model"] == name
    assert not any(m.training for m in run.model.modules())
    assert_same_weights(run.model, best)
    assert want.shape == (2, cfg["num_classes"])
    if name in OVERFLOWS_UNTRAINED:
        assert not np.isfinite(want).all(), f"{name} no longer overflows: compare its outputs"
        return
    assert np.isfinite(want).all()
    np.testing.assert_array_equal(outputs(run.model, x), want)


def test_the_model_list_is_covered():
    """Every name the tables above mention is registered (a renamed model must not leave a
    stale entry that skips nothing), and each skipped model's stand-in is tested."""
    names = set(fv.models.list_models())
    assert set(LARGER_INPUTS) | set(SAME_AS) | OVERFLOWS_UNTRAINED | set(FORECASTERS) <= names
    assert all(v in names and v not in SAME_AS for v in SAME_AS.values())


def test_last_checkpoint_and_dropout(tmp_path):
    """checkpoint='last' loads the last epoch's weights; --dropout (an option of mlp, set on the
    Dropout layers of a model without that option) is rebuilt from config.json."""
    for name, given in (("mlp", {"model_option": ["hidden=16"]}),
                        ("wide_resnet", {"model_option": ["depth=10", "widen_factor=1",
                                                          "dropout_rate=0.1"]})):
        run_dir = str(tmp_path / name)
        cfg = cli_config(name, dropout=0.3, **given)
        model = build_model(cfg)
        x = np.random.default_rng(1).random((3, 1, 28, 28), dtype=np.float32)
        best, _ = write_run(run_dir, cfg, model, x)
        last = {k: v.numpy().copy() for k, v in model.state_dict().items()}
        want_last = outputs(model, x)
        run = load_run(run_dir, checkpoint="last")
        assert run.weights == "model.safetensors" and run.epoch == 2 and run.checkpoint == "last"
        assert_same_weights(run.model, last)
        np.testing.assert_array_equal(outputs(run.model, x), want_last)
        assert not all(np.array_equal(best[k], last[k]) for k in best)
        drops = [m for m in run.model.modules() if isinstance(m, fv.nn.Dropout)]
        assert drops and all(m.p == 0.3 for m in drops), name


# ------------------------------------------------------------------- real toy-set runs
@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A real `foveanet train` of one epoch (3 batches) on the xor points: (run_dir)."""
    run_dir = str(tmp_path_factory.mktemp("runs") / "xor")
    assert main(["train", "--out", run_dir, "--model-option", "hidden=8"] + TOY) == 0
    return run_dir


def test_a_trained_run(toy_run, capsys):
    run = load_run(toy_run)
    results = json.load(open(os.path.join(toy_run, "results.json")))
    assert run.epoch == results["epoch"] == 1 and run.classes == results["test"]["classes"]
    assert run.input_shape == (2,) and run.is_toy and run.dataset == "xor"
    assert [r["epoch"] for r in run.history] == [1] and run.results == results
    assert_same_weights(run.model, best_weights(toy_run))
    # the model the command line tested, bit for bit: the same test metrics
    assert run.evaluate() == results["test"]
    points = np.array([[1.5, -2.0], [0.0, 0.0], [-1.0, 1.0]], dtype=np.float32)
    probs = run.probabilities(points)
    assert probs.shape == (3, 2) and probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs, fv.softmax(fv.tensor(outputs(run.model, points)), dim=1)
                               .numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(N, 2\)"):
        run.probabilities(np.zeros((1, 3), np.float32))
    with pytest.raises(RunError, match="takes points of 2 numbers, not pictures"):
        run.prepare_image("x.png")
    # the task: recorded by `foveanet train` in config.json, rebuilt by load_run
    assert run.config["task"]["name"] == run.task.name == "classification"
    assert run.task.config() == run.config["task"]
    # and a run directory from before tasks existed is a classification run
    old = dict(run.config)
    del old["task"]
    run.config, run._task = old, None
    assert run.task.name == "classification"


def test_transfer_from_a_run_directory(toy_run, tmp_path, capsys):
    """--from RUN_DIR --freeze features --num-classes 2: a new head, the features frozen; load_run
    rebuilds it with the transfer run's weights (not the source's, not a fresh head)."""
    run_dir = str(tmp_path / "tl")
    assert main(["train", "--from", toy_run, "--freeze", "features", "--num-classes", "2",
                 "--out", run_dir, "--seed", "3"] + TOY) == 0
    run = load_run(run_dir)
    assert run.config["from_kind"] == "run" and run.config["head_classes"] == 2
    saved = best_weights(run_dir)
    assert_same_weights(run.model, saved)
    source = load_run(toy_run).model.state_dict()
    frozen = [n for n, p in run.model.named_parameters() if not p.requires_grad]
    head = [n for n, p in run.model.named_parameters() if p.requires_grad]
    assert frozen and head
    for n in frozen:
        np.testing.assert_array_equal(saved[n], source[n].numpy(), err_msg=n)
    assert run.evaluate() == json.load(open(os.path.join(run_dir, "results.json")))["test"]


def test_transfer_from_onnx(tmp_path, capsys):
    """--from NET.onnx with 5 outputs on a 2-class set: the head is replaced without being asked;
    load_run rebuilds it from the ONNX file and the run's weights."""
    pytest.importorskip("onnx")
    fv.manual_seed(0)
    net = fv.models.create("mlp", num_classes=5, in_channels=2, input_size=1, hidden=(8,))
    src = str(tmp_path / "net.onnx")
    fv.onnx.export(net, fv.zeros(1, 2), src)
    run_dir = str(tmp_path / "tl-onnx")
    assert main(["train", "--from", src, "--freeze", "features", "--out", run_dir] + TOY) == 0
    run = load_run(run_dir)
    assert run.config["from_kind"] == "onnx" and run.config["model"] == "onnx"
    saved = best_weights(run_dir)
    assert_same_weights(run.model, saved)
    assert outputs(run.model, np.zeros((4, 2), np.float32)).shape == (4, 2)
    assert run.evaluate() == json.load(open(os.path.join(run_dir, "results.json")))["test"]
    # the source gone: the run cannot be rebuilt, and the message says from what
    os.remove(src)
    with pytest.raises(RunError, match="config.json: cannot rebuild the model: .*net.onnx"):
        load_run(run_dir)


# ------------------------------------------------------------------------- image runs
def test_pictures_for_an_image_run(tmp_path):
    from PIL import Image, ImageDraw
    cfg = cli_config("lenet5")
    model = build_model(cfg)
    x = np.random.default_rng(2).random((1, 1, 28, 28), dtype=np.float32)
    write_run(str(tmp_path / "run"), cfg, model, x)
    run = load_run(tmp_path / "run")
    pic = tmp_path / "boot.png"
    im = Image.new("L", (40, 30), 250)
    ImageDraw.Draw(im).rectangle([10, 5, 30, 25], fill=10)
    im.save(pic)
    img, inverted = run.prepare_image(str(pic))
    assert img.shape == (1, 28, 28) and inverted  # dark on light: inverted for Fashion-MNIST
    probs = run.probabilities(img[None])
    assert probs.shape == (1, 10) and abs(probs.sum() - 1) < 1e-6
    with pytest.raises(fv.data.DatasetError, match="missing.png: no such file"):
        run.prepare_image(str(tmp_path / "missing.png"))


# ------------------------------------------------------------------------------ errors
@pytest.fixture
def good_run(tmp_path):
    cfg = cli_config("mlp", model_option=["hidden=16"])
    model = build_model(cfg)
    write_run(str(tmp_path / "good"), cfg, model, np.zeros((1, 1, 28, 28), np.float32))
    return tmp_path / "good"


def _edit_config(run_dir, **changes):
    path = run_dir / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def test_not_run_directories(tmp_path, good_run):
    missing = tmp_path / "missing"
    with pytest.raises(RunError, match=r"missing: not a foveanet run directory \(no such"):
        load_run(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunError, match=r"empty: not a foveanet run directory \(no checkpoint"):
        load_run(empty)
    (empty / "checkpoint.json").write_text("{}")
    with pytest.raises(RunError, match=r"not a foveanet run directory \(no config.json"):
        load_run(empty)
    (empty / "config.json").write_text("{not json")
    with pytest.raises(RunError, match="config.json: cannot read config.json"):
        load_run(empty)
    (empty / "config.json").write_text(json.dumps({"format": "something.else"}))
    with pytest.raises(RunError, match="not a foveanet run configuration .format 'something.else'"):
        load_run(empty)
    with pytest.raises(ValueError, match="checkpoint must be 'best' or 'last'"):
        load_run(good_run, checkpoint="middle")
    cfg = json.loads((good_run / "config.json").read_text())
    del cfg["input_shape"]
    (good_run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="config.json: missing key 'input_shape'"):
        load_run(good_run)


def test_broken_weights_and_configurations(good_run):
    assert load_run(good_run).weights == "best.safetensors"
    _edit_config(good_run, model_options={"hidden": [24]})
    with pytest.raises(RunError) as err:
        load_run(good_run)
    msg = str(err.value)
    assert "the weights do not fit the model rebuilt from config.json" in msg
    assert "best.safetensors" in msg and "shape" in msg and err.value.run_dir == str(good_run)
    _edit_config(good_run, model="resnet9000")
    with pytest.raises(RunError, match="config.json: cannot rebuild the model: unknown model "
                                       "'resnet9000'"):
        load_run(good_run)
    _edit_config(good_run, model="mlp", model_options={"hidden": [16]})
    (good_run / "best.safetensors").write_bytes(b"garbage")
    with pytest.raises(RunError, match="cannot read best.safetensors"):
        load_run(good_run)
    os.remove(good_run / "best.safetensors")
    with pytest.raises(RunError, match=r"no best.safetensors .*--checkpoint last"):
        load_run(good_run)
    assert load_run(good_run, checkpoint="last").epoch == 2
    _edit_config(good_run, task={"name": "nosuchtask"})
    pytest.importorskip("foveanet.train.tasks")
    with pytest.raises(RunError, match="config.json: key 'task'"):
        load_run(good_run, checkpoint="last").task


def test_the_command_line_reports_broken_runs(good_run, capsys):
    _edit_config(good_run, model_options={"hidden": [24]})
    for cmd in (["evaluate"], ["predict", "--json"], ["export", "--onnx", "x.onnx"]):
        args = [cmd[0], str(good_run)] + (["a.png"] if cmd[0] == "predict" else []) + cmd[1:]
        assert main(args) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"foveanet {cmd[0]}: error: {good_run}: the weights do not fit")
        assert "Traceback" not in err


def test_config_errors_name_the_key():
    cfg = cli_config("mlp")
    with pytest.raises(ConfigError, match="dropout: model 'lenet5' has no Dropout layer") as err:
        build_model({**cli_config("lenet5"), "dropout": 0.2})
    assert err.value.key == "dropout"
    with pytest.raises(ConfigError, match=r"input_shape \(1, 28, 32\): the models take square"):
        build_model({**cfg, "input_shape": [1, 28, 32]})
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        build_model({**cfg, "model": "nope"})


def test_data_info_of_registry_data_sets(tmp_path):
    """A data set of fv.data.open_dataset (here a CSV table) through the library: data_info reads
    its classes and shape with the configuration's data_options; an unknown spec, an option it
    does not take and regression data are ConfigErrors naming the key."""
    from foveanet.train.run import check_data_options, load_test, load_train_val
    table = tmp_path / "t.csv"
    table.write_text("a;b;label\n" + "".join(f"{i};{i % 3};{'xy'[i % 2]}\n" for i in range(20)))
    cfg = {**resolve_config({"dataset": str(table)}), "data_options": {"delimiter": ";"}}
    info = data_info(cfg)
    assert info == {"classes": ["x", "y"], "input_shape": [2], "num_classes": 2}
    cfg.update(info)
    train, val = load_train_val(cfg)
    test = load_test(cfg)
    assert (len(train) + len(val), len(test)) == (16, 4)  # the registry's 0.2 held out
    with pytest.raises(ConfigError, match="has no such option; it takes label_column") as err:
        check_data_options(str(table), {"size": "3"})
    assert err.value.key == "data_options" and err.value.value == "size=3"
    with pytest.raises(ConfigError, match="unknown data set 'imagenet'") as err:
        data_info({**cfg, "dataset": "imagenet"})
    assert err.value.key == "dataset"
    targets = tmp_path / "r.csv"
    targets.write_text("".join(f"{i},{i / 7:.3f}\n" for i in range(10)))
    with pytest.raises(ConfigError, match=r"a regression data set.*task='regression'"):
        data_info({**cfg, "dataset": str(targets), "data_options": {"task": "regression"}})
