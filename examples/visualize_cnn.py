"""What a trained CNN learned, in pictures: the README's figures of ``foveanet.visual``.

Given the run directory of a Fashion-MNIST classifier (``foveanet train``; cnn_bn by default),
writes into ``--out``:

- ``kernels_before.png`` / ``kernels_after.png``: the first convolution's kernels of the same
  architecture freshly initialised from the run's seed (what training started from) and after
  training, on one colour scale each;
- ``activations.png``: the first test image through every convolution, ReLU and pooling layer;
- ``gradcam.png``: Grad-CAM at the last convolution for the first test image the network gets
  right and the first it gets wrong, with the predicted and the true class;
- ``maximize.png``: for each class, the input that most excites its score (regularised gradient
  ascent from faint noise);
- ``sliding_kernel.png``: a 3x3 kernel sliding with stride 2 over a 7x7 input padded by 1 (the
  lecture's output size (N - F + 2P) / S + 1 = 4 beside it).

    python examples/visualize_cnn.py runs/cnn_bn-fashion-mnist-... --out docs/images
"""
import argparse
import os

import numpy as np

import foveanet as fv
from foveanet import visual as V


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--out", default=".")
    ap.add_argument("--prefix", default="visual_")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    path = lambda name: os.path.join(args.out, args.prefix + name)  # noqa: E731
    run = fv.load_run(args.run_dir)
    model, classes = run.model, run.classes
    first = V.conv_layers(model)[0][0]
    fresh = fv.train.run.build_model(run.config)  # seeded from the run's seed: its start
    V.plot_kernels(fresh, first, path("kernels_before.png"),
                   title=f"{run.config['model']} layer {first}: kernels before training")
    V.plot_kernels(model, first, path("kernels_after.png"),
                   title=f"{run.config['model']} layer {first}: kernels after training")

    test = run.test_set()
    x0 = test[0][0]
    V.plot_activations(V.activations(model, x0), path("activations.png"), model=model)

    last = V.conv_layers(model)[-1][0]
    right = wrong = None
    for i in range(len(test)):
        x, y = test[i]
        p = V.predicted_class(model, x)
        if p == int(y) and right is None:
            right = (x, int(y), p)
        if p != int(y) and wrong is None:
            wrong = (x, int(y), p)
        if right and wrong:
            break
    maps, image = {}, None
    for what, (x, y, p) in (("right", right), ("wrong", wrong)):
        cam = V.gradcam(model, x, last)
        maps[f"{what}: predicted {classes[p]}, true {classes[y]}"] = cam
        image = x if image is None else image
    # one picture per case, each over its own image
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8.5, 4.3), dpi=100)
    axes = fig.subplots(1, 2)
    for ax, (caption, cam), (x, _, _) in zip(axes, maps.items(), (right, wrong)):
        img = np.asarray(x.numpy() if hasattr(x, "numpy") else x)[0]
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        shown = ax.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(caption, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=list(axes), shrink=0.8, label="Grad-CAM (last convolution)")
    fig.suptitle(f"Grad-CAM at {last} of {run.config['model']}")
    fig.savefig(path("gradcam.png"), bbox_inches="tight")

    images = V.maximize_grid(model, classes=list(range(len(classes))), input_shape=(1, 28, 28),
                             steps=200, generator=fv.Generator(0), clip=(0.0, 1.0))
    V.plot_maximized(images, path("maximize.png"), titles=classes,
                     title="inputs that maximise each class score", cols=5)
    V.plot_sliding_kernel(7, 3, stride=2, padding=1, out=path("sliding_kernel.png"))
    for f in sorted(os.listdir(args.out)):
        if f.startswith(args.prefix):
            print("wrote", os.path.join(args.out, f))


if __name__ == "__main__":
    main()
