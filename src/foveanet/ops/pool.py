"""Pooling primitives: max_pool2d (with PyTorch's indices), max_unpool2d, avg_pool2d and
adaptive_avg_pool2d, on NCHW (or unbatched CHW) input, with PyTorch's semantics.

Max and sum over a KH x KW window are separable: reduce along the width (KW strided slices of the
padded input, each a vectorised NumPy operation over every window at once), then along the height
(KH slices of that). So a pooling costs KH + KW passes over the data, never a loop over pixels.
Ties in max pooling go to the first maximum in row-major window order and NaN wins, as PyTorch."""
from __future__ import annotations

from ..autograd import Function, Tensor, is_grad_enabled
from typing import NamedTuple

from ..backend import CPU, Device, xp
from ..backend.cpu import kernels, threads
from . import algorithms
from ._util import as_tensor_arg, check_float, int_pair, pad_array

KERNELS = "foveanet.ops._pool_kernels"


# ------------------------------------------------------------------------------------- helpers
def _tap(a, axis: int, i: int, s: int, d: int, n: int):
    """Tap i of every window along ``axis``: elements i*d, i*d + s, ..., n of them (a view)."""
    idx = [slice(None)] * a.ndim
    idx[axis] = slice(i * d, i * d + s * (n - 1) + 1, s)
    return a[tuple(idx)]


def _max_taps(a, axis, k, s, d, n, track, nan_aware=False):
    """Max over the k taps of each window along ``axis``; with ``track``, also which tap (the first
    one reaching the max; the last NaN when ``nan_aware``, which is PyTorch's rule)."""
    best = _tap(a, axis, 0, s, d, n).copy()
    arg = xp.zeros(best.shape, dtype=xp.int16 if k > 127 else xp.int8) if track else None
    for i in range(1, k):
        v = _tap(a, axis, i, s, d, n)
        if track:
            upd = v > best
            if nan_aware:
                upd |= xp.isnan(v)
            xp.copyto(arg, i, where=upd)
        xp.maximum(best, v, out=best)
    return best, arg


def _sum_taps(a, axis, k, s, n):
    out = _tap(a, axis, 0, s, 1, n).copy()
    for i in range(1, k):
        out += _tap(a, axis, i, s, 1, n)
    return out


def _scatter_taps(g, axis, k, s, size):
    """Adjoint of ``_sum_taps``: add g onto every tap position along ``axis`` of length ``size``."""
    shape = list(g.shape)
    shape[axis] = size
    out = xp.zeros(shape, dtype=g.dtype)
    n = g.shape[axis]
    for i in range(k):
        _tap(out, axis, i, s, 1, n)[...] += g
    return out


def _stride(stride, kernel, fn):
    """PyTorch's default stride is the kernel size (None or an empty sequence)."""
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        return kernel
    return int_pair(stride, fn, "stride", positive=True)


