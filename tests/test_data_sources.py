"""MNIST / Fashion-MNIST: where the files are looked for, what is said when they are missing,
downloads with MD5 checks (through a local HTTP server: the network is never touched), and the
real Debian-packaged data when it is installed."""
import functools
import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

import foveanet as fv
from foveanet.data import (MNIST, DataLoader, DatasetError, FashionMNIST, read_idx, search_dirs,
                           write_idx)
from foveanet.data import sources, transforms

STEMS = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def make_files(directory: Path, n_train=20, n_test=10, tag=0, gz=True):
    """Four small IDX files; image [0, 0, 0] holds ``tag`` to tell directories apart."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(tag)
    suffix = ".gz" if gz else ""
    for n, (img, lab) in ((n_train, STEMS[:2]), (n_test, STEMS[2:])):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        x[0, 0, 0] = tag
        write_idx(directory / (img + suffix), x)
        write_idx(directory / (lab + suffix), (np.arange(n) % 10).astype(np.uint8))
    return directory


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No $FOVEANET_DATA, a temporary home (cache) and an empty system directory."""
    monkeypatch.delenv("FOVEANET_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIR", str(tmp_path / "system"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def tag_of(ds):
    return int(ds.data[0, 0, 0])


def test_lookup_order_root_env_cache_system(isolated, monkeypatch):
    t = isolated
    make_files(t / "system" / "fashion-mnist", tag=5)
    assert tag_of(FashionMNIST()) == 5
    make_files(t / "home" / ".cache" / "foveanet" / "fashion-mnist", tag=4)
    assert tag_of(FashionMNIST()) == 4
    monkeypatch.setenv("FOVEANET_DATA", str(t / "env"))
    make_files(t / "env", tag=3)
    assert tag_of(FashionMNIST()) == 3
    make_files(t / "env" / "fashion-mnist", tag=2)
    assert tag_of(FashionMNIST()) == 2
    make_files(t / "root" / "fashion-mnist", tag=11)
    assert tag_of(FashionMNIST(root=t / "root")) == 11  # root/<name>
    make_files(t / "root", tag=1)
    assert tag_of(FashionMNIST(root=t / "root")) == 1
    assert tag_of(FashionMNIST(root=t / "elsewhere")) == 2  # an empty root falls through
    assert search_dirs("fashion-mnist", t / "root") == [
        t / "root", t / "root" / "fashion-mnist", t / "env" / "fashion-mnist", t / "env",
        t / "home" / ".cache" / "foveanet" / "fashion-mnist", t / "system" / "fashion-mnist"]


def test_mnist_looks_in_its_own_directories(isolated):
    make_files(isolated / "system" / "fashion-mnist", tag=5)
    make_files(isolated / "system" / "mnist", tag=7)
    assert tag_of(MNIST()) == 7 and tag_of(FashionMNIST()) == 5
    assert MNIST.classes[3] == "3 - three" and FashionMNIST.classes[9] == "Ankle boot"


def test_uncompressed_files_and_splits(isolated):
    make_files(isolated / "d", n_train=30, n_test=12, gz=False)
    tr, te = FashionMNIST(isolated / "d"), FashionMNIST(isolated / "d", train=False)
    assert (len(tr), len(te)) == (30, 12)
    assert tr.files[0].name == "train-images-idx3-ubyte" and te.files[1].name == "t10k-labels-idx1-ubyte"


def test_a_directory_needs_both_files_of_the_split(isolated):
    make_files(isolated / "system" / "fashion-mnist", tag=5)
    d = make_files(isolated / "root", tag=1)
    (d / "train-labels-idx1-ubyte.gz").unlink()
    assert tag_of(FashionMNIST(root=d)) == 5
    assert tag_of(FashionMNIST(root=d, train=False)) == 1


def test_missing_data_tells_both_ways_to_get_it(isolated):
    with pytest.raises(DatasetError) as e:
        FashionMNIST(root=isolated / "r")
    msg = str(e.value)
    assert "Fashion-MNIST training files not found" in msg
    assert ("install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
            "or pass download=True / --download (needs network)") in msg
    for d in search_dirs("fashion-mnist", isolated / "r"):
        assert str(d) in msg
    with pytest.raises(DatasetError) as e:
        MNIST(train=False)
    assert "MNIST test files not found" in str(e.value) and "apt-get" not in str(e.value)
    assert "download=True / --download" in str(e.value)


def test_items_arrays_and_tensors(isolated):
    d = make_files(isolated / "d", n_train=20)
    ds = FashionMNIST(d)
    assert ds.data.dtype == np.uint8 and ds.data.shape == (20, 28, 28)
    assert ds.targets.dtype == np.int64 and ds.targets.shape == (20,)
    img, label = ds[3]
    assert isinstance(img, fv.Tensor) and img.shape == (1, 28, 28) and img.dtype == np.float32
    assert label == 3 and isinstance(label, int)
    np.testing.assert_allclose(img.numpy()[0], ds.data[3] / 255, rtol=1e-6)
    assert ds[-1][1] == 9
    with pytest.raises(IndexError):
        ds[20]
    x, y = ds.arrays()
    assert x.shape == (20, 1, 28, 28) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(y, ds.targets)
    xn, _ = ds.arrays(normalize=True)
    np.testing.assert_allclose(xn, (x - 0.2860) / 0.3530, rtol=1e-5, atol=1e-6)
    xt, yt = ds.as_tensors(normalize=(0.5, 0.5))
    assert isinstance(xt, fv.Tensor) and yt.dtype == np.int64
    np.testing.assert_allclose(xt.numpy(), (x - 0.5) / 0.5, atol=1e-6)
    assert len(ds.classes) == 10 and ds.class_counts().sum() == 20


def test_transforms_on_items_and_on_batches(isolated):
    d = make_files(isolated / "d", n_train=20)
    flip = transforms.RandomHorizontalFlip(p=1.0)
    ds = FashionMNIST(d, transform=flip, target_transform=lambda t: t + 100)
    img, label = ds[2]
    np.testing.assert_allclose(img.numpy()[0], ds.data[2][:, ::-1] / 255, rtol=1e-6)
    assert label == 102 and not ds.in_memory  # a per-item target transform: no batched path
    ds.target_transform = None
    assert ds.in_memory and ds.uses_rng
    x, y = DataLoader(ds, batch_size=20).__iter__().__next__()
    np.testing.assert_allclose(x.numpy()[:, 0], ds.data[:, :, ::-1] / 255, rtol=1e-6)
    ds.transform = lambda im: im * 2  # a per-item callable
    assert not ds.in_memory and float(ds[0][0].numpy().max()) <= 2


def test_damaged_contents_are_reported(isolated):
    d = make_files(isolated / "d")
    write_idx(d / "train-labels-idx1-ubyte.gz", np.arange(19, dtype=np.uint8) % 10)
    with pytest.raises(DatasetError, match="20 images but 19 labels"):
        FashionMNIST(d)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.full(20, 10, dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"label 10 out of range 0\.\.9"):
        FashionMNIST(d)
    write_idx(d / "train-images-idx3-ubyte.gz", np.zeros((20, 28, 27), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"expected uint8 \(N, 28, 28\)"):
        FashionMNIST(d)
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz: corrupt gzip stream"):
        FashionMNIST(d, train=False)


# ---------------------------------------------------------------------------------- downloads
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/www; yields (base URL, request log)."""
    www = tmp_path / "www"
    www.mkdir()
    log = []

    class Handler(_Quiet):
        def do_GET(self):
            log.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", www, log
    httpd.shutdown()
    httpd.server_close()


def _md5(p):
    return hashlib.md5(Path(p).read_bytes()).hexdigest()


def _publish(www, monkeypatch, url, wrong=None):
    make_files(www, tag=9)
    sums = {s + ".gz": _md5(www / (s + ".gz")) for s in STEMS}
    if wrong:
        sums[wrong] = "0" * 32
    monkeypatch.setattr(FashionMNIST, "mirrors", [url])
    monkeypatch.setattr(FashionMNIST, "resources", sums)
    return sums


def _leftovers(d):
    return sorted(p.name for p in Path(d).iterdir()) if Path(d).exists() else []


def test_download_into_root_with_md5_check(isolated, server, monkeypatch):
    url, www, log = server
    sums = _publish(www, monkeypatch, url)
    root = isolated / "data"
    ds = FashionMNIST(root=root, download=True)
    assert tag_of(ds) == 9 and len(ds) == 20
    assert _leftovers(root) == sorted(sums)  # the four files and nothing else
    assert all(_md5(root / f) == m for f, m in sums.items())
    assert sorted(log) == sorted("/" + f for f in sums)
    FashionMNIST(root=root, train=False, download=True)  # already there: nothing downloaded
    assert len(log) == 4


def test_download_without_root_goes_to_the_cache(isolated, server, monkeypatch):
    url, www, _ = server
    _publish(www, monkeypatch, url)
    ds = FashionMNIST(download=True)
    cache = isolated / "home" / ".cache" / "foveanet" / "fashion-mnist"
    assert ds.files[0].parent == cache and len(_leftovers(cache)) == 4


def test_wrong_checksum_leaves_no_file(isolated, server, monkeypatch):
    url, www, _ = server
    _publish(www, monkeypatch, url, wrong="t10k-images-idx3-ubyte.gz")
    root = isolated / "data"
    with pytest.raises(DatasetError) as e:
        FashionMNIST(root=root, download=True)
    msg = str(e.value)
    assert "could not download t10k-images-idx3-ubyte.gz" in msg
    assert f"{url}t10k-images-idx3-ubyte.gz: MD5 mismatch (expected {'0' * 32}, got " in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    left = _leftovers(root)
    assert "t10k-images-idx3-ubyte.gz" not in left and not any(n.endswith(".part") for n in left)


def test_unreachable_server_and_mirror_fallback(isolated, server, monkeypatch):
    url, www, log = server
    sums = _publish(www, monkeypatch, url)
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    monkeypatch.setattr(FashionMNIST, "mirrors", [dead])
    root = isolated / "data"
    with pytest.raises(DatasetError, match="could not download train-images-idx3-ubyte.gz"):
        FashionMNIST(root=root, download=True)
    assert not any(n.endswith(".part") for n in _leftovers(root))
    monkeypatch.setattr(FashionMNIST, "mirrors", [url + "missing/", url])  # a 404, then the good one
    assert tag_of(FashionMNIST(root=root, download=True)) == 9
    assert _leftovers(root) == sorted(sums)


def test_download_from_a_file_url(isolated, monkeypatch, tmp_path):
    src = make_files(tmp_path / "mirror", tag=6)
    sums = {s + ".gz": _md5(src / (s + ".gz")) for s in STEMS}
    monkeypatch.setattr(MNIST, "mirrors", [src.as_uri() + "/"])
    monkeypatch.setattr(MNIST, "resources", sums)
    assert tag_of(MNIST(root=tmp_path / "dl", train=False, download=True)) == 6


def test_published_checksums_are_the_official_ones():
    assert FashionMNIST.resources["train-images-idx3-ubyte.gz"] == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    assert MNIST.resources["t10k-labels-idx1-ubyte.gz"] == "ec29112dd5afa0611ce80d1b7f02629c"
    assert all(len(v) == 32 for c in (MNIST, FashionMNIST) for v in c.resources.values())


# ------------------------------------------------------------------------ the real, packaged data
DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (DEBIAN / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed (apt-get install "
                           "dataset-fashion-mnist)")
def test_debian_fashion_mnist(monkeypatch):
    monkeypatch.delenv("FOVEANET_DATA", raising=False)
    tr = FashionMNIST(root=DEBIAN)
    te = FashionMNIST(root=DEBIAN, train=False)
    assert tr.data.shape == (60000, 28, 28) and te.data.shape == (10000, 28, 28)
    assert (np.bincount(tr.targets) == 6000).all() and (np.bincount(te.targets) == 1000).all()
    assert tr.data.dtype == np.uint8
    sample = tr.data[::6].astype(np.float32) / 255  # 10,000 images: the statistics, cheaply
    assert abs(sample.mean() - FashionMNIST.mean) < 2e-3
    assert abs(sample.std() - FashionMNIST.std) < 2e-3
    assert read_idx(DEBIAN / "t10k-labels-idx1-ubyte.gz").shape == (10000,)
    assert os.path.samefile(tr.files[0].parent, DEBIAN)
