"""``History``: what ``fit`` returns, one dict of metrics per epoch.

Each record holds ``epoch`` (1-based), ``global_step`` (batches with an optimizer step so far),
``train_loss``, ``train_accuracy`` (classification; None for a ``loss_fn`` whose batches do not
look like classification), ``train_cost`` (only with l1/l2: loss + penalty), ``val_loss``,
``val_accuracy``, ``val_top5`` (when there is a validation loader; top-5 only with >= 5 classes),
``lr`` (the first parameter group's rate during the epoch; ``lr_<name>`` per optimizer when
there are several), ``train_time`` (seconds in the training loop), ``epoch_time`` (seconds,
training + validation + checks) and ``images_per_sec`` (training samples per second of
``train_time``), plus whatever callbacks add. Other tasks log their metrics the same way
(``train_mse``, ``val_r2``, ``val_mean_iou``, ``val_psnr``...), and a custom ``train_step`` /
``eval_step`` the values it returns (``train_<key>`` / ``val_<key>``).

``history["val_loss"]`` is the list of one metric over the epochs, ``history[-1]`` the last record.
``to_csv``/``to_jsonl`` write the table (atomically).
"""
from __future__ import annotations

import csv
import io
import json
import math

from .io import _encode, atomic_write_text

__all__ = ["History"]


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


class History:
    """Per-epoch metric records, and how the run ended.

    ``status``: ``"new"``, ``"running"``, ``"completed"``, ``"early_stopped"``, ``"diverged"`` or
    ``"interrupted"``; ``stop_reason``: a sentence when the run stopped before its last epoch."""

    def __init__(self, epochs=None):
        self.epochs: list[dict] = [dict(e) for e in (epochs or [])]
        self.status = "new"
        self.stop_reason: str | None = None

    # ------------------------------------------------------------------------------- access
    def append(self, record: dict) -> None:
        self.epochs.append(record)

    def __len__(self) -> int:
        return len(self.epochs)

    def __iter__(self):
        return iter(self.epochs)

    def __getitem__(self, key):
        if isinstance(key, str):
            if not any(key in e for e in self.epochs) and self.epochs:
                raise KeyError(f"no metric {key!r} in the history; it has {self.keys()}")
            return [e.get(key) for e in self.epochs]
        return self.epochs[key]

    def keys(self) -> list[str]:
        """Every metric name, in first-seen order."""
        out: dict[str, None] = {}
        for e in self.epochs:
            out.update(dict.fromkeys(e))
        return list(out)

    @property
    def last(self) -> dict | None:
        return self.epochs[-1] if self.epochs else None

    def best(self, monitor: str = "val_loss", mode: str = "min") -> dict | None:
        """The record with the lowest (``mode='min'``) or highest ``monitor`` (first on ties)."""
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        cands = [e for e in self.epochs if not _is_missing(e.get(monitor))]
        if not cands:
            return None
        pick = min if mode == "min" else max
        return pick(cands, key=lambda e: e[monitor])

    # ------------------------------------------------------------------------------- output
    def csv_text(self) -> str:
        keys = self.keys()
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(keys)
        for e in self.epochs:
            w.writerow(["" if e.get(k) is None else (repr(e[k]) if isinstance(e[k], float) else e[k])
                        for k in keys])
        return buf.getvalue()

    def jsonl_text(self) -> str:
        return "".join(json.dumps(_encode(e, f"history epoch {e.get('epoch')}"), allow_nan=False) + "\n"
                       for e in self.epochs)

    def to_csv(self, path) -> None:
        """Write the records as CSV (a header row, one row per epoch), atomically."""
        atomic_write_text(path, self.csv_text())

    def to_jsonl(self, path) -> None:
        """Write one JSON object per epoch and line, atomically."""
        atomic_write_text(path, self.jsonl_text())

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {"epochs": [dict(e) for e in self.epochs], "status": self.status,
                "stop_reason": self.stop_reason}

    def load_state_dict(self, state) -> None:
        if isinstance(state, list):  # a bare list of records
            state = {"epochs": state}
        self.epochs = [dict(e) for e in state.get("epochs", [])]
        self.status = state.get("status", "new")
        self.stop_reason = state.get("stop_reason")

    def __repr__(self):
        last = self.last
        tail = "" if last is None else " last=" + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items())
        return f"History({len(self)} epochs, status={self.status!r}{tail})"
