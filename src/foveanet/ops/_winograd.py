"""Winograd F(4x4, 3x3): 3x3 stride-1 convolutions with 4x fewer multiply-adds than im2col's.

What. Each 4x4 block of outputs is computed from the 6x6 input tile d under it as
``Y = A^T [U . V] A`` with ``V = B^T d B`` (the input transform) and ``U = G w G^T`` (the weight
transform), where ``.`` is the element-wise product and the sum over input channels happens
inside it (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). So the
convolution becomes 36 independent products, one per tile position k: 36 multiply-adds per 16
outputs per channel pair where im2col needs 9 per output, and the transformed input is 2.25x the
input where im2col's columns are 9x. The transformed arrays are kept channel-minor, (36, tiles,
channels), so the products are ``V[k] (tiles x C) @ U[k]^T (C x O)``: OpenBLAS runs that
orientation 1.35-1.45x faster than ``U[k] (O x C) @ V[k] (C x tiles)`` on these thin shapes
(benchmarks/RESULTS.md, "Winograd convolutions"). The backward uses the
same pieces transposed, sharing ``dM = A dY A^T`` of the output gradient dY: the input gradient
is ``B dV B^T`` of ``dV[k] = U[k]^T dM[k]``, added back at each tile's place, and the weight
gradient is ``G^T dU G`` with ``dU[k] = sum over tiles of dM[k] V[k]^T``: 36 products whose inner
dimension is the number of tiles (long, so BLAS runs them well).

How. The transforms are loops over 6x6 tiles, which NumPy cannot express without passes several
times the data's size, so they are compiled with numba (``_winograd_kernels``; ``cache=True``:
the first convolution on a machine waits ~4 s for the compile, later processes ~0.5 s to load
it). They take one sample at a time, with its channels innermost (so that each step of a
tile's transform is vectorised over the channels), run on slices of the samples on the engine's
threads (``threads.split``; numba's own thread pool is not used), and read the input through
a zeroed buffer so that padding costs no pass of its own. The batch goes through
in equal chunks of at most ``CHUNK_BYTES`` of transformed arrays (larger than the CPU cache:
long products pay more than cached ones here). Products stay in NumPy's BLAS. float32 results differ from
im2col's by a few 1e-6 relative (the transforms' constants 4, 5, 8 and 1/24 round), float64's
by 1e-15.

When. The ``winograd`` entry of the algorithm registry (``ops.algorithms``), after ``direct``
(which takes the 3x3 layers with at most 150 taps per output, i.e. 16 input channels): ``suits``
wants 3x3 kernels, stride 1, no dilation, no groups, padding at most 2 on each side, at least
``MIN_CHANNELS`` input and output channels (below that the 36 products are too thin for BLAS),
float32 or float64, and the compiled transforms. Figures: benchmarks/RESULTS.md, "Winograd
convolutions".
"""
from __future__ import annotations

from ..backend import xp
from ..backend.cpu import kernels, threads
from . import algorithms

KERNELS = "foveanet.ops._winograd_kernels"

# input and output channels both at least this: below it (cnn-bn's 1->32, resnet20's 3->16) the
# 36 products were slower than im2col's one (figures: benchmarks/RESULTS.md, "Winograd
# convolutions")
MIN_CHANNELS = 16
# Bytes of transformed input + products per chunk of samples. Unlike im2col's columns these need
# not stay in the CPU cache: longer products matter more. On the AVX2 machine of 2026-11-28 16
# MiB beat 4 and 8 on resnet20's steps; on this AVX-512 one, with the faster transforms, 8 MiB
# beat 16 and 4 (cnn-bn training 1.02 -> 1.10-1.16x PyTorch; figures: benchmarks/RESULTS.md,
# "Winograd convolutions" and "Winograd's channel loops").
CHUNK_BYTES = 8 << 20

# G (6x3) of F(4x4, 3x3) with the interpolation points 0, 1, -1, 2, -2 and infinity
_G = ((1 / 4, 0.0, 0.0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0.0, 0.0, 1.0))


def _kernels():
    """The compiled transforms, or None when numba cannot be imported."""
    return kernels.load(KERNELS)


def suits(g: algorithms.ConvGeometry) -> bool:
    """Whether a convolution takes the Winograd path (see the module's docstring)."""
    o, c, kh, kw = g.weight_shape
    return (kh, kw) == (3, 3) and tuple(g.stride) == (1, 1) and tuple(g.dilation) == (1, 1) and \
        g.groups == 1 and min(o, c) >= MIN_CHANNELS and max(g.pads) <= 2 and \
        g.dtype in (xp.float32, xp.float64)


