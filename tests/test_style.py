"""Neural style transfer (``foveanet.visual.style``, ``foveanet.models.stylenet``, ``foveanet
stylize``): the losses against NumPy and PyTorch (values and image gradients) and central finite
differences in float64; ``stylize``'s L-BFGS and Adam loops against the same loops in PyTorch
(float64, the same tiny random network rebuilt in torch, iterate for iterate); the random
feature network's determinism; ``InstanceNorm2d`` against ``torch.nn.InstanceNorm2d`` and finite
differences; the transformation network training its loss down; ONNX feature networks (the
graph cut after the layers read); the command line's pictures, output and error messages.

Everything runs on tiny networks and pictures (8 to 32 pixels), so the file takes seconds."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import foveanet as fv
from foveanet import nn
from foveanet.cli import stylize as stylize_cmd
from foveanet.data.images import ImageError
from foveanet.models.stylenet import RandomFeatures, TransformNet
from foveanet.nn import InstanceNorm2d
from foveanet.visual import VisualError
from foveanet.visual import style as S
from helpers import check_against_torch, check_layer_against_torch, gradcheck, rel_close

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MEAN = torch.tensor(S.IMAGENET_MEAN, dtype=torch.float64).reshape(1, 3, 1, 1)
STD = torch.tensor(S.IMAGENET_STD, dtype=torch.float64).reshape(1, 3, 1, 1)


# --------------------------------------------------------------------------------- pictures
def landscape(n=256, seed=1):
    """A photo-like synthetic picture (H, W, 3) uint8: sky, sun, clouds, two mountain ridges, a
    lake with a reflection, a house and a tree (the content of docs/images/style_example.png)."""
    from PIL import Image, ImageFilter
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] / n
    img = np.stack([0.35 + 0.4 * y, 0.55 + 0.3 * y, 0.95 - 0.1 * y], -1)
    d = np.hypot(x - 0.72, y - 0.22)
    img += (np.exp(-(d / 0.06) ** 2) * 0.8)[..., None] * np.array([1, 0.8, 0.4])
    cl = rng.standard_normal((16, 16)).astype(np.float32)
    cl = np.array(Image.fromarray(cl).resize((n, n), Image.BICUBIC))
    img += 0.35 * (np.clip(cl - 0.6, 0, None) * (y < 0.45))[..., None]

    def ridge(base, amp, rough):
        h = np.zeros(n + 1)
        step, scale = n, amp
        h[0], h[n] = rng.uniform(-amp, amp, 2)
        while step > 1:
            half = step // 2
            for i in range(half, n, step):
                h[i] = (h[i - half] + h[i + half]) / 2 + rng.uniform(-scale, scale)
            step, scale = half, scale * rough
        return base + h[:n]
    for base, amp, col in ((0.5, 0.15, (0.45, 0.5, 0.62)), (0.62, 0.12, (0.22, 0.38, 0.2))):
        r = ridge(base, amp, 0.55)
        mask = y > r[None, :]
        img[mask] = (np.array(col) * (0.85 + 0.3 * (y - r[None, :]))[..., None])[mask]
    lake = y > 0.8
    refl = img[(2 * int(0.8 * n) - np.arange(n)).clip(0, n - 1)]
    img[lake] = (0.5 * refl + 0.5 * np.array([0.2, 0.35, 0.55]))[lake]
    img[lake] += 0.04 * np.sin(x * 90 + y * 400)[lake][:, None]
    hx, hy, w, h = int(0.18 * n), int(0.66 * n), max(2, int(0.14 * n)), max(2, int(0.1 * n))
    img[hy:hy + h, hx:hx + w] = (0.75, 0.7, 0.6)
    for k in range(w // 2 + 2):
        img[max(hy - k, 0), max(hx + k - 1, 0):hx + w - k + 1] = (0.6, 0.15, 0.1)
    tx, ty = int(0.42 * n), int(0.7 * n)
    img[np.hypot(x * n - tx, (y * n - ty + 0.07 * n) * 0.8) < 0.0625 * n] = (0.1, 0.3, 0.1)
    img += rng.normal(0, 0.015, img.shape)
    im = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    return np.asarray(im.filter(ImageFilter.GaussianBlur(0.7 * n / 256)))


def strokes(n=256, seed=2):
    """A painting of short brush strokes swirling around five centres, in blues and yellows
    (H, W, 3) uint8 (the style of docs/images/style_example.png)."""
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (n, n), (20, 40, 90))
    dr = ImageDraw.Draw(im)
    palette = [(25, 50, 120), (40, 80, 170), (70, 120, 200), (230, 200, 60), (245, 225, 120),
               (20, 30, 60), (110, 160, 210), (200, 140, 40)]
    centres = rng.uniform(0, n, (5, 2))
    f = n / 256
    for _ in range(int(5000 * f * f) + 50):
        px, py = rng.uniform(0, n, 2)
        c = centres[np.argmin(np.hypot(*(centres - (px, py)).T))]
        vx, vy = -(py - c[1]), px - c[0]
        norm = np.hypot(vx, vy) + 1e-6
        length = rng.uniform(6, 16) * f
        dx, dy = vx / norm * length, vy / norm * length
        k = (int(np.hypot(px - c[0], py - c[1]) / (18 * f)) + rng.integers(0, 2)) % len(palette)
        col = tuple(int(np.clip(v + rng.normal(0, 12), 0, 255)) for v in palette[k])
        dr.line([(px - dx / 2, py - dy / 2), (px + dx / 2, py + dy / 2)], fill=col,
                width=max(1, int(rng.integers(2, 5) * f)))
    return np.asarray(im)


def make_pictures(folder, n=256):
    """Write content.png (``landscape``) and style.png (``strokes``) into ``folder``; returns
    their paths (docs/images/style_example.png: ``make_pictures('/tmp/st')``)."""
    from PIL import Image
    paths = os.path.join(folder, "content.png"), os.path.join(folder, "style.png")
    Image.fromarray(landscape(n)).save(paths[0])
    Image.fromarray(strokes(n)).save(paths[1])
    return paths


def pictures(n=16, seed=0):
    """(content, style) float64 (3, n, n) arrays in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] / n
    content = np.stack([0.2 + 0.6 * y, 0.5 + 0.3 * np.sin(5 * x), 0.9 - 0.7 * y])
    content += 0.03 * rng.standard_normal(content.shape)
    stripes = 0.5 + 0.5 * np.sin(3.0 * n * (x + 0.3 * y) / 4)
    style = np.stack([0.9 * stripes, 0.6 * stripes ** 2, 1 - 0.8 * stripes])
    return np.clip(content, 0, 1), np.clip(style + 0.05 * rng.standard_normal(style.shape), 0, 1)


