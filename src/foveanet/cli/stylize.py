"""``foveanet stylize CONTENT STYLE -o OUT.png``: Gatys et al.'s neural style transfer
(``foveanet.visual.style.stylize``): the picture CONTENT repainted in the style of STYLE by
optimising its pixels with L-BFGS (or Adam) against a feature network's content and style losses.
The network is, by default, the random multi-scale CNN ``style_features`` (no download), or an
ONNX file (``--features vgg19.onnx``: an ImageNet VGG-19 of the ONNX model zoo, which the user
downloads), or a registered model with random weights (``--features vgg19``)."""
from __future__ import annotations

import os

from ..backend import set_num_threads
from ..models import create, list_models, lookup, model_options
from ..random import Generator, manual_seed
from ..train.run import RunError
from ..visual import VisualError
from ..visual.style import (DEFAULT_TV_WEIGHT, INITS, NORMALIZATIONS, OPTIMIZERS,
                            feature_network, load_picture, save_image, side_by_side, stylize)
from .common import (Formatter, UsageError, name_list, nonneg_float, nonneg_int, out,
                     positive_float, positive_int)

RANDOM = "random"
PROGRESS_LINES = 10  # about this many progress lines per run

EPILOG = f"""\
examples:
  foveanet stylize photo.jpg painting.jpg -o out.png
  foveanet stylize photo.jpg painting.jpg -o out.png --size 128 --steps 50 --side-by-side all.png
  foveanet stylize photo.jpg painting.jpg -o out.png --features vgg19-7.onnx \\
                   --content-layer vgg0_relu9_fwd --style-weight 1e5
  foveanet stylize photo.jpg painting.jpg -o out.png --optimizer adam --steps 500 --lr 0.02

Both pictures are read as RGB, padded to a square with their border colour and resized to
--size x --size. The image starts as CONTENT (--init noise: uniform noise) and minimises
  content_weight * MSE of the --content-layer's feature maps (against CONTENT's)
  + style_weight * sum over the --style-layers of MSE(Gram(x), Gram(STYLE)), Gram = F F^T / (C H W)
  + tv_weight * squared total variation / pixel values
with L-BFGS (strong-Wolfe line search; at most --steps iterations and 1.25 x --steps
evaluations) or --steps Adam steps. --features: '{RANDOM}' (the default: the random multi-scale
CNN 'style_features', seeded by --seed, no download), an ONNX file (its layers are the names of
the graph's node outputs or nodes; the graph is cut after the last layer used), or a registered
model name (random weights from --seed). Without --content-layer / --style-layers the network's
defaults are used (Gatys et al.'s relu4_2 and relu1_1 ... relu5_1 for a VGG); the command prints
them. The pictures enter the network normalised with ImageNet's mean and std (--normalize none:
as they are)."""


def add_parser(sub):
    p = sub.add_parser("stylize", help="paint a picture in the style of another (Gatys et al.)",
                       description="Neural style transfer (Gatys et al. 2015): the content of "
                       "one picture in the style of another, by optimising the pixels against a "
                       "feature network's content and style losses.",
                       epilog=EPILOG, formatter_class=Formatter)
    p.add_argument("content", metavar="CONTENT", help="the picture whose content is kept")
    p.add_argument("style", metavar="STYLE", help="the picture whose style is taken")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png",
                   help="the PNG to write")
    p.add_argument("--features", default=RANDOM, metavar="NET",
                   help=f"the feature network: {RANDOM} (default), FILE.onnx or a model name")
    p.add_argument("--content-layer", default=None, metavar="NAME",
                   help="the layer of the content loss (default: the network's)")
    p.add_argument("--style-layers", type=name_list, default=None, metavar="A,B,...",
                   help="the layers of the style loss (default: the network's)")
    p.add_argument("--size", type=positive_int, default=256, metavar="N",
                   help="the pictures' side in pixels (default 256)")
    p.add_argument("--steps", type=nonneg_int, default=300, metavar="N",
                   help="L-BFGS iterations or Adam steps (default 300)")
    p.add_argument("--style-weight", type=nonneg_float, default=1e6, metavar="W",
                   help="weight of the style loss (default 1e6)")
    p.add_argument("--content-weight", type=nonneg_float, default=1.0, metavar="W",
                   help="weight of the content loss (default 1)")
    p.add_argument("--tv-weight", type=nonneg_float, default=DEFAULT_TV_WEIGHT, metavar="W",
                   help=f"weight of the total variation (default {DEFAULT_TV_WEIGHT:g})")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="lbfgs",
                   help="lbfgs (default) or adam")
    p.add_argument("--lr", type=positive_float, default=None, metavar="LR",
                   help="learning rate (default: 1 for L-BFGS, 0.02 for Adam)")
    p.add_argument("--init", choices=INITS, default="content",
                   help="start from the content picture (default) or from noise")
    p.add_argument("--normalize", choices=tuple(NORMALIZATIONS), default="imagenet",
                   help="how the network sees the pictures (default imagenet: mean/std)")
    p.add_argument("--seed", type=nonneg_int, default=0, metavar="S",
                   help="seed of the random network and of --init noise (default 0)")
    p.add_argument("--side-by-side", default=None, metavar="FILE.png",
                   help="also write content | style | result as one PNG")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="threads to compute with (default: as configured)")
    return p


