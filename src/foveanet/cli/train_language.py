"""``foveanet train --task language_model``: a character-level language model trained by
truncated back-propagation through time, in a run directory like every other run.

``foveanet train`` hands over to ``command`` here when the run is a language model's: ``--task
language_model``, a language model (``--model char_lstm``, ``char_gru``, ``char_rnn``), one of
this group's options (``--text``, ``--bptt``, ...), or ``--resume`` of such a run. The
configuration is ``foveanet.recipes.LANGUAGE_MODEL_RECIPE`` with the options given laid over
it; the text is ``foveanet.data.text``'s (the Python standard library's sources, or ``--text
FILE``), split by position (the last ``--val-split`` validates), and the model is trained by
``foveanet.train.language.BPTTTrainer``. The run directory holds what an image run's holds
(config.json, checkpoints, best.safetensors, history, results.json, report.md, curves.png), the
vocabulary as config.json's ``classes`` and ``corpus.json`` (every file read, with its
characters, bytes and SHA-256). ``--resume`` reads the text again and refuses it when its
SHA-256 differs from the run's; the resumed run ends with the same weights, bit for bit.
"""
from __future__ import annotations

import copy
import os
import time

from ..backend import set_num_threads
from ..data.text import STDLIB, BPTTLoader, Vocabulary, load_corpus, split_by_position
from ..models.charlm import LANGUAGE_MODELS
from ..random import Generator
from ..recipes import LANGUAGE_MODEL_RECIPE, SCHEDULES
from ..report import write_language_model_report
from ..train.io import atomic_write_text, dumps_json
from ..train.language import TASK, BPTTTrainer, LanguageModel, is_language_model, sample
from ..train.run import (BEST_FILE, ConfigError,
                         RunError, build_model, build_optimizer, build_scheduler, canonical_model,
                         check_model_options, jsonable_options,
                         load_run_config, load_weights, model_record, write_results)
from .common import (UsageError, fit_run, open_run, out, parse_model_options, positive_float,
                     positive_int, record_command, version)

__all__ = ["add_arguments", "wanted", "resolve_language_config", "command", "CORPUS_FILE",
           "SAMPLE"]

CORPUS_FILE = "corpus.json"
# the sample report.md shows (the prompt when the vocabulary has its characters, else none)
SAMPLE = {"prompt": "def ", "length": 300, "temperature": 0.8}
# this group's options: their configuration key and how the command line spells them
FLAGS = {"text": "--text", "max_chars": "--max-chars", "bptt": "--bptt",
         "steps_per_epoch": "--steps-per-epoch", "hidden": "--hidden", "layers": "--layers",
         "embedding": "--embedding", "clip_grad_norm": "--clip-grad-norm"}
# the model options --hidden, --layers and --embedding set
MODEL_FLAGS = {"hidden": "hidden", "layers": "layers", "embedding": "embedding_dim"}
# options of foveanet train that a language model does not take, and why
NOT_FOR_TEXT = {"dataset": "the text is --text FILE (default: the Python standard library)",
                "data_option": "the text is --text FILE (and --max-chars N)",
                "data_dir": "the text is --text FILE", "download": "nothing is downloaded",
                "augment": "augmentation applies to images",
                "limit_train": "the text is shortened with --max-chars N (an epoch with "
                               "--steps-per-epoch N)",
                "limit_test": "a language model has no test set: the last --val-split of the "
                              "text validates",
                "from_": "transfer learning applies to image models",
                "freeze": "transfer learning applies to image models",
                "num_classes": "the classes are the text's characters",
                "window": "--window applies to forecasting; a language model's window is --bptt",
                "horizon": "--horizon applies to forecasting",
                "tensorboard": "not for language-model runs yet (image tasks and classifiers)",
                "save_kernels": "a language model has no convolution kernels"}
ENVIRONMENT = ("no_progress", "resume", "out")
CONFIG_KEYS = ["task", "model", "model_options", "dropout", "dataset", "max_chars", "val_split",
               "bptt", "steps_per_epoch", "epochs", "batch_size", "optimizer", "lr", "momentum",
               "weight_decay", "scheduler", "scheduler_interval", "clip_grad_norm", "l1", "l2",
               "seed", "threads"]

