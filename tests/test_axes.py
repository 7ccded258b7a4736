"""The experiment axes: encoders, noise, distractors, positions, conventions, sampling,
dtype and image-space sigma, each against an independently derived expectation."""

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from integral_cli import ExperimentConfig, decode, render_heatmaps, run_experiment
from integral_cli.cli import app
from integral_cli.errors import ConfigError
from integral_cli.experiment import render_maps, sample_truth
from integral_cli.synth import add_noise, counter_uniform, sample_heatmap_points

from references import REFERENCES, ref_integral
from support import assert_rows_equal

MEAN_2D = (math.sqrt(2) + math.log(1 + math.sqrt(2))) / 6  # argmax, x stride
STD_2D = math.sqrt(1 / 6 - MEAN_2D**2)
SYMMETRIC = ("argmax", "argmax-quarter", "dark", "dark-udp", "integral-l1", "integral-debiased", "soft-argmax-local")


# --------------------------------------------------------------------------- encoders
class TestMsra:
    def test_rounded_centre_and_window(self):
        # centre (10.4, 7.6) rounds to (10, 8); sigma 1.5: window |p - mu| <= 4.5, i.e. 4 px
        maps = render_heatmaps(
            torch.tensor([[[10.4, 7.6]]], dtype=torch.float64), (16, 20), 1.5, amplitude=3.0, encoder="msra"
        )[0, 0].numpy()
        ys, xs = np.mgrid[0:16, 0:20]
        inside = (np.abs(xs - 10) <= 4) & (np.abs(ys - 8) <= 4)
        expected = np.where(inside, 3.0 * np.exp(-((xs - 10) ** 2 + (ys - 8) ** 2) / (2 * 1.5**2)), 0.0)
        np.testing.assert_allclose(maps, expected, rtol=1e-12, atol=0)

    def test_peak_stays_on_the_rounded_pixel_at_the_top_left_border(self):
        # MMPose's truncating window would put this peak at x = 1 (sigma 1.5, centre x 0.3).
        maps = render_heatmaps(torch.tensor([[[0.3, 1.2]]]), (8, 8), 1.5, encoder="msra")
        assert decode(maps, "argmax").tolist() == [[[0.0, 1.0]]]

    @pytest.mark.parametrize("stride", [2, 4])
    def test_symmetric_decoders_return_the_rounded_centre(self, stride):
        # Encoding-side quantization: every decoder symmetric about the peak returns the
        # rounded centre, so its error is argmax's, 0.3826 * stride.
        n = 6000
        config = ExperimentConfig(stride=stride, encoder="msra", samples=n, decoders=SYMMETRIC, device="cpu")
        rows = run_experiment(config)
        tolerance = 4 * STD_2D * stride / math.sqrt(n)
        assert rows.mean_error.tolist() == pytest.approx([MEAN_2D * stride] * len(SYMMETRIC), abs=tolerance)
        assert rows.mean_error.max() - rows.mean_error.min() < 1e-4


def test_udp_encoder_keeps_the_sub_pixel_centre_in_the_rounded_window():
    maps = render_heatmaps(torch.tensor([[[10.4, 7.6]]], dtype=torch.float64), (16, 20), 2.0, encoder="udp")[
        0, 0
    ].numpy()
    ys, xs = np.mgrid[0:16, 0:20]
    inside = (np.abs(xs - 10) <= 6) & (np.abs(ys - 8) <= 6)
    expected = np.where(inside, np.exp(-((xs - 10.4) ** 2 + (ys - 7.6) ** 2) / 8.0), 0.0)
    np.testing.assert_allclose(maps, expected, rtol=1e-12, atol=0)


def test_logit_encoder_softmax_is_the_normalised_gaussian():
    center = torch.tensor([[[20.3, 30.7]]], dtype=torch.float64)
    logits = render_heatmaps(center, (64, 48), 2.0, encoder="logit")
    gaussian = render_heatmaps(center, (64, 48), 2.0)
    p = torch.softmax(logits.flatten(-2), -1).view_as(logits)
    torch.testing.assert_close(p, gaussian / gaussian.sum())
    # and so the paper's integral is exact on it (far from the border)
    torch.testing.assert_close(decode(logits, "integral"), center, atol=1e-9, rtol=0)


def test_fwhm_encoder_peak_is_ten_and_width_is_the_fwhm():
    # sigma 4 / 2.3548 is a full width at half maximum of 4 px: 5 at 2 px from the peak
    maps = render_heatmaps(
        torch.tensor([[[4.0, 4.0]]], dtype=torch.float64),
        (9, 9),
        4.0 / 2.3548200450309493,
        amplitude=3.0,
        encoder="fwhm",
    )
    assert maps.max().item() == pytest.approx(10.0)
    assert maps[0, 0, 4, 6].item() == pytest.approx(5.0) and maps[0, 0, 2, 4].item() == pytest.approx(5.0)


