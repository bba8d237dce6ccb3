"""Strided convolutions on few channels as stride-1 convolutions over the input's phase planes.

Why. AlexNet's first layer (3 -> 64 channels, 11x11, stride 4, 224x224) is the slowest layer of
its inference: its im2col columns are 363 rows of 55 x 55 strided reads per image, 35 M values at
batch 32 (59.9 ms at batch 32 in training's im2col, 78.5 ms in the plan's, 24.1 ms in PyTorch).
Cut into phases, the same layer is a 3x3 stride-1 convolution: with stride s, the input's
s x s phase planes P[c, a, b][u, v] = xpad[c, u*s + a, v*s + b] become C*s*s channels (48 for
AlexNet) and the kernel, zero-padded to a multiple of s, becomes ceil(K/s) x ceil(K/s) taps on
them (3x3), since tap (u*s + a, v*s + b) at output (i, j) reads xpad[(i + u)*s + a, (j + v)*s + b]
= P[a, b][i + u, j + v]. A 3x3 stride-1 convolution on 48 -> 64 channels is Winograd's
(``_winograd.py``), 4x fewer multiply-adds than its direct form. The zero taps cost 19% more
(144 against 121 per channel); the phase split is one copy of the input.

What. The inner stride-1 convolution is Winograd's (``suits`` checks that it takes it), driven
through that algorithm's own forward, backward and inference; the phase split of the input and
of the weight are permutations with zero padding, so their gradients are the inverse
permutations, cropped.

When. ``suits``: a stride of 2 or more, no dilation or groups, at most ``MAX_CHANNELS`` input
channels (an image's: the columns are the problem there), the phase kernel 3x3 and the inner
convolution Winograd's (at least 16 phase channels and output channels). Figures:
benchmarks/RESULTS.md, "Phase planes".
"""
from __future__ import annotations

from types import SimpleNamespace

from ..backend import xp
from . import _winograd, algorithms

MAX_CHANNELS = 4


