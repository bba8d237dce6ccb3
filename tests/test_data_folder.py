"""ImageFolder on small images written here with Pillow (several formats, sizes and modes), and
the loading transforms Resize / CenterCrop on PIL images and arrays."""
import numpy as np
import pytest

import foveanet as fv
from foveanet.data import (CenterCrop, Compose, DataLoader, DatasetError, ImageFolder, Resize,
                           transforms)

Image = pytest.importorskip("PIL.Image")


def _rgb(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def tree(tmp_path):
    """root/{cat,dog,emu}: PNG, BMP, grey PNG, RGBA PNG, JPEG, of different sizes; plus files and
    folders that are not samples."""
    root = tmp_path / "pets"
    pixels = {}

    def save(rel, arr, **kw):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path, **kw)
        pixels[rel] = arr

    save("cat/b.png", _rgb(6, 8, 0))
    save("cat/a.BMP", _rgb(6, 8, 1))
    save("cat/kittens/c.png", _rgb(6, 8, 2))          # a sub-folder counts for its class
    save("dog/grey.png", np.arange(48, dtype=np.uint8).reshape(6, 8) * 5)  # mode L
    save("dog/alpha.png", np.dstack([_rgb(6, 8, 3), np.full((6, 8), 255, np.uint8)]))  # RGBA
    save("emu/photo.jpg", _rgb(10, 4, 4), quality=95)  # another size, lossy
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / ".hidden.png").write_bytes(b"skipped: hidden")
    (root / ".ipynb_checkpoints").mkdir()
    return root, pixels


def test_classes_samples_and_targets_as_torchvision(tree):
    root, _ = tree
    ds = ImageFolder(root)
    assert ds.classes == ["cat", "dog", "emu"] and ds.class_to_idx == {"cat": 0, "dog": 1, "emu": 2}
    rel = [(str(p)[len(str(root)) + 1:], y) for p, y in ds.samples]
    assert rel == [("cat/a.BMP", 0), ("cat/b.png", 0), ("cat/kittens/c.png", 0),
                   ("dog/alpha.png", 1), ("dog/grey.png", 1), ("emu/photo.jpg", 2)]
    assert ds.imgs is ds.samples and len(ds) == 6
    np.testing.assert_array_equal(ds.targets, [0, 0, 0, 1, 1, 2])
    assert ds.targets.dtype == np.int64 and ds.class_counts().tolist() == [3, 2, 1]


def test_items_are_float_chw_in_unit_range(tree):
    root, pixels = tree
    ds = ImageFolder(root)
    img, label = ds[1]  # cat/b.png, lossless
    assert isinstance(img, fv.Tensor) and img.dtype == np.float32 and img.shape == (3, 6, 8)
    np.testing.assert_allclose(img.numpy(), pixels["cat/b.png"].transpose(2, 0, 1) / 255, rtol=1e-6)
    assert label == 0 and isinstance(label, int)
    grey, _ = ds[4]  # a grey image, converted to RGB: three equal planes
    np.testing.assert_allclose(grey.numpy(), np.repeat(pixels["dog/grey.png"][None], 3, 0) / 255,
                               rtol=1e-6)
    rgba, _ = ds[3]
    np.testing.assert_allclose(rgba.numpy(), pixels["dog/alpha.png"][..., :3].transpose(2, 0, 1) / 255,
                               rtol=1e-6)
    lum = ImageFolder(root, mode="L", target_transform=lambda y: y + 10)
    one, label = lum[4]
    assert one.shape == (1, 6, 8) and label == 11
    np.testing.assert_allclose(one.numpy()[0], pixels["dog/grey.png"] / 255, rtol=1e-6)
    jpg, _ = ds[-1]  # lossy: what Pillow decodes, not what was written
    decoded = np.asarray(Image.open(root / "emu" / "photo.jpg").convert("RGB"))
    assert jpg.shape == (3, 10, 4)
    np.testing.assert_allclose(jpg.numpy(), decoded.transpose(2, 0, 1) / 255, rtol=1e-6)
    with pytest.raises(IndexError, match="out of range for ImageFolder of length 6"):
        ds[6]


def test_size_makes_them_batch_and_the_loader_augments_the_batch(tree):
    root, _ = tree
    with pytest.raises(ValueError, match=r"different shapes .*ImageFolder\(size=\.\.\.\)"):
        list(DataLoader(ImageFolder(root), batch_size=6))
    ds = ImageFolder(root, size=4)
    assert ds.sample_shape() == (3, 4, 4)
    want = Compose([Resize(4), CenterCrop(4)])(Image.open(ds.samples[5][0]).convert("RGB"))
    np.testing.assert_allclose(ds[5][0].numpy(), np.asarray(want).transpose(2, 0, 1) / 255, rtol=1e-6)
    flip = transforms.RandomHorizontalFlip(p=1.0)
    loader = DataLoader(ds, batch_size=4, shuffle=True, generator=fv.Generator(0), transform=flip)
    assert not loader.fast_path
    batches = list(loader)
    assert [tuple(b[0].shape) for b in batches] == [(4, 3, 4, 4), (2, 3, 4, 4)]
    assert batches[0][1].dtype == np.int64
    ids = sorted(np.concatenate([b[1].numpy() for b in batches]).tolist())
    assert ids == [0, 0, 0, 1, 1, 2]
    xb, _ = next(iter(DataLoader(ds, batch_size=6, transform=flip)))
    plain = np.stack([ds[i][0].numpy() for i in range(6)])
    np.testing.assert_array_equal(xb.numpy(), plain[..., ::-1])
    wide = ImageFolder(root, size=(3, 5), transform=Resize(7))  # transform first, then size
    assert wide[0][0].shape == (3, 3, 5) and wide.sample_shape() == (3, 3, 5)


