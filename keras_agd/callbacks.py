"""Optional, read-only callbacks: the curriculum's state and the layer factors in the logs.

Both find their optimizer by walking the `inner_optimizer` chain, so they work inside
the `LossScaleOptimizer` that `compile` adds under a `mixed_float16` policy. Neither
writes anything that training depends on.
"""

import keras

from keras_agd._wrapper import find_in_chain
from keras_agd.agd import AGD
from keras_agd.lars import LARS
from keras_agd.layer_adaptive import LayerAdaptive
from keras_agd.per_layer_rates import PerLayerRates

_HAS_LAYER_FACTORS = (LayerAdaptive, PerLayerRates, LARS)


class CurriculumLogger(keras.callbacks.Callback):
    """Adds where the AGD curriculum stands to the epoch logs.

    At the end of every epoch it adds, for the last step trained: `epsilon` (ε of its
    level, 0 on the real samples), `mosaic_phase` (1 on codewords, 0 on the real
    samples), `frontier_size`, `annealing_level` (the mosaic level, or the number of
    levels once on the samples), `step` (the optimizer's step counter) and
    `learning_rate`. They then show in `History`, the progress bar, and, if this
    callback comes before `keras.callbacks.CSVLogger` / `TensorBoard` in `callbacks`,
    in those. It only reads the optimizer: training is the same without it.

    Example:

    >>> history = model.fit(curriculum.dataset(model), epochs=3,
    ...                     callbacks=[keras_agd.CurriculumLogger()])
    >>> history.history["epsilon"]
    """

    def on_train_begin(self, logs=None):
        self._optimizer = find_in_chain(self.model.optimizer, AGD)
        if self._optimizer is None:
            raise ValueError(
                "CurriculumLogger needs a model compiled with keras_agd.AGD (the optimizer "
                f"of the curriculum). Received: optimizer={self.model.optimizer!r}"
            )

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        optimizer = self._optimizer
        plan = optimizer.curriculum_identity
        step = int(optimizer.iterations.numpy())
        last = max(step - 1, 0)
        level, first = len(plan["levels"]), 0
        epsilon, frontier = 0.0, plan["data"]["n_samples"]
        for index, (level_epsilon, level_frontier, steps) in enumerate(plan["levels"]):
            if last < first + steps:
                level, epsilon, frontier = index, level_epsilon, level_frontier
                break
            first += steps
        logs.update(
            {
                "epsilon": float(epsilon),
                "mosaic_phase": float(last < plan["mosaic_steps"]),
                "frontier_size": int(frontier),
                "annealing_level": int(level),
                "step": step,
                "learning_rate": float(optimizer.learning_rate_at(last)),
            }
        )


class LayerFactorLogger(keras.callbacks.Callback):
    """Adds each layer's learning-rate factor `t_l / t` to the epoch logs.

    At the end of every epoch, the factors of eq. (9) used in the last update
    step are added to `logs` as `f"{prefix}{group}"`, where `group` is the
    layer's name in the optimizer (e.g. `"layer_factor/sequential/dense"`).
    They then show up in `History`, the progress bar and, if this callback comes
    before `keras.callbacks.TensorBoard` in the `callbacks` list, TensorBoard, so
    that one can see which layers the method sped up.

    Works with the optimizers of keras_agd that have per-layer rates
    (`keras_agd.LayerAdaptive`, `keras_agd.PerLayerRates`, `keras_agd.LARS`), found on
    `model.optimizer` or on the optimizers it wraps (`inner_optimizer`): also inside
    `AGD` or the `LossScaleOptimizer` that `compile` adds under a `mixed_float16`
    policy. Their keys are layer names (`LayerAdaptive`) or variable paths.

    Args:
        prefix: String put before each group name in the log keys.
            Defaults to `"layer_factor/"`.

    Example:

    ```python
    model.compile(optimizer=keras_agd.LayerAdaptive(keras.optimizers.SGD(0.01)))
    history = model.fit(
        x, y, epochs=5,
        callbacks=[keras_agd.LayerFactorLogger(), keras.callbacks.TensorBoard("logs")],
    )
    history.history["layer_factor/sequential/dense"]  # one value per epoch
    ```
    """

    def __init__(self, prefix="layer_factor/"):
        super().__init__()
        if not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string. Received: prefix={prefix!r}")
        self.prefix = prefix

    def on_train_begin(self, logs=None):
        self._optimizer = find_in_chain(self.model.optimizer, _HAS_LAYER_FACTORS)
        if self._optimizer is None:
            raise ValueError(
                "LayerFactorLogger needs a model compiled with an optimizer that has "
                "layer-specific rates, e.g. keras_agd.LayerAdaptive(keras.optimizers.SGD()). "
                f"Received: optimizer={self.model.optimizer!r}"
            )

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for group, factor in self._optimizer.layer_factors.items():
            logs[f"{self.prefix}{group}"] = factor
