"""Slide "Convolution in Computer Vision": blurring (suppresses high frequencies) and edge
(suppresses low frequencies) kernels.

``fv.nn.functional.conv2d`` with a hand-made 3x3 box blur and a 3x3 Laplacian edge kernel on a
real Fashion-MNIST image. The blur lowers the image's high-frequency energy (the mean absolute
Laplacian); the edge filter removes the mean (a flat image gives 0).

    python examples/lecture/08_convolution_filters.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn.functional as F

BLUR = np.full((1, 1, 3, 3), 1 / 9, dtype=np.float32)
EDGE = np.array([[[[0, -1, 0], [-1, 4, -1], [0, -1, 0]]]], dtype=np.float32)


def main():
    x, _ = fv.data.FashionMNIST(train=False).arrays()
    img = fv.tensor(x[:1])                                      # (1, 1, 28, 28)
    blurred = F.conv2d(img, fv.tensor(BLUR), padding=1)
    edges = F.conv2d(img, fv.tensor(EDGE), padding=1)

    def high_freq(t):                                           # mean |Laplacian| inside the border
        return float(np.abs(F.conv2d(t, fv.tensor(EDGE)).numpy()).mean())

    flat = F.conv2d(fv.ones(1, 1, 8, 8), fv.tensor(EDGE)).numpy()
    print(f"image {tuple(img.shape)}, kernels 3x3")
    print(f"high-frequency energy: image {high_freq(img):.4f}, blurred {high_freq(blurred):.4f}")
    print(f"edge filter on a flat image: max |output| {np.abs(flat).max():.1f}; "
          f"on the image: mean |output| {np.abs(edges.numpy()).mean():.4f}")
    return {"hf_image": high_freq(img), "hf_blurred": high_freq(blurred),
            "flat_edges": float(np.abs(flat).max()), "shape": tuple(blurred.shape)}


if __name__ == "__main__":
    main()
