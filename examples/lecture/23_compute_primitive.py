"""Slides "CPU vs GPU vs TPU" and "Compute Primitive": a CPU does anything, a GPU many simple
operations in parallel, a TPU only matrix products; a convolution layer reduces to one matrix
product (im2col), which is why all three run networks.

foveanet computes on the CPU (``fv.backend.available_devices()``); a tensor moved to another
device is a clear ``fv.backend.DeviceError``. ``fv.ops.algorithms`` chooses, per layer, among
the convolution algorithms ``direct``, ``winograd``, ``direct_s2`` and ``im2col``; each declares
the devices it runs on, the seam where a GPU backend plugs in (``src/foveanet/backend/``). Here a
convolution equals the matrix product of its unrolled patches.

    python examples/lecture/23_compute_primitive.py
"""
import numpy as np

import foveanet as fv
import foveanet.nn.functional as F


def main():
    fv.manual_seed(0)
    x, w = fv.randn(1, 3, 8, 8), fv.randn(4, 3, 3, 3)
    conv = F.conv2d(x, w).numpy()                                    # (1, 4, 6, 6)

    xa = x.numpy()[0]
    cols = np.stack([xa[:, i:i + 3, j:j + 3].ravel() for i in range(6) for j in range(6)], 1)
    product = (w.numpy().reshape(4, -1) @ cols).reshape(1, 4, 6, 6)    # (4, 27) x (27, 36)
    diff = float(np.abs(conv - product).max())
    print(f"conv2d {tuple(conv.shape)} == W (4, 27) x patches {cols.shape}: max difference {diff:.1e}")

    devices = [str(d) for d in fv.backend.available_devices()]
    try:
        fv.zeros(2).to("cuda")
        refused = ""
    except fv.backend.DeviceError as e:
        refused = str(e)
    print(f"devices: {devices}; .to('cuda'): {refused}")
    algos = fv.ops.algorithms.names("conv2d")
    print(f"conv2d algorithms: {algos}")
    return {"max_diff": diff, "devices": devices, "refused": bool(refused), "algorithms": algos}


if __name__ == "__main__":
    main()
