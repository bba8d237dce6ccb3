"""The scatter-add of the embedding's backward (see ``embedding.scatter_rows``), with numba.

Loaded only through ``backend.cpu.kernels.load``, cached on disk like the other
kernel modules. It works on the columns [lo, hi) of every row, so the engine's threads split the
embedding dimension and never write the same element. Where NumPy's ``add.at`` adds element by
element (and the NumPy path sorts the indices first), this is one pass over the gradient.
"""
from numba import njit


@njit(cache=True, nogil=True)
def scatter_add(idx, g2, padding_idx, out, lo, hi):
    """out[idx[i], lo:hi] += g2[i, lo:hi] for every i with idx[i] != padding_idx (-1: none);
    ``idx`` (n,) intp in 0 .. out.shape[0]-1, ``g2`` (n, dim), ``out`` (num, dim)."""
    for i in range(idx.shape[0]):
        k = idx[i]
        if k == padding_idx:
            continue
        src, dst = g2[i, lo:hi], out[k, lo:hi]
        for j in range(src.shape[0]):
            dst[j] += src[j]