def _tiles(oh: int, ow: int):
    return -(-oh // 4), -(-ow // 4)


def _step(n: int, c: int, o: int, tiles: int, itemsize: int) -> int:
    """Samples per chunk: at most CHUNK_BYTES' worth, the batch cut into equal chunks (113 + 15
    samples would run a thin last product)."""
    most = max(1, min(n, CHUNK_BYTES // (36 * (c + o) * tiles * itemsize)))
    chunks = -(-n // most)
    return -(-n // chunks)


def _samples(kernel, samples: int, nbytes: int, *args) -> None:
    """``kernel(*args, lo, hi)`` over the samples [0, samples), split over the engine's threads."""
    threads.split(lambda lo, hi: kernel(*args, lo, hi), samples, nbytes)


def transform_weight(w):
    """U = G w G^T of every (O, C) kernel, as (36, O, C) for the products."""
    g = xp.asarray(_G, dtype=w.dtype)
    o, c = w.shape[:2]
    u = g @ w @ g.T  # (O, C, 6, 6)
    return xp.ascontiguousarray(u.reshape(o, c, 36).transpose(2, 0, 1))


def forward(x, u, top: int, left: int, out_hw):
    """Correlate x (N, C, H, W), zero-padded by top / left (and as far as needed at the far
    edges), with the transformed weight u (36, O, C): (N, O, *out_hw)."""
    k = _kernels()
    x = xp.ascontiguousarray(x)
    n, c = x.shape[:2]
    o = u.shape[1]
    oh, ow = out_hw
    th, tw = _tiles(oh, ow)
    out = xp.empty((n, o, oh, ow), dtype=x.dtype)
    step = _step(n, c, o, th * tw, x.itemsize)
    v = xp.empty((36, step * th * tw, c), dtype=x.dtype)
    m = xp.empty((36, step * th * tw, o), dtype=x.dtype)
    ut = xp.ascontiguousarray(u.transpose(0, 2, 1))
    for s in range(0, n, step):
        e = min(n, s + step)
        t = (e - s) * th * tw
        vs, ms = v[:, :t], m[:, :t]
        _samples(k.input_transform, e - s, vs.nbytes, x[s:e], top, left, th, tw, vs)
        xp.matmul(vs, ut, out=ms)
        _samples(k.output_transform, e - s, ms.nbytes, ms, th, tw, out[s:e])
    return out


def backward(x, g, u, top: int, left: int, in_hw, need_x: bool, need_w: bool):
    """The input gradient (N, C, *in_hw) and the weight gradient (O, C, 3, 3) of the stride-1
    convolution of x (padding top / left; None when the weight needs no gradient) with transformed
    weight u, from its output gradient g, in one pass over the chunks sharing dM = A dY A^T:
    dV = U^T dM goes back onto the input through B dV B^T, and dU = sum over tiles of dM V^T
    gives dw = G^T dU G."""
    k = _kernels()
    g = xp.ascontiguousarray(g)
    x = xp.ascontiguousarray(x) if need_w else None
    n, o, oh, ow = g.shape
    c = u.shape[2]
    th, tw = _tiles(oh, ow)
    step = _step(n, c, o, th * tw, g.itemsize)
    v = xp.empty((36, step * th * tw, c), dtype=g.dtype)
    dm = xp.empty((36, step * th * tw, o), dtype=g.dtype)
    gx = xp.empty((n, c) + tuple(in_hw), dtype=g.dtype) if need_x else None
    du = xp.zeros((36, o, c), dtype=g.dtype) if need_w else None
    part = xp.empty((36, o, c), dtype=g.dtype)
    for s in range(0, n, step):
        e = min(n, s + step)
        t = (e - s) * th * tw
        vs, ms = v[:, :t], dm[:, :t]
        _samples(k.output_adjoint, e - s, ms.nbytes, g[s:e], th, tw, ms)
        if need_w:
            _samples(k.input_transform, e - s, vs.nbytes, x[s:e], top, left, th, tw, vs)
            du += xp.matmul(ms.transpose(0, 2, 1), vs, out=part)
        if need_x:
            xp.matmul(ms, u, out=vs)
            _samples(k.input_adjoint, e - s, vs.nbytes, vs, top, left, th, tw, gx[s:e])
    gw = None
    if need_w:
        gm = xp.asarray(_G, dtype=g.dtype)
        gw = gm.T @ du.transpose(1, 2, 0).reshape(o, c, 6, 6) @ gm
    return gx, gw


def warm() -> str:
    """Compile (or load from the cache) the transforms for float32 and float64 now: ``make
    install`` runs this, so that no training run waits for the compile."""
    if _kernels() is None:
        return "Winograd convolutions: numba is not installed, 3x3 convolutions use im2col"
    for dt in (xp.float32, xp.float64):
        x, w = xp.ones((1, 1, 4, 4), dtype=dt), xp.ones((1, 1, 3, 3), dtype=dt)
        u = transform_weight(w)
        backward(x, forward(x, u, 1, 1, (4, 4)), u, 1, 1, (4, 4), True, True)
    return "Winograd convolutions: numba transforms compiled"


kernels.declare(KERNELS, "Winograd convolutions", warm)


class _Winograd:
    """The ``winograd`` algorithm of conv2d (see ``ops.conv.Conv2d`` for the protocol)."""
    adds_bias = False

    @staticmethod
    def forward(fn, x, w, b):
        top, _, left, _ = fn.pads
        fn.u = transform_weight(w)
        fn.x = x if fn.needs_input_grad[1] else None  # the input itself, no padded copy
        return forward(x, fn.u, top, left, fn.out_hw)

    @staticmethod
    def backward(fn, g, nx, nw):
        top, _, left, _ = fn.pads
        return backward(fn.x, g, fn.u, top, left, fn.x_shape[-2:], nx, nw)

    @staticmethod
    def inference(w4, wm, bias, geom):
        """The plan's step: the folded weight transformed once, now; ``run(x)`` adds the bias."""
        u = transform_weight(w4)
        top, bottom, left, right = geom.pads

        def run(x):
            h, w = x.shape[2:]
            out = forward(x, u, top, left, (h + top + bottom - 2, w + left + right - 2))
            if bias is not None:
                out += bias.reshape(-1, 1, 1)
            return out
        return run


algorithms.register("conv2d", "winograd", suits, _Winograd, priority=20, kernels=KERNELS,
                    doc="3x3 stride-1 convolutions as Winograd F(4x4, 3x3)")
