"""Direct convolution for few-channel layers: the multiply-adds in compiled loops, no im2col.

Why. Where a convolution has few input channels (LeNet-5's 1->6 and 6->16 5x5 layers), im2col's
products are too thin for BLAS: 6 x 25 x 784 per sample runs at a few GFLOP/s, and the columns
are 25x the input, written and read again. PyTorch (oneDNN) runs such layers as register-blocked
direct loops; ``_direct_kernels`` does the same with numba: the outputs computed on the padded
width so that each tap is one long vectorised run over a flat plane, blocks of 3 or 5 taps and
two or four output channels per pass, each sample padded into a scratch buffer by the kernel
itself (the layout and the blocking are explained there). The forward keeps the unpadded input
for the weight gradient.

What. The forward (with its bias) and the weight gradient are the two kernels; the input
gradient of a stride-1 convolution is itself a convolution, of the output gradient padded by
``k - 1 - pad`` with the kernels flipped and the channels swapped, so it runs through the
forward kernel. The batch is split over the engine's threads (``threads.split``), a batch
smaller than the threads (style transfer's one picture) its output channels instead; each
thread sums its own weight gradient, and the parts are added at the end. 3x3 stride-2 layers get the
same treatment on the input's four phase planes (``forward_s2``).

When. Two entries of the algorithm registry (``ops.algorithms``), with the thresholds below:
``direct`` (``suits``: stride 1, no dilation, no groups, padding below the kernel size so that
the input gradient is a convolution, at most ``MAX_TAPS`` multiply-adds per output, or up to
11x11 kernels on at most ``FEW_CHANNELS`` input channels, or, without AVX-512, 3x3 kernels up to
``MAX_TAPS_NARROW`` where C O <= ``NARROW`` (C + O)) and
``direct_s2`` (``suits_s2``). Both need the compiled kernels and float32/float64. The figures
behind the thresholds are in benchmarks/RESULTS.md, "Direct convolutions".
"""
from __future__ import annotations

from ..backend import xp
from ..backend.cpu import kernels, threads
from . import algorithms

KERNELS = "foveanet.ops._direct_kernels"

# Taps per output (C*KH*KW) at most MAX_TAPS, or MAX_TAPS_FIVES where the kernel width is a
# multiple of 5 (no zero taps in the blocks): above them im2col's products were as fast (5x5
# 64->64 at 1600 taps, 3x3 24->24 at 216); figures: benchmarks/RESULTS.md, "Direct convolutions".
MAX_TAPS = 150
MAX_TAPS_FIVES = 1200
# Layers on an image's few channels (RGB, grey) take the loops up to 11x11 kernels: there the
# columns are kernel-size times the image and the products thin (3 -> 32 channels, 9x9 at 128x128,
# batch 8, forward + backward: 44 ms direct, 83 ms im2col, 69 ms PyTorch).
FEW_CHANNELS = 4
MAX_TAPS_FEW_CHANNELS = 4 * 11 * 11
# Without AVX-512, 3x3 layers whose channels give Winograd's products little to share, C O <=
# NARROW (C + O) (C O / (C + O) is half the harmonic mean of C and O: 32->16, 24->24, 24->16,
# 32->8), take the loops up to MAX_TAPS_NARROW taps (C <= 32). There they beat Winograd 1.12-1.76x
# and im2col 2.7-3.3x forward + backward (SegNet's 32->16 at 32x32, batch 32: 18.9 -> 12.3 ms),
# while 32->32 and 32->64 at batch 128 stay Winograd's (0.77x and 0.56x this way, fastest). On
# AVX-512 machines this was not measured, so there the rule above stands. Figures:
# benchmarks/RESULTS.md, "Direct convolutions".
NARROW = 12
MAX_TAPS_NARROW = 32 * 9
# Output positions per tile of the forward kernel (whole padded rows, see _direct_kernels):
# larger planes are cut, smaller ones (resnet20's 32x32, LeNet-5's) go whole, which measured as
# fast for them; a 256x256 image's 7x7 layer went 6.6 -> 5.3 ms cut.
TILE = 4096


