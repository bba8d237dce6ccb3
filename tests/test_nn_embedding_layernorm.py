"""embedding / nn.Embedding and layer_norm / nn.LayerNorm against PyTorch (outputs and every
gradient, max_norm's in-place renormalisation), by finite differences in float64, through the
compiled kernels and the NumPy paths, their state_dicts, initialisation and error messages."""
import contextlib
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import foveanet as fv
import foveanet.nn.functional as F
from foveanet import nn
from foveanet.backend.cpu import kernels
from helpers import check_against_torch, check_layer_against_torch, copy_params_to_torch, gradcheck, \
    rel_close, without_compiled

tnn = torch.nn
emb_module = sys.modules["foveanet.ops.embedding"]  # (foveanet.ops.embedding is the function)
ln_module = sys.modules["foveanet.ops.layer_norm"]
EMB_PATHS = (["compiled"] if emb_module._kernels() is not None else []) + ["numpy"]
LN_PATHS = (["compiled"] if ln_module._kernels() is not None else []) + ["numpy"]


def _emb_path(name):
    return without_compiled("_embedding_kernels") if name == "numpy" else contextlib.nullcontext()


def _ln_path(name):
    return without_compiled("_layer_norm_kernels") if name == "numpy" else contextlib.nullcontext()


def randn(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------------------------ embedding
EMB_CASES = [  # (index shape, num_embeddings, dim, options)
    ((7,), 10, 4, {}),
    ((3, 5), 6, 3, {"padding_idx": 2}),
    ((2, 3, 4), 5, 2, {"padding_idx": -1, "scale_grad_by_freq": True}),
    ((40,), 4, 3, {"scale_grad_by_freq": True}),                      # every index repeated
    ((300,), 3, 5, {"padding_idx": 0}),                               # runs past ROUNDS
    ((4, 6), 12, 5, {"max_norm": 1.0}),
    ((4, 6), 12, 5, {"max_norm": 0.5, "norm_type": 1.0, "padding_idx": 3}),
    ((2, 9), 8, 3, {"max_norm": 0.8, "norm_type": float("inf"), "scale_grad_by_freq": True}),
    ((), 5, 3, {}),                                                   # one index
    ((0, 3), 5, 3, {}),                                               # none
]


@pytest.mark.parametrize("path", EMB_PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(EMB_CASES)))
def test_embedding_vs_torch(path, dtype, case):
    shape, num, dim, opts = EMB_CASES[case]
    rng = np.random.default_rng(case)
    idx = rng.integers(0, num, shape)
    if idx.size > 1:
        idx.reshape(-1)[:2] = idx.reshape(-1)[-1]  # repeated indices in every case
    w = randn(rng, num, dim, dtype=dtype) * 1.5
    seen = {}

    def ours(i, weight):
        seen["fv"] = weight
        return F.embedding(i, weight, **opts)

    def theirs(i, weight):
        seen["torch"] = weight
        return TF.embedding(i, weight, **opts)

    with _emb_path(path):
        check_against_torch(ours, theirs, [idx, w])
    # max_norm renormalised the looked-up rows in place, the same rows by the same factors
    rel_close(seen["fv"].data, seen["torch"].detach().numpy(), what="weight after the lookup")
    if "max_norm" not in opts:
        np.testing.assert_array_equal(seen["fv"].data, w)


@pytest.mark.parametrize("path", EMB_PATHS)
def test_embedding_int32_indices_and_gradient_accumulation(path):
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 6, (5, 4)).astype(np.int32)
    w = randn(rng, 6, 3)
    with _emb_path(path):
        ours = fv.tensor(w, requires_grad=True)
        for _ in range(2):  # two backward passes add up, as in torch
            (F.embedding(fv.tensor(idx), ours, padding_idx=1) ** 2).sum().backward()
    theirs = torch.tensor(w, requires_grad=True)
    for _ in range(2):
        (TF.embedding(torch.from_numpy(idx), theirs, padding_idx=1) ** 2).sum().backward()
    rel_close(ours.grad.data, theirs.grad.numpy(), what="accumulated weight gradient")
    assert not ours.grad.data[1].any()


