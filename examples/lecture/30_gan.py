"""Slide "Generative Adversarial Network": a generator makes images from random numbers, a
discriminator learns to tell them from real ones, and each trains against the other.

``fv.models.dcgan_generator`` / ``fv.models.dcgan_discriminator`` (DCGAN, optionally
class-conditional), trained by ``fv.train.generative.GANTrainer`` (``foveanet train --task gan``;
``foveanet generate`` draws new images from a run). Here the DCGAN loop written out: a few
steps of D on BCE(D(real), 1) + BCE(D(G(z)), 0), then of G on BCE(D(G(z)), 1), on 64 real
Fashion-MNIST images.

    python examples/lecture/30_gan.py
"""
import foveanet as fv
import foveanet.nn.functional as F


def main(n=64, steps=8, latent=16):
    fv.manual_seed(0)
    images, _ = fv.data.FashionMNIST(train=False).arrays()
    real = fv.tensor(images[:n] * 2 - 1)                            # the generator's tanh range
    G = fv.models.dcgan_generator(latent=latent, width=8)
    D = fv.models.dcgan_discriminator(width=8)
    opt_g = fv.optim.Adam(G.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = fv.optim.Adam(D.parameters(), lr=2e-3, betas=(0.5, 0.999))
    ones, zeros = fv.ones(n, 1), fv.zeros(n, 1)
    for _ in range(steps):
        fake = G(fv.randn(n, latent))
        d_loss = (F.binary_cross_entropy_with_logits(D(real).reshape(n, 1), ones)
                  + F.binary_cross_entropy_with_logits(D(fake.detach()).reshape(n, 1), zeros))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = F.binary_cross_entropy_with_logits(D(fake).reshape(n, 1), ones)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    with fv.no_grad():
        fake = G(fv.randn(n, latent))
        d_real = F.sigmoid(D(real)).mean().item()
        d_fake = F.sigmoid(D(fake)).mean().item()
    print(f"G: z {(n, latent)} -> images {tuple(fake.shape)}, values in "
          f"[{fake.numpy().min():.2f}, {fake.numpy().max():.2f}]")
    print(f"after {steps} steps: D's loss {d_loss.item():.4f}, G's loss {g_loss.item():.4f}")
    print(f"D's mean probability 'real': on real images {d_real:.3f}, on generated {d_fake:.3f}")
    return {"fake_shape": tuple(fake.shape), "d_real": d_real, "d_fake": d_fake,
            "d_loss": d_loss.item(), "g_loss": g_loss.item()}


if __name__ == "__main__":
    main()
