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

A forecasting run (``foveanet.train.forecast``) has its own: ``write_forecast_report`` writes
``forecast.png`` (the test forecasts against the truth, beside the naive last-value forecast),
``forecast.csv`` (each test window's truth, forecast and naive forecast), ``curves.png`` (loss and
RMSE per epoch) and ``report.md`` (the test MAE and RMSE beside the naive forecast's, the series,
its split and normalisation).

A language-model run (``foveanet.train.language``) has its own too: ``write_language_model_report``
writes ``curves.png`` (cross entropy and bits per character per epoch) and ``report.md`` (the
validation bits per character, the text read, the history, a generated sample).

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
           "read_history", "write_forecast_report", "render_forecast_markdown", "plot_forecast",
           "plot_forecast_curves"]

CURVES = "curves.png"
CONFUSION = "confusion_matrix.png"
MISCLASSIFIED = "misclassified.png"
REPORT = "report.md"


# ------------------------------------------------------------------------------- reading back
def _read_json(path):
    from .train.io import loads_json
    with open(path, encoding="utf-8") as f:
        return loads_json(f.read())


def _run_files(run_dir, config, history, results):
    """``(run_dir, config, history, results)`` for a report: what is not given read back from
    the run directory (config.json, the history, results.json), missing ones as {} / []; the
    directory made if need be."""
    run_dir = os.fspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    if config is None and os.path.isfile(os.path.join(run_dir, "config.json")):
        config = _read_json(os.path.join(run_dir, "config.json"))
    history = [dict(r) for r in (read_history(run_dir) if history is None else history)]
    if results is None and os.path.isfile(os.path.join(run_dir, "results.json")):
        results = _read_json(os.path.join(run_dir, "results.json"))
    return run_dir, config or {}, history, results or {}


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


def _config_section(config, keys, shown=None) -> list:
    """The report's "Configuration" section: a table of ``keys`` (``shown(k)`` the value shown,
    default ``config[k]``) and the command that made the run."""
    shown = shown or config.get
    lines = ["## Configuration", ""]
    lines += _md_table(["setting", "value"], [(k, f"`{shown(k)}`") for k in keys])
    if config.get("command"):
        lines += ["", "Command: `" + " ".join(map(str, config["command"])) + "`"]
    lines.append("")
    return lines


def _epoch_panels(history, panels, ms=None, xticks=True, legend_loc=None):
    """A 10x4 figure of per-epoch panels, training against validation: ``panels`` are
    ``(history key, title, y label or None, scale)``; ``xticks``: every epoch marked when there
    are at most 20. Returns (figure, axes)."""
    fig = _figure(10, 4)
    axes = fig.subplots(1, len(panels))
    epochs = [r.get("epoch") for r in history if r.get("epoch") is not None]
    for ax, (key, title, ylabel, scale) in zip(axes, panels):
        for split, style in (("train", "o-"), ("val", "s--")):
            xs, ys = _series(history, f"{split}_{key}")
            if scale != 1:
                ys = [scale * y for y in ys]
            if xs:
                ax.plot(xs, ys, style, **({} if ms is None else {"ms": ms}),
                        label="training" if split == "train" else "validation")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if ylabel is not None:
            ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(**({} if legend_loc is None else {"loc": legend_loc}))
        if xticks and epochs and max(epochs) <= 20:
            ax.set_xticks(range(1, max(epochs) + 1))
    return fig, axes


def plot_curves(history) -> bytes:
    """Loss and accuracy per epoch, training against validation (PNG bytes)."""
    fig, _ = _epoch_panels(history, (("loss", "Loss (cross-entropy)", "loss", 1),
                                     ("accuracy", "Accuracy", "%", 100)))
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


_CONFIG_ORDER = ["recipe", "model", "model_options", "dropout", "dataset", "limit_train",
                 "limit_test", "val_split", "stratify", "augment", "tta", "epochs", "batch_size",
                 "optimizer", "lr", "momentum", "weight_decay", "scheduler", "scheduler_interval",
                 "l1", "l2", "seed", "threads", "toy_n", "toy_noise", "input_shape", "num_classes"]


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
        plain = test.get("without_tta")
        if plain:
            lines += [f"Test-time augmentation ({test.get('tta')}): each image scored by the mean "
                      f"softmax of it and its mirror image; without it the test accuracy is "
                      f"{_fmt(plain.get('accuracy'), True)} (loss {_fmt(plain.get('loss'))}).", ""]
    if results.get("status") and results["status"] != "completed":
        lines += [f"Run status: {results['status']}.", ""]

    keys = [k for k in _CONFIG_ORDER if k in config and config[k] is not None]
    lines += _config_section(config, keys + [k for k in ("created", "foveanet_version")
                                             if k in config])

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
            if p.startswith("kernels/epoch_"):  # foveanet train --save-kernels
                e = int(p[len("kernels/epoch_"):-4])
                cap = ("First-layer kernels before training" if e == 0 else
                       f"First-layer kernels after epoch {e}")
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
    run_dir, config, history, results = _run_files(run_dir, config, history, results)
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
             if os.path.isfile(os.path.join(run_dir, p))] + kernel_snapshots(run_dir)
    path = os.path.join(run_dir, REPORT)
    atomic_write_text(path, render_markdown(config, history, results, plots))
    written.append(path)
    return written


