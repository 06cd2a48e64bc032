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
# # AGD in ten minutes
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/keras-agd/keras-agd/blob/main/docs/tutorials/agd_in_ten_minutes.ipynb)
#
# Annealed gradient descent (AGD, Pan & Jiang, UAI 2015) trains first on the codewords of a
# k-means codebook of the training set, coarse ones first, then on ever finer codebooks, then
# on the real samples. In keras-agd that is three pieces around an ordinary `model.fit`:
#
# 1. a **codebook**: `keras_agd.HierarchicalCodebook(...).fit(x, y)`;
# 2. a **schedule** of the quantization error ε per epoch, run by the
#    `keras_agd.Annealing` callback, which plans each epoch's codewords and samples;
# 3. `keras_agd.mosaic_dataset` (the `tf.data` pipeline reading that plan) and the
#    `keras_agd.AGD` optimizer (its learning rate follows the phase).
#
# This notebook trains an MLP on MNIST with AGD and, beside it, with plain SGD, plots ε, the
# phase and the test accuracy against training time, and saves and reloads the codebook.

# %%
# On Colab: install keras-agd from its repository (skipped where it is already installed).
import importlib.util
import subprocess
import sys

PACKAGE = "keras-agd @ git+https://github.com/keras-agd/keras-agd"
if importlib.util.find_spec("keras_agd") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", PACKAGE], check=True)

# %%
import os
import time

import keras
import matplotlib.pyplot as plt

import keras_agd

# KERAS_AGD_TUTORIAL_SMALL=1 (set by CI) trains on a few thousand samples for a few epochs.
SMALL = os.environ.get("KERAS_AGD_TUTORIAL_SMALL") == "1"
keras.utils.set_random_seed(0)

# %% [markdown]
# ## The data
#
# `keras_agd.datasets.load_mnist()` is `keras.datasets.mnist.load_data()`, except that it
# reads a local `mnist.npz` instead when the environment variable `KERAS_AGD_MNIST` names one
# (offline machines, CI). The codebook measures distances on the inputs exactly as the model
# sees them, so scale the pixels first.

# %%
(x_train, y_train), (x_test, y_test) = keras_agd.datasets.load_mnist()
x_train = x_train.astype("float32") / 255.0
x_test = x_test.astype("float32") / 255.0
if SMALL:
    x_train, y_train, x_test, y_test = x_train[:6000], y_train[:6000], x_test[:2000], y_test[:2000]
print(x_train.shape, x_test.shape)

# %% [markdown]
# ## 1. The codebook
#
# One tree per class: level 0 holds the class means, each node is split into `branching`
# k-means clusters, down to clusters of a few samples. Every node is a codeword with a weight
# ω, the number of samples it stands for.

# %%
codebook = keras_agd.HierarchicalCodebook(branching=5, random_state=0).fit(x_train, y_train)
print(codebook.summary())

# %% [markdown]
# Building it takes seconds, not the hours of the paper. Save it once and load it in the next
# session: `load` checks the file, and `verify` (also run by `mosaic_dataset`) refuses data
# other than what the codebook was fit on.

# %%
codebook.save("mnist.codebook.npz")
codebook = keras_agd.HierarchicalCodebook.load("mnist.codebook.npz")
codebook.verify(x_train, y_train)
try:
    codebook.verify(x_train[::-1], y_train[::-1])
except ValueError as error:
    print("Refused:", error)

# %% [markdown]
# ## 2. The schedule
#
# ε falls from epoch to epoch; an epoch trains on the uppermost codewords whose error is below
# ε (the *frontier*). `schedules.from_codebook` starts at level 1's mean error and reaches the
# samples after `mosaic_epochs` epochs; after that ε is 0 and training uses the real samples.

# %%
mosaic_epochs, regular_epochs, sgd_epochs = (3, 2, 3) if SMALL else (6, 3, 5)
schedule = keras_agd.schedules.from_codebook(codebook, mosaic_epochs=mosaic_epochs)
for step in range(mosaic_epochs + 1):
    epsilon = float(schedule(step))
    print(f"epoch {step}: ε = {epsilon:.3f}, frontier of {codebook.frontier(epsilon).size:,} items")

