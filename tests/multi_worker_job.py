"""One worker of the multi-worker tests (tests/test_multi_worker.py starts it).

Trains a small MLP with AGD (layer-adaptive rates on) on the digits data set, under
`MultiWorkerMirroredStrategy` when `TF_CONFIG` is set, else on one device, and writes
`result-<worker>.json`: the logs of each epoch, the final weights, the step the run
started from, and for every step it trained a fingerprint of each item this worker
trained on, beside the fingerprints of the whole batch `Curriculum.batch(step)`, so
that the test can check which share of which batch each worker trained.

    python multi_worker_job.py '{"out": DIR, "misuse": true, "backup": DIR, "torn_save": [0, 3]}'

`misuse` first builds streams that must be refused; `input_context` trains on
`distribute_datasets_from_function` (each worker reads its share only); `backup` adds
the chief's backup after every step; `torn_save: [worker, step]` makes that worker
die halfway through writing the backup taken when the optimizer is at that step;
`extra_steps: n` trains n more steps in a second `fit` and records the weights again.
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

STEPS_PER_EPOCH = 4
EPOCHS = 4

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


def make_curriculum(seed):
    return keras_agd.Curriculum(
        x, y, schedule=2, codebook=codebook, batch_size=96, mosaic_batch_size=384, seed=seed
    )


curriculum = make_curriculum(0)


def fingerprints(inputs, weights):
    """One string per item: its input bytes and weight."""
    return [
        hashlib.blake2b(row.tobytes() + np.float32(w).tobytes(), digest_size=8).hexdigest()
        for row, w in zip(inputs, weights)
    ]


def planned(step):
    """The fingerprints of the whole batch of `step`, from `Curriculum.batch`."""
    rows, weights = curriculum.batch(step)
    n = len(x)
    codewords = codebook.codewords_[np.maximum(rows - n, 0)]
    inputs = np.where((rows >= n)[:, None], codewords, x[rows % n])
    return fingerprints(inputs.astype(np.float32), weights)


trained = []  # [step, fingerprints of this worker's items] for every step trained.


def record(step, inputs, weights):
    trained.append([int(step), fingerprints(inputs, weights)])
    return np.int64(0)


class RecordingModel(keras.Sequential):
    def train_step(self, data):
        inputs, _, weights = data
        # The step counter before this step's update (ordered by the graph's control
        # dependencies): the step whose batch this is.
        tf.numpy_function(record, [self.optimizer.iterations, inputs, weights], tf.int64)
        return super().train_step(data)

    def save_weights(self, filepath, overwrite=True, **kwargs):
        if config.get("torn_save") != [task, int(self.optimizer.iterations.numpy())]:
            return super().save_weights(filepath, overwrite=overwrite, **kwargs)
        # Dies halfway through writing the backup: a torn file, as a kill leaves it.
        whole = filepath.removesuffix(".weights.h5") + ".whole.weights.h5"
        super().save_weights(whole, overwrite=True, **kwargs)
        with open(whole, "rb") as source, open(filepath, "wb") as target:
            content = source.read()
            target.write(content[: len(content) // 2])
        os.kill(os.getpid(), signal.SIGKILL)


def make_model(curriculum):
    model = RecordingModel(
        [keras.Input((64,)), keras.layers.Dense(32, "relu"), keras.layers.Dense(10)]
    )
    model.compile(
        optimizer=keras_agd.AGD(curriculum, learning_rate=0.05, momentum=0.9, layer_adaptive=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # The recording above calls back into Python.
        jit_compile=False,
    )
    return model


def misuse():
    """Streams that would train other items than the peers: refused on every worker."""
    errors = []
    other = make_curriculum(task)  # Seed 0 on the chief, 1 on worker 1.
    with strategy.scope():
        other_model = make_model(other)
    for stream in (
        # Every worker's stream and AGD of its own curriculum (e.g. `seed=None` with
        # an unseeded RNG): only the workers' collective check can tell.
        lambda: other.dataset(other_model),
        # Worker 1 alone streams another curriculum than its AGD's: it must not leave
        # the chief waiting in the collective check.
        lambda: other.dataset(model),
        # The first case again, the stream built in distribute_datasets_from_function.
        lambda: strategy.distribute_datasets_from_function(
            lambda context: other.dataset(other_model, input_context=context)
        ),
    ):
        try:
            stream()
            errors.append(None)
        except ValueError as error:
            errors.append(str(error))
    return errors


keras.utils.set_random_seed(0)
with strategy.scope():
    model = make_model(curriculum)
keras_agd.multi_worker.prepare_model(model)
errors = misuse() if config.get("misuse") else []


def stream(steps_per_epoch):
    if config.get("input_context"):
        # Each worker reads only its share of each batch.
        return strategy.distribute_datasets_from_function(
            lambda context: curriculum.dataset(
                model, steps_per_epoch=steps_per_epoch, input_context=context
            )
        )
    return curriculum.dataset(model, steps_per_epoch=steps_per_epoch)


epochs = []


class Record(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        # After the backup's restore, when there is one (it comes first in `callbacks`).
        self.first_step = int(self.model.optimizer.iterations.numpy())

    def on_epoch_end(self, epoch, logs=None):
        epochs.append({"epoch": epoch, "logs": {key: float(value) for key, value in logs.items()}})


record_callback = Record()
callbacks = [keras_agd.CurriculumLogger(), keras_agd.LayerFactorLogger(), record_callback]
if config.get("backup"):
    callbacks.insert(0, keras_agd.multi_worker.backup_and_restore(config["backup"], save_freq=1))
model.fit(stream(STEPS_PER_EPOCH), epochs=EPOCHS, verbose=0, callbacks=callbacks)
result = {
    "epochs": epochs,
    "errors": errors,
    "built_codebook": bool(built),
    "first_step": record_callback.first_step,
    "weights": [w.tolist() for w in model.get_weights()],
    "iterations": int(model.optimizer.iterations.numpy()),
}
if config.get("extra_steps"):
    model.fit(stream(config["extra_steps"]), epochs=1, verbose=0)
    result["extended_weights"] = [w.tolist() for w in model.get_weights()]
    result["extended_iterations"] = int(model.optimizer.iterations.numpy())
steps = sorted({step for step, _ in trained})
result["trained"] = trained
result["planned"] = {str(step): planned(step) for step in steps}
with open(os.path.join(out, f"result-{task}.json"), "w") as file:
    json.dump(result, file)
