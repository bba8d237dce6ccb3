"""The array-module seam and devices (foveanet.backend): the module and the device are found per
array, ``Tensor.device`` comes from its array, ``.to(device)`` exists on tensors and modules,
and a device that is not there is a clear DeviceError (a ValueError naming it)."""
import sys
import types

import numpy as np
import pytest

import foveanet as fv
from foveanet import backend, nn
from foveanet.backend import CPU, Device, DeviceError


def test_device_parsing_and_equality():
    assert Device("cpu") == "cpu" == CPU and str(CPU) == "cpu" and repr(CPU) == "device(type='cpu')"
    assert Device("cuda:1") == Device("cuda", 1) and str(Device("cuda:1")) == "cuda:1"
    assert Device("cuda") == "cuda:0" and hash(Device("cuda")) == hash(Device("cuda", 0))
    assert Device("CPU") == "cpu" and Device("cpu") != "cuda" and Device("cpu") != "nonsense"
    for bad, msg in [("tpu", "unknown device type 'tpu'"), ("cuda:x", "invalid device"),
                     ("cpu:1", "one CPU device"), (3, "a device is a string")]:
        with pytest.raises(DeviceError, match=msg):
            Device(bad)
    assert backend.available_devices() == [CPU]


def test_array_module_and_device_per_array():
    a = np.ones(3)
    assert backend.get_array_module(a) is np and backend.get_array_module(fv.tensor(a)) is np
    assert backend.get_array_module(2.0, a) is np
    assert backend.device_of(a) == "cpu" and fv.tensor(a).device == CPU
    assert backend.to_device(a, "cpu") is a


def test_another_array_library_is_found_by_its_arrays(monkeypatch):
    # a stand-in for CuPy: its arrays decide the module and the device, NumPy's do not
    fake = types.ModuleType("cupy")

    class ndarray:
        class device:
            id = 1
    fake.ndarray = ndarray
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert backend.get_array_module(np.ones(2), ndarray()) is fake
    assert backend.get_array_module(np.ones(2)) is np
    assert backend.device_of(ndarray()) == "cuda:1"
    with pytest.raises(DeviceError, match="from cuda:1 to cpu: foveanet computes on the CPU only"):
        backend.to_device(ndarray(), "cpu")


def test_tensor_to():
    t = fv.ones(2, 3)
    assert t.to("cpu") is t and t.to(fv.backend.CPU) is t and t.to(device="cpu") is t
    assert t.to(fv.float64).dtype == np.float64 and t.to("cpu", fv.float64).dtype == np.float64
    assert t.to(fv.zeros(1, dtype=fv.float64)).dtype == np.float64  # another tensor's dtype
    assert t.to(dtype=fv.float32) is t  # nothing to change
    x = fv.randn(3, requires_grad=True)
    (x.to(fv.float64) * 2).sum().backward()  # differentiable like any cast
    np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 2, np.float32))
    with pytest.raises(DeviceError, match="Tensor: device 'cuda' is not available"):
        t.to("cuda")
    with pytest.raises(TypeError, match="'tpu' is neither a device"):
        t.to("tpu")
    with pytest.raises(TypeError, match="unexpected keyword"):
        t.to(devcie="cpu")


def test_module_to_device_and_dtype():
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    w = m[0].weight.data
    assert m.to("cpu") is m and m[0].weight.data is w  # on the CPU already: the same arrays
    m.to(device="cpu", dtype=fv.float64)
    assert m[0].weight.dtype == np.float64 and m[1].running_mean.dtype == np.float64
    assert m[1].num_batches_tracked.dtype == np.int64  # integer buffers keep their dtype
    with pytest.raises(DeviceError, match="Sequential: device 'cuda:0' is not available"):
        m.to("cuda:0")
    with pytest.raises(DeviceError, match="Linear: device 'cuda'"):
        nn.Linear(2, 2, device="cuda")
    assert nn.Linear(2, 2, device="cpu").weight.device == "cpu"
