"""Neural style transfer: a picture with the content of one image painted in the style of another.

::

    from foveanet.visual import style
    image, info = style.stylize("photo.jpg", "painting.jpg", size=256, steps=300)
    print(info["features"])                      # the network and the layers the losses read
    style.save_image(image, "out.png")

    net = style.feature_network("vgg19.onnx")    # an ImageNet VGG from the ONNX model zoo
    image, info = style.stylize("photo.jpg", "painting.jpg", features=net)

    stylizer = style.train_stylizer("painting.jpg", photos, steps=2000)   # Johnson et al.
    out = stylizer.apply(photo)                  # one forward pass

Two ways, both built on the same perceptual losses:

- **Optimisation** (Gatys, Ecker & Bethge 2015, "A Neural Algorithm of Artistic Style"):
  ``stylize`` starts from the content image (or from noise) and changes the *pixels* to minimise

      content_weight * content_loss + style_weight * style_loss + tv_weight * tv_loss

  with L-BFGS (``fv.optim.LBFGS`` with the strong-Wolfe line search, as the paper and Johnson's
  ``neural-style`` do) or Adam. Only the image is optimised: the feature network is put in
  evaluation mode and its parameters get no gradient (``requires_grad`` off for the run, then
  restored), so a network in the middle of training keeps its ``.grad`` arrays.
- **A feed-forward network** (Johnson, Alahi & Fei-Fei 2016, "Perceptual Losses for Real-Time
  Style Transfer and Super-Resolution"): ``train_stylizer`` trains ``fv.models.transform_net``
  with the same losses over a set of content images (Adam), for one style; the ``Stylizer`` it
  returns stylises any picture in one forward pass (``apply``).

The losses (``F_l`` the (C, H*W) feature maps of layer l for one image):

- ``gram_matrix(F) = F F^T / (C H W)``: the correlations between the channels, averaged over
  the positions and divided by the channel count too (PyTorch's style-transfer tutorial's
  normalisation). Dividing by H W makes a style image of any size comparable with the picture;
  dividing by C keeps the entries of layers of different widths of one magnitude, so that equal
  layer weights mean about equal say.
- ``content_loss = MSE(F_content_layer(x), F_content_layer(content))``, the mean over C, H, W.
- ``style_loss = sum_l w_l MSE(G_l(x), G_l(style))``, the mean over the C x C entries; the
  default weights are 1 per layer (the tutorial's; Gatys et al.'s ``w_l = 1/5`` is the same with
  a five times smaller ``style_weight``).
- ``tv_loss``: the squared total variation of ``foveanet.visual.total_variation`` (squared
  differences of neighbouring pixels, summed) divided by the number of pixel values N C H W, so
  its weight does not depend on the picture's size. It discourages the high-frequency noise the
  optimisation otherwise leaves (Mahendran & Vedaldi 2015; Johnson et al. 2016).

The default weights (``style_weight=1e6``, ``content_weight=1``, ``tv_weight=DEFAULT_TV_WEIGHT``)
suit the default feature network; another network's features have other magnitudes, and its
weights are chosen by looking at the pictures.

**The feature network** (``feature_network``): any foveanet module whose layers are read by their
names (``foveanet.visual.layer_names``: ``'features.3'``, ``'scale1'``), an ONNX file (an
ImageNet VGG-19 of the ONNX model zoo, downloaded by the user: nothing is fetched here) whose
layers are the names of the graph's values or nodes (``'vgg0_relu8_fwd'``, ``'relu4_2'``), or,
by default, ``fv.models.style_features``: a random-weight multi-scale CNN (He et al. 2016;
Ustyuzhaninov et al. 2017, see ``foveanet.models.stylenet``) built deterministically from a seed,
which needs no download. A module's forward pass stops as soon as every layer the losses need
has given its output (the rest, a classifier among it, is not computed), and an ONNX graph is cut
after them (which is also what lets a VGG exported at 224x224 read a 256x256 picture: its
classifier would refuse it). A layer is read at its first call in the pass.

Inputs are pictures in [0, 1]; the feature network sees them normalised:
``normalize='imagenet'`` (the default) subtracts ImageNet's mean (0.485, 0.456, 0.406) and
divides by its standard deviation (0.229, 0.224, 0.225) per RGB channel, which is what
torchvision's networks and the ONNX model zoo's VGG-19 (``vgg19-7.onnx``) expect, and gives the
random network the zero-centred inputs it is built for; ``None`` (or ``'none'``) passes them as
they are; a pair ``(mean, std)`` of three numbers each sets other values. (A Caffe-converted VGG
takes BGR values in 0..255 less the mean: the channel swap is not a mean/std, so such a network
needs a small wrapper module in front.)

Default layers: the network's own ``default_content_layer`` / ``default_style_layers`` when it
has them (the random network: content ``scale2``, style every scale); otherwise Gatys et al.'s
choice, found by position: the ReLUs before the classifier (the first flattening, linear layer or
global pooling) grouped by the pooling layers between them, the style at
the first ReLU of each of the first five groups (VGG-19's relu1_1, relu2_1, relu3_1, relu4_1,
relu5_1) and the content at the second ReLU of the fourth group (relu4_2).

Bad arguments raise ``VisualError`` (a ValueError) naming the layer, shape or setting at fault; a
layer the network does not have lists those it has; a picture that cannot be read is an
``ImageError`` naming the file, an ONNX file that cannot be loaded an ``OnnxLoadError``.
"""
from __future__ import annotations