# ------------------------------------------------------------------------------ noise
def test_noise_is_normal_with_the_requested_level():
    maps = torch.zeros(400, 1, 32, 24)
    noisy = add_noise(maps, 0.05, 10.0, seed=3, first_sample=0)
    assert noisy.mean().item() == pytest.approx(0.0, abs=0.002)
    assert noisy.std().item() == pytest.approx(0.5, rel=0.005)  # 0.05 x peak 10
    # normal, not uniform: the fraction beyond 2 standard deviations is 4.55%
    assert (noisy.abs() > 1.0).float().mean().item() == pytest.approx(0.0455, abs=0.002)


def test_seeds_beyond_32_bits_get_their_own_noise():
    index = torch.arange(10)
    assert not torch.equal(counter_uniform(5, 1, index, 8), counter_uniform(5 + 2**32, 1, index, 8))
    assert not torch.equal(counter_uniform(5, 1, index, 8), counter_uniform(5, 2, index, 8))


def test_noise_depends_only_on_the_sample_index():
    a = counter_uniform(7, 1, torch.arange(100, 130), 64)
    b = counter_uniform(7, 1, torch.arange(0, 200), 64)[100:130]
    assert torch.equal(a, b)
    assert not torch.equal(a, counter_uniform(8, 1, torch.arange(100, 130), 64))


def test_noisy_experiment_does_not_depend_on_the_chunk_size():
    base = ExperimentConfig(samples=300, noise=0.1, device="cpu", dtype="float64", decoders=("argmax", "dark"))
    small = dataclasses.replace(base, max_memory_mib=2)
    a, b = run_experiment(base), run_experiment(small)
    # the noise is a function of the sample index, so both see the same maps; float64
    # batched kernels may sum in another order (about 1e-12 relative, see test_experiment)
    assert_rows_equal(a, b, rtol=1e-9)
    clean = run_experiment(dataclasses.replace(base, noise=0.0))
    assert (a.mean_error > clean.mean_error).all()


# ------------------------------------------------------------------------- distractor
def test_distractor_far_away_leaves_argmax_alone():
    config = ExperimentConfig(samples=500, device="cpu", decoders=("argmax", "integral"), seed=2)
    with_distractor = dataclasses.replace(config, distractor=0.5, distractor_distance=15.0)
    truth = sample_truth(config, torch.device("cpu"))
    assert (render_maps(with_distractor, truth, 0) != render_maps(config, truth, 0)).any()  # it is there
    clean, pulled = run_experiment(config), run_experiment(with_distractor)
    assert pulled.mean_error.iloc[0] == clean.mean_error.iloc[0]  # argmax: unchanged
    assert pulled.mean_error.iloc[1] > clean.mean_error.iloc[1]  # integral: pulled


def test_distractor_pulls_the_integral_by_the_weight_ratio():
    # On logit maps the softmax is the mixture of two normalised Gaussians with weights
    # 1 and a, so the expectation moves a / (1 + a) of the way to the distractor.
    config = ExperimentConfig(
        encoder="logit",
        distractor=0.25,
        distractor_distance=6.0,
        sigma=1.5,
        margin=12.0,
        samples=64,
        device="cpu",
        dtype="float64",
    )
    truth = sample_truth(config, torch.device("cpu")).double()
    maps = render_maps(config, truth, first_sample=0)
    decoded = decode(maps, "integral")
    truth_hm = (truth + 0.5) / 4 - 0.5
    pull = (decoded - truth_hm).norm(dim=-1).flatten()
    # a distractor can come within 4 sigma of the border (margin 12 - 6 = 6 px), where the
    # truncated tail shifts its mean by up to ~1e-5 px
    assert pull.tolist() == pytest.approx([6.0 * 0.25 / 1.25] * 64, abs=2e-5)


# -------------------------------------------------------------------------- positions
def test_border_points_lie_in_the_band():
    g = torch.Generator().manual_seed(0)
    points = sample_heatmap_points(5000, (64, 48), g, position="border", band=6)[:, 0]
    inside_x = (points[:, 0] >= 6) & (points[:, 0] <= 41)
    inside_y = (points[:, 1] >= 6) & (points[:, 1] <= 57)
    assert not (inside_x & inside_y).any()
    assert points.min() >= -0.5 and points[:, 0].max() <= 47.5 and points[:, 1].max() <= 63.5


