"""Convolution primitives: ``conv2d`` and ``conv_transpose2d`` (PyTorch semantics, NCHW).

How a convolution is computed here. im2col: a strided *view* of the padded input holds, for every
kernel offset (kh, kw), the input pixels that offset multiplies at every output position; copying
that view gives a matrix ``cols`` of shape (N, groups, C/groups*KH*KW, OH*OW), and the convolution
is one batched BLAS product ``weight (groups, O/groups, C/groups*KH*KW) @ cols`` whose result is
already NCHW. The backward is two more products: ``grad @ cols^T`` (summed over the batch) for the
weight and ``weight^T @ grad`` for the columns, which col2im adds back onto the input image with
one vectorised strided add per kernel offset (never a loop over pixels). The batch goes through
these steps in cache-sized chunks (see ``CHUNK_BYTES``); where the per-sample products are small
(``WIDE_MACS``) a chunk's samples go side by side into one product instead. The copies and adds
are split over the engine's threads (``backend.cpu.threads``). A transposed convolution is the same two
pieces used the other way round: its forward is the convolution's input-gradient (product, then
col2im) and its input-gradient is a convolution (im2col, then product).

Compiled paths take over where numba is installed (chosen in ``Conv2d.forward``): stride-1
convolutions with few taps per output (C*KH*KW, e.g. LeNet-5's, or 3x3 on 16 channels) run as
direct loops (``_direct.py``), the other 3x3 stride-1 convolutions with at least 16 channels each
way as Winograd F(4x4, 3x3), 4x fewer multiply-adds (``_winograd.py``), 3x3 stride-2 layers
with up to 64 channels each way (resnet20's downsampling layers) as direct loops on the input's
four phase planes (``_direct.forward_s2``), strided layers on an image's few channels whose
kernel the stride cuts to 3x3 (AlexNet's 11x11 stride 4) as Winograd over the phase planes
(``_phases.py``), and the other strided layers on enough channels and positions (a DCGAN's 4x4
stride-2 layers, both directions; ResNet-18's 3x3 stride-2) on channels-last columns
(``_nhwc.py``).
"""
from __future__ import annotations

from ..autograd import Function
from ..backend import xp
from ..backend.cpu import kernels, threads
from ..backend.cpu.blas import blas_threads
from . import _direct, _nhwc, _phases, _winograd, algorithms  # noqa: F401  (their algorithms register)
from ._util import as_tensor_arg, check_float, int_pair, pad_array

KERNELS = "foveanet.ops._im2col_kernels"

_as_strided = xp.lib.stride_tricks.as_strided


def out_size(size: int, k: int, s: int, d: int) -> int:
    """Positions of a kernel of k taps, dilation d, stride s along an already padded axis."""
    return (size - d * (k - 1) - 1) // s + 1


# ------------------------------------------------------------------------------ im2col / col2im
# The batch is processed in chunks of about this many bytes of columns, so that the columns a
# chunk's im2col writes are still in the CPU cache when its BLAS product reads them (and likewise
# the product's output for col2im). Measured 1.2-1.4x faster than one im2col of the whole batch,
# and the backward recomputes the columns instead of keeping them alive (memory like PyTorch's).
CHUNK_BYTES = 4 << 20


