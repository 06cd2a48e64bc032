"""Writes the per-layer learning-rate factors of the last step to the epoch logs."""

import keras


class LayerFactorLogger(keras.callbacks.Callback):
    """Adds each layer's learning-rate factor `t_l / t` to the epoch logs.

    At the end of every epoch, the factors of eq. (9) used in the last update
    step are added to `logs` as `f"{prefix}{group}"`, where `group` is the
    layer's name in the optimizer (e.g. `"layer_factor/sequential/dense"`).
    They then show up in `History`, the progress bar and, if this callback comes
    before `keras.callbacks.TensorBoard` in the `callbacks` list, TensorBoard, so
    that one can see which layers the method sped up.

    Works with any optimizer that exposes a `layer_factors` dict, found on
    `model.optimizer` or on the optimizers it wraps (`inner_optimizer`): a
    `keras_agd.LayerAdaptive`, also inside the `LossScaleOptimizer` that
    `compile` adds under a `mixed_float16` policy.

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
        self._optimizer = _find_layer_factors(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for group, factor in self._optimizer.layer_factors.items():
            logs[f"{self.prefix}{group}"] = factor


def _find_layer_factors(optimizer):
    seen = optimizer
    while optimizer is not None:
        if hasattr(optimizer, "layer_factors"):
            return optimizer
        optimizer = getattr(optimizer, "inner_optimizer", None)
    raise ValueError(
        "LayerFactorLogger needs a model compiled with an optimizer that has "
        "layer-specific rates, e.g. keras_agd.LayerAdaptive(keras.optimizers.SGD()). "
        f"Received: optimizer={seen!r}"
    )
