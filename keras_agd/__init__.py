"""keras-agd: annealed gradient descent and layer-specific adaptive learning rates."""

from keras_agd import datasets, schedules
from keras_agd.agd import AGD
from keras_agd.callbacks import AnnealingLogger
from keras_agd.codebook import Frontier, HierarchicalCodebook
from keras_agd.layer_adaptive import LayerAdaptive, layer_factors, variable_groups
from keras_agd.layer_factor_logger import LayerFactorLogger
from keras_agd.mosaic_dataset import mosaic_dataset

__version__ = "0.1.0"

__all__ = [
    "AGD",
    "AnnealingLogger",
    "Frontier",
    "HierarchicalCodebook",
    "LayerAdaptive",
    "LayerFactorLogger",
    "datasets",
    "layer_factors",
    "mosaic_dataset",
    "schedules",
    "variable_groups",
]
