"""``foveanet visualize RUN_DIR [IMAGE]``: pictures of what a trained run's network does
(``foveanet.visual``): its kernels, the activations of one input, saliency and SmoothGrad maps,
Grad-CAM, activation maximisation; one PNG each and one self-contained HTML page listing them."""
from __future__ import annotations

import argparse
import os
import re

from ..backend import set_num_threads, xp
from ..data import DatasetError
from ..data.images import ImageError
from ..random import Generator
from ..train.run import RunError, load_run
from ..visual import (VisualError, activations, conv_layers, describe_layer, get_layer, gradcam,
                      maximize_grid, plot_activations, plot_gradcam, plot_kernels, plot_maximized,
                      plot_saliency, saliency, smoothgrad, write_page)
from .common import (Formatter, UsageError, add_checkpoint, add_run_dir, name_list, nonneg_int,
                     out, positive_int)

WHAT = ("kernels", "activations", "saliency", "gradcam", "maximize")
PAGE = "index.html"
DEFAULT_KERNEL_LAYERS = 4  # kernels of the first 4 convolutions unless --layers names others
MAX_CLASSES = 10           # activation maximisation of the first 10 classes
MAX_CHANNELS = 8           # ... and of the first 8 channels of the last --layers layer

EPILOG = """\
examples:
  foveanet visualize runs/cnn_bn-fashion-mnist-20250101-120000 -o vis
  foveanet visualize runs/cnn_bn-fashion-mnist-20250101-120000 shirt.png --what saliency,gradcam
  foveanet visualize runs/lenet5-run --what activations,gradcam --layers 3,4 --target 7
  foveanet visualize runs/lenet5-run --what maximize --layers 3 --steps 100

Writes into DIR (default RUN_DIR/visual) one PNG per picture and index.html, a page that embeds
them all (it can be moved alone). What --what draws:
  kernels      the weights of the convolutions (--layers: the convolutions among them; default
               the first 4)
  activations  the feature maps of the input at every convolution, pooling and activation layer
               (or at the --layers)
  saliency     |d score / d input| for the --target class (default: the predicted one), and
               SmoothGrad, its mean over --smoothgrad-samples noisy copies of the input
  gradcam      Grad-CAM at the last convolution (or at each of the --layers)
  maximize     inputs grown by gradient ascent to excite each class's score (the first 10), and
               the first 8 channels of the last of the --layers when given
The score is the class's logit. IMAGE is a picture (prepared as 'foveanet predict' prepares it)
or a .npy array of the run's input shape; without it, the first image of the run's test set.
The maps are of the model's input: after the run's normalisation, when it has one.
"""


