"""Normalisation layers: BatchNorm (per-channel standardisation with learned scale and shift),
LayerNorm (per-sample standardisation over the trailing axes) and LocalResponseNorm (AlexNet's
competition between neighbouring channels)."""
from __future__ import annotations

from ...autograd import Tensor
from ...backend import process_group, xp
from ...ops.layer_norm import normalized_shape_tuple
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from ._util import check_device, check_dtype, float_dtype, positive_int, shape_str, tensor_input


class _BatchNorm(Module):
    _ndims: tuple = ()
    _layout: str = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *, bias: bool = True):
        super().__init__()
        name = type(self).__name__
        check_device(name, device)
        self.num_features = positive_int(name, "num_features", num_features)
        if not eps > 0:
            raise ValueError(f"{name}: eps must be positive, got {eps}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{name}: momentum must be between 0 and 1 (or None for a cumulative "
                             f"average), got {momentum}")
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        dt = float_dtype(name, dtype)
        if affine:
            self.weight = Parameter(xp.empty((num_features,), dtype=dt))
            if bias:
                self.bias = Parameter(xp.empty((num_features,), dtype=dt))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(xp.zeros((num_features,), dtype=dt)))
            self.register_buffer("running_var", Tensor(xp.ones((num_features,), dtype=dt)))
            self.register_buffer("num_batches_tracked", Tensor(xp.array(0, dtype=xp.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def _check_input(self, x, local_batch: bool = True):
        """``x`` as a Tensor of the layer's layout and dtype; in training, with ``local_batch``,
        more than one value per channel (SyncBatchNorm's global batch decides that itself)."""
        x = tensor_input(self, x)
        c = self.num_features
        if x.ndim not in self._ndims or x.shape[1] != c:
            msg = f"{self._short_repr()}: expected input of shape {self._layout.format(c=c)}, got " \
                  f"{shape_str(x.shape)}"
            if x.ndim in self._ndims:
                msg += f" — {x.shape[1]} channels instead of {c}"
            else:
                want = " or ".join(str(n) for n in self._ndims)
                msg += f" — {x.ndim} dimensions instead of {want}"
            raise ValueError(msg)
        check_dtype(self, x, self.weight if self.weight is not None else self.running_mean)
        if self.training and local_batch and x.numel() // c <= 1:
            raise ValueError(f"{self._short_repr()}: expected more than 1 value per channel when "
                             f"training, got input of shape {shape_str(x.shape)} (use a batch of more "
                             "than one sample, or call .eval())")
        return x

    def forward(self, input):  # noqa: A002
        x = self._check_input(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.data[...] += 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        update = not self.training or self.track_running_stats
        return F.batch_norm(x, self.running_mean if update else None,
                            self.running_var if update else None, self.weight, self.bias,
                            use_batch_stats, factor, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over input (N, C) or (N, C, L): per channel c,
    y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c.

    In training the batch's statistics are used (biased variance) and the running estimates are
    updated: running = (1 - momentum) running + momentum batch (unbiased variance);
    ``momentum=None`` gives a cumulative average. In eval mode the running estimates are used.
    Buffers ``running_mean`` (zeros), ``running_var`` (ones), ``num_batches_tracked`` (int64 0)
    unless ``track_running_stats=False``.

    ``affine=False``: no learned scale and shift; ``bias=False`` (keyword): a scale only.

    Default initialisation (PyTorch's): ``weight`` 1, ``bias`` 0 (when ``affine``)."""

    _ndims = (2, 3)
    _layout = "(N, {c}) or (N, {c}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over input (N, C, H, W): per channel c, over N, H and W,
    y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c.

    In training the batch's statistics are used (biased variance) and the running estimates are
    updated: running = (1 - momentum) running + momentum batch (unbiased variance);
    ``momentum=None`` gives a cumulative average. In eval mode the running estimates are used.
    Buffers ``running_mean`` (zeros), ``running_var`` (ones), ``num_batches_tracked`` (int64 0)
    unless ``track_running_stats=False``.

    ``affine=False``: no learned scale and shift; ``bias=False`` (keyword): a scale only.

    Default initialisation (PyTorch's): ``weight`` 1, ``bias`` 0 (when ``affine``)."""

    _ndims = (4,)
    _layout = "(N, {c}, H, W)"


class SyncBatchNorm(_BatchNorm):
    """Batch normalisation over the global batch of all ranks (PyTorch's ``nn.SyncBatchNorm``):
    input (N, C, ...) of any rank >= 2; the same arguments, parameters, buffers and state-dict
    keys as BatchNorm1d/2d/3d, so a checkpoint moves between them. Training uses the process
    group of ``fv.distributed`` when it is initialised (else this process alone); eval mode is
    ordinary batch norm with the running statistics (``fv.distributed.init_process_group`` sets
    the group; ``ops.norm.SyncBatchNorm`` has the arithmetic). Build one from an existing
    network with ``SyncBatchNorm.convert_sync_batchnorm(model)``."""

    _ndims = (2, 3, 4, 5)
    _layout = "(N, {c}, ...)"

    def forward(self, input):  # noqa: A002
        if not self.training:
            return super().forward(input)
        group = process_group.current()
        x = self._check_input(input, local_batch=group is None or group.size == 1)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.data[...] += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.data)
        return F.sync_batch_norm(x, self.running_mean if self.track_running_stats else None,
                                 self.running_var if self.track_running_stats else None,
                                 self.weight, self.bias, factor, self.eps, group)

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group=None) -> Module:
        """``module`` with every BatchNorm1d/2d/3d replaced by a SyncBatchNorm that shares its
        parameters and buffers (PyTorch's function of the same name); other layers untouched.
        ``process_group`` is accepted for PyTorch's signature; foveanet has one group."""
        return convert_sync_batchnorm(module)


def convert_sync_batchnorm(module: Module) -> Module:
    """``module`` with its BatchNorm layers made SyncBatchNorm ones (sharing their tensors)."""
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        ref = module.weight if module.weight is not None else module.running_mean
        dtype = None if ref is None else ref.data.dtype
        out = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, dtype=dtype,
                            bias=module.bias is not None or not module.affine)
        for name in ("weight", "bias"):
            if getattr(module, name, None) is not None:
                setattr(out, name, getattr(module, name))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            if getattr(module, name, None) is not None:
                out.register_buffer(name, getattr(module, name))
        out.train(module.training)
        return out
    for name, child in list(module.named_children()):
        converted = convert_sync_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


class LayerNorm(Module):
    """Layer normalisation over the trailing axes ``normalized_shape`` (an int or a tuple): each
    sample's values there are standardised with their own mean and biased variance,
    y = (x - mean) / sqrt(var + eps) * weight + bias. Input (*, *normalized_shape), output the
    same shape; the same in training and eval (no running statistics).

    Parameters (when ``elementwise_affine``): ``weight`` and ``bias`` of shape
    ``normalized_shape``; ``bias=False``: a scale only.

    Default initialisation (PyTorch's): ``weight`` 1, ``bias`` 0."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        check_device("LayerNorm", device)
        self.normalized_shape = normalized_shape_tuple(normalized_shape, "LayerNorm")
        if not self.normalized_shape:
            raise ValueError("LayerNorm: normalized_shape must name at least one axis, got ()")
        if not eps > 0:
            raise ValueError(f"LayerNorm: eps must be positive, got {eps}")
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        dt = float_dtype("LayerNorm", dtype)
        if elementwise_affine:
            self.weight = Parameter(xp.empty(self.normalized_shape, dtype=dt))
            if bias:
                self.bias = Parameter(xp.empty(self.normalized_shape, dtype=dt))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):  # noqa: A002
        x = tensor_input(self, input)
        shape = self.normalized_shape
        if x.ndim < len(shape) or tuple(x.shape[x.ndim - len(shape):]) != shape:
            want = "(*, " + ", ".join(str(s) for s in shape) + ")"
            raise ValueError(f"{self._short_repr()}: expected input of shape {want} (trailing shape "
                             f"{shape_str(shape)}, the normalized_shape), got {shape_str(x.shape)}")
        params = self._parameters
        weight, bias = params["weight"], params["bias"]
        if weight is None and not xp.issubdtype(x.dtype, xp.floating):
            raise TypeError(f"{self._short_repr()}: input has dtype {x.dtype}, not floating point; "
                            "convert it with x.float()")
        check_dtype(self, x, weight)
        return F.layer_norm(x, shape, weight, bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine="
                f"{self.elementwise_affine}, bias={self.bias is not None}")


class LocalResponseNorm(Module):
    """AlexNet's local response normalisation across channels:
    b_c = a_c / (k + alpha / size * sum_{c' within size/2 of c} a_c'^2) ^ beta.

    Input (N, C, ...) with at least 3 dimensions. No parameters."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size = positive_int("LocalResponseNorm", "size", size)
        self.alpha = alpha
        self.beta = beta
        self.k = k

    def forward(self, input):  # noqa: A002
        x = tensor_input(self, input)
        if x.ndim < 3:
            raise ValueError(f"{self._short_repr()}: expected input of shape (N, C, H, W) (at least 3 "
                             f"dimensions), got {shape_str(x.shape)}")
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class InstanceNorm2d(Module):
    """``InstanceNorm2d(num_features, eps=1e-5, momentum=0.1, affine=False,
    track_running_stats=False)``: PyTorch's layer: each sample's channels normalised by their own
    mean and (biased) variance over H and W, the same in training and evaluation; built from
    the mean, var and sqrt primitives (Johnson et al.'s stylizer uses it). Input (N, C, H, W);
    ``weight`` (ones) and ``bias`` (zeros) of shape (C,) when ``affine``."""

    def __init__(self, num_features, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = False, track_running_stats: bool = False, dtype=None):
        super().__init__()
        self.num_features = positive_int("InstanceNorm2d", "num_features", num_features)
        if track_running_stats:
            raise ValueError("InstanceNorm2d: track_running_stats=True is not supported (each "
                             "image is normalised by its own statistics, in training and "
                             "evaluation alike)")
        self.eps, self.momentum, self.affine = float(eps), momentum, bool(affine)
        self.track_running_stats = False
        if self.affine:
            dt = xp.dtype(dtype) if dtype is not None else xp.float32
            self.weight = Parameter(xp.ones(self.num_features, dtype=dt))
            self.bias = Parameter(xp.zeros(self.num_features, dtype=dt))
        else:
            self.weight = None
            self.bias = None

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"

    def forward(self, x):
        shape = tuple(getattr(x, "shape", ()))
        if getattr(x, "ndim", None) != 4:
            raise ValueError(f"InstanceNorm2d: expected (N, C, H, W), got shape {shape}")
        if shape[1] != self.num_features:
            raise ValueError(f"InstanceNorm2d: built for {self.num_features} channels, got "
                             f"{shape[1]} (input shape {shape})")
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = x.var(dim=(2, 3), keepdim=True, correction=0)
        y = (x - mean) / (var + self.eps).sqrt()
        if self.affine:
            c = self.num_features
            y = y * self.weight.reshape(1, c, 1, 1) + self.bias.reshape(1, c, 1, 1)
        return y