DESCRIPTION = """\
A character-level language model (--task language_model; implied by --model char_lstm,
char_gru or char_rnn and by these options): an embedding, recurrent layers and a linear layer
to the next character's scores, trained by truncated back-propagation through time on the text
cut into --batch-size parallel streams, --bptt steps per batch, the recurrent state carried from
batch to batch (detached) and begun anew every epoch. The text is --text FILE (UTF-8) or, by
default, the Python standard library's own sources (its first 2,000,000 characters); the last
--val-split of it validates. The report gives bits per character (cross entropy / ln 2) and a
generated sample; 'foveanet sample RUN_DIR' generates more. Defaults:
foveanet.recipes.LANGUAGE_MODEL_RECIPE."""


def add_arguments(parser) -> None:
    """This group's options on the ``train`` parser."""
    R = LANGUAGE_MODEL_RECIPE
    g = parser.add_argument_group("language model", DESCRIPTION)
    g.add_argument("--text", metavar="FILE",
                   help="a UTF-8 text file to learn (default: the Python standard library's "
                   "sources)")
    g.add_argument("--max-chars", type=positive_int, metavar="N", dest="max_chars",
                   help="use the text's first N characters (default: all of --text; 2,000,000 "
                   "of the standard library)")
    g.add_argument("--bptt", type=positive_int, metavar="N",
                   help=f"steps of back-propagation through time per batch (default {R['bptt']})")
    g.add_argument("--steps-per-epoch", type=positive_int, metavar="N", dest="steps_per_epoch",
                   help="at most N batches per epoch; the next epoch goes on where this one "
                   "stopped (default: one pass over the text)")
    g.add_argument("--hidden", type=positive_int, metavar="N",
                   help=f"units per recurrent layer (--model-option hidden=N; default "
                   f"{R['model_options']['hidden']})")
    g.add_argument("--layers", type=positive_int, metavar="N",
                   help=f"recurrent layers (--model-option layers=N; default "
                   f"{R['model_options']['layers']})")
    g.add_argument("--embedding", type=positive_int, metavar="N",
                   help=f"the characters' embedding size (--model-option embedding_dim=N; "
                   f"default {R['model_options']['embedding_dim']})")
    g.add_argument("--clip-grad-norm", type=positive_float, metavar="X", dest="clip_grad_norm",
                   help=f"clip the gradient's norm to X before every update (default "
                   f"{R['clip_grad_norm']:g})")


def _is_language_model_name(name) -> bool:
    try:
        return canonical_model(str(name)) in LANGUAGE_MODELS
    except ConfigError:
        return False


def wanted(given: dict) -> bool:
    """Whether the options of a ``foveanet train`` command make it a language model's run.
    UsageError for this group's options with another ``--task``."""
    if given.get("resume") is not None:
        try:
            cfg = load_run_config(given["resume"], need_checkpoint=False)
        except RunError:
            return False  # foveanet train says what is wrong with the directory
        return is_language_model(cfg)
    mine = [FLAGS[k] for k in FLAGS if k in given]
    task = given.get("task")
    if task is not None and task != TASK:
        if mine:
            raise UsageError(f"{mine[0]} applies to language models (--task {TASK}), not to "
                             f"--task {task}")
        return False
    return task == TASK or bool(mine) or _is_language_model_name(given.get("model", ""))


# ------------------------------------------------------------------------- configuration
def _model_options(model, given, base) -> dict:
    options = dict(base)
    options.update(parse_model_options(given.get("model_option")))
    for flag, key in MODEL_FLAGS.items():
        if flag in given:
            listed = parse_model_options(given.get("model_option"))
            if key in listed and listed[key] != given[flag]:
                raise UsageError(f"--{flag} {given[flag]} contradicts --model-option "
                                 f"{key}={listed[key]}")
            options[key] = given[flag]
    try:
        return jsonable_options(check_model_options(model, options))
    except ConfigError as exc:
        raise UsageError(f"--model-option: {exc}") from None