def what_list(text):
    """``--what``: a comma-separated selection of WHAT."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in WHAT]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(WHAT)}, "
                                         f"got {text!r}")
    return list(dict.fromkeys(items))


def add_parser(sub):
    p = sub.add_parser("visualize", help="draw kernels, activations, saliency, Grad-CAM of a run",
                       description="Pictures of what a trained run's network does with one input: "
                       "its kernels, activations, saliency and SmoothGrad maps, Grad-CAM and "
                       "activation maximisation, gathered on one HTML page.",
                       epilog=EPILOG, formatter_class=Formatter)
    add_run_dir(p)
    p.add_argument("image", metavar="IMAGE", nargs="?", default=None,
                   help="a PNG/JPEG picture or a .npy array (default: the first test image)")
    p.add_argument("--what", type=what_list, default=list(WHAT), metavar="LIST",
                   help=f"what to draw, comma-separated: {','.join(WHAT)} (default: all)")
    p.add_argument("--layers", type=name_list, default=None, metavar="NAMES",
                   help="comma-separated layer names (as 'foveanet summary' lists them: 0, 3, "
                   "features.0, ...)")
    p.add_argument("--target", default=None, metavar="CLASS",
                   help="the class of saliency and Grad-CAM: an index or a class name (default: "
                   "the predicted class)")
    p.add_argument("-o", "--out", default=None, metavar="DIR",
                   help="the folder to write into (default: RUN_DIR/visual)")
    p.add_argument("--steps", type=nonneg_int, default=200, metavar="N",
                   help="gradient-ascent steps of activation maximisation (default 200)")
    p.add_argument("--smoothgrad-samples", type=positive_int, default=25, metavar="N",
                   help="noisy copies SmoothGrad averages (default 25)")
    p.add_argument("--seed", type=nonneg_int, default=0, metavar="S",
                   help="seed of SmoothGrad's noise and maximisation's start (default 0)")
    add_checkpoint(p)
    p.add_argument("--invert", choices=("auto", "always", "never"), default="auto",
                   help="invert grey values of IMAGE (auto: dark-on-light pictures, for "
                   "(Fashion-)MNIST)")
    return p


# ------------------------------------------------------------------------------ the input
def _load_array(path, shape):
    try:
        arr = xp.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file", path) from None
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot read the array ({exc})", path) from None
    if arr.ndim == 2 and len(shape) == 3 and shape[0] == 1:
        arr = arr[None]
    if tuple(arr.shape) != tuple(shape):
        c = shape[0]
        got = arr.shape[0] if arr.ndim == 3 else None
        what = (f"{got} channel{'s' * (got != 1)}, the run takes {c}" if got is not None
                and got != c else f"the run takes {tuple(shape)}")
        raise ImageError(f"{path}: an array of shape {tuple(arr.shape)}: {what} "
                         f"(C, H, W = {', '.join(map(str, shape))})", path)
    if not xp.issubdtype(arr.dtype, xp.number) or not bool(xp.isfinite(arr).all()):
        raise ImageError(f"{path}: the array must hold finite numbers (dtype {arr.dtype})", path)
    return arr.astype(xp.float32)


def load_input(run, image, invert="auto"):
    """``(x, description)``: the picture ``image`` as the run's input (C, H, W) in [0, 1], or
    the first image of the run's test set when ``image`` is None."""
    if image is not None:
        if os.fspath(image).lower().endswith(".npy"):
            return _load_array(image, run.input_shape), os.path.basename(image)
        x, inverted = run.prepare_image(image, invert)
        return x, os.path.basename(image) + (" (inverted: dark on light)" if inverted else "")
    try:
        test = run.test_set()
        if len(test) == 0:
            raise DatasetError("the test set is empty")
        x, label = test[0]
    except (DatasetError, OSError) as exc:
        raise RunError(f"{run.run_dir}: no IMAGE given and the run's test set cannot be read "
                       f"({exc}); give a picture: foveanet visualize {run.run_dir} IMAGE",
                       run.run_dir) from None
    arr = xp.asarray(getattr(x, "data", x), dtype=xp.float32)
    label = int(getattr(label, "item", lambda: label)())
    name = run.classes[label] if 0 <= label < len(run.classes) else str(label)
    return arr, f"the first test image (class {name})"


def parse_target(text, classes):
    """``--target``: a class index or name, as an index."""
    if text is None:
        return None
    if text.strip().lstrip("-").isdigit():
        i = int(text)
        if not 0 <= i < len(classes):
            raise UsageError(f"--target {text}: the run has {len(classes)} classes (0..."
                             f"{len(classes) - 1})")
        return i
    if text in classes:
        return classes.index(text)
    shown = ", ".join(f"{i}: {c}" for i, c in enumerate(classes[:20]))
    raise UsageError(f"--target {text!r}: not a class of the run; its classes: {shown}"
                     f"{', ...' if len(classes) > 20 else ''}")


def _safe(name) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "layer"


