"""One Playground training session: the state, the data, the network, its steps and its frames.

The state is a flat JSON object (the page keeps it in its URL hash too); ``check_state`` checks
every key and ``DEFAULT_STATE`` holds TensorFlow Playground's defaults. ``Session`` is used from
one thread at a time (the server's runner for that socket):

- ``configure(changes)``: new settings; a change of the data (data set, noise, ratio, seed, CSV)
  regenerates the points, a change of the network (features, layers, activations, init,
  problem, steepness, output) builds a new one, the others (learning rate, batch size,
  regularisation, dropout, optimizer, speed, stop condition) apply from the next step;
- ``train(updates, budget_s)``: at most ``updates`` gradient steps and ``budget_s`` seconds;
- ``epoch_step()``: one epoch (TensorFlow Playground's "step" button);
- ``frame()``: the heat map of the output over the input square, every neuron's thumbnail, the
  weights and biases, train and test loss, accuracy and the confusion matrix;
- ``set_weight``, ``reset(same)``, ``export(fmt)``, ``predict(points)``.

The network is a ``fv.nn.Sequential`` of ``Linear``, activation and ``Dropout`` layers whose
input is the feature vector (X1, X2, X1^2, ... as chosen) and whose output is TensorFlow
Playground's: ``tanh`` for two classes (targets -1 / +1, loss 0.5 (out - target)^2), linear for
regression (loss 0.5 (out - target)^2), and for three classes or more (an uploaded table)
``K`` logits trained with softmax + cross-entropy.

Limits (each session's memory and compute): at most ``MAX_LAYERS`` hidden layers of
``MAX_NEURONS`` neurons, batches of at most ``MAX_BATCH``, at most ``MAX_POINTS`` points,
``MAX_UPDATES_PER_SECOND`` gradient steps a second, ``MAX_STEPS`` steps before it pauses.
"""
from __future__ import annotations

import base64
import json
import math
import time

from ..autograd import no_grad
from ..backend import xp
from ..data.toy import make_toy
from ..nn import Dropout, Identity, Linear, ReLU, Sequential, Sigmoid, Tanh, init
from ..nn import functional as F
from ..ops import tensor
from ..optim import SGD, Adam, l1_penalty, l2_penalty
from ..random import Generator

__all__ = ["Session", "PlaygroundInputError", "check_state", "check_changes", "DEFAULT_STATE",
           "LIMITS", "OPTIONS", "features_of", "Table"]

# ---------------------------------------------------------------------------- the choices
LEARNING_RATES = (0.00001, 0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10)
REG_RATES = (0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10)
SPEEDS = (1, 3, 10, 30, 60, 120, 300)      # epochs a second while playing
FEATURES = {"x1": "X1", "x2": "X2", "x1sq": "X1^2", "x2sq": "X2^2", "x1x2": "X1X2",
            "sinx1": "sin(X1)", "sinx2": "sin(X2)"}
ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
CLASSIFICATION_SETS = ("circle", "xor", "gauss", "spiral")
REGRESSION_SETS = ("plane", "multigauss")
DATASETS = CLASSIFICATION_SETS + REGRESSION_SETS + ("csv",)
TOY_NAMES = {"circle": "circle", "xor": "xor", "gauss": "gauss", "spiral": "spiral",
             "plane": "reg-plane", "multigauss": "reg-gauss"}
OPTIMIZERS = ("sgd", "momentum", "adam")
INITS = ("playground", "xavier", "he", "normal")
REGULARIZATIONS = ("none", "l1", "l2")
PROBLEMS = ("classification", "regression")

# ----------------------------------------------------------------------------- the limits
MAX_LAYERS = 6
MAX_NEURONS = 8
MAX_BATCH = 30
MAX_POINTS = 5000              # points of a data set (the toy sets have 500 / 1200)
MAX_CLASSES = 8
MAX_UPDATES_PER_SECOND = 20000
MAX_STEPS = 5_000_000          # gradient steps before a session pauses (reset starts again)
MAX_PREDICT_POINTS = 5000
SEED_MAX = 2**31 - 1
GRID = 50                      # the output heat map: GRID x GRID points of the input square
THUMB = 25                     # a neuron's thumbnail: THUMB x THUMB (every second grid point)
DOMAIN = 6.0                   # the input square is [-DOMAIN, DOMAIN]^2, as Playground's
TOY_POINTS = {"classification": 500, "regression": 1200}
LIMITS = {"max_layers": MAX_LAYERS, "max_neurons": MAX_NEURONS, "max_batch": MAX_BATCH,
          "max_points": MAX_POINTS, "max_classes": MAX_CLASSES,
          "max_updates_per_second": MAX_UPDATES_PER_SECOND, "max_steps": MAX_STEPS,
          "max_predict_points": MAX_PREDICT_POINTS, "grid": GRID, "thumb": THUMB,
          "domain": DOMAIN}