def kernel_snapshots(run_dir) -> list:
    """The kernel pictures ``foveanet train --save-kernels`` wrote (``kernels/epoch_NNN.png``),
    by epoch, as paths relative to the run directory."""
    folder = os.path.join(os.fspath(run_dir), "kernels")
    if not os.path.isdir(folder):
        return []
    return [f"kernels/{f}" for f in sorted(os.listdir(folder))
            if f.startswith("epoch_") and f.endswith(".png") and f[6:-4].isdigit()]


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


# ---------------------------------------------------------------------------- forecasting runs
FORECAST_PLOT = "forecast.png"


def _series_axis(config):
    series = (config or {}).get("series") or {}
    unit = series.get("unit") or ""
    label = series.get("label") or series.get("column") or "value"
    return (series.get("time_label") or "time step",
            f"{label} ({unit})" if unit else label, unit)


def plot_forecast(pred, config=None, zoom: int = 100) -> bytes:
    """The test forecasts against the truth (PNG bytes): the whole test span (truth, the model's
    forecast one step ahead and, for a horizon H > 1, H steps ahead), then its last ``zoom``
    steps with the naive last-value forecast beside the model's (and, for H > 1, whole H-step
    forecasts from every H-th window), and for H > 1 the RMSE per step ahead, model against naive.
    ``pred``: ``foveanet.train.forecast.predict_forecast``'s arrays."""
    from .backend import xp
    target, fc, naive = pred["target"], pred["forecast"], pred["naive"]
    n, h = target.shape
    times = pred.get("times")
    if times is None:
        times = xp.arange(n, dtype=xp.float64)[:, None] + xp.arange(h)[None, :]
    xlabel, ylabel, unit = _series_axis(config)
    u = f" {unit}" if unit else ""
    whole = n > zoom  # a panel for the whole span, above the zoom on its end
    panels = [1.0] * (1 + whole) + [0.7] * (h > 1)
    fig = _figure(11, 1.0 + 3.2 * sum(panels), layout="constrained")
    axes = list(xp.atleast_1d(fig.subplots(len(panels), 1, height_ratios=panels)))
    if not whole:
        axes.insert(0, None)
    # the truth at every target time of the test span (each time's value, from any window)
    t_all, v_all = xp.concatenate([times[:, 0], times[-1, 1:]]), \
        xp.concatenate([target[:, 0], target[-1, 1:]])

    def err(key, k=None):
        e = pred[key] - target if k is None else pred[key][:, k] - target[:, k]
        return float(xp.abs(e).mean()), float(xp.sqrt((e * e).mean()))
    mae, rmse = err("forecast")
    n_mae, n_rmse = err("naive")

    title = (f"model MAE {mae:.4g}{u}, RMSE {rmse:.4g}{u}; naive last-value forecast MAE "
             f"{n_mae:.4g}{u}, RMSE {n_rmse:.4g}{u}")
    ax = axes[0] if whole else _NoAxes()
    ax.plot(t_all, v_all, "-", color="black", lw=1.2, label="truth")
    ax.plot(times[:, 0], fc[:, 0], "-", color="tab:blue", lw=1.0, alpha=0.9,
            label="model, 1 step ahead")
    if h > 1:
        ax.plot(times[:, -1], fc[:, -1], "-", color="tab:orange", lw=1.0, alpha=0.8,
                label=f"model, {h} steps ahead")
    ax.set_title(f"Test span: {n} windows; {title}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)

    ax = axes[1]
    k0 = max(0, n - zoom)
    sel = slice(k0, n)
    keep = t_all >= times[k0, 0]
    ax.plot(t_all[keep], v_all[keep], "o-", color="black", ms=2.5, lw=1.0, label="truth")
    ax.plot(times[sel, 0], naive[sel, 0], "--", color="tab:gray", lw=1.0,
            label="naive: the window's last value")
    ax.plot(times[sel, 0], fc[sel, 0], "-", color="tab:blue", lw=1.2, label="model, 1 step ahead")
    if h > 1:
        for j, i in enumerate(range(k0, n, h)):
            ax.plot(times[i], fc[i], "-", color="tab:orange", lw=1.0, alpha=0.9,
                    label=f"model, steps 1..{h} from one window" if j == 0 else None)
    ax.set_title(f"The last {n - k0} test windows" if whole else
                 f"Test span: {n} windows; {title}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)

    if h > 1:
        ax = axes[2]
        steps = xp.arange(1, h + 1)
        model_rmse = [err("forecast", k)[1] for k in range(h)]
        naive_rmse = [err("naive", k)[1] for k in range(h)]
        ax.bar(steps - 0.2, model_rmse, 0.4, color="tab:blue", label="model")
        ax.bar(steps + 0.2, naive_rmse, 0.4, color="tab:gray", label="naive")
        ax.set_xticks(steps)
        ax.set_xlabel("steps ahead")
        ax.set_ylabel(f"test RMSE ({unit})" if unit else "test RMSE")
        ax.set_title("Test RMSE per step ahead")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    name = (config or {}).get("dataset", "")
    fig.suptitle(f"Forecasts of {os.path.basename(str(name)) or 'the series'} against the truth",
                 fontsize=11)
    return _png(fig)


class _NoAxes:
    """Stands in for a panel that is not drawn: every call does nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def plot_forecast_curves(history, unit: str = "") -> bytes:
    """Loss (MSE of the normalised values) and RMSE (in the series' units) per epoch, training
    against validation (PNG bytes)."""
    fig, _ = _epoch_panels(history, (("loss", "Loss (MSE, normalised values)", "loss", 1),
                                     ("rmse", "RMSE" + (f" ({unit})" if unit else ""),
                                      unit or "RMSE", 1)), ms=3, xticks=False)
    return _png(fig)


def render_forecast_markdown(config, history, results, plots) -> str:
    """The text of a forecasting run's report.md: the test MAE and RMSE beside the naive
    last-value forecast's, per step ahead, the series, the configuration, the history."""
    config, history, results = config or {}, history or [], results or {}
    test = results.get("test") or {}
    series = config.get("series") or {}
    unit = test.get("unit") or series.get("unit") or ""
    u = f" {unit}" if unit else ""
    title = f"{config.get('model', 'model')} forecasting {config.get('dataset', 'a series')}"
    lines = [f"# foveanet run: {title}", ""]
    if test.get("mae") is not None:
        which = ("weights of the epoch with the lowest validation loss"
                 if results.get("checkpoint", "best") == "best" else "last weights")
        skill = test.get("skill")
        lines += [f"**Test MAE {_fmt(test['mae'])}{u}, RMSE {_fmt(test['rmse'])}{u}**; the naive "
                  f"last-value forecast on the same {test.get('num_samples', '?')} windows: MAE "
                  f"{_fmt(test['naive_mae'])}{u}, RMSE {_fmt(test['naive_rmse'])}{u}"
                  + (f" (the model's RMSE is {100 * abs(skill):.1f}% "
                     f"{'lower' if skill >= 0 else 'higher'})" if skill is not None else "")
                  + f". With the {which} (epoch {results.get('epoch')} of "
                  f"{results.get('epochs', len(history))}).", ""]
    if results.get("status") and results["status"] != "completed":
        lines += [f"Run status: {results['status']}.", ""]

    if series:
        lines += ["## Series", ""]
        split = series.get("split") or {}
        rows = [("series", f"`{series.get('name')}`, column `{series.get('column')}`"),
                ("values", f"{series.get('length')} ({series.get('step')}ly)"
                 if series.get("step") in ("week", "year") else str(series.get("length"))),
                ("span", f"{_fmt_time(series.get('start'))} to {_fmt_time(series.get('end'))}")]
        for name in ("train", "val", "test"):
            if name in split:
                p = split[name]
                rows.append((f"{name} windows", f"{p['windows']} (targets {_fmt_time(p['first'])} "
                             f"to {_fmt_time(p['last'])})"))
        rows += [("window -> horizon", f"{config.get('window')} -> {config.get('horizon')}"),
                 ("normalisation (training part)", f"(v - {series.get('offset', 0):.6g}) / "
                  f"{series.get('scale', 1):.6g}")]
        rows += [("note", n) for n in series.get("notes") or []]
        lines += _md_table(["", ""], rows)
        lines.append("")

    if test.get("mae") is not None:
        lines += ["## Test results", ""]
        lines += _md_table(["", "MAE", "RMSE"], [
            ("model", f"{_fmt(test['mae'])}{u}", f"{_fmt(test['rmse'])}{u}"),
            ("naive (last value)", f"{_fmt(test['naive_mae'])}{u}",
             f"{_fmt(test['naive_rmse'])}{u}")],
            ["---", "---:", "---:"])
        per = test.get("per_step") or {}
        if test.get("horizon", 1) > 1 and per:
            lines += ["", "Per step ahead:", ""]
            rows = [(k + 1, _fmt(per["mae"][k]), _fmt(per["naive_mae"][k]), _fmt(per["rmse"][k]),
                     _fmt(per["naive_rmse"][k])) for k in range(len(per["mae"]))]
            lines += _md_table(["step", "MAE", "naive MAE", "RMSE", "naive RMSE"], rows,
                               ["---:"] * 5)
        lines += ["", f"Test loss (MSE of the normalised values): {_fmt(test.get('loss'))}. Each "
                  "window's forecast, truth and naive forecast: `forecast.csv`.", ""]

    keys = [k for k in _CONFIG_ORDER if k in config and config[k] is not None and k not in
            ("limit_train", "limit_test", "toy_n", "toy_noise", "num_classes", "stratify")]
    keys[keys.index("dataset") + 1:keys.index("dataset") + 1] = [
        k for k in ("data_options", "window", "horizon") if config.get(k) not in (None, {})]
    keys += [k for k in ("created", "foveanet_version") if k in config]
    lines += _config_section(config, keys)

    if history:
        lines += ["## Training history", ""]
        best = results.get("epoch") if results.get("checkpoint") == "best" else None
        headers = ["epoch", "train loss", "train RMSE", "val loss", "val MAE", "val RMSE", "lr",
                   "time"]
        rows = [[f"**{r.get('epoch')}**" if r.get("epoch") == best else r.get("epoch"),
                 _fmt(r.get("train_loss")), _fmt(r.get("train_rmse")), _fmt(r.get("val_loss")),
                 _fmt(r.get("val_mae")), _fmt(r.get("val_rmse")),
                 f"{r['lr']:.3g}" if r.get("lr") is not None else "-",
                 _duration(r.get("epoch_time"))] for r in history]
        lines += _md_table(headers, rows, ["---:"] * len(headers))
        if best is not None:
            lines += ["", "Bold: the epoch with the lowest validation loss, whose weights "
                      "(`best.safetensors`) were tested."]
        lines.append("")

    lines += ["## Timing", ""]
    train_time = results.get("train_time")
    if train_time is None and history:
        train_time = sum(r.get("train_time") or 0.0 for r in history)
    lines += _md_table(["", ""], [
        ("wall time (training and test, last command)", _duration(results.get("wall_time"))),
        ("training time (all epochs)", _duration(train_time))], ["---", "---:"])
    lines.append("")
    if plots:
        lines += ["## Plots", ""]
        captions = {FORECAST_PLOT: "Test forecasts against the truth",
                    CURVES: "Loss and RMSE per epoch"}
        for p in plots:
            cap = captions.get(p, p)
            lines += [f"### {cap}", "", f"![{cap}]({p})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _fmt_time(t):
    if t is None:
        return "-"
    if isinstance(t, float) and not float(t).is_integer():
        return f"{t:.2f}"
    return str(int(t)) if isinstance(t, (int, float)) else str(t)


def write_forecast_report(run_dir, config=None, history=None, results=None,
                          predictions=None) -> list:
    """A forecasting run's report: ``forecast.png`` and ``forecast.csv`` from ``predictions``
    (``predict_forecast``'s arrays; without them the existing files are kept), ``curves.png``
    (loss and RMSE per epoch) and ``report.md``. What is not given is read back from the run
    directory, as ``write_report`` does. Returns the paths written."""
    from .train.forecast import write_forecast_csv
    from .train.io import atomic_write_bytes, atomic_write_text
    run_dir, config, history, results = _run_files(run_dir, config, history, results)
    written = []

    def put(name, data):
        path = os.path.join(run_dir, name)
        atomic_write_bytes(path, data)
        written.append(path)

    if predictions is not None:
        put(FORECAST_PLOT, plot_forecast(predictions, config))
        written.append(write_forecast_csv(run_dir, predictions))
    if history:
        put(CURVES, plot_forecast_curves(history, _series_axis(config)[2]))
    plots = [p for p in (FORECAST_PLOT, CURVES) if os.path.isfile(os.path.join(run_dir, p))]
    path = os.path.join(run_dir, REPORT)
    atomic_write_text(path, render_forecast_markdown(config, history, results, plots))
    written.append(path)
    return written


# ------------------------------------------------------------------------ language-model runs
# A language-model run (``foveanet.train.language``, ``foveanet train --task language_model``)
# has its own report: ``curves.png`` (cross entropy and bits per character per epoch, training
# against validation) and ``report.md`` (the validation bits per character of the kept weights,
# the text the model read, the configuration, the history, a generated sample, the timing).
_LM_CONFIG_ORDER = ["model", "model_options", "dropout", "dataset", "max_chars", "val_split",
                    "bptt", "steps_per_epoch", "epochs", "batch_size", "optimizer", "lr",
                    "momentum", "weight_decay", "scheduler", "scheduler_interval",
                    "clip_grad_norm", "l1", "l2", "seed", "threads", "num_classes"]


def plot_language_model_curves(history) -> bytes:
    """Cross entropy (nats per character) and bits per character per epoch, training against
    validation (PNG bytes)."""
    fig, _ = _epoch_panels(history, (("loss", "Loss (cross entropy)", "nats per character", 1),
                                     ("bits_per_char", "Bits per character",
                                      "bits per character", 1)))
    return _png(fig)


def _fence(text: str) -> str:
    """A Markdown code fence longer than any run of backticks in ``text``."""
    longest, run = 0, 0
    for c in text:
        run = run + 1 if c == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def render_language_model_markdown(config, history, results, plots) -> str:
    """The text of a language-model run's report.md (``plots``: the file names to link)."""
    config, history, results = config or {}, history or [], results or {}
    val = results.get("val") or {}
    text = config.get("text") or {}
    bptt = config.get("bptt")
    title = f"{config.get('model', 'model')} on {os.path.basename(str(config.get('dataset', 'text')))}"
    lines = [f"# foveanet run: {title} (language model)", ""]
    which = ("weights of the epoch with the lowest validation loss"
             if results.get("checkpoint", "best") == "best" else "last weights")
    if val.get("bits_per_char") is not None:
        lines += [f"**Validation {val['bits_per_char']:.4f} bits per character** (cross entropy "
                  f"{_fmt(val.get('loss'))} nats, perplexity {_fmt(val.get('perplexity'))}, "
                  f"next-character accuracy {_fmt(val.get('accuracy'), True)}), with the {which} "
                  f"(epoch {results.get('epoch')} of {results.get('epochs', len(history))}).", ""]
    if results.get("status") and results["status"] != "completed":
        lines += [f"Run status: {results['status']}.", ""]

    if text:
        lines += ["## Text", ""]
        source = ("the Python standard library's sources" if text.get("source") == "stdlib"
                  else f"`{text.get('source')}`")
        rows = [("source", source), ("characters", f"{text.get('characters', 0):,}"),
                ("bytes (UTF-8)", f"{text.get('bytes', 0):,}"), ("files", text.get("files", "-")),
                ("vocabulary", f"{config.get('num_classes', '-')} characters"),
                ("SHA-256", f"`{text.get('sha256', '-')}`")]
        if text.get("python"):
            rows.insert(1, ("Python", f"{text['python']} ({text.get('root', '')})"))
        if text.get("max_chars"):
            rows.append(("cap", f"the first {text['max_chars']:,} characters"))
        lines += _md_table(["", ""], rows, ["---", "---"])
        split = results.get("split") or {}
        if split:
            lines += ["", f"The first {split.get('train', 0):,} characters train and the last "
                      f"{split.get('val', 0):,} validate (by position); the file list is in "
                      "`corpus.json`."]
        lines.append("")

    keys = [k for k in _LM_CONFIG_ORDER if k in config and config[k] is not None]
    lines += _config_section(config, keys + [k for k in ("created", "foveanet_version")
                                             if k in config])

    if history:
        lines += ["## Training history", ""]
        has_val = any(r.get("val_loss") is not None for r in history)
        headers = ["epoch", "train loss", "train bits/char"]
        if has_val:
            headers += ["val loss", "val bits/char", "val perplexity", "val acc"]
        headers += ["lr", "time", "characters/s"]
        best = results.get("epoch") if results.get("checkpoint") == "best" else None
        rows = []
        for r in history:
            row = [f"**{r.get('epoch')}**" if r.get("epoch") == best else r.get("epoch"),
                   _fmt(r.get("train_loss")), _fmt(r.get("train_bits_per_char"))]
            if has_val:
                row += [_fmt(r.get("val_loss")), _fmt(r.get("val_bits_per_char")),
                        _fmt(r.get("val_perplexity")), _fmt(r.get("val_accuracy"), True)]
            cps = r.get("images_per_sec") * bptt if r.get("images_per_sec") and bptt else None
            row += [f"{r['lr']:.3g}" if r.get("lr") is not None else "-",
                    _duration(r.get("epoch_time")), f"{cps:.0f}" if cps else "-"]
            rows.append(row)
        lines += _md_table(headers, rows, ["---:"] * len(headers))
        if best is not None:
            lines += ["", "Bold: the epoch with the lowest validation loss, whose weights "
                      "(`best.safetensors`) `foveanet sample` uses."]
        lines.append("")

    sample = results.get("sample") or {}
    if sample.get("text") is not None:
        body = sample.get("prompt", "") + sample["text"]
        fence = _fence(body)
        last = " --checkpoint last" if results.get("checkpoint") == "last" else ""
        lines += ["## Sample", "",
                  f"`foveanet sample RUN_DIR --prompt {sample.get('prompt', '')!r} --length "
                  f"{len(sample['text'])} --temperature {sample.get('temperature')} --seed "
                  f"{sample.get('seed')}{last}` (the prompt, then the generated characters):", "",
                  fence, body, fence, ""]

    lines += ["## Timing", ""]
    train_time = results.get("train_time")
    if train_time is None and history:
        train_time = sum(r.get("train_time") or 0.0 for r in history)
    cps = results.get("characters_per_sec")
    lines += _md_table(["", ""], [
        ("wall time (training, sample and report, last command)",
         _duration(results.get("wall_time"))),
        ("training time (all epochs)", _duration(train_time)),
        ("training speed", f"{cps:.0f} characters/s" if cps else "-")], ["---", "---:"])
    lines.append("")

    if plots:
        lines += ["## Plots", ""]
        for p in plots:
            cap = "Loss and bits per character per epoch" if p == CURVES else p
            lines += [f"### {cap}", "", f"![{cap}]({p})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_language_model_report(run_dir, config=None, history=None, results=None) -> list:
    """Write a language-model run's ``curves.png`` and ``report.md`` into ``run_dir`` (what is
    not passed is read back from it, as for ``write_report``); returns the paths written."""
    from .train.io import atomic_write_bytes, atomic_write_text
    run_dir, config, history, results = _run_files(run_dir, config, history, results)
    written = []
    if history:
        path = os.path.join(run_dir, CURVES)
        atomic_write_bytes(path, plot_language_model_curves(history))
        written.append(path)
    plots = [CURVES] if os.path.isfile(os.path.join(run_dir, CURVES)) else []
    path = os.path.join(run_dir, REPORT)
    atomic_write_text(path, render_language_model_markdown(config, history, results, plots))
    written.append(path)
    return written


__all__ += ["write_language_model_report", "render_language_model_markdown",
            "plot_language_model_curves"]


# ------------------------------------------------------------------- image-output tasks
# A run of ``foveanet train --task autoencode|denoise|segment|vae|gan`` (``cli/train_images``):
# ``write_image_task_report`` writes curves.png (the task's losses per epoch; a GAN's two
# losses and its discriminator's outputs), the pictures of ``train.image_eval.evaluate``'s
# arrays, and report.md.
IMAGE_CURVES = {"autoencode": (("loss", "MSE"), ("psnr", "PSNR (dB)")),
                "denoise": (("loss", "MSE"), ("psnr", "PSNR (dB)")),
                "segment": (("loss", "per-pixel loss"), ("mean_iou", "mean IoU")),
                "vae": (("loss", "negative ELBO (nats per image)"), ("kl", "KL term (nats)")),
                "gan": (("d_loss", "discriminator loss"), ("g_loss", "generator loss"))}
SEG_COLOURS = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
               (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60),
               (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200),
               (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128)]


def plot_image_task_curves(history, kind) -> bytes:
    """The task's two figures per epoch, training against validation (PNG bytes); a GAN's
    panels are its two losses, with D's mean outputs on real and generated images beside."""
    fig, axes = _epoch_panels(history, [(key, title, None, 1) for key, title in IMAGE_CURVES[kind]],
                              xticks=False, legend_loc="upper left")
    if kind == "gan":  # D's mean outputs on a second axis of each panel
        for ax, other, what in zip(axes, ("d_real", "d_fake"), ("x", "G(z)")):
            xs, ys = _series(history, f"train_{other}")
            if xs:
                ax2 = ax.twinx()
                ax2.plot(xs, ys, "^:", color="tab:gray", label=f"mean D({what})")
                ax2.set_ylim(0, 1)
                ax2.legend(loc="upper right")
    return _png(fig)


def mask_colours(mask):
    """(H, W) class indices as an (H, W, 3) uint8 picture (class 0 black, then SEG_COLOURS)."""
    from .backend import xp as np
    m = np.asarray(mask).astype(np.int64)
    pal = np.array(SEG_COLOURS * (1 + int(m.max(initial=0)) // len(SEG_COLOURS)), dtype=np.uint8)
    return pal[np.clip(m, 0, None)]


def plot_segmentation(images, truth, pred, classes) -> bytes:
    """Rows of (image, true mask, predicted mask) with a legend of the classes (PNG bytes)."""
    from .backend import xp as np
    n = len(images)
    fig = _figure(7.5, 2.3 * n + 0.8)
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        img = np.asarray(images[i])
        img = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        for j, (pic, title) in enumerate(((img, "image"), (mask_colours(truth[i]), "truth"),
                                          (mask_colours(pred[i]), "prediction"))):
            ax = axes[i][j]
            ax.imshow(pic, cmap="gray" if pic.ndim == 2 else None, vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title)
    from matplotlib.patches import Patch
    handles = [Patch(color=np.array(SEG_COLOURS[k % len(SEG_COLOURS)]) / 255.0, label=c)
               for k, c in enumerate(classes)]
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=8,
               frameon=False)
    fig.subplots_adjust(bottom=0.9 / (2.3 * n + 0.8) + 0.02)
    return _png(fig)


def plot_latent(codes, labels, classes) -> bytes:
    """A 2-D code per test image, coloured by class (PNG bytes)."""
    from .backend import xp as np
    codes, labels = np.asarray(codes), np.asarray(labels)
    fig = _figure(7, 6)
    ax = fig.subplots()
    cmap = __import__("matplotlib").colormaps["tab10"]
    for k in np.unique(labels):
        sel = labels == k
        name = classes[int(k)] if classes and 0 <= int(k) < len(classes) else str(int(k))
        ax.scatter(codes[sel, 0], codes[sel, 1], s=3, color=cmap(int(k) % 10), label=name)
    ax.set_title("The test set in the 2-D code")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.legend(markerscale=4, fontsize=8, loc="best")
    return _png(fig)


def _grid_png(images, nrow, scale=2) -> bytes:
    from .train.generative import image_grid, png_bytes
    return png_bytes(image_grid(images, nrow), scale)


_PICTURES = {"reconstructions": "reconstructions.png", "triples": "denoising.png",
             "samples": "samples.png", "interpolation": "interpolation.png",
             "latent": "latent.png", "overlay_images": "segmentation.png"}
_CAPTIONS = {"curves.png": "Losses per epoch",
             "reconstructions.png": "Test images (top) and their reconstructions (bottom)",
             "denoising.png": "Noisy input, denoised output, clean image (rows)",
             "samples.png": "Samples", "interpolation.png":
             "Latent interpolations (each row: a straight line between two noise vectors)",
             "latent.png": "The test set in the 2-D code", "segmentation.png":
             "Test scenes: image, true mask, predicted mask"}


def _image_pictures(kind, arrays, config):
    out = {}
    a = arrays or {}
    if "reconstructions" in a:
        out["reconstructions.png"] = _grid_png(a["reconstructions"], len(a["reconstructions"]) // 2)
    if "triples" in a:
        out["denoising.png"] = _grid_png(a["triples"], len(a["triples"]) // 3)
    if "samples" in a:
        k = 10 if config.get("conditional") else None
        out["samples.png"] = _grid_png(a["samples"], k)
    if "interpolation" in a:
        out["interpolation.png"] = _grid_png(a["interpolation"], 10)
    if "latent" in a:
        out["latent.png"] = plot_latent(a["latent"], a["latent_labels"],
                                        _FASHION if config.get("dataset") == "fashion-mnist"
                                        else None)
    if "overlay_images" in a:
        out["segmentation.png"] = plot_segmentation(a["overlay_images"], a["overlay_truth"],
                                                    a["overlay_pred"], config.get("classes") or
                                                    [str(i) for i in range(config.get(
                                                        "num_classes", 11))])
    return out


_FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
            "Bag", "Ankle boot"]


def render_image_task_markdown(config, history, results, plots) -> str:
    """The text of an image-output run's report.md."""
    config, results = config or {}, results or {}
    kind = (config.get("task") or {}).get("kind", "?")
    t = results.get("test") or {}
    lines = [f"# foveanet run: {config.get('model')} ({kind}) on {config.get('dataset')}", ""]
    at = (f"with the {'weights of the epoch with the lowest validation loss' if results.get('checkpoint') == 'best' else 'last weights'}"
          f" (epoch {results.get('epoch')} of {results.get('epochs')})")
    if kind == "autoencode":
        lines += [f"**Test MSE {_fmt(t.get('mse'), digits=5)}, PSNR {_fmt(t.get('psnr'))} dB, "
                  f"SSIM {_fmt(t.get('ssim'))}** on {t.get('images')} images, {at}.", ""]
    elif kind == "denoise":
        lines += [f"**Denoising ({t.get('noise')}): PSNR {_fmt(t.get('psnr_noisy'))} -> "
                  f"{_fmt(t.get('psnr'))} dB (+{_fmt(t.get('psnr_gain'))} dB), SSIM "
                  f"{_fmt(t.get('ssim_noisy'))} -> {_fmt(t.get('ssim'))}** on "
                  f"{t.get('images')} test images, {at}.", ""]
    elif kind == "segment":
        lines += [f"**Test pixel accuracy {_fmt(t.get('pixel_accuracy'), True)}, mean IoU "
                  f"{_fmt(t.get('mean_iou'))}** over {t.get('pixels', 0):,} pixels, {at}.", ""]
        if t.get("per_class_iou"):
            lines += ["## Per class", ""]
            lines += _md_table(["class", "IoU", "Dice"],
                               [(c, _fmt(v), _fmt((t.get("per_class_dice") or {}).get(c)))
                                for c, v in t["per_class_iou"].items()],
                               ["---", "---:", "---:"])
            lines.append("")
    elif kind == "vae":
        lines += [f"**Test ELBO {_fmt(t.get('elbo'))} nats per image** (reconstruction "
                  f"{_fmt(t.get('recon'))}, KL {_fmt(t.get('kl'))}) on {t.get('images')} "
                  f"images, {at}.", ""]
    elif kind == "gan":
        fr = t.get("frechet")
        lines += [f"DCGAN trained for {results.get('epochs')} epochs "
                  f"({'class-conditional' if config.get('conditional') else 'unconditional'}).", ""]
        if fr:
            lines += [f"**{fr['name']}: {_fmt(fr['generated'])}** (lower is better), beside "
                      f"real vs real {_fmt(fr['real_vs_real'])} and uniform noise "
                      f"{_fmt(fr['noise'])}; {fr['images']} images per set, features of the "
                      f"classifier in `{fr.get('classifier')}`. This is a Frechet distance in a "
                      "Fashion-MNIST classifier's features, not the Inception-based FID.", ""]
        if "conditional_accuracy" in t:
            lines += [f"The classifier recognises **{_fmt(t['conditional_accuracy'], True)}** of "
                      f"the class-conditional samples as the class asked for (real test "
                      f"images: {_fmt(t.get('classifier_accuracy_real'), True)}).", ""]
    if results.get("status") and results["status"] != "completed":
        lines += [f"Run status: {results['status']}.", ""]
    keys = [k for k in ("task", "model", "model_options", "dataset", "noise", "seg_loss",
                        "class_weights", "conditional", "classifier", "limit_train",
                        "limit_test", "val_split", "epochs", "batch_size", "optimizer", "lr",
                        "betas", "weight_decay", "scheduler", "seed", "threads", "created",
                        "foveanet_version") if config.get(k) is not None]
    lines += _config_section(config, keys, lambda k: kind if k == "task" else config[k])
    if history:
        lines += ["## Training history", ""]
        keys = [k for k in ("train_loss", "val_loss", "train_d_loss", "train_g_loss",
                            "train_d_real", "train_d_fake", "val_psnr", "val_mean_iou",
                            "val_elbo", "train_kl") if any(r.get(k) is not None for r in history)]
        rows = [[r.get("epoch")] + [_fmt(r.get(k)) for k in keys] + [_duration(r.get("epoch_time"))]
                for r in history]
        lines += _md_table(["epoch"] + keys + ["time"], rows, ["---:"] * (len(keys) + 2))
        lines.append("")
    lines += ["## Timing", ""]
    lines += _md_table(["", ""], [("wall time (training, evaluation, report; last command)",
                                   _duration(results.get("wall_time"))),
                                  ("training time (all epochs)", _duration(results.get("train_time"))),
                                  ("test evaluation", _duration(results.get("eval_time")))],
                       ["---", "---:"])
    lines.append("")
    if plots:
        lines += ["## Pictures", ""]
        for p in plots:
            cap = _CAPTIONS.get(p, p)
            if p.startswith("samples/epoch_"):
                cap = f"Samples of the same noise after epoch {int(p[len('samples/epoch_'):-4])}"
            if config.get("conditional") and (p == "samples.png" or p.startswith("samples/")):
                cap += " (class-conditional: one class per column, T-shirt/top to Ankle boot)"
            lines += [f"### {cap}", "", f"![{cap}]({p})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_image_task_report(run_dir, config=None, history=None, results=None, arrays=None) -> list:
    """Write an image-output run's curves.png, its pictures (from ``arrays``, see
    ``train.image_eval``; existing pictures are kept when not given) and report.md; returns the
    paths written."""
    from .train.io import atomic_write_bytes, atomic_write_text
    run_dir, config, history, results = _run_files(run_dir, config, history, results)
    kind = (config.get("task") or {}).get("kind", "autoencode")
    written = []

    def put(name, data):
        path = os.path.join(run_dir, name)
        atomic_write_bytes(path, data)
        written.append(path)

    if history:
        put(CURVES, plot_image_task_curves(history, kind))
    for name, data in _image_pictures(kind, arrays, config).items():
        put(name, data)
    order = [CURVES] + list(_PICTURES.values())
    plots = [p for p in dict.fromkeys(order) if os.path.isfile(os.path.join(run_dir, p))]
    plots += kernel_snapshots(run_dir)
    samples = os.path.join(run_dir, "samples")
    if os.path.isdir(samples):
        plots += [f"samples/{f}" for f in sorted(os.listdir(samples)) if f.endswith(".png")][-3:]
    path = os.path.join(run_dir, REPORT)
    atomic_write_text(path, render_image_task_markdown(config, history, results, plots))
    written.append(path)
    return written


__all__ += ["write_image_task_report", "render_image_task_markdown", "plot_image_task_curves",
            "plot_segmentation", "plot_latent", "mask_colours"]
