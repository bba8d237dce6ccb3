"""``foveanet evaluate RUN_DIR``: the test metrics, per-class accuracy and confusion matrix of a
trained run on its own test set (``foveanet.load_run`` and ``foveanet.train.evaluation``)."""
from __future__ import annotations

import os
import sys

from ..backend import set_num_threads
from ..train.evaluation import compute_test_metrics, predict_loader
from ..train.forecast import forecast_metrics, is_forecast, predict_forecast
from ..train.run import data_files_note, load_run, make_loader, read_results, write_results
from .common import Formatter, add_checkpoint, add_run_dir, out, run_report, table, takes_points

EPILOG = """\
examples:
  foveanet evaluate runs/cnn_bn-fashion-mnist-20250101-120000
  foveanet evaluate runs/mlp --checkpoint last --data-dir ~/data
  foveanet evaluate runs/mlp --report            also rewrite report.md and the plots

Prints the test loss, accuracy, top-5 accuracy, the per-class accuracy and the confusion
matrix (rows: true class, columns: predicted class); for a forecasting run the test MAE and
RMSE beside those of the naive last-value forecast, per step ahead. The test set is the run's
own (the same --limit-test subset as during training; a series' last part in time), read as
config.json says: the data set's name or path and its --data-option settings (an image
folder's or a CSV file's held-out part is drawn the same way again).
"""


def add_parser(sub):
    e = sub.add_parser("evaluate", help="test metrics, per-class accuracy, confusion matrix",
                       description="Evaluate a trained run on its test set.",
                       epilog=EPILOG, formatter_class=Formatter)
    add_run_dir(e)
    add_checkpoint(e)
    e.add_argument("--data-dir", metavar="DIR", default=None, dest="data_dir",
                   help="where the data set files are (default: where the run found them)")
    e.add_argument("--download", action="store_true", help="download the data set if needed")
    e.add_argument("--report", action="store_true",
                   help="rewrite results.json, report.md and the plots from this evaluation")
    e.add_argument("--optimize", action="store_true",
                   help="run fv.optimize_for_inference's model (BN folded, activations fused)")
    return e


def print_metrics(test: dict, rich_ok: bool) -> None:
    """The tables of ``compute_test_metrics``' result: metrics, per-class accuracy, confusion."""
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    table("Test metrics", ["metric", "value"],
          [("loss", f"{test['loss']:.4f}"), ("accuracy", pct(test["accuracy"])),
           ("top-5 accuracy", pct(test.get("top5"))), ("samples", test["num_samples"])], rich_ok)
    classes = test["classes"]
    cm = test["confusion_matrix"]
    rows = [(f"{i} {name}", pct(a), cm[i][i], n)
            for i, (name, a, n) in enumerate(zip(classes, test["per_class_accuracy"],
                                                test["class_counts"]))]
    table("Per-class accuracy", ["class", "accuracy", "correct", "count"], rows, rich_ok)
    table("Confusion matrix (rows: true class, columns: predicted class)",
          ["true \\ pred"] + [str(i) for i in range(len(classes))],
          [[f"{i} {name}"] + list(row) for i, (name, row) in enumerate(zip(classes, cm))], rich_ok)


def print_forecast_metrics(test: dict, rich_ok: bool) -> None:
    """The tables of ``forecast_metrics``' result: the model against the naive forecast, overall
    and per step ahead."""
    unit = f" ({test['unit']})" if test.get("unit") else ""
    g = lambda v: f"{v:.4g}"  # noqa: E731
    table(f"Test forecasts{unit}: {test['num_samples']} windows", ["", "MAE", "RMSE"],
          [("model", g(test["mae"]), g(test["rmse"])),
           ("naive (last value)", g(test["naive_mae"]), g(test["naive_rmse"]))], rich_ok)
    per = test["per_step"]
    if test["horizon"] > 1:
        table("Per step ahead", ["step", "MAE", "naive MAE", "RMSE", "naive RMSE"],
              [(k + 1, g(per["mae"][k]), g(per["naive_mae"][k]), g(per["rmse"][k]),
                g(per["naive_rmse"][k])) for k in range(test["horizon"])], rich_ok)


def command(args) -> int:
    run = load_run(args.run_dir, checkpoint=args.checkpoint)
    cfg = run.config
    set_num_threads(int(cfg.get("threads") or 1))
    model = run.optimized_model() if args.optimize else run.model
    test_set = run.test_set(args.data_dir, args.download)
    note = data_files_note(cfg, "test", test_set)
    if note:
        print(f"note: {note}", file=sys.stderr)
    if is_forecast(cfg):
        pred = predict_forecast(model, make_loader(test_set, cfg, False), run.task)
        test = forecast_metrics(pred, (cfg.get("series") or {}).get("unit", ""))
    else:
        pred = predict_loader(model, make_loader(test_set, cfg, False),
                              keep_inputs=takes_points(cfg), tta=cfg.get("tta") or "none")
        test = compute_test_metrics(pred, run.classes)
    out(f"{run.run_dir}: {cfg['model']} on {run.dataset}, {run.weights} (epoch {run.epoch}), "
        f"{test['num_samples']} test {'windows' if is_forecast(cfg) else 'samples'}")
    (print_forecast_metrics if is_forecast(cfg) else print_metrics)(test, sys.stdout.isatty())
    if args.report:
        results = read_results(run.run_dir) or {}
        results.update(checkpoint=args.checkpoint, epoch=run.epoch, test=test)
        write_results(run.run_dir, results)
        written = run_report(run.run_dir, cfg, None, results, pred, model)
        out("wrote " + ", ".join(os.path.basename(p) for p in written))
    return 0
