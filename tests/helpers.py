"""The two checks every differentiable piece of foveanet goes through.

``check_against_torch``: run the same computation in foveanet and in PyTorch (``torch==2.13.0``,
CPU) from the same float32 inputs, compare the forward output and the gradient of every input that
requires one (and, for layers, of every parameter), after back-propagating the same random
upstream gradient. The error measure is relative to the size of the reference:
``max|ours - torch| <= rtol * max|torch| + atol``.

``gradcheck``: compare foveanet's analytic gradients with central finite differences
``(f(x + eps) - f(x - eps)) / 2 eps`` in float64, element by element, for a random projection of
the output (so one backward pass covers every output element).
"""
from __future__ import annotations

import numpy as np
import torch

import foveanet as fv
from foveanet.backend.cpu import kernels

RTOL = 1e-4


def rel_close(ours, ref, rtol=RTOL, atol=1e-6, what="value"):
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != reference {ref.shape}"
    if ref.size == 0:
        return
    assert np.isfinite(ours).all() == np.isfinite(ref).all(), f"{what}: non-finite values differ"
    finite = np.isfinite(ref)
    err = np.abs(ours[finite] - ref[finite]).max(initial=0.0)
    scale = np.abs(ref[finite]).max(initial=0.0)
    assert err <= rtol * scale + atol, (
        f"{what}: max abs error {err:.3g} exceeds {rtol:g} x max|ref| {scale:.3g} + {atol:g}")


def _outputs(out):
    if isinstance(out, (tuple, list)):
        return list(out)
    return [out]


def _is_float(x):
    return np.issubdtype(np.asarray(x).dtype, np.floating)


def check_against_torch(fv_fn, torch_fn, inputs, grad=None, rtol=RTOL, atol=1e-6, seed=0,
                        fv_module=None, torch_module=None, check_grads=True):
    """Run ``fv_fn(*fv_inputs)`` and ``torch_fn(*torch_inputs)``; compare outputs and gradients.

    ``inputs``: NumPy arrays (float arrays become tensors that require grad; integer arrays are
    passed as tensors without grad). ``grad``: which inputs require grad (default: all float ones).
    ``fv_module``/``torch_module``: layers whose parameters are compared by name after backward.
    Differentiable outputs are those of floating dtype; integer outputs are compared exactly.
    Returns (fv outputs, torch outputs) for further assertions.
    """
    rng = np.random.default_rng(seed)
    if grad is None:
        grad = [_is_float(a) for a in inputs]
    fv_in = [fv.tensor(a, requires_grad=bool(g)) if isinstance(a, np.ndarray) else a
             for a, g in zip(inputs, grad)]
    th_in = [torch.tensor(a, requires_grad=bool(g)) if isinstance(a, np.ndarray) else a
             for a, g in zip(inputs, grad)]
    fv_out, th_out = _outputs(fv_fn(*fv_in)), _outputs(torch_fn(*th_in))
    assert len(fv_out) == len(th_out), f"{len(fv_out)} outputs vs torch's {len(th_out)}"
    fv_seed, th_seed = [], []
    for k, (o, r) in enumerate(zip(fv_out, th_out)):
        r_np = r.detach().numpy()
        o_np = o.detach().numpy() if isinstance(o, fv.Tensor) else np.asarray(o)
        if np.issubdtype(r_np.dtype, np.floating):
            rel_close(o_np, r_np, rtol, atol, what=f"output {k}")
            assert o_np.dtype == r_np.dtype, f"output {k}: dtype {o_np.dtype} != torch {r_np.dtype}"
            if r.requires_grad:
                up = rng.standard_normal(r_np.shape).astype(r_np.dtype)
                fv_seed.append((o, up))
                th_seed.append((r, torch.from_numpy(up)))
        else:
            np.testing.assert_array_equal(o_np, r_np, err_msg=f"output {k}")
    if not check_grads or not th_seed:
        return fv_out, th_out
    fv_total = sum(((o * fv.tensor(up)).sum() for o, up in fv_seed), fv.tensor(0.0))
    fv_total.backward()
    torch.autograd.backward([r for r, _ in th_seed], [u for _, u in th_seed])
    for k, (a, b) in enumerate(zip(fv_in, th_in)):
        if isinstance(b, torch.Tensor) and b.requires_grad:
            ref = b.grad
            ours = a.grad
            if ref is None:
                assert ours is None or not np.any(ours.data), f"input {k}: torch has no gradient"
                continue
            assert ours is not None, f"input {k}: foveanet computed no gradient"
            rel_close(ours.data, ref.numpy(), rtol, atol, what=f"gradient of input {k}")
    if fv_module is not None:
        theirs = dict(torch_module.named_parameters())
        for name, p in fv_module.named_parameters():
            ref = theirs[name].grad
            assert (ref is None) == (p.grad is None), f"parameter {name}: gradient presence differs"
            if ref is not None:
                rel_close(p.grad.data, ref.numpy(), rtol, atol, what=f"gradient of parameter {name}")
    return fv_out, th_out


