"""The image-output models (issue 21): autoencoders, the VAE and its loss, SegNet, U-Net and
DCGAN. Shapes and value ranges at 28x28 and another size, clear errors, a plain-torch twin of
each network built here by hand (torchvision is not used) with the same weights copied over:
forward outputs and the gradients of every parameter and of the input equal (max-unpooling
path included); ``vae_loss`` against the same formula in torch and by finite differences;
``dcgan_init``'s statistics and reproducibility; the registry and ``summary``."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF

import foveanet as fv
import foveanet.models as M
from foveanet.models.autoencoder import vae_loss
from helpers import check_against_torch, copy_params_to_torch, gradcheck, rel_close

NEW = ("dense_ae", "conv_ae", "vae", "segnet", "segnet_small", "unet", "dcgan_generator",
       "dcgan_discriminator")


def images(*shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def noise(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def run(model, *inputs, train=False):
    model.train(train)
    with fv.no_grad():
        return model(*[fv.tensor(a) for a in inputs])


# -------------------------------------------------------------------------------- the registry
def test_every_new_model_is_registered_and_created_by_name():
    assert set(NEW) <= set(M.list_models())
    kinds = {"dense_ae": M.Autoencoder, "conv_ae": M.Autoencoder, "vae": M.VAE,
             "segnet_small": M.SegNet, "unet": M.UNet, "dcgan_generator": M.Generator,
             "dcgan_discriminator": M.Discriminator}
    for name, cls in kinds.items():
        assert isinstance(M.create(name), cls), name
        assert isinstance(M.create(name.replace("_", "-")), cls), name
    assert M.model_options("segnet_small") == {"num_classes": 11, "in_channels": 1, "width": 16,
                                               "depth": 3}
    assert M.model_options("dcgan_generator")["latent"] == 100
    with pytest.raises(TypeError, match="no option 'num_classes'"):
        M.create("conv_ae", num_classes=10)


# ------------------------------------------------------------------------- shapes and ranges
@pytest.mark.parametrize("name,kw,shape", [
    ("dense_ae", {}, (2, 1, 28, 28)),
    ("dense_ae", {"in_channels": 3, "image_size": (32, 24), "hidden": (64,)}, (2, 3, 32, 24)),
    ("conv_ae", {}, (2, 1, 28, 28)),
    ("conv_ae", {"in_channels": 3, "image_size": 32, "width": 8}, (2, 3, 32, 32)),
    ("conv_ae", {"image_size": 64, "width": 4}, (1, 1, 64, 64)),
])
def test_autoencoders_give_back_images_in_the_unit_range(name, kw, shape):
    fv.manual_seed(0)
    model = M.create(name, **kw)
    x = images(*shape)
    for train in (True, False):
        y = run(model, x, train=train).numpy()
        assert y.shape == shape and y.dtype == np.float32
        assert (y >= 0).all() and (y <= 1).all() and y.std() > 0
    model.eval()
    with fv.no_grad():
        z = model.encode(fv.tensor(x))
        assert z.shape == (shape[0], model.bottleneck)
        np.testing.assert_array_equal(model.decode(z).numpy(), model(fv.tensor(x)).numpy())


@pytest.mark.parametrize("kw,shape", [({}, (2, 1, 28, 28)),
                                      ({"in_channels": 3, "image_size": 32, "latent": 8,
                                        "width": 8}, (2, 3, 32, 32))])
def test_vae_shapes_sampling_and_determinism(kw, shape):
    fv.manual_seed(0)
    model = M.create("vae", **kw)
    x = fv.tensor(images(*shape))
    latent = model.latent
    logits, mu, logvar = run(model, x.numpy(), train=True)
    assert logits.shape == shape and mu.shape == logvar.shape == (shape[0], latent)
    # eval mode: z = mu, one answer per image
    a, b = run(model, x.numpy()), run(model, x.numpy())
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    with fv.no_grad():
        np.testing.assert_array_equal(a[0].numpy(), model.decode(a[1]).numpy())
    # training mode draws z: the global generator decides
    model.train()
    with fv.no_grad():
        fv.manual_seed(5)
        t1 = model(x)[0].numpy()
        fv.manual_seed(5)
        t2 = model(x)[0].numpy()
        t3 = model(x)[0].numpy()
    np.testing.assert_array_equal(t1, t2)
    assert not np.array_equal(t1, t3)
    # reparameterize: mu + exp(logvar / 2) * eps with eps from the given generator
    mu_, lv = fv.tensor(noise(3, latent, seed=1)), fv.tensor(noise(3, latent, seed=2))
    z = model.reparameterize(mu_, lv, generator=fv.Generator().manual_seed(7))
    eps = fv.randn(3, latent, generator=fv.Generator().manual_seed(7)).numpy()
    np.testing.assert_allclose(z.numpy(), mu_.numpy() + np.exp(lv.numpy() / 2) * eps, rtol=1e-6)
    # sample: images in [0, 1], no graph, the running statistics and the mode untouched
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    s = model.sample(4, generator=fv.Generator().manual_seed(1))
    s2 = model.sample(4, generator=fv.Generator().manual_seed(1))
    assert s.shape == (4,) + shape[1:] and not s.requires_grad
    assert (s.numpy() >= 0).all() and (s.numpy() <= 1).all()
    np.testing.assert_array_equal(s.numpy(), s2.numpy())
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)


@pytest.mark.parametrize("name,kw,shape,classes", [
    ("segnet_small", {"depth": 2}, (2, 1, 28, 28), 11),
    ("segnet_small", {"in_channels": 3, "num_classes": 4, "width": 4}, (2, 3, 32, 32), 4),
    ("segnet_small", {"width": 4}, (1, 1, 96, 64), 11),
    ("unet", {"depth": 2}, (2, 1, 28, 28), 11),
    ("unet", {"in_channels": 3, "num_classes": 2, "width": 4}, (2, 3, 32, 32), 2),
])
def test_segmentation_networks_score_every_pixel(name, kw, shape, classes):
    fv.manual_seed(0)
    y = run(M.create(name, **kw), images(*shape))
    assert y.shape == (shape[0], classes) + shape[2:] and np.isfinite(y.numpy()).all()


def test_segnet_is_vgg16_with_its_mirror_and_the_papers_parameter_count():
    fv.manual_seed(0)
    model = M.create("segnet")
    convs = [n for n, m in model.named_modules() if isinstance(m, fv.nn.Conv2d)]
    enc = [n for n in convs if n.startswith("enc")]
    assert enc == [f"enc{s}.conv{s}_{j}.conv" for s, k in zip(range(1, 6), (2, 2, 3, 3, 3))
                   for j in range(1, k + 1)]
    assert [model.get_submodule(n).out_channels for n in enc] == \
        [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    dec = [n for n in convs if n.startswith("dec")]
    assert dec[:3] == ["dec5.conv5_3_D.conv", "dec5.conv5_2_D.conv", "dec5.conv5_1_D.conv"]
    assert dec[-2:] == ["dec2.conv2_1_D.conv", "dec1.conv1_2_D.conv"] and len(dec) == 12
    assert [model.get_submodule(n).out_channels for n in dec] == \
        [512, 512, 512, 512, 512, 256, 256, 256, 128, 128, 64, 64]
    # VGG16's 13 convolutions have 14,714,688 parameters (torchvision's vgg16 features); with BN
    # and the mirrored decoder the whole SegNet has 29.45M, the paper's "29.5M"
    enc_conv = sum(p.numel() for n, p in model.named_parameters() if n.startswith("enc")
                   and ".conv." in n)
    assert enc_conv == 14_714_688
    assert model.num_parameters() == 29_449_355
    y = run(model, images(1, 3, 64, 64))
    assert y.shape == (1, 11, 64, 64) and np.isfinite(y.numpy()).all()


@pytest.mark.parametrize("size,kw", [(28, {}), (32, {"out_channels": 3}), (64, {"width": 8})])
def test_dcgan_shapes_and_ranges(size, kw):
    fv.manual_seed(0)
    g = M.create("dcgan_generator", image_size=size, **kw)
    c = kw.get("out_channels", 1)
    d = M.create("dcgan_discriminator", image_size=size, in_channels=c,
                 width=kw.get("width", 64))
    for z in (noise(3, 100), noise(3, 100, 1, 1)):
        for train in (True, False):
            img = run(g, z, train=train).numpy()
            assert img.shape == (3, c, size, size)
            assert (np.abs(img) <= 1).all() and img.std() > 0
    logits = run(d, img)
    assert logits.shape == (3, 1) and np.isfinite(logits.numpy()).all()
    assert g.latent == 100 and g.num_classes == 0 and d.num_classes == 0


def test_conditional_dcgan_depends_on_the_labels():
    fv.manual_seed(0)
    g = M.create("dcgan_generator", num_classes=10, width=8)
    d = M.create("dcgan_discriminator", num_classes=10, width=8)
    z = noise(4, 100)
    a = run(g, z, np.array([0, 1, 2, 3]))
    b = run(g, z, np.array([0, 1, 2, 9]))
    assert a.shape == (4, 1, 28, 28) and (np.abs(a.numpy()) <= 1).all()
    np.testing.assert_array_equal(a.numpy()[:3], b.numpy()[:3])
    assert not np.array_equal(a.numpy()[3], b.numpy()[3])
    x = images(4, 1, 28, 28)
    p, q = run(d, x, np.array([0, 1, 2, 3])), run(d, x, np.array([0, 1, 2, 4]))
    assert p.shape == (4, 1) and p.numpy()[3] != q.numpy()[3]
    assert "onehot" not in g.state_dict() and "onehot" not in d.state_dict()


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("make,call,err,match", [
    (lambda: M.create("conv_ae", image_size=30), None, ValueError,
     r"conv_ae: cannot build the encoder for 30x30 images"),
    (lambda: M.create("vae", image_size=12), None, ValueError, "vae: cannot build"),
    (lambda: M.create("dense_ae", image_size="big"), None, TypeError, "dense_ae: image_size"),
    (lambda: M.create("dcgan_generator", image_size=30), None, ValueError,
     "dcgan_generator: image_size 30 is not supported"),
    (lambda: M.create("dcgan_discriminator", image_size=(28, 32)), None, ValueError, "square"),
    (lambda: M.create("dcgan_generator", num_classes=-1), None, ValueError, "num_classes"),
    (lambda: M.create("conv_ae"), lambda m: m(fv.rand(2, 3, 28, 28)), ValueError,
     r"conv_ae: built for 1-channel images, got 3 channels"),
    (lambda: M.create("dense_ae"), lambda m: m(fv.rand(2, 1, 32, 32)), ValueError,
     r"dense_ae: built for images of 28x28 pixels, got 32x32 .* image_size=\(32, 32\)"),
    (lambda: M.create("vae"), lambda m: m(fv.rand(2, 28, 28)), ValueError,
     r"vae: expected images of shape \(N, C, H, W\)"),
    (lambda: M.create("vae"), lambda m: m.decode(fv.rand(2, 15)), ValueError,
     r"vae: decode takes latent codes of shape \(N, 16\)"),
    (lambda: M.create("segnet_small"), lambda m: m(fv.rand(1, 1, 28, 28)), ValueError,
     r"segnet_small: 28x28 images do not halve exactly 3 times.*depth=2"),
    (lambda: M.create("segnet_small"), lambda m: m(fv.rand(1, 3, 32, 32)), ValueError,
     r"segnet_small: built for 1-channel images, got 3"),
    (lambda: M.create("unet"), lambda m: m(fv.rand(1, 1, 28, 28)), ValueError,
     r"unet: 28x28 images do not halve exactly 3 times"),
    (lambda: M.create("segnet_small", depth=0), None, ValueError, "depth must be a positive"),
    (lambda: M.create("dcgan_generator", num_classes=10),
     lambda m: m(fv.randn(2, 100)), ValueError,
     r"dcgan_generator: this model is conditional \(num_classes=10\).*labels"),
    (lambda: M.create("dcgan_discriminator", num_classes=10),
     lambda m: m(fv.rand(2, 1, 28, 28)), ValueError, "dcgan_discriminator: this model is cond"),
    (lambda: M.create("dcgan_generator", num_classes=10),
     lambda m: m(fv.randn(2, 100), fv.tensor(np.array([1, 10]))), ValueError,
     "label 10 is out of range for num_classes=10"),
    (lambda: M.create("dcgan_generator", num_classes=10),
     lambda m: m(fv.randn(2, 100), fv.tensor(np.array([1]))), ValueError,
     r"labels must have shape \(2,\)"),
    (lambda: M.create("dcgan_discriminator", num_classes=3),
     lambda m: m(fv.rand(2, 1, 28, 28), fv.tensor(np.array([1.0, 2.0]))), TypeError,
     "labels must be integers"),
    (lambda: M.create("dcgan_generator"), lambda m: m(fv.randn(2, 100), fv.tensor(np.array([1, 2]))),
     ValueError, "unconditional"),
    (lambda: M.create("dcgan_generator"), lambda m: m(fv.randn(2, 64)), ValueError,
     r"expected noise of shape \(N, 100\)"),
    (lambda: M.create("dcgan_discriminator"), lambda m: m(fv.rand(2, 1, 32, 32)), ValueError,
     "built for images of 28x28 pixels"),
    (lambda: None, lambda m: vae_loss(fv.rand(2, 1, 28, 28), fv.rand(2, 1, 28, 27),
                                      fv.rand(2, 4), fv.rand(2, 4)), ValueError,
     "vae_loss: logits of shape"),
])
def test_clear_errors(make, call, err, match):
    with pytest.raises(err, match=match):
        m = make()
        call(m)


def test_segnet_takes_sizes_that_do_not_halve_evenly_but_not_tiny_ones():
    """The full SegNet unpools to each encoder stage's own size (SegNet's CamVid frames are
    360x480, which pool to 11x15), so a 45x38 image comes back 45x38."""
    fv.manual_seed(0)
    small = M.SegNet(3, 1, stages=((2, 2), (4,), (4,), (4,), (4,)))  # the same code, cheaper
    assert run(small, images(1, 1, 45, 38)).shape == (1, 3, 45, 38)
    with pytest.raises(ValueError, match="segnet: 16x40 images are too small for 5 2x2"):
        run(small, images(1, 1, 16, 40))


# -------------------------------------------------------------------- the plain-torch twins
class TConvBNReLU(tnn.Module):
    def __init__(self, cin, cout, bias=True):
        super().__init__()
        self.conv, self.bn, self.relu = tnn.Conv2d(cin, cout, 3, padding=1, bias=bias), \
            tnn.BatchNorm2d(cout), tnn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


def t_conv_stack(cin, widths):
    layers = []
    for v in widths:
        layers += [tnn.Conv2d(cin, v, 3, 2, 1, bias=False), tnn.BatchNorm2d(v), tnn.ReLU()]
        cin = v
    return tnn.Sequential(*layers)


def t_deconv_stack(widths, cout):
    layers, back = [], widths[::-1]
    for a, b in zip(back, back[1:]):
        layers += [tnn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), tnn.BatchNorm2d(b), tnn.ReLU()]
    layers.append(tnn.ConvTranspose2d(back[-1], cout, 4, 2, 1))
    return tnn.Sequential(*layers)


class TAutoencoder(tnn.Module):
    def __init__(self, c, widths, hw, bottleneck):
        super().__init__()
        feat = widths[-1] * hw[0] * hw[1]
        self.encoder = tnn.Sequential(t_conv_stack(c, widths), tnn.Flatten(), tnn.Linear(feat, bottleneck))
        self.decoder = tnn.Sequential(tnn.Linear(bottleneck, feat), tnn.Unflatten(1, (widths[-1], *hw)),
                                      tnn.ReLU(), t_deconv_stack(widths, c), tnn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x))


class TVAE(tnn.Module):
    def __init__(self, c, widths, hw, latent):
        super().__init__()
        feat = widths[-1] * hw[0] * hw[1]
        self.encoder = tnn.Sequential(t_conv_stack(c, widths), tnn.Flatten())
        self.fc_mu, self.fc_logvar = tnn.Linear(feat, latent), tnn.Linear(feat, latent)
        self.decoder = tnn.Sequential(tnn.Linear(latent, feat), tnn.Unflatten(1, (widths[-1], *hw)),
                                      tnn.ReLU(), t_deconv_stack(widths, c))
        self.eps = None  # training mode: the noise foveanet drew

    def forward(self, x):
        h = self.encoder(x)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = mu + torch.exp(0.5 * logvar) * self.eps if self.training else mu
        return self.decoder(z), mu, logvar


class TSegNet(tnn.Module):
    """SegNet from its description: per stage Conv-BN-ReLU layers and a 2x2 max pooling with
    indices; the decoder unpools by them to the stage's size and mirrors the widths."""

    def __init__(self, classes, cin, stages):
        super().__init__()
        self.k = len(stages)
        c = cin
        for s, ws in enumerate(stages, 1):
            layers = OrderedDict()
            for j, v in enumerate(ws, 1):
                layers[f"conv{s}_{j}"] = TConvBNReLU(c, v)
                c = v
            setattr(self, f"enc{s}", tnn.Sequential(layers))
        for s in range(self.k, 0, -1):
            ws = stages[s - 1]
            layers, c = OrderedDict(), ws[-1]
            targets = list(ws[:-1][::-1]) + ([stages[s - 2][-1]] if s > 1 else [])
            for j, v in zip(range(len(ws), 0, -1), targets):
                layers[f"conv{s}_{j}_D"] = TConvBNReLU(c, v)
                c = v
            setattr(self, f"dec{s}", tnn.Sequential(layers))
        self.classifier = tnn.Conv2d(c, classes, 3, padding=1)

    def forward(self, x):
        memory = []
        for s in range(1, self.k + 1):
            x = getattr(self, f"enc{s}")(x)
            size = x.shape[2:]
            x, idx = TF.max_pool2d(x, 2, 2, return_indices=True)
            memory.append((idx, size))
        for s in range(self.k, 0, -1):
            idx, size = memory[s - 1]
            x = getattr(self, f"dec{s}")(TF.max_unpool2d(x, idx, 2, 2, output_size=size))
        return self.classifier(x)


