"""Post-training int8 quantisation of an exported model (the lecture's TensorRT slide, part two):
``fv.onnx.export(model, x, path, quantize="int8", calibration=batches)``.

What it does. The model is exported as usual, with every BatchNormalization folded into its
convolution (``optimize=True``), and then quantised statically by onnxruntime's own quantisation
tool (``onnxruntime.quantization.quantize_static``: a well-kept implementation of exactly this,
so foveanet does not write its own):

- weights: int8, symmetric, one scale per output channel of each Conv / Gemm / MatMul
  (``per_channel``); biases int32 at scale (input scale x weight scale);
- activations: uint8 with a scale and a zero point per tensor, calibrated on the sample batches
  (``calibration``): the range each tensor spans over them (``method="minmax"``), or a percentile
  of it (``"percentile"``, 99.999%: one outlier no longer widens the step of every other value),
  or the range that keeps the most information (``"entropy"``);
- the file holds QuantizeLinear / DequantizeLinear pairs around the float operators (the "QDQ"
  format), which onnxruntime turns into its int8 kernels (QLinearConv, QLinearMatMul, ...) and
  which foveanet's importer runs as written (``fv.onnx.load``: quantise, dequantise, then the
  float operator), so both read the same file.

The calibration batches: a Tensor or array of samples (N, ...) (cut into batches of
``CALIBRATION_BATCH``), or an iterable of batches: arrays, Tensors, or the (inputs, targets)
pairs a DataLoader yields (the inputs are used). A few hundred representative samples are enough;
the test set must not be among them if the quantised model's accuracy is then measured on it.
"""
from __future__ import annotations

import logging
import os
import tempfile

from ..autograd import Tensor
from ..backend import xp

__all__ = ["quantize_qdq", "calibration_batches", "METHODS", "CALIBRATION_BATCH"]

METHODS = ("minmax", "percentile", "entropy")
CALIBRATION_BATCH = 64


def _array(x, what):
    data = x.data if isinstance(x, Tensor) else x
    try:
        a = xp.asarray(data)
    except Exception as e:  # noqa: BLE001 - whatever the object, say what it was
        raise TypeError(f"{what}: expected an array or a Tensor, got {type(x).__name__}") from e
    if not xp.issubdtype(a.dtype, xp.number):
        raise TypeError(f"{what}: expected numbers, got an array of {a.dtype}")
    return a


def calibration_batches(calibration, n_inputs: int, sample_shapes) -> list:
    """The calibration data as a list of batches, each a list of ``n_inputs`` float arrays whose
    sample shapes match the example input's (a clear error otherwise)."""
    if calibration is None:
        raise ValueError("quantize='int8' needs calibration data: calibration=<samples or batches "
                         "that the model sees in use, e.g. a few hundred training images>")
    if isinstance(calibration, (Tensor, xp.ndarray)):
        a = _array(calibration, "calibration")
        if n_inputs != 1:
            raise ValueError(f"the model has {n_inputs} inputs: give calibration as an iterable "
                             "of batches, each a tuple of one array per input")
        items = [a[i:i + CALIBRATION_BATCH] for i in range(0, len(a), CALIBRATION_BATCH)]
    else:
        try:
            items = list(calibration)
        except TypeError:
            raise TypeError("calibration: expected a Tensor, an array or an iterable of batches, "
                            f"got {type(calibration).__name__}") from None
    batches = []
    for k, item in enumerate(items):
        if isinstance(item, (tuple, list)):
            parts = list(item[:1]) if n_inputs == 1 else list(item)
        else:
            parts = [item]
        if len(parts) != n_inputs:
            raise ValueError(f"calibration batch {k}: {len(parts)} arrays for a model with "
                             f"{n_inputs} inputs")
        arrays = []
        for i, (part, shape) in enumerate(zip(parts, sample_shapes)):
            a = _array(part, f"calibration batch {k}")
            if tuple(a.shape[1:]) != tuple(shape):
                raise ValueError(f"calibration batch {k}, input {i}: samples of shape "
                                 f"{tuple(a.shape[1:])}, the example input's are {tuple(shape)}")
            arrays.append(xp.ascontiguousarray(a, dtype=xp.float32))
        if len(arrays[0]):
            batches.append(arrays)
    if not batches:
        raise ValueError("calibration: no samples (an empty array or iterable)")
    return batches


def quantize_qdq(proto, batches, input_names, method="minmax", per_channel=True):
    """The int8 QDQ ``ModelProto`` of a float ``proto`` calibrated on ``batches`` (from
    :func:`calibration_batches`), by onnxruntime's static quantisation."""
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r}: choose from {', '.join(METHODS)}")
    try:
        import onnx
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                              QuantFormat, QuantType, quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:  # pragma: no cover - onnxruntime is a dependency of the ONNX extra
        raise ImportError("quantize='int8' uses onnxruntime's quantisation tool: "
                          "pip install onnxruntime") from e
    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                 "entropy": CalibrationMethod.Entropy}[method]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            b = next(self._it, None)
            return None if b is None else dict(zip(input_names, b))

    extra = {"CalibPercentile": 99.999} if method == "percentile" else {}
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory(prefix="foveanet-quantize-") as tmp:
        src, pre, dst = (os.path.join(tmp, f) for f in ("float.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(proto, src)
        try:  # the tool logs its advice on the root logger: keep it quiet for this call
            root.setLevel(max(level, logging.ERROR))
            # the preprocessing its authors ask for: shapes inferred, the graph simplified
            quant_pre_process(src, pre)
            quantize_static(pre, dst, Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=calibrate,
                            extra_options=extra)
        finally:
            root.setLevel(level)
        return onnx.load(dst)
