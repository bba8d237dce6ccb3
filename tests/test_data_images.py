"""``foveanet.data.images.prepare_image``: picture files as model inputs, value by value (pictures
already at the model's size, so Lanczos's resize is the identity and every value is known), and
its errors."""
import numpy as np
import pytest
from PIL import Image

import foveanet.cli
from foveanet.data import DatasetError
from foveanet.data.images import ImageError, prepare_image


def _grey(tmp_path, name, pixels, **save):
    path = tmp_path / name
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), "L").save(path, **save)
    return str(path)


def test_grey_values_and_inversion(tmp_path):
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (28, 28)).astype(np.uint8)
    px[0, :] = px[-1, :] = px[:, 0] = px[:, -1] = 10  # a dark border: no inversion
    x, inverted = prepare_image(_grey(tmp_path, "dark.png", px))
    assert x.shape == (1, 28, 28) and x.dtype == np.float32 and not inverted
    np.testing.assert_array_equal(x[0], px.astype(np.float32) / np.float32(255))
    px[0, :] = px[-1, :] = px[:, 0] = px[:, -1] = 240  # a light border: inverted
    x, inverted = prepare_image(_grey(tmp_path, "light.png", px))
    assert inverted
    np.testing.assert_array_equal(x[0], 1 - px.astype(np.float32) / np.float32(255))
    for mode, want in (("never", False), ("always", True)):
        assert prepare_image(_grey(tmp_path, "dark.png", px * 0 + 5), invert=mode)[1] == want


def test_padding_to_a_square_with_the_border_colour(tmp_path):
    px = np.full((10, 20), 200, np.uint8)  # 20 wide, 10 high
    px[3:7, 5:15] = 0
    x, inverted = prepare_image(_grey(tmp_path, "wide.png", px), 1, 20, invert="never")
    assert x.shape == (1, 20, 20) and not inverted
    # 5 rows of padding above and below, in the border's colour; the picture in the middle
    np.testing.assert_array_equal(x[0, :5], np.float32(200) / 255)
    np.testing.assert_array_equal(x[0, 15:], np.float32(200) / 255)
    np.testing.assert_array_equal(x[0, 5:15], px.astype(np.float32) / 255)


def test_transparency_rgb_and_exif_orientation(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:6, 2:6] = (255, 0, 0, 255)  # an opaque red square on transparent: on white
    path = tmp_path / "t.png"
    Image.fromarray(rgba, "RGBA").save(path)
    x, inverted = prepare_image(str(path), 3, 8, invert="never")
    assert x.shape == (3, 8, 8) and not inverted
    np.testing.assert_array_equal(x[:, 0, 0], [1, 1, 1])
    np.testing.assert_array_equal(x[:, 3, 3], [1, 0, 0])
    # EXIF orientation 6 (rotate 90 degrees clockwise to display): the left column becomes the top
    px = np.full((2, 4), 255, np.uint8)
    px[:, 0] = 0
    exif = Image.Exif()
    exif[0x0112] = 6
    x, _ = prepare_image(_grey(tmp_path, "rot.png", px, exif=exif), 1, 4, invert="never")
    # displayed 2 wide and 4 high, padded to 4x4 at columns 1..2
    np.testing.assert_array_equal(x[0, 0, 1:3], [0, 0])
    np.testing.assert_array_equal(x[0, 1:, 1:3], 1)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ImageError, match="missing.png: no such file") as err:
        prepare_image(str(tmp_path / "missing.png"))
    assert isinstance(err.value, DatasetError) and err.value.path == str(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(ImageError, match="text.png: cannot read the picture"):
        prepare_image(str(tmp_path / "text.png"))
    with pytest.raises(ImageError, match="the model takes 2 channels"):
        prepare_image(str(tmp_path / "text.png"), in_channels=2)
    with pytest.raises(ValueError, match="invert must be one of auto, always, never"):
        prepare_image(str(tmp_path / "text.png"), invert="sometimes")


def test_the_command_line_uses_it():
    assert foveanet.cli.prepare_image is prepare_image
