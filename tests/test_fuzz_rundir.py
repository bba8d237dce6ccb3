"""Hostile run directories: every mutated checkpoint loads or ends in a CheckpointError that names
the file, never in another exception (an "escape").

Three real run directories (one model; two models with their optimizers; a version 1 checkpoint)
are mutated, one mutation per case, seeded and bounded:

* ``checkpoint.json`` structure: a value replaced by null / true / a huge, negative or fractional
  number / a string / a list / an object / a deep nest / an array reference to nowhere, a key
  deleted or renamed, a value's type swapped, a value nested one level deeper, two values
  swapped;
* ``checkpoint.json`` bytes: flipped, inserted (invalid UTF-8 too), deleted, truncated, emptied;
* the ``.safetensors`` files: their bytes as above, or their JSON header mutated as above (the
  dtype, the shape, the offsets, the metadata...) and, half the time, the sha256 in
  checkpoint.json updated to match, so that the checks behind the checksum are reached too;
* ``best.json`` / ``best*.safetensors``: as above.

Each case goes through ``read_checkpoint``, ``load_checkpoint`` into fresh objects (which must be
unchanged when it fails), ``Trainer.resume`` and, when that works, one more epoch of ``fit``; and
``read_best`` and ``io.load_state_dict`` for the files they read. A ``TrainingDiverged`` of that
epoch (e.g. a learning rate made huge) is a clean outcome too.
"""
import copy
import hashlib
import json
import os
import shutil
import struct
import traceback
import warnings
from collections import Counter

import numpy as np
import pytest

import foveanet as fv
import foveanet.train  # noqa: F401
from foveanet import nn
from foveanet.nn import functional as F
from foveanet.train import CheckpointError, EarlyStopping, Trainer, TrainingDiverged
from foveanet.train import checkpoint as ck
from foveanet.train import io as tio
from test_train_common import TinyLoader, blobs, weights_of

SEED = 20240611
CASES = {"json structure": 1400, "json bytes": 500, "safetensors bytes": 300,
         "safetensors header": 700, "best": 400}
X, Y = blobs(24, seed=5)


# ------------------------------------------------------------------------------- the run kinds
def _single(seed=0):
    fv.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Dropout(0.2, generator=fv.Generator(9)),
                          nn.Linear(6, 3))
    opt = fv.optim.Adam(model.parameters(), lr=1e-2)
    sched = fv.optim.lr_scheduler.StepLR(opt, 1, 0.5)
    return {"model": model}, {"optimizer": opt}, {"optimizer": sched}


def _double(seed=0):
    fv.manual_seed(seed)
    enc, head = nn.Sequential(nn.Linear(4, 5), nn.Tanh()), nn.Linear(5, 3)
    opts = {"enc": fv.optim.SGD(enc.parameters(), lr=0.1, momentum=0.9),
            "head": fv.optim.RMSprop(head.parameters(), lr=1e-2)}
    scheds = {"enc": fv.optim.lr_scheduler.ReduceLROnPlateau(opts["enc"], patience=0),
              "head": fv.optim.lr_scheduler.MultiStepLR(opts["head"], [1, 3])}
    return {"enc": enc, "head": head}, opts, scheds


class TwoPart(Trainer):
    def train_step(self, batch):
        x, y = batch
        out = self.models["head"](self.models["enc"](x))
        loss = F.cross_entropy(out, y)
        self.zero_grad("enc")
        self.zero_grad("head")
        self.backward(loss)
        self.step("enc")
        self.step("head")
        self.train_metrics.update(out, y)
        return {"loss": loss}

    def eval_step(self, batch):
        x, y = batch
        out = self.models["head"](self.models["enc"](x))
        self.eval_metrics.update(out, y)
        return {"loss": F.cross_entropy(out, y)}


def _loaders():
    data = fv.data
    train = data.DataLoader(data.TensorDataset(X[:16], Y[:16]), batch_size=8, shuffle=True,
                            generator=fv.Generator(3))
    return train, TinyLoader(X[16:], Y[16:], 8, shuffle=True, generator=fv.Generator(4))