import math
import numbers
import os
import time

from ..autograd import Tensor, enable_grad, no_grad
from ..backend import xp
from ..data.images import prepare_image
from ..models.stylenet import IMAGENET_MEAN, IMAGENET_STD, RandomFeatures, TransformNet
from ..nn import Module
from ..ops import gram, mse_loss, tensor
from ..optim import LBFGS, Adam
from ..random import numpy_rng
from ..train.generative import image_grid, png_bytes
from ..train.io import atomic_write_bytes
from .maps import (VisualError, inspecting, describe_layer, get_layer, layer_names, resize_map,
                   total_variation)

__all__ = ["gram_matrix", "content_loss", "style_loss", "tv_loss", "FeatureNetwork",
           "OnnxFeatureNetwork", "feature_network", "load_picture", "stylize", "train_stylizer",
           "Stylizer", "side_by_side", "save_image", "DEFAULT_TV_WEIGHT", "NORMALIZATIONS",
           "OPTIMIZERS", "INITS"]

DEFAULT_TV_WEIGHT = 10.0
NORMALIZATIONS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "none": None}
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}
SHOWN_NAMES = 60          # an error lists at most this many layer names
RELU_TYPES = ("ReLU", "LeakyReLU", "ELU")
POOL_TYPES = ("MaxPool2d", "AvgPool2d", "MaxPool", "AveragePool")
ONNX_RELUS = ("Relu", "LeakyRelu", "Elu")
# where the feature maps end (a classifier's flattening), for the default layers
END_TYPES = ("Flatten", "Linear", "AdaptiveAvgPool2d", "Gemm", "MatMul", "Reshape",
             "GlobalAveragePool", "GlobalMaxPool")


# ================================================================================ the losses
def gram_matrix(features):
    """The Gram matrix ``F F^T / (C H W)`` of feature maps (a tensor): ``(N, C, H, W)`` gives
    ``(N, C, C)``, one sample ``(C, H, W)`` gives ``(C, C)`` (see the module docstring for the
    normalisation). Differentiable."""
    f = features if isinstance(features, Tensor) else tensor(xp.asarray(features))
    if f.ndim not in (3, 4):
        raise VisualError(f"gram_matrix: expected feature maps (N, C, H, W) or (C, H, W), got "
                          f"shape {tuple(f.shape)}")
    one = f.ndim == 3
    if one:
        f = f.reshape(1, *f.shape)
    n, c, h, w = f.shape
    flat = f.reshape(n, c, h * w)
    g = gram(flat) / (c * h * w)  # one product each way
    return g[0] if one else g


def content_loss(features, target):
    """``MSE(features, target)``, the mean over every element: the content loss of one layer's
    feature maps against the content image's (``target``, an array or tensor of the same shape;
    no gradient flows into it)."""
    f = features if isinstance(features, Tensor) else tensor(xp.asarray(features))
    t = target.detach() if isinstance(target, Tensor) else tensor(xp.asarray(target, f.dtype))
    if tuple(t.shape) != tuple(f.shape):
        raise VisualError(f"content_loss: the features have shape {tuple(f.shape)}, the target "
                          f"{tuple(t.shape)}")
    return mse_loss(f, t)


def _items(x, what):
    if isinstance(x, dict):
        return list(x.items())
    if isinstance(x, (list, tuple)):
        return list(enumerate(x))
    raise VisualError(f"style_loss: {what} must be a dict (layer -> value) or a list, got "
                      f"{type(x).__name__}")