def test_sample_shape_checks_the_headers(tree):
    root, _ = tree
    with pytest.raises(DatasetError, match=r"not all one size \(.*a\.BMP is 8x6, .*photo\.jpg is "
                                           r"4x10\): give a size"):
        ImageFolder(root).sample_shape()
    (root / "emu" / "photo.jpg").unlink()
    Image.fromarray(_rgb(6, 8, 9)).save(root / "emu" / "ok.png")
    assert ImageFolder(root).sample_shape() == (3, 6, 8)
    assert ImageFolder(root, mode="L").sample_shape() == (1, 6, 8)


def test_bad_folders_and_files(tree, tmp_path):
    root, _ = tree
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = ImageFolder(root)
    k = [p for p, _ in ds.samples].index(str(root / "cat" / "broken.png"))
    with pytest.raises(DatasetError, match=r"broken\.png: cannot read the image"):
        ds[k]
    good = (root / "cat" / "b.png").read_bytes()
    (root / "cat" / "broken.png").write_bytes(good[:len(good) // 2])  # truncated
    with pytest.raises(DatasetError, match=r"broken\.png: cannot read the image"):
        ds[k]
    (root / "ant").mkdir()
    (root / "ant" / "readme.md").write_text("no images here")
    with pytest.raises(DatasetError, match=r"no images \(.*\.png.*\) in the class folder ant"):
        ImageFolder(root)
    (tmp_path / "flat").mkdir()
    Image.fromarray(_rgb(4, 4, 0)).save(tmp_path / "flat" / "x.png")
    with pytest.raises(DatasetError, match="no class folders"):
        ImageFolder(tmp_path / "flat")
    with pytest.raises(DatasetError, match="not a directory"):
        ImageFolder(tmp_path / "flat" / "x.png")
    with pytest.raises(TypeError, match="RandomHorizontalFlip is a batch transform: give it to "
                                        r"DataLoader\(transform=\.\.\.\)"):
        ImageFolder(tmp_path / "flat", transform=Compose([Resize(4), transforms.RandomHorizontalFlip()]))
    with pytest.raises(ValueError, match="mode must be 'RGB' or 'L'"):
        ImageFolder(root, mode="CMYK")


# ---------------------------------------------------------------------- Resize and CenterCrop
@pytest.mark.parametrize("hw,size,out", [((20, 40), 10, (10, 20)), ((40, 20), 10, (20, 10)),
                                         ((7, 7), 3, (3, 3)), ((9, 13), (4, 6), (4, 6)),
                                         ((10, 30), 15, (15, 45))])
def test_resize_sizes_follow_torchvision(hw, size, out):
    h, w = hw
    r = Resize(size)
    assert r.output_size(h, w) == out
    assert Resize(size)(Image.fromarray(_rgb(h, w, 0))).size == (out[1], out[0])  # PIL: (w, h)
    arr = np.zeros((2, 3, h, w), np.float32)
    assert r(arr).shape == (2, 3, *out)


def test_resize_arrays_agree_with_pillow():
    img = _rgb(12, 18, 5)
    via_pil = np.asarray(Resize(8)(Image.fromarray(img))).transpose(2, 0, 1).astype(int)
    via_arr = Resize(8)(img.transpose(2, 0, 1))
    assert via_arr.dtype == np.uint8 and via_arr.shape == (3, 8, 12)
    assert np.abs(via_arr.astype(int) - via_pil).max() <= 1  # Pillow rounds per step in uint8
    const = np.full((1, 9, 9), 0.25, np.float32)
    np.testing.assert_allclose(Resize(4)(const), 0.25, rtol=1e-6)
    t = Resize((2, 3), interpolation="nearest")(fv.tensor(np.arange(16.0).reshape(4, 4)))
    assert isinstance(t, fv.Tensor) and t.shape == (2, 3)
    same = img.transpose(2, 0, 1)
    assert Resize(12)(same) is same  # already that size: untouched


def test_center_crop_as_torchvision_and_same_on_pil_and_arrays():
    a = np.arange(35, dtype=np.uint8).reshape(5, 7)
    np.testing.assert_array_equal(CenterCrop(3)(a), a[1:4, 2:5])
    b = np.arange(36, dtype=np.uint8).reshape(6, 6)
    np.testing.assert_array_equal(CenterCrop(3)(b), b[2:5, 2:5])  # round(1.5) == 2, as torchvision
    small = np.ones((2, 2), np.uint8)
    padded = CenterCrop(5)(small)  # (5 - 2) // 2 = 1 row/column of zeros before, 2 after
    want = np.zeros((5, 5), np.uint8)
    want[1:3, 1:3] = 1
    np.testing.assert_array_equal(padded, want)
    for arr in (_rgb(9, 6, 1), _rgb(3, 4, 2)):
        from_pil = np.asarray(CenterCrop((4, 5))(Image.fromarray(arr)))
        from_arr = CenterCrop((4, 5))(arr.transpose(2, 0, 1)).transpose(1, 2, 0)
        np.testing.assert_array_equal(from_pil, from_arr)


def test_loading_transform_arguments():
    with pytest.raises(ValueError, match="size must be a positive int"):
        Resize(0)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        Resize(4, interpolation="cubic-ish")
    with pytest.raises(ValueError, match=r"size must be a positive int or \(height, width\)"):
        CenterCrop((3,))
    with pytest.raises(TypeError, match="expects a PIL image, an array or a Tensor, got list"):
        CenterCrop(2)([[1, 2], [3, 4]])
