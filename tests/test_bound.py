"""The Cramér–Rao bound under noise, and the least-squares fit that reaches it."""

import math

import numpy as np
import pytest
import torch

from integral_cli import ExperimentConfig, run_experiment
from integral_cli.bound import crlb_rmse_image, fisher_information, position_covariance
from integral_cli.decoders import decode_counted
from integral_cli.errors import ConfigError
from integral_cli.synth import render_heatmaps


def interior_points(n, seed=0):
    """Sub-pixel points at least 8 sigma (sigma 2) from the border of a 64x48 map."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 2, generator=generator, dtype=torch.float64) * torch.tensor([14.0, 30.0]) + 16.0


def test_the_bound_is_the_closed_form_away_from_the_border():
    # per axis (2/pi) (sn/A)^2 heatmap px^2, whatever sigma: 2 noise stride / sqrt(pi) in 2D
    for noise in (0.02, 0.05, 0.1):
        bound = crlb_rmse_image(interior_points(500), (64, 48), 2.0, 10.0, 10.0 * noise, stride=4)
        assert bound == pytest.approx(2 * noise * 4 / math.sqrt(math.pi), rel=0.02)
    # the 0.2257 px the design quotes at noise 0.05, stride 4
    assert crlb_rmse_image(interior_points(50), (64, 48), 2.0, 10.0, 0.5, stride=4) == pytest.approx(0.2257, abs=1e-4)


def plain_map(theta, size):
    """A * exp(-((x - x0)^2 + (y - y0)^2) / (2 s^2)), pixel by pixel."""
    x0, y0, amplitude, sigma = theta
    height, width = size
    return np.array(
        [
            [amplitude * math.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2)) for x in range(width)]
            for y in range(height)
        ]
    )


def test_the_fisher_matrix_is_the_curvature_of_the_log_likelihood():
    # At the true parameters the expected curvature of the negative log-likelihood
    # sum (h(theta) - h(theta*))^2 / (2 sn^2) is the Fisher matrix; with noise-free data
    # the curvature is exactly J^T J / sn^2, so central second differences of it must
    # equal the matrix (to the differences' truncation, ~1e-6 relative at step 1e-4).
    theta, size, noise_sd = np.array([20.3, 9.7, 4.0, 1.8]), (24, 30), 0.3
    data = plain_map(theta, size)

    def nll(t):
        return ((plain_map(t, size) - data) ** 2).sum() / (2 * noise_sd**2)

    step = 1e-4
    curvature = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            e_i, e_j = np.eye(4)[i] * step, np.eye(4)[j] * step
            curvature[i, j] = (
                nll(theta + e_i + e_j) - nll(theta + e_i - e_j) - nll(theta - e_i + e_j) + nll(theta - e_i - e_j)
            ) / (4 * step**2)
    centre = torch.from_numpy(theta[:2]).view(1, 1, 2)
    got = fisher_information(centre, size, theta[3], theta[2], noise_sd)[0, 0].numpy()
    np.testing.assert_allclose(got, curvature, rtol=1e-4, atol=1e-6 * np.abs(curvature).max())


def test_a_window_or_the_border_costs_information():
    centre, border = torch.tensor([[[24.0, 32.0]]]), torch.tensor([[[1.3, 32.0]]])
    full = position_covariance(fisher_information(centre, (64, 48), 2.0, 1.0, 0.1))[0, 0]
    windowed = position_covariance(fisher_information(centre, (64, 48), 2.0, 1.0, 0.1, encoder="udp"))[0, 0]
    cut = position_covariance(fisher_information(border, (64, 48), 2.0, 1.0, 0.1))[0, 0]
    assert full[0, 0] == pytest.approx(2 / math.pi * 0.1**2, rel=1e-6)
    assert windowed[0, 0] > full[0, 0] and cut[0, 0] > 1.2 * full[0, 0]
    with pytest.raises(ConfigError, match="msra"):
        fisher_information(centre, (64, 48), 2.0, 1.0, 0.1, encoder="msra")


def test_the_bound_and_the_efficiency_in_the_rows():
    rows = run_experiment(ExperimentConfig(samples=400, device="cpu", noise=0.05, decoders=("argmax", "dark")))
    assert rows.crlb_rmse.iloc[0] == pytest.approx(0.2257, rel=0.03) and rows.crlb_rmse.nunique() == 1
    np.testing.assert_allclose(rows.efficiency, rows.crlb_rmse / rows.rmse, rtol=1e-12)
    # no noise, an encoder without a bound, or a second peak: no bound to show
    for change in (dict(noise=0.0), dict(noise=0.05, encoder="msra"), dict(noise=0.05, distractor=0.3)):
        clean = run_experiment(ExperimentConfig(samples=20, device="cpu", decoders=("argmax",), **change))
        assert clean.crlb_rmse.isna().all() and clean.efficiency.isna().all()


@pytest.mark.parametrize("sigma", [1.5, 3.0])
@pytest.mark.parametrize("noise", [0.02, 0.05, 0.1])
def test_gaussian_fit_reaches_the_bound(sigma, noise):
    # The maximum-likelihood estimate under white Gaussian noise: its RMSE is the bound
    # to within 10% (the RMSE of 1500 samples has a relative standard error near 2%).
    config = ExperimentConfig(samples=1500, device="cpu", noise=noise, sigma=sigma, decoders=("gaussian-fit",), seed=7)
    row = run_experiment(config).iloc[0]
    assert row.efficiency == pytest.approx(1.0, abs=0.10), row.efficiency
    assert row.fallbacks == 0


def test_gaussian_fit_is_exact_on_clean_maps():
    rows = run_experiment(ExperimentConfig(samples=300, device="cpu", decoders=("gaussian-fit",))).iloc[0]
    assert rows.max_error < 1e-4 and rows.fallbacks == 0


def test_a_fit_that_fails_keeps_its_start_and_is_counted():
    # a spike beside a dip: the best Gaussian has a negative amplitude, so the fit is
    # refused and the log-parabola through the spike and its neighbours stands instead
    maps = -render_heatmaps(
        torch.tensor([[[8.0, 8.0]], [[8.0, 8.0]]], dtype=torch.float64), (17, 17), 2.0, amplitude=5.0
    )
    maps[0, 0, 8, 10] = 0.1
    maps[1] += render_heatmaps(torch.tensor([[[8.3, 7.6]]], dtype=torch.float64), (17, 17), 1.5, amplitude=50.0)[0]
    points, fell_back = decode_counted(maps, "gaussian-fit", fit_radius=4)
    assert fell_back.tolist() == [[True], [False]]
    lifted = maps[0, 0] - maps[0, 0, 4:13, 6:15].min()  # the window's minimum is the offset
    left, centre, right = (math.log(lifted[8, x].item()) for x in (9, 10, 11))
    expected_x = 10 + 0.5 * (left - right) / (left - 2 * centre + right)
    assert points[0, 0, 0].item() == pytest.approx(expected_x, abs=1e-12)