def copy_params_to_torch(fv_module, torch_module):
    """Give the torch layer the foveanet layer's parameters and buffers (same names, as PyTorch)."""
    theirs = torch_module.state_dict()
    ours = fv_module.state_dict()
    assert set(ours) == set(theirs) - {k for k in theirs if k.endswith("num_batches_tracked")} or \
        set(ours) == set(theirs), f"state_dict keys differ: {sorted(ours)} vs {sorted(theirs)}"
    with torch.no_grad():
        for k, v in ours.items():
            arr = v.data if isinstance(v, fv.Tensor) else np.asarray(v)
            theirs[k].copy_(torch.from_numpy(np.array(arr)))


def check_layer_against_torch(fv_layer, torch_layer, x, rtol=RTOL, atol=1e-6, train=True, seed=0):
    """Copy parameters fv -> torch, run both on ``x`` and compare output, input and parameter
    gradients, then the buffers (running statistics) after the step."""
    copy_params_to_torch(fv_layer, torch_layer)
    fv_layer.train(train)
    torch_layer.train(train)
    out = check_against_torch(fv_layer, torch_layer, [x], rtol=rtol, atol=atol, seed=seed,
                              fv_module=fv_layer, torch_module=torch_layer)
    theirs = torch_layer.state_dict()
    for name, b in fv_layer.named_buffers():
        rel_close(b.data, theirs[name].numpy(), rtol, atol, what=f"buffer {name}")
    return out


def gradcheck(fn, inputs, eps=1e-6, rtol=1e-5, atol=1e-7, seed=0, wrt=None):
    """Central finite differences in float64 against foveanet's backward.

    ``fn(*tensors)`` returns a tensor (or a tuple: all floating outputs are used). ``inputs`` are
    float64 NumPy arrays; ``wrt`` lists the indices to check (default: all floating ones). The
    scalar checked is L = sum_k <R_k, out_k> with fixed random R_k."""
    rng = np.random.default_rng(seed)
    inputs = [np.array(a, dtype=np.float64) if _is_float(a) else a for a in inputs]
    if wrt is None:
        wrt = [i for i, a in enumerate(inputs) if isinstance(a, np.ndarray) and _is_float(a)]
    projections = []

    def loss_value(arrays, build_graph):
        ts = [fv.tensor(a, requires_grad=build_graph and i in wrt) if isinstance(a, np.ndarray) else a
              for i, a in enumerate(arrays)]
        outs = [o for o in _outputs(fn(*ts)) if isinstance(o, fv.Tensor) and _is_float(o.data)]
        if not projections:
            projections.extend(rng.standard_normal(o.shape) for o in outs)
        total = sum(((o * fv.tensor(r)).sum() for o, r in zip(outs, projections)), fv.tensor(0.0, dtype=np.float64))
        return ts, total

    ts, total = loss_value(inputs, True)
    assert total.dtype == np.float64, f"the computation left float64: {total.dtype}"
    total.backward()
    for i in wrt:
        analytic = ts[i].grad.data if ts[i].grad is not None else np.zeros_like(inputs[i])
        numeric = np.zeros_like(inputs[i])
        flat = inputs[i].reshape(-1)
        for j in range(flat.size):
            orig = flat[j]
            flat[j] = orig + eps
            with fv.no_grad():
                plus = loss_value(inputs, False)[1].item()
            flat[j] = orig - eps
            with fv.no_grad():
                minus = loss_value(inputs, False)[1].item()
            flat[j] = orig
            numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        err = np.abs(analytic - numeric).max(initial=0.0)
        scale = np.abs(numeric).max(initial=0.0)
        assert err <= rtol * scale + atol, (
            f"input {i}: analytic and numerical gradients differ by {err:.3g} (scale {scale:.3g})\n"
            f"analytic={analytic}\nnumeric={numeric}")


# ------------------------------------------------------------------ the optional compiled paths
def count_calls(monkeypatch, module, name):
    """Wrap ``module.name`` for the test; returns the list that gets one entry per call."""
    calls = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a: calls.append(1) or real(*a))
    return calls


def without_compiled(*names):
    """Inside the block, foveanet's numba kernel modules ``names`` (file stems such as
    ``_pool_kernels``) count as missing, as without numba, so the NumPy paths run; afterwards,
    as before (``kernels.disabled``)."""
    return kernels.disabled(*names)


def disable_compiled(monkeypatch, *names):
    """``without_compiled`` for the rest of a test (undone by ``monkeypatch``)."""
    monkeypatch.setattr(kernels, "_off", kernels._off | kernels.resolve(*names))
