"""Smoke runs of the benchmark scripts on tiny settings (their figures come from full runs)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_time_to_accuracy_harness_writes_curves_summary_and_plot(mnist_path, tmp_path):
    import time_to_accuracy

    arguments = ["--mnist", str(mnist_path), "--out", str(tmp_path), "--seeds", "1"]
    arguments += ["--train-samples", "2000", "--hidden", "16", "--epochs", "2"]
    arguments += ["--mosaic-levels", "2", "--regular-epochs", "1", "--mosaic-batch-size", "256"]
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
    # AGD: a point after each of the 2 levels and after the one pass over the samples.
    agd_curve = result["runs"]["agd"][0]
    assert [point["mosaic_phase"] for point in agd_curve] == [1.0, 1.0, 0.0]
    mosaic_steps = agd_curve[1]["steps"]
    assert agd_curve[-1]["steps"] == mosaic_steps + 16
    # Every batch is full: mosaic steps of 256 items, then 16 of 128.
    assert agd_curve[-1]["examples"] == mosaic_steps * 256 + 16 * 128 < 3 * 2000
    epsilons = [point["epsilon"] for point in agd_curve]
    assert epsilons[0] > epsilons[1] > epsilons[2] == 0.0
    seconds = [point["seconds"] for point in agd_curve]
    assert seconds == sorted(seconds)
    assert all(np.isfinite(point["loss"]) for point in agd_curve)
    summary = result["summary"]["methods"]
    assert summary["sgd"]["ratio_to_sgd"] == 1.0
    assert summary["agd"]["codebook_build_s"] > 0 == summary["random_subset"]["codebook_build_s"]
    # Planning the curriculum is part of AGD's training time: the first point is later.
    assert (
        seconds[0] > summary["agd"]["curriculum_plan_s"] > 0 == summary["sgd"]["curriculum_plan_s"]
    )


@pytest.mark.slow
def test_synthetic_workload_times_mosaic_levels_and_full_epochs(tmp_path):
    import time_to_accuracy

    arguments = ["--workload", "synthetic", "--synthetic-samples", "20000", "--seeds", "1"]
    result = time_to_accuracy.main([*arguments, "--out", str(tmp_path)])
    assert result["coarsest_frontier_size"] == 10
    # Three levels of the 10 codewords, one batch of 1024 items each.
    assert result["mosaic_level_steps"] == [1, 1, 1]
    assert len(result["mosaic_level_s"]) == len(result["full_epoch_s"]) == 2
    assert 0 < result["mosaic_level_share_of_full"]
    assert len(result["curriculum_plan_s"]) == 1


@pytest.mark.slow
def test_mosaic_study_gives_every_arm_the_same_budget(mnist_path, tmp_path):
    import mosaic_study

    arguments = ["--mnist", str(mnist_path), "--out", str(tmp_path), "--seeds", "1"]
    arguments += ["--train-samples", "2048", "--validation-samples", "500", "--hidden", "16"]
    arguments += ["--budget-epochs", "2", "--mosaic-levels", "2", "--mosaic-batch-size", "256"]
    arguments += ["--arms", "sgd", "large_batch_sgd", "phased_sgd", "agd", "group_means"]
    arguments += ["agd_trust"]
    arguments += ["--rates", json.dumps(dict.fromkeys(mosaic_study.ARMS, 0.1)), "--name", "t"]
    result = mosaic_study.main(arguments)
    assert json.loads((tmp_path / "t.json").read_text())["regime"] == "t"
    # One epoch of examples in the mosaic phase: 2048 / 256 = 8 steps over 2 levels.
    assert result["steps_per_level"] == 4 and result["mosaic_steps"] == 8
    final = {arm: curves[0][-1] for arm, curves in result["runs"].items()}
    assert final["sgd"]["steps"] == 2 * 16 and final["sgd"]["examples"] == 2 * 2048
    assert final["large_batch_sgd"]["steps"] == 2 * 8
    for arm in ("phased_sgd", "agd", "group_means", "agd_trust"):
        assert final[arm]["steps"] == 8 + 16 and final[arm]["examples"] == 2 * 2048
    arms = result["summary"]["arms"]
    assert arms["agd"]["codebook_build_s"] > 0 == arms["phased_sgd"]["codebook_build_s"]
    assert arms["sgd"]["final"]["steps_ratio_to_sgd"]["median"] in (1.0, None)


def test_ablation_codebooks_keep_the_tree_and_change_only_the_codewords():
    import mosaic_study
    import numpy as np
    from sklearn.datasets import load_digits

    import keras_agd

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    codebook = keras_agd.HierarchicalCodebook(branching=3, random_state=0).fit(x, y)
    paths = codebook.sample_paths_
    medoids = mosaic_study.ablation_codebook(codebook, x, "medoids")
    means = mosaic_study.ablation_codebook(codebook, x, "group_means")
    for node in range(0, len(codebook.codewords_), 7):
        members = np.flatnonzero((paths == node).any(axis=1))
        distances = ((x[members] - codebook.codewords_[node]) ** 2).sum(1)
        np.testing.assert_array_equal(medoids.codewords_[node], x[members[distances.argmin()]])
    # Groups of the clusters' sizes within each class: at a level that covers every
    # sample, the count-weighted codewords of a class add up to the class's sum.
    level1 = codebook.node_level_ == 1
    assert codebook.node_count_[level1].sum() == len(x)
    for label in np.unique(y):
        nodes = np.flatnonzero(level1 & (codebook.node_label_ == label))
        total = (means.codewords_[nodes] * codebook.node_count_[nodes, None]).sum(0)
        np.testing.assert_allclose(total, x[y == label].sum(0), rtol=1e-4)
    level0 = codebook.node_level_ == 0  # A whole class: the same mean either way.
    np.testing.assert_allclose(means.codewords_[level0], codebook.codewords_[level0], atol=1e-4)
    assert not np.allclose(means.codewords_[~level0], codebook.codewords_[~level0])
    assert medoids.node_count_ is codebook.node_count_  # The tree is shared, not rebuilt.


@pytest.mark.slow
def test_regular_phase_pipeline_times_both_pipelines(mnist_path):
    import regular_phase_pipeline

    arguments = ["--mnist", str(mnist_path), "--repeats", "2", "--hidden", "8", "4"]
    result = regular_phase_pipeline.main([*arguments, "--train-samples", "3000"])
    assert [model["hidden"] for model in result["models"]] == [8, 4]
    for model in result["models"]:
        # Two interleaved rounds of one regular epoch each, after the warm-up epochs.
        assert [len(v) for v in model["epoch_seconds"].values()] == [2, 2]
        assert [len(v) for v in model["step_ms"].values()] == [2, 2]
        # 24 full batches of the stream against 3000 samples (23 full, one partial).
        assert model["samples_per_epoch"] == {
            "curriculum_dataset": 24 * 128,
            "from_tensor_slices": 3000,
        }
        assert model["ratio_curriculum_dataset_to_plain"] > 0
        assert model["step_ratio_curriculum_dataset_to_plain"] > 0


@pytest.mark.slow
def test_scale_benchmark_times_level_boundaries_on_a_small_memory_map(mnist_path, tmp_path):
    import scale

    arguments = ["--mnist", str(mnist_path), "--samples", "3000", "--data-dir", str(tmp_path)]
    arguments += ["--batch-size", "64", "--mosaic-batch-size", "128", "--mosaic-levels", "3"]
    result = scale.main([*arguments, "--repeats", "1"])
    assert result["codebook"]["data"]["n_samples"] == 3000
    train = result["train"]
    levels = train["levels"]
    assert len(levels) == 3
    assert train["mosaic_steps"] == sum(level["steps"] for level in levels)
    assert train["steps_per_epoch"] == -(-3000 // 64)
    boundaries = train["level_boundaries"]
    assert [b["first_step"] for b in boundaries["boundaries"]] == [
        level["first_step"] for level in levels[1:]
    ]
    assert boundaries["batch_size"] == 128
    assert boundaries["median_step_seconds"] > 0
    assert all(b["first_step_seconds"] > 0 for b in boundaries["boundaries"])
    assert len(train["agd_regular_samples_per_second"]) == 2
    assert len(train["plain_samples_per_second"]) == 1
    assert train["regular_throughput_vs_plain_median"] > 0
    assert all(np.isfinite(train["loss"]))
    assert not any(path.name.endswith(".u8") for path in tmp_path.iterdir())  # Removed.


IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


def _titles_and_labels(figure):
    """The suptitle, the y tick labels of each panel and the legend of a drawn figure."""
    labels = [[t.get_text() for t in axis.get_yticklabels()] for axis in figure.axes]
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    return figure._suptitle.get_text(), labels, legend


def test_mosaic_study_redraws_a_committed_figure_from_its_json(tmp_path):
    import mosaic_study

    source = IMAGES / "mosaic_study" / "mlp_noise0_budget6.json"
    (tmp_path / source.name).write_bytes(source.read_bytes())
    assert mosaic_study.main(["--plot-only", str(tmp_path / source.name)]) is None
    assert (tmp_path / "mlp_noise0_budget6.png").stat().st_size > 0
    result = json.loads(source.read_text())
    title, labels, legend = _titles_and_labels(mosaic_study.plot(result, tmp_path / "a.png"))
    assert title == "MNIST, MLP 512-256-128, 6-epoch budget (median of 5 seeds)"
    # Percent labels where the curves end (around 2%), not only at the decades.
    assert {"2%", "3%", "5%"} <= set(labels[0])
    assert len(set(legend)) == len(legend) == len(result["runs"]) + 1
    assert legend[-1].startswith("target: 98.04% test accuracy")


def test_time_to_accuracy_redraws_a_committed_figure_from_its_json(tmp_path):
    import time_to_accuracy

    source = IMAGES / "deformed.json"
    png = tmp_path / "deformed.png"
    assert time_to_accuracy.main(["--plot-only", str(source), "--plot-to", str(png)]) is None
    assert png.stat().st_size > 0
    result = json.loads(source.read_text())
    title, labels, legend = _titles_and_labels(time_to_accuracy.plot(result, png))
    assert title.startswith("Deformed MNIST, relu MLP 512-256-128")
    assert {"2%", "3%", "5%"} <= set(labels[1])
    assert legend[-1] == f"target: {result['summary']['target_accuracy']:.2%} test accuracy"


def test_every_arm_of_the_figures_has_its_own_look():
    import _plots

    looks = [(color, marker) for _, color, marker, _ in _plots.STYLES.values()]
    mosaic = [
        _plots.STYLES[name][1:3]
        for name in ("sgd", "adam", "large_batch_sgd", "phased_sgd", "random_subset")
        + ("agd", "agd_proportional", "group_means", "medoids")
    ]
    assert len(set(mosaic)) == len(mosaic)
    assert len(set(looks)) == len(looks)
