"""Datasets and the DataLoader: lengths, seeded order, the in-memory fast path, the per-item
fallback, augmentation seeding and resuming."""
import numpy as np
import pytest

import foveanet as fv
from foveanet.data import (ConcatDataset, DataLoader, Dataset, Subset, TensorDataset,
                           default_collate, transforms)


def _data(n=10):
    x = np.arange(n * 2, dtype=np.float64).reshape(n, 2)
    y = np.arange(n, dtype=np.int32)
    return x, y


class ItemOnly(Dataset):
    """A generic dataset: per-item access only."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full((1, 2, 2), float(i), dtype=np.float32), i


def _ids(loader):
    return [b[1].numpy().tolist() for b in loader]


# ------------------------------------------------------------------------------------- datasets
def test_tensor_dataset_items_and_length_check():
    x, y = _data(5)
    ds = TensorDataset(fv.tensor(x), y)
    assert len(ds) == 5
    xi, yi = ds[-1]
    assert isinstance(xi, fv.Tensor) and xi.numpy().tolist() == [8.0, 9.0] and yi.item() == 4
    with pytest.raises(ValueError, match=r"same length .* got shapes \(5, 2\), \(4,\)"):
        TensorDataset(x, y[:4])
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()
    with pytest.raises(IndexError, match="out of range"):
        ds[5]
    np.testing.assert_array_equal(ds.targets, y)
    assert ds.tensors[0].shape == (5, 2)


def test_subset_and_concat():
    x, y = _data(6)
    ds = TensorDataset(x, y)
    sub = Subset(ds, [4, -1, 0])
    assert len(sub) == 3 and [sub[i][1].item() for i in range(3)] == [4, 5, 0]
    np.testing.assert_array_equal(sub.targets, [4, 5, 0])
    with pytest.raises(IndexError, match="index 6 is out of range"):
        Subset(ds, [6])
    both = ds + ItemOnly(3)
    assert isinstance(both, ConcatDataset) and len(both) == 9 and both[7][1] == 1


# ---------------------------------------------------------------------------------- the loader
@pytest.mark.parametrize("n,bs,drop,expected", [(10, 3, False, 4), (10, 3, True, 3), (9, 3, True, 3),
                                                (10, 1, False, 10), (2, 5, True, 0), (0, 4, False, 0)])
def test_len_as_pytorch(n, bs, drop, expected):
    loader = DataLoader(TensorDataset(*_data(n)), batch_size=bs, drop_last=drop)
    assert len(loader) == expected and len(list(loader)) == expected


def test_batches_cover_the_data_once_and_have_model_ready_dtypes():
    loader = DataLoader(TensorDataset(*_data(10)), batch_size=4, shuffle=True, generator=fv.Generator(1))
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    xb, yb = batches[0]
    assert isinstance(xb, fv.Tensor) and xb.dtype == np.float32 and yb.dtype == np.int64
    ids = np.concatenate([b[1].numpy() for b in batches])
    assert sorted(ids.tolist()) == list(range(10)) and ids.tolist() != list(range(10))
    for xb, yb in batches:  # inputs stay with their labels
        np.testing.assert_array_equal(xb.numpy()[:, 0], 2 * yb.numpy())


def test_drop_last_and_no_shuffle_keep_order():
    loader = DataLoader(TensorDataset(*_data(10)), batch_size=4, drop_last=True)
    assert _ids(loader) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_batch_size_one_for_online_learning():
    loader = DataLoader(TensorDataset(*_data(3)), batch_size=1, shuffle=True, generator=fv.Generator(0))
    batches = list(loader)
    assert len(batches) == 3 and all(b[0].shape == (1, 2) and b[1].shape == (1,) for b in batches)


def test_same_seed_same_batches_different_seed_different():
    ds = TensorDataset(*_data(50))

    def order(seed, epochs=2):
        loader = DataLoader(ds, batch_size=8, shuffle=True, generator=fv.Generator(seed))
        return [_ids(loader) for _ in range(epochs)]

    a, b, c = order(3), order(3), order(4)
    assert a == b and a != c
    assert a[0] != a[1]  # a new order every epoch


def test_global_generator_when_none_given():
    ds = TensorDataset(*_data(30))
    loader = DataLoader(ds, batch_size=7, shuffle=True)
    assert loader.generator is fv.random.default_generator
    fv.manual_seed(123)
    first = _ids(loader)
    fv.manual_seed(123)
    assert _ids(loader) == first
    fv.manual_seed(124)
    assert _ids(loader) != first


def test_no_shuffle_no_transform_draws_nothing():
    g = fv.Generator(5)
    before = g.get_state()
    list(DataLoader(TensorDataset(*_data(10)), batch_size=3, generator=g))
    assert g.get_state() == before


def test_fast_path_never_calls_getitem(monkeypatch):
    ds = TensorDataset(*_data(20))
    sub = Subset(ds, np.arange(5, 20))

    def boom(self, i):
        raise AssertionError("per-item access on the fast path")

    monkeypatch.setattr(TensorDataset, "__getitem__", boom)
    for d in (ds, sub):
        loader = DataLoader(d, batch_size=6, shuffle=True, generator=fv.Generator(0))
        assert loader.fast_path
        ids = np.concatenate([b[1].numpy() for b in loader])
        assert sorted(ids.tolist()) == list(range(20 - len(d), 20))


def test_generic_dataset_falls_back_to_items_and_default_collate():
    loader = DataLoader(ItemOnly(7), batch_size=3, shuffle=True, generator=fv.Generator(2))
    assert not loader.fast_path
    batches = list(loader)
    x, y = batches[0]
    assert x.shape == (3, 1, 2, 2) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x.numpy()[:, 0, 0, 0], y.numpy())
    assert sorted(np.concatenate([b[1].numpy() for b in batches]).tolist()) == list(range(7))


def test_default_collate_structures_and_custom_collate():
    out = default_collate([{"a": 1.5, "b": (np.zeros(2), 3)}, {"a": 2.5, "b": (np.ones(2), 4)}])
    assert out["a"].dtype == np.float32 and out["b"][0].shape == (2, 2) and out["b"][1].dtype == np.int64
    loader = DataLoader(TensorDataset(*_data(4)), batch_size=2, collate_fn=lambda items: len(items))
    assert not loader.fast_path and list(loader) == [2, 2]


def test_transform_is_seeded_per_batch_and_applied_to_inputs_only():
    x = np.random.default_rng(0).random((40, 1, 4, 4)).astype(np.float32)
    ds = TensorDataset(x, np.arange(40))
    noise = transforms.GaussianNoise(0.1)

    def run(seed):
        loader = DataLoader(ds, batch_size=16, shuffle=True, generator=fv.Generator(seed), transform=noise)
        return [[b[0].numpy() for b in loader] for _ in range(2)]

    a, b, c = run(7), run(7), run(8)
    for ea, eb in zip(a, b):
        for ba, bb in zip(ea, eb):
            np.testing.assert_array_equal(ba, bb)
    assert not np.array_equal(a[0][0], c[0][0])
    assert not np.array_equal(a[0][0], a[1][0])  # new noise every epoch
    loader = DataLoader(ds, batch_size=40, transform=transforms.RandomHorizontalFlip(p=1.0))
    xb, yb = next(iter(loader))
    np.testing.assert_array_equal(xb.numpy(), x[..., ::-1])
    np.testing.assert_array_equal(yb.numpy(), np.arange(40))


def test_resume_mid_epoch_reproduces_the_rest():
    x = np.random.default_rng(0).random((50, 1, 3, 3)).astype(np.float32)
    ds = TensorDataset(x, np.arange(50))

    def make():
        return DataLoader(ds, batch_size=8, shuffle=True, generator=fv.Generator(11),
                          transform=transforms.GaussianNoise(0.1))

    ref = make()
    list(ref)  # epoch 0
    it = iter(ref)
    seen = [next(it) for _ in range(3)]  # 3 batches into epoch 1
    state = ref.state_dict()
    assert state["epoch"] == 1 and state["batch"] == 3
    rest = list(it)
    after = [b[1].numpy().tolist() for b in ref]  # epoch 2

    resumed = make()
    resumed.load_state_dict(state)
    again = list(resumed)
    assert len(seen) + len(again) == len(ref) and len(again) == len(rest)
    for (xa, ya), (xb, yb) in zip(rest, again):
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())
    assert _ids(resumed) == after
    assert resumed.state_dict()["epoch"] == 3 and resumed.state_dict()["batch"] == 0


def test_generator_state_can_be_read_and_set():
    ds = TensorDataset(*_data(20))
    loader = DataLoader(ds, batch_size=5, shuffle=True, generator=fv.Generator(0))
    state = loader.generator.get_state()
    first = _ids(loader)
    loader.generator.set_state(state)
    assert _ids(loader) == first


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(TensorDataset(*_data(3)), batch_size=0)
    with pytest.raises(TypeError, match="foveanet.Generator"):
        DataLoader(TensorDataset(*_data(3)), generator=np.random.default_rng(0))


# -------------------------------------------------------------------------------- samplers
def test_sampler_sets_the_order_and_excludes_shuffle():
    ds = TensorDataset(*_data(10))
    loader = DataLoader(ds, batch_size=3, sampler=[9, 0, 8, 1, 7])
    assert len(loader) == 2 and _ids(loader) == [[9, 0, 8], [1, 7]]
    assert _ids(DataLoader(ds, batch_size=3, sampler=[9, 0, 8, 1, 7], drop_last=True)) == [[9, 0, 8]]
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        DataLoader(ds, sampler=[0, 1], shuffle=True)
    with pytest.raises(TypeError, match="sampler must be an iterable of indices with a len"):
        DataLoader(ds, sampler=5)
    with pytest.raises(IndexError, match=r"the sampler \(list\) gave index 10, out of range for a "
                                         r"dataset of length 10"):
        list(DataLoader(ds, batch_size=2, sampler=[0, 10]))


def test_state_saved_before_samplers_still_loads():
    ds = TensorDataset(*_data(30))
    loader = DataLoader(ds, batch_size=7, shuffle=True, generator=fv.Generator(2))
    state = loader.state_dict()
    assert set(state) == {"epoch", "generator", "sampler", "batch"}
    first = _ids(loader)
    old = {k: v for k, v in state.items() if k != "sampler"}  # a checkpoint of an older foveanet
    again = DataLoader(ds, batch_size=7, shuffle=True, generator=fv.Generator(5))
    again.load_state_dict(old)
    assert _ids(again) == first


def test_state_right_after_iter_replays_the_whole_epoch():
    ds = TensorDataset(*_data(12))
    loader = DataLoader(ds, batch_size=5, shuffle=True, generator=fv.Generator(4))
    iter(loader)  # started, no batch taken
    state = loader.state_dict()
    assert state["epoch"] == 0 and state["batch"] == 0
    epoch0 = _ids(DataLoader(ds, batch_size=5, shuffle=True, generator=fv.Generator(4)))
    resumed = DataLoader(ds, batch_size=5, shuffle=True, generator=fv.Generator(0))
    resumed.load_state_dict(state)
    assert _ids(resumed) == epoch0 != _ids(loader)  # epoch 0 again; the started loader goes on


def test_collating_samples_of_different_shapes_says_so():
    class Ragged(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.zeros((3, 4 + i, 4), np.float32), i

    with pytest.raises(ValueError, match=r"different shapes \(\(3, 4, 4\), \(3, 5, 4\)\).*Resize"):
        list(DataLoader(Ragged(), batch_size=2))
