"""Time series for forecasting: one column of numbers in time order, cut into windows of past
values and the values that follow them.

::

    from foveanet.data.series import load_series, forecast_splits

    series = load_series("co2")         # Mauna Loa's weekly CO2, as statsmodels ships it
    series.values, series.times         # float64 (T,) ppm; decimal years (1958.24, ...)
    series.notes                        # ['59 missing values (empty cells) filled by linear ...']
    train, val, test = forecast_splits(series, window=52, horizon=1, val_fraction=0.1,
                                       test_fraction=0.2)
    x, y = train[0]                     # float32 (52,) past values, (1,) the next: normalised

A series is one of:

- a known name (``SERIES``): ``co2`` (weekly CO2 at Mauna Loa, 1958-2001, ppm; 59 weeks have no
  value and are filled by linear interpolation between their neighbours, which ``notes`` says)
  or ``sunspots`` (the yearly sunspot number, 1700-2008). Both are read from the CSV files
  bundled with statsmodels (``pip install 'foveanet[timeseries]'``; nothing is downloaded, and
  statsmodels itself is not imported): without it, a ``DatasetError`` says how to install it;
- a ``.csv`` file: the values are one ``column`` (a header name or an index; default the last
  column), in row order; ``time_column`` optionally names the column of the times (numbers, or
  ISO dates such as 2024-03-01, shown as decimal years), used for the plots only. A header row
  is recognised when the value column's first cell is not a number, or when a column is given by
  name. A cell that is not a number is a ``DatasetError`` naming the file, the line and the
  column; empty cells and NaN are missing values, refused the same way unless
  ``missing="interpolate"`` (linear interpolation between the neighbours; at the ends the
  nearest value).

Windows and splits (``forecast_splits``): the series is split in time, never shuffled across a
boundary: the first part trains, the next ``val_fraction`` validates, the last
``test_fraction`` tests. A window's input is the ``window`` values just before its first target
and its target the ``horizon`` values from there on; every target of a window lies in the
window's own part (an input may reach back into the part before: those values are the observed
past at that time). The values are normalised, ``(v - offset) / scale``, by the mean and the
standard deviation of the training part alone, so nothing of the validation or test values
leaks into training. The naive forecast of a window is its last input value repeated
``horizon`` times (``ForecastWindows.naive``).
"""
from __future__ import annotations

import datetime
import importlib.util
import math
import os
from pathlib import Path

from ..backend import xp
from .dataset import TensorDataset
from .idx import DatasetError
from .tabular import _read_rows

__all__ = ["Series", "ForecastWindows", "SERIES", "SERIES_OPTIONS", "MISSING", "load_series",
           "forecast_splits", "split_sizes", "is_series_name", "statsmodels_dir"]

# the series statsmodels ships: its CSV file (under statsmodels/datasets), the value and time
# columns, how a time is read, the unit, the spacing of the values
SERIES = {
    "co2": {"description": "Mauna Loa weekly atmospheric CO2, 1958-2001 (ppm; statsmodels)",
            "file": ("co2", "co2.csv"), "column": "co2", "time_column": "date",
            "time_format": "yyyymmdd", "time_label": "year", "label": "CO2", "unit": "ppm",
            "step": "week",
            "missing": "interpolate"},
    "sunspots": {"description": "yearly sunspot number, 1700-2008 (statsmodels)",
                 "file": ("sunspots", "sunspots.csv"), "column": "SUNACTIVITY",
                 "time_column": "YEAR", "time_format": "number", "time_label": "year",
                 "label": "sunspot number", "unit": "", "step": "year", "missing": "error"},
}
MISSING = ("error", "interpolate")
_MISSING_TEXT = {"", "nan", "na", "n/a", "null", "none"}


def _to_column(value):
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value.strip()
    return value


def _to_float(value):
    return float(value) if isinstance(value, str) else value


def _choice(*values):
    def convert(value):
        if value not in values:
            raise ValueError(f"expected {' or '.join(values)}")
        return value
    return convert


# what a series takes (``--data-option KEY=VALUE`` on the command line; values may be strings)
SERIES_OPTIONS = {"column": _to_column, "time_column": _to_column, "missing": _choice(*MISSING),
                  "delimiter": str, "test_fraction": _to_float}


def is_series_name(name) -> bool:
    """Whether ``name`` is one of the known series (case-insensitive)."""
    return isinstance(name, str) and name.strip().lower() in SERIES


def statsmodels_dir() -> Path:
    """Where statsmodels is installed (found without importing it); DatasetError when it is not."""
    spec = importlib.util.find_spec("statsmodels")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("the co2 and sunspots series are read from the data statsmodels ships, "
                           "and statsmodels is not installed: pip install 'foveanet[timeseries]' "
                           "(or pip install statsmodels)")
    return Path(list(spec.submodule_search_locations)[0])


