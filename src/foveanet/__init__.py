"""foveanet: a deep-learning framework you can read end to end.

A NumPy autograd engine with a PyTorch-shaped API::

    import foveanet as fv
    x = fv.randn(8, 3, requires_grad=True)
    (x * x).sum().backward()      # x.grad == 2 x

    run = fv.load_run("runs/my-run")   # a run directory of `foveanet train`, rebuilt
    run.model, run.classes, run.evaluate()
"""
from . import backend  # noqa: F401
from .autograd import Function, Tensor, enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401
from .backend import (bool_, double, float, float16, float32, float64, get_default_dtype, int8,  # noqa: F401
                      int16, int32, int64, long, set_default_dtype, set_num_threads, uint8)
from .ops import (abs, amax, amin, arange, argmax, argmin, as_tensor, broadcast_to, cat, chunk,  # noqa: F401
                  clamp, clip, clone, concatenate, div, empty, exp, expand, eye, flatten, from_numpy,
                  full, full_like, linspace, log, logsumexp, matmul, max, maximum, mean, min, minimum,
                  mul, norm, ones, ones_like, pad, permute, pow, relu, reshape, sigmoid, softmax,
                  split, sqrt, squeeze, stack, std, sub, sum, t, tanh, tensor, transpose, unbind,
                  unsqueeze, var, where, zeros, zeros_like)
from .ops import add  # noqa: F401
from .random import (Generator, get_rng_state, initial_seed, manual_seed, normal, rand, randint,  # noqa: F401
                     randn, randperm, seed, set_rng_state)
from . import data, distributed, interop, models, nn, onnx, optim, train, utils, visual  # noqa: E402,F401
from .profiler import profile  # noqa: E402,F401
from .train.run import load_run  # noqa: E402,F401

bool = bool_  # noqa: A001 - PyTorch's name: fv.bool is the boolean dtype

from .version import __version__  # noqa: E402,F401


def optimize_for_inference(model, example_input=None, **kwargs):
    """An inference-only copy of ``model``: batch norm folded into the convolution before it,
    dropout dropped, activations fused into their producers, weights pre-packed (see
    :mod:`foveanet.interop.optimize`)."""
    from .interop.optimize import optimize_for_inference as _optimize
    return _optimize(model, example_input, **kwargs)
