"""One worker of the multi-worker tests (tests/test_multi_worker.py starts it).

Trains a small MLP with AGD (layer-adaptive rates on) on the digits data set, under
`MultiWorkerMirroredStrategy` when `TF_CONFIG` is set, else on one device, and writes
`result-<worker>.json`: the logs of each epoch, the final weights, and for each epoch a
fingerprint of every item this worker trained on (and the plan's own items, so that
the test can check that each item is seen exactly once across workers).

    python multi_worker_job.py '{"out": DIR, "misuse": true, "backup": DIR, "torn_save": [0, 1]}'

`misuse` first tries fits that must be refused; `input_context` trains on
`distribute_datasets_from_function` (each worker reads its share only); `backup` adds
the chief's backup;
`torn_save: [worker, epoch]` makes that worker die halfway through writing that
epoch's backup.
"""

import hashlib
import json
import os
import signal
import sys

import keras
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

import keras_agd

config = json.loads(sys.argv[1])
out = config["out"]
strategy = tf.distribute.get_strategy()
task = 0
if "TF_CONFIG" in os.environ:
    # Collectives wait forever for a dead peer unless given a timeout.
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=config.get("collective_timeout", 60)
        )
    )
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]

built = []
x, y = load_digits(return_X_y=True)
x = (x / 16.0).astype(np.float32)
codebook = keras_agd.multi_worker.shared_codebook(
    os.path.join(out, "codebook.npz"),
    x,
    y,
    build=lambda: built.append(task) or keras_agd.HierarchicalCodebook(random_state=0).fit(x, y),
    timeout=60,
)


def fingerprints(inputs, weights):
    """One string per item of nonzero weight: its input bytes and weight."""
    return [
        hashlib.blake2b(row.tobytes() + np.float32(w).tobytes(), digest_size=8).hexdigest()
        for row, w in zip(inputs, weights)
        if w > 0
    ]


seen = []


class RecordingModel(keras.Sequential):
    def train_step(self, data):
        inputs, _, weights = data
        tf.numpy_function(
            lambda a, w: np.int64(seen.extend(fingerprints(a, w)) or 0),
            [inputs, weights],
            tf.int64,
        )
        return super().train_step(data)

    def save_weights(self, filepath, overwrite=True, **kwargs):
        if config.get("torn_save") != [task, len(epochs) - 1]:
            return super().save_weights(filepath, overwrite=overwrite, **kwargs)
        # Dies halfway through writing the backup: a torn file, as a kill leaves it.
        whole = filepath.removesuffix(".weights.h5") + ".whole.weights.h5"
        super().save_weights(whole, overwrite=True, **kwargs)
        with open(whole, "rb") as source, open(filepath, "wb") as target:
            content = source.read()
            target.write(content[: len(content) // 2])
        os.kill(os.getpid(), signal.SIGKILL)


keras.utils.set_random_seed(0)
with strategy.scope():
    model = RecordingModel(
        [keras.Input((64,)), keras.layers.Dense(32, "relu"), keras.layers.Dense(10)]
    )
    model.compile(
        optimizer=keras_agd.AGD(learning_rate=0.05, momentum=0.9, layer_adaptive=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
keras_agd.multi_worker.prepare_model(model)
annealing = keras_agd.Annealing(
    codebook,
    keras_agd.schedules.from_codebook(codebook, 2),
    batch_size=96,
    mosaic_batch_size=384,
    seed=0,
)

epochs = []


def misuse():
    """Mistakes that would train items twice or on other items than the peers: refused."""
    errors = []
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    other_seed = keras_agd.Annealing(codebook, annealing.schedule, 96, 384, seed=task)
    context = tf.distribute.InputContext(2, task, 2)
    for callback, dataset in (
        (annealing, lambda: keras_agd.mosaic_dataset(annealing, x, y).with_options(options)),
        (
            annealing,
            lambda: strategy.experimental_distribute_dataset(
                keras_agd.mosaic_dataset(annealing, x, y)
            ),
        ),
        (annealing, lambda: keras_agd.mosaic_dataset(annealing, x, y, input_context=context)),
        (other_seed, lambda: keras_agd.mosaic_dataset(other_seed, x, y)),
    ):
        try:
            model.fit(dataset(), epochs=1, verbose=0, callbacks=[callback])
        except ValueError as error:
            errors.append(str(error))
    return errors


errors = misuse() if config.get("misuse") else []
if config.get("input_context"):
    # Each worker reads only its share of each batch.
    data = strategy.distribute_datasets_from_function(
        lambda context: keras_agd.mosaic_dataset(annealing, x, y, input_context=context)
    )
else:
    data = keras_agd.mosaic_dataset(annealing, x, y)


class Record(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        plan = annealing.plan
        start = plan.skip_batches * plan.batch_size
        rows, weights = plan.rows[start:], plan.weights[start:]
        n = len(x)
        inputs = np.where(
            (rows >= n)[:, None], codebook.codewords_[np.maximum(rows - n, 0)], x[rows % n]
        )
        del seen[:]
        self.planned = fingerprints(inputs.astype(np.float32), weights)
        self.batches = (len(rows), plan.batch_size)

    def on_epoch_end(self, epoch, logs=None):
        epochs.append(
            {
                "epoch": epoch,
                "logs": {key: float(value) for key, value in logs.items()},
                "seen": list(seen),
                "planned": self.planned,
                "items_and_batch_size": self.batches,
            }
        )


callbacks = [annealing, keras_agd.LayerFactorLogger(), Record()]
if config.get("backup"):
    callbacks.append(keras_agd.multi_worker.backup_and_restore(config["backup"]))
model.fit(data, epochs=4, verbose=0, callbacks=callbacks)
optimizer = model.optimizer
with open(os.path.join(out, f"result-{task}.json"), "w") as file:
    json.dump(
        {
            "epochs": epochs,
            "errors": errors,
            "built_codebook": bool(built),
            "weights": [w.tolist() for w in model.get_weights()],
            "annealing": optimizer.annealing_state.read(),
            "iterations": int(optimizer.iterations.numpy()),
        },
        file,
    )