# ------------------------------------------------------------------------------------ Series
class Series:
    """A series of numbers in time order: ``values`` float64 (T,), ``times`` float64 (T,) or None
    (then the plots count steps), ``time_label`` (what the times are: 'year', a column's name,
    'time step'), ``name``, ``column`` (the value column's name), ``label`` (what the values
    are, for the plots; default the column's name), ``unit`` ('' when unknown),
    ``step`` (the spacing: 'week', 'year', or 'step'), ``source`` (the file), ``notes`` (what was
    done to the values: interpolated gaps), ``missing`` (how many values were filled)."""

    def __init__(self, values, times=None, name="series", column="value", unit="", step="step",
                 source=None, notes=(), missing=0, time_label=None, label=None):
        self.values = xp.asarray(values, dtype=xp.float64).reshape(-1)
        self.times = None if times is None else xp.asarray(times, dtype=xp.float64).reshape(-1)
        if self.times is not None and self.times.shape != self.values.shape:
            raise ValueError(f"Series: {self.times.size} times for {self.values.size} values")
        if not xp.all(xp.isfinite(self.values)):
            raise ValueError(f"Series {name!r}: the values must be finite numbers")
        self.name, self.column, self.unit, self.step = name, column, unit, step
        self.source = None if source is None else str(source)
        self.notes, self.missing = list(notes), int(missing)
        self.time_label = time_label or ("time" if self.times is not None else "time step")
        self.label = label or column

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def time_of(self, index: int):
        """The time of value ``index`` (a decimal year, a number), or the index itself."""
        return float(self.times[index]) if self.times is not None else int(index)

    def describe(self) -> dict:
        """JSON values for a run's configuration: name, column, unit, step, length, source,
        first and last time, notes."""
        return {"name": self.name, "column": self.column, "unit": self.unit, "step": self.step,
                "length": len(self), "source": self.source, "missing": self.missing,
                "time_label": self.time_label, "label": self.label,
                "start": self.time_of(0), "end": self.time_of(len(self) - 1),
                "notes": list(self.notes)}

    def __repr__(self):
        unit = f" {self.unit}" if self.unit else ""
        return f"Series({self.name!r}, {len(self)} values{unit})"


def _decimal_year(d: datetime.date) -> float:
    start = datetime.date(d.year, 1, 1)
    days = (datetime.date(d.year + 1, 1, 1) - start).days
    return d.year + (d - start).days / days


def _time(text: str, fmt: str):
    """``(time, is a date)`` of a time cell: a number, or a date as a decimal year; None when it
    cannot be read."""
    text = text.strip()
    try:
        if fmt == "yyyymmdd":
            return _decimal_year(datetime.datetime.strptime(text, "%Y%m%d").date()), True
        value = float(text)
        return (value, False) if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        return _decimal_year(datetime.date.fromisoformat(text[:10])), True
    except ValueError:
        return None


def _interpolate(values, missing):
    """``values`` with the ``missing`` positions filled linearly from their neighbours (the
    nearest value at either end)."""
    idx = xp.arange(values.size)
    known = ~missing
    out = values.copy()
    out[missing] = xp.interp(idx[missing], idx[known], values[known])
    return out


def _column_index(path, names, spec, width, what):
    if isinstance(spec, str):
        if names is None:
            raise DatasetError(f"{path}: {what} {spec!r} is a name, but the file has no header "
                               "row (give the column's index, 0 for the first)")
        if spec not in names:
            raise DatasetError(f"{path}: no column named {spec!r} ({what}); the columns are: "
                               f"{', '.join(names)}")
        return names.index(spec)
    if isinstance(spec, bool) or not isinstance(spec, int) or not -width <= spec < width:
        raise DatasetError(f"{path}: {what} {spec!r} is not a column: the table has {width} "
                           f"column{'s' if width != 1 else ''} (0 to {width - 1}, or -1 to "
                           f"-{width})")
    return spec % width