def resolve_language_config(given: dict) -> dict:
    """The configuration of a new language-model run: ``LANGUAGE_MODEL_RECIPE`` with the options
    given laid over it. UsageError for an option a language model does not take, a model that
    is not a language model, a missing --text file."""
    for key, why in NOT_FOR_TEXT.items():
        if key in given:
            flag = "--" + key.strip("_").replace("_", "-")
            raise UsageError(f"{flag} does not apply to a language model: {why}")
    recipe = copy.deepcopy(LANGUAGE_MODEL_RECIPE)
    cfg = {k: given.get(k, v) for k, v in recipe.items()}
    cfg["task"] = {"name": TASK}
    try:
        cfg["model"] = canonical_model(cfg["model"])
    except ConfigError as exc:
        raise UsageError(f"--model {cfg['model']}: {exc}") from None
    if cfg["model"] not in LANGUAGE_MODELS:
        raise UsageError(f"--model {cfg['model']} is not a language model: choose one of "
                         f"{', '.join(LANGUAGE_MODELS)}")
    cfg["model_options"] = _model_options(cfg["model"], given, recipe["model_options"])
    text = given.get("text")
    if text is not None:
        if not os.path.isfile(text):
            what = "is a directory, not a text file" if os.path.isdir(text) else "no such file"
            raise UsageError(f"--text {text}: {what}")
        cfg["dataset"] = os.path.abspath(text)
    else:
        cfg["dataset"] = STDLIB
    opt = cfg["optimizer"]
    if "momentum" in given:
        if opt in ("adam", "adamw"):
            raise UsageError(f"--momentum does not apply to {opt} (its beta1 plays that role); use "
                             "--optimizer sgd, momentum or rmsprop")
        cfg["momentum"] = given["momentum"]
    else:
        cfg["momentum"] = 0.9 if opt == "momentum" else 0.0 if opt in ("sgd", "rmsprop") else None
    if cfg["scheduler"] not in ("onecycle", "cosine"):
        cfg["scheduler_interval"] = "epoch"
    cfg["schedule_epochs"] = cfg["epochs"]
    return cfg


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def check_resume(cfg, given, completed) -> None:
    """Options given with --resume of a language-model run must say what its config.json says
    (--epochs may extend it)."""
    if "out" in given:
        raise UsageError("--out cannot be combined with --resume: the run continues in its own "
                         "directory")
    for key, value in given.items():
        if key in ENVIRONMENT or key == "epochs":
            continue
        flag = "--" + key.strip("_").replace("_", "-")
        if key in NOT_FOR_TEXT:
            raise UsageError(f"{flag} does not apply to a language model: {NOT_FOR_TEXT[key]}")
        if key == "task":
            have = TASK
        elif key == "text":
            have, value = cfg.get("dataset"), os.path.abspath(value)
        elif key == "model":
            have, value = cfg.get("model"), canonical_model(value)
        elif key in MODEL_FLAGS:
            have = (cfg.get("model_options") or {}).get(MODEL_FLAGS[key])
        elif key == "model_option":
            for k, v in parse_model_options(value).items():
                if not _same(v, (cfg.get("model_options") or {}).get(k)):
                    raise UsageError(f"--model-option {k}={v!r} contradicts the run's config.json "
                                     f"({k}={(cfg.get('model_options') or {}).get(k)!r}); only "
                                     "--epochs may change on --resume")
            continue
        else:
            have = cfg.get(key)
        if not _same(value, have):
            raise UsageError(f"{flag} {value} contradicts the run's config.json ({key} = {have}); "
                             "a resumed run keeps its configuration (only --epochs may change)")
    if "epochs" in given:
        if given["epochs"] < completed:
            raise UsageError(f"--epochs {given['epochs']}: the run has already completed "
                             f"{completed} epochs")
        if given["epochs"] != cfg["schedule_epochs"] and cfg["scheduler"] == "onecycle":
            raise UsageError(f"--epochs {given['epochs']}: this run's onecycle schedule was "
                             f"planned for {cfg['schedule_epochs']} epochs and cannot be extended")
        cfg["epochs"] = given["epochs"]