def style_loss(features, targets, weights=None):
    """``sum_l w_l MSE(gram_matrix(F_l), G_l)``: ``features`` maps each layer to its feature maps
    ``(N, C, H, W)`` (a dict, or a list), ``targets`` each layer to the style image's Gram matrix
    ``(C, C)`` (or ``(1, C, C)``; the same for every sample of the batch) or ``(N, C, C)``;
    ``weights`` a dict or list of w_l (default 1 each; a layer of weight 0 is left out).
    Differentiable in the features."""
    feats = _items(features, "features")
    if not feats:
        raise VisualError("style_loss: no layer given")
    tmap = dict(_items(targets, "targets"))
    wmap = {k: 1.0 for k, _ in feats} if weights is None else dict(_items(weights, "weights"))
    total = None
    for key, f in feats:
        if key not in tmap:
            raise VisualError(f"style_loss: no target Gram matrix for layer {key!r}")
        g = gram_matrix(f)
        if g.ndim == 2:
            g = g.reshape(1, *g.shape)
        t = tmap[key]
        t = t.detach() if isinstance(t, Tensor) else tensor(xp.asarray(t, dtype=g.dtype))
        if t.ndim == 2:
            t = t.reshape(1, *t.shape)
        if t.ndim != 3 or t.shape[1:] != g.shape[1:] or t.shape[0] not in (1, g.shape[0]):
            raise VisualError(f"style_loss: layer {key!r} has a Gram matrix of shape "
                              f"{tuple(g.shape)}, its target {tuple(t.shape)}")
        if t.shape[0] != g.shape[0]:
            t = t.expand(*g.shape)
        if key not in wmap:
            raise VisualError(f"style_loss: no weight for layer {key!r}")
        w = float(wmap[key])
        if w == 0:
            continue
        term = mse_loss(g, t) * w
        total = term if total is None else total + term
    return total if total is not None else (feats[0][1] * 0).sum()


def tv_loss(x, reduction: str = "mean"):
    """The squared total variation of images ``(N, C, H, W)`` (``visual.total_variation``), divided
    by N C H W (``reduction='mean'``, the default: independent of the size) or not (``'sum'``)."""
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise VisualError(f"tv_loss: expected a tensor of images (N, C, H, W), got "
                          f"{tuple(getattr(x, 'shape', ())) or type(x).__name__}")
    if reduction not in ("mean", "sum"):
        raise VisualError(f"tv_loss: reduction must be 'mean' or 'sum', got {reduction!r}")
    tv = total_variation(x)
    return tv / x.numel() if reduction == "mean" else tv


# ========================================================================= feature networks
class _Enough(Exception):
    """Raised by a hook once every layer wanted has given its output: ends the forward pass."""


def _normalization(normalize):
    """(mean, std) arrays of shape (1, 3, 1, 1), or None; and a description."""
    if isinstance(normalize, str):
        key = normalize.lower()
        if key not in NORMALIZATIONS:
            raise VisualError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, None or a "
                              f"(mean, std) pair, got {normalize!r}")
        normalize = NORMALIZATIONS[key]
        if normalize is None:
            return None, "none (pictures in [0, 1] as they are)"
        label = "ImageNet mean/std"
    else:
        label = None
    if normalize is None:
        return None, "none (pictures in [0, 1] as they are)"
    try:
        mean, std = (xp.asarray(v, dtype=xp.float64).reshape(-1) for v in normalize)
    except (TypeError, ValueError):
        raise VisualError(f"normalize: a (mean, std) pair of three numbers each, got "
                          f"{normalize!r}") from None
    if mean.size != 3 or std.size != 3 or not xp.isfinite(mean).all() or \
            not (xp.isfinite(std).all() and (std > 0).all()):
        raise VisualError(f"normalize: mean and std need three finite numbers each (std > 0), "
                          f"got {normalize!r}")
    text = (label or "mean/std") + " (mean " + ", ".join(f"{v:g}" for v in mean) + "; std " + \
        ", ".join(f"{v:g}" for v in std) + ")"
    return (mean.reshape(1, 3, 1, 1), std.reshape(1, 3, 1, 1)), text


def _float_dtype(params):
    for p in params:
        if xp.issubdtype(p.data.dtype, xp.floating):
            return p.data.dtype
    return xp.dtype(xp.float32)


def _names_text(rows) -> str:
    if not rows:
        return "none"
    shown = ", ".join(rows[:SHOWN_NAMES])
    more = len(rows) - SHOWN_NAMES
    return shown + (f", ... ({more} more)" if more > 0 else "")


def _gatys_defaults(ordered):
    """(content, style) from ``ordered`` [(name, kind)] with kind 'relu', 'pool', 'end' or other:
    the ReLUs before the first 'end' (a classifier's flattening) grouped by the poolings, the
    style at the first ReLU of each of the first five groups, the content at the second ReLU of
    the fourth group (or the last ReLU of the last group)."""
    groups, current = [], []
    for name, kind in ordered:
        if kind == "end":
            break
        if kind == "relu":
            current.append(name)
        elif kind == "pool" and current:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    if not groups:
        return None, []
    style = [g[0] for g in groups[:5]]
    g4 = groups[min(3, len(groups) - 1)]
    content = g4[1] if len(g4) > 1 else g4[-1]
    return content, style