# -------------------------------------------------------------------------------- command
def command(args) -> int:
    run = load_run(args.run_dir, checkpoint=args.checkpoint)
    name = run.config["model"]
    if run.is_language_model:
        raise RunError(f"{run.run_dir}: a language-model run ({name} on {run.dataset}) reads "
                       "characters, not pictures: nothing to visualize", run.run_dir)
    if run.task.name == "forecast" or run.takes_vectors:
        raise RunError(f"{run.run_dir}: a run on {run.dataset} takes vectors of "
                       f"{run.input_shape[0]} numbers, not pictures: foveanet visualize draws "
                       "image models", run.run_dir)
    model = run.model
    convs = conv_layers(model)
    needs = [w for w in args.what if w in ("kernels", "gradcam")]
    if needs and not convs:
        raise UsageError(f"--what {','.join(needs)}: the model {name} of {run.run_dir} has no "
                         "convolution layer; choose from activations, saliency, maximize")
    layers = args.layers
    if layers:
        for layer in layers:
            try:
                get_layer(model, layer)
            except VisualError as exc:
                raise UsageError(f"--layers: {exc}") from None
    target = parse_target(args.target, run.classes)
    set_num_threads(int(run.config.get("threads") or 1))
    x, described = load_input(run, args.image, args.invert)
    tf = run.transform
    model_x = xp.asarray(tf(x[None].copy(), None))[0] if tf is not None else x
    out_dir = args.out or os.path.join(run.run_dir, "visual")
    os.makedirs(out_dir, exist_ok=True)
    items = []

    def wrote(path, caption):
        items.append((path, caption))
        out(f"wrote {path}")

    try:
        probs = run.probabilities(x[None])[0]
        pred = int(xp.argmax(probs))
        cls = target if target is not None else pred
        about = (f"input: {described}; predicted {run.classes[pred]} ({100 * probs[pred]:.1f}%)"
                 + (f"; target class {run.classes[cls]}" if target is not None else ""))
        if "kernels" in args.what:
            chosen = [n for n, _ in convs if n in layers] if layers else \
                [n for n, _ in convs[:DEFAULT_KERNEL_LAYERS]]
            if not chosen:
                raise UsageError(f"--what kernels: none of --layers {','.join(layers)} is a "
                                 f"convolution; those of {name}: {', '.join(n for n, _ in convs)}")
            for layer in chosen:
                w = get_layer(model, layer).weight
                path = os.path.join(out_dir, f"kernels_{_safe(layer)}.png")
                wrote(plot_kernels(model, layer, path),
                      f"Kernels of layer {layer} ({describe_layer(get_layer(model, layer))}), "
                      f"weight {tuple(w.shape)}.")
        if "activations" in args.what:
            acts = activations(model, model_x, layers)
            wrote(plot_activations(acts, os.path.join(out_dir, "activations.png"), model=model),
                  f"Feature maps of {described} at {len(acts)} layer"
                  f"{'s' * (len(acts) != 1)}: {', '.join(acts)}.")
        if "saliency" in args.what:
            sal = saliency(model, model_x, cls)
            smooth = smoothgrad(model, model_x, cls, n=args.smoothgrad_samples,
                                generator=Generator(args.seed))
            wrote(plot_saliency(x, sal.map, os.path.join(out_dir, "saliency.png"), smooth.map,
                                title=f"class {run.classes[cls]}"),
                  f"Saliency |d score / d input| (max over channels) of class {run.classes[cls]} "
                  f"and SmoothGrad (mean over {args.smoothgrad_samples} copies with noise of 15% "
                  f"of the input's range); {about}.")
        if "gradcam" in args.what:
            for layer in (layers or [convs[-1][0]]):
                cam = gradcam(model, model_x, layer, cls)
                wrote(plot_gradcam(x, cam, os.path.join(out_dir, f"gradcam_{_safe(layer)}.png"),
                                   layer, title=f"class {run.classes[cls]}"),
                      f"Grad-CAM of class {run.classes[cls]} at layer {layer} "
                      f"({describe_layer(get_layer(model, layer))}), upsampled bilinearly to the "
                      f"input; {about}.")
        if "maximize" in args.what:
            clip = (0.0, 1.0) if tf is None else None  # inputs in [0, 1] unless normalised
            options = dict(steps=args.steps, input_shape=run.input_shape, clip=clip,
                           generator=Generator(args.seed))
            k = min(MAX_CLASSES, len(run.classes))
            images = maximize_grid(model, classes=range(k), **options)
            wrote(plot_maximized(images, os.path.join(out_dir, "maximize_classes.png"),
                                 titles=[run.classes[i] for i in range(k)],
                                 title="inputs maximising each class score"),
                  f"Activation maximisation of the scores of the first {k} classes "
                  f"({args.steps} steps of regularised gradient ascent from low noise).")
            if layers:
                layer = layers[-1]
                probe = activations(model, model_x, [layer])[layer]
                channels = range(min(MAX_CHANNELS, probe.shape[0]))
                images = maximize_grid(model, layer, channels=channels, **options)
                wrote(plot_maximized(images, os.path.join(out_dir, f"maximize_{_safe(layer)}.png"),
                                     titles=[f"channel {c}" for c in channels],
                                     title=f"inputs maximising channels of layer {layer}"),
                      f"Activation maximisation of the first {len(channels)} channels of layer "
                      f"{layer} ({describe_layer(get_layer(model, layer))}).")
    except VisualError as exc:
        raise UsageError(str(exc)) from None
    page = write_page(os.path.join(out_dir, PAGE), items,
                      title=f"{name} on {run.dataset}: what the network sees",
                      intro=f"Run {run.run_dir}, weights {run.weights} (epoch {run.epoch}); "
                      f"{about}.")
    out(f"wrote {page}")
    return 0
