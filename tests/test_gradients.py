import math

import pandas as pd
import pytest
import torch

from integral_cli import DECODERS, Decoder, gradients
from integral_cli.decoders.integral import decode_integral
from integral_cli.errors import ConfigError
from integral_cli.experiment import ExperimentConfig, render_maps, sample_truth
from integral_cli.gradients import AGREEMENT_TOLERANCE, GradConfig, gradient_report

SETTINGS = {"samples": 6, "device": "cpu", "seed": 3}


@pytest.fixture(scope="module")
def report():
    return gradient_report(GradConfig(ExperimentConfig(**SETTINGS))).set_index("decoder")


def test_one_row_per_decoder_in_order():
    rows = gradient_report(GradConfig(ExperimentConfig(decoders=("integral", "argmax"), **SETTINGS)))
    assert rows["decoder"].tolist() == ["integral", "argmax"]


@pytest.mark.parametrize("name", list(DECODERS))
def test_gradient_present_exactly_where_declared(report, name):
    row = report.loc[name]
    if DECODERS[name].differentiable:
        assert row["gradient"] == "yes" and row["grad_norm"] > 0
        assert row["agrees"] is True or row["agrees"] == True  # noqa: E712 - numpy bool
        assert row["max_relative_difference"] <= AGREEMENT_TOLERANCE
    else:
        assert row["gradient"] == "none" and row["grad_norm"] == 0 and row["support_px"] == 0
        assert row["agrees"] is None and math.isnan(row["max_relative_difference"])
        # argmax is piecewise constant: a small step changes nothing
        assert row["fd_derivative"] == 0


def test_integral_gradient_norm_matches_the_closed_form(report):
    # x = sum p_j x_j with p = softmax(h): dx/dh_j = p_j (x_j - x); likewise y. In image
    # pixels (center convention) both scale by the stride.
    config = ExperimentConfig(**SETTINGS)
    maps = render_maps(config, sample_truth(config, torch.device("cpu")).double(), 0)[:, 0]
    height, width = maps.shape[-2:]
    p = torch.softmax(maps.flatten(-2), dim=-1).view_as(maps)
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    ex = (p * xs).sum((-2, -1), keepdim=True)
    ey = (p * ys).sum((-2, -1), keepdim=True)
    norms = config.stride * torch.sqrt((p**2 * ((xs - ex) ** 2 + (ys - ey) ** 2)).sum((-2, -1)))
    assert report.loc["integral", "grad_norm"] == pytest.approx(norms.mean().item(), rel=1e-9)


def test_support_is_the_pixels_a_decoder_reads(report):
    # a (2r+1)^2 window for soft-argmax-local (r = 2, points away from the border); every
    # pixel for the integral family
    assert report.loc["soft-argmax-local", "support_px"] == 25
    assert report.loc["integral", "support_px"] == 64 * 48


def test_a_wrong_gradient_is_caught(monkeypatch):
    class HalfGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, maps):
            return maps.clone()

        @staticmethod
        def backward(ctx, grad):
            return 0.5 * grad

    wrong = Decoder(
        "integral",
        lambda maps, beta=1.0: decode_integral(HalfGradient.apply(maps), beta),
        differentiable=True,
        reference="test",
        description="test",
        params=("beta",),
    )
    monkeypatch.setitem(DECODERS, "integral", wrong)
    row = gradient_report(GradConfig(ExperimentConfig(decoders=("integral",), **SETTINGS))).iloc[0]
    assert row["gradient"] == "yes"
    # half the true derivative: off by |<g, v>| / sum |g_i v_i| of the halved terms, which
    # is at most 1 and large unless the terms cancel
    assert 0.1 < row["max_relative_difference"] <= 1
    assert not row["agrees"]


