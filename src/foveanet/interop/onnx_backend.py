"""foveanet as an ONNX backend (``onnx.backend.base.Backend``): the interface ONNX's own conformance
suite (``onnx.backend.test.BackendTest``) drives, and a quick way to run a model once::

    from foveanet.interop.onnx_backend import FoveanetBackend
    outputs = FoveanetBackend.run_model(model_proto, [x])        # NumPy in, NumPy out

``prepare`` loads the model with :func:`foveanet.interop.onnx_import.load` (every safety check
included) in eval mode; the returned :class:`FoveanetBackendRep` runs it under ``no_grad``.
``run_node`` wraps a single node in a one-node model. The only device is the CPU.
"""
from __future__ import annotations

import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from ..autograd import Tensor, no_grad
from ..backend import xp
from .onnx_import import OnnxModule, load

__all__ = ["FoveanetBackend", "FoveanetBackendRep", "prepare", "run_model", "run_node",
           "supports_device"]


class FoveanetBackendRep(BackendRep):
    """A prepared model: ``run(inputs)`` with a list (graph-input order) or a dict (by name) of
    arrays returns the outputs as NumPy arrays, in a namedtuple keyed by output name."""

    def __init__(self, module: OnnxModule):
        self.module = module

    def run(self, inputs, **kwargs):
        m = self.module
        if isinstance(inputs, dict):
            args, named = (), {k: _tensor(v) for k, v in inputs.items()}
        else:
            if isinstance(inputs, (xp.ndarray, Tensor)):
                inputs = [inputs]
            args, named = tuple(_tensor(v) for v in inputs), {}
        with no_grad():
            out = m(*args, **named)
        outs = out if isinstance(out, tuple) else (out,)
        arrays = [o.data if isinstance(o, Tensor) else xp.asarray(o) for o in outs]
        return namedtupledict("Outputs", m.output_names)(*arrays)


def _tensor(v):
    return v if isinstance(v, Tensor) else Tensor(xp.asarray(v))


class FoveanetBackend(Backend):
    """ONNX backend on foveanet's interpreter (CPU only)."""

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            return Device(device).type == DeviceType.CPU
        except (AttributeError, ValueError):
            return False

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs) -> FoveanetBackendRep:
        """Load ``model`` (a ModelProto, path or bytes). ``kwargs`` go to ``load`` (``base_dir``,
        ``max_tensor_bytes``)."""
        if not cls.supports_device(device):
            raise ValueError(f"foveanet runs on the CPU only, not {device!r}")
        options = {k: kwargs[k] for k in ("base_dir", "max_tensor_bytes") if k in kwargs}
        module = load(model, **options)
        module.eval()
        return FoveanetBackendRep(module)

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs):
        """Run one node: ``inputs`` (list or dict by input name) are NumPy arrays; the node's
        omitted optional inputs are empty names. ``opset_version`` (kwarg) picks the opset (default:
        the newest the installed onnx knows)."""
        opset = kwargs.pop("opset_version", onnx.defs.onnx_opset_version())
        names = [n for n in node.input if n]
        if isinstance(inputs, dict):
            values = [inputs[n] for n in names]
        else:
            values = list(inputs)
            if len(values) != len(names):
                raise ValueError(f"run_node: node {node.name or node.op_type!r} has {len(names)} "
                                 f"inputs {names}, got {len(values)} values")
        graph_inputs = []
        for name, v in zip(names, values):
            arr = xp.asarray(v)
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(arr.dtype), arr.shape))
        outputs = [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
                   for o in node.output if o]
        graph = helper.make_graph([node], f"run_node_{node.op_type}", graph_inputs, outputs)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        return cls.prepare(model, device).run(values)


prepare = FoveanetBackend.prepare
run_model = FoveanetBackend.run_model
run_node = FoveanetBackend.run_node
supports_device = FoveanetBackend.supports_device
