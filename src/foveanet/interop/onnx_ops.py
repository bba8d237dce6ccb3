"""The ONNX operators that :mod:`foveanet.interop.onnx_import` interprets, written with foveanet's
differentiable ops so that an imported graph can be trained.

Each operator is a function ``op(node, *inputs)``: ``node`` is the :class:`NodeInfo` (attributes
already parsed, the model's opset, the module it runs in) and ``inputs`` are the node's input
values in order, fv Tensors, with ``None`` for an omitted optional input. It returns one Tensor or
a tuple (one per output). Floating-point data goes through fv ops (``fv.nn.functional``,
``foveanet.ops``), so gradients flow through it; integer and boolean data (shapes, indices, masks)
is plain NumPy wrapped in Tensors, since it carries no gradient. That is what makes run-time shape
arithmetic work (``Shape -> Gather -> Concat -> Reshape`` with a dynamic batch size): every value
is recomputed on every call.

Semantics follow the ONNX operator specification, attribute defaults included, for the opsets
named in each docstring; where an opset changed an operator (an attribute became an input, a
default changed), the function reads ``node.opset``. ``check_node`` (the 0/1 flags, then the
operator's entry in ``CHECKS``) runs when the model is loaded, on attributes already checked
against the operator's schema (types, required ones): settings the import cannot honour (a Resize
mode other than nearest, a 3-D convolution's kernel, ...) and settings that are invalid whatever
the input (a stride of 0, negative pads, a perm that is not a permutation, ...), so such a model
fails when it is loaded rather than at its first call. What depends on the input's shape or on
data is checked by the operator when it runs; sizes computed from either go through
``_check_alloc`` before anything is allocated.

Conventions: a raised ValueError/TypeError/IndexError is re-raised by the interpreter as an
``OnnxNodeError`` with the node's name and operator prefixed, so messages here name only the
problem (the attribute or input at fault, and its value).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from .. import ops
from ..autograd import Tensor
from ..backend import xp
from ..nn import functional as F
from ..ops.conv import Conv2d, check_conv
from ..ops.pool import MaxUnpool2d, pool_out_size
from ..ops.resize import resize_nearest
from ..random import numpy_rng

__all__ = ["NodeInfo", "OPS", "CHECKS", "check_node", "STATIC_INPUTS", "BUFFER_INPUTS",
           "onnx_dtype", "value_dtype"]


@dataclass
class NodeInfo:
    """What an operator needs to know about its node besides its input values."""
    name: str
    op_type: str
    attrs: dict
    inputs: list
    outputs: list
    opset: int
    module: object = None           # the OnnxModule: its .training flag and memory limit
    buffers: frozenset = field(default_factory=frozenset)  # inputs that are registered buffers

    def attr(self, key, default=None):
        return self.attrs.get(key, default)


# ---------------------------------------------------------------------------------------- helpers
def _wrap(array) -> Tensor:
    return Tensor._wrap(xp.asarray(array))


def _is_float(t) -> bool:
    return t is not None and xp.issubdtype(t.dtype, xp.floating)


def _ints(t) -> list:
    return [int(v) for v in xp.asarray(t.data).reshape(-1)]


def _scalar(t):
    return xp.asarray(t.data).reshape(-1)[0].item()


def _check_alloc(node, shape, dtype) -> None:
    """Refuse outputs whose size comes from data or attributes (ConstantOfShape, Expand, Tile,
    Range, Resize, padding, strides) and would exceed the module's memory limit: a hostile graph
    must not exhaust memory. An empty axis counts as 1: the other axes still size per-axis work
    (index maps, window counts, the padded rows of an empty batch)."""
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise ValueError(f"negative dimension in output shape {shape}")
    limit = getattr(node.module, "max_tensor_bytes", None)
    nbytes = math.prod(max(d, 1) for d in shape) * xp.dtype(dtype).itemsize
    if limit is not None and nbytes > limit:
        needs = f"needs {nbytes} bytes" if min(shape, default=1) else \
            f"is empty, but its other axes span {nbytes} bytes"
        raise ValueError(f"the output shape {shape} {needs}, over the limit of {limit} bytes "
                         "(load(..., max_tensor_bytes=...) raises it)")


def _reshape(x, shape):
    """Reshape through the engine for floating data; integer data (shapes, indices) stays plain
    NumPy, so shape arithmetic never enters the autograd graph or a trace of it."""
    if _is_float(x):
        return ops.reshape(x, tuple(shape))
    try:
        return _wrap(x.data.reshape(tuple(shape)))
    except ValueError:
        raise ValueError(f"cannot reshape a tensor of shape {tuple(x.shape)} to {tuple(shape)}") \
            from None


def _axis(axis: int, ndim: int, what="axis") -> int:
    if not -ndim <= axis < max(ndim, 1):
        raise ValueError(f"{what} {axis} is out of range for a tensor with {ndim} dimensions")
    return axis % max(ndim, 1)


def onnx_dtype(code: int):
    """The NumPy dtype of an ONNX TensorProto data type (ValueError for those foveanet lacks)."""
    try:
        return xp.dtype(_ONNX_DTYPES[int(code)])
    except KeyError:
        raise ValueError(f"ONNX data type {code} ({_ONNX_TYPE_NAMES.get(int(code), 'unknown')}) is "
                         "not supported") from None


# TensorProto.DataType codes (onnx.TensorProto.FLOAT == 1, ...)
_ONNX_DTYPES = {1: xp.float32, 2: xp.uint8, 3: xp.int8, 4: xp.uint16, 5: xp.int16, 6: xp.int32,
                7: xp.int64, 9: xp.bool_, 10: xp.float16, 11: xp.float64, 12: xp.uint32,
                13: xp.uint64}
_ONNX_TYPE_NAMES = {0: "UNDEFINED", 8: "STRING", 14: "COMPLEX64", 15: "COMPLEX128",
                    16: "BFLOAT16", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2",
                    20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1"}


def _legacy_broadcast(node, a, b):
    """Opset < 7 arithmetic broadcast B against A only when ``broadcast=1``, aligning B at ``axis``
    (default: the trailing axes); NumPy broadcasting covers the default, ``axis`` needs B padded
    with trailing 1s."""
    if node.opset < 7 and node.attr("broadcast", 0) and "axis" in node.attrs and b.ndim:
        axis = _axis(node.attr("axis"), a.ndim)
        trailing = a.ndim - axis - b.ndim
        if trailing > 0:
            b = ops.reshape(b, tuple(b.shape) + (1,) * trailing)
    return a, b


# ------------------------------------------------------------------------------------ arithmetic
def _int_div(a, b):
    """ONNX integer Div truncates toward zero (C semantics), NumPy's // floors."""
    with xp.errstate(divide="ignore", invalid="ignore"):
        q = xp.floor_divide(a, b)
        if xp.issubdtype(q.dtype, xp.signedinteger):
            q = q + ((xp.remainder(a, b) != 0) & ((a < 0) != (b < 0))).astype(q.dtype)
    return q.astype(xp.result_type(a, b), copy=False)


def _binary(fv_fn, np_fn):
    def op(node, a, b):
        a, b = _legacy_broadcast(node, a, b)
        if _is_float(a) or _is_float(b):
            return fv_fn(a, b)
        return _wrap(np_fn(a.data, b.data))
    return op


def Pow(node, a, b):
    a, b = _legacy_broadcast(node, a, b)
    if _is_float(a):
        return ops.pow(a, b if b.dtype == a.dtype else ops.cast(b, a.dtype))
    with xp.errstate(all="ignore"):  # integer base: the result keeps the base's type
        return _wrap(xp.power(a.data.astype(xp.float64), b.data).astype(a.dtype))


def _variadic(fv_fn, np_fn):
    def op(node, *xs):
        xs = [x for x in xs if x is not None]
        out = xs[0]
        for x in xs[1:]:
            if _is_float(out) or _is_float(x):
                out = fv_fn(out, x)
            else:
                out = _wrap(np_fn(out.data, x.data))
        return out
    return op


def Mean(node, *xs):
    xs = [x for x in xs if x is not None]
    return OPS["Sum"](node, *xs) / float(len(xs)) if len(xs) > 1 else xs[0]


def _unary_float(fv_fn):
    def op(node, x):
        return fv_fn(x)
    return op


def _no_grad_unary(np_fn):
    """Piecewise-constant functions (Floor, Ceil, Round, Sign): their gradient is zero."""
    def op(node, x):
        return _wrap(np_fn(x.data).astype(x.dtype, copy=False))
    return op


def Neg(node, x):
    return ops.neg(x) if _is_float(x) else _wrap(-x.data)


def Abs(node, x):
    return ops.abs(x) if _is_float(x) else _wrap(xp.abs(x.data))


def Reciprocal(node, x):
    return 1.0 / x


def Relu(node, x):
    return F.relu(x) if _is_float(x) else _wrap(xp.maximum(x.data, 0).astype(x.dtype))


def LeakyRelu(node, x):
    return F.leaky_relu(x, node.attr("alpha", 0.01))


def Elu(node, x):
    return F.elu(x, node.attr("alpha", 1.0))


def Selu(node, x):
    return F.elu(x, node.attr("alpha", 1.6732632423543772848170429916717)) * \
        float(node.attr("gamma", 1.0507009873554804934193349852946))


def _softplus(x):
    # log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), which never overflows
    return F.relu(x) + ops.log(ops.exp(-ops.abs(x)) + 1.0)


def Softplus(node, x):
    return _softplus(x)


def Softsign(node, x):
    return x / (ops.abs(x) + 1.0)


def Mish(node, x):
    return x * F.tanh(_softplus(x))


def HardSigmoid(node, x):
    return ops.clamp(x * float(node.attr("alpha", 0.2)) + float(node.attr("beta", 0.5)), 0.0, 1.0)


def HardSwish(node, x):
    return x * ops.clamp(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)


def _zero(x):
    return xp.zeros((), dtype=x.dtype)


def ThresholdedRelu(node, x):
    return ops.where(x.data > node.attr("alpha", 1.0), x, _zero(x))


def Shrink(node, x):
    lambd, bias = node.attr("lambd", 0.5), node.attr("bias", 0.0)
    if not _is_float(x):
        d = x.data
        out = xp.where(d < -lambd, d + bias, xp.where(d > lambd, d - bias, 0))
        return _wrap(out.astype(d.dtype))
    return ops.where(x.data < -lambd, x + bias, ops.where(x.data > lambd, x - bias, _zero(x)))


def PRelu(node, x, slope):
    if node.opset < 7 and slope.ndim == 1 and x.ndim > 2 and slope.shape[0] == x.shape[1] \
            and slope.shape[0] > 1:  # opset 6: a (C,) slope is per channel
        slope = ops.reshape(slope, (slope.shape[0],) + (1,) * (x.ndim - 2))
    if not _is_float(x):
        return _wrap(xp.where(x.data < 0, x.data * slope.data, x.data).astype(x.dtype))
    return ops.where(x.data < 0, x * slope, x)


def Sigmoid(node, x):
    return F.sigmoid(x)


def Tanh(node, x):
    return F.tanh(x)


