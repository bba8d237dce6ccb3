"""Slide "Encoders": an encoder squeezes the image into a short vector, an upsampling decoder
expands it back; used for denoising, compression and semantic segmentation.

``fv.models.dense_ae`` and ``fv.models.conv_ae`` (``encode`` / ``decode``; ``foveanet train
--task autoencode``, ``--task denoise --noise gaussian=0.3``), ``fv.models.vae``, and the encoder-
decoder segmentation networks ``fv.models.segnet`` / ``segnet_small`` / ``unet`` (``foveanet
segment``). Here a convolutional autoencoder with a 16-number code learns to reconstruct 200
Fashion-MNIST images from noisy copies (``fv.data.GaussianNoise``).

    python examples/lecture/29_autoencoder.py
"""
import foveanet as fv
import foveanet.nn.functional as F


def main(n=200, steps=20):
    fv.manual_seed(0)
    images, _ = fv.data.FashionMNIST(train=False).arrays()
    clean = fv.tensor(images[:n])
    noisy = fv.tensor(fv.data.GaussianNoise(0.2, clip=(0.0, 1.0))(images[:n], 0))
    model = fv.models.conv_ae(bottleneck=16, width=8)
    code = model.encode(noisy[:1])
    opt = fv.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = F.mse_loss(model(noisy), clean)       # noisy in, clean out: a denoiser
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"conv_ae: image {tuple(clean.shape[1:])} -> code {tuple(code.shape[1:])} -> "
          f"{tuple(model(noisy[:1]).shape[1:])}")
    print(f"reconstruction MSE: step 1 {losses[0]:.4f} -> step {steps} {losses[-1]:.4f}")
    return {"code_shape": tuple(code.shape), "loss_first": losses[0], "loss_last": losses[-1]}


if __name__ == "__main__":
    main()