class TUNet(tnn.Module):
    def __init__(self, classes, cin, width, depth):
        super().__init__()
        self.depth = depth

        def double(a, b):
            return tnn.Sequential(OrderedDict(block1=TConvBNReLU(a, b, False),
                                              block2=TConvBNReLU(b, b, False)))
        c = cin
        for i in range(depth):
            setattr(self, f"enc{i}", double(c, width * 2 ** i))
            c = width * 2 ** i
        self.bottleneck = double(c, 2 * c)
        for i in range(depth - 1, -1, -1):
            v = width * 2 ** i
            setattr(self, f"up{i}", tnn.ConvTranspose2d(2 * v, v, 2, 2))
            setattr(self, f"dec{i}", double(2 * v, v))
        self.head = tnn.Conv2d(width, classes, 1)

    def forward(self, x):
        skips = []
        for i in range(self.depth):
            x = getattr(self, f"enc{i}")(x)
            skips.append(x)
            x = TF.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for i in range(self.depth - 1, -1, -1):
            x = getattr(self, f"dec{i}")(torch.cat([skips[i], getattr(self, f"up{i}")(x)], 1))
        return self.head(x)


class TGenerator(tnn.Module):
    """28x28: (latent + K) 1x1 -> 4w 7x7 -> 2w 14x14 -> C 28x28, Tanh."""

    def __init__(self, latent, c, w, classes):
        super().__init__()
        self.classes = classes
        self.net = tnn.Sequential(OrderedDict(
            project=tnn.ConvTranspose2d(latent + classes, 4 * w, 7, bias=False),
            bn0=tnn.BatchNorm2d(4 * w), relu0=tnn.ReLU(),
            up1=tnn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False),
            bn1=tnn.BatchNorm2d(2 * w), relu1=tnn.ReLU(),
            up2=tnn.ConvTranspose2d(2 * w, c, 4, 2, 1), tanh=tnn.Tanh()))

    def forward(self, z, labels=None):
        if self.classes:
            z = torch.cat([z, TF.one_hot(labels, self.classes).to(z.dtype)], 1)
        return self.net(z[:, :, None, None])


