"""Batches of sequences of different lengths (PyTorch's ``torch.nn.utils.rnn``).

A ``PackedSequence`` holds the steps of several sequences without padding: ``data`` (N, *) has
the rows of step 0 of every sequence, then those of step 1 of every sequence still running, and
so on, the sequences sorted longest first; ``batch_sizes`` (T,) says how many rows each step
has. The recurrent layers (``nn.RNN``, ``LSTM``, ``GRU``) take one directly and stop each
sequence at its own end, so no padding enters a state and the final states are those of each
sequence's last true step.

``pad_sequence`` pads a list of (L_i, *) tensors into one (T, B, *) tensor;
``pack_padded_sequence`` packs a padded batch, given the lengths; ``pad_packed_sequence`` is its
inverse (and returns the lengths); ``pack_sequence`` / ``unpack_sequence`` go straight from and
back to the list. Packing and unpacking are differentiable: gradients flow back to the padded
input (zero at the padding).
"""
from __future__ import annotations

from typing import NamedTuple

from ...autograd import Tensor
from ...backend import xp
from ... import ops

__all__ = ["PackedSequence", "pad_sequence", "pack_padded_sequence", "pad_packed_sequence",
           "pack_sequence", "unpack_sequence", "unpad_sequence", "invert_permutation"]


def invert_permutation(permutation):
    """The permutation that undoes ``permutation`` (an int64 array), or None for None."""
    if permutation is None:
        return None
    p = xp.asarray(getattr(permutation, "data", permutation), dtype=xp.int64)
    inv = xp.empty_like(p)
    inv[p] = xp.arange(p.size, dtype=xp.int64)
    return inv


class PackedSequence(NamedTuple):
    """Sequences packed without padding (see the module docstring). ``batch_sizes``,
    ``sorted_indices`` and ``unsorted_indices`` are int64 tensors; the two indices are None when
    the batch was packed in its own order (already sorted longest first)."""

    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None = None
    unsorted_indices: Tensor | None = None

    @property
    def is_cuda(self) -> bool:
        return False

    def to(self, *args, **kwargs) -> "PackedSequence":
        return self._replace(data=self.data.to(*args, **kwargs))

    def float(self):
        return self._replace(data=self.data.float())

    def double(self):
        return self._replace(data=self.data.double())

    def cpu(self):
        return self


def _lengths(lengths, batch: int, where: str):
    arr = xp.asarray(getattr(lengths, "data", lengths))
    if arr.ndim != 1 or not (xp.issubdtype(arr.dtype, xp.integer) or arr.size == 0):
        raise ValueError(f"{where}: lengths must be a 1-D sequence of ints, got {arr.dtype} of "
                         f"shape {tuple(arr.shape)}")
    if arr.size != batch:
        raise ValueError(f"{where}: got {arr.size} lengths for a batch of {batch} sequences")
    if arr.size and arr.min() <= 0:
        raise ValueError(f"{where}: every length must be positive, got {arr.tolist()}")
    return arr.astype(xp.int64)


def _rows_index(sorted_lengths, order, batch: int):
    """Row indices into a time-major (T * B, *) matrix, in packed order, and the batch sizes."""
    steps = int(sorted_lengths[0]) if sorted_lengths.size else 0
    sizes = (sorted_lengths[None, :] > xp.arange(steps)[:, None]).sum(axis=1).astype(xp.int64)
    index = xp.concatenate([t * batch + order[:n] for t, n in enumerate(sizes)]) if steps else \
        xp.zeros(0, dtype=xp.int64)
    return index, sizes


def pack_padded_sequence(input, lengths, batch_first: bool = False,  # noqa: A002
                         enforce_sorted: bool = True) -> PackedSequence:
    """Pack a padded batch (T, B, *) (``batch_first``: (B, T, *)) whose sequence b has
    ``lengths[b]`` true steps. ``enforce_sorted``: the lengths must already be in decreasing
    order; otherwise the batch is sorted here and the order remembered."""
    where = "pack_padded_sequence"
    if not isinstance(input, Tensor):
        raise TypeError(f"{where}: input must be a foveanet Tensor, got {type(input).__name__}")
    if input.ndim < 2:
        raise ValueError(f"{where}: input must have at least 2 dimensions (time, batch), got shape "
                         f"{tuple(input.shape)}")
    x = input.transpose(0, 1) if batch_first else input
    steps, batch = x.shape[0], x.shape[1]
    lens = _lengths(lengths, batch, where)
    if lens.size and lens.max() > steps:
        raise ValueError(f"{where}: a length of {int(lens.max())} exceeds the {steps} steps of the "
                         f"padded input (shape {tuple(input.shape)}, batch_first={batch_first})")
    if enforce_sorted:
        if lens.size > 1 and (xp.diff(lens) > 0).any():
            raise RuntimeError(f"{where}: lengths must be sorted in decreasing order when "
                               f"enforce_sorted is True, got {lens.tolist()}; pass "
                               "enforce_sorted=False to sort the batch here")
        order, sorted_indices = xp.arange(batch, dtype=xp.int64), None
    else:
        order = xp.argsort(-lens, kind="stable").astype(xp.int64)
        sorted_indices = order
    index, sizes = _rows_index(lens[order], order, batch)
    data = ops.rnn.gather_rows(x.reshape(steps * batch, *x.shape[2:]), index)
    return _packed(data, sizes, sorted_indices)


