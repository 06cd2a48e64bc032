"""keras-agd: annealed gradient descent and layer-specific adaptive learning rates."""

from keras_agd import datasets, layer_adaptive
from keras_agd.layer_adaptive import LayerAdaptive
from keras_agd.layer_factor_logger import LayerFactorLogger

__version__ = "0.1.0"

__all__ = [
    "LayerAdaptive",
    "LayerFactorLogger",
    "datasets",
    "layer_adaptive",
]
