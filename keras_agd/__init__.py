"""keras-agd: annealed gradient descent and layer-specific adaptive learning rates."""

from keras_agd import datasets, multi_worker, schedules
from keras_agd._version import __version__ as __version__  # Re-exported; __all__ is the API.
from keras_agd.agd import AGD
from keras_agd.callbacks import CurriculumLogger, LayerFactorLogger
from keras_agd.codebook import Frontier, HierarchicalCodebook
from keras_agd.curriculum import Curriculum, Level
from keras_agd.lars import LARS
from keras_agd.layer_adaptive import LayerAdaptive, layer_factors, variable_groups
from keras_agd.mosaic_dataset import mosaic_dataset
from keras_agd.per_layer_rates import PerLayerRates
from keras_agd.rate_rules import LayerwiseDecay, Multipliers, TrustRatio
from keras_agd.sources import Source

__all__ = [
    "AGD",
    "Curriculum",
    "CurriculumLogger",
    "Frontier",
    "HierarchicalCodebook",
    "LARS",
    "LayerAdaptive",
    "LayerFactorLogger",
    "LayerwiseDecay",
    "Level",
    "Multipliers",
    "PerLayerRates",
    "Source",
    "TrustRatio",
    "datasets",
    "layer_factors",
    "mosaic_dataset",
    "multi_worker",
    "schedules",
    "variable_groups",
]
