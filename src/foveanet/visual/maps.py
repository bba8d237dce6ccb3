"""The computations of ``fv.visual``: what a network's weights, activations and gradients say
about one input. Every function returns NumPy arrays (``foveanet.visual.plots`` draws them).

- ``kernels(model, layer)``: a convolution's weights ``(C_out, C_in / groups, kH, kW)``;
- ``activations(model, x, layers)``: ``{layer name: (C, H, W) feature maps}`` of one input,
  recorded by forward hooks;
- ``saliency(model, x, target)``: ``|d score_target / d x|`` (Simonyan et al. 2014), the score
  being the class's logit (the model's output before any softmax): the map is the maximum over
  the input channels, returned with the raw gradient ``(C, H, W)``;
- ``smoothgrad(model, x, target, n, sigma)``: the mean saliency of ``n`` noisy copies of ``x``
  (Smilkov et al. 2017);
- ``gradcam(model, x, layer, target)``: Grad-CAM (Selvaraju et al. 2017): the layer's feature
  maps ``A_k`` weighted by ``w_k`` = the spatial mean of ``d score / d A_k``, ``ReLU(sum_k w_k
  A_k)``, upsampled to the input size and divided by its maximum (so it lies in [0, 1]);
- ``maximize(model, ...)``: activation maximisation, an input grown by regularised gradient
  ascent to excite one channel or one class (Erhan et al. 2009; Simonyan et al. 2014; Yosinski
  et al. 2015's jitter and blur).

Why these choices:

- The score is the logit, not the softmax probability: a probability can rise by lowering the
  other classes' scores, so its gradient mixes in evidence *against* them (Simonyan et al. 2014,
  section 3).
- Models are run in evaluation mode (dropout off, batch norm on its running statistics) and put
  back in the mode each of their modules was in. That also makes the samples of a batch
  independent, which SmoothGrad uses: its noisy copies go through the model as batches.
- No parameter receives a gradient (their ``requires_grad`` is switched off while a map is
  computed and then restored), so visualising a model in the middle of training leaves its
  ``.grad`` arrays as they were.
- Grad-CAM needs ``d score / d A`` only: the hook replaces the layer's output by a leaf tensor
  holding the same values, so the gradient arrives in that leaf and nothing below it is
  differentiated. A module that runs several times in one pass (a ReLU shared inside a residual
  block) is read at its last call, the one nearest the output; ``activations`` does the same.
- Upsampling is bilinear with half-pixel centres (PyTorch's ``F.interpolate(mode='bilinear',
  align_corners=False)``; ``mode='nearest'`` is its nearest mode), which is what published
  Grad-CAM pictures use; the map is normalised after upsampling, so its maximum is exactly 1.
- SmoothGrad's noise level is relative to the input's range, as in the paper:
  ``sigma * (max(x) - min(x))`` (``sigma`` itself for a constant input); the noise is drawn at once,
  ``standard_normal((n, C, H, W))`` from ``generator`` (the global one when None), and the map is
  the mean of the ``n`` saliency maps (absolute values before the mean: the paper's clearer
  variant), the returned gradient the mean raw gradient.

An input is one sample: an array or tensor ``(C, H, W)`` (or ``(1, C, H, W)``); it is cast to the
model's floating dtype (its first parameter's), so a float64 model gives float64 maps. Bad
arguments raise ``VisualError`` (a ValueError) naming the layer, shape or class at fault; a layer
name that the model does not have lists the names it has.
"""
from __future__ import annotations

import contextlib
import math

from .. import nn
from ..autograd import Tensor, enable_grad, no_grad
from ..backend import xp
from ..ops import tensor
from ..random import numpy_rng

__all__ = ["VisualError", "Saliency", "inspecting", "layer_names", "get_layer", "describe_layer", "conv_layers",
           "default_layers", "prepare_input", "predicted_class", "kernels", "activations",
           "saliency", "smoothgrad", "gradcam", "resize_map", "total_variation", "gaussian_blur",
           "maximize", "maximize_grid"]