def _kernels():
    return kernels.load(KERNELS)


def _float(dtype) -> bool:
    return dtype in (xp.float32, xp.float64)


def suits(g: algorithms.ConvGeometry) -> bool:
    """Whether a convolution takes the stride-1 direct loops (see the module's docstring)."""
    o, c, kh, kw = g.weight_shape
    top, bottom, left, right = g.pads
    return tuple(g.stride) == (1, 1) and tuple(g.dilation) == (1, 1) and g.groups == 1 and \
        c * kh * kw <= _max_taps(c, o, kh, kw) and kh * kw > 1 and \
        max(top, bottom) < kh and max(left, right) < kw and _float(g.dtype)


def _max_taps(c: int, o: int, kh: int, kw: int) -> int:
    if c <= FEW_CHANNELS:
        return MAX_TAPS_FEW_CHANNELS
    if kw % 5 == 0:
        return MAX_TAPS_FIVES
    if (kh, kw) == (3, 3) and c * o <= NARROW * (c + o) and not kernels.wide_vectors():
        return MAX_TAPS_NARROW
    return MAX_TAPS


def _block(kw: int) -> int:
    """Taps per block of a kernel row (3 or 5, see _direct_kernels): the one padding it least."""
    return 3 if -kw % 3 < -kw % 5 else 5


