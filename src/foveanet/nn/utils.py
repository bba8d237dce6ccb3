"""Gradient utilities (stub: being written)."""
def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False): raise NotImplementedError
def clip_grad_value_(parameters, clip_value): raise NotImplementedError