# ------------------------------------------------------------------------ tiny networks
def tiny_net(dtype=np.float64, seed=3, kernel_sizes=(3, 5), width=3, scales=2):
    net = RandomFeatures(seed=seed, kernel_sizes=kernel_sizes, width=width, scales=scales)
    return net.double() if dtype == np.float64 else net


def torch_net(net):
    """``net`` (a RandomFeatures) as a torch function of normalised images -> {scale: maps}."""
    banks = []
    for s in range(net.scales):
        bank = getattr(net, f"scale{s}")
        banks.append([(torch.from_numpy(np.array(getattr(bank, f"k{k}").weight.data)),
                       torch.from_numpy(np.array(getattr(bank, f"k{k}").bias.data)), k)
                      for k in net.kernel_sizes])

    def run(x):
        out = {}
        for s, convs in enumerate(banks):
            if s:
                x = TF.avg_pool2d(x, 2)
            out[f"scale{s}"] = torch.relu(torch.cat([TF.conv2d(x, w, b, padding=k // 2)
                                                     for w, b, k in convs], dim=1))
        return out
    return run


def torch_gram(f):
    n, c, h, w = f.shape
    flat = f.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def torch_tv(x):
    dy = x[:, :, 1:, :] - x[:, :, :-1, :]
    dx = x[:, :, :, 1:] - x[:, :, :, :-1]
    return ((dy * dy).sum() + (dx * dx).sum()) / x.numel()


def torch_objective(run, content, style, cl, layers, cw, sw, tw):
    """The total loss of ``stylize`` in torch, as a function of the image (1, 3, H, W)."""
    def norm(x):
        return (x - MEAN.to(x.dtype)) / STD.to(x.dtype)
    with torch.no_grad():
        fc = run(norm(torch.from_numpy(content[None])))[cl]
        fs = run(norm(torch.from_numpy(style[None])))
        grams = {k: torch_gram(fs[k]) for k in layers}

    def total(x):
        f = run(norm(x))
        c = TF.mse_loss(f[cl], fc)
        s = sum(TF.mse_loss(torch_gram(f[k]), grams[k]) for k in layers)
        return cw * c + sw * s + tw * torch_tv(x)
    return total


# ================================================================================ the losses
def test_gram_matrix_is_the_normalised_product():
    f = np.random.default_rng(0).standard_normal((2, 5, 4, 3))
    want = np.einsum("nchw,ndhw->ncd", f, f) / (5 * 4 * 3)
    g = S.gram_matrix(fv.tensor(f))
    assert g.shape == (2, 5, 5)
    np.testing.assert_allclose(g.numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(S.gram_matrix(fv.tensor(f[1])).numpy(), want[1], rtol=1e-12)
    check_against_torch(S.gram_matrix, torch_gram, [f.astype(np.float32)])
    gradcheck(S.gram_matrix, [f])
    with pytest.raises(VisualError, match=r"gram_matrix: expected feature maps .* shape \(5, 12\)"):
        S.gram_matrix(fv.tensor(f[0].reshape(5, 12)))


def test_content_and_style_losses_match_numpy_and_torch():
    rng = np.random.default_rng(1)
    f1, f2 = rng.standard_normal((1, 4, 5, 6)), rng.standard_normal((1, 3, 3, 3))
    t1 = rng.standard_normal(f1.shape)
    g1, g2 = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
    # values against NumPy
    np.testing.assert_allclose(S.content_loss(fv.tensor(f1), t1).item(), ((f1 - t1) ** 2).mean(),
                               rtol=1e-12)
    gram = lambda a: np.einsum("nchw,ndhw->ncd", a, a)[0] / a[0].size  # noqa: E731
    want = 0.3 * ((gram(f1) - g1) ** 2).mean() + 2.0 * ((gram(f2) - g2) ** 2).mean()
    got = S.style_loss({"a": fv.tensor(f1), "b": fv.tensor(f2)}, {"a": g1, "b": g2},
                       {"a": 0.3, "b": 2.0})
    np.testing.assert_allclose(got.item(), want, rtol=1e-12)
    # default weights 1; lists work like dicts; a layer of weight 0 is left out
    same = S.style_loss([fv.tensor(f1), fv.tensor(f2)], [g1, g2])
    np.testing.assert_allclose(same.item(), ((gram(f1) - g1) ** 2).mean() +
                               ((gram(f2) - g2) ** 2).mean(), rtol=1e-12)
    only_a = S.style_loss({"a": fv.tensor(f1), "b": fv.tensor(f2)}, {"a": g1, "b": g2},
                          {"a": 1.0, "b": 0.0})
    np.testing.assert_allclose(only_a.item(), ((gram(f1) - g1) ** 2).mean(), rtol=1e-12)
    # values and feature gradients against torch (float32), and finite differences (float64)
    check_against_torch(lambda a: S.content_loss(a, t1.astype(np.float32)),
                        lambda a: TF.mse_loss(a, torch.from_numpy(t1.astype(np.float32))),
                        [f1.astype(np.float32)])
    tg1, tg2 = torch.from_numpy(g1.astype(np.float32)), torch.from_numpy(g2.astype(np.float32))
    check_against_torch(
        lambda a, b: S.style_loss({"a": a, "b": b}, {"a": g1.astype(np.float32),
                                                     "b": g2.astype(np.float32)},
                                  {"a": 0.3, "b": 2.0}),
        lambda a, b: 0.3 * TF.mse_loss(torch_gram(a)[0], tg1) + 2.0 * TF.mse_loss(
            torch_gram(b)[0], tg2),
        [f1.astype(np.float32), f2.astype(np.float32)])
    gradcheck(lambda a: S.content_loss(a, t1), [f1])
    gradcheck(lambda a, b: S.style_loss({"a": a, "b": b}, {"a": g1, "b": g2}, {"a": 0.3, "b": 2}),
              [f1, f2])
    # a batch against one style Gram matrix: each sample against it
    fb = rng.standard_normal((3, 4, 2, 2))
    gb = np.einsum("nchw,ndhw->ncd", fb, fb) / 16
    np.testing.assert_allclose(S.style_loss([fv.tensor(fb)], [g1]).item(),
                               ((gb - g1[None]) ** 2).mean(), rtol=1e-12)
    with pytest.raises(VisualError, match=r"layer 'a' has a Gram matrix of shape \(1, 4, 4\), "
                                          r"its target \(1, 3, 3\)"):
        S.style_loss({"a": fv.tensor(f1)}, {"a": g2})
    with pytest.raises(VisualError, match="no target Gram matrix for layer 'b'"):
        S.style_loss({"b": fv.tensor(f1)}, {"a": g1})
    with pytest.raises(VisualError, match=r"features have shape \(1, 4, 5, 6\), the target"):
        S.content_loss(fv.tensor(f1), t1[:, :2])


def test_tv_loss_matches_numpy_and_torch():
    x = np.random.default_rng(2).random((2, 3, 5, 4))
    sq = ((x[:, :, 1:] - x[:, :, :-1]) ** 2).sum() + ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).sum()
    np.testing.assert_allclose(S.tv_loss(fv.tensor(x)).item(), sq / x.size, rtol=1e-12)
    np.testing.assert_allclose(S.tv_loss(fv.tensor(x), "sum").item(), sq, rtol=1e-12)
    check_against_torch(S.tv_loss, torch_tv, [x.astype(np.float32)])
    gradcheck(S.tv_loss, [x])
    with pytest.raises(VisualError, match="reduction must be 'mean' or 'sum'"):
        S.tv_loss(fv.tensor(x), "max")


def test_total_loss_image_gradient_equals_torch_and_finite_differences():
    """The whole objective of ``stylize`` (normalisation, the random network, content, style
    and tv losses) in float64: the value and image gradient equal torch's; the gradient equals
    central finite differences."""
    net = tiny_net(width=2)
    content, style = pictures(8)
    fnet = S.feature_network(net)
    cl, layers = "scale1", ["scale0", "scale1"]
    with fv.no_grad():
        fc = fnet.features(fv.tensor(content[None]), [cl])[cl]
        grams = {k: S.gram_matrix(v) for k, v in fnet.features(fv.tensor(style[None]),
                                                               layers).items()}
    cw, sw, tw = 1.0, 50.0, 0.5

    def total(x):
        f = fnet.features(x, [cl] + layers)
        return (cw * S.content_loss(f[cl], fc) + sw * S.style_loss({k: f[k] for k in layers},
                                                                  grams) + tw * S.tv_loss(x))
    image = np.clip(content + 0.2 * np.random.default_rng(5).standard_normal(content.shape),
                    0, 1)[None]
    x = fv.tensor(image.copy(), requires_grad=True)
    loss = total(x)
    loss.backward()
    ref = torch_objective(torch_net(net), content, style, cl, layers, cw, sw, tw)
    xt = torch.from_numpy(image.copy()).requires_grad_(True)
    lt = ref(xt)
    lt.backward()
    rel_close(loss.item(), lt.item(), rtol=1e-12, atol=0, what="total loss")
    rel_close(x.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=0, what="image gradient")
    for p in net.parameters():
        p.requires_grad = False
    gradcheck(total, [image], eps=1e-6, rtol=1e-5, atol=1e-9)


# ================================================================================= stylize
def _run_torch_lbfgs(total, start, steps, history_size=100):
    x = torch.from_numpy(start.copy()).requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=steps, history_size=history_size,
                            line_search_fn="strong_wolfe")
    seen = []

    def closure():
        opt.zero_grad()
        v = total(x)
        v.backward()
        seen.append((v.item(), x.detach().numpy()[0].copy()))
        return v
    opt.step(closure)
    return seen, x.detach().numpy()[0], opt.state[x]["n_iter"]


