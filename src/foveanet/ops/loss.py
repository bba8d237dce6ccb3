"""Loss primitives (stub: being written)."""
def mse_loss(input, target, reduction="mean"): raise NotImplementedError
def sum_squared_error(input, target): raise NotImplementedError
def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0): raise NotImplementedError
def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"): raise NotImplementedError
def binary_cross_entropy(input, target, weight=None, reduction="mean"): raise NotImplementedError
def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None): raise NotImplementedError
def one_hot(tensor, num_classes=-1): raise NotImplementedError
