"""One-command GPU check of keras-agd: CPU parity, step costs and time to accuracy (XLA on).

On a machine with an NVIDIA GPU, where TensorFlow finds its CUDA libraries
(`pip install "tensorflow[and-cuda]"`), from the repository root; about 6 minutes on one
H200, at most `--deadline` (420 s) of sections plus the start-up (progress lines go to
stderr as each part ends):

    python benchmarks/device_check.py --out docs/images/device_check.json \
        --plot docs/images/device_check.png

    python benchmarks/device_check.py --quick --out /tmp/device_check.json   # CPU smoke run

Every model is compiled with `jit_compile=True`. The sections, each run under its own
time budget (a section that runs out stops, keeps what it measured and says so; one that
fails records its error and the others still run):

1. `parity`: a few steps of AGD in its mosaic phase (`agd_mosaic`), of AGD in its regular
   phase (`agd_regular`: `optimizer.iterations` set to `curriculum.mosaic_steps`), and of
   `LayerAdaptive` around SGD and around Adam, on an MNIST subset, give the same weights
   on the GPU as the same steps on the CPU: two copies of the model with the same initial
   weights and the same batches, one under `tf.device("/GPU:0")`, one under
   `tf.device("/CPU:0")` in the same process. TensorFloat-32 is off for this section (it
   rounds float32 matrix products to 10 mantissa bits on the GPU). A check passes when
   every weight tensor's largest difference is within `--tolerance` of its largest
   magnitude, and each copy ran where it was meant to: the devices of its variables and
   of its compiled step's output, and whether Keras' step graph calls an XLA-compiled
   function, are recorded.
2. `overhead`: step time of `LayerAdaptive(optimizer)` relative to the plain optimizer on
   the MLP, the CNN and the 50-layer model of `layer_adaptive_overhead.py`, with its
   method (interleaved repeats of plain / LayerAdaptive / null wrapper / a second plain
   copy as an A/A control, the median ratio and its distribution-free 95% interval), with
   fewer repeats.
3. `study`: the headline arms of `mosaic_study.py` in small on MNIST (SGD at batch 128,
   SGD at batch 1,024 with the linearly scaled rate and warmup, AGD in weighted and
   proportional mode, random subsets), trained by that script's `train`: wall time and
   optimizer steps until the test accuracy first reaches `--target`, evaluated off the
   clock every `1 / --evals-per-epoch` epoch of examples, with and without the first
   step (its XLA compilation). A run stops once it reaches the target.
4. `step_time`: the median time of one training step of the same MLP (784-512-512-10,
   SGD with Nesterov momentum) at batch 128, 1,024 and 4,096, with 1 and with
   `--steps-per-execution` steps per call, over interleaved timed blocks after warm-up:
   how flat the per-step cost is.

Without a GPU (`tf.config.list_physical_devices("GPU")` empty) the JSON says `"gpu": null`
with the reason and the script exits with status 2, measuring nothing, unless `--quick`
(a tiny CPU run of every section, under a minute on 2 CPU cores) or `--allow-cpu` (the
full run on the CPU) is given. The exit status is 1 when a section failed or a parity
check did not pass. The JSON (written after every section, so that an interrupted run
keeps what it measured) holds the machine, the settings and one entry per section; a
copy of the JSON goes to stdout, followed by a short table.

MNIST is read from --mnist, else $KERAS_AGD_MNIST, else ../shared/data/mnist.npz beside
the checkout when present, else downloaded by Keras.
"""

import argparse
import contextlib
import gc
import json
import os
import platform
import signal
import statistics
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:  # A machine without TensorFlow still gets a JSON that says so.
    import keras
    import tensorflow as tf

    import keras_agd

    IMPORT_ERROR = None
except ImportError as error:
    keras = tf = keras_agd = None
    IMPORT_ERROR = f"{type(error).__name__}: {error}"

