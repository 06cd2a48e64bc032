import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from keras_agd import Curriculum, HierarchicalCodebook, schedules


def values(schedule, steps):
    return [float(schedule(step)) for step in range(steps)]


def test_exponential_sequence_matches_formula():
    schedule = schedules.ExponentialAnnealing(7.5, 0.999)
    expected = [7.5 * 0.999**i for i in range(5)]
    np.testing.assert_allclose(values(schedule, 5), expected, rtol=1e-6)
    assert float(schedule(1)) == pytest.approx(7.4925, rel=1e-6)


def test_exponential_reaches_real_samples_below_the_floor():
    schedule = schedules.ExponentialAnnealing(8.0, 0.5, final_epsilon=1.5)
    assert values(schedule, 5) == [8.0, 4.0, 2.0, 0.0, 0.0]


def test_linear_sequence_matches_formula():
    schedule = schedules.LinearAnnealing(17.5, delta=1.0, final_epsilon=8.5)
    expected = [17.5 - i for i in range(9)] + [0.0, 0.0]
    assert values(schedule, 11) == expected


@pytest.mark.parametrize(
    "schedule",
    [
        schedules.ExponentialAnnealing(7.5, 0.9, final_epsilon=1.0, name="exp"),
        schedules.LinearAnnealing(17.5, 0.8, 8.5),
    ],
)
def test_config_round_trip(schedule):
    restored = type(schedule).from_config(schedule.get_config())
    assert restored.get_config() == schedule.get_config()
    serialized = keras.saving.serialize_keras_object(schedule)
    deserialized = keras.saving.deserialize_keras_object(serialized)
    assert type(deserialized) is type(schedule)
    assert values(deserialized, 12) == values(schedule, 12)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: schedules.ExponentialAnnealing(7.5, 1.1), "`decay_rate` must be in"),
        (lambda: schedules.ExponentialAnnealing(7.5, 0.0), "`decay_rate` must be in"),
        (lambda: schedules.ExponentialAnnealing(-1.0, 0.9), "`initial_epsilon` must be"),
        (lambda: schedules.ExponentialAnnealing(float("nan"), 0.9), "`initial_epsilon`"),
        (lambda: schedules.ExponentialAnnealing(1.0, 0.9, final_epsilon=2.0), "`final_epsilon`"),
        (lambda: schedules.LinearAnnealing(7.5, -1.0, 1.0), "`delta` must be a finite number > 0"),
        (lambda: schedules.LinearAnnealing(7.5, 1.0, -1.0), "`final_epsilon`"),
        # Issue 10: wrong types and values that float32 turns into 0 or inf.
        (lambda: schedules.ExponentialAnnealing(5.0, decay_rate="0.5"), "`decay_rate` must be"),
        (lambda: schedules.ExponentialAnnealing("5", 0.5), "`initial_epsilon` must be"),
        (lambda: schedules.LinearAnnealing(5, float("inf"), 1), "`delta` must be a finite"),
        (lambda: schedules.LinearAnnealing(5, 1e-50, 1), "`delta` must be >= 1.18e-38"),
        (lambda: schedules.ExponentialAnnealing(1e39, 0.9), "`initial_epsilon` must be at most"),
        (lambda: schedules.ExponentialAnnealing(1e-45, 0.9), "`initial_epsilon` must be >="),
        (lambda: schedules.ExponentialAnnealing(5.0, 0.9, name=3), "`name` must be a string"),
    ],
)
def test_invalid_schedules_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_numpy_scalars_are_numbers():
    schedule = schedules.ExponentialAnnealing(np.float32(8.0), np.float64(0.5), np.int64(1))
    assert values(schedule, 4) == [8.0, 4.0, 2.0, 0.0]
    assert type(schedule.get_config()["decay_rate"]) is float


def test_base_class_requires_call():
    with pytest.raises(NotImplementedError):
        schedules.AnnealingSchedule()(0)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y


@pytest.fixture(scope="module")
def codebook(digits):
    return HierarchicalCodebook(random_state=0).fit(*digits)


@pytest.mark.parametrize("kind", ["exponential", "linear"])
@pytest.mark.parametrize("levels", [1, 3, 10])
def test_from_codebook_gives_exactly_the_levels(codebook, kind, levels):
    schedule = schedules.from_codebook(codebook, levels=levels, kind=kind)
    epsilons = values(schedule, levels + 3)
    assert all(e > 0 for e in epsilons[:levels])
    assert epsilons[levels:] == [0.0, 0.0, 0.0]
    assert epsilons[:levels] == sorted(epsilons[:levels], reverse=True)
    assert epsilons[0] == pytest.approx(codebook.level_summary()[1]["mean_error"])


@pytest.mark.parametrize("levels", [1, 3])
def test_an_integer_schedule_of_a_curriculum_is_from_codebook(digits, codebook, levels):
    curriculum = Curriculum(*digits, schedule=levels, codebook=codebook, seed=0)
    expected = schedules.from_codebook(codebook, levels)
    assert curriculum.schedule.get_config() == expected.get_config()
    assert [level.epsilon for level in curriculum.levels] == pytest.approx(values(expected, levels))


def test_from_codebook_rejects_bad_arguments(codebook):
    with pytest.raises(ValueError, match="`levels` must be an integer >= 1"):
        schedules.from_codebook(codebook, 0)
    with pytest.raises(ValueError, match="`kind`"):
        schedules.from_codebook(codebook, 3, kind="cosine")
    for not_a_codebook in (None, HierarchicalCodebook()):
        with pytest.raises(TypeError, match="`codebook` must be a fitted"):
            schedules.from_codebook(not_a_codebook, 3)
    assert schedules.from_codebook(codebook, np.int64(3)).get_config() == (
        schedules.from_codebook(codebook, 3).get_config()
    )