def config_lines(cfg, given) -> list:
    """The configuration as printed before training, options from the command line marked."""
    flags = {"model_options": ("model_option", "hidden", "layers", "embedding"),
             "dataset": ("text",)}
    lines = []
    for k in CONFIG_KEYS:
        v = cfg.get(k)
        if k == "task" and isinstance(v, dict):
            v = v.get("name")
        src = "  (command line)" if any(f in given for f in flags.get(k, (k,))) else ""
        lines.append(f"  {k:<19}{v if not isinstance(v, float) else f'{v:g}'}{src}")
    return lines


def default_run_dir(cfg) -> str:
    label = STDLIB if cfg["dataset"] == STDLIB else \
        os.path.splitext(os.path.basename(cfg["dataset"]))[0]
    base = os.path.join("runs", f"{cfg['model']}-{label}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, i = base, 2
    while os.path.exists(path):
        path, i = f"{base}-{i}", i + 1
    return path


# ------------------------------------------------------------------------------ the data
def _loaders(cfg, ids):
    """(train loader, validation loader or None, characters of each) of the encoded text;
    UsageError naming the options when the text is too short for them."""
    train_ids, val_ids = split_by_position(ids, float(cfg["val_split"]))
    b, bptt = int(cfg["batch_size"]), int(cfg["bptt"])
    source = "the text" if cfg["dataset"] == STDLIB else f"--text {cfg['dataset']}"
    if len(train_ids) < b * (bptt + 1):
        raise UsageError(f"--batch-size {b} and --bptt {bptt} need at least {b * (bptt + 1):,} "
                         f"training characters (one window of {bptt} steps in each of {b} "
                         f"streams); {source} leaves {len(train_ids):,}: lower --batch-size or "
                         "--bptt, or give a longer text")
    train = BPTTLoader(train_ids, b, bptt, drop_last=True, steps_per_epoch=cfg["steps_per_epoch"])
    val = None
    if val_ids is not None:
        if len(val_ids) < 2 * b:
            raise UsageError(f"--val-split {cfg['val_split']:g} leaves {len(val_ids)} validation "
                             f"characters, fewer than 2 for each of the {b} streams: raise "
                             "--val-split, lower --batch-size or give a longer text")
        val = BPTTLoader(val_ids, b, bptt, drop_last=False)
    return train, val, len(train_ids), 0 if val_ids is None else len(val_ids)


def _corpus(cfg, resume_dir):
    corpus = load_corpus(cfg["dataset"], cfg.get("max_chars"))
    recorded = (cfg.get("text") or {}).get("sha256")
    if resume_dir is not None and recorded and corpus.sha256 != recorded:
        raise RunError(f"{resume_dir}: the text has changed since the run started ({corpus.source}: "
                       f"SHA-256 {corpus.sha256[:16]}..., the run's {recorded[:16]}...; "
                       f"{CORPUS_FILE} lists what it read): a resumed run must read the same "
                       "characters", resume_dir)
    return corpus


def _sample_prompt(vocab) -> str:
    return SAMPLE["prompt"] if not vocab.unknown(SAMPLE["prompt"]) else ""


# ------------------------------------------------------------------------------- command
def command(args, given: dict, t_start: float) -> int:
    """Train (or resume) a language-model run; ``given``: the options given on the command
    line. Returns the exit status."""
    cfg, run_dir, resume_dir, checkpoint_exists = open_run(given, resolve_language_config,
                                                           check_resume, default_run_dir)
    set_num_threads(int(cfg["threads"]))
    corpus = _corpus(cfg, resume_dir)
    vocab = Vocabulary(cfg["classes"]) if resume_dir is not None else \
        Vocabulary.from_text(corpus.text)
    cfg.update(classes=vocab.to_list(), num_classes=len(vocab), input_shape=[int(cfg["bptt"])],
               text=corpus.summary())
    train_loader, val_loader, n_train, n_val = _loaders(cfg, vocab.encode(corpus.text))
    model = build_model(cfg)
    out(f"foveanet {version()}: {'resuming' if resume_dir else 'training'} {cfg['model']} on "
        f"{cfg['dataset']} (language model)")
    out("configuration:")
    for line in config_lines(cfg, given):
        out(line)
    out(f"text: {corpus.describe()}; SHA-256 {corpus.sha256[:16]}...")
    limit = (f" (of {train_loader.windows})" if len(train_loader) < train_loader.windows else "")
    out(f"data: {n_train:,} training, {n_val:,} validation characters; vocabulary {len(vocab)} "
        f"characters; {train_loader.batch_size} streams of {train_loader.stream_length:,}, bptt "
        f"{train_loader.bptt}: {len(train_loader)}{limit} batches per epoch")
    optimizer = build_optimizer(model, cfg)
    scheduler, interval = build_scheduler(optimizer, cfg, len(train_loader), SCHEDULES)

    record_command(cfg, args, resume_dir is not None)
    trainer = BPTTTrainer(model, optimizer, task=LanguageModel(), scheduler=scheduler,
                          scheduler_interval=interval, l1=cfg["l1"], l2=cfg["l2"],
                          clip_grad_norm=cfg["clip_grad_norm"],
                          progress="plain" if given.get("no_progress") else "auto",
                          run_dir=run_dir, model_config=model_record(cfg),
                          model_name=cfg["model"])
    cfg["task"] = trainer.task.config()
    os.makedirs(run_dir, exist_ok=True)
    if resume_dir is None or not os.path.isfile(os.path.join(run_dir, CORPUS_FILE)):
        atomic_write_text(os.path.join(run_dir, CORPUS_FILE),
                          dumps_json(corpus.manifest(), CORPUS_FILE))
    history = fit_run(trainer, train_loader, val_loader, int(cfg["epochs"]), run_dir,
                      checkpoint_exists, cfg, resume_dir is not None)
    if history is None:
        return 130

    epochs_done = len(history)
    if val_loader is not None and os.path.isfile(os.path.join(run_dir, BEST_FILE)):
        which, (_, best_epoch) = "best", load_weights(model, run_dir, "best")
    else:
        which, best_epoch = "last", trainer.epoch
    record = next((e for e in history if e.get("epoch") == best_epoch), None) or {}
    val = {k: record.get(f"val_{k}") for k in ("loss", "bits_per_char", "perplexity", "accuracy")}
    prompt = _sample_prompt(vocab)
    seed = int(cfg["seed"])
    text = sample(model, vocab, prompt, SAMPLE["length"], SAMPLE["temperature"], Generator(seed))
    train_time = sum(e.get("train_time") or 0.0 for e in history)
    chars = sum((e.get("images_per_sec") or 0.0) * (e.get("train_time") or 0.0) for e in history)
    chars *= int(cfg["bptt"])
    results = {"checkpoint": which, "epoch": best_epoch, "epochs": epochs_done,
               "status": history.status, "val_loss": val["loss"],
               "val": val if val_loader is not None else None,
               "train": {k: record.get(f"train_{k}") for k in ("loss", "bits_per_char")},
               "split": {"train": n_train, "val": n_val},
               "sample": {"prompt": prompt, "temperature": SAMPLE["temperature"], "seed": seed,
                          "text": text},
               "wall_time": time.perf_counter() - t_start, "train_time": train_time,
               "characters_per_sec": chars / train_time if train_time > 0 else None}
    write_results(run_dir, results)
    write_language_model_report(run_dir, cfg, history, results)
    if val_loader is not None and val["bits_per_char"] is not None:
        out(f"validation: {val['bits_per_char']:.4f} bits per character ({which} epoch "
            f"{best_epoch} of {epochs_done}, perplexity {val['perplexity']:.3f})")
    else:
        out(f"training: {record.get('train_bits_per_char') or float('nan'):.4f} bits per "
            f"character (last epoch {epochs_done} of {epochs_done}, no validation text)")
    out(f"sample (prompt {prompt!r}, temperature {SAMPLE['temperature']}, seed {seed}):")
    out(prompt + text)
    out(f"run directory: {run_dir}")
    out(f"wall time: {time.perf_counter() - t_start:.1f}s (training {train_time:.1f}s, "
        f"{results['characters_per_sec'] or 0:.0f} characters/s)")
    return 0

