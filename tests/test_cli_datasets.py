"""``foveanet train --dataset SPEC`` on the data sets of ``fv.data.open_dataset`` beyond
Fashion-MNIST, MNIST and the toy sets: CIFAR-10/100 (official binary files written here), an
image folder (Pillow PNGs of several sizes) and a CSV table (string labels). Each is trained for
one epoch, then read back by ``fv.load_run``, ``foveanet evaluate``, ``predict``, ``export`` and
continued with ``--resume``; the command line's errors for what it cannot take come last.

The data is tiny and written in tmp_path; training runs in-process (``main([...])``) with small
models, so each test takes a second or two. Nothing is downloaded: the data directories the
named sets are searched in are pointed into tmp_path.
"""
import json
import os
import re

import numpy as np
import pytest

import foveanet as fv
from foveanet.cli import main

Image = pytest.importorskip("PIL.Image")

QUICK = ["--epochs", "1", "--threads", "1", "--no-progress", "--scheduler", "step"]
CNN = ["--model-option", "width=4"]
ACC_LINE = re.compile(r"^test accuracy: (\d+\.\d\d)% \(best epoch 1 of 1, val loss \d+\.\d{4}\)$",
                      re.M)
CSV_CLASSES = ["blue", "green", "red"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No $FOVEANET_DATA, a temporary home (cache) and system directory: a named set is found
    only where a test put it, and nothing is downloaded."""
    import foveanet.data.sources as sources
    monkeypatch.delenv("FOVEANET_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIR", str(tmp_path / "system"))
    return tmp_path


# ------------------------------------------------------------------------------- tiny data
def write_cifar10(root, n_per_batch=8, n_test=20, names=True):
    """root/cifar-10-batches-bin/ in the official binary format: records of one label byte then
    the 3x32x32 pixels (red plane, green, blue); the class's colour dominates its images."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)

    def records(n):
        labels = rng.permutation(np.arange(n) % 10)
        out = b""
        for y in labels:
            img = rng.integers(0, 90, (3, 32, 32), dtype=np.uint8)
            img[int(y) % 3] += 120
            out += bytes([int(y)]) + img.tobytes()
        return out
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(records(n_per_batch))
    (folder / "test_batch.bin").write_bytes(records(n_test))
    if names:  # the names the files give win over the published ones
        (folder / "batches.meta.txt").write_text("\n".join(f"thing{i}" for i in range(10)) + "\n")
    return root


def write_cifar100(root, n_train=40, n_test=20):
    """root/cifar-100-binary/: records of a coarse label byte, a fine label byte, the pixels."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-binary"
    folder.mkdir(parents=True)
    for name, n in (("train.bin", n_train), ("test.bin", n_test)):
        fine = rng.integers(0, 100, n)
        raw = b"".join(bytes([int(f) // 5, int(f)]) + rng.integers(0, 256, 3072, dtype=np.uint8)
                       .tobytes() for f in fine)
        (folder / name).write_bytes(raw)
    return root


def write_folder(root, per_class=8, classes=("cat", "dog", "emu"), square=False):
    """root/<class>/<k>.png: RGB pictures of several sizes (10 to 21 pixels a side), each
    class a colour of its own."""
    rng = np.random.default_rng(2)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            w, h = (12, 12) if square else rng.integers(10, 22, 2)
            img = rng.integers(0, 80, (h, w, 3)).astype(np.uint8)
            img[..., c % 3] += 150
            Image.fromarray(img).save(root / name / f"{k}.png")
    return root


def write_csv(path, n=60, features=3):
    """A table with a header, ``features`` numeric columns and a string label (last column);
    the classes are shifted blobs, so they are learnable."""
    rng = np.random.default_rng(3)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, features)) + 2.0 * y[:, None]
    lines = [",".join([f"f{j}" for j in range(features)] + ["colour"])]
    lines += [",".join([f"{v:.4f}" for v in row] + [CSV_CLASSES[c]]) for row, c in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


def train(args, capsys):
    """``foveanet train ARGS``: (exit status, stdout, stderr)."""
    rc = main(["train", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


# ------------------------------------------------------------------------- the three kinds
def _case(kind, tmp_path):
    """(train options, an input for predict, what config.json must say) of a data set kind."""
    if kind == "cifar10":
        data = write_cifar10(tmp_path / "data")
        picture = tmp_path / "photo.png"
        Image.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(picture)
        return (["--dataset", "CIFAR-10", "--data-dir", "data", *CNN], str(picture),
                {"dataset": "cifar10", "data_options": {}, "input_shape": [3, 32, 32],
                 "classes": [f"thing{i}" for i in range(10)], "data_dir": str(data)})
    if kind == "folder":
        root = write_folder(tmp_path / "photos")
        return (["--dataset", "photos", "--data-option", "size=16", *CNN],
                str(root / "dog" / "0.png"),
                {"dataset": str(root), "data_options": {"size": "16"},
                 "input_shape": [3, 16, 16], "classes": ["cat", "dog", "emu"]})
    path = write_csv(tmp_path / "table.csv")
    return (["--dataset", "table.csv", "--batch-size", "8"], "0.5,1.5,-2",
            {"dataset": str(path), "data_options": {}, "input_shape": [3],
             "classes": CSV_CLASSES, "feature_names": ["f0", "f1", "f2"], "model": "mlp"})


@pytest.mark.parametrize("kind", ["cifar10", "folder", "csv"])
def test_train_evaluate_predict_resume(kind, tmp_path, monkeypatch, capsys):
    """One epoch on each kind; the run is then used from another directory: config.json holds
    absolute paths and the data options, so everything finds the same data."""
    monkeypatch.chdir(tmp_path)  # the relative --dataset / --data-dir given below
    options, item, want = _case(kind, tmp_path)
    run = str(tmp_path / "run")
    rc, out, err = train([*options, *QUICK, "--out", run], capsys)
    assert rc == 0, err
    m = ACC_LINE.search(out)
    assert m, out
    cfg = json.load(open(os.path.join(run, "config.json")))
    for key, value in want.items():
        assert cfg[key] == value, key
    assert cfg["num_classes"] == len(want["classes"])
    # images: the CNN recipe with flips; the CSV: the toy sets' small MLP, no augmentation
    assert cfg["augment"] == ("none" if kind == "csv" else "flip")
    assert (cfg["model"], cfg["model_options"]) == (("mlp", {"hidden": [32, 32]}) if kind == "csv"
                                                    else ("cnn_bn", {"width": 4}))
    results = json.load(open(os.path.join(run, "results.json")))
    assert abs(100 * results["test"]["accuracy"] - float(m.group(1))) < 0.006
    assert os.path.isfile(os.path.join(run, "report.md"))
    # a picture grid for images; a CSV row of 3 numbers is no picture, nor a 2-D point
    assert os.path.isfile(os.path.join(run, "misclassified.png")) == (kind != "csv")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the relative paths given to train lead nowhere from here
    loaded = fv.load_run(run)
    again = loaded.evaluate()
    for key in ("loss", "accuracy", "confusion_matrix", "num_samples", "classes"):
        assert again[key] == results["test"][key], key
    assert loaded.classes == want["classes"] and list(loaded.input_shape) == want["input_shape"]

    assert main(["evaluate", run]) == 0
    out = capsys.readouterr().out
    assert f"{results['test']['num_samples']} test samples" in out
    assert f"{100 * results['test']['accuracy']:.2f}%" in out

    assert main(["predict", run, item, "--json", "--top", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res) == 1 and res[0]["prediction"] in want["classes"] and not res[0]["inverted"]
    assert len(res[0]["top"]) == 2 and 0 < res[0]["top"][0]["probability"] <= 1

    pytest.importorskip("onnx")
    onnx_file = str(tmp_path / "model.onnx")
    assert main(["export", run, "--onnx", onnx_file]) == 0
    assert f"input {want['input_shape']} per sample" in capsys.readouterr().out
    assert os.path.getsize(onnx_file) > 0

    first = json.loads(open(os.path.join(run, "history.jsonl")).readline())
    assert main(["train", "--resume", run, "--epochs", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "epoch 2/2" in out and "epoch 1/2" not in out
    history = [json.loads(line) for line in open(os.path.join(run, "history.jsonl"))]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0]["train_loss"] == first["train_loss"]  # epoch 1 kept, not trained again
    assert json.load(open(os.path.join(run, "checkpoint.json")))["epoch"] == 2


def test_predict_of_a_csv_run_names_the_features(tmp_path, capsys):
    run = str(tmp_path / "run")
    rc, _, err = train(["--dataset", str(write_csv(tmp_path / "t.csv")), *QUICK, "--out", run],
                       capsys)
    assert rc == 0, err
    assert main(["predict", run, "1,2"]) == 2
    err = capsys.readouterr().err
    assert "classifies rows of 3 numbers (f0,f1,f2)" in err and "Traceback" not in err
    assert main(["predict", run, "1,x,2"]) == 2
    assert "rows of 3 numbers" in capsys.readouterr().err
    # a picture is no input of a CSV run
    with pytest.raises(fv.train.run.RunError, match="takes points of 3 numbers, not pictures"):
        fv.load_run(run).prepare_image(str(tmp_path / "any.png"))


def test_a_csv_of_two_features_is_drawn_as_the_toy_sets_are(tmp_path, capsys):
    """2 features are points: the report shows the test points over the decision regions (the
    misclassified plot), as for the toy sets."""
    run = str(tmp_path / "run")
    rc, _, err = train(["--dataset", str(write_csv(tmp_path / "t.csv", features=2)), *QUICK,
                        "--out", run], capsys)
    assert rc == 0, err
    assert os.path.getsize(os.path.join(run, "misclassified.png")) > 3000
    assert main(["predict", run, "0.5,1"]) == 0
    assert re.match(r"0\.5,1: (blue|green|red) \(", capsys.readouterr().out)


def test_cifar100_coarse_labels(tmp_path, capsys):
    data = write_cifar100(tmp_path / "data")
    run = str(tmp_path / "run")
    rc, out, err = train(["--dataset", "cifar100", "--data-dir", str(data), "--data-option",
                          "label=coarse", "--val-split", "0", *CNN, *QUICK, "--out", run], capsys)
    assert rc == 0, err
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["num_classes"] == 20 and cfg["data_options"] == {"label": "coarse"}
    assert cfg["classes"][1] == "fish"  # the published coarse names (no names file written)
    assert "data: 40 training, 0 validation, 20 test samples" in out
    # --resume must not change the labels the run was trained on
    assert main(["train", "--resume", run, "--data-option", "label=fine"]) == 2
    assert "--data-option label=fine contradicts the run's config.json (label=coarse)" in \
        capsys.readouterr().err


def test_folder_with_train_and_test_folders(tmp_path, capsys):
    """train/ and test/ are the splits: nothing is held out of train/."""
    root = tmp_path / "pics"
    write_folder(root / "train", per_class=6, classes=("a", "b"), square=True)
    write_folder(root / "test", per_class=2, classes=("a", "b"), square=True)
    run = str(tmp_path / "run")
    rc, out, err = train(["--dataset", str(root), "--val-split", "0.25", *CNN, *QUICK,
                          "--out", run], capsys)
    assert rc == 0, err
    assert "data: 9 training, 3 validation, 4 test samples" in out
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["input_shape"] == [3, 12, 12]  # the images' own size: they are all 12x12


def test_toy_data_options_are_the_toy_keys(tmp_path, capsys):
    run = str(tmp_path / "run")
    rc, out, err = train(["--dataset", "xor", "--data-option", "n=40", "--data-option",
                          "noise=0", *QUICK, "--out", run], capsys)
    assert rc == 0, err
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert (cfg["toy_n"], cfg["toy_noise"]) == (40, 0.0) and "data_options" not in cfg
    assert "data: 36 training, 4 validation, 40 test samples" in out
    assert main(["train", "--resume", run, "--data-option", "n=41"]) == 2
    assert "--data-option n=41 contradicts the run's config.json (n=40)" in capsys.readouterr().err
    rc, _, err = train(["--dataset", "xor", "--data-option", "seed=3"], capsys)
    assert rc == 2 and "the toy sets are drawn from --seed" in err


def test_recipes_for_the_new_kinds(tmp_path):
    from foveanet.recipes import DEFAULT_RECIPE, TOY_RECIPE, recipe_for
    table = recipe_for(str(tmp_path / "Data.CSV"))
    assert table["dataset"] == str(tmp_path / "Data.CSV")  # a path keeps its case
    assert {k: table[k] for k in TOY_RECIPE} == TOY_RECIPE
    folder = tmp_path / "Photos"
    folder.mkdir()
    images = recipe_for(str(folder))
    assert images["dataset"] == str(folder) and images["model"] == DEFAULT_RECIPE["model"]
    assert recipe_for("CIFAR10")["dataset"] == "cifar10"
    assert recipe_for("cifar10")["augment"] == DEFAULT_RECIPE["augment"]


def test_help_lists_what_dataset_accepts(capsys):
    assert main(["train", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for piece in ("--data-option KEY=VALUE", "cifar10, cifar100", "a .csv file",
                  "a directory of images", "label=fine|coarse", "task='regression'"):
        assert piece in out, piece


# ---------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("args, message", [
    (["--dataset", "imagenet"], "argument --dataset: invalid choice: 'imagenet' (give a known "
     "name: fashion-mnist, mnist, cifar10, cifar100, circle, xor, gauss, spiral; a directory"),
    (["--dataset", "{tmp}/nowhere.csv"], "nowhere.csv: no such CSV file"),
    (["--dataset", "{tmp}/no/such/dir"], "not a directory of class folders nor a .csv file"),
    (["--dataset", "{tmp}/t.csv", "--data-option", "size=16"],
     "--data-option size=16: {tmp}/t.csv has no such option; it takes label_column, "
     "feature_columns, header, task, delimiter, test_fraction, seed"),
    (["--dataset", "cifar100", "--data-option", "label=medium"],
     "--data-option label=medium: expected fine or coarse"),
    (["--dataset", "{tmp}/t.csv", "--data-option", "test_fraction=1.5"],
     "--data-option test_fraction=1.5: expected a fraction between 0 and 1"),
    (["--dataset", "{tmp}/t.csv", "--data-option", "header"],
     "--data-option expects KEY=VALUE (e.g. size=32), got 'header'"),
    (["--data-option", "size=28"], "--data-option size=28: fashion-mnist has no such option; it "
     "takes none"),
    (["--dataset", "{tmp}/t.csv", "--augment", "flip"], "--augment 'flip': augmentation applies "
     "to image data sets, not to the feature vectors of 't' (use --augment none)"),
    (["--dataset", "{tmp}/t.csv", "--model", "cnn_bn"], "the rows of a CSV table are feature "
     "vectors: use an MLP (--model mlp)"),
    (["--dataset", "reg-plane"], "--dataset reg-plane: a regression data set, and runs of foveanet "
     "train are classifiers: train it in Python with fv.train.Trainer(model, optimizer, "
     "task='regression') on fv.data.open_dataset('reg-plane')"),
    (["--dataset", "{tmp}/t.csv", "--data-option", "task=regression"], "a regression data set"),
    (["--dataset", "{tmp}/photos"], "--dataset {tmp}/photos: the images are not all one size ("),
    (["--dataset", "{tmp}/photos"], "give --data-option size=N to resize and crop every image to "
     "N x N"),
    (["--dataset", "{tmp}/photos", "--data-option", "size=0"],
     "--data-option size=0: Resize: size must be a positive int"),
    (["--dataset", "{tmp}/t.csv", "--data-option", "label_column=nope"],
     "--data-option label_column=nope: {tmp}/t.csv: no column named 'nope' (label_column); the "
     "columns are: f0, f1, f2, colour"),
    (["--dataset", "{tmp}/photos", "--data-option", "size=16x20"],
     "--data-option size=16x20: the models take square images: give one number (e.g. size=16)"),
])
def test_usage_errors(tmp_path, capsys, args, message):
    write_csv(tmp_path / "t.csv")
    write_folder(tmp_path / "photos", per_class=2)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    rc, out, err = train([*args, "--out", str(tmp_path / "run")], capsys)
    assert rc == 2, (out, err)
    assert message.replace("{tmp}", str(tmp_path)) in err and "Traceback" not in err
    assert err.count("error:") == 1
    assert not os.path.exists(tmp_path / "run")  # refused before anything was written


def test_missing_cifar_files_is_a_runtime_error(tmp_path, capsys):
    rc, _, err = train(["--dataset", "cifar10", "--data-dir", str(tmp_path / "empty"), *CNN,
                        *QUICK, "--out", str(tmp_path / "run")], capsys)
    assert rc == 1
    assert err.startswith("foveanet train: error: CIFAR-10 not found") and "--download" in err


def test_a_bad_csv_row_is_named(tmp_path, capsys):
    path = write_csv(tmp_path / "t.csv")
    path.write_text(path.read_text() + "1.0,oops,2.0,red\n")
    rc, _, err = train(["--dataset", str(path), *QUICK, "--out", str(tmp_path / "run")], capsys)
    assert rc == 1 and "line 62, column 2 (f1): 'oops' is not a number" in err
