"""Forecasting: series reading (statsmodels' co2 and sunspots, CSV columns) and its errors, windows
and the split in time against hand-computed examples, normalisation from the training part only,
the naive last-value baseline computed by hand, the forecast task and its metrics in the series'
units, and ``foveanet train --task forecast`` end to end (report, plot, resume, evaluate,
predict, load_run) on a tiny CSV written here."""
import datetime
import importlib.util
import json
import math
import os
import re

import numpy as np
import pytest

import foveanet as fv
from foveanet.cli import main
from foveanet.data import DataLoader, DatasetError, dataset_info, open_dataset
from foveanet.data import series as series_mod
from foveanet.data.series import Series, forecast_splits, load_series, split_sizes
from foveanet.train.forecast import (Forecast, ForecastMetrics, forecast_metrics,
                                     predict_forecast)

HAS_STATSMODELS = importlib.util.find_spec("statsmodels") is not None
needs_statsmodels = pytest.mark.skipif(not HAS_STATSMODELS, reason="statsmodels is not installed")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
V = [1.0, 3.0, 2.0, 5.0, 4.0, 6.0, 8.0, 7.0, 9.0, 10.0]  # the hand-computed examples' series
TINY = ["--model-option", "hidden=8", "--threads", "1", "--no-progress", "--batch-size", "16"]


def tiny_split():
    """V split 5 / 2 / 3 (val 0.2, test 0.3), windows of 3 -> 2 ahead."""
    return forecast_splits(Series(V, name="v"), window=3, horizon=2, val_fraction=0.2,
                           test_fraction=0.3)


def write_csv(path, values, header="date,units", times=None):
    times = times or [(datetime.date(2024, 1, 1) + datetime.timedelta(days=k)).isoformat()
                      for k in range(len(values))]
    with open(path, "w") as f:
        f.write(header + "\n")
        for t, v in zip(times, values):
            f.write(f"{t},{v}\n")
    return str(path)