def _packed(data, sizes, sorted_indices) -> PackedSequence:
    if sorted_indices is None:
        return PackedSequence(data, Tensor(sizes))
    return PackedSequence(data, Tensor(sizes), Tensor(sorted_indices),
                          Tensor(invert_permutation(sorted_indices)))


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False,
                        padding_value: float = 0.0, total_length: int | None = None):
    """The inverse of ``pack_padded_sequence``: (padded (T, B, *) or (B, T, *), lengths (B,)),
    in the batch's original order. ``total_length`` pads to that many steps (at least the
    longest sequence's)."""
    where = "pad_packed_sequence"
    if not isinstance(sequence, PackedSequence):
        raise TypeError(f"{where}: expected a PackedSequence, got {type(sequence).__name__}")
    sizes = xp.asarray(sequence.batch_sizes.data, dtype=xp.int64)
    batch, steps = int(sizes[0]), len(sizes)
    if total_length is not None:
        if total_length < steps:
            raise ValueError(f"{where}: total_length={total_length} is shorter than the longest "
                             f"sequence ({steps} steps)")
        steps = int(total_length)
    order = xp.arange(batch, dtype=xp.int64) if sequence.sorted_indices is None else \
        xp.asarray(sequence.sorted_indices.data, dtype=xp.int64)
    index = xp.concatenate([t * batch + order[:n] for t, n in enumerate(sizes)])
    data = sequence.data
    padded = ops.rnn.scatter_rows(data, index, steps * batch, padding_value)
    padded = padded.reshape(steps, batch, *data.shape[1:])
    lengths = xp.empty(batch, dtype=xp.int64)
    lengths[order] = (sizes[None, :] > xp.arange(batch)[:, None]).sum(axis=1)
    if batch_first:
        padded = padded.transpose(0, 1)
    return padded, Tensor(lengths)


def pad_sequence(sequences, batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> Tensor:
    """A list of (L_i, *) tensors (the same trailing shape) as one (T, B, *) tensor, T the
    longest L_i (``batch_first``: (B, T, *)), padded with ``padding_value`` on the right (or
    the left)."""
    where = "pad_sequence"
    seqs = list(sequences)
    if not seqs:
        raise ValueError(f"{where}: received an empty list of sequences")
    if padding_side not in ("right", "left"):
        raise ValueError(f"{where}: padding_side must be 'right' or 'left', got {padding_side!r}")
    for i, s in enumerate(seqs):
        if not isinstance(s, Tensor):
            raise TypeError(f"{where}: sequence {i} is a {type(s).__name__}, not a foveanet Tensor")
        if s.ndim < 1 or s.shape[1:] != seqs[0].shape[1:]:
            raise ValueError(f"{where}: sequence {i} has shape {tuple(s.shape)}, but sequence 0 has "
                             f"{tuple(seqs[0].shape)}: all must share the shape after the first "
                             "dimension")
    steps, batch = max(s.shape[0] for s in seqs), len(seqs)
    rows = xp.arange(steps)
    index = []
    for b, s in enumerate(seqs):
        t = rows[:s.shape[0]] if padding_side == "right" else rows[steps - s.shape[0]:]
        index.append(t * batch + b)
    flat = ops.cat(seqs, dim=0) if len(seqs) > 1 else seqs[0]
    out = ops.rnn.scatter_rows(flat, xp.concatenate(index), steps * batch, padding_value)
    out = out.reshape(steps, batch, *seqs[0].shape[1:])
    return out.transpose(0, 1) if batch_first else out


def pack_sequence(sequences, enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of (L_i, *) tensors (``pad_sequence`` then ``pack_padded_sequence``)."""
    seqs = list(sequences)
    lengths = [s.shape[0] if isinstance(s, Tensor) and s.ndim else 0 for s in seqs]
    return pack_padded_sequence(pad_sequence(seqs), lengths, enforce_sorted=enforce_sorted)


def unpad_sequence(padded_sequences: Tensor, lengths, batch_first: bool = False) -> list:
    """The list of (L_i, *) tensors inside a padded batch."""
    x = padded_sequences if batch_first else padded_sequences.transpose(0, 1)
    lens = _lengths(lengths, x.shape[0], "unpad_sequence")
    return [x[b, :int(n)] for b, n in enumerate(lens)]


def unpack_sequence(packed_sequences: PackedSequence) -> list:
    """The list of (L_i, *) tensors inside a PackedSequence, in the batch's original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)