def _chunk(n: int, per_sample_bytes: int) -> int:
    return max(1, min(n, CHUNK_BYTES // max(per_sample_bytes, 1)))


def _strided_kernels():
    """Compiled im2col / col2im (``_im2col_kernels``) for convolutions strided along the width,
    or None without numba: NumPy's strided adds (one per kernel offset) were several times slower
    than one loop for col2im (figures: benchmarks/RESULTS.md, "Strided im2col / col2im")."""
    return kernels.load(KERNELS)


def warm() -> str:
    """Compile (or load from the cache) the strided im2col / col2im for float32 and float64."""
    if _strided_kernels() is None:
        return "strided im2col / col2im: numba is not installed, NumPy's strided copies instead"
    for dt in (xp.float32, xp.float64):  # a 2x2 stride-2 convolution's columns, both ways
        x = xp.ones((1, 1, 4, 4), dtype=dt)
        cols = im2col(x, (2, 2), (2, 2), (1, 1), (2, 2), 1, (0, 0, 0, 0))
        col2im(cols.reshape(1, 4, 4), xp.zeros_like(x), (2, 2), (2, 2), (1, 1), (2, 2))
    return "strided im2col / col2im: numba kernels compiled"


kernels.declare(KERNELS, "strided im2col / col2im", warm)


def _compiled_strided(stride) -> bool:
    """Whether im2col / col2im take the compiled kernels: strided along the width, numba there.
    That im2col reads the padding as zeros itself, so its caller need not pad the input first."""
    return stride[1] > 1 and _strided_kernels() is not None


def im2col(xpad, kernel, stride, dilation, out_hw, groups: int, pads=(0, 0, 0, 0)):
    """(N, C, Hp, Wp) -> contiguous (N, groups, C/groups*KH*KW, OH*OW) columns; with ``pads``
    (top, bottom, left, right), of xpad zero-padded by them (without a padded copy where
    ``_compiled_strided``)."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    if _compiled_strided(stride):  # compiled: NumPy's strided copy is slow
        xpad = xp.ascontiguousarray(xpad)  # the kernel is compiled for C-ordered input
        n, c = xpad.shape[:2]
        cols = xp.empty((n, c * kh * kw, oh, ow), dtype=xpad.dtype)
        im2col_kernel, top, left = _strided_kernels().im2col, pads[0], pads[2]
        threads.split(lambda lo, hi: im2col_kernel(xpad, top, left, kh, kw, sh, sw, dh, dw,
                                                   cols, lo, hi), n, cols.nbytes)
        return cols.reshape(n, groups, (c // groups) * kh * kw, oh * ow)
    xpad = pad_array(xpad, *pads)
    n, c, hp, wp = xpad.shape
    if kh == kw == 1 and sh == sw == 1 and (oh, ow) == (hp, wp):  # 1x1 stride-1: the image itself
        return xp.ascontiguousarray(xpad).reshape(n, groups, c // groups, hp * wp)
    s_n, s_c, s_h, s_w = xpad.strides
    view = _as_strided(xpad, (n, c, kh, kw, oh, ow),
                       (s_n, s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w), writeable=False)
    cols = threads.copy(view)  # the one im2col copy, split over the samples
    return cols.reshape(n, groups, (c // groups) * kh * kw, oh * ow)


def col2im(cols, out, kernel, stride, dilation, out_hw):
    """The adjoint of ``im2col``: add every column entry onto the pixel of ``out`` (N, C, Hp, Wp)
    it was read from. One vectorised add per kernel offset (KH*KW of them), never a pixel loop;
    the samples split over the engine's threads."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    if _compiled_strided(stride):  # compiled, as im2col's
        c4 = cols.reshape(cols.shape[0], -1, oh, ow)
        col2im_kernel = _strided_kernels().col2im
        threads.split(lambda lo, hi: col2im_kernel(c4, kh, kw, sh, sw, dh, dw, out, lo, hi),
                      out.shape[0], out.nbytes)
        return out
    threads.split(lambda lo, hi: _col2im(cols[lo:hi], out[lo:hi], kernel, stride, dilation,
                                         out_hw), out.shape[0], out.nbytes)
    return out


def _col2im(cols, out, kernel, stride, dilation, out_hw):
    n, c, hp, wp = out.shape
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    cols = cols.reshape(n, c, kh, kw, oh, ow)
    rows = xp.empty((n, c, hp, ow), dtype=out.dtype) if kh > 1 else None
    for j in range(kw):
        dst = out[:, :, :, j * dw:j * dw + sw * (ow - 1) + 1:sw]
        if kh == 1:
            dst[:, :, :sh * (oh - 1) + 1:sh] += cols[:, :, 0, j]
            continue
        # the KH row offsets first go into a buffer with rows exactly OW wide, where each add is one
        # contiguous run per plane, then that buffer is added at column offset j (measured ~1.4x
        # faster on 14x14 images than KH*KW adds of OW-long runs)
        rows.fill(0)
        for i in range(kh):
            rows[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh] += cols[:, :, i, j]
        dst += rows
    return out


# Products per sample of at most WIDE_MACS multiply-adds (O x C*KH*KW x OH*OW) over at most
# WIDE_POSITIONS output positions are too small for BLAS to run well one by one (OpenBLAS runs
# them on one thread, with a call's overhead each): there the columns of a whole chunk go side by
# side, (C*KH*KW, m*OH*OW), for one product per chunk (``_wide_cols``): LeNet-5's 6->16 layer
# gains; larger products or outputs lose, since per sample the columns stay in cache for their
# product (figures: benchmarks/RESULTS.md, "The im2col convolution"). Below FEW_POSITIONS output
# positions, though, a sample's products have too few columns (their inner dimension, in the
# weight gradient) for BLAS whatever their size: a DCGAN discriminator's 64->128 layer at 7x7
# (49 positions, 6.4M multiply-adds) took its backward pass 3.2x faster side by side.
WIDE_MACS = 1 << 20
WIDE_POSITIONS = 256
FEW_POSITIONS = 64


def _is_wide(wm, geom, n: int) -> bool:
    oh, ow = geom[3]
    return wm.shape[0] == 1 and n > 1 and (oh * ow < FEW_POSITIONS or (
        oh * ow <= WIDE_POSITIONS and wm.shape[1] * wm.shape[2] * oh * ow <= WIDE_MACS))


def _wide_cols(xpad, kernel, stride, dilation, out_hw, pads=(0, 0, 0, 0)):
    """(m, C, Hp, Wp) -> contiguous (C*KH*KW, m*OH*OW) columns, the samples side by side; with
    ``pads`` (top, bottom, left, right), of xpad zero-padded by them. Strided along the width
    (``_compiled_strided``) the compiled im2col writes them, through a (m, C*KH*KW, OH, OW) view
    of the wide array, reading the padding as zeros (NumPy's copy of the 6-D strided view ran
    at a quarter of its speed on a DCGAN's 4x4 stride-2 layers)."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    m, c = xpad.shape[:2]
    if _compiled_strided(stride):
        x = xp.ascontiguousarray(xpad)
        wide = xp.empty((c * kh * kw, m, oh, ow), dtype=x.dtype)
        view, k, top, left = wide.transpose(1, 0, 2, 3), _strided_kernels().im2col, pads[0], pads[2]
        if m >= threads.threads():
            threads.split(lambda lo, hi: k(x, top, left, kh, kw, sh, sw, dh, dw, view, lo, hi),
                          m, wide.nbytes)
        else:  # fewer samples than threads (batch 1 at inference): the output rows split
            threads.split(lambda lo, hi: k(x, top - lo * sh, left, kh, kw, sh, sw, dh, dw,
                                           view[:, :, lo:hi], 0, m), oh, wide.nbytes)
        return wide.reshape(c * kh * kw, m * oh * ow)
    if any(pads):
        xpad = pad_array(xpad, *pads)
    s_n, s_c, s_h, s_w = xpad.strides
    view = _as_strided(xpad, (c, kh, kw, m, oh, ow),
                       (s_c, dh * s_h, dw * s_w, s_n, sh * s_h, sw * s_w), writeable=False)
    return threads.copy(view).reshape(c * kh * kw, m * oh * ow)  # split over the channels


def _side_by_side(g):
    """(m, O, P) -> contiguous (O, m*P): a chunk's gradient in the wide columns' order."""
    m, o, p = g.shape
    return threads.copy(g.transpose(1, 0, 2)).reshape(o, m * p)


# -------------------------------------------------------------------------------------- conv2d
def _im2col_source(x, pads, wm, geom):
    """What the columns are read from, and the padding still to apply as they are: x itself and
    pads where the compiled strided im2col reads the padding as zeros, else x padded (a copy)
    and no padding."""
    if any(pads) and _compiled_strided(geom[1]):
        return x, tuple(pads)
    return pad_array(x, *pads), (0, 0, 0, 0)


def _correlate(x, pads, wm, geom, groups: int, keep=None):
    """The convolution proper: input (N, C, H, W) zero-padded by pads (top, bottom, left, right),
    weight matrix (groups, O/groups, C/groups*KH*KW) -> (N, O, OH, OW). ``keep``: a dict that
    receives the side-by-side columns of each chunk, by its first sample."""
    n = x.shape[0]
    (kh, kw), stride, _, (oh, ow) = geom
    o = wm.shape[0] * wm.shape[1]
    xpad, pads = _im2col_source(x, pads, wm, geom)
    if kh == kw == 1 and stride == (1, 1):  # 1x1 stride-1: a plain (batched) matmul, no im2col
        return xp.matmul(wm, im2col(xpad, *geom, groups)).reshape(n, o, oh, ow)
    if _is_wide(wm, geom, n):  # small products: one per chunk, then back to (m, O, P)
        out = xp.empty((n, o, oh * ow), dtype=xpad.dtype)
        step = _chunk(n, wm.shape[2] * oh * ow * xpad.itemsize)
        for s in range(0, n, step):
            cols = _wide_cols(xpad[s:s + step], *geom, pads)
            if keep is not None:
                keep[s] = cols
            part = xp.matmul(wm[0], cols)
            part = part.reshape(o, -1, oh * ow).transpose(1, 0, 2)  # (m, O, P) view
            threads.copy(part, out=out[s:s + step])
        return out.reshape(n, o, oh, ow)
    # im2col + one batched BLAS product (over samples and groups) per chunk of the batch
    out = xp.empty((n, groups, o // groups, oh * ow), dtype=xpad.dtype)
    step = _chunk(n, wm.shape[2] * groups * oh * ow * xpad.itemsize)
    for s in range(0, n, step):
        xp.matmul(wm, im2col(xpad[s:s + step], *geom, groups, pads), out=out[s:s + step])
    return out.reshape(n, o, oh, ow)


class Conv2d(Function):
    """y[n, o] = b[o] + sum_{c, kh, kw} w[o, c, kh, kw] x_pad[n, c, oh*s + kh*d, ow*s + kw*d].

    The algorithm comes from the registry (``ops.algorithms.select("conv2d", geometry)``); each
    one is an object with ``forward(fn, x, w, b)`` (batched input; keeps on ``fn`` what its
    backward needs; adds the bias itself if ``adds_bias``), ``backward(fn, g, need_x, need_w)``
    -> ``(dx, dw)`` and ``inference(w4, wm, bias, geom)`` for ``fv.optimize_for_inference``.
    This class does what they share: geometry, unbatched input, the bias and its gradient."""

    def forward(self, x, w, b=None, *, stride, pads, dilation, groups):
        self.unbatched = x.ndim == 3
        if self.unbatched:
            x = x[None]
        o, cg, kh, kw = w.shape
        top, bottom, left, right = pads
        hp, wp = x.shape[2] + top + bottom, x.shape[3] + left + right
        oh, ow = out_size(hp, kh, stride[0], dilation[0]), out_size(wp, kw, stride[1], dilation[1])
        self.geom = ((kh, kw), stride, dilation, (oh, ow))
        self.x_shape, self.xpad_shape, self.pads, self.groups, self.w_shape = \
            x.shape, (x.shape[0], x.shape[1], hp, wp), pads, groups, w.shape
        self.out_hw, self.has_bias = (oh, ow), b is not None
        self.algorithm = algorithms.select(
            "conv2d", algorithms.ConvGeometry(x.dtype, w.shape, stride, pads, dilation, groups,
                                              batch=x.shape[0], out_hw=(oh, ow)))
        impl = self.algorithm.impl
        out = impl.forward(self, x, w, b)
        if b is not None and not impl.adds_bias:
            threads.binary(xp.add, out, b.reshape(o, 1, 1), out)
        return out[0] if self.unbatched else out

    def backward(self, g):
        if self.unbatched:
            g = g[None]
        nx, nw = self.needs_input_grad[:2]
        gx, gw = self.algorithm.impl.backward(self, g, nx, nw)
        gb = g.sum(axis=(0, 2, 3)) if self.has_bias and self.needs_input_grad[2] else None
        if nx and self.unbatched:
            gx = gx[0]
        return gx, gw, gb


class _Im2col:
    """The ``im2col`` algorithm of conv2d: columns + BLAS products (any geometry)."""
    adds_bias = False

    @staticmethod
    def forward(fn, x, w, b):
        o, cg, kh, kw = w.shape
        groups = fn.groups
        nw = fn.needs_input_grad[1]
        wm = w.reshape(groups, o // groups, cg * kh * kw)
        xpad, fn.src_pads = _im2col_source(x, fn.pads, wm, fn.geom)
        fn.xpad, fn.wm = (xpad if nw else None), wm
        fn.pointwise = kh == kw == 1 and tuple(fn.geom[1]) == (1, 1)
        # side by side, the columns are kept for the weight gradient (keyed by chunk start)
        # rather than made again: they are a few-position layer's, C*KH*KW x (N*OH*OW), at
        # most KH*KW / (stride^2) times the input (4x for a 4x4 stride-2 layer)
        fn.kept_cols = {} if nw and _is_wide(wm, fn.geom, x.shape[0]) else None
        return _correlate(xpad, fn.src_pads, wm, fn.geom, groups, fn.kept_cols)

    @staticmethod
    def backward(fn, g, nx, nw):
        n, o = g.shape[:2]
        gx = gw = None
        groups, wm = fn.groups, fn.wm
        gm = g.reshape(n, groups, o // groups, -1)
        wt = wm.transpose(0, 2, 1)
        if fn.pointwise:  # 1x1 stride-1: the two products on the whole batch, no col2im
            if nx:
                gx = xp.matmul(wt, gm).reshape(fn.xpad_shape)
            if nw:
                cols = im2col(fn.xpad, *fn.geom, groups)
                gw = xp.matmul(gm, cols.transpose(0, 1, 3, 2)).sum(axis=0)
        else:
            as_conv = nx and _input_grad_is_a_conv(fn)
            gx = xp.zeros(fn.xpad_shape, dtype=g.dtype) if nx and not as_conv else None
            gw = xp.zeros(wm.shape, dtype=g.dtype) if nw else None
            step = _chunk(n, wm.shape[0] * wm.shape[2] * gm.shape[3] * g.itemsize)
            wide = _is_wide(wm, fn.geom, n)
            for s in range(0, n, step):
                gs = gm[s:s + step]
                if wide:  # small products: one per chunk, on the samples side by side
                    _wide_backward(fn, gs, s, gw, None if as_conv else gx)
                    continue
                if nw:  # grad @ cols^T per sample, summed over the batch (columns recomputed)
                    cols = im2col(fn.xpad[s:s + step], *fn.geom, groups, fn.src_pads)
                    gw += xp.matmul(gs, cols.transpose(0, 1, 3, 2)).sum(axis=0)
                if nx and not as_conv:  # the columns' gradient w^T @ grad, back onto the image
                    col2im(xp.matmul(wt, gs), gx[s:s + step], *fn.geom)
            if as_conv:
                gx = _input_grad_by_conv(fn, g)  # already (N, C, H, W): nothing to crop
        if nx and gx.shape != tuple(fn.x_shape):
            top, _, left, _ = fn.pads
            h, w = fn.x_shape[2:]
            gx = gx[:, :, top:top + h, left:left + w]
        if nw:
            gw = gw.reshape(o, -1, *fn.geom[0])
        return gx, gw

    @staticmethod
    def inference(w4, wm, bias, geom):
        """The plan's step (see ``infer_im2col``): ``run(x, epilogue)``."""
        kernel = tuple(w4.shape[2:])

        def run(x, epilogue=None):
            return infer_im2col(x, wm, bias, kernel, geom.stride, geom.pads, geom.dilation,
                                epilogue)
        run.takes_epilogue = True
        return run


def _wide_backward(fn, gs, s, gw, gx):
    """One chunk's weight gradient (into gw) and, if gx is given, its columns' gradient added
    onto gx, each as one product over the chunk's samples side by side."""
    m = gs.shape[0]
    g2 = _side_by_side(gs.reshape(m, gs.shape[2], -1))  # (O, m*P)
    if gw is not None:
        kept = getattr(fn, "kept_cols", None)
        cols = kept.pop(s) if kept and s in kept and kept[s].shape[1] == g2.shape[1] else \
            _wide_cols(fn.xpad[s:s + m], *fn.geom, fn.src_pads)
        gw[0] += g2 @ cols.T
    if gx is not None:
        (kh, kw), _, _, (oh, ow) = fn.geom
        c = gx.shape[1]
        dcols = (fn.wm[0].T @ g2).reshape(c, kh, kw, m, oh, ow).transpose(3, 0, 1, 2, 4, 5)
        col2im(dcols, gx[s:s + m], *fn.geom)


def _input_grad_is_a_conv(fn) -> bool:
    """Take the input gradient as a convolution (im2col of the padded gradient, O*KH*KW rows
    over H*W) rather than GEMM + col2im (C*KH*KW rows over OH*OW) only where its columns are
    no larger: each way won where its columns were the smaller (LeNet's 6->16, 5x5 unpadded,
    has a padded gradient 5x its columns; figures: benchmarks/RESULTS.md, "The im2col
    convolution")."""
    oh, ow = fn.geom[3]
    o, c = fn.wm.shape[0] * fn.wm.shape[1], fn.x_shape[-3]
    h, w = fn.x_shape[-2:]
    return _fits_as_conv(fn) and o * h * w <= c * oh * ow


def _fits_as_conv(fn) -> bool:
    """Stride 1 and padding no wider than the dilated kernel: the gradient is then a
    convolution (with the padding d*(k-1) - p on each side)."""
    (kh, kw), stride, (dh, dw), _ = fn.geom
    top, bottom, left, right = fn.pads
    return stride == (1, 1) and max(top, bottom) <= dh * (kh - 1) and \
        max(left, right) <= dw * (kw - 1)


def _input_grad_by_conv(fn, g):
    """For stride 1 the input gradient is itself a convolution: of the gradient, padded by
    d*(k-1) minus the forward's padding, with the kernels flipped and in/out channels swapped.
    im2col + GEMM this way measured ~1.3x faster than GEMM + col2im (the KH*KW strided adds)
    on 128x16x28x28, 3x3."""
    (kh, kw), _, (dh, dw), _ = fn.geom
    top, bottom, left, right = fn.pads
    groups, wm = fn.groups, fn.wm
    og, cg = wm.shape[1], wm.shape[2] // (kh * kw)
    wf = wm.reshape(groups, og, cg, kh, kw)[..., ::-1, ::-1].transpose(0, 2, 1, 3, 4)
    wf = xp.ascontiguousarray(wf).reshape(groups, cg, og * kh * kw)
    eh, ew = dh * (kh - 1), dw * (kw - 1)
    h, w = fn.x_shape[2:]
    return _correlate(g, (eh - top, eh - bottom, ew - left, ew - right), wf,
                      ((kh, kw), (1, 1), (dh, dw), (h, w)), groups)


# ------------------------------------------------------------------- im2col at inference
# ``fv.optimize_for_inference`` runs the im2col algorithm through ``infer_im2col``: one product per
# chunk of the batch into channel-major output (the plan's layout; see interop/optimize.py), or
# the training kernel's per-sample products where those pay (thresholds below; figures in
# benchmarks/RESULTS.md, "Inference plan: the im2col kernel").
# Bytes of columns per chunk: the fewer the threaded GEMM calls the faster (16 MiB as fast as
# unchunked), and it bounds the columns' memory.
INFER_CHUNK_BYTES = 16 << 20
# Per-sample products of at most this many multiply-adds (O x C*KH*KW x OH*OW) run one thread in
# OpenBLAS (no hand-off), so there (LeNet-5's layers) and with one BLAS thread the training
# kernel's per-sample products, whose columns stay in cache, are taken instead.
SMALL_GEMM_MACS = 65536 * 4
# Products of at most this many multiply-adds (a convolution at batch 1) go in single-thread
# column pieces of SMALL_GEMM_MACS: on a busy machine a hand-off to a thread without a core
# costs milliseconds (resnet20 at batch 1: 315 -> 7.6 ms).
SPLIT_GEMM_MACS = 1 << 23


def _pad_cnhw(x, top, bottom, left, right):
    """x (N, C, H, W) in any layout -> zero padded, stored (C, N, Hp, Wp)."""
    n, c, h, w = x.shape
    buf = xp.zeros((c, n, h + top + bottom, w + left + right), dtype=x.dtype)
    buf[:, :, top:top + h, left:left + w] = x.transpose(1, 0, 2, 3)
    return buf.transpose(1, 0, 2, 3)


def infer_im2col(x, wm, bias, kernel, stride, pads, dilation, epilogue=None):
    """Convolution of x (N, C, H, W), any memory layout, with the packed weight wm (O, C*KH*KW),
    plus bias, then ``epilogue(out)`` (an in-place activation, or None): per chunk of the batch,
    one im2col copy into cols (C*KH*KW, m*OH*OW) and one GEMM straight into the output, stored
    (O, N, OH*OW); returned as an (N, O, OH, OW) view of it."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    o, k = wm.shape
    oh = out_size(h + pads[0] + pads[1], kh, sh, dh)
    ow = out_size(w + pads[2] + pads[3], kw, sw, dw)
    p = oh * ow
    if n > 1 and (o * k * p <= SMALL_GEMM_MACS or blas_threads() == 1):
        # no thread hand-off to save (one BLAS thread, or products OpenBLAS runs on one thread):
        # the training kernel's per-sample products, whose columns stay in cache, are faster
        out = _correlate(x, pads, wm.reshape(1, o, k), (kernel, stride, dilation, (oh, ow)), 1)
        if bias is not None:
            out += bias.reshape(o, 1, 1)
        return epilogue(out) if epilogue is not None else out
    if any(pads):
        x = _pad_cnhw(x, *pads)
    out = xp.empty((o, n, p), dtype=x.dtype)
    pointwise = kh == kw == 1 and sh == sw == 1
    step = max(1, min(n, INFER_CHUNK_BYTES // max(k * p * x.itemsize, 1)))
    for s in range(0, n, step):
        m = min(step, n - s)
        xs = x[s:s + m]
        if pointwise:
            cols = xs.transpose(1, 0, 2, 3).reshape(c, m * p)
        else:
            cols = _wide_cols(xs, kernel, stride, dilation, (oh, ow))  # (k, m * p)
        _gemm(wm, cols, out.reshape(o, n * p) if m == n else out[:, s:s + m].reshape(o, m * p))
    if bias is not None:
        out += bias.reshape(o, 1, 1)
    if epilogue is not None:
        epilogue(out)
    return out.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)


def _gemm(a, b, out):
    """``out[...] = a @ b`` for 2-D arrays; small products on one thread (``SPLIT_GEMM_MACS``)."""
    m, k = a.shape
    n = b.shape[1]
    if not SMALL_GEMM_MACS < m * k * n <= SPLIT_GEMM_MACS or m * k > SMALL_GEMM_MACS \
            or blas_threads() == 1:
        return xp.matmul(a, b, out=out)
    step = SMALL_GEMM_MACS // (m * k)
    for j in range(0, n, step):
        xp.matmul(a, b[:, j:j + step], out=out[:, j:j + step])
    return out


def _suits_anything(geometry) -> bool:
    return True


algorithms.register("conv2d", "im2col", _suits_anything, _Im2col, priority=1000,
                    doc="columns + BLAS products: any convolution (the fallback)")


class ConvTranspose2d(Function):
    """The adjoint of Conv2d with respect to its input: columns = w^T @ x, then col2im.

    The algorithm comes from the registry (``ops.algorithms.select("conv_transpose2d", geometry)``,
    the geometry's weight shape being (C_in, O/groups, KH, KW)): ``nhwc`` (``_nhwc.py``) for
    strided layers on enough channels, else ``cols`` below. Each has ``forward(fn, x, w, b)``
    (batched input, the bias added) and ``backward(fn, g, need_x, need_w)`` -> ``(dx, dw)``."""

    def forward(self, x, w, b=None, *, stride, padding, output_padding, dilation, groups):
        self.unbatched = x.ndim == 3
        if self.unbatched:
            x = x[None]
        n, c, h, wd = x.shape
        _, og, kh, kw = w.shape
        (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
        full = ((h - 1) * sh + dh * (kh - 1) + 1 + output_padding[0],
                (wd - 1) * sw + dw * (kw - 1) + 1 + output_padding[1])
        self.geom = ((kh, kw), stride, dilation, (h, wd))
        self.full, self.padding, self.groups = full, padding, groups
        self.x_shape, self.w_shape, self.has_bias = x.shape, w.shape, b is not None
        self.algorithm = algorithms.select(
            "conv_transpose2d", algorithms.ConvGeometry(
                x.dtype, w.shape, stride, (ph, ph, pw, pw), dilation, groups, batch=n,
                out_hw=(full[0] - 2 * ph, full[1] - 2 * pw)))
        out = self.algorithm.impl.forward(self, x, w, b)
        return out[0] if self.unbatched else out

    backward = Conv2d.backward  # the same: the algorithm's two gradients, the bias's sum


class _TransposeCols:
    """The ``cols`` algorithm of conv_transpose2d (any geometry): NCHW columns w^T @ x, then
    col2im; the input gradient an im2col and a product.

    Without groups the samples of a chunk go side by side, (C, m*H*W), so that each of the three
    products is one BLAS call with m*H*W columns instead of m calls with H*W: a DCGAN generator
    starts from 1x1 noise (H*W = 1: per sample a matrix-vector product, and the weight gradient
    a sum of m outer products) and its next layers have 7x7 and 14x14 inputs."""

    @staticmethod
    def forward(fn, x, w, b):
        n, c, h, wd = x.shape
        _, og, kh, kw = w.shape
        groups, full, (ph, pw) = fn.groups, fn.full, fn.padding
        xm = x.reshape(n, groups, c // groups, h * wd)
        wm = w.reshape(groups, c // groups, og * kh * kw)
        wt = wm.transpose(0, 2, 1)
        out = xp.zeros((n, og * groups) + full, dtype=x.dtype)
        step = _chunk(n, og * groups * kh * kw * h * wd * x.itemsize)
        for s in range(0, n, step):
            if groups == 1:  # the chunk's samples side by side: one product (see _transposed_cols)
                m = min(step, n - s)
                cols = (wt[0] @ _side_by_side(xm[s:s + m, 0])).reshape(-1, m, h, wd)
                col2im(cols.transpose(1, 0, 2, 3), out[s:s + m], *fn.geom)
            else:  # one batched BLAS product per chunk, then col2im
                col2im(xp.matmul(wt, xm[s:s + step]), out[s:s + step], *fn.geom)
        oh, ow = full[0] - 2 * ph, full[1] - 2 * pw
        if ph or pw:
            out = xp.ascontiguousarray(out[:, :, ph:ph + oh, pw:pw + ow])
        if b is not None:
            out += b.reshape(-1, 1, 1)
        fn.xm = xm if fn.needs_input_grad[1] else None
        fn.wm = wm
        return out

    @staticmethod
    def backward(fn, g, nx, nw):
        (ph, pw), full, groups, wm = fn.padding, fn.full, fn.groups, fn.wm
        n, c, h, w = fn.x_shape
        gpad = pad_array(g, ph, full[0] - ph - g.shape[2], pw, full[1] - pw - g.shape[3])
        gx = xp.empty((n, groups, c // groups, h * w), dtype=g.dtype) if nx else None
        gw = xp.zeros(wm.shape, dtype=g.dtype) if nw else None
        step = _chunk(n, wm.shape[0] * wm.shape[2] * h * w * g.itemsize)
        for s in range(0, n, step):
            if groups == 1:  # side by side: (O*KH*KW, m*H*W) columns, one product per gradient
                m = min(step, n - s)
                gcols = _wide_cols(gpad[s:s + m], *fn.geom)  # a col2im's gradient: an im2col
                if nx:
                    gx[s:s + m, 0] = (wm[0] @ gcols).reshape(c, m, h * w).transpose(1, 0, 2)
                if nw:
                    gw[0] += _side_by_side(fn.xm[s:s + m, 0]) @ gcols.T
                continue
            gcols = im2col(gpad[s:s + step], *fn.geom, groups)  # a col2im's gradient is an im2col
            if nx:
                xp.matmul(wm, gcols, out=gx[s:s + step])
            if nw:
                gw += xp.matmul(fn.xm[s:s + step], gcols.transpose(0, 1, 3, 2)).sum(axis=0)
        if nx:
            gx = gx.reshape(fn.x_shape)
        if nw:
            gw = gw.reshape(fn.w_shape)
        return gx, gw


algorithms.register("conv_transpose2d", "cols", _suits_anything, _TransposeCols, priority=1000,
                    doc="NCHW columns + BLAS products: any transposed convolution (the fallback)")


# ------------------------------------------------------------------------------ public functions
def check_conv(fn, x, weight, bias, groups, transposed):
    """Checked (input, weight, bias, groups) of a conv2d / conv_transpose2d call (``fn`` names it
    in the errors)."""
    x = as_tensor_arg(x, fn, "input")
    weight = as_tensor_arg(weight, fn, "weight")
    bias = None if bias is None else as_tensor_arg(bias, fn, "bias")
    shapes = f"input shape {tuple(x.shape)}, weight shape {tuple(weight.shape)}"
    if x.ndim not in (3, 4):
        raise ValueError(f"{fn}: expected a 4-D (N, C, H, W) or 3-D (C, H, W) input, got {x.ndim}-D; "
                         f"{shapes}")
    if weight.ndim != 4:
        layout = "(in_channels, out_channels/groups, kH, kW)" if transposed else \
            "(out_channels, in_channels/groups, kH, kW)"
        raise ValueError(f"{fn}: weight must be 4-D {layout}; {shapes}")
    check_float(x, fn)
    if weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        with_bias = "" if bias is None else f" and bias ({bias.dtype})"
        raise TypeError(f"{fn}: input ({x.dtype}), weight ({weight.dtype}){with_bias} must have "
                        f"the same dtype")
    if isinstance(groups, bool) or not isinstance(groups, (int, xp.integer)) or groups < 1:
        raise ValueError(f"{fn}: groups must be a positive int, got {groups!r}")
    groups = int(groups)
    c = x.shape[-3]
    if transposed:
        if weight.shape[0] != c:
            raise ValueError(f"{fn}: input has {c} channels but weight expects {weight.shape[0]} "
                             f"(in_channels=weight.shape[0]={weight.shape[0]}); {shapes}")
        if c % groups:
            raise ValueError(f"{fn}: in_channels={c} is not divisible by groups={groups}; {shapes}")
        out_channels = weight.shape[1] * groups
    else:
        if weight.shape[0] % groups:
            raise ValueError(f"{fn}: out_channels={weight.shape[0]} is not divisible by "
                             f"groups={groups}; {shapes}")
        if c % groups:
            raise ValueError(f"{fn}: input channels {c} are not divisible by groups={groups}; "
                             f"{shapes}")
        if weight.shape[1] * groups != c:
            raise ValueError(f"{fn}: input has {c} channels but weight expects "
                             f"{weight.shape[1] * groups} (in_channels={weight.shape[1] * groups}, "
                             f"groups={groups}); {shapes}")
        out_channels = weight.shape[0]
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"{fn}: bias has shape {tuple(bias.shape)}, expected ({out_channels},) "
                         f"(one per output channel); {shapes}")
    if min(weight.shape) == 0 or min(x.shape) == 0:
        raise ValueError(f"{fn}: empty input or weight is not supported; {shapes}")
    return x, weight, bias, groups


def _apply(cls, x, weight, bias, **kw):
    if bias is None:
        return cls.apply(x, weight, **kw)
    return cls.apply(x, weight, bias, **kw)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """``F.conv2d``: 2-D cross-correlation of input (N, C, H, W) or (C, H, W) with weight
    (out_channels, C/groups, kH, kW). ``padding``: an int, a pair, ``'valid'`` (none) or ``'same'``
    (output size = input size; an odd total goes one extra to the bottom/right, as PyTorch)."""
    fn = "conv2d"
    x, weight, bias, groups = check_conv(fn, input, weight, bias, groups, transposed=False)
    stride = int_pair(stride, fn, "stride", positive=True)
    dilation = int_pair(dilation, fn, "dilation", positive=True)
    kh, kw = weight.shape[2:]
    eh, ew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{fn}: padding='same' is not supported for strided convolutions "
                                 f"(stride={stride})")
            th, tw = eh - 1, ew - 1
            pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            raise ValueError(f"{fn}: invalid padding string {padding!r}, should be one of "
                             f"'valid', 'same'")
    else:
        ph, pw = int_pair(padding, fn, "padding")
        pads = (ph, ph, pw, pw)
    h, w = x.shape[-2:]
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    if eh > hp or ew > wp:
        raise ValueError(f"{fn}: kernel {kh}x{kw} (dilated {eh}x{ew}) is larger than the padded "
                         f"input {hp}x{wp}")
    return _apply(Conv2d, x, weight, bias, stride=stride, pads=pads, dilation=dilation, groups=groups)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,  # noqa: A002
                     groups=1, dilation=1):
    """``F.conv_transpose2d``: the gradient of conv2d with respect to its input, as a layer.
    weight (in_channels, out_channels/groups, kH, kW); output size per axis
    (H - 1)*stride - 2*padding + dilation*(kH - 1) + output_padding + 1."""
    fn = "conv_transpose2d"
    x, weight, bias, groups = check_conv(fn, input, weight, bias, groups, transposed=True)
    stride = int_pair(stride, fn, "stride", positive=True)
    dilation = int_pair(dilation, fn, "dilation", positive=True)
    if isinstance(padding, str):
        raise ValueError(f"{fn}: padding must be an int or a pair of ints, got {padding!r}")
    padding = int_pair(padding, fn, "padding")
    output_padding = int_pair(output_padding, fn, "output_padding")
    for ax in range(2):
        if output_padding[ax] >= max(stride[ax], dilation[ax]):
            raise ValueError(f"{fn}: output_padding {output_padding} must be smaller than either "
                             f"stride {stride} or dilation {dilation}")
    h, w = x.shape[-2:]
    kh, kw = weight.shape[2:]
    oh = (h - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kh - 1) + output_padding[0] + 1
    ow = (w - 1) * stride[1] - 2 * padding[1] + dilation[1] * (kw - 1) + output_padding[1] + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"{fn}: the output would be {oh}x{ow} (input {h}x{w}, kernel {kh}x{kw}, "
                         f"stride {stride}, padding {padding}, dilation {dilation}); it must be "
                         f"at least 1x1")
    return _apply(ConvTranspose2d, x, weight, bias, stride=stride, padding=padding,
                  output_padding=output_padding, dilation=dilation, groups=groups)
