"""Samplers: the orders they give (against PyTorch's where it has the same sampler), the
DistributedSampler's split, padding and epochs, and a DataLoader with a sampler resuming bit for
bit."""
import json

import numpy as np
import pytest

import foveanet as fv
from foveanet.data import (DataLoader, DistributedSampler, RandomSampler, Sampler,
                           SequentialSampler, SubsetRandomSampler, TensorDataset, transforms)


def _ds(n):
    return TensorDataset(np.arange(n, dtype=np.float32)[:, None], np.arange(n))


def _epochs(sampler, k):
    return [list(sampler) for _ in range(k)]


# ------------------------------------------------------------------------- the simple samplers
def test_sequential_and_the_loaders_default_samplers():
    ds = _ds(5)
    assert list(SequentialSampler(ds)) == [0, 1, 2, 3, 4] and len(SequentialSampler(ds)) == 5
    g = fv.Generator(0)
    assert isinstance(DataLoader(ds).sampler, SequentialSampler)
    shuffled = DataLoader(ds, shuffle=True, generator=g).sampler
    assert isinstance(shuffled, RandomSampler) and shuffled.generator is g
    assert Sampler().state_dict() == {}


def test_random_sampler_permutes_every_epoch_from_its_generator():
    ds = _ds(20)
    a = _epochs(RandomSampler(ds, generator=fv.Generator(3)), 3)
    b = _epochs(RandomSampler(ds, generator=fv.Generator(3)), 3)
    assert a == b and a[0] != a[1] and all(sorted(e) == list(range(20)) for e in a)
    assert a[0] == np.random.default_rng(3).permutation(20).tolist()  # a Generator is PCG64(seed)
    assert a != _epochs(RandomSampler(ds, generator=fv.Generator(4)), 3)
    fv.manual_seed(9)
    first = list(RandomSampler(ds))  # no generator: the global one
    fv.manual_seed(9)
    assert list(RandomSampler(ds)) == first


def test_random_sampler_num_samples_and_replacement():
    ds = _ds(4)
    s = RandomSampler(ds, num_samples=10, generator=fv.Generator(0))
    order = list(s)
    assert len(s) == 10 and len(order) == 10
    assert sorted(order[:4]) == sorted(order[4:8]) == [0, 1, 2, 3] and len(set(order[8:])) == 2
    r = RandomSampler(ds, replacement=True, num_samples=200, generator=fv.Generator(0))
    drawn = list(r)
    assert len(drawn) == 200 and set(drawn) == {0, 1, 2, 3}  # repeats: with replacement
    with pytest.raises(ValueError, match="num_samples must be an int >= 1, got 0"):
        RandomSampler(ds, num_samples=0)
    with pytest.raises(TypeError, match="replacement should be a boolean"):
        RandomSampler(ds, replacement=1)
    with pytest.raises(TypeError, match="foveanet.Generator"):
        RandomSampler(ds, generator=np.random.default_rng(0))
    with pytest.raises(ValueError, match="cannot draw 3 samples from an empty dataset"):
        list(RandomSampler(_ds(0), num_samples=3))
    assert list(RandomSampler(_ds(0))) == []


def test_subset_random_sampler():
    idx = [7, 3, 11, 5]
    s = SubsetRandomSampler(idx, generator=fv.Generator(1))
    epochs = _epochs(s, 4)
    assert all(sorted(e) == sorted(idx) for e in epochs) and len({tuple(e) for e in epochs}) > 1
    assert len(s) == 4 and epochs == _epochs(SubsetRandomSampler(idx, generator=fv.Generator(1)), 4)


# ------------------------------------------------------------------------------- distributed
def _parts(n, replicas, **kw):
    return [DistributedSampler(_ds(n), num_replicas=replicas, rank=r, **kw) for r in range(replicas)]


