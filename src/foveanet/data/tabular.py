"""``CSVDataset``: a table of numbers in a CSV file, one sample per row, as an in-memory dataset.

::

    x,y,label           features float32 (N, F) from the numeric columns,
    0.5,1.25,red        labels int64 (N,) with .classes for classification,
    -2,0.75,blue        or float32 targets (N,) for regression

Parsed with the ``csv`` module (quoting, any ``delimiter``), as UTF-8 (a byte-order mark is
skipped). Blank lines are skipped. Every problem is a ``DatasetError`` naming the file, the line
and the column: a value that is not a (finite) number, a row with more or fewer fields than the
first, an empty file, a column name that is not in the header.

The header: ``header=True`` / ``False`` say whether the first row names the columns;
``'auto'`` (default) takes it for a header when a column is named (``label_column`` or
``feature_columns`` given as a string), else when some column holds a number on the second row
but not on the first. A header of numbers (``0,1,2``) needs ``header=True``.

Class labels (``task='classification'``): if every label is a non-negative integer, the labels
are those integers and ``.classes`` is ``['0', '1', ..., str(max)]``; otherwise the labels are
class names (words, or integers with negative ones, such as Playground's -1 / +1) and class k is
the k-th of the sorted names (sorted as numbers when they are numbers: -1 -> 0, 1 -> 1).
Labels that are numbers but not integers are refused: they look like a regression target.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from ..backend import xp
from .dataset import TensorDataset
from .idx import DatasetError

__all__ = ["CSVDataset"]

TASKS = ("classification", "regression")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_rows(path: Path, delimiter: str):
    """[(line number, fields)] of the non-blank rows."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            try:
                for fields in reader:
                    if any(v.strip() for v in fields):  # a blank line, or only delimiters
                        rows.append((reader.line_num, fields))
            except csv.Error as e:
                raise DatasetError(f"{path}, line {reader.line_num}: not valid CSV ({e})") from e
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e})") from e
    except OSError as e:
        raise DatasetError(f"{path}: cannot read: {e.strerror or e}") from e
    return rows


