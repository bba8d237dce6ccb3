"""The run report: ``report.md`` and its plots, written into a run directory.

``write_report(run_dir, ...)`` writes (each file atomically: a temporary file, then
``os.replace``, through ``foveanet.train.io``):

- ``curves.png``: loss and accuracy per epoch, training against validation;
- ``confusion_matrix.png``: the test confusion matrix, annotated with counts, class names on
  both axes (rows: true class, columns: predicted class);
- ``misclassified.png``: a grid of up to 36 misclassified test images, each titled with its true
  and predicted class; for the 2-D toy sets, the test points over the model's decision regions
  with the misclassified ones circled;
- ``report.md``: the configuration, the per-epoch history, the final test metrics, the per-class
  accuracy, links to the plots, the wall time and the training speed (images/s).

``write_run_report(run_dir, config, history, results, predictions, model)`` does the same from
the output of ``foveanet.train.evaluation.predict_loader`` (what ``foveanet train`` and
``foveanet evaluate --report`` call).

Whatever is not passed is read back from the run directory (``config.json``, ``history.jsonl``
(or the checkpoint's history: ``foveanet.train.run.read_history``), ``results.json``), so
``foveanet evaluate --report`` can regenerate the report later; a plot whose data is missing is
left as it is.
Plots are drawn with matplotlib's object-oriented API on an Agg canvas (no display, no pyplot
state), imported only when a report is written.
"""
from __future__ import annotations

import io
import math
import os

from .train.run import read_history

__all__ = ["write_report", "write_run_report", "decision_boundary", "render_markdown",
           "plot_curves", "plot_confusion_matrix", "plot_misclassified", "plot_decision_regions",
           "read_history"]

CURVES = "curves.png"
CONFUSION = "confusion_matrix.png"
MISCLASSIFIED = "misclassified.png"
REPORT = "report.md"


# ------------------------------------------------------------------------------- reading back
def _read_json(path):
    from .train.io import loads_json
    with open(path, encoding="utf-8") as f:
        return loads_json(f.read())


# ------------------------------------------------------------------------------------ figures
def _figure(w, h, layout=None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _series(history, key):
    xs, ys = [], []
    for rec in history:
        v = rec.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            xs.append(rec.get("epoch", len(xs) + 1))
            ys.append(v)
    return xs, ys


def plot_curves(history) -> bytes:
    """Loss and accuracy per epoch, training against validation (PNG bytes)."""
    fig = _figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, metric, title in ((ax_loss, "loss", "Loss (cross-entropy)"),
                              (ax_acc, "accuracy", "Accuracy")):
        for split, style in (("train", "o-"), ("val", "s--")):
            xs, ys = _series(history, f"{split}_{metric}")
            if metric == "accuracy":
                ys = [100 * y for y in ys]
            if xs:
                ax.plot(xs, ys, style, label="training" if split == "train" else "validation")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("%" if metric == "accuracy" else "loss")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        epochs = [r.get("epoch") for r in history if r.get("epoch") is not None]
        if epochs and max(epochs) <= 20:
            ax.set_xticks(range(1, max(epochs) + 1))
    return _png(fig)


def plot_confusion_matrix(cm, classes) -> bytes:
    """The confusion matrix with its counts in the cells and class names on the axes."""
    from .backend import xp
    cm = xp.asarray(cm, dtype=xp.int64)
    c = cm.shape[0]
    size = max(4.0, 0.65 * c + 2.5)
    fig = _figure(size + 1, size)
    ax = fig.subplots()
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(c))
    ax.set_yticks(range(c))
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix (test set)")
    top = cm.max() if cm.size else 0
    for i in range(c):
        for j in range(c):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if top and cm[i, j] > top / 2 else "black")
    return _png(fig)


def _short(name, n=14):
    return name if len(name) <= n else name[:n - 1] + "."


