"""The Playground's CNN view: a small convolutional network learning Fashion-MNIST in the page
(``/cnn``), its first-layer kernels, every layer's activation maps and their gradients, the
prediction for a chosen picture and the loss and accuracy curves sent to the browser while it
trains.

Routes (all under ``/cnn``; ``routes()`` returns them for ``playground.app``):

- ``GET /cnn``: the page (``static/cnn.html``); ``GET /cnn/static/{cnn.js, cnn.css}``;
- ``GET /cnn/api/options``: the models, optimizers, ranges, defaults and limits below;
- ``POST /cnn/api/image``: a PNG or JPEG file as the request body (at most ``MAX_UPLOAD_BYTES``)
  turned into the 28x28 grey input the models take (``fv.data.prepare_image``: squared,
  resized, inverted when it is dark on light); answers ``{"pixels": [784 numbers in [0, 1]],
  "inverted": bool, "width", "height"}``, or 4xx with ``{"error": sentence}``;
- ``POST /cnn/api/run``: ``{"path": RUN_DIR, "checkpoint": "best" | "last"}`` checked and
  described (model, data set, epoch, its convolutions) without being used; 4xx with a sentence
  when the directory is not a run the view can show;
- ``WS /cnn/ws``: one training session per socket (per browser tab).

The socket's protocol: the page sends JSON objects with a ``type``:

=============  ==========================================================================
``configure``  any of ``model``, ``optimizer``, ``lr``, ``batch_size``, ``train_size``,
               ``seed``; a new model, optimizer, training-set size or seed resets the
               network, a new learning rate or batch size applies from the next step
``play``       train continuously (frames at ``FPS`` per second)
``pause``      stop training (the network is kept)
``step``       ``n`` steps (1..``MAX_STEP_REQUEST``), then one frame
``reset``      a new network from the seed (or the loaded run's weights again)
``select``     ``index``: show test image ``index`` of the strip (0..``STRIP_SIZE`` - 1)
``image``      ``pixels``: 784 numbers in [0, 1], row by row, light on dark (a drawing or an
               upload's ``pixels``): show the network's view of it
``load_run``   ``path`` (a run directory of ``foveanet train``), ``checkpoint``: show that
               network; ``play`` then continues training it (the directory is only read)
``frame``      send a frame now
=============  ==========================================================================

and receives ``hello`` (the options, the class names and the strip of test images), ``frame``
(below), ``status`` (a sentence, e.g. that a run was loaded) and ``error`` (``message``, a
sentence, and ``field``, the input at fault, or null). A frame holds the step, the epoch, the
chosen image, the 10 class probabilities, the first-layer kernels, for every convolution, pooling
and activation layer its ``(C, H, W)`` activation maps and the gradient of the loss with respect
to them (the loss of the chosen image's label, or of the predicted class for a drawing), Grad-CAM
of the last convolution, and the curve points added since the previous frame. Arrays travel as
base64 of unsigned bytes: signed maps as ``127.5 + 127.5 * value / scale`` with the ``scale``
(the largest magnitude) beside them, one scale for all kernels and one per layer for its
activations and for its gradients, so the pictures of a layer compare with each other.

Each session trains in a thread of its own; closing the socket stops it. Its compute and memory
are bounded: a model from ``MODELS``, at most ``TRAIN_SIZE_RANGE[1]`` training images (shared,
read once per process), batches of at most ``BATCH_RANGE[1]``, at most ``MAX_STEPS_PER_SECOND``
steps a second and ``MAX_STEPS`` steps before it pauses, ``FPS`` frames a second, the test curve
on ``TEST_SIZE`` fixed test images every ``TEST_EVERY_S`` seconds of training. Sessions count
against the server's limit (``app.state``'s session registry, shared with the 2-D view).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import math
import os
import queue
import tempfile
import threading
import time
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from ..autograd import Tensor, enable_grad, no_grad
from ..backend import xp
from ..data import MNIST, DatasetError, FashionMNIST, ImageError, prepare_image
from ..models import create as create_model
from ..nn import functional as F
from ..ops import tensor
from ..optim import SGD, Adam
from ..random import Generator, manual_seed, randperm
from ..train.io import CheckpointError
from ..train.run import ConfigError, RunError, load_run
from ..visual import VisualError, activations, conv_layers, default_layers, get_layer, gradcam
from ..visual.maps import inspecting
from .limits import SessionRegistry, read_body

__all__ = ["routes", "CnnSession", "CnnInputError", "check_command", "check_config", "open_run",
           "image_from_upload", "live_sessions", "MODELS", "OPTIMIZERS", "DEFAULTS", "LIMITS"]

log = logging.getLogger("foveanet.playground.cnn")
STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"cnn.js": "text/javascript", "cnn.css": "text/css"}

# --------------------------------------------------------------------------------- limits
MODELS = {"lenet5": {}, "cnn_bn": {"width": 16}}  # registry name -> options (cnn_bn as
# foveanet train's default recipe builds it)
MODEL_TITLES = {"lenet5": "LeNet-5 (2 conv 5x5, 61k weights)",
                "cnn_bn": "cnn_bn, width 16 (4 conv 3x3 + batch norm, 421k weights)"}
OPTIMIZERS = {"sgd": "SGD, momentum 0.9", "adam": "Adam"}
LR_RANGE = (1e-5, 1.0)
BATCH_RANGE = (1, 128)
TRAIN_SIZE_RANGE = (100, 10000)
SEED_RANGE = (0, 2**31 - 1)
DEFAULTS = {"model": "lenet5", "optimizer": "adam", "lr": 1e-3, "batch_size": 32,
            "train_size": 2000, "seed": 0}
TEST_SIZE = 500            # the fixed test subset of the test curve
STRIP_SIZE = 16            # test images offered in the page
FPS = 3.0                  # frames a second while training
TEST_EVERY_S = 2.0         # the test curve's interval, in seconds of training
MAX_STEPS_PER_SECOND = 100
MAX_STEPS = 50_000         # a session pauses after this many steps (reset starts again)
MAX_STEP_REQUEST = 100
MAX_UPLOAD_BYTES = 1 << 20
MAX_UPLOAD_PIXELS = 4096 * 4096
MAX_MESSAGE_BYTES = 64 * 1024
MAX_PATH_CHARS = 4096
MAX_RUN_PARAMETERS = 5_000_000  # a loaded run's network, trained and shown per frame
MAX_POINTS = 5000          # curve points a session keeps
MAX_QUEUED = 32            # commands waiting for the session's thread
PIXELS = 28 * 28
LIMITS = {"lr": LR_RANGE, "batch_size": BATCH_RANGE, "train_size": TRAIN_SIZE_RANGE,
          "seed": SEED_RANGE, "test_size": TEST_SIZE, "strip_size": STRIP_SIZE, "fps": FPS,
          "max_steps_per_second": MAX_STEPS_PER_SECOND, "max_steps": MAX_STEPS,
          "max_step_request": MAX_STEP_REQUEST, "max_upload_bytes": MAX_UPLOAD_BYTES,
          "max_message_bytes": MAX_MESSAGE_BYTES, "max_run_parameters": MAX_RUN_PARAMETERS}
SHOWN_DATASETS = {"fashion-mnist": FashionMNIST, "mnist": MNIST}
_INIT_LOCK = threading.Lock()  # building a model reads (and load_run seeds) the global generator


class CnnInputError(ValueError):
    """An input the CNN view refuses; ``field`` names it (None for the message as a whole),
    ``status`` is the HTTP answer's code."""

    def __init__(self, message: str, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.field = field
        self.status = status


# ----------------------------------------------------------------------------- validation
def _number(doc, key, low, high, integer=False):
    v = doc[key]
    kind = "an integer" if integer else "a number"
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not (
            isinstance(v, int) or (isinstance(v, float) and v.is_integer()))):
        raise CnnInputError(f"{key} must be {kind} from {low:g} to {high:g}, got {v!r}", key)
    if not math.isfinite(v) or not low <= v <= high:
        raise CnnInputError(f"{key} must be {kind} from {low:g} to {high:g}, got {v!r}", key)
    return int(v) if integer else float(v)