def test_a_gradient_wrong_only_in_the_tails_is_caught(monkeypatch):
    # at amplitude 1 the background pixels carry much of the integral's gradient (the
    # pull toward the centre): a gradient that drops them must not pass
    class TailsDropped(torch.autograd.Function):
        @staticmethod
        def forward(ctx, maps):
            ctx.save_for_backward(maps)
            return maps.clone()

        @staticmethod
        def backward(ctx, grad):
            (maps,) = ctx.saved_tensors
            return grad * (maps.abs() >= 1e-5)

    wrong = Decoder(
        "integral",
        lambda maps, beta=1.0: decode_integral(TailsDropped.apply(maps), beta),
        differentiable=True,
        reference="test",
        description="test",
        params=("beta",),
    )
    monkeypatch.setitem(DECODERS, "integral", wrong)
    row = gradient_report(GradConfig(ExperimentConfig(decoders=("integral",), amplitude=1.0, **SETTINGS))).iloc[0]
    assert not row["agrees"] and row["max_relative_difference"] > 100 * AGREEMENT_TOLERANCE


def test_chunks_do_not_change_the_report():
    # 1 MiB holds 2 float64 maps of 64x48 at a time
    whole = gradient_report(GradConfig(ExperimentConfig(**SETTINGS)))
    chunked = gradient_report(GradConfig(ExperimentConfig(max_memory_mib=1, **SETTINGS)))
    # The verdicts and the pixels a gradient reaches do not depend on how the maps are
    # batched: they must be identical.
    verdicts = ["decoder", "declared_differentiable", "gradient", "support_px", "agrees"]
    pd.testing.assert_frame_equal(chunked[verdicts], whole[verdicts], check_exact=True)
    # The rest are float64 sums whose order follows the batch and the CPU's kernels.
    # grad_norm: a mean of norms of O(1), reordered: a few ulps, far below 1e-12.
    # fd_derivative: each difference quotient divides float64 rounding of the decoded
    # point (about 16 eps |x| <= 1e-13 image px) by the step 2 eps = 2e-6, so each can move
    # by ~1e-7 between kernels; 1e-6 absolute is ten times that.
    pd.testing.assert_series_equal(chunked["grad_norm"], whole["grad_norm"], rtol=1e-12, atol=0)
    pd.testing.assert_series_equal(chunked["fd_derivative"], whole["fd_derivative"], rtol=0, atol=1e-6)
    # max_relative_difference measures rounding noise itself (seen from 9e-9 to 4e-8 on
    # different CPUs and batchings): only its NaN pattern and its size are stable. Two
    # honest runs both stay under a tenth of the agreement tolerance.
    for frame in (whole, chunked):
        noise = frame["max_relative_difference"]
        assert (noise.isna() == (frame["gradient"] == "none")).all()
        assert (noise.dropna() < AGREEMENT_TOLERANCE / 10).all(), noise


def test_a_jump_shows_as_a_finite_difference_without_gradient():
    # msra maps are symmetric about the rounded centre: the quarter offset sits on a tie,
    # and any step breaks it by +-0.25 heatmap px
    config = ExperimentConfig(decoders=("argmax-quarter",), encoder="msra", **SETTINGS)
    row = gradient_report(GradConfig(config)).iloc[0]
    assert row["gradient"] == "none" and row["fd_derivative"] > 1e3


def test_a_zero_gradient_is_reported_as_zero():
    # DARK takes no step where the log of the blurred map is undefined (logit maps are
    # <= 0), so its point does not depend on the map
    row = gradient_report(GradConfig(ExperimentConfig(decoders=("dark",), encoder="logit", **SETTINGS))).iloc[0]
    assert row["gradient"] == "zero" and row["grad_norm"] == 0


@pytest.mark.parametrize("epsilon", [0.0, -1e-6, 2.0])
def test_bad_epsilon(epsilon):
    with pytest.raises(ConfigError, match="epsilon"):
        GradConfig(ExperimentConfig(**SETTINGS), epsilon=epsilon)


def test_float64_refused_on_mps(monkeypatch):
    monkeypatch.setattr(gradients, "resolve_device", lambda spec: torch.device("mps"))
    with pytest.raises(gradients.DeviceError, match="float64"):
        gradient_report(GradConfig(ExperimentConfig(**SETTINGS)))
