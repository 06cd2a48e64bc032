"""Callbacks: the annealing writer and the layer-factor logger.

Both find their optimizer by walking the `inner_optimizer` chain, so they work inside
the `LossScaleOptimizer` that `compile` adds under a `mixed_float16` policy.
"""

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from keras_agd import _collective, _validation, multi_worker
from keras_agd._keras_adapter import FitLoop, forget_train_function, guard_train_function
from keras_agd._wrapper import find_in_chain
from keras_agd.agd import AGD, NOT_ANNEALING
from keras_agd.annealing import MODES, plan_epoch
from keras_agd.layer_adaptive import LayerAdaptive
from keras_agd.schedules import AnnealingSchedule

# A row no plan ever holds: the pipeline raises NOT_FED when it reads one.
NOT_FED_ROW = -1
NOT_FED = (
    "keras_agd.mosaic_dataset(annealing, ...) was read without its `Annealing` callback "
    "in `model.fit(..., callbacks=[annealing])`: only one preview batch can be read "
    "outside it. The callback decides what each epoch holds."
)


class Annealing(keras.callbacks.Callback):
    """Anneals ε from epoch to epoch: the single writer of AGD's annealing state.

    At the start of every epoch this callback takes the next ε of `schedule`,
    computes the codebook frontier at that ε (eq. 6 of the paper) and plans the
    epoch: which codewords and samples, in which order, with which weights and
    batch size. `keras_agd.mosaic_dataset(annealing, ...)` reads that plan; the
    `AGD` optimizer reads the phase from its annealing state, which this callback
    writes and every save of the optimizer carries. At the end of the epoch it adds
    `epsilon`, `mosaic_phase` (1 on codewords, 0 on the real samples),
    `frontier_size`, `annealing_step` and `learning_rate` to the logs; list it
    before `CSVLogger` / `TensorBoard` to record them.

    The modes (what an epoch holds):

    - `"weighted"`: the frontier at ε, each codeword weighted by the number of
      samples it stands for (ω, normalized to a mean weight of 1), each remaining
      sample with weight 1: the exact mosaic risk of eq. (6). An epoch costs the
      frontier size, not N.
    - `"proportional"`: as many items as the frontier holds, drawn from it with
      replacement with probability proportional to ω, each with weight 1. The
      same expected loss as `"weighted"` (eq. 6), without its weight variance:
      heavy codewords come up often instead of with a large weight, which keeps
      large learning rates stable.
    - `"per_sample"`: Algorithm 1 literally: every sample replaced by its codeword at
      ε (N items per epoch, weight 1).
    - `"random_subset"`: a control for benchmarks, not a method: a uniformly random
      subset of the real samples of the frontier's size, with the same batch sizes
      and phases. It tells "codewords help" apart from "few samples early help".

    Items are shuffled with a seed derived from `seed` and the annealing step, so a
    resumed run (`BackupAndRestore`, epoch- or batch-level, or `load_model`) sees
    the same remaining batches as an uninterrupted one. Each epoch runs exactly its
    planned number of batches and the progress bar shows it; `steps_per_epoch`
    cannot be used.

    Args:
        codebook: A fitted `HierarchicalCodebook`.
        schedule: An `AnnealingSchedule` mapping the annealing step to ε (e.g.
            `keras_agd.schedules.from_codebook(codebook, mosaic_epochs=6)`).
        batch_size: Batch size of the regular phase. Defaults to `128`.
        mosaic_batch_size: Batch size while an epoch holds codewords.
            Defaults to `1024`.
        mode: `"weighted"`, `"proportional"`, `"per_sample"` or
            `"random_subset"`. Defaults to `"weighted"`.
        criterion: Node error compared with ε: `"mean"` or `"max"`.
            Defaults to `"mean"`.
        pad_batches: Pads each epoch's last batch with zero-weight items so that all
            batches of a phase have one shape: with `jit_compile=True`, XLA then
            compiles once per phase instead of once per epoch. Keras averages the loss
            over the padded batch, so that batch's step is scaled by its share of
            real items. Defaults to `True`.
        seed: Integer seed of the epochs' order; `None` draws one from NumPy's global
            RNG (which `keras.utils.set_random_seed` sets). Defaults to `None`.
        mosaic_batches: Batches of every mosaic epoch, so that each level of the
            codebook gets the same number of optimizer steps however few codewords
            it holds. `None` makes a mosaic epoch one pass over the frontier (eq. 6
            as written: one step per epoch for a frontier of tens of codewords at
            batch 1024). With a number, `"proportional"` draws that many batches
            by ω, `"weighted"` and `"random_subset"` repeat shuffled passes over
            their items (the last one cut short). Not for `"per_sample"`, whose
            epochs hold every sample. Defaults to `None`.

    Example:

    >>> annealing = keras_agd.Annealing(
    ...     codebook, keras_agd.schedules.from_codebook(codebook, mosaic_epochs=6),
    ...     batch_size=128, mosaic_batch_size=1024)
    >>> train = keras_agd.mosaic_dataset(annealing, x_train, y_train)
    >>> model.fit(train, epochs=9, callbacks=[annealing, keras.callbacks.CSVLogger("log.csv")])
    """

    def __init__(
        self,
        codebook,
        schedule,
        batch_size=128,
        mosaic_batch_size=1024,
        mode="weighted",
        criterion="mean",
        pad_batches=True,
        seed=None,
        mosaic_batches=None,
    ):
        super().__init__()
        if not hasattr(codebook, "sample_node_"):
            raise ValueError(
                "`codebook` must be a fitted keras_agd.HierarchicalCodebook. "
                f"Received: codebook={codebook!r}"
            )
        if not isinstance(schedule, AnnealingSchedule):
            raise TypeError(
                "`schedule` must be a keras_agd.schedules.AnnealingSchedule. "
                f"Received: schedule={schedule!r}"
            )
        batch_size = _validation.check_integer("batch_size", batch_size, 1)
        mosaic_batch_size = _validation.check_integer("mosaic_batch_size", mosaic_batch_size, 1)
        pad_batches = _validation.check_bool("pad_batches", pad_batches)
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
        codebook._node_errors(criterion)  # Validates `criterion` now, not mid-training.
        if mosaic_batches is not None:
            mosaic_batches = _validation.check_integer("mosaic_batches", mosaic_batches, 1)
            if mode == "per_sample":
                raise ValueError(
                    "`mosaic_batches` cannot be used with mode='per_sample': its epochs hold "
                    "every sample (N items), each replaced by its codeword. Use "
                    "mode='proportional' or 'weighted' for epochs of a fixed number of steps."
                )
        if seed is None:
            # The legacy global RNG is the one `keras.utils.set_random_seed` seeds.
            seed = int(np.random.randint(2**31 - 1))  # noqa: NPY002
        elif not (_validation.is_integer(seed) and seed >= 0):
            raise ValueError(f"`seed` must be an integer >= 0 or None. Received: seed={seed!r}")
        self.codebook = codebook
        self.schedule = schedule
        self.batch_size = batch_size
        self.mosaic_batch_size = mosaic_batch_size
        self.mode = mode
        self.criterion = criterion
        self.pad_batches = pad_batches
        self.seed = int(seed)
        self.mosaic_batches = mosaic_batches
        self._epsilon(0)  # A schedule that fails at its first step fails here, not in `fit`.
        self._has_pipeline = False
        self._regular_batches = None
        self._optimizer = None
        self._plan = None
        self._fed = False
        self._fit_loop = None
        self._workers = 1
        self._input_context = None

    # --- What the pipeline reads.

    def attach(self, regular_batches=None, input_context=None):
        """Registers the `mosaic_dataset` reading this callback's plans.

        Args:
            regular_batches: Batches per regular epoch when the pipeline takes the
                regular phase from a user's `tf.data.Dataset`, else `None`.
            input_context: The `tf.distribute.InputContext` the pipeline takes its
                workers' shares for, else `None`.
        """
        self._has_pipeline = True
        self._regular_batches = regular_batches
        self._input_context = input_context

    @property
    def plan(self):
        """The `EpochPlan` of the current epoch (`None` before the first one)."""
        return self._plan

    def feed(self):
        """What the pipeline reads when an epoch's data starts.

        Returns:
            `rows` and `weights` of the batches still to train, the batch size, the
            batches to skip in a user's regular dataset (after a resume), whether the
            epoch holds codewords, and whether it comes from the plan (else from that
            dataset). Outside `fit` it is a preview (the first batch of the first
            epoch) followed by a batch of rows that the pipeline refuses with
            `NOT_FED`, so reading on fails loudly.
        """
        plan = self._plan
        if self._optimizer is None or plan is None:
            preview = self._plan_for(0, 0)
            size = preview.batch_size
            rows = np.concatenate(
                [np.resize(preview.rows[:size], size), np.full(size, NOT_FED_ROW, np.int64)]
            )
            weights = np.concatenate([np.resize(preview.weights[:size], size), np.zeros(size)])
            weights = weights.astype(np.float32)
            mosaic = np.bool_(preview.mosaic)
            return rows, weights, np.int64(size), np.int64(0), mosaic, np.bool_(True)
        self._fed = True
        from_plan = plan.mosaic or self._regular_batches is None
        start = plan.skip_batches * plan.batch_size if from_plan else len(plan.rows)
        return (
            plan.rows[start:],
            plan.weights[start:],
            np.int64(plan.batch_size),
            np.int64(plan.skip_batches),
            np.bool_(plan.mosaic),
            np.bool_(from_plan),
        )

    # --- Keras hooks: the single writer.

    def on_train_begin(self, logs=None):
        optimizer = find_in_chain(self.model.optimizer, AGD)
        if optimizer is None:
            raise ValueError(
                "keras_agd.Annealing needs the model compiled with keras_agd.AGD (its "
                "learning rate follows the phase, and it carries the annealing state "
                f"through saves). Received: optimizer={self.model.optimizer!r}"
            )
        if not self._has_pipeline:
            raise ValueError(
                "No keras_agd.mosaic_dataset(annealing, ...) reads this Annealing "
                "callback: train on the dataset it makes."
            )
        # Without the fit loop (a custom loop, or a Keras release that moved it), epochs
        # end when their data ends and `on_epoch_end` checks their length.
        self._fit_loop = FitLoop.find()
        if self._fit_loop is not None and self._fit_loop.steps_per_epoch is not None:
            raise ValueError(
                "`steps_per_epoch` cannot be used with keras_agd.mosaic_dataset: each "
                "epoch's length follows the annealing schedule. "
                f"Received: steps_per_epoch={self._fit_loop.steps_per_epoch}"
            )
        self._workers = multi_worker.worker_count(self.model.distribute_strategy)
        if self._workers > 1:
            self._check_sharded()
        optimizer.annealing_state.writer = self
        if self._fit_loop is not None:
            # AGD checks for its writer when the step is traced; this catches a later
            # `fit` that reuses the step after an exception ended this one.
            guard_train_function(self.model, self._check_same_fit)
        if optimizer.loss_threshold is not None:
            optimizer.loss_metric = next((m for m in self.model.metrics if m.name == "loss"), None)
        self._optimizer = optimizer

    def on_epoch_begin(self, epoch, logs=None):
        state = self._optimizer.annealing_state
        current = state.read()
        iterations = int(self._optimizer.iterations.numpy())
        step, skip = current["step"], 0
        if current["epoch_start_iteration"] >= 0:
            done = iterations - current["epoch_start_iteration"]
            if done >= current["epoch_batches"]:
                step += 1  # The last epoch finished.
            else:
                skip = done  # Resumed inside an epoch: train only its remaining batches.
        plan = self._plan_for(step, skip)
        if self._workers > 1:
            # Each worker plans on its own: a worker with another seed, codebook or
            # backup would silently train on other items than its peers.
            _collective.check_workers_agree(
                self.model.distribute_strategy,
                f"the plan of epoch {epoch}",
                {
                    "epoch": epoch,
                    "annealing_step": step,
                    "skip_batches": skip,
                    "batches": self._epoch_total(plan),
                    "iterations": iterations,
                    "plan": _collective.digest(plan.rows, plan.weights, plan.batch_size),
                },
            )
        if skip == 0:
            state.epoch_start_iteration.assign(iterations)
            state.epoch_batches.assign(self._epoch_total(plan))
        if current["epoch_start_iteration"] < 0 or bool(current["mosaic"]) != plan.mosaic:
            state.phase_start_iteration.assign(iterations - plan.skip_batches)
        state.step.assign(step)
        state.epsilon.assign(plan.epsilon)
        state.mosaic.assign(int(plan.mosaic))
        state.frontier_size.assign(plan.frontier_size)
        self._plan, self._fed, self._checked = plan, False, False
        self._iterations_at_begin = iterations
        if self._fit_loop is not None:
            self._fit_loop.set_epoch_length(self._epoch_length(plan))

    def on_train_batch_begin(self, batch, logs=None):
        # After the first step the pipeline has read this epoch's plan, or never will.
        if batch > 0 and not self._checked:
            self._check_fed()

    def on_epoch_end(self, epoch, logs=None):
        iterations = int(self._optimizer.iterations.numpy())
        ran = iterations - self._iterations_at_begin
        if ran:
            self._check_fed()
        expected = self._epoch_length(self._plan)
        if ran != expected and not self.model.stop_training:
            raise ValueError(
                f"Epoch {epoch} ran {ran} batches but its plan has {expected}: a "
                "transformation after keras_agd.mosaic_dataset (e.g. `.take`, `.filter`, "
                "`.unbatch`, `.repeat`) or `steps_per_epoch` changed the epoch's length. "
                "Apply such transformations inside the pipeline (`augment=`), not after it."
            )
        if logs is not None:
            state = self._optimizer.annealing_state.read()
            rate = self._optimizer.learning_rate.numpy()
            logs.update(
                {
                    "epsilon": state["epsilon"],
                    "mosaic_phase": float(state["mosaic"]),
                    "frontier_size": state["frontier_size"],
                    "annealing_step": state["step"],
                    "learning_rate": float(rate),
                }
            )

    def on_train_end(self, logs=None):
        if self._optimizer is not None:
            self._optimizer.annealing_state.writer = None
            self._optimizer.loss_metric = None
            # A later `fit` without this callback must meet AGD's check again.
            forget_train_function(self.model)
        self._optimizer = None
        self._fit_loop = None

    # --- Helpers.

    def _epsilon(self, step):
        """ε of annealing step `step`, refused unless a number >= 0 not above the last one."""
        name = getattr(self.schedule, "name", None) or type(self.schedule).__name__
        try:
            epsilon = float(np.asarray(keras.ops.convert_to_numpy(self.schedule(step))))
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"The annealing schedule {name} must return one number per step. At step "
                f"{step} it failed: {error}"
            ) from error
        if math.isnan(epsilon) or epsilon < 0:
            raise ValueError(
                f"The annealing schedule {name} gave ε={epsilon} at step {step}; ε must be >= 0."
            )
        if step > 0:
            # Annealing only goes fine-ward: a larger ε would train coarse-ward, and a
            # positive ε after 0 would leave the regular phase.
            previous = float(np.asarray(keras.ops.convert_to_numpy(self.schedule(step - 1))))
            if epsilon > previous:
                raise ValueError(
                    f"The annealing schedule {name} gave ε={epsilon} at step {step}, above "
                    f"ε={previous} at step {step - 1}: ε must never increase from one "
                    "annealing step to the next."
                )
        return epsilon

    def _plan_for(self, step, skip):
        epsilon = self._epsilon(step)
        plan = plan_epoch(
            self.codebook,
            epsilon,
            step,
            mode=self.mode,
            criterion=self.criterion,
            batch_size=self.batch_size,
            mosaic_batch_size=self.mosaic_batch_size,
            pad_batches=self.pad_batches,
            seed=self.seed,
            mosaic_batches=self.mosaic_batches,
        )
        return dataclasses.replace(plan, skip_batches=skip)

    def _check_sharded(self):
        """Refuses a multi-worker `fit` in which workers would not split each batch."""
        replicas = self.model.distribute_strategy.num_replicas_in_sync
        dataset = None if self._fit_loop is None else self._fit_loop.dataset
        context = self._input_context
        if isinstance(dataset, tf.data.Dataset) and context is None:
            policy = dataset.options().experimental_distribute.auto_shard_policy
            if policy != tf.data.experimental.AutoShardPolicy.DATA:
                raise ValueError(
                    f"model.fit on {self._workers} workers would not shard "
                    "keras_agd.mosaic_dataset by data (its auto-shard policy is "
                    f"{policy.name}, not DATA): each worker would train on every item. "
                    "Do not change the dataset's `experimental_distribute` options."
                )
        # TensorFlow's class of `distribute_datasets_from_function`'s datasets, which
        # take their shares in the pipeline (a public base class has both kinds).
        elif (
            type(dataset).__name__ != "DistributedDatasetsFromFunction"
            or context is None
            or context.num_replicas_in_sync != replicas
        ):
            # E.g. `experimental_distribute_dataset` of a dataset built with an input
            # context would split its shares again; without one, workers may get
            # whole batches. Nothing here could tell which.
            raise ValueError(
                f"On {self._workers} workers, pass keras_agd.mosaic_dataset(...) itself to "
                "model.fit, or strategy.distribute_datasets_from_function(lambda context: "
                "keras_agd.mosaic_dataset(..., input_context=context)). Received: "
                f"{type(dataset).__name__}, input_context={context}"
            )
        sizes = {"batch_size": self.batch_size, "mosaic_batch_size": self.mosaic_batch_size}
        uneven = {name: size for name, size in sizes.items() if size % replicas}
        if uneven or not self.pad_batches:
            raise ValueError(
                f"On {replicas} replicas, each batch is split evenly only if both batch "
                f"sizes are multiples of {replicas} and `pad_batches=True`; otherwise "
                "replicas average over different numbers of items and the step differs "
                f"from one machine's. Received: {sizes}, pad_batches={self.pad_batches}"
            )

    def _check_same_fit(self, iterator):
        if self._fit_loop is None or iterator is not self._fit_loop.data_iterator:
            raise ValueError(NOT_ANNEALING)

    def _check_fed(self):
        self._checked = True
        if not self._fed:
            raise ValueError(
                "model.fit trained without reading keras_agd.mosaic_dataset(annealing, ...) "
                "for this epoch: pass the dataset it makes to `fit` (not arrays or another "
                "dataset) when the Annealing callback is in `callbacks`."
            )

    def _epoch_total(self, plan):
        if not plan.mosaic and self._regular_batches is not None:
            return self._regular_batches
        return plan.total_batches

    def _epoch_length(self, plan):
        return self._epoch_total(plan) - plan.skip_batches


