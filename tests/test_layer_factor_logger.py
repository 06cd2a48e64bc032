import keras
import numpy as np
import pytest

from keras_agd import LayerAdaptive, LayerFactorLogger


def compiled_model(optimizer):
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, name="hidden"), keras.layers.Dense(1, name="out")]
    )
    model.compile(optimizer=optimizer, loss="mse")
    return model


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    return x, x.sum(axis=1, keepdims=True)


def test_factors_of_each_epoch_end_up_in_the_history():
    model = compiled_model(LayerAdaptive(keras.optimizers.SGD(0.01)))
    history = model.fit(*data(), epochs=3, verbose=0, callbacks=[LayerFactorLogger()])
    factors = model.optimizer.layer_factors
    keys = [f"layer_factor/{group}" for group in factors]
    assert [key.rpartition("/")[2] for key in keys] == ["hidden", "out"]
    for key, factor in zip(keys, factors.values(), strict=True):
        assert len(history.history[key]) == 3
        assert history.history[key][-1] == pytest.approx(factor)
        assert factor > 1.0


def test_callbacks_after_the_logger_see_the_factors(tmp_path):
    # TensorBoard reads the same epoch logs; it is not installed here, CSVLogger is.
    model = compiled_model(LayerAdaptive(keras.optimizers.SGD(0.01)))
    callbacks = [
        LayerFactorLogger(prefix="lr_factor_"),
        keras.callbacks.CSVLogger(tmp_path / "log"),
    ]
    model.fit(*data(), epochs=2, verbose=0, callbacks=callbacks)
    header, *rows = (tmp_path / "log").read_text().splitlines()
    assert {f"lr_factor_{group}" for group in model.optimizer.layer_factors} <= set(
        header.split(",")
    )
    assert len(rows) == 2


def test_finds_the_wrapper_inside_a_loss_scale_optimizer():
    optimizer = keras.optimizers.LossScaleOptimizer(LayerAdaptive(keras.optimizers.SGD(0.01)))
    model = compiled_model(optimizer)
    history = model.fit(*data(), epochs=1, verbose=0, callbacks=[LayerFactorLogger()])
    assert sum(key.startswith("layer_factor/") for key in history.history) == 2


def test_plain_optimizer_is_a_clear_error():
    model = compiled_model(keras.optimizers.SGD(0.01))
    with pytest.raises(ValueError, match="needs a model compiled with an optimizer that has"):
        model.fit(*data(), epochs=1, verbose=0, callbacks=[LayerFactorLogger()])


def test_bad_prefix_is_a_clear_error():
    with pytest.raises(TypeError, match="`prefix` must be a string. Received: prefix=3"):
        LayerFactorLogger(prefix=3)