def test_stylize_lbfgs_matches_torch_iterate_for_iterate():
    net = tiny_net()
    content, style = pictures(16)
    seen = []
    image, info = S.stylize(content, style, features=net, content_layer="scale1",
                            style_layers=["scale0", "scale1"], size=None, steps=6,
                            style_weight=200.0, content_weight=1.0, tv_weight=0.5,
                            callback=lambda k, losses, im: seen.append((k, losses["total"],
                                                                        im.copy())))
    total = torch_objective(torch_net(net), content, style, "scale1", ["scale0", "scale1"],
                            1.0, 200.0, 0.5)
    ref, final, n_iter = _run_torch_lbfgs(total, content[None], 6)
    assert info["evaluations"] == len(seen) == len(ref) > 6
    assert [k for k, _, _ in seen] == list(range(len(seen)))
    for (k, loss, im), (tloss, tim) in zip(seen, ref):
        rel_close(loss, tloss, rtol=1e-9, atol=0, what=f"loss of evaluation {k}")
        rel_close(im, tim, rtol=1e-9, atol=0, what=f"image of evaluation {k}")
    np.testing.assert_allclose(image, np.clip(final, 0, 1).astype(np.float32), atol=1e-6)
    assert image.dtype == np.float32 and image.shape == (3, 16, 16)
    assert 0 <= image.min() and image.max() <= 1
    # the loss fell, and info says what ran
    assert info["final"]["total"] < 0.5 * info["initial"]["total"]
    assert info["initial"] == info["losses"][0]
    rel_close(info["final"]["total"], total(torch.from_numpy(final[None])).item(), rtol=1e-9)
    # at most 6 iterations and 6 * 5 // 4 evaluations (and a line search's last ones), as torch
    assert info["iterations"] == n_iter <= 6 and info["evaluations"] <= 7 + 2
    assert info["optimizer"] == "lbfgs" and info["lr"] == 1.0
    assert info["features"]["content_layer"] == "scale1"
    assert info["features"]["style_layers"] == ["scale0", "scale1"]
    assert info["features"]["network"].startswith("random multi-scale CNN (seed 3: kernels 3, 5")
    assert "ImageNet" in info["features"]["normalization"] and info["dtype"] == "float64"