class FeatureNetwork:
    """A foveanet module as the feature network of the losses: ``FeatureNetwork(model,
    normalize='imagenet', name=None)``; its layers are the names of ``layer_names(model)``.

    - ``features(x, layers)``: ``{layer: (N, C, H, W) tensor}`` for a batch of pictures in [0, 1]
      (a tensor: gradients flow back to it), normalised first;
    - ``check(layer)``: the layer's name, or a VisualError listing the available ones;
    - ``default_content_layer``, ``default_style_layers``, ``description``, ``dtype``."""

    kind = "module"

    def __init__(self, model, normalize="imagenet", name=None):
        if not isinstance(model, Module):
            raise VisualError(f"a feature network is a foveanet Module or an ONNX file, got "
                              f"{type(model).__name__}")
        self.model = model
        self.norm, self.normalization = _normalization(normalize)
        self.dtype = _float_dtype(model.parameters())
        self.description = name or getattr(model, "description", None) or \
            f"{type(model).__name__} ({model.num_parameters():,} parameters)"
        content = getattr(model, "default_content_layer", None)
        style = getattr(model, "default_style_layers", None)
        if content is None or not style:
            c2, s2 = _gatys_defaults(self._ordered())
            content, style = content or c2, style or s2
        self.default_content_layer, self.default_style_layers = content, list(style or [])

    def _ordered(self):
        out = []
        for n, m in self.model.named_modules():
            if not n:
                continue
            t = type(m).__name__
            out.append((n, "relu" if t in RELU_TYPES else "pool" if t in POOL_TYPES else
                        "end" if t in END_TYPES else t))
        return out

    def layer_names(self) -> list:
        return layer_names(self.model)

    def check(self, layer: str) -> str:
        get_layer(self.model, layer)  # VisualError naming the available layers
        return layer

    def describe(self, layer: str) -> str:
        return f"{layer} ({describe_layer(get_layer(self.model, layer))})"

    def frozen(self):
        """The block in evaluation mode without parameter gradients; restored after."""
        return inspecting(self.model)

    def use(self, layers) -> None:
        """Prepare to read ``layers`` (and any subset of them); nothing to do for a module."""
        for n in layers:
            self.check(n)

    def normalized(self, x):
        if self.norm is None:
            return x
        mean, std = self.norm
        return (x - mean.astype(x.dtype)) / std.astype(x.dtype)

    def features(self, x, layers) -> dict:
        names = list(dict.fromkeys(layers))
        for n in names:
            self.check(n)
        got, handles = {}, []
        for n in names:
            def hook(m, args, out, _name=n):
                if _name not in got:
                    got[_name] = out
                    if len(got) == len(names):
                        raise _Enough
            handles.append(get_layer(self.model, n).register_forward_hook(hook))
        try:
            self.model(self.normalized(x))
        except _Enough:
            pass
        except (ValueError, TypeError) as exc:
            raise VisualError(f"{self.description} cannot read pictures of shape "
                              f"{tuple(x.shape)}: {exc}") from None
        finally:
            for h in handles:
                h.remove()
        return self._checked(got, names)

    def _checked(self, got, names):
        for n in names:
            if n not in got:
                raise VisualError(f"layer {self.describe(n)} is not run by the forward pass of "
                                  f"{self.description}")
            out = got[n]
            if not isinstance(out, Tensor) or out.ndim != 4:
                shape = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
                raise VisualError(f"layer {self.describe(n)} gives outputs of shape {shape}, not "
                                  "feature maps (N, C, H, W): choose a convolution, pooling or "
                                  "activation layer")
        return {n: got[n] for n in names}


def _copy_fields(dst, src, skip=()):
    """Copy the set fields of protobuf message ``src`` into ``dst``, except those in ``skip``."""
    for fd, value in src.ListFields():
        if fd.name in skip:
            continue
        repeated = getattr(fd, "is_repeated", None)  # newer protobuf; older ones: .label
        if (fd.label == fd.LABEL_REPEATED) if repeated is None else repeated:
            getattr(dst, fd.name).extend(value)
        elif fd.type == fd.TYPE_MESSAGE:
            getattr(dst, fd.name).CopyFrom(value)
        else:
            setattr(dst, fd.name, value)


