"""Malformed state dicts (a loader's, a sampler's, an optimizer's, a scheduler's) are refused with
a clear error, before anything changes: checkpoints are validated as a whole elsewhere
(test_fuzz_rundir.py), and these are the objects' own guards for callers who load by hand."""
import numpy as np
import pytest

import foveanet as fv
from foveanet.data import DataLoader, RandomSampler, TensorDataset


def _loader():
    data = TensorDataset(np.arange(10, dtype=np.float32).reshape(10, 1))
    return DataLoader(data, batch_size=3, shuffle=True, generator=fv.Generator(1))


@pytest.mark.parametrize("state,msg", [
    (None, "needs 'generator' and 'epoch'"), ({"epoch": 1}, "needs 'generator' and 'epoch'"),
    ({"generator": None, "epoch": 1, "sampler": [1]}, "'sampler' must be a dict or None"),
    ({"generator": None, "epoch": "one"}, "'epoch' and 'batch' must be integers"),
])
def test_loader_state(state, msg):
    loader = _loader()
    before = loader.state_dict()
    with pytest.raises(ValueError, match=msg):
        loader.load_state_dict(state)
    assert loader.state_dict() == before


def test_sampler_state():
    with pytest.raises(ValueError, match="RandomSampler: a sampler state is a dict"):
        RandomSampler(range(4), generator=fv.Generator(0)).load_state_dict([1, 2])


def test_optimizer_state():
    w = fv.tensor(np.ones(3, np.float32), requires_grad=True)
    opt = fv.optim.SGD([w], lr=0.1, momentum=0.9)
    good = opt.state_dict()
    bad_state = dict(good, state={0: [1, 2]})
    with pytest.raises(ValueError, match="'state' must map parameter indices to dicts"):
        opt.load_state_dict(bad_state)
    groups = [dict(good["param_groups"][0], lr=-1.0)]
    with pytest.raises(ValueError, match="Invalid learning rate: -1.0"):
        opt.load_state_dict(dict(good, param_groups=groups))
    assert opt.param_groups[0]["lr"] == 0.1  # nothing changed


def test_scheduler_state():
    w = fv.tensor(np.ones(3, np.float32), requires_grad=True)
    sched = fv.optim.lr_scheduler.StepLR(fv.optim.SGD([w], lr=0.1), 2)
    with pytest.raises(TypeError, match="StepLR.load_state_dict expects a dict"):
        sched.load_state_dict(True)
