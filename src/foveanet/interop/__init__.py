"""Interoperability: the graph tracer, ONNX export and import, inference optimisation.

Nothing here imports ``onnx`` at import time: the ONNX parts load it when they are used (the
``foveanet[onnx]`` extra installs it)."""
from .trace import Graph, Node, Value, trace  # noqa: F401
