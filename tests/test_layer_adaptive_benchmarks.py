"""The layer-adaptive benchmark scripts run end to end (tiny settings) and print JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(name, *args):
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout)


@pytest.mark.slow
def test_overhead_benchmark(tmp_path):
    plot = tmp_path / "overhead.png"
    args = ["--models", "mlp", "--optimizers", "adam", "--repeats", "3"]
    args += ["--block-seconds", "0.05", "--warmup-blocks", "1", "--instances", "1"]
    args += ["--plot", str(plot)]
    report = run_script("layer_adaptive_overhead.py", *args)
    (result,) = report["results"]
    assert (result["model"], result["optimizer"]) == ("mlp", "adam")
    assert len(result["ratios"]) == 3
    assert result["plain_ms_per_step"] > 0 and result["wrapped_ms_per_step"] > 0
    low, high = result["ratio_ci95"]
    assert low <= result["ratio_median"] <= high
    assert len(result["null_wrapper_ratios"]) == 3
    low, high = result["null_wrapper_ratio_ci95"]
    assert low <= result["null_wrapper_ratio_median"] <= high
    assert (
        result["verdict"] in ("within target", "over target") or "inconclusive" in result["verdict"]
    )
    assert plot.stat().st_size > 0


@pytest.mark.slow
def test_mnist_benchmark(mnist_path, tmp_path):
    plot = tmp_path / "mnist.png"
    args = ["--mnist", str(mnist_path), "--optimizers", "sgd", "--seeds", "1"]
    args += ["--iterations", "20", "--eval-every", "10", "--test-size", "500"]
    report = run_script("layer_adaptive_mnist.py", *args, "--plot", str(plot))
    assert report["iterations"] == [10, 20]
    assert set(report["results"]) == {"sgd", "sgd+layer_adaptive"}
    adaptive = report["results"]["sgd+layer_adaptive"]
    assert len(adaptive["test_error_mean"]) == 2
    assert all(0 <= error <= 100 for error in adaptive["test_error_mean"])
    assert set(adaptive["last_layer_factors_seed0"]) == {
        "lenet/conv1",
        "lenet/conv2",
        "lenet/ip1",
        "lenet/ip2",
    }
    assert plot.stat().st_size > 0


@pytest.mark.slow
def test_hlo_benchmark_counts_the_kernels_the_wrapper_adds():
    report = run_script("layer_adaptive_hlo.py", "--models", "mlp")
    (result,) = report["results"]
    # Three Dense layers, six gradients: at least one reduction each is added.
    assert result["wrapped_fusions"] >= result["plain_fusions"] + 6
    assert result["added"]["fusion"] == result["wrapped_fusions"] - result["plain_fusions"]
    # Eq. (9) needs one read of each gradient: no added kernel may write an array
    # the size of one (the squares, before XLA's tree reduction read them back).
    assert result["largest_argument_elements"] == 784 * 512  # the first kernel
    assert result["largest_added_output_elements"] <= result["largest_argument_elements"] // 16


@pytest.mark.slow
def test_fine_tuning_benchmark(mnist_path, tmp_path):
    plot = tmp_path / "fine_tuning.png"
    args = ["--mnist", str(mnist_path), "--quick", "--seeds", "1", "--plot", str(plot)]
    report = run_script("fine_tuning.py", *args)
    arms = ["uniform", "frozen", "layerwise_decay", "multipliers"]
    assert list(report["results"]) == arms
    # Every arm is tuned over the same number of configurations.
    assert len({len(report["tuning"][arm]) for arm in arms}) == 1
    for arm in arms:
        result = report["results"][arm]
        assert len(result["test_accuracy"]) == 1
        assert 0 <= result["summary"]["min"] <= result["summary"]["max"] <= 1
        assert result["chosen"] in [
            {k: v for k, v in t.items() if k != "validation_accuracy"}
            for t in report["tuning"][arm]
        ]
    # The frozen arm's backbone has a factor of 0, the head 1; decay gives the head 1.
    frozen = report["layer_factors_last_seed"]["frozen"]
    assert frozen["finetune/head/kernel"] == 1.0 and frozen["finetune/conv1/kernel"] == 0.0
    decay = report["layer_factors_last_seed"]["layerwise_decay"]["finetune/conv1/kernel"]
    assert decay == report["results"]["layerwise_decay"]["chosen"]["decay"] ** 3
    assert isinstance(report["verdict"]["met"], bool)
    assert report["machine"]["cpus"] >= 1 and report["command"].startswith("fine_tuning.py")
    assert plot.stat().st_size > 0


@pytest.mark.slow
def test_per_layer_rates_overhead_benchmark(tmp_path):
    plot = tmp_path / "overhead.png"
    args = ["--models", "mlp", "--repeats", "2", "--block-seconds", "0.02"]
    args += ["--warmup-blocks", "1", "--instances", "1", "--plot", str(plot)]
    report = run_script("per_layer_rates_overhead.py", *args)
    (result,) = report["results"]
    variants = result["variants"]
    assert set(variants) == {
        "plain",
        "trust_ratio",
        "layerwise_decay",
        "lars",
        "lamb",
        "plain_copy",
    }
    for name in ("trust_ratio", "layerwise_decay", "lars"):
        ratio = variants[name]["ratio_to_plain"]
        assert len(ratio["ratios"]) == 2 and ratio["ci95"][0] <= ratio["median"] <= ratio["ci95"][1]
        assert variants[name]["verdict"] and variants[name]["ratio_to_lamb"]["median"] > 0
    assert plot.stat().st_size > 0