def _png(option, path):
    if not path.lower().endswith(".png"):
        raise UsageError(f"{option} {path}: the picture is written as PNG (name it .png)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise RunError(f"{option} {path}: no directory {folder}")


def build_features(spec, seed, normalize):
    """The feature network of ``--features``."""
    if spec == RANDOM:
        return feature_network(create("style_features", seed=seed), normalize)
    is_file = spec.lower().endswith(".onnx") or os.sep in spec or os.path.exists(spec)
    if not is_file:
        try:
            lookup(spec)
        except ValueError:
            raise UsageError(f"--features {spec!r}: not an ONNX file, '{RANDOM}' or a model name "
                             f"(models: {', '.join(list_models())})") from None
        manual_seed(seed)
        options = model_options(spec)
        kwargs = {k: v for k, v in (("seed", seed), ("in_channels", 3)) if k in options}
        try:
            model = create(spec, **kwargs)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--features {spec}: {exc}") from None
        name = None if "seed" in kwargs else f"{spec} (random weights, seed {seed})"
        return feature_network(model, normalize, name=name)
    return feature_network(spec, normalize)


def command(args) -> int:
    _png("-o", args.output)
    if args.side_by_side:
        _png("--side-by-side", args.side_by_side)
    if args.threads:
        set_num_threads(args.threads)
    content = load_picture(args.content, args.size)
    style = load_picture(args.style, args.size)
    net = build_features(args.features, args.seed, args.normalize)
    if net.default_content_layer is None and args.content_layer is None or \
            not net.default_style_layers and not args.style_layers:
        raise UsageError(f"--features {args.features}: {net.description} has no default layers "
                         "(no ReLU layers): give --content-layer and --style-layers")
    cl = _layer(net, "--content-layer", args.content_layer, net.default_content_layer)
    sl = [_layer(net, "--style-layers", s if args.style_layers else None, s)
          for s in (args.style_layers or net.default_style_layers)]
    out(f"feature network: {net.description}")
    out(f"content layer: {net.describe(cl)}")
    out(f"style layers: {', '.join(net.describe(s) for s in sl)}")
    out(f"input normalisation: {net.normalization}")
    total_evals = max(1, args.steps * 5 // 4 if args.optimizer == "lbfgs" else args.steps)
    every = max(1, total_evals // PROGRESS_LINES)

    def progress(k, losses, image):
        if k % every == 0:
            out(f"evaluation {k}: loss {losses['total']:.4g} (content {losses['content']:.4g}, "
                f"style {losses['style']:.4g}, tv {losses['tv']:.4g})")
    try:
        image, info = stylize(content, style, features=net, size=args.size, steps=args.steps,
                              style_weight=args.style_weight, content_weight=args.content_weight,
                              tv_weight=args.tv_weight, optimizer=args.optimizer, lr=args.lr,
                              init=args.init, generator=Generator(args.seed), callback=progress,
                              content_layer=cl, style_layers=sl)
    except VisualError as exc:
        raise UsageError(str(exc)) from None
    save_image(image, args.output)
    first, last = info["initial"]["total"], info["final"]["total"]
    out(f"wrote {args.output} ({image.shape[2]}x{image.shape[1]}): {info['optimizer']}, "
        f"{info['iterations']} iterations, {info['evaluations']} evaluations in "
        f"{info['seconds']:.1f} s; loss {first:.4g} -> {last:.4g}")
    if args.side_by_side:
        save_image(side_by_side(content, style, image), args.side_by_side)
        out(f"wrote {args.side_by_side} (content | style | result)")
    return 0


def _layer(net, option, given, default):
    """A layer name checked against the network: a usage error listing its layers if unknown."""
    try:
        return net.check(given if given is not None else default)
    except VisualError as exc:
        where = f"{option} {given}" if given is not None else f"the default layer {default!r}"
        raise UsageError(f"{where}: {exc}") from None