def _coerced_2d(fn):
    """Softmax/LogSoftmax/Hardmax before opset 13: the input is flattened to 2-D at ``axis``
    (default 1) and normalised over the second dimension; from 13 on, one axis (default -1)."""
    def op(node, x):
        if node.opset >= 13:
            return fn(x, _axis(node.attr("axis", -1), x.ndim))
        axis = _axis(node.attr("axis", 1), x.ndim) if x.ndim else 0
        shape = tuple(x.shape)
        rows = math.prod(shape[:axis])
        flat = ops.reshape(x, (rows, math.prod(shape[axis:])))
        return ops.reshape(fn(flat, 1), shape)
    return op


Softmax = _coerced_2d(F.softmax)
LogSoftmax = _coerced_2d(F.log_softmax)


# ------------------------------------------------------------------------------------- comparison
def _compare(np_fn):
    def op(node, a, b):
        a, b = _legacy_broadcast(node, a, b)
        return _wrap(np_fn(a.data, b.data))
    return op


def Not(node, x):
    return _wrap(xp.logical_not(x.data))


def Where(node, cond, a, b):
    c = cond.data.astype(bool, copy=False)
    if _is_float(a) or _is_float(b):
        return ops.where(c, a, b)
    return _wrap(xp.where(c, a.data, b.data))


# -------------------------------------------------------------------------------------- linear
def MatMul(node, a, b):
    if _is_float(a) or _is_float(b):
        return ops.matmul(a, b)
    return _wrap(xp.matmul(a.data, b.data))


def Gemm(node, a, b, c=None):
    """Y = alpha A' B' + beta C, A' = A^T if transA, B' = B^T if transB (all opsets: C optional from
    11, alpha = beta = 1, transA = transB = 0 by default). The common case (transB = 1, no scaling,
    a bias vector) is one fused ``linear``, PyTorch's Linear layer."""
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    ta, tb = node.attr("transA", 0), node.attr("transB", 0)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"Gemm needs 2-D A and B, got shapes {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if ta:
        a = ops.transpose(a, 0, 1)
    bias_vector = c is None or (beta == 1.0 and c.ndim == 1 and c.shape[0] == b.shape[0])
    if tb and alpha == 1.0 and bias_vector:
        return F.linear(a, b, c)
    y = ops.matmul(a, ops.transpose(b, 0, 1) if tb else b)
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return y


# ---------------------------------------------------------------------------------- conv / pool
def _spatial_attr(node, key, nd, default):
    v = node.attr(key)
    if v is None:
        return [default] * nd
    v = [int(i) for i in v]
    if len(v) != nd:
        raise ValueError(f"attribute {key}={v} should have {nd} entries (one per spatial axis)")
    return v


def _explicit_pads(node, nd):
    pads = node.attr("pads")
    if pads is None:
        return [0] * nd, [0] * nd
    pads = [int(p) for p in pads]
    if len(pads) != 2 * nd:
        raise ValueError(f"attribute pads={pads} should have {2 * nd} entries (begin and end per "
                         "spatial axis)")
    return pads[:nd], pads[nd:]


def _same_pads(auto, in_sizes, k_eff, strides):
    """SAME_UPPER/SAME_LOWER: output = ceil(input / stride), the needed padding split in two with
    the odd one at the end (UPPER) or the beginning (LOWER)."""
    begin, end = [], []
    for size, k, s in zip(in_sizes, k_eff, strides):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        b = total // 2 if auto == "SAME_UPPER" else total - total // 2
        begin.append(b)
        end.append(total - b)
    return begin, end


