"""Channels-last columns for strided convolutions on small maps, and for transposed ones.

Why. A DCGAN's 4x4 stride-2 layers run on 7x7 and 14x14 maps. In NCHW columns
(``conv.im2col``) each row is one (channel, tap) pair over the output positions: 7 or 14 values,
and the compiled copy spends ~15 ns per row whatever its length, so the copies around a layer's
products took longer than the products (32 -> 64 channels, 14x14 -> 7x7, batch 128: 12 ms
forward, of which the product 3-4 ms). PyTorch runs these layers through oneDNN's direct loops in
a blocked layout. Here the columns are laid out channels last instead: (N*OH*OW, KH*KW*C), one
row per output position and each tap a run of C contiguous channels; the input is first copied
channels-last (with its padding), and the columns' gradient goes back onto the NCHW input in one
gather (``_nhwc_kernels.col2im``: each input value written once, its taps summed). The products
are then two-dimensional, over every position of the batch at once:

    forward          y (P, O)  = cols (P, K) @ W (O, K)^T          then y -> (N, O, OH, OW)
    weight gradient  dW (O, K) = g (P, O)^T @ cols (P, K)
    input gradient   dcols (P, K) = g (P, O) @ W (O, K)            then gather -> (N, C, H, W)

with P = N*OH*OW, K = KH*KW*C and W the weight with its taps before its channels. A transposed
convolution uses the same pieces the other way round: its forward is the products' input
gradient (x (P_in, C) @ W (C, K') then the gather), its input gradient a convolution (the output
gradient channels-last, then columns, then one product).

When. ``suits`` / ``suits_transpose`` below (the thresholds' figures: benchmarks/RESULTS.md,
"Channels-last columns"): no groups, float32/float64, compiled kernels present, a kernel larger
than 1x1, at least ``MIN_CHANNELS`` channels on the side whose vectors the copies move, and a
stride of 2 or more (stride-1 layers have Winograd and the direct loops).
"""
from __future__ import annotations

from ..backend import xp
from ..backend.cpu import kernels, threads
from . import algorithms

KERNELS = "foveanet.ops._nhwc_kernels"

# The copies move vectors of this many channels at least: fewer (an image's 1 or 3) and a
# position's row is mostly loop overhead, where the NCHW columns move long rows of pixels.
MIN_CHANNELS = 16
# At least this many output positions over the batch (the products' rows): below, as at batch 1
# on a 14x14 map, the per-sample NCHW products were as fast or faster (256 -> 512 channels
# 14x14 -> 7x7 at batch 1: forward 1.8 ms NCHW, 2.8 ms channels-last). Calls whose batch is not
# known (an inference plan, which serves any batch) keep the NCHW columns.
MIN_POSITIONS = 256


def _kernels():
    return kernels.load(KERNELS)


def _float(dtype) -> bool:
    return dtype in (xp.float32, xp.float64)


def to_nhwc(x, pads, shape_hw):
    """x (N, C, H, W) -> (N, Hp, Wp, C) zero-padded by pads (top, left) to shape_hw (Hp, Wp)."""
    x = xp.ascontiguousarray(x)
    n, c = x.shape[:2]
    out = xp.empty((n,) + tuple(shape_hw) + (c,), dtype=x.dtype)
    k = _kernels().to_nhwc
    threads.split(lambda lo, hi: k(x, pads[0], pads[1], out, lo, hi), n, out.nbytes)
    return out


def columns(xt, kernel, stride, dilation, out_hw):
    """(N, Hp, Wp, C) padded channels-last input -> (N*OH*OW, KH*KW*C) columns."""
    n, c = xt.shape[0], xt.shape[3]
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    cols = xp.empty((n, oh, ow, kh, kw, c), dtype=xt.dtype)
    k = _kernels().im2col
    threads.split(lambda lo, hi: k(xt, kh, kw, sh, sw, dh, dw, cols, lo, hi), n, cols.nbytes)
    return cols.reshape(n * oh * ow, kh * kw * c)


def gather(dcols, n, out_hw, kernel, stride, dilation, pads, shape):
    """The adjoint of ``columns`` onto an NCHW array of ``shape`` (N, C, H, W): the sum of the
    column entries that read each of its values, the input being padded by pads (top, left)."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    c = shape[1]
    d6 = dcols.reshape(n, oh, ow, kh, kw, c)
    out = xp.empty(shape, dtype=dcols.dtype)
    k = _kernels().col2im
    threads.split(lambda lo, hi: k(d6, kh, kw, sh, sw, dh, dw, pads[0], pads[1], out,
                                   xp.empty((shape[3], c), dtype=out.dtype), lo, hi), n, out.nbytes)
    return out


def positions_last(y, n, hw):
    """(N*H*W, C) rows -> a contiguous (N, C, H, W) array."""
    c = y.shape[1]
    return threads.copy(y.reshape(n, hw[0] * hw[1], c).transpose(0, 2, 1)).reshape(
        (n, c) + tuple(hw))


def positions_first(g):
    """(N, C, H, W) -> contiguous (N*H*W, C) rows, the channels innermost."""
    n, c = g.shape[:2]
    return threads.copy(g.reshape(n, c, -1).transpose(0, 2, 1)).reshape(-1, c)


def taps_first(w):
    """A conv weight (O, C, KH, KW) -> (O, KH*KW*C), the columns' order (a transposed
    convolution's (C, O, KH, KW) -> (C, KH*KW*O) likewise)."""
    o = w.shape[0]
    return xp.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(o, -1)


def _taps_back(wm, shape):
    """The inverse of ``taps_first`` for a weight (gradient) of ``shape`` (A, B, KH, KW)."""
    a, b, kh, kw = shape
    return xp.ascontiguousarray(wm.reshape(a, kh, kw, b).transpose(0, 3, 1, 2))


