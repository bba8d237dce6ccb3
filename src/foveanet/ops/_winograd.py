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
enough output tiles in the batch for the weight's transform to pay (``CHANNELS_PER_TILE``),
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
# A call whose batch has fewer 4x4 output tiles than max(C, O) / CHANNELS_PER_TILE goes to
# im2col: the weight's transform (36 O C values, made each call: the weights change every step)
# and the 36 thin products then cost more than the 4x fewer multiply-adds save. Measured
# (forward + backward, ms, Winograd / im2col): 512 channels at 7x7 with 64 tiles 80.7 / 73.1,
# 128 tiles 130.9 / 141.2; 256 at 14x14, 32 tiles 11.3 / 10.6, 64 tiles 15.7 / 19.7; 128 at
# 28x28, 49 tiles 4.5 / 5.3 (benchmarks/RESULTS.md, "Winograd's weight transform").
CHANNELS_PER_TILE = 4
# An inference plan transforms its weights once and serves any batch, so it decides per call
# (``inference_suits``): there the transformed weight (36 C O values, 4x the weight) is read
# once per call, and with very few tiles that read is the cost. Fewer tiles in the call than
# max(C, O) / PLAN_CHANNELS_PER_TILE take im2col's step. Measured (ms, Winograd / im2col, 2
# threads): 512 channels at 7x7, batch 1 (4 tiles) 2.91 / 1.95, batch 4 4.78 / 5.63; 256 at
# 14x14 batch 1 (16 tiles) 1.34 / 1.54 (benchmarks/RESULTS.md, "Winograd in a plan at batch 1").
PLAN_CHANNELS_PER_TILE = 64
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
    fits = (kh, kw) == (3, 3) and tuple(g.stride) == (1, 1) and tuple(g.dilation) == (1, 1) and \
        g.groups == 1 and min(o, c) >= MIN_CHANNELS and max(g.pads) <= 2 and \
        g.dtype in (xp.float32, xp.float64)
    if fits and g.batch and g.out_hw:
        fits = _enough_tiles(g, CHANNELS_PER_TILE)
    return fits


def _enough_tiles(g: algorithms.ConvGeometry, channels_per_tile: int) -> bool:
    """At least max(C, O) / channels_per_tile output tiles in g's batch."""
    o, c = g.weight_shape[:2]
    th, tw = _tiles(*g.out_hw)
    return g.batch * th * tw * channels_per_tile >= max(o, c)


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


def _kron(dtype):
    """(36, 9): row 6a + b, column 3i + j holds G[a, i] G[b, j], so U = G w G^T of one kernel is
    this matrix times the kernel's 9 values, and G^T dU G its transpose times dU's 36."""
    g = xp.asarray(_G, dtype=xp.float64)
    return xp.kron(g, g).astype(dtype)


def transform_weight(w, channels_first=False):
    """U = G w G^T of every (O, C) kernel, as (36, O, C) (``channels_first``: (36, C, O), the
    forward products' operand) in ONE product: kron(G, G) (36 x 9) @ the kernels (9 x O C).
    (NumPy's batched G @ w @ G^T ran 2 O C tiny products: 100 ms for 512 x 512 channels, where
    this takes ~2.)"""
    o, c = w.shape[:2]
    if channels_first:
        w = w.transpose(1, 0, 2, 3)
    flat = xp.ascontiguousarray(w).reshape(-1, 9)
    u = _kron(w.dtype) @ flat.T  # (36, O C): the layout the products read
    return u.reshape(36, c, o) if channels_first else u.reshape(36, o, c)


def weight_gradient(du):
    """dw = G^T dU G of every (O, C) pair of du (36, O, C), as (O, C, 3, 3), in one product."""
    _, o, c = du.shape
    return (du.reshape(36, o * c).T @ _kron(du.dtype)).reshape(o, c, 3, 3)


def forward(x, ut, top: int, left: int, out_hw):
    """Correlate x (N, C, H, W), zero-padded by top / left (and as far as needed at the far
    edges), with the transformed weight ut (36, C, O) (``transform_weight(w, True)``):
    (N, O, *out_hw)."""
    k = _kernels()
    x = xp.ascontiguousarray(x)
    n, c = x.shape[:2]
    o = ut.shape[2]
    oh, ow = out_hw
    th, tw = _tiles(oh, ow)
    out = xp.empty((n, o, oh, ow), dtype=x.dtype)
    step = _step(n, c, o, th * tw, x.itemsize)
    v = xp.empty((36, step * th * tw, c), dtype=x.dtype)
    m = xp.empty((36, step * th * tw, o), dtype=x.dtype)
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
    weight u (36, O, C; None when the input needs no gradient), from its output gradient g, in
    one pass over the chunks sharing dM = A dY A^T:
    dV = U^T dM goes back onto the input through B dV B^T, and dU = sum over tiles of dM V^T
    gives dw = G^T dU G."""
    k = _kernels()
    g = xp.ascontiguousarray(g)
    x = xp.ascontiguousarray(x) if need_w else None
    n, o, oh, ow = g.shape
    c = x.shape[1] if x is not None else u.shape[2]
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
    return gx, weight_gradient(du) if need_w else None


def warm() -> str:
    """Compile (or load from the cache) the transforms for float32 and float64 now: ``make
    install`` runs this, so that no training run waits for the compile."""
    if _kernels() is None:
        return "Winograd convolutions: numba is not installed, 3x3 convolutions use im2col"
    for dt in (xp.float32, xp.float64):
        x, w = xp.ones((1, 1, 4, 4), dtype=dt), xp.ones((1, 1, 3, 3), dtype=dt)
        out = forward(x, transform_weight(w, True), 1, 1, (4, 4))
        backward(x, out, transform_weight(w), 1, 1, (4, 4), True, True)
    return "Winograd convolutions: numba transforms compiled"


kernels.declare(KERNELS, "Winograd convolutions", warm)


class _Winograd:
    """The ``winograd`` algorithm of conv2d (see ``ops.conv.Conv2d`` for the protocol)."""
    adds_bias = False

    @staticmethod
    def forward(fn, x, w, b):
        top, _, left, _ = fn.pads
        fn.w = w if fn.needs_input_grad[0] else None  # transformed again (the other way) in backward
        fn.x = x if fn.needs_input_grad[1] else None  # the input itself, no padded copy
        return forward(x, transform_weight(w, True), top, left, fn.out_hw)

    @staticmethod
    def backward(fn, g, nx, nw):
        if not (nx or nw):  # only the bias wants a gradient (Conv2d sums it)
            return None, None
        top, _, left, _ = fn.pads
        u = transform_weight(fn.w) if nx else None
        return backward(fn.x, g, u, top, left, fn.x_shape[-2:], nx, nw)

    @staticmethod
    def inference_suits(g: algorithms.ConvGeometry) -> bool:
        """Whether a plan's call with g's batch and output size runs this step (else im2col's;
        see ``PLAN_CHANNELS_PER_TILE``)."""
        return _enough_tiles(g, PLAN_CHANNELS_PER_TILE)

    @staticmethod
    def inference(w4, wm, bias, geom):
        """The plan's step: the folded weight transformed once, now; ``run(x)`` adds the bias."""
        u = transform_weight(w4, True)
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
