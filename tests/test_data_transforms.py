"""Augmentations: shape, dtype and range kept, seeded, and exactly the geometry they promise on
small known images."""
import numpy as np
import pytest

import foveanet as fv
from foveanet.data import transforms as T


def _batch(n=6, c=2, h=5, w=5, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w)).astype(dtype)


ALL = [
    T.RandomHorizontalFlip(), T.RandomVerticalFlip(), T.RandomRotation(30),
    T.RandomRotation(30, interpolation="nearest"), T.RandomScale((0.8, 1.2)),
    T.RandomAffine(15, translate=0.1, scale=(0.9, 1.1)), T.RandomCrop(None, padding=2),
    T.RandomTranslation(2), T.GaussianNoise(0.1), T.RandomErasing(p=0.7),
    T.Normalize(0.5, 0.25), T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(None, 1)]),
]


@pytest.mark.parametrize("t", ALL, ids=lambda t: type(t).__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_dtype_kept_input_untouched_and_seeded(t, dtype):
    x = _batch(dtype=dtype)
    before = x.copy()
    a = t(x, np.random.default_rng(1))
    b = t(x, np.random.default_rng(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(a, b)
    if not isinstance(t, T.Normalize):  # everything else is random
        assert not np.array_equal(a, t(x, np.random.default_rng(2)))


@pytest.mark.parametrize("t", [t for t in ALL if not isinstance(t, (T.GaussianNoise, T.Normalize))],
                         ids=lambda t: type(t).__name__)
def test_values_stay_in_the_input_range(t):
    x = _batch()
    out = t(x, np.random.default_rng(0))
    assert out.min() >= 0 and out.max() <= 1 + 1e-6


def test_noise_clip_and_normalize_values():
    x = _batch()
    out = T.GaussianNoise(0.5, clip=(0, 1))(x, 0)
    assert out.min() >= 0 and out.max() <= 1 and np.abs(out - x).max() > 0.1
    std = (T.GaussianNoise(0.2)(np.zeros((200, 1, 8, 8), np.float32), 0)).std()
    assert abs(std - 0.2) < 0.01
    y = T.Normalize([0.5, 0.0], [0.5, 2.0])(x)
    np.testing.assert_allclose(y[:, 0], (x[:, 0] - 0.5) / 0.5, rtol=1e-6)
    np.testing.assert_allclose(y[:, 1], x[:, 1] / 2, rtol=1e-6)


def test_flips_exact():
    x = _batch()
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(T.RandomVerticalFlip(1.0)(x), x[..., ::-1, :])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(0.0)(x), x)
    out = T.RandomHorizontalFlip(0.5)(x, np.random.default_rng(0))
    flipped = [np.array_equal(o, xi[..., ::-1]) for o, xi in zip(out, x)]
    kept = [np.array_equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


@pytest.mark.parametrize("interp", ["bilinear", "nearest"])
@pytest.mark.parametrize("angle,k", [(90, 1), (-90, -1), (180, 2), (0, 0)])
def test_rotation_by_right_angles_is_exact_and_counter_clockwise(interp, angle, k):
    x = _batch(h=5, w=5)
    out = T.RandomRotation((angle, angle), interpolation=interp)(x, 0)
    np.testing.assert_allclose(out, np.rot90(x, k, axes=(2, 3)), atol=1e-6)
    img = np.zeros((1, 1, 4, 4), np.float32)  # even size too
    img[0, 0, 0, 3] = 1.0  # top right ...
    out = T.RandomRotation((90, 90), interpolation=interp)(img, 0)
    assert out[0, 0, 0, 0] == pytest.approx(1.0) and out.sum() == pytest.approx(1.0)  # ... to top left


def test_rotation_keeps_the_centre_and_fills_corners():
    img = np.ones((1, 1, 9, 9), np.float32)
    out = T.RandomRotation((45, 45))(img, 0)
    assert out[0, 0, 4, 4] == pytest.approx(1.0) and out[0, 0, 0, 0] == 0.0


def test_scale_about_the_centre():
    img = np.zeros((1, 1, 9, 9), np.float32)
    img[0, 0, 4, 4] = 1.0
    img[0, 0, 4, 6] = 2.0
    out = T.RandomScale((2.0, 2.0), interpolation="nearest")(img, 0)
    assert out[0, 0, 4, 4] == 1.0 and out[0, 0, 4, 8] == 2.0
    np.testing.assert_array_equal(T.RandomScale((1.0, 1.0))(img, 0), img)


def test_translate_exact():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    out = T.translate(x, 1, -2)
    expected = np.zeros_like(x)
    expected[0, 0, 1:, :2] = x[0, 0, :3, 2:]
    np.testing.assert_array_equal(out, expected)
    batch = _batch(n=20, c=1, h=6, w=6)
    out = T.RandomTranslation((2, 1))(batch, np.random.default_rng(0))
    shifts = set()
    for o, xi in zip(out, batch):
        match = [(dy, dx) for dy in range(-2, 3) for dx in range(-1, 2)
                 if np.array_equal(o, T.translate(xi[None], dy, dx)[0])]
        assert match, "every output is a shift of its input within the limits"
        shifts.add(match[0])
    assert len(shifts) > 3


def test_affine_translation_by_whole_pixels_is_exact():
    x = _batch(n=1, c=1, h=6, w=6)
    out = T.affine_sample(x, np.eye(2)[None], np.array([[2.0, -1.0]]))
    np.testing.assert_allclose(out, T.translate(x, 2, -1), atol=1e-6)


def test_crop_is_a_window_of_the_padded_image():
    x = _batch(n=8, c=1, h=5, w=5)
    np.testing.assert_array_equal(T.RandomCrop(None, padding=0)(x, 0), x)
    out = T.RandomCrop(3)(x, np.random.default_rng(0))
    assert out.shape == (8, 1, 3, 3)
    for o, xi in zip(out, x):
        assert any(np.array_equal(o, xi[:, i:i + 3, j:j + 3]) for i in range(3) for j in range(3))
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    out = T.RandomCrop(None, padding=2)(x, np.random.default_rng(1))
    for o, p in zip(out, padded):
        assert any(np.array_equal(o, p[:, i:i + 5, j:j + 5]) for i in range(5) for j in range(5))
    with pytest.raises(ValueError, match="does not fit"):
        T.RandomCrop(8)(x)


def test_erasing_sets_one_rectangle():
    x = np.ones((50, 3, 10, 10), np.float32)
    out = T.RandomErasing(p=1.0, scale=(0.1, 0.2), value=0.0)(x, np.random.default_rng(0))
    for o in out:
        zero = o[0] == 0
        assert (o == o[0]).all()  # the same rectangle on every channel
        rows, cols = np.flatnonzero(zero.any(1)), np.flatnonzero(zero.any(0))
        assert zero.sum() == len(rows) * len(cols) and zero[np.ix_(rows, cols)].all()
        assert 4 <= zero.sum() <= 30
    np.testing.assert_array_equal(T.RandomErasing(p=0.0)(x), x)


def test_tensors_and_single_images():
    x = _batch(n=1)
    t = T.RandomHorizontalFlip(1.0)(fv.tensor(x))
    assert isinstance(t, fv.Tensor)
    np.testing.assert_array_equal(t.numpy(), x[..., ::-1])
    single = T.RandomRotation((90, 90))(x[0], 0)
    assert single.shape == x[0].shape
    np.testing.assert_allclose(single, np.rot90(x[0], 1, axes=(1, 2)), atol=1e-6)
    with pytest.raises(TypeError, match="floating-point"):
        T.RandomHorizontalFlip()(np.zeros((1, 1, 2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        T.RandomCrop(2)(np.zeros((4, 4), np.float32))


def test_rng_forms_agree():
    x = _batch()
    t = T.RandomRotation(20)
    a = t(x, 5)
    np.testing.assert_array_equal(a, t(x, np.random.default_rng(5)))
    fv.manual_seed(9)
    b = t(x)
    np.testing.assert_array_equal(b, t(x, fv.Generator(9)))


def test_parse_augment():
    c = T.parse_augment("flip,rotate=10,crop=2,noise=0.05,erase=0.25")
    assert [type(t).__name__ for t in c.transforms] == [
        "RandomHorizontalFlip", "RandomRotation", "RandomCrop", "GaussianNoise", "RandomErasing"]
    assert c.transforms[1].degrees == (-10, 10) and c.transforms[2].padding == 2
    assert c.transforms[3].std == 0.05 and c.transforms[4].p == 0.25
    c = T.parse_augment(" vflip=0.3, scale=0.8:1.2, shift=3, affine=5:0.1:0.2, normalize=0.3:0.4 ")
    assert c.transforms[0].p == 0.3 and c.transforms[1].scale == (0.8, 1.2)
    assert c.transforms[2].max_shift == (3, 3) and c.transforms[3].scale == pytest.approx((0.8, 1.2))
    assert c.transforms[4].mean == (0.3,)
    assert T.parse_augment("") is None and T.parse_augment("none") is None
    with pytest.raises(ValueError, match="(?s)unknown augmentation 'twirl'; accepted names:.*flip"):
        T.parse_augment("flip,twirl=3")
    with pytest.raises(ValueError, match="expected a number"):
        T.parse_augment("rotate=lots")
    out = T.parse_augment("flip,crop=1")(_batch(), 0)
    assert out.shape == _batch().shape
