"""Character-level text (``foveanet.data.text``): the standard-library corpus, text files and
their errors, the vocabulary's round trip, the split by position, and the batchify layout of
truncated BPTT against hand-computed examples."""
import hashlib
import os

import numpy as np
import pytest

from foveanet.data import DatasetError
from foveanet.data.text import (STDLIB_MAX_CHARS, BPTTLoader, Vocabulary, batchify, bptt_windows,
                                load_corpus, read_text, split_by_position, stdlib_corpus,
                                stdlib_files)


# ------------------------------------------------------------------------------- batchify
def test_batchify_cuts_the_stream_into_contiguous_rows():
    # 27 tokens in 2 streams: 13 each, row b is ids[13 b : 13 (b + 1)], the 27th is dropped
    data = batchify(np.arange(27), 2)
    assert data.tolist() == [list(range(0, 13)), list(range(13, 26))]
    assert batchify(np.arange(6), 3).tolist() == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ValueError, match="batch_size"):
        batchify(np.arange(6), 0)
    with pytest.raises(ValueError, match="1-D"):
        batchify(np.zeros((2, 3), dtype=np.int64), 2)


def test_bptt_windows_by_hand():
    # two streams of 13 tokens (0..12, 13..25), bptt 5: windows x = [0:5], [5:10] (+ [10:12])
    loader = BPTTLoader(np.arange(26), batch_size=2, bptt=5, drop_last=False)
    batches = [(x.numpy().tolist(), y.numpy().tolist(), start) for x, y, start in loader]
    assert batches == [
        ([[0, 1, 2, 3, 4], [13, 14, 15, 16, 17]], [[1, 2, 3, 4, 5], [14, 15, 16, 17, 18]], True),
        ([[5, 6, 7, 8, 9], [18, 19, 20, 21, 22]], [[6, 7, 8, 9, 10], [19, 20, 21, 22, 23]], False),
        ([[10, 11], [23, 24]], [[11, 12], [24, 25]], False)]
    assert len(loader) == 3 and loader.stream_length == 13 and loader.tokens == 24
    # training drops the shorter last window: every batch has B x bptt targets
    train = BPTTLoader(np.arange(26), batch_size=2, bptt=5)
    assert len(train) == 2 and [tuple(b.input.shape) for b in train] == [(2, 5), (2, 5)]
    assert train.tokens == 20
    x, y, _ = next(iter(train))
    assert x.numpy().dtype == np.int64 and y.numpy().dtype == np.int64
    assert bptt_windows(13, 5) == 2 and bptt_windows(13, 5, drop_last=False) == 3
    assert bptt_windows(11, 5) == 2 and bptt_windows(11, 5, drop_last=False) == 2


def test_consecutive_batches_continue_each_stream():
    ids = np.random.default_rng(0).integers(0, 50, 1000)
    loader = BPTTLoader(ids, batch_size=4, bptt=7)
    data = batchify(ids, 4)
    batches = list(loader)
    for k, (x, y, start) in enumerate(batches):
        np.testing.assert_array_equal(x.numpy(), data[:, 7 * k:7 * k + 7])
        np.testing.assert_array_equal(y.numpy(), data[:, 7 * k + 1:7 * k + 8])
        assert start == (k == 0)
    for (x0, y0, _), (x1, _, _) in zip(batches, batches[1:]):
        # the next window's first input is this window's last target: each row goes on
        np.testing.assert_array_equal(x1.numpy()[:, 0], y0.numpy()[:, -1])


