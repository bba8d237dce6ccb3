"""The layers of ``foveanet.nn``, one file per family; all re-exported by ``foveanet.nn``."""
from .activation import ELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh  # noqa: F401
from .container import ModuleDict, ModuleList, Sequential  # noqa: F401
from .conv import Conv2d, ConvTranspose2d  # noqa: F401
from .dropout import Dropout, Dropout2d  # noqa: F401
from .embedding import Embedding  # noqa: F401
from .hopfield import Hopfield, HopfieldPooling  # noqa: F401
from .linear import Linear  # noqa: F401
from .loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, DiceLoss, MSELoss, NLLLoss,  # noqa: F401
                   SumSquaredErrorLoss)
from .normalization import SyncBatchNorm  # noqa: F401
from .normalization import (BatchNorm1d, BatchNorm2d, InstanceNorm2d, LayerNorm,  # noqa: F401
                            LocalResponseNorm)
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, MaxUnpool2d  # noqa: F401
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase  # noqa: F401
from .shape import Flatten, Identity, Unflatten  # noqa: F401
