"""CIFAR-10 / CIFAR-100 from tiny files in the official binary format written here: the pixel
layout, labels and class names, the extracted folder and the .tar.gz read in place, where they are
looked for, downloads (from file:// URLs: the network is never touched) and damaged files."""
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

import foveanet as fv
from foveanet.data import CIFAR10, CIFAR100, DataLoader, DatasetError, transforms
from foveanet.data import cifar, sources

C10_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No $FOVEANET_DATA, a temporary home (cache), an empty system directory, no downloads."""
    monkeypatch.delenv("FOVEANET_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIR", str(tmp_path / "system"))

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded without download=True")

    monkeypatch.setattr(cifar, "download_file", no_download)
    return tmp_path


def _records(n, n_labels, classes, seed):
    """n random records: (bytes, images (n, 3, 32, 32), labels (n, n_labels))."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = np.stack([rng.integers(0, k, n) for k in classes[:n_labels]], 1).astype(np.uint8)
    raw = b"".join(labels[i].tobytes() + images[i].tobytes() for i in range(n))
    return raw, images, labels


def cifar10_files(n=3, n_test=4, tag=0):
    """{file name: bytes} of a tiny CIFAR-10 and the images/labels in them, train and test."""
    files, train = {}, []
    for k, fname in enumerate(C10_TRAIN):
        raw, img, lab = _records(n, 1, [10], seed=tag * 10 + k)
        files[fname] = raw
        train.append((img, lab[:, 0]))
    raw, timg, tlab = _records(n_test, 1, [10], seed=tag * 10 + 9)
    files["test_batch.bin"] = raw
    files["batches.meta.txt"] = ("\n".join(f"class{tag}-{i}" for i in range(10)) + "\n\n").encode()
    x = np.concatenate([t[0] for t in train])
    y = np.concatenate([t[1] for t in train])
    return files, (x, y), (timg, tlab[:, 0])


def cifar100_files(n=5, n_test=3, names=True):
    files = {}
    raw, img, lab = _records(n, 2, [20, 100], seed=1)
    files["train.bin"] = raw
    traw, timg, tlab = _records(n_test, 2, [20, 100], seed=2)
    files["test.bin"] = traw
    if names:
        files["coarse_label_names.txt"] = "\n".join(f"super{i}" for i in range(20)).encode()
        files["fine_label_names.txt"] = "\n".join(f"fine{i}" for i in range(100)).encode()
    return files, (img, lab), (timg, tlab)


