"""Smoke runs of the benchmark scripts on tiny settings (their figures come from full runs)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_time_to_accuracy_harness_writes_curves_summary_and_plot(mnist_path, tmp_path):
    import time_to_accuracy

    arguments = ["--mnist", str(mnist_path), "--out", str(tmp_path), "--seeds", "1"]
    arguments += ["--train-samples", "2000", "--hidden", "16", "--epochs", "2"]
    arguments += ["--mosaic-epochs", "2", "--regular-epochs", "1", "--mosaic-batch-size", "256"]
    arguments += ["--methods", "sgd", "agd", "random_subset", "agd_proportional", "large_batch_sgd"]
    time_to_accuracy.main(arguments)
    result = json.loads((tmp_path / "mnist.json").read_text())
    assert (tmp_path / "mnist.png").stat().st_size > 0
    assert set(result["runs"]) == {
        "sgd",
        "agd",
        "random_subset",
        "agd_proportional",
        "large_batch_sgd",
    }
    # Optimizer steps per epoch: 2000 samples at batch 128, and at the mosaic batch 256.
    assert [point["steps"] for point in result["runs"]["sgd"][0]] == [16, 32]
    assert [point["steps"] for point in result["runs"]["large_batch_sgd"][0]] == [8, 16]
    agd_curve = result["runs"]["agd"][0]
    assert [point["mosaic_phase"] for point in agd_curve] == [1.0, 1.0, 0.0]
    assert agd_curve[-1]["examples"] < 3 * 2000  # Mosaic epochs cost the frontier size.
    seconds = [point["seconds"] for point in agd_curve]
    assert seconds == sorted(seconds)
    summary = result["summary"]["methods"]
    assert summary["sgd"]["ratio_to_sgd"] == 1.0
    assert summary["agd"]["codebook_build_s"] > 0 == summary["random_subset"]["codebook_build_s"]


@pytest.mark.slow
def test_synthetic_workload_times_mgd_and_full_epochs(tmp_path):
    import time_to_accuracy

    arguments = ["--workload", "synthetic", "--synthetic-samples", "20000", "--seeds", "1"]
    result = time_to_accuracy.main([*arguments, "--out", str(tmp_path)])
    assert result["coarsest_frontier_size"] == 10
    assert len(result["mgd_epoch_s"]) == len(result["full_epoch_s"]) == 2
    assert 0 < result["mgd_epoch_share_of_full"]
