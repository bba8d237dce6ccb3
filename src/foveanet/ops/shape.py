"""Shape primitives: reshape/view, permute/transpose, expand, indexing, cat/stack/split, pad."""
from __future__ import annotations

import builtins
import math

from ..autograd import Function, Tensor
from ..backend import xp
from ._util import as_tensor_list, norm_axis, unbroadcast


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple([int(s) for s in shape])


class Reshape(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, g):
        return g.reshape(self.shape)


class Permute(Function):
    def forward(self, a, dims):
        self.inverse = tuple(xp.argsort(dims))
        return a.transpose(dims)

    def backward(self, g):
        return g.transpose(self.inverse)


class Expand(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return xp.broadcast_to(a, shape)

    def backward(self, g):
        return unbroadcast(g, self.shape)


def _is_basic(idx) -> bool:
    items = idx if isinstance(idx, tuple) else (idx,)
    return builtins.all(i is None or i is Ellipsis or isinstance(i, (int, slice, xp.integer))
                        and not isinstance(i, bool) for i in items)


def index_arrays(idx):
    """Replace Tensors inside an index by their arrays."""
    if isinstance(idx, Tensor):
        return idx.data
    if isinstance(idx, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in idx)
    if isinstance(idx, list):
        return xp.asarray(idx)
    return idx


class GetItem(Function):
    def forward(self, a, idx):
        self.shape, self.dtype, self.idx = a.shape, a.dtype, idx
        return a[idx]

    def backward(self, g):
        out = xp.zeros(self.shape, dtype=g.dtype)
        if _is_basic(self.idx):
            out[self.idx] = g  # basic indexing never selects an element twice
        else:
            xp.add.at(out, self.idx, g)  # advanced indexing may: add each use
        return out


class Concat(Function):
    def forward(self, *arrays, axis):
        self.axis = axis
        self.bounds = xp.cumsum([a.shape[axis] for a in arrays])[:-1]
        return xp.concatenate(arrays, axis=axis)

    def backward(self, g):
        return tuple(xp.split(g, self.bounds, axis=self.axis))


class Stack(Function):
    def forward(self, *arrays, axis):
        self.axis = axis
        return xp.stack(arrays, axis=axis)

    def backward(self, g):
        return tuple(xp.moveaxis(g, self.axis, 0))


_NP_PAD = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


class Pad(Function):
    """Pad with a constant, or by reflection/replication/wrapping of the edges.

    For the non-constant modes each padded axis is a gather with an index map (the padded
    positions' source indices); the backward pass scatters-adds the gradient along the same map."""

    def forward(self, a, widths, mode, value):
        self.widths, self.mode, self.shape = widths, mode, a.shape
        if mode == "constant":
            return xp.pad(a, widths, mode="constant", constant_values=value)
        self.maps = []
        for axis, (lo, hi) in enumerate(widths):
            if lo or hi:
                src = xp.pad(xp.arange(a.shape[axis]), (lo, hi), mode=_NP_PAD[mode])
                self.maps.append((axis, src))
                a = xp.take(a, src, axis=axis)
        return a

    def backward(self, g):
        if self.mode == "constant":
            return g[tuple(slice(lo, g.shape[i] - hi) for i, (lo, hi) in enumerate(self.widths))]
        for axis, src in reversed(self.maps):
            moved = xp.moveaxis(g, axis, 0)
            out = xp.zeros((self.shape[axis],) + moved.shape[1:], dtype=g.dtype)
            xp.add.at(out, src, moved)
            g = xp.moveaxis(out, 0, axis)
        return g


# ------------------------------------------------------------------------------- public functions
def reshape(a, *shape):
    shape = _shape_arg(shape)
    size = a.data.size
    try:
        if shape.count(-1) > 1:
            raise ValueError
        known = math.prod([s for s in shape if s != -1])  # math.prod: ~10 us less than NumPy's
        if -1 in shape:
            if known == 0 or size % known:
                raise ValueError
            shape = tuple([size // known if s == -1 else s for s in shape])
        elif known != size:
            raise ValueError
    except ValueError:
        raise ValueError(f"cannot reshape a tensor of shape {tuple(a.shape)} ({a.numel()} elements) "
                         f"to {shape}") from None
    if shape == a.shape:
        return a
    return Reshape.apply(a, shape)


view = reshape


def flatten(a, start_dim=0, end_dim=-1):
    if a.ndim == 0:
        return reshape(a, 1)
    s, e = norm_axis(start_dim, a.ndim), norm_axis(end_dim, a.ndim)
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shp = a.shape
    return reshape(a, shp[:s] + (math.prod(shp[s:e + 1]),) + shp[e + 1:])


def squeeze(a, dim=None):
    if dim is None:
        return reshape(a, tuple(n for n in a.shape if n != 1))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    axes = {norm_axis(d, a.ndim) for d in dims}
    return reshape(a, tuple(n for i, n in enumerate(a.shape) if not (i in axes and n == 1)))


def unsqueeze(a, dim):
    d = norm_axis(dim, a.ndim + 1)
    return reshape(a, a.shape[:d] + (1,) + a.shape[d:])


def permute(a, *dims):
    dims = _shape_arg(dims)
    if sorted(norm_axis(d, a.ndim) for d in dims) != list(range(a.ndim)):
        raise ValueError(f"permute: {dims} is not a permutation of the {a.ndim} dimensions of a "
                         f"tensor of shape {tuple(a.shape)}")
    return Permute.apply(a, tuple(norm_axis(d, a.ndim) for d in dims))


def transpose(a, dim0, dim1):
    dims = list(range(a.ndim))
    i, j = norm_axis(dim0, a.ndim), norm_axis(dim1, a.ndim)
    dims[i], dims[j] = dims[j], dims[i]
    return Permute.apply(a, tuple(dims))


def t(a):
    if a.ndim > 2:
        raise ValueError(f"t() expects a tensor with at most 2 dimensions, got {a.ndim}")
    return transpose(a, 0, 1) if a.ndim == 2 else a


def expand(a, *shape):
    shape = _shape_arg(shape)
    lead = len(shape) - a.ndim
    if lead < 0:
        raise ValueError(f"expand: target {shape} has fewer dimensions than the tensor {tuple(a.shape)}")
    full = tuple(a.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
    try:
        xp.broadcast_shapes(a.shape, full)
    except ValueError:
        raise ValueError(f"expand: cannot expand shape {tuple(a.shape)} to {shape}") from None
    return Expand.apply(a, full)


broadcast_to = expand


def getitem(a, idx):
    idx = index_arrays(idx)
    try:
        return GetItem.apply(a, idx)
    except IndexError as e:
        raise IndexError(f"index {idx!r} does not fit a tensor of shape {tuple(a.shape)}: {e}") from None


def _check_same(tensors, axis, what, skip_axis):
    ref = tensors[0].shape
    for i, t_ in enumerate(tensors[1:], 1):
        ok = len(t_.shape) == len(ref) and builtins.all(
            x == y for k, (x, y) in enumerate(zip(t_.shape, ref)) if not (skip_axis and k == axis))
        if not ok:
            raise ValueError(f"{what}: tensor {i} has shape {tuple(t_.shape)}, which does not match "
                             f"tensor 0's shape {tuple(ref)}" + (f" outside dim {axis}" if skip_axis else ""))


def cat(tensors, dim=0):
    tensors = as_tensor_list(tensors, "cat")
    axis = norm_axis(dim, tensors[0].ndim)
    _check_same(tensors, axis, "cat", skip_axis=True)
    return Concat.apply(*tensors, axis=axis)


concatenate = cat


def stack(tensors, dim=0):
    tensors = as_tensor_list(tensors, "stack")
    axis = norm_axis(dim, tensors[0].ndim + 1)
    _check_same(tensors, axis, "stack", skip_axis=False)
    return Stack.apply(*tensors, axis=axis)


def split(a, split_size_or_sections, dim=0):
    """Split into pieces of ``split_size`` (the last may be smaller) or of the listed sizes."""
    axis = norm_axis(dim, a.ndim)
    n = a.shape[axis]
    if isinstance(split_size_or_sections, int):
        if split_size_or_sections <= 0:
            raise ValueError(f"split size must be positive, got {split_size_or_sections}")
        sizes = [split_size_or_sections] * (n // split_size_or_sections)
        if n % split_size_or_sections:
            sizes.append(n % split_size_or_sections)
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise ValueError(f"split sizes {sizes} do not add up to {n}, the size of dim {dim}")
    out, start = [], 0
    for s in sizes:
        idx = (slice(None),) * axis + (slice(start, start + s),)
        out.append(getitem(a, idx))
        start += s
    return tuple(out)


def chunk(a, chunks, dim=0):
    n = a.shape[norm_axis(dim, a.ndim)]
    return split(a, max(-(-n // chunks), 1), dim)


def unbind(a, dim=0):
    axis = norm_axis(dim, a.ndim)
    return tuple(getitem(a, (slice(None),) * axis + (i,)) for i in range(a.shape[axis]))


def pad(a, pad, mode="constant", value=0.0):  # noqa: A002 - PyTorch's signature
    """PyTorch's ``F.pad``: ``pad`` lists (left, right) pairs starting from the LAST dimension."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > a.ndim:
        raise ValueError(f"pad must hold (before, after) pairs for at most {a.ndim} dimensions, "
                         f"got {pad}")
    if builtins.any(p < 0 for p in pad):
        raise ValueError(f"negative padding {pad} is not supported")
    widths = [(0, 0)] * a.ndim
    for k in range(len(pad) // 2):
        widths[a.ndim - 1 - k] = (pad[2 * k], pad[2 * k + 1])
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise ValueError(f"pad mode must be constant, reflect, replicate or circular, not {mode!r}")
    if mode == "reflect":
        for ax, (lo, hi) in enumerate(widths):
            if builtins.max(lo, hi) >= a.shape[ax]:
                raise ValueError(f"reflect padding {builtins.max(lo, hi)} must be smaller than the "
                                 f"size {a.shape[ax]} of dim {ax}")
    return Pad.apply(a, tuple(widths), mode, value)