def _auto_pad(node):
    auto = node.attr("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise ValueError(f"unknown auto_pad {auto!r} (NOTSET, SAME_UPPER, SAME_LOWER or VALID)")
    return auto


def _spatial_rank(node, x, what):
    nd = x.ndim - 2
    if nd not in (1, 2):
        raise ValueError(f"{what} supports 1-D and 2-D inputs (N, C, L) or (N, C, H, W); the input "
                         f"has shape {tuple(x.shape)} ({nd} spatial axes)")
    return nd


def _to_2d(t):
    """A 1-D (N, C, L) tensor (or (O, I, K) kernel) as 2-D (N, C, 1, L): 1-D convolutions and
    poolings run as 2-D ones with a height of 1."""
    return ops.unsqueeze(t, 2)


def Conv(node, x, w, b=None):
    """Conv (opsets 1, 11, 22): auto_pad (NOTSET, SAME_UPPER, SAME_LOWER, VALID), dilations,
    group, kernel_shape (inferred from W), pads (begin..., end...), strides; 1-D and 2-D."""
    nd = _spatial_rank(node, x, "Conv")
    if w.ndim != x.ndim:
        raise ValueError(f"weight of shape {tuple(w.shape)} does not fit an input of shape "
                         f"{tuple(x.shape)}")
    kernel = list(w.shape[2:])
    declared = node.attr("kernel_shape")
    if declared is not None and _spatial_attr(node, "kernel_shape", nd, 1) != kernel:
        raise ValueError(f"kernel_shape {list(declared)} does not match the weight's {kernel}")
    strides = _spatial_attr(node, "strides", nd, 1)
    dil = _spatial_attr(node, "dilations", nd, 1)
    group = int(node.attr("group", 1))
    k_eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    auto = _auto_pad(node)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pb, pe = _same_pads(auto, x.shape[2:], k_eff, strides)
    elif auto == "VALID":
        pb, pe = [0] * nd, [0] * nd
    else:
        pb, pe = _explicit_pads(node, nd)
    _check_alloc(node, list(x.shape[:2]) + [n + b + e for n, b, e in zip(x.shape[2:], pb, pe)],
                 x.dtype)  # attribute-driven padding: bounded like data-driven sizes
    if nd == 1:
        x, w = _to_2d(x), _to_2d(w)
        strides, dil, pb, pe = [1] + strides, [1] + dil, [0] + pb, [0] + pe
    if pb == pe:
        y = F.conv2d(x, w, b, stride=tuple(strides), padding=tuple(pb), dilation=tuple(dil),
                     groups=group)
    else:  # asymmetric padding: the primitive takes (top, bottom, left, right) directly
        x, w, b, group = check_conv("conv2d", x, w, b, group, transposed=False)
        for ax in range(2):
            if (w.shape[2 + ax] - 1) * dil[ax] + 1 > x.shape[2 + ax] + pb[ax] + pe[ax]:
                raise ValueError(f"kernel {tuple(w.shape[2:])} (dilation {dil}) is larger than the "
                                 f"padded input of shape {tuple(x.shape)} with pads {pb}+{pe}")
        args = (x, w) if b is None else (x, w, b)
        y = Conv2d.apply(*args, stride=tuple(strides), pads=(pb[0], pe[0], pb[1], pe[1]),
                         dilation=tuple(dil), groups=group)
    return ops.squeeze(y, 2) if nd == 1 else y


def _crop_or_pad(y, axis, begin, end):
    """Remove ``begin``/``end`` elements at the two ends of ``axis`` (negative: add zeros)."""
    if begin < 0 or end < 0:
        widths = [0] * (2 * y.ndim)
        k = y.ndim - 1 - axis  # F.pad lists (before, after) from the last axis
        widths[2 * k], widths[2 * k + 1] = max(-begin, 0), max(-end, 0)
        y = ops.pad(y, widths)
        begin, end = max(begin, 0), max(end, 0)
    if begin or end:
        idx = [slice(None)] * y.ndim
        idx[axis] = slice(begin, y.shape[axis] - end)
        y = y[tuple(idx)]
    return y


def ConvTranspose(node, x, w, b=None):
    """ConvTranspose (opsets 1, 11, 22): auto_pad, dilations, group, kernel_shape, output_padding,
    output_shape (which sets the padding), pads, strides; 1-D and 2-D.

    The general case is the unpadded transposed convolution, then per axis ``output_padding``
    zeros added at the end, ``pads`` removed at the two ends (output_shape and SAME_* give the
    pads as the ONNX reference computes them), then the bias; the symmetric case PyTorch exports is
    one ``conv_transpose2d``."""
    nd = _spatial_rank(node, x, "ConvTranspose")
    if w.ndim != x.ndim:
        raise ValueError(f"weight of shape {tuple(w.shape)} does not fit an input of shape "
                         f"{tuple(x.shape)}")
    kernel = list(w.shape[2:])
    strides = _spatial_attr(node, "strides", nd, 1)
    dil = _spatial_attr(node, "dilations", nd, 1)
    out_pad = _spatial_attr(node, "output_padding", nd, 0)
    group = int(node.attr("group", 1))
    auto = _auto_pad(node)
    in_sizes = list(x.shape[2:])
    full = [s * (n - 1) + (k - 1) * d + 1 for s, n, k, d in zip(strides, in_sizes, kernel, dil)]
    out_shape = node.attr("output_shape")
    if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        if out_shape is not None:
            out_shape = [int(v) for v in out_shape]
            if len(out_shape) not in (nd, nd + 2):
                raise ValueError(f"output_shape {out_shape} should have {nd} entries (one per "
                                 "spatial axis)")
            out_shape = out_shape[-nd:]
        else:
            out_shape = [n * s for n, s in zip(in_sizes, strides)]
        total = [f + op - o for f, op, o in zip(full, out_pad, out_shape)]
        if auto == "SAME_UPPER":
            pb = [t // 2 for t in total]
        else:
            pb = [t - t // 2 for t in total]
        pe = [t - p for t, p in zip(total, pb)]
    elif auto == "VALID":
        pb, pe = [0] * nd, [0] * nd
    else:
        pb, pe = _explicit_pads(node, nd)
    computed = [f + op for f, op in zip(full, out_pad)]
    final = [c - b - e for c, b, e in zip(computed, pb, pe)]
    if min(final) < 1:
        raise ValueError(f"the pads {pb}+{pe} leave nothing of the {computed} positions the "
                         "transposed convolution computes")
    # huge strides, dilations or output_shape must not allocate without bound
    _check_alloc(node, [x.shape[0], w.shape[1] * group] +
                 [max(c, o) for c, o in zip(computed, final)], x.dtype)
    if nd == 1:
        x, w = _to_2d(x), _to_2d(w)
        strides, dil, out_pad, pb, pe = [1] + strides, [1] + dil, [0] + out_pad, [0] + pb, [0] + pe
    if pb == pe and min(pb) >= 0 and all(op < max(s, d) for op, s, d in zip(out_pad, strides, dil)):
        y = F.conv_transpose2d(x, w, b, stride=tuple(strides), padding=tuple(pb),
                               output_padding=tuple(out_pad), groups=group, dilation=tuple(dil))
    else:
        y = F.conv_transpose2d(x, w, None, stride=tuple(strides), padding=0, groups=group,
                               dilation=tuple(dil))
        for ax in range(2):
            y = _crop_or_pad(y, 2 + ax, pb[ax], pe[ax] - out_pad[ax])
        if b is not None:
            y = y + ops.reshape(b, (1, b.shape[0], 1, 1))
    return ops.squeeze(y, 2) if nd == 1 else y


def _pool_geometry(node, x, nd):
    """Kernel, strides, dilations, begin/end pads and the output size of an ONNX pooling node
    (MaxPool 1/8/10/11/12/22, AveragePool 1/7/10/11/19/22): the explicit-padding output is
    floor((in + pads - k_eff) / stride) + 1, or with ceil_mode the ceiling, less one when the last
    window would start in the end padding (PyTorch's rule, which the ONNX reference follows)."""
    kernel = node.attr("kernel_shape")
    if kernel is None or len(kernel) != nd:
        raise ValueError(f"kernel_shape {kernel} should have {nd} entries")
    kernel = [int(k) for k in kernel]
    strides = _spatial_attr(node, "strides", nd, 1)
    dil = _spatial_attr(node, "dilations", nd, 1)
    ceil_mode = bool(node.attr("ceil_mode", 0))
    auto = _auto_pad(node)
    in_sizes = list(x.shape[2:])
    k_eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pb, pe = _same_pads(auto, in_sizes, k_eff, strides)
        out = [-(-n // s) for n, s in zip(in_sizes, strides)]
        return kernel, strides, dil, pb, pe, out
    if auto == "VALID":
        pb, pe = [0] * nd, [0] * nd
    else:
        pb, pe = _explicit_pads(node, nd)
    out = []
    for n, k, s, b, e in zip(in_sizes, k_eff, strides, pb, pe):
        span = n + b + e - k
        if span < 0:
            raise ValueError(f"the input of shape {tuple(x.shape)} (pads {pb}+{pe}) is smaller "
                             f"than the kernel {kernel} (dilations {dil})")
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= n + b:
            o -= 1
        out.append(o)
    return kernel, strides, dil, pb, pe, out


def _window_counts(n_out, k, s, d, lo, hi):
    """How many taps of each window (i*s + t*d, t < k) of a padded axis fall in [lo, hi)."""
    pos = (xp.arange(n_out) * s)[:, None] + (xp.arange(k) * d)[None, :]
    return ((pos >= lo) & (pos < hi)).sum(axis=1)


def _sum_taps(xpad, kernel, strides, dil, out):
    """Sum of the kh*kw (dilated) taps of every window: one strided slice per tap."""
    total = None
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            r0, c0 = i * dil[0], j * dil[1]
            tap = xpad[:, :, r0:r0 + strides[0] * (out[0] - 1) + 1:strides[0],
                       c0:c0 + strides[1] * (out[1] - 1) + 1:strides[1]]
            total = tap if total is None else total + tap
    return total


def _pool_nd(node, x, kind, kernel, strides, dil, pb, pe, out):
    """Pooling over any number of spatial axes (3-D pooling, PyTorch's LRN decomposition): pad
    explicitly, then take the max or the sum of the prod(kernel) strided taps, one slice each.
    (Ties in a max share the gradient, as ``maximum`` does.)"""
    nd = len(kernel)
    need = [(o - 1) * s + (k - 1) * d + 1 for o, s, k, d in zip(out, strides, kernel, dil)]
    extra = [max(nn - (n + b), 0) for nn, n, b in zip(need, x.shape[2:], pb)]
    widths = []
    for ax in reversed(range(nd)):
        widths += [pb[ax], extra[ax]]
    xpad = ops.pad(x, widths, value=-math.inf if kind == "max" else 0.0)
    acc = None
    for offs in itertools.product(*[range(k) for k in kernel]):
        key = (slice(None), slice(None)) + tuple(
            slice(t * d, t * d + s * (o - 1) + 1, s) for t, d, s, o in zip(offs, dil, strides, out))
        tap = xpad[key]
        acc = tap if acc is None else (ops.maximum(acc, tap) if kind == "max" else acc + tap)
    if kind == "max":
        return acc
    include = bool(node.attr("count_include_pad", 0))
    count = xp.ones((), dtype=xp.int64)
    for ax in range(nd):
        n = x.shape[2 + ax]
        lo, hi = (0, n + pb[ax] + pe[ax]) if include else (pb[ax], pb[ax] + n)
        c = _window_counts(out[ax], kernel[ax], strides[ax], dil[ax], lo, hi)
        count = xp.multiply.outer(count, c)
    return acc * (1.0 / xp.maximum(count, 1)).astype(x.dtype)


def _pool(node, x, kind):
    nd = x.ndim - 2
    if nd < 1:
        raise ValueError(f"{node.op_type} needs an (N, C, ...) input with spatial axes, got shape "
                         f"{tuple(x.shape)}")
    kernel, strides, dil, pb, pe, out = _pool_geometry(node, x, nd)
    want_idx = kind == "max" and len(node.outputs) > 1 and bool(node.outputs[1])
    _check_alloc(node, list(x.shape[:2]) + [(o - 1) * s + (k - 1) * d + 1 for o, s, k, d in
                                            zip(out, strides, kernel, dil)], x.dtype)
    if nd > 2:
        if want_idx:
            raise ValueError("the Indices output is supported for 1-D and 2-D MaxPool only")
        if not _is_float(x):
            return _wrap(_pool_nd(node, ops.cast(x, xp.float64), kind, kernel, strides, dil, pb,
                                  pe, out).data.astype(x.dtype))
        return _pool_nd(node, x, kind, kernel, strides, dil, pb, pe, out)
    dtype = x.dtype
    if not _is_float(x):  # integer max pooling (uint8 images): exact in float64
        x = ops.cast(x, xp.float64)
    in_sizes = list(x.shape[2:])
    if nd == 1:
        x = _to_2d(x)
        kernel, strides, dil, pb, pe, out = ([1] + kernel, [1] + strides, [1] + dil, [0] + pb,
                                             [0] + pe, [1] + out)
    ceil_mode = bool(node.attr("ceil_mode", 0))
    # fv's own pooling when it computes exactly this: symmetric pads of at most half the kernel,
    # the same output size (PyTorch's ceil rule is ONNX's), no dilated average
    fast = pb == pe and (kind == "max" or dil == [1, 1]) and \
        all(p <= k // 2 for p, k in zip(pb, kernel)) and \
        all(pool_out_size(n, k, s, p, d, ceil_mode) == o
            for n, k, s, p, d, o in zip(x.shape[2:], kernel, strides, pb, dil, out))
    offset = (0, 0)
    if fast:
        if kind == "max":
            res = F.max_pool2d(x, tuple(kernel), tuple(strides), tuple(pb), tuple(dil), ceil_mode,
                               return_indices=want_idx)
        else:
            res = F.avg_pool2d(x, tuple(kernel), tuple(strides), tuple(pb), ceil_mode,
                               count_include_pad=bool(node.attr("count_include_pad", 0)))
        plane = tuple(x.shape[2:])
    else:  # pad explicitly (as much as the windows reach), then pool without padding
        need = [(o - 1) * s + (k - 1) * d + 1 for o, s, k, d in zip(out, strides, kernel, dil)]
        extra = [max(nn - (n + b), 0) for nn, n, b in zip(need, x.shape[2:], pb)]
        value = -math.inf if kind == "max" else 0.0
        xpad = ops.pad(x, (pb[1], extra[1], pb[0], extra[0]), value=value)
        if kind == "max":
            res = F.max_pool2d(xpad, tuple(kernel), tuple(strides), 0, tuple(dil),
                               return_indices=want_idx)
            plane, offset = tuple(xpad.shape[2:]), (pb[0], pb[1])
        else:
            include = bool(node.attr("count_include_pad", 0))
            counts = []
            for ax in range(2):
                n = x.shape[2 + ax]
                lo, hi = (0, n + pb[ax] + pe[ax]) if include else (pb[ax], pb[ax] + n)
                counts.append(_window_counts(out[ax], kernel[ax], strides[ax], dil[ax], lo, hi))
            count = xp.maximum(counts[0][:, None] * counts[1][None, :], 1)
            if dil == [1, 1]:  # the window sums, as k*k times the plain average
                res = F.avg_pool2d(xpad, tuple(kernel), tuple(strides), 0, count_include_pad=True)
                res = res * (float(kernel[0] * kernel[1]) / count).astype(x.dtype)
            else:  # fv's avg_pool2d has no dilation: add the taps
                res = _sum_taps(xpad, kernel, strides, dil, out) * (1.0 / count).astype(x.dtype)
    if want_idx:
        y, idx = res
    else:
        y, idx = res, None
    if nd == 1:
        y = ops.squeeze(y, 2)
    if y.dtype != dtype:
        y = _wrap(y.data.astype(dtype))
    if not want_idx:
        return y
    # fv's indices are flat positions in each (padded) plane; ONNX's are flat over the whole
    # unpadded tensor, row-major (storage_order 0) or column-major in the plane (1)
    i = idx.data
    if nd == 1:
        i = i[:, :, 0]
    rows, cols = i // plane[1] - offset[0], i % plane[1] - offset[1]
    n_, c_ = y.shape[:2]
    h, w = (1, in_sizes[0]) if nd == 1 else tuple(in_sizes)
    base = (xp.arange(n_ * c_, dtype=xp.int64) * (h * w)).reshape((n_, c_) + (1,) * nd)
    flat = cols * h + rows if node.attr("storage_order", 0) else rows * w + cols
    return y, _wrap((base + flat).astype(xp.int64))


def MaxPool(node, x):
    return _pool(node, x, "max")


def AveragePool(node, x):
    return _pool(node, x, "avg")


def GlobalAveragePool(node, x):
    return ops.mean(x, dim=tuple(range(2, x.ndim)), keepdim=True)


def GlobalMaxPool(node, x):
    return ops.amax(x, dim=tuple(range(2, x.ndim)), keepdim=True)


def MaxUnpool(node, x, indices, output_shape=None):
    """MaxUnpool (9, 11, 22), 2-D: every value of X (N, C, H, W) goes to the position its index
    in I names, zeros elsewhere. The indices are ONNX's (MaxPool's Indices): flat over the whole
    unpooled tensor of the inferred shape (N, C, OH, OW), OH = (H - 1) stride + kernel -
    pad_begin - pad_end. ``output_shape`` (N, C, OH', OW'), when given, pads that result with
    zeros at the end of each axis, as ONNX's reference implementation does (onnxruntime instead
    reads the indices as flat over ``output_shape``: the two agree where it is the inferred
    shape, which is how foveanet exports). Differentiable in X."""
    if x.ndim != 4:
        raise ValueError(f"only 2-D unpooling is supported: X must be (N, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    if not _is_float(x):
        raise TypeError(f"X must be a floating-point tensor, got {x.dtype}")
    if tuple(indices.shape) != tuple(x.shape) or not xp.issubdtype(indices.dtype, xp.integer):
        raise ValueError(f"the indices I (shape {tuple(indices.shape)}, {indices.dtype}) must be "
                         f"integers of X's shape {tuple(x.shape)}")
    kernel = node.attr("kernel_shape")
    if kernel is None or len(kernel) != 2:
        raise ValueError(f"kernel_shape {kernel} should have 2 entries")
    strides = _spatial_attr(node, "strides", 2, 1)
    pb, pe = _explicit_pads(node, 2)
    n, c, h, w = x.shape
    inferred = [(size - 1) * s + int(k) - b - e
                for size, s, k, b, e in zip((h, w), strides, kernel, pb, pe)]
    if min(inferred) < 1:
        raise ValueError(f"the unpooled size {inferred} of X {tuple(x.shape)} (kernel_shape "
                         f"{list(kernel)}, strides {strides}, pads {pb + pe}) is not positive")
    target = [n, c] + inferred
    if output_shape is not None:
        target = _ints(output_shape)
        if len(target) != 4 or target[:2] != [n, c] or \
                any(t < i for t, i in zip(target[2:], inferred)):
            raise ValueError(f"output_shape {target} must be (N, C, H, W) = ({n}, {c}, ...) and "
                             f"at least the inferred unpooled size {inferred}")
    _check_alloc(node, target, x.dtype)
    plane = inferred[0] * inferred[1]
    idx = indices.data.astype(xp.int64)
    local = idx - (xp.arange(n * c, dtype=xp.int64) * plane).reshape(n, c, 1, 1)
    if local.size and (local.min() < 0 or local.max() >= plane):
        k = int(xp.argmax((local < 0) | (local >= plane)))
        raise ValueError(f"index {int(idx.reshape(-1)[k])} of I does not fall in its own (n, c) "
                         f"plane of the unpooled tensor {tuple([n, c] + inferred)} (planes of "
                         f"{plane} elements, flat over the whole tensor)")
    y = MaxUnpool2d.apply(x, local, tuple(inferred))
    if target[2:] != inferred:
        y = ops.pad(y, (0, target[3] - inferred[1], 0, target[2] - inferred[0]))
    return y


# -------------------------------------------------------------------------------- normalisation
def BatchNormalization(node, x, scale, bias, mean, var, *_):
    """BatchNormalization (opsets 6/7/9/14/15): epsilon (1e-5), momentum (0.9). In eval mode the
    running statistics normalise. In train mode (``OnnxModule.train()``) the batch statistics do,
    and running mean/var that are the module's buffers are updated as fv's batch norm does
    (running = momentum * running + (1 - momentum) * batch, unbiased variance, PyTorch's rule);
    statistics computed by the graph itself are left alone."""
    eps = float(node.attr("epsilon", 1e-5))
    momentum = float(node.attr("momentum", 0.9))
    training = bool(getattr(node.module, "training", False))
    if training:
        if node.inputs[3] not in node.buffers:
            mean = Tensor._wrap(mean.data.copy())
        if node.inputs[4] not in node.buffers:
            var = Tensor._wrap(var.data.copy())
    return F.batch_norm(x, mean, var, scale, bias, training=training, momentum=1.0 - momentum,
                        eps=eps)


def InstanceNormalization(node, x, scale, bias):
    axes = tuple(range(2, x.ndim))
    eps = float(node.attr("epsilon", 1e-5))
    m = ops.mean(x, dim=axes, keepdim=True)
    v = ops.var(x, dim=axes, keepdim=True, correction=0)
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    return (x - m) / ops.sqrt(v + eps) * ops.reshape(scale, shape) + ops.reshape(bias, shape)


def LayerNormalization(node, x, scale, bias=None):
    """LayerNormalization (opset 17): standardise over the axes ``axis`` (default -1) to the last
    with their mean and biased variance, epsilon (1e-5), then Y = xhat * Scale + B (broadcast);
    ``stash_type`` 1 (the default) computes the statistics of a half-precision input in float32.
    Outputs Y, and the optional Mean and InvStdDev (shape X.shape[:axis] + 1s, in the statistics'
    type). Only Y wanted and Scale/B of the normalised shape (or broadcasting to it): fv's fused
    layer_norm; else the same in parts."""
    axis = _axis(node.attr("axis", -1), x.ndim)
    eps = float(node.attr("epsilon", 1e-5))
    shape = tuple(x.shape[axis:])
    dtype = x.dtype
    work = x
    if node.attr("stash_type", 1) == 1 and dtype.itemsize < 4:
        work = ops.cast(x, xp.float32)
    params = [None if t is None else t if t.dtype == work.dtype else ops.cast(t, work.dtype)
              for t in (scale, bias)]
    stats = any(node.outputs[1:])

    def fits(t):  # broadcasts to the normalised shape without growing it
        return t is None or (t.ndim <= len(shape) and
                             xp.broadcast_shapes(tuple(t.shape), shape) == shape)
    if not stats and shape and all(fits(t) for t in params):
        w, b = [None if t is None else t if tuple(t.shape) == shape else ops.expand(t, shape)
                for t in params]
        y = F.layer_norm(work, shape, w, b, eps)
        return y if y.dtype == dtype else ops.cast(y, dtype)
    axes = tuple(range(axis, x.ndim))
    mean = ops.mean(work, dim=axes, keepdim=True)
    d = work - mean
    inv_std = 1.0 / ops.sqrt(ops.mean(d * d, dim=axes, keepdim=True) + eps)
    y = d * inv_std * params[0]
    if params[1] is not None:
        y = y + params[1]
    return (y if y.dtype == dtype else ops.cast(y, dtype)), mean, inv_std


# -------------------------------------------------------------------------------------- recurrent
# ONNX's gate order -> the engine's (PyTorch's): the engine's gate block k is ONNX's block
# _FROM_ONNX[op][k] (LSTM i, o, f, c -> i, f, g, o; GRU z, r, h -> r, z, n).
_FROM_ONNX = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}
_RNN_ACTIVATIONS = {"LSTM": (("sigmoid", "tanh", "tanh"),), "GRU": (("sigmoid", "tanh"),),
                    "RNN": (("tanh",), ("relu",))}  # the first: ONNX's default
_DIRECTIONS = ("forward", "reverse", "bidirectional")


def _directions(node) -> int:
    return 2 if node.attr("direction", "forward") == "bidirectional" else 1


def _activations(node) -> list:
    """Each direction's activation names (lower case); a bidirectional node given one
    direction's list uses it for both."""
    op, dirs = node.op_type, _directions(node)
    acts = node.attr("activations")
    per = len(_RNN_ACTIVATIONS[op][0])
    if acts is None:
        return [_RNN_ACTIVATIONS[op][0]] * dirs
    acts = [str(a).lower() for a in acts]
    if len(acts) == per and dirs == 2:
        acts = acts * 2
    return [tuple(acts[d * per:(d + 1) * per]) for d in range(dirs)]


def _check_recurrent(node):
    """RNN / GRU / LSTM: the settings foveanet's recurrent primitive runs. The default
    activations only (and Relu for RNN); no cell clipping, no coupled input-forget gate, no
    peepholes, no activation parameters."""
    op = node.op_type
    direction = node.attr("direction", "forward")
    if direction not in _DIRECTIONS:
        return f"direction={direction!r}: must be one of {', '.join(_DIRECTIONS)}"
    hidden = node.attr("hidden_size")
    if hidden is not None and hidden < 1:
        return f"hidden_size={hidden}: must be at least 1"
    if node.attr("clip") is not None:
        return f"clip={node.attr('clip')} (cell clipping) is not supported"
    if op == "LSTM" and node.attr("input_forget", 0):
        return "input_forget=1 (coupled input and forget gates) is not supported"
    if op == "LSTM" and len(node.inputs) > 7 and node.inputs[7]:
        return "peepholes (input P) are not supported"
    for key in ("activation_alpha", "activation_beta"):
        if node.attr(key) is not None:
            return f"{key}={list(node.attr(key))} is not supported (activations take no parameters)"
    acts = node.attr("activations")
    if acts is not None:
        per, dirs = len(_RNN_ACTIVATIONS[op][0]), _directions(node)
        if len(acts) not in (per, per * dirs):
            return (f"activations={list(acts)}: {op} takes {per} per direction ({per * dirs} "
                    f"for this node)")
        allowed = " or ".join(str(list(a)) for a in _RNN_ACTIVATIONS[op])
        for got in _activations(node):
            if got not in _RNN_ACTIVATIONS[op]:
                return (f"activations={list(acts)} are not supported ({op} runs {allowed}, "
                        "case-insensitive)")
    return None


def _gate_rows(op, hidden):
    """Row indices that take an ONNX (G H, ...) weight to the engine's gate order."""
    return xp.concatenate([xp.arange(hidden, dtype=xp.int64) + k * hidden for k in _FROM_ONNX[op]])


def _gru_reset_before(x, w, r, b_ih, b_hh, h, lens, reverse):
    """ONNX's default GRU (linear_before_reset=0), which resets the state before the recurrent
    product: n = tanh(W_n x + Wb_n + R_n (r * h) + Rb_n) (PyTorch's GRU, the engine's primitive,
    puts r after it: r * (R_n h + Rb_n)). A loop of fv ops, one step at a time, so it trains too;
    ``w``, ``r``, ``b_*`` are in the engine's gate order (r, z, n). x (T, B, in) -> Y (T, B, H)
    and the final h."""
    steps, batch = x.shape[0], x.shape[1]
    hid = r.shape[1]
    gx = ops.reshape(F.linear(ops.reshape(x, (steps * batch, x.shape[2])), w, b_ih),
                     (steps, batch, 3 * hid))
    r_rz, r_n = r[:2 * hid], r[2 * hid:]
    b_rz, b_n = (None, None) if b_hh is None else (b_hh[:2 * hid], b_hh[2 * hid:])
    h = h if isinstance(h, Tensor) else _wrap(h)
    zero = _zero(x)
    ys = [None] * steps
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        g = gx[t]
        rz = F.sigmoid(g[:, :2 * hid] + F.linear(h, r_rz, b_rz))
        reset, z = rz[:, :hid], rz[:, hid:]
        n = F.tanh(g[:, 2 * hid:] + F.linear(reset * h, r_n, b_n))
        new = n + z * (h - n)  # (1 - z) n + z h
        if lens is None:
            h = ys[t] = new
        else:  # a sequence past its end keeps its state and outputs zeros
            live = (t < lens)[:, None]
            h, ys[t] = ops.where(live, new, h), ops.where(live, new, zero)
    return ops.stack(ys, 0), h


def _recurrent(node, x, w, r, b=None, seq_lens=None, h0=None, c0=None, *_):
    """RNN / GRU / LSTM (every opset; ``layout`` from 14): X (T, B, in) (layout 1:
    (B, T, in)), W (D, G H, in), R (D, G H, H), B (D, 2 G H) (Wb then Rb), sequence_lens (B,),
    initial_h / initial_c (D, B, H) (layout 1: (B, D, H)); direction forward, reverse or
    bidirectional. Outputs Y (T, D, B, H) (layout 1: (B, T, D, H)), Y_h, and Y_c for the LSTM;
    past a sequence's length Y is 0 and the state stays its last.

    Each direction is the engine's recurrent primitive (``ops.rnn.Recurrence``) with the weights
    taken to its gate order (ONNX's LSTM i, o, f, c and GRU z, r, h become PyTorch's i, f, g, o
    and r, z, n); sequences of different lengths run packed, sorted longest first, as
    ``nn.utils.rnn`` packs them. A GRU with linear_before_reset=0 (ONNX's default, not PyTorch's)
    runs :func:`_gru_reset_before`. Everything is fv ops, so the weights train."""
    op = node.op_type
    lstm = op == "LSTM"
    layout = int(node.attr("layout", 0)) if node.opset >= 14 else 0
    if x.ndim != 3:
        want = "(batch, seq, input)" if layout else "(seq, batch, input)"
        raise ValueError(f"X must be 3-D {want}, got shape {tuple(x.shape)}")
    if layout:
        x = ops.transpose(x, 0, 1)
        h0 = None if h0 is None else ops.transpose(h0, 0, 1)
        c0 = None if c0 is None else ops.transpose(c0, 0, 1)
    steps, batch, size = x.shape
    dirs, gates = _directions(node), {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    if r.ndim != 3:
        raise ValueError(f"R must be 3-D (directions, {gates} * hidden, hidden), got shape "
                         f"{tuple(r.shape)}")
    hid = r.shape[2]
    declared = node.attr("hidden_size")
    if declared is not None and declared != hid:
        raise ValueError(f"hidden_size={declared} does not match R of shape {tuple(r.shape)}")
    expect = {"W": (w, (dirs, gates * hid, size)), "R": (r, (dirs, gates * hid, hid)),
              "B": (b, (dirs, 2 * gates * hid)), "initial_h": (h0, (dirs, batch, hid)),
              "initial_c": (c0, (dirs, batch, hid))}
    for what, (t, shape) in expect.items():
        if t is not None and tuple(t.shape) != shape:
            note = " (after layout 1's transpose)" if layout and what.startswith("initial") else ""
            raise ValueError(f"{what} has shape {tuple(t.shape)}{note}; for X of shape "
                             f"{tuple(x.shape)} (time first), {dirs} direction(s) and hidden "
                             f"size {hid} it should be {shape}")
        if t is not None and t.dtype != x.dtype:
            raise ValueError(f"{what} is {t.dtype} but X is {x.dtype}")
    # the gates of every step (the largest array the primitive makes), sized by X and R alone
    _check_alloc(node, (steps, batch, dirs * gates * hid), x.dtype)
    lens = None
    if seq_lens is not None:
        lens = xp.asarray(seq_lens.data).astype(xp.int64).reshape(-1)
        if lens.shape != (batch,) or (lens.size and (lens.min() < 1 or lens.max() > steps)):
            raise ValueError(f"sequence_lens {lens.tolist()} must hold one length from 1 to "
                             f"{steps} (the steps of X) per sequence of the batch of {batch}")
        if (lens == steps).all():
            lens = None
    lbr = bool(node.attr("linear_before_reset", 0))
    loop = op == "GRU" and not lbr
    rows = ops.reshape(x, (steps * batch, size))
    sizes = xp.full(steps, batch, dtype=xp.int64)
    order = inv = index = None
    if lens is not None and not loop:  # packed: sorted longest first, step by step
        order = xp.argsort(-lens, kind="stable").astype(xp.int64)
        inv = xp.argsort(order).astype(xp.int64)
        sizes = (lens[order][None, :] > xp.arange(steps)[:, None]).sum(axis=1).astype(xp.int64)
        index = xp.concatenate([t * batch + order[:n] for t, n in enumerate(sizes)])
        rows = ops.rnn.gather_rows(rows, index)
    perm = _gate_rows(op, hid)
    modes = [op.lower()] * dirs
    if op == "RNN":
        modes = ["rnn_relu" if a == ("relu",) else "rnn_tanh" for a in _activations(node)]
    ys, hs, cs = [], [], []
    for d in range(dirs):
        reverse = d == 1 or node.attr("direction", "forward") == "reverse"
        w_d, r_d = w[d][perm], r[d][perm]
        b_ih = b_hh = None
        if b is not None:
            b_ih, b_hh = b[d][perm], b[d][perm + gates * hid]
        h_d = xp.zeros((batch, hid), dtype=x.dtype) if h0 is None else h0[d]
        c_d = None
        if lstm:
            c_d = xp.zeros((batch, hid), dtype=x.dtype) if c0 is None else c0[d]
        if loop:
            y, h = _gru_reset_before(x, w_d, r_d, b_ih, b_hh, h_d, lens, reverse)
            ys.append(y)
            hs.append(h)
            continue
        if order is not None:
            h_d = h_d[order]
            c_d = None if c_d is None else c_d[order]
        res = ops.rnn.Recurrence.apply(rows, w_d, r_d, b_ih, b_hh, h_d, c_d, None, mode=modes[d],
                                       sizes=sizes, reverse=reverse)
        y, h = res[0], res[1]
        c = res[2] if lstm else None
        if order is not None:  # back to the batch's order, zeros past each sequence's end
            y = ops.rnn.scatter_rows(y, index, steps * batch)
            h = h[inv]
            c = None if c is None else c[inv]
        ys.append(ops.reshape(y, (steps, batch, hid)))
        hs.append(h)
        cs.append(c)
    y = ops.stack(ys, 1)
    h = ops.stack(hs, 0)
    c = ops.stack(cs, 0) if lstm else None
    if layout:
        y = ops.permute(y, 2, 0, 1, 3)
        h = ops.transpose(h, 0, 1)
        c = None if c is None else ops.transpose(c, 0, 1)
    return (y, h, c) if lstm else (y, h)


RNN = GRU = LSTM = _recurrent


def LRN(node, x):
    """LRN: the window of channel c is [c - floor((size-1)/2), c + ceil((size-1)/2)]; fv's
    local_response_norm (PyTorch's) puts size // 2 channels before, which differs for an even
    size: then the channel axis is reversed around the call."""
    size = int(node.attr("size"))
    alpha, beta, bias = node.attr("alpha", 1e-4), node.attr("beta", 0.75), node.attr("bias", 1.0)
    if size % 2:
        return F.local_response_norm(x, size, alpha, beta, bias)
    flip = (slice(None), slice(None, None, -1))
    return F.local_response_norm(x[flip], size, alpha, beta, bias)[flip]


def Dropout(node, x, ratio=None, training_mode=None):
    """Dropout (opsets 6/7/10/12/13/22): ratio attribute before 12, then an input (0.5); the
    training_mode input (12+) decides when given, else the module's train/eval mode. The optional
    second output is the boolean keep-mask."""
    p = float(_scalar(ratio)) if ratio is not None else float(node.attr("ratio", 0.5))
    if training_mode is not None:
        train = bool(_scalar(training_mode))
    else:
        train = bool(getattr(node.module, "training", False))
    want_mask = len(node.outputs) > 1 and bool(node.outputs[1])
    if not train or p == 0.0:
        y, keep = x, xp.ones(x.shape, dtype=bool)
    else:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout ratio must be in [0, 1), got {p}")
        keep = numpy_rng(None).random(x.shape) >= p
        y = x * (keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p)))
    return (y, _wrap(keep)) if want_mask else y


# ------------------------------------------------------------------------------------ reductions
def _identity_of(kind):
    def value(dtype):
        if kind == "sum":
            return 0
        if kind == "mean":
            return xp.nan
        if dtype == xp.bool_:
            return kind == "min"
        if xp.issubdtype(dtype, xp.floating):
            return -xp.inf if kind == "max" else xp.inf
        info = xp.iinfo(dtype)
        return info.min if kind == "max" else info.max
    return value


def _reduce(fv_fn, np_fn, axes_input_since, kind):
    """ReduceX: ``axes`` is an attribute before ``axes_input_since`` (13 for ReduceSum, 18 for the
    others), an input after; keepdims = 1; noop_with_empty_axes = 0 (no axes: all axes). Reducing
    an empty axis gives the identity of the operation (0 for a sum, -inf for a max, ...)."""
    empty_value = _identity_of(kind)
    def op(node, x, axes=None):
        if node.opset >= axes_input_since:
            ax = _ints(axes) if axes is not None else []
        else:
            ax = [int(a) for a in node.attr("axes", [])]
        keep = bool(node.attr("keepdims", 1))
        if not ax:
            if node.attr("noop_with_empty_axes", 0):
                return x
            ax = list(range(x.ndim))
        ax = tuple(sorted({_axis(a, x.ndim) for a in ax}))
        if any(x.shape[a] == 0 for a in ax):  # an empty reduction gives the operation's identity
            shape = tuple(1 if i in ax else n for i, n in enumerate(x.shape) if keep or i not in ax)
            return _wrap(xp.full(shape, empty_value(x.dtype), dtype=x.dtype))
        if _is_float(x):
            return fv_fn(x, ax, keep)
        return _wrap(np_fn(x.data, axis=ax, keepdims=keep))
    return op


# ------------------------------------------------------------------------------------------ shape
def Identity(node, x):
    return x


def Flatten(node, x):
    axis = int(node.attr("axis", 1))
    if not -x.ndim <= axis <= x.ndim:
        raise ValueError(f"axis {axis} is out of range for a tensor with {x.ndim} dimensions")
    axis = axis + x.ndim if axis < 0 else axis
    shape = tuple(x.shape)
    return _reshape(x, (math.prod(shape[:axis]), math.prod(shape[axis:])))


def Reshape(node, x, shape=None):
    """Reshape (opsets 5/13/14/19/21): 0 copies the input's dimension (unless allowzero=1), -1 is
    inferred. (Opset < 5 had a shape attribute.)"""
    target = _ints(shape) if shape is not None else [int(s) for s in node.attr("shape", [])]
    if not node.attr("allowzero", 0):
        target = [x.shape[i] if s == 0 and i < x.ndim else s for i, s in enumerate(target)]
    return _reshape(x, target)


def Transpose(node, x):
    perm = node.attr("perm")
    perm = list(range(x.ndim))[::-1] if perm is None else [int(p) for p in perm]
    if sorted(perm) != list(range(x.ndim)):
        raise ValueError(f"perm {perm} is not a permutation of the {x.ndim} axes of the input")
    if not _is_float(x):
        return _wrap(x.data.transpose(perm))
    return ops.permute(x, tuple(perm)) if x.ndim > 1 else x


def Concat(node, *xs):
    xs = [x for x in xs if x is not None]
    axis = _axis(node.attr("axis", 0), xs[0].ndim)
    if not any(_is_float(x) for x in xs):
        return _wrap(xp.concatenate([x.data for x in xs], axis=axis))
    return ops.cat(xs, axis)


def Split(node, x, split=None, *_):
    """Split (opsets 2/11/13/18): ``split`` sizes are an attribute before 13, an optional input
    from 13; without them, equal parts (18: ``num_outputs`` parts of ceil(n / num_outputs), the last
    smaller)."""
    axis = _axis(node.attr("axis", 0), x.ndim)
    n = x.shape[axis]
    if node.opset >= 13:
        sizes = _ints(split) if split is not None else None
    else:
        sizes = node.attr("split")
        sizes = [int(s) for s in sizes] if sizes is not None else None
    if sizes is None:
        parts = len(node.outputs)  # at least 1 (the schema), num_outputs too (_check_split)
        if node.opset >= 18 and node.attr("num_outputs") is not None:
            size = -(-n // parts)
            sizes = [min(size, max(n - i * size, 0)) for i in range(parts)]
        else:
            if n % parts:
                raise ValueError(f"cannot split an axis of size {n} into {parts} equal parts")
            sizes = [n // parts] * parts
    if any(s < 0 for s in sizes) or len(sizes) != len(node.outputs):
        raise ValueError(f"split sizes {sizes}: one size of at least 0 per output "
                         f"({len(node.outputs)} outputs)")
    if sum(sizes) != n:
        raise ValueError(f"split sizes {sizes} do not add up to {n}, the size of axis {axis}")
    outs, start = [], 0
    for s in sizes:
        idx = (slice(None),) * axis + (slice(start, start + s),)
        outs.append(x[idx] if _is_float(x) else _wrap(x.data[idx]))
        start += s
    return tuple(outs)


def _axes_arg(node, axes, since=13):
    if node.opset >= since:
        return _ints(axes) if axes is not None else None
    v = node.attr("axes")
    return [int(a) for a in v] if v is not None else None


def Squeeze(node, x, axes=None):
    ax = _axes_arg(node, axes)
    if ax is None:
        return _reshape(x, [n for n in x.shape if n != 1])
    ax = {_axis(a, x.ndim) for a in ax}
    for a in ax:
        if x.shape[a] != 1:
            raise ValueError(f"cannot squeeze axis {a} of size {x.shape[a]} (input shape "
                             f"{tuple(x.shape)})")
    return _reshape(x, [n for i, n in enumerate(x.shape) if i not in ax])


def Unsqueeze(node, x, axes=None):
    ax = _axes_arg(node, axes)
    if not ax:
        raise ValueError("Unsqueeze needs axes")
    out_rank = x.ndim + len(ax)
    ax = sorted(_axis(a, out_rank) for a in ax)
    if len(set(ax)) != len(ax):
        raise ValueError(f"axes {ax} repeat an axis")
    shape = list(x.shape)
    for a in ax:
        shape.insert(a, 1)
    return _reshape(x, shape)


def Shape(node, x):
    start, end = node.attr("start", 0), node.attr("end")
    return _wrap(xp.asarray(x.shape, dtype=xp.int64)[start:end])


def Size(node, x):
    return _wrap(xp.asarray(math.prod(x.shape), dtype=xp.int64))


def Gather(node, data, indices):
    axis = _axis(node.attr("axis", 0), data.ndim)
    n = data.shape[axis]
    idx = indices.data.astype(xp.int64, copy=False)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"index {int(idx.min() if idx.min() < -n else idx.max())} is out of range "
                         f"for axis {axis} of size {n}")
    idx = xp.where(idx < 0, idx + n, idx)
    key = (slice(None),) * axis + (idx,)
    if not _is_float(data):
        return _wrap(data.data[key])
    return data[key]


def Slice(node, x, starts=None, ends=None, axes=None, steps=None):
    """Slice: attributes before opset 10, inputs from 10 (axes and steps optional). Starts and ends
    are clamped as the specification says, [0, dim] for a positive step, [-1, dim - 1] for a
    negative one (where -1 means "before the first element")."""
    if node.opset >= 10:
        st, en = _ints(starts), _ints(ends)
        ax = _ints(axes) if axes is not None else list(range(len(st)))
        sp = _ints(steps) if steps is not None else [1] * len(st)
    else:
        st, en = [int(v) for v in node.attr("starts")], [int(v) for v in node.attr("ends")]
        ax = [int(v) for v in node.attr("axes", range(len(st)))]
        sp = [1] * len(st)
    if not len(st) == len(en) == len(ax) == len(sp):
        raise ValueError(f"starts {st}, ends {en}, axes {ax} and steps {sp} should have one entry "
                         "each per sliced axis")
    key = [slice(None)] * x.ndim
    for s, e, a, step in zip(st, en, ax, sp):
        a = _axis(a, x.ndim)
        dim = x.shape[a]
        if step == 0:
            raise ValueError("Slice step cannot be 0")
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        if step > 0:
            s, e = min(max(s, 0), dim), min(max(e, 0), dim)
            key[a] = slice(s, e, step)
        else:
            s, e = min(max(s, 0), dim - 1), min(max(e, -1), dim - 1)
            key[a] = slice(s, None if e < 0 else e, step)
    key = tuple(key)
    return x[key] if _is_float(x) else _wrap(x.data[key])


def Expand(node, x, shape):
    target = xp.broadcast_shapes(tuple(x.shape), tuple(_ints(shape)))
    _check_alloc(node, target, x.dtype)
    if tuple(target) == tuple(x.shape):
        return x
    if not _is_float(x):
        return _wrap(xp.broadcast_to(x.data, target).copy())
    return ops.expand(x, target)


def Tile(node, x, repeats):
    reps = _ints(repeats)
    if len(reps) != x.ndim:
        raise ValueError(f"repeats {reps} should have one entry per input dimension ({x.ndim})")
    if any(r < 0 for r in reps):
        raise ValueError(f"repeats {reps} cannot be negative")
    shape = [n * r for n, r in zip(x.shape, reps)]
    _check_alloc(node, shape, x.dtype)
    if not _is_float(x):
        return _wrap(xp.tile(x.data, reps))
    if 0 in shape:  # nothing to repeat (however large the repeats): an empty result, no gradient
        return _wrap(xp.zeros(shape, dtype=x.dtype))
    for axis, r in enumerate(reps):
        if r != 1:
            x = ops.cat([x] * r, axis) if r > 0 else x[(slice(None),) * axis + (slice(0, 0),)]
    return x


def Pad(node, x, pads=None, constant_value=None, axes=None):
    """Pad (opsets 2/11/13/18/19/21): pads (begin..., end...) and value are attributes before 11,
    inputs from 11; axes input from 18; mode constant, reflect, edge, wrap (19). Negative pads
    crop."""
    if node.opset >= 11:
        p = _ints(pads)
        value = _scalar(constant_value) if constant_value is not None else 0
    else:
        p = [int(v) for v in node.attr("pads", node.attr("paddings", []))]
        value = node.attr("value", 0.0)
    ax = [_axis(a, x.ndim) for a in _ints(axes)] if axes is not None else list(range(x.ndim))
    if len(p) != 2 * len(ax):
        raise ValueError(f"pads {p} should have {2 * len(ax)} entries (begin and end per axis)")
    mode = node.attr("mode", "constant")
    modes = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}
    if mode not in modes:
        raise ValueError(f"unknown pad mode {mode!r} (constant, reflect, edge or wrap)")
    begin, end = [0] * x.ndim, [0] * x.ndim
    for i, a in enumerate(ax):
        begin[a], end[a] = p[i], p[i + len(ax)]
    if any(v < 0 for v in begin + end):  # negative padding removes elements
        for a, (b, e) in enumerate(zip(begin, end)):
            if max(-b, 0) + max(-e, 0) > x.shape[a]:  # then padding again has no one meaning
                raise ValueError(f"pads {p} remove {max(-b, 0) + max(-e, 0)} elements of axis {a}, "
                                 f"which has {x.shape[a]}")
        key = tuple(slice(max(-b, 0), x.shape[a] - max(-e, 0))
                    for a, (b, e) in enumerate(zip(begin, end)))
        x = x[key] if _is_float(x) else _wrap(x.data[key])
        begin, end = [max(b, 0) for b in begin], [max(e, 0) for e in end]
    if not any(begin + end):
        return x
    _check_alloc(node, [n + b + e for n, b, e in zip(x.shape, begin, end)], x.dtype)
    widths = []
    for a in reversed(range(x.ndim)):
        widths += [begin[a], end[a]]
    if mode == "constant":
        value = x.dtype.type(value)
    return ops.pad(x, widths, mode=modes[mode], value=value)


def Clip(node, x, lo=None, hi=None):
    """Clip: min/max attributes before opset 11 (no bound by default), optional inputs from 11."""
    if node.opset >= 11:
        lo = None if lo is None else _scalar(lo)
        hi = None if hi is None else _scalar(hi)
    else:
        lo, hi = node.attr("min"), node.attr("max")
    if lo is None and hi is None:
        return x
    if not _is_float(x):
        return _wrap(xp.clip(x.data, lo, hi).astype(x.dtype))
    return ops.clamp(x, lo, hi)


def Cast(node, x):
    return _cast(x, value_dtype(node.attr("to")))


def value_dtype(code):
    """The dtype of values of an ONNX data type: foveanet's own (:func:`onnx_dtype`), or the
    ml_dtypes type onnx maps the exotic ones to (bfloat16, float8, 4-bit, ...), or object for
    strings: they reach a graph as its inputs or by Cast, never as trainable data. ValueError for
    codes onnx does not know."""
    try:
        return onnx_dtype(code)
    except ValueError:
        import onnx  # noqa: PLC0415 - only the rare exotic types need it
        try:
            return xp.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(code)))
        except Exception:  # noqa: BLE001 - unknown code
            raise ValueError(f"ONNX data type {code} "
                             f"({_ONNX_TYPE_NAMES.get(int(code), 'unknown')}) is not supported") \
                from None


# --------------------------------------------------------------------------- int8 quantisation
def _per_axis(node, x, v):
    """A scale or zero point shaped to broadcast against ``x``: a scalar (or a single value) as
    it is; a 1-D one along the node's ``axis`` (opset 13+, default 1); with ``block_size`` B
    (opset 21), one of x's rank whose ``axis`` has ceil(size / B) entries, each covering B
    consecutive positions."""
    a = xp.asarray(v.data)
    block = int(node.attr("block_size", 0) or 0)
    if not block and a.size == 1:
        return a.reshape(())
    axis = _axis(node.attr("axis", 1), x.ndim)
    if block:
        want = tuple(-(-d // block) if i == axis else d for i, d in enumerate(x.shape))
        if a.shape != want:
            raise ValueError(f"a blocked scale or zero point of shape {a.shape} for input shape "
                             f"{tuple(x.shape)}, axis {axis} and block_size {block}: expected "
                             f"{want}")
        return xp.take(xp.repeat(a, block, axis=axis), range(x.shape[axis]), axis=axis)
    if a.ndim != 1:
        raise ValueError(f"a scale or zero point must be a scalar or 1-D, got shape {a.shape}")
    if a.shape[0] != x.shape[axis]:
        raise ValueError(f"a per-axis scale or zero point of {a.shape[0]} values against axis "
                         f"{axis} of size {x.shape[axis]} (input shape {tuple(x.shape)})")
    shape = [1] * x.ndim
    shape[axis] = a.shape[0]
    return a.reshape(shape)


def _int_range(dtype):
    """(min, max) of an integer type, NumPy's or ml_dtypes' 2- and 4-bit ones; None otherwise."""
    try:
        info = xp.iinfo(dtype)
    except ValueError:
        try:
            import ml_dtypes  # noqa: PLC0415 - only the 2- and 4-bit types need it
            info = ml_dtypes.iinfo(dtype)
        except (ImportError, ValueError, TypeError):
            return None
    return int(info.min), int(info.max)


def QuantizeLinear(node, x, scale, zero_point=None):
    """QuantizeLinear-10/13/19/21: y = saturate(round(x / scale) + zero_point), rounding half to
    even, in the zero point's integer type (uint8 without one; opset 21's ``output_dtype``):
    8- and 16-bit, and the 4- and 2-bit types; a 1-D scale runs along ``axis``, a blocked one
    (``block_size``) along blocks of it. The float8/float4 targets are not supported. Integer
    output: no gradient."""
    if not _is_float(x):
        raise TypeError(f"QuantizeLinear quantises floating-point data, got {x.dtype}")
    if zero_point is not None:
        dtype = xp.dtype(zero_point.dtype)
    else:
        code = node.attr("output_dtype", 0)
        dtype = value_dtype(code) if code else xp.dtype(xp.uint8)
    bounds = _int_range(dtype)
    if bounds is None:
        raise TypeError(f"QuantizeLinear to {dtype} is not supported (integer types only)")
    s = _per_axis(node, x, scale).astype(x.dtype, copy=False)
    zp = 0 if zero_point is None else _per_axis(node, x, zero_point).astype(xp.float64)
    q = xp.rint(x.data / s) + zp
    return _wrap(xp.clip(q, *bounds).astype(xp.int64).astype(dtype))


def DequantizeLinear(node, x, scale, zero_point=None):
    """DequantizeLinear-10/13/19/21: y = (x - zero_point) * scale in the scale's floating-point
    type (opset 21's ``output_dtype`` where given); a 1-D scale and zero point run along
    ``axis``, blocked ones along blocks of it. Integer inputs only (not float8/float4). The
    result carries no gradient (its source is integer data: an imported quantised model runs,
    it does not train its weights)."""
    if _int_range(x.dtype) is None:
        raise TypeError(f"DequantizeLinear from {x.dtype} is not supported (integer types only)")
    s = _per_axis(node, x, scale)
    v = xp.asarray(x.data).astype(xp.int64)
    if zero_point is not None:
        v = v - _per_axis(node, x, zero_point).astype(xp.int64)
    out = (v.astype(s.dtype) * s).astype(s.dtype, copy=False)
    code = node.attr("output_dtype", 0)
    return _wrap(out.astype(value_dtype(code)) if code else out)


def CastLike(node, x, like):
    return _cast(x, like.dtype)


def _cast(x, dtype):
    if x.dtype == dtype:
        return x
    if _is_float(x) and xp.issubdtype(dtype, xp.floating):
        return ops.cast(x, dtype)
    with xp.errstate(invalid="ignore", over="ignore"):
        return _wrap(x.data.astype(dtype))


def Constant(node):
    # evaluated once at load time by the importer (see onnx_import.OnnxModule): never run
    raise AssertionError("Constant nodes are folded when the model is loaded")


def ConstantOfShape(node, shape):
    value = node.attr("value")
    value = xp.zeros(1, dtype=xp.float32) if value is None else value
    dims = _ints(shape)
    _check_alloc(node, dims, value.dtype)
    return _wrap(xp.full(dims, value.reshape(-1)[0], dtype=value.dtype))


def Range(node, start, limit, delta):
    s, l_, d = _scalar(start), _scalar(limit), _scalar(delta)
    if not all(math.isfinite(v) for v in (s, l_, d)):
        raise ValueError(f"Range start {s}, limit {l_} and delta {d} must be finite")
    if d == 0:
        raise ValueError("Range delta cannot be 0")
    n = max(math.ceil((l_ - s) / d), 0)
    _check_alloc(node, [n], start.dtype)
    return _wrap((s + xp.arange(n) * d).astype(start.dtype))


# --------------------------------------------------------------------------------------- resizing
_COORD_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                "tf_half_pixel_for_nn", "half_pixel_symmetric")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _nearest_map(in_size, out_size, scale, coord, nearest):
    """ONNX Resize's source index for each output position along one axis: the output coordinate
    is mapped back by ``coordinate_transformation_mode``, rounded by ``nearest_mode``, clamped.
    As in the specification (and its reference implementation), the resized length in these
    formulas is ``scale * in_size``, fractional when a scale does not divide evenly."""
    if out_size == 0:  # sizes of 0 (a scale of 0): nothing to map, and the formulas divide by it
        return xp.zeros(0, dtype=xp.int64)
    y = xp.arange(out_size, dtype=xp.float64)
    length = scale * in_size
    if coord == "align_corners":
        x = xp.zeros(out_size) if length == 1 else y * (in_size - 1) / (length - 1)
    elif coord == "asymmetric":
        x = y / scale
    elif coord == "pytorch_half_pixel":
        x = xp.full(out_size, -0.5) if length == 1 else (y + 0.5) / scale - 0.5
    elif coord == "tf_half_pixel_for_nn":
        x = (y + 0.5) / scale
    elif coord == "half_pixel_symmetric":
        adjustment = out_size / (scale * in_size)
        x = in_size / 2 * (1 - adjustment) + (y + 0.5) / scale - 0.5
    else:  # half_pixel
        x = (y + 0.5) / scale - 0.5
    frac = x - xp.floor(x)
    if nearest == "floor":
        idx = xp.floor(x)
    elif nearest == "ceil":
        idx = xp.ceil(x)
    elif nearest == "round_prefer_ceil":
        idx = xp.where(frac >= 0.5, xp.ceil(x), xp.floor(x))
    else:  # round_prefer_floor
        idx = xp.where(frac > 0.5, xp.ceil(x), xp.floor(x))
    return xp.clip(idx, 0, in_size - 1).astype(xp.int64)


def _check_scales(scales):
    if any(not 0.0 < s < math.inf for s in scales):  # nan fails the comparison too
        raise ValueError(f"scales={scales}: every scale must be positive and finite")


def _resize_nearest(node, x, scales, sizes, coord, nearest, axes=None):
    rank = x.ndim
    axes = list(range(rank)) if axes is None else [_axis(a, rank) for a in axes]
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes {axes} repeat an axis")
    if sizes is not None:
        if len(sizes) != len(axes):
            raise ValueError(f"sizes {sizes} should have {len(axes)} entries")
        if any(x.shape[a] == 0 for a in axes):
            raise ValueError(f"cannot resize the empty input of shape {tuple(x.shape)} to sizes")
        policy = node.attr("keep_aspect_ratio_policy", "stretch")
        ratios = [s / x.shape[a] for s, a in zip(sizes, axes)]
        if policy == "stretch":
            scale_of = dict(zip(axes, ratios))
            out_of = dict(zip(axes, sizes))
        elif policy in ("not_larger", "not_smaller"):
            r = min(ratios) if policy == "not_larger" else max(ratios)
            scale_of = {a: r for a in axes}
            out_of = {a: int(r * x.shape[a] + 0.5) for a in axes}
        else:
            raise ValueError(f"unknown keep_aspect_ratio_policy {policy!r}")
    else:
        if len(scales) != len(axes):
            raise ValueError(f"scales {scales} should have {len(axes)} entries")
        _check_scales(scales)
        scale_of = dict(zip(axes, scales))
        out_of = {a: int(math.floor(x.shape[a] * s)) for a, s in zip(axes, scales)}
    _check_alloc(node, [out_of.get(a, x.shape[a]) for a in range(rank)], x.dtype)
    maps = {}
    for a in axes:
        n, o, s = x.shape[a], out_of[a], scale_of[a]
        if o == n and s == 1.0:
            continue
        maps[a] = _nearest_map(n, o, s, coord, nearest)
    if not maps:
        return x
    if not _is_float(x):
        return _wrap(resize_nearest(x, maps).data)
    return resize_nearest(x, maps)


def Upsample(node, x, scales=None):
    """Upsample (opsets 7/9, deprecated in 10): nearest only; output = floor(in * scale), source
    index = floor(out / scale) (the asymmetric transform, PyTorch's nearest)."""
    s = [float(v) for v in (xp.asarray(scales.data).reshape(-1) if scales is not None
                            else node.attr("scales"))]
    return _resize_nearest(node, x, s, None, "asymmetric", "floor")


def Resize(node, x, roi=None, scales=None, sizes=None):
    """Resize (opsets 10/11/13/18/19), mode nearest: scales or sizes (11+), axes and
    keep_aspect_ratio_policy (18+), coordinate_transformation_mode (half_pixel by default from 11;
    opset 10 behaves as asymmetric + floor) and nearest_mode (round_prefer_floor)."""
    if node.opset < 11:
        coord, nearest = "asymmetric", "floor"
        scales, sizes = roi, None  # opset 10: (X, scales)
    else:
        coord = node.attr("coordinate_transformation_mode", "half_pixel")
        nearest = node.attr("nearest_mode", "round_prefer_floor")
    sc = [float(v) for v in xp.asarray(scales.data).reshape(-1)] if scales is not None else []
    sz = _ints(sizes) if sizes is not None else []
    axes = node.attr("axes")
    if sz:
        return _resize_nearest(node, x, None, sz, coord, nearest, axes)
    if not sc:
        raise ValueError("Resize needs scales or sizes")
    return _resize_nearest(node, x, sc, None, coord, nearest, axes)


# ------------------------------------------------------------------------------ the registries
_amax = lambda x, ax, keep: ops.amax(x, ax, keep)  # noqa: E731
_amin = lambda x, ax, keep: ops.amin(x, ax, keep)  # noqa: E731

OPS = {
    "Add": _binary(ops.add, xp.add), "Sub": _binary(ops.sub, xp.subtract),
    "Mul": _binary(ops.mul, xp.multiply), "Div": _binary(ops.div, _int_div), "Pow": Pow,
    "Sum": _variadic(ops.add, xp.add), "Max": _variadic(ops.maximum, xp.maximum),
    "Min": _variadic(ops.minimum, xp.minimum), "Mean": Mean,
    "Neg": Neg, "Abs": Abs, "Reciprocal": Reciprocal,
    "Exp": _unary_float(ops.exp), "Log": _unary_float(ops.log), "Sqrt": _unary_float(ops.sqrt),
    "Floor": _no_grad_unary(xp.floor), "Ceil": _no_grad_unary(xp.ceil),
    "Round": _no_grad_unary(xp.round), "Sign": _no_grad_unary(xp.sign),
    "Relu": Relu, "LeakyRelu": LeakyRelu, "PRelu": PRelu, "Elu": Elu, "Selu": Selu,
    "Sigmoid": Sigmoid, "Tanh": Tanh, "Softmax": Softmax, "LogSoftmax": LogSoftmax,
    "Softplus": Softplus, "Softsign": Softsign, "HardSigmoid": HardSigmoid,
    "HardSwish": HardSwish, "Mish": Mish, "ThresholdedRelu": ThresholdedRelu, "Shrink": Shrink,
    "Equal": _compare(xp.equal), "Less": _compare(xp.less), "Greater": _compare(xp.greater),
    "LessOrEqual": _compare(xp.less_equal), "GreaterOrEqual": _compare(xp.greater_equal),
    "And": _compare(xp.logical_and), "Or": _compare(xp.logical_or),
    "Xor": _compare(xp.logical_xor), "Not": Not, "Where": Where,
    "MatMul": MatMul, "Gemm": Gemm, "Conv": Conv, "ConvTranspose": ConvTranspose,
    "MaxPool": MaxPool, "AveragePool": AveragePool, "GlobalAveragePool": GlobalAveragePool,
    "GlobalMaxPool": GlobalMaxPool, "MaxUnpool": MaxUnpool,
    "BatchNormalization": BatchNormalization,
    "InstanceNormalization": InstanceNormalization, "LRN": LRN, "Dropout": Dropout,
    "ReduceMean": _reduce(ops.mean, xp.mean, 18, "mean"),
    "ReduceSum": _reduce(ops.sum, xp.sum, 13, "sum"),
    "ReduceMax": _reduce(_amax, xp.max, 18, "max"), "ReduceMin": _reduce(_amin, xp.min, 18, "min"),
    "Identity": Identity, "Flatten": Flatten, "Reshape": Reshape, "Transpose": Transpose,
    "Concat": Concat, "Split": Split, "Squeeze": Squeeze, "Unsqueeze": Unsqueeze, "Shape": Shape,
    "Size": Size, "Gather": Gather, "Slice": Slice, "Expand": Expand, "Tile": Tile, "Pad": Pad,
    "Clip": Clip, "Cast": Cast, "CastLike": CastLike, "Constant": Constant,
    "ConstantOfShape": ConstantOfShape, "Range": Range, "Upsample": Upsample, "Resize": Resize,
    "LayerNormalization": LayerNormalization, "RNN": RNN, "GRU": GRU, "LSTM": LSTM,
    "QuantizeLinear": QuantizeLinear, "DequantizeLinear": DequantizeLinear,
}

# Input positions that hold settings rather than data (shapes, axes, scales, bounds, ratios): a
# floating-point initializer used only there is a constant, not a trainable Parameter.
STATIC_INPUTS = {
    "Reshape": {1}, "Expand": {1}, "Tile": {1}, "ConstantOfShape": {0}, "Slice": {1, 2, 3, 4},
    "Squeeze": {1}, "Unsqueeze": {1}, "Split": {1}, "Pad": {1, 2, 3}, "Clip": {1, 2},
    "Resize": {1, 2, 3}, "Upsample": {1}, "Dropout": {1, 2}, "ReduceMean": {1}, "ReduceSum": {1},
    "ReduceMax": {1}, "ReduceMin": {1}, "Gather": {1}, "Range": {0, 1, 2}, "CastLike": {1},
    "Shape": {0}, "Size": {0}, "QuantizeLinear": {1, 2}, "DequantizeLinear": {1, 2},
}
# Input positions holding running statistics: registered as buffers (BatchNorm's mean and var).
BUFFER_INPUTS = {"BatchNormalization": {3, 4}}


# -------------------------------------------------------------------------------- load-time checks
def _check_resize(node):
    mode = node.attr("mode", "nearest")
    if mode != "nearest":
        return (f"mode={mode!r} is not supported (foveanet imports nearest-neighbour resizing "
                "only)")
    if node.op_type == "Resize" and node.opset >= 11:
        coord = node.attr("coordinate_transformation_mode", "half_pixel")
        if coord not in _COORD_MODES:
            return (f"coordinate_transformation_mode={coord!r} is not supported (supported: "
                    f"{', '.join(_COORD_MODES)})")
        nearest = node.attr("nearest_mode", "round_prefer_floor")
        if nearest not in _NEAREST_MODES:
            return (f"nearest_mode={nearest!r} is not supported (supported: "
                    f"{', '.join(_NEAREST_MODES)})")
        if node.attr("antialias", 0):
            return "antialias=1 is not supported"
    scales = node.attr("scales")  # Upsample-7's attribute (later opsets: an input)
    if scales is not None:
        try:
            _check_scales([float(v) for v in scales])
        except ValueError as e:
            return f"attribute {e}"
    return None


_INT32_MAX = 2 ** 31 - 1


def _check_range(node, key, lo, hi, what):
    """None, or why attribute ``key`` (a list of ints) has an entry outside [lo, hi]."""
    v = node.attr(key)
    if v is not None and any(not lo <= int(i) <= hi for i in v):
        bound = f"at least {lo}" if hi == math.inf else f"from {lo} to {hi}"
        return f"{key}={list(v)}: {what} must be {bound}"
    return None


def _check_window(node):
    """The settings Conv, ConvTranspose, MaxPool and AveragePool share: kernel sizes, strides and
    dilations of at least 1, pads (and ConvTranspose's output_padding) of at least 0, a group
    count of at least 1, a known auto_pad, and lists of one length (pads: twice it). What only the
    input's shape can refute (a kernel larger than the padded input, a padded size over the memory
    limit) is checked when the node runs. Kernel sizes, strides and dilations above 2**31 - 1 are
    refused too: no real network has them, and once multiplied they overflow the 64-bit index
    arithmetic of the kernels; paddings and output sizes are bounded by the memory limit instead."""
    for key, lo, hi, what in (("kernel_shape", 1, _INT32_MAX, "every kernel size"),
                              ("strides", 1, _INT32_MAX, "every stride"),
                              ("dilations", 1, _INT32_MAX, "every dilation"),
                              ("pads", 0, math.inf, "every pad"),
                              ("output_padding", 0, math.inf, "every output padding"),
                              ("output_shape", 1, math.inf, "every output size")):
        msg = _check_range(node, key, lo, hi, what)
        if msg:
            return msg
    group = node.attr("group", 1)
    if group < 1:
        return f"group={group}: the number of groups must be at least 1"
    try:
        auto = _auto_pad(node)
    except ValueError as e:
        return str(e)
    if auto != "NOTSET" and any(node.attr("pads", [])):
        # the specification forbids the pair; runtimes disagree on which one wins
        return f"auto_pad={auto!r} and pads={list(node.attr('pads'))} cannot be used together"
    lengths = {key: len(node.attr(key)) for key in ("kernel_shape", "strides", "dilations",
                                                    "output_padding") if node.attr(key) is not None}
    if node.attr("pads") is not None:
        if len(node.attr("pads")) % 2:
            return f"pads={list(node.attr('pads'))} should have an even number of entries"
        lengths["pads"] = len(node.attr("pads")) // 2
    if len(set(lengths.values())) > 1:
        return ("the window settings disagree on the number of spatial axes: " +
                ", ".join(f"{key}={list(node.attr(key))}" for key in lengths))
    ks = node.attr("kernel_shape")
    if node.op_type in ("Conv", "ConvTranspose") and ks is not None and len(ks) not in (1, 2):
        return (f"kernel_shape={list(ks)}: only 1-D and 2-D {node.op_type} is supported "
                f"({len(ks)}-D here; pooling works in any dimension)")
    return None


def _check_split(node):
    parts = node.attr("num_outputs")
    if node.opset >= 18 and parts is not None and parts != len(node.outputs):
        return f"num_outputs={parts}, but the node has {len(node.outputs)} outputs"
    split = node.attr("split")
    if node.opset < 13 and split is not None:
        if any(int(v) < 0 for v in split):
            return f"split={list(split)}: the part sizes cannot be negative"
        if len(split) != len(node.outputs):
            return f"split={list(split)} lists {len(split)} parts for {len(node.outputs)} outputs"
    return None


def _check_axes_list(key, until=None):
    """Transpose's perm (a permutation), Squeeze/Unsqueeze's axes (no repeats) while they are
    attributes (before opset ``until``); their range against the input's rank is checked when the
    node runs."""
    def check(node):
        v = node.attr(key)
        if v is None or (until is not None and node.opset >= until):
            return None
        v = [int(i) for i in v]
        if key == "perm" and sorted(v) != list(range(len(v))):
            return f"perm={v} is not a permutation of 0..{len(v) - 1}"
        if len(set(v)) != len(v):
            return f"{key}={v} repeats an axis"
        return None
    return check


def _check_slice(node):
    if node.opset >= 10:
        return None
    lengths = {k: len(node.attr(k)) for k in ("starts", "ends", "axes") if node.attr(k) is not None}
    if len(set(lengths.values())) > 1:
        return "starts, ends and axes should have one entry each per sliced axis: " + \
            ", ".join(f"{k}={list(node.attr(k))}" for k in lengths)
    return None


def _check_constant_of_shape(node):
    value = node.attr("value")
    if value is not None and value.size != 1:
        return f"value is a tensor of shape {list(value.shape)}; it must hold one element"
    return None


def _check_cast(node):
    try:
        value_dtype(node.attr("to"))
    except ValueError as e:
        return f"attribute to={node.attr('to')}: {e}"
    return None


def _check_lrn(node):
    size = node.attr("size")
    if size is not None and size < 1:
        return f"size={size}: the window must hold at least 1 channel"
    return None


def _check_batchnorm(node):
    if node.opset < 9 and node.attr("spatial", 1) != 1:
        return "spatial=0 (per-activation statistics) is not supported"
    if len([o for o in node.outputs[1:] if o]) and node.opset >= 14:
        return ("the running-statistics outputs (training_mode=1) are not supported: export the "
                "model in eval mode; OnnxModule.train() updates the statistics itself")
    return None


def _check_pad(node):
    mode = node.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        return f"mode={mode!r} is not supported"
    return None


# The 0/1 settings the operators read, and who reads them: another value has no meaning, and
# runtimes disagree on it (ONNX Runtime reads keepdims=2 as 0, a Python truth test as 1), so it is
# refused rather than guessed at.
_REDUCTIONS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin")
_FLAGS = {"keepdims": _REDUCTIONS, "noop_with_empty_axes": _REDUCTIONS,
          "ceil_mode": ("MaxPool", "AveragePool"), "count_include_pad": ("AveragePool",),
          "storage_order": ("MaxPool",), "transA": ("Gemm",), "transB": ("Gemm",),
          "allowzero": ("Reshape",), "spatial": ("BatchNormalization",),
          "antialias": ("Resize",), "layout": ("RNN", "GRU", "LSTM"),
          "linear_before_reset": ("GRU",), "input_forget": ("LSTM",),
          "broadcast": ("Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater", "And", "Or",
                        "Xor")}


def _check_flags(node):
    for key, readers in _FLAGS.items():
        v = node.attr(key)
        if v is not None and node.op_type in readers and v not in (0, 1):
            return f"{key}={v}: must be 0 or 1"
    return None


def _check_quantize(node):
    if int(node.attr("block_size", 0) or 0) < 0:
        return f"block_size={node.attr('block_size')} must not be negative"
    return None


def check_node(node):
    """None, or why the node's attributes cannot be run, whatever its inputs: the checks every
    operator shares (0/1 flags), then the operator's own (``CHECKS``)."""
    check = CHECKS.get(node.op_type)
    return _check_flags(node) or (check(node) if check else None)


CHECKS = {"Resize": _check_resize, "Upsample": _check_resize, "Conv": _check_window,
          "ConvTranspose": _check_window, "MaxPool": _check_window, "AveragePool": _check_window,
          "MaxUnpool": _check_window,
          "BatchNormalization": _check_batchnorm, "Pad": _check_pad, "Split": _check_split,
          "Transpose": _check_axes_list("perm"), "Squeeze": _check_axes_list("axes", 13),
          "Unsqueeze": _check_axes_list("axes", 13), "Slice": _check_slice,
          "ConstantOfShape": _check_constant_of_shape, "Cast": _check_cast, "LRN": _check_lrn,
          "RNN": _check_recurrent, "GRU": _check_recurrent, "LSTM": _check_recurrent,
          "QuantizeLinear": _check_quantize, "DequantizeLinear": _check_quantize}
