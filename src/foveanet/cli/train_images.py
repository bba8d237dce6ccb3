"""``foveanet train --task autoencode|denoise|segment|vae|gan``: networks whose output is an
image, trained in a run directory like every other run.

``foveanet train`` hands over to ``command`` here for these tasks (or ``--resume`` of such a
run). The configuration is ``foveanet.recipes.IMAGE_TASK_RECIPES[task]`` over
``IMAGE_TASK_COMMON``, with the options given laid over it:

==========  =====================  ==================================================================
task        model (default)        trained on / measured by
==========  =====================  ==================================================================
autoencode  conv_ae (dense_ae)     Fashion-MNIST, MSE; test MSE, PSNR, SSIM; reconstructions
denoise     conv_ae, unet ...      noisy -> clean (``--noise gaussian=0.3``, input only); PSNR and
                                   SSIM of the noisy input and of the output; triples
segment     segnet_small, unet     Fashion scenes (``data.scenes``) or ``--dataset DIR`` with
                                   ``DIR/images`` and ``DIR/masks``; per-pixel cross entropy
                                   (``--seg-loss ce|dice|ce+dice``); pixel accuracy, mean and
                                   per-class IoU; overlays
vae         vae                    the negative ELBO (nats per image); test ELBO; samples
gan         dcgan                  DCGAN's game (``train.generative.GANTrainer``); sample grids per
                                   epoch, latent interpolation, both losses; with
                                   ``--classifier RUN_DIR`` the Frechet distance in that
                                   classifier's features beside the real-vs-real and noise
                                   baselines, and (``--conditional``) its accuracy on samples
==========  =====================  ==================================================================

The run directory holds config.json, the checkpoints (a GAN's two models and optimizers by name),
history, results.json, report.md and the pictures. ``--resume`` continues a run (only
``--epochs`` may change); a killed and resumed run ends with the same weights, bit for bit.
"""
from __future__ import annotations

import copy
import os
import time

from ..autograd import Tensor
from ..backend import set_num_threads, xp
from ..recipes import IMAGE_TASK_COMMON, IMAGE_TASK_RECIPES
from ..train.generative import IMAGE_TASKS
from ..train.run import (CONFIG_FILE, ConfigError, RunError,
                         canonical_model, checkpoint_epoch, jsonable_options, load_run_config,
                         write_results)
from .common import (UsageError, fit_run, observers, open_run, out, parse_data_options,
                     parse_model_options, positive_int, record_command, version)

__all__ = ["add_arguments", "wanted", "resolve_image_config", "command", "MODELS"]

# the models each task trains (the first is the default), and the pair a GAN is made of
MODELS = {"autoencode": ("conv_ae", "dense_ae"), "denoise": ("conv_ae", "dense_ae", "unet"),
          "segment": ("segnet_small", "unet", "segnet"), "vae": ("vae",), "gan": ("dcgan",)}
GAN_PAIR = ("dcgan_generator", "dcgan_discriminator")
# this group's options: the configuration key and the tasks that take it
FLAGS = {"noise": ("--noise", ("denoise",)), "bottleneck": ("--bottleneck", ("autoencode", "denoise")),
         "latent": ("--latent", ("vae", "gan")), "conditional": ("--conditional", ("gan",)),
         "classifier": ("--classifier", ("gan", "vae")), "seg_loss": ("--seg-loss", ("segment",)),
         "class_weights": ("--class-weights", ("segment",))}
MODEL_FLAGS = {"bottleneck": "bottleneck", "latent": "latent"}
ENVIRONMENT = ("no_progress", "resume", "out", "data_dir", "download", "tensorboard",
               "save_kernels")
NOT_FOR_IMAGES = {"augment": "the image tasks take no augmentation (a denoiser's noise: --noise)",
                  "from_": "transfer learning applies to classifiers",
                  "freeze": "transfer learning applies to classifiers",
                  "num_classes": "the classes are the data set's",
                  "window": "--window applies to forecasting", "horizon": "--horizon applies "
                  "to forecasting", "dropout": "set a model's dropout with --model-option",
                  "l1": "not for these tasks", "l2": "use --weight-decay",
                  "text": "--text applies to language models", "bptt": "--bptt applies to "
                  "language models"}
CONFIG_KEYS = ["task", "model", "model_options", "dataset", "noise", "seg_loss", "class_weights",
               "conditional", "classifier", "limit_train", "limit_test", "val_split", "epochs",
               "batch_size", "optimizer", "lr", "weight_decay", "scheduler", "seed", "threads"]
