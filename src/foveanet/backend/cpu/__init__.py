"""The CPU runtime, below the ops: the engine's thread pool (``threads``), control of NumPy's
BLAS (``blas``), the compiled-kernel registry (``kernels``) and the allocator settings
(``allocator``). The ops call into it; it knows nothing of them.

``warm()`` compiles every declared kernel module (``make install`` runs it)."""
from . import allocator, blas, kernels, threads  # noqa: F401
from .blas import blas_threads, set_num_threads  # noqa: F401
from .kernels import warm  # noqa: F401
from .threads import split  # noqa: F401

__all__ = ["allocator", "blas", "kernels", "threads", "blas_threads", "set_num_threads", "split",
           "warm"]
