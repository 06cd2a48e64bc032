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
# # Your own data
#
# AGD does not need the training set in memory: the stream of a `keras_agd.Curriculum`
# keeps only the codewords and the labels in memory and reads samples by index, batch by
# batch, from a `keras_agd.Source`: an array, an `np.memmap`, a tensorflow-datasets (tfds)
# `data_source`, or any object with `__len__` and `__getitem__`. For the regular phase (after
# annealing) your own `tf.data` pipeline, with its decoding and augmentation, can replace the
# one AGD builds (`regular_dataset=`).
#
# This notebook trains a small CNN on MNIST stored as tfds ArrayRecord files, with a
# `tf.data` pipeline that augments the regular phase, and shows the memory-map variant.

# %%
import contextlib
import io
import logging
import os

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_agd

# KERAS_AGD_TUTORIAL_SMALL=1 (set by CI) trains on a few thousand samples for a few epochs.
SMALL = os.environ.get("KERAS_AGD_TUTORIAL_SMALL") == "1"
keras.utils.set_random_seed(0)
tfds.disable_progress_bar()

# %% [markdown]
# ## Samples in tfds records, read by index
#
# A tfds `data_source` reads records by index from ArrayRecord files, without loading the
# split. On a machine with network access, `tfds.data_source("mnist", split="train")` is one.
# Here `keras_agd.datasets.mnist_data_source` writes MNIST once as a local tfds dataset (from
# `keras.datasets.mnist.load_data()`, or the file named by `KERAS_AGD_MNIST`) and returns the
# same kind of object: records `{"image": (28, 28) uint8, "label": int}`.

# %%
data_dir = "keras_agd_data"  # In the working folder; written once, reused by later runs.
num_examples = 6000 if SMALL else None
# The first call writes the dataset: tfds prints its progress, and absl warns that the new
# folder has no dataset_info.json yet (tfds writes it last). Both are kept off this page.
absl_log = logging.getLogger("absl")
try:
    absl_log.disabled = True
    with contextlib.redirect_stdout(io.StringIO()):
        records = keras_agd.datasets.mnist_data_source(data_dir, "train", num_examples=num_examples)
finally:
    absl_log.disabled = False
source = keras_agd.Source(records, x_key="image", y_key="label")
print(len(records), "records; one sample:", source.sample_shape, records[0]["image"].dtype)

# %% [markdown]
# ## The codebook, fit on the source
#
# `HierarchicalCodebook.fit` takes the source as it is. The images stay uint8, so distances
# and errors are on the 0-255 scale; that is fine as long as the model sees the same scale
# (it rescales in its first layer below) and the schedule is derived from the codebook.

# %%
codebook = keras_agd.HierarchicalCodebook(branching=5, random_state=0).fit(source)
print(codebook.summary())

# %% [markdown]
# ## Your own input pipeline for the regular phase
#
# `regular_dataset=` takes a `tf.data.Dataset` of `(x, y)` batches over the same samples,
# with a known number of batches (one epoch). It is used as it is: its own batch size,
# shuffling and augmentation (here random shifts). The mosaic phase still reads codewords,
# and no augmentation is applied to them (as in the paper).
#
# The records are in the order of `load_mnist`, so `from_tensor_slices` over those arrays is
# the same sample set; for data on disk, a pipeline that reads your files (e.g.
# `tf.data.TFRecordDataset`, or `tfds.load`) works the same way.

# %%
(x_train, y_train), (x_test, y_test) = keras_agd.datasets.load_mnist()
if SMALL:
    x_train, y_train, x_test, y_test = x_train[:6000], y_train[:6000], x_test[:2000], y_test[:2000]
shift = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=0)


def augment(x, y):
    x = tf.cast(x, tf.float32)[..., None]
    return tf.squeeze(shift(x, training=True), -1), y


regular = (
    tf.data.Dataset.from_tensor_slices((x_train, y_train))
    .shuffle(len(x_train), seed=0)
    .batch(128)
    .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    .prefetch(tf.data.AUTOTUNE)
)
print("regular phase:", int(regular.cardinality()), "batches of 128 per epoch")

# %% [markdown]
# ## The curriculum, over the source
#
# `Curriculum` takes the source and the codebook fit on it (it checks that they belong
# together) and plans every mosaic level. Its stream reads codewords from memory and samples
# from the records.

# %%
mosaic_levels, regular_passes = (2, 1) if SMALL else (4, 3)
curriculum = keras_agd.Curriculum(source, schedule=mosaic_levels, codebook=codebook, seed=0)
print(curriculum)
for level in curriculum.levels:
    print(f"ε = {level.epsilon:8.2f}: {level.frontier_size:6,} items, {level.steps} steps")