def _trainer(kind, run_dir=None, seed=0):
    models, opts, scheds = (_single if kind != "double" else _double)(seed)
    cbs = [EarlyStopping(patience=5, restore_best=True)]
    if kind == "double":
        return TwoPart(models=models, optimizers=opts, schedulers=scheds, task="classification",
                       progress=False, run_dir=run_dir, callbacks=cbs)
    return Trainer(models["model"], opts["optimizer"], scheduler=scheds["optimizer"],
                   clip_grad_norm=1.0, progress=False, run_dir=run_dir, callbacks=cbs)


def _as_version_1(run_dir):
    path = os.path.join(run_dir, "checkpoint.json")
    doc = json.load(open(path))
    opt = doc["optimizers"]["optimizer"]
    v1 = {k: doc[k] for k in ("format", "model", "epoch", "global_step", "rng", "history",
                              "callbacks", "extra", "files", "created")}
    v1.update(format_version=1, optimizer={"class": opt["class"], "state": opt["state"]},
              scheduler=doc["schedulers"]["optimizer"])
    json.dump(v1, open(path, "w"))


_CLOCK = {"created": "2024-06-11T12:00:00+0000", "train_time": 0.25, "epoch_time": 0.5,
          "images_per_sec": 64.0}


def _without_clock(tree):
    """``tree`` with its times set to constants: the same bytes on every run, so that the same
    seed makes the same mutations of the same documents."""
    if isinstance(tree, dict):
        return {k: _CLOCK[k] if k in _CLOCK else _without_clock(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_without_clock(v) for v in tree]
    return tree


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{kind: {file name: bytes}} of real run directories after two epochs."""
    out = {}
    for kind in ("single", "double", "v1"):
        run_dir = tmp_path_factory.mktemp(kind)
        _trainer(kind, run_dir).fit(*_loaders(), epochs=2)
        if kind == "v1":
            _as_version_1(run_dir)
        out[kind] = {f: open(run_dir / f, "rb").read() for f in os.listdir(run_dir)
                     if f.endswith((".json", ".safetensors"))}
        for f in ("checkpoint.json", "best.json"):
            out[kind][f] = tio.dumps_json(_without_clock(tio.loads_json(out[kind][f].decode()))
                                          ).encode("utf-8")
    assert "callbacks.safetensors" in out["single"] and "best.enc.safetensors" in out["double"]
    return out


# ------------------------------------------------------------------------------------ mutations
_ODD = [None, True, False, 0, 1, -1, -7, 2 ** 64, -(2 ** 63), 10 ** 30, 1e308, 0.5, -0.0, "",
        "x", "NaN", "../../outside.safetensors", "model.safetensors", "checkpoint.json", "é\0",
        [], {}, [1, 2], {"a": 1}, [[[]]], {"__array__": "missing"}, {"__array__": 3},
        {"__array__": ["x"]}, {"__array__": "0.exp_avg", "scalar": True}, {"__float__": "nan"},
        {"__float__": 1}, {"__float__": "x"}, "0" * 300]
_HUGE = "__huge_integer__"      # replaced in the text by a 5000-digit integer
_DEEP = "__deep_nest__"         # replaced by 100000 nested lists


def _paths(tree, path=()):
    yield path
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, path + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, path + (i,))


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def _swap_type(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return [v]
    if isinstance(v, list):
        return {str(i): x for i, x in enumerate(v)}
    if isinstance(v, dict):
        return list(v.values())
    return {}


def mutate_tree(tree, rng):
    """One structural mutation of a JSON tree (in place, or a new root); returns (tree, what)."""
    paths = list(_paths(tree))
    path = paths[int(rng.integers(len(paths)))] if rng.random() < 0.97 else ()
    op = rng.choice(["replace", "replace", "delete", "swap", "nest", "rename", "copy", "huge",
                     "deep"])
    what = f"{op} {'.'.join(map(str, path)) or '<root>'}"
    if op == "replace":
        new = copy.deepcopy(_ODD[int(rng.integers(len(_ODD)))])
    elif op == "swap":
        new = _swap_type(_get(tree, path))
    elif op == "nest":
        new = [_get(tree, path)] if rng.random() < 0.5 else {"value": _get(tree, path)}
    elif op == "copy":
        new = copy.deepcopy(_get(tree, paths[int(rng.integers(len(paths)))]))
    elif op == "huge":
        new = _HUGE
    elif op == "deep":
        new = _DEEP
    else:
        new = None
    if not path:
        return (new if op not in ("delete", "rename") else {}), what
    parent, key = _get(tree, path[:-1]), path[-1]
    if op == "delete":
        del parent[key]
    elif op == "rename":
        if isinstance(parent, dict):
            parent[f"{key}_"] = parent.pop(key)
        else:
            parent.insert(key, parent[key])
    else:
        parent[key] = new
    return tree, what


def dump_tree(tree) -> bytes:
    text = json.dumps(tree, allow_nan=True)
    text = text.replace(f'"{_HUGE}"', "1" + "0" * 5000)
    return text.replace(f'"{_DEEP}"', "[" * 100000 + "]" * 100000).encode("utf-8")


def mutate_bytes(data: bytes, rng):
    """One byte-level mutation: flips, insertions (invalid UTF-8 too), deletions, truncation."""
    b = bytearray(data)
    op = rng.choice(["flip", "insert", "delete", "truncate", "empty", "invalid_utf8", "bom"])
    if op == "flip" and b:
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(b)))
            b[i] ^= int(rng.integers(1, 256))
    elif op == "insert":
        i = int(rng.integers(len(b) + 1))
        b[i:i] = bytes(rng.integers(0, 256, int(rng.integers(1, 9))).tolist())
    elif op == "delete" and b:
        i = int(rng.integers(len(b)))
        del b[i:i + int(rng.integers(1, 64))]
    elif op == "truncate":
        b = b[:int(rng.integers(len(b) + 1))]
    elif op == "empty":
        b = bytearray()
    elif op == "invalid_utf8" and b:
        b[int(rng.integers(len(b)))] = int(rng.choice([0x80, 0xC3, 0xFF, 0xFE]))
    elif op == "bom":
        b = bytearray(b"\xef\xbb\xbf") + b
    return bytes(b), f"bytes {op}"


_DTYPES = ["F16", "F32", "F64", "I8", "I32", "I64", "U8", "BOOL", "BF16", "X"]


def mutate_header(data: bytes, rng):
    """A safetensors file with one mutation of its JSON header (dtype, shape, offsets, entries,
    metadata, or any structural one), re-encoded with a consistent length prefix."""
    (n,) = struct.unpack("<Q", data[:8])
    header, body = json.loads(data[8:8 + n]), data[8 + n:]
    names = sorted(k for k in header if k != "__metadata__")
    op = rng.choice(["dtype", "shape", "offsets", "drop", "add", "metadata", "order", "tree"])
    if op == "dtype" and names:
        header[names[int(rng.integers(len(names)))]]["dtype"] = str(rng.choice(_DTYPES))
    elif op == "shape" and names:
        entry = header[names[int(rng.integers(len(names)))]]
        shapes = [[], [0], [1], [2, 3], list(reversed(entry["shape"])), [-1], [2 ** 40]]
        entry["shape"] = shapes[int(rng.integers(len(shapes)))]
    elif op == "offsets" and names:
        entry = header[names[int(rng.integers(len(names)))]]
        a, b = entry["data_offsets"]
        entry["data_offsets"] = [[b, a], [a, b + 4], [a + 1, b + 1], [0, 0], [a, 2 ** 62]][
            int(rng.integers(5))]
    elif op == "drop" and names:
        del header[names[int(rng.integers(len(names)))]]
    elif op == "add":
        header[f"extra{int(rng.integers(9))}"] = {"dtype": "F32", "shape": [1],
                                                   "data_offsets": [0, 4]}
    elif op == "metadata":
        meta = header.setdefault("__metadata__", {})
        choice = int(rng.integers(5))
        if choice == 0:
            header["__metadata__"] = [1, 2]
        elif choice == 1:
            meta["epoch"] = 3
        elif choice == 2:
            meta["foveanet.key_order"] = "["
        elif choice == 3:
            meta["foveanet.key_order"] = json.dumps(list(reversed(names)) + ["ghost"])
        else:
            header["__metadata__"] = None
    elif op == "order":
        header.setdefault("__metadata__", {})["foveanet.key_order"] = json.dumps(
            list(reversed(names)))
    else:
        header, _ = mutate_tree(header, rng)
    text = dump_tree(header)
    return struct.pack("<Q", len(text)) + text + body, f"header {op}"


def _resign(files, fname):
    """Record ``fname``'s new sha256 in checkpoint.json (when that still parses)."""
    try:
        doc = json.loads(files["checkpoint.json"])
        doc["files"][fname]["sha256"] = hashlib.sha256(files[fname]).hexdigest()
    except (ValueError, KeyError, TypeError):
        return
    files["checkpoint.json"] = json.dumps(doc).encode("utf-8")


# ---------------------------------------------------------------------------------- the targets
class Tally:
    def __init__(self):
        self.counts = Counter()
        self.escapes = []

    def run(self, target, fn, what, run_dir):
        try:
            fn()
        except CheckpointError as exc:
            self.counts["clean errors"] += 1
            # the sentence names the file at fault (a path in the run directory)
            assert exc.path is not None and os.path.basename(exc.path) in str(exc), str(exc)
            self.counts["... naming a key"] += exc.key is not None
            return False
        except TrainingDiverged:
            self.counts["clean errors"] += 1
            self.counts["... diverged after loading"] += 1
            return False
        except Exception as exc:  # noqa: BLE001 - counting what escapes is the point
            self.counts["escapes"] += 1
            self.escapes.append(f"{target} after {what}: {type(exc).__name__}: {exc!s:.200}\n"
                                + "".join(traceback.format_tb(exc.__traceback__)[-3:]))
            return False
        self.counts["loads"] += 1
        return True


def _snapshot(models, opts, scheds):
    def optimizer(o):
        sd = o.state_dict()  # parameter groups with indices, not tensors
        return repr(sd["param_groups"]), {k: {n: v.tobytes() if isinstance(v, np.ndarray) else v
                                              for n, v in s.items()} for k, s in sd["state"].items()}
    return ({n: weights_of(m) for n, m in models.items()},
            {n: optimizer(o) for n, o in opts.items()},
            {n: repr(s.state_dict()) for n, s in scheds.items()})


def _same(a, b):
    wa, oa, sa = a
    wb, ob, sb = b
    return (oa == ob and sa == sb and wa.keys() == wb.keys()
            and all(wa[n][k].tobytes() == wb[n][k].tobytes() for n in wa for k in wa[n]))


def check_checkpoint(kind, run_dir, what, tally):
    tally.run("read_checkpoint", lambda: ck.read_checkpoint(run_dir), what, run_dir)
    models, opts, scheds = (_single if kind != "double" else _double)(1)
    before = _snapshot(models, opts, scheds)
    if kind == "double":
        load = lambda: ck.load_checkpoint(run_dir, models=models, optimizers=opts,  # noqa: E731
                                          schedulers=scheds)
    else:
        load = lambda: ck.load_checkpoint(run_dir, models["model"], opts["optimizer"],  # noqa: E731
                                          scheds["optimizer"])
    if not tally.run("load_checkpoint", load, what, run_dir):
        if not _same(before, _snapshot(models, opts, scheds)):
            tally.counts["escapes"] += 1
            tally.escapes.append(f"load_checkpoint after {what}: changed the objects, then failed")
    scratch = os.path.join(os.path.dirname(run_dir), "scratch")
    shutil.rmtree(scratch, ignore_errors=True)
    trainer = _trainer(kind, scratch, seed=2)
    train, val = _loaders()
    if tally.run("Trainer.resume", lambda: trainer.resume(run_dir, train, val), what, run_dir):
        tally.run("fit after resume", lambda: trainer.fit(train, val, epochs=trainer.epoch + 1),
                  what, run_dir)


def check_best(kind, run_dir, what, tally):
    tally.run("read_best", lambda: ck.read_best(run_dir), what, run_dir)
    for f in sorted(os.listdir(run_dir)):
        if f.startswith("best") and f.endswith(".safetensors"):
            tally.run("io.load_state_dict", lambda: tio.load_state_dict(os.path.join(run_dir, f)),
                      what, run_dir)


def test_mutated_run_directories_load_or_fail_cleanly(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # speed: durability is not under test here
    rng = np.random.default_rng(SEED)
    tally = Tally()
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    on_disk = {}
    cases = Counter()
    for family, count in CASES.items():
        for _ in range(count):
            kind = str(rng.choice(["single", "double", "v1"]))
            files = dict(runs[kind])
            arrays = sorted(f for f in files if f.endswith(".safetensors") and not f.startswith("best"))
            bests = sorted(f for f in files if f.startswith("best"))
            if family == "json structure":
                tree, what = mutate_tree(json.loads(files["checkpoint.json"]), rng)
                files["checkpoint.json"] = dump_tree(tree)
            elif family == "json bytes":
                files["checkpoint.json"], what = mutate_bytes(files["checkpoint.json"], rng)
            elif family == "safetensors bytes":
                fname = arrays[int(rng.integers(len(arrays)))]
                files[fname], what = mutate_bytes(files[fname], rng)
                if rng.random() < 0.1:
                    del files[fname]
                    what = "deleted"
                what = f"{fname} {what}"
            elif family == "safetensors header":
                fname = arrays[int(rng.integers(len(arrays)))]
                files[fname], what = mutate_header(files[fname], rng)
                if rng.random() < 0.5:
                    _resign(files, fname)
                    what += " (re-signed)"
                what = f"{fname} {what}"
            else:
                fname = bests[int(rng.integers(len(bests)))]
                if fname.endswith(".json"):
                    if rng.random() < 0.7:
                        tree, what = mutate_tree(json.loads(files[fname]), rng)
                        files[fname] = dump_tree(tree)
                    else:
                        files[fname], what = mutate_bytes(files[fname], rng)
                else:
                    files[fname], what = (mutate_header if rng.random() < 0.6 else mutate_bytes)(
                        files[fname], rng)
                what = f"{fname} {what}"
            for name in list(on_disk):  # write only what differs from the last case's files
                if files.get(name) != on_disk[name]:
                    os.remove(os.path.join(run_dir, name))
                    del on_disk[name]
            for name, data in files.items():
                if name not in on_disk:
                    with open(os.path.join(run_dir, name), "wb") as f:
                        f.write(data)
                    on_disk[name] = data
            what = f"{kind}: {what}"
            cases[family] += 1
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if family == "best":
                    check_best(kind, run_dir, what, tally)
                else:
                    check_checkpoint(kind, run_dir, what, tally)
                    if family.startswith("safetensors") and fname.startswith("model"):
                        tally.run("io.load_state_dict", lambda: tio.load_state_dict(
                            os.path.join(run_dir, fname)), what, run_dir)
    counts = tally.counts
    with capsys.disabled():
        print(f"\nrun-directory fuzz: {sum(cases.values())} cases ({dict(cases)}); "
              f"{sum(counts[k] for k in ('loads', 'clean errors', 'escapes'))} loads attempted: "
              f"{counts['loads']} loaded, {counts['clean errors']} clean errors "
              f"({counts['... naming a key']} naming a key, {counts['... diverged after loading']} "
              f"diverged after loading), {counts['escapes']} escapes")
    assert sum(cases.values()) == sum(CASES.values())
    assert counts["loads"] > 500 and counts["clean errors"] > 2000  # both sides are exercised
    assert counts["escapes"] == 0, "\n".join(tally.escapes[:int(os.environ.get("FUZZ_SHOW", 8))])
