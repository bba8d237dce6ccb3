"""Dropout (stub: being written)."""
def dropout(input, p=0.5, training=True, inplace=False, generator=None): raise NotImplementedError
