"""A DCGAN-shaped run: two models, two Adam optimizers, two schedulers, a custom train_step.

The generator maps 4-D noise to 2-D points, the discriminator (with Dropout: module randomness)
tells them from points on a ring. Killed with SIGKILL after a checkpoint and resumed in another
process, the run ends with both models' weights, both optimizers' states and both schedulers'
states bit-identical to an uninterrupted run.

This file is also the script the runs execute: ``python test_train_gan.py train RUN_DIR EPOCHS
[MARKER]`` trains (and with MARKER, stops at the end of epoch ``KILL_AT``, after its checkpoint,
to be killed); ``python test_train_gan.py resume RUN_DIR EPOCHS`` continues a run.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import foveanet as fv
import foveanet.train  # noqa: F401
from foveanet import nn
from foveanet.nn import functional as F
from foveanet.optim.lr_scheduler import ExponentialLR, StepLR
from foveanet.train import LambdaCallback, Trainer
from test_train_common import TinyLoader

LATENT, EPOCHS, KILL_AT = 4, 5, 2
_angles = np.random.default_rng(0).uniform(0, 2 * np.pi, 96)
RING = np.stack([np.cos(_angles), np.sin(_angles)], axis=1).astype(np.float32)


# ------------------------------------------------ the trainer subclass and its setup (< 40 lines)
class GAN(Trainer):
    def train_step(self, batch):
        G, D = self.models["generator"], self.models["discriminator"]
        real = batch[0]
        ones, zeros = fv.ones(real.shape[0], 1), fv.zeros(real.shape[0], 1)
        fake = G(fv.randn(real.shape[0], LATENT))
        self.zero_grad("discriminator")
        d_loss = (F.binary_cross_entropy_with_logits(D(real), ones)
                  + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros))
        self.backward(d_loss, "discriminator loss")
        self.step("discriminator")
        self.zero_grad("generator")
        g_loss = F.binary_cross_entropy_with_logits(D(fake), ones)
        self.backward(g_loss, "generator loss")
        self.step("generator")
        return {"d_loss": d_loss, "g_loss": g_loss}


def build(seed, run_dir=None, callbacks=()):
    fv.manual_seed(seed)
    G = nn.Sequential(nn.Linear(LATENT, 16), nn.ReLU(), nn.Linear(16, 2))
    D = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2),
                      nn.Dropout(0.2, generator=fv.Generator(seed + 2)), nn.Linear(16, 1))
    opt_g = fv.optim.Adam(G.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = fv.optim.Adam(D.parameters(), lr=2e-3, betas=(0.5, 0.999))
    gan = GAN(models={"generator": G, "discriminator": D},
              optimizers={"generator": opt_g, "discriminator": opt_d},
              schedulers={"generator": StepLR(opt_g, 2, 0.5),
                          "discriminator": ExponentialLR(opt_d, 0.9)},
              run_dir=run_dir, progress=False, callbacks=callbacks)
    loader = TinyLoader(RING, np.zeros(len(RING)), batch_size=16, shuffle=True,
                        generator=fv.Generator(seed + 1))
    return gan, loader
# -------------------------------------------------------------------------------------------------


def _stop_for_kill(marker):
    """At the end of epoch KILL_AT (its checkpoint written: Checkpoint runs before, order 100):
    tell the test, then wait to be killed."""
    def hook(epoch, logs):
        if epoch == KILL_AT:
            with open(marker, "w") as f:
                f.write(str(epoch))
            time.sleep(120)
    return LambdaCallback(order=1000, on_epoch_end=hook)


def _script(args):
    mode, run_dir, epochs = args[0], args[1], int(args[2])
    if mode == "train":
        callbacks = [_stop_for_kill(args[3])] if len(args) > 3 else []
        gan, loader = build(0, run_dir, callbacks)
        gan.fit(loader, epochs=epochs)
    else:  # resume, with objects built from another seed: everything comes from the checkpoint
        gan, loader = build(123, run_dir)
        gan.fit(loader, epochs=epochs, resume=run_dir)


def _run(*args):
    return [sys.executable, os.path.abspath(__file__), *map(str, args)]


def test_gan_trains_and_logs_both_losses(tmp_path):
    gan, loader = build(0, tmp_path)
    hist = gan.fit(loader, epochs=2)
    assert hist.keys()[:4] == ["epoch", "global_step", "train_d_loss", "train_g_loss"]
    assert "train_loss" not in hist.keys() and "train_accuracy" not in hist.keys()
    assert hist["global_step"] == [6, 12]  # 6 batches an epoch; two optimizer steps count once
    assert hist["lr_generator"] == [2e-3, 2e-3] and hist["lr_discriminator"][1] == 2e-3 * 0.9
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint.json", "history.csv", "history.jsonl", "model.discriminator.safetensors",
        "model.generator.safetensors", "optimizer.discriminator.safetensors",
        "optimizer.generator.safetensors"]
    ck = fv.train.read_checkpoint(tmp_path)
    assert ck["model"] is None and set(ck["models"]) == {"generator", "discriminator"}
    assert ck["schedulers"]["generator"]["class"] == "StepLR"
    assert set(ck["rng"]["modules"]) == {"discriminator/2:generator"}  # the Dropout's own
    for opt_name in ("generator", "discriminator"):  # one Adam step per batch for each
        state = ck["optimizers"][opt_name]["state"]["state"]
        assert {s["step"] for s in state.values()} == {12}


@pytest.mark.slow
def test_gan_killed_after_a_checkpoint_resumes_bit_identical(tmp_path):
    straight, killed, marker = tmp_path / "straight", tmp_path / "killed", tmp_path / "marker"
    res = subprocess.run(_run("train", straight, EPOCHS), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr

    proc = subprocess.Popen(_run("train", killed, EPOCHS, marker), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert fv.train.read_checkpoint(killed)["epoch"] == KILL_AT

    res = subprocess.run(_run("resume", killed, EPOCHS), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    a, b = fv.train.read_checkpoint(straight), fv.train.read_checkpoint(killed)
    assert a["epoch"] == b["epoch"] == EPOCHS and a["global_step"] == b["global_step"] == 30
    for name in ("generator", "discriminator"):
        wa, wb = a["model_states"][name], b["model_states"][name]
        assert list(wa) == list(wb)
        for k in wa:
            assert wa[k].tobytes() == wb[k].tobytes(), f"{name} {k}"
        sa, sb = a["optimizers"][name]["state"], b["optimizers"][name]["state"]
        assert sa["param_groups"] == sb["param_groups"]
        assert sa["state"].keys() == sb["state"].keys()
        for index in sa["state"]:
            for k, v in sa["state"][index].items():
                w = sb["state"][index][k]
                assert (v.tobytes() == w.tobytes()) if hasattr(v, "tobytes") else v == w, k
        assert a["schedulers"][name] == b["schedulers"][name]
    assert a["rng"] == b["rng"]
    for key in ("train_d_loss", "train_g_loss", "lr_generator", "lr_discriminator"):
        assert [e[key] for e in a["history"]["epochs"]] == [e[key] for e in b["history"]["epochs"]]


if __name__ == "__main__":
    _script(sys.argv[1:])
