"""open_dataset / dataset_info: every kind of spec, the held-out split rule, options given as
strings (as a command line gives them), and the errors a command line shows."""
import numpy as np
import pytest

from foveanet.data import (CIFAR10, DATASETS, TOY_DATASETS, CSVDataset, DatasetError, FashionMNIST,
                           ImageFolder, Subset, ToyDataset, dataset_info, open_dataset, write_idx)
from foveanet.data import registry, sources

Image = pytest.importorskip("PIL.Image")


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.delenv("FOVEANET_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIR", str(tmp_path / "system"))
    return tmp_path


def _images(root, counts, size=(5, 5), seed=0):
    """root/<class>/<k>.png with counts[class] images each."""
    rng = np.random.default_rng(seed)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / name / f"{k}.png")
    return root


def test_every_known_name_is_described_and_resolved():
    assert set(DATASETS) == {"fashion-mnist", "mnist", "cifar10", "cifar100", *TOY_DATASETS,
                             "co2", "sunspots"}
    for spec, want in [("Fashion_MNIST", ("fashion-mnist", "fashion-mnist")),
                       ("CIFAR-10", ("cifar10", "cifar10")), ("spirals", ("toy", "spiral")),
                       ("reg_plane", ("toy", "reg-plane")), ("CO2", ("series", "co2"))]:
        assert registry.resolve(spec) == want


def test_unknown_specs_and_options_say_what_is_accepted(isolated):
    with pytest.raises(DatasetError) as e:
        open_dataset("imagenet")
    msg = str(e.value)
    assert "unknown data set 'imagenet'" in msg and all(name in msg for name in DATASETS)
    assert "a directory with one folder of images per class, or a .csv file" in msg
    with pytest.raises(DatasetError, match=r"nowhere\.csv: no such CSV file"):
        dataset_info(str(isolated / "nowhere.csv"))
    with pytest.raises(DatasetError, match="not a directory of class folders nor a .csv file"):
        open_dataset(str(isolated / "no" / "such" / "dir"))
    with pytest.raises(DatasetError, match=r"data set 'mnist': unknown option 'size'; it takes none"):
        dataset_info("mnist", size=3)
    with pytest.raises(DatasetError, match=r"'circle': unknown option 'label'; it takes n, noise, seed"):
        open_dataset("circle", label="fine")
    with pytest.raises(DatasetError, match=r"option label='medium': expected fine or coarse"):
        dataset_info("cifar100", label="medium")
    with pytest.raises(DatasetError, match=r"option n='many'"):
        open_dataset("xor", n="many")
    with pytest.raises(DatasetError, match=r"data set 'xor': n must be a positive int"):
        open_dataset("xor", n=0)  # refused by the data set itself, still a DatasetError


def test_info_of_the_known_sets_without_their_files(isolated):
    fm = dataset_info("fashion-mnist")
    assert fm == {"name": "fashion-mnist", "classes": FashionMNIST.classes,
                  "input_shape": [1, 28, 28], "num_classes": 10, "task": "classification"}
    assert dataset_info("cifar10")["input_shape"] == [3, 32, 32]
    assert dataset_info("cifar100")["num_classes"] == 100
    assert dataset_info("cifar100", label="coarse")["classes"][1] == "fish"
    assert dataset_info("circle")["num_classes"] == 2
    reg = dataset_info("reg-gauss")
    assert reg["task"] == "regression" and reg["classes"] is None and reg["input_shape"] == [2]


def test_toy_sets_train_and_test_seeds(isolated):
    tr = open_dataset("gauss", n="40", noise="0.1", seed="3")
    te = open_dataset("gauss", train=False, n=40, noise=0.1, seed=3)
    np.testing.assert_array_equal(tr.x, ToyDataset("gauss", n=40, noise=0.1, seed=3).x)
    np.testing.assert_array_equal(te.x, ToyDataset("gauss", n=40, noise=0.1, seed=4).x)