def test_border_errors_are_reported_for_every_point():
    config = ExperimentConfig(position="border", samples=2000, device="cpu", decoders=("argmax", "dark", "integral-l1"))
    rows = run_experiment(config).set_index("decoder")
    assert (rows.samples == 2000).all() and (rows.nonfinite == 0).all()
    interior = run_experiment(dataclasses.replace(config, position="interior")).set_index("decoder")
    # argmax does not care where the point is; truncation at the border hurts the others
    assert rows.loc["argmax", "mean_error"] == pytest.approx(MEAN_2D * 4, abs=0.05)
    assert rows.loc["dark", "mean_error"] > 10 * interior.loc["dark", "mean_error"]
    assert rows.loc["integral-l1", "mean_error"] > 10 * interior.loc["integral-l1", "mean_error"]


@pytest.mark.parametrize("sampling", ["random", "grid"])
def test_border_band_is_measured_from_the_edge(sampling):
    # random and grid sampling cover the same region: within `band` of the map's edge
    g = torch.Generator().manual_seed(0)
    points = sample_heatmap_points(4096, (16, 12), g, position="border", band=3, sampling=sampling, grid_size=4)[:, 0]
    sides = torch.tensor([12.0, 16.0])
    near_edge = ((points < 3 - 0.5) | (points > sides - 0.5 - 3)).any(dim=-1)
    assert near_edge.all()
    assert (points > 2.3).any() and (points < -0.3).any()  # the band is filled to its ends


@pytest.mark.parametrize("sampling", ["random", "grid"])
def test_a_band_wider_than_half_the_map_makes_it_all_border(sampling):
    g = torch.Generator().manual_seed(0)
    points = sample_heatmap_points(4096, (8, 8), g, position="border", band=6, sampling=sampling, grid_size=4)[:, 0]
    # spread over the whole map, not squeezed into its rim
    assert points.min() < 0 and points.max() > 7 and ((points > 2) & (points < 5)).all(dim=-1).any()


def test_margin_is_refused_where_it_does_not_apply():
    result = CliRunner().invoke(app, ["compare", "--position", "border", "--margin", "2", "--samples", "4"])
    assert result.exit_code == 2 and "--margin applies to --position interior" in result.output


def test_anywhere_covers_the_whole_map():
    g = torch.Generator().manual_seed(0)
    points = sample_heatmap_points(20000, (16, 12), g, position="anywhere")[:, 0]
    assert points.min() >= -0.5 and points.min() < -0.49
    assert points[:, 0].max() > 11.49 and points[:, 1].max() > 15.49


# ------------------------------------------------------------------------ conventions
@pytest.mark.parametrize("stride", [2, 4, 8])
def test_corner_encoded_centre_decoded_bias(stride):
    # corner: x_hm = x / s; read back as centre-aligned: s (x / s + 0.5) - 0.5 = x + (s - 1) / 2
    config = ExperimentConfig(
        stride=stride, convention="corner", decode_convention="center", samples=500, device="cpu", decoders=("dark",)
    )
    row = run_experiment(config).iloc[0]
    assert row.bias_x == pytest.approx((stride - 1) / 2, abs=0.01)
    assert row.bias_y == pytest.approx((stride - 1) / 2, abs=0.01)


def test_udp_convention_needs_two_heatmap_pixels_per_side():
    with pytest.raises(ConfigError, match="at least 2 pixels"):
        ExperimentConfig(convention="udp", image_size=(8, 4), stride=4)
    with pytest.raises(ConfigError, match="at least 2 pixels"):
        ExperimentConfig(decode_convention="udp", image_size=(8, 4), stride=4)


@pytest.mark.parametrize("convention", ["center", "corner", "udp"])
def test_matching_conventions_have_no_bias(convention):
    config = ExperimentConfig(convention=convention, samples=500, device="cpu", decoders=("dark",))
    row = run_experiment(config).iloc[0]
    assert abs(row.bias_x) < 0.01 and abs(row.bias_y) < 0.01 and row.decode_convention == convention


# --------------------------------------------------------------------------- sampling
def test_grid_sampling_gives_the_closed_form_to_three_decimals():
    config = ExperimentConfig(sampling="grid", grid_size=64, samples=4096, device="cpu", decoders=("argmax",))
    row = run_experiment(config).iloc[0]
    assert row.samples == 4096 and row.grid_size == 64
    assert abs(row.mean_error_hm - MEAN_2D) < 5e-4
    assert math.isnan(row.ci95_low)  # no interval: a lattice is not a random sample


def test_grid_rounds_samples_up_to_whole_lattices():
    config = ExperimentConfig(sampling="grid", grid_size=8, samples=100, device="cpu")
    assert config.total_samples == 128
    truth_hm = (sample_truth(config, torch.device("cpu")) + 0.5) / 4 - 0.5
    fractions = (truth_hm - truth_hm.round()).reshape(2, 64, 2)
    expected = (torch.arange(8) + 0.5) / 8 - 0.5
    assert sorted(set(fractions[0, :, 0].tolist())) == pytest.approx(expected.tolist())


