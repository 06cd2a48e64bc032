"""One training run of the kill tests (tests/test_resume_under_kills.py starts it).

Trains a small MLP with AGD on fixed synthetic data, with a fixed seed, for `epochs`
Keras epochs of `STEPS_PER_EPOCH` steps (the curriculum's 8 mosaic steps, then samples),
backing up after every step when `backup` is set, and writes `result.npz` on completion:
the final weights, the step counter, the epoch and step the run started from (after the
backup's restore) and the folder of the keras_agd it imported.

    python resume_job.py '{"out": DIR, "epochs": 6, "backup": "agd", "backup_dir": DIR}'

`backup="agd"` backs up with `keras_agd.multi_worker.backup_and_restore(backup_dir,
save_freq=1)`; `every_step` adds the weights after every step
to the result (the reference run). The run prints `start <epoch> <step>` when its first
epoch begins and `step <step>` after every step, just before the backup of that step is
written, so that the test can kill it while it writes.
"""

import json
import os
import sys

import keras
import numpy as np

import keras_agd

STEPS_PER_EPOCH = 5

config = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.normal(size=(512, 8)).astype(np.float32)
y = np.argmax(x @ rng.normal(size=(8, 4)), axis=1)
curriculum = keras_agd.Curriculum(x, y, schedule=2, batch_size=32, mosaic_batch_size=64, seed=0)

keras.utils.set_random_seed(0)
model = keras.Sequential(
    [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(4)]
)
model.compile(
    optimizer=keras_agd.AGD(curriculum, learning_rate=0.05, momentum=0.9),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)


class Progress(keras.callbacks.Callback):
    """Reports the step; before the backup in `callbacks`, so before its write."""

    def __init__(self):
        super().__init__()
        self.start = None
        self.weights = {}

    def on_epoch_begin(self, epoch, logs=None):
        if self.start is None:
            # After the backup's restore (all `on_train_begin` run first).
            self.start = (epoch, int(self.model.optimizer.iterations.numpy()))
            print("start", *self.start, flush=True)

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if config.get("every_step"):
            self.weights[step] = self.model.get_weights()
        print("step", step, flush=True)


progress = Progress()
callbacks = [progress]
if config.get("backup") == "agd":
    callbacks.append(keras_agd.multi_worker.backup_and_restore(config["backup_dir"], save_freq=1))
model.fit(
    curriculum.dataset(model, steps_per_epoch=STEPS_PER_EPOCH),
    epochs=config["epochs"],
    verbose=0,
    shuffle=False,
    callbacks=callbacks,
)
result = {
    "start_epoch": progress.start[0],
    "start_step": progress.start[1],
    "iterations": int(model.optimizer.iterations.numpy()),
    "package": os.path.dirname(os.path.realpath(keras_agd.__file__)),
    **{f"weights_{i}": w for i, w in enumerate(model.get_weights())},
}
for step, weights in progress.weights.items():
    result.update({f"step_{step}_{i}": w for i, w in enumerate(weights)})
# Written whole, then renamed: a kill never leaves a partial result.
path = os.path.join(config["out"], "result.npz")
np.savez(path + ".tmp.npz", **result)
os.replace(path + ".tmp.npz", path)