@pytest.mark.parametrize("path", EMB_PATHS)
@pytest.mark.parametrize("padding_idx", [None, 1])
def test_embedding_gradcheck(path, padding_idx):
    # the true derivative (padding_idx and scale_grad_by_freq change it on purpose: the padding
    # row here is never looked up)
    rng = np.random.default_rng(2)
    idx = rng.integers(0, 5, (3, 4))
    idx[idx == 1] = 3
    idx[0, :3] = 0
    with _emb_path(path):
        gradcheck(lambda i, weight: F.embedding(i, weight, padding_idx=padding_idx),
                  [idx, rng.standard_normal((5, 3))], wrt=[1])


def test_the_two_scatter_paths_agree_on_a_large_batch():
    rng = np.random.default_rng(3)
    idx = rng.zipf(1.3, 20_000) % 500  # a few very frequent indices, many rare ones
    g = randn(rng, idx.size, 16)
    ref = np.zeros((500, 16), np.float64)
    np.add.at(ref, idx, g.astype(np.float64))
    ref[7] = 0
    for path in EMB_PATHS:
        with _emb_path(path):
            got = emb_module.scatter_rows(idx, g, 500, padding_idx=7)
        rel_close(got, ref, rtol=1e-5, what=f"{path} scatter-add")


@pytest.mark.parametrize("path", EMB_PATHS)
@pytest.mark.parametrize("opts", [{}, {"padding_idx": 0}, {"padding_idx": -2, "scale_grad_by_freq": True},
                                  {"max_norm": 1.0}])
def test_embedding_layer_vs_torch(path, opts):
    rng = np.random.default_rng(4)
    fv.manual_seed(4)
    ours, theirs = nn.Embedding(9, 4, **opts), tnn.Embedding(9, 4, **opts)
    assert ours.padding_idx == theirs.padding_idx
    idx = rng.integers(0, 9, (3, 5))
    with _emb_path(path):
        check_layer_against_torch(ours, theirs, idx)
    rel_close(ours.weight.data, theirs.weight.detach().numpy(), what="weight after the step")


def test_embedding_init_padding_row_and_generator():
    fv.manual_seed(0)
    e = nn.Embedding(2000, 8, padding_idx=-1)
    w = e.weight.data
    assert w.dtype == np.float32 and e.padding_idx == 1999
    assert not w[1999].any()
    body = w[:1999]
    assert abs(body.mean()) < 0.02 and abs(body.std() - 1) < 0.02  # N(0, 1)
    fv.manual_seed(0)
    np.testing.assert_array_equal(nn.Embedding(2000, 8, padding_idx=-1).weight.data, w)
    a, b = nn.Embedding(5, 3), nn.Embedding(5, 3)
    a.reset_parameters(fv.Generator().manual_seed(7))
    b.reset_parameters(fv.Generator().manual_seed(7))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert nn.Embedding(5, 3, dtype=np.float64).weight.dtype == np.float64


def test_embedding_from_pretrained():
    table = fv.tensor(np.arange(12, dtype=np.float32).reshape(4, 3))
    frozen = nn.Embedding.from_pretrained(table, padding_idx=0)
    assert not frozen.weight.requires_grad and frozen.weight.data is table.data  # shared
    assert frozen.weight.data[0].any()  # the padding row is kept as given
    out = frozen(fv.tensor(np.array([[3, 0]])))
    np.testing.assert_array_equal(out.data, table.data[[[3, 0]]])
    assert out.grad_fn is None
    theirs = tnn.Embedding.from_pretrained(torch.from_numpy(table.data.copy()), padding_idx=0)
    assert repr(frozen) == repr(theirs)
    trainable = nn.Embedding.from_pretrained(table.data.astype(np.float64), freeze=False,
                                             scale_grad_by_freq=True)
    assert trainable.weight.requires_grad and trainable.weight.dtype == np.float64
    trainable(fv.tensor(np.array([1, 1, 2]))).sum().backward()
    np.testing.assert_array_equal(trainable.weight.grad.data[:, 0], [0, 1, 1, 0])
    with pytest.raises(ValueError, match=r"from_pretrained: embeddings must be 2-D .* got shape \(4,\)"):
        nn.Embedding.from_pretrained(fv.zeros(4))
    with pytest.raises(ValueError, match=r"_weight has shape \(4, 3\), not .* = \(4, 2\)"):
        nn.Embedding(4, 2, _weight=table)


