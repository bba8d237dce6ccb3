"""Segmentation data: FashionScenes (built from small synthetic items through ``source=``, and
from the real Fashion-MNIST files where they are installed) and SegmentationFolder (image and
mask directories written here with Pillow)."""
import os

import numpy as np
import pytest

import foveanet as fv
from foveanet.data import (DATASETS, SCENE_CLASSES, SEGMENTATION_SETS, DataLoader,
                           DatasetError, FashionMNIST, FashionScenes, SegmentationFolder,
                           dataset_info, find_files, open_dataset, write_idx)
from foveanet.data import registry

Image = pytest.importorskip("PIL.Image")

T = 0.2


def _source(m=60, seed=0):
    """m synthetic 28x28 uint8 items: zeros, faint values (1..50, at most the threshold) and
    bright ones (52..255), never the ambiguous 51; labels k % 10."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=(m, 28, 28), p=[0.4, 0.2, 0.4])
    faint = rng.integers(1, 51, (m, 28, 28))
    bright = rng.integers(52, 256, (m, 28, 28))
    x = np.where(kind == 0, 0, np.where(kind == 1, faint, bright)).astype(np.uint8)
    return x, (np.arange(m) % 10).astype(np.uint8)


def _paint(ds, i, src):
    """The documented rule, item by item with slices: the reference the vectorised renderer is
    compared with."""
    s = ds.size
    img, lab = np.zeros((s, s), np.float32), np.zeros((s, s), np.int64)
    for item in ds.layout(i):
        v = src[item["source_index"]].astype(np.float32) / 255
        win = np.s_[item["top"]:item["top"] + 28, item["left"]:item["left"] + 28]
        on = v > ds.threshold
        old_img, old_lab = img[win].copy(), lab[win].copy()
        img[win] = np.where(on, v, np.where(old_lab == 0, np.maximum(old_img, v), old_img))
        lab[win] = np.where(on, item["label"] + 1, old_lab)
    return img, lab


# ------------------------------------------------------------------------------- FashionScenes
def test_classes_and_item_types():
    assert SCENE_CLASSES[0] == "background" and SCENE_CLASSES[1:] == tuple(FashionMNIST.classes)
    assert len(SCENE_CLASSES) == 11
    ds = FashionScenes("train", source=_source(), count=12, size=40)
    assert ds.classes == list(SCENE_CLASSES) and ds.num_classes == 11 and len(ds) == 12
    img, mask = ds[3]
    assert isinstance(img, fv.Tensor) and img.dtype == np.float32 and img.shape == (1, 40, 40)
    assert isinstance(mask, fv.Tensor) and mask.dtype == np.int64 and mask.shape == (40, 40)
    x, y = ds.get_batch(np.arange(12))
    assert x.shape == (12, 1, 40, 40) and y.shape == (12, 40, 40)
    assert x.min() >= 0 and x.max() <= 1 and y.min() >= 0 and y.max() <= 10
    np.testing.assert_array_equal(x[3], img.numpy())
    np.testing.assert_array_equal(y[3], mask.numpy())
    assert ((ds.n_items >= 1) & (ds.n_items <= 4)).all()


def test_images_and_masks_follow_the_documented_rule():
    src = _source()
    ds = FashionScenes("test", source=src, count=40, size=48, objects=(2, 5), seed=4)
    x, y = ds.get_batch(slice(None))
    for i in range(len(ds)):
        img, lab = _paint(ds, i, src[0])
        np.testing.assert_array_equal(y[i], lab)
        np.testing.assert_allclose(x[i, 0], img, rtol=1e-6, atol=0)
    # the invariant: a label exactly where the intensity is above the threshold
    np.testing.assert_array_equal(y > 0, x[:, 0] > np.float32(T))
    # both kinds of pixels occur, faint background pixels included
    assert (y > 0).any() and ((x[:, 0] > 0) & (y == 0)).any()


def test_overlaps_are_resolved_by_drawing_order():
    # two full squares of different brightness and class on a canvas of their size: both sit at
    # (0, 0), the second covers the first entirely
    items = np.stack([np.full((28, 28), 150, np.uint8), np.full((28, 28), 250, np.uint8)])
    ds = FashionScenes("test", source=(items, np.array([2, 7])), size=28, objects=2, count=30)
    x, y = ds.get_batch(slice(None))
    orders = set()
    for i in range(len(ds)):
        first, last = ds.layout(i)
        orders.add((first["source_index"], last["source_index"]))
        assert (y[i] == last["label"] + 1).all()
        np.testing.assert_allclose(x[i, 0], items[last["source_index"]] / 255, rtol=1e-6)
    assert (0, 1) in orders and (1, 0) in orders  # both orders were drawn, and both held
    # a later item's faint pixels do not show over an earlier item, but do over background
    ring = np.zeros((28, 28), np.uint8)
    ring[:, :14] = 30      # faint left half
    ring[:, 14:] = 200     # bright right half
    block = np.full((28, 28), 100, np.uint8)
    ds = FashionScenes("test", source=(np.stack([block, ring]), np.array([0, 1])), size=28,
                       objects=2, count=40)
    x, y = ds.get_batch(slice(None))
    for i in range(len(ds)):
        order = [it["source_index"] for it in ds.layout(i)]
        if order == [0, 1]:
            assert (y[i][:, :14] == 1).all() and (y[i][:, 14:] == 2).all()
            np.testing.assert_allclose(x[i, 0, :, :14], 100 / 255, rtol=1e-6)
        if order == [1, 1]:  # the faint half over background: visible, unlabelled
            assert (y[i][:, :14] == 0).all()
            np.testing.assert_allclose(x[i, 0, :, :14], 30 / 255, rtol=1e-6)


def test_determinism_independent_of_count_and_reading_order():
    src = _source()
    a = FashionScenes("train", source=src, count=20, seed=3)
    b = FashionScenes("train", source=src, count=50, seed=3)
    xa, ya = a.get_batch(slice(None))
    xb, yb = b.get_batch(np.arange(20))
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    rev = np.arange(19, -1, -1)
    xr, yr = b.get_batch(rev)
    np.testing.assert_array_equal(xr, xa[rev])
    np.testing.assert_array_equal(b[7][1].numpy(), ya[7])
    again = FashionScenes("train", source=src, count=20, seed=3)
    np.testing.assert_array_equal(again.get_batch(slice(None))[1], ya)
    other = FashionScenes("train", source=src, count=20, seed=4)
    assert not np.array_equal(other.get_batch(slice(None))[1], ya)
    # the seed goes with the split: scene i of val is not scene i of train
    assert a.layout(0) != FashionScenes("val", source=src, count=1, seed=3).layout(0)


def test_splits_draw_from_disjoint_source_ranges():
    src = _source(60)
    used = {}
    for split in ("train", "val", "test"):
        ds = FashionScenes(split, source=src, count=300, objects=(1, 4))
        idx = ds.source_index[ds.source_index >= 0]
        used[split] = set(idx.tolist())
        assert ds.source_range == {"train": (0, 50), "val": (50, 60), "test": (0, 60)}[split]
        lo, hi = ds.source_range
        assert lo <= idx.min() and idx.max() < hi
        # labels are those of the items drawn
        np.testing.assert_array_equal(ds.labels[ds.source_index >= 0], src[1][idx])
    assert used["train"].isdisjoint(used["val"])
    assert used["train"] == set(range(50)) and used["val"] == set(range(50, 60))  # all reachable
    # one-item scenes show the item they name, where it is placed
    ds = FashionScenes("val", source=src, count=10, objects=1, size=36)
    x, y = ds.get_batch(slice(None))
    for i in range(10):
        (item,) = ds.layout(i)
        win = np.s_[item["top"]:item["top"] + 28, item["left"]:item["left"] + 28]
        np.testing.assert_allclose(x[i, 0][win], src[0][item["source_index"]] / 255, rtol=1e-6)
        assert x[i, 0].sum() == pytest.approx(x[i, 0][win].sum())  # nothing outside the item


def test_positions_keep_items_inside_and_counts_are_uniform():
    ds = FashionScenes("train", source=_source(), count=2000, size=40, objects=(1, 4))
    present = ds.source_index >= 0
    assert (ds.top[present] >= 0).all() and (ds.top[present] <= 12).all()
    assert (ds.left[present] >= 0).all() and (ds.left[present] <= 12).all()
    assert {0, 12} <= set(ds.top[present].tolist())  # both extreme positions occur
    share = np.bincount(ds.n_items, minlength=5)[1:] / len(ds)
    assert np.abs(share - 0.25).max() < 0.05  # 2000 draws: sigma ~0.01
    assert (present.sum(1) == ds.n_items).all()


def test_float_sources_and_datasets_as_sources():
    x, labels = _source(30)
    a = FashionScenes("test", source=(x, labels), count=8, seed=1)
    b = FashionScenes("test", source=(x.astype(np.float64) / 255, labels), count=8, seed=1)
    c = FashionScenes("test", source=fv.data.TensorDataset(x[:, None].astype(np.float32) / 255,
                                                           labels), count=8, seed=1)
    ya = a.get_batch(slice(None))[1]
    np.testing.assert_array_equal(b.get_batch(slice(None))[1], ya)
    np.testing.assert_array_equal(c.get_batch(slice(None))[1], ya)
    np.testing.assert_allclose(b.get_batch(slice(None))[0], a.get_batch(slice(None))[0], rtol=1e-6)


def test_class_frequencies_sum_to_one_and_count_pixels():
    ds = FashionScenes("train", source=_source(), count=300, size=36)  # > one render chunk
    f = ds.class_frequencies()
    assert f.shape == (11,) and f.sum() == pytest.approx(1.0) and (f >= 0).all()
    y = ds.get_batch(slice(None))[1]
    np.testing.assert_allclose(f, np.bincount(y.ravel(), minlength=11) / y.size)
    assert f[0] > 0.3 and (f[1:] > 0).all()


def test_default_size_is_quick_to_make_and_loads_in_batches():
    ds = FashionScenes("train", source=_source(600))  # 10,000 scenes; no timing asserted
    assert len(ds) == 10000 and ds.source_range == (0, 500)
    loader = DataLoader(ds, batch_size=64, shuffle=True, generator=fv.Generator(0))
    assert loader.fast_path
    xb, yb = next(iter(loader))
    assert xb.shape == (64, 1, 64, 64) and xb.dtype == np.float32
    assert yb.shape == (64, 64, 64) and yb.dtype == np.int64
    assert FashionScenes("val", source=_source(600)).count == 1000
    assert FashionScenes("test", source=_source(60)).count == 2000


def test_describe_names_the_construction():
    text = FashionScenes("val", source=_source(), count=5, seed=2).describe()
    assert "indices 50..59" in text and "default_rng([2, 1, i])" in text and "0.2" in text
    assert "Ankle boot" in text and "5 scenes of 64x64" in text


@pytest.mark.parametrize("kwargs,match", [
    ({"split": "validation"}, "split must be one of train, val, test"),
    ({"size": 20}, "size must be an int >= 28"),
    ({"objects": (0, 2)}, "1 <= min <= max"),
    ({"objects": (3, 2)}, "1 <= min <= max"),
    ({"objects": "many"}, "an int or a"),
    ({"count": 0}, "count must be a positive int"),
    ({"seed": -1}, "seed must be a non-negative int"),
    ({"threshold": 1.0}, "threshold must be in"),
    ({"source": (np.zeros((4, 28, 27), np.uint8), np.zeros(4, int))}, r"\(M, 28, 28\)"),
    ({"source": (np.zeros((4, 28, 28), np.uint8), np.zeros(3, int))}, r"labels must be \(M,\)"),
    ({"source": (np.zeros((4, 28, 28), np.uint8), np.full(4, 10))}, r"labels must be in 0\.\.9"),
    ({"source": (np.full((4, 28, 28), 2.0), np.zeros(4, int))}, r"in \[0, 1\]"),
    ({"source": (np.zeros((1, 28, 28), np.uint8), np.zeros(1, int)), "split": "train"},
     "no source images"),
    ({"source": "images.idx"}, "pair or a dataset"),
])
def test_bad_arguments_say_what_is_wrong(kwargs, match):
    kwargs.setdefault("source", _source(12))
    with pytest.raises((ValueError, TypeError), match=match):
        FashionScenes(**kwargs)


def test_missing_files_raise_the_fashion_mnist_message(tmp_path, monkeypatch):
    from foveanet.data import sources
    monkeypatch.delenv("FOVEANET_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIR", str(tmp_path / "system"))
    with pytest.raises(DatasetError, match="Fashion-MNIST test files not found"):
        FashionScenes("test", root=tmp_path / "nowhere")


def _idx_files(directory, n_train=60, n_test=12):
    directory.mkdir(parents=True, exist_ok=True)
    files = ((("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), n_train, 0),
             (("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"), n_test, 1))
    for (img, lab), n, seed in files:
        x, y = _source(n, seed)
        write_idx(directory / img, x)
        write_idx(directory / lab, y)
    return directory


def test_registry_opens_and_describes_fashion_scenes(tmp_path):
    root = _idx_files(tmp_path / "fm")
    assert "fashion-scenes" in SEGMENTATION_SETS and "fashion-scenes" not in DATASETS
    assert registry.resolve("Fashion_Scenes") == ("fashion-scenes", "fashion-scenes")
    tr = open_dataset("fashion-scenes", root=root, count="7", objects="2:3", size="32")
    assert isinstance(tr, FashionScenes) and tr.split == "train" and len(tr) == 7
    assert tr.objects == (2, 3) and tr.size == 32 and tr.source_range == (0, 50)
    te = open_dataset("fashion-scenes", train=False, root=root, count=3)
    assert te.split == "test" and te.source_range == (0, 12)
    val = open_dataset("fashion-scenes", root=root, count=3, split="val")
    assert val.split == "val" and val.source_range == (50, 60)
    info = dataset_info("fashion-scenes", size="96")
    assert info == {"name": "fashion-scenes", "classes": list(SCENE_CLASSES),
                    "input_shape": [1, 96, 96], "num_classes": 11, "task": "segmentation"}
    with pytest.raises(DatasetError, match="unknown option 'window'"):
        open_dataset("fashion-scenes", root=root, window=3)
    with pytest.raises(DatasetError, match="size must be an int >= 28"):
        open_dataset("fashion-scenes", root=root, size="16")
    with pytest.raises(DatasetError, match="size must be an int >= 28"):
        dataset_info("fashion-scenes", size="16")
    with pytest.raises(DatasetError, match="fashion-scenes"):
        open_dataset("imagenet")


_REAL = all(find_files("fashion-mnist", train) is not None for train in (True, False))


@pytest.mark.skipif(not _REAL, reason="Fashion-MNIST files not found (apt-get install "
                                      "dataset-fashion-mnist, or $FOVEANET_DATA)")
def test_real_fashion_mnist_splits():
    train_images = FashionMNIST(train=True)
    test_images = FashionMNIST(train=False)
    for split, data, rng in (("train", train_images, (0, 50000)),
                             ("val", train_images, (50000, 60000)),
                             ("test", test_images, (0, 10000))):
        ds = FashionScenes(split, count=40, objects=1, seed=5)
        assert ds.source_range == rng and ds.classes == list(SCENE_CLASSES)
        assert rng[0] <= ds.source_index.min() and ds.source_index.max() < rng[1]
        x, y = ds.get_batch(slice(None))
        np.testing.assert_array_equal(y > 0, x[:, 0] > np.float32(T))
        for i in range(0, 40, 7):  # the item shown is the Fashion-MNIST image named
            (item,) = ds.layout(i)
            win = np.s_[item["top"]:item["top"] + 28, item["left"]:item["left"] + 28]
            np.testing.assert_allclose(x[i, 0][win], data.data[item["source_index"]] / 255,
                                       rtol=1e-6)
            assert item["label"] == data.targets[item["source_index"]]
            assert set(np.unique(y[i])) <= {0, item["label"] + 1}
    f = FashionScenes("val", count=200).class_frequencies()
    assert f.sum() == pytest.approx(1.0) and 0.5 < f[0] < 0.95 and (f[1:] > 0).all()


# -------------------------------------------------------------------------- SegmentationFolder
def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _rgb(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def seg(tmp_path):
    """images/{a.png, b.jpg, c.bmp} and masks/{a.png (L, with 255), b.png (P), c.png (L)}."""
    rng = np.random.default_rng(0)
    images, masks = tmp_path / "images", tmp_path / "masks"
    vals = {}
    _save(images / "a.png", _rgb(6, 8, 1))
    _save(images / "b.jpg", _rgb(6, 8, 2))
    _save(images / "c.bmp", _rgb(6, 8, 3))
    vals["a"] = rng.choice([0, 1, 2, 255], (6, 8)).astype(np.uint8)
    vals["b"] = rng.choice([0, 3], (6, 8)).astype(np.uint8)
    vals["c"] = rng.choice([0, 1], (6, 8)).astype(np.uint8)
    _save(masks / "a.png", vals["a"])
    # a palette mask: index 3 is drawn red; its value is the index, not the colour
    pal = [0, 0, 0, 10, 10, 10, 20, 20, 20, 255, 0, 0] + [0] * (256 * 3 - 12)
    p = Image.frombytes("P", (8, 6), vals["b"].tobytes())
    p.putpalette(pal)
    p.save(masks / "b.png")
    _save(masks / "c.png", vals["c"])
    (images / "notes.txt").write_text("not an image")
    (masks / ".hidden.png").write_bytes(b"skipped")
    return images, masks, vals


def test_folder_pairs_classes_and_ignore(seg):
    images, masks, vals = seg
    assert Image.open(masks / "b.png").mode == "P"
    ds = SegmentationFolder(images, masks)
    assert [(p.name, m.name) for p, m in ds.samples] == [("a.png", "a.png"), ("b.jpg", "b.png"),
                                                         ("c.bmp", "c.png")]
    assert ds.num_classes == 4 and ds.classes == ["class_0", "class_1", "class_2", "class_3"]
    assert ds.grayscale is False and len(ds) == 3
    img, mask = ds[0]
    assert img.dtype == np.float32 and img.shape == (3, 6, 8) and mask.dtype == np.int64
    np.testing.assert_allclose(img.numpy(), _rgb(6, 8, 1).transpose(2, 0, 1) / 255, rtol=1e-6)
    want = np.where(vals["a"] == 255, -100, vals["a"].astype(int))
    np.testing.assert_array_equal(mask.numpy(), want)
    np.testing.assert_array_equal(ds[1][1].numpy(), vals["b"])  # palette indices
    keep = SegmentationFolder(images, masks, ignore_index=None)
    assert keep.num_classes == 256 and (keep[0][1].numpy() == vals["a"]).all()
    named = SegmentationFolder(images, masks, classes=["bg", "x", "y", "z", "w"])
    assert named.num_classes == 5 and named.classes[4] == "w"


def test_folder_masks_work_with_cross_entropy(seg):
    torch = pytest.importorskip("torch")
    images, masks, _ = seg
    _, mask = SegmentationFolder(images, masks)[0]
    logits = np.random.default_rng(0).standard_normal((1, 4, 6, 8)).astype(np.float32)
    ours = fv.nn.functional.cross_entropy(fv.tensor(logits), fv.Tensor(mask.numpy()[None]))
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(mask.numpy()[None]))
    assert float(ours.item()) == pytest.approx(float(ref), rel=1e-5)


def test_folder_grayscale_auto_and_forced(tmp_path):
    images, masks = tmp_path / "i", tmp_path / "m"
    for k in range(2):
        _save(images / f"{k}.png", np.full((5, 5), 40 * k, np.uint8))
        _save(masks / f"{k}.png", np.full((5, 5), k, np.uint8))
    ds = SegmentationFolder(images, masks)
    assert ds.grayscale is True and ds[1][0].shape == (1, 5, 5)
    np.testing.assert_allclose(ds[1][0].numpy(), 40 / 255, rtol=1e-6)
    assert SegmentationFolder(images, masks, grayscale=False)[0][0].shape == (3, 5, 5)


def test_folder_resize_is_nearest_for_masks(seg):
    images, masks, vals = seg
    for size, shape in [((12, 16), (12, 16)), ((5, 7), (5, 7)), (4, (4, 4)), (9, (9, 9))]:
        ds = SegmentationFolder(images, masks, size=size)
        for i, stem in enumerate("abc"):
            img, mask = ds[i]
            assert img.shape == (3, *shape) and mask.shape == shape
            allowed = set(np.where(vals[stem] == 255, -100, vals[stem].astype(int)).ravel())
            assert set(mask.numpy().ravel().tolist()) <= allowed
    # exactly Pillow's nearest resize of the mask file
    ds = SegmentationFolder(images, masks, size=(12, 16), ignore_index=None)
    want = np.asarray(Image.open(masks / "c.png").resize((16, 12), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(ds[2][1].numpy(), want)
    loader = DataLoader(SegmentationFolder(images, masks, size=4), batch_size=3)
    xb, yb = next(iter(loader))
    assert xb.shape == (3, 3, 4, 4) and yb.shape == (3, 4, 4) and yb.dtype == np.int64


def test_folder_errors_name_the_file(seg, tmp_path):
    images, masks, vals = seg
    (images / "d.png").write_bytes((images / "a.png").read_bytes())
    with pytest.raises(DatasetError, match=r"d\.png: no mask for this image.*masks.d\.png"):
        SegmentationFolder(images, masks)
    os.remove(images / "d.png")
    _save(masks / "e.png", vals["c"])
    with pytest.raises(DatasetError, match=r"e\.png: no image for this mask"):
        SegmentationFolder(images, masks)
    os.remove(masks / "e.png")
    _save(masks / "c.png", _rgb(6, 8, 9))
    with pytest.raises(DatasetError, match=r"c\.png: the mask is a RGB image"):
        SegmentationFolder(images, masks)
    _save(masks / "c.png", np.zeros((6, 9), np.uint8))
    with pytest.raises(DatasetError, match=r"c\.png: the mask is 9x6 but its image c\.bmp is 8x6"):
        SegmentationFolder(images, masks)
    _save(masks / "c.png", vals["c"])
    _save(images / "c.png", _rgb(6, 8, 4))
    with pytest.raises(DatasetError, match=r"two images named 'c'"):
        SegmentationFolder(images, masks)
    os.remove(images / "c.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: no images"):
        SegmentationFolder(tmp_path / "empty", masks)
    with pytest.raises(DatasetError, match=r"empty: no masks"):
        SegmentationFolder(images, tmp_path / "empty")
    with pytest.raises(DatasetError, match=r"nowhere: not a directory"):
        SegmentationFolder(tmp_path / "nowhere", masks)
    ds = SegmentationFolder(images, masks, classes=["bg", "one"])  # a mask holds 2 and 3
    with pytest.raises(DatasetError, match=r"a\.png: mask value 2 is not a class index 0\.\.1"):
        ds[0]
    (masks / "c.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match=r"c\.png: cannot read the mask"):
        SegmentationFolder(images, masks)
