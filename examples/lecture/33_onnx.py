"""Slide "TensorRT": an inference platform that takes networks in the ONNX standard and
optimises them for the machine at hand; not used for learning.

``fv.onnx.export`` writes a model as an ONNX file (``foveanet export RUN_DIR --onnx FILE``) that
ONNX runtimes (and TensorRT, on a machine with an NVIDIA GPU) read; ``fv.onnx.load`` reads one back
as a trainable foveanet module; ``fv.optimize_for_inference`` is foveanet's own inference
optimiser (BatchNorm folded into the convolution, dropout dropped, activations fused). Here
``fv.models.cnn_bn`` goes through all three and onnxruntime (when installed) runs the file.

    python examples/lecture/33_onnx.py
"""
import os
import tempfile

import numpy as np

import foveanet as fv


def main():
    fv.manual_seed(0)
    model = fv.models.cnn_bn(width=8).eval()
    x = fv.randn(4, 1, 28, 28)
    with fv.no_grad():
        ref = model(x).numpy()
        fast = fv.optimize_for_inference(model, x)(x).numpy()
    out = {"optimized_diff": float(np.abs(fast - ref).max())}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cnn_bn.onnx")
        fv.onnx.export(model, x, path)
        out["file_bytes"] = os.path.getsize(path)
        loaded = fv.onnx.load(path).eval()
        with fv.no_grad():
            out["reloaded_diff"] = float(np.abs(loaded(x).numpy() - ref).max())
        try:
            import onnxruntime as ort
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
            out["onnxruntime_diff"] = float(np.abs(got - ref).max())
        except ImportError:
            out["onnxruntime_diff"] = None
    print(f"cnn_bn exported to ONNX: {out['file_bytes']:,} bytes")
    ort_diff = out["onnxruntime_diff"]
    print(f"largest difference from foveanet's output: fv.onnx.load {out['reloaded_diff']:.1e}, "
          f"onnxruntime {'not installed' if ort_diff is None else f'{ort_diff:.1e}'}, "
          f"optimize_for_inference {out['optimized_diff']:.1e}")
    return out


if __name__ == "__main__":
    main()