@pytest.mark.parametrize("opts", [{}, {"padding_idx": 3}, {"padding_idx": -1, "max_norm": 2.0},
                                  {"norm_type": 1.0, "max_norm": 1.5, "scale_grad_by_freq": True}])
def test_embedding_repr_and_state_dict_like_torch(opts):
    torch.manual_seed(0)
    ours, theirs = nn.Embedding(6, 2, **opts), tnn.Embedding(6, 2, **opts)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    # torch's weights into ours, ours into a fresh torch layer: the same lookups
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    np.testing.assert_array_equal(ours.weight.data, theirs.weight.detach().numpy())
    other = tnn.Embedding(6, 2, **opts)
    other.load_state_dict({k: torch.from_numpy(np.array(v.data)) for k, v in ours.state_dict().items()})
    idx = np.array([0, 5, 3])  # (max_norm's norm is taken in float64 here: rel_close, not equal)
    rel_close(ours(fv.tensor(idx)).data, other(torch.from_numpy(idx)).detach().numpy())


def test_embedding_errors():
    e = nn.Embedding(10, 3, padding_idx=2)
    name = r"Embedding\(10, 3, padding_idx=2\)"
    with pytest.raises(IndexError, match=rf"^{name}: index 12 is out of range for num_embeddings=10 "
                                         r"\(valid: 0 to 9\)$"):
        e(fv.tensor(np.array([[1, 12], [0, 3]])))
    with pytest.raises(ValueError, match=rf"^{name}: index -1 is out of range .*negative indices do "
                                         "not count from the end"):
        e(fv.tensor(np.array([-1, 3])))
    with pytest.raises(TypeError, match=rf"^{name}: indices must be an integer tensor .* got dtype "
                                        "float32"):
        e(fv.tensor(np.array([1.0], np.float32)))
    with pytest.raises(TypeError, match="got dtype bool"):
        e(fv.tensor(np.array([True])))
    with pytest.raises(IndexError, match=r"^embedding: index 4 is out of range for num_embeddings=4"):
        F.embedding(fv.tensor(np.array([4])), fv.zeros(4, 2))
    with pytest.raises(IndexError, match=r"^0 \(Embedding\(4, 2\)\): index 7 is out of range"):
        nn.Sequential(nn.Embedding(4, 2))(fv.tensor(np.array([7])))
    with pytest.raises(NotImplementedError, match="^embedding: sparse=True"):
        F.embedding(fv.tensor(np.array([1])), fv.zeros(4, 2), sparse=True)
    with pytest.raises(NotImplementedError, match="^Embedding: sparse=True"):
        nn.Embedding(4, 2, sparse=True)
    with pytest.raises(ValueError, match=r"^Embedding: padding_idx must be within num_embeddings "
                                         r"\(-4 to 3\), got 4"):
        nn.Embedding(4, 2, padding_idx=4)
    with pytest.raises(ValueError, match="padding_idx must be within num_embeddings"):
        F.embedding(fv.tensor(np.array([1])), fv.zeros(4, 2), padding_idx=-5)
    with pytest.raises(ValueError, match=r"^embedding: weight must be 2-D"):
        F.embedding(fv.tensor(np.array([1])), fv.zeros(4))
    with pytest.raises(ValueError, match="max_norm must be positive"):
        nn.Embedding(4, 2, max_norm=0)
    with pytest.raises(TypeError, match="embedding_dim must be an int"):
        nn.Embedding(4, 2.5)


