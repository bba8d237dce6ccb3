"""``foveanet.nn.functional``: the primitives under PyTorch's names and signatures.

Each name is defined once, in ``foveanet.ops``; this module only gathers them where a PyTorch user
looks for them (``import foveanet.nn.functional as F``)."""
from ..ops.activation import elu, leaky_relu, log_softmax, relu, sigmoid, softmax, tanh  # noqa: F401
from ..ops.conv import conv2d, conv_transpose2d  # noqa: F401
from ..ops.dropout import dropout, dropout2d  # noqa: F401
from ..ops.embedding import embedding  # noqa: F401
from ..ops.layer_norm import layer_norm  # noqa: F401
from ..ops.linalg import linear  # noqa: F401
from ..ops.loss import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,  # noqa: F401
                        dice_loss, mse_loss, nll_loss, one_hot, sum_squared_error)
from ..ops.norm import batch_norm, local_response_norm, sync_batch_norm  # noqa: F401
from ..ops.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d, max_unpool2d  # noqa: F401
from ..ops.shape import pad  # noqa: F401