def _read_csv_series(path, column=-1, time_column=None, missing="error", delimiter=",",
                     name=None, unit="", step="step", time_format="auto", time_label=None,
                     label=None):
    path = Path(os.path.expanduser(os.fspath(path)))
    if missing not in MISSING:
        raise ValueError(f"missing must be 'error' or 'interpolate', got {missing!r}")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character, got {delimiter!r}")
    rows = _read_rows(path, delimiter)
    if not rows:
        raise DatasetError(f"{path}: empty file (no rows)")
    first_line, first = rows[0]
    width = len(first)
    for line, fields in rows[1:]:
        if len(fields) != width:
            raise DatasetError(f"{path}, line {line}: {len(fields)} fields, expected {width} (as "
                               f"on line {first_line})")
    names = [v.strip() for v in first]
    named = isinstance(column, str) or isinstance(time_column, str)
    if not named:  # a header when the value column's first cell is not a number
        j = _column_index(path, None, column, width, "column")
        text = first[j].strip()
        named = text.lower() not in _MISSING_TEXT and not _is_float(text)
    header = names if named else None
    data = rows[1:] if named else rows
    if not data:
        raise DatasetError(f"{path}: no data rows (only the header, line {first_line})")
    j = _column_index(path, header, column, width, "column")
    where = f"column {j + 1}" + (f" ({header[j]})" if header and header[j] else "")
    values = xp.empty(len(data), dtype=xp.float64)
    gaps = []
    for k, (line, fields) in enumerate(data):
        text = fields[j].strip()
        if text.lower() in _MISSING_TEXT:
            if missing == "error":
                what = "an empty cell" if not text else repr(text)
                raise DatasetError(f"{path}, line {line}, {where}: a missing value ({what}); "
                                   "missing=interpolate fills gaps linearly")
            gaps.append(k)
            values[k] = xp.nan
            continue
        try:
            v = float(text)
        except ValueError:
            raise DatasetError(f"{path}, line {line}, {where}: {text!r} is not a number") from None
        if not math.isfinite(v):
            raise DatasetError(f"{path}, line {line}, {where}: {text!r} is not a finite number")
        values[k] = v
    notes = []
    if gaps:
        if len(gaps) == len(data):
            raise DatasetError(f"{path}, {where}: no values (every cell is missing)")
        mask = xp.zeros(len(data), dtype=bool)
        mask[gaps] = True
        values = _interpolate(values, mask)
        what = "empty cells" if all(not data[k][1][j].strip() for k in gaps) else "missing cells"
        notes.append(f"{len(gaps)} missing value{'s' if len(gaps) != 1 else ''} ({what}, first "
                     f"on line {data[gaps[0]][0]}) filled by linear interpolation between the "
                     "neighbouring values")
    times = None
    if time_column is not None:
        t = _column_index(path, header, time_column, width, "time_column")
        if t == j:
            raise DatasetError(f"{path}: {where} is both the value column and the time column")
        t_label = f"column {t + 1}" + (f" ({header[t]})" if header and header[t] else "")
        times, dates = [], False
        for line, fields in data:
            value = _time(fields[t], time_format)
            if value is None:
                raise DatasetError(f"{path}, line {line}, {t_label}: {fields[t].strip()!r} is "
                                   "not a time (a number or an ISO date such as 2024-03-01)")
            times.append(value[0])
            dates = dates or value[1]
        time_label = time_label or ("year" if dates else
                                    header[t] if header and header[t] else f"column {t + 1}")
        if any(b <= a for a, b in zip(times, times[1:])):
            k = next(k for k, (a, b) in enumerate(zip(times, times[1:])) if b <= a)
            raise DatasetError(f"{path}, line {data[k + 1][0]}, {t_label}: the times must "
                               "increase (the rows are the series in time order)")
    col_name = header[j] if header and header[j] else f"column {j + 1}"
    return Series(values, times, name=name or path.stem, column=col_name, unit=unit, step=step,
                  source=path, notes=notes, missing=len(gaps), time_label=time_label,
                  label=label)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_series(spec, column=None, time_column=None, missing=None, delimiter=",") -> Series:
    """The series ``spec`` names: ``co2`` or ``sunspots`` (the files statsmodels ships), or the
    path of a ``.csv`` file and its value ``column`` (default the last) and optional
    ``time_column`` (see the module docstring). ``missing``: 'error' (a CSV file's default) or
    'interpolate' (co2's). DatasetError naming the file, the line and the column for anything
    that cannot be read."""
    if is_series_name(spec):
        key = spec.strip().lower()
        info = SERIES[key]
        for opt, value in (("column", column), ("time_column", time_column)):
            if value is not None:
                raise DatasetError(f"series {key!r}: option {opt} applies to a CSV file (the "
                                   f"{key} series is its column {info[opt]!r})")
        path = statsmodels_dir().joinpath("datasets", *info["file"])
        if not path.is_file():
            raise DatasetError(f"{path}: the {key} data of statsmodels is not there (a "
                               "statsmodels without its bundled data sets?)")
        return _read_csv_series(path, info["column"], info["time_column"],
                                missing or info["missing"], name=key, unit=info["unit"],
                                step=info["step"], time_format=info["time_format"],
                                time_label=info["time_label"], label=info["label"])
    path = Path(os.path.expanduser(os.fspath(spec)))
    if path.suffix.lower() != ".csv":
        raise DatasetError(f"unknown series {os.fspath(spec)!r}: give one of "
                           f"{', '.join(SERIES)} or a .csv file")
    if not path.is_file():
        raise DatasetError(f"{path}: no such CSV file")
    return _read_csv_series(path, -1 if column is None else column, time_column,
                            missing or "error", delimiter)