class TDiscriminator(tnn.Module):
    """28x28: C (+ K one-hot planes) -> w 14x14 -> 2w 7x7 (BN) -> 7x7 conv -> (N, 1)."""

    def __init__(self, c, w, classes):
        super().__init__()
        self.classes = classes
        self.net = tnn.Sequential(OrderedDict(
            down1=tnn.Conv2d(c + classes, w, 4, 2, 1), lrelu1=tnn.LeakyReLU(0.2),
            down2=tnn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), bn2=tnn.BatchNorm2d(2 * w),
            lrelu2=tnn.LeakyReLU(0.2), logit=tnn.Conv2d(2 * w, 1, 7)))

    def forward(self, x, labels=None):
        if self.classes:
            maps = TF.one_hot(labels, self.classes).to(x.dtype)[:, :, None, None]
            x = torch.cat([x, maps.expand(-1, -1, *x.shape[2:])], 1)
        return self.net(x).reshape(-1, 1)


def twin_check(ours, theirs, inputs, train=True, seed=0, before=None):
    """Copy our weights into the torch twin, run both on ``inputs`` (NumPy arrays; float ones
    require grad) in the given mode, back-propagate the same random upstream gradient, and
    compare: every output, the input's gradient and every parameter's gradient within 1e-4 of
    that tensor's largest magnitude; the running statistics after the step. A gradient that is
    zero in exact arithmetic (a convolution bias followed by batch norm in training mode, whose
    mean subtraction cancels it) is rounding noise in both: it must stay below 1e-5 of the
    network's largest gradient instead. ``before`` runs before our forward (a seed)."""
    copy_params_to_torch(ours, theirs)
    ours.zero_grad()
    theirs.zero_grad()
    ours.train(train)
    theirs.train(train)
    fv_in = [fv.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    th_in = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    if before:
        before()
    out, ref = ours(*fv_in), theirs(*th_in)
    out, ref = (out if isinstance(out, tuple) else (out,)), (ref if isinstance(ref, tuple) else (ref,))
    assert len(out) == len(ref)
    rng = np.random.default_rng(seed)
    total, ups = fv.tensor(np.float32(0)), []
    for k, (o, r) in enumerate(zip(out, ref)):
        rel_close(o.detach().numpy(), r.detach().numpy(), what=f"output {k}")
        up = rng.standard_normal(tuple(r.shape)).astype(np.float32)
        total = total + (o * fv.tensor(up)).sum()
        ups.append(torch.from_numpy(up))
    total.backward()
    torch.autograd.backward(list(ref), ups)
    for k, (a, b) in enumerate(zip(fv_in, th_in)):
        if b.requires_grad:
            rel_close(a.grad.numpy(), b.grad.numpy(), what=f"gradient of input {k}")
    theirs_p = dict(theirs.named_parameters())
    grads = {n: (p.grad.numpy(), theirs_p[n].grad.numpy()) for n, p in ours.named_parameters()}
    assert set(grads) == set(theirs_p)
    largest = max(np.abs(r).max() for _, r in grads.values())
    for n, (g, r) in grads.items():
        if np.abs(r).max() < 1e-5 * largest:  # zero but for rounding, in both
            assert np.abs(g).max() < 1e-5 * largest, (n, np.abs(g).max(), largest)
        else:
            rel_close(g, r, what=f"gradient of parameter {n}")
    buffers = theirs.state_dict()
    for n, b in ours.named_buffers():
        if n in buffers:
            rel_close(b.numpy(), buffers[n].numpy(), what=f"buffer {n}")
    return out


def _perturb_bn(model, seed=0):
    """Batch-norm weights and running statistics away from their defaults (1, 0, 0, 1), so that
    a twin which swapped or ignored them would differ."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, fv.nn.BatchNorm2d):
            for t, lo, hi in ((m.weight, 0.5, 1.5), (m.bias, -0.2, 0.2), (m.running_mean, -0.1, 0.1),
                              (m.running_var, 0.5, 1.5)):
                t.data[...] = rng.uniform(lo, hi, t.shape).astype(t.data.dtype)


@pytest.mark.parametrize("train", [True, False])
def test_conv_ae_equals_its_torch_twin(train):
    fv.manual_seed(0)
    ours = M.create("conv_ae", image_size=28, bottleneck=8, width=4)
    _perturb_bn(ours)
    theirs = TAutoencoder(1, [4, 8], (7, 7), 8)
    twin_check(ours, theirs, [images(3, 1, 28, 28)], train=train)


def test_conv_ae_at_32_equals_its_torch_twin():
    fv.manual_seed(1)
    ours = M.create("conv_ae", in_channels=3, image_size=32, bottleneck=6, width=2)
    theirs = TAutoencoder(3, [2, 4, 8], (4, 4), 6)
    twin_check(ours, theirs, [images(2, 3, 32, 32)])


def test_dense_ae_equals_its_torch_twin():
    fv.manual_seed(0)
    ours = M.create("dense_ae", hidden=(32, 16), bottleneck=4)
    theirs = tnn.Module()
    theirs.encoder = tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 32), tnn.ReLU(), tnn.Linear(32, 16),
                                    tnn.ReLU(), tnn.Linear(16, 4))
    theirs.decoder = tnn.Sequential(tnn.Linear(4, 16), tnn.ReLU(), tnn.Linear(16, 32), tnn.ReLU(),
                                    tnn.Linear(32, 784), tnn.Sigmoid(), tnn.Unflatten(1, (1, 28, 28)))
    theirs.forward = lambda x: theirs.decoder(theirs.encoder(x))
    twin_check(ours, theirs, [images(3, 1, 28, 28)])


@pytest.mark.parametrize("train", [True, False])
def test_vae_equals_its_torch_twin(train):
    """Training mode with foveanet's noise handed to the twin (the seed fixed before each
    forward); eval mode uses z = mu."""
    fv.manual_seed(0)
    ours = M.create("vae", latent=5, width=4)
    _perturb_bn(ours)
    theirs = TVAE(1, [4, 8], (7, 7), 5)
    fv.manual_seed(11)
    theirs.eps = torch.from_numpy(fv.randn(3, 5).numpy())
    twin_check(ours, theirs, [images(3, 1, 28, 28)], train=train,
               before=lambda: fv.manual_seed(11))


def test_segnet_small_equals_its_torch_twin_through_the_unpooling():
    fv.manual_seed(0)
    ours = M.create("segnet_small", num_classes=3, in_channels=2, width=4, depth=2)
    _perturb_bn(ours)
    theirs = TSegNet(3, 2, [(4, 4), (8, 8)])
    twin_check(ours, theirs, [images(2, 2, 28, 28)])
    twin_check(ours, theirs, [images(2, 2, 28, 28, seed=1)], train=False)


def test_segnet_unpools_to_odd_sizes_as_torch_does():
    fv.manual_seed(0)
    stages = [(3,), (4, 4), (5,)]
    ours = M.SegNet(2, 1, stages=stages)
    theirs = TSegNet(2, 1, stages)
    twin_check(ours, theirs, [images(2, 1, 21, 19)])


def test_unet_equals_its_torch_twin():
    fv.manual_seed(0)
    ours = M.create("unet", num_classes=3, in_channels=2, width=4, depth=2)
    _perturb_bn(ours)
    theirs = TUNet(3, 2, 4, 2)
    twin_check(ours, theirs, [images(2, 2, 28, 28)])
    twin_check(ours, theirs, [images(2, 2, 32, 32)], train=False)


def test_residual_unet_adds_its_input_as_its_torch_twin():
    """residual=True (an image-to-image net that learns the correction): output = input + the
    plain U-Net's output, forward and every gradient as in torch."""
    class TResUNet(TUNet):
        def forward(self, x):
            return x + super().forward(x)

    fv.manual_seed(0)
    ours = M.create("unet", num_classes=2, in_channels=2, width=4, depth=2, residual=True)
    _perturb_bn(ours)
    twin_check(ours, TResUNet(2, 2, 4, 2), [images(2, 2, 28, 28)])
    plain = M.create("unet", num_classes=2, in_channels=2, width=4, depth=2)
    plain.load_state_dict(ours.state_dict())
    ours.eval(), plain.eval()
    x = fv.tensor(images(2, 2, 28, 28))
    with fv.no_grad():
        np.testing.assert_allclose(ours(x).numpy(), x.numpy() + plain(x).numpy(), rtol=1e-6,
                                   atol=1e-6)
    assert "residual=True" in repr(ours)
    with pytest.raises(ValueError, match=r"unet: residual=True .* num_classes == in_channels; "
                                         r"got num_classes=11, in_channels=1"):
        M.create("unet", residual=True)
    with pytest.raises(TypeError, match="unet: residual must be True or False"):
        M.create("unet", num_classes=1, residual="yes")


