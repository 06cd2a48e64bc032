"""Keras callbacks that time training, shared by the benchmark scripts."""

import time

import keras


class StepTimes(keras.callbacks.Callback):
    """The wall time at the end of every training step, with the step's global index.

    `steps[i]` is the optimizer step that batch `i` of the fit trained (the step counter
    before it), `times[i]` the `perf_counter()` at its `on_train_batch_end`; `begin` is
    the time `fit` started. The wall time of a step is the difference of consecutive
    end times, so it includes the wait for its batch.
    """

    def __init__(self):
        super().__init__()
        self.steps, self.times = [], []

    def on_train_begin(self, logs=None):
        self.begin = time.perf_counter()
        self.next_step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())
        self.steps.append(self.next_step)
        self.next_step += 1

    def step_seconds(self):
        """`{step: seconds}` for every step after the first of the fit."""
        return {
            step: end - previous
            for step, previous, end in zip(
                self.steps[1:], self.times[:-1], self.times[1:], strict=True
            )
        }


class EpochClock(keras.callbacks.Callback):
    """Per epoch: the seconds from its start to the end of its last step."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = self.end = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(self.end - self.start)