# ----------------------------------------------------------------------------------- windows
class ForecastWindows(TensorDataset):
    """The windows of one part of a series: ``x`` float32 (N, window) the normalised past values,
    ``y`` float32 (N, horizon) the normalised values that follow. ``start`` int64 (N,): the index
    in the series of each window's first target. ``offset``, ``scale``: the normalisation
    (``value = offset + scale * normalised``); ``series``, ``part`` ('train', 'val', 'test'),
    ``window``, ``horizon``, ``span`` (the first and last index of the part's targets)."""

    def __init__(self, series: Series, part: str, starts, window: int, horizon: int,
                 offset: float, scale: float):
        self.series, self.part = series, part
        self.window, self.horizon = int(window), int(horizon)
        self.offset, self.scale = float(offset), float(scale)
        self.start = xp.asarray(starts, dtype=xp.int64)
        z = (series.values - self.offset) / self.scale
        past = self.start[:, None] + xp.arange(-self.window, 0)[None, :]
        ahead = self.start[:, None] + xp.arange(self.horizon)[None, :]
        super().__init__(z[past].astype(xp.float32), z[ahead].astype(xp.float32))
        self.span = (int(self.start[0]), int(self.start[-1]) + self.horizon - 1)

    @property
    def x(self):
        return self.arrays[0]

    @property
    def y(self):
        return self.arrays[1]

    @property
    def naive(self):
        """The naive forecast of each window, normalised: its last input value, ``horizon``
        times (float32 (N, horizon))."""
        return xp.repeat(self.x[:, -1:], self.horizon, axis=1)

    def original(self, z):
        """Normalised values ``z`` in the series' own units (float64)."""
        return self.offset + self.scale * xp.asarray(z, dtype=xp.float64)

    def times(self):
        """The time of each window's target steps: float64 (N, horizon) (decimal years, or the
        step index without times)."""
        idx = self.start[:, None] + xp.arange(self.horizon)[None, :]
        return (self.series.times[idx] if self.series.times is not None
                else idx.astype(xp.float64))

    def __repr__(self):
        return (f"ForecastWindows({self.series.name!r}, {self.part}: {len(self)} windows of "
                f"{self.window} -> {self.horizon})")


def split_sizes(length: int, val_fraction: float, test_fraction: float) -> tuple:
    """``(train, val, test)`` numbers of values of a series of ``length`` split in time: the last
    ``round(test_fraction * length)`` test, the ``round(val_fraction * length)`` before them
    validate, the rest trains."""
    n_test = int(round(test_fraction * length))
    n_val = int(round(val_fraction * length))
    return length - n_val - n_test, n_val, n_test


def forecast_splits(series: Series, window: int, horizon: int = 1, val_fraction: float = 0.1,
                    test_fraction: float = 0.2, source=None):
    """``(train, val or None, test)``: the ``ForecastWindows`` of the series split in time (see
    the module docstring), normalised by the training part's mean and standard deviation.
    ``val_fraction`` 0 gives no validation part. DatasetError (naming ``source``, default the
    series) when a part is too short for one window."""
    who = source or series.name
    for name, value in (("window", window), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"forecast_splits: {name} must be a positive integer, got {value!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"forecast_splits: test_fraction must be between 0 and 1, got "
                         f"{test_fraction!r}")
    if not 0.0 <= val_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise ValueError(f"forecast_splits: val_fraction ({val_fraction!r}) and test_fraction "
                         f"({test_fraction!r}) must leave a training part")
    n = len(series)
    n_train, n_val, n_test = split_sizes(n, val_fraction, test_fraction)
    need = window + horizon
    if n_train < need or n_test < horizon or (val_fraction and n_val < horizon):
        parts = f"{n_train} training, " + (f"{n_val} validation, " if val_fraction else "") + \
            f"{n_test} test"
        raise DatasetError(f"{who}: {n} values are too few for windows of {window} past values "
                           f"and {horizon} ahead: split in time into {parts} values, the "
                           f"training part needs at least {need} and the others at least "
                           f"{horizon} (a shorter window, or a longer series)")
    train_values = series.values[:n_train]
    offset = float(train_values.mean())
    scale = float(train_values.std())
    if not scale > 0:
        raise DatasetError(f"{who}: the training part's values are all {offset:g}: nothing to "
                           "forecast (their standard deviation, the normalisation, is 0)")

    def part(name, lo, hi):  # windows whose targets all lie in [lo, hi)
        return ForecastWindows(series, name, xp.arange(max(lo, window), hi - horizon + 1),
                               window, horizon, offset, scale)
    train = part("train", 0, n_train)
    val = part("val", n_train, n_train + n_val) if val_fraction else None
    test = part("test", n_train + n_val, n)
    return train, val, test
