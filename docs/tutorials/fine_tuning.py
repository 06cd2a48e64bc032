# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Fine-tuning with layer-wise rates
#
# When a pretrained network is fine-tuned on a few labelled images, its layers need
# different rates: the new head starts from random weights and must move a lot, while the
# first layers already compute features that transfer and can be damaged by large steps.
# The two usual choices are at the extremes: train everything at one rate, or freeze the
# backbone and train only the head. `keras_agd.PerLayerRates` puts each layer's rate
# anywhere in between, on any Keras optimizer:
#
# - `keras_agd.LayerwiseDecay(d)`: the head at the optimizer's rate, each layer below at `d`
#   times the rate of the layer above (layer-wise learning-rate decay, as in ELECTRA).
# - `keras_agd.Multipliers({pattern: factor}, default=...)`: fixed factors chosen by
#   variable path (discriminative rates); a factor of `0` freezes a variable.
#
# This notebook pretrains a small CNN on the MNIST digits 0-4, fine-tunes it on 300 images
# of the digits 5-9 with a new head in four ways, looks at the factors each variable gets,
# saves and reloads the fine-tuned model, and reads the results of the benchmark that
# compared the four ways over several seeds. Everything runs on a CPU in a few minutes.

# %%
import json
import os
import urllib.request
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

import keras_agd

# KERAS_AGD_TUTORIAL_SMALL=1 (set by CI) pretrains on a few thousand images, fine-tunes for
# a few passes and tests on a small part of the test set.
SMALL = os.environ.get("KERAS_AGD_TUTORIAL_SMALL") == "1"

(x_train, y_train), (x_test, y_test) = keras_agd.datasets.load_mnist()
x_train = x_train.astype("float32")[..., None] / 255.0
x_test = x_test.astype("float32")[..., None] / 255.0
y_train, y_test = y_train.astype("int32"), y_test.astype("int32")

# The pretraining task: digits 0-4. The new task: digits 5-9, as the classes 0-4 of a new
# head; a pool of 300 labelled training images, and the test images of 5-9.
x_old, y_old = x_train[y_train < 5], y_train[y_train < 5]
x_new, y_new = x_train[y_train >= 5], y_train[y_train >= 5] - 5
pool = np.random.default_rng(0).choice(len(x_new), 300, replace=False)
x_pool, y_pool = x_new[pool], y_new[pool]
x_test_new, y_test_new = x_test[y_test >= 5], y_test[y_test >= 5] - 5
pretrain_epochs, fine_tune_epochs = (1, 5) if SMALL else (2, 30)
if SMALL:
    x_old, y_old = x_old[:3000], y_old[:3000]
    x_test_new, y_test_new = x_test_new[:1000], y_test_new[:1000]
print(f"pretraining: {len(x_old)} images of 0-4; fine-tuning: {len(x_pool)} images of 5-9")

# %% [markdown]
# ## Pretraining on the digits 0-4
#
# Two convolutions, a dense layer and a 5-way head, trained with Adam on the digits 0-4.
# The fine-tuned models below copy every layer but the head from this one.


# %%
def cnn(name):
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu", name="dense"),
            keras.layers.Dense(5, name="head"),
        ],
        name=name,
    )


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

keras.utils.set_random_seed(0)
pretrained = cnn("pretrain")
pretrained.compile(optimizer=keras.optimizers.Adam(1e-3), loss=LOSS, metrics=["accuracy"])
pretrained.fit(x_old, y_old, batch_size=128, epochs=pretrain_epochs, verbose=0)
x_test_old, y_test_old = x_test[y_test < 5], y_test[y_test < 5]
_, accuracy = pretrained.evaluate(x_test_old, y_test_old, batch_size=1000, verbose=0)
print(f"pretrained: test accuracy on the digits 0-4 {accuracy:.2%}")

# %% [markdown]
# ## Four ways to fine-tune
#
# All four use Adam and the same batches; they differ only in each variable's factor on
# the learning rate. The rates are the ones the benchmark chose for each way on a
# validation split (read from its JSON below, `docs/images/fine_tuning.json`):
#
# - **uniform rate**: plain Adam, every variable at the rate.
# - **frozen backbone**: `Multipliers({"head": 1.0}, default=0.0)`, only the head trains.
#   Setting `trainable = False` on the backbone's layers does the same and skips their
#   gradients; the factor `0` keeps one model and one optimizer for all four ways.
# - **layer-wise decay**: `LayerwiseDecay(d)`. Its blocks are the layers that own
#   variables, in the order of `model.trainable_variables`: here the head gets `1`,
#   `dense` gets `d`, `conv2` gets `d**2` and `conv1` gets `d**3`.
# - **multipliers**: the head at the rate, the whole backbone at a tenth of it.

