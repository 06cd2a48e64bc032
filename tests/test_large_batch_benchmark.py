"""benchmarks/large_batch.py runs end to end (`--quick`) and prints its JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "large_batch.py"


@pytest.mark.slow
def test_large_batch_quick_run(tmp_path):
    plot = tmp_path / "large_batch.png"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--arms", "mlp=lars", "--plot", str(plot)],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(completed.stdout)
    assert report["benchmark"] == "large_batch"
    assert report["machine"]["cpus"] >= 1
    target = report["targets"]["mlp"]
    assert 0 < target < 1
    reference = report["results"]["mlp"]["128"]["reference"]
    lars = report["results"]["mlp"]["512"]["lars"]
    for result, grid in ((reference, "reference"), (lars, "lars")):
        assert [s["rate"] for s in result["sweep"]] == report["config"]["grids"][grid]
        assert result["rate"] in report["config"]["grids"][grid]
        (curve,) = result["test_accuracy"]  # One seed.
        assert len(curve) == len(result["steps"])
        low, high = result["final_test_accuracy_range"]
        assert low <= result["final_test_accuracy_median"] <= high
        assert result["step_ms_median"] > 0
        reached = result["steps_to_target"][0]
        assert reached is None or reached in result["steps"]
    # The reference's own median final accuracy is above its target: it reaches it.
    assert reference["steps_to_target_median"] is not None
    # No batch-4,096 run: the goal is not evaluated, so not met.
    assert report["goals"]["per_model"]["mlp"] == {"evaluated": False}
    assert report["goals"]["met"] is False
    assert plot.stat().st_size > 0