CONV_TYPES = (nn.Conv2d,)
POOL_TYPES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
ACTIVATION_TYPES = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Sigmoid, nn.Tanh)
MAP_TYPES = CONV_TYPES + (nn.ConvTranspose2d,) + POOL_TYPES + ACTIVATION_TYPES
UPSAMPLE_MODES = ("bilinear", "nearest")
SHOWN_NAMES = 60  # an error lists at most this many layer names


class VisualError(ValueError):
    """A visualisation that cannot be made: an unknown or unsuitable layer, an input of the wrong
    shape, a class out of range. The message names what is at fault."""


class Saliency(tuple):
    """``(map, gradient)``: the ``(H, W)`` saliency map and the ``(C, H, W)`` gradient it is made
    from (a tuple: ``m, g = saliency(...)``; also ``.map`` and ``.gradient``)."""

    def __new__(cls, map_, gradient):
        return super().__new__(cls, (map_, gradient))

    @property
    def map(self):
        return self[0]

    @property
    def gradient(self):
        return self[1]


# ------------------------------------------------------------------------------ layers
def _model_name(model) -> str:
    return type(model).__name__


def describe_layer(module) -> str:
    """``Conv2d(1, 6, kernel_size=(5, 5), ...)``: a module's type and its first repr line."""
    extra = module.extra_repr().split("\n")[0]
    return f"{type(module).__name__}({extra})" if extra else type(module).__name__


def layer_names(model) -> list:
    """The qualified names of ``model``'s submodules (``'0'``, ``'features.3'``, ...), in
    registration order, the model itself excluded."""
    return [name for name, _ in model.named_modules() if name]


def _available(model) -> str:
    rows = [f"{name} ({type(m).__name__})" for name, m in model.named_modules() if name]
    if not rows:
        return "none (it has no submodules)"
    shown = ", ".join(rows[:SHOWN_NAMES])
    more = len(rows) - SHOWN_NAMES
    return shown + (f", ... ({more} more)" if more > 0 else "")


def get_layer(model, name: str):
    """The submodule of ``model`` called ``name``; VisualError listing the available names when
    there is none."""
    if not isinstance(name, str):
        raise VisualError(f"a layer is named by a string (e.g. '0'), got {type(name).__name__}")
    if name:
        for n, m in model.named_modules():
            if n == name:
                return m
    raise VisualError(f"{_model_name(model)} has no layer {name!r}; its layers: "
                      f"{_available(model)}")


def conv_layers(model) -> list:
    """``[(name, Conv2d)]`` of every 2-D convolution of ``model``, in registration order."""
    return [(n, m) for n, m in model.named_modules() if n and isinstance(m, CONV_TYPES)]


def _need_convs(model, what: str) -> list:
    convs = conv_layers(model)
    if not convs:
        raise VisualError(f"{_model_name(model)} has no convolution layer: {what} needs one")
    return convs


def default_layers(model) -> list:
    """The layers ``activations`` records by default: every convolution, pooling and activation
    module (their outputs without feature maps are left out when the pass runs)."""
    return [n for n, m in model.named_modules() if n and isinstance(m, MAP_TYPES)]


# ------------------------------------------------------------------------------- inputs
def _dtype(model):
    for p in model.parameters():
        if xp.issubdtype(p.data.dtype, xp.floating):
            return p.data.dtype
    return xp.dtype(xp.float32)


def prepare_input(model, x):
    """``x`` (one sample ``(C, H, W)`` or ``(1, C, H, W)``, an array or a tensor) as a ``(1, C,
    H, W)`` array of the model's floating dtype, checked: finite, and with as many channels as
    the model's first convolution takes."""
    arr = x.data if isinstance(x, Tensor) else xp.asarray(x)
    if not xp.issubdtype(arr.dtype, xp.number) or xp.issubdtype(arr.dtype, xp.complexfloating):
        raise VisualError(f"the input must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise VisualError(f"the input must be one picture of shape (C, H, W) or (1, C, H, W), "
                          f"got shape {tuple(arr.shape)}")
    if not bool(xp.isfinite(arr).all()):
        raise VisualError("the input holds non-finite values (NaN or infinity)")
    convs = conv_layers(model)
    if convs:
        name, first = convs[0]
        if arr.shape[0] != first.in_channels:
            raise VisualError(f"the input has {arr.shape[0]} channel{'s' * (arr.shape[0] != 1)} "
                              f"(shape {tuple(arr.shape)}); {_model_name(model)} takes "
                              f"{first.in_channels} (its first convolution {name!r}: "
                              f"{describe_layer(first)})")
    return xp.ascontiguousarray(arr[None], dtype=_dtype(model))


