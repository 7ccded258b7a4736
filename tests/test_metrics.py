import math
import re

import numpy as np
import pytest
import torch

from integral_cli.errors import ShapeError
from integral_cli.metrics import SUMMARY_FIELDS, euclidean_errors, quantile_sorted, summarize_offsets


def test_euclidean_errors():
    predicted = torch.tensor([[[3.0, 4.0], [1.0, 1.0]]])
    target = torch.tensor([[[0.0, 0.0], [1.0, 2.0]]])
    torch.testing.assert_close(euclidean_errors(predicted, target), torch.tensor([[5.0, 1.0]]))


def test_euclidean_errors_shape_mismatch():
    with pytest.raises(ShapeError):
        euclidean_errors(torch.zeros(1, 2, 2), torch.zeros(1, 3, 2))


@pytest.mark.parametrize("q", [0.0, 0.5, 0.95, 1.0])
@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_quantile_matches_numpy(rng, q, n):
    values = np.sort(rng.normal(size=n))
    assert quantile_sorted(torch.from_numpy(values), q).item() == pytest.approx(np.quantile(values, q))


def test_summary_against_straightforward_reference(rng):
    offsets = rng.normal(0.3, 1.0, size=(1001, 2))
    summary = summarize_offsets(torch.from_numpy(offsets), stride=4)
    errors = [math.hypot(dx, dy) for dx, dy in offsets]
    n = len(errors)
    mean = sum(errors) / n
    std = math.sqrt(sum((e - mean) ** 2 for e in errors) / (n - 1))
    expected = {
        "mean_error": mean,
        "median_error": float(np.median(errors)),
        "p95_error": float(np.percentile(errors, 95)),
        "max_error": max(errors),
        "rmse": math.sqrt(sum(e * e for e in errors) / n),
        "bias_x": sum(o[0] for o in offsets) / n,
        "bias_y": sum(o[1] for o in offsets) / n,
        "mean_error_hm": mean / 4,
        "ci95_low": mean - 1.959964 * std / math.sqrt(n),
        "ci95_high": mean + 1.959964 * std / math.sqrt(n),
        "nonfinite": 0,
    }
    assert list(summary) == list(SUMMARY_FIELDS)
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value, rel=1e-6), key


def test_nonfinite_counted_and_excluded():
    offsets = torch.tensor([[3.0, 4.0], [float("nan"), 0.0], [0.0, float("inf")], [0.0, 1.0]])
    summary = summarize_offsets(offsets, stride=1)
    assert summary["nonfinite"] == 2
    assert summary["mean_error"] == pytest.approx(3.0)
    assert summary["max_error"] == pytest.approx(5.0)


def test_all_nonfinite_gives_nan_statistics():
    summary = summarize_offsets(torch.full((3, 2), float("nan")), stride=1)
    assert summary["nonfinite"] == 3
    assert all(math.isnan(summary[key]) for key in SUMMARY_FIELDS[:-1])


def test_single_sample_has_no_interval():
    summary = summarize_offsets(torch.tensor([[3.0, 4.0]]), stride=1)
    assert summary["mean_error"] == 5.0 and math.isnan(summary["ci95_low"])


# ------------------------------------------------------ mutation-testing follow-ups
def test_euclidean_errors_names_the_argument_that_is_wrong():
    with pytest.raises(ShapeError, match=r"^predicted must have shape \(B, K, 2\), got \(1, 2\)$"):
        euclidean_errors(torch.zeros(1, 2), torch.zeros(1, 1, 2))
    with pytest.raises(ShapeError, match=r"^target must have shape \(B, K, 2\), got \(1, 1, 3\)$"):
        euclidean_errors(torch.zeros(1, 1, 2), torch.zeros(1, 1, 3))
    with pytest.raises(ShapeError, match=r"^predicted \(1, 2, 2\) and target \(1, 3, 2\) differ$"):
        euclidean_errors(torch.zeros(1, 2, 2), torch.zeros(1, 3, 2))


def test_summary_is_accumulated_in_float64_on_the_cpu():
    # (3e20, 4e20) squared overflows float32 (max 3.4e38); in float64 its length is 5e20.
    summary = summarize_offsets(torch.tensor([[3e20, 4e20], [0.0, 0.0]], dtype=torch.float32), stride=1)
    assert summary["max_error"] == pytest.approx(5e20, rel=1e-6)
    assert summary["rmse"] == pytest.approx(5e20 / math.sqrt(2), rel=1e-6)
    # float64 input keeps its last bits: 1 + 2^-40 is 1 in float32
    summary = summarize_offsets(torch.tensor([[1 + 2**-40, 0.0]], dtype=torch.float64), stride=1)
    assert summary["max_error"] == 1 + 2**-40


@pytest.mark.parametrize("shape", [(4, 3), (2, 1, 2), (2,)])
def test_summary_refuses_offsets_of_another_shape(shape):
    with pytest.raises(ShapeError, match=rf"^offsets must have shape \(N, 2\), got {re.escape(str(shape))}$"):
        summarize_offsets(torch.zeros(shape), stride=1)


def test_two_samples_have_an_interval_worked_by_hand():
    # errors 5 and 1: mean 3, sample std sqrt(2^2 + 2^2) = 2 sqrt 2, standard error 2
    summary = summarize_offsets(torch.tensor([[3.0, 4.0], [0.0, 1.0]]), stride=2)
    assert summary["mean_error"] == 3.0 and summary["mean_error_hm"] == 1.5
    assert summary["ci95_low"] == pytest.approx(3 - 1.959963984540054 * 2, abs=1e-12)
    assert summary["ci95_high"] == pytest.approx(3 + 1.959963984540054 * 2, abs=1e-12)
    assert summary["median_error"] == 3.0 and summary["p95_error"] == pytest.approx(1 + 0.95 * 4)


def test_a_single_sample_asks_for_no_standard_deviation():
    # the standard deviation of one value is undefined (torch warns); it is not asked for
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = summarize_offsets(torch.tensor([[3.0, 4.0]]), stride=1)
    assert math.isnan(summary["ci95_low"]) and math.isnan(summary["ci95_high"])