def test_stylize_adam_matches_torch_and_lowers_the_loss():
    net = tiny_net()
    content, style = pictures(16, seed=1)
    losses = []
    image, info = S.stylize(content, style, features=net, size=None, steps=8, optimizer="adam",
                            lr=0.05, style_weight=100.0, tv_weight=1.0, init="noise",
                            generator=fv.Generator(4),
                            callback=lambda k, l_, im: losses.append(l_["total"]))
    # the same loop in torch, from the same noise (Generator(4)'s first uniform draw)
    start = np.random.default_rng(4).random((3, 16, 16))
    np.testing.assert_array_equal(start, fv.random.numpy_rng(fv.Generator(4)).random((3, 16, 16)))
    total = torch_objective(torch_net(net), content, style, net.default_content_layer,
                            net.default_style_layers, 1.0, 100.0, 1.0)
    x = torch.from_numpy(start[None].copy()).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.05)
    ref = []
    for _ in range(8):
        opt.zero_grad()
        v = total(x)
        v.backward()
        ref.append(v.item())
        opt.step()
    rel_close(losses, ref, rtol=1e-9, atol=0, what="Adam losses")
    np.testing.assert_allclose(image, np.clip(x.detach().numpy()[0], 0, 1), atol=1e-6)
    assert info["evaluations"] == info["iterations"] == 8 and info["init"] == "noise"
    assert info["final"]["total"] < info["initial"]["total"]