# ----------------------------------------------------------------------------------- layer norm
LN_CASES = [  # (input shape, normalized_shape, affine)
    ((4, 6), 6, "both"),
    ((4, 6), (6,), "weight"),
    ((3, 4, 5), (4, 5), "both"),
    ((3, 4, 5), (5,), "none"),
    ((2, 3, 2, 4), (2, 4), "bias"),
    ((7,), (7,), "both"),
    ((0, 5), (5,), "both"),                    # no samples
    ((300, 1000), (1000,), "both"),            # large enough for the engine's threads
]


def _ln_args(affine, w, b):
    return (w if affine in ("both", "weight") else None), (b if affine in ("both", "bias") else None)


@pytest.mark.parametrize("path", LN_PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(LN_CASES)))
def test_layer_norm_vs_torch(path, dtype, case):
    shape, norm_shape, affine = LN_CASES[case]
    rng = np.random.default_rng(case)
    ns = (norm_shape,) if isinstance(norm_shape, int) else norm_shape
    x = randn(rng, *shape, dtype=dtype) * 3 + 2
    w, b = randn(rng, *ns, dtype=dtype), randn(rng, *ns, dtype=dtype)
    use = [True, affine in ("both", "weight"), affine in ("both", "bias")]
    inputs = [a for a, u in zip([x, w, b], use) if u]

    def split(args):
        args = list(args)
        return [args.pop(0) if u else None for u in use]

    def ours(*args):
        xx, ww, bb = split(args)
        return F.layer_norm(xx, norm_shape, ww, bb, eps=1e-5)

    def theirs(*args):
        xx, ww, bb = split(args)
        return TF.layer_norm(xx, ns, ww, bb, eps=1e-5)

    with _ln_path(path):
        check_against_torch(ours, theirs, inputs)
        if affine == "both":  # the parameters' gradients alone, then the input's alone
            check_against_torch(ours, theirs, inputs, grad=[False, True, True])
            check_against_torch(ours, theirs, inputs, grad=[True, False, False])


@pytest.mark.parametrize("path", LN_PATHS)
@pytest.mark.parametrize("case", [((3, 4), (4,), "both"), ((2, 3, 4), (3, 4), "both"),
                                  ((2, 5), (5,), "none"), ((3, 2, 3), (3,), "weight"),
                                  ((2, 4), (4,), "bias")])
def test_layer_norm_gradcheck(path, case):
    shape, ns, affine = case
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape) * 2 + 1
    w, b = rng.standard_normal(ns), rng.standard_normal(ns)
    use = [affine in ("both", "weight"), affine in ("both", "bias")]

    def fn(xx, ww, bb):
        return F.layer_norm(xx, ns, ww if use[0] else None, bb if use[1] else None, eps=1e-3)

    with _ln_path(path):
        gradcheck(fn, [x, w, b], wrt=[0] + [i + 1 for i, u in enumerate(use) if u])


@pytest.mark.parametrize("path", LN_PATHS)
@pytest.mark.parametrize("opts", [{}, {"elementwise_affine": False}, {"bias": False}, {"eps": 1e-2}])
@pytest.mark.parametrize("norm_shape,shape", [(5, (3, 5)), ((2, 5), (4, 2, 5)), ([4], (2, 3, 4))])
def test_layer_norm_layer_vs_torch(path, opts, norm_shape, shape):
    rng = np.random.default_rng(6)
    ours, theirs = nn.LayerNorm(norm_shape, **opts), tnn.LayerNorm(norm_shape, **opts)
    with torch.no_grad():  # parameters that are not ones and zeros
        for p in theirs.parameters():
            p.copy_(torch.from_numpy(randn(rng, *p.shape)))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    with _ln_path(path):
        check_against_torch(ours, theirs, [randn(rng, *shape)], fv_module=ours, torch_module=theirs)
        ours.eval()  # the same in eval mode
        check_layer_against_torch(ours, theirs, randn(rng, *shape), train=False)