def plot_misclassified(images, labels, predictions, classes, max_images: int = 36) -> bytes:
    """A grid of up to ``max_images`` misclassified images (N, C, H, W) titled true/predicted."""
    from .backend import xp
    n = 0 if images is None else min(len(images), max_images)
    if n == 0:
        fig = _figure(5, 2)
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "no misclassified test images", ha="center", va="center")
        return _png(fig)
    cols = min(6, n)
    rows = math.ceil(n / cols)
    fig = _figure(1.7 * cols, 1.95 * rows + 0.3, layout="constrained")
    axes = xp.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for k, ax in enumerate(axes):
        ax.axis("off")
        if k >= n:
            continue
        img = xp.asarray(images[k], dtype=xp.float32)
        if img.ndim == 3 and img.shape[0] in (1, 3):
            img = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        lo, hi = float(img.min()), float(img.max())
        if lo >= 0 and hi <= 1:
            lo, hi = 0.0, 1.0
        if img.ndim == 2:
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        else:
            ax.imshow((img - lo) / (hi - lo + 1e-12))
        ax.set_title(f"true: {_short(classes[int(labels[k])])}\npred: "
                     f"{_short(classes[int(predictions[k])])}", fontsize=7)
    fig.suptitle(f"Misclassified test images (first {n})", fontsize=10)
    return _png(fig)


def plot_decision_regions(points, labels, predictions, boundary, classes) -> bytes:
    """2-D points over the decision regions of ``boundary`` (points (M, 2) -> probabilities
    (M, C)); misclassified points circled in red."""
    from .backend import xp
    pts = xp.asarray(points, dtype=xp.float64)
    labels = xp.asarray(labels)
    predictions = xp.asarray(predictions)
    fig = _figure(6, 5.5)
    ax = fig.subplots()
    lo = pts.min(axis=0) - 0.5
    hi = pts.max(axis=0) + 0.5
    if boundary is not None:
        gx, gy = xp.meshgrid(xp.linspace(lo[0], hi[0], 150), xp.linspace(lo[1], hi[1], 150))
        grid = xp.stack([gx.ravel(), gy.ravel()], axis=1)
        prob = xp.asarray(boundary(grid))
        z = prob[:, 1] if prob.shape[1] == 2 else prob.argmax(axis=1)
        cs = ax.contourf(gx, gy, z.reshape(gx.shape), levels=20, cmap="RdBu", alpha=0.5)
        fig.colorbar(cs, ax=ax, label=f"P({classes[1]})" if prob.shape[1] == 2 else "class")
    for c, colour in zip(range(len(classes)), ("tab:red", "tab:blue", "tab:green", "tab:orange")):
        sel = labels == c
        ax.scatter(pts[sel, 0], pts[sel, 1], s=10, c=colour, label=classes[c])
    wrong = predictions != labels
    ax.scatter(pts[wrong, 0], pts[wrong, 1], s=60, facecolors="none", edgecolors="black",
               linewidths=1.2, label=f"misclassified ({int(wrong.sum())})")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("Test points and decision regions")
    return _png(fig)


# ----------------------------------------------------------------------------------- markdown
def _fmt(v, pct=False, digits=4):
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{100 * v:.2f}%" if pct else f"{v:.{digits}g}" if abs(v) < 1e-3 and v else \
            f"{v:.{digits}f}"
    return str(v)


def _md_table(headers, rows, align=None) -> list:
    align = align or ["---"] * len(headers)
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return out


def _duration(seconds):
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s"


_CONFIG_ORDER = ["model", "model_options", "dropout", "dataset", "limit_train", "limit_test",
                 "val_split", "stratify", "augment", "epochs", "batch_size", "optimizer", "lr",
                 "momentum", "weight_decay", "scheduler", "scheduler_interval", "l1", "l2",
                 "seed", "threads", "toy_n", "toy_noise", "input_shape", "num_classes"]