def test_grid_refuses_a_margin_without_whole_pixels():
    with pytest.raises(ConfigError, match="grid sampling"):
        run_experiment(
            ExperimentConfig(sampling="grid", image_size=(32, 32), stride=4, margin=3.4, samples=4, device="cpu")
        )


# ------------------------------------------------------------------------------ dtype
def test_float16_overflow_is_counted_not_hidden():
    config = ExperimentConfig(dtype="float16", amplitude=1e5, samples=50, device="cpu", decoders=("argmax", "integral"))
    rows = run_experiment(config)
    assert (rows.nonfinite == 50).all() and rows.mean_error.isna().all()
    bf16 = run_experiment(dataclasses.replace(config, dtype="bfloat16"))
    assert (bf16.nonfinite == 0).all()


# ------------------------------------------------------------------- sweeps over axes
def test_sweep_over_strides_with_an_image_space_sigma(tmp_path):
    out = tmp_path / "s.csv"
    result = CliRunner().invoke(
        app,
        [
            "sweep",
            "--strides",
            "2,4,8",
            "--sigmas",
            "8",
            "--sigma-unit",
            "image",
            "--samples",
            "50",
            "--decoders",
            "argmax,integral",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    # sigma_hm = 8 / stride = 4, 2, 1 -> default margins ceil(3 sigma_hm) = 12, 6, 3
    assert frame.margin.tolist() == [12, 12, 6, 6, 3, 3] and set(frame.sigma) == {8}
    for stride in (2, 4, 8):
        # the same points (the sampler has its own tests), rendered and decoded here by
        # the per-map references with sigma 8 / stride heatmap px: the integral's pull
        # depends strongly on sigma, so a wrong unit shows at once
        sigma_hm = 8 / stride
        truth = (
            sample_truth(
                ExperimentConfig(stride=stride, sigma=sigma_hm, samples=50, device="cpu"), torch.device("cpu")
            )[:, 0]
            .double()
            .numpy()
        )
        height, width = 256 // stride, 192 // stride
        ys, xs = np.mgrid[0:height, 0:width]
        for name, reference in (("argmax", REFERENCES["argmax"]), ("integral", lambda h: ref_integral(h, 1.0))):
            errors = []
            for x_img, y_img in truth:
                centre = ((x_img + 0.5) / stride - 0.5, (y_img + 0.5) / stride - 0.5)
                h = 10.0 * np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma_hm**2))
                decoded = np.array(reference(h))
                errors.append(np.hypot(*(stride * (decoded + 0.5) - 0.5 - (x_img, y_img))))
            row = frame[(frame.stride == stride) & (frame.decoder == name)].iloc[0]
            # float32 maps in the tool: its decoded points differ by ~1e-5 heatmap px
            assert row.mean_error == pytest.approx(np.mean(errors), rel=1e-4, abs=1e-4), (stride, name)


def test_sweep_over_every_axis_writes_the_columns(tmp_path):
    out = tmp_path / "s.csv"
    args = [
        "sweep",
        "--strides",
        "4",
        "--sigmas",
        "2",
        "--encoders",
        "gaussian,msra",
        "--noises",
        "0,0.05",
        "--distractors",
        "0,0.3",
        "--positions",
        "interior,border",
        "--conventions",
        "center",
        "--decode-conventions",
        "same,corner",
        "--samplings",
        "random,grid",
        "--grid-size",
        "4",
        "--dtypes",
        "float32,float64",
        "--samples",
        "16",
        "--decoders",
        "argmax",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert len(frame) == 2**7  # seven axes with two values each
    for column in (
        "encoder",
        "noise",
        "distractor",
        "distractor_distance",
        "position",
        "convention",
        "decode_convention",
        "sampling",
        "dtype",
    ):
        assert column in frame.columns
    assert set(frame.decode_convention) == {"center", "corner"}
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["grid"]["encoder"] == ["gaussian", "msra"] and meta["configurations"] == 2**7


@pytest.mark.parametrize(
    "args, text",
    [
        (["--encoders", "gauss"], "--encoders"),
        (["--noises", "-0.1"], "--noises"),
        (["--positions", "edge"], "--positions"),
        (["--dtypes", "int8"], "--dtypes"),
    ],
)
def test_bad_axis_values_exit_2(tmp_path, args, text):
    result = CliRunner().invoke(app, ["sweep", *args, "--out", str(tmp_path / "s.csv"), "--samples", "4"])
    assert result.exit_code == 2 and text in result.output and "Traceback" not in result.output
