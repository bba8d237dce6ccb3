"""Convolution primitives (stub: being written)."""
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1): raise NotImplementedError
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1): raise NotImplementedError