SECTIONS = ("parity", "overhead", "study", "step_time")
# Seconds per section: the full run fits in about 7 minutes with start-up.
BUDGETS = {"parity": 60, "overhead": 150, "study": 150, "step_time": 45}
QUICK_BUDGETS = {"parity": 60, "overhead": 40, "study": 60, "step_time": 40}
PARITY_CHECKS = ("agd_mosaic", "agd_regular", "layer_adaptive_sgd", "layer_adaptive_adam")
STUDY_ARMS = ("sgd", "large_batch_sgd", "agd_weighted", "agd", "random_subset")
# The rates the validation sweep of `mosaic_study.py` chose on plain MNIST with the
# 2-epoch budget (docs/images/mosaic_study/mlp_noise0_budget2.json); large-batch SGD
# takes SGD's rate scaled linearly with the batch (0.1 x 1024 / 128), with warmup.
STUDY_RATES = {
    "sgd": 0.1,
    "large_batch_sgd": 0.8,
    "agd_weighted": 0.05,
    "agd": 0.1,
    "random_subset": 0.1,
}
PARITY_MODEL = "mlp"  # of layer_adaptive_overhead.MODELS
STEP_TIME_MODEL = "mlp"
EXIT_NO_GPU = 2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/device_check.json"))
    parser.add_argument("--mnist", default=None, help="MNIST .npz (see the docstring)")
    parser.add_argument("--quick", action="store_true", help="tiny CPU run of every section")
    parser.add_argument("--allow-cpu", action="store_true", help="measure without a GPU")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument(
        "--deadline", type=float, default=None, help="seconds for all sections (420; quick 150)"
    )
    parser.add_argument(
        "--budgets", type=json.loads, default={}, help='section budgets, e.g. {"study": 100}'
    )
    parser.add_argument("--seed", type=int, default=0)
    parity = parser.add_argument_group("parity")
    parity.add_argument("--parity-steps", type=int, default=5)
    parity.add_argument("--parity-samples", type=int, default=4096)
    parity.add_argument("--tolerance", type=float, default=1e-4, help="relative, per tensor")
    overhead = parser.add_argument_group("overhead")
    overhead.add_argument("--overhead-models", nargs="+", default=["mlp", "cnn", "deep"])
    overhead.add_argument("--overhead-optimizers", nargs="+", default=["nesterov", "adam"])
    overhead.add_argument("--repeats", type=int, default=7)
    overhead.add_argument("--block-seconds", type=float, default=0.25)
    overhead.add_argument("--warmup-blocks", type=int, default=2)
    overhead.add_argument("--instances", type=int, default=2)
    overhead.add_argument("--steps-per-execution", type=int, default=10)
    study = parser.add_argument_group("study")
    study.add_argument("--arms", nargs="+", choices=STUDY_ARMS, default=list(STUDY_ARMS))
    study.add_argument("--seeds", type=int, default=2)
    study.add_argument("--target", type=float, default=None, help="test accuracy (0.97)")
    study.add_argument("--budget-epochs", type=int, default=3)
    study.add_argument("--evals-per-epoch", type=int, default=10)
    study.add_argument("--hidden", type=int, nargs="+", default=[512, 256, 128])
    study.add_argument("--rates", type=json.loads, default={}, help='e.g. {"sgd": 0.05}')
    step_time = parser.add_argument_group("step_time")
    step_time.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024, 4096])
    step_time.add_argument("--timed-blocks", type=int, default=9)
    parser.add_argument("--plot", type=Path, help="write a figure of the timings here")
    args = parser.parse_args(argv)
    if args.quick:
        args.parity_steps, args.parity_samples = 3, 1024
        args.overhead_models, args.overhead_optimizers = ["mlp"], ["nesterov"]
        args.repeats, args.block_seconds, args.warmup_blocks = 1, 0.02, 1
        args.instances, args.steps_per_execution = 1, 1
        args.seeds, args.budget_epochs, args.evals_per_epoch, args.hidden = 1, 2, 2, [32]
        args.timed_blocks = 1
        # The tiny quick model never reaches 0.97: a lower target runs the early stop.
        args.target = args.target or 0.6
    args.target = args.target or 0.97
    args.deadline = args.deadline or (150.0 if args.quick else 420.0)
    args.budgets = {**(QUICK_BUDGETS if args.quick else BUDGETS), **args.budgets}
    args.mnist = args.mnist or default_mnist()
    return args


def default_mnist():
    try:
        from _common import default_mnist_path
    except ImportError:  # Run from elsewhere than benchmarks/.
        return os.environ.get("KERAS_AGD_MNIST")
    return default_mnist_path()