class OnnxFeatureNetwork(FeatureNetwork):
    """An ONNX file (or an ``OnnxModule``) as the feature network: its layers are the names of
    the graph's values (node outputs) or of its nodes. For each set of layers read, the graph is
    cut after them (the nodes they do not need are dropped) and imported as its own module."""

    kind = "onnx"

    def __init__(self, source, normalize="imagenet", name=None):
        from .. import onnx as fv_onnx
        module = source if isinstance(source, Module) else fv_onnx.load(source)
        self._proto = module.to_model_proto()
        self.source = getattr(module, "source", str(source))
        del module
        g = self._proto.graph
        inits = {t.name for t in g.initializer}
        inputs = [v.name for v in g.input if v.name not in inits]
        if len(inputs) != 1:
            raise VisualError(f"{self.source}: a feature network takes one picture; this graph "
                              f"has {len(inputs)} inputs ({', '.join(inputs) or 'none'})")
        self._input = inputs[0]
        self._producer, self._node_of, self._rows, ordered = {}, {}, [], []
        for i, node in enumerate(g.node):
            for o in node.output:
                if o:
                    self._producer[o] = i
            if node.op_type == "Constant" or not node.output or not node.output[0]:
                continue
            if node.name:
                self._node_of[node.name] = node.output[0]
            label = node.output[0] + (f" [{node.name}]" if node.name and node.name !=
                                      node.output[0] else "")
            self._rows.append(f"{label} ({node.op_type})")
            op = node.op_type
            kind = "relu" if op in ONNX_RELUS else "pool" if op in POOL_TYPES else \
                "end" if op in END_TYPES else op
            ordered.append((node.output[0], kind))
        self.norm, self.normalization = _normalization(normalize)
        dtypes = {t.data_type for t in g.initializer}
        self.dtype = xp.dtype(xp.float64) if dtypes == {11} else xp.dtype(xp.float32)
        opset = max((o.version for o in self._proto.opset_import), default=0)
        self.description = name or f"ONNX file {self.source} (opset {opset}, {len(g.node)} nodes)"
        self.default_content_layer, self.default_style_layers = _gatys_defaults(ordered)
        self._modules = {}
        self.model = None

    def layer_names(self) -> list:
        return [r.split(" ")[0] for r in self._rows]

    def _value(self, layer):
        if not isinstance(layer, str):
            raise VisualError(f"a layer is named by a string, got {type(layer).__name__}")
        if layer in self._producer and layer != self._input:
            return layer
        if layer in self._node_of:
            return self._node_of[layer]
        raise VisualError(f"{self.description} has no layer {layer!r}; its layers (node outputs "
                          f"[node names]): {_names_text(self._rows)}")

    def check(self, layer: str) -> str:
        self._value(layer)
        return layer

    def describe(self, layer: str) -> str:
        v = self._value(layer)
        node = self._proto.graph.node[self._producer[v]]
        return f"{layer} ({node.op_type})"

    def frozen(self):
        import contextlib
        return contextlib.nullcontext()

    def use(self, layers) -> None:
        """Cut the graph for ``layers``: later reads of any subset of them reuse that cut."""
        self._module({self._value(n) for n in layers})

    def _module(self, values):
        values = set(values)
        for key, module in self._modules.items():
            if values <= set(key):
                return module
        key = tuple(sorted(values))
        import onnx
        from .. import onnx as fv_onnx
        g = self._proto.graph
        keep, todo = set(), [self._producer[v] for v in key]
        while todo:
            i = todo.pop()
            if i in keep:
                continue
            keep.add(i)
            todo.extend(self._producer[n] for n in g.node[i].input if n in self._producer)
        nodes = [g.node[i] for i in sorted(keep)]
        used = {n for node in nodes for n in node.input}
        produced = {o for node in nodes for o in node.output}
        inits = [t for t in g.initializer if t.name in used]
        init_names = {t.name for t in inits}
        cut = onnx.ModelProto()
        _copy_fields(cut, self._proto, skip=("graph",))
        _copy_fields(cut.graph, g, skip=("node", "initializer", "input", "output", "value_info"))
        cut.graph.node.extend(nodes)
        cut.graph.initializer.extend(inits)
        cut.graph.input.extend(v for v in g.input if v.name == self._input or v.name in init_names)
        cut.graph.output.extend(onnx.helper.make_empty_tensor_value_info(v) for v in key)
        cut.graph.value_info.extend(v for v in g.value_info if v.name in produced and
                                    v.name not in values)
        module = fv_onnx.load(cut)
        for p in module.parameters():
            p.requires_grad = False
        module.eval()
        self._modules = {key: module}  # one cut at a time: each holds its own weights
        return module

    def features(self, x, layers) -> dict:
        names = list(dict.fromkeys(layers))
        values = {n: self._value(n) for n in names}
        module = self._module(values.values())
        outs = module(self.normalized(x))
        outs = outs if isinstance(outs, tuple) else (outs,)
        by_value = dict(zip(module.output_names, outs))
        return self._checked({n: by_value[values[n]] for n in names}, names)


def feature_network(features=None, normalize="imagenet", name=None) -> FeatureNetwork:
    """The feature network of ``features``: None (the default random network,
    ``fv.models.style_features(seed=0)``), a ``FeatureNetwork`` (returned as it is), a foveanet
    ``Module``, or the path of an ONNX file (OnnxLoadError when it cannot be loaded)."""
    if isinstance(features, FeatureNetwork):
        return features
    if features is None:
        return FeatureNetwork(RandomFeatures(seed=0), normalize, name)
    if isinstance(features, Module):
        if hasattr(features, "to_model_proto"):  # an imported ONNX graph (fv.onnx.load)
            return OnnxFeatureNetwork(features, normalize, name)
        return FeatureNetwork(features, normalize, name)
    if isinstance(features, (str, os.PathLike)):
        return OnnxFeatureNetwork(os.fspath(features), normalize, name)
    raise VisualError(f"features: a foveanet Module, an ONNX file's path or a FeatureNetwork, got "
                      f"{type(features).__name__}")


