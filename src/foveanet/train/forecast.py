"""Forecasting: the ``forecast`` task, its metrics in the series' own units, the test forecasts
beside the naive last-value forecast, and a forecasting run's data.

::

    import foveanet as fv
    from foveanet.data.series import load_series, forecast_splits
    from foveanet.train.forecast import Forecast, predict_forecast, forecast_metrics

    train, val, test = forecast_splits(load_series("sunspots"), window=22)
    task = Forecast(horizon=1, offset=train.offset, scale=train.scale)
    model = fv.models.create("lstm_forecaster", horizon=1)
    trainer = fv.train.Trainer(model, fv.optim.AdamW(model.parameters(), 3e-3), task=task)
    trainer.fit(fv.data.DataLoader(train, 32, shuffle=True), fv.data.DataLoader(val, 256), 30)
    pred = predict_forecast(model, fv.data.DataLoader(test, 256), task)
    forecast_metrics(pred)      # mae, rmse beside naive_mae, naive_rmse, on the same windows

The model sees normalised values, ``(v - offset) / scale`` with the training part's mean and
standard deviation (``foveanet.data.series``), and is trained on their mean squared error (the
``loss``, ``val_loss``). Its metrics, ``mae`` and ``rmse``, are in the series' own units (ppm for
CO2): the normalised errors times ``scale``. The naive forecast of a window repeats its last
value over the horizon; a model that does not beat it on the test windows has learnt nothing a
forecaster could use.
"""
from __future__ import annotations

import math
import os

from ..autograd import no_grad
from ..backend import xp
from ..data import DatasetError
from ..data.series import SERIES_OPTIONS, forecast_splits, is_series_name, load_series
from ..nn import functional as F
from ..ops import tensor
from . import tasks
from .io import atomic_write_text

__all__ = ["Forecast", "ForecastMetrics", "predict_forecast", "forecast_metrics",
           "forecast_values", "is_forecast", "forecast_data", "output_names", "series_option",
           "series_options",
           "write_forecast_csv", "FORECAST_CSV"]

FORECAST_CSV = "forecast.csv"


class ForecastMetrics(tasks.Metric):
    """Mean absolute error and root mean squared error over every forecast value of the epoch,
    in the series' own units: the normalised errors times ``scale``."""

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)
        super().__init__()

    _sums = ("count", "elements", "sae", "sse")  # additive: ranks' states add up

    def reset(self) -> None:
        self.count = 0
        self.elements = 0
        self.sae = self.sse = 0.0

    def update(self, output, target) -> None:
        o = tasks._float64(output, "forecast: output")
        t = tasks._float64(target, "forecast: target")
        if o.size != t.size:
            raise ValueError(f"forecast: target shape {tuple(t.shape)} does not match the output "
                             f"shape {tuple(o.shape)}")
        err = (o.reshape(-1) - t.reshape(-1)) * self.scale
        self.sae += float(xp.abs(err).sum())
        self.sse += float((err * err).sum())
        self.elements += err.size
        self.count += o.shape[0] if o.ndim else 1

    def compute(self) -> dict:
        if not self.elements:
            return {}
        return {"mae": self.sae / self.elements, "rmse": math.sqrt(self.sse / self.elements)}


@tasks.register
class Forecast(tasks.Task):
    """The next ``horizon`` values of a series from a window of past ones: mean squared error on
    the normalised values (``(v - offset) / scale``); ``mae`` and ``rmse`` in the series' units."""

    name = "forecast"

    def __init__(self, horizon: int = 1, offset: float = 0.0, scale: float = 1.0):
        self.horizon = tasks._integer(horizon, "horizon", "forecast", 1)
        self.offset = float(tasks._number(offset, "offset", "forecast"))
        self.scale = float(tasks._number(scale, "scale", "forecast", positive=True))

    def loss(self, output, target):
        return F.mse_loss(output, tasks._as_output_shape(output, target))

    def metrics(self, stage="val"):
        return ForecastMetrics(self.scale)

    def options(self):
        return {"horizon": self.horizon, "offset": self.offset, "scale": self.scale}

    def original(self, z):
        """Normalised values ``z`` in the series' units (float64)."""
        return self.offset + self.scale * xp.asarray(z, dtype=xp.float64)


# ------------------------------------------------------------------------------- test forecasts
def predict_forecast(model, loader, task: Forecast) -> dict:
    """Run ``model`` over ``loader`` (its windows in order; eval mode, no gradients, the mode
    restored after). Returns float64 arrays in the series' units, each (N, horizon): ``forecast``,
    ``target``, ``naive`` (the window's last value repeated), ``times`` (of the target steps, when
    the loader's data set is ``ForecastWindows``; else None), and ``loss``, the mean squared error
    on the normalised values. DatasetError when the loader gives no batch."""
    was = model.training
    model.eval()
    outs, targets, naive = [], [], []
    sse, elements = 0.0, 0
    try:
        with no_grad():
            for x, y in loader:
                out = model(x).data.astype(xp.float64)
                t = y.data.astype(xp.float64).reshape(out.shape)
                sse += float(((out - t) ** 2).sum())
                elements += out.size
                outs.append(out)
                targets.append(t)
                naive.append(xp.repeat(x.data[:, -1:].astype(xp.float64).reshape(-1, 1),
                                       out.shape[1], axis=1))
    finally:
        model.train(was)
    if not outs:
        raise DatasetError("the test part of the series has no window")
    dataset = getattr(loader, "dataset", None)
    times = dataset.times() if hasattr(dataset, "times") and callable(dataset.times) else None
    return {"forecast": task.original(xp.concatenate(outs)),
            "target": task.original(xp.concatenate(targets)),
            "naive": task.original(xp.concatenate(naive)),
            "times": times, "loss": sse / elements}