@contextlib.contextmanager
def inspecting(model):
    """Evaluation mode and parameters without gradients for the block; then as they were
    (what looking inside a trained model needs: the Playground's CNN view uses it too)."""
    modes = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in params:
        p.requires_grad = False
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in params:
            p.requires_grad = flag


def _scores(model, out, where: str):
    if not isinstance(out, Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
        raise VisualError(f"{where} needs a model that gives one score per class, (N, classes); "
                          f"{_model_name(model)} gives {shape}")
    return out


def _check_target(target, k: int):
    if target is None:
        return None
    if isinstance(target, bool) or not isinstance(target, (int, xp.integer)):
        raise VisualError(f"the target class is an index, got {target!r}")
    if not 0 <= int(target) < k:
        raise VisualError(f"target class {int(target)} is out of range: the model gives {k} "
                          f"scores (classes 0..{k - 1})")
    return int(target)


def predicted_class(model, x) -> int:
    """The class with the highest score for one input."""
    batch = prepare_input(model, x)
    with inspecting(model), no_grad():
        out = _scores(model, model(tensor(batch)), "predicted_class")
    return int(xp.argmax(out.data[0]))


def _input_gradients(model, batch, target):
    """``d score_target / d x`` of every sample of ``batch`` (N, C, H, W); the model is in
    evaluation mode, so the samples do not interact and the gradient of the summed scores is
    each sample's own. Returns ``(gradients, target)``: the target is the first sample's
    predicted class when None."""
    with enable_grad():
        xt = tensor(batch, requires_grad=True)
        out = _scores(model, model(xt), "a gradient map")
        target = _check_target(target, out.shape[1])
        if target is None:
            target = int(xp.argmax(out.data[0]))
        out[:, target].sum().backward()
    grad = xt.grad.data if xt.grad is not None else xp.zeros_like(batch)
    return grad, target


# ------------------------------------------------------------------------------- kernels
def kernels(model, layer: str | None = None):
    """A copy of the weights ``(C_out, C_in / groups, kH, kW)`` of the convolution ``layer`` (by
    module name; default: the model's first convolution)."""
    convs = _need_convs(model, "kernels")
    if layer is None:
        return convs[0][1].weight.data.copy()
    module = get_layer(model, layer)
    if not isinstance(module, CONV_TYPES):
        names = ", ".join(n for n, _ in convs)
        raise VisualError(f"layer {layer!r} is a {describe_layer(module)}, not a convolution; "
                          f"the convolutions of {_model_name(model)}: {names}")
    return module.weight.data.copy()


# --------------------------------------------------------------------------- activations
def _record(model, names, replace: bool = False):
    """Install forward hooks on the layers ``names``; returns ``(handles, calls, order)``:
    calls[name] is the list of that layer's outputs, one per call, and ``order`` the names in
    the order of their first calls. With ``replace``, each output is replaced by a leaf tensor
    holding the same values that requires a gradient (``gradcam``)."""
    calls = {name: [] for name in names}
    order = []
    handles = []
    for name in names:
        module = get_layer(model, name)

        def hook(m, args, out, _name=name):
            if not calls[_name]:
                order.append(_name)
            if replace and isinstance(out, Tensor):
                out = Tensor(out.data, requires_grad=True)
                calls[_name].append(out)
                return out
            calls[_name].append(out)
            return None
        handles.append(module.register_forward_hook(hook))
    return handles, calls, order


def _feature_maps(out):
    """The first sample's (C, H, W) maps of a layer output, or None when it has none."""
    if isinstance(out, Tensor) and out.ndim == 4:
        return out.data[0]
    return None


def activations(model, x, layers=None) -> dict:
    """``{layer name: (C, H, W) array}``: the feature maps of one input at each layer of
    ``layers`` (module names; default ``default_layers(model)``: every convolution, pooling and
    activation module whose output has feature maps), in the order the forward pass reached them.
    A named layer that gives no feature maps (a Linear's (1, F) output), or that the pass does
    not run, is a VisualError."""
    if isinstance(layers, str):
        layers = [layers]
    explicit = layers is not None
    names = list(dict.fromkeys(layers)) if explicit else default_layers(model)
    if explicit and not names:
        raise VisualError("activations: no layer named")
    for name in names:
        get_layer(model, name)  # an unknown name fails before the pass
    batch = prepare_input(model, x)
    handles, calls, order = _record(model, names)
    try:
        with inspecting(model), no_grad():
            model(tensor(batch))
    finally:
        for h in handles:
            h.remove()
    result = {}
    for name in order + [n for n in names if n not in order]:
        outs = calls[name]
        if not outs:
            if explicit:
                raise VisualError(f"layer {name!r} ({describe_layer(get_layer(model, name))}) "
                                  f"is not run by {_model_name(model)}'s forward pass")
            continue
        maps = _feature_maps(outs[-1])
        if maps is None:
            if explicit:
                shape = tuple(outs[-1].shape) if hasattr(outs[-1], "shape") else "no tensor"
                raise VisualError(f"layer {name!r} ({describe_layer(get_layer(model, name))}) "
                                  f"gives outputs of shape {shape}, not feature maps (N, C, H, "
                                  "W); choose a convolution, pooling or activation layer before "
                                  "the flattening")
            continue
        result[name] = maps.copy()
    if not result:
        raise VisualError(f"{_model_name(model)} has no convolution, pooling or activation layer "
                          "with feature maps (N, C, H, W) to show")
    return result


# ------------------------------------------------------------------------------ saliency
def saliency(model, x, target=None) -> Saliency:
    """``(map, gradient)``: the gradient of the class score (logit) ``target`` (default: the
    predicted class) with respect to the input, ``(C, H, W)``, and the saliency map ``max_c |d
    score / d x_c|``, ``(H, W)``."""
    batch = prepare_input(model, x)
    with inspecting(model):
        grad, _ = _input_gradients(model, batch, target)
    return Saliency(xp.abs(grad[0]).max(axis=0), grad[0])


def smoothgrad(model, x, target=None, n: int = 25, sigma: float = 0.15, generator=None,
               batch_size: int = 32) -> Saliency:
    """SmoothGrad: ``(map, gradient)`` averaged over ``n`` copies of ``x`` with Gaussian noise
    of standard deviation ``sigma * (max(x) - min(x))`` (the module docstring says how it is
    drawn). ``target`` defaults to the class predicted for ``x`` itself. The copies go through
    the model ``batch_size`` at a time."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise VisualError(f"smoothgrad: n must be a positive integer, got {n!r}")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma >= 0):
        raise VisualError(f"smoothgrad: sigma must be a finite number >= 0, got {sigma!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise VisualError(f"smoothgrad: batch_size must be a positive integer, got {batch_size!r}")
    batch = prepare_input(model, x)
    span = float(batch.max() - batch.min())
    scale = sigma * span if span > 0 else float(sigma)
    noise = numpy_rng(generator).standard_normal((n,) + batch.shape[1:]) * scale
    noisy = (batch.astype(xp.float64) + noise).astype(batch.dtype)
    with inspecting(model):
        if target is None:
            with no_grad():
                out = _scores(model, model(tensor(batch)), "smoothgrad")
            target = int(xp.argmax(out.data[0]))
        grads = []
        for i in range(0, n, batch_size):
            g, target = _input_gradients(model, noisy[i:i + batch_size], target)
            grads.append(g)
    grads = xp.concatenate(grads)
    return Saliency(xp.abs(grads).max(axis=1).mean(axis=0), grads.mean(axis=0))


# ------------------------------------------------------------------------------ Grad-CAM
def _axis_weights(n_in: int, n_out: int, mode: str):
    """(i0, i1, l1) per output position: input rows and the weight of i1 (PyTorch's rules)."""
    scale = n_in / n_out
    dst = xp.arange(n_out, dtype=xp.float64)
    if mode == "nearest":
        i0 = xp.minimum(xp.floor(dst * scale).astype(xp.int64), n_in - 1)
        return i0, i0, xp.zeros(n_out)
    src = xp.maximum(scale * (dst + 0.5) - 0.5, 0.0)
    i0 = xp.minimum(xp.floor(src).astype(xp.int64), n_in - 1)
    i1 = xp.minimum(i0 + 1, n_in - 1)
    return i0, i1, src - i0


def resize_map(m, size, mode: str = "bilinear"):
    """A 2-D map resized to ``size`` (H, W): ``'bilinear'`` with half-pixel centres
    (``F.interpolate(..., mode='bilinear', align_corners=False)``) or ``'nearest'``
    (``mode='nearest'``), in float64."""
    if mode not in UPSAMPLE_MODES:
        raise VisualError(f"resize_map: mode must be one of {', '.join(UPSAMPLE_MODES)}, "
                          f"got {mode!r}")
    m = xp.asarray(m, dtype=xp.float64)
    if m.ndim != 2:
        raise VisualError(f"resize_map: expected a 2-D map, got shape {tuple(m.shape)}")
    (h, w), (oh, ow) = m.shape, (int(size[0]), int(size[1]))
    r0, r1, rl = _axis_weights(h, oh, mode)
    c0, c1, cl = _axis_weights(w, ow, mode)
    rows = m[r0] * (1 - rl)[:, None] + m[r1] * rl[:, None]
    return rows[:, c0] * (1 - cl)[None, :] + rows[:, c1] * cl[None, :]


def gradcam(model, x, layer: str | None = None, target=None, mode: str | None = "bilinear"):
    """Grad-CAM of one input at ``layer`` (a module name; default: the model's last
    convolution) for class ``target`` (default: the predicted one): ``w_k`` = the spatial mean
    of ``d score / d A_k``, ``cam = ReLU(sum_k w_k A_k)``, resized to the input's (H, W) with
    ``mode`` (``'bilinear'``, ``'nearest'``, or None to keep the layer's resolution), divided by
    its maximum (all zeros when nothing is positive). Returns the (H, W) map in [0, 1]."""
    if mode is not None and mode not in UPSAMPLE_MODES:
        raise VisualError(f"gradcam: mode must be one of {', '.join(UPSAMPLE_MODES)} or None, "
                          f"got {mode!r}")
    if layer is None:
        layer = _need_convs(model, "Grad-CAM")[-1][0]
    module = get_layer(model, layer)
    batch = prepare_input(model, x)
    handles, calls, _ = _record(model, [layer], replace=True)
    try:
        with inspecting(model), enable_grad():
            out = _scores(model, model(tensor(batch)), "Grad-CAM")
            target = _check_target(target, out.shape[1])
            if target is None:
                target = int(xp.argmax(out.data[0]))
            seen = calls[layer]
            if not seen:
                raise VisualError(f"layer {layer!r} ({describe_layer(module)}) is not run by "
                                  f"{_model_name(model)}'s forward pass")
            a = seen[-1]
            if not isinstance(a, Tensor) or a.ndim != 4:
                shape = tuple(a.shape) if hasattr(a, "shape") else type(a).__name__
                raise VisualError(f"layer {layer!r} ({describe_layer(module)}) gives outputs of "
                                  f"shape {shape}: Grad-CAM needs feature maps (N, C, H, W); "
                                  "choose a convolution, pooling or activation layer before the "
                                  "flattening")
            score = out[0, target]
            if score.requires_grad:
                score.backward()
    finally:
        for h in handles:
            h.remove()
    maps = a.data[0].astype(xp.float64)
    grads = a.grad.data[0].astype(xp.float64) if a.grad is not None else xp.zeros_like(maps)
    weights = grads.mean(axis=(1, 2))
    cam = xp.maximum((weights[:, None, None] * maps).sum(axis=0), 0.0)
    if mode is not None:
        cam = resize_map(cam, batch.shape[2:], mode)
    top = cam.max()
    return cam / top if top > 0 else xp.zeros_like(cam)


# ------------------------------------------------------------------ activation maximisation
def total_variation(x):
    """The squared total variation of a batch ``(N, C, H, W)`` (a tensor): the sum of the
    squared differences between vertically and horizontally neighbouring pixels (Mahendran and
    Vedaldi's TV with beta = 2, smooth where the absolute value is not)."""
    dy = x[:, :, 1:, :] - x[:, :, :-1, :]
    dx = x[:, :, :, 1:] - x[:, :, :, :-1]
    return (dy * dy).sum() + (dx * dx).sum()


def _gaussian_kernel(sigma: float):
    radius = max(1, int(math.ceil(3 * sigma)))
    t = xp.arange(-radius, radius + 1, dtype=xp.float64)
    k = xp.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x, sigma: float):
    """``x`` (C, H, W) blurred per channel by a Gaussian of standard deviation ``sigma`` pixels
    (separable, edges replicated); ``sigma`` 0 returns a copy."""
    x = xp.asarray(x)
    if sigma <= 0:
        return x.copy()
    k = _gaussian_kernel(sigma)
    r = len(k) // 2
    out = x.astype(xp.float64)
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (r, r)
        p = xp.pad(out, pad, mode="edge")
        n = out.shape[axis]
        out = sum(k[i] * xp.take(p, xp.arange(i, i + n), axis=axis) for i in range(len(k)))
    return out.astype(x.dtype)


def _objective(model, layer, channel, target_class):
    """A function of the batch tensor giving the scalar to maximise, and a description."""
    if target_class is not None:
        def score(xt):
            out = _scores(model, model(xt), "maximize(target_class=...)")
            return out[0, _check_target(target_class, out.shape[1])]
        return score
    module = get_layer(model, layer)

    def act(xt):
        handles, calls, _ = _record(model, [layer])
        try:
            model(xt)
        finally:
            for h in handles:
                h.remove()
        if not calls[layer]:
            raise VisualError(f"layer {layer!r} ({describe_layer(module)}) is not run by "
                              f"{_model_name(model)}'s forward pass")
        out = calls[layer][-1]
        if not isinstance(out, Tensor) or out.ndim not in (2, 4):
            raise VisualError(f"layer {layer!r} ({describe_layer(module)}) gives "
                              f"{getattr(out, 'shape', type(out).__name__)}: maximize needs "
                              "channels (N, C, H, W) or units (N, F)")
        if not 0 <= channel < out.shape[1]:
            raise VisualError(f"channel {channel} is out of range: layer {layer!r} "
                              f"({describe_layer(module)}) has {out.shape[1]} "
                              f"{'channels' if out.ndim == 4 else 'units'} (0..{out.shape[1] - 1})")
        return out[0, channel].mean() if out.ndim == 4 else out[0, channel]
    return act


def _check_shape(input_shape):
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise VisualError(f"maximize: input_shape must be (C, H, W) of positive sizes, got "
                          f"{input_shape!r}")
    return shape


def maximize(model, layer: str | None = None, channel: int | None = None, target_class=None,
             steps: int = 200, lr: float = 0.1, l2: float = 1e-3, blur_every: int = 4,
             jitter: int = 1, generator=None, *, input_shape=None, tv: float = 1e-3,
             blur_sigma: float = 0.5, init_scale: float = 0.01, clip=None):
    """An input ``(C, H, W)`` that excites one unit: channel ``channel`` of ``layer`` (the mean
    of its feature map; a unit of a (N, F) output) or, with ``target_class``, that class's score
    (logit). Starting from low noise (``init_scale * standard_normal``, from ``generator``) it
    takes ``steps`` steps of gradient ascent on

        objective(x) - l2 * sum(x^2) - tv * total_variation(x)

    each of length ``lr`` in root-mean-square pixel units (the gradient divided by its RMS, so
    ``lr`` means the same for every model), computed on a copy of x rolled by a random shift of
    at most ``jitter`` pixels in each direction (and rolled back); every ``blur_every`` steps
    (0: never) x is blurred by a Gaussian of ``blur_sigma`` pixels, and ``clip=(low, high)``
    keeps x in a range after every step. ``input_shape`` (C, H, W) is required: a model does not
    know its input size (a run's is ``run.input_shape``). The penalties are sums over the pixels,
    so ``l2`` bounds the input's size in its own units (inputs in [0, 1] stay of order 1). A ReLU
    channel that is zero everywhere at the start has no gradient to climb (only the penalties
    move x): maximise the convolution before it instead."""
    if (target_class is None) == (layer is None or channel is None):
        if target_class is not None:
            raise VisualError("maximize: give target_class, or layer and channel, not both")
        raise VisualError("maximize: give target_class (a class score), or layer and channel "
                          "(a channel's mean activation)")
    if input_shape is None:
        raise VisualError("maximize: input_shape (C, H, W) is needed: a model does not know its "
                          "input size (a run's: run.input_shape)")
    shape = _check_shape(input_shape)
    for name, v, low in (("steps", steps, 0), ("blur_every", blur_every, 0), ("jitter", jitter, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise VisualError(f"maximize: {name} must be an integer >= {low}, got {v!r}")
    for name, v in (("lr", lr), ("l2", l2), ("tv", tv), ("blur_sigma", blur_sigma),
                    ("init_scale", init_scale)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise VisualError(f"maximize: {name} must be a finite number >= 0, got {v!r}")
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int)):
        raise VisualError(f"maximize: channel is an index, got {channel!r}")
    if layer is not None and target_class is None:
        get_layer(model, layer)
    rng = numpy_rng(generator)
    dtype = _dtype(model)
    x = (init_scale * rng.standard_normal(shape)).astype(dtype)
    prepare_input(model, x)  # the channel check
    objective = _objective(model, layer, channel, target_class)
    with inspecting(model), enable_grad():
        for step in range(steps):
            dy, dx = (int(v) for v in rng.integers(-jitter, jitter + 1, size=2)) if jitter \
                else (0, 0)
            xt = tensor(xp.roll(x, (dy, dx), axis=(1, 2))[None], requires_grad=True)
            total = objective(xt)
            if l2:
                total = total - l2 * (xt * xt).sum()
            if tv:
                total = total - tv * total_variation(xt)
            total.backward()
            g = xp.roll(xt.grad.data[0], (-dy, -dx), axis=(1, 2))
            rms = float(xp.sqrt(xp.mean(g.astype(xp.float64) ** 2)))
            if rms > 0:
                x = x + (lr / rms) * g
            if clip is not None:
                x = xp.clip(x, clip[0], clip[1])
            if blur_every and (step + 1) % blur_every == 0:
                x = gaussian_blur(x, blur_sigma)
    return x.astype(dtype)


def maximize_grid(model, layer: str | None = None, channels=None, classes=None, **options):
    """``maximize`` for several channels of ``layer`` or several classes (exactly one of
    ``channels`` and ``classes``); returns ``(K, C, H, W)``, one input per channel or class,
    drawn one after the other from ``options['generator']``."""
    if (channels is None) == (classes is None):
        raise VisualError("maximize_grid: give channels (with layer) or classes, not both")
    if channels is not None:
        if layer is None:
            raise VisualError("maximize_grid: channels need a layer")
        items = [dict(layer=layer, channel=int(c)) for c in channels]
    else:
        items = [dict(target_class=int(c)) for c in classes]
    if not items:
        raise VisualError("maximize_grid: no channel or class given")
    return xp.stack([maximize(model, **item, **options) for item in items])