# ================================================================================= pictures
def load_picture(picture, size=None, what: str = "picture", dtype=xp.float32):
    """A picture as a ``(3, H, W)`` array in [0, 1] of ``dtype`` (float32): a file (read with
    ``fv.data.images.prepare_image``: RGB, padded to a square with its border colour, resized to
    ``size`` x ``size``, 256 when None) or an array / tensor ``(3, H, W)`` or ``(1, 3, H, W)``
    (resized bilinearly to ``size`` x ``size`` when ``size`` is given and differs)."""
    if isinstance(picture, (str, os.PathLike)):
        return prepare_image(os.fspath(picture), in_channels=3, size=int(size or 256),
                             invert="never")[0].astype(dtype)
    arr = picture.data if isinstance(picture, Tensor) else xp.asarray(picture)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[0] != 3 or min(arr.shape) < 1:
        raise VisualError(f"the {what} must be an RGB image (3, H, W) or (1, 3, H, W), got shape "
                          f"{tuple(arr.shape)}")
    if not xp.issubdtype(arr.dtype, xp.number) or not bool(xp.isfinite(arr).all()):
        raise VisualError(f"the {what} must hold finite numbers (dtype {arr.dtype})")
    arr = arr.astype(xp.float64)
    if size is not None and tuple(arr.shape[1:]) != (int(size), int(size)):
        arr = xp.stack([resize_map(c, (int(size), int(size))) for c in arr])
    return arr.astype(dtype)


def side_by_side(*images, gap: int = 4):
    """Pictures ``(3, H, W)`` in [0, 1] of one height in a row, ``gap`` white pixels apart: an
    ``(H, W_total, 3)`` array (``png_bytes`` / ``save_image`` write it)."""
    hs = {im.shape[1] for im in images}
    if len(hs) != 1:
        raise VisualError(f"side_by_side: the pictures differ in height ({sorted(hs)})")
    return image_grid(xp.stack([xp.asarray(im, dtype=xp.float32) for im in images]),
                      nrow=len(images), pad=gap)


def save_image(image, path) -> str:
    """Write a picture ``(3, H, W)`` (or ``(H, W, 3)``) in [0, 1] as a PNG, atomically (a
    temporary file renamed over ``path``). Returns the path."""
    a = xp.asarray(image)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[2] != 3:
        a = a.transpose(1, 2, 0)
    atomic_write_bytes(os.fspath(path), png_bytes(a))
    return os.fspath(path)


# ====================================================================== the optimised image
def _number(name, v, low=0.0):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < low:
        raise VisualError(f"{name} must be a finite number >= {low:g}, got {v!r}")
    return float(v)


def _count(name, v, low=0):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
        raise VisualError(f"{name} must be an integer >= {low}, got {v!r}")
    return int(v)


def _layers(net, content_layer, style_layers):
    """(content layer, {style layer: weight}) checked against the network."""
    cl = content_layer if content_layer is not None else net.default_content_layer
    sl = style_layers if style_layers is not None else net.default_style_layers
    if isinstance(sl, str):
        sl = [s.strip() for s in sl.split(",") if s.strip()]
    if cl is None or not sl:
        raise VisualError(f"{net.description}: no default layers (it has no ReLU layers): give "
                          f"content_layer and style_layers; its layers: "
                          f"{_names_text(net.layer_names())}")
    weights = {}
    for k, w in (sl.items() if isinstance(sl, dict) else ((s, 1.0) for s in sl)):
        weights[net.check(k)] = _number(f"the weight of style layer {k!r}", w)
    return net.check(cl), weights


def _losses(net, x, cl, targets_c, sweights, grams, cw, sw, tw):
    feats = net.features(x, [cl] + list(sweights))
    c = content_loss(feats[cl], targets_c)
    s = style_loss({k: feats[k] for k in sweights}, grams, sweights)
    t = tv_loss(x)
    total = c * cw + s * sw + t * tw
    return total, dict(total=float(total.data), content=float(c.data), style=float(s.data),
                       tv=float(t.data))


def _targets(net, content, style, cl, sweights):
    with no_grad():
        c = net.features(tensor(content[None]), [cl])[cl].detach() if content is not None \
            else None
        feats = net.features(tensor(style[None]), list(sweights))
        grams = {k: gram_matrix(f).detach() for k, f in feats.items()}
    return c, grams


def _features_info(net, cl, sweights):
    return dict(network=net.description, kind=net.kind, content_layer=cl,
                style_layers=list(sweights), style_layer_weights=dict(sweights),
                normalization=net.normalization)


