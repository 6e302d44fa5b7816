"""Architecture descriptions: which weights play which role, how they are stored and named."""

from core.arch.naming import (
    WeightSource,
    find_architecture,
    require_architecture,
    to_runtime,
    to_saved,
    unknown_message,
    weight_sources,
)
from core.arch.spec import CONV1D, EXPERTS, LINEAR, Architecture, Dims, Projection, dims_of

__all__ = [
    "CONV1D",
    "EXPERTS",
    "LINEAR",
    "Architecture",
    "Dims",
    "Projection",
    "WeightSource",
    "dims_of",
    "find_architecture",
    "require_architecture",
    "to_runtime",
    "to_saved",
    "unknown_message",
    "weight_sources",
]