@pytest.mark.parametrize("n,replicas", [(10, 3), (12, 4), (2, 5), (1, 1), (7, 2), (0, 3)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_order_matches_pytorch_without_shuffle(n, replicas, drop_last):
    torch_data = pytest.importorskip("torch.utils.data")
    for r, ours in enumerate(_parts(n, replicas, shuffle=False, drop_last=drop_last)):
        theirs = torch_data.DistributedSampler(range(n), num_replicas=replicas, rank=r,
                                               shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)


@pytest.mark.parametrize("n,replicas", [(10, 3), (12, 4), (2, 5), (31, 4)])
def test_distributed_ranks_share_one_permutation(n, replicas):
    parts = [list(s) for s in _parts(n, replicas, seed=5)]
    assert len({len(p) for p in parts}) == 1  # padded to equal length
    interleaved = [p[i] for i in range(len(parts[0])) for p in parts]
    assert sorted(set(interleaved)) == list(range(n))  # every sample seen
    perm = np.random.default_rng([5, 0]).permutation(n).tolist()
    assert interleaved == (perm * (len(interleaved) // n + 1))[:len(interleaved)]
    if n % replicas == 0:
        assert len(interleaved) == n  # disjoint: no padding needed
    dropped = [list(s) for s in _parts(n, replicas, seed=5, drop_last=True)]
    flat = [i for p in dropped for i in p]
    assert len(flat) == len(set(flat)) == n - n % replicas  # disjoint, the tail cut


def test_distributed_epochs_advance_by_themselves_unless_set():
    s = DistributedSampler(_ds(40), num_replicas=2, rank=1, seed=3)
    e0, e1, e2 = _epochs(s, 3)
    assert e0 != e1 != e2 and s.epoch == 2
    assert [e0, e1, e2] == [s.indices(e).tolist() for e in range(3)]
    assert e0 == DistributedSampler(_ds(40), num_replicas=2, rank=1, seed=3).indices(0).tolist()
    s.set_epoch(0)
    assert list(s) == e0 and list(s) == e1  # set_epoch(0), then the one after it
    for epoch in (5, 5):  # calling set_epoch every epoch gives exactly that epoch, as PyTorch
        s.set_epoch(epoch)
        assert list(s) == s.indices(5).tolist() and s.epoch == 5
    other = DistributedSampler(_ds(40), num_replicas=2, rank=1, seed=4)
    assert list(other) != e0  # another seed, another order
    unshuffled = DistributedSampler(_ds(6), num_replicas=2, rank=0, shuffle=False)
    assert _epochs(unshuffled, 2) == [[0, 2, 4]] * 2


def test_distributed_arguments_and_state():
    with pytest.raises(ValueError, match=r"Invalid rank 2, rank should be in the interval \[0, 1\]"):
        DistributedSampler(_ds(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match=r"Invalid rank -1"):
        DistributedSampler(_ds(4), num_replicas=2, rank=-1)
    with pytest.raises(ValueError, match="num_replicas must be an int >= 1, got 0"):
        DistributedSampler(_ds(4), num_replicas=0)
    with pytest.raises(ValueError, match="epoch must be an int >= 0"):
        DistributedSampler(_ds(4)).set_epoch(-1)
    single = DistributedSampler(_ds(5), seed=1)
    assert (single.num_replicas, single.rank, len(single)) == (1, 0, 5)
    list(single)
    list(single)
    state = json.loads(json.dumps(single.state_dict()))
    nxt = list(single)
    fresh = DistributedSampler(_ds(5), seed=1)
    fresh.load_state_dict(state)
    assert list(fresh) == nxt and fresh.epoch == 2


# --------------------------------------------------------------------------- with the loader
def _ids(loader):
    return [b[1].numpy().tolist() for b in loader]


def test_loader_with_distributed_sampler_keeps_the_fast_path(monkeypatch):
    ds = _ds(23)

    def boom(self, i):
        raise AssertionError("per-item access on the fast path")

    monkeypatch.setattr(TensorDataset, "__getitem__", boom)
    loaders = [DataLoader(ds, batch_size=4, sampler=s) for s in _parts(23, 3, seed=2)]
    assert all(ld.fast_path and len(ld) == 2 for ld in loaders)
    for epoch in range(2):
        seen = [sum(_ids(ld), []) for ld in loaders]
        assert seen == [s.indices(epoch).tolist() for s in (ld.sampler for ld in loaders)]
        assert sorted(set(sum(seen, []))) == list(range(23))


@pytest.mark.parametrize("make_sampler", [
    lambda ds: DistributedSampler(ds, num_replicas=2, rank=1, seed=7),
    lambda ds: RandomSampler(ds, generator=fv.Generator(21)),
    lambda ds: SubsetRandomSampler(list(range(3, 40)), generator=fv.Generator(22)),
    lambda ds: RandomSampler(ds, replacement=True, num_samples=30),  # the global generator
])
def test_loader_resumes_mid_epoch_with_its_sampler_bit_for_bit(make_sampler):
    x = np.random.default_rng(0).random((45, 1, 3, 3)).astype(np.float32)
    ds = TensorDataset(x, np.arange(45))

    def make():
        return DataLoader(ds, batch_size=4, sampler=make_sampler(ds), generator=fv.Generator(11),
                          transform=transforms.GaussianNoise(0.1))

    fv.manual_seed(0)
    ref = make()
    list(ref)  # epoch 0
    it = iter(ref)
    [next(it) for _ in range(2)]
    state = json.loads(json.dumps(ref.state_dict()))  # what a checkpoint keeps
    assert state["epoch"] == 1 and state["batch"] == 2 and "sampler" in state
    rest = [(b[0].numpy(), b[1].numpy()) for b in it]
    after = [(b[0].numpy(), b[1].numpy()) for b in ref]  # epoch 2

    fv.manual_seed(123)  # another global state: the loader's state must restore what it needs
    resumed = make()
    resumed.load_state_dict(state)
    again = [(b[0].numpy(), b[1].numpy()) for b in resumed]
    later = [(b[0].numpy(), b[1].numpy()) for b in resumed]
    assert len(again) == len(rest) > 0
    for got, want in zip(again + later, rest + after):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
