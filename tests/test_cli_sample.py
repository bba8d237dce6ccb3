"""The command line's language models: ``foveanet train --task language_model`` (a tiny
character LSTM on a small text file, seconds) writes a run directory with its report, ``foveanet
sample`` generates text from it (the report's sample again, to the character), kill -9 and
--resume end bit-identical, and the errors of both commands (exit status and message)."""
import contextlib
import io
import json
import math
import os
import sysconfig

import pytest

import foveanet as fv
from foveanet.cli import main
from test_cli import kill_after_first_checkpoint, run_cli, safetensors_bits

TINY = ["--hidden", "16", "--layers", "1", "--embedding", "8", "--bptt", "16", "--batch-size",
        "4", "--threads", "1", "--no-progress"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_main(argv):
    """(exit status, stdout, stderr) of ``main(argv)`` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    """12,000 characters of Python (argparse.py's beginning): the same on every machine with
    this Python."""
    with open(os.path.join(sysconfig.get_paths()["stdlib"], "argparse.py"), encoding="utf-8") as f:
        text = f.read()[:12_000]
    path = tmp_path_factory.mktemp("text") / "code.py.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory, text_file):
    run = str(tmp_path_factory.mktemp("runs") / "lm")
    rc, out, err = run_main(["train", "--text", text_file, "--epochs", "2", "--out", run] + TINY)
    assert rc == 0, err
    return run, out


def test_train_writes_a_language_model_run(lm_run, text_file):
    run, out = lm_run
    assert "training char_lstm on" in out and "(language model)" in out
    assert "vocabulary" in out and "bptt 16" in out
    line = [ln for ln in out.splitlines() if ln.startswith("validation: ")]
    assert line and "bits per character (best epoch" in line[0]
    for name in ("config.json", "corpus.json", "checkpoint.json", "model.safetensors",
                 "optimizer.safetensors", "best.safetensors", "history.jsonl", "results.json",
                 "report.md", "curves.png"):
        assert os.path.isfile(os.path.join(run, name)), name
    with open(os.path.join(run, "curves.png"), "rb") as f:
        assert f.read(8) == PNG_MAGIC
    cfg = json.load(open(os.path.join(run, "config.json")))
    with open(text_file, encoding="utf-8") as f:
        text = f.read()
    assert cfg["task"] == {"name": "language_model"} and cfg["model"] == "char_lstm"
    assert cfg["classes"] == sorted(set(text)) and cfg["num_classes"] == len(set(text))
    assert cfg["input_shape"] == [16] and cfg["dataset"] == text_file
    assert cfg["text"]["characters"] == len(text) and cfg["text"]["files"] == 1
    corpus = json.load(open(os.path.join(run, "corpus.json")))
    assert corpus["file_list"][0]["path"] == text_file
    assert corpus["sha256"] == cfg["text"]["sha256"]
    history = [json.loads(ln) for ln in open(os.path.join(run, "history.jsonl"))]
    assert len(history) == 2
    for rec in history:
        assert rec["val_bits_per_char"] == rec["val_loss"] / math.log(2)
        assert rec["train_bits_per_char"] == rec["train_loss"] / math.log(2)
        assert rec["val_perplexity"] == pytest.approx(math.exp(rec["val_loss"]))
    results = json.load(open(os.path.join(run, "results.json")))
    best = min(history, key=lambda r: r["val_loss"])
    assert results["epoch"] == best["epoch"]
    assert results["val"]["bits_per_char"] == best["val_bits_per_char"]
    assert f"{best['val_bits_per_char']:.4f} bits per character" in line[0]
    report = open(os.path.join(run, "report.md"), encoding="utf-8").read()
    assert f"**Validation {best['val_bits_per_char']:.4f} bits per character**" in report
    assert "## Sample" in report and "val bits/char" in report and "](curves.png)" in report
    assert results["sample"]["text"] in report


def test_sample_gives_the_report_sample_again(lm_run):
    run, _ = lm_run
    results = json.load(open(os.path.join(run, "results.json")))
    s = results["sample"]
    rc, out, err = run_main(["sample", run, "--prompt", s["prompt"], "--length",
                             str(len(s["text"])), "--temperature", str(s["temperature"]),
                             "--seed", str(s["seed"])])
    assert rc == 0, err
    assert out == s["prompt"] + s["text"] + ("" if s["text"].endswith("\n") else "\n")
    # the Python API, the same characters
    loaded = fv.load_run(run)
    assert loaded.is_language_model and loaded.vocabulary.chars == loaded.classes
    assert loaded.sample(s["prompt"], len(s["text"]), s["temperature"], seed=s["seed"]) == s["text"]
    rc, out, _ = run_main(["sample", run, "--prompt", "def ", "--length", "25", "--seed", "3",
                           "--temperature", "0.5", "--checkpoint", "last"])
    assert rc == 0 and out.startswith("def ") and len(out.rstrip("\n")) >= 25


def test_sample_errors(lm_run, tmp_path):
    run, _ = lm_run
    for t in ("0", "-1", "nan", "inf", "warm"):
        rc, _, err = run_main(["sample", run, "--temperature", t])
        assert rc == 2 and "expected a temperature > 0" in err, (t, err)
    rc, _, err = run_main(["sample", run, "--prompt", "naïve €"])
    assert rc == 2
    assert "--prompt: 2 characters not in the run's vocabulary" in err and "'€' (U+20AC)" in err
    rc, _, err = run_main(["sample", str(tmp_path / "nothing")])
    assert rc == 1 and "not a foveanet run directory" in err
    toy = str(tmp_path / "toy")
    assert run_main(["train", "--dataset", "xor", "--limit-train", "40", "--batch-size", "16",
                     "--epochs", "1", "--threads", "1", "--no-progress", "--out", toy])[0] == 0
    rc, _, err = run_main(["sample", toy])
    assert rc == 1 and "not a language-model run" in err and "task classification" in err
    # the image commands say what a language-model run is for
    rc, _, err = run_main(["evaluate", run])
    assert rc == 1 and "has no test set" in err and "foveanet sample" in err
    rc, _, err = run_main(["predict", run, "1,2"])
    assert rc == 1 and "classifies no inputs" in err


def test_train_errors(tmp_path, text_file):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    binary = tmp_path / "data.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    short = tmp_path / "short.txt"
    short.write_text("def f(): pass\n" * 20)
    out = ["--out", str(tmp_path / "r")]
    cases = [
        (["--text", str(tmp_path / "missing.txt")], 2, "--text " + str(tmp_path / "missing.txt")
         + ": no such file"),
        (["--text", str(tmp_path)], 2, "is a directory, not a text file"),
        (["--text", str(empty)], 1, "the text file is empty"),
        (["--text", str(binary)], 1, "a binary file, not text (a NUL byte at offset 8)"),
        (["--text", text_file, "--augment", "flip"], 2,
         "--augment does not apply to a language model"),
        (["--text", text_file, "--limit-test", "10"], 2, "has no test set"),
        (["--text", text_file, "--model", "cnn_bn"], 2, "--model cnn_bn is not a language model"),
        (["--task", "classification", "--bptt", "8"], 2,
         "--bptt applies to language models (--task language_model)"),
        (["--text", str(short), "--bptt", "100", "--batch-size", "32"], 2,
         "--batch-size 32 and --bptt 100 need at least 3,232 training characters"),
        (["--text", text_file, "--hidden", "8", "--model-option", "hidden=16"], 2,
         "--hidden 8 contradicts --model-option hidden=16"),
        (["--text", text_file, "--model-option", "width=3"], 2, "has no option 'width'"),
        (["--task", "language_model", "--dataset", "mnist"], 2,
         "--dataset does not apply to a language model"),
    ]
    for args, status, message in cases:
        rc, _, err = run_main(["train"] + args + out + ["--threads", "1", "--no-progress"])
        assert rc == status and message in err, (args, rc, err)
        assert err.startswith("foveanet train: error: "), err
        assert not os.path.exists(tmp_path / "r" / "checkpoint.json")


def test_resume_rules(lm_run, tmp_path, text_file):
    run, _ = lm_run
    rc, _, err = run_main(["train", "--resume", run, "--bptt", "8"])
    assert rc == 2 and "--bptt 8 contradicts the run's config.json (bptt = 16)" in err
    rc, _, err = run_main(["train", "--resume", run, "--epochs", "1"])
    assert rc == 2 and "already completed 2 epochs" in err
    # a text that changed since the run started is refused
    changed = tmp_path / "changed.txt"
    changed.write_text(open(text_file, encoding="utf-8").read())
    moved = str(tmp_path / "moved")
    assert run_main(["train", "--text", str(changed), "--epochs", "1", "--out", moved]
                    + TINY)[0] == 0
    changed.write_text(open(text_file, encoding="utf-8").read().replace("import", "IMPORT"))
    rc, _, err = run_main(["train", "--resume", moved, "--epochs", "2", "--no-progress"])
    assert rc == 1 and "the text has changed since the run started" in err


@pytest.mark.slow
def test_kill_and_resume_is_bit_identical(tmp_path, text_file):
    args = ["train", "--text", text_file, "--epochs", "4", "--steps-per-epoch", "30",
            "--layers", "2", "--dropout", "0.1", "--seed", "3"] + TINY
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    res = run_cli(args + ["--out", straight], tmp_path)
    assert res.returncode == 0, res.stderr
    epoch_at_kill = kill_after_first_checkpoint(args, killed, tmp_path)
    assert not os.path.exists(os.path.join(killed, "report.md"))
    res = run_cli(["train", "--resume", killed, "--no-progress"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"resumed after epoch {epoch_at_kill}" in res.stdout
    for name in ("model.safetensors", "best.safetensors", "optimizer.safetensors"):
        assert safetensors_bits(os.path.join(killed, name)) == \
            safetensors_bits(os.path.join(straight, name)), name
    h_a = [json.loads(line) for line in open(os.path.join(straight, "history.jsonl"))]
    h_b = [json.loads(line) for line in open(os.path.join(killed, "history.jsonl"))]
    assert len(h_a) == len(h_b) == 4
    for a, b in zip(h_a, h_b):
        for key in ("train_loss", "val_loss", "val_bits_per_char", "lr", "global_step"):
            assert a[key] == b[key], key
    sample_a = json.load(open(os.path.join(straight, "results.json")))["sample"]
    sample_b = json.load(open(os.path.join(killed, "results.json")))["sample"]
    assert sample_a == sample_b
