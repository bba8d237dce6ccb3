"""The allocator settings: large step-sized temporaries stay in the heap between steps.

A training step allocates and frees the same large temporaries (activations, im2col columns,
gradients: 1-30 MB each) every step. glibc's malloc serves blocks above its mmap threshold with
fresh mmap()s and returns them to the system on free, so every step would page-fault all of that
memory in again. Serving blocks up to ``MMAP_THRESHOLD`` from the heap and keeping freed heap
memory for reuse removes that (as PyTorch's caching allocators do; figures: benchmarks/RESULTS.md,
"The allocator"). The peak memory is unchanged. Linux/glibc only; ``FOVEANET_MALLOC=system``
before import keeps glibc's defaults. It is a process setting: it speeds up anything else in the
process (PyTorch in the side-by-side benchmark) as well.
"""
from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["tune_allocator", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 512 << 20
_tuned = False


def tune_allocator() -> bool:
    """Apply the allocator settings above (once); True if they were applied."""
    global _tuned
    if _tuned or os.environ.get("FOVEANET_MALLOC", "").lower() == "system" or \
            not sys.platform.startswith("linux"):
        return _tuned
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    _tuned = bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and \
        bool(mallopt(m_trim_threshold, TRIM_THRESHOLD))
    return _tuned