def test_named_image_sets_open_from_root(isolated):
    d = isolated / "data"
    d.mkdir()
    for stem, n in (("t10k-images-idx3-ubyte", 6), ("t10k-labels-idx1-ubyte", 6)):
        shape = (n, 28, 28) if "images" in stem else (n,)
        write_idx(d / (stem + ".gz"), (np.arange(np.prod(shape)) % 10).astype(np.uint8).reshape(shape))
    ds = open_dataset("fashion-mnist", train=False, root=d)
    assert isinstance(ds, FashionMNIST) and len(ds) == 6
    rec = bytes([3]) + bytes(3072)
    folder = d / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(rec * 2)
    c = open_dataset("cifar10", train=False, root=d)
    assert isinstance(c, CIFAR10) and c.targets.tolist() == [3, 3]
    with pytest.raises(DatasetError, match="download=True"):
        open_dataset("mnist", root=d)


def test_folder_with_train_and_test_splits(isolated):
    root = isolated / "photos"
    _images(root / "train", {"cat": 3, "dog": 2})
    _images(root / "test", {"cat": 1, "dog": 1}, seed=1)
    tr, te = open_dataset(str(root), size="4"), open_dataset(root, train=False, size=4)
    assert isinstance(tr, ImageFolder) and (len(tr), len(te)) == (5, 2)
    assert tr.root == root / "train" and te.root == root / "test" and tr.classes == te.classes
    assert dataset_info(root, size="4x6") == {"name": str(root), "classes": ["cat", "dog"],
                                              "input_shape": [3, 4, 6], "num_classes": 2,
                                              "task": "classification"}
    assert dataset_info(root, mode="L")["input_shape"] == [1, 5, 5]  # from the image headers
    _images(root / "test", {"emu": 1})
    with pytest.raises(DatasetError, match=r"train/ and test/ have different class folders \(emu "
                                           r"in only one\)"):
        open_dataset(root)


def test_folder_without_splits_holds_out_a_stratified_part(isolated):
    root = _images(isolated / "flat", {"a": 10, "b": 5, "c": 5})
    tr = open_dataset(root, test_fraction="0.2", seed="7")
    te = open_dataset(root, train=False, test_fraction=0.2, seed=7)
    assert isinstance(tr, Subset) and isinstance(tr.dataset, ImageFolder)
    assert set(tr.indices.tolist()).isdisjoint(te.indices.tolist())
    assert sorted(tr.indices.tolist() + te.indices.tolist()) == list(range(20))
    assert np.bincount(te.targets, minlength=3).tolist() == [2, 1, 1]  # 20% of every class
    assert tr.classes == ["a", "b", "c"]
    again = open_dataset(root, train=False, test_fraction=0.2, seed=7)
    assert again.indices.tolist() == te.indices.tolist()
    other = open_dataset(root, train=False, test_fraction=0.2, seed=8)
    assert other.indices.tolist() != te.indices.tolist()
    with pytest.raises(DatasetError, match="test_fraction must be between 0 and 1, got 1.5"):
        open_dataset(root, test_fraction=1.5)


def test_csv_tables(isolated):
    rows = "\n".join(f"{i},{i * 0.5},{'ab'[i % 2]}" for i in range(20))
    p = isolated / "points.csv"
    p.write_text("u,v,kind\n" + rows + "\n")
    tr, te = open_dataset(p), open_dataset(str(p), train=False)
    assert isinstance(tr.dataset, CSVDataset) and (len(tr), len(te)) == (16, 4)
    assert np.bincount(te.targets).tolist() == [2, 2]
    assert dataset_info(p) == {"name": str(p), "classes": ["a", "b"], "input_shape": [2],
                               "num_classes": 2, "task": "classification"}
    reg = dataset_info(p, label_column="v", feature_columns="u", task="regression")
    assert reg["task"] == "regression" and reg["input_shape"] == [1] and reg["classes"] is None
    r_tr = open_dataset(p, label_column="1", feature_columns="0", task="regression", seed=2)
    r_te = open_dataset(p, train=False, label_column=1, feature_columns=[0], task="regression", seed=2)
    assert len(r_tr) + len(r_te) == 20 and r_tr.dataset.y.dtype == np.float32
    assert set(r_tr.indices.tolist()).isdisjoint(r_te.indices.tolist())
    with pytest.raises(DatasetError, match="option header='maybe': expected auto, true or false"):
        open_dataset(p, header="maybe")
    with pytest.raises(DatasetError, match="option task='ranking': expected classification or "
                                           "regression"):
        open_dataset(p, task="ranking")