def _phase_kernel(k: int, s: int) -> int:
    return -(-k // s)


def _inner_geometry(g: algorithms.ConvGeometry):
    o, c, kh, kw = g.weight_shape
    sh, sw = g.stride
    return g._replace(weight_shape=(o, c * sh * sw, _phase_kernel(kh, sh), _phase_kernel(kw, sw)),
                      stride=(1, 1), pads=(0, 0, 0, 0))


def suits(g: algorithms.ConvGeometry) -> bool:
    o, c, kh, kw = g.weight_shape
    sh, sw = g.stride
    return max(sh, sw) >= 2 and tuple(g.dilation) == (1, 1) and g.groups == 1 and \
        c <= MAX_CHANNELS and _phase_kernel(kh, sh) == 3 == _phase_kernel(kw, sw) and \
        _winograd.suits(_inner_geometry(g)) and _winograd._kernels() is not None


def phase_weight(w, stride):
    """(O, C, KH, KW) -> (O, C*sh*sw, ceil(KH/sh), ceil(KW/sw)), channel (c, a, b)."""
    o, c, kh, kw = w.shape
    sh, sw = stride
    qh, qw = _phase_kernel(kh, sh), _phase_kernel(kw, sw)
    wp = xp.zeros((o, c, qh * sh, qw * sw), dtype=w.dtype)
    wp[:, :, :kh, :kw] = w
    return xp.ascontiguousarray(wp.reshape(o, c, qh, sh, qw, sw).transpose(0, 1, 3, 5, 2, 4)
                                .reshape(o, c * sh * sw, qh, qw))


def phase_weight_adjoint(gw2, shape, stride):
    """The gradient of ``phase_weight``: gw2 back to the weight's ``shape``."""
    o, c, kh, kw = shape
    sh, sw = stride
    qh, qw = gw2.shape[2:]
    full = gw2.reshape(o, c, sh, sw, qh, qw).transpose(0, 1, 4, 2, 5, 3).reshape(o, c, qh * sh,
                                                                                 qw * sw)
    return xp.ascontiguousarray(full[:, :, :kh, :kw])


def _extent(out_hw, q, stride):
    """The padded input rows and columns the windows read: (OH + QH - 1) * sh, likewise."""
    return (out_hw[0] + q[0] - 1) * stride[0], (out_hw[1] + q[1] - 1) * stride[1]


def phase_input(x, stride, pads, out_hw, q):
    """x (N, C, H, W), zero-padded by pads (top, bottom, left, right) as far as the windows
    read -> its phase planes (N, C*sh*sw, OH + QH - 1, OW + QW - 1), channel (c, a, b)."""
    n, c, h, w = x.shape
    sh, sw = stride
    hp, wp = _extent(out_hw, q, stride)
    top, left = pads[0], pads[2]
    buf = xp.zeros((n, c, hp, wp), dtype=x.dtype)
    hh, ww = min(h, hp - top), min(w, wp - left)
    buf[:, :, top:top + hh, left:left + ww] = x[:, :, :hh, :ww]
    return xp.ascontiguousarray(buf.reshape(n, c, hp // sh, sh, wp // sw, sw)
                                .transpose(0, 1, 3, 5, 2, 4).reshape(n, c * sh * sw, hp // sh,
                                                                     wp // sw))


def phase_input_adjoint(gx2, shape, stride, pads):
    """The gradient of ``phase_input``: onto an input of ``shape`` (padding and unread pixels
    get none)."""
    n, c, h, w = shape
    sh, sw = stride
    hq, wq = gx2.shape[2:]
    full = gx2.reshape(n, c, sh, sw, hq, wq).transpose(0, 1, 4, 2, 5, 3).reshape(n, c, hq * sh,
                                                                                 wq * sw)
    top, left = pads[0], pads[2]
    hh, ww = min(h, hq * sh - top), min(w, wq * sw - left)
    gx = xp.zeros(shape, dtype=gx2.dtype)
    gx[:, :, :hh, :ww] = full[:, :, top:top + hh, left:left + ww]
    return gx


class _Phases:
    """The ``phases`` algorithm of conv2d (see ``ops.conv.Conv2d`` for the protocol)."""
    adds_bias = False

    @staticmethod
    def forward(fn, x, w, b):
        kernel, stride, _, out_hw = fn.geom
        w2 = phase_weight(w, stride)
        x2 = phase_input(x, stride, fn.pads, out_hw, w2.shape[2:])
        inner = algorithms.get("conv2d", "winograd")  # what ``suits`` checked it takes
        q = tuple(w2.shape[2:])
        # the inner Function's state, as Conv2d.forward would have set it for (x2, w2)
        fn.inner = sub = SimpleNamespace(
            needs_input_grad=fn.needs_input_grad, geom=(q, (1, 1), (1, 1), tuple(out_hw)),
            pads=(0, 0, 0, 0), groups=1, x_shape=x2.shape, xpad_shape=x2.shape, w_shape=w2.shape,
            out_hw=tuple(out_hw), has_bias=False, unbatched=False, algorithm=inner)
        return inner.impl.forward(sub, x2, w2, None)

    @staticmethod
    def backward(fn, g, nx, nw):
        sub = fn.inner
        gx2, gw2 = sub.algorithm.impl.backward(sub, g, nx, nw)
        gx = phase_input_adjoint(gx2, fn.x_shape, fn.geom[1], fn.pads) if nx else None
        gw = phase_weight_adjoint(gw2, fn.w_shape, fn.geom[1]) if nw else None
        fn.inner = None
        return gx, gw

    @staticmethod
    def inference(w4, wm, bias, geom):
        """The plan's step: the weight's phases made once, the inner step chosen once."""
        from .conv import out_size
        stride, pads = tuple(geom.stride), tuple(geom.pads)
        w2 = phase_weight(w4, stride)
        g2 = _inner_geometry(geom)
        inner = algorithms.get("conv2d", "winograd").impl.inference(
            w2, w2.reshape(w2.shape[0], -1), bias, g2)
        takes_epilogue = getattr(inner, "takes_epilogue", False)
        kh, kw = w4.shape[2:]

        def run(x, epilogue=None):
            out_hw = (out_size(x.shape[2] + pads[0] + pads[1], kh, stride[0], 1),
                      out_size(x.shape[3] + pads[2] + pads[3], kw, stride[1], 1))
            x2 = phase_input(x, stride, pads, out_hw, w2.shape[2:])
            if takes_epilogue:
                return inner(x2, epilogue)
            out = inner(x2)
            return epilogue(out) if epilogue is not None else out
        run.takes_epilogue = True
        return run


algorithms.register("conv2d", "phases", suits, _Phases, priority=35,
                    kernels=_winograd.KERNELS,
                    doc="strided convolutions on few channels as stride-1 ones over phase planes")
