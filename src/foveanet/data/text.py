"""Character-level text for language models: a corpus, its vocabulary of characters, the split
by position and the "batchify" layout of truncated back-propagation through time.

::

    from foveanet.data.text import (stdlib_corpus, read_text, Vocabulary, split_by_position,
                                    BPTTLoader)

    corpus = stdlib_corpus()               # the Python standard library's own sources
    corpus = read_text("shakespeare.txt")  # or any UTF-8 text file
    vocab = Vocabulary.from_text(corpus.text)
    ids = vocab.encode(corpus.text)        # int64 (n,)
    train, val = split_by_position(ids, 0.1)          # the last 10% validates
    loader = BPTTLoader(train, batch_size=32, bptt=100)
    for x, y, start in loader:             # x, y int64 (32, 100); y is x shifted by one
        ...                                # start: the recurrent state begins anew here

The corpus
----------
``stdlib_corpus()`` is on every machine that has Python, without a download: the ``*.py`` files
under ``sysconfig.get_paths()["stdlib"]``, their paths relative to it sorted as POSIX strings,
read as UTF-8 and concatenated in that order up to ``max_chars`` characters (default
``STDLIB_MAX_CHARS``, 2,000,000; the last file is cut there). Left out: the directories
``STDLIB_EXCLUDED_DIRS`` (installed packages, the test suites, lib2to3's and IDLE's, the codec
tables of ``encodings``) and the files ``STDLIB_EXCLUDED_FILES`` (``_sysconfigdata*``: written
when Python is built, they differ between machines). The same Python version (the same build)
gives the same text, character for character; ``TextCorpus.sha256`` says whether two machines
read the same, and ``TextCorpus.files`` records each file, how many characters and bytes of it
were used and their SHA-256.

``read_text(path)`` reads a user's file: UTF-8 (a leading byte-order mark is dropped), every
character kept as it is (``\\r\\n`` stays two characters). A missing file, a directory, an empty
file, a binary file (one with a NUL byte) or one that is not UTF-8 is a ``DatasetError`` that
names the file and what is wrong with it.

Vocabulary
----------
``Vocabulary.from_text(text)``: the distinct characters of the text, sorted by code point; index
``i`` is ``chars[i]``. A run directory keeps the list (``config.json``'s ``classes``: the classes
the model predicts), and ``Vocabulary(chars)`` rebuilds it. ``encode`` refuses a character the
vocabulary does not have with a ``ValueError`` listing them (there is no "unknown" symbol: a
character model trained without a character cannot say anything useful after it).

Batchify and truncated BPTT
---------------------------
``batchify(ids, B)`` cuts the token stream into ``B`` contiguous parallel streams, the rows of a
(B, L) array, ``L = len(ids) // B`` (the last ``len(ids) % B`` tokens are dropped): row ``b`` is
``ids[b L:(b + 1) L]``. ``BPTTLoader`` walks along the rows in windows of ``bptt`` steps: batch
``k`` is ``x = data[:, k bptt:(k + 1) bptt]`` and ``y`` the same window one step later, so that
row ``b`` of batch ``k + 1`` continues row ``b`` of batch ``k`` exactly where it stopped and a
recurrent state carried from one batch to the next sees each stream as one text. Training drops
a last, shorter window (``drop_last``: every batch then has ``B x bptt`` targets); validation
keeps it. ``start`` is True for the first batch of every epoch and where a limited epoch
(``steps_per_epoch``) wraps around from the end of the streams to their beginning: there the
state must begin anew. The loader draws nothing at random; its ``state_dict`` is the number of
epochs started, from which the window every epoch begins with follows.
"""
from __future__ import annotations

import hashlib
import math
import numbers
import os
import sys
import sysconfig
from typing import NamedTuple

from ..autograd import Tensor
from ..backend import xp
from ..ops import tensor
from .idx import DatasetError

__all__ = ["TextCorpus", "stdlib_corpus", "read_text", "load_corpus", "Vocabulary",
           "split_by_position", "batchify", "bptt_windows", "TextBatch", "BPTTLoader",
           "STDLIB", "STDLIB_MAX_CHARS", "STDLIB_EXCLUDED_DIRS", "STDLIB_EXCLUDED_FILES"]

