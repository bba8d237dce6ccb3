"""Every fv.nn layer against its torch.nn twin (outputs, input and parameter gradients, buffers),
finite-difference gradchecks of the layers with parameters, and the layers' error messages."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import foveanet as fv
from foveanet import nn
from helpers import check_against_torch, check_layer_against_torch, copy_params_to_torch, gradcheck

tnn = torch.nn
# the layers with the most settings get more examples than the profile's default (still fast)
MORE = settings(max_examples=max(settings.default.max_examples, 40))


def randn(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def layer_gradcheck(layer, x, **kw):
    """gradcheck a layer in float64 with respect to its input and every parameter."""
    layer.double()
    slots = [(mod, name) for mod in layer.modules() for name, p in mod._parameters.items()
             if p is not None]
    originals = [mod._parameters[name] for mod, name in slots]

    def fn(inp, *params):
        for (mod, name), p in zip(slots, params):
            mod._parameters[name] = p  # the tensors gradcheck differentiates with respect to
        try:
            return layer(inp)
        finally:
            for (mod, name), p in zip(slots, originals):
                mod._parameters[name] = p

    gradcheck(fn, [np.asarray(x, dtype=np.float64)] + [p.data.copy() for p in originals], **kw)


# -------------------------------------------------------------------------------------- linear
@given(n_in=st.integers(1, 6), n_out=st.integers(1, 5), bias=st.booleans(),
       lead=st.lists(st.integers(1, 3), max_size=2), seed=st.integers(0, 99))
def test_linear(n_in, n_out, bias, lead, seed):
    rng = np.random.default_rng(seed)
    fv.manual_seed(seed)
    check_layer_against_torch(nn.Linear(n_in, n_out, bias=bias), tnn.Linear(n_in, n_out, bias=bias),
                              randn(rng, *lead, n_in))


def test_linear_gradcheck():
    layer_gradcheck(nn.Linear(3, 2), np.random.default_rng(0).standard_normal((4, 3)))
    layer_gradcheck(nn.Linear(3, 2, bias=False), np.random.default_rng(1).standard_normal((2, 2, 3)))


# ---------------------------------------------------------------------------------- convolution
@st.composite
def conv_settings(draw):
    groups = draw(st.sampled_from([1, 1, 2]))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 3))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    options = [0, 1, (1, 0), (0, 2), "valid"] + (["same"] if stride == (1, 1) else [])
    padding = draw(st.sampled_from(options))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    h, w = draw(st.integers(5, 7)), draw(st.integers(5, 7))
    batch = draw(st.sampled_from([None, 1, 2]))
    bias = draw(st.booleans())
    return dict(in_channels=cin, out_channels=cout, kernel_size=k, stride=stride, padding=padding,
                dilation=dilation, groups=groups, bias=bias, padding_mode=mode), (batch, cin, h, w)


@MORE
@given(conv_settings(), st.integers(0, 99))
def test_conv2d(settings, seed):
    kw, (batch, c, h, w) = settings
    rng = np.random.default_rng(seed)
    fv.manual_seed(seed)
    x = randn(rng, c, h, w) if batch is None else randn(rng, batch, c, h, w)
    check_layer_against_torch(nn.Conv2d(**kw), tnn.Conv2d(**kw), x)


@st.composite
def conv_transpose_settings(draw):
    groups = draw(st.sampled_from([1, 1, 2]))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 3))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple(draw(st.integers(0, min(1, d * (kk - 1) // 2))) for kk, d in zip(k, dilation))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    h, w = draw(st.integers(2, 4)), draw(st.integers(2, 4))
    batch = draw(st.sampled_from([None, 2]))
    return dict(in_channels=cin, out_channels=cout, kernel_size=k, stride=stride, padding=padding,
                output_padding=output_padding, groups=groups, bias=draw(st.booleans()),
                dilation=dilation), (batch, cin, h, w)


@MORE
@given(conv_transpose_settings(), st.integers(0, 99))
def test_conv_transpose2d(settings, seed):
    kw, (batch, c, h, w) = settings
    rng = np.random.default_rng(seed)
    fv.manual_seed(seed)
    x = randn(rng, c, h, w) if batch is None else randn(rng, batch, c, h, w)
    check_layer_against_torch(nn.ConvTranspose2d(**kw), tnn.ConvTranspose2d(**kw), x)


def test_conv_transpose2d_1x1_output_padding():
    kw = dict(in_channels=1, out_channels=1, kernel_size=1, output_padding=(0, 1), dilation=(1, 2))
    x = np.random.default_rng(0).standard_normal((1, 1, 2, 2)).astype(np.float32)
    check_layer_against_torch(nn.ConvTranspose2d(**kw), tnn.ConvTranspose2d(**kw), x)


def test_conv_transpose2d_output_size():
    rng = np.random.default_rng(0)
    ours, theirs = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1), tnn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    x = randn(rng, 1, 2, 4, 5)
    for size in [(7, 9), (8, 10), (1, 3, 8, 9)]:
        copy_params_to_torch(ours, theirs)
        check_against_torch(lambda t: ours(t, output_size=size), lambda t: theirs(t, output_size=size), [x])
        assert ours(fv.tensor(x), output_size=size).shape[-2:] == tuple(size[-2:])
    with pytest.raises(ValueError, match="valid sizes range from"):
        ours(fv.tensor(x), output_size=(10, 10))


def test_conv_gradcheck():
    rng = np.random.default_rng(0)
    fv.manual_seed(0)
    layer_gradcheck(nn.Conv2d(2, 2, 2), rng.standard_normal((1, 2, 3, 3)))
    layer_gradcheck(nn.Conv2d(2, 4, 2, stride=2, padding=1, dilation=(1, 2), groups=2,
                              padding_mode="reflect"), rng.standard_normal((1, 2, 4, 5)))
    layer_gradcheck(nn.Conv2d(1, 2, (2, 3), padding="same", padding_mode="circular", bias=False),
                    rng.standard_normal((1, 3, 4)))
    layer_gradcheck(nn.ConvTranspose2d(2, 2, 2, stride=2, output_padding=1), rng.standard_normal((1, 2, 2, 2)))
    layer_gradcheck(nn.ConvTranspose2d(2, 4, 3, padding=1, groups=2, dilation=2), rng.standard_normal((2, 3, 2)))


# -------------------------------------------------------------------------------------- pooling
@st.composite
def pool_settings(draw, dilation=True):
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    stride = draw(st.sampled_from([None, 1, 2, (1, 3), (2, 1)]))
    pad = tuple(draw(st.integers(0, ki // 2)) for ki in k)
    h, w = (draw(st.integers(di * (ki - 1) + 1, 7)) for ki, di in zip(k, d))
    return k, stride, pad, d, draw(st.booleans()), (draw(st.sampled_from([None, 2])), draw(st.integers(1, 3)), h, w)


@MORE
@given(pool_settings(), st.booleans(), st.integers(0, 99))
def test_max_pool2d(settings, return_indices, seed):
    k, stride, pad, d, ceil_mode, (batch, c, h, w) = settings
    rng = np.random.default_rng(seed)
    x = randn(rng, c, h, w) if batch is None else randn(rng, batch, c, h, w)
    kw = dict(kernel_size=k, stride=stride, padding=pad, dilation=d, ceil_mode=ceil_mode,
              return_indices=return_indices)
    check_layer_against_torch(nn.MaxPool2d(**kw), tnn.MaxPool2d(**kw), x)


@given(st.integers(1, 3), st.sampled_from([None, 1, 2]), st.booleans(), st.integers(0, 99))
def test_max_unpool2d(k, stride, explicit_size, seed):
    rng = np.random.default_rng(seed)
    s = stride or k
    # without an explicit output_size the default (H_in - 1) * stride + k must cover every index
    x = torch.from_numpy(randn(rng, 2, 3, 6, 5) if explicit_size else randn(rng, 2, 3, k + 2 * s, k + s))
    pooled, idx = torch.nn.functional.max_pool2d(x, k, stride, return_indices=True)
    size = x.shape[-2:] if explicit_size else None
    ours, theirs = nn.MaxUnpool2d(k, stride), tnn.MaxUnpool2d(k, stride)
    check_against_torch(lambda v, i: ours(v, i, size), lambda v, i: theirs(v, i, size),
                        [pooled.numpy(), idx.numpy()])
    # unbatched
    check_against_torch(lambda v, i: ours(v, i, size), lambda v, i: theirs(v, i, size),
                        [pooled[0].numpy(), idx[0].numpy()])


@MORE
@given(pool_settings(dilation=False), st.booleans(), st.sampled_from([None, 1, 5]), st.integers(0, 99))
def test_avg_pool2d(settings, count_include_pad, divisor, seed):
    k, stride, pad, _, ceil_mode, (batch, c, h, w) = settings
    rng = np.random.default_rng(seed)
    x = randn(rng, c, h, w) if batch is None else randn(rng, batch, c, h, w)
    kw = dict(kernel_size=k, stride=stride, padding=pad, ceil_mode=ceil_mode,
              count_include_pad=count_include_pad, divisor_override=divisor)
    check_layer_against_torch(nn.AvgPool2d(**kw), tnn.AvgPool2d(**kw), x)


@MORE
@given(st.sampled_from([1, 2, 3, (2, 3), (4, 1), (None, 2), (3, None)]), st.integers(1, 7),
       st.integers(1, 7), st.sampled_from([None, 2]), st.integers(0, 99))
def test_adaptive_avg_pool2d(size, h, w, batch, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, 3, h, w) if batch is None else randn(rng, batch, 3, h, w)
    check_layer_against_torch(nn.AdaptiveAvgPool2d(size), tnn.AdaptiveAvgPool2d(size), x)


# -------------------------------------------------------------------------------- normalisation
@MORE
@given(st.integers(1, 4), st.sampled_from([(4,), (3, 1), (2, 3), (5, 2, 2)]), st.booleans(), st.booleans(),
       st.booleans(), st.sampled_from([0.1, 0.5, None]), st.booleans(), st.integers(0, 99))
def test_batch_norm(c, shape, affine, track, bias, momentum, train, seed):
    rng = np.random.default_rng(seed)
    n, rest = shape[0], shape[1:]
    if len(rest) == 2:
        ours = nn.BatchNorm2d(c, momentum=momentum, affine=affine, track_running_stats=track, bias=bias)
        theirs = tnn.BatchNorm2d(c, momentum=momentum, affine=affine, track_running_stats=track, bias=bias)
    else:
        ours = nn.BatchNorm1d(c, momentum=momentum, affine=affine, track_running_stats=track, bias=bias)
        theirs = tnn.BatchNorm1d(c, momentum=momentum, affine=affine, track_running_stats=track, bias=bias)
    if affine:  # away from the trivial 1 / 0
        nn.init.uniform_(ours.weight, 0.5, 2.0)
        if ours.bias is not None:
            nn.init.normal_(ours.bias)
    with fv.no_grad():  # non-trivial running statistics (and num_batches_tracked > 0)
        for _ in range(2):
            ours(fv.tensor(randn(rng, 6, c, *rest) * 3 + 1))
    x = randn(rng, n, c, *rest) * 2 - 0.5
    check_layer_against_torch(ours, theirs, x, train=train)
    if train:  # a second step from the updated state
        check_layer_against_torch(ours, theirs, randn(rng, n, c, *rest), train=True, seed=1)
    if track:
        assert ours.num_batches_tracked.dtype == np.int64
        assert ours.num_batches_tracked.item() == 2 + 2 * train


def test_batch_norm_eval_uses_running_stats():
    bn = nn.BatchNorm1d(2)
    bn.running_mean.data[:] = [1.0, -1.0]
    bn.running_var.data[:] = [4.0, 0.25]
    bn.eval()
    y = bn(fv.tensor([[3.0, 0.0]]))  # one sample is fine in eval mode
    np.testing.assert_allclose(y.data, [[2 / math.sqrt(4 + 1e-5), 1 / math.sqrt(0.25 + 1e-5)]], rtol=1e-6)
    assert bn.num_batches_tracked.item() == 0


def test_batch_norm_gradcheck():
    rng = np.random.default_rng(0)
    for train in (True, False):
        bn1 = nn.BatchNorm1d(3)
        nn.init.uniform_(bn1.weight, 0.5, 1.5)
        bn1.train(train)
        layer_gradcheck(bn1, rng.standard_normal((4, 3)))
        bn2 = nn.BatchNorm2d(2, affine=train, track_running_stats=True)
        bn2.train(train)
        layer_gradcheck(bn2, rng.standard_normal((2, 2, 2, 3)))


@given(st.integers(1, 5), st.sampled_from([1e-4, 0.1, 1.0]), st.sampled_from([0.5, 0.75, 1.0]),
       st.sampled_from([1.0, 2.0]), st.sampled_from([(2, 4, 3, 3), (2, 6, 4), (1, 3, 2, 2, 2)]),
       st.integers(0, 99))
def test_local_response_norm(size, alpha, beta, k, shape, seed):
    rng = np.random.default_rng(seed)
    check_layer_against_torch(nn.LocalResponseNorm(size, alpha, beta, k), tnn.LocalResponseNorm(size, alpha, beta, k),
                              randn(rng, *shape) * 2)


def test_local_response_norm_gradcheck():
    layer_gradcheck(nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=1.5),
                    np.random.default_rng(0).standard_normal((1, 4, 2, 3)))


# ------------------------------------------------------------------------------------- dropout
def test_dropout_eval_and_extremes_match_torch():
    rng = np.random.default_rng(0)
    x = randn(rng, 4, 5)
    check_layer_against_torch(nn.Dropout(0.3), tnn.Dropout(0.3), x, train=False)
    check_layer_against_torch(nn.Dropout(0.0), tnn.Dropout(0.0), x, train=True)
    check_layer_against_torch(nn.Dropout(1.0), tnn.Dropout(1.0), x, train=True)
    check_layer_against_torch(nn.Dropout2d(0.4), tnn.Dropout2d(0.4), randn(rng, 2, 3, 4, 4), train=False)


def test_dropout_statistics_and_generator():
    p = 0.3
    x = fv.ones(200, 500, requires_grad=True)
    layer = nn.Dropout(p)
    y = layer(x)
    kept = y.data != 0
    assert kept.mean() == pytest.approx(1 - p, abs=0.01)
    np.testing.assert_allclose(y.data[kept], 1 / (1 - p), rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, y.data, rtol=1e-6)  # the gradient is the mask
    a = nn.Dropout(0.5, generator=fv.Generator(3))(fv.ones(50)).data
    b = nn.Dropout(0.5, generator=fv.Generator(3))(fv.ones(50)).data
    np.testing.assert_array_equal(a, b)
    fv.manual_seed(9)
    c = nn.Dropout(0.5)(fv.ones(50)).data
    fv.manual_seed(9)
    np.testing.assert_array_equal(c, nn.Dropout(0.5)(fv.ones(50)).data)
    # Dropout2d drops whole channels
    z = nn.Dropout2d(0.5, generator=fv.Generator(0))(fv.ones(4, 8, 3, 3)).data
    per_channel = z.reshape(4, 8, 9)
    assert ((per_channel == 0).all(-1) | (per_channel == 2).all(-1)).all()
    assert nn.Dropout(0.5).eval()(x) is x


# ---------------------------------------------------------------------------- activations, shape
class TorchSteepSigmoid(tnn.Module):
    def __init__(self, sigma):
        super().__init__()
        self.sigma = sigma

    def forward(self, x):
        return torch.sigmoid(self.sigma * x)


@given(st.sampled_from(["relu", "leaky", "elu", "sigmoid", "tanh", "softmax", "logsoftmax"]),
       st.sampled_from([(5,), (3, 4), (2, 3, 4), (2, 2, 3, 3)]), st.integers(0, 99), st.data())
def test_activations(kind, shape, seed, data):
    rng = np.random.default_rng(seed)
    x = randn(rng, *shape) * 3
    if kind == "relu":
        pair = nn.ReLU(), tnn.ReLU()
    elif kind == "leaky":
        s = data.draw(st.sampled_from([0.01, 0.2, 1.5]))
        pair = nn.LeakyReLU(s), tnn.LeakyReLU(s)
    elif kind == "elu":
        a = data.draw(st.sampled_from([1.0, 0.5, 2.0]))
        pair = nn.ELU(a), tnn.ELU(a)
    elif kind == "sigmoid":
        s = data.draw(st.sampled_from([1.0, 0.5, 2.0]))
        pair = nn.Sigmoid(sigma=s), (tnn.Sigmoid() if s == 1.0 else TorchSteepSigmoid(s))
    elif kind == "tanh":
        pair = nn.Tanh(), tnn.Tanh()
    else:
        dim = data.draw(st.integers(-len(shape), len(shape) - 1))
        pair = (nn.Softmax(dim), tnn.Softmax(dim)) if kind == "softmax" else (nn.LogSoftmax(dim), tnn.LogSoftmax(dim))
    check_layer_against_torch(*pair, x)


def test_softmax_default_dim_matches_torch():
    rng = np.random.default_rng(0)
    for shape in [(4,), (2, 3), (2, 3, 4), (2, 2, 3, 3)]:
        with pytest.warns(UserWarning):
            check_layer_against_torch(nn.Softmax(), tnn.Softmax(), randn(rng, *shape))


@given(st.sampled_from([(2, 3, 4, 5), (3, 4), (2, 1, 3)]), st.data(), st.integers(0, 99))
def test_flatten_unflatten_identity(shape, data, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, *shape)
    nd = len(shape)
    start = data.draw(st.integers(-nd, nd - 1))
    end = data.draw(st.integers(start % nd, nd - 1))
    check_layer_against_torch(nn.Flatten(start, end), tnn.Flatten(start, end), x)
    check_layer_against_torch(nn.Identity(54, unused=True), tnn.Identity(54, unused=True), x)
    dim = data.draw(st.integers(0, nd - 1))
    n = shape[dim]
    split = data.draw(st.sampled_from([(n,), (1, n), (n, 1), (1, -1)]))
    check_layer_against_torch(nn.Unflatten(dim, split), tnn.Unflatten(dim, split), x)


# ------------------------------------------------------------------------------------- losses
@given(st.sampled_from(["mean", "sum", "none"]), st.sampled_from([(5,), (3, 4), (2, 3, 2)]), st.integers(0, 99))
def test_mse_and_sse(reduction, shape, seed):
    rng = np.random.default_rng(seed)
    x, t = randn(rng, *shape), randn(rng, *shape)
    check_against_torch(nn.MSELoss(reduction=reduction), tnn.MSELoss(reduction=reduction), [x, t])
    check_against_torch(nn.SumSquaredErrorLoss(), lambda a, b: 0.5 * ((a - b) ** 2).sum(), [x, t])


@MORE
@given(st.sampled_from(["mean", "sum", "none"]), st.booleans(), st.sampled_from([-100, 1]),
       st.sampled_from([0.0, 0.2]), st.sampled_from(["index", "probs", "spatial"]), st.integers(0, 99))
def test_cross_entropy_and_nll(reduction, weighted, ignore_index, smoothing, kind, seed):
    rng = np.random.default_rng(seed)
    n, c = 5, 4
    w = rng.uniform(0.5, 2.0, c).astype(np.float32) if weighted else None
    x = randn(rng, n, c, 3) if kind == "spatial" else randn(rng, n, c)
    if kind == "probs":
        ignore_index = -100  # PyTorch refuses ignore_index with class probabilities
        t = rng.dirichlet(np.ones(c), n).astype(np.float32)
    else:
        t = rng.integers(0, c, (n, 3) if kind == "spatial" else n).astype(np.int64)
    ours = nn.CrossEntropyLoss(weight=None if w is None else fv.tensor(w), ignore_index=ignore_index,
                               reduction=reduction, label_smoothing=smoothing)
    theirs = tnn.CrossEntropyLoss(weight=None if w is None else torch.from_numpy(w), ignore_index=ignore_index,
                                  reduction=reduction, label_smoothing=smoothing)
    check_against_torch(ours, theirs, [x, t], grad=[True, False])
    if kind != "probs":
        logp = torch.log_softmax(torch.from_numpy(x), 1).numpy()
        ours = nn.NLLLoss(weight=w, ignore_index=ignore_index, reduction=reduction)
        theirs = tnn.NLLLoss(weight=None if w is None else torch.from_numpy(w), ignore_index=ignore_index,
                             reduction=reduction)
        check_against_torch(ours, theirs, [logp, t], grad=[True, False])
        if weighted:
            assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]


@given(st.sampled_from(["mean", "sum", "none"]), st.booleans(), st.booleans(), st.integers(0, 99))
def test_binary_cross_entropy(reduction, weighted, pos_weighted, seed):
    rng = np.random.default_rng(seed)
    z, t = randn(rng, 4, 3) * 2, rng.uniform(0, 1, (4, 3)).astype(np.float32)
    w = rng.uniform(0.5, 2, (4, 3)).astype(np.float32) if weighted else None
    pw = rng.uniform(0.5, 3, 3).astype(np.float32) if pos_weighted else None
    tt = (lambda a: None if a is None else torch.from_numpy(a))
    p = 1 / (1 + np.exp(-z))
    check_against_torch(nn.BCELoss(weight=w, reduction=reduction),
                        tnn.BCELoss(weight=tt(w), reduction=reduction), [p.astype(np.float32), t],
                        grad=[True, False])
    ours = nn.BCEWithLogitsLoss(weight=w, reduction=reduction, pos_weight=pw)
    theirs = tnn.BCEWithLogitsLoss(weight=tt(w), reduction=reduction, pos_weight=tt(pw))
    check_against_torch(ours, theirs, [z, t], grad=[True, False])
    assert list(ours.state_dict()) == list(theirs.state_dict())


# ------------------------------------------------------------------------------ error messages
def test_conv2d_wrong_channels_message():
    conv = nn.Conv2d(3, 16, 3)
    with pytest.raises(ValueError) as info:
        conv(fv.zeros(8, 1, 28, 28))
    assert str(info.value) == ("Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1)): expected input of shape "
                               "(N, 3, H, W) or (3, H, W), got (8, 1, 28, 28) — 1 channels instead of 3")
    with pytest.raises(ValueError, match="2 dimensions instead of 4"):
        nn.Conv2d(1, 4, 3)(fv.zeros(28, 28))
    with pytest.raises(ValueError, match="smaller than the kernel's extent"):
        conv(fv.zeros(1, 3, 2, 5))
    with pytest.raises(ValueError, match="3 channels instead of 2"):
        nn.ConvTranspose2d(2, 4, 3)(fv.zeros(1, 3, 4, 4))


def test_linear_wrong_features_message():
    with pytest.raises(ValueError) as info:
        nn.Linear(784, 10)(fv.zeros(8, 28, 28))
    msg = str(info.value)
    assert msg.startswith("Linear(in_features=784, out_features=10, bias=True): expected input of shape "
                          "(..., 784)")
    assert "got (8, 28, 28) with last dimension 28" in msg and "nn.Flatten()" in msg
    with pytest.raises(ValueError, match=r"last dimension 784\), got \(8, 100\) with last dimension 100$"):
        nn.Linear(784, 10)(fv.zeros(8, 100))


def test_batchnorm_wrong_input_messages():
    bn = nn.BatchNorm2d(16)
    with pytest.raises(ValueError, match=r"^BatchNorm2d\(16, .*expected input of shape \(N, 16, H, W\), "
                                         r"got \(8, 16, 28\) — 3 dimensions instead of 4"):
        bn(fv.zeros(8, 16, 28))
    with pytest.raises(ValueError, match="8 channels instead of 16"):
        bn(fv.zeros(8, 8, 4, 4))
    with pytest.raises(ValueError, match=r"\(N, 3\) or \(N, 3, L\).*4 channels instead of 3"):
        nn.BatchNorm1d(3)(fv.zeros(5, 4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(fv.zeros(1, 3))


def test_dtype_and_type_messages():
    with pytest.raises(TypeError, match="input has dtype float64 but the layer's parameters are float32"):
        nn.Linear(2, 2)(fv.zeros(1, 2, dtype=np.float64))
    with pytest.raises(TypeError, match=r"x.float\(\) / 255"):
        nn.Conv2d(1, 1, 1)(fv.zeros(1, 1, 2, 2, dtype=np.uint8))
    with pytest.raises(TypeError, match="expected a foveanet Tensor"):
        nn.ReLU()(np.zeros(3))
    with pytest.raises(ValueError, match="too small for the pooling window"):
        nn.MaxPool2d(3)(fv.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="2 dimensions instead of 4"):
        nn.AvgPool2d(2)(fv.zeros(4, 4))


@pytest.mark.parametrize("make,error,pattern", [
    (lambda: nn.Conv2d(3, 16, 3, groups=2), ValueError, r"in_channels \(3\) must be divisible by groups \(2\)"),
    (lambda: nn.Conv2d(4, 6, 3, groups=4), ValueError, "out_channels"),
    (lambda: nn.Conv2d(0, 16, 3), ValueError, "in_channels must be positive, got 0"),
    (lambda: nn.Conv2d(3, 16, 0), ValueError, "kernel_size must be positive"),
    (lambda: nn.Conv2d(3, 16, 3, stride=0), ValueError, "stride must be positive"),
    (lambda: nn.Conv2d(3, 16, 3, padding=-1), ValueError, "padding must be at least 0"),
    (lambda: nn.Conv2d(3, 16, 3, padding="full"), ValueError, "'valid' or 'same'"),
    (lambda: nn.Conv2d(3, 16, 3, stride=2, padding="same"), ValueError, "strided"),
    (lambda: nn.Conv2d(3, 16, 3, padding_mode="mirror"), ValueError, "padding_mode must be one of"),
    (lambda: nn.Conv2d(3, 16, 2.5), TypeError, "kernel_size must be an int or a pair"),
    (lambda: nn.ConvTranspose2d(2, 2, 3, stride=2, output_padding=2), ValueError, "output_padding"),
    (lambda: nn.ConvTranspose2d(2, 2, 3, padding_mode="reflect"), ValueError, "zeros"),
    (lambda: nn.Linear(0, 3), ValueError, "in_features must be positive"),
    (lambda: nn.Linear(3, -1), ValueError, "out_features must be positive"),
    (lambda: nn.Linear(3.0, 2), TypeError, "in_features must be an int"),
    (lambda: nn.Dropout(1.5), ValueError, "between 0 and 1, got 1.5"),
    (lambda: nn.Dropout(-0.1), ValueError, "between 0 and 1"),
    (lambda: nn.Dropout(0.5, generator=3), TypeError, "Generator"),
    (lambda: nn.BatchNorm2d(0), ValueError, "num_features must be positive"),
    (lambda: nn.BatchNorm2d(4, momentum=2.0), ValueError, "momentum"),
    (lambda: nn.BatchNorm2d(4, eps=0), ValueError, "eps must be positive"),
    (lambda: nn.MaxPool2d(2, padding=2), ValueError, "at most half"),
    (lambda: nn.AvgPool2d(2, divisor_override=0), ValueError, "divisor_override"),
    (lambda: nn.AdaptiveAvgPool2d(0), ValueError, "positive int"),
    (lambda: nn.LocalResponseNorm(0), ValueError, "size must be positive"),
    (lambda: nn.CrossEntropyLoss(reduction="avg"), ValueError, "reduction must be 'mean', 'sum' or 'none'"),
    (lambda: nn.CrossEntropyLoss(label_smoothing=1.5), ValueError, "label_smoothing"),
    (lambda: nn.Unflatten(1, (2, 0)), ValueError, "unflattened_size"),
])
def test_constructor_errors(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()
