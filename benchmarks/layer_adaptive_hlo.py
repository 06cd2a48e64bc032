"""What `LayerAdaptive` adds to one compiled training step, read from XLA's optimized HLO.

Compiles one step of each model of `layer_adaptive_overhead.py` with and without the
wrapper (XLA on, CPU), dumps the optimized HLO module and counts the kernels (fusions
and other top-level instructions) of the step's entry computation. The count does not
depend on machine load: it is the structural side of the overhead, the step time
(`layer_adaptive_overhead.py`) the measured one. Prints JSON.

    python benchmarks/layer_adaptive_hlo.py [--models mlp cnn deep] [--optimizer nesterov]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
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
    """Counts of the top-level instructions of the train step's optimized HLO."""
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
    opcodes = re.findall(r"^\s+(?:ROOT )?%\S+ = \S+ ([a-z-]+)\(", entry, flags=re.MULTILINE)
    counts = {}
    for opcode in opcodes:
        counts[opcode] = counts.get(opcode, 0) + 1
    return counts


def main():
    sys.path.insert(0, str(Path(__file__).parent))
    from layer_adaptive_overhead import MODELS, OPTIMIZERS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--optimizer", choices=list(OPTIMIZERS), default="nesterov")
    args = parser.parse_args()
    results = []
    for model in args.models:
        plain = entry_instructions(model, args.optimizer, False)
        wrapped = entry_instructions(model, args.optimizer, True)
        results.append(
            {
                "model": model,
                "optimizer": args.optimizer,
                "plain_fusions": plain.get("fusion", 0),
                "wrapped_fusions": wrapped.get("fusion", 0),
                "plain_instructions": sum(plain.values()),
                "wrapped_instructions": sum(wrapped.values()),
                "added": {
                    op: wrapped.get(op, 0) - plain.get(op, 0)
                    for op in sorted(set(plain) | set(wrapped))
                    if wrapped.get(op, 0) != plain.get(op, 0)
                },
            }
        )
    print(json.dumps({"benchmark": "layer_adaptive_hlo", "results": results}, indent=2))


if __name__ == "__main__":
    main()
