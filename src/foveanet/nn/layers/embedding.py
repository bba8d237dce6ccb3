"""Embedding: a lookup table of learned vectors, one row per token (word, class, position)."""
from __future__ import annotations

from ...backend import xp
from ...ops.embedding import check_indices, padding_index
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from ._util import check_device, float_dtype, positive_int, shape_str, tensor_input


class Embedding(Module):
    """Integer indices of any shape -> their rows of ``weight``: (*) -> (*, embedding_dim).

    Parameter: ``weight`` (num_embeddings, embedding_dim).

    ``padding_idx``: that row (a negative one counts from the end) gets no gradient and starts
    at 0, so it stays a fixed "padding" vector. ``max_norm``: every looked-up row whose
    ``norm_type``-norm exceeds it is rescaled to norm ``max_norm``, IN PLACE in ``weight``, before
    the lookup. ``scale_grad_by_freq``: each row's gradient is divided by how often its index
    occurs in the batch. ``sparse=True`` (sparse gradients) is not supported.

    Default initialisation (PyTorch's): ``weight`` N(0, 1), the ``padding_idx`` row 0. Drawn from
    the global generator (``fv.manual_seed``) unless ``reset_parameters(generator)`` is called
    with one. ``_weight`` gives the table instead (shared, not copied, and not zeroed at
    ``padding_idx``), ``_freeze=True`` makes it need no gradient; see ``from_pretrained``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None, max_norm=None,
                 norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False,
                 _weight=None, _freeze: bool = False, device=None, dtype=None):
        super().__init__()
        check_device("Embedding", device)
        self.num_embeddings = positive_int("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = positive_int("Embedding", "embedding_dim", embedding_dim)
        self.padding_idx = padding_index(padding_idx, self.num_embeddings, "Embedding")
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"Embedding: max_norm must be positive (or None), got {max_norm}")
        if sparse:
            raise NotImplementedError("Embedding: sparse=True (sparse gradients) is not supported; "
                                      "foveanet's gradients are dense arrays, use sparse=False")
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        shape = (self.num_embeddings, self.embedding_dim)
        if _weight is None:
            self.weight = Parameter(xp.empty(shape, dtype=float_dtype("Embedding", dtype)),
                                    requires_grad=not _freeze)
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != shape:
                raise ValueError(f"Embedding: _weight has shape {shape_str(_weight.shape)}, not "
                                 f"(num_embeddings, embedding_dim) = {shape}")
            if not xp.issubdtype(_weight.dtype, xp.floating):
                raise TypeError(f"Embedding: _weight must be floating point, got {_weight.dtype}")
            self.weight = Parameter(_weight, requires_grad=not _freeze)

    @classmethod
    def from_pretrained(cls, embeddings, freeze: bool = True, padding_idx=None, max_norm=None,
                        norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        sparse: bool = False) -> "Embedding":
        """An Embedding whose table is ``embeddings`` (a 2-D float Tensor, shared, or an array):
        frozen (no gradient) unless ``freeze=False``."""
        if getattr(embeddings, "ndim", None) != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D (num_embeddings, "
                             f"embedding_dim), got shape "
                             f"{shape_str(getattr(embeddings, 'shape', ()))}")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
                   scale_grad_by_freq=scale_grad_by_freq, sparse=sparse, _weight=embeddings,
                   _freeze=freeze)

    def reset_parameters(self, generator=None) -> None:
        init.normal_(self.weight, generator=generator)
        self._fill_padding_idx_with_zero()

    def _fill_padding_idx_with_zero(self) -> None:
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, input):  # noqa: A002
        x = tensor_input(self, input)
        weight = self._parameters["weight"]
        try:
            return F.embedding(x, weight, self.padding_idx, self.max_norm, self.norm_type,
                               self.scale_grad_by_freq, self.sparse)
        except (TypeError, IndexError):
            check_indices(x, self.num_embeddings, self._short_repr())  # the same error, named
            raise

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        if self.sparse is not False:
            s += ", sparse=True"
        return s