def test_stylize_leaves_the_feature_network_alone():
    """Only the image is optimised: the network's parameters get no gradient, their
    requires_grad flags and the modules' modes are as before."""
    fv.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.5),
                        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()).double()
    net.train()
    net[0].weight.requires_grad = False  # one frozen already: stays so
    content, style = pictures(12)
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    _, info = S.stylize(content, style, features=net, size=None, steps=3, style_weight=10.0)
    # Gatys' defaults by position: relu1_1 / relu2_1 (first ReLU of each group), relu2_2-like
    assert info["features"]["style_layers"] == ["1", "4"]
    assert info["features"]["content_layer"] == "7"
    assert all(p.grad is None for p in net.parameters())
    assert [p.requires_grad for p in net.parameters()] == [False, True, True, True, True, True]
    assert all(m.training for m in net.modules())
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)


def test_stylize_reads_picture_files_and_resizes(tmp_path):
    from PIL import Image
    c, s = make_pictures(str(tmp_path), 40)
    image, info = S.stylize(c, s, features=tiny_net(np.float32), size=20, steps=2)
    assert image.shape == (3, 20, 20) and info["size"] == (20, 20)
    assert info["dtype"] == "float32"
    assert S.load_picture(c, 20).shape == (3, 20, 20)
    arr = np.asarray(Image.open(c), dtype=np.float32).transpose(2, 0, 1) / 255
    assert S.load_picture(arr, 20).shape == (3, 20, 20)
    np.testing.assert_allclose(S.load_picture(arr), arr)  # no size: kept


def test_stylize_errors(tmp_path):
    net = tiny_net()
    content, style = pictures(8)
    with pytest.raises(VisualError, match=r"RandomFeatures has no layer 'conv9'; its layers: "
                                          r"scale0 \(FilterBank\), scale0.k3 \(Conv2d\)"):
        S.stylize(content, style, features=net, content_layer="conv9", size=None)
    with pytest.raises(VisualError, match="has no layer 'relu5_1'"):
        S.stylize(content, style, features=net, style_layers=["scale0", "relu5_1"], size=None)
    with pytest.raises(VisualError, match="optimizer must be one of lbfgs, adam, got 'sgd'"):
        S.stylize(content, style, features=net, optimizer="sgd", size=None)
    with pytest.raises(VisualError, match="init must be one of content, noise"):
        S.stylize(content, style, features=net, init="zeros", size=None)
    with pytest.raises(VisualError, match="style_weight must be a finite number >= 0"):
        S.stylize(content, style, features=net, style_weight=-1, size=None)
    with pytest.raises(VisualError, match=r"content picture must be an RGB image \(3, H, W\)"):
        S.stylize(content[:2], style, features=net, size=None)
    with pytest.raises(ImageError, match="missing.png: no such file"):
        S.stylize(str(tmp_path / "missing.png"), style, features=net)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(192, 4))
    with pytest.raises(VisualError, match=r"layer 1 \(Linear.*gives outputs of shape \(1, 4\), "
                                          "not feature maps"):
        S.stylize(content, style, features=lin, content_layer="1", style_layers=["1"], size=None)
    with pytest.raises(VisualError, match="no default layers"):
        S.stylize(content, style, features=lin, size=None)


