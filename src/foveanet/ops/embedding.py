"""The embedding lookup: integer indices of any shape -> rows of a weight matrix, (..., dim).

One Function. Forward is a gather (``take`` along axis 0); backward scatter-adds the incoming
gradient rows into a zero (num_embeddings, dim) gradient, each index adding its row once per
occurrence. NumPy's ``add.at`` does that one element at a time, so the NumPy path sorts the
indices instead and adds whole sets of distinct rows at once (``_sorted_scatter_add``); with
numba the compiled loop of ``_embedding_kernels`` adds row by row in one pass."""
from __future__ import annotations

from ..autograd import Function, Tensor
from ..backend import xp
from ..backend.cpu import kernels, threads

KERNELS = "foveanet.ops._embedding_kernels"


class EmbeddingIndexError(IndexError, ValueError):
    """An index outside 0 .. num_embeddings-1 (PyTorch raises IndexError; a ValueError too, since
    the value is wrong rather than the container)."""


def _kernels():
    """The compiled scatter-add (``_embedding_kernels``), or None without numba."""
    return kernels.load(KERNELS)


class Embedding(Function):
    """y[..., :] = weight[idx[...], :]. Backward: dweight[k] = sum of g[i] over the positions i
    with idx[i] == k (divided by the number of such i with ``scale_grad_by_freq``), and 0 for
    the row ``padding_idx``. The indices get no gradient."""

    fresh_grads = True

    def forward(self, idx, weight, padding_idx, scale_grad_by_freq):
        self.idx, self.padding_idx, self.scale = idx, padding_idx, scale_grad_by_freq
        self.num, self.dtype = weight.shape[0], weight.dtype
        return weight.take(idx, axis=0)

    def backward(self, g):
        if not self.needs_input_grad[1]:
            return None, None
        flat = self.idx.reshape(-1)
        g2 = g.reshape(flat.size, g.shape[-1])
        return None, scatter_rows(flat, g2, self.num, self.padding_idx, self.scale).astype(
            self.dtype, copy=False)


def scatter_rows(idx, g2, num, padding_idx=None, scale_grad_by_freq=False):
    """out (num, dim), zero but out[k] = sum of g2[i] over idx[i] == k, for (n,) indices in
    0 .. num-1 and g2 (n, dim); the row ``padding_idx`` (None: none) stays 0, and
    ``scale_grad_by_freq`` divides each row by its index's number of occurrences."""
    dim = g2.shape[1]
    out = xp.zeros((num, dim), dtype=g2.dtype)
    if idx.size == 0 or dim == 0:
        return out
    idx = xp.ascontiguousarray(idx, dtype=xp.intp)
    k = _kernels()
    if k is not None:  # one compiled pass; the threads take disjoint column blocks
        g2 = xp.ascontiguousarray(g2)
        pad = -1 if padding_idx is None else int(padding_idx)
        threads.split(lambda lo, hi: k.scatter_add(idx, g2, pad, out, lo, hi), dim, g2.nbytes)
    else:
        _sorted_scatter_add(idx, g2, padding_idx, out)
    if scale_grad_by_freq:
        counts = xp.bincount(idx, minlength=num)
        hit = xp.flatnonzero(counts)
        out[hit] /= counts[hit, None].astype(out.dtype)
    return out


ROUNDS = 8  # occurrences of an index added by fancy indexing; the rest of a run by add.reduceat


def _sorted_scatter_add(idx, g2, padding_idx, out):
    """out[idx[i]] += g2[i] for every i with idx[i] != padding_idx, in NumPy passes.

    The indices are sorted (stably, so each index's rows are added in their order), and each
    position numbered by its occurrence within its run of equal indices. The r-th occurrences
    hold every index at most once, so ``out[rows] += ...`` is exact for them: that takes the
    first ``ROUNDS``. The occurrences after those, in the few long runs, are summed per run with
    one ``add.reduceat`` (which calls its inner loop once per run and column: slow for many short
    runs, fine for a few long ones)."""
    if padding_idx is not None:
        keep = idx != padding_idx
        if not keep.all():
            idx, g2 = idx[keep], g2[keep]
        if idx.size == 0:
            return
    order = xp.argsort(idx, kind="stable")
    s = idx[order]
    first = xp.concatenate(([True], s[1:] != s[:-1]))
    pos = xp.arange(s.size)
    occurrence = pos - xp.maximum.accumulate(xp.where(first, pos, 0))
    out[s[first]] = g2[order[first]]
    for r in range(1, ROUNDS):
        sel = xp.flatnonzero(occurrence == r)
        if not sel.size:
            return
        out[s[sel]] += g2[order[sel]]
    tail = xp.flatnonzero(occurrence >= ROUNDS)
    if tail.size:
        t = s[tail]
        runs = xp.flatnonzero(xp.concatenate(([True], t[1:] != t[:-1])))
        out[t[runs]] += xp.add.reduceat(g2[order[tail]], runs, axis=0)