def pool_out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size; in ceil mode the last window must start inside the input or
    its left padding."""
    n = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (n - 1) * s >= size + p:
        n -= 1
    return n


def _pool_args(fn, x, kernel_size, stride, padding, dilation, ceil_mode):
    """Checked (x, kernel, stride, padding, dilation, (OH, OW)) for a pooling call."""
    x = as_tensor_arg(x, fn, "input")
    if x.ndim not in (3, 4):
        raise ValueError(f"{fn}: expected a 4-D (N, C, H, W) or 3-D (C, H, W) input, got shape "
                         f"{tuple(x.shape)}")
    check_float(x, fn)
    kernel = int_pair(kernel_size, fn, "kernel_size", positive=True)
    stride = _stride(stride, kernel, fn)
    padding = int_pair(padding, fn, "padding")
    dilation = int_pair(dilation, fn, "dilation", positive=True)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{fn}: padding {padding} must be at most half the kernel size {kernel}")
    h, w = x.shape[-2:]
    out = (pool_out_size(h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode),
           pool_out_size(w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode))
    if min(out) < 1 or min(x.shape) == 0:
        raise ValueError(f"{fn}: input of shape {tuple(x.shape)} is too small for kernel {kernel} "
                         f"(dilation {dilation}, padding {padding}, stride {stride}): the output "
                         f"would be {out[0]}x{out[1]}")
    return x, kernel, stride, padding, dilation, out


def _padded(x, kernel, stride, padding, dilation, out_hw, value):
    """x with the left/top padding and enough right/bottom padding for the last window."""
    h, w = x.shape[-2:]
    need_h = (out_hw[0] - 1) * stride[0] + dilation[0] * (kernel[0] - 1) + 1
    need_w = (out_hw[1] - 1) * stride[1] + dilation[1] * (kernel[1] - 1) + 1
    return pad_array(x, padding[0], max(need_h - h - padding[0], 0),
                     padding[1], max(need_w - w - padding[1], 0), value)


# ------------------------------------------------------------------------------------- max pool
def _kernels():
    """The compiled tiling-window kernels, or None without numba (then the NumPy passes below)."""
    return kernels.load(KERNELS)


def _tile_argmax(x, kh, kw, best, tap):
    """Max of each KH x KW tile of x (stride = kernel) into ``best`` and which tap (row-major)
    holds the first max into ``tap`` (both (N, C, OH, OW), tap an int8/int16 array).

    The max first (one ``maximum`` per tap), then the winning tap by counting down from the last
    tap: ``tap -= (tap_t == max) * (tap - t)`` leaves the first tap equal to the max, in integer
    arithmetic: about half the time of a masked ``copyto`` per tap, since NumPy's ``where=``
    copies run at about 1 GB/s (figures: benchmarks/RESULTS.md, "Max pooling"). A NaN makes the
    max NaN (no tap equals it); the caller then takes the general path with PyTorch's NaN rule."""
    oh, ow = best.shape[2:]
    taps = [x[:, :, i:i + kh * oh:kh, j:j + kw * ow:kw] for i in range(kh) for j in range(kw)]
    xp.copyto(best, taps[0])
    for v in taps[1:]:
        xp.maximum(best, v, out=best)
    dt = tap.dtype.type
    tap.fill(kh * kw - 1)
    hit = xp.empty(best.shape, dtype=bool)
    for t in range(kh * kw - 2, -1, -1):
        xp.equal(taps[t], best, out=hit)
        tap -= hit * (tap - dt(t))


def _tile_index(tap, kh, kw, w):
    """PyTorch's flat H*W index of each tile's max from the winning tap."""
    oh, ow = tap.shape[2:]
    rows = (xp.arange(oh) * kh).reshape(-1, 1) + tap // kw
    cols = xp.arange(ow) * kw + tap % kw
    return (rows * w + cols).astype(xp.int64)


def warm() -> str:
    """Compile (or load from the cache) the max-pooling kernels for float32 and float64."""
    if _kernels() is None:
        return "max pooling: numba is not installed, NumPy passes instead"
    for dt in (xp.float32, xp.float64):
        x = Tensor._wrap(xp.ones((1, 1, 4, 4), dtype=dt))
        x.requires_grad = True
        max_pool2d(x, 2).sum().backward()
        max_pool2d(x, 3, 2, 1).sum().backward()  # the general windows, with indices
        max_pool2d(x.detach(), 3, 2, 1)  # and values only
        y, i = max_pool2d(x, 2, return_indices=True)
        max_unpool2d(y, i, 2).sum().backward()  # and the unpooling of SegNet's decoder
    return "max pooling: numba kernels compiled"


kernels.declare(KERNELS, "max pooling", warm)


class PoolGeometry(NamedTuple):
    """What the max-pooling algorithms decide on (``padded``: the windows reach past the input)."""
    dtype: object
    kernel: tuple
    stride: tuple
    padded: bool
    dilation: tuple
    device: Device = CPU