# ======================================================================== the random network
def test_random_network_is_deterministic_for_a_seed():
    a = fv.models.create("style_features", seed=5, width=4)
    fv.manual_seed(123)  # the global generator plays no part
    fv.randn(10)
    b = RandomFeatures(seed=5, width=4)
    c = RandomFeatures(seed=6, width=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert list(sa) == list(sb) and len(sa) == 4 * 4 * 2
    for k in sa:
        np.testing.assert_array_equal(sa[k].numpy(), sb[k].numpy(), err_msg=k)
    assert not np.array_equal(sa["scale0.k3.weight"].numpy(), sc["scale0.k3.weight"].numpy())
    # He initialisation: every bank's filters of the same magnitude, biases zero
    for k in (3, 5, 7, 11):
        w = sa[f"scale1.k{k}.weight"].numpy()
        assert w.shape == (4, 3, k, k)
        assert abs(w.std() / np.sqrt(2 / (3 * k * k)) - 1) < 0.35
        assert not sa[f"scale1.k{k}.bias"].numpy().any()
    x = fv.tensor(np.random.default_rng(0).standard_normal((1, 3, 16, 16)), dtype=np.float32)
    maps = S.feature_network(a).features(x, a.default_style_layers)
    assert [o.shape for o in maps.values()] == [(1, 16, 16, 16), (1, 16, 8, 8), (1, 16, 4, 4),
                                                (1, 16, 2, 2)]
    np.testing.assert_array_equal(a(x).data, S.feature_network(a, normalize=None).features(
        x, ["scale3"])["scale3"].data)  # forward: the last scale
    assert a.default_content_layer == "scale2"
    assert a.default_style_layers == ["scale0", "scale1", "scale2", "scale3"]
    with pytest.raises(ValueError, match="distinct odd positive ints"):
        RandomFeatures(kernel_sizes=(3, 4))
    with pytest.raises(ValueError, match=r"it needs at least 8x8 pixels, got 4x4"):
        a(fv.zeros(1, 3, 4, 4))


# ======================================================================= InstanceNorm2d
@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm_matches_torch(affine):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((2, 4, 5, 3)) * 3 + 1).astype(np.float32)
    ours = InstanceNorm2d(4, affine=affine)
    theirs = torch.nn.InstanceNorm2d(4, affine=affine)
    if affine:
        ours.weight.data[...] = rng.standard_normal(4)
        ours.bias.data[...] = rng.standard_normal(4)
    check_layer_against_torch(ours, theirs, x)
    check_layer_against_torch(ours, theirs, x, train=False)


def test_instance_norm_finite_differences():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 4, 3))
    w, b = rng.standard_normal(3), rng.standard_normal(3)

    def layer():
        m = InstanceNorm2d(3, affine=True).double()
        m.weight.data[...] = w
        m.bias.data[...] = b
        return m
    gradcheck(layer(), [x])
    # the parameters: central differences of a random projection of the output
    r = rng.standard_normal(x.shape)
    m = layer()
    (m(fv.tensor(x)) * fv.tensor(r)).sum().backward()
    for name, p0 in (("weight", w), ("bias", b)):
        numeric = np.zeros(3)
        for j in range(3):
            vals = []
            for sgn in (1, -1):
                mm = layer()
                getattr(mm, name).data[j] += sgn * 1e-6
                with fv.no_grad():
                    vals.append((mm(fv.tensor(x)).numpy() * r).sum())
            numeric[j] = (vals[0] - vals[1]) / 2e-6
        rel_close(getattr(m, name).grad.numpy(), numeric, rtol=1e-6, atol=1e-8, what=name)
    with pytest.raises(ValueError, match="track_running_stats=True is not supported"):
        InstanceNorm2d(3, track_running_stats=True)
    with pytest.raises(ValueError, match=r"built for 3 channels, got 4"):
        InstanceNorm2d(3)(fv.zeros(1, 4, 2, 2))


# =================================================================== the feed-forward network
def test_transform_net_trains_its_loss_down_and_applies():
    rng = np.random.default_rng(9)
    photos = np.stack([pictures(16, seed=s)[0] for s in range(6)]).astype(np.float32)
    _, style = pictures(16, seed=9)
    net = tiny_net(np.float32, width=4)
    steps = []
    stylizer = S.train_stylizer(style, photos, features=net, steps=24, batch_size=2, lr=1e-2,
                                style_weight=200.0, width=4, blocks=1, generator=fv.Generator(0),
                                callback=lambda k, losses: steps.append(k))
    losses = [s["total"] for s in stylizer.info["losses"]]
    assert steps == list(range(24)) and len(losses) == 24
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4]), losses
    assert all(p.grad is None for p in net.parameters())  # the feature network: untouched
    assert isinstance(stylizer.net, TransformNet) and not stylizer.net.training
    out = stylizer.apply(photos[0])
    assert out.shape == (3, 16, 16) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1 and out.std() > 0
    batch = stylizer.apply(rng.random((2, 3, 18, 13)))  # any size of at least 8: padded, cropped
    assert batch.shape == (2, 3, 18, 13) and 0 <= batch.min() and batch.max() <= 1
    with fv.no_grad():  # apply is the network's forward pass, clipped
        direct = stylizer.net(fv.tensor(photos[:1])).numpy()[0]
    np.testing.assert_allclose(out, direct, atol=1e-7)
    with pytest.raises(VisualError, match=r"expected an RGB picture \(3, H, W\)"):
        stylizer.apply(np.zeros((1, 16, 16)))


