"""The lecture's architectures by name: ``fv.models.create(name, num_classes=..., in_channels=...)``,
``fv.models.list_models()`` and ``fv.models.summary(model, input_shape)``."""
from . import simple  # noqa: F401  (registers the models)
from .registry import create, list_models, model_options, register_model  # noqa: F401
from .simple import cnn_bn, lenet5, mlp  # noqa: F401
from .summary import Summary, layer_macs, summary  # noqa: F401