def render_markdown(config, history, results, plots) -> str:
    """The text of report.md (``plots``: the file names of the plots to link)."""
    config = config or {}
    history = history or []
    results = results or {}
    test = results.get("test") or {}
    title = f"{config.get('model', 'model')} on {config.get('dataset', 'data')}"
    lines = [f"# foveanet run: {title}", ""]
    if test.get("accuracy") is not None:
        which = ("weights of the epoch with the lowest validation loss"
                 if results.get("checkpoint", "best") == "best" else "last weights")
        lines += [f"**Test accuracy {_fmt(test['accuracy'], True)}** (test loss "
                  f"{_fmt(test.get('loss'))}, {test.get('num_samples', '?')} images), with the "
                  f"{which} (epoch {results.get('epoch')} of "
                  f"{results.get('epochs', len(history))}).", ""]
    if results.get("status") and results["status"] != "completed":
        lines += [f"Run status: {results['status']}.", ""]

    lines += ["## Configuration", ""]
    keys = [k for k in _CONFIG_ORDER if k in config and config[k] is not None]
    keys += [k for k in ("created", "foveanet_version") if k in config]
    lines += _md_table(["setting", "value"], [(k, f"`{config[k]}`") for k in keys])
    if config.get("command"):
        lines += ["", "Command: `" + " ".join(map(str, config["command"])) + "`"]
    lines.append("")

    if history:
        lines += ["## Training history", ""]
        has_val = any(r.get("val_loss") is not None for r in history)
        headers = ["epoch", "train loss", "train acc"]
        if has_val:
            headers += ["val loss", "val acc"]
        headers += ["lr", "time", "images/s"]
        rows = []
        best = results.get("epoch") if results.get("checkpoint") == "best" else None
        for r in history:
            row = [f"**{r.get('epoch')}**" if r.get("epoch") == best else r.get("epoch"),
                   _fmt(r.get("train_loss")), _fmt(r.get("train_accuracy"), True)]
            if has_val:
                row += [_fmt(r.get("val_loss")), _fmt(r.get("val_accuracy"), True)]
            row += [f"{r['lr']:.3g}" if r.get("lr") is not None else "-",
                    _duration(r.get("epoch_time")),
                    f"{r['images_per_sec']:.0f}" if r.get("images_per_sec") else "-"]
            rows.append(row)
        lines += _md_table(headers, rows, ["---:"] * len(headers))
        if best is not None:
            lines += ["", "Bold: the epoch with the lowest validation loss, whose weights "
                      "(`best.safetensors`) were tested."]
        lines.append("")

    if test:
        lines += ["## Test results", ""]
        lines += _md_table(["metric", "value"], [
            ("loss", _fmt(test.get("loss"))), ("accuracy", _fmt(test.get("accuracy"), True)),
            ("top-5 accuracy", _fmt(test.get("top5"), True)),
            ("test images", test.get("num_samples", "-"))], ["---", "---:"])
        lines.append("")
        classes = test.get("classes") or []
        pca = test.get("per_class_accuracy") or []
        counts = test.get("class_counts") or []
        cm = test.get("confusion_matrix") or []
        if classes and pca:
            lines += ["### Per-class accuracy", ""]
            rows = [(i, name, _fmt(a, True), cm[i][i] if cm else "-", n)
                    for i, (name, a, n) in enumerate(zip(classes, pca, counts))]
            lines += _md_table(["#", "class", "accuracy", "correct", "count"], rows,
                               ["---:", "---", "---:", "---:", "---:"])
            lines.append("")

    lines += ["## Timing", ""]
    train_time = results.get("train_time")
    if train_time is None and history:
        train_time = sum(r.get("train_time") or 0.0 for r in history)
    ips = results.get("images_per_sec")
    lines += _md_table(["", ""], [
        ("wall time (training and test, last command)", _duration(results.get("wall_time"))),
        ("training time (all epochs)", _duration(train_time)),
        ("training speed", f"{ips:.0f} images/s" if ips else "-")], ["---", "---:"])
    lines.append("")

    if plots:
        lines += ["## Plots", ""]
        captions = {CURVES: "Loss and accuracy per epoch", CONFUSION: "Confusion matrix",
                    MISCLASSIFIED: "Misclassified test images"}
        for p in plots:
            cap = captions.get(p, p)
            lines += [f"### {cap}", "", f"![{cap}]({p})", ""]
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------- writing
def write_report(run_dir, config=None, history=None, results=None, *, images=None, labels=None,
                 predictions=None, points=None, boundary=None) -> list:
    """Write report.md and the plots into ``run_dir``; returns the paths written.

    ``config``/``history``/``results``: the run's configuration, per-epoch records (a list of
    dicts or a ``History``) and results (``{"test": {...}, "checkpoint", "epoch", "epochs",
    "wall_time", "train_time", "images_per_sec"}``, as ``foveanet train`` writes to
    results.json); each is read from the run directory when not given. ``images``, ``labels``,
    ``predictions``: misclassified test images (N, C, H, W) with their true and predicted
    classes, for ``misclassified.png``. For 2-D data instead: ``points`` (N, 2) with ``labels``
    and ``predictions`` of all test points, and ``boundary`` (points -> class probabilities)
    for the decision regions. Without them the existing misclassified.png is kept (pass
    ``images=[]`` to say that there are none)."""
    from .train.io import atomic_write_bytes, atomic_write_text
    run_dir = os.fspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    if config is None and os.path.isfile(os.path.join(run_dir, "config.json")):
        config = _read_json(os.path.join(run_dir, "config.json"))
    if history is None:
        history = read_history(run_dir)
    history = [dict(r) for r in history]
    if results is None and os.path.isfile(os.path.join(run_dir, "results.json")):
        results = _read_json(os.path.join(run_dir, "results.json"))
    config, results = config or {}, results or {}
    test = results.get("test") or {}
    classes = test.get("classes") or config.get("classes") or []

    written = []

    def put(name, data):
        path = os.path.join(run_dir, name)
        atomic_write_bytes(path, data)
        written.append(path)

    if history:
        put(CURVES, plot_curves(history))
    if test.get("confusion_matrix"):
        put(CONFUSION, plot_confusion_matrix(test["confusion_matrix"], classes))
    if points is not None and labels is not None and predictions is not None:
        put(MISCLASSIFIED, plot_decision_regions(points, labels, predictions, boundary, classes))
    elif images is not None:
        put(MISCLASSIFIED, plot_misclassified(images, labels, predictions, classes))
    plots = [p for p in (CURVES, CONFUSION, MISCLASSIFIED)
             if os.path.isfile(os.path.join(run_dir, p))]
    path = os.path.join(run_dir, REPORT)
    atomic_write_text(path, render_markdown(config, history, results, plots))
    written.append(path)
    return written