def write_dir(directory: Path, files: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


def write_archive(path: Path, folder: str, files: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# ------------------------------------------------------------------------------------ layout
def test_cifar10_pixels_labels_and_classes_from_the_folder(isolated):
    files, (x, y), (tx, ty) = cifar10_files(tag=1)
    folder = write_dir(isolated / "root" / "cifar-10-batches-bin", files)
    ds = CIFAR10(root=isolated / "root")
    assert ds.data.dtype == np.uint8 and ds.data.shape == (15, 3, 32, 32) and ds.source == folder
    np.testing.assert_array_equal(ds.data, x)  # the five batches in order
    np.testing.assert_array_equal(ds.targets, y)
    assert ds.targets.dtype == np.int64 and ds.classes == [f"class1-{i}" for i in range(10)]
    raw = files["data_batch_2.bin"]  # the planes: red, then green, then blue, row by row
    rec = raw[3073:2 * 3073]  # record 1 of batch 2 is sample 4
    assert ds.targets[4] == rec[0]
    assert ds.data[4, 0, 0, 1] == rec[1 + 1] and ds.data[4, 0, 1, 0] == rec[1 + 32]
    assert ds.data[4, 1, 0, 0] == rec[1 + 1024] and ds.data[4, 2, 31, 31] == rec[3072]
    test = CIFAR10(root=isolated / "root", train=False)
    np.testing.assert_array_equal(test.data, tx)
    np.testing.assert_array_equal(test.targets, ty)
    assert [p.name for p in ds.files] == C10_TRAIN and test.files == [folder / "test_batch.bin"]


def test_items_batches_and_normalisation_as_fashion_mnist(isolated):
    files, (x, y), _ = cifar10_files()
    ds = CIFAR10(root=write_dir(isolated / "d", files))
    img, label = ds[-1]
    assert isinstance(img, fv.Tensor) and img.shape == (3, 32, 32) and img.dtype == np.float32
    np.testing.assert_allclose(img.numpy(), x[-1] / 255, rtol=1e-6)
    assert label == y[-1] and isinstance(label, int)
    assert ds.in_memory
    xb, yb = next(iter(DataLoader(ds, batch_size=15)))
    assert xb.shape == (15, 3, 32, 32) and xb.dtype == np.float32 and yb.dtype == np.int64
    np.testing.assert_allclose(xb.numpy(), x / 255, rtol=1e-6)
    xn, yn = ds.arrays(normalize=True)
    mean = np.array(CIFAR10.mean, np.float32)[:, None, None]
    std = np.array(CIFAR10.std, np.float32)[:, None, None]
    np.testing.assert_allclose(xn, (x / 255 - mean) / std, rtol=1e-5, atol=1e-5)
    ds.transform = transforms.RandomHorizontalFlip(p=1.0)
    xf, _ = next(iter(DataLoader(ds, batch_size=4)))
    np.testing.assert_allclose(xf.numpy(), x[:4, :, :, ::-1] / 255, rtol=1e-6)
    assert ds.class_counts().sum() == 15 and len(CIFAR10.classes) == 10


def test_cifar100_fine_and_coarse_labels(isolated):
    files, (x, lab), (tx, tlab) = cifar100_files()
    d = write_dir(isolated / "root" / "cifar-100-binary", files)
    fine = CIFAR100(root=isolated / "root")
    np.testing.assert_array_equal(fine.data, x)
    np.testing.assert_array_equal(fine.targets, lab[:, 1])
    np.testing.assert_array_equal(fine.coarse_targets, lab[:, 0])
    assert fine.classes == [f"fine{i}" for i in range(100)] and fine.label == "fine"
    coarse = CIFAR100(root=isolated / "root", train=False, label="coarse")
    np.testing.assert_array_equal(coarse.targets, tlab[:, 0])
    np.testing.assert_array_equal(coarse.data, tx)
    assert coarse.classes == [f"super{i}" for i in range(20)]
    with pytest.raises(ValueError, match="label must be 'fine' or 'coarse'"):
        CIFAR100(root=d, label="medium")
    for f in ("coarse_label_names.txt", "fine_label_names.txt"):
        (d / f).unlink()
    plain = CIFAR100(root=d, label="coarse")  # no names files: the published names
    assert plain.classes[0] == "aquatic_mammals" and len(plain.classes) == 20
    assert len(CIFAR100.classes) == 100 and CIFAR100.classes[-1] == "worm"


# ---------------------------------------------------------------------------- the archive
def test_archive_is_read_in_place(isolated):
    files, (x, y), (tx, _) = cifar10_files(tag=2)
    root = isolated / "root"
    archive = write_archive(root / "cifar-10-binary.tar.gz", "cifar-10-batches-bin", files)
    ds = CIFAR10(root=root)
    np.testing.assert_array_equal(ds.data, x)
    np.testing.assert_array_equal(ds.targets, y)
    assert ds.classes[3] == "class2-3" and ds.files == [archive] and ds.source == archive
    np.testing.assert_array_equal(CIFAR10(root=root, train=False).data, tx)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-binary.tar.gz"]  # nothing extracted
    files100, (x100, _), _ = cifar100_files()
    write_archive(root / "cifar-100-binary.tar.gz", "cifar-100-binary", files100)
    np.testing.assert_array_equal(CIFAR100(root=root).data, x100)


def test_lookup_order(isolated, monkeypatch):
    files, _, _ = cifar10_files()
    t = isolated

    def tag(ds):
        return ds.classes[0]

    def variant(k):
        return {**files, "batches.meta.txt": "\n".join([f"v{k}"] + ["x"] * 9).encode()}

    write_archive(t / "system" / "cifar10" / "cifar-10-binary.tar.gz", "cifar-10-batches-bin",
                  variant(5))
    assert tag(CIFAR10()) == "v5"
    write_dir(t / "home" / ".cache" / "foveanet" / "cifar10" / "cifar-10-batches-bin", variant(4))
    assert tag(CIFAR10()) == "v4"
    monkeypatch.setenv("FOVEANET_DATA", str(t / "env"))
    write_dir(t / "env" / "cifar10", variant(3))  # the .bin files straight in the directory
    assert tag(CIFAR10()) == "v3"
    root = t / "root"
    write_archive(root / "cifar-10-binary.tar.gz", "cifar-10-batches-bin", variant(2))
    assert tag(CIFAR10(root=root)) == "v2"
    write_dir(root / "cifar-10-batches-bin", variant(1))  # the folder before the archive
    assert tag(CIFAR10(root=root)) == "v1"


# ----------------------------------------------------------------------------------- errors
def test_missing_data_says_how_to_get_it_and_downloads_nothing(isolated):
    with pytest.raises(DatasetError) as e:
        CIFAR10(root=isolated / "r")
    msg = str(e.value)
    assert "CIFAR-10 not found: no cifar-10-batches-bin/ folder, cifar-10-binary.tar.gz" in msg
    assert "download=True / --download" in msg and str(isolated / "r" / "cifar10") in msg
    with pytest.raises(DatasetError, match="CIFAR-100 not found"):
        CIFAR100(train=False)


def test_damaged_files_are_named(isolated):
    files, _, _ = cifar10_files()
    d = write_dir(isolated / "d", files)
    (d / "data_batch_3.bin").write_bytes(files["data_batch_3.bin"][:-5])
    with pytest.raises(DatasetError, match=r"data_batch_3\.bin: 9214 bytes is not a whole number "
                                           r"of 3073-byte records"):
        CIFAR10(root=d)
    (d / "data_batch_3.bin").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"data_batch_3\.bin: 0 bytes"):
        CIFAR10(root=d)
    (d / "data_batch_3.bin").unlink()
    with pytest.raises(DatasetError, match=r"data_batch_3\.bin is missing \(the training split "
                                           r"needs data_batch_1\.bin, .*data_batch_5\.bin"):
        CIFAR10(root=d)
    bad = bytearray(files["test_batch.bin"])
    bad[2 * 3073] = 10  # record 2's label
    (d / "test_batch.bin").write_bytes(bytes(bad))
    with pytest.raises(DatasetError, match=r"test_batch\.bin: record 2 has class label 10, "
                                           r"expected 0\.\.9"):
        CIFAR10(root=d, train=False)
    (d / "batches.meta.txt").write_text("a\nb\n")
    (d / "test_batch.bin").write_bytes(files["test_batch.bin"])
    with pytest.raises(DatasetError, match=r"batches\.meta\.txt: 2 class names, expected 10"):
        CIFAR10(root=d, train=False)
    files100, _, _ = cifar100_files()
    bad = bytearray(files100["train.bin"])
    bad[3074 + 1] = 100  # record 1's fine label
    write_dir(isolated / "c100", {**files100, "train.bin": bytes(bad)})
    with pytest.raises(DatasetError, match=r"train\.bin: record 1 has fine label 100, expected "
                                           r"0\.\.99"):
        CIFAR100(root=isolated / "c100")


def test_damaged_archives_are_named(isolated):
    files, _, _ = cifar10_files()
    root = isolated / "root"
    archive = write_archive(root / "cifar-10-binary.tar.gz", "cifar-10-batches-bin", files)
    whole = archive.read_bytes()
    archive.write_bytes(whole[:len(whole) // 2])  # a download cut in the middle
    with pytest.raises(DatasetError, match=r"cifar-10-binary\.tar\.gz: corrupt or unreadable "
                                           r"archive .*delete it and get it again"):
        CIFAR10(root=root)
    archive.write_bytes(b"not an archive at all")
    with pytest.raises(DatasetError, match="corrupt or unreadable archive"):
        CIFAR10(root=root)
    write_archive(archive, "cifar-10-batches-bin",
                  {k: v for k, v in files.items() if k != "data_batch_4.bin"})
    with pytest.raises(DatasetError, match=r"the archive has no cifar-10-batches-bin/"
                                           r"data_batch_4\.bin"):
        CIFAR10(root=root)
    write_archive(archive, "cifar-10-batches-bin", {**files, "test_batch.bin": b"\0" * 100})
    with pytest.raises(DatasetError, match=r"cifar-10-binary\.tar\.gz \(member cifar-10-batches-bin"
                                           r"/test_batch\.bin\): 100 bytes"):
        CIFAR10(root=root, train=False)


# -------------------------------------------------------------------------------- downloads
def _publish(tmp_path, monkeypatch, md5=None):
    files, (x, _), _ = cifar10_files(tag=3)
    archive = write_archive(tmp_path / "mirror" / "cifar-10-binary.tar.gz", "cifar-10-batches-bin",
                            files)
    monkeypatch.setattr(cifar, "download_file", sources.download_file)  # the real one
    monkeypatch.setattr(CIFAR10, "urls", [archive.as_uri()])
    monkeypatch.setattr(CIFAR10, "md5", md5 or hashlib.md5(archive.read_bytes()).hexdigest())
    return x


def test_download_checks_the_md5_and_writes_atomically(isolated, monkeypatch):
    x = _publish(isolated, monkeypatch)
    ds = CIFAR10(root=isolated / "dl", download=True)
    np.testing.assert_array_equal(ds.data, x)
    assert sorted(p.name for p in (isolated / "dl").iterdir()) == ["cifar-10-binary.tar.gz"]
    cached = CIFAR10(download=True, train=False)  # no root: into the cache
    assert cached.source == isolated / "home" / ".cache" / "foveanet" / "cifar10" / \
        "cifar-10-binary.tar.gz"


def test_wrong_md5_leaves_no_file(isolated, monkeypatch):
    _publish(isolated, monkeypatch, md5="0" * 32)
    with pytest.raises(DatasetError) as e:
        CIFAR10(root=isolated / "dl", download=True)
    assert "MD5 mismatch (expected 00000000000000000000000000000000, got " in str(e.value)
    assert "could not download cifar-10-binary.tar.gz" in str(e.value)
    assert list((isolated / "dl").iterdir()) == []  # no archive, no .part file


def test_published_constants():
    assert CIFAR10.md5 == "c32a1d4ab5d03f1284b67883e8d87530"
    assert CIFAR100.md5 == "03b5dce01913d631647c71ecec9e9cb8"
    assert CIFAR10.urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]
    assert CIFAR100.urls == ["https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"]