def stylize(content, style, features=None, content_layer=None, style_layers=None, size=256,
            steps=300, style_weight=1e6, content_weight=1.0, tv_weight=DEFAULT_TV_WEIGHT,
            optimizer="lbfgs", lr=None, init="content", generator=None, callback=None, *,
            normalize="imagenet", history_size=100):
    """Gatys et al.'s style transfer: ``(image, info)``, the picture ``(3, size, size)`` float32
    in [0, 1] and what was done.

    ``content``, ``style``: picture files or arrays ``(3, H, W)`` in [0, 1] (``load_picture``:
    both at ``size`` x ``size``; ``size=None`` keeps an array's size). ``features``: see
    ``feature_network`` (default: the random multi-scale network); ``content_layer`` and
    ``style_layers`` (a list, or a dict layer -> weight) default to the network's defaults.
    ``normalize``: how the network sees the pictures (default ImageNet mean/std; ignored when
    ``features`` is a FeatureNetwork, which has its own).

    The image starts as the content (``init='content'``) or as uniform noise in [0, 1) from
    ``generator`` (``'noise'``, Gatys et al.'s start) and is optimised for ``steps``:

    - ``optimizer='lbfgs'``: one ``fv.optim.LBFGS([image], lr, max_iter=steps,
      history_size=history_size, line_search_fn='strong_wolfe')`` step, whose closure
      re-evaluates the losses: at most ``steps`` iterations and about ``steps * 5 // 4``
      evaluations (the limit of PyTorch's and Lua torch's default ``max_eval``, which a line
      search may pass by an evaluation or two), fewer when it converges (``lr`` 1);
    - ``optimizer='adam'``: ``steps`` Adam steps of learning rate ``lr`` (default 0.02).

    The image is not clipped while it is optimised (L-BFGS needs the function it models), only
    at the end. ``callback(evaluation, losses, image)`` is called after every evaluation of the
    losses with its index (from 0), the dict of the losses (``total``, ``content``, ``style``,
    ``tv``: floats, the latter three unweighted) and the image evaluated (a ``(3, H, W)`` view:
    copy it to keep it).

    ``info``: ``features`` (the network's ``description``, the layers, their weights, the
    normalisation), ``optimizer``, ``lr``, ``steps``, ``iterations`` and ``evaluations`` (done),
    ``losses`` (the list of every evaluation's dict), ``initial`` and ``final`` (the losses at the
    start and at the returned image, before clipping), ``weights``, ``size``, ``dtype``,
    ``seconds``."""
    t0 = time.perf_counter()
    net = feature_network(features, normalize)
    cl, sweights = _layers(net, content_layer, style_layers)
    if size is not None:
        size = _count("size", size, 1)
    steps = _count("steps", steps)
    sw, cw = _number("style_weight", style_weight), _number("content_weight", content_weight)
    tw = _number("tv_weight", tv_weight)
    if optimizer not in OPTIMIZERS:
        raise VisualError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if init not in INITS:
        raise VisualError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    lr = DEFAULT_LR[optimizer] if lr is None else _number("lr", lr)
    if lr <= 0:
        raise VisualError(f"lr must be > 0, got {lr!r}")
    history_size = _count("history_size", history_size, 1)
    c_img = load_picture(content, size, "content picture", net.dtype)
    s_img = load_picture(style, size, "style picture", net.dtype)
    if init == "noise":
        start = numpy_rng(generator).random(c_img.shape).astype(net.dtype)
    else:
        start = c_img.copy()
    history = []
    iterations = 0
    net.use([cl] + list(sweights))
    with net.frozen():
        target_c, grams = _targets(net, c_img, s_img, cl, sweights)
        x = tensor(start[None], requires_grad=True)

        def evaluate():
            total, parts = _losses(net, x, cl, target_c, sweights, grams, cw, sw, tw)
            total.backward()
            history.append(parts)
            if callback is not None:
                callback(len(history) - 1, parts, x.data[0])
            return total

        with enable_grad():
            if steps and optimizer == "lbfgs":
                opt = LBFGS([x], lr=lr, max_iter=steps, history_size=history_size,
                            line_search_fn="strong_wolfe")

                def closure():
                    opt.zero_grad()
                    return evaluate()
                opt.step(closure)
                iterations = int(opt.state[opt.param_groups[0]["params"][0]].get("n_iter", 0))
            elif steps:
                opt = Adam([x], lr=lr)
                for _ in range(steps):
                    opt.zero_grad()
                    evaluate()
                    opt.step()
                iterations = steps
        with no_grad():
            final = _losses(net, x, cl, target_c, sweights, grams, cw, sw, tw)[1]
    image = xp.clip(x.data[0], 0.0, 1.0).astype(xp.float32)
    info = dict(features=_features_info(net, cl, sweights), optimizer=optimizer, lr=lr,
                steps=steps, iterations=iterations, evaluations=len(history), losses=history,
                initial=history[0] if history else final, final=final, init=init,
                weights=dict(content=cw, style=sw, tv=tw), size=tuple(image.shape[1:]),
                dtype=str(net.dtype), seconds=time.perf_counter() - t0)
    return image, info