SEG_LOSSES = ("ce", "dice", "ce+dice")

DESCRIPTION = """\
Networks that output an image: --task autoencode (an autoencoder, --bottleneck N), denoise
(noisy -> clean, --noise gaussian=0.3|saltpepper=0.1|masking=0.25), segment (a per-pixel
classifier: SegNet or U-Net on Fashion scenes, or --dataset DIR holding images/ and masks/),
vae (a variational autoencoder, --latent N) and gan (DCGAN, --conditional for a class-
conditional pair; --classifier RUN_DIR measures the samples in that classifier's features).
Defaults: foveanet.recipes.IMAGE_TASK_RECIPES."""


def add_arguments(parser) -> None:
    g = parser.add_argument_group("image-output tasks", DESCRIPTION)
    g.add_argument("--noise", metavar="SPEC", help="denoise: the input's noise (default "
                   f"{IMAGE_TASK_RECIPES['denoise']['noise']})")
    g.add_argument("--bottleneck", type=positive_int, metavar="N",
                   help="autoencode/denoise: the code's size (--model-option bottleneck=N)")
    g.add_argument("--latent", type=positive_int, metavar="N",
                   help="vae/gan: the latent size (--model-option latent=N)")
    g.add_argument("--conditional", action="store_true",
                   help="gan: a class-conditional generator and discriminator")
    g.add_argument("--classifier", metavar="RUN_DIR",
                   help="gan/vae: a Fashion-MNIST classifier's run whose features measure the "
                   "samples (Frechet distance) and which recognises conditional samples")
    g.add_argument("--seg-loss", choices=SEG_LOSSES, dest="seg_loss",
                   help="segment: per-pixel cross entropy (default), Dice, or their sum")
    g.add_argument("--class-weights", choices=("none", "balanced"), dest="class_weights",
                   help="segment: weight the cross entropy's classes by inverse pixel frequency "
                   "(balanced) or not (default)")


def wanted(given: dict) -> bool:
    """Whether the options of ``foveanet train`` make it an image-output run. UsageError for
    this group's options with another task."""
    if given.get("resume") is not None:
        try:
            cfg = load_run_config(given["resume"], need_checkpoint=False)
        except RunError:
            return False
        return (cfg.get("task") or {}).get("kind") in IMAGE_TASKS
    task = given.get("task")
    mine = [FLAGS[k][0] for k in FLAGS if k in given]
    if task not in IMAGE_TASKS:
        if mine:
            raise UsageError(f"{mine[0]} applies to the image-output tasks (--task "
                             f"{'|'.join(IMAGE_TASKS)})")
        return False
    return True