STDLIB = "stdlib"                  # the name of the default corpus (config.json's "dataset")
STDLIB_MAX_CHARS = 2_000_000
STDLIB_EXCLUDED_DIRS = ("site-packages", "dist-packages", "test", "tests", "idle_test",
                        "idlelib", "lib2to3", "turtledemo", "encodings", "__pycache__")
STDLIB_EXCLUDED_FILES = ("_sysconfigdata",)   # prefixes


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TextCorpus:
    """A text and where it came from. ``text`` (str), ``source`` (``"stdlib"`` or the file's
    absolute path), ``files`` (one dict per file read: ``path`` (relative to ``root`` for the
    standard library), ``characters``, ``bytes`` and ``sha256`` of the part used, ``truncated``),
    ``root`` (the standard library's directory, or None), ``max_chars`` (the cap applied, or
    None), ``sha256`` (of the whole text as UTF-8)."""

    def __init__(self, text: str, source: str, files: list, root=None, max_chars=None):
        self.text = text
        self.source = source
        self.files = list(files)
        self.root = root
        self.max_chars = max_chars
        self.sha256 = _sha256(text.encode("utf-8"))

    def __len__(self) -> int:
        return len(self.text)

    def describe(self) -> str:
        """One line: how many characters from where."""
        if self.source == STDLIB:
            return (f"{len(self.text):,} characters from {len(self.files)} files of the Python "
                    f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro} "
                    f"standard library ({self.root})")
        cut = f" (its first {self.max_chars:,})" if any(f["truncated"] for f in self.files) else ""
        return f"{len(self.text):,} characters{cut} of {self.source}"

    def summary(self) -> dict:
        """What a run's config.json records: source, characters, bytes, files, sha256 (and the
        Python version for the standard library)."""
        out = {"source": self.source, "characters": len(self.text),
               "bytes": sum(f["bytes"] for f in self.files), "files": len(self.files),
               "max_chars": self.max_chars, "sha256": self.sha256}
        if self.source == STDLIB:
            out.update(root=self.root, python=sys.version.split()[0])
        return out

    def manifest(self) -> dict:
        """``summary()`` with the list of files (a run directory's ``corpus.json``)."""
        return {**self.summary(), "file_list": [dict(f) for f in self.files]}

    def __repr__(self):
        return f"TextCorpus({self.describe()}, sha256 {self.sha256[:12]})"


def _check_max_chars(max_chars, who):
    if max_chars is None:
        return None
    if isinstance(max_chars, bool) or not isinstance(max_chars, numbers.Integral) or max_chars < 1:
        raise ValueError(f"{who}: max_chars must be a positive integer or None, got {max_chars!r}")
    return int(max_chars)


def stdlib_files(root=None) -> list:
    """The standard library's ``*.py`` files the corpus is read from, in its order: paths
    relative to ``root`` (default ``sysconfig.get_paths()["stdlib"]``), POSIX-style, sorted."""
    root = os.fspath(root) if root is not None else sysconfig.get_paths()["stdlib"]
    if not os.path.isdir(root):
        raise DatasetError(f"the Python standard library is not at {root} (no such directory)")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in STDLIB_EXCLUDED_DIRS]
        for name in filenames:
            if name.endswith(".py") and not name.startswith(STDLIB_EXCLUDED_FILES):
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                found.append(rel.replace(os.sep, "/"))
    return sorted(found)


