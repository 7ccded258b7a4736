import pytest
import torch

from integral_cli.errors import ConfigError, DeviceError
from integral_cli.experiment import ExperimentConfig
from integral_cli.fit import DEFAULT_THRESHOLD, FIT_COLUMNS, FitConfig, fit_report

from support import assert_rows_equal

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
    # the best run of each decoder is one of its runs, at a rate that was tried
    assert set(best.learning_rate) <= set(runs.learning_rate)
    # a run that got there ends there (the schedule anneals to 0), one that did not does not
    assert (runs[runs.trainable].final_max_error < DEFAULT_THRESHOLD).all()
    assert (runs[~runs.trainable].final_max_error >= DEFAULT_THRESHOLD).all()


def test_a_threshold_above_the_start_is_reached_at_step_0():
    # the blobs start 1 heatmap px = 4 image px off; DARK reads them to ~1e-3 px
    best, runs = fit_report(
        FitConfig(ExperimentConfig(samples=4, device="cpu", decoders=("dark",)), steps=3, threshold=4.1)
    )
    assert (runs["steps_to_threshold"] == 0).all() and best["trainable"].all()
    best, _ = fit_report(
        FitConfig(ExperimentConfig(samples=4, device="cpu", decoders=("dark",)), steps=3, threshold=3.9)
    )
    assert best["steps_to_threshold"].iloc[0] != 0


def test_a_decoder_whose_gradient_is_zero():
    # DARK takes no step on logit maps (<= 0, no log), so nothing moves them
    best, _ = fit_report(
        FitConfig(ExperimentConfig(samples=2, device="cpu", decoders=("dark",), encoder="logit"), steps=5)
    )
    assert best["gradient"].iloc[0] == "zero" and not best["trainable"].iloc[0]
    assert best["final_error"].iloc[0] == best["start_error"].iloc[0]


def test_a_run_that_does_not_fit_the_budget_is_refused():
    with pytest.raises(ConfigError, match="needs about .* MiB, more than the memory budget of 64 MiB"):
        fit_report(FitConfig(ExperimentConfig(samples=1000, device="cpu", max_memory_mib=64)))


def test_float64_refused_on_mps(monkeypatch):
    from integral_cli import fit

    monkeypatch.setattr(fit, "resolve_device", lambda spec: torch.device("mps"))
    with pytest.raises(DeviceError, match="float64"):
        fit_report(FitConfig(ExperimentConfig(samples=2, device="cpu", dtype="float64")))


def test_argmax_decoders_are_not_trainable():
    best, _ = fit_report(
        FitConfig(ExperimentConfig(samples=8, device="cpu", decoders=("argmax", "argmax-quarter")), steps=20)
    )
    assert (best["gradient"] == "none").all()
    assert not best["trainable"].any()
    assert best["steps_to_threshold"].isna().all() and best["learning_rate"].isna().all()
    assert (best["final_error"] == best["start_error"]).all()


def test_start_is_start_distance_off_target():
    # DARK reads a Gaussian blob's centre to ~1e-3 heatmap px, so its starting error is
    # start_distance heatmap px, times the stride in image px
    for distance in (0.5, 2.0):
        best, _ = fit_report(
            FitConfig(
                ExperimentConfig(samples=8, stride=4, device="cpu", decoders=("dark",)),
                steps=1,
                start_distance=distance,
            )
        )
        assert best["start_error"].iloc[0] == pytest.approx(4 * distance, abs=0.01)


def test_deterministic():
    config = FitConfig(ExperimentConfig(samples=4, device="cpu", decoders=("integral", "dark")), steps=15)
    first, first_runs = fit_report(config)
    second, second_runs = fit_report(config)
    # the same command twice: bit-identical
    assert_rows_equal(first, second)
    assert_rows_equal(first_runs, second_runs)


def test_progress_reaches_every_step():
    seen = []
    fit_report(
        FitConfig(ExperimentConfig(samples=2, device="cpu", decoders=("integral", "argmax")), steps=5),
        progress=lambda name, step: seen.append((name, step)),
    )
    assert ("integral", 5) in seen and ("argmax", 5) in seen


@pytest.mark.parametrize(
    ("changes", "text"),
    [
        ({"steps": 0}, "steps"),
        ({"learning_rates": ()}, "learning rates"),
        ({"learning_rates": (0.1, -1.0)}, "learning rate"),
        ({"threshold": 0.0}, "threshold"),
        ({"start_distance": -1.0}, "start_distance"),
        ({"start_distance": 6.5}, "at most the margin"),
        ({"experiment": ExperimentConfig(dtype="float16", device="cpu")}, "float32 or float64"),
    ],
)
def test_bad_settings(changes, text):
    with pytest.raises(ConfigError, match=text):
        FitConfig(**changes)
