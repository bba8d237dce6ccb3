"""``foveanet generate RUN_DIR -n 64 -o grid.png``: new images from a trained GAN or VAE run
(``foveanet train --task gan|vae``), as one PNG grid."""
from __future__ import annotations

import os

from ..backend import set_num_threads, xp
from ..random import Generator
from ..train.generative import generate, save_image_grid
from ..train.run import RunError
from .common import Formatter, UsageError, add_checkpoint, add_run_dir, nonneg_int, out, positive_int
from .train_images import load_image_run

EPILOG = """\
examples:
  foveanet generate runs/gan-dcgan-fashion-mnist-20250101-120000 -n 64 -o grid.png
  foveanet generate runs/gan-dcgan-fashion-mnist-20250101-120000 --class 7 -o sneakers.png
  foveanet generate runs/vae-vae-fashion-mnist-20250101-120000 -n 100 --seed 3 -o vae.png

A GAN's generator maps noise z ~ N(0, I) drawn from --seed to images; a VAE decodes z ~ N(0, I)
and shows the decoder's mean (the Bernoulli probabilities). A class-conditional GAN takes
--class K (default: the classes in turn, one row each when -n is a multiple of 10). The grid
has --nrow images per row (default: about square)."""


def add_parser(sub):
    s = sub.add_parser("generate", help="generate images with a trained GAN or VAE run",
                       description="Generate images with a run of 'foveanet train --task gan' "
                       "or '--task vae'.", epilog=EPILOG, formatter_class=Formatter)
    add_run_dir(s)
    s.add_argument("-n", type=positive_int, default=64, metavar="N",
                   help="how many images (default 64)")
    s.add_argument("-o", "--output", required=True, metavar="FILE.png", help="the PNG to write")
    s.add_argument("--seed", type=nonneg_int, default=0, metavar="S",
                   help="seed of the noise (default 0)")
    s.add_argument("--class", type=nonneg_int, dest="label", default=None, metavar="K",
                   help="a conditional GAN: generate class K only")
    s.add_argument("--nrow", type=positive_int, default=None, metavar="N",
                   help="images per row of the grid")
    s.add_argument("--scale", type=positive_int, default=2, metavar="S",
                   help="each pixel as S x S (default 2)")
    add_checkpoint(s)
    return s


def command(args) -> int:
    if not args.output.lower().endswith(".png"):
        raise UsageError(f"-o {args.output}: the grid is written as PNG (name it .png)")
    cfg, models = load_image_run(args.run_dir, args.checkpoint, kinds=("gan", "vae"))
    set_num_threads(int(cfg.get("threads") or 1))
    kind = cfg["task"]["kind"]
    nrow = args.nrow
    if kind == "gan":
        G = models["generator"]
        k = getattr(G, "num_classes", 0)
        if args.label is not None and not k:
            raise UsageError(f"--class {args.label}: {args.run_dir} is an unconditional GAN")
        if args.label is not None and args.label >= k:
            raise UsageError(f"--class {args.label}: the generator knows classes 0..{k - 1}")
        labels = None
        if k:
            labels = (xp.full(args.n, args.label, dtype=xp.int64) if args.label is not None
                      else xp.arange(args.n) // max(1, args.n // k) % k)
            if args.label is None and nrow is None and args.n % k == 0:
                nrow = args.n // k
        images = generate(G, args.n, args.seed, labels)
    else:
        if args.label is not None:
            raise UsageError("--class applies to a class-conditional GAN, not a VAE")
        images = models["model"].sample(args.n, generator=Generator(args.seed)).numpy()
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):
        raise RunError(f"-o {args.output}: no directory {folder}")
    save_image_grid(images, args.output, nrow, scale=args.scale)
    out(f"wrote {args.output}: {args.n} images of {tuple(images.shape[1:])} from {kind} run "
        f"{args.run_dir} (seed {args.seed})")
    return 0