def log(message):
    print(f"[device_check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- Budgets: soft (no new unit of work that would not fit) and hard (an alarm).


class OutOfTime(BaseException):
    """Raised by the alarm in the middle of a section that ran past its hard limit.

    A BaseException, so that no `except Exception` on the way swallows it.
    """


class Budget:
    """A section's clock: `fits(name)` is False (and `name` is noted as skipped) once the
    time left is less than the longest unit of work so far."""

    def __init__(self, seconds):
        self.seconds, self.start, self.longest = seconds, time.perf_counter(), 0.0
        self.skipped = []

    def elapsed(self):
        return time.perf_counter() - self.start

    def fits(self, name):
        if self.elapsed() + self.longest > self.seconds:
            self.skipped.append(name)
            return False
        return True

    @contextlib.contextmanager
    def unit(self):
        """Times one unit of work (a check, a run, a compilation) for `fits`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.longest = max(self.longest, time.perf_counter() - start)


def _raise_out_of_time(signum, frame):
    raise OutOfTime


def run_section(name, function, seconds, report, args, context):
    """Runs `function(args, budget, section, context)`; records its status and errors."""
    section = {"status": "running", "budget_s": round(seconds, 1)}
    report["sections"][name] = section
    if seconds <= 1:
        section.update(status="skipped", reason="the deadline left no time for this section")
        return
    log(f"{name}: start (budget {seconds:.0f} s)")
    budget = Budget(seconds)
    grace = min(15.0, 0.2 * seconds)
    previous = signal.signal(signal.SIGALRM, _raise_out_of_time)
    signal.setitimer(signal.ITIMER_REAL, seconds + grace)
    try:
        with warnings.catch_warnings():
            # Parity and early-stopped runs end inside AGD's mosaic phase on purpose.
            warnings.filterwarnings("ignore", message="Training stopped at step")
            function(args, budget, section, context)
        section["status"] = "budget_exceeded" if budget.skipped else "ok"
    except OutOfTime:
        section["status"] = "budget_exceeded"
        section["interrupted_after_s"] = round(budget.elapsed(), 1)
    except Exception as error:  # Recorded; the other sections still run.
        section["status"] = "error"
        section["error"] = f"{type(error).__name__}: {error}"[:2000]
        section["traceback"] = traceback.format_exc()[-4000:]
        log(f"{name}: {section['error']}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if budget.skipped:
        section["skipped_for_budget"] = budget.skipped
    section["seconds"] = round(budget.elapsed(), 2)
    start = time.perf_counter()  # Free the section's models before the next one's timings.
    keras.backend.clear_session(free_memory=False)
    gc.collect()
    section["cleanup_seconds"] = round(time.perf_counter() - start, 2)
    log(f"{name}: {section['status']} in {section['seconds']:.1f} s")


# --- Machine and placement.


def short_device(name):
    """'/job:localhost/replica:0/task:0/device:GPU:0' -> 'GPU:0'."""
    return name.rsplit("device:", 1)[-1] if name else name


def describe_machine():
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_agd": keras_agd.__version__,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "load_average": os.getloadavg()[0],
    }
    try:
        build = tf.sysconfig.get_build_info()
        info["tensorflow_build"] = {
            key: build.get(key) for key in ("is_cuda_build", "cuda_version", "cudnn_version")
        }
    except Exception as error:  # Informative only.
        info["tensorflow_build"] = f"{type(error).__name__}: {error}"
    return info


def describe_gpu():
    """`(gpu or None, message)`; turns on memory growth, so that peaks mean something."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        build = tf.sysconfig.get_build_info()
        return None, (
            "No GPU: tf.config.list_physical_devices('GPU') is empty (TensorFlow "
            f"{tf.__version__}, CUDA build: {build.get('is_cuda_build', False)}, CUDA "
            f"{build.get('cuda_version')}, CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}). TensorFlow needs its CUDA "
            "libraries, e.g. `pip install tensorflow[and-cuda]`."
        )
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # Already initialized.
            pass
    details = tf.config.experimental.get_device_details(gpus[0])
    capability = details.get("compute_capability")
    gpu = {
        "name": details.get("device_name", gpus[0].name),
        "compute_capability": list(capability) if capability else None,
        "count": len(gpus),
        "physical_devices": [device.name for device in gpus],
    }
    return gpu, f"{len(gpus)} GPU(s): {gpu['name']}"


def placement(model, logs, iterator):
    """Where a model's variables live and where its compiled step put its output."""
    variables = list(model.variables) + list(model.optimizer.variables)
    devices = Counter(short_device(getattr(v, "value", v).device) for v in variables)
    info = {
        "variable_devices": dict(devices),
        "step_output_device": short_device(logs["loss"].device),
    }
    # Keras' step: a tf.function over the iterator that calls the jit-compiled step.
    try:
        functions = [
            cell.cell_contents
            for cell in model.train_function.__closure__ or ()
            if hasattr(cell.cell_contents, "get_concrete_function")
        ]
        graph = functions[0].get_concrete_function(iterator).graph
        calls = [op for op in graph.get_operations() if "_XlaMustCompile" in op.node_def.attr]
        info["xla_compiled_calls"] = sum(bool(op.get_attr("_XlaMustCompile")) for op in calls)
        info["requested_op_devices"] = dict(Counter(op.device for op in graph.get_operations()))
    except Exception as error:  # Keras internals: informative only.
        info["xla_compiled_calls"] = f"unavailable ({type(error).__name__}: {error})"
    return info


# --- Data.


def load_mnist_subset(path, n):
    (x, y), _ = keras_agd.datasets.load_mnist(path)
    x = x[:n].reshape(min(n, len(x)), -1).astype(np.float32) / 255.0
    return x, y[:n].astype(np.int64)


def overhead_module():
    import layer_adaptive_overhead

    # Sized variants of the MLP for the step-time section, in the script's own registry.
    _, _, mlp_layers = layer_adaptive_overhead.MODELS[STEP_TIME_MODEL]
    for batch_size in (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192):
        layer_adaptive_overhead.MODELS.setdefault(
            f"{STEP_TIME_MODEL}_batch{batch_size}", ((784,), batch_size, mlp_layers)
        )
    return layer_adaptive_overhead


# --- 1. Parity.


def parity_section(args, budget, section, context):
    lao = overhead_module()
    x, y = load_mnist_subset(args.mnist, args.parity_samples)
    steps, batch_size, mosaic_batch_size = args.parity_steps, 128, 1024
    if args.quick:
        mosaic_batch_size = 256
    device = "/GPU:0" if context["gpu"] else "/CPU:0"
    start = time.perf_counter()
    curriculum = keras_agd.Curriculum(
        x,
        y,
        codebook=keras_agd.HierarchicalCodebook(branching=5, random_state=args.seed),
        schedule=2,
        batch_size=batch_size,
        mosaic_batch_size=mosaic_batch_size,
        steps_per_level=steps,  # Two levels: the mosaic phase is 2 * steps long.
        seed=args.seed,
    )
    section.update(
        device=device,
        reference_device="/CPU:0",
        model=PARITY_MODEL,
        steps=steps,
        samples=len(x),
        batch_size=batch_size,
        mosaic_batch_size=mosaic_batch_size,
        mosaic_steps=curriculum.mosaic_steps,
        curriculum_seconds=round(time.perf_counter() - start, 2),
        tolerance={"relative": args.tolerance, "measure": "max|a-b| / max|b| per tensor"},
        checks={},
    )
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    section["tensor_float_32"] = False
    try:
        for check in PARITY_CHECKS:
            if not budget.fits(check):
                continue
            with budget.unit():
                result = parity_check(check, lao, curriculum, x, y, device, args)
            section["checks"][check] = result
            log(
                f"parity {check}: {'pass' if result['passed'] else 'FAIL'}, max rel "
                f"{result['max_rel_diff']:.2e}, max abs {result['max_abs_diff']:.2e}"
            )
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(tf32)
        checks = section["checks"].values()
        section["all_passed"] = bool(checks) and all(c["passed"] for c in checks)


def parity_check(check, lao, curriculum, x, y, device, args):
    steps = args.parity_steps
    input_shape, _, layers = lao.MODELS[PARITY_MODEL]

    def build():
        keras.utils.set_random_seed(args.seed)
        model = keras.Sequential([keras.Input(input_shape), *layers()])
        if check.startswith("agd"):
            optimizer = keras_agd.AGD(
                curriculum, learning_rate=0.05, mosaic_learning_rate=0.05, momentum=0.9
            )
        elif check == "layer_adaptive_sgd":
            optimizer = keras_agd.LayerAdaptive(keras.optimizers.SGD(0.05, momentum=0.9))
        else:
            optimizer = keras_agd.LayerAdaptive(keras.optimizers.Adam(1e-3))
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=True,
        )
        return model

    def train(model):
        """`steps` compiled steps, as `fit` runs them; returns losses and placement."""
        if check == "agd_regular":
            model.optimizer.iterations.assign(curriculum.mosaic_steps)
        first = int(model.optimizer.iterations.numpy())
        with tf.device("/CPU:0"):  # The input pipeline runs on the host, as in `fit`.
            if check.startswith("agd"):
                data = curriculum.dataset(model, steps_per_epoch=steps)
            else:
                rows = slice(0, steps * curriculum.batch_size)
                data = tf.data.Dataset.from_tensor_slices((x[rows], y[rows]))
                data = data.batch(curriculum.batch_size)
            iterator = iter(data)
        model.make_train_function()
        losses = []
        for _ in range(steps):
            logs = model.train_function(iterator)
            losses.append(float(logs["loss"]))
        phases = sorted({curriculum.phase(s) for s in range(first, first + steps)})
        return losses, placement(model, logs, iterator), {"first_step": first, "phases": phases}

    with tf.device(device):
        model = build()
        initial = [np.array(w) for w in model.get_weights()]
        losses, where, plan = train(model)
        weights = model.get_weights()
    with tf.device("/CPU:0"):
        reference = build()
        reference.set_weights(initial)
        reference_losses, reference_where, _ = train(reference)
        reference_weights = reference.get_weights()
    abs_diff = rel_diff = update_diff = 0.0
    for a, b, w0 in zip(weights, reference_weights, initial, strict=True):
        difference = float(np.max(np.abs(a - b))) if a.size else 0.0
        abs_diff = max(abs_diff, difference)
        rel_diff = max(rel_diff, difference / max(float(np.max(np.abs(b))), 1e-30))
        change = float(np.max(np.abs(b - w0))) if b.size else 0.0
        update_diff = max(update_diff, difference / change if change else 0.0)
    expected = short_device(device.strip("/"))
    placed = (
        set(where["variable_devices"]) == {expected}
        and where["step_output_device"] == expected
        and set(reference_where["variable_devices"]) == {"CPU:0"}
        and reference_where["step_output_device"] == "CPU:0"
    )
    trained = float(np.max(np.abs(weights[0] - initial[0])))
    return {
        **plan,
        "passed": bool(rel_diff <= args.tolerance and placed and trained > 0),
        "exact": abs_diff == 0.0,
        "max_abs_diff": abs_diff,
        "max_rel_diff": rel_diff,
        # The same difference relative to what the steps changed: a stricter figure.
        "max_rel_diff_of_update": update_diff,
        "max_loss_diff": float(np.max(np.abs(np.subtract(losses, reference_losses)))),
        "losses": losses,
        "reference_losses": reference_losses,
        "placed_as_intended": placed,
        "placement": where,
        "reference_placement": reference_where,
    }