def _tiles(g: PoolGeometry) -> bool:
    """The windows tile the input (stride = kernel, no padding, no dilation): the usual 2x2."""
    return not g.padded and tuple(g.dilation) == (1, 1) and tuple(g.stride) == tuple(g.kernel)


# tiling windows keep only which tap won (int8), 1.75x faster than the general path's int64
# indices; the 2x2 tiles in one compiled pass each way (figures: benchmarks/RESULTS.md, "Max
# pooling")
algorithms.register("max_pool2d", "compiled_2x2", lambda g: _tiles(g) and tuple(g.kernel) == (2, 2),
                    priority=10, kernels=KERNELS, doc="2x2 tiles, one compiled pass each way")
algorithms.register("max_pool2d", "tiles", _tiles, priority=20,
                    doc="tiling windows: the winning tap by integer arithmetic (NumPy)")
algorithms.register("max_pool2d", "compiled", lambda g: g.dtype in (xp.float32, xp.float64),
                    priority=30, kernels=KERNELS,
                    doc="any window (padding, overlap, dilation): compiled loops each way")
algorithms.register("max_pool2d", "windows", lambda g: True, priority=1000,
                    doc="any window: separable max along the width, then the height (NumPy)")


class MaxPool2d(Function):
    def forward(self, x, kernel, stride, padding, dilation, out_hw, sink=None):
        self.unbatched = x.ndim == 3
        if self.unbatched:
            x = x[None]
        (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = kernel, stride, padding, dilation, out_hw
        n, c, h, w = x.shape
        self.kernel = kernel
        padded = not (ph == pw == 0 and (oh - 1) * sh + dh * (kh - 1) < h
                      and (ow - 1) * sw + dw * (kw - 1) < w)
        track = sink is not None or (is_grad_enabled() and self.needs_input_grad[0])
        self.algorithm = algorithms.select("max_pool2d", PoolGeometry(x.dtype, kernel, stride,
                                                                      padded, dilation))
        if self.algorithm.name == "compiled":
            return self._compiled(x, kernel, stride, padding, dilation, out_hw, track, sink)
        # no padding needed (e.g. kernel == stride, the windows tiling the input as a
        # (N, C, OH, k, OW, k) reshape): the strided taps below read the input itself, no -inf copy
        xpad = _padded(x, kernel, stride, padding, dilation, out_hw, -xp.inf) if padded else x
        tiling = self.algorithm.name != "windows"
        compiled_2x2 = self.algorithm.name == "compiled_2x2"
        if not track and not compiled_2x2:  # values only: max along the width, then the height
            rows, _ = _max_taps(xpad, 3, kw, sw, dw, ow, False)
            out, _ = _max_taps(rows, 2, kh, sh, dh, oh, False)
            return out[0] if self.unbatched else out
        self.x_shape, self.tap = x.shape, None
        if tiling:
            # windows tiling the input (the usual 2x2 / stride 2): keep only which tap won (int8),
            # faster than the general path's int64 indices
            out = xp.empty((n, c, oh, ow), dtype=x.dtype)
            tap = xp.empty((n, c, oh, ow), dtype=xp.int8 if kh * kw <= 127 else xp.int16)
            # 2x2 with numba: one compiled pass instead of 4 max + 3 compare passes; also for
            # values only (inference), instead of NumPy's four max passes (figures:
            # benchmarks/RESULTS.md, "Max pooling")
            if compiled_2x2:
                nans = []
                x3, out3, tap3 = (xp.ascontiguousarray(x).reshape(n * c, h, w),
                                  out.reshape(n * c, oh, ow), tap.reshape(n * c, oh, ow))
                threads.split(lambda lo, hi: nans.append(
                    _kernels().max_2x2(x3, out3, tap3, lo, hi)), n * c, x.nbytes)
                nan = any(nans)
                if not track and not nan:
                    return out[0] if self.unbatched else out
            else:
                threads.split(lambda lo, hi: _tile_argmax(x[lo:hi], kh, kw, out[lo:hi],
                                                          tap[lo:hi]), n, x.nbytes)
                nan = xp.isnan(out).any()
            if not nan:  # NaN present: the general path has PyTorch's NaN rule
                self.tap = tap
                if sink is not None:
                    sink.append(_tile_index(tap, kh, kw, w)[0 if self.unbatched else slice(None)])
                return out[0] if self.unbatched else out
        geometry = (x.shape, kernel, stride, padding, dilation, out_hw, padded)
        out, idx = self._argmax(xpad, *geometry, nan_aware=False)
        if xp.isnan(out).any():  # NaN present: redo the taps with PyTorch's NaN-wins rule
            out, idx = self._argmax(xpad, *geometry, nan_aware=True)
        self.idx = idx
        # windows that do not overlap send each input pixel at most one gradient: a scatter-assign
        self.disjoint = sh >= dh * (kh - 1) + 1 and sw >= dw * (kw - 1) + 1
        if sink is not None:
            sink.append(idx[0] if self.unbatched else idx)
        return out[0] if self.unbatched else out

    def _compiled(self, x, kernel, stride, padding, dilation, out_hw, track, sink):
        """The ``compiled`` algorithm: one pass over the input, no padded copy; with ``track``
        also the indices (PyTorch's, NaN rule included) that the backward scatters through."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = kernel, stride, padding, dilation, out_hw
        n, c, h, w = x.shape
        k, p = _kernels(), n * c
        x3 = xp.ascontiguousarray(x).reshape(p, h, w)
        out = xp.empty((n, c, oh, ow), dtype=x.dtype)
        out3 = out.reshape(p, oh, ow)
        if not track:
            threads.split(lambda lo, hi: k.max_windows_values(
                x3, kh, kw, sh, sw, ph, pw, dh, dw, xp.empty((h, ow), dtype=x.dtype), out3,
                lo, hi), p, x.nbytes)
            return out[0] if self.unbatched else out
        idx = xp.empty((n, c, oh, ow), dtype=xp.int64)
        idx3 = idx.reshape(p, oh, ow)
        threads.split(lambda lo, hi: k.max_windows(x3, kh, kw, sh, sw, ph, pw, dh, dw, out3, idx3,
                                                   lo, hi), p, x.nbytes)
        self.x_shape, self.tap, self.idx = x.shape, None, idx
        if sink is not None:
            sink.append(idx[0] if self.unbatched else idx)
        return out[0] if self.unbatched else out

    @staticmethod
    def _argmax(xpad, x_shape, kernel, stride, padding, dilation, out_hw, padded, nan_aware):
        """Max and PyTorch's flat H*W index of the (first) maximum of every window."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = kernel, stride, padding, dilation, out_hw
        h, w = x_shape[2:]
        rows, tap_w = _max_taps(xpad, 3, kw, sw, dw, ow, True, nan_aware)  # (N, C, Hp, OW)
        out, tap_h = _max_taps(rows, 2, kh, sh, dh, oh, True, nan_aware)  # (N, C, OH, OW)
        # the winning row (padded coordinates), then the winning column tap of that row
        r = (xp.arange(oh) * sh).reshape(oh, 1) + tap_h.astype(xp.int64) * dh
        col_tap = xp.take_along_axis(tap_w, r, axis=2)
        idx = (r - ph) * w + (xp.arange(ow) * sw - pw) + col_tap.astype(xp.int64) * dw
        if padded and xp.isneginf(out).any():
            # a window whose values are all -inf: PyTorch points at its first in-image position
            h0 = xp.arange(oh) * sh - ph
            w0 = xp.arange(ow) * sw - pw
            h0 = xp.where(h0 < 0, h0 + dh * (-(h0 // dh)), h0)
            w0 = xp.where(w0 < 0, w0 + dw * (-(w0 // dw)), w0)
            idx = xp.where(xp.isneginf(out), h0.reshape(-1, 1) * w + w0, idx)
        return out, idx.astype(xp.int64, copy=False)

    def backward(self, g):
        n, c, h, w = self.x_shape
        if self.tap is not None:  # tiling windows: each tap's winners get their window's gradient
            kh, kw = self.kernel
            oh, ow = self.tap.shape[2:]
            g4, tap = (g[None] if self.unbatched else g), self.tap
            if self.algorithm.name == "compiled_2x2":  # compiled: 4 passes -> 1, ~2.5x faster
                gx = xp.empty(self.x_shape, dtype=g.dtype)
                g3 = xp.ascontiguousarray(g4).reshape(n * c, oh, ow)
                tap3, gx3 = tap.reshape(n * c, oh, ow), gx.reshape(n * c, h, w)
                threads.split(lambda lo, hi: _kernels().max_2x2_grad(g3, tap3, gx3, lo, hi),
                              n * c, gx.nbytes)
                return gx[0] if self.unbatched else gx
            gx = xp.zeros(self.x_shape, dtype=g.dtype)

            def part(lo, hi):
                for t in range(kh * kw):
                    i, j = divmod(t, kw)
                    xp.multiply(g4[lo:hi], tap[lo:hi] == t,
                                out=gx[lo:hi, :, i:i + kh * oh:kh, j:j + kw * ow:kw])

            threads.split(part, n, gx.nbytes)
            return gx[0] if self.unbatched else gx
        if self.algorithm.name == "compiled":
            g3 = xp.ascontiguousarray(g).reshape(n * c, -1)
            idx3 = self.idx.reshape(n * c, -1)
            gx = xp.empty((n * c, h * w), dtype=g.dtype)
            threads.split(lambda lo, hi: _kernels().max_windows_grad(g3, idx3, gx, lo, hi),
                          n * c, gx.nbytes)
            gx = gx.reshape(self.x_shape)
            return gx[0] if self.unbatched else gx
        g = g.reshape(n * c, -1)
        idx = self.idx.reshape(n * c, -1)
        if self.disjoint:  # one window per pixel at most: assign, no accumulation needed
            gx = xp.zeros((n * c, h * w), dtype=g.dtype)
            valid = (idx >= 0) & (idx < h * w)
            if not valid.all():  # windows without an in-image pixel send their gradient nowhere
                g, idx = xp.where(valid, g, 0), xp.where(valid, idx, 0)
            xp.put_along_axis(gx, idx, g, axis=1)
        else:  # overlapping windows: one bincount over all planes adds the shared contributions
            valid = (idx >= 0) & (idx < h * w)
            flat = idx + (xp.arange(n * c, dtype=xp.int64) * (h * w)).reshape(-1, 1)
            if not valid.all():
                g, flat = g[valid], flat[valid]
            gx = xp.bincount(flat.ravel(), weights=g.ravel(), minlength=n * c * h * w).astype(g.dtype)
        gx = gx.reshape(self.x_shape)
        return gx[0] if self.unbatched else gx


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,  # noqa: A002
               return_indices=False):
    """``F.max_pool2d``. Padding counts as -inf; with ``return_indices`` also returns the flat index
    (into each H*W plane, int64) of every window's maximum, which ``max_unpool2d`` takes."""
    x, kernel, stride, padding, dilation, out_hw = _pool_args(
        "max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode)
    if not return_indices:
        return MaxPool2d.apply(x, kernel, stride, padding, dilation, out_hw)
    sink = []
    out = MaxPool2d.apply(x, kernel, stride, padding, dilation, out_hw, sink=sink)
    return out, Tensor._wrap(sink[0])


class MaxUnpool2d(Function):
    def forward(self, x, idx, out_hw):
        self.unbatched = x.ndim == 3
        if self.unbatched:
            x, idx = x[None], idx[None]
        n, c = x.shape[:2]
        self.idx, self.x_shape = idx.reshape(n * c, -1), x.shape
        k = _kernels()
        self.compiled = k is not None and x.dtype in (xp.float32, xp.float64) and n * c > 0
        if self.compiled:  # one pass per plane: zeros, then the scatter (NumPy's: 3-4x slower)
            x2 = xp.ascontiguousarray(x).reshape(n * c, -1)
            self.idx = xp.ascontiguousarray(self.idx, dtype=xp.int64)
            out = xp.empty((n * c, out_hw[0] * out_hw[1]), dtype=x.dtype)
            bad = []
            threads.split(lambda lo, hi: bad.append(k.unpool(x2, self.idx, out, lo, hi)), n * c,
                          out.nbytes)
            if max(bad) >= 0:
                raise IndexError(f"max_unpool2d: an index of plane {max(bad)} is outside its "
                                 f"{out_hw[0]}x{out_hw[1]} output (the indices must come from "
                                 "max_pool2d(return_indices=True) of a matching input)")
        else:
            out = xp.zeros((n * c, out_hw[0] * out_hw[1]), dtype=x.dtype)
            xp.put_along_axis(out, self.idx, x.reshape(n * c, -1), axis=1)
        out = out.reshape((n, c) + tuple(out_hw))
        return out[0] if self.unbatched else out

    def backward(self, g):
        n, c = self.x_shape[:2]
        g2 = xp.ascontiguousarray(g).reshape(n * c, -1)
        if self.compiled and g2.dtype in (xp.float32, xp.float64):
            gx = xp.empty(self.idx.shape, dtype=g2.dtype)
            k = _kernels()
            threads.split(lambda lo, hi: k.unpool_grad(g2, self.idx, gx, lo, hi), n * c, g2.nbytes)
            gx = gx.reshape(self.x_shape)
        else:
            gx = xp.take_along_axis(g2, self.idx, axis=1).reshape(self.x_shape)
        return (gx[0] if self.unbatched else gx), None, None


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):  # noqa: A002
    """``F.max_unpool2d``: put every value at its ``indices`` position of a zero (OH, OW) plane,
    OH = (H - 1)*stride - 2*padding + kernel unless ``output_size`` says otherwise."""
    fn = "max_unpool2d"
    x = as_tensor_arg(input, fn, "input")
    indices = as_tensor_arg(indices, fn, "indices")
    if x.ndim not in (3, 4):
        raise ValueError(f"{fn}: expected a 4-D (N, C, H, W) or 3-D (C, H, W) input, got shape "
                         f"{tuple(x.shape)}")
    check_float(x, fn)
    if not xp.issubdtype(indices.dtype, xp.integer):
        raise TypeError(f"{fn}: indices must be an integer tensor, got {indices.dtype}")
    if tuple(indices.shape) != tuple(x.shape):
        raise ValueError(f"{fn}: indices of shape {tuple(indices.shape)} do not match the input of "
                         f"shape {tuple(x.shape)}")
    kernel = int_pair(kernel_size, fn, "kernel_size", positive=True)
    stride = _stride(stride, kernel, fn)
    padding = int_pair(padding, fn, "padding")
    h, w = x.shape[-2:]
    default = ((h - 1) * stride[0] + kernel[0] - 2 * padding[0],
               (w - 1) * stride[1] + kernel[1] - 2 * padding[1])
    if output_size is None:
        out_hw = default
    else:
        size = tuple(int(s) for s in output_size)
        if len(size) == 4:
            size = size[-2:]
        if len(size) != 2:
            raise ValueError(f"{fn}: output_size should hold 2 (or 4) sizes, got "
                             f"{tuple(output_size)}")
        for ax in range(2):
            lo, hi = default[ax] - stride[ax], default[ax] + stride[ax]
            if not lo < size[ax] < hi:
                raise ValueError(f"{fn}: invalid output_size {size} for input of shape "
                                 f"{tuple(x.shape)}: dim {ax} must be between {lo} and {hi} "
                                 f"(exclusive)")
        out_hw = size
    if min(out_hw) < 1:
        raise ValueError(f"{fn}: the output would be {out_hw[0]}x{out_hw[1]} for input of shape "
                         f"{tuple(x.shape)}")
    idx = indices.data.astype(xp.int64, copy=False)
    if idx.size and (idx.min() < 0 or idx.max() >= out_hw[0] * out_hw[1]):
        bad = idx.min() if idx.min() < 0 else idx.max()
        raise ValueError(f"{fn}: index {bad} is out of range for an output plane of "
                         f"{out_hw[0]}x{out_hw[1]}; input shape {tuple(x.shape)}")
    return MaxUnpool2d.apply(x, idx, out_hw)


# ------------------------------------------------------------------------------------- avg pool
def window_counts(size, n_out, k, s, p, include_pad):
    """Per-axis number of elements PyTorch divides by (window clipped to the padded, or the
    unpadded input)."""
    start = xp.arange(n_out) * s - p
    end = xp.minimum(start + k, size + p)
    if include_pad:
        return end - start
    return xp.minimum(end, size) - xp.maximum(start, 0)


class AvgPool2d(Function):
    def forward(self, x, kernel, stride, padding, out_hw, count_include_pad, divisor_override):
        self.unbatched = x.ndim == 3
        if self.unbatched:
            x = x[None]
        (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out_hw
        n, c, h, w = x.shape
        if (kh, kw) == (h, w) and (oh, ow) == (1, 1) and ph == pw == 0:  # one window per plane:
            # global pooling as one matrix-vector product of the planes as rows with ones (the
            # divisor below applied after); resnet20's head at batch 256 2.2 -> 0.3 ms (the
            # taps' passes run over 8-long rows)
            out = x.reshape(n * c, h * w) @ xp.ones(h * w, dtype=x.dtype)
            out = out.reshape(n, c, 1, 1)
            xpad = x
        else:
            xpad = _padded(x, kernel, stride, padding, (1, 1), out_hw, 0)
            out = _sum_taps(_sum_taps(xpad, 2, kh, sh, oh), 3, kw, sw, ow)  # height, then width
        if divisor_override:
            scale = xp.asarray(1.0 / divisor_override, dtype=x.dtype)
        else:
            ch = window_counts(h, oh, kh, sh, ph, count_include_pad)
            cw = window_counts(w, ow, kw, sw, pw, count_include_pad)
            scale = (1.0 / (ch.reshape(-1, 1) * cw)).astype(x.dtype)
        out *= scale
        self.scale, self.x_shape, self.xpad_shape = scale, x.shape, xpad.shape
        self.kernel, self.stride, self.padding = kernel, stride, padding
        return out[0] if self.unbatched else out

    def backward(self, g):
        if self.unbatched:
            g = g[None]
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        n, c, h, w = self.x_shape
        g = g * self.scale
        if kh == sh and kw == sw and ph == pw == 0:
            # kernel == stride, no padding: each window's share is broadcast over a (kh, kw) block
            oh, ow = g.shape[2:]
            block = xp.broadcast_to(g[:, :, :, None, :, None], (n, c, oh, kh, ow, kw))
            gx = block.reshape(n, c, oh * kh, ow * kw)
            if (oh * kh, ow * kw) != (h, w):
                gx = pad_array(gx, 0, max(h - oh * kh, 0), 0, max(w - ow * kw, 0))[:, :, :h, :w]
        else:
            hp, wp = self.xpad_shape[2:]
            gx = _scatter_taps(_scatter_taps(g, 3, kw, sw, wp), 2, kh, sh, hp)
            gx = gx[:, :, ph:ph + h, pw:pw + w]
        return gx[0] if self.unbatched else gx


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,  # noqa: A002
               count_include_pad=True, divisor_override=None):
    """``F.avg_pool2d``: window means, padding counted as zeros unless ``count_include_pad`` is
    False; ``divisor_override`` replaces the window size as the divisor."""
    fn = "avg_pool2d"
    x, kernel, stride, padding, _, out_hw = _pool_args(fn, input, kernel_size, stride, padding, 1,
                                                      ceil_mode)
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, xp.integer)) \
                or divisor_override == 0:
            raise ValueError(f"{fn}: divisor_override must be a non-zero int, got "
                             f"{divisor_override!r}")
    return AvgPool2d.apply(x, kernel, stride, padding, out_hw, bool(count_include_pad),
                           None if divisor_override is None else int(divisor_override))


# ---------------------------------------------------------------------------------- adaptive avg
def adaptive_matrix(size: int, n_out: int, dtype):
    """(n_out, size) matrix averaging PyTorch's windows [floor(i*size/n), ceil((i+1)*size/n))."""
    i = xp.arange(n_out)
    start = (i * size) // n_out
    end = -((-(i + 1) * size) // n_out)
    j = xp.arange(size)
    inside = (j >= start[:, None]) & (j < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


class AdaptiveAvgPool2d(Function):
    """out = A_h @ x @ A_w^T per plane, two BLAS products (windows of varying size)."""

    def forward(self, x, out_hw):
        self.unbatched = x.ndim == 3
        if self.unbatched:
            x = x[None]
        n, c, h, w = x.shape
        oh, ow = out_hw
        self.ah, self.aw = adaptive_matrix(h, oh, x.dtype), adaptive_matrix(w, ow, x.dtype)
        y = (x.reshape(-1, w) @ self.aw.T).reshape(n, c, h, ow)  # average along the width
        z = xp.ascontiguousarray(y.transpose(0, 1, 3, 2)).reshape(-1, h) @ self.ah.T
        out = xp.ascontiguousarray(z.reshape(n, c, ow, oh).transpose(0, 1, 3, 2))
        self.x_shape = x.shape
        return out[0] if self.unbatched else out

    def backward(self, g):
        if self.unbatched:
            g = g[None]
        n, c, h, w = self.x_shape
        oh, ow = g.shape[2:]
        gy = xp.ascontiguousarray(g.transpose(0, 1, 3, 2)).reshape(-1, oh) @ self.ah  # (.., ow, h)
        gy = xp.ascontiguousarray(gy.reshape(n, c, ow, h).transpose(0, 1, 3, 2))
        gx = (gy.reshape(-1, ow) @ self.aw).reshape(n, c, h, w)
        return gx[0] if self.unbatched else gx


def adaptive_avg_pool2d(input, output_size):  # noqa: A002
    """``F.adaptive_avg_pool2d``: output_size an int or a pair (None keeps that input size);
    window i along an axis covers [floor(i*in/out), ceil((i+1)*in/out))."""
    fn = "adaptive_avg_pool2d"
    x = as_tensor_arg(input, fn, "input")
    if x.ndim not in (3, 4):
        raise ValueError(f"{fn}: expected a 4-D (N, C, H, W) or 3-D (C, H, W) input, got shape "
                         f"{tuple(x.shape)}")
    check_float(x, fn)
    h, w = x.shape[-2:]
    if isinstance(output_size, (int, xp.integer)) and not isinstance(output_size, bool):
        size = (int(output_size), int(output_size))
    else:
        try:
            size = tuple(output_size)
        except TypeError:
            raise TypeError(f"{fn}: output_size must be an int or a pair, got "
                            f"{output_size!r}") from None
        if len(size) != 2:
            raise ValueError(f"{fn}: output_size must be an int or a pair, got {output_size!r}")
        size = (h if size[0] is None else int(size[0]), w if size[1] is None else int(size[1]))
    if min(size) < 1 or min(x.shape) == 0:
        raise ValueError(f"{fn}: output_size {size} must be positive and the input non-empty; "
                         f"input shape {tuple(x.shape)}")
    if h % size[0] == 0 and w % size[1] == 0:  # equal windows: an ordinary average pool
        k = (h // size[0], w // size[1])
        return AvgPool2d.apply(x, k, k, (0, 0), size, True, None)
    return AdaptiveAvgPool2d.apply(x, size)
