"""Where annealing stands (saved with the model) and what each epoch trains on.

Two pieces, both written only by the `keras_agd.Annealing` callback:

- `AnnealingState`: the annealing step, ε, phase and the bookkeeping of a resume, as
  variables of the `AGD` optimizer, so that `model.save`, checkpoints and
  `keras.callbacks.BackupAndRestore` carry them. AGD's learning rate reads the phase.
- `EpochPlan`: the items of one epoch (codewords and samples, in order, with their
  weights and batch size), computed in NumPy from the codebook's frontier (eq. 6) and
  read by `keras_agd.mosaic_dataset`.
"""

import dataclasses
import math

import keras
import numpy as np

MODES = ("weighted", "proportional", "per_sample", "random_subset")


class AnnealingState:
    """The annealing state, kept as variables of the optimizer that hosts it.

    Args:
        host: The `keras.optimizers.Optimizer` whose variables hold the state
            (the `AGD` optimizer), so that every save of the optimizer carries it.

    Attributes:
        writer: The `keras_agd.Annealing` callback writing this state during the
            current `fit`, else `None`.
    """

    def __init__(self, host):
        def variable(name, value, dtype="int64"):
            return host.add_variable(
                (),
                initializer=keras.initializers.Constant(value),
                dtype=dtype,
                aggregation="only_first_replica",
                name=name,
            )

        self.step = variable("annealing_step", 0)
        self.epsilon = variable("epsilon", math.inf, "float32")
        self.mosaic = variable("mosaic_phase", 1)
        self.frontier_size = variable("frontier_size", 0)
        # Optimizer iteration at which the current step's epoch began (-1: none yet),
        # and its planned number of batches: together they tell a finished epoch from
        # one interrupted by a batch-level backup.
        self.epoch_start_iteration = variable("epoch_start_iteration", -1)
        self.epoch_batches = variable("epoch_batches", 0)
        self.phase_start_iteration = variable("phase_start_iteration", 0)
        self.decay_start_iteration = variable("decay_start_iteration", -1)
        self.writer = None

    def read(self):
        """The state as a dict of Python numbers."""
        names = (
            "step",
            "epsilon",
            "mosaic",
            "frontier_size",
            "epoch_start_iteration",
            "epoch_batches",
            "phase_start_iteration",
            "decay_start_iteration",
        )
        values = {name: getattr(self, name).numpy() for name in names}
        return {name: value.item() for name, value in values.items()}


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """The items of one epoch, in training order.

    Attributes:
        step: The annealing step (0-based).
        epsilon: The quantization error ε of the step.
        mosaic: Whether the epoch trains on codewords (the mosaic phase).
        frontier_size: Distinct items of the epoch, without padding.
        rows: int64 array; `r < n_samples` is sample `r`, `r >= n_samples` is the
            codeword of node `r - n_samples`. Padded to whole batches if asked.
        weights: float32 array, the sample weight of each row (0 for padding).
        batch_size: Items per batch.
        skip_batches: Leading batches already trained before a resume.
    """

    step: int
    epsilon: float
    mosaic: bool
    frontier_size: int
    rows: np.ndarray
    weights: np.ndarray
    batch_size: int
    skip_batches: int = 0

    @property
    def total_batches(self):
        return -(-len(self.rows) // self.batch_size)


def plan_epoch(
    codebook,
    epsilon,
    step,
    *,
    mode,
    criterion,
    batch_size,
    mosaic_batch_size,
    pad_batches,
    seed,
    mosaic_batches=None,
):
    """Computes the items of the epoch at annealing step `step` and error `epsilon`.

    Args:
        codebook: A fitted `HierarchicalCodebook`.
        epsilon: The step's quantization error.
        step: The annealing step; with `seed`, it seeds the shuffle.
        mode: `"weighted"`, `"proportional"`, `"per_sample"` or `"random_subset"`
            (see `Annealing`).
        criterion: `"mean"` or `"max"`.
        batch_size: Batch size once the epoch holds no codeword.
        mosaic_batch_size: Batch size while it holds codewords.
        pad_batches: Whether to pad the last batch with zero-weight items.
        seed: Integer seed of the epoch's order.
        mosaic_batches: Batches of a mosaic epoch, or `None` for one pass over
            the frontier (see `Annealing`).

    Returns:
        An `EpochPlan`.
    """
    n_samples = len(codebook.sample_node_)
    rng = np.random.default_rng([seed, step])
    if mode == "per_sample":
        chosen = codebook.quantize(np.arange(n_samples), epsilon, criterion)
        mosaic = bool((chosen >= 0).any())
        rows = np.where(chosen >= 0, n_samples + chosen, np.arange(n_samples))
        weights = np.ones(n_samples, np.float32)
        frontier_size = n_samples
    else:
        frontier = codebook.frontier(epsilon, criterion)
        mosaic = len(frontier.nodes) > 0
        frontier_size = frontier.size
        # Items of a mosaic epoch of fixed length, else one pass over the frontier.
        count = mosaic_batches * mosaic_batch_size if mosaic_batches and mosaic else None
        if mode == "weighted":
            rows = np.concatenate([n_samples + frontier.nodes, frontier.samples])
            omega = np.concatenate([frontier.node_weights, np.ones(len(frontier.samples))])
            # Mean weight 1 keeps the loss scale, hence the learning rate, comparable.
            weights = (omega * frontier_size / n_samples).astype(np.float32)
        elif mode == "proportional":
            # Items drawn with probability proportional to ω, each with weight 1: the
            # same expected loss as eq. (6), without the variance of heavy weights.
            items = np.concatenate([n_samples + frontier.nodes, frontier.samples])
            omega = np.concatenate([frontier.node_weights, np.ones(len(frontier.samples))])
            rows = rng.choice(items, size=count or frontier_size, p=omega / omega.sum())
            weights = np.ones(len(rows), np.float32)
        elif mode == "random_subset":
            rows = rng.choice(n_samples, size=frontier_size, replace=False)
            weights = np.ones(frontier_size, np.float32)
        else:
            raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
        if count and mode != "proportional":
            rows, weights = _passes(rows, weights, count, rng)
    order = rng.permutation(len(rows))
    rows, weights = rows[order].astype(np.int64), weights[order]
    size = mosaic_batch_size if mosaic else batch_size
    if pad_batches and len(rows) % size:
        padding = size - len(rows) % size
        rows = np.concatenate([rows, np.full(padding, rows[0])])
        weights = np.concatenate([weights, np.zeros(padding, np.float32)])
    return EpochPlan(
        step=int(step),
        epsilon=float(epsilon),
        mosaic=mosaic,
        frontier_size=int(frontier_size),
        rows=rows,
        weights=weights,
        batch_size=int(size),
    )


def _passes(rows, weights, count, rng):
    """`count` items from shuffled passes over `rows`, the last pass cut short.

    Each pass visits every item once; a cut pass keeps a uniformly random part of it,
    so every item is equally likely to appear and the expected loss is unchanged.
    """
    order = np.concatenate([rng.permutation(len(rows)) for _ in range(-(-count // len(rows)))])
    order = order[:count]
    return rows[order], weights[order]