def _padded_width(kw: int) -> int:
    b = _block(kw)
    return b * -(-kw // b)


def _blocks_wide(w):
    """(O, C, KH, KW) -> (O, C, KH, J*block), zero columns added up to whole blocks."""
    o, c, kh, kw = w.shape
    if _padded_width(kw) == kw:
        return xp.ascontiguousarray(w)
    wp = xp.zeros((o, c, kh, _padded_width(kw)), dtype=w.dtype)
    wp[..., :kw] = w
    return wp


def _correlate(x, pads, w, bias, out_hw):
    """out (N, O, *out_hw) = bias + the correlation of x (N, C, H, W), zero-padded by pads (top,
    bottom, left, right), with w (O, C, KH, KW)."""
    x = xp.ascontiguousarray(x)
    n, o = x.shape[0], w.shape[0]
    top, bottom, left, right = pads
    hp, wq = x.shape[2] + top + bottom, x.shape[3] + left + right
    out = xp.empty((n, o) + tuple(out_hw), dtype=x.dtype)
    b = xp.zeros(o, dtype=x.dtype) if bias is None else xp.ascontiguousarray(bias, x.dtype)
    forward_kernel, width = _kernels().forward, _block(w.shape[3])
    step = 4 if width == 3 and o >= 4 else 2
    rows = max(1, TILE // wq)
    wp = _blocks_wide(w)
    nbytes = out.nbytes + x.nbytes
    if n >= threads.threads():  # the samples split over the threads
        threads.split(lambda lo, hi: forward_kernel(x, top, left, hp, wq, wp, b, width, step,
                                                    rows, out, lo, hi, 0, o), n, nbytes)
    else:  # a small batch (style transfer's one image): its output channels split instead
        threads.split(lambda lo, hi: forward_kernel(x, top, left, hp, wq, wp, b, width, step,
                                                    rows, out, 0, n, lo * step,
                                                    min(hi * step, o)),
                      -(-o // step), nbytes)
    return out


def forward(x, w, bias, pads):
    """The stride-1 convolution of x (N, C, H, W) padded by pads (top, bottom, left, right) with
    w (O, C, KH, KW), plus bias (or None)."""
    kh, kw = w.shape[2:]
    top, bottom, left, right = pads
    out_hw = (x.shape[2] + top + bottom - kh + 1, x.shape[3] + left + right - kw + 1)
    return _correlate(x, pads, w, bias, out_hw)


def weight_grad(x, pads, g, w_shape):
    """dL/dw (O, C, KH, KW) from the forward's input and padding and the output gradient g."""
    o, c, kh, kw = w_shape
    x, g = xp.ascontiguousarray(x), xp.ascontiguousarray(g)
    top, bottom, left, right = pads
    hp, wq = x.shape[2] + top + bottom, x.shape[3] + left + right
    kernel, width = _kernels().weight_grad, _block(kw)
    gw = _summed_over_threads(lambda gw, lo, hi: kernel(x, top, left, hp, wq, g, width, gw, lo, hi),
                              (o, c, kh, _padded_width(kw)), x, g)
    return xp.ascontiguousarray(gw[..., :kw])


def _summed_over_threads(fn, shape, x, g):
    """fn(gw, lo, hi) adds the samples [lo, hi)'s share of a weight gradient (from the input x
    and the output gradient g) into gw, zeros of ``shape``: each thread sums its own, and the
    parts are added at the end."""
    parts = []

    def part(lo, hi):
        gw = xp.zeros(shape, dtype=g.dtype)
        fn(gw, lo, hi)
        parts.append(gw)

    threads.split(part, g.shape[0], x.nbytes + g.nbytes)
    return sum(parts[1:], parts[0])


def input_grad(g, w, pads, in_hw):
    """dL/dx (N, C, *in_hw): the output gradient padded by k - 1 - pad on each side, correlated
    with the flipped kernels, input and output channels swapped."""
    kh, kw = w.shape[2:]
    top, bottom, left, right = pads
    gpads = (kh - 1 - top, kh - 1 - bottom, kw - 1 - left, kw - 1 - right)
    wf = xp.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return _correlate(g, gpads, wf, None, in_hw)


# The stride-2 kernels take 3x3 layers with at most S2_MAX_MACS multiply-adds per output pixel
# (C*9*O, up to 64x64 channels): above it their backward lost to im2col's products (64->128 at
# 8x8 and larger); figures: benchmarks/RESULTS.md, "Direct convolutions".
S2_MAX_MACS = 64 * 9 * 64


def suits_s2(g: algorithms.ConvGeometry) -> bool:
    """Whether a convolution takes the stride-2 kernels (``forward_s2``): 3x3, stride 2, no
    dilation, no groups, padding below 3, at most ``S2_MAX_MACS`` multiply-adds per output
    pixel, float32 or float64."""
    o, c, kh, kw = g.weight_shape
    return tuple(g.stride) == (2, 2) and tuple(g.dilation) == (1, 1) and g.groups == 1 and \
        (kh, kw) == (3, 3) and max(g.pads) < 3 and o * c * kh * kw <= S2_MAX_MACS and \
        _float(g.dtype)


def forward_s2(x, w, bias, pads):
    """The 3x3 stride-2 convolution of x (N, C, H, W) padded by pads (top, bottom, left, right)
    with w (O, C, 3, 3), plus bias (or None), on the input's four phase planes (see
    ``_direct_kernels``)."""
    x = xp.ascontiguousarray(x)
    n, o = x.shape[0], w.shape[0]
    top, bottom, left, right = pads
    oh, ow = (x.shape[2] + top + bottom - 3) // 2 + 1, (x.shape[3] + left + right - 3) // 2 + 1
    out = xp.empty((n, o, oh, ow), dtype=x.dtype)
    b = xp.zeros(o, dtype=x.dtype) if bias is None else xp.ascontiguousarray(bias, x.dtype)
    w = xp.ascontiguousarray(w)
    kernel = _kernels().forward_s2
    threads.split(lambda lo, hi: kernel(x, top, left, w, b, out, lo, hi), n,
                  out.nbytes + x.nbytes)
    return out


def weight_grad_s2(x, pads, g, w_shape):
    """dL/dw (O, C, 3, 3) of ``forward_s2`` from its input and padding and the output gradient."""
    x, g = xp.ascontiguousarray(x), xp.ascontiguousarray(g)
    kernel = _kernels().weight_grad_s2
    return _summed_over_threads(lambda gw, lo, hi: kernel(x, pads[0], pads[2], g, gw, lo, hi),
                                w_shape, x, g)


def input_grad_s2(g, w, pads, in_hw):
    """dL/dx (N, C, *in_hw) of ``forward_s2`` from the output gradient g: per phase of the padded
    input, a stride-1 pass over g with that phase's taps (see ``_direct_kernels``)."""
    g, w = xp.ascontiguousarray(g), xp.ascontiguousarray(w)
    gx = xp.empty((g.shape[0], w.shape[1]) + tuple(in_hw), dtype=g.dtype)
    kernel = _kernels().input_grad_s2
    threads.split(lambda lo, hi: kernel(g, pads[0], pads[2], w, gx, lo, hi), g.shape[0],
                  g.nbytes + gx.nbytes)
    return gx


def warm() -> str:
    """Compile (or load from the cache) the kernels for float32 and float64 now (``make
    install`` runs this)."""
    if _kernels() is None:
        return "direct convolutions: numba is not installed, few-channel convolutions use im2col"
    for dt in (xp.float32, xp.float64):
        x, w = xp.ones((1, 1, 4, 4), dtype=dt), xp.ones((1, 1, 3, 3), dtype=dt)
        out = forward(x, w, None, (1, 1, 1, 1))
        weight_grad(x, (1, 1, 1, 1), out, w.shape)
        input_grad(out, w, (1, 1, 1, 1), (4, 4))
        out = forward_s2(x, w, None, (1, 1, 1, 1))
        weight_grad_s2(x, (1, 1, 1, 1), out, w.shape)
        input_grad_s2(out, w, (1, 1, 1, 1), (4, 4))
    return "direct convolutions: numba kernels compiled"


kernels.declare(KERNELS, "direct convolutions", warm)


class _Stride1:
    """The ``direct`` algorithm of conv2d (see ``ops.conv.Conv2d`` for the protocol)."""
    adds_bias = True

    @staticmethod
    def forward(fn, x, w, b):
        nx, nw = fn.needs_input_grad[:2]
        fn.x, fn.w = (x if nw else None), (w if nx else None)
        return forward(x, w, b, fn.pads)

    @staticmethod
    def backward(fn, g, nx, nw):
        gx = input_grad(g, fn.w, fn.pads, fn.x_shape[-2:]) if nx else None
        gw = weight_grad(fn.x, fn.pads, g, fn.w_shape) if nw else None
        return gx, gw

    @staticmethod
    def inference(w4, wm, bias, geom):
        """The plan's step: the folded weight w4 (O, C, KH, KW) and bias -> ``run(x)``."""
        return lambda x: forward(x, w4, bias, geom.pads)


class _Stride2(_Stride1):
    """The ``direct_s2`` algorithm of conv2d: 3x3 stride 2 on the phase planes."""

    @staticmethod
    def forward(fn, x, w, b):
        nx, nw = fn.needs_input_grad[:2]
        fn.x, fn.w = (x if nw else None), (w if nx else None)
        return forward_s2(x, w, b, fn.pads)

    @staticmethod
    def backward(fn, g, nx, nw):
        gx = input_grad_s2(g, fn.w, fn.pads, fn.x_shape[-2:]) if nx else None
        gw = weight_grad_s2(fn.x, fn.pads, g, fn.w_shape) if nw else None
        return gx, gw

    @staticmethod
    def inference(w4, wm, bias, geom):
        return lambda x: forward_s2(x, w4, bias, geom.pads)


algorithms.register("conv2d", "direct", suits, _Stride1, priority=10, kernels=KERNELS,
                    doc="stride-1 convolutions with few taps per output as compiled loops")
algorithms.register("conv2d", "direct_s2", suits_s2, _Stride2, priority=30, kernels=KERNELS,
                    doc="3x3 stride-2 convolutions as compiled loops on the phase planes")