# --------------------------------------------------------------------------- configuration
def resolve_image_config(given: dict) -> dict:
    """The configuration of a new run of ``given['task']``."""
    task = given["task"]
    for key, why in NOT_FOR_IMAGES.items():
        if key in given:
            raise UsageError(f"--{key.strip('_').replace('_', '-')} does not apply to --task "
                             f"{task}: {why}")
    for key, (flag, tasks) in FLAGS.items():
        if key in given and task not in tasks:
            raise UsageError(f"{flag} applies to --task {' or '.join(tasks)}, not {task}")
    cfg = copy.deepcopy(IMAGE_TASK_COMMON)
    cfg.update(copy.deepcopy(IMAGE_TASK_RECIPES[task]))
    for k in list(cfg):
        if k in given and k not in ("model_options", "data_options"):
            cfg[k] = given[k]
    if "data_option" in given:
        if task != "segment" or cfg["dataset"] != "fashion-scenes":
            raise UsageError("--data-option applies to --task segment on fashion-scenes (size, "
                             "objects, threshold)")
        cfg["data_options"] = parse_data_options(given["data_option"])
    cfg["task"] = {"kind": task}
    model = cfg["model"]
    try:
        model = "dcgan" if model == "dcgan" else canonical_model(model)
    except ConfigError as exc:
        raise UsageError(f"--model {model}: {exc}") from None
    if model not in MODELS[task]:
        raise UsageError(f"--model {model} does not do --task {task}: choose one of "
                         f"{', '.join(MODELS[task])}")
    if model != cfg["model"] or "model" in given:
        cfg["model_options"] = {}
        if model in ("conv_ae", "dense_ae") and "bottleneck" in IMAGE_TASK_RECIPES[task].get(
                "model_options", {}):
            cfg["model_options"]["bottleneck"] = IMAGE_TASK_RECIPES[task]["model_options"][
                "bottleneck"]
    cfg["model"] = model
    options = dict(cfg["model_options"])
    options.update(parse_model_options(given.get("model_option")))
    for flag, key in MODEL_FLAGS.items():
        if flag in given:
            options[key] = given[flag]
    cfg["model_options"] = options
    _check_model_options(cfg)
    if task == "denoise":
        from ..data.transforms import parse_noise
        try:
            parse_noise(cfg["noise"])
        except ValueError as exc:
            raise UsageError(f"--noise {cfg['noise']}: {exc}") from None
    if task == "gan":
        cfg["conditional"] = bool(cfg.get("conditional"))
        cfg["val_split"] = 0.0
    if cfg.get("classifier"):
        path = cfg["classifier"]
        if not os.path.isfile(os.path.join(path, CONFIG_FILE)):
            raise UsageError(f"--classifier {path}: not a run directory (no {CONFIG_FILE})")
        cfg["classifier"] = os.path.abspath(path)
    if task == "segment" and cfg["dataset"] != "fashion-scenes":
        cfg["dataset"] = os.path.abspath(cfg["dataset"])
        for sub in ("images", "masks"):
            if not os.path.isdir(os.path.join(cfg["dataset"], sub)):
                raise UsageError(f"--dataset {given.get('dataset')}: segmentation data is "
                                 f"fashion-scenes or a directory holding images/ and masks/ "
                                 f"(no {sub}/ there)")
    elif task != "segment" and cfg["dataset"] not in ("fashion-mnist", "mnist"):
        raise UsageError(f"--dataset {cfg['dataset']}: --task {task} trains on fashion-mnist "
                         "(or mnist)")
    if cfg["scheduler"] not in ("none", "cosine", "step"):
        raise UsageError(f"--scheduler {cfg['scheduler']}: the image-output tasks take none, "
                         "cosine or step")
    return cfg


def _constructors(cfg):
    """{role: (registered name, keyword arguments)} of the run's model(s)."""
    from ..models import model_options
    opts = dict(cfg["model_options"])
    shape = cfg.get("input_shape") or [1, 28, 28]
    task = cfg["task"]["kind"]
    if cfg["model"] == "dcgan":
        k = 10 if cfg.get("conditional") else 0
        common = {"image_size": shape[1], "width": opts.get("width", 64), "num_classes": k}
        return {"generator": (GAN_PAIR[0], dict(common, latent=opts.get("latent", 100),
                                                out_channels=shape[0])),
                "discriminator": (GAN_PAIR[1], dict(common, in_channels=shape[0]))}
    name = cfg["model"]
    params = model_options(name)
    kwargs = {}
    if "in_channels" in params:
        kwargs["in_channels"] = shape[0]
    if "image_size" in params:
        kwargs["image_size"] = shape[1]
    if task == "segment":
        kwargs["num_classes"] = cfg.get("num_classes") or 11
    elif "num_classes" in params:  # a U-Net as a denoiser: one output channel per input channel
        kwargs["num_classes"] = shape[0]
    kwargs.update(opts)
    return {"model": (name, kwargs)}


def _check_model_options(cfg) -> None:
    from ..models import model_options
    allowed = {"dcgan": ("latent", "width")}.get(cfg["model"])
    for key in cfg["model_options"]:
        if allowed is not None:
            ok = key in allowed
        else:
            ok = key in model_options(cfg["model"])
        if not ok:
            avail = allowed or [k for k in model_options(cfg["model"])
                                if k not in ("in_channels", "image_size", "num_classes")]
            raise UsageError(f"--model-option {key}: model {cfg['model']} has no option {key!r}; "
                             f"its options: {', '.join(avail)}")
    cfg["model_options"] = jsonable_options(cfg["model_options"])


def build_models(cfg) -> dict:
    """{role: Module} of the configuration, initialised from its seed."""
    from ..models import create
    from ..random import manual_seed
    manual_seed(int(cfg["seed"]))
    built = {}
    for role, (name, kwargs) in _constructors(cfg).items():
        try:
            built[role] = create(name, **kwargs)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"cannot build {name} with {kwargs}: {exc}") from None
    return built


