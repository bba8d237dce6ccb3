"""The version of foveanet (one place: the package, the command line and ONNX files read it)."""
__version__ = "0.1.0"
