"""``foveanet.visual`` and ``foveanet visualize``: each map against an independent computation
(saliency against central finite differences and PyTorch, SmoothGrad against the mean of
saliency over the same noise, Grad-CAM against a NumPy hand computation, activations against
the layers run one by one), the convolution arithmetic on the lecture's examples, activation
maximisation raising its objective, every picture written and readable, the command line on a
tiny run directory written without training, and the error messages.

The networks are small and float64 where numbers are compared, so the file runs in seconds."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import foveanet as fv
from foveanet import nn
from foveanet import visual as V
from foveanet.cli import visualize
from foveanet.data import write_idx
from helpers import gradcheck, rel_close

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------ networks
def small_net(seed=0):
    """conv (2 -> 3, padding 1), ReLU, max pool, conv (3 -> 4), tanh, dropout, linear (16 -> 5),
    float64, on (2, 8, 8) inputs."""
    fv.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Dropout(0.5),
                         nn.Linear(16, 5)).double()


def torch_small_net(model):
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.MaxPool2d(2), torch.nn.Conv2d(3, 4, 3), torch.nn.Tanh(),
                              torch.nn.Flatten(), torch.nn.Dropout(0.5),
                              torch.nn.Linear(16, 5)).double()
    state = {k: torch.from_numpy(np.array(v.numpy())) for k, v in model.state_dict().items()}
    net.load_state_dict(state)
    return net.eval()


def logits(model, x):
    model.eval()
    with fv.no_grad():
        return model(fv.tensor(x[None])).numpy()[0]


def sample(shape=(2, 8, 8), seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


# ------------------------------------------------------------------------------ saliency
def test_saliency_is_the_finite_difference_gradient():
    model = small_net()
    model.train()  # saliency runs in evaluation mode (dropout off) and puts the mode back
    x = sample()
    sal, grad = V.saliency(model, x, target=2)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())  # no parameter got a gradient
    assert all(p.requires_grad for p in model.parameters())
    eps = 1e-6
    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        numeric[i] = (logits(model, up)[2] - logits(model, down)[2]) / (2 * eps)
    assert grad.dtype == np.float64 and grad.shape == x.shape and sal.shape == (8, 8)
    rel_close(grad, numeric, rtol=1e-6, atol=1e-9, what="d score / d x")
    np.testing.assert_array_equal(sal, np.abs(grad).max(axis=0))
    # and PyTorch's autograd on the same network agrees
    xt = torch.tensor(x[None], requires_grad=True)
    torch_small_net(model)(xt)[0, 2].backward()
    rel_close(grad, xt.grad.numpy()[0], rtol=1e-10, atol=1e-12, what="against torch")
    # the default target is the predicted class
    pred = int(np.argmax(logits(model, x)))
    np.testing.assert_allclose(V.saliency(model, x).gradient, V.saliency(model, x, pred).gradient)
    assert V.predicted_class(model, x) == pred


def test_smoothgrad_is_the_mean_saliency_over_the_same_draws():
    model = small_net()
    x = sample()
    n, sigma = 5, 0.2
    got = V.smoothgrad(model, x, target=1, n=n, sigma=sigma, generator=fv.Generator(3),
                       batch_size=2)
    noise = fv.Generator(3).rng.standard_normal((n,) + x.shape) * sigma * (x.max() - x.min())
    singles = [V.saliency(model, x + noise[i], target=1) for i in range(n)]
    rel_close(got.map, np.mean([s.map for s in singles], axis=0), rtol=1e-10, what="map")
    rel_close(got.gradient, np.mean([s.gradient for s in singles], axis=0), rtol=1e-10,
              what="gradient")
    # the default target is the class predicted for the clean input
    pred = int(np.argmax(logits(model, x)))
    again = V.smoothgrad(model, x, n=n, sigma=sigma, generator=fv.Generator(3))
    want = V.smoothgrad(model, x, target=pred, n=n, sigma=sigma, generator=fv.Generator(3))
    np.testing.assert_allclose(again.map, want.map)
    # sigma 0: every copy is x itself
    np.testing.assert_allclose(V.smoothgrad(model, x, 1, n=3, sigma=0.0).map,
                               V.saliency(model, x, 1).map, rtol=1e-12)


# ------------------------------------------------------------------------------ Grad-CAM
def _correlate(x, w):
    """A valid cross-correlation (C_in, H, W) * (C_out, C_in, k, k), by loops."""
    c_out, _, k, _ = w.shape
    h, wd = x.shape[1] - k + 1, x.shape[2] - k + 1
    out = np.zeros((c_out, h, wd))
    for o in range(c_out):
        for i in range(h):
            for j in range(wd):
                out[o, i, j] = (x[:, i:i + k, j:j + k] * w[o]).sum()
    return out


def cam_net():
    fv.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(3, 4)).double()
    rng = np.random.default_rng(5)
    model[0].weight.data[...] = rng.standard_normal((3, 1, 3, 3))
    model[4].weight.data[...] = np.array([[1.0, -0.5, 0.25], [-1.0, 2.0, 0.5],
                                          [0.3, 0.3, -2.0], [-1.0, -1.0, -1.0]])
    return model


def test_gradcam_equals_a_hand_computation():
    model = cam_net()
    x = np.random.default_rng(6).standard_normal((1, 6, 6))
    w_lin = model[4].weight.data
    z = _correlate(x, model[0].weight.data)  # (3, 4, 4)
    a = np.maximum(z, 0)
    for target in range(3):
        # score = sum_k W[t, k] mean(A_k) + b: d score / d A_k = W[t, k] / 16 everywhere
        cam = np.maximum(np.einsum("k,khw->hw", w_lin[target] / 16, a), 0)
        assert cam.max() > 0
        got = V.gradcam(model, x, "1", target=target, mode=None)
        rel_close(got, cam / cam.max(), rtol=1e-12, what=f"cam at the layer, class {target}")
        up = torch.nn.functional.interpolate(torch.tensor(cam[None, None]), size=(6, 6),
                                             mode="bilinear", align_corners=False).numpy()[0, 0]
        got = V.gradcam(model, x, "1", target=target)
        assert got.shape == (6, 6) and got.max() == 1.0 and got.min() >= 0
        rel_close(got, up / up.max(), rtol=1e-12, what=f"upsampled cam, class {target}")
        # at the convolution, before the ReLU: d score / d Z_k = W[t, k] / 16 where Z_k > 0
        w_k = (w_lin[target][:, None, None] / 16 * (z > 0)).mean(axis=(1, 2))
        cam0 = np.maximum(np.einsum("k,khw->hw", w_k, z), 0)
        rel_close(V.gradcam(model, x, "0", target=target, mode=None), cam0 / cam0.max(),
                  rtol=1e-12, what=f"cam at the convolution, class {target}")
    # the default layer is the last convolution, the default target the predicted class
    pred = int(np.argmax(logits(model, x)))
    np.testing.assert_array_equal(V.gradcam(model, x), V.gradcam(model, x, "0", pred))
    # a class whose weights are all negative has no positive evidence: all zeros, not NaN
    np.testing.assert_array_equal(V.gradcam(model, x, "1", target=3), np.zeros((6, 6)))


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [(7, 11), (2, 3), (3, 5)])
def test_resize_map_is_torch_interpolate(mode, size):
    m = np.random.default_rng(7).random((3, 5))
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    want = torch.nn.functional.interpolate(torch.tensor(m[None, None]), size=size, mode=mode,
                                           **kwargs).numpy()[0, 0]
    rel_close(V.resize_map(m, size, mode), want, rtol=1e-12, what=f"{mode} {size}")


# --------------------------------------------------------------------------- activations
def test_activations_equal_the_layers_run_one_by_one():
    model = small_net()
    x = sample()
    acts = V.activations(model, x)
    assert list(acts) == ["0", "1", "2", "3", "4"]  # conv, ReLU, pool, conv, tanh
    h = fv.tensor(x[None])
    model.eval()
    with fv.no_grad():
        for i in range(5):
            h = model[i](h)
            np.testing.assert_array_equal(acts[str(i)], h.numpy()[0])
    # the first convolution by hand
    conv = model[0]
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    want = _correlate(xp, conv.weight.data) + conv.bias.data[:, None, None]
    rel_close(acts["0"], want, rtol=1e-12, what="conv by hand")
    assert acts["1"].shape == (3, 8, 8) and acts["2"].shape == (3, 4, 4)
    assert acts["3"].shape == (4, 2, 2)
    # chosen layers only, in the order of the forward pass
    chosen = V.activations(model, x, ["2", "0"])
    assert list(chosen) == ["0", "2"]
    np.testing.assert_array_equal(chosen["2"], acts["2"])


def test_a_shared_module_is_read_at_its_last_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.act = nn.ReLU()

        def forward(self, x):
            a = self.act(self.conv(x))
            return self.act(a - 0.5)

    fv.manual_seed(0)
    model = Twice().double()
    x = sample((1, 5, 5))
    acts = V.activations(model, x, ["act"])
    with fv.no_grad():
        want = model(fv.tensor(x[None])).numpy()[0]
    np.testing.assert_array_equal(acts["act"], want)


# ---------------------------------------------------------------- convolution arithmetic
def test_conv_output_size_on_the_lectures_examples():
    assert V.conv_output_size(32, 5) == 28                  # 32x32 input, 5x5 kernel, stride 1
    assert V.conv_output_size(7, 3) == 5
    assert V.conv_output_size(7, 3, stride=2) == 3
    assert V.conv_output_size(7, 3, stride=3) == 2          # floor of 2.33 ...
    assert not V.fits(7, 3, stride=3) and V.fits(7, 3, stride=2)
    with pytest.raises(ValueError, match=r"stride 3 does not fit: .*\(7 \+ 0 - 3\) / 3 \+ 1 = "
                       r"2.333 is not an integer; the last 1 of the 7 padded positions"):
        V.conv_output_size(7, 3, stride=3, exact=True)
    # "same" padding (F - 1) / 2 keeps the size at stride 1
    assert V.same_padding(3) == 1 and V.same_padding(5) == 2 and V.same_padding(3, 2) == 2
    assert V.conv_output_size(32, 5, padding=V.same_padding(5)) == 32
    assert V.conv_output_size(32, 3, stride=2, padding=1) == 16
    with pytest.raises(ValueError, match="no symmetric padding"):
        V.same_padding(4)
    # a kernel larger than the padded input has no position
    with pytest.raises(ValueError, match=r"a kernel of 5 is larger than the padded input of 3 "
                       r"\(n=3 \+ 2 x padding 0\).*pad by at least 1"):
        V.conv_output_size(3, 5)
    assert V.conv_output_size(3, 5, padding=1) == 1
    with pytest.raises(ValueError, match="dilation 2: an extent of 5"):
        V.conv_output_size(4, 3, dilation=2)
    for bad, match in (((0, 3), "n .* must be >= 1"), ((5, 3, 0), "stride must be >= 1"),
                       ((5, 2.5), "must be an integer"), ((5, 3, 1, -1), "padding must be >= 0"),
                       ((5, True), "must be an integer")):
        with pytest.raises(ValueError, match=match):
            V.conv_output_size(*bad)


def test_conv_output_size_is_what_conv2d_gives():
    rng = np.random.default_rng(8)
    for _ in range(30):
        n, f = int(rng.integers(1, 12)), int(rng.integers(1, 5))
        s, p, d = int(rng.integers(1, 4)), int(rng.integers(0, 3)), int(rng.integers(1, 3))
        if d * (f - 1) + 1 > n + 2 * p:
            with pytest.raises(ValueError):
                V.conv_output_size(n, f, s, p, d)
            continue
        out = torch.nn.functional.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, f, f),
                                         stride=s, padding=p, dilation=d)
        assert V.conv_output_size(n, f, s, p, d) == out.shape[-1], (n, f, s, p, d)


# ------------------------------------------------------------------ activation maximisation
def test_total_variation_against_torch_and_finite_differences():
    from helpers import check_against_torch

    def torch_tv(t):
        return ((t[:, :, 1:] - t[:, :, :-1]) ** 2).sum() + ((t[..., 1:] - t[..., :-1]) ** 2).sum()

    x = np.random.default_rng(9).standard_normal((2, 3, 4, 5)).astype(np.float32)
    check_against_torch(V.total_variation, torch_tv, [x])
    gradcheck(V.total_variation, [x.astype(np.float64)])


def test_gaussian_blur_keeps_constants_and_mass():
    flat = np.full((1, 6, 6), 0.7)
    np.testing.assert_allclose(V.gaussian_blur(flat, 1.0), flat)
    spike = np.zeros((2, 9, 9))
    spike[:, 4, 4] = 1.0
    out = V.gaussian_blur(spike, 0.8)
    np.testing.assert_allclose(out.sum(axis=(1, 2)), 1.0)
    assert out[0, 4, 4] < 1 and out[0, 4, 3] > 0 and np.allclose(out[0], out[0].T)


def _channel_mean(model, x, layer, channel):
    return float(V.activations(model, x, [layer])[layer][channel].mean())


def _random_best(score, shape, rms, n=50, seed=0):
    """The best score of ``n`` Gaussian inputs with root-mean-square value ``rms``."""
    rng = np.random.default_rng(seed)
    return max(score(rng.standard_normal(shape) * rms) for _ in range(n))


def test_maximization_raises_its_objective():
    model = small_net()
    shape = (2, 8, 8)
    start = 0.01 * fv.Generator(11).rng.standard_normal(shape)  # maximize's starting point
    grown = V.maximize(model, layer="3", channel=1, steps=40, lr=0.1, generator=fv.Generator(11),
                       input_shape=shape)
    assert grown.shape == shape and grown.dtype == np.float64
    before, after = _channel_mean(model, start, "3", 1), _channel_mean(model, grown, "3", 1)
    assert after > before + 1.0, (before, after)
    # more than any of 50 random inputs of the same size: the ascent found a direction
    rms = np.sqrt((grown ** 2).mean())
    best = _random_best(lambda z: _channel_mean(model, z, "3", 1), shape, rms)
    assert after > best + 0.3, (after, best)
    for target in (0, 4):
        img = V.maximize(model, target_class=target, steps=40, generator=fv.Generator(12),
                         input_shape=shape)
        start = 0.01 * fv.Generator(12).rng.standard_normal(shape)
        gain = logits(model, img)[target] - logits(model, start)[target]
        assert gain > 0.2, (target, gain)
        best = _random_best(lambda z: logits(model, z)[target], shape, np.sqrt((img ** 2).mean()))
        assert logits(model, img)[target] > best + 0.1
        # and it is this class's score that rose most, not every score
        assert np.argmax(logits(model, img)) == target
    # clipping keeps the input in range
    img = V.maximize(model, target_class=1, steps=10, clip=(0, 1), input_shape=shape,
                     generator=fv.Generator(0))
    assert img.min() >= 0 and img.max() <= 1
    grid = V.maximize_grid(model, "3", channels=[0, 1, 2], steps=3, input_shape=shape)
    assert grid.shape == (3,) + shape


def test_maximize_errors():
    model = small_net()
    shape = (2, 8, 8)
    with pytest.raises(V.VisualError, match="give target_class .* or layer and channel"):
        V.maximize(model, input_shape=shape)
    with pytest.raises(V.VisualError, match="not both"):
        V.maximize(model, layer="1", channel=0, target_class=1, input_shape=shape)
    with pytest.raises(V.VisualError, match=r"input_shape \(C, H, W\) is needed"):
        V.maximize(model, target_class=1)
    with pytest.raises(V.VisualError, match=r"channel 7 is out of range: layer '1' \(ReLU\) has 3 "
                       r"channels \(0..2\)"):
        V.maximize(model, layer="1", channel=7, steps=1, input_shape=shape)
    with pytest.raises(V.VisualError, match="target class 9 is out of range: the model gives 5"):
        V.maximize(model, target_class=9, steps=1, input_shape=shape)
    with pytest.raises(V.VisualError, match="the input has 3 channels"):
        V.maximize(model, target_class=1, steps=1, input_shape=(3, 8, 8))


# ---------------------------------------------------------------------- library errors
def test_errors_name_the_layer_and_the_shape():
    model = small_net()
    x = sample()
    with pytest.raises(V.VisualError, match=r"Sequential has no layer 'conv1'; its layers: "
                       r"0 \(Conv2d\), 1 \(ReLU\), 2 \(MaxPool2d\), .*7 \(Linear\)"):
        V.activations(model, x, ["conv1"])
    with pytest.raises(V.VisualError, match=r"layer '7' \(Linear\(in_features=16.*\) gives outputs "
                       r"of shape \(1, 5\), not feature maps"):
        V.activations(model, x, ["7"])
    with pytest.raises(V.VisualError, match=r"layer '1' is a ReLU, not a convolution; the "
                       r"convolutions of Sequential: 0, 3"):
        V.kernels(model, "1")
    with pytest.raises(V.VisualError, match=r"layer '5' \(Flatten.*Grad-CAM needs feature maps"):
        V.gradcam(model, x, "5")
    with pytest.raises(V.VisualError, match=r"the input has 3 channels \(shape \(3, 8, 8\)\); "
                       r"Sequential takes 2 \(its first convolution '0': Conv2d\(2, 3"):
        V.saliency(model, sample((3, 8, 8)))
    with pytest.raises(V.VisualError, match=r"one picture of shape \(C, H, W\).*shape \(8, 8\)"):
        V.saliency(model, sample((8, 8)))
    with pytest.raises(V.VisualError, match="non-finite"):
        V.saliency(model, np.full((2, 8, 8), np.nan))
    with pytest.raises(V.VisualError, match=r"target class 5 is out of range: the model gives 5 "
                       r"scores \(classes 0..4\)"):
        V.saliency(model, x, target=5)
    mlp = fv.models.create("mlp", hidden=(8,))
    with pytest.raises(V.VisualError, match="Sequential has no convolution layer: kernels needs"):
        V.kernels(mlp)
    with pytest.raises(V.VisualError, match="no convolution layer: Grad-CAM needs one"):
        V.gradcam(mlp, np.zeros((1, 28, 28)))
    with pytest.raises(V.VisualError, match="no convolution, pooling or activation layer with "
                       "feature maps"):
        V.activations(mlp, np.zeros((1, 28, 28)))
    with pytest.raises(V.VisualError, match="mode must be one of bilinear, nearest or None"):
        V.gradcam(model, x, "1", mode="cubic")
    with pytest.raises(V.VisualError, match="n must be a positive integer, got 0"):
        V.smoothgrad(model, x, n=0)
    assert V.kernels(model, "3").shape == (4, 3, 3, 3)
    np.testing.assert_array_equal(V.kernels(model), model[0].weight.data)


# -------------------------------------------------------------------------------- pictures
def assert_png(path, min_side=100):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC, path
    from PIL import Image
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.size[0] >= min_side and im.size[1] >= min_side, (path, im.size)
        return im.size


def test_every_plot_writes_a_png(tmp_path):
    model = small_net()
    x = sample()
    fv.manual_seed(0)
    grey = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU())
    rgb = nn.Sequential(nn.Conv2d(3, 12, 3), nn.ReLU(), nn.Conv2d(12, 20, 3))
    paths = [
        V.plot_kernels(grey, out=tmp_path / "k_grey.png"),
        V.plot_kernels(rgb, "0", tmp_path / "k_rgb.png"),
        V.plot_kernels(rgb, "2", tmp_path / "k_deep.png", max_out=8, max_in=5),
        V.plot_kernels(model, "3", tmp_path / "sub" / "k_small.png"),
        V.plot_activations(V.activations(model, x), tmp_path / "acts.png", model=model),
        V.plot_saliency(x, V.saliency(model, x).map, tmp_path / "sal.png",
                        V.smoothgrad(model, x, n=3).map),
        V.plot_gradcam(x[:1], V.gradcam(model, x, "1"), tmp_path / "cam.png", layer="1"),
        V.plot_maximized(np.stack([x, -x]), tmp_path / "max.png", titles=["a", "b"]),
        V.plot_sliding_kernel(7, 3, 2, 1, tmp_path / "slide.png"),
        V.plot_sliding_kernel(7, 3, 3, 0, tmp_path / "slide_unfit.png"),
    ]
    for p in paths:
        assert os.path.isfile(p)
        assert_png(p)
    assert os.path.dirname(paths[3]).endswith("sub")
    gif = V.plot_sliding_kernel(5, 3, 1, 1, tmp_path / "slide.gif")
    from PIL import Image
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 25  # every position of the 5x5 output
    with pytest.raises(ValueError, match="a kernel of 7 is larger than the padded input of 5"):
        V.plot_sliding_kernel(3, 7, 1, 1, tmp_path / "never.png")
    assert not (tmp_path / "never.png").exists()
    with pytest.raises(V.VisualError, match="map 'm' has shape"):
        V.plot_overlay(x, {"m": np.zeros((3, 3))}, tmp_path / "bad.png")


def test_the_page_embeds_every_picture(tmp_path):
    model = small_net()
    a = V.plot_kernels(model, "0", tmp_path / "a.png")
    b = V.plot_sliding_kernel(4, 3, 1, 0, tmp_path / "b.gif")
    page = V.write_page(tmp_path / "index.html", [(a, "kernels <of> 0"), (b, "sliding & more")],
                        title="A & B", intro="intro <b>")
    text = Path(page).read_text(encoding="utf-8")
    assert text.count('src="data:image/png;base64,') == 1
    assert text.count('src="data:image/gif;base64,') == 1
    assert "kernels &lt;of&gt; 0" in text and "sliding &amp; more" in text
    assert "<title>A &amp; B</title>" in text and "intro &lt;b&gt;" in text
    import base64
    import re
    data = re.search(r'data:image/png;base64,([^"]+)"', text).group(1)
    assert base64.b64decode(data) == Path(a).read_bytes()
    with pytest.raises(ValueError, match="cannot embed a .txt"):
        V.render_page([(tmp_path / "notes.txt", "x")])


# ------------------------------------------------------------------------ the command line
def write_fake_fashion(root, n=12, seed=0):
    """The Fashion-MNIST test files (gzip IDX) of ``n`` random images."""
    rng = np.random.default_rng(seed)
    d = os.path.join(root, "fashion-mnist")
    os.makedirs(d, exist_ok=True)
    x = (rng.random((n, 28, 28)) * 255).astype(np.uint8)
    y = (np.arange(n) % 10).astype(np.uint8)
    write_idx(os.path.join(d, "t10k-images-idx3-ubyte.gz"), x)
    write_idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz"), y)
    return str(root)


def write_tiny_run(run_dir, model_name, data_dir, **given):
    """A run directory as ``foveanet train`` leaves it, written without training (as
    tests/test_run_api.py writes them)."""
    from foveanet.cli import resolve_config
    from foveanet.train import BestCheckpoint, Trainer
    from foveanet.train.run import (build_model, build_optimizer, data_info, model_record,
                                    write_run_config)
    cfg = resolve_config({"model": model_name, **given})
    cfg.update(data_info(cfg))
    cfg["data_dir"] = data_dir
    model = build_model(cfg)
    trainer = Trainer(model, build_optimizer(model, cfg), run_dir=run_dir, progress=False,
                      model_config=model_record(cfg), model_name=cfg["model"])
    write_run_config(run_dir, cfg)
    cb = BestCheckpoint(run_dir)
    cb.set_trainer(trainer)
    cb.on_epoch_end(1, {"val_loss": 0.5})
    trainer.epoch = 1
    trainer.save_checkpoint()
    return run_dir


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    data = write_fake_fashion(tmp_path_factory.mktemp("data"))
    return write_tiny_run(str(tmp_path_factory.mktemp("runs") / "lenet"), "lenet5", data)


@pytest.fixture
def cli(monkeypatch):
    """``foveanet.cli.main`` with the visualize command registered for the test."""
    import foveanet.cli as cli_module
    monkeypatch.setitem(cli_module.COMMANDS, "visualize", visualize)
    return cli_module.main


def test_visualize_writes_the_pictures_and_the_page(lenet_run, tmp_path, cli, capsys):
    out = tmp_path / "vis"
    rc = cli(["visualize", lenet_run, "--steps", "3", "--smoothgrad-samples", "2", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    names = sorted(os.listdir(out))
    want = ["activations.png", "gradcam_3.png", "index.html", "kernels_0.png", "kernels_3.png",
            "maximize_classes.png", "saliency.png"]
    assert names == want
    for n in names:
        if n.endswith(".png"):
            assert_png(out / n)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 6
    assert "the first test image (class T-shirt/top)" in page
    assert "Grad-CAM of class" in page and "Kernels of layer 3 (Conv2d(6, 16" in page
    printed = capsys.readouterr().out
    assert f"wrote {out / 'index.html'}" in printed and printed.count("wrote ") == 7


def test_visualize_a_picture_with_layers_and_a_target(lenet_run, tmp_path, cli, capsys):
    from PIL import Image
    pic = tmp_path / "boot.png"
    Image.fromarray((np.random.default_rng(0).random((40, 30)) * 255).astype(np.uint8)).save(pic)
    out = tmp_path / "vis"
    rc = cli(["visualize", lenet_run, str(pic), "--what", "kernels,activations,gradcam,maximize",
              "--layers", "1,3", "--target", "Sneaker", "--steps", "2", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["activations.png", "gradcam_1.png", "gradcam_3.png",
                                       "index.html", "kernels_3.png", "maximize_3.png",
                                       "maximize_classes.png"]
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "boot.png" in page and "target class Sneaker" in page
    # a .npy array of the run's shape is an input too; the default folder is RUN_DIR/visual
    arr = tmp_path / "x.npy"
    np.save(arr, np.random.default_rng(1).random((28, 28)).astype(np.float32))
    assert cli(["visualize", lenet_run, str(arr), "--what", "saliency", "--target", "3",
                "--smoothgrad-samples", "2"]) == 0
    assert os.path.isfile(os.path.join(lenet_run, "visual", "saliency.png"))


def _error(cli, capsys, args):
    rc = cli(["visualize"] + args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def test_visualize_errors(lenet_run, tmp_path, cli, capsys, monkeypatch):
    out = ["-o", str(tmp_path / "o")]
    rc, err = _error(cli, capsys, [lenet_run, "--layers", "conv9", "--what", "activations"] + out)
    assert rc == 2 and "foveanet visualize: error: --layers: Sequential has no layer 'conv9'; " \
        "its layers: 0 (Conv2d), 1 (ReLU), 2 (MaxPool2d), 3 (Conv2d)" in err
    rc, err = _error(cli, capsys, [lenet_run, "--layers", "7", "--what", "gradcam"] + out)
    assert rc == 2 and "layer '7' (Linear(" in err and "Grad-CAM needs feature maps" in err
    rc, err = _error(cli, capsys, [lenet_run, "--layers", "1", "--what", "kernels"] + out)
    assert rc == 2 and "none of --layers 1 is a convolution; those of lenet5: 0, 3" in err
    rc, err = _error(cli, capsys, [lenet_run, "--target", "Hat"] + out)
    assert rc == 2 and "--target 'Hat': not a class of the run; its classes: 0: T-shirt/top" in err
    rc, err = _error(cli, capsys, [lenet_run, "--target", "10"] + out)
    assert rc == 2 and "--target 10: the run has 10 classes (0...9)" in err
    rc, err = _error(cli, capsys, [lenet_run, "--what", "kernels,pictures"] + out)
    assert rc == 2 and "expected a comma-separated list of kernels, activations" in err
    # pictures that cannot be read or do not fit
    rc, err = _error(cli, capsys, [lenet_run, str(tmp_path / "missing.png")] + out)
    assert rc == 1 and "missing.png: no such file" in err
    broken = tmp_path / "broken.png"
    broken.write_text("not a picture")
    rc, err = _error(cli, capsys, [lenet_run, str(broken)] + out)
    assert rc == 1 and "broken.png: cannot read the picture" in err
    rgb = tmp_path / "rgb.npy"
    np.save(rgb, np.zeros((3, 28, 28), np.float32))
    rc, err = _error(cli, capsys, [lenet_run, str(rgb)] + out)
    assert rc == 1 and "rgb.npy: an array of shape (3, 28, 28): 3 channels, the run takes 1" in err
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((1, 14, 14), np.float32))
    rc, err = _error(cli, capsys, [lenet_run, str(small)] + out)
    assert rc == 1 and "the run takes (1, 28, 28)" in err
    # no IMAGE and no test data to take the first image from
    import foveanet.data.sources as sources
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIR", str(tmp_path / "system"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FOVEANET_DATA", raising=False)
    nodata = write_tiny_run(str(tmp_path / "nodata"), "lenet5", str(tmp_path / "nothing"))
    rc, err = _error(cli, capsys, [nodata, "--what", "kernels"] + out)
    assert rc == 1 and "no IMAGE given and the run's test set cannot be read" in err
    assert f"give a picture: foveanet visualize {nodata} IMAGE" in err
    # a model without convolutions
    mlp = write_tiny_run(str(tmp_path / "mlp"), "mlp", str(tmp_path / "nothing"),
                         model_option=["hidden=8"])
    rc, err = _error(cli, capsys, [mlp, str(rgb), "--what", "saliency,gradcam"] + out)
    assert rc == 2 and f"--what gradcam: the model mlp of {mlp} has no convolution layer" in err
    rc, err = _error(cli, capsys, [str(tmp_path / "nowhere")] + out)
    assert rc == 1 and "not a foveanet run directory" in err