@pytest.mark.parametrize("classes", [0, 10])
def test_dcgan_nets_equal_their_torch_twins(classes):
    fv.manual_seed(0)
    g = M.create("dcgan_generator", latent=12, width=4, num_classes=classes)
    d = M.create("dcgan_discriminator", width=4, num_classes=classes)
    tg, td = TGenerator(12, 1, 4, classes), TDiscriminator(1, 4, classes)
    labels = np.array([3, 0, 9, 3]) if classes else None
    for ours, theirs, x in ((g, tg, noise(4, 12)), (d, td, images(4, 1, 28, 28) * 2 - 1)):
        for train in (True, False):
            twin_check(ours, theirs, [x] + ([labels] if classes else []), train=train)


# --------------------------------------------------------------------------------- vae_loss
def _torch_vae_loss(logits, x, mu, logvar):
    n = x.shape[0]
    recon = TF.binary_cross_entropy_with_logits(logits, x, reduction="sum") / n
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / n
    return recon + kl, recon, kl


def test_vae_loss_equals_the_formula_in_torch_and_its_gradients():
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((3, 1, 6, 5)) * 3).astype(np.float32)
    x = rng.random((3, 1, 6, 5), dtype=np.float32)
    mu = rng.standard_normal((3, 4)).astype(np.float32)
    logvar = rng.standard_normal((3, 4)).astype(np.float32)
    ours, ref = check_against_torch(vae_loss, _torch_vae_loss, [logits, x, mu, logvar])
    ours = [o.detach().numpy() for o in ours]
    assert all(o.shape == () for o in ours)
    rel_close(ours[0], ours[1] + ours[2])
    assert ours[2] > 0  # a KL divergence
    # the same numbers by hand: sum over pixels of max(l, 0) - l x + log(1 + exp(-|l|)), per image
    bce = np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits)))
    rel_close(ours[1], bce.sum() / 3)
    rel_close(ours[2], -0.5 * (1 + logvar - mu ** 2 - np.exp(logvar)).sum() / 3)