def _choice(doc, key, choices):
    v = doc[key]
    if not isinstance(v, str) or v not in choices:
        raise CnnInputError(f"{key} must be one of {', '.join(choices)}, got {v!r}", key)
    return v


def check_config(doc: dict) -> dict:
    """The settings of ``doc`` (a subset of DEFAULTS' keys), checked; CnnInputError names the
    first bad one."""
    if not isinstance(doc, dict):
        raise CnnInputError("the settings must be a JSON object")
    unknown = sorted(set(doc) - set(DEFAULTS))
    if unknown:
        raise CnnInputError(f"unknown setting {unknown[0]!r}; the settings are "
                            f"{', '.join(DEFAULTS)}", unknown[0])
    out = {}
    if "model" in doc:
        out["model"] = _choice(doc, "model", list(MODELS))
    if "optimizer" in doc:
        out["optimizer"] = _choice(doc, "optimizer", list(OPTIMIZERS))
    if "lr" in doc:
        out["lr"] = _number(doc, "lr", *LR_RANGE)
    if "batch_size" in doc:
        out["batch_size"] = _number(doc, "batch_size", *BATCH_RANGE, integer=True)
    if "train_size" in doc:
        out["train_size"] = _number(doc, "train_size", *TRAIN_SIZE_RANGE, integer=True)
    if "seed" in doc:
        out["seed"] = _number(doc, "seed", *SEED_RANGE, integer=True)
    return out


def check_pixels(pixels):
    """784 numbers in [0, 1] (a 28x28 picture, row by row) as a float32 (1, 28, 28) array."""
    if not isinstance(pixels, list):
        raise CnnInputError(f"pixels must be a list of {PIXELS} numbers (a 28x28 picture, row by "
                            f"row), got {type(pixels).__name__}", "pixels")
    if len(pixels) != PIXELS:
        raise CnnInputError(f"the picture must be 28x28 = {PIXELS} pixels, got {len(pixels)} "
                            "values", "pixels")
    if not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in pixels):
        raise CnnInputError("every pixel must be a number from 0 to 1", "pixels")
    arr = xp.asarray(pixels, dtype=xp.float64)
    if not bool(xp.isfinite(arr).all()) or arr.min() < 0 or arr.max() > 1:
        raise CnnInputError("every pixel must be a number from 0 to 1 (0 black, 1 white)", "pixels")
    return arr.astype(xp.float32).reshape(1, 28, 28)