# %% [markdown]
# ## 3. Training with AGD
#
# The `Annealing` callback is the single writer: at the start of each epoch it takes the next ε,
# computes the frontier and plans the epoch; `mosaic_dataset` reads that plan; `AGD` reads the
# phase. Codewords are trained with a larger batch (`mosaic_batch_size`). A small callback
# records the training time of each epoch (evaluation excluded) so that both methods can be
# plotted against time.


# %%
class TrainingClock(keras.callbacks.Callback):
    """Cumulative training seconds at the end of each epoch, validation excluded."""

    def on_train_begin(self, logs=None):
        self.seconds, self.total = [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.batch_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.total += self.batch_end - self.start
        self.seconds.append(self.total)


def mlp():
    return keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

# %%
keras.utils.set_random_seed(0)
annealing = keras_agd.Annealing(codebook, schedule, batch_size=128, mosaic_batch_size=1024)
model = mlp()
model.compile(
    optimizer=keras_agd.AGD(learning_rate=0.05, mosaic_learning_rate=0.05, momentum=0.9),
    loss=loss,
    metrics=["accuracy"],
    jit_compile=True,
)
agd_clock = TrainingClock()
agd = model.fit(
    keras_agd.mosaic_dataset(annealing, x_train, y_train),
    epochs=mosaic_epochs + regular_epochs,
    validation_data=(x_test, y_test),
    callbacks=[agd_clock, annealing],  # The clock first: it counts the epoch planning.
    verbose=2,
)

# %% [markdown]
# The callback added `epsilon`, `mosaic_phase` (1 on codewords, 0 on samples) and
# `frontier_size` to the logs. Plain SGD with the same model, rate and momentum:

# %%
keras.utils.set_random_seed(0)
model = mlp()
model.compile(
    optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
    loss=loss,
    metrics=["accuracy"],
    jit_compile=True,
)
sgd_clock = TrainingClock()
sgd = model.fit(
    x_train,
    y_train,
    batch_size=128,
    epochs=sgd_epochs,
    validation_data=(x_test, y_test),
    callbacks=[sgd_clock],
    verbose=2,
)

# %%
fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
t = agd_clock.seconds
axes[0].step(t, agd.history["epsilon"], where="pre", marker="o")
axes[0].set(title="AGD: quantization error ε of each epoch", ylabel="ε")
axes[1].step(t, agd.history["mosaic_phase"], where="pre", marker="o")
axes[1].set(title="AGD: phase", yticks=[0, 1], yticklabels=["samples", "codewords"])
axes[2].plot(t, agd.history["val_accuracy"], marker="o", label="AGD")
axes[2].plot(sgd_clock.seconds, sgd.history["val_accuracy"], marker="s", label="SGD")
axes[2].set(title="test accuracy", xlabel="training time (s)", ylabel="accuracy")
axes[2].legend()
fig.tight_layout()

# %%
print(
    f"examples processed: AGD {int(sum(agd.history['frontier_size'])):,}, SGD {sgd_epochs * len(x_train):,}"
)
print(f"AGD: {agd.history['val_accuracy'][-1]:.4f} test accuracy after {agd_clock.total:.1f} s")
print(f"SGD: {sgd.history['val_accuracy'][-1]:.4f} test accuracy after {sgd_clock.total:.1f} s")

# %% [markdown]
# Read these numbers for what they are: one seed, on whatever machine ran this notebook. The
# early mosaic epochs are cheap (a few hundred to a few thousand codewords); whether AGD reaches
# a given accuracy sooner than SGD overall is what the time-to-accuracy benchmark measures, over
# several seeds and against a random-subset control. The tutorial
# [When does AGD pay?](https://github.com/keras-agd/keras-agd/blob/main/docs/tutorials/when_does_agd_pay.ipynb)
# reads its results.
#
# ## Next
#
# - [Your own data](https://github.com/keras-agd/keras-agd/blob/main/docs/tutorials/your_own_data.ipynb): data on disk, tfds, your own `tf.data` pipeline.
# - [Layer-specific rates on any optimizer](https://github.com/keras-agd/keras-agd/blob/main/docs/tutorials/layer_adaptive_optimizers.ipynb).
# - The guide [Annealed gradient descent in keras-agd](https://github.com/keras-agd/keras-agd/blob/main/docs/agd.md) and what fails loudly when a
#   piece is missing ([Troubleshooting](https://github.com/keras-agd/keras-agd/blob/main/docs/troubleshooting.md)).
