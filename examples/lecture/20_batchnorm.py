"""Slide "Batch Normalisation": inputs with very different value ranges get the same mean and
standard deviation, so every channel counts the same.

``fv.nn.BatchNorm2d`` (``F.batch_norm``) normalises each channel over the batch and the
positions, then scales and shifts it (learned gamma, beta), and keeps running statistics for
evaluation; ``fv.models.cnn_bn`` (the default model of ``foveanet train``) uses it after every
convolution. Here three channels of scale 1, 100 and 0.1 come out with mean 0 and std 1.

    python examples/lecture/20_batchnorm.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn as nn


def main():
    fv.manual_seed(0)
    scales = fv.tensor(np.array([1.0, 100.0, 0.1], dtype=np.float32).reshape(1, 3, 1, 1))
    x = fv.randn(16, 3, 8, 8) * scales + 5.0
    bn = nn.BatchNorm2d(3)
    y = bn(x).detach().numpy()
    before = x.numpy().std(axis=(0, 2, 3))
    mean, std = y.mean(axis=(0, 2, 3)), y.std(axis=(0, 2, 3))
    print(f"std per channel before: {[round(float(v), 3) for v in before]}")
    print(f"after BatchNorm2d: mean {[round(float(v), 4) for v in mean]}, "
          f"std {[round(float(v), 4) for v in std]}")
    print(f"running mean after one batch (momentum 0.1): "
          f"{[round(float(v), 3) for v in bn.running_mean.numpy()]}")
    return {"std_before": before.tolist(), "mean_after": mean.tolist(), "std_after": std.tolist()}


if __name__ == "__main__":
    main()