def check_command(doc) -> dict:
    """One message of the socket (already parsed JSON), checked: a dict with ``type`` and the
    fields that type takes, normalised; CnnInputError with a sentence otherwise."""
    if not isinstance(doc, dict):
        raise CnnInputError("a message must be a JSON object with a 'type'")
    kind = doc.get("type")
    fields = {k: v for k, v in doc.items() if k != "type"}
    simple = ("play", "pause", "reset", "frame")
    known = simple + ("configure", "step", "select", "image", "load_run")
    if kind not in known:
        raise CnnInputError(f"unknown message type {kind!r}; the types are {', '.join(known)}",
                            "type")

    def only(*keys):
        extra = sorted(set(fields) - set(keys))
        if extra:
            raise CnnInputError(f"a {kind!r} message has no field {extra[0]!r}", extra[0])

    if kind in simple:
        only()
        return {"type": kind}
    if kind == "configure":
        return {"type": kind, **check_config(fields)}
    if kind == "step":
        only("n")
        n = _number(fields, "n", 1, MAX_STEP_REQUEST, integer=True) if "n" in fields else 1
        return {"type": kind, "n": n}
    if kind == "select":
        only("index")
        if "index" not in fields:
            raise CnnInputError("a 'select' message needs index (the test image)", "index")
        return {"type": kind, "index": _number(fields, "index", 0, STRIP_SIZE - 1, integer=True)}
    if kind == "image":
        only("pixels")
        return {"type": kind, "image": check_pixels(fields.get("pixels"))}
    only("path", "checkpoint")
    return {"type": kind, "path": _check_path(fields.get("path")),
            "checkpoint": _check_checkpoint(fields.get("checkpoint", "best"))}


def _check_path(path) -> str:
    if not isinstance(path, str) or not path.strip():
        raise CnnInputError("type the path of a run directory (made by foveanet train)", "path")
    if len(path) > MAX_PATH_CHARS or "\x00" in path:
        raise CnnInputError(f"the path must be at most {MAX_PATH_CHARS} characters, without NUL",
                            "path")
    return os.path.expanduser(path.strip())


def _check_checkpoint(checkpoint) -> str:
    if checkpoint not in ("best", "last"):
        raise CnnInputError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}",
                            "checkpoint")
    return checkpoint


# ------------------------------------------------------------------------------- runs
def open_run(path: str, checkpoint: str = "best"):
    """``fv.load_run(path, checkpoint)`` for the view: the directory must exist, be a run
    directory of ``foveanet train`` on Fashion-MNIST or MNIST (28x28 grey pictures) and its model
    must have a convolution; CnnInputError with a sentence otherwise. Only reads the directory."""
    path = _check_path(path)
    checkpoint = _check_checkpoint(checkpoint)
    if not os.path.exists(path):
        raise CnnInputError(f"{path}: no such directory", "path", 404)
    if not os.path.isdir(path):
        raise CnnInputError(f"{path} is a file, not a run directory", "path", 422)
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise CnnInputError(f"{path} has no config.json: it is not a run directory of foveanet "
                            "train", "path", 422)
    try:
        with _INIT_LOCK:  # rebuilding the model seeds the global generator
            run = load_run(path, checkpoint)
    except (RunError, ConfigError, CheckpointError, ValueError, OSError) as exc:
        raise CnnInputError(f"cannot load the run: {exc}", "path", 422) from None
    if run.dataset not in SHOWN_DATASETS or run.input_shape != (1, 28, 28):
        raise CnnInputError(f"{path}: the CNN view shows runs on Fashion-MNIST or MNIST (28x28 "
                            f"grey pictures); this run is on {run.dataset} with inputs of shape "
                            f"{run.input_shape}", "path", 422)
    if len(run.classes) != 10:
        raise CnnInputError(f"{path}: the run has {len(run.classes)} classes; the view shows "
                            "10-class runs", "path", 422)
    if not conv_layers(run.model):
        raise CnnInputError(f"{path}: its model ({run.config['model']}) has no convolution "
                            "layer, so it has no kernels or activation maps to show", "path", 422)
    size = sum(int(p.data.size) for p in run.model.parameters())
    if size > MAX_RUN_PARAMETERS:
        raise CnnInputError(f"{path}: its model ({run.config['model']}) has {size:,} "
                            f"parameters; the view trains and shows networks of at most "
                            f"{MAX_RUN_PARAMETERS:,}", "path", 422)
    return run


def describe_run(run) -> dict:
    return {"path": os.path.abspath(run.run_dir), "model": run.config["model"],
            "dataset": run.dataset, "checkpoint": run.checkpoint, "epoch": run.epoch,
            "classes": run.classes, "input_shape": list(run.input_shape),
            "convolutions": [n for n, _ in conv_layers(run.model)]}


# ------------------------------------------------------------------------------- data
_DATA: dict = {}
_DATA_LOCK = threading.Lock()