def decision_boundary(model):
    """``points -> class probabilities`` of a model on 2-D points, for ``plot_decision_regions``
    (the model is put in eval mode)."""
    from .autograd import no_grad
    from .backend import xp
    from .ops import softmax, tensor

    def probabilities(points):
        model.eval()
        with no_grad():
            out = model(tensor(xp.asarray(points, dtype=xp.float32)))
            return softmax(out, dim=1).numpy()
    return probabilities


def write_run_report(run_dir, config, history, results, predictions, model=None) -> list:
    """``write_report`` from ``predictions``, the dict of ``predict_loader`` on the test set: its
    misclassified images for ``misclassified.png``, or, when ``model`` is given (a run on 2-D
    points, predicted with ``keep_inputs=True``), all test points over the model's decision
    regions. ``history`` None reads it back from the run directory. Returns the paths written."""
    kwargs = {}
    if model is not None:
        kwargs.update(points=predictions["inputs"], labels=predictions["labels"],
                      predictions=predictions["logits"].argmax(axis=1),
                      boundary=decision_boundary(model))
    else:
        none = predictions["mis_images"] is None
        kwargs.update(images=[] if none else predictions["mis_images"],
                      labels=[] if none else predictions["mis_labels"],
                      predictions=[] if none else predictions["mis_preds"])
    records = list(history) if history is not None else None
    return write_report(run_dir, config=config, history=records, results=results, **kwargs)
