"""Differentiable primitives, each a Function with its forward and backward side by side.

Modules: elementwise, reduction, shape, linalg (matmul, linear, gram), activation, conv, pool, norm,
layer_norm, embedding, dropout, loss; creation holds the constructors. ``foveanet.nn.functional``
re-exports the ones PyTorch has there, under PyTorch's names and signatures."""
from .activation import elu, leaky_relu, log_softmax, relu, sigmoid, softmax, tanh  # noqa: F401
from .conv import conv2d, conv_transpose2d  # noqa: F401
from .creation import (arange, as_tensor, empty, eye, from_numpy, full, full_like, linspace,  # noqa: F401
                       ones, ones_like, tensor, zeros, zeros_like)
from .dropout import dropout  # noqa: F401
from .elementwise import (abs, add, cast, clamp, clip, clone, compare, div, exp, log, maximum,  # noqa: F401
                          minimum, mul, neg, pow, sqrt, sub, where)
from .embedding import embedding  # noqa: F401
from .layer_norm import layer_norm  # noqa: F401
from .linalg import gram, linear, matmul  # noqa: F401
from .loss import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,  # noqa: F401
                   mse_loss, nll_loss, one_hot, sum_squared_error)
from .norm import batch_norm, local_response_norm, sync_batch_norm  # noqa: F401
from . import rnn  # noqa: F401  (recurrent layers: ops.rnn.Recurrence, gather_rows, ...)
from .pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d, max_unpool2d  # noqa: F401
from .reduction import (amax, amin, argmax, argmin, logsumexp, max, mean, min, norm, std, sum,  # noqa: F401
                        var)
from .shape import (broadcast_to, cat, chunk, concatenate, expand, flatten, getitem, index_arrays,  # noqa: F401
                    pad, permute, reshape, split, squeeze, stack, t, transpose, unbind, unsqueeze, view)