def dataset_arrays(name: str = "fashion-mnist") -> dict:
    """``{"train_x", "train_y", "test_x", "test_y", "classes"}`` of Fashion-MNIST or MNIST (uint8
    (N, 28, 28) images, int64 labels), read once per process and shared by the sessions."""
    with _DATA_LOCK:
        if name not in _DATA:
            cls = SHOWN_DATASETS[name]
            train, test = cls(train=True), cls(train=False)
            _DATA[name] = {"train_x": train.data, "train_y": train.targets,
                           "test_x": test.data[:max(TEST_SIZE, STRIP_SIZE)],
                           "test_y": test.targets[:max(TEST_SIZE, STRIP_SIZE)],
                           "classes": list(cls.classes)}
        return _DATA[name]


# ------------------------------------------------------------------------------- images
def image_from_upload(data: bytes) -> dict:
    """A PNG or JPEG file's bytes as the 28x28 grey input (``fv.data.prepare_image``), or
    CnnInputError naming what is wrong with the file."""
    if not data:
        raise CnnInputError("the upload is empty: send a PNG or JPEG file as the body", "file")
    if len(data) > MAX_UPLOAD_BYTES:
        raise CnnInputError(f"the upload is {len(data)} bytes; at most {MAX_UPLOAD_BYTES} bytes "
                            "(1 MiB) are accepted", "file", 413)
    if not (data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"\xff\xd8\xff")):
        raise CnnInputError("the upload is not a PNG or JPEG file", "file", 415)
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CnnInputError(f"the upload cannot be read as a picture ({exc})", "file", 415) \
            from None
    if width * height > MAX_UPLOAD_PIXELS:
        raise CnnInputError(f"the picture is {width}x{height} pixels; at most "
                            f"{MAX_UPLOAD_PIXELS} pixels (4096x4096) are accepted", "file", 413)
    with tempfile.TemporaryDirectory(prefix="foveanet-upload-") as tmp:
        path = os.path.join(tmp, "upload")
        with open(path, "wb") as f:
            f.write(data)
        try:
            x, inverted = prepare_image(path, 1, 28, "auto")
        except (ImageError, OSError, ValueError) as exc:
            msg = str(exc).replace(path + ": ", "").replace(path, "the upload")
            raise CnnInputError(f"the upload cannot be read as a picture: {msg}", "file",
                                415) from None
    pixels = [round(float(v), 4) for v in xp.clip(x, 0, 1).reshape(-1)]
    return {"pixels": pixels, "inverted": bool(inverted), "width": width, "height": height}


def _b64(a) -> str:
    return base64.b64encode(xp.ascontiguousarray(a, dtype=xp.uint8).tobytes()).decode("ascii")


def _signed(a):
    """``(base64 bytes, scale)``: ``a`` as 127.5 + 127.5 * a / max|a| in unsigned bytes."""
    a = xp.asarray(a, dtype=xp.float64)
    scale = float(xp.abs(a).max()) if a.size else 0.0
    if not math.isfinite(scale):
        a = xp.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        scale = float(xp.abs(a).max())
    q = xp.full(a.shape, 128, dtype=xp.uint8) if scale <= 0 else \
        xp.clip(xp.rint(127.5 + 127.5 * a / scale), 0, 255).astype(xp.uint8)
    return _b64(q), scale


def _unit(a) -> str:
    return _b64(xp.clip(xp.rint(xp.asarray(a, dtype=xp.float64) * 255), 0, 255))