DEFAULT_STATE = {
    "dataset": "circle", "problem": "classification", "noise": 0, "ratio": 50, "seed": 0,
    "features": ["x1", "x2"], "layers": [4, 2], "activation": "tanh", "acts": None,
    "sigma": 1.0, "lr": 0.03, "reg": "none", "reg_rate": 0.0, "batch": 10,
    "optimizer": "sgd", "init": "playground", "init_seed": 0, "dropout": 0.0,
    "speed": 60, "stop_loss": 0.0, "stop_epochs": 0, "csv": None,
    "discretize": False, "show_test": False,
}
DATA_KEYS = ("dataset", "noise", "ratio", "seed", "csv")
NET_KEYS = ("problem", "features", "layers", "activation", "acts", "sigma", "init", "init_seed")
OPTIONS = {"learning_rates": LEARNING_RATES, "reg_rates": REG_RATES, "speeds": SPEEDS,
           "features": FEATURES, "activations": ACTIVATIONS, "datasets": DATASETS,
           "classification_sets": CLASSIFICATION_SETS, "regression_sets": REGRESSION_SETS,
           "optimizers": OPTIMIZERS, "inits": INITS, "regularizations": REGULARIZATIONS,
           "problems": PROBLEMS}


class PlaygroundInputError(ValueError):
    """An input the Playground refuses: ``field`` names it, ``status`` is the HTTP code."""

    def __init__(self, message: str, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.field = field
        self.status = status


# ----------------------------------------------------------------------------- validation
def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _number(key, v, low, high, integer=False):
    kind = "an integer" if integer else "a number"
    ok = _is_number(v) and math.isfinite(v) and low <= v <= high
    if ok and integer and not float(v).is_integer():
        ok = False
    if not ok:
        raise PlaygroundInputError(f"{key} must be {kind} from {low:g} to {high:g}, got {v!r}",
                                   key)
    return int(v) if integer else float(v)


def _choice(key, v, choices):
    if not isinstance(v, str) or v not in choices:
        raise PlaygroundInputError(f"{key} must be one of {', '.join(choices)}, got {v!r}", key)
    return v


def _bool(key, v):
    if not isinstance(v, bool):
        raise PlaygroundInputError(f"{key} must be true or false, got {v!r}", key)
    return v


def _check_layers(v):
    if not isinstance(v, list) or len(v) > MAX_LAYERS:
        raise PlaygroundInputError(f"layers must be a list of at most {MAX_LAYERS} neuron "
                                   f"counts, got {v!r}", "layers")
    return [_number("layers", n, 1, MAX_NEURONS, integer=True) for n in v]


def _check_features(v):
    if not isinstance(v, list) or not v:
        raise PlaygroundInputError("features must be a non-empty list of "
                                   f"{', '.join(FEATURES)}, got {v!r}", "features")
    out = []
    for f in v:
        _choice("features", f, list(FEATURES))
        if f not in out:
            out.append(f)
    return [f for f in FEATURES if f in out]  # a fixed order: the network's inputs


def _check_acts(v):
    if v is None:
        return None
    if not isinstance(v, list) or len(v) > MAX_LAYERS:
        raise PlaygroundInputError(f"acts must be null or a list of at most {MAX_LAYERS} "
                                   f"activations ({', '.join(ACTIVATIONS)})", "acts")
    return [_choice("acts", a, ACTIVATIONS) for a in v]


def _check_csv(v):
    if v is None:
        return None
    if not isinstance(v, dict):
        raise PlaygroundInputError("csv must be an object {id, label, x1, x2}", "csv")
    extra = sorted(set(v) - {"id", "label", "x1", "x2"})
    if extra:
        raise PlaygroundInputError(f"csv has no field {extra[0]!r}; its fields are id, label, "
                                   "x1, x2", "csv")
    if not isinstance(v.get("id"), str) or not 1 <= len(v["id"]) <= 64:
        raise PlaygroundInputError("csv.id must be the id the upload answered", "csv")
    out = {"id": v["id"]}
    for k in ("label", "x1", "x2"):
        c = v.get(k)
        if c is not None and (not isinstance(c, str) or len(c) > 200):
            raise PlaygroundInputError(f"csv.{k} must be a column name of the table", "csv")
        out[k] = c
    return out


_CHECKS = {
    "dataset": lambda v: _choice("dataset", v, DATASETS),
    "problem": lambda v: _choice("problem", v, PROBLEMS),
    "noise": lambda v: _number("noise", v, 0, 50, integer=True),
    "ratio": lambda v: _number("ratio", v, 10, 90, integer=True),
    "seed": lambda v: _number("seed", v, 0, SEED_MAX, integer=True),
    "features": _check_features,
    "layers": _check_layers,
    "activation": lambda v: _choice("activation", v, ACTIVATIONS),
    "acts": _check_acts,
    "sigma": lambda v: _number("sigma", v, 0.1, 10),
    "lr": lambda v: _number("lr", v, 0.00001, 10),
    "reg": lambda v: _choice("reg", v, REGULARIZATIONS),
    "reg_rate": lambda v: _number("reg_rate", v, 0, 10),
    "batch": lambda v: _number("batch", v, 1, MAX_BATCH, integer=True),
    "optimizer": lambda v: _choice("optimizer", v, OPTIMIZERS),
    "init": lambda v: _choice("init", v, INITS),
    "init_seed": lambda v: _number("init_seed", v, 0, SEED_MAX, integer=True),
    "dropout": lambda v: _number("dropout", v, 0, 0.9),
    "speed": lambda v: _number("speed", v, 1, max(SPEEDS), integer=True),
    "stop_loss": lambda v: _number("stop_loss", v, 0, 10),
    "stop_epochs": lambda v: _number("stop_epochs", v, 0, 1_000_000, integer=True),
    "csv": _check_csv,
    "discretize": lambda v: _bool("discretize", v),
    "show_test": lambda v: _bool("show_test", v),
}


def check_changes(doc) -> dict:
    """Some settings (a JSON object), each checked; PlaygroundInputError names the first bad one."""
    if not isinstance(doc, dict):
        raise PlaygroundInputError("the settings must be a JSON object", "state")
    unknown = sorted(set(doc) - set(_CHECKS))
    if unknown:
        raise PlaygroundInputError(f"unknown setting {unknown[0]!r}; the settings are "
                                   f"{', '.join(_CHECKS)}", unknown[0])
    return {k: _CHECKS[k](v) for k, v in doc.items()}


def check_state(doc, base: dict | None = None) -> dict:
    """``base`` (default DEFAULT_STATE) updated with the checked ``doc``, then checked as a whole:
    the problem type matches the data set, ``acts`` has one entry per layer."""
    state = dict(DEFAULT_STATE if base is None else base)
    state.update(check_changes(doc))
    ds = state["dataset"]
    if "dataset" in doc and ds != "csv" and "problem" not in doc:
        state["problem"] = "regression" if ds in REGRESSION_SETS else "classification"
    if ds in CLASSIFICATION_SETS and state["problem"] != "classification":
        raise PlaygroundInputError(f"the data set {ds} is a classification set; choose plane "
                                   "or multigauss for regression", "problem")
    if ds in REGRESSION_SETS and state["problem"] != "regression":
        raise PlaygroundInputError(f"the data set {ds} is a regression set; choose circle, "
                                   "xor, gauss or spiral for classification", "problem")
    if ds == "csv" and state["csv"] is None:
        raise PlaygroundInputError("the data set csv needs an uploaded table (csv.id)", "csv")
    acts = state["acts"]
    if acts is not None:
        n = len(state["layers"])
        acts = (acts + [state["activation"]] * n)[:n]
        state["acts"] = acts if any(a != state["activation"] for a in acts) else None
    return state


def features_of(points, names):
    """The network's input for ``points`` ((n, 2) raw coordinates): the chosen features."""
    x1, x2 = points[:, 0], points[:, 1]
    table = {"x1": lambda: x1, "x2": lambda: x2, "x1sq": lambda: x1 * x1,
             "x2sq": lambda: x2 * x2, "x1x2": lambda: x1 * x2, "sinx1": lambda: xp.sin(x1),
             "sinx2": lambda: xp.sin(x2)}
    return xp.stack([table[n]() for n in names], axis=1).astype(xp.float32)


# --------------------------------------------------------------------------------- tables
class Table:
    """An uploaded numeric table: ``columns`` (names) and ``values`` (rows x columns, float64)."""

    def __init__(self, columns, values, filename=""):
        self.columns = list(columns)
        self.values = values
        self.filename = filename

    def column(self, name, field="csv"):
        if name not in self.columns:
            raise PlaygroundInputError(f"the table has no column {name!r}; its columns are "
                                       f"{', '.join(self.columns)}", field)
        return self.values[:, self.columns.index(name)]

    def describe(self) -> dict:
        return {"columns": self.columns, "rows": int(self.values.shape[0]),
                "filename": self.filename}


def _encode(arr) -> str:
    return base64.b64encode(xp.ascontiguousarray(arr, dtype=xp.uint8).tobytes()).decode("ascii")


def _signed_bytes(values):
    """Values in [-1, 1] (clipped) as bytes 0..255 (127.5 is 0)."""
    return xp.rint((xp.clip(values, -1, 1) + 1) * 127.5).astype(xp.uint8)


# -------------------------------------------------------------------------------- session
class Session:
    """One isolated training session (one browser tab). ``tables`` maps upload ids to Tables."""

    def __init__(self, state: dict | None = None, tables=None):
        self.tables = tables if tables is not None else {}
        self.state = check_state({}) if state is None else check_state(state)
        self.playing = False
        self.steps = 0
        self.samples = 0
        self.history: list = []
        self._carry = 0.0
        self._grid_points = self._grid()
        self._load_data()
        self._build()

    # ------------------------------------------------------------------------ the data
    @staticmethod
    def _grid():
        c = (xp.arange(GRID) + 0.5) / GRID * 2 * DOMAIN - DOMAIN
        gx, gy = xp.meshgrid(c, -c)  # row 0 is the top (x2 = +DOMAIN)
        return xp.stack([gx.ravel(), gy.ravel()], axis=1)

    def _load_data(self):
        st = self.state
        if st["dataset"] == "csv":
            points, target, classes, info = self._csv_data()
        else:
            problem = st["problem"]
            points, target = make_toy(TOY_NAMES[st["dataset"]], n=TOY_POINTS[problem],
                                      noise=st["noise"] / 100, seed=st["seed"])
            classes = 2 if problem == "classification" else 0
            info = {"name": st["dataset"]}
        n = len(points)
        n_train = max(1, min(n - 1, int(round(n * st["ratio"] / 100))))
        self.points = points.astype(xp.float64)
        self.target = target
        self.num_classes = classes
        self.data_info = info
        self.train_idx = xp.arange(n_train)
        self.test_idx = xp.arange(n_train, n)
        self._order_rng = xp.random.default_rng(st["seed"] + 1)
        self._order = self._order_rng.permutation(n_train)
        self._pos = 0
        self._data_version = getattr(self, "_data_version", 0) + 1

    def _csv_data(self):
        st = self.state
        spec = st["csv"]
        table = self.tables.get(spec["id"])
        if table is None:
            raise PlaygroundInputError("the uploaded table is no longer on the server (it keeps "
                                       "the latest uploads only, and not across restarts): "
                                       "upload the file again", "csv")
        cols = table.columns
        label = spec.get("label") or cols[-1]
        inputs = [c for c in cols if c != label]
        x1 = spec.get("x1") or (inputs[0] if inputs else None)
        x2 = spec.get("x2") or (inputs[1] if len(inputs) > 1 else x1)
        if x1 is None:
            raise PlaygroundInputError("the table needs a column besides the label", "csv")
        for name in (x1, x2):
            if name == label:
                raise PlaygroundInputError(f"the column {name!r} is the label; choose other "
                                           "input columns", "csv")
        y = table.column(label)
        a, b = table.column(x1), table.column(x2)

        def scale(v):  # into [-5, 5] of the [-6, 6] square
            lo, hi = float(v.min()), float(v.max())
            mid, half = (lo + hi) / 2, (hi - lo) / 2 or 1.0
            return (v - mid) / half * 5.0, (mid, half)

        (sa, ka), (sb, kb) = scale(a), scale(b)
        points = xp.stack([sa, sb], axis=1)
        info = {"name": "csv", "label": label, "x1": x1, "x2": x2,
                "scale": [[ka[0], ka[1] / 5.0], [kb[0], kb[1] / 5.0]], "rows": len(y)}
        if st["problem"] == "classification":
            values = sorted(set(y.tolist()))
            if len(values) > MAX_CLASSES:
                raise PlaygroundInputError(f"the label column {label!r} has {len(values)} "
                                           f"distinct values; classification takes at most "
                                           f"{MAX_CLASSES} classes (choose regression)", "problem")
            if len(values) < 2:
                raise PlaygroundInputError(f"the label column {label!r} has one value only; "
                                           "classification needs two classes", "csv")
            lookup = {v: i for i, v in enumerate(values)}
            target = xp.array([lookup[v] for v in y.tolist()], dtype=xp.int64)
            info["class_values"] = [float(v) for v in values]
            classes = len(values)
        else:
            lo, hi = float(y.min()), float(y.max())
            mid, half = (lo + hi) / 2, (hi - lo) / 2 or 1.0
            target = ((y - mid) / half).astype(xp.float32)
            info["target_scale"] = [mid, half]
            classes = 0
        # a seeded shuffle, so that the train/test split mixes the table's rows
        perm = xp.random.default_rng(st["seed"]).permutation(len(y))
        return points[perm], target[perm], classes, info

    # --------------------------------------------------------------------- the network
    @property
    def outputs(self) -> int:
        return self.num_classes if self.num_classes > 2 else 1

    def layer_acts(self) -> list:
        st = self.state
        return st["acts"] if st["acts"] is not None else [st["activation"]] * len(st["layers"])

    def _activation(self, name):
        if name == "relu":
            return ReLU()
        if name == "tanh":
            return Tanh()
        if name == "sigmoid":
            return Sigmoid(sigma=self.state["sigma"])
        return Identity()

    def _build(self):
        st = self.state
        gen = Generator(st["init_seed"])
        sizes = [len(st["features"])] + list(st["layers"]) + [self.outputs]
        acts = self.layer_acts()
        mods, self.linears, self.neuron_layers = [], [], []
        self.dropouts = []
        for i in range(len(sizes) - 1):
            lin = Linear(sizes[i], sizes[i + 1])
            self._init(lin, gen)
            mods.append(lin)
            self.linears.append(lin)
            if i < len(sizes) - 2:
                mods.append(self._activation(acts[i]))
                self.neuron_layers.append(len(mods) - 1)
                drop = Dropout(st["dropout"], generator=Generator(st["init_seed"] + 7 + i))
                mods.append(drop)
                self.dropouts.append(drop)
        if self.outputs == 1 and st["problem"] == "classification":
            mods.append(Tanh())
        self.model = Sequential(*mods)
        self._make_optimizer()
        self.steps = 0
        self.samples = 0
        self.history = []
        self._carry = 0.0

    def _init(self, lin, gen):
        kind = self.state["init"]
        if kind == "playground":  # Playground: weights uniform in (-0.5, 0.5), biases 0.1
            init.uniform_(lin.weight, -0.5, 0.5, generator=gen)
            init.constant_(lin.bias, 0.1)
        elif kind == "xavier":
            init.xavier_uniform_(lin.weight, generator=gen)
            init.zeros_(lin.bias)
        elif kind == "he":
            init.kaiming_normal_(lin.weight, nonlinearity="relu", generator=gen)
            init.zeros_(lin.bias)
        else:
            init.normal_(lin.weight, 0.0, 0.1, generator=gen)
            init.zeros_(lin.bias)

    def _make_optimizer(self):
        st = self.state
        params = list(self.model.parameters())
        if st["optimizer"] == "adam":
            self.optimizer = Adam(params, lr=st["lr"])
        else:
            self.optimizer = SGD(params, lr=st["lr"],
                                 momentum=0.9 if st["optimizer"] == "momentum" else 0.0)

    # ---------------------------------------------------------------------- changes
    def configure(self, changes: dict) -> dict:
        """Apply checked settings; returns the new state. Nothing changes when they are bad."""
        new = check_state(changes, base=self.state)
        old = self.state
        data_changed = any(new[k] != old[k] for k in DATA_KEYS) or new["problem"] != old["problem"]
        net_changed = data_changed or any(new[k] != old[k] for k in NET_KEYS)
        snapshot = dict(self.__dict__)  # the data and the network, kept if the change fails
        self.state = new
        try:
            if data_changed:
                self._load_data()
            if net_changed:
                self._build()
                return new
        except PlaygroundInputError:
            self.__dict__.clear()
            self.__dict__.update(snapshot)
            raise
        if new["optimizer"] != old["optimizer"]:
            self._make_optimizer()
        for group in self.optimizer.param_groups:
            group["lr"] = new["lr"]
        for d in self.dropouts:
            d.p = new["dropout"]
        return new

    def reset(self, same: bool = True) -> dict:
        """A new network: the same initial weights (same=True) or the next init seed."""
        if not same:
            self.state = dict(self.state, init_seed=(self.state["init_seed"] + 1) % SEED_MAX)
        self._build()
        return self.state

    def regenerate(self) -> dict:
        """New points (the next data seed) and a new network, as Playground's button."""
        return self.configure({"seed": (self.state["seed"] + 1) % SEED_MAX})

    def set_weight(self, layer, to, source, value):
        """Weight ``layer`` (0 = features -> first layer) from neuron ``source`` (or the bias,
        ``source`` = "bias") into neuron ``to``; checked against the network's shape."""
        _number("layer", layer, 0, len(self.linears) - 1, integer=True)
        lin = self.linears[int(layer)]
        out_n, in_n = lin.weight.shape
        _number("to", to, 0, out_n - 1, integer=True)
        value = _number("value", value, -100, 100)
        if source == "bias":
            lin.bias.data[int(to)] = value
        else:
            _number("from", source, 0, in_n - 1, integer=True)
            lin.weight.data[int(to), int(source)] = value

    # ---------------------------------------------------------------------- training
    @property
    def n_train(self) -> int:
        return len(self.train_idx)

    @property
    def epoch(self) -> int:
        return self.samples // max(1, self.n_train)

    def _loss(self, out, target):
        if self.outputs > 1:
            return F.cross_entropy(out, target)
        diff = out - target
        return (diff * diff).mean() * 0.5

    def _targets(self, idx):
        t = self.target[idx]
        if self.outputs > 1:
            return t
        if self.state["problem"] == "classification":
            return (t.astype(xp.float32) * 2 - 1).reshape(-1, 1)
        return t.astype(xp.float32).reshape(-1, 1)

    def _prepare_training(self):
        self._train_x = features_of(self.points[self.train_idx], self.state["features"])
        self._train_t = self._targets(self.train_idx)
        self._prepared = (tuple(self.state["features"]), self._data_version)

    def train(self, updates: int, budget_s: float = 0.025) -> int:
        """At most ``updates`` gradient steps and about ``budget_s`` seconds; returns the count."""
        st = self.state
        if getattr(self, "_prepared", None) != (tuple(st["features"]), self._data_version):
            self._prepare_training()
        model = self.model
        model.train()
        weights = [lin.weight for lin in self.linears]
        reg, rate, batch = st["reg"], st["reg_rate"], st["batch"]
        n = self.n_train
        deadline = time.perf_counter() + budget_s
        with xp.errstate(over="ignore", invalid="ignore"):  # divergence is checked below
            done = self._steps(updates, deadline, weights, reg, rate, batch, n)
        if not all(bool(xp.isfinite(p.data).all()) for p in model.parameters()):
            raise ArithmeticError("a weight became infinite or NaN")
        return done

    def _steps(self, updates, deadline, weights, reg, rate, batch, n) -> int:
        model, opt = self.model, self.optimizer
        done = 0
        while done < updates and self.steps < MAX_STEPS:
            if self._pos >= n:
                self._order = self._order_rng.permutation(n)
                self._pos = 0
            idx = self._order[self._pos:self._pos + batch]
            self._pos += len(idx)
            opt.zero_grad()
            loss = self._loss(model(tensor(self._train_x[idx])), tensor(self._train_t[idx]))
            if reg == "l1" and rate:
                loss = loss + l1_penalty(weights, rate)
            elif reg == "l2" and rate:
                loss = loss + l2_penalty(weights, rate / 2)  # Playground's L2: d/dw = rate * w
            loss.backward()
            opt.step()
            self.steps += 1
            self.samples += len(idx)
            done += 1
            if (done & 7) == 0 and time.perf_counter() > deadline:
                break
        return done

    def updates_per_epoch(self) -> int:
        return -(-self.n_train // self.state["batch"])

    def play_updates(self, seconds: float) -> int:
        """The gradient steps ``seconds`` of play are worth at the chosen speed (epochs/s)."""
        rate = min(self.state["speed"] * self.updates_per_epoch(), MAX_UPDATES_PER_SECOND)
        self._carry += rate * seconds
        whole = int(self._carry)
        self._carry -= whole
        return whole

    def epoch_step(self) -> int:
        """One epoch of training (Playground's "step" button)."""
        return self.train(self.updates_per_epoch(), budget_s=1.0)

    def stop_reason(self, metrics) -> str | None:
        st = self.state
        if st["stop_loss"] > 0 and metrics["test_loss"] < st["stop_loss"]:
            return (f"stopped at epoch {self.epoch}: the test loss {metrics['test_loss']:.4f} is "
                    f"below {st['stop_loss']:g}")
        if st["stop_epochs"] > 0 and self.epoch >= st["stop_epochs"]:
            return f"stopped at epoch {self.epoch}: {st['stop_epochs']} epochs done"
        if self.steps >= MAX_STEPS:
            return f"paused after {MAX_STEPS} steps, the session's limit: press reset"
        return None

    # ------------------------------------------------------------------------ outputs
    def _forward(self, x):
        """The network's output on features ``x`` (eval mode), as an array."""
        self.model.eval()
        with no_grad():
            return self.model(tensor(x)).data

    def metrics(self) -> dict:
        out = {}
        for part, idx in (("train", self.train_idx), ("test", self.test_idx)):
            if len(idx) == 0:
                out[f"{part}_loss"] = 0.0
                continue
            x = features_of(self.points[idx], self.state["features"])
            pred = self._forward(x)
            t = self._targets(idx)
            if self.outputs > 1:
                m = pred.max(axis=1, keepdims=True)
                logp = pred - m - xp.log(xp.exp(pred - m).sum(axis=1, keepdims=True))
                out[f"{part}_loss"] = float(-logp[xp.arange(len(t)), t].mean())
                cls = pred.argmax(axis=1)
                truth = t
            else:
                out[f"{part}_loss"] = float(0.5 * ((pred - t) ** 2).mean())
                cls = (pred[:, 0] >= 0).astype(xp.int64)
                truth = (t[:, 0] > 0).astype(xp.int64)
            if self.state["problem"] == "classification":
                out[f"{part}_accuracy"] = float((cls == truth).mean())
                if part == "test":
                    k = max(2, self.num_classes)
                    cm = xp.zeros((k, k), dtype=xp.int64)
                    xp.add.at(cm, (truth, cls), 1)
                    out["confusion"] = cm.tolist()
        return out

    def frame(self) -> dict:
        """Everything the page draws after a step: heat maps, weights, losses."""
        self.model.eval()
        feats = features_of(self._grid_points, self.state["features"])
        thumbs = []
        with no_grad():
            h = tensor(feats)
            layer_out = []
            for i, mod in enumerate(self.model):
                h = mod(h)
                if i in self.neuron_layers:
                    layer_out.append(h.data)
            final = h.data
        sub = xp.zeros((GRID, GRID), dtype=bool)
        sub[::2, ::2] = True
        sub = sub.ravel()
        for values in layer_out:
            thumbs.append([_encode(_signed_bytes(values[sub, j])) for j in range(values.shape[1])])
        frame = {"type": "frame", "epoch": self.epoch, "steps": self.steps,
                 "playing": self.playing, "grid": GRID, "thumb": THUMB}
        if self.outputs > 1:
            m = final - final.max(axis=1, keepdims=True)
            p = xp.exp(m)
            p /= p.sum(axis=1, keepdims=True)
            frame["output_class"] = _encode(p.argmax(axis=1).astype(xp.uint8))
            frame["output"] = _encode(xp.rint(p.max(axis=1) * 255).astype(xp.uint8))
            # each class's probability as an output neuron's thumbnail (0 -> -1, 1 -> +1)
            frame["outputs"] = [_encode(_signed_bytes(2 * p[sub, j] - 1))
                                for j in range(p.shape[1])]
        else:
            frame["output"] = _encode(_signed_bytes(final[:, 0]))
        frame["neurons"] = thumbs
        frame["weights"] = [lin.weight.data.round(5).tolist() for lin in self.linears]
        frame["biases"] = [lin.bias.data.round(5).tolist() for lin in self.linears]
        metrics = self.metrics()
        frame.update(metrics)
        self.history.append([self.epoch, metrics["train_loss"], metrics["test_loss"]])
        if len(self.history) > 2000:
            self.history = self.history[::2]
        return frame

    def data_message(self) -> dict:
        """The points (train first, then test) with their labels, for the page to draw."""
        pts = self.points
        if self.outputs > 1 or self.state["problem"] == "classification":
            labels = self.target.astype(int).tolist()
        else:
            labels = [round(float(v), 4) for v in self.target]
        return {"type": "data", "points": pts.round(4).tolist(), "labels": labels,
                "n_train": self.n_train, "classes": self.num_classes,
                "problem": self.state["problem"], "info": self.data_info,
                "domain": DOMAIN}

    def predict(self, points) -> list:
        """The network's outputs on raw 2-D points (a list of [x1, x2], in the input square's
        coordinates): one list per point (1 value, or K logits)."""
        if not isinstance(points, list) or not 1 <= len(points) <= MAX_PREDICT_POINTS:
            raise PlaygroundInputError(f"points must be a list of 1 to {MAX_PREDICT_POINTS} "
                                       "[x1, x2] pairs", "points")
        for p in points:
            if not (isinstance(p, list) and len(p) == 2 and all(_is_number(v) and
                                                                math.isfinite(v) for v in p)):
                raise PlaygroundInputError("every point must be a pair [x1, x2] of finite "
                                           f"numbers, got {p!r}", "points")
        arr = xp.asarray(points, dtype=xp.float64)
        return self._forward(features_of(arr, self.state["features"])).tolist()

    # ------------------------------------------------------------------------ export
    def architecture(self) -> list:
        """The Sequential's layers as (kind, args) pairs, for the snippet and the metadata."""
        out = []
        for mod in self.model:
            name = type(mod).__name__
            if name == "Linear":
                out.append(["Linear", [mod.in_features, mod.out_features]])
            elif name == "Sigmoid":
                out.append(["Sigmoid", [mod.sigma]])
            elif name == "Dropout":
                out.append(["Dropout", [mod.p]])
            else:
                out.append([name, []])
        return out

    def export(self, fmt: str) -> dict:
        """``{"format", "filename", "data" (base64) or "text"}`` for onnx, safetensors, python."""
        _choice("format", fmt, ["onnx", "safetensors", "python"])
        self.model.eval()
        n_in = len(self.state["features"])
        if fmt == "onnx":
            from ..onnx import export as onnx_export
            proto = onnx_export(self.model, tensor(xp.zeros((1, n_in), dtype=xp.float32)), None,
                                input_names=["features"], output_names=["output"])
            return {"format": fmt, "filename": "playground.onnx",
                    "data": base64.b64encode(proto.SerializeToString()).decode("ascii")}
        if fmt == "safetensors":
            from ..train.io import encode_arrays
            arrays = {k: v.data for k, v in self.model.state_dict().items()}
            meta = {"foveanet_playground": json.dumps(
                {"features": self.state["features"], "architecture": self.architecture(),
                 "problem": self.state["problem"], "classes": self.num_classes,
                 "data": self.data_info})}
            return {"format": fmt, "filename": "playground.safetensors",
                    "data": base64.b64encode(encode_arrays(arrays, meta)).decode("ascii")}
        return {"format": fmt, "filename": "playground_model.py", "text": self.snippet()}

    def snippet(self) -> str:
        layers = []
        for kind, args in self.architecture():
            if kind == "Identity":
                layers.append("nn.Identity()")
            else:
                layers.append(f"nn.{kind}({', '.join(repr(a) for a in args)})")
        body = ",\n    ".join(layers)
        exprs = {"x1": "x1", "x2": "x2", "x1sq": "x1 * x1", "x2sq": "x2 * x2", "x1x2": "x1 * x2",
                 "sinx1": "np.sin(x1)", "sinx2": "np.sin(x2)"}
        feats = ", ".join(exprs[f] for f in self.state["features"])
        info = self.data_info
        scale = ""
        if info.get("name") == "csv":
            (m1, s1), (m2, s2) = info["scale"]
            scale = (f"    # the table's columns {info['x1']!r}, {info['x2']!r} as the page "
                     f"scaled them\n    x1 = (x1 - {m1!r}) / {s1!r}\n    x2 = (x2 - {m2!r}) / "
                     f"{s2!r}\n")
        if self.outputs > 1:
            reading = "logits: the class is out.argmax(1) (class values: data.class_values)"
        elif self.state["problem"] == "classification":
            reading = "tanh output: > 0 is the positive class (+1), < 0 the negative one (-1)"
        else:
            reading = "the regression output, in [-1, 1] as the page shows it"
        return f'''"""The network trained in the foveanet Playground, rebuilt in foveanet.

Its input is the feature vector ({", ".join(FEATURES[f] for f in self.state["features"])}) of
a point (x1, x2) of the square [-6, 6]^2; its output: {reading}.
"""
import numpy as np

import foveanet as fv
from foveanet import nn
from foveanet.train.io import load_state_dict

model = nn.Sequential(
    {body},
)
model.load_state_dict(load_state_dict("playground.safetensors"))
model.eval()


def features(points):
    """(n, 2) points -> the network's input."""
    points = np.asarray(points, dtype=np.float64)
    x1, x2 = points[:, 0], points[:, 1]
{scale}    return fv.tensor(np.stack([{feats}], axis=1).astype(np.float32))


with fv.no_grad():
    print(model(features([[0.0, 0.0], [3.0, -2.0]])).numpy())
'''
