"""The graph tracer: every primitive, named values, module scopes, custom forward code."""
import numpy as np
import pytest

import foveanet as fv
from foveanet import autograd, nn
from foveanet.interop import trace


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return fv.relu(y) * 0.5 + y.mean(dim=(2, 3), keepdim=True), y


def test_trace_records_primitives_scopes_and_names():
    m = Custom().eval()
    x = fv.randn(2, 1, 5, 5)
    with fv.no_grad():
        g = trace(m, x)
    assert [n.op for n in g.nodes] == ["Conv2d", "BatchNorm", "ReLU", "Mul", "Mean", "Add"]
    assert [n.scope for n in g.nodes[:2]] == ["conv", "bn"]
    assert all(n.scope == "" for n in g.nodes[2:])
    bn = g.nodes[1]
    assert [v.name for v in bn.inputs] == ["conv/Conv2d", "bn.weight", "bn.bias", "bn.running_mean",
                                           "bn.running_var"]
    assert [v.kind for v in bn.inputs] == ["node", "param", "param", "buffer", "buffer"]
    assert g.nodes[0].users == [bn]
    assert [u.op for u in bn.users] == ["ReLU", "Mean"]  # nodes only; it is also an output
    assert [v.name for v in g.outputs] == ["Add", "bn/BatchNorm"]
    assert g.inputs[0].tensor is x
    with fv.no_grad():
        np.testing.assert_array_equal(g.outputs[0].tensor.numpy(), m(x)[0].numpy())
    assert autograd.tracer is None


def test_trace_rejects_outputs_built_outside_the_engine_and_cleans_up():
    class Raw(nn.Module):
        def forward(self, x):
            return fv.tensor(x.numpy() * 2)

    with pytest.raises(RuntimeError, match="not computed by foveanet's primitives"):
        trace(Raw(), fv.randn(2, 3))
    assert autograd.tracer is None

    class Boom(nn.Module):
        def forward(self, x):
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        trace(Boom(), fv.randn(2, 3))
    assert autograd.tracer is None
