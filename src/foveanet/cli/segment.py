"""``foveanet segment RUN_DIR image.png -o mask.png``: the per-pixel classes a trained
segmentation run (``foveanet train --task segment``) gives a picture."""
from __future__ import annotations

import io
import os

from ..autograd import Tensor, no_grad
from ..backend import set_num_threads, xp
from ..data.images import prepare_image
from ..train.io import atomic_write_bytes
from ..train.run import RunError
from .common import Formatter, UsageError, add_checkpoint, add_run_dir, out
from .train_images import load_image_run

EPILOG = """\
examples:
  foveanet segment runs/segment-segnet_small-fashion-scenes-20250101-120000 scene.png -o mask.png
  foveanet segment RUN_DIR scene.png -o mask.png --overlay overlay.png --invert never

The picture is read as the run's images are (grey or RGB, resized to the run's size; --invert
auto turns a dark object on a light background into the data's light-on-dark). mask.png is a
palette PNG whose pixel values are the class indices (0 = the first class, e.g. background),
coloured as in the run's report; --overlay writes the picture with the classes' colours laid
over it. The classes found and their pixel shares are printed."""


def add_parser(sub):
    s = sub.add_parser("segment", help="per-pixel classes of a picture with a segmentation run",
                       description="Segment a picture with a run of 'foveanet train --task "
                       "segment'.", epilog=EPILOG, formatter_class=Formatter)
    add_run_dir(s)
    s.add_argument("image", metavar="IMAGE", help="the picture to segment")
    s.add_argument("-o", "--output", required=True, metavar="MASK.png",
                   help="the mask to write (a palette PNG of class indices)")
    s.add_argument("--overlay", metavar="FILE.png", help="also write the picture with the mask")
    s.add_argument("--invert", choices=("auto", "always", "never"), default="never",
                   help="invert the picture's grey values (default never)")
    add_checkpoint(s)
    return s


def _palette_png(mask) -> bytes:
    from PIL import Image

    from ..report import SEG_COLOURS
    im = Image.fromarray(mask.astype(xp.uint8), mode="P")
    flat = [v for c in SEG_COLOURS for v in c]
    im.putpalette(flat + [0] * (768 - len(flat)))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _overlay_png(x, mask) -> bytes:
    from PIL import Image

    from ..report import mask_colours
    img = x[0] if x.shape[0] == 1 else x.mean(axis=0)
    grey = xp.repeat(img[:, :, None], 3, axis=2) * 255.0
    colours = mask_colours(mask).astype(xp.float32)
    blend = xp.where(mask[:, :, None] > 0, 0.45 * grey + 0.55 * colours, grey)
    buf = io.BytesIO()
    Image.fromarray(xp.clip(blend + 0.5, 0, 255).astype(xp.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def command(args) -> int:
    for opt, path in (("-o", args.output), ("--overlay", args.overlay)):
        if path is not None and not path.lower().endswith(".png"):
            raise UsageError(f"{opt} {path}: written as PNG (name it .png)")
        if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise RunError(f"{opt} {path}: no directory {os.path.dirname(os.path.abspath(path))}")
    cfg, models = load_image_run(args.run_dir, args.checkpoint, kinds=("segment",))
    set_num_threads(int(cfg.get("threads") or 1))
    c, h, w = cfg["input_shape"]
    if h != w:
        raise RunError(f"{args.run_dir}: the run's images are {h}x{w}; this command resizes "
                       "pictures to square sizes only", args.run_dir)
    x, _ = prepare_image(args.image, c, h, args.invert)
    model = models["model"]
    with no_grad():
        scores = model(Tensor(x[None])).numpy()[0]
    mask = scores.argmax(axis=0)
    atomic_write_bytes(args.output, _palette_png(mask))
    if args.overlay:
        atomic_write_bytes(args.overlay, _overlay_png(x, mask))
    classes = cfg.get("classes") or [f"class_{i}" for i in range(scores.shape[0])]
    counts = xp.bincount(mask.ravel(), minlength=len(classes))
    shares = ", ".join(f"{classes[i]} {counts[i] / mask.size:.1%}"
                       for i in xp.argsort(-counts) if counts[i])
    out(f"wrote {args.output}: {h}x{w} mask of {args.image}; classes: {shares}")
    if args.overlay:
        out(f"wrote {args.overlay}")
    return 0