# ================================================================== the feed-forward network
class Stylizer:
    """A trained transformation network for one style: ``apply(picture)`` stylises a picture
    (an array ``(3, H, W)`` or a batch ``(N, 3, H, W)`` in [0, 1], or a file, read at ``size``) in
    one forward pass and returns float32 pictures of the same shape in [0, 1]. ``net`` is the
    network (``fv.models.transform_net``), ``info`` what ``train_stylizer`` recorded."""

    def __init__(self, net, info=None):
        if not isinstance(net, Module):
            raise VisualError(f"Stylizer: net must be a foveanet Module, got {type(net).__name__}")
        self.net, self.info = net, dict(info or {})

    def apply(self, picture, size=None):
        if isinstance(picture, (str, os.PathLike)):
            batch, one = load_picture(picture, size)[None], True
        else:
            arr = picture.data if isinstance(picture, Tensor) else xp.asarray(picture)
            one = arr.ndim == 3
            batch = arr[None] if one else arr
            if batch.ndim != 4 or batch.shape[1] != 3:
                raise VisualError(f"Stylizer.apply: expected an RGB picture (3, H, W) or a batch "
                                  f"(N, 3, H, W), got shape {tuple(arr.shape)}")
        dtype = _float_dtype(self.net.parameters())
        modes = [(m, m.training) for m in self.net.modules()]
        self.net.eval()
        try:
            with no_grad():
                out = self.net(tensor(xp.ascontiguousarray(batch, dtype=dtype))).data
        finally:
            for m, mode in modes:
                m.training = mode
        out = xp.clip(out, 0.0, 1.0).astype(xp.float32)
        return out[0] if one else out


def train_stylizer(style, content_images, features=None, steps=2000, batch_size=4, lr=1e-3,
                   content_layer=None, style_layers=None, style_weight=1e6, content_weight=1.0,
                   tv_weight=DEFAULT_TV_WEIGHT, net=None, width=32, blocks=5, norm="instance",
                   generator=None, callback=None, *, normalize="imagenet",
                   style_size=None) -> Stylizer:
    """Johnson et al.'s training: a ``fv.models.transform_net(width, blocks, norm)`` (or ``net``)
    trained with Adam (``lr``) for ``steps`` batches of ``batch_size`` pictures drawn from
    ``content_images`` (an array ``(N, 3, H, W)`` in [0, 1]; shuffled anew every pass through
    them, from ``generator``) to minimise, for each output y of a content picture c,

        content_weight * MSE(F(y), F(c)) + style_weight * style_loss(y, style) + tv_weight * tv(y)

    (the losses of ``stylize``, on the same feature network and layers). The style picture is
    read at ``style_size`` (default: the content pictures' height). ``callback(step, losses)``
    after every step. Returns a ``Stylizer``; its ``info`` holds the losses of every step."""
    t0 = time.perf_counter()
    fnet = feature_network(features, normalize)
    cl, sweights = _layers(fnet, content_layer, style_layers)
    steps, batch_size = _count("steps", steps), _count("batch_size", batch_size, 1)
    sw, cw = _number("style_weight", style_weight), _number("content_weight", content_weight)
    tw, lr = _number("tv_weight", tv_weight), _number("lr", lr)
    data = content_images.data if isinstance(content_images, Tensor) else \
        xp.asarray(content_images)
    if data.ndim != 4 or data.shape[1] != 3 or data.shape[0] < 1:
        raise VisualError(f"train_stylizer: content_images must be RGB pictures (N, 3, H, W), "
                          f"got shape {tuple(data.shape)}")
    if not xp.issubdtype(data.dtype, xp.number) or not bool(xp.isfinite(data).all()):
        raise VisualError("train_stylizer: content_images must hold finite numbers")
    data = data.astype(fnet.dtype)
    s_img = load_picture(style, style_size or data.shape[2], "style picture", fnet.dtype)
    if net is None:
        net = TransformNet(width, blocks, norm)
    if not isinstance(net, Module):
        raise VisualError(f"train_stylizer: net must be a foveanet Module, got "
                          f"{type(net).__name__}")
    net.to(fnet.dtype)
    net.train()
    rng = numpy_rng(generator)
    opt = Adam(net.parameters(), lr=lr)
    history, order, pos = [], rng.permutation(len(data)), 0
    fnet.use([cl] + list(sweights))
    with fnet.frozen():
        _, grams = _targets(fnet, None, s_img, cl, sweights)
        with enable_grad():
            for step in range(steps):
                if pos + batch_size > len(order) and pos:
                    order, pos = rng.permutation(len(data)), 0
                idx = order[pos:pos + batch_size]
                pos += batch_size
                xb = tensor(data[idx])
                with no_grad():
                    target = fnet.features(xb, [cl])[cl].detach()
                opt.zero_grad()
                y = net(xb)
                total, parts = _losses(fnet, y, cl, target, sweights, grams, cw, sw, tw)
                total.backward()
                opt.step()
                history.append(parts)
                if callback is not None:
                    callback(step, parts)
    net.eval()
    info = dict(features=_features_info(fnet, cl, sweights), steps=steps, batch_size=batch_size,
                lr=lr, losses=history, weights=dict(content=cw, style=sw, tv=tw),
                size=tuple(data.shape[2:]), dtype=str(fnet.dtype),
                seconds=time.perf_counter() - t0)
    return Stylizer(net, info)
