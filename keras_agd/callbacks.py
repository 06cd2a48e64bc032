"""Callbacks that show what AGD is doing in the epoch logs."""

import keras

from keras_agd.agd import AGD


class AnnealingLogger(keras.callbacks.Callback):
    """Adds AGD's annealing state to each epoch's logs.

    Keras logs only model metrics, so the optimizer cannot add to them on its own.
    This callback adds `epsilon`, `mosaic_phase` (1 on codewords, 0 on the real
    samples), `frontier_size`, `annealing_step` and `learning_rate`, which `History`,
    `CSVLogger` and `TensorBoard` then record. List it before those callbacks.

    Example:

    >>> model.fit(train, epochs=30, callbacks=[keras_agd.AnnealingLogger(),
    ...                                        keras.callbacks.CSVLogger("log.csv")])
    """

    def on_epoch_end(self, epoch, logs=None):
        optimizer = self.model.optimizer
        if logs is None or not isinstance(optimizer, AGD):
            return
        logs.update(
            {
                "epsilon": optimizer.epsilon,
                "mosaic_phase": float(optimizer.phase == "mosaic"),
                "frontier_size": optimizer.frontier_size,
                "annealing_step": optimizer.annealing_step,
                "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
            }
        )