def test_vae_loss_gradients_by_finite_differences():
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((2, 1, 3, 3)), rng.random((2, 1, 3, 3)),
              rng.standard_normal((2, 3)), rng.standard_normal((2, 3)) * 0.5]
    gradcheck(vae_loss, inputs, wrt=[0, 1, 2, 3])


def test_vae_trains_its_elbo_down():
    fv.manual_seed(0)
    model = M.create("vae", latent=4, width=4)
    bars = np.zeros((8, 1, 28, 28), np.float32)  # a horizontal bar at eight heights
    for i in range(8):
        bars[i, 0, 3 * i:3 * i + 3] = 1
    x = fv.tensor(bars)
    opt = fv.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        logits, mu, logvar = model(x)
        loss, recon, kl = vae_loss(logits, x, mu, logvar)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8 and all(np.isfinite(losses)), losses


# ------------------------------------------------------------------------------- dcgan_init
def test_dcgan_init_statistics_and_reproducibility():
    fv.manual_seed(3)
    g = M.create("dcgan_generator")
    d = M.create("dcgan_discriminator")
    for model in (g, d):
        convs = [m.weight.detach().numpy() for m in model.modules()
                 if isinstance(m, (fv.nn.Conv2d, fv.nn.ConvTranspose2d))]
        w = np.concatenate([c.ravel() for c in convs])
        assert abs(w.mean()) < 1e-3 and abs(w.std() - 0.02) < 1e-3, (w.mean(), w.std())
        assert all(abs(c.std() - 0.02) < 0.004 for c in convs if c.size > 1000)
        bn = np.concatenate([m.weight.detach().numpy() for m in model.modules()
                             if isinstance(m, fv.nn.BatchNorm2d)])
        assert abs(bn.mean() - 1) < 0.005 and abs(bn.std() - 0.02) < 0.004, (bn.mean(), bn.std())
        biases = [m.bias.detach().numpy() for m in model.modules()
                  if getattr(m, "bias", None) is not None]
        assert biases and all((b == 0).all() for b in biases)
    fv.manual_seed(3)
    again = M.create("dcgan_generator")
    for k, v in g.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k].detach().numpy(), v.detach().numpy(),
                                      err_msg=k)
    fv.manual_seed(4)
    other = M.create("dcgan_generator")
    assert not np.array_equal(other.net.project.weight.detach().numpy(),
                              g.net.project.weight.detach().numpy())
    # init=False keeps the layers' own (PyTorch's) initialisation; dcgan_init applies it later
    fv.manual_seed(3)
    plain = M.create("dcgan_generator", init=False)
    assert abs(plain.net.up1.weight.detach().numpy().std() - 0.02) > 0.005
    fv.manual_seed(3)
    M.dcgan_init(plain)
    assert abs(plain.net.up1.weight.detach().numpy().std() - 0.02) < 0.002
    assert (plain.net.up2.bias.detach().numpy() == 0).all()


