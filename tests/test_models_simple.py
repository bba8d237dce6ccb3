"""The registry, the small models and the summary table."""
import numpy as np
import pytest
import torch

import foveanet as fv
import foveanet.models as M
import foveanet.nn.functional as F


def test_registry_lists_and_creates_by_either_spelling():
    assert {"mlp", "lenet5", "cnn_bn"} <= set(M.list_models())
    assert isinstance(M.create("cnn-bn", width=8), fv.nn.Module)
    with pytest.raises(ValueError, match="unknown model 'resnet9000'; available:"):
        M.create("resnet9000")
    with pytest.raises(TypeError, match="has no option 'depth'"):
        M.create("lenet5", depth=3)


@pytest.mark.parametrize("name,params", [("lenet5", 61_706), ("mlp", 669_706)])
def test_parameter_counts_match_the_classic_figures(name, params):
    assert M.create(name).num_parameters() == params


def test_cnn_bn_matches_an_equivalent_torch_model_in_size():
    def cb(i, o):
        return [torch.nn.Conv2d(i, o, 3, padding=1, bias=False), torch.nn.BatchNorm2d(o), torch.nn.ReLU()]
    ref = torch.nn.Sequential(*cb(1, 32), *cb(32, 32), torch.nn.MaxPool2d(2), *cb(32, 64), *cb(64, 64),
                              torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Dropout(0.25),
                              torch.nn.Linear(3136, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    ours = M.create("cnn_bn")
    assert ours.num_parameters() == sum(p.numel() for p in ref.parameters())
    assert list(ours.state_dict()) == [k for k in ref.state_dict()]


@pytest.mark.parametrize("name", ["mlp", "lenet5", "cnn_bn"])
@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_forward_and_one_training_step(name, size, channels):
    fv.manual_seed(0)
    model = M.create(name, in_channels=channels, input_size=size, num_classes=7)
    x, y = fv.randn(4, channels, size, size), fv.tensor([0, 1, 2, 6])
    opt = fv.optim.SGD(model.parameters(), lr=0.01)
    before = [p.data.copy() for p in model.parameters()]
    loss = F.cross_entropy(model(x), y)
    assert model(x).shape == (4, 7) and np.isfinite(loss.item())
    loss.backward()
    opt.step()
    assert any(not np.array_equal(b, p.data) for b, p in zip(before, model.parameters()))


def test_summary_rows_and_totals():
    model = M.create("lenet5")
    s = M.summary(model, (1, 1, 28, 28))
    assert s.total_params == 61_706
    conv1 = s.rows[0]
    assert conv1.output_shape == (1, 6, 28, 28) and conv1.macs == 6 * 28 * 28 * 25
    assert s.total_macs == sum(r.macs for r in s.rows) == 416_520
    text = str(s)
    assert "Total params: 61,706" in text and "MaxPool2d" in text
    assert model.training  # summary restores the mode
