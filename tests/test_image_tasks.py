"""``foveanet train --task autoencode|denoise|segment|vae|gan``, ``foveanet generate`` and
``foveanet segment``: each task end to end on a small synthetic set in the Fashion-MNIST file
format (tests/test_cli.py's), with tiny models, so the file takes seconds per task. Checked: the
run directory (config, checkpoints, results.json, report.md and its pictures as real PNGs), the
figures each task reports, the commands that read the runs, a stopped and resumed GAN run ending
bit-identical to an uninterrupted one, and the errors."""
import contextlib
import io
import json
import os

import numpy as np
import pytest

from foveanet.cli import main
from test_cli import PNG_MAGIC, kill_after_first_checkpoint, make_fake_fashion, safetensors_bits

COMMON = ["--threads", "1", "--no-progress", "--limit-train", "200", "--limit-test", "60"]


def run(args):
    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        rc = main(args)
    return rc, buf.getvalue(), err.getvalue()


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC


def results(run_dir):
    with open(os.path.join(run_dir, "results.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_fake_fashion(tmp_path_factory.mktemp("fake-fashion"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("image-runs")


def test_autoencode_with_a_2d_code(data_dir, runs):
    out = str(runs / "ae")
    rc, text, err = run(["train", "--task", "autoencode", "--data-dir", data_dir, "--epochs", "2",
                         "--bottleneck", "2", "--model-option", "width=8", "--out", out] + COMMON)
    assert rc == 0, err
    t = results(out)["test"]
    assert 0 < t["mse"] < 0.25 and t["psnr"] > 5 and -1 <= t["ssim"] <= 1
    assert "test: MSE" in text and "PSNR" in text
    for pic in ("curves.png", "reconstructions.png", "latent.png"):
        assert is_png(os.path.join(out, pic)), pic
    report = open(os.path.join(out, "report.md")).read()
    assert "![Test images (top) and their reconstructions (bottom)](reconstructions.png)" in report
    assert f"{t['psnr']:.4f}" in report


def test_denoise_reports_the_noisy_and_the_denoised_figures(data_dir, runs):
    out = str(runs / "dn")
    rc, text, err = run(["train", "--task", "denoise", "--data-dir", data_dir, "--epochs", "2",
                         "--noise", "gaussian=0.3", "--model-option", "width=8", "--out", out]
                        + COMMON)
    assert rc == 0, err
    t = results(out)["test"]
    assert t["noise"] == "gaussian=0.3"
    # sigma 0.3 clipped to [0, 1]: the noisy input's PSNR is about 11-12 dB
    assert 9.0 < t["psnr_noisy"] < 14.0
    assert abs(t["psnr_gain"] - (t["psnr"] - t["psnr_noisy"])) < 1e-9
    assert is_png(os.path.join(out, "denoising.png"))


def test_segment_fashion_scenes_and_the_segment_command(data_dir, runs, tmp_path):
    out = str(runs / "seg")
    rc, text, err = run(["train", "--task", "segment", "--data-dir", data_dir, "--epochs", "1",
                         "--model-option", "width=4", "--model-option", "depth=2",
                         "--batch-size", "8", "--threads", "1", "--no-progress",
                         "--limit-train", "24", "--limit-test", "8", "--out", out])
    assert rc == 0, err
    t = results(out)["test"]
    assert 0 <= t["mean_iou"] <= 1 and 0 <= t["pixel_accuracy"] <= 1
    assert len(t["per_class_iou"]) == 11 and "background" in t["per_class_iou"]
    assert t["pixels"] == 8 * 64 * 64
    assert is_png(os.path.join(out, "segmentation.png"))
    from PIL import Image
    scene = tmp_path / "scene.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(scene)
    mask, overlay = str(tmp_path / "mask.png"), str(tmp_path / "overlay.png")
    rc, text, err = run(["segment", out, str(scene), "-o", mask, "--overlay", overlay,
                         "--checkpoint", "last"])
    assert rc == 0, err
    m = np.asarray(Image.open(mask))
    assert m.shape == (64, 64) and m.max() < 11 and Image.open(mask).mode == "P"
    assert is_png(overlay) and "classes:" in text


def test_vae_and_generate(data_dir, runs, tmp_path):
    out = str(runs / "vae")
    rc, text, err = run(["train", "--task", "vae", "--data-dir", data_dir, "--epochs", "2",
                         "--latent", "2", "--model-option", "width=8", "--out", out] + COMMON)
    assert rc == 0, err
    t = results(out)["test"]
    assert t["elbo"] < 0 and abs(t["elbo"] + t["recon"] + t["kl"]) < 1e-6 and t["kl"] >= 0
    for pic in ("samples.png", "reconstructions.png", "latent.png"):
        assert is_png(os.path.join(out, pic)), pic
    grid = str(tmp_path / "vae.png")
    rc, text, err = run(["generate", out, "-n", "16", "-o", grid, "--seed", "1"])
    assert rc == 0, err
    from PIL import Image
    assert Image.open(grid).size == (2 * (4 * 30 + 2),) * 2  # 4 x 4 tiles of 28 + 2 pad, x2


GAN = ["--task", "gan", "--model-option", "width=8", "--latent", "8", "--batch-size", "50"]


def test_conditional_gan_resumed_is_bit_identical(data_dir, runs, tmp_path):
    straight, split = str(runs / "gan-a"), str(runs / "gan-b")
    rc, _, err = run(["train", "--data-dir", data_dir, "--epochs", "2", "--conditional",
                      "--out", straight] + GAN + COMMON)
    assert rc == 0, err
    rc, _, err = run(["train", "--data-dir", data_dir, "--epochs", "1", "--conditional",
                      "--out", split] + GAN + COMMON)
    assert rc == 0, err
    rc, _, err = run(["train", "--resume", split, "--epochs", "2", "--no-progress"])
    assert rc == 0, err
    for f in ("model.generator.safetensors", "model.discriminator.safetensors",
              "optimizer.generator.safetensors", "optimizer.discriminator.safetensors"):
        assert safetensors_bits(os.path.join(straight, f)) == safetensors_bits(
            os.path.join(split, f)), f
    for e in (1, 2):
        assert is_png(os.path.join(straight, "samples", f"epoch_{e:03d}.png"))
    assert is_png(os.path.join(straight, "interpolation.png"))
    hist = [json.loads(line) for line in open(os.path.join(straight, "history.jsonl"))]
    assert all(k in hist[-1] for k in ("train_d_loss", "train_g_loss", "train_d_real"))
    grid = str(tmp_path / "sevens.png")
    rc, text, err = run(["generate", straight, "-n", "10", "--class", "7", "-o", grid])
    assert rc == 0 and is_png(grid), err
    rc, _, err = run(["generate", straight, "-n", "10", "--class", "12", "-o", grid])
    assert rc == 2 and "classes 0..9" in err


@pytest.mark.parametrize("args, message", [
    (["--task", "denoise", "--noise", "pink=1"], "--noise pink=1"),
    (["--task", "gan", "--bottleneck", "4"], "--bottleneck applies to --task autoencode"),
    (["--task", "segment", "--model", "lenet5"], "does not do --task segment"),
    (["--task", "vae", "--augment", "flip"], "--augment does not apply"),
    (["--task", "autoencode", "--model-option", "colour=1"], "has no option 'colour'"),
    (["--noise", "gaussian=0.1"], "applies to the image-output tasks"),
    (["--task", "segment", "--dataset", "fashion-mnist"], "images/ and masks/"),
])
def test_usage_errors(args, message, data_dir, tmp_path):
    rc, _, err = run(["train", "--data-dir", data_dir, "--out", str(tmp_path / "r")] + args
                     + COMMON)
    assert rc == 2 and message in err, err
    assert not os.path.exists(tmp_path / "r" / "config.json")


def test_commands_refuse_runs_of_other_tasks(data_dir, runs, tmp_path):
    seg, vae = str(runs / "seg"), str(runs / "vae")
    if not (os.path.isdir(seg) and os.path.isdir(vae)):
        pytest.skip("needs the segment and vae runs above")
    rc, _, err = run(["generate", seg, "-o", str(tmp_path / "x.png")])
    assert rc == 1 and "takes runs of --task gan or vae" in err
    rc, _, err = run(["segment", vae, __file__, "-o", str(tmp_path / "m.png")])
    assert rc == 1 and "takes runs of --task segment" in err
    rc, _, err = run(["generate", vae, "--class", "1", "-o", str(tmp_path / "x.png")])
    assert rc == 2 and "--class applies to a class-conditional GAN" in err


def test_train_saves_kernels_and_tensorboard_events(data_dir, tmp_path):
    pytest.importorskip("tensorboardX")
    out, tb = str(tmp_path / "run"), str(tmp_path / "tb")
    rc, text, err = run(["train", "--data-dir", data_dir, "--model", "lenet5", "--epochs", "2",
                         "--save-kernels", "0,2", "--tensorboard", tb, "--out", out] + COMMON)
    assert rc == 0, err
    assert sorted(os.listdir(os.path.join(out, "kernels"))) == ["epoch_000.png", "epoch_002.png"]
    before, after = (open(os.path.join(out, "kernels", f), "rb").read()
                     for f in ("epoch_000.png", "epoch_002.png"))
    assert before != after  # the kernels moved while learning
    report = open(os.path.join(out, "report.md")).read()
    assert "![First-layer kernels before training](kernels/epoch_000.png)" in report
    assert "![First-layer kernels after epoch 2](kernels/epoch_002.png)" in report
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tb))
    rc, _, err = run(["train", "--data-dir", data_dir, "--model", "lenet5", "--save-kernels",
                      "1,x", "--out", str(tmp_path / "bad")] + COMMON)
    assert rc == 2 and "--save-kernels expects epochs" in err


