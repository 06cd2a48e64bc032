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
# Annealed gradient descent (AGD, Pan & Jiang, UAI 2015) trains first on the codewords of a
# k-means codebook of the training set, coarse ones first, then on ever finer codebooks, then
# on the real samples. In keras-agd that is three calls around an ordinary `model.fit`:
#
# 1. a **curriculum**, `keras_agd.Curriculum(x, y, schedule=...)`: the codebook, the
#    quantization error ε of each mosaic level, and the batch of every training step,
#    planned before training;
# 2. the **optimizer** `keras_agd.AGD(curriculum, ...)`, whose learning rate follows the
#    step (one rate on codewords, one on samples);
# 3. the **stream** `curriculum.dataset(model)`, the `tf.data` pipeline that yields the
#    batches of the steps from the one the optimizer is at.
#
# This notebook fits and saves a codebook, plans a curriculum, trains an MLP on MNIST with AGD
# and, beside it, with plain SGD, plots ε and the test error, and resumes a saved model.

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
# ω, the number of samples it stands for. `Curriculum` fits one itself when it is not given
# one; fitting it here shows what it holds and how to cache it.

# %%
codebook = keras_agd.HierarchicalCodebook(branching=5, random_state=0).fit(x_train, y_train)
print(codebook.summary())

# %% [markdown]
# Building it takes seconds, not the hours of the paper. Save it once and load it in later
# runs: `load` checks the file, and `verify` (also run by `Curriculum` on a given codebook)
# refuses data other than what the codebook was fit on.

# %%
codebook.save("mnist.codebook.npz")
codebook = keras_agd.HierarchicalCodebook.load("mnist.codebook.npz")
codebook.verify(x_train, y_train)
try:
    codebook.verify(x_train[::-1], y_train[::-1])
except ValueError as error:
    print("Refused:", error)

# %% [markdown]
# ## 2. The curriculum
#
# ε falls from level to level; a level trains on the uppermost codewords whose error is below
# ε (the *frontier*), at `mosaic_batch_size`. `schedule=n` starts at level 1's mean error and
# reaches the real samples after `n` levels; after that, training runs shuffled passes over
# the samples at `batch_size`. A level lasts one pass over its items. The whole plan is fixed
# here: the batch of every step is a function of the step alone.

# %%
mosaic_levels, regular_passes, sgd_epochs = (3, 2, 3) if SMALL else (6, 3, 5)
curriculum = keras_agd.Curriculum(
    x_train,
    y_train,
    schedule=mosaic_levels,
    codebook=codebook,
    batch_size=128,
    mosaic_batch_size=1024,
    seed=0,
)
print(curriculum)
for index, level in enumerate(curriculum.levels):
    print(
        f"level {index}: ε = {level.epsilon:.3f}, frontier of {level.frontier_size:,} items, "
        f"steps {level.first_step} to {level.first_step + level.steps - 1}"
    )
step = curriculum.mosaic_steps
print(f"step {step}: ε = {curriculum.epsilon(step)}, {curriculum.phase(step)} phase")
rows, weights = curriculum.batch(0)
print(f"the batch of step 0: {len(rows)} rows, mean weight {weights.mean():.3f}")

# %% [markdown]
# ## 3. Training with AGD
#
# `AGD(curriculum, ...)` uses `mosaic_learning_rate` (by default the same as `learning_rate`)
# for the first `curriculum.mosaic_steps` steps, then `learning_rate`.
# `curriculum.dataset(model)` reads the optimizer's step whenever Keras starts an epoch and
# yields that step's batch and the following ones. A Keras epoch is a window of
# `steps_per_epoch` steps, by default one pass over the samples, in which the whole mosaic
# phase would fit. So the mosaic phase gets a `fit` of its own, in five short windows, and a
# second `fit` continues from the step the first one ended at, one pass per epoch.
# `keras_agd.CurriculumLogger` adds ε, the phase, the frontier size and the step to the logs.
# `shuffle=False`: the curriculum shuffles every level and every pass itself (Keras warns
# that it ignores `shuffle=True` on a dataset). A small callback records the training time
# of each epoch (evaluation excluded) so that both methods can be plotted against time.


# %%
class TrainingClock(keras.callbacks.Callback):
    """Cumulative training seconds at the end of each epoch, validation excluded."""

    def __init__(self):
        super().__init__()
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


def print_epochs(history, columns):
    """A narrow table of a Keras history: one row per epoch, `{header: (key, format)}`."""
    print("epoch " + " ".join(f"{header:>9}" for header in columns))
    rows = zip(*(history[key] for key, _ in columns.values()))
    for epoch, row in enumerate(rows, 1):
        cells = (format(value, spec) for value, (_, spec) in zip(row, columns.values()))
        print(f"{epoch:5d} " + " ".join(f"{cell:>9}" for cell in cells))


