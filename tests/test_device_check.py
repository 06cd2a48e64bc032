"""The GPU check script in its tiny CPU mode, so that it keeps running where no GPU is."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.py"
SECTIONS = ("parity", "overhead", "study", "step_time")


def run_script(arguments, mnist_path, tmp_path):
    out = tmp_path / "device_check.json"
    environment = {**os.environ, "KERAS_AGD_MNIST": str(mnist_path), "CUDA_VISIBLE_DEVICES": ""}
    process = subprocess.run(
        [sys.executable, str(SCRIPT), *arguments, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        cwd=SCRIPT.parents[1],
    )
    return process, json.loads(out.read_text())


@pytest.mark.slow
def test_quick_mode_runs_every_section_on_the_cpu(mnist_path, tmp_path):
    plot = tmp_path / "device_check.png"
    process, report = run_script(["--quick", "--plot", str(plot)], mnist_path, tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    assert report["benchmark"] == "device_check" and report["quick"] is True
    assert report["gpu"] is None and "No GPU" in report["message"]
    assert report["jit_compile"] is True and report["failed"] == [] and report["exit_code"] == 0
    machine = report["machine"]
    assert machine["cpus"] >= 1 and machine["tensorflow"] and machine["keras"]
    assert report["logical_devices"] == ["/device:CPU:0"]
    assert plot.stat().st_size > 0
    # Every section ran in full, without error, inside its budget.
    assert list(report["sections"]) == list(SECTIONS)
    for name, section in report["sections"].items():
        assert section["status"] == "ok", (name, section.get("error"), section.get("traceback"))
        assert "error" not in section and "skipped_for_budget" not in section
        assert 0 < section["seconds"] <= section["budget_s"]
    assert report["total_seconds"] < report["settings"]["deadline"]

    # CPU against CPU: the same compiled steps on the same batches give the same weights.
    parity = report["sections"]["parity"]
    assert parity["device"] == parity["reference_device"] == "/CPU:0"
    assert parity["tensor_float_32"] is False and parity["all_passed"] is True
    checks = {"agd_mosaic", "agd_regular", "layer_adaptive_sgd", "layer_adaptive_adam"}
    assert set(parity["checks"]) == checks
    tolerance = parity["tolerance"]["relative"]
    for name, check in parity["checks"].items():
        assert check["passed"] and check["placed_as_intended"], name
        assert check["max_rel_diff"] <= tolerance and check["max_abs_diff"] <= tolerance, name
        assert len(check["losses"]) == parity["steps"] == 3
        for where in (check["placement"], check["reference_placement"]):
            assert set(where["variable_devices"]) == {"CPU:0"}, name
            assert where["step_output_device"] == "CPU:0"
            assert where["xla_compiled_calls"] == 1, name  # jit_compile=True took effect.
    assert parity["checks"]["agd_mosaic"]["phases"] == ["mosaic"]
    assert parity["checks"]["agd_mosaic"]["first_step"] == 0
    assert parity["checks"]["agd_regular"]["phases"] == ["regular"]
    assert parity["checks"]["agd_regular"]["first_step"] == parity["mosaic_steps"] > 0

    # The overhead figures come from layer_adaptive_overhead.measure.
    (overhead,) = report["sections"]["overhead"]["results"]
    assert (overhead["model"], overhead["optimizer"]) == ("mlp", "nesterov")
    assert overhead["plain_ms_per_step"] > 0 and overhead["wrapped_ms_per_step"] > 0
    low, high = overhead["ratio_ci95"]
    assert low <= overhead["ratio_median"] <= high
    assert overhead["control_ratio_median"] > 0 and overhead["null_wrapper_ratio_median"] > 0

    # Every arm trained through mosaic_study.train and reached the (quick) target.
    study = report["sections"]["study"]
    assert study["target_test_accuracy"] == 0.6
    arms = {"sgd", "large_batch_sgd", "agd_weighted", "agd", "random_subset"}
    assert set(study["runs"]) == set(study["summary"]) == arms
    for arm, (run,) in study["runs"].items():
        assert run["reached"], (arm, run["curve"])
        assert run["curve"][-1][2] >= 0.6 and run["steps_to_target"] == run["curve"][-1][0]
        assert 0 < run["first_step_seconds"] <= run["seconds_to_target"]
        assert run["seconds_to_target_after_first_step"] >= 0
    assert study["summary"]["sgd"]["steps_to_target_ratio_to_sgd"] == 1.0
    # The codebook build counts for the arms that need one (not for random subsets).
    (agd,), (sgd,) = study["runs"]["agd"], study["runs"]["sgd"]
    assert agd["seconds_to_target_with_codebook"] > agd["seconds_to_target"]
    assert sgd["seconds_to_target_with_codebook"] == sgd["seconds_to_target"]

    step_time = report["sections"]["step_time"]["results"]
    assert [row["batch_size"] for row in step_time] == [128, 1024, 4096]
    assert all(row["ms_per_step_median"] > 0 for row in step_time)
    assert "| parity check | passed |" in process.stdout


def test_without_a_gpu_it_says_so_and_exits_non_zero(mnist_path, tmp_path):
    process, report = run_script([], mnist_path, tmp_path)
    assert process.returncode == 2
    assert report["gpu"] is None and "--allow-cpu" in report["message"]
    assert all(section["status"] == "skipped" for section in report["sections"].values())
    assert report["exit_code"] == 2