def test_transform_net_shapes_and_batch_norm():
    x = fv.tensor(np.random.default_rng(0).random((2, 3, 12, 20)).astype(np.float32))
    for up in ("transpose", "nearest"):
        for norm in ("instance", "batch"):
            net = fv.models.create("transform_net", width=2, blocks=2, norm=norm, upsample=up)
            y = net(x)
            assert y.shape == (2, 3, 12, 20) and 0 < y.data.min() and y.data.max() < 1
    names = dict(net.named_modules())
    assert isinstance(names["norm1"], nn.BatchNorm2d) and "res.1.conv2" in names
    assert isinstance(dict(TransformNet(2).named_modules())["norm1"], InstanceNorm2d)
    with pytest.raises(ValueError, match="at least 8x8 pixels, got 6x20"):
        net(fv.zeros(1, 3, 6, 20))


def test_transform_net_with_transposed_convolutions_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = TransformNet(2, 1, upsample="transpose").eval()
    x = np.random.default_rng(1).random((1, 3, 16, 16)).astype(np.float32)
    path = str(tmp_path / "stylizer.onnx")
    fv.onnx.export(net, fv.tensor(x), path)
    sess = ort.InferenceSession(path)
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with fv.no_grad():
        want = net(fv.tensor(x)).data
    np.testing.assert_allclose(got, want, atol=1e-5)


# ============================================================================ ONNX features
@pytest.fixture
def tiny_onnx(tmp_path):
    """A small VGG-like classifier exported at 16x16, and the module it came from."""
    pytest.importorskip("onnx")
    fv.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1),
                      nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 4 * 4, 10))
    path = str(tmp_path / "tiny.onnx")
    fv.onnx.export(m, fv.randn(1, 3, 16, 16), path)
    return path, m


def test_onnx_feature_network_reads_values_and_cuts_the_graph(tiny_onnx):
    path, m = tiny_onnx
    net = S.feature_network(path)
    assert net.kind == "onnx" and net.description.startswith(f"ONNX file {path}")
    # Gatys' defaults by position: the first ReLU after each pooling, the 4th group's 2nd ReLU
    assert net.default_style_layers == ["1/ReLU", "4/ReLU"]
    assert net.default_content_layer == "6/ReLU"
    ours = S.feature_network(m)
    # 24x24: the classifier (exported for 16x16) would refuse it; the cut graph does not run it
    x = np.random.default_rng(0).random((1, 3, 24, 24)).astype(np.float32)
    xa, xb = fv.tensor(x, requires_grad=True), fv.tensor(x, requires_grad=True)
    fa = net.features(xa, ["1/ReLU", "6/Relu"])       # a value name and a node name
    fb = ours.features(xb, ["1", "6"])
    for (ka, a), (kb, b) in zip(fa.items(), fb.items()):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-5, atol=1e-6, err_msg=ka)
    (fa["6/Relu"] ** 2).sum().backward()
    (fb["6"] ** 2).sum().backward()
    np.testing.assert_allclose(xa.grad.numpy(), xb.grad.numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(VisualError, match=r"has no layer 'relu4_2'; its layers \(node outputs "
                                          r"\[node names\]\): 0/Conv2d \[0/Conv\] \(Conv\), "
                                          r"1/ReLU \[1/Relu\] \(Relu\)"):
        net.check("relu4_2")
    content, style = pictures(16)
    image, info = S.stylize(content, style, features=path, size=None, steps=2)
    assert image.shape == (3, 16, 16) and info["features"]["kind"] == "onnx"
    assert info["final"]["total"] < info["initial"]["total"]


def test_onnx_files_that_cannot_be_loaded(tmp_path):
    onnx_import = pytest.importorskip("foveanet.interop.onnx_import")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model at all")
    with pytest.raises(onnx_import.OnnxLoadError, match="bad.onnx: not a valid ONNX file"):
        S.feature_network(str(bad))
    with pytest.raises(onnx_import.OnnxLoadError, match="gone.onnx: no such file"):
        S.feature_network(str(tmp_path / "gone.onnx"))


def test_vgg_defaults_are_gatys_layers():
    from foveanet.models.vgg import CFGS, make_layers
    net = S.FeatureNetwork(make_layers(CFGS["E"][:9]))  # VGG-19 up to block 3: relu1_1 ...
    assert net.default_style_layers == ["1", "6", "11"]
    assert net.default_content_layer == "13"          # block 3's second ReLU (the last group)
    assert S.feature_network(None).default_content_layer == "scale2"
    # the classifier's ReLUs (after the flattening) are not feature maps: never a default
    clf = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3),
                        nn.ReLU(), nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    net = S.FeatureNetwork(clf)
    assert net.default_style_layers == ["1", "4"] and net.default_content_layer == "4"


# ========================================================================= the command line
@pytest.fixture
def cli(monkeypatch):
    """``foveanet.cli.main`` with the stylize command registered for the test."""
    import foveanet.cli as cli_module
    monkeypatch.setitem(cli_module.COMMANDS, "stylize", stylize_cmd)
    return cli_module.main