# %%
# Where the benchmark's JSON is read from outside a checkout (the repository on GitHub).
RAW = "https://raw.githubusercontent.com/keras-agd/keras-agd/main/docs/images"


def read_benchmark(name):
    """A committed benchmark JSON: from the checkout keras_agd runs from, else from GitHub."""
    local = Path(keras_agd.__file__).resolve().parents[1] / "docs" / "images" / name
    if local.is_file():
        return json.loads(local.read_text())
    with urllib.request.urlopen(f"{RAW}/{name}") as response:
        return json.load(response)


benchmark = read_benchmark("fine_tuning.json")
chosen = {arm: result["chosen"] for arm, result in benchmark["results"].items()}
LABELS = {
    "uniform": "uniform rate",
    "frozen": "frozen backbone",
    "layerwise_decay": "layer-wise decay",
    "multipliers": "multipliers",
}


def make_optimizer(arm):
    adam = keras.optimizers.Adam(chosen[arm]["learning_rate"])
    if arm == "uniform":
        return adam
    rule = {
        "frozen": keras_agd.Multipliers({"head": 1.0}, default=0.0),
        "layerwise_decay": keras_agd.LayerwiseDecay(chosen["layerwise_decay"].get("decay")),
        "multipliers": keras_agd.Multipliers({"head": 1.0}, default=0.1),
    }[arm]
    return keras_agd.PerLayerRates(adam, rules=[rule])


def fine_tuning_model(arm, seed=0):
    """The pretrained layers with a new head, compiled for `arm`."""
    keras.utils.set_random_seed(seed)
    model = cnn("finetune")
    for layer in model.layers:
        if layer.weights and layer.name != "head":
            layer.set_weights(pretrained.get_layer(layer.name).get_weights())
    model.compile(optimizer=make_optimizer(arm), loss=LOSS, metrics=["accuracy"])
    return model


for arm, settings in chosen.items():
    print(f"{LABELS[arm]:>17}: {settings}")

# %% [markdown]
# ## The factors each variable gets
#
# `optimizer.layer_factors` maps each variable's path to its factor `t_v / t`. Fixed
# factors (multipliers, decay) are known as soon as the optimizer is built, before the
# first step:

# %%
models = {arm: fine_tuning_model(arm) for arm in LABELS if arm != "uniform"}
rows = ["| variable | " + " | ".join(LABELS[arm] for arm in models) + " |"]
rows.append("|---" * (len(models) + 1) + "|")
for model in models.values():
    model.optimizer.build(model.trainable_variables)
