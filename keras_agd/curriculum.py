"""The AGD curriculum: what every training step holds, as a function of the step alone."""

import copy
import hashlib
import json
import math
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_agd import _collective, _validation
from keras_agd.codebook import HierarchicalCodebook
from keras_agd.schedules import AnnealingSchedule, from_codebook
from keras_agd.sources import as_source

MODES = ("weighted", "proportional", "per_sample", "random_subset")
# A schedule that has not reached the real samples after this many levels is refused:
# its mosaic phase would never end in practice.
MAX_LEVELS = 10_000
# The planned mosaic rows are held in memory (12 bytes an item).
MAX_MOSAIC_ITEMS = 1 << 25


class Level(NamedTuple):
    """One mosaic level of a `Curriculum`: a codebook frontier trained for `steps` steps.

    Attributes:
        epsilon: The quantization error ε of the level.
        frontier_size: Distinct items of the frontier at ε (codewords plus samples).
        first_step: The global step at which the level begins.
        steps: Optimizer steps spent on the level.

    Example:

    >>> first, second = curriculum.levels[:2]
    >>> first.first_step, second.first_step == first.first_step + first.steps
    (0, True)
    """

    epsilon: float
    frontier_size: int
    first_step: int
    steps: int


class Curriculum:
    """The whole AGD run, planned before training: the batch of every step.

    AGD trains on codebook frontiers of decreasing quantization error ε (the mosaic
    phase, on the mosaic risk of [eq. (6)](agd.md#mosaic-risk)), then on the real samples
    (the regular phase). The curriculum fixes all of it up front: the ε of each
    mosaic level, the items of its batches in order with their weights, and the steps
    it lasts; after the last level, shuffled passes over the real samples. So the
    batch of global step `s` is a pure function of `s`, and the only state of a run
    is the optimizer's step counter (`optimizer.iterations`), which `model.save`,
    checkpoints and `keras.callbacks.BackupAndRestore` already carry. Every batch is
    full: no zero-weight padding, so the loss and metrics Keras reports are those of
    the items the batch really holds.

    The modes (what a mosaic level holds):

    - `"weighted"`: the frontier at ε, each codeword weighted by the number of
      samples it stands for (ω, normalized to a mean weight of 1 over the frontier),
      each remaining sample with weight 1: the mosaic risk of eq. (6).
    - `"proportional"`: items drawn from the frontier with replacement, with
      probability proportional to ω, each with weight 1: the same expected loss as
      eq. (6) without the variance of heavy weights.
    - `"per_sample"`: Algorithm 1 literally: every sample replaced by its codeword at
      ε (N items a pass, weight 1).
    - `"random_subset"`: a control for benchmarks, not a method: a uniformly random
      subset of the real samples of the frontier's size, weight 1.

    A level lasts `steps_per_level` steps, or one pass over its items when that is
    `None`. Its batches are shuffled passes over its items; the last batch is filled
    from the next shuffled pass (uniformly random items), so that the expected loss of
    a level is eq. (6)'s while every batch holds `mosaic_batch_size` real items.

    Args:
        x: The training samples, random-access: an array (kept in its own dtype, cast
            per batch), an `np.memmap`, a tfds `data_source`, any object with
            `__len__` and `__getitem__`, or a `keras_agd.Source`. Only what a batch
            needs is read.
        y: Integer class labels of shape `(N,)`, unless `x` holds them (see
            `keras_agd.Source`). Defaults to `None`.
        schedule: An `AnnealingSchedule` mapping the level to ε, or an integer `n`:
            `keras_agd.schedules.from_codebook(codebook, n)`, `n` mosaic levels from
            the codebook's level 1 down to its floor. Defaults to `6`.
        codebook: A fitted `HierarchicalCodebook` of `x` (e.g. loaded from a file;
            it is checked against `x`), an unfitted one to fit on `x`, or `None` for
            `HierarchicalCodebook(random_state=seed)` fit on `x`. Defaults to `None`.
        batch_size: Batch size of the regular phase, at most N (a larger batch would
            repeat samples). Defaults to `None`: 128, or N if smaller.
        mosaic_batch_size: Batch size of the mosaic phase, at most N. Defaults to
            `None`: 1024, or N if smaller.
        mode: `"weighted"`, `"proportional"`, `"per_sample"` or `"random_subset"`.
            Defaults to `"weighted"`.
        criterion: Node error compared with ε: `"mean"` or `"max"`.
            Defaults to `"mean"`.
        steps_per_level: Steps of every mosaic level, so that each level gets the
            same number of optimizer steps however few codewords it holds; `None`
            makes a level one pass over its items. Defaults to `None`.
        seed: Integer seed of the order of every batch (and of the codebook when this
            class fits it); `None` draws one from NumPy's global RNG, which
            `keras.utils.set_random_seed` seeds. Defaults to `None`.
        x_key: Key of the input in dict records (tfds: `"image"`). Defaults to `None`.
        y_key: Key of the label in dict records (tfds: `"label"`). Defaults to `None`.

    Attributes:
        codebook: The fitted `HierarchicalCodebook`.
        source: The `keras_agd.Source` of the training samples.
        levels: Tuple of `Level`, the mosaic levels in training order.
        mosaic_steps: Steps of the mosaic phase; step `mosaic_steps` is the first on
            the real samples.
        steps_per_epoch: Steps of one pass over the real samples at `batch_size`:
            the length of a Keras epoch of `dataset()`.
        digest: An integer identifying the curriculum (codebook data, schedule, mode,
            batch sizes, steps, seed); `AGD` saves it, so that a run cannot resume on
            another curriculum.

    Example:

    >>> curriculum = keras_agd.Curriculum(x_train, y_train, schedule=6)
    >>> model.compile(optimizer=keras_agd.AGD(curriculum, learning_rate=0.05, momentum=0.9),
    ...               loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> model.fit(curriculum.dataset(model), epochs=3, validation_data=(x_test, y_test))
    """

    def __init__(
        self,
        x,
        y=None,
        *,
        schedule=6,
        codebook=None,
        batch_size=None,
        mosaic_batch_size=None,
        mode="weighted",
        criterion="mean",
        steps_per_level=None,
        seed=None,
        x_key=None,
        y_key=None,
    ):
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
        if criterion not in ("mean", "max"):
            raise ValueError(
                f"`criterion` must be 'mean' or 'max'. Received: criterion={criterion!r}"
            )
        if steps_per_level is not None:
            steps_per_level = _validation.check_integer(
                "steps_per_level", steps_per_level, 1, 1 << 24
            )
        if seed is None:
            # The legacy global RNG is the one `keras.utils.set_random_seed` seeds.
            seed = int(np.random.randint(2**31 - 1))  # noqa: NPY002
        seed = _validation.check_integer("seed", seed, 0, 2**31 - 1)
        source = as_source(x, y, x_key=x_key, y_key=y_key)
        if source.labels is None:
            raise ValueError(
                "keras_agd.Curriculum needs class labels (the codebook clusters each class "
                "on its own): pass `y`, or `y_key` for dict records."
            )
        batch_size = _batch_size("batch_size", batch_size, 128, source.n_samples)
        mosaic_batch_size = _batch_size(
            "mosaic_batch_size", mosaic_batch_size, 1024, source.n_samples
        )
        # A snapshot: refitting the caller's codebook later must not change this plan.
        self.codebook = copy.copy(_fitted_codebook(codebook, source, seed))
        self.source = source
        self.schedule = _schedule(schedule, self.codebook)
        self.batch_size = batch_size
        self.mosaic_batch_size = mosaic_batch_size
        self.mode = mode
        self.criterion = criterion
        self.steps_per_level = steps_per_level
        self.seed = seed
        self.levels, self._rows, self._weights = self._plan()
        _check_schedule_fits(self.schedule, self.codebook, self.levels, criterion)
        self.mosaic_steps = sum(level.steps for level in self.levels)
        self.steps_per_epoch = -(-source.n_samples // batch_size)
        self.digest = int.from_bytes(
            hashlib.sha256(json.dumps(self._identity(), sort_keys=True).encode()).digest()[:6],
            "big",
        )

    # --- The plan as a function of the step.

    @property
    def max_step(self):
        """The last step whose sample positions fit in int64 (about 2**63 / batch_size)."""
        return self.mosaic_steps + (2**63 - 1) // self.batch_size - 1

    def level_of(self, step):
        """The mosaic level index of global step `step`, or `None` in the regular phase."""
        step = _validation.check_integer("step", step, 0, self.max_step)
        if step >= self.mosaic_steps:
            return None
        firsts = [level.first_step for level in self.levels]
        return int(np.searchsorted(firsts, step, side="right")) - 1

    def epsilon(self, step):
        """ε of global step `step`: the level's, or `0.0` on the real samples."""
        level = self.level_of(step)
        return 0.0 if level is None else self.levels[level].epsilon

    def phase(self, step):
        """`"mosaic"` or `"regular"` at global step `step`."""
        return "regular" if self.level_of(step) is None else "mosaic"

    def frontier_size(self, step):
        """Distinct items of the frontier trained at `step` (N in the regular phase)."""
        level = self.level_of(step)
        return self.source.n_samples if level is None else self.levels[level].frontier_size

    def batch(self, step):
        """The rows and weights of the batch of global step `step`.

        Returns:
            `(rows, weights)`: int64 rows, where `r < N` is sample `r` and `r >= N` is
            the codeword of node `r - N`, and their float32 sample weights.
        """
        step = _validation.check_integer("step", step, 0, self.max_step)
        if step < self.mosaic_steps:
            batch = slice(step * self.mosaic_batch_size, (step + 1) * self.mosaic_batch_size)
            return self._rows[batch].copy(), self._weights[batch].copy()
        rows = regular_rows(self, step).numpy()
        return rows, np.ones(len(rows), np.float32)

    @property
    def mosaic_rows(self):
        """int64 ndarray of shape (mosaic_steps * mosaic_batch_size,): every mosaic row."""
        return self._rows

    @property
    def mosaic_weights(self):
        """float32 ndarray like `mosaic_rows`: their sample weights."""
        return self._weights

    def dataset(self, model, **kwargs):
        """The training stream of this curriculum for `model`: [`keras_agd.mosaic_dataset`][]."""
        from keras_agd.mosaic_dataset import mosaic_dataset

        return mosaic_dataset(self, model, **kwargs)

    def get_config(self):
        """The curriculum's identity and plan, as JSON-compatible values.

        `AGD` keeps it in its own config, so a loaded model knows its phase boundaries
        (and refuses a stream of another curriculum) without the codebook.
        """
        return {
            **self._identity(),
            "digest": self.digest,
            "mosaic_steps": self.mosaic_steps,
            "steps_per_epoch": self.steps_per_epoch,
        }

    @classmethod
    def from_config(cls, config, x, y=None, codebook=None, **source_keys):
        """Rebuilds the curriculum of `config` on the same data (and codebook).

        Args:
            config: A dict from `get_config()` (e.g. `model.optimizer.curriculum_identity`).
            x: The training samples the curriculum was made on.
            y: Their labels, as for the constructor. Defaults to `None`.
            codebook: The same codebook (fitted), or `None` to fit it again with its
                seed (the same codebook only if it was made that way). Defaults to `None`.
            **source_keys: `x_key` / `y_key`, as for the constructor.

        Returns:
            A `Curriculum` whose `digest` is `config["digest"]`, else a `ValueError`.
        """
        curriculum = cls(
            x,
            y,
            schedule=keras.saving.deserialize_keras_object(config["schedule"]),
            codebook=codebook,
            batch_size=config["batch_size"],
            mosaic_batch_size=config["mosaic_batch_size"],
            mode=config["mode"],
            criterion=config["criterion"],
            steps_per_level=config["steps_per_level"],
            seed=config["seed"],
            **source_keys,
        )
        if curriculum.digest != config["digest"]:
            raise ValueError(
                f"The rebuilt curriculum has digest {curriculum.digest}, not "
                f"{config['digest']}: the data or codebook differ from the ones it was made on."
            )
        return curriculum

    def __repr__(self):
        return (
            f"Curriculum(mode={self.mode!r}, levels={len(self.levels)}, "
            f"mosaic_steps={self.mosaic_steps}, steps_per_epoch={self.steps_per_epoch}, "
            f"batch_size={self.batch_size}, mosaic_batch_size={self.mosaic_batch_size}, "
            f"seed={self.seed})"
        )

    # --- Planning.

    def _identity(self):
        return {
            "data": self.codebook.fingerprint_,
            "codebook": _collective.digest(
                self.codebook.codewords_, self.codebook.node_parent_, self.codebook.node_count_
            ),
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "mode": self.mode,
            "criterion": self.criterion,
            "batch_size": self.batch_size,
            "mosaic_batch_size": self.mosaic_batch_size,
            "steps_per_level": self.steps_per_level,
            "seed": self.seed,
            "levels": [[level.epsilon, level.frontier_size, level.steps] for level in self.levels],
        }

    def _plan(self):
        """The mosaic levels, and the rows and weights of all their batches in order."""
        levels, rows, weights, first = [], [], [], 0
        previous = math.inf
        for index in range(MAX_LEVELS + 1):
            epsilon = self._epsilon(index, previous)
            previous = epsilon
            items = self._level_items(index, epsilon) if epsilon > 0 else None
            if items is None:
                return tuple(levels), _concat(rows, np.int64), _concat(weights, np.float32)
            level_rows, level_weights, frontier_size, rng = items
            steps = self.steps_per_level or -(-len(level_rows) // self.mosaic_batch_size)
            count = steps * self.mosaic_batch_size
            if first * self.mosaic_batch_size + count > MAX_MOSAIC_ITEMS:
                raise ValueError(
                    f"The mosaic phase would hold more than {MAX_MOSAIC_ITEMS:,} items "
                    f"(level {index} ends past step {first + steps}): use fewer levels, "
                    "a smaller `mosaic_batch_size` or `steps_per_level`."
                )
            if self.mode != "proportional":
                level_rows, level_weights = _passes(level_rows, level_weights, count, rng)
            else:
                # Items drawn by ω, each with weight 1 (the draw is the weighting).
                level_rows = rng.choice(level_rows, size=count, p=level_weights)
                level_weights = np.ones(count, np.float32)
            levels.append(Level(epsilon, int(frontier_size), first, int(steps)))
            rows.append(level_rows)
            weights.append(level_weights)
            first += steps
        raise ValueError(
            f"The annealing schedule {_name(self.schedule)} has not reached the real samples "
            f"after {MAX_LEVELS} levels (ε={previous:.6g}): give it a `final_epsilon` > 0 "
            "so that the mosaic phase ends."
        )

    def _level_items(self, index, epsilon):
        """The items of level `index`, or `None` once the frontier holds no codeword."""
        codebook, n_samples = self.codebook, self.source.n_samples
        rng = np.random.default_rng([self.seed, index])
        if self.mode == "per_sample":
            chosen = codebook.quantize(np.arange(n_samples), epsilon, self.criterion)
            if not (chosen >= 0).any():
                return None
            rows = np.where(chosen >= 0, n_samples + chosen, np.arange(n_samples))
            return rows, np.ones(n_samples, np.float32), n_samples, rng
        frontier = codebook.frontier(epsilon, self.criterion)
        if len(frontier.nodes) == 0:
            return None
        size = frontier.size
        if self.mode == "random_subset":
            rows = rng.choice(n_samples, size=size, replace=False)
            return rows, np.ones(size, np.float32), size, rng
        rows = np.concatenate([n_samples + frontier.nodes, frontier.samples])
        omega = np.concatenate([frontier.node_weights, np.ones(len(frontier.samples))])
        if self.mode == "proportional":
            return rows, omega / omega.sum(), size, rng
        # Mean weight 1 keeps the loss scale, hence the learning rate, comparable.
        return rows, (omega * size / n_samples).astype(np.float32), size, rng

    def _epsilon(self, index, previous):
        """ε of level `index`, refused unless a number >= 0 not above the previous one."""
        name = _name(self.schedule)
        try:
            epsilon = float(np.asarray(keras.ops.convert_to_numpy(self.schedule(index))))
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"The annealing schedule {name} must return one number per level. At level "
                f"{index} it failed: {error}"
            ) from error
        if math.isnan(epsilon) or epsilon < 0:
            raise ValueError(
                f"The annealing schedule {name} gave ε={epsilon} at level {index}; ε must be >= 0."
            )
        if epsilon > previous:
            raise ValueError(
                f"The annealing schedule {name} gave ε={epsilon} at level {index}, above "
                f"ε={previous} at level {index - 1}: ε must never increase."
            )
        return epsilon


def regular_rows(curriculum, step):
    """The sample rows of regular step `step`, a tensor: positions in shuffled passes.

    Pass `p` over the N samples is TensorFlow's stateless permutation of `(seed, p)`,
    the same in the plan and in the tf.data stream (which calls this in its graph);
    the passes follow each other without a gap, so every batch is full.
    """
    n_samples = curriculum.source.n_samples
    batch = curriculum.batch_size
    first = (tf.cast(step, tf.int64) - curriculum.mosaic_steps) * batch
    positions = first + tf.range(batch, dtype=tf.int64)
    passes = positions // n_samples
    seed = tf.fill([batch], tf.constant(curriculum.seed, tf.int64))
    # The raw op: `tf.random.experimental.index_shuffle` pads a matrix of seeds along
    # the wrong axis (TensorFlow 2.21), and a batch can span two passes.
    return tf.raw_ops.RandomIndexShuffle(
        index=positions % n_samples,
        seed=tf.stack([seed, passes, tf.zeros_like(passes)], axis=1),
        max_index=tf.fill([batch], tf.constant(n_samples - 1, tf.int64)),
        rounds=4,
    )


def _fitted_codebook(codebook, source, seed):
    if codebook is None:
        return HierarchicalCodebook(random_state=seed).fit(source)
    if not isinstance(codebook, HierarchicalCodebook):
        raise TypeError(
            "`codebook` must be a keras_agd.HierarchicalCodebook (fitted, or to be fit on "
            f"`x`) or None. Received: codebook={codebook!r}"
        )
    if not hasattr(codebook, "sample_node_"):
        return codebook.fit(source)
    codebook.verify(source)
    return codebook


def _batch_size(name, size, default, n_samples):
    """`size`, or `default` capped at N; a batch larger than the data would repeat samples."""
    if size is None:
        return min(default, n_samples)
    size = _validation.check_integer(name, size, 1, 1 << 24)
    if size > n_samples:
        raise ValueError(
            f"`{name}` must be at most the number of training samples ({n_samples}): a "
            f"larger batch would hold some samples several times. Received: {name}={size}"
        )
    return size


def _check_schedule_fits(schedule, codebook, levels, criterion):
    """Refuses a schedule of another scale than the codebook's errors.

    Such a schedule (e.g. made from a codebook of data scaled 0 to 255, for data in
    [0, 1]) either selects no codeword at all, so the mosaic phase is empty, or keeps
    every level at the class means (ε above every root's error, yet of the data's
    order of magnitude: an ε a million times above every error is taken as meant).
    """
    errors = codebook._node_errors(criterion)
    roots = codebook.node_level_ == 0
    scale = (
        f"the codebook's node errors ({criterion}) range from {float(errors.min()):.4g} to "
        f"{float(errors.max()):.4g}, its level 1 mean error is "
        f"{codebook.level_summary()[min(1, codebook.n_levels_ - 1)]['mean_error']:.4g}"
    )
    fix = (
        "Was the schedule made for data of another scale? Make it from this codebook, "
        "e.g. schedule=keras_agd.schedules.from_codebook(codebook, 6), or pass an integer."
    )
    if not levels and float(np.asarray(schedule(0))) > 0:  # ε=0 at once: no mosaic phase.
        raise ValueError(
            f"`schedule`: the annealing schedule {_name(schedule)} selects no codeword: its first "
            f"ε={float(np.asarray(schedule(0))):.4g}, and {scale}, so the mosaic phase would be "
            f"empty. {fix}"
        )
    smallest = levels[-1].epsilon if levels else 0.0
    # ε = inf (or far above every error, as 1e30) asks for the class means on purpose.
    on_purpose = smallest >= 1e6 * max(float(errors.max()), _validation.FLOAT32_TINY)
    if codebook.n_levels_ > 1 and float(errors[roots].max()) < smallest and not on_purpose:
        raise ValueError(
            f"`schedule`: the annealing schedule {_name(schedule)} keeps every mosaic level at "
            f"the class means: its smallest ε={levels[-1].epsilon:.4g} is above every class root's "
            f"error, and {scale}. {fix}"
        )


def _schedule(schedule, codebook):
    if isinstance(schedule, AnnealingSchedule):
        return schedule
    if _validation.is_integer(schedule):
        return from_codebook(
            codebook, _validation.check_integer("schedule", schedule, 1, MAX_LEVELS)
        )
    raise TypeError(
        "`schedule` must be a keras_agd.schedules.AnnealingSchedule or the number of mosaic "
        f"levels (an integer >= 1). Received: schedule={schedule!r}"
    )


def _passes(rows, weights, count, rng):
    """`count` items from shuffled passes over `rows`, the last pass cut short.

    Each pass visits every item once; a cut pass keeps a uniformly random part of it,
    so every item is equally likely to appear and the expected loss is unchanged.
    """
    passes = -(-count // len(rows))
    order = np.concatenate([rng.permutation(len(rows)) for _ in range(passes)])[:count]
    return rows[order].astype(np.int64), weights[order].astype(np.float32)


def _concat(arrays, dtype):
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)


def _name(schedule):
    return getattr(schedule, "name", None) or type(schedule).__name__