@pytest.fixture
def pics(tmp_path):
    return make_pictures(str(tmp_path), 32)


def _error(cli, capsys, argv):
    rc = cli(["stylize"] + argv)
    return rc, capsys.readouterr().err


def test_stylize_command_writes_the_pictures(cli, pics, tmp_path, capsys):
    from PIL import Image
    out, both = str(tmp_path / "out.png"), str(tmp_path / "both.png")
    rc = cli(["stylize", *pics, "-o", out, "--size", "16", "--steps", "3", "--side-by-side",
              both, "--style-weight", "1e5"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "feature network: random multi-scale CNN (seed 0: kernels 3, 5, 7, 11, 32 filters " \
           "each, ReLU, at 4 scales by 2x2 average pooling of the image)" in text
    assert "content layer: scale2 (FilterBank)" in text
    assert "style layers: scale0 (FilterBank), scale1 (FilterBank), scale2 (FilterBank), " \
           "scale3 (FilterBank)" in text
    assert "input normalisation: ImageNet mean/std" in text and "evaluation 0: loss " in text
    assert f"wrote {out} (16x16): lbfgs, " in text and f"wrote {both} (content | style " in text
    for path, size in ((out, (16, 16)), (both, (16 * 3 + 4 * 4, 16 + 2 * 4))):
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC
        with Image.open(path) as im:
            assert im.size == size and im.mode == "RGB"
    assert sorted(os.listdir(tmp_path)) == ["both.png", "content.png", "out.png", "style.png"]


def test_stylize_command_with_onnx_features_and_layers(cli, pics, tiny_onnx, tmp_path, capsys):
    path, _ = tiny_onnx
    out = str(tmp_path / "o.png")
    rc = cli(["stylize", *pics, "-o", out, "--size", "16", "--steps", "2", "--features", path,
              "--content-layer", "4/ReLU", "--style-layers", "1/ReLU,6/Relu", "--optimizer",
              "adam", "--normalize", "none"])
    text = capsys.readouterr().out
    assert rc == 0 and os.path.isfile(out)
    assert f"feature network: ONNX file {path} (opset" in text
    assert "content layer: 4/ReLU (Relu)" in text and "style layers: 1/ReLU (Relu), 6/Relu (Relu)" \
        in text
    assert "input normalisation: none" in text and "adam, 2 iterations, 2 evaluations" in text


def test_stylize_command_errors(cli, pics, tiny_onnx, tmp_path, capsys):
    out = ["-o", str(tmp_path / "o.png"), "--size", "16", "--steps", "1"]
    rc, err = _error(cli, capsys, [*pics, "--content-layer", "conv4_2"] + out)
    assert rc == 2 and "foveanet stylize: error: --content-layer conv4_2: RandomFeatures has no " \
        "layer 'conv4_2'; its layers: scale0 (FilterBank), scale0.k3 (Conv2d)" in err
    rc, err = _error(cli, capsys, [*pics, "--style-layers", "scale0,relu9"] + out)
    assert rc == 2 and "--style-layers relu9: RandomFeatures has no layer 'relu9'" in err
    path, _ = tiny_onnx
    rc, err = _error(cli, capsys, [*pics, "--features", path, "--content-layer", "relu4_2"] + out)
    assert rc == 2 and "--content-layer relu4_2: ONNX file" in err and \
        "its layers (node outputs [node names]): 0/Conv2d [0/Conv] (Conv)" in err
    rc, err = _error(cli, capsys, [pics[0], str(tmp_path / "missing.png")] + out)
    assert rc == 1 and "missing.png: no such file" in err
    broken = tmp_path / "broken.png"
    broken.write_text("not a picture")
    rc, err = _error(cli, capsys, [str(broken), pics[1]] + out)
    assert rc == 1 and "broken.png: cannot read the picture" in err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    rc, err = _error(cli, capsys, [*pics, "--features", str(bad)] + out)
    assert rc == 1 and "bad.onnx: not" in err and "ONNX" in err
    rc, err = _error(cli, capsys, [*pics, "--features", str(tmp_path / "gone.onnx")] + out)
    assert rc == 1 and "gone.onnx: no such file" in err
    rc, err = _error(cli, capsys, [*pics, "--features", "resnet9000"] + out)
    assert rc == 2 and "--features 'resnet9000': not an ONNX file, 'random' or a model name" in err
    rc, err = _error(cli, capsys, [*pics, "-o", str(tmp_path / "o.jpg")])
    assert rc == 2 and "-o " in err and "the picture is written as PNG" in err
    rc, err = _error(cli, capsys, [*pics, "-o", str(tmp_path / "no" / "o.png")])
    assert rc == 1 and "no directory" in err
    assert not os.path.exists(tmp_path / "o.png")