def test_layer_norm_layer_gradcheck():
    rng = np.random.default_rng(7)
    ln = nn.LayerNorm((2, 3)).double()
    with fv.no_grad():
        ln.weight.copy_(rng.standard_normal((2, 3)))
        ln.bias.copy_(rng.standard_normal((2, 3)))

    def fn(x, w, b):
        ln._parameters["weight"], ln._parameters["bias"] = w, b
        return ln(x)

    gradcheck(fn, [rng.standard_normal((3, 2, 3)), ln.weight.data.copy(), ln.bias.data.copy()])


@pytest.mark.parametrize("opts", [{}, {"elementwise_affine": False}, {"bias": False},
                                  {"eps": 1e-3, "elementwise_affine": True}])
def test_layer_norm_init_repr_and_state_dict_like_torch(opts):
    ours, theirs = nn.LayerNorm((3, 2), **opts), tnn.LayerNorm((3, 2), **opts)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, p in theirs.named_parameters():
        np.testing.assert_array_equal(getattr(ours, name).data, p.detach().numpy())  # ones, zeros
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.arange(6.0).reshape(3, 2))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    other = tnn.LayerNorm((3, 2), **opts)
    copy_params_to_torch(ours, other)  # ours into a fresh torch layer
    x = randn(np.random.default_rng(8), 4, 3, 2)
    rel_close(ours(fv.tensor(x)).data, other(torch.from_numpy(x)).detach().numpy())
    rel_close(ours(fv.tensor(x)).data, theirs(torch.from_numpy(x)).detach().numpy())
    assert nn.LayerNorm(4).normalized_shape == (4,)


def test_layer_norm_errors():
    ln = nn.LayerNorm((3, 4))
    name = r"LayerNorm\(\(3, 4\), eps=1e-05, elementwise_affine=True, bias=True\)"
    with pytest.raises(ValueError, match=rf"^{name}: expected input of shape \(\*, 3, 4\) \(trailing "
                                         r"shape \(3, 4\), the normalized_shape\), got \(2, 4, 3\)$"):
        ln(fv.zeros(2, 4, 3))
    with pytest.raises(ValueError, match=r"got \(4,\)$"):
        ln(fv.zeros(4))
    with pytest.raises(TypeError, match=rf"^{name}: input has dtype float64 but the layer's"):
        ln(fv.zeros(2, 3, 4, dtype=np.float64))
    with pytest.raises(TypeError, match=r"input has dtype int64, not floating point"):
        nn.LayerNorm(4, elementwise_affine=False)(fv.tensor(np.zeros((2, 4), np.int64)))
    with pytest.raises(ValueError, match=r"^layer_norm: normalized_shape \(5,\) expects input of shape "
                                         r"\(\*, 5\), got \(2, 4\)$"):
        F.layer_norm(fv.zeros(2, 4), 5)
    with pytest.raises(ValueError, match=r"^layer_norm: weight must have shape \(4,\) .* got \(3,\)"):
        F.layer_norm(fv.zeros(2, 4), (4,), fv.ones(3))
    with pytest.raises(TypeError, match="normalized_shape must be an int or a tuple of ints"):
        nn.LayerNorm("4")
    with pytest.raises(ValueError, match="eps must be positive"):
        nn.LayerNorm(4, eps=0)


def test_warm_names_both_kernel_modules():
    lines = kernels.warm().splitlines()
    assert any(line.startswith("embedding: ") for line in lines)
    assert any(line.startswith("layer norm: ") for line in lines)
    assert kernels.resolve("_embedding_kernels", "_layer_norm_kernels") == {
        "foveanet.ops._embedding_kernels", "foveanet.ops._layer_norm_kernels"}