def test_gan_measured_in_a_classifiers_features(data_dir, runs, tmp_path):
    clf = str(tmp_path / "clf")
    rc, _, err = run(["train", "--data-dir", data_dir, "--model", "mlp", "--model-option",
                      "hidden=32", "--epochs", "1", "--out", clf] + COMMON)
    assert rc == 0, err
    out = str(tmp_path / "gan")
    rc, text, err = run(["train", "--data-dir", data_dir, "--epochs", "1", "--conditional",
                         "--classifier", clf, "--out", out] + GAN + COMMON)
    assert rc == 0, err
    t = results(out)["test"]
    fr = t["frechet"]
    # named for what it is: the classifier's features, never the Inception network's
    assert fr["name"] == "FID (mlp features)" and fr["images"] == 30
    assert fr["generated"] >= 0 and fr["real_vs_real"] >= 0 and fr["noise"] > fr["real_vs_real"]
    assert 0 <= t["conditional_accuracy"] <= 1 and 0 <= t["classifier_accuracy_real"] <= 1
    assert "FID (mlp features)" in text and "not the Inception-based FID" in \
        open(os.path.join(out, "report.md")).read()
    rc, _, err = run(["train", "--task", "gan", "--classifier", str(tmp_path / "nope"),
                      "--out", str(tmp_path / "g2")] + COMMON)
    assert rc == 2 and "not a run directory" in err


@pytest.mark.slow
def test_gan_killed_and_resumed_is_bit_identical(data_dir, tmp_path):
    args = ["train", "--data-dir", data_dir, "--epochs", "4", "--conditional"] + GAN + COMMON
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    rc, _, err = run(args + ["--out", straight])
    assert rc == 0, err
    kill_after_first_checkpoint(args, killed, tmp_path)
    rc, text, err = run(["train", "--resume", killed, "--no-progress"])
    assert rc == 0, err
    for f in ("model.generator.safetensors", "model.discriminator.safetensors",
              "optimizer.generator.safetensors", "optimizer.discriminator.safetensors"):
        assert safetensors_bits(os.path.join(straight, f)) == safetensors_bits(
            os.path.join(killed, f)), f
    assert results(killed)["epochs"] == 4