def stdlib_corpus(max_chars: int | None = STDLIB_MAX_CHARS, root=None) -> TextCorpus:
    """The default corpus: the standard library's sources (``stdlib_files``) concatenated up to
    ``max_chars`` characters (None: all of them, about 9 MB). A file that is not UTF-8 is left
    out and recorded with ``"skipped"``."""
    max_chars = _check_max_chars(max_chars, "stdlib_corpus")
    root = os.fspath(root) if root is not None else sysconfig.get_paths()["stdlib"]
    parts, files, total = [], [], 0
    for rel in stdlib_files(root):
        if max_chars is not None and total >= max_chars:
            break
        with open(os.path.join(root, *rel.split("/")), "rb") as f:
            data = f.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            files.append({"path": rel, "characters": 0, "bytes": 0, "sha256": _sha256(b""),
                          "truncated": False, "skipped": "not UTF-8"})
            continue
        truncated = max_chars is not None and total + len(text) > max_chars
        if truncated:
            text = text[:max_chars - total]
        raw = text.encode("utf-8")
        parts.append(text)
        total += len(text)
        files.append({"path": rel, "characters": len(text), "bytes": len(raw),
                      "sha256": _sha256(raw), "truncated": truncated})
    if total == 0:
        raise DatasetError(f"no Python source files found in the standard library at {root}")
    return TextCorpus("".join(parts), STDLIB, files, root=root, max_chars=max_chars)


def read_text(path, max_chars: int | None = None) -> TextCorpus:
    """A UTF-8 text file as a corpus (its first ``max_chars`` characters when given).
    DatasetError naming the file when it is missing, a directory, empty, binary or not UTF-8."""
    max_chars = _check_max_chars(max_chars, "read_text")
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise DatasetError(f"{path}: is a directory, not a text file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such text file") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the text file: {exc.strerror or exc}") from None
    if not data:
        raise DatasetError(f"{path}: the text file is empty")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DatasetError(f"{path}: a binary file, not text (a NUL byte at offset {nul}); "
                           "give a UTF-8 text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                           f"{exc.start} is not valid UTF-8); convert it, e.g. with iconv -t "
                           "UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    truncated = max_chars is not None and len(text) > max_chars
    if truncated:
        text = text[:max_chars]
    if not text:
        raise DatasetError(f"{path}: the text file is empty (only a byte-order mark)")
    raw = text.encode("utf-8")
    files = [{"path": path, "characters": len(text), "bytes": len(raw), "sha256": _sha256(raw),
              "truncated": truncated}]
    return TextCorpus(text, path, files, max_chars=max_chars)


def load_corpus(source=None, max_chars: int | None = None) -> TextCorpus:
    """``stdlib_corpus`` for ``source`` None or ``"stdlib"`` (``max_chars`` None: its default
    cap), else ``read_text(source, max_chars)``."""
    if source is None or source == STDLIB:
        return stdlib_corpus(STDLIB_MAX_CHARS if max_chars is None else max_chars)
    return read_text(source, max_chars)


def _char_name(c: str) -> str:
    return f"{c!r} (U+{ord(c):04X})"