def test_limited_epochs_go_on_and_wrap_around():
    # 5 windows, 2 per epoch: epoch 1 = 0,1; epoch 2 = 2,3; epoch 3 = 4, then 0 (a new start)
    loader = BPTTLoader(np.arange(52), batch_size=2, bptt=5, steps_per_epoch=2)
    assert loader.windows == 5 and len(loader) == 2
    seen = []
    for _ in range(3):
        seen.append([(int(x.numpy()[0, 0]) // 5, start) for x, _, start in loader])
    assert seen == [[(0, True), (1, False)], [(2, True), (3, False)], [(4, True), (0, True)]]
    # a loader restored from the state after epoch 2 begins epoch 3 where the first one did
    fresh = BPTTLoader(np.arange(52), batch_size=2, bptt=5, steps_per_epoch=2)
    fresh.load_state_dict({"epoch": 2, "batch": 0, "generator": None, "sampler": None})
    assert [int(x.numpy()[0, 0]) // 5 for x, _, _ in fresh] == [4, 0]
    assert fresh.state_dict()["epoch"] == 3
    # steps_per_epoch beyond the windows: whole passes
    assert len(BPTTLoader(np.arange(52), 2, 5, steps_per_epoch=99)) == 5


def test_state_mid_epoch_restarts_that_epoch():
    loader = BPTTLoader(np.arange(52), batch_size=2, bptt=5)
    it = iter(loader)
    next(it)
    assert loader.state_dict()["epoch"] == 0
    list(it)
    assert loader.state_dict()["epoch"] == 1
    with pytest.raises(ValueError, match="epoch"):
        loader.load_state_dict({"epoch": -1})
    with pytest.raises(ValueError, match="epoch"):
        loader.load_state_dict({})


def test_loader_refuses_what_makes_no_window():
    with pytest.raises(ValueError, match="no window of 10 steps in 4 streams"):
        BPTTLoader(np.arange(40), batch_size=4, bptt=10)
    for kwargs in ({"bptt": 0}, {"batch_size": 0}, {"steps_per_epoch": 0}):
        args = {"batch_size": 2, "bptt": 5, **kwargs}
        with pytest.raises(ValueError, match=list(kwargs)[0]):
            BPTTLoader(np.arange(40), **args)
    with pytest.raises(ValueError, match="integer token"):
        BPTTLoader(np.arange(40, dtype=np.float32), batch_size=2, bptt=5)


# ----------------------------------------------------------------------------- vocabulary
@pytest.mark.parametrize("text", ["def f(x):\n\treturn x  # é", "日本語 text, ünïcödé and € signs"])
def test_vocabulary_round_trip(text):
    vocab = Vocabulary.from_text(text)
    assert vocab.chars == sorted(set(text)) and len(vocab) == len(set(text))
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert vocab.decode(ids) == text
    rebuilt = Vocabulary(vocab.to_list())  # as a run directory's config.json keeps it
    assert rebuilt == vocab and rebuilt.decode(rebuilt.encode(text)) == text
    assert "".join(vocab.chars[i] for i in ids) == text


def test_vocabulary_errors_name_the_characters():
    vocab = Vocabulary.from_text("abc\n")
    with pytest.raises(ValueError, match=r"2 characters not in the vocabulary of 4: 'z' "
                                         r"\(U\+007A\), 'é' \(U\+00E9\)"):
        vocab.encode("abzéz")
    assert vocab.unknown("abzéz") == ["z", "é"]
    with pytest.raises(ValueError, match="twice"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(ValueError, match="single characters"):
        Vocabulary(["a", "bc"])
    with pytest.raises(ValueError, match="at least one"):
        Vocabulary([])
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        vocab.decode([0, 4])


def test_split_by_position_keeps_the_last_part_for_validation():
    ids = np.arange(100)
    train, val = split_by_position(ids, 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
    train, val = split_by_position(ids, 0.0)
    assert val is None and len(train) == 100
    assert len(split_by_position(np.arange(7), 0.25)[1]) == 1  # floor(7 * 0.25)
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_position(ids, 1.0)


# --------------------------------------------------------------------------------- corpus
def test_stdlib_corpus_is_a_documented_deterministic_selection():
    files = stdlib_files()
    assert files == sorted(files) and "__future__.py" in files
    assert not any(f.startswith(("test/", "idlelib/", "lib2to3/", "site-packages/"))
                   or "/test/" in f or os.path.basename(f).startswith("_sysconfigdata")
                   for f in files)
    corpus = stdlib_corpus(max_chars=20_000)
    again = stdlib_corpus(max_chars=20_000)
    assert len(corpus.text) == 20_000 and corpus.text == again.text
    assert corpus.sha256 == hashlib.sha256(corpus.text.encode("utf-8")).hexdigest()
    used = [f["path"] for f in corpus.files]
    assert used == files[:len(used)]            # the first files, in order
    assert sum(f["characters"] for f in corpus.files) == 20_000
    assert corpus.files[-1]["truncated"] and not any(f["truncated"] for f in corpus.files[:-1])
    summary = corpus.summary()
    assert summary["source"] == "stdlib" and summary["characters"] == 20_000
    assert summary["python"] and summary["sha256"] == corpus.sha256
    assert corpus.manifest()["file_list"][0]["path"] == used[0]
    assert load_corpus(None, 20_000).sha256 == corpus.sha256
    assert STDLIB_MAX_CHARS == 2_000_000


def test_read_text_and_its_errors(tmp_path):
    good = tmp_path / "good.txt"
    good.write_bytes("\ufeffline one\r\nline two é\n".encode("utf-8"))
    corpus = read_text(good)
    assert corpus.text == "line one\r\nline two é\n"   # the BOM dropped, \r\n kept
    assert corpus.source == str(good) and corpus.files[0]["characters"] == len(corpus.text)
    assert read_text(good, max_chars=4).text == "line"
    cases = {"missing.txt": (None, "no such text file"),
             "empty.txt": (b"", "is empty"),
             "binary.bin": (b"PK\x03\x04\x00\x00binary", "binary file, not text .a NUL byte at "
                                                          "offset 4"),
             "latin1.txt": ("caf\xe9 au lait".encode("latin-1"), "not UTF-8 text .byte 0xe9 at "
                                                                   "offset 3"),
             "bom.txt": (b"\xef\xbb\xbf", "only a byte-order mark")}
    for name, (data, message) in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(DatasetError, match=message) as info:
            read_text(path)
        assert str(path) in str(info.value)
    with pytest.raises(DatasetError, match="is a directory"):
        read_text(tmp_path)
    with pytest.raises(ValueError, match="max_chars"):
        read_text(good, max_chars=0)
