import pandas as pd
import pytest

from integral_cli.errors import ConfigError
from integral_cli.experiment import ExperimentConfig
from integral_cli.fit import DEFAULT_THRESHOLD, FIT_COLUMNS, FitConfig, fit_report

INTEGRAL_FAMILY = ("integral", "integral-marginal", "integral-debiased", "integral-l1")


@pytest.fixture(scope="module")
def integral_family():
    # the default settings and steps, only the decoders narrowed
    return fit_report(FitConfig(ExperimentConfig(samples=16, device="cpu", decoders=INTEGRAL_FAMILY)))


def test_integral_family_gets_within_a_tenth_of_a_pixel_in_the_default_steps(integral_family):
    best, _ = integral_family
    assert best["decoder"].tolist() == list(INTEGRAL_FAMILY)
    assert best["trainable"].all()
    assert (best["final_max_error"] < DEFAULT_THRESHOLD).all()
    assert (best["steps_to_threshold"] >= 1).all()
    # they all started from well over the threshold
    assert (best["start_error"] > 10 * DEFAULT_THRESHOLD).all()


def test_every_learning_rate_is_reported_and_the_best_is_the_fastest(integral_family):
    best, runs = integral_family
    assert list(runs.columns) == list(FIT_COLUMNS) and list(best.columns) == list(FIT_COLUMNS)
    assert len(runs) == 4 * 6
    for row in best.itertuples():
        finished = runs[(runs.decoder == row.decoder) & runs.trainable]
        assert row.steps_to_threshold == finished.steps_to_threshold.min()
        # a run counts as finished only when its worst target is within the threshold
        assert (runs[~runs.trainable].steps_to_threshold.isna()).all()


def test_argmax_decoders_are_not_trainable():
    best, _ = fit_report(FitConfig(ExperimentConfig(samples=8, device="cpu", decoders=("argmax", "argmax-quarter")),
                                   steps=20))
    assert (best["gradient"] == "none").all()
    assert not best["trainable"].any()
    assert best["steps_to_threshold"].isna().all() and best["learning_rate"].isna().all()
    assert (best["final_error"] == best["start_error"]).all()


def test_start_is_start_distance_off_target():
    # DARK reads a Gaussian blob's centre to ~1e-3 heatmap px, so its starting error is
    # start_distance heatmap px, times the stride in image px
    for distance in (0.5, 2.0):
        best, _ = fit_report(FitConfig(ExperimentConfig(samples=8, stride=4, device="cpu", decoders=("dark",)),
                                       steps=1, start_distance=distance))
        assert best["start_error"].iloc[0] == pytest.approx(4 * distance, abs=0.01)


def test_deterministic():
    config = FitConfig(ExperimentConfig(samples=4, device="cpu", decoders=("integral", "dark")), steps=15)
    first, first_runs = fit_report(config)
    second, second_runs = fit_report(config)
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(first_runs, second_runs)


def test_progress_reaches_every_step():
    seen = []
    fit_report(FitConfig(ExperimentConfig(samples=2, device="cpu", decoders=("integral", "argmax")), steps=5),
               progress=lambda name, step: seen.append((name, step)))
    assert ("integral", 5) in seen and ("argmax", 5) in seen


@pytest.mark.parametrize(
    ("changes", "text"),
    [
        ({"steps": 0}, "steps"),
        ({"learning_rates": ()}, "learning rates"),
        ({"learning_rates": (0.1, -1.0)}, "learning rate"),
        ({"threshold": 0.0}, "threshold"),
        ({"start_distance": -1.0}, "start_distance"),
        ({"experiment": ExperimentConfig(dtype="float16", device="cpu")}, "float32 or float64"),
    ],
)
def test_bad_settings(changes, text):
    with pytest.raises(ConfigError, match=text):
        FitConfig(**changes)