def check_resume(cfg, given, completed) -> None:
    if "out" in given:
        raise UsageError("--out cannot be combined with --resume: the run continues in its own "
                         "directory")
    for key, value in given.items():
        if key in ENVIRONMENT or key == "epochs":
            continue
        have = cfg["task"]["kind"] if key == "task" else cfg.get(key)
        if key == "model_option":
            have = None
        if value != have:
            raise UsageError(f"--{key.replace('_', '-')} {value} contradicts the run's "
                             f"config.json ({key} = {have}); a resumed run keeps its "
                             "configuration (only --epochs may change)")
    if "epochs" in given:
        if given["epochs"] < completed:
            raise UsageError(f"--epochs {given['epochs']}: the run has already completed "
                             f"{completed} epochs")
        cfg["epochs"] = given["epochs"]


def default_run_dir(cfg) -> str:
    label = cfg["dataset"] if cfg["dataset"] in ("fashion-mnist", "mnist", "fashion-scenes") \
        else os.path.basename(cfg["dataset"].rstrip("/"))
    base = os.path.join("runs", f"{cfg['task']['kind']}-{cfg['model']}-{label}-"
                        f"{time.strftime('%Y%m%d-%H%M%S')}")
    path, i = base, 2
    while os.path.exists(path):
        path, i = f"{base}-{i}", i + 1
    return path


# -------------------------------------------------------------------------------- the data
def load_data(cfg, data_dir=None, download=False):
    """(train, validation or None, test) datasets of the run."""
    from ..data import ReconstructionPairs
    from ..train.run import load_test, load_train_val
    task = cfg["task"]["kind"]
    if task == "segment":
        return _segmentation_data(cfg, data_dir, download)
    base = dict(cfg, stratify=True, augment="none")
    train, val = load_train_val(base, data_dir, download)
    test = load_test(base, data_dir, download)
    if task in ("autoencode", "denoise"):
        train, test = ReconstructionPairs(train), ReconstructionPairs(test)
        val = None if val is None else ReconstructionPairs(val)
    return train, val, test