class Vocabulary:
    """The characters a model reads and predicts: ``chars[i]`` is index ``i``. ``encode(text)``
    -> int64 indices, ``decode(indices)`` -> str, ``len()``, ``in``. Built from a text
    (``from_text``: its distinct characters, sorted by code point) or from a saved list."""

    def __init__(self, chars):
        chars = list(chars)
        if not chars:
            raise ValueError("a vocabulary needs at least one character")
        for i, c in enumerate(chars):
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"a vocabulary holds single characters; entry {i} is {c!r}")
        if len(set(chars)) != len(chars):
            seen, dup = set(), None
            for c in chars:
                if c in seen:
                    dup = c
                    break
                seen.add(c)
            raise ValueError(f"a vocabulary holds each character once; {_char_name(dup)} is "
                             "there twice")
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "Vocabulary":
        if not isinstance(text, str) or not text:
            raise ValueError("Vocabulary.from_text: needs a non-empty string")
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, c) -> bool:
        return c in self.index

    def unknown(self, text: str) -> list:
        """The distinct characters of ``text`` this vocabulary lacks, in order of appearance."""
        out, seen = [], set()
        for c in text:
            if c not in self.index and c not in seen:
                seen.add(c)
                out.append(c)
        return out

    def encode(self, text: str):
        """``text`` as int64 indices (n,). ValueError listing the characters the vocabulary
        does not have."""
        if not isinstance(text, str):
            raise TypeError(f"Vocabulary.encode: expected a str, got {type(text).__name__}")
        missing = self.unknown(text)
        if missing:
            shown = ", ".join(_char_name(c) for c in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise ValueError(f"{len(missing)} character{'s' if len(missing) > 1 else ''} not in "
                             f"the vocabulary of {len(self)}: {shown}{more}")
        if len(self) <= 256 and all(ord(c) < 256 for c in self.chars):
            table = xp.full(256, -1, dtype=xp.int64)
            table[[ord(c) for c in self.chars]] = xp.arange(len(self))
            return table[xp.frombuffer(text.encode("latin-1"), dtype=xp.uint8)]
        index = self.index
        return xp.fromiter((index[c] for c in text), dtype=xp.int64, count=len(text))

    def decode(self, indices) -> str:
        """The characters of ``indices`` (ints, an array or a Tensor)."""
        a = indices.data if isinstance(indices, Tensor) else indices
        a = xp.asarray(a).reshape(-1)
        if a.size and (not xp.issubdtype(a.dtype, xp.integer) or a.min() < 0 or a.max() >= len(self)):
            raise ValueError(f"Vocabulary.decode: indices must be integers in [0, {len(self)})")
        chars = self.chars
        return "".join(chars[int(i)] for i in a)

    def to_list(self) -> list:
        return list(self.chars)

    def __eq__(self, other):
        return isinstance(other, Vocabulary) and other.chars == self.chars

    def __repr__(self):
        return f"Vocabulary({len(self)} characters: {''.join(self.chars[:40])!r}" + \
            ("...)" if len(self) > 40 else ")")


def split_by_position(ids, val_fraction: float):
    """``(train, val)``: the first part of the stream trains, the last ``val_fraction`` of it
    (``floor(n * val_fraction)`` tokens) validates; ``val`` is None for a fraction of 0."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real) or \
            not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"split_by_position: val_fraction must be in [0, 1), got {val_fraction!r}")
    n = len(ids)
    n_val = int(n * val_fraction)
    if n_val == 0:
        return ids, None
    return ids[:n - n_val], ids[n - n_val:]


def batchify(ids, batch_size: int):
    """The (B, L) layout of ``ids``: B contiguous streams of ``L = len(ids) // B`` tokens, row
    ``b`` being ``ids[b L:(b + 1) L]`` (the last ``len(ids) % B`` tokens are dropped)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batchify: batch_size must be a positive integer, got {batch_size!r}")
    a = xp.asarray(ids.data if isinstance(ids, Tensor) else ids)
    if a.ndim != 1:
        raise ValueError(f"batchify: expected a 1-D stream of token indices, got shape {a.shape}")
    length = a.shape[0] // batch_size
    return xp.ascontiguousarray(a[:batch_size * length].reshape(batch_size, length))


def bptt_windows(length: int, bptt: int, drop_last: bool = True) -> int:
    """How many windows of ``bptt`` steps a stream of ``length`` tokens gives (each window needs
    its inputs and the targets one step later): ``(length - 1) // bptt``, and one more for a
    shorter last window unless ``drop_last``."""
    usable = max(length - 1, 0)
    return usable // bptt if drop_last else math.ceil(usable / bptt)


class TextBatch(NamedTuple):
    """One batch of ``BPTTLoader``: ``input`` and ``target`` int64 Tensors (B, T), the target
    being the input one step later, and ``start``: whether the recurrent state begins anew at
    this batch (the first of an epoch, or the streams wrapped around)."""
    input: Tensor
    target: Tensor
    start: bool


class BPTTLoader:
    """Batches of truncated back-propagation through time over a token stream: ``batchify(ids,
    batch_size)``, then consecutive windows of ``bptt`` steps (see the module docstring), as
    ``TextBatch(input, target, start)``.

    ``drop_last``: leave out a last window shorter than ``bptt`` (training; validation keeps
    it). ``steps_per_epoch``: at most this many batches per epoch; the next epoch goes on from
    the window where this one stopped, around to the beginning after the last (with ``start``
    there), so that limited epochs still cover the whole text in turn. ``len()`` is the number
    of batches per epoch. ``state_dict()`` / ``load_state_dict()``: the epochs started (all the
    loader needs to continue as an uninterrupted run would; a state taken in the middle of an
    epoch restarts that epoch)."""

    def __init__(self, ids, batch_size: int, bptt: int, drop_last: bool = True,
                 steps_per_epoch: int | None = None):
        for name, v in (("bptt", bptt), ("batch_size", batch_size)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"BPTTLoader: {name} must be a positive integer, got {v!r}")
        if steps_per_epoch is not None and (isinstance(steps_per_epoch, bool) or not isinstance(
                steps_per_epoch, numbers.Integral) or steps_per_epoch < 1):
            raise ValueError(f"BPTTLoader: steps_per_epoch must be a positive integer or None, "
                             f"got {steps_per_epoch!r}")
        self.data = batchify(ids, batch_size)
        if not xp.issubdtype(self.data.dtype, xp.integer):
            raise ValueError(f"BPTTLoader: expected integer token indices, got {self.data.dtype}")
        self.data = self.data.astype(xp.int64, copy=False)
        self.batch_size, self.bptt = int(batch_size), int(bptt)
        self.drop_last = bool(drop_last)
        self.steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)
        self.windows = bptt_windows(self.data.shape[1], self.bptt, self.drop_last)
        if self.windows == 0:
            need = batch_size * ((bptt if drop_last else 1) + 1)
            raise ValueError(f"BPTTLoader: {len(ids)} tokens make no window of {bptt} steps in "
                             f"{batch_size} streams (at least {need} are needed): lower "
                             "batch_size or bptt, or give more text")
        self.epoch = 0          # epochs started
        self._in_epoch = False  # an epoch's batches are being handed out

    @property
    def stream_length(self) -> int:
        """L: the tokens in each of the B streams."""
        return int(self.data.shape[1])

    @property
    def tokens(self) -> int:
        """The targets of one full pass over the windows (B times the steps they cover)."""
        return self.batch_size * min(self.windows * self.bptt, self.stream_length - 1)

    def __len__(self) -> int:
        return self.windows if self.steps_per_epoch is None else min(self.steps_per_epoch,
                                                                     self.windows)

    def first_window(self, epoch: int) -> int:
        """The window epoch ``epoch`` (1-based) begins with."""
        return ((epoch - 1) * len(self)) % self.windows

    def window(self, k: int) -> TextBatch:
        """Window ``k`` (0-based) of the streams, with ``start`` True for k = 0."""
        lo = k * self.bptt
        hi = min(lo + self.bptt, self.stream_length - 1)
        x = xp.ascontiguousarray(self.data[:, lo:hi])
        y = xp.ascontiguousarray(self.data[:, lo + 1:hi + 1])
        return TextBatch(tensor(x), tensor(y), k == 0)

    def __iter__(self):
        self.epoch += 1
        self._in_epoch = True
        first = self.first_window(self.epoch)
        for i in range(len(self)):
            k = (first + i) % self.windows
            x, y, start = self.window(k)
            yield TextBatch(x, y, start or i == 0)
        self._in_epoch = False

    def state_dict(self) -> dict:
        """``{"epoch": epochs completed, "batch": 0, ...}`` (JSON values; the keys a checkpoint
        expects of a loader's state)."""
        done = self.epoch - 1 if self._in_epoch else self.epoch
        return {"epoch": int(done), "batch": 0, "generator": None, "sampler": None}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or "epoch" not in state:
            raise ValueError("a BPTTLoader state needs 'epoch' (from state_dict())")
        epoch = state["epoch"]
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"a BPTTLoader state's 'epoch' must be an integer >= 0, got {epoch!r}")
        self.epoch = int(epoch)
        self._in_epoch = False

    def __repr__(self):
        limit = f", steps_per_epoch={self.steps_per_epoch}" if self.steps_per_epoch else ""
        return (f"BPTTLoader({self.batch_size} streams of {self.stream_length} tokens, bptt="
                f"{self.bptt}, {self.windows} windows, drop_last={self.drop_last}{limit})")