# --- 2. LayerAdaptive step overhead.


def overhead_section(args, budget, section, context):
    lao = overhead_module()
    settings = argparse.Namespace(
        repeats=args.repeats,
        block_seconds=args.block_seconds,
        warmup_blocks=args.warmup_blocks,
        instances=args.instances,
        steps_per_execution=args.steps_per_execution,
        seed=args.seed,
    )
    section.update(
        method="layer_adaptive_overhead.measure",
        settings=vars(settings),
        target={
            "median_overhead_percent": 100 * lao.TARGET_MEDIAN,
            "ci95_upper_percent": 100 * lao.TARGET_UPPER,
        },
        results=[],
    )
    rng = np.random.default_rng(args.seed)
    # All models with the first optimizer before any with the next.
    for optimizer in args.overhead_optimizers:
        for model in args.overhead_models:
            if not budget.fits(f"{model}/{optimizer}"):
                continue
            gc.collect()  # Not inside the timed blocks.
            with budget.unit():
                start = time.perf_counter()
                result = lao.measure(model, optimizer, settings, rng)
                result["seconds"] = round(time.perf_counter() - start, 2)
            section["results"].append(result)
            log(
                f"overhead {model}/{optimizer}: ratio {result['ratio_median']:.3f} "
                f"{result['ratio_ci95']}, plain {result['plain_ms_per_step']:.3f} ms/step"
            )