def wavy(n=90, seed=0):
    """A trend, a period-12 wave and a little noise: easy to beat the naive forecast on."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    return [round(float(v), 4) for v in 10 + 0.05 * k + 2 * np.sin(2 * np.pi * k / 12)
            + 0.1 * rng.standard_normal(n)]


# -------------------------------------------------------------------------- windows and splits
def test_windows_match_the_hand_computed_example():
    train, val, test = tiny_split()
    assert split_sizes(10, 0.2, 0.3) == (5, 2, 3)
    # training part: V[0:5] = 1 3 2 5 4, mean 3, standard deviation sqrt(2)
    assert train.offset == 3.0 and train.scale == pytest.approx(math.sqrt(2))
    r = math.sqrt(2)
    # one training window: past V[0:3] -> V[3:5]
    np.testing.assert_allclose(train.x, [[-2 / r, 0, -1 / r]], rtol=1e-6)
    np.testing.assert_allclose(train.y, [[2 / r, 1 / r]], rtol=1e-6)
    # validation (targets V[5:7]): its past reaches back into the training part
    np.testing.assert_allclose(val.original(val.x), [[2, 5, 4]], rtol=1e-6)
    np.testing.assert_allclose(val.original(val.y), [[6, 8]], rtol=1e-6)
    # test (targets within V[7:10]): two windows
    np.testing.assert_allclose(test.original(test.x), [[4, 6, 8], [6, 8, 7]], rtol=1e-6)
    np.testing.assert_allclose(test.original(test.y), [[7, 9], [9, 10]], rtol=1e-6)
    assert list(train.start) == [3] and list(val.start) == [5] and list(test.start) == [7, 8]
    assert (train.span, val.span, test.span) == ((3, 4), (5, 6), (7, 9))
    np.testing.assert_allclose(test.original(test.naive), [[8, 8], [7, 7]], rtol=1e-6)


def test_split_is_chronological_and_normalised_by_the_training_part_only():
    values = np.cumsum(np.random.default_rng(1).standard_normal(300)) + 50
    s = Series(values)
    train, val, test = forecast_splits(s, window=10, horizon=3, val_fraction=0.1, test_fraction=0.2)
    n_train, n_val, _ = split_sizes(300, 0.1, 0.2)
    # every target of a part lies in its own part, and the parts follow each other in time
    assert train.start.max() + 2 < n_train <= val.start.min()
    assert val.start.max() + 2 < n_train + n_val <= test.start.min()
    assert test.start.max() + 2 == 299
    assert train.offset == pytest.approx(values[:n_train].mean())
    assert train.scale == pytest.approx(values[:n_train].std())
    assert val.offset == test.offset == train.offset and val.scale == test.scale == train.scale
    # changing the validation and test values changes neither the training windows nor the
    # normalisation
    changed = values.copy()
    changed[n_train:] += 1000.0
    train2, _, test2 = forecast_splits(Series(changed), 10, 3, 0.1, 0.2)
    assert train2.offset == train.offset and train2.scale == train.scale
    np.testing.assert_array_equal(train2.x, train.x)
    np.testing.assert_array_equal(train2.y, train.y)
    assert not np.array_equal(test2.y, test.y)
    # no validation part
    _, none, test3 = forecast_splits(s, 10, 3, 0.0, 0.2)
    assert none is None and len(test3) == len(test)
    # the training loader shuffles within the training windows only
    seen = np.concatenate([y.numpy() for _, y in DataLoader(train, 32, shuffle=True,
                                                            generator=fv.Generator(0))])
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, train.y.tolist()))


def test_naive_baseline_and_metrics_by_hand():
    _, _, test = tiny_split()
    task = Forecast(horizon=2, offset=test.offset, scale=test.scale)

    class Zero(fv.nn.Module):  # forecasts the training mean (3) for every step
        def forward(self, x):
            return x[:, :2] * 0.0
    pred = predict_forecast(Zero(), DataLoader(test, 8), task)
    np.testing.assert_allclose(pred["target"], [[7, 9], [9, 10]], rtol=1e-6)
    np.testing.assert_allclose(pred["naive"], [[8, 8], [7, 7]], rtol=1e-6)
    np.testing.assert_allclose(pred["forecast"], 3.0, rtol=1e-6)
    m = forecast_metrics(pred, "units")
    # naive errors |8-7| |8-9| |7-9| |7-10| = 1 1 2 3
    assert m["naive_mae"] == pytest.approx(7 / 4)
    assert m["naive_rmse"] == pytest.approx(math.sqrt(15 / 4))
    assert m["per_step"]["naive_mae"] == pytest.approx([1.5, 2.0])
    assert m["per_step"]["naive_rmse"] == pytest.approx([math.sqrt(5 / 2), math.sqrt(5)])
    # the model's errors 4 6 6 7, in the series' units
    assert m["mae"] == pytest.approx(23 / 4) and m["rmse"] == pytest.approx(math.sqrt(137 / 4))
    assert m["skill"] == pytest.approx(1 - math.sqrt(137 / 4) / math.sqrt(15 / 4))
    assert m["num_samples"] == 2 and m["horizon"] == 2 and m["unit"] == "units"
    # the loss is the MSE of the normalised values
    assert m["loss"] == pytest.approx(137 / 4 / test.scale ** 2)


def test_forecast_task_metrics_in_original_units_and_config_round_trip():
    task = Forecast(horizon=2, offset=10.0, scale=4.0)
    assert fv.train.tasks.from_config(task.config()).options() == task.options()
    assert "forecast" in fv.train.tasks.available()
    metric = task.metrics("val")
    assert isinstance(metric, ForecastMetrics)
    metric.update(fv.tensor([[0.5, 0.0]]), fv.tensor([[0.0, 0.0]]))
    metric.update(fv.tensor([[0.0, -1.0]]), fv.tensor([[0.0, 0.0]]))
    got = metric.compute()  # errors 2, 0, 0, 4 in the series' units
    assert got["mae"] == pytest.approx(1.5) and got["rmse"] == pytest.approx(math.sqrt(5))
    assert float(task.loss(fv.tensor([[1.0, 1.0]]), fv.tensor([[0.0, 0.0]])).item()) == 1.0
    with pytest.raises(ValueError, match="scale must be a finite positive number"):
        Forecast(scale=0.0)
    with pytest.raises(ValueError, match="horizon must be an integer >= 1"):
        Forecast(horizon=0)


# ------------------------------------------------------------------------------- the series
@needs_statsmodels
def test_statsmodels_series():
    co2 = load_series("co2")
    assert len(co2) == 2284 and co2.unit == "ppm" and co2.missing == 59
    assert np.all(np.isfinite(co2.values)) and 310 < co2.values.min() < co2.values.max() < 380
    assert "59 missing values" in co2.notes[0] and "linear interpolation" in co2.notes[0]
    assert co2.times[0] == pytest.approx(1958 + 87 / 365) and np.all(np.diff(co2.times) > 0)
    # a gap is filled on the straight line between its neighbours (the file's line 8 is empty)
    assert co2.values[6] == pytest.approx((co2.values[5] + co2.values[7]) / 2)
    sun = load_series("sunspots")
    assert len(sun) == 309 and sun.times[0] == 1700 and sun.times[-1] == 2008 and not sun.notes
    assert sun.values[:3].tolist() == [5.0, 11.0, 16.0]
    # through the data-set registry: windows before the test part, and the test part
    train, test = open_dataset("sunspots", window="10"), open_dataset("sunspots", train=False,
                                                                       window=10, horizon=2)
    assert train.window == 10 and test.horizon == 2 and train.span[1] < test.span[0]
    assert dataset_info("co2", window=52)["task"] == "forecast"
    with pytest.raises(DatasetError, match="option column applies to a CSV file"):
        load_series("co2", column="x")


def test_statsmodels_missing_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(series_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "statsmodels" else real(name, *a))
    with pytest.raises(DatasetError, match=r"statsmodels is not installed: pip install "
                                           r"'foveanet\[timeseries\]'"):
        load_series("co2")


def test_csv_series_column_time_and_missing_values(tmp_path):
    path = write_csv(tmp_path / "s.csv", [1, 2, 3, 4])
    s = load_series(path, column="units", time_column="date")
    assert s.values.tolist() == [1, 2, 3, 4] and s.column == "units" and s.time_label == "year"
    assert s.times[0] == pytest.approx(2024.0) and s.times[1] == pytest.approx(2024 + 1 / 366)
    assert load_series(path).values.tolist() == [1, 2, 3, 4]     # default: the last column
    assert load_series(path, column=1).values.tolist() == [1, 2, 3, 4]
    bare = tmp_path / "bare.csv"
    bare.write_text("5\n6\n7\n")                               # no header, one column
    assert load_series(str(bare)).values.tolist() == [5, 6, 7]
    gaps = write_csv(tmp_path / "gaps.csv", [1, "", 3, "NaN", 7])
    with pytest.raises(DatasetError, match=r"gaps\.csv, line 3, column 2 \(units\): a missing "
                                           r"value \(an empty cell\); missing=interpolate"):
        load_series(gaps)
    filled = load_series(gaps, missing="interpolate")
    assert filled.values.tolist() == [1, 2, 3, 5, 7] and filled.missing == 2
    assert "2 missing values" in filled.notes[0] and "line 3" in filled.notes[0]


@pytest.mark.parametrize("rows,kwargs,pattern", [
    ("date,units\n1,2\n2,3\n", {"column": "price"},
     r"bad\.csv: no column named 'price' \(column\); the columns are: date, units"),
    ("date,units\n1,2\n2,abc\n3,4\n", {},
     r"bad\.csv, line 3, column 2 \(units\): 'abc' is not a number"),
    ("date,units\n1,2\n2,inf\n", {},
     r"bad\.csv, line 3, column 2 \(units\): 'inf' is not a finite"),
    ("date,units\n1,2\n2,3,4\n", {}, r"bad\.csv, line 3: 3 fields, expected 2"),
    ("date,units\n1,2\n1,3\n", {"time_column": "date"},
     r"bad\.csv, line 3, column 1 \(date\): the times must increase"),
    ("date,units\nmonday,2\n", {"time_column": "date"},
     r"bad\.csv, line 2, column 1 \(date\): 'monday' is not a time"),
    ("1,2\n2,3\n", {"column": 5}, r"bad\.csv: column 5 is not a column: the table has 2 columns"),
    ("", {}, r"bad\.csv: empty file"),
])
def test_csv_series_errors_name_the_file_line_and_column(tmp_path, rows, kwargs, pattern):
    path = tmp_path / "bad.csv"
    path.write_text(rows)
    with pytest.raises(DatasetError, match=pattern):
        load_series(str(path), **kwargs)


def test_too_short_a_series_names_it():
    with pytest.raises(DatasetError, match=r"short\.csv: 10 values are too few for windows of 6 "
                                           r"past values and 2 ahead: split in time into 5 "
                                           r"training, 2 validation, 3 test values"):
        forecast_splits(Series(V), 6, 2, 0.2, 0.3, source="short.csv")
    with pytest.raises(DatasetError, match="all 2: nothing to forecast"):
        forecast_splits(Series([2.0] * 10 + [3.0] * 3), 2, 1, 0.0, 0.3)
    with pytest.raises(ValueError, match="window must be a positive integer"):
        forecast_splits(Series(V), 0)


# ------------------------------------------------------------------------------ the model
def test_lstm_forecaster_shapes_and_relative_forecasts():
    fv.manual_seed(0)
    m = fv.models.create("lstm_forecaster", horizon=3, hidden=8)
    x = fv.randn(4, 12)
    out = m(x)
    assert tuple(out.shape) == (4, 3)
    assert tuple(m(x.reshape(4, 12, 1)).shape) == (4, 3)
    # relative: a window shifted by a constant is forecast shifted by it
    np.testing.assert_allclose(m(x + 5.0).detach().numpy(), out.detach().numpy() + 5.0, atol=1e-5)
    gru = fv.models.create("lstm_forecaster", cell="gru", relative=False, num_layers=2)
    assert tuple(gru(x).shape) == (4, 1)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    with pytest.raises(ValueError, match="unknown cell 'tcn'"):
        fv.models.create("lstm_forecaster", cell="tcn")


def test_trainer_with_the_forecast_task_logs_errors_in_the_series_units():
    train, val, _ = forecast_splits(Series(wavy(120)), 12, 1, 0.15, 0.15)
    fv.manual_seed(0)
    model = fv.models.create("lstm_forecaster", hidden=8)
    task = Forecast(1, train.offset, train.scale)
    trainer = fv.train.Trainer(model, fv.optim.Adam(model.parameters(), 1e-2), task=task,
                               progress=False)
    hist = trainer.fit(DataLoader(train, 16, shuffle=True, generator=fv.Generator(0)),
                       DataLoader(val, 64), epochs=2)
    rec = hist[-1]
    assert {"train_mae", "train_rmse", "val_mae", "val_rmse"} <= set(rec)
    assert rec["val_rmse"] == pytest.approx(math.sqrt(rec["val_loss"]) * train.scale, rel=1e-5)


# --------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def series_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("series") / "sales.csv", wavy())


def _train(out, csv, *extra):
    return main(["train", "--dataset", csv, "--task", "forecast", "--data-option",
                 "column=units", "--data-option", "time_column=date", "--window", "12",
                 "--horizon", "2", "--out", out, *TINY, *extra])


def test_cli_forecast_end_to_end(tmp_path, series_csv, capsys):
    run = str(tmp_path / "fc")
    assert _train(run, series_csv, "--epochs", "3") == 0
    out = capsys.readouterr().out
    assert "training lstm_forecaster on " in out and "  task               forecast" in out
    assert re.search(r"data: \d+ training, \d+ validation, \d+ test windows", out)
    m = re.search(r"^test MAE ([\d.]+), RMSE ([\d.]+) \(best epoch \d of 3, val loss [\d.]+\)$",
                  out, re.M)
    assert m, out
    assert re.search(r"^naive last-value forecast on the same \d+ windows: MAE [\d.]+, RMSE "
                     r"[\d.]+; RMSE [\d.]+% (below|above) the naive forecast's$", out, re.M)
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["task"]["name"] == "forecast" and cfg["task"]["horizon"] == 2
    assert cfg["input_shape"] == [12] and cfg["num_classes"] == 2
    assert cfg["classes"] == ["t+1", "t+2"]
    assert cfg["series"]["time_label"] == "year" and cfg["series"]["length"] == 90
    assert cfg["task"]["offset"] == pytest.approx(cfg["series"]["offset"])
    test = json.load(open(os.path.join(run, "results.json")))["test"]
    assert test["mae"] == pytest.approx(float(m.group(1)), rel=1e-3)
    assert {"naive_mae", "naive_rmse", "skill", "per_step"} <= set(test)
    for name in ("forecast.png", "curves.png"):
        with open(os.path.join(run, name), "rb") as f:
            assert f.read(8) == PNG_MAGIC, name
    rows = open(os.path.join(run, "forecast.csv")).read().splitlines()
    assert rows[0] == "time,truth_t+1,forecast_t+1,naive_t+1,truth_t+2,forecast_t+2,naive_t+2"
    assert len(rows) == test["num_samples"] + 1
    report = open(os.path.join(run, "report.md")).read()
    for piece in ("**Test MAE", "naive (last value)", "## Series", "Per step ahead",
                  "](forecast.png)", "](curves.png)", "val RMSE", "normalisation (training part)"):
        assert piece in report, piece

    # evaluate, predict, load_run see the same numbers
    assert main(["evaluate", run]) == 0
    out = capsys.readouterr().out
    assert "test windows" in out and "naive (last value)" in out and "Per step ahead" in out
    r = fv.load_run(run)
    assert r.task.name == "forecast" and r.evaluate()["rmse"] == pytest.approx(test["rmse"])
    window = wavy()[-12:]
    assert main(["predict", run, ",".join(map(str, window)), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(got[0]["forecast"], r.forecast(window)[0], rtol=1e-6)
    assert main(["predict", run, "1,2,3"]) == 2
    assert "takes windows of 12 past values" in capsys.readouterr().err
    with pytest.raises(fv.train.RunError, match="forecasting run gives values"):
        r.probabilities(np.zeros((1, 12)))


def test_cli_forecast_resume_is_bit_identical(tmp_path, series_csv, capsys):
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    common = ["--scheduler", "none"]
    assert _train(straight, series_csv, "--epochs", "3", *common) == 0
    assert _train(resumed, series_csv, "--epochs", "2", *common) == 0
    assert main(["train", "--resume", resumed, "--epochs", "3", "--task", "forecast",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "resumed after epoch 2" in out
    for name in ("model.safetensors", "best.safetensors"):
        a = fv.train.load_state_dict(os.path.join(straight, name))
        b = fv.train.load_state_dict(os.path.join(resumed, name))
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), name
    assert main(["train", "--resume", resumed, "--task", "classification"]) == 2
    assert "--task classification contradicts the run's config.json" in capsys.readouterr().err


@pytest.mark.parametrize("args,code,pattern", [
    (["--task", "forecast"], 2, r"--task forecast: --dataset fashion-mnist is not a series"),
    (["--window", "5"], 2, r"--window applies to forecasting: give --task forecast"),
    (["--dataset", "{csv}", "--task", "forecast", "--limit-train", "10"], 2,
     r"--limit-train: a series is split in time"),
    (["--dataset", "{csv}", "--task", "forecast", "--augment", "flip"], 2,
     r"not to the windows of a series"),
    (["--dataset", "{csv}", "--task", "forecast", "--data-option", "label_column=x"], 2,
     r"--data-option label_column=x: .*sales\.csv has no such option; it takes column, "
     r"time_column, missing, delimiter, test_fraction"),
    (["--dataset", "{csv}", "--task", "forecast", "--data-option", "column=price"], 1,
     r"sales\.csv: no column named 'price' \(column\); the columns are: date, units"),
    (["--dataset", "{csv}", "--task", "forecast", "--window", "80"], 1,
     r"sales\.csv: 90 values are too few for windows of 80 past values"),
    (["--dataset", "{csv}", "--task", "forecast", "--model", "cnn_bn"], 2,
     r"a forecaster takes windows of 24 values: use --model lstm_forecaster"),
    (["--dataset", "{csv}", "--task", "forecast", "--model-option", "horizon=3"], 2,
     r"--model-option horizon: set from the run's horizon"),
])
def test_cli_forecast_errors(tmp_path, series_csv, capsys, args, code, pattern):
    args = [a.replace("{csv}", series_csv) for a in args]
    assert main(["train", "--out", str(tmp_path / "x"), "--no-progress", *args]) == code
    assert re.search(pattern, capsys.readouterr().err)


def test_cli_forecast_mlp_and_missing_values(tmp_path, capsys):
    values = wavy(60)
    values[5] = ""
    csv = write_csv(tmp_path / "gappy.csv", values)
    run = str(tmp_path / "mlp")
    base = ["train", "--dataset", csv, "--task", "forecast", "--window", "6", "--epochs", "1",
            "--out", run, "--threads", "1", "--no-progress"]
    assert main(base) == 1
    assert re.search(r"gappy\.csv, line 7, column 2 \(units\): a missing value",
                     capsys.readouterr().err)
    # an MLP forecasts too (a window is a feature vector); gaps filled when asked
    assert main(base + ["--model", "mlp", "--model-option", "hidden=8", "--data-option",
                        "missing=interpolate"]) == 0
    out = capsys.readouterr().out
    assert "note: the series: 1 missing value (empty cells, first on line 7) filled" in out
    assert "test MAE" in out


@needs_statsmodels
def test_cli_sunspots_and_co2(tmp_path, capsys):
    run = str(tmp_path / "sun")
    assert main(["train", "--dataset", "sunspots", "--epochs", "2", "--out", run, *TINY]) == 0
    out = capsys.readouterr().out
    assert "  window             22" in out and "62 test windows" in out and "test MAE" in out
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["dataset"] == "sunspots" and cfg["series"]["split"]["test"]["first"] == 1947
    # co2's defaults: a year of weeks; its interpolated gaps are said
    run = str(tmp_path / "co2")
    assert main(["train", "--dataset", "co2", "--epochs", "1", "--data-option",
                 "test_fraction=0.05", "--val-split", "0.05", "--out", run, *TINY]) == 0
    out = capsys.readouterr().out
    assert "  window             52" in out and "note: co2: 59 missing values" in out
    assert main(["train", "--dataset", "co2", "--task", "classification", "--out",
                 str(tmp_path / "x")]) == 2
    assert "co2 is a series: forecast it" in capsys.readouterr().err
    assert main(["train", "--dataset", "co2", "--data-option", "column=x", "--out",
                 str(tmp_path / "x")]) == 2
    assert "co2 has no such option; it takes test_fraction" in capsys.readouterr().err
