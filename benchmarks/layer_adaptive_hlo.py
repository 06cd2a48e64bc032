"""What `LayerAdaptive` adds to one compiled training step, read from XLA's optimized HLO.

Compiles one step of each model of `layer_adaptive_overhead.py` with and without the
wrapper (XLA on, CPU), dumps the optimized HLO module and counts the kernels (fusions
and other top-level instructions) of the step's entry computation. It also gives the
largest array written by a kernel that only the wrapped step has, next to the largest
argument of the step (a variable or the batch): eq. (9) needs one read of each
gradient, and an added kernel that writes an array as large as a gradient means a
second pass over memory. None of this depends on machine load: it is the structural
side of the overhead, the step time (`layer_adaptive_overhead.py`) the measured one.
Prints JSON.

    python benchmarks/layer_adaptive_hlo.py [--models mlp cnn deep] [--optimizer nesterov]
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

STEP = """
import sys
import keras, numpy as np
sys.path.insert(0, {benchmarks!r})
from layer_adaptive_overhead import MODELS, OPTIMIZERS
from keras_agd import LayerAdaptive

input_shape, batch_size, layers = MODELS[{model!r}]
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input(input_shape), *layers()])
optimizer = OPTIMIZERS[{optimizer!r}]()
model.compile(
    optimizer=LayerAdaptive(optimizer) if {wrapped} else optimizer,
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    jit_compile=True,
)
x = np.zeros((batch_size, *input_shape), np.float32)
model.fit(x, np.zeros(batch_size, np.int64), batch_size=batch_size, epochs=1, verbose=0)
"""


def entry_instructions(model, optimizer, wrapped):
    """The top-level instructions of the train step's optimized HLO.

    Returns:
        List of `(opcode, elements)`: each instruction's opcode and the number of
        elements of the array it writes (0 for tuples).
    """
    with tempfile.TemporaryDirectory() as dump:
        code = STEP.format(
            benchmarks=str(Path(__file__).parent), model=model, optimizer=optimizer, wrapped=wrapped
        )
        env = dict(
            os.environ,
            TF_CPP_MIN_LOG_LEVEL="3",
            CUDA_VISIBLE_DEVICES="",
            XLA_FLAGS=f"--xla_dump_to={dump} --xla_dump_hlo_as_text --xla_dump_hlo_pass_re=^$",
        )
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        (path,) = Path(dump).glob("*one_step_on_data*cpu_after_optimizations.txt")
        text = path.read_text()
    entry = text[text.index("\nENTRY ") :]
    pattern = r"^\s+(?:ROOT )?%\S+ = (\S+) ([a-z-]+)\("
    return [
        (opcode, _elements(shape)) for shape, opcode in re.findall(pattern, entry, re.MULTILINE)
    ]


def _elements(shape):
    """Elements of an HLO array shape such as `f32[784,512]{1,0}` (0 for a tuple)."""
    match = re.fullmatch(r"[a-z]+\d*\[([\d,]*)\](?:\{[\d,]*\})?", shape)
    if match is None:
        return 0
    return math.prod(int(d) for d in match.group(1).split(",") if d)


def compare(model, optimizer):
    plain = entry_instructions(model, optimizer, False)
    wrapped = entry_instructions(model, optimizer, True)
    plain_ops, wrapped_ops = Counter(op for op, _ in plain), Counter(op for op, _ in wrapped)
    # Kernels only the wrapped step has, matched by (opcode, size) against the plain step.
    added_kernels = Counter(k for k in wrapped if k[0] == "fusion") - Counter(
        k for k in plain if k[0] == "fusion"
    )
    return {
        "model": model,
        "optimizer": optimizer,
        "plain_fusions": plain_ops["fusion"],
        "wrapped_fusions": wrapped_ops["fusion"],
        "plain_instructions": len(plain),
        "wrapped_instructions": len(wrapped),
        "added": {
            op: wrapped_ops[op] - plain_ops[op]
            for op in sorted(plain_ops | wrapped_ops)
            if wrapped_ops[op] != plain_ops[op]
        },
        "largest_added_output_elements": max((n for _, n in added_kernels), default=0),
        "largest_argument_elements": max(n for op, n in plain if op == "parameter"),
    }


def main():
    sys.path.insert(0, str(Path(__file__).parent))
    from layer_adaptive_overhead import MODELS, OPTIMIZERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--optimizer", choices=list(OPTIMIZERS), default="nesterov")
    args = parser.parse_args()
    results = [compare(model, args.optimizer) for model in args.models]
    print(json.dumps({"benchmark": "layer_adaptive_hlo", "results": results}, indent=2))


if __name__ == "__main__":
    main()
