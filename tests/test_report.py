"""``foveanet.report``: report.md and the PNG plots, from arguments or read back from a run
directory, every file written atomically."""
import json
import os

import numpy as np
import pytest

from foveanet.report import (plot_confusion_matrix, plot_curves, plot_decision_regions,
                             plot_misclassified, read_history, render_markdown, write_report)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


def _history(n=3, val=True):
    out = []
    for e in range(1, n + 1):
        rec = {"epoch": e, "global_step": 10 * e, "train_loss": 1.0 / e, "train_accuracy": 0.5 + 0.1 * e,
               "lr": 0.01, "train_time": 0.5, "epoch_time": 0.6, "images_per_sec": 2000.0}
        if val:
            rec.update(val_loss=1.2 / e, val_accuracy=0.45 + 0.1 * e)
        out.append(rec)
    return out


def _results(c=10):
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 5, (c, c)) + np.eye(c, dtype=np.int64) * 20
    counts = cm.sum(axis=1)
    return {"checkpoint": "best", "epoch": 2, "epochs": 3, "val_loss": 0.6, "status": "completed",
            "wall_time": 12.5, "train_time": 1.5, "images_per_sec": 2000.0,
            "test": {"loss": 0.45, "accuracy": float(np.trace(cm) / cm.sum()), "top5": 0.99,
                     "num_samples": int(cm.sum()), "classes": CLASSES[:c],
                     "confusion_matrix": cm.tolist(),
                     "per_class_accuracy": (np.diag(cm) / counts).tolist(),
                     "class_counts": counts.tolist()}}


CONFIG = {"format": "foveanet.run", "model": "mlp", "model_options": {"hidden": [32]},
          "dataset": "fashion-mnist", "epochs": 3, "batch_size": 64, "optimizer": "adamw",
          "lr": 0.01, "scheduler": "onecycle", "seed": 0, "classes": CLASSES,
          "command": ["foveanet", "train", "--model", "mlp"]}


def _is_png(data, min_bytes=3000):
    return data[:8] == PNG_MAGIC and len(data) >= min_bytes


def test_plots_are_pngs():
    assert _is_png(plot_curves(_history()))
    assert _is_png(plot_curves(_history(val=False)))
    r = _results()["test"]
    assert _is_png(plot_confusion_matrix(r["confusion_matrix"], CLASSES))
    rng = np.random.default_rng(1)
    imgs = rng.random((40, 1, 28, 28)).astype(np.float32)
    labels, preds = rng.integers(0, 10, 40), rng.integers(0, 10, 40)
    assert _is_png(plot_misclassified(imgs, labels, preds, CLASSES))          # at most 36 shown
    assert _is_png(plot_misclassified(imgs[:3], labels[:3], preds[:3], CLASSES))
    assert _is_png(plot_misclassified(imgs[:3].repeat(3, 1), labels[:3], preds[:3], CLASSES))  # RGB
    assert _is_png(plot_misclassified([], [], [], CLASSES), 1000)             # none: a note
    pts = rng.normal(size=(50, 2))
    y = (pts[:, 0] > 0).astype(int)

    def boundary(p):
        p1 = 1 / (1 + np.exp(-3 * p[:, 0]))
        return np.stack([1 - p1, p1], axis=1)
    assert _is_png(plot_decision_regions(pts, y, 1 - y, boundary, ["neg", "pos"]))


def test_write_report_writes_everything_atomically(tmp_path):
    rng = np.random.default_rng(2)
    imgs = rng.random((7, 1, 28, 28)).astype(np.float32)
    written = write_report(tmp_path, config=CONFIG, history=_history(), results=_results(),
                           images=imgs, labels=np.arange(7), predictions=(np.arange(7) + 1) % 10)
    names = sorted(os.path.basename(p) for p in written)
    assert names == ["confusion_matrix.png", "curves.png", "misclassified.png", "report.md"]
    for n in names[:3]:
        assert _is_png((tmp_path / n).read_bytes()), n
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp") or f.startswith(".")]
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# foveanet run: mlp on fashion-mnist")
    for piece in ("## Configuration", "| optimizer | `adamw` |", "## Training history",
                  "| **2** |", "## Test results", "### Per-class accuracy", "| 9 | Ankle boot |",
                  "## Timing", "12.5 s", "2000 images/s", "![Loss and accuracy per epoch](curves.png)",
                  "![Confusion matrix](confusion_matrix.png)",
                  "![Misclassified test images](misclassified.png)",
                  "Command: `foveanet train --model mlp`"):
        assert piece in md, piece


def test_write_report_reads_the_run_directory(tmp_path):
    """Regeneration: everything comes from config.json, history.jsonl and results.json; the
    misclassified.png already there is kept (the images are not stored)."""
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _history(4)))
    (tmp_path / "results.json").write_text(json.dumps(_results()))
    (tmp_path / "misclassified.png").write_bytes(b"old")
    written = write_report(str(tmp_path))
    assert sorted(os.path.basename(p) for p in written) == ["confusion_matrix.png", "curves.png",
                                                           "report.md"]
    assert (tmp_path / "misclassified.png").read_bytes() == b"old"
    md = (tmp_path / "report.md").read_text()
    assert "\n| 4 | 0.2500 |" in md and "(misclassified.png)" in md
    assert len(read_history(str(tmp_path))) == 4


def test_read_history_falls_back_to_the_checkpoint(tmp_path):
    (tmp_path / "checkpoint.json").write_text(json.dumps(
        {"history": {"epochs": _history(2), "status": "completed"}}))
    assert [r["epoch"] for r in read_history(str(tmp_path))] == [1, 2]
    assert read_history(str(tmp_path / "nothing")) == []


@pytest.mark.parametrize("val", [True, False])
def test_render_markdown_without_validation_or_results(val):
    md = render_markdown(CONFIG, _history(2, val=val), {}, [])
    assert ("val loss" in md) == val
    assert "## Test results" not in md and "## Plots" not in md
    md = render_markdown({}, [], {}, [])
    assert md.startswith("# foveanet run") and "## Timing" in md