# --- 3. Time to accuracy, the study's arms in small.


def study_section(args, budget, section, context):
    import mosaic_study as study

    arguments = ["--arms", *args.arms, "--seeds", str(args.seeds)]
    arguments += ["--budget-epochs", str(args.budget_epochs), "--evals-per-epoch"]
    arguments += [str(args.evals_per_epoch), "--hidden", *map(str, args.hidden)]
    if args.mnist:
        arguments += ["--mnist", str(args.mnist)]
    if args.quick:
        arguments += ["--train-samples", "2000", "--validation-samples", "500"]
        arguments += ["--mosaic-levels", "2"]
    settings = study.parse_args(arguments)
    rates = {**STUDY_RATES, **args.rates}
    data = study.load_data(settings)
    (x, y), _, _ = data
    start = time.perf_counter()
    codebook = keras_agd.HierarchicalCodebook(branching=5, random_state=0).fit(x, y)
    build_seconds = time.perf_counter() - start
    per_level, mosaic_steps = study.mosaic_plan(settings, len(x))
    section.update(
        method="mosaic_study.train, stopped at the target",
        target_test_accuracy=args.target,
        rates={arm: rates[arm] for arm in args.arms},
        settings={
            key: getattr(settings, key)
            for key in (
                "model",
                "hidden",
                "batch_size",
                "mosaic_batch_size",
                "budget_epochs",
                "mosaic_levels",
                "mosaic_share",
                "evals_per_epoch",
                "seeds",
            )
        },
        train_samples=len(x),
        eval_every_examples=max(1, len(x) // settings.evals_per_epoch),
        mosaic_steps=mosaic_steps,
        steps_per_level=per_level,
        codebook_build_s=round(build_seconds, 2),
        runs={arm: [] for arm in args.arms},
    )
    target = args.target

    class TargetCurve(study.Curve):
        """The study's evaluation callback; notes when the first step (its XLA
        compilation) ended and stops the run once the target is reached."""

        def on_train_batch_end(self, batch, logs=None):
            if not hasattr(self, "first_step_seconds"):
                self.first_step_seconds = time.perf_counter() - self.start
            super().on_train_batch_end(batch, logs)
            if self.points and self.points[-1]["test_accuracy"] >= target:
                self.model.stop_training = True

    curves = []
    original = study.Curve
    study.Curve = _Recording(TargetCurve, curves)
    try:
        for seed in range(args.seeds):  # Interleaved, as in the study.
            for arm in args.arms:
                if not budget.fits(f"{arm}/seed{seed}"):
                    continue
                gc.collect()  # The last run's garbage, off its clock (AGD runs leave seconds).
                with budget.unit():
                    points = study.train(
                        arm, rates[arm], seed, settings, data, {"agd": codebook}, rates["sgd"]
                    )
                run = _study_run(points, curves[-1], seed, target, build_seconds, arm, study)
                section["runs"][arm].append(run)
                log(
                    f"study {arm} seed {seed}: target "
                    + (
                        f"at {run['seconds_to_target']:.1f} s, {run['steps_to_target']} steps"
                        if run["reached"]
                        else f"not reached (test {run['last']['test_accuracy']:.4f})"
                    )
                )
    finally:  # Also when the section runs out of time: summarize the runs so far.
        study.Curve = original
        section["summary"] = _study_summary(section["runs"], study)


class _Recording:
    """Builds the callback like its class would and keeps each instance."""

    def __init__(self, kind, instances):
        self.kind, self.instances = kind, instances

    def __call__(self, *args, **kwargs):
        instance = self.kind(*args, **kwargs)
        self.instances.append(instance)
        return instance


def _study_run(points, curve, seed, target, build_seconds, arm, study):
    reached = next((p for p in points if p["test_accuracy"] >= target), None)
    first_step = getattr(curve, "first_step_seconds", None)
    build = build_seconds if arm in study.USES_CODEBOOK else 0.0
    run = {
        "seed": seed,
        "reached": reached is not None,
        "seconds_to_target": None,
        "seconds_to_target_after_first_step": None,
        "seconds_to_target_with_codebook": None,
        "steps_to_target": None,
        "examples_to_target": None,
        "first_step_seconds": first_step,
        "last": {k: points[-1][k] for k in ("seconds", "steps", "examples", "test_accuracy")},
        "curve": [[p["steps"], round(p["seconds"], 3), p["test_accuracy"]] for p in points],
    }
    if reached is not None:
        run.update(
            seconds_to_target=reached["seconds"],
            seconds_to_target_after_first_step=reached["seconds"] - (first_step or 0.0),
            seconds_to_target_with_codebook=reached["seconds"] + build,
            steps_to_target=reached["steps"],
            examples_to_target=reached["examples"],
        )
    return run


def _study_summary(runs, study):
    """Medians over seeds (None when half or more never reached the target)."""
    summary = {}
    for arm, arm_runs in runs.items():
        if not arm_runs:
            continue
        row = {"seeds": len(arm_runs), "reached": sum(r["reached"] for r in arm_runs)}
        for key in (
            "seconds_to_target",
            "seconds_to_target_after_first_step",
            "seconds_to_target_with_codebook",
            "steps_to_target",
            "examples_to_target",
        ):
            row[key] = study.spread([r[key] for r in arm_runs])["median"]
        row["first_step_seconds"] = statistics.median(
            r["first_step_seconds"] or 0.0 for r in arm_runs
        )
        summary[arm] = row
    sgd = summary.get("sgd", {})
    for row in summary.values():
        for key in ("seconds_to_target_with_codebook", "steps_to_target"):
            mine, theirs = row.get(key), sgd.get(key)
            row[f"{key}_ratio_to_sgd"] = mine / theirs if mine and theirs else None
    return summary


# --- 4. Step time against batch size.


def step_time_section(args, budget, section, context):
    lao = overhead_module()
    executions = sorted({1, args.steps_per_execution})
    section.update(
        model=STEP_TIME_MODEL,
        optimizer="nesterov",
        timed_blocks=args.timed_blocks,
        block_seconds=args.block_seconds,
        results=[],
    )
    runners = {}
    for execution in executions:
        for batch_size in args.batch_sizes:
            name = f"{STEP_TIME_MODEL}_batch{batch_size}"
            if not budget.fits(f"compile {name}, steps_per_execution {execution}"):
                continue
            with budget.unit():
                settings = argparse.Namespace(seed=args.seed, steps_per_execution=execution)
                run = lao.compiled_train_function(name, "nesterov", "plain", settings)
                for _ in range(max(1, args.warmup_blocks)):
                    run(2)
                per_call = run(3)[0] / 3
            calls = max(1, round(args.block_seconds / per_call))
            runners[batch_size, execution] = (run, calls, [])
    try:
        # Interleaved blocks, so that drifts in load hit every batch size alike.
        for block in range(args.timed_blocks):
            if block and not budget.fits(f"timed block {block}"):
                break
            with budget.unit():
                for run, calls, times in runners.values():
                    times.append(run(calls)[0] / calls)  # Seconds per call.
    finally:  # Also when the section runs out of time: keep the blocks timed so far.
        section["results"] = _step_times(runners)
    for row in section["results"]:
        log(
            f"step_time batch {row['batch_size']} x{row['steps_per_execution']}: "
            f"{row['ms_per_step_median']:.3f} ms/step"
        )


def _step_times(runners):
    rows = []
    for (batch_size, execution), (_, calls, times) in runners.items():
        if not times:
            continue
        per_step = [t / execution for t in times]
        median = statistics.median(per_step)
        rows.append(
            {
                "batch_size": batch_size,
                "steps_per_execution": execution,
                "steps_per_block": calls * execution,
                "blocks": len(per_step),
                "ms_per_step_median": 1e3 * median,
                "ms_per_step_min": 1e3 * min(per_step),
                "ms_per_step_max": 1e3 * max(per_step),
                "examples_per_second": batch_size / median,
            }
        )
    for row in rows:
        smallest = min(
            (r for r in rows if r["steps_per_execution"] == row["steps_per_execution"]),
            key=lambda r: r["batch_size"],
        )
        row["ratio_to_smallest_batch"] = row["ms_per_step_median"] / smallest["ms_per_step_median"]
    return rows


# --- Report.


def table(report):
    gpu = report["gpu"]
    machine = report.get("machine", {})
    lines = [
        f"device_check: {'GPU ' + gpu['name'] if gpu else 'no GPU'} | TensorFlow "
        f"{machine.get('tensorflow')} | Keras {machine.get('keras')} | {machine.get('cpus')} "
        f"CPUs | {report.get('total_seconds', 0):.0f} s",
        "",
        "| section | status | seconds | budget |",
        "|---|---|---|---|",
    ]
    for name, section in report["sections"].items():
        lines.append(
            f"| {name} | {section['status']} | {section.get('seconds', 0):.1f} | "
            f"{section.get('budget_s', 0):.0f} |"
        )
    sections = report["sections"]
    checks = sections.get("parity", {}).get("checks", {})
    if checks:
        lines += ["", "| parity check | passed | max rel diff | max abs diff | ran on |"]
        lines.append("|---|---|---|---|---|")
        for name, check in checks.items():
            lines.append(
                f"| {name} | {check['passed']} | {check['max_rel_diff']:.2e} | "
                f"{check['max_abs_diff']:.2e} | {check['placement']['step_output_device']} vs "
                f"{check['reference_placement']['step_output_device']} |"
            )
    results = sections.get("overhead", {}).get("results", [])
    if results:
        lines += ["", "| overhead | plain ms/step | ratio (95% CI) | null wrapper | A/A |"]
        lines.append("|---|---|---|---|---|")
        for r in results:
            low, high = r["ratio_ci95"]
            lines.append(
                f"| {r['model']}/{r['optimizer']} | {r['plain_ms_per_step']:.3f} | "
                f"{r['ratio_median']:.3f} ({low:.3f}-{high:.3f}) | "
                f"{r['null_wrapper_ratio_median']:.3f} | {r['control_ratio_median']:.3f} |"
            )
    summary = sections.get("study", {}).get("summary", {})
    if summary:
        target = sections["study"]["target_test_accuracy"]
        lines += [
            "",
            f"| arm (target {target}) | reached | s to target | s after 1st step | steps |",
            "|---|---|---|---|---|",
        ]
        for arm, row in summary.items():
            cells = [
                "-" if row[key] is None else f"{row[key]:.1f}"
                for key in ("seconds_to_target", "seconds_to_target_after_first_step")
            ]
            steps = "-" if row["steps_to_target"] is None else f"{row['steps_to_target']:.0f}"
            lines.append(
                f"| {arm} | {row['reached']}/{row['seeds']} | {cells[0]} | {cells[1]} | {steps} |"
            )
    rows = sections.get("step_time", {}).get("results", [])
    if rows:
        lines += ["", "| batch | steps/execution | ms/step | examples/s | vs smallest |"]
        lines.append("|---|---|---|---|---|")
        for r in rows:
            lines.append(
                f"| {r['batch_size']} | {r['steps_per_execution']} | "
                f"{r['ms_per_step_median']:.3f} | {r['examples_per_second']:,.0f} | "
                f"{r['ratio_to_smallest_batch']:.2f} |"
            )
    return "\n".join(lines)


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    rows = report["sections"].get("step_time", {}).get("results", [])
    for execution in sorted({r["steps_per_execution"] for r in rows}):
        mine = [r for r in rows if r["steps_per_execution"] == execution]
        axes[0].plot(
            [r["batch_size"] for r in mine],
            [r["ms_per_step_median"] for r in mine],
            "o-",
            label=f"{execution} step(s) per execution",
        )
    axes[0].set(xscale="log", yscale="log", xlabel="batch size", ylabel="ms per step")
    sizes = sorted({r["batch_size"] for r in rows})
    axes[0].set_xticks(sizes, [str(size) for size in sizes])
    axes[0].minorticks_off()
    axes[0].set_title("MLP step time")
    if rows:
        axes[0].legend(fontsize="small")
    results = report["sections"].get("overhead", {}).get("results", [])
    for index, r in enumerate(results):
        low, high = r["ratio_ci95"]
        axes[1].errorbar(
            index,
            r["ratio_median"],
            yerr=[[r["ratio_median"] - low], [high - r["ratio_median"]]],
            fmt="o",
            color="tab:blue",
        )
        axes[1].plot(index + 0.2, r["control_ratio_median"], "x", color="gray")
    axes[1].axhline(1.0, color="gray", linewidth=0.8)
    axes[1].set_xlim(-0.5, max(len(results), 1) - 0.3)
    axes[1].set_xticks(range(len(results)), [f"{r['model']}\n{r['optimizer']}" for r in results])
    axes[1].set(ylabel="step time / plain (x: A/A control)", title="LayerAdaptive overhead")
    summary = report["sections"].get("study", {}).get("summary", {})
    arms = list(summary)
    seconds = [summary[a]["seconds_to_target_after_first_step"] or 0.0 for a in arms]
    axes[2].bar(range(len(arms)), seconds, color="tab:green")
    axes[2].set_xticks(range(len(arms)), arms, rotation=20, fontsize="small")
    axes[2].set(ylabel="s to target after the first step", title="time to accuracy")
    title = report["gpu"]["name"] if report["gpu"] else "CPU"
    figure.suptitle(f"keras-agd device check: {title}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(report, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=_jsonable))


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | tuple | set):
        return list(value)
    return str(value)


RUNNERS = {
    "parity": parity_section,
    "overhead": overhead_section,
    "study": study_section,
    "step_time": step_time_section,
}


def main(argv=None):
    start = time.perf_counter()
    args = parse_args(argv)
    report = {
        "benchmark": "device_check",
        "argv": sys.argv[1:] if argv is None else list(argv),
        "quick": args.quick,
        "jit_compile": True,
        "gpu": None,
        "message": None,
        "sections": {},
    }
    if IMPORT_ERROR:
        report["message"] = f"TensorFlow or keras_agd cannot be imported: {IMPORT_ERROR}"
        write(report, args.out)
        print(json.dumps(report, indent=2))
        return EXIT_NO_GPU
    gpu, message = describe_gpu()
    report.update(gpu=gpu, message=message, machine=describe_machine())
    report["logical_devices"] = [d.name for d in tf.config.list_logical_devices()]
    report["tensor_float_32"] = tf.config.experimental.tensor_float_32_execution_enabled()
    report["settings"] = {
        key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()
    }
    log(message)
    if gpu is None and not (args.quick or args.allow_cpu):
        for name in args.sections:
            report["sections"][name] = {"status": "skipped", "reason": "no GPU"}
        report["message"] += " Nothing was measured: pass --allow-cpu to measure on the CPU."
        exit_code = EXIT_NO_GPU
    else:
        context = {"gpu": gpu}
        for name in args.sections:
            left = args.deadline - (time.perf_counter() - start)
            run_section(name, RUNNERS[name], min(args.budgets[name], left), report, args, context)
            report["total_seconds"] = time.perf_counter() - start
            write(report, args.out)  # After every section: a killed run keeps the rest.
        failed = [n for n, s in report["sections"].items() if s["status"] == "error"]
        parity = report["sections"].get("parity", {})
        if parity.get("status") == "ok" and not parity.get("all_passed", False):
            failed.append("parity (a check did not pass)")
        report["failed"] = failed
        exit_code = 1 if failed else 0
        if gpu:
            try:
                memory = tf.config.experimental.get_memory_info("GPU:0")
                report["gpu"]["peak_memory_mib"] = memory["peak"] / 2**20
            except Exception as error:  # Informative only.
                report["gpu"]["peak_memory_mib"] = f"{type(error).__name__}: {error}"
    report["total_seconds"] = time.perf_counter() - start
    report["exit_code"] = exit_code
    if args.plot and exit_code != EXIT_NO_GPU:
        try:
            plot(report, args.plot)
            report["plot"] = str(args.plot)
        except Exception as error:  # The figure is optional.
            report["plot"] = f"failed: {type(error).__name__}: {error}"
    write(report, args.out)
    print(json.dumps(report, indent=2, default=_jsonable))
    print(table(report))
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
