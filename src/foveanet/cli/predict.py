"""``foveanet predict RUN_DIR IMAGE...``: classify picture files (or X,Y points, for a run on a
toy set; rows of comma-separated numbers, for a run on a CSV table) with a trained run
(``foveanet.load_run``; pictures prepared by ``foveanet.data.images.prepare_image``)."""
from __future__ import annotations

import json
import math

from ..backend import xp
from ..train.run import RunError, load_run
from .common import Formatter, UsageError, add_checkpoint, add_run_dir, out, positive_int

EPILOG = """\
examples:
  foveanet predict runs/cnn_bn-fashion-mnist-20250101-120000 shirt.png sneaker.jpg
  foveanet predict runs/mlp photo.png --top 3 --json
  foveanet predict runs/spiral-run 1.5,-2 0,0    toy runs take x,y points
  foveanet predict --top 1 runs/spiral-run -- -1.5,2 0,0   (after --, points may start with -)
  foveanet predict runs/iris-run 5.1,3.5,1.4,0.2   CSV runs take rows of the feature columns
  foveanet predict runs/sunspots-run 10,30,...     forecasting runs take windows of past values
                                                   and print the values ahead

How a picture is prepared: it is converted to grey (models with 1 input channel) or RGB
(3 channels: CIFAR, image folders), padded to a square with its border colour, resized to the
model's input size (28x28 for Fashion-MNIST/MNIST, 32x32 for CIFAR, a folder's size option)
and scaled to [0, 1]. The training images of Fashion-MNIST/MNIST are light objects on a black
background; a photo is usually a dark object on a light background, so for those runs a
picture whose border is lighter than mid-grey is inverted (--invert auto; other runs are not
inverted unless --invert always).
"""


def add_parser(sub):
    p = sub.add_parser("predict", help="classify image files with a trained run",
                       description="Classify PNG/JPEG pictures with a trained run.",
                       epilog=EPILOG, formatter_class=Formatter)
    add_run_dir(p)
    p.add_argument("images", metavar="IMAGE", nargs="+",
                   help="PNG/JPEG files (X,Y points for a toy-set run, comma-separated feature "
                   "values for a CSV run)")
    p.add_argument("--top", type=positive_int, default=3, metavar="K",
                   help="show the K most probable classes (default 3)")
    add_checkpoint(p)
    p.add_argument("--invert", choices=("auto", "always", "never"), default="auto",
                   help="invert grey values (auto: dark-on-light pictures, for (Fashion-)MNIST)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--optimize", action="store_true",
                   help="run fv.optimize_for_inference's model (BN folded, activations fused)")
    return p


def _points(items, dataset, features=2, names=None):
    """X,Y arguments (or rows of ``features`` comma-separated numbers) as a float32
    (N, features) batch."""
    pts = []
    for item in items:
        try:
            pts.append([float(v) for v in item.split(",")])
        except ValueError:
            pts.append([])
        if len(pts[-1]) != features or not all(math.isfinite(v) for v in pts[-1]):
            if names is None and features == 2:
                raise UsageError(f"{item!r}: a run on {dataset} classifies points: give X,Y "
                                 "(e.g. 1.5,-2)")
            what = f" ({','.join(names)})" if names else ""
            raise UsageError(f"{item!r}: a run on {dataset} classifies rows of {features} "
                             f"numbers{what}: give them comma-separated (e.g. "
                             f"{','.join(['0.5'] * features)})")
    return xp.asarray(pts, dtype=xp.float32)


def forecast_command(run, args) -> int:
    """A forecasting run's predictions: each argument is a window of past values
    (comma-separated, in the series' units); prints the values ahead."""
    size = run.input_shape[0]
    rows = []
    for item in args.images:
        try:
            rows.append([float(v) for v in item.split(",")])
        except ValueError:
            rows.append([])
        if len(rows[-1]) != size or not all(math.isfinite(v) for v in rows[-1]):
            raise UsageError(f"{item if len(item) <= 40 else item[:37] + '...'!r}: a forecasting "
                             f"run on {run.dataset} takes windows of {size} past values: give them "
                             "comma-separated")
    values = run.forecast(xp.asarray(rows, dtype=xp.float64),
                          model=run.optimized_model() if args.optimize else None)
    results = [{"window": item, "forecast": [float(v) for v in row]}
               for item, row in zip(args.images, values)]
    if args.json:
        out(json.dumps(results, indent=1))
        return 0
    unit = (run.config.get("series") or {}).get("unit") or ""
    for r in results:
        shown = ", ".join(f"{v:.5g}" for v in r["forecast"])
        out(f"{r['window'] if len(r['window']) <= 40 else r['window'][:37] + '...'}: next "
            f"{len(r['forecast'])}: {shown}{' ' + unit if unit else ''}")
    return 0


def command(args) -> int:
    run = load_run(args.run_dir, checkpoint=args.checkpoint)
    if run.task.name == "forecast":
        return forecast_command(run, args)
    if run.is_language_model:
        raise RunError(f"{run.run_dir}: a language-model run classifies no inputs: generate "
                       f"text with foveanet sample {run.run_dir} --prompt TEXT", run.run_dir)
    model = run.optimized_model() if args.optimize else run.model
    classes = run.classes
    k = min(args.top, len(classes))
    inverted = [False] * len(args.images)
    if run.is_toy:
        batch = _points(args.images, run.dataset)
    elif run.takes_vectors:
        batch = _points(args.images, run.dataset, run.input_shape[0],
                        run.config.get("feature_names"))
    else:
        prepared = [run.prepare_image(p, args.invert) for p in args.images]
        inverted = [inv for _, inv in prepared]
        batch = xp.stack([x for x, _ in prepared])
    probs = run.probabilities(batch, model=model)
    results = []
    for item, p, inv in zip(args.images, probs, inverted):
        order = xp.argsort(-p, kind="stable")[:k]
        results.append({"image": item, "prediction": classes[int(order[0])],
                        "index": int(order[0]), "probability": float(p[order[0]]),
                        "inverted": inv,
                        "top": [{"class": classes[int(i)], "index": int(i),
                                 "probability": float(p[i])} for i in order]})
    if args.json:
        out(json.dumps(results, indent=1))
        return 0
    for r in results:
        note = "  (inverted: dark on light)" if r["inverted"] else ""
        out(f"{r['image']}: {r['prediction']} ({100 * r['probability']:.1f}%){note}")
        for rank, t in enumerate(r["top"], 1):
            out(f"  {rank}. {t['class']:<16} {100 * t['probability']:6.2f}%")
    return 0