paths = list(models["frozen"].optimizer.layer_factors)
for path in paths:
    factors = [model.optimizer.layer_factors[path] for model in models.values()]
    rows.append(f"| `{path}` | " + " | ".join(f"{f:.3g}" for f in factors) + " |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## Fine-tuning
#
# Each way trains on the same 300 images with the same batches (batch 32, the same seed),
# and is tested on the digits 5-9 after every pass over the pool.
# `keras_agd.LayerFactorLogger` adds the factors to the logs of the runs with per-layer
# rates (`"layer_factor/<variable path>"`), where `History`, `CSVLogger` or TensorBoard pick
# them up.

# %%
histories, fine_tuned = {}, {}
for arm in LABELS:
    model = fine_tuning_model(arm)
    callbacks = [] if arm == "uniform" else [keras_agd.LayerFactorLogger()]
    history = model.fit(
        x_pool,
        y_pool,
        batch_size=32,
        epochs=fine_tune_epochs,
        validation_data=(x_test_new, y_test_new),
        validation_batch_size=1000,
        callbacks=callbacks,
        verbose=0,
    )
    histories[arm], fine_tuned[arm] = history.history, model

fig, ax = plt.subplots(figsize=(7, 4))
for arm, history in histories.items():
    passes = np.arange(1, len(history["val_accuracy"]) + 1)
    ax.plot(passes, 100 * np.array(history["val_accuracy"]), marker=".", label=LABELS[arm])
ax.set_xlabel("passes over the 300 images")
ax.set_ylabel("test accuracy, digits 5-9 (%)")
ax.set_title("Fine-tuning a CNN pretrained on 0-4 (one seed)")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()

rows = ["| way | final test accuracy |", "|---|---|"]
for arm, history in histories.items():
    rows.append(f"| {LABELS[arm]} | {history['val_accuracy'][-1]:.2%} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# The logged factors of the layer-wise decay run, one value per pass (fixed factors stay
# the same from pass to pass; a `TrustRatio` rule's would change):

# %%
logged = {
    key.removeprefix("layer_factor/"): values[-1]
    for key, values in histories["layerwise_decay"].items()
    if key.startswith("layer_factor/") and key.endswith("/kernel")
}
for path, factor in logged.items():
    print(f"{path}: {factor:.3g}")

# %% [markdown]
# ## Saving and loading
#
# The rules are part of the optimizer's config, and the optimizer is saved with the
# model: a reloaded model continues training with the same factors and Adam's moments.
# The keys of `layer_factors` are variable paths, and Keras gives a reloaded model's
# variables paths without the model's name (`finetune/head/kernel` becomes `head/kernel`).
# So write the patterns of `Multipliers` and `LayerwiseDecay(blocks=...)` without the
# model's name (`"head"`, not `"^finetune/head"`): a pattern must match some variable,
# also in the reloaded model.

# %%
model = fine_tuned["layerwise_decay"]
model.save("fine_tuned.keras")
reloaded = keras.saving.load_model("fine_tuned.keras")
print(type(reloaded.optimizer).__name__, reloaded.optimizer.rules)
before = model.predict(x_test_new[:100], verbose=0)
print("same predictions:", np.allclose(before, reloaded.predict(x_test_new[:100], verbose=0)))
for (path, factor), (new_path, new_factor) in zip(
    model.optimizer.layer_factors.items(), reloaded.optimizer.layer_factors.items()
):
    if path.endswith("/kernel"):
        print(f"{path}: {factor:.3g}, reloaded {new_path}: {new_factor:.3g}")
reloaded.fit(x_pool, y_pool, batch_size=32, epochs=1, verbose=0)
print(f"after one more pass: optimizer step {int(reloaded.optimizer.iterations)}")

# %% [markdown]
# ## What the benchmark measured
#
# One seed says little: with 300 images, which images are in the pool moves the test
# accuracy by a point or more. `benchmarks/fine_tuning.py` tunes each way the same way
# (the same number of configurations: 9 learning rates for the ways with one setting,
# 3 rates times 3 decays for layer-wise decay, scored on a validation split of held-out
# training images of 5-9), then runs each chosen setting with several seeds (a new pool,
# head and batch order each) and tests on all the test images of 5-9. Its goal was that
# layer-wise decay is at least as accurate as the better of the uniform rate and the
# frozen backbone, in median test accuracy over the seeds. Its results, as committed:

# %%
rows = ["| way | chosen setting | median test accuracy | range over the seeds |"]
rows.append("|---|---|---|---|")
for arm, result in benchmark["results"].items():
    setting = ", ".join(f"{key} {value:g}" for key, value in result["chosen"].items())
    spread = result["summary"]
    rows.append(
        f"| {LABELS[arm]} | {setting} | {spread['median']:.2%} "
        f"| {spread['min']:.2%} to {spread['max']:.2%} |"
    )
verdict = benchmark["verdict"]
seeds = benchmark["config"]["seeds"]
outcome = "met" if verdict["met"] else "not met"
rows.append(
    f"\nGoal {outcome}: layer-wise decay {verdict['layerwise_decay_median']:.2%} against "
    f"{LABELS[verdict['best_baseline']]} {verdict['best_baseline_median']:.2%} "
    f"({verdict['difference_points']:+.2f} points), medians over {seeds} seeds."
)
display(Markdown("\n".join(rows)))

# %% [markdown]
# The guide [Layer-specific adaptive rates](../../layer_adaptive/#fine-tuning) shows the
# same results with the benchmark's plot and command. Rules combine: with two rules,
# `rules=[LayerwiseDecay(0.5), Multipliers({"bias": 0.0})]`, each variable's factors
# multiply (here every bias is also frozen). `LayerwiseDecay(d, blocks=[...])` groups
# several layers into one block: a Functional model's branches, a transformer's blocks.