# ------------------------------------------------------------------------------------ conv2d
def _enough_positions(g) -> bool:
    return len(g.out_hw) == 2 and g.batch * g.out_hw[0] * g.out_hw[1] >= MIN_POSITIONS


def suits(g: algorithms.ConvGeometry) -> bool:
    """conv2d: stride >= 2 on either axis, a kernel larger than 1x1, at least MIN_CHANNELS input
    channels, MIN_POSITIONS output positions over the batch, no groups, float."""
    o, c, kh, kw = g.weight_shape
    return g.groups == 1 and max(g.stride) >= 2 and kh * kw > 1 and c >= MIN_CHANNELS and \
        _enough_positions(g) and _float(g.dtype)


def conv_forward(x, wt, bias, pads, kernel, stride, dilation, out_hw, keep=False):
    """conv2d of x (N, C, H, W) with wt (O, KH*KW*C) (``taps_first``) -> (N, O, OH, OW) and, if
    ``keep``, the columns (for the weight gradient)."""
    n, _, h, w = x.shape
    top, bottom, left, right = pads
    xt = to_nhwc(x, (top, left), (h + top + bottom, w + left + right))
    cols = columns(xt, kernel, stride, dilation, out_hw)
    del xt
    y = cols @ wt.T
    out = positions_last(y, n, out_hw)
    if bias is not None:
        threads.binary(xp.add, out, bias.reshape(-1, 1, 1), out)
    return out, (cols if keep else None)


class _Conv:
    """The ``nhwc`` algorithm of conv2d (see ``ops.conv.Conv2d`` for the protocol). It has no
    ``inference`` form: a plan does not know its batch, and never takes it (``suits``)."""
    adds_bias = True

    @staticmethod
    def forward(fn, x, w, b):
        nx, nw = fn.needs_input_grad[:2]
        kernel, stride, dilation, out_hw = fn.geom
        fn.wt = taps_first(w)
        out, fn.cols = conv_forward(x, fn.wt, b, fn.pads, kernel, stride, dilation, out_hw,
                                    keep=nw)
        return out

    @staticmethod
    def backward(fn, g, nx, nw):
        kernel, stride, dilation, out_hw = fn.geom
        g2 = positions_first(g)  # (P, O)
        gx = gw = None
        if nw:
            gw = _taps_back(g2.T @ fn.cols, fn.w_shape)
            fn.cols = None
        if nx:
            top, _, left, _ = fn.pads
            gx = gather(g2 @ fn.wt, g.shape[0], out_hw, kernel, stride, dilation, (top, left),
                        fn.x_shape)
        return gx, gw


# --------------------------------------------------------------------------- conv_transpose2d
def suits_transpose(g: algorithms.ConvGeometry) -> bool:
    """conv_transpose2d (weight_shape (C_in, O, KH, KW)): stride >= 2, a kernel larger than
    1x1, at least MIN_CHANNELS output channels (the vectors the gather and the columns of the
    backward move), MIN_POSITIONS output positions over the batch, no groups, float."""
    c, o, kh, kw = g.weight_shape
    return g.groups == 1 and max(g.stride) >= 2 and kh * kw > 1 and o >= MIN_CHANNELS and \
        _enough_positions(g) and _float(g.dtype)


class _Transpose:
    """The ``nhwc`` algorithm of conv_transpose2d (see ``ops.conv.ConvTranspose2d``)."""

    @staticmethod
    def forward(fn, x, w, b):
        n, _, h, wd = x.shape
        kernel, stride, dilation, _ = fn.geom
        (ph, pw), full = fn.padding, fn.full
        oh, ow = full[0] - 2 * ph, full[1] - 2 * pw
        xr = positions_first(x)  # (N*H*W, C)
        fn.xr = xr if fn.needs_input_grad[1] else None
        fn.wt = taps_first(w)  # (C, KH*KW*O)
        out = gather(xr @ fn.wt, n, (h, wd), kernel, stride, dilation, (ph, pw),
                     (n, w.shape[1], oh, ow))
        if b is not None:
            threads.binary(xp.add, out, b.reshape(-1, 1, 1), out)
        return out

    @staticmethod
    def backward(fn, g, nx, nw):
        n, _, h, w = fn.x_shape
        kernel, stride, dilation, _ = fn.geom
        (ph, pw), full = fn.padding, fn.full
        gcols = columns(to_nhwc(g, (ph, pw), full), kernel, stride, dilation, (h, w))
        gx = positions_last(gcols @ fn.wt.T, n, (h, w)) if nx else None
        gw = None
        if nw:
            gw = _taps_back(fn.xr.T @ gcols, fn.w_shape)
            fn.xr = None
        return gx, gw


def warm() -> str:
    """Compile (or load from the cache) the channels-last loops for float32 and float64."""
    if _kernels() is None:
        return "channels-last columns: numba is not installed, NCHW columns instead"
    for dt in (xp.float32, xp.float64):
        x = xp.ones((1, 2, 4, 4), dtype=dt)
        xt = to_nhwc(x, (1, 1), (6, 6))
        cols = columns(xt, (2, 2), (2, 2), (1, 1), (3, 3))
        gather(cols, 1, (3, 3), (2, 2), (2, 2), (1, 1), (1, 1), (1, 2, 4, 4))
    return "channels-last columns: numba kernels compiled"


kernels.declare(KERNELS, "channels-last columns", warm)

algorithms.register("conv2d", "nhwc", suits, _Conv, priority=40, kernels=KERNELS,
                    doc="strided convolutions on channels-last columns (whole channel vectors)")
algorithms.register("conv_transpose2d", "nhwc", suits_transpose, _Transpose, priority=40,
                    kernels=KERNELS,
                    doc="strided transposed convolutions on channels-last columns")