# %%
keras.utils.set_random_seed(0)
model = mlp()
model.compile(
    optimizer=keras_agd.AGD(curriculum, learning_rate=0.05, momentum=0.9),
    loss=loss,
    metrics=["accuracy"],
    jit_compile=True,
)
agd_clock = TrainingClock()
window = -(-curriculum.mosaic_steps // 5)
mosaic = model.fit(
    curriculum.dataset(model, steps_per_epoch=window),
    epochs=5,
    shuffle=False,
    validation_data=(x_test, y_test),
    callbacks=[agd_clock, keras_agd.CurriculumLogger()],
    verbose=0,
)
regular = model.fit(
    curriculum.dataset(model),
    epochs=regular_passes,
    shuffle=False,
    validation_data=(x_test, y_test),
    callbacks=[agd_clock, keras_agd.CurriculumLogger()],
    verbose=0,
)
agd = {key: mosaic.history[key] + regular.history[key] for key in mosaic.history}
print_epochs(
    agd,
    {
        "step": ("step", ".0f"),
        "mosaic": ("mosaic_phase", ".0f"),
        "ε": ("epsilon", ".3f"),
        "frontier": ("frontier_size", ",.0f"),
        "loss": ("loss", ".4f"),
        "test acc.": ("val_accuracy", ".4f"),
    },
)

# %% [markdown]
# The logs end each epoch at the step the optimizer reached; `mosaic` is 1 while it trains
# on codewords. Every batch was full, so the loss is that of the items trained on (in the
# mosaic phase: codewords, weighted by ω). Plain SGD with the same model, rate and
# momentum:

# %%
keras.utils.set_random_seed(0)
sgd_model = mlp()
sgd_model.compile(
    optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
    loss=loss,
    metrics=["accuracy"],
    jit_compile=True,
)
sgd_clock = TrainingClock()
sgd = sgd_model.fit(
    x_train,
    y_train,
    batch_size=128,
    epochs=sgd_epochs,
    validation_data=(x_test, y_test),
    callbacks=[sgd_clock],
    verbose=0,
)
print_epochs(sgd.history, {"loss": ("loss", ".4f"), "test acc.": ("val_accuracy", ".4f")})

# %%
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

fig, axes = plt.subplots(2, 1, figsize=(8, 7))
steps = range(curriculum.mosaic_steps + window)
axes[0].plot(
    steps,
    [curriculum.epsilon(s) for s in steps],
    drawstyle="steps-post",
    label="curriculum.epsilon(step)",
)
last_steps = [s - 1 for s in mosaic.history["step"]]
axes[0].plot(last_steps, mosaic.history["epsilon"], "o", label="CurriculumLogger, each epoch")
axes[0].axvline(
    curriculum.mosaic_steps, color="gray", linestyle=":", label="first step on real samples"
)
axes[0].set(title="AGD: quantization error ε of each step", xlabel="optimizer step", ylabel="ε")
axes[0].legend(loc="lower left")

# Test error in percent, on a log axis labelled where the curves are.
axes[1].plot(agd_clock.seconds, [100 * (1 - a) for a in agd["val_accuracy"]], "o-", label="AGD")
axes[1].plot(
    sgd_clock.seconds, [100 * (1 - a) for a in sgd.history["val_accuracy"]], "s--", label="SGD"
)
axes[1].set_yscale("log")
axes[1].yaxis.set_major_locator(FixedLocator([1, 2, 3, 5, 10, 20, 30, 50]))
axes[1].yaxis.set_minor_locator(NullLocator())
axes[1].yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}%"))
axes[1].set(title="Test error", xlabel="training time (s)", ylabel="test error")
axes[1].grid(alpha=0.3)
axes[1].legend()
fig.tight_layout()

# %%
step = agd["step"][-1]
examples = curriculum.mosaic_steps * curriculum.mosaic_batch_size
examples += (step - curriculum.mosaic_steps) * curriculum.batch_size
print(f"examples processed: AGD {examples:,} in {step} steps, SGD {sgd_epochs * len(x_train):,}")
print(f"AGD: {agd['val_accuracy'][-1]:.4f} test accuracy after {agd_clock.total:.1f} s")
print(f"SGD: {sgd.history['val_accuracy'][-1]:.4f} test accuracy after {sgd_clock.total:.1f} s")

# %% [markdown]
# Read these numbers for what they are: one seed, on whatever machine ran this notebook. The
# mosaic phase is short (a few hundred to a few thousand codewords a level); whether AGD
# reaches a given accuracy sooner than SGD overall is what the benchmarks measure, over
# several seeds and against controls without a codebook. The tutorial
# [When does AGD pay?](../when_does_agd_pay/) reads their results.
#
# ## 4. Saving and resuming
#
# The only state of the run is the optimizer's step counter, which `model.save` keeps (with
# the curriculum's plan and digest in AGD's config). A loaded model continues the curriculum
# from its step; the same goes for a second `fit` and for `keras.callbacks.BackupAndRestore`
# (give it `double_checkpoint=True`: a kill while Keras' default single backup is written
# leaves it torn, and no restart can load it; see [Resuming](../../agd/#resuming)).
# A stream of another curriculum (other seed, schedule, codebook, ...) is refused.

# %%
model.save("agd_mlp.keras")
loaded = keras.models.load_model("agd_mlp.keras")
print("step", int(loaded.optimizer.iterations.numpy()), "-", loaded.optimizer.phase, "phase")
more = loaded.fit(
    curriculum.dataset(loaded, steps_per_epoch=window),
    epochs=1,
    shuffle=False,
    callbacks=[keras_agd.CurriculumLogger()],
    verbose=0,
)
print("after one more epoch: step", more.history["step"][-1])
other = keras_agd.Curriculum(x_train, y_train, schedule=mosaic_levels, codebook=codebook, seed=1)
try:
    other.dataset(loaded)
except ValueError as error:
    print("Refused:", error)

# %% [markdown]
# ## Next
#
# - [Your own data](../your_own_data/): data on disk, tfds, your own `tf.data` pipeline.
# - [Layer-specific rates on any optimizer](../layer_adaptive_optimizers/).
# - The guide [Annealed gradient descent](../../agd/) (resuming, custom loops, mixed
#   precision, what fails loudly) and [Troubleshooting](../../troubleshooting/).
