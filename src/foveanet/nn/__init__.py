"""Neural-network building blocks (being written)."""
from . import functional  # noqa: F401