def _segmentation_data(cfg, data_dir, download):
    from ..data import SegmentationFolder
    from ..data.splits import train_val_split
    from ..random import Generator
    if cfg["dataset"] == "fashion-scenes":
        from ..data import open_dataset
        opts = dict(cfg.get("data_options") or {})  # strings from --data-option, converted there
        opts.setdefault("seed", int(cfg["seed"]))

        def make(split, n):
            extra = {} if n is None else {"count": n}
            try:
                return open_dataset("fashion-scenes", root=data_dir, download=download,
                                    split=split, **extra, **opts)
            except ValueError as exc:
                raise UsageError(f"--data-option: {exc}") from None
        return (make("train", cfg["limit_train"]), make("val", None if not cfg["limit_train"]
                                                        else max(1, cfg["limit_train"] // 10)),
                make("test", cfg["limit_test"]))
    full = SegmentationFolder(os.path.join(cfg["dataset"], "images"),
                              os.path.join(cfg["dataset"], "masks"))
    gen = Generator(int(cfg["seed"]) + 21)
    rest, test = train_val_split(full, 0.2, stratify=False, generator=gen)
    if not cfg["val_split"]:
        return rest, None, test
    train, val = train_val_split(rest, float(cfg["val_split"]), stratify=False, generator=gen)
    return train, val, test


def _loaders(cfg, train, val, test):
    from ..data import DataLoader
    from ..random import Generator
    noise = None
    if cfg["task"]["kind"] == "denoise":
        from ..data.transforms import parse_noise
        noise = parse_noise(cfg["noise"])
    seed = int(cfg["seed"])
    b = int(cfg["batch_size"])
    train_loader = DataLoader(train, batch_size=b, shuffle=True, drop_last=len(train) > b,
                              generator=Generator(seed + 14), transform=noise)
    val_loader = None if val is None else DataLoader(val, batch_size=250, shuffle=False,
                                                     generator=Generator(seed + 15),
                                                     transform=noise)
    test_loader = DataLoader(test, batch_size=250, shuffle=False, generator=Generator(seed + 16),
                             transform=noise)
    return train_loader, val_loader, test_loader


# ------------------------------------------------------------------------------ the trainer
def _optimizer(params, cfg):
    from ..optim import Adam, create as create_optimizer
    if cfg["task"]["kind"] == "gan":
        return Adam(params, lr=cfg["lr"], betas=tuple(cfg.get("betas") or (0.5, 0.999)),
                    weight_decay=cfg["weight_decay"])
    options = {"weight_decay": cfg["weight_decay"]}
    if cfg["optimizer"] in ("sgd", "momentum", "rmsprop"):
        options["momentum"] = cfg.get("momentum") or (0.9 if cfg["optimizer"] == "momentum"
                                                      else 0.0)
    return create_optimizer(cfg["optimizer"], params, lr=cfg["lr"], **options)


def _scheduler(opt, cfg):
    from ..optim.lr_scheduler import CosineAnnealingLR, StepLR
    e = int(cfg.get("schedule_epochs") or cfg["epochs"])
    if cfg["scheduler"] == "cosine":
        return CosineAnnealingLR(opt, T_max=e)
    if cfg["scheduler"] == "step":
        return StepLR(opt, step_size=max(1, e // 3), gamma=0.1)
    return None


def _task(cfg, train):
    from ..train import tasks
    from ..train.generative import VAETask
    kind = cfg["task"]["kind"]
    if kind == "autoencode":
        return tasks.Reconstruction(target="input")
    if kind == "denoise":
        return tasks.Reconstruction(target="target")
    if kind == "vae":
        return VAETask()
    if kind == "segment":
        weight = None
        if cfg.get("class_weights") == "balanced":
            freq = xp.asarray(_class_frequencies(train), dtype=xp.float64)
            w = xp.where(freq > 0, 1.0 / xp.maximum(freq, 1e-12), 0.0)
            weight = (w / w[freq > 0].mean()).tolist()
        return tasks.Segmentation(weight=weight, loss=cfg.get("seg_loss") or "ce")
    return None


def _class_frequencies(dataset):
    inner = dataset
    while not hasattr(inner, "class_frequencies") and hasattr(inner, "dataset"):
        inner = inner.dataset
    if hasattr(inner, "class_frequencies"):
        return inner.class_frequencies()
    counts = None
    for i in range(len(dataset)):
        mask = dataset[i][1]
        m = xp.asarray(mask.numpy() if isinstance(mask, Tensor) else mask).ravel()
        c = xp.bincount(m[m >= 0], minlength=256)
        counts = c if counts is None else counts + c
    n = int(xp.flatnonzero(counts).max()) + 1
    return (counts[:n] / counts.sum()).tolist()


def make_trainer(cfg, models, run_dir, train, progress, extra=()):
    from ..train import Trainer
    from ..train.generative import GANTrainer, SampleGrid
    kind = cfg["task"]["kind"]
    records = {role: {"name": name, "options": cfg["model_options"], **kwargs}
               for role, (name, kwargs) in _constructors(cfg).items()}
    if kind == "gan":
        G, D = models["generator"], models["discriminator"]
        opt_g, opt_d = _optimizer(G.parameters(), cfg), _optimizer(D.parameters(), cfg)
        scheds = {k: s for k, s in (("generator", _scheduler(opt_g, cfg)),
                                    ("discriminator", _scheduler(opt_d, cfg))) if s is not None}
        grid = SampleGrid(run_dir, 100 if cfg["conditional"] else 64, int(cfg["seed"]) + 31,
                          10 if cfg["conditional"] else 0)
        return GANTrainer(G, D, opt_g, opt_d, latent=G.latent, conditional=cfg["conditional"],
                          schedulers=scheds or None, callbacks=[grid, *extra], progress=progress,
                          run_dir=run_dir, model_config=records, model_name="dcgan")
    model = models["model"]
    opt = _optimizer(model.parameters(), cfg)
    return Trainer(model, opt, task=_task(cfg, train), scheduler=_scheduler(opt, cfg),
                   progress=progress, run_dir=run_dir, model_config=records["model"],
                   callbacks=list(extra),
                   model_name=cfg["model"])


# ------------------------------------------------------------------------------- command
def command(args, given: dict, t_start: float) -> int:
    """Train (or resume) an image-output run; returns the exit status."""
    from ..report import write_image_task_report
    from ..train import image_eval as images_eval
    cfg, run_dir, resume_dir, checkpoint_exists = open_run(given, resolve_image_config,
                                                           check_resume, default_run_dir)
    kind = cfg["task"]["kind"]
    set_num_threads(int(cfg["threads"]))
    if given.get("data_dir") is not None:  # recorded, so that --resume reads the same files
        cfg["data_dir"] = os.path.abspath(given["data_dir"])
    data_dir, download = cfg.get("data_dir"), bool(given.get("download"))
    train, val, test = load_data(cfg, data_dir, download)
    first = train[0]
    image = first[0].numpy() if isinstance(first[0], Tensor) else xp.asarray(first[0])
    cfg["input_shape"] = list(image.shape)
    inner = train
    while not hasattr(inner, "classes") and hasattr(inner, "dataset"):
        inner = inner.dataset
    cfg["classes"] = list(getattr(inner, "classes", []) or [])
    cfg["num_classes"] = int(getattr(inner, "num_classes", len(cfg["classes"]) or 1))
    models = build_models(cfg)
    out(f"foveanet {version()}: {'resuming' if resume_dir else 'training'} {cfg['model']} "
        f"({kind}) on {cfg['dataset']}")
    out("configuration:")
    for k in CONFIG_KEYS:
        v = cfg.get(k)
        if k == "task":
            v = kind
        if v is None or (k in ("noise",) and kind != "denoise"):
            continue
        out(f"  {k:<19}{v if not isinstance(v, float) else f'{v:g}'}")
    for role, m in models.items():
        n = sum(p.numel() for p in m.parameters())
        out(f"{role}: {type(m).__name__}, {n:,} parameters")
    train_loader, val_loader, test_loader = _loaders(cfg, train, val, test)
    out(f"data: {len(train):,} training, {0 if val is None else len(val):,} validation, "
        f"{len(test):,} test images of {tuple(cfg['input_shape'])}; {len(train_loader)} batches "
        "per epoch")
    cfg.setdefault("schedule_epochs", cfg["epochs"])
    record_command(cfg, args, resume_dir is not None)
    trainer = make_trainer(cfg, models, run_dir, train,
                           "plain" if given.get("no_progress") else "auto",
                           observers(given, run_dir))
    history = fit_run(trainer, train_loader, val_loader, int(cfg["epochs"]), run_dir,
                      checkpoint_exists, cfg, resume_dir is not None)
    if history is None:
        return 130
    which, epoch = images_eval.best_weights(trainer, run_dir, val_loader)
    t_eval = time.perf_counter()
    results, pictures = images_eval.evaluate(kind, cfg, models, test_loader, test)
    train_time = sum(e.get("train_time") or 0.0 for e in history)
    results.update(checkpoint=which, epoch=epoch, epochs=len(history), status=history.status,
                   split={"train": len(train), "val": 0 if val is None else len(val),
                          "test": len(test)},
                   wall_time=time.perf_counter() - t_start, train_time=train_time,
                   eval_time=time.perf_counter() - t_eval)
    write_results(run_dir, results)
    write_image_task_report(run_dir, cfg, history, results, pictures)
    for line in images_eval.summary_lines(kind, results):
        out(line)
    out(f"run directory: {run_dir}")
    out(f"wall time: {results['wall_time']:.1f}s (training {train_time:.1f}s)")
    return 0


# ------------------------------------------------------------------------- loading a run
def load_image_run(run_dir, checkpoint: str = "best", kinds=IMAGE_TASKS):
    """(config, {role: Module} with the run's weights, in eval mode) of an image-output run;
    ``checkpoint``: 'best' (when the run validated) or 'last'. RunError for a run of another
    task, or one of ``kinds`` not among them."""
    from ..train.checkpoint import load_checkpoint
    from ..train.run import BEST_FILE, load_weights
    cfg = load_run_config(run_dir, need_checkpoint=False)
    kind = (cfg.get("task") or {}).get("kind")
    if kind not in kinds:
        what = f"task {kind}" if kind else f"task {(cfg.get('task') or {}).get('name')}"
        raise RunError(f"{run_dir}: a run of {what}; this command takes runs of --task "
                       f"{' or '.join(kinds)}", run_dir)
    models = build_models(cfg)
    if checkpoint == "best" and len(models) == 1 and \
            os.path.isfile(os.path.join(run_dir, BEST_FILE)):
        load_weights(models["model"], run_dir, "best")
    else:
        if checkpoint_epoch(run_dir) is None:
            raise RunError(f"{run_dir}: no checkpoint yet (no epoch has finished)", run_dir)
        try:
            if len(models) == 1:
                load_checkpoint(run_dir, models["model"])
            else:
                load_checkpoint(run_dir, models=models)
        except Exception as exc:  # CheckpointError and the like: say which run
            raise RunError(f"{run_dir}: {exc}", run_dir) from None
    for m in models.values():
        m.eval()
    return cfg, models