# ------------------------------------------------------------------------------- outbox
class Outbox:
    """Messages from a session's thread to its socket: control messages in order (at most 200
    waiting), frames latest-first (an unsent frame is replaced by the next, its curve points
    carried over, so a slow client skips pictures but no curve points)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None):
        self.loop = loop
        self.event = asyncio.Event() if loop is not None else None
        self.lock = threading.Lock()
        self.control: list = []
        self.frame = None
        self.sent_frames = 0

    def _wake(self):
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody reads
                self.loop.call_soon_threadsafe(self.event.set)

    def put(self, msg: dict) -> None:
        with self.lock:
            if len(self.control) < 200:
                self.control.append(msg)
        self._wake()

    def put_frame(self, frame: dict) -> None:
        with self.lock:
            old = self.frame
            if old is not None and not frame.get("reset"):
                frame["train"] = old["train"] + frame["train"]
                frame["test"] = old["test"] + frame["test"]
                frame["reset"] = old.get("reset", False)
            self.frame = frame
        self._wake()

    def drain(self) -> list:
        with self.lock:
            out = self.control
            self.control = []
            if self.frame is not None:
                out.append(self.frame)
                self.frame = None
        return out


# ------------------------------------------------------------------------------ session
_LIVE: set = set()
_LIVE_LOCK = threading.Lock()


def live_sessions() -> int:
    """How many CNN-view sessions of this process have a running thread."""
    with _LIVE_LOCK:
        return sum(1 for s in _LIVE if s.thread.is_alive())


class CnnSession:
    """One tab's network, data and training loop, run in a thread of its own (``start``,
    ``submit(command)``, ``stop``). Messages go to ``outbox``."""

    def __init__(self, outbox: Outbox, config: dict | None = None):
        self.outbox = outbox
        self.config = {**DEFAULTS, **(config or {})}
        self.commands: queue.Queue = queue.Queue(maxsize=MAX_QUEUED)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._main, name="playground-cnn", daemon=True)
        self.data = None
        self.run = None          # a loaded run (foveanet.train.run.Run) or None
        self.playing = False
        self.step_count = 0
        self.selected = 0        # a strip index, or None for a drawn picture
        self.drawn = None
        self.train_points: list = []
        self.test_points: list = []
        self._unsent_train: list = []
        self._unsent_test: list = []
        self._acc = [0.0, 0.0, 0]  # loss sum, correct, samples since the last curve point
        self._reset_pending = True

    # -- the thread's interface
    def start(self):
        with _LIVE_LOCK:
            _LIVE.add(self)
        self.thread.start()

    def submit(self, command: dict) -> bool:
        try:
            self.commands.put_nowait(command)
            return True
        except queue.Full:
            return False

    def stop(self):
        self.stopping.set()
        self.playing = False

    def join(self, timeout: float = 10.0) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    # -- building
    def _build(self, loaded=None):
        """A new network (or the run ``loaded``, or the loaded run's weights read again), its
        optimizer and training subset."""
        cfg = self.config
        if loaded is not None:
            self.run = loaded
        elif self.run is not None:
            self.run = open_run(self.run.run_dir, self.run.checkpoint)  # its weights again
        data = dataset_arrays(self.run.dataset if self.run is not None else "fashion-mnist")
        changed = getattr(self, "data", None) is not None and data is not self.data
        self.data = data
        if self.run is not None:
            self.model = self.run.model
            self.transform = self.run.transform
            self.classes = self.run.classes
        else:
            with _INIT_LOCK:
                manual_seed(cfg["seed"])
                self.model = create_model(cfg["model"], **MODELS[cfg["model"]])
            self.transform = None
            self.classes = self.data["classes"]
        params = list(self.model.parameters())
        if cfg["optimizer"] == "sgd":
            self.optimizer = SGD(params, lr=cfg["lr"], momentum=0.9)
        else:
            self.optimizer = Adam(params, lr=cfg["lr"])
        n = min(cfg["train_size"], len(self.data["train_y"]))
        gen = Generator(cfg["seed"] + 1)
        self.train_index = randperm(len(self.data["train_y"]), generator=gen).numpy()[:n]
        self.batch_gen = Generator(cfg["seed"] + 2)
        self.order, self.pos = None, 0
        self.step_count = 0
        self.train_points, self.test_points = [], []
        self._unsent_train, self._unsent_test = [], []
        self._acc = [0.0, 0.0, 0]
        self._reset_pending = True
        self.layers = default_layers(self.model)
        self.first_conv = conv_layers(self.model)[0]
        self.last_conv = conv_layers(self.model)[-1][0]
        if changed:  # another data set (an MNIST run): its classes and test images
            self.outbox.put(self.hello())

    def _inputs(self, images):
        x = images.astype(xp.float32)[:, None] * xp.float32(1 / 255)
        return self.transform(x, None) if self.transform is not None else x

    # -- training
    def _next_batch(self):
        bs = min(self.config["batch_size"], len(self.train_index))
        if self.order is None or self.pos + bs > len(self.order):
            self.order = self.train_index[randperm(len(self.train_index),
                                                   generator=self.batch_gen).numpy()]
            self.pos = 0
        idx = xp.sort(self.order[self.pos:self.pos + bs])
        self.pos += bs
        return self._inputs(self.data["train_x"][idx]), self.data["train_y"][idx]

    def _train_step(self) -> bool:
        x, y = self._next_batch()
        self.model.train()
        self.optimizer.zero_grad()
        out = self.model(tensor(x))
        loss = F.cross_entropy(out, tensor(y))
        value = float(loss.data)
        if not math.isfinite(value):
            self.playing = False
            self.outbox.put({"type": "error", "field": "lr",
                             "message": f"the network diverged: the training loss became "
                                        f"{value} at step {self.step_count + 1}: lower the "
                                        "learning rate and press reset"})
            return False
        loss.backward()
        self.optimizer.step()
        self.step_count += 1
        a = self._acc
        a[0] += value * len(y)
        a[1] += float((xp.argmax(out.data, axis=1) == y).sum())
        a[2] += len(y)
        return True

    def _curve_point(self):
        a = self._acc
        if a[2]:
            p = [self.step_count, round(a[0] / a[2], 5), round(a[1] / a[2], 5)]
            self._acc = [0.0, 0.0, 0]
            self.train_points.append(p)
            self._unsent_train.append(p)
            del self.train_points[:-MAX_POINTS]

    def _evaluate_test(self):
        x_all, y_all = self.data["test_x"][:TEST_SIZE], self.data["test_y"][:TEST_SIZE]
        loss_sum, correct = 0.0, 0
        with inspecting(self.model), no_grad():
            for i in range(0, len(y_all), 250):
                x, y = self._inputs(x_all[i:i + 250]), y_all[i:i + 250]
                out = self.model(tensor(x))
                loss_sum += float(F.cross_entropy(out, tensor(y)).data) * len(y)
                correct += int((xp.argmax(out.data, axis=1) == y).sum())
        p = [self.step_count, round(loss_sum / len(y_all), 5), round(correct / len(y_all), 5)]
        if (self.test_points and self.test_points[-1][0] == self.step_count) \
                or not math.isfinite(p[1]):
            return
        self.test_points.append(p)
        self._unsent_test.append(p)
        del self.test_points[:-MAX_POINTS]

    # -- frames
    def _picture(self):
        """(raw (1, 28, 28) in [0, 1], the model's input, label or None)."""
        if self.selected is None:
            raw = self.drawn
            label = None
        else:
            raw = self.data["test_x"][self.selected][None].astype(xp.float32) / 255
            label = int(self.data["test_y"][self.selected])
        x = self.transform(raw[None], None)[0] if self.transform is not None else raw
        return raw, x, label

    def _gradients(self, x, target):
        """(probabilities, loss, {layer: d loss / d output (C, H, W)}) of one input."""
        outs = {}
        handles = []
        for name in self.layers:
            def hook(m, args, out, _name=name):
                if isinstance(out, Tensor) and out.requires_grad:
                    out.retain_grad()
                outs[_name] = out
            handles.append(get_layer(self.model, name).register_forward_hook(hook))
        try:
            with inspecting(self.model), enable_grad():
                xt = tensor(x[None], requires_grad=True)
                logits = self.model(xt)
                scores = logits.data[0].astype(xp.float64)
                if target is None:
                    target = int(xp.argmax(scores))
                loss = F.cross_entropy(logits, tensor(xp.asarray([target], dtype=xp.int64)))
                loss.backward()
        finally:
            for h in handles:
                h.remove()
        if not bool(xp.isfinite(scores).all()):  # a diverged network: no distribution
            scores = xp.zeros_like(scores)
        e = xp.exp(scores - scores.max())
        grads = {}
        for name, out in outs.items():
            if isinstance(out, Tensor) and out.ndim == 4:
                g = out.grad.data[0] if out.grad is not None else xp.zeros(out.shape[1:])
                grads[name] = g
        value = float(loss.data)
        return e / e.sum(), value if math.isfinite(value) else None, grads

    def _frame(self) -> dict:
        raw, x, label = self._picture()
        probs, loss, grads = self._gradients(x, label)
        maps = activations(self.model, x)
        layers = []
        for name, a in maps.items():
            module = get_layer(self.model, name)
            data, scale = _signed(a)
            g = grads.get(name)
            gdata, gscale = _signed(g) if g is not None else (None, 0.0)
            layers.append({"name": name, "type": type(module).__name__,
                           "shape": list(a.shape), "scale": scale, "data": data,
                           "grad": gdata, "grad_scale": gscale})
        name, conv = self.first_conv
        kdata, kscale = _signed(conv.weight.data)
        cam = gradcam(self.model, x, self.last_conv)
        epoch = self.step_count * min(self.config["batch_size"], len(self.train_index)) \
            / len(self.train_index)
        frame = {"type": "frame", "step": self.step_count, "epoch": round(epoch, 3),
                 "playing": self.playing,
                 "model": self.run.config["model"] if self.run is not None
                 else self.config["model"],
                 "run": describe_run(self.run) if self.run is not None else None,
                 "config": dict(self.config),
                 "image": {"index": self.selected, "label": label, "data": _unit(raw)},
                 "pred": int(xp.argmax(probs)), "probs": [round(float(p), 5) for p in probs],
                 "loss": None if loss is None else round(loss, 5),
                 "kernels": {"layer": name, "shape": list(conv.weight.shape), "scale": kscale,
                             "data": kdata},
                 "layers": layers,
                 "gradcam": {"layer": self.last_conv, "data": _unit(cam)},
                 "train": self._unsent_train, "test": self._unsent_test,
                 "reset": self._reset_pending}
        self._unsent_train, self._unsent_test = [], []
        self._reset_pending = False
        return frame

    def _send_frame(self):
        self.outbox.put_frame(self._frame())

    # -- commands
    def _handle(self, cmd: dict):
        kind = cmd["type"]
        if kind == "play":
            if self.step_count >= MAX_STEPS:
                self.outbox.put({"type": "error", "field": None,
                                 "message": f"this session has trained its {MAX_STEPS} steps; "
                                            "press reset to train a new network"})
                return
            self.playing = True
            self._last_test = time.monotonic()
        elif kind == "pause":
            self.playing = False
            self._curve_point()
            self._evaluate_test()
            self._send_frame()
        elif kind == "step":
            self.playing = False
            for _ in range(min(cmd["n"], MAX_STEPS - self.step_count)):
                if self.stopping.is_set() or not self._train_step():
                    break
            self._curve_point()
            self._evaluate_test()
            self._send_frame()
        elif kind == "reset":
            self.playing = False
            self._build()
            self._evaluate_test()
            self._send_frame()
        elif kind == "configure":
            changes = {k: v for k, v in cmd.items() if k != "type" and self.config.get(k) != v}
            self.config.update(changes)
            rebuild = {"model", "optimizer", "train_size", "seed"} & set(changes)
            if "model" in cmd and self.run is not None:
                self.run, rebuild = None, True  # a chosen model replaces a loaded run
            if rebuild:
                self.playing = False
                self._build()
                self._evaluate_test()
            elif "lr" in changes:
                for group in self.optimizer.param_groups:
                    group["lr"] = self.config["lr"]
            self._send_frame()
        elif kind == "select":
            self.selected = cmd["index"]
            self._send_frame()
        elif kind == "image":
            self.selected, self.drawn = None, cmd["image"]
            self._send_frame()
        elif kind == "load_run":
            try:
                run = open_run(cmd["path"], cmd["checkpoint"])
            except CnnInputError as exc:
                self.outbox.put({"type": "error", "message": str(exc), "field": exc.field})
                return
            self.playing = False
            if run.config["model"] in MODELS:
                self.config["model"] = run.config["model"]
            self._build(run)
            self._evaluate_test()
            self.outbox.put({"type": "status", "run": describe_run(self.run),
                             "message": f"loaded {self.run.config['model']} from "
                                        f"{self.run.run_dir} ({self.run.checkpoint} weights, "
                                        f"epoch {self.run.epoch}); play continues training it "
                                        "here (the directory is not written)"})
            self._send_frame()
        elif kind == "frame":
            self._send_frame()

    def hello(self) -> dict:
        data = self.data
        strip = [{"index": i, "label": int(data["test_y"][i]), "data": _b64(data["test_x"][i])}
                 for i in range(STRIP_SIZE)]
        return {"type": "hello", "options": options(), "classes": self.classes,
                "config": dict(self.config), "strip": strip}

    # -- the loop
    def _main(self):
        try:
            self._build()
            self.outbox.put(self.hello())
            self._evaluate_test()
            self._send_frame()
            last_frame = time.monotonic()
            self._last_test = last_frame
            window_start, window_steps = last_frame, 0
            while not self.stopping.is_set():
                try:
                    cmd = self.commands.get(timeout=0.0 if self.playing else 0.2)
                except queue.Empty:
                    cmd = None
                if self.stopping.is_set():
                    break
                if cmd is not None:
                    self._handle_safely(cmd)
                    last_frame = time.monotonic()
                    continue
                if not self.playing:
                    continue
                if self.step_count >= MAX_STEPS:
                    self.playing = False
                    self.outbox.put({"type": "status",
                                     "message": f"paused after {MAX_STEPS} steps, the "
                                                "session's limit; reset to train again"})
                    self._curve_point()
                    self._evaluate_test()
                    self._send_frame()
                    continue
                try:
                    self._train_step()
                except ArithmeticError as exc:
                    self._diverged(exc)
                    continue
                now = time.monotonic()
                window_steps += 1
                if now - window_start >= 1.0:
                    window_start, window_steps = now, 0
                elif window_steps >= MAX_STEPS_PER_SECOND:
                    self.stopping.wait(max(0.0, 1.0 - (now - window_start)))
                    window_start, window_steps = time.monotonic(), 0
                if now - last_frame >= 1.0 / FPS or not self.playing:
                    self._curve_point()
                    try:
                        if now - self._last_test >= TEST_EVERY_S or not self.playing:
                            self._evaluate_test()
                            self._last_test = now
                        self._send_frame()
                    except ArithmeticError as exc:
                        self._diverged(exc)
                    last_frame = time.monotonic()
        except DatasetError as exc:
            self.outbox.put({"type": "error", "field": None,
                             "message": f"the training data cannot be read: {exc}"})
        except Exception as exc:  # the session ends with a sentence, the server goes on
            log.exception("a CNN-view session failed")
            self.outbox.put({"type": "error", "field": None,
                             "message": f"the session stopped: {type(exc).__name__}: {exc}"})
        finally:
            self.playing = False
            with _LIVE_LOCK:
                _LIVE.discard(self)

    def _handle_safely(self, cmd):
        try:
            self._handle(cmd)
        except (VisualError, CnnInputError, DatasetError) as exc:
            self.outbox.put({"type": "error", "message": str(exc),
                             "field": getattr(exc, "field", None)})
        except ArithmeticError as exc:
            self._diverged(exc)

    def _diverged(self, exc):
        """The numbers overflowed (a learning rate too large): pause and say so; the session
        goes on (reset gives a new network)."""
        self.playing = False
        self.outbox.put({"type": "error", "field": "lr",
                         "message": f"the network diverged at step {self.step_count} "
                                    f"({type(exc).__name__}: {exc}): lower the learning rate "
                                    "and press reset"})


# ------------------------------------------------------------------------ the registry
_LOCAL_REGISTRIES: dict = {}


def _registry(app):
    """The app's shared session registry (``app.state.sessions``, ``playground.limits.
    SessionRegistry``: ``acquire(kind)`` -> a token, or None when full; ``release(token)``),
    else one of this module's (an app built without ``create_app``), with the limit
    ``app.state.max_sessions`` (default 8)."""
    state = getattr(app, "state", None)
    reg = getattr(state, "sessions", None)
    if reg is not None and hasattr(reg, "acquire") and hasattr(reg, "release"):
        return reg
    key = id(app)
    if key not in _LOCAL_REGISTRIES:
        _LOCAL_REGISTRIES[key] = SessionRegistry(int(getattr(state, "max_sessions", 8) or 8))
    return _LOCAL_REGISTRIES[key]


def _limit(app) -> int:
    state = getattr(app, "state", None)
    return int(getattr(state, "max_sessions", 8) or 8)


# ------------------------------------------------------------------------------- routes
def options() -> dict:
    return {"models": {k: MODEL_TITLES[k] for k in MODELS}, "optimizers": OPTIMIZERS,
            "defaults": DEFAULTS, "limits": LIMITS}


def _error(exc: CnnInputError) -> JSONResponse:
    return JSONResponse({"error": str(exc), "field": exc.field}, status_code=exc.status)


async def page(request: Request):
    return FileResponse(STATIC / "cnn.html", media_type="text/html")


async def static_file(request: Request):
    name = request.path_params["name"]
    if name not in STATIC_FILES:
        return JSONResponse({"error": f"no file {name!r} here; the CNN view serves "
                                      f"{', '.join(STATIC_FILES)}"}, status_code=404)
    return FileResponse(STATIC / name, media_type=STATIC_FILES[name])


async def api_options(request: Request):
    return JSONResponse(options())


async def _read_body(request: Request, limit: int) -> bytes:
    return await read_body(request, limit, "upload", CnnInputError)


async def api_image(request: Request):
    try:
        data = await _read_body(request, MAX_UPLOAD_BYTES)
        return JSONResponse(await run_in_threadpool(image_from_upload, data))
    except CnnInputError as exc:
        return _error(exc)


async def api_run(request: Request):
    try:
        body = await _read_body(request, MAX_MESSAGE_BYTES)
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CnnInputError("the body must be a JSON object {\"path\": RUN_DIR}") from None
        if not isinstance(doc, dict):
            raise CnnInputError("the body must be a JSON object {\"path\": RUN_DIR}")
        extra = sorted(set(doc) - {"path", "checkpoint"})
        if extra:
            raise CnnInputError(f"unknown field {extra[0]!r}; send path and checkpoint",
                                extra[0])
        run = await run_in_threadpool(open_run, doc.get("path"), doc.get("checkpoint", "best"))
        return JSONResponse(describe_run(run))
    except CnnInputError as exc:
        return _error(exc)


async def _sender(websocket: WebSocket, outbox: Outbox):
    while True:
        await outbox.event.wait()
        outbox.event.clear()
        for msg in outbox.drain():
            try:
                text = json.dumps(msg, separators=(",", ":"), allow_nan=False)
            except ValueError:  # a non-finite number left in a message: say so instead
                text = json.dumps({"type": "error", "field": None, "message":
                                   f"a {msg.get('type')} message held a non-finite number "
                                   "(the network diverged?): lower the learning rate and reset"})
            await websocket.send_text(text)
            if msg.get("type") == "frame":
                outbox.sent_frames += 1


async def socket(websocket: WebSocket):
    await websocket.accept()
    registry = _registry(websocket.app)
    try:
        token = registry.acquire("cnn")
    except Exception as exc:  # a registry that refuses by raising
        token, reason = None, str(exc)
    else:
        reason = None
    if token is None:
        if reason is None and hasattr(registry, "refusal"):
            reason = registry.refusal()
        await websocket.send_text(json.dumps({
            "type": "error", "field": None,
            "message": reason or f"the server runs {_limit(websocket.app)} training sessions "
                                 "already, its limit: close another Playground tab and reload"}))
        await websocket.close(code=1013)
        return
    outbox = Outbox(asyncio.get_running_loop())
    session = CnnSession(outbox)
    session.start()
    sender = asyncio.create_task(_sender(websocket, outbox))
    try:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                break
            text = msg.get("text")
            if text is None:
                outbox.put({"type": "error", "field": None,
                            "message": "send JSON text messages, not binary ones"})
                continue
            if len(text) > MAX_MESSAGE_BYTES:
                outbox.put({"type": "error", "field": None,
                            "message": f"a message is at most {MAX_MESSAGE_BYTES} bytes; this "
                                       f"one has {len(text)}"})
                continue
            try:
                try:
                    doc = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise CnnInputError(f"the message is not JSON ({exc.msg} at character "
                                        f"{exc.pos})") from None
                command = check_command(doc)
            except CnnInputError as exc:
                outbox.put({"type": "error", "message": str(exc), "field": exc.field})
                continue
            if not session.submit(command):
                outbox.put({"type": "error", "field": None,
                            "message": f"{MAX_QUEUED} messages are waiting for the session "
                                       "already; wait for its frames"})
            if sender.done():
                break
    except Exception:  # a broken connection ends the session like a close
        log.debug("a CNN-view socket ended", exc_info=True)
    finally:
        session.stop()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        registry.release(token)
        await run_in_threadpool(session.join, 10.0)


def routes() -> list:
    """The CNN view's Starlette routes, all under ``/cnn``."""
    return [Route("/cnn", page, methods=["GET"]),
            Route("/cnn/static/{name}", static_file, methods=["GET"]),
            Route("/cnn/api/options", api_options, methods=["GET"]),
            Route("/cnn/api/image", api_image, methods=["POST"]),
            Route("/cnn/api/run", api_run, methods=["POST"]),
            WebSocketRoute("/cnn/ws", socket)]
