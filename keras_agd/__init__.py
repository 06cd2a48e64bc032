"""keras-agd: annealed gradient descent and layer-specific adaptive learning rates."""

from keras_agd import datasets
from keras_agd.codebook import Frontier, HierarchicalCodebook

__version__ = "0.1.0"

__all__ = [
    "Frontier",
    "HierarchicalCodebook",
    "datasets",
]
