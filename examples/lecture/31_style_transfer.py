"""Slide "Style Transfer": a new image that minimises a combination of the content loss (feature
maps of one picture) and the style loss (Gram matrices of another's), Gatys et al. 2015.

``fv.visual.stylize`` (L-BFGS through ``fv.optim.LBFGS``, or Adam), with ``fv.visual.gram_matrix``,
``content_loss``, ``style_loss`` and ``tv_loss``; the feature network is
``fv.models.style_features`` (random multi-scale filters) or any model or ONNX file;
``foveanet stylize CONTENT STYLE`` on the command line, ``fv.visual.train_stylizer`` for the
feed-forward stylizer. Here a trouser takes the texture of a bag, 32x32, a few L-BFGS steps.

    python examples/lecture/31_style_transfer.py
"""
import numpy as np

import foveanet as fv


def picture(images, labels, cls):
    grey = images[int(np.flatnonzero(labels == cls)[0]), 0]
    return np.repeat(grey[None], 3, axis=0)                      # (3, 28, 28) in [0, 1]


def main(steps=10):
    fv.manual_seed(0)
    images, labels = fv.data.FashionMNIST(train=False).arrays()
    content, style = picture(images, labels, 1), picture(images, labels, 8)
    g = fv.visual.gram_matrix(fv.tensor(style[None]))
    image, info = fv.visual.stylize(content, style, size=32, steps=steps,
                                    features=fv.models.style_features(seed=0, width=8, scales=2))
    first, last = info["initial"], info["final"]
    print(f"Gram matrix of a 3-channel picture: {tuple(g.shape)}")
    print(f"stylized image {tuple(image.shape)}, {info['evaluations']} loss evaluations")
    print(f"weighted total loss {first['total']:.4g} -> {last['total']:.4g} "
          f"(style {first['style']:.4g} -> {last['style']:.4g})")
    return {"gram_shape": tuple(g.shape), "image_shape": tuple(image.shape),
            "total_first": first["total"], "total_last": last["total"],
            "style_first": first["style"], "style_last": last["style"]}


if __name__ == "__main__":
    main()