def _errors(pred, key):
    err = pred[key] - pred["target"]
    return (float(xp.abs(err).mean()), float(math.sqrt((err * err).mean())),
            [float(v) for v in xp.abs(err).mean(axis=0)],
            [float(math.sqrt(v)) for v in (err * err).mean(axis=0)])


def forecast_metrics(pred, unit: str = "") -> dict:
    """JSON-able test metrics of ``predict_forecast``'s output: ``loss`` (normalised MSE),
    ``mae`` / ``rmse`` of the model and ``naive_mae`` / ``naive_rmse`` of the naive last-value
    forecast on the same windows (the series' units), ``skill`` (1 - rmse / naive_rmse: above 0
    when the model beats the naive forecast), the same per step ahead (``per_step``: lists of
    ``horizon`` values), ``num_samples`` (windows), ``horizon``, ``unit`` and the ``start`` /
    ``end`` times of the targets."""
    mae, rmse, step_mae, step_rmse = _errors(pred, "forecast")
    n_mae, n_rmse, n_step_mae, n_step_rmse = _errors(pred, "naive")
    times = pred.get("times")
    out = {"task": "forecast", "loss": float(pred["loss"]), "mae": mae, "rmse": rmse,
           "naive_mae": n_mae, "naive_rmse": n_rmse,
           "skill": 1.0 - rmse / n_rmse if n_rmse > 0 else None,
           "per_step": {"mae": step_mae, "rmse": step_rmse, "naive_mae": n_step_mae,
                        "naive_rmse": n_step_rmse},
           "num_samples": int(pred["target"].shape[0]), "horizon": int(pred["target"].shape[1]),
           "unit": unit}
    if times is not None:
        out.update(start=float(times[0, 0]), end=float(times[-1, -1]))
    return out


def forecast_values(model, task: Forecast, windows):
    """The forecasts, float64 (N, horizon) in the series' units, of ``windows`` (N, window) of
    past values in the series' units (normalised here with the task's ``offset`` and
    ``scale``)."""
    w = xp.asarray(windows, dtype=xp.float64)
    if w.ndim == 1:
        w = w[None]
    z = ((w - task.offset) / task.scale).astype(xp.float32)
    was = model.training
    model.eval()
    try:
        with no_grad():
            return task.original(model(tensor(z)).data)
    finally:
        model.train(was)


def write_forecast_csv(run_dir, pred) -> str:
    """``forecast.csv`` in ``run_dir``: one row per test window, its first target's time, then
    per step ahead the truth, the model's forecast and the naive one. Returns the path."""
    h = pred["target"].shape[1]
    cols = ["time"] + [f"{what}_t+{k + 1}" for k in range(h) for what in ("truth", "forecast",
                                                                           "naive")]
    times = pred.get("times")
    lines = [",".join(cols)]
    for i in range(pred["target"].shape[0]):
        cells = [f"{times[i, 0]:.6f}" if times is not None else str(i)]
        for k in range(h):
            cells += [f"{pred[key][i, k]:.6g}" for key in ("target", "forecast", "naive")]
        lines.append(",".join(cells))
    path = os.path.join(os.fspath(run_dir), FORECAST_CSV)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- a run's configuration
def is_forecast(config) -> bool:
    """Whether a run configuration is a forecasting run (its ``task`` is ``forecast``)."""
    task = (config or {}).get("task")
    return isinstance(task, dict) and task.get("name") == "forecast"


def output_names(horizon: int) -> list:
    """The names of a forecaster's outputs, a run's ``classes``: ``['t+1', ..., 't+H']``."""
    return [f"t+{k + 1}" for k in range(int(horizon))]


def series_option(spec, key, value):
    """The value of option ``key`` (a string, as a command line gives it) converted for the series
    ``spec``; ValueError saying what is accepted. The known series take only ``test_fraction``;
    a CSV file also ``column``, ``time_column``, ``missing``, ``delimiter``."""
    accepted = ("test_fraction",) if is_series_name(spec) else tuple(SERIES_OPTIONS)
    if key not in accepted:
        raise ValueError(f"{spec} has no such option; it takes {', '.join(accepted)}")
    converted = SERIES_OPTIONS[key](value)
    if key == "test_fraction" and not 0.0 < converted < 1.0:
        raise ValueError("expected a fraction between 0 and 1")
    return converted


def series_options(spec, options) -> dict:
    """``options`` converted by ``series_option``; ValueError naming the option."""
    out = {}
    for key, value in (options or {}).items():
        try:
            out[key] = series_option(spec, key, value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{key}={value}: {exc}") from None
    return out


def forecast_data(config):
    """``(series, train, val or None, test)`` of a forecasting run's configuration: the series
    ``dataset`` names (with ``data_options``), split in time by ``val_split`` and the
    ``test_fraction`` data option (default 0.2) into windows of ``window`` -> ``horizon``."""
    options = series_options(config["dataset"], config.get("data_options"))
    test_fraction = options.pop("test_fraction", 0.2)
    series = load_series(config["dataset"], **options)
    source = series.source if not is_series_name(config["dataset"]) else series.name
    train, val, test = forecast_splits(series, int(config["window"]), int(config["horizon"]),
                                       float(config.get("val_split") or 0.0), test_fraction,
                                       source=source)
    return series, train, val, test
