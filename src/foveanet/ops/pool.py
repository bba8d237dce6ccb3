"""Pooling primitives (stub: being written)."""
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False): raise NotImplementedError
def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None): raise NotImplementedError
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None): raise NotImplementedError
def adaptive_avg_pool2d(input, output_size): raise NotImplementedError