class LayerFactorLogger(keras.callbacks.Callback):
    """Adds each layer's learning-rate factor `t_l / t` to the epoch logs.

    At the end of every epoch, the factors of eq. (9) used in the last update
    step are added to `logs` as `f"{prefix}{group}"`, where `group` is the
    layer's name in the optimizer (e.g. `"layer_factor/sequential/dense"`).
    They then show up in `History`, the progress bar and, if this callback comes
    before `keras.callbacks.TensorBoard` in the `callbacks` list, TensorBoard, so
    that one can see which layers the method sped up.

    Works with any optimizer that exposes a `layer_factors` dict, found on
    `model.optimizer` or on the optimizers it wraps (`inner_optimizer`): a
    `keras_agd.LayerAdaptive`, also inside `AGD` or the `LossScaleOptimizer` that
    `compile` adds under a `mixed_float16` policy.

    Args:
        prefix: String put before each group name in the log keys.
            Defaults to `"layer_factor/"`.

    Example:

    ```python
    model.compile(optimizer=keras_agd.LayerAdaptive(keras.optimizers.SGD(0.01)))
    history = model.fit(
        x, y, epochs=5,
        callbacks=[keras_agd.LayerFactorLogger(), keras.callbacks.TensorBoard("logs")],
    )
    history.history["layer_factor/sequential/dense"]  # one value per epoch
    ```
    """

    def __init__(self, prefix="layer_factor/"):
        super().__init__()
        if not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string. Received: prefix={prefix!r}")
        self.prefix = prefix

    def on_train_begin(self, logs=None):
        self._optimizer = find_in_chain(self.model.optimizer, LayerAdaptive)
        if self._optimizer is None:
            raise ValueError(
                "LayerFactorLogger needs a model compiled with an optimizer that has "
                "layer-specific rates, e.g. keras_agd.LayerAdaptive(keras.optimizers.SGD()). "
                f"Received: optimizer={self.model.optimizer!r}"
            )

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for group, factor in self._optimizer.layer_factors.items():
            logs[f"{self.prefix}{group}"] = factor
