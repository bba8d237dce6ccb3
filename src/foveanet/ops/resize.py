"""Nearest-neighbour resizing: ``resize_nearest`` (any source index per output position, axis by
axis) and ``interpolate_nearest`` (PyTorch's ``F.interpolate`` with ``mode='nearest'`` or
``'nearest-exact'``).

Nearest-neighbour resizing copies input elements: along each resized axis, output position ``i``
takes input position ``idx[i]``. So the forward pass is one gather (``take``) per axis, and the
backward pass is its adjoint, a scatter-add per axis in reverse order: every input element receives
the sum of the gradients of the output elements that copied it (four of them for a 2x upsampling in
both axes; zero or one when downsampling). How the index maps are computed (PyTorch's rule, or ONNX
Resize's coordinate transformations and rounding modes) is the caller's business; the primitive only
moves values, which is why it is exact in any dtype.

The ONNX importer (``foveanet.interop.onnx_import``) uses it for Upsample and Resize (nearest).
"""
from __future__ import annotations

import math

from ..autograd import Function, Tensor
from ..backend import xp
from ._util import norm_axis


def _scatter_add(g, idx, axis: int, size: int):
    """The adjoint of ``take(x, idx, axis)`` for an input of length ``size`` along ``axis``.

    When ``idx`` never decreases (every resize rule gives such maps) the copies of one input element
    are a contiguous run of output positions, and one ``add.reduceat`` sums every run at once;
    otherwise ``add.at`` adds position by position."""
    if idx.size == 0:
        shape = list(g.shape)
        shape[axis] = size
        return xp.zeros(shape, dtype=g.dtype)
    if idx.size == 1 or bool((idx[1:] >= idx[:-1]).all()):
        starts = xp.flatnonzero(xp.concatenate(([True], idx[1:] != idx[:-1])))
        sums = xp.add.reduceat(g, starts, axis=axis)
        src = idx[starts]
        if src.size == size:  # every input element was copied at least once (upsampling)
            return sums
        shape = list(g.shape)
        shape[axis] = size
        out = xp.zeros(shape, dtype=g.dtype)
        where = [slice(None)] * g.ndim
        where[axis] = src
        out[tuple(where)] = sums
        return out
    moved = xp.moveaxis(g, axis, 0)
    out = xp.zeros((size,) + moved.shape[1:], dtype=g.dtype)
    xp.add.at(out, idx, moved)
    return xp.moveaxis(out, 0, axis)


class NearestResize(Function):
    """out = x gathered along each listed axis: out[..., i, ...] = x[..., idx[i], ...].

    ``maps`` is a tuple of (axis, index array) pairs; backward scatters the gradient back along the
    same maps in reverse order (see ``_scatter_add``)."""

    def forward(self, x, maps):
        self.maps, self.sizes = maps, []
        for axis, idx in maps:
            self.sizes.append(x.shape[axis])
            x = xp.take(x, idx, axis=axis)
        return x

    def backward(self, g):
        for (axis, idx), size in zip(reversed(self.maps), reversed(self.sizes)):
            g = _scatter_add(g, idx, axis, size)
        return g, None


