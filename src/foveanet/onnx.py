"""``fv.onnx``: ONNX in and out (needs the ``foveanet[onnx]`` extra: ``onnx``, ``onnxruntime``).

- ``fv.onnx.export(model, example_input, path, opset=None, ...)`` traces ``model`` through the
  engine and writes an ONNX file (see :mod:`foveanet.interop.onnx_export`);
- ``fv.onnx.load(path)`` reads an ONNX file into a trainable :class:`foveanet.nn.Module`
  (see :mod:`foveanet.interop.onnx_import`).

``onnx`` is imported when one of these is called, never when foveanet is imported.
"""


def export(model, example_input, path, *args, **kwargs):
    from .interop.onnx_export import export as _export
    return _export(model, example_input, path, *args, **kwargs)


def load(path, *args, **kwargs):
    from .interop.onnx_import import load as _load
    return _load(path, *args, **kwargs)
