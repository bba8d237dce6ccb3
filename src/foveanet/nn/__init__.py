"""Neural-network building blocks (PyTorch's ``torch.nn``).

``Module`` (the base class: parameter registration, state_dict, train/eval, hooks), ``Parameter``,
the containers ``Sequential``/``ModuleList``/``ModuleDict``, the layers and loss modules, and the
submodules ``functional`` (``import foveanet.nn.functional as F``), ``init`` and ``utils``.
"""
from . import functional, init, utils  # noqa: F401
from .layers import (ELU, AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d,  # noqa: F401
                     BCELoss, BCEWithLogitsLoss, Conv2d, ConvTranspose2d, CrossEntropyLoss, Dropout,
                     Dropout2d, Embedding, Flatten, Identity, InstanceNorm2d, LayerNorm, LeakyReLU,
                     Linear, LocalResponseNorm, LogSoftmax, MaxPool2d, MaxUnpool2d, ModuleDict, ModuleList,
                     MSELoss, NLLLoss, ReLU, Sequential, Sigmoid, Softmax, SumSquaredErrorLoss, Tanh,
                     Unflatten)
from .layers import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase  # noqa: F401
from .layers import Hopfield, HopfieldPooling  # noqa: F401
from .layers import DiceLoss  # noqa: F401
from .layers import SyncBatchNorm  # noqa: F401
from .module import Module, RemovableHandle  # noqa: F401
from .parameter import Parameter  # noqa: F401