class CSVDataset(TensorDataset):
    """A CSV table as ``(features, label)`` samples (see the module docstring).

    ``label_column``: the label's column, an index (negative counts from the end; default the
    last) or a header name; None for a table of features only. ``feature_columns``: the columns
    of the features (indices or names; default every other column). ``header``: True, False or
    'auto'. ``task``: 'classification' (int64 labels, ``.classes``) or 'regression' (float32
    targets). ``delimiter``: the field separator.

    ``.x`` float32 (N, F), ``.y`` the labels or targets, ``.feature_names``, ``.label_name``
    (the header's names, or 'column 3' without a header), ``.classes`` (None for regression),
    ``.num_classes``, ``.task``, ``.path``.
    """

    def __init__(self, path, label_column=-1, feature_columns=None, header="auto",
                 task: str = "classification", delimiter: str = ","):
        if task not in TASKS:
            raise ValueError(f"CSVDataset: task must be 'classification' or 'regression', got "
                             f"{task!r}")
        if header not in (True, False, "auto"):
            raise ValueError(f"CSVDataset: header must be True, False or 'auto', got {header!r}")
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise ValueError(f"CSVDataset: delimiter must be one character, got {delimiter!r}")
        self.path = Path(os.path.expanduser(os.fspath(path)))
        self.task = task
        rows = _read_rows(self.path, delimiter)
        if not rows:
            raise DatasetError(f"{self.path}: empty file (no rows)")
        first_line, first = rows[0]
        for line, fields in rows[1:]:
            if len(fields) != len(first):
                raise DatasetError(f"{self.path}, line {line}: {len(fields)} fields, expected "
                                   f"{len(first)} (as on line {first_line})")
        named = isinstance(label_column, str) or any(isinstance(c, str)
                                                     for c in (feature_columns or []))
        if header == "auto":
            header = named or self._looks_like_header(rows)
        names = [v.strip() for v in first] if header else None
        self.header = bool(header)
        data = rows[1:] if header else rows
        if not data:
            raise DatasetError(f"{self.path}: no data rows (only the header, line {first_line})")
        self._names = names
        width = len(first)

        label = None if label_column is None else self._column(label_column, width, "label_column")
        if feature_columns is None:
            features = [j for j in range(width) if j != label]
        else:
            features = [self._column(c, width, "feature_columns") for c in feature_columns]
        if label is not None and label in features:
            raise ValueError(f"CSVDataset: column {self._label(label)} is both the label and a "
                             "feature")
        if not features:
            raise DatasetError(f"{self.path}: no feature columns (the table has {width} column"
                               f"{'s' if width > 1 else ''})")
        self.feature_names = [self._label(j) for j in features]
        self.label_name = None if label is None else self._label(label)
        x = xp.asarray([[self._number(line, j, fields[j]) for j in features]
                        for line, fields in data], dtype=xp.float32).reshape(len(data), -1)
        self.classes = None
        if label is None:
            super().__init__(x)
        elif task == "regression":
            y = xp.asarray([self._number(line, label, fields[label]) for line, fields in data],
                           dtype=xp.float32)
            super().__init__(x, y)
        else:
            y, self.classes = self._class_labels(data, label)
            super().__init__(x, y)

    # ------------------------------------------------------------------------------- parsing
    @staticmethod
    def _looks_like_header(rows) -> bool:
        if len(rows) < 2:
            return not any(_is_number(v) for v in rows[0][1])
        (_, first), (_, second) = rows[0], rows[1]
        return any(not _is_number(a) and _is_number(b) for a, b in zip(first, second))

    def _label(self, j: int) -> str:
        """How column ``j`` is named in messages: 'column 3' or 'column 3 (price)'."""
        name = self._names[j] if self._names else ""
        return f"column {j + 1}" + (f" ({name})" if name else "")

    def _column(self, spec, width: int, what: str) -> int:
        """The 0-based index of column ``spec`` (an index, negative from the end, or a name)."""
        if isinstance(spec, str):
            if self._names is None:
                raise DatasetError(f"{self.path}: {what} {spec!r} is a name, but the file has no "
                                   "header row (pass header=True if its first row names the "
                                   "columns, or give the column's index)")
            if spec not in self._names:
                raise DatasetError(f"{self.path}: no column named {spec!r} ({what}); the columns "
                                   f"are: {', '.join(self._names)}")
            return self._names.index(spec)
        if isinstance(spec, bool) or not isinstance(spec, int) or not -width <= spec < width:
            raise DatasetError(f"{self.path}: {what} {spec!r} is not a column: the table has "
                               f"{width} columns (0 to {width - 1}, or -1 to -{width})")
        return spec % width

    def _number(self, line: int, j: int, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            what = "an empty value" if not text.strip() else f"{text.strip()!r}"
            raise DatasetError(f"{self.path}, line {line}, {self._label(j)}: {what} is not a "
                               "number") from None
        if not math.isfinite(value):
            raise DatasetError(f"{self.path}, line {line}, {self._label(j)}: {text.strip()!r} is "
                               "not a finite number")
        return value

    def _class_labels(self, data, j: int):
        """(int64 labels, class names) of column ``j`` (the rule in the module docstring)."""
        texts = [fields[j].strip() for _, fields in data]
        for (line, _), t in zip(data, texts):
            if not t:
                raise DatasetError(f"{self.path}, line {line}, {self._label(j)}: empty label")
        if all(_is_number(t) for t in texts):
            values = [float(t) for t in texts]
            bad = next((k for k, v in enumerate(values)
                        if not (math.isfinite(v) and v == int(v))), None)
            if bad is not None:
                raise DatasetError(f"{self.path}, line {data[bad][0]}, {self._label(j)}: class "
                                   f"label {texts[bad]!r} is not an integer (a regression "
                                   "target? pass task='regression')")
            ints = xp.asarray(values, dtype=xp.int64)
            if ints.min() >= 0:
                return ints, [str(k) for k in range(int(ints.max()) + 1)]
            names, y = xp.unique(ints, return_inverse=True)
            return y.astype(xp.int64), [str(int(v)) for v in names]
        names = sorted(set(texts))
        index = {name: k for k, name in enumerate(names)}
        return xp.asarray([index[t] for t in texts], dtype=xp.int64), names

    # ---------------------------------------------------------------------------------- access
    @property
    def x(self):
        return self.arrays[0]

    @property
    def y(self):
        return self.arrays[1] if len(self.arrays) > 1 else None

    @property
    def num_classes(self) -> int:
        return 0 if self.classes is None else len(self.classes)

    def __repr__(self):
        return (f"CSVDataset({str(self.path)!r}, {len(self)} rows, {len(self.feature_names)} "
                f"features, task={self.task!r})")