def warm() -> str:
    """Compile (or load from the cache) the embedding scatter-add for float32 and float64."""
    if _kernels() is None:
        return "embedding: numba is not installed, sorted NumPy sums instead"
    for dt in (xp.float32, xp.float64):
        w = Tensor(xp.zeros((3, 2), dtype=dt), requires_grad=True)
        embedding(Tensor(xp.array([0, 2, 0])), w).sum().backward()
    return "embedding: numba kernel compiled"


kernels.declare(KERNELS, "embedding", warm)


# ------------------------------------------------------------------------------------ checks
def check_indices(indices, num_embeddings, owner="embedding"):
    """The index array of ``indices`` (a Tensor or an array), checked: an integer dtype, every
    value in 0 .. num_embeddings-1. The errors begin with ``owner``."""
    arr = indices.data if isinstance(indices, Tensor) else xp.asarray(indices)
    if arr.dtype == xp.bool_ or not xp.issubdtype(arr.dtype, xp.integer):
        raise TypeError(f"{owner}: indices must be an integer tensor (int64 or int32), got dtype "
                        f"{arr.dtype}; convert them with x.long()")
    if arr.size == 0:
        return arr
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi >= num_embeddings:
        bad = int(lo) if lo < 0 else int(hi)
        note = "; negative indices do not count from the end" if bad < 0 else ""
        raise EmbeddingIndexError(f"{owner}: index {bad} is out of range for num_embeddings="
                                  f"{num_embeddings} (valid: 0 to {num_embeddings - 1}{note})")
    return arr


def padding_index(padding_idx, num_embeddings, owner="embedding"):
    """``padding_idx`` as a row number in 0 .. num_embeddings-1 (a negative one counts from the
    end, as in PyTorch), or None."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, xp.integer)):
        raise TypeError(f"{owner}: padding_idx must be an int or None, got {padding_idx!r}")
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"{owner}: padding_idx must be within num_embeddings (-{num_embeddings} to "
                         f"{num_embeddings - 1}), got {padding_idx}")
    return int(padding_idx) % num_embeddings


def _renorm_rows(w, idx, max_norm, norm_type):
    """PyTorch's ``embedding_renorm_``: IN PLACE, every row of ``w`` that ``idx`` looks up and whose
    ``norm_type``-norm exceeds ``max_norm`` is scaled by max_norm / (norm + 1e-7)."""
    rows = xp.unique(idx)
    if rows.size == 0:
        return
    norms = xp.linalg.norm(w[rows].astype(xp.float64), ord=norm_type, axis=1)
    big = norms > max_norm
    if big.any():
        scale = max_norm / (norms[big] + 1e-7)
        w[rows[big]] *= scale[:, None].astype(w.dtype)


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,  # noqa: A002
              scale_grad_by_freq=False, sparse=False):
    """Rows of ``weight`` (num_embeddings, dim) at the integer indices ``input`` (any shape) ->
    (*input.shape, dim), as PyTorch's ``F.embedding``.

    ``padding_idx``: that row gets no gradient (a negative one counts from the end).
    ``max_norm``: before the lookup, every looked-up row whose ``norm_type``-norm exceeds it is
    rescaled to norm ``max_norm``, IN PLACE in ``weight`` (as PyTorch does).
    ``scale_grad_by_freq``: each row's gradient is divided by how often its index occurs in
    ``input``. ``sparse=True`` (sparse gradients) is not supported."""
    if sparse:
        raise NotImplementedError("embedding: sparse=True (sparse gradients) is not supported; "
                                  "foveanet's gradients are dense arrays, use sparse=False")
    w = weight if isinstance(weight, Tensor) else Tensor(weight)
    if w.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got shape "
                         f"{tuple(w.shape)}")
    num = w.shape[0]
    idx = check_indices(input, num)
    pad = padding_index(padding_idx, num)
    if max_norm is not None:
        _renorm_rows(w.data, idx, float(max_norm), float(norm_type))
    return Embedding.apply(idx, w, pad, bool(scale_grad_by_freq))