def resize_nearest(input, indices):  # noqa: A002
    """Gather ``input`` along some axes: ``indices`` maps an axis to a 1-D integer array of source
    positions, one per output position (values in ``[0, size of that axis)``). The result has
    ``len(indices[axis])`` elements along each listed axis and is differentiable with respect to
    ``input``.

    Example: ``resize_nearest(x, {2: [0, 0, 1, 1], 3: [0, 0, 1, 1]})`` upsamples a (N, C, 2, 2)
    tensor to (N, C, 4, 4) by copying each pixel into a 2x2 block."""
    x = input if isinstance(input, Tensor) else Tensor(input)
    if not isinstance(indices, dict):
        raise TypeError(f"resize_nearest: indices must be a dict axis -> index array, got "
                        f"{type(indices).__name__}")
    maps = {}
    for axis, idx in indices.items():
        ax = norm_axis(int(axis), x.ndim, "axis")
        if ax in maps:
            raise ValueError(f"resize_nearest: axis {axis} is listed twice")
        arr = xp.asarray(idx.data if isinstance(idx, Tensor) else idx)
        if arr.ndim != 1 or not (xp.issubdtype(arr.dtype, xp.integer) or arr.size == 0):
            raise ValueError(f"resize_nearest: the indices for axis {axis} must be a 1-D integer "
                             f"array, got shape {arr.shape} and dtype {arr.dtype}")
        arr = arr.astype(xp.int64, copy=False)
        n = x.shape[ax]
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            bad = int(arr.min() if arr.min() < 0 else arr.max())
            raise ValueError(f"resize_nearest: index {bad} is out of range for axis {axis} of size "
                             f"{n} (input shape {tuple(x.shape)})")
        maps[ax] = arr
    return NearestResize.apply(x, tuple(sorted(maps.items())))


def nearest_source_indices(in_size: int, out_size: int, scale_factor=None, exact: bool = False):
    """PyTorch's nearest-neighbour source index of each output position along one axis.

    ``scale = 1 / scale_factor`` when a scale factor is given, else ``in_size / out_size``, computed
    in float32 as PyTorch does (so that e.g. in 3 -> out 9 maps output 3 to input 1 exactly);
    'nearest': ``floor(i * scale)``; 'nearest-exact': ``floor((i + 0.5) * scale)``; both clipped to
    ``in_size - 1``."""
    if scale_factor is not None:
        scale = xp.float32(1.0 / float(scale_factor))
    else:
        scale = xp.float32(in_size) / xp.float32(out_size)
    i = xp.arange(out_size, dtype=xp.float32)
    if exact:
        i = i + xp.float32(0.5)
    src = xp.floor(i * scale).astype(xp.int64)
    return xp.minimum(src, in_size - 1)


def interpolate_nearest(input, size=None, scale_factor=None, mode: str = "nearest"):  # noqa: A002
    """``F.interpolate(input, size, scale_factor, mode='nearest' | 'nearest-exact')`` for an
    (N, C, *spatial) input with 1 to 3 spatial axes. ``size``/``scale_factor``: an int/float or one
    per spatial axis (exactly one of the two)."""
    x = input if isinstance(input, Tensor) else Tensor(input)
    fn = "interpolate_nearest"
    if mode not in ("nearest", "nearest-exact"):
        raise ValueError(f"{fn}: mode must be 'nearest' or 'nearest-exact', got {mode!r}")
    spatial = x.ndim - 2
    if spatial < 1:
        raise ValueError(f"{fn}: expected an input of shape (N, C, *spatial), got {tuple(x.shape)}")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{fn}: give exactly one of size and scale_factor")

    def per_axis(v, what):
        vals = list(v) if isinstance(v, (tuple, list)) else [v] * spatial
        if len(vals) != spatial:
            raise ValueError(f"{fn}: {what} {v!r} must have one entry per spatial axis ({spatial})")
        return vals

    in_sizes = list(x.shape[2:])
    if size is not None:
        outs = [int(s) for s in per_axis(size, "size")]
        scales = [None] * spatial
    else:
        scales = [float(s) for s in per_axis(scale_factor, "scale_factor")]
        if any(not math.isfinite(s) or s <= 0 for s in scales):
            raise ValueError(f"{fn}: scale_factor must be positive, got {scale_factor!r}")
        outs = [int(math.floor(n * s)) for n, s in zip(in_sizes, scales)]
    if any(o < 1 for o in outs):
        raise ValueError(f"{fn}: the output size {tuple(outs)} must be positive (input "
                         f"{tuple(x.shape)})")
    maps = {2 + k: nearest_source_indices(n, o, s, exact=mode == "nearest-exact")
            for k, (n, o, s) in enumerate(zip(in_sizes, outs, scales))}
    return resize_nearest(x, maps)
