"""Activation primitives (stub: being written)."""
def sigmoid(input, sigma=1.0): raise NotImplementedError
def tanh(input): raise NotImplementedError
def relu(input, inplace=False): raise NotImplementedError
def leaky_relu(input, negative_slope=0.01, inplace=False): raise NotImplementedError
def elu(input, alpha=1.0, inplace=False): raise NotImplementedError
def softmax(input, dim=None): raise NotImplementedError
def log_softmax(input, dim=None): raise NotImplementedError