# %% [markdown]
# ## A small CNN, trained with AGD
#
# The stream follows the compiled optimizer's step, so it is made after `compile`. The mosaic
# phase gets a `fit` of its own (`steps_per_epoch=curriculum.mosaic_steps`, one epoch); the
# second `fit` continues from that step on your own pipeline, one pass (469 batches of 128 at
# full size) per epoch. `CurriculumLogger` adds the phase and the frontier size to the logs.
# `shuffle=False`: the curriculum and your pipeline shuffle themselves (Keras warns that it
# ignores `shuffle=True` on a dataset).

# %%
model = keras.Sequential(
    [
        keras.Input((28, 28)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Reshape((28, 28, 1)),
        keras.layers.Conv2D(16, 5, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 5, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ]
)
model.compile(
    optimizer=keras_agd.AGD(curriculum, learning_rate=0.05, momentum=0.9),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
    jit_compile=True,
)
histories = [
    model.fit(
        curriculum.dataset(model, steps_per_epoch=steps, regular_dataset=regular),
        epochs=epochs,
        shuffle=False,
        validation_data=(x_test, y_test),
        callbacks=[keras_agd.CurriculumLogger()],
        verbose=0,
    ).history
    for steps, epochs in [(curriculum.mosaic_steps, 1), (None, regular_passes)]
]
history = {key: histories[0][key] + histories[1][key] for key in histories[0]}
print("epoch   step  trained on  frontier  test accuracy")
for epoch, (step, mosaic, frontier, accuracy) in enumerate(
    zip(
        history["step"], history["mosaic_phase"], history["frontier_size"], history["val_accuracy"]
    ),
    1,
):
    items = "codewords" if mosaic else "samples"
    print(f"{epoch:5d} {step:6.0f}  {items:>10} {frontier:9,.0f}  {accuracy:13.4f}")

# %%
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

steps = np.array(history["step"])
error = 100 * (1 - np.array(history["val_accuracy"]))
fig, ax = plt.subplots(figsize=(7, 4))
ax.axvspan(0, curriculum.mosaic_steps, color="C1", alpha=0.15, label="mosaic phase (codewords)")
ax.plot(steps, error, "o-", color="C0", label="test error at the end of each epoch")
ax.set_yscale("log")
ax.yaxis.set_major_locator(FixedLocator([0.5, 1, 1.5, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50]))
ax.yaxis.set_minor_locator(NullLocator())
ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}%"))
ax.set(xlim=(0, 1.05 * steps[-1]), ylim=(0.8 * error.min(), 1.5 * error.max()))
ax.set(xlabel="optimizer step", ylabel="test error", title="Small CNN, AGD over tfds records")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## The same with a memory map
#
# Arrays on disk work without tfds: `np.load(..., mmap_mode="r")` (or `np.memmap`) is read by
# index too. An array and a memory map of the same bytes are the same data to the codebook:
# its fingerprint (shape, dtype, SHA-256) matches, so a codebook fit on one accepts the other.
# The curriculum over the memory map is then the same curriculum (same digest), and its
# stream continues the model trained above from its step.

# %%
path = "mnist_x_train.npy"  # In the working folder.
np.save(path, x_train)
x_on_disk = np.load(path, mmap_mode="r")
on_disk = keras_agd.Curriculum(
    x_on_disk, y_train, schedule=mosaic_levels, codebook=codebook, seed=0
)  # Raises if they were not the same data.
print("same curriculum:", on_disk.digest == curriculum.digest)
train = on_disk.dataset(model, regular_dataset=regular)
print("a stream over", type(x_on_disk).__name__, x_on_disk.shape, x_on_disk.dtype)

# %% [markdown]
# That stream trains exactly like the one above (`model.fit(train, ...)`). Only the codewords
# and the labels are held in memory; `benchmarks/scale.py` trains on 4,000,000 samples in a
# 2.9 GiB memory map this way.
#
# What to watch for:
#
# - Fit the codebook on the inputs exactly as the stream reads them (same scaling and dtype);
#   `Curriculum` refuses a codebook of other data.
# - Transform batches through `augment=` or `regular_dataset=`, not after the stream: it
#   yields the batch of each step in order, and an `.unbatch`, `.filter` or `.rebatch` after
#   it changes what a step trains on without an error. A `.map` that keeps the batches is
#   fine.
# - A `tf.data.Dataset` cannot be `x` (it cannot be read by index); pass it as
#   `regular_dataset=`.
# - Class weights go to the stream, `curriculum.dataset(model, class_weight={...})`, not to
#   `fit`: every batch already carries sample weights. The
#   [troubleshooting page](../../troubleshooting/) lists these errors.