# --------------------------------------------------------------------------------- summary
@pytest.mark.parametrize("name,kw,shape", [
    ("dense_ae", {}, (1, 1, 28, 28)), ("conv_ae", {}, (1, 1, 28, 28)), ("vae", {}, (1, 1, 28, 28)),
    ("segnet_small", {}, (1, 1, 32, 32)), ("unet", {}, (1, 1, 32, 32)),
    ("dcgan_generator", {}, (1, 100)), ("dcgan_discriminator", {}, (1, 1, 28, 28)),
])
def test_summary_of_every_new_model(name, kw, shape):
    model = M.create(name, **kw)
    s = M.summary(model, shape)
    assert s.total_params == model.num_parameters() and s.total_macs > 0
    assert s.rows and all(r.output_shape for r in s.rows)
    text = str(s)
    assert "Total params" in text
    if name == "segnet_small":  # max pooling's (values, indices): the values' shape is shown
        pools = [r for r in s.rows if r.kind == "MaxPool2d"]
        assert [r.output_shape for r in pools] == [(1, 16, 16, 16), (1, 32, 8, 8), (1, 64, 4, 4)]
        assert [r.output_shape for r in s.rows if r.kind == "MaxUnpool2d"] == \
            [(1, 64, 8, 8), (1, 32, 16, 16), (1, 16, 32, 32)]
    if name == "dcgan_generator":
        assert s.rows[-1].output_shape == (1, 1, 28, 28)


def test_summary_of_conditional_models_takes_the_labels_as_a_tensor():
    g = M.create("dcgan_generator", num_classes=10)
    s = M.summary(g, ((2, 100), fv.tensor(np.array([1, 2]))))
    assert s.input_shape == ((2, 100), (2,)) and s.rows[-1].output_shape == (2, 1, 28, 28)
    assert s.total_params == g.num_parameters()
    # the projection reads latent + one-hot: (100 + 10) x 256 x 7 x 7 multiply-adds
    assert s.rows[0].macs == 110 * 256 * 49
    d = M.create("dcgan_discriminator", num_classes=10)
    assert M.summary(d, ((1, 1, 28, 28), fv.tensor(np.array([4])))).rows[-1].output_shape == \
        (1, 1, 1, 1)
    with pytest.raises(TypeError, match="summary: input 1 must be a shape"):
        M.summary(g, ((2, 100), "labels"))
