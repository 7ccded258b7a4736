"""SimCC vectors: their encoders, the closed forms of their decoders, and the
representation in the engine."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from integral_cli import ExperimentConfig, decode_simcc, render_simcc, run_experiment
from integral_cli.coords import image_to_simcc, simcc_size, simcc_to_image
from integral_cli.decoders.registry import decoders_for
from integral_cli.errors import ConfigError, ShapeError
from integral_cli.experiment import HEATMAPS, sample_truth
from integral_cli.simcc import SIMCC_VECTORS, render_simcc_bins

from support import assert_rows_equal

# Argmax on uniformly random sub-bin positions: a bin is 1/k image px wide, so the closed
# forms of a heatmap at stride 1/k (see test_experiment).
MEAN_2D = (math.sqrt(2) + math.log(1 + math.sqrt(2))) / 6  # 0.38260 per bin
STD_2D = math.sqrt(1 / 6 - MEAN_2D**2)
SIMCC_DECODERS = decoders_for("simcc")
#: MMPose's normalize=True for RTMPose's x sigma
RTMPOSE_SIGMA = 4.9
RTMPOSE_AMPLITUDE = 1 / (RTMPOSE_SIGMA * math.sqrt(2 * math.pi))


# ------------------------------------------------------------------------ encoders
def test_render_simcc_sizes_and_bin_positions():
    # 256x192 at k = 2: 384 bins along x, 512 along y. Under the center convention the
    # point (1.25, 0.75) sits at bins ((1.25 + 0.5) * 2 - 0.5, (0.75 + 0.5) * 2 - 0.5) =
    # (3, 2): those bins hold the peak exactly.
    points = torch.tensor([[[1.25, 0.75]]], dtype=torch.float64)
    simcc_x, simcc_y = render_simcc(points, (256, 192), 2.0, split_ratio=2.0, amplitude=3.0)
    assert simcc_x.shape == (1, 1, 384) and simcc_y.shape == (1, 1, 512) and simcc_x.dtype == torch.float64
    assert simcc_x[0, 0, 3] == 3.0 and simcc_y[0, 0, 2] == 3.0
    assert simcc_x[0, 0, 4] == pytest.approx(3.0 * math.exp(-1 / 8), rel=1e-15)  # one bin off, sigma 2
    # corner (MMPose): bin i at i / k image px, so the same point sits at bins (2.5, 1.5)
    corner_x, corner_y = render_simcc(points, (256, 192), 2.0, split_ratio=2.0, convention="corner")
    assert corner_x[0, 0, 2] == corner_x[0, 0, 3] == pytest.approx(math.exp(-0.25 / 8), rel=1e-15)
    assert simcc_size((256, 192), 1.5) == (384, 288)
    assert simcc_size((255, 191), 0.5) == (128, 96)  # 127.5 and 95.5 round half to even, as MMPose


def test_msra_rounds_the_centre_to_a_bin_like_mmpose():
    # np.around rounds half to even: 2.5 -> 2, 3.5 -> 4, and 2.4 -> 2, 2.6 -> 3.
    centers = torch.tensor([[[2.5, 3.5]], [[2.4, 2.6]]], dtype=torch.float64)
    simcc_x, simcc_y = render_simcc_bins(centers, (8, 8), 1.0, encoder="msra")
    assert simcc_x.argmax(-1).flatten().tolist() == [2, 2] and simcc_y.argmax(-1).flatten().tolist() == [4, 3]
    assert simcc_x[0, 0, 1] == simcc_x[0, 0, 3] == pytest.approx(math.exp(-0.5), rel=1e-15)  # symmetric


def test_mmpose_normalisation_is_an_amplitude():
    # With A = 1 / (sigma sqrt(2 pi)) a whole vector sums to 1: the sampled Gaussian's sum
    # is sigma sqrt(2 pi) to within 2 exp(-2 pi^2 sigma^2) (Poisson summation), 1e-200 here.
    simcc_x, _ = render_simcc_bins(
        torch.tensor([[[191.3, 100.0]]], dtype=torch.float64), (512, 384), RTMPOSE_SIGMA, amplitude=RTMPOSE_AMPLITUDE
    )
    assert simcc_x.sum().item() == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"encoder": "udp"}, ConfigError, "choose from gaussian, msra"),
        ({"convention": "udp"}, ConfigError, "does not apply to SimCC vectors"),
        ({"split_ratio": 0.001}, ConfigError, "leaves no bin"),
        ({"split_ratio": -1.0}, ConfigError, "split_ratio"),
        ({"sigma": 0.0}, ConfigError, "sigma"),
    ],
)
def test_render_simcc_refuses_what_does_not_apply(kwargs, error, message):
    arguments = {"sigma": 2.0, "split_ratio": 2.0, **kwargs}
    with pytest.raises(error, match=message):
        render_simcc(torch.zeros(1, 1, 2), (256, 192), **arguments)


def test_render_simcc_checks_the_points():
    with pytest.raises(ShapeError):
        render_simcc(torch.zeros(1, 2), (256, 192), 2.0, split_ratio=2.0)


def test_the_bin_conventions_mirror_each_other():
    points = torch.tensor([[[0.0, 10.25]]], dtype=torch.float64)
    for convention in ("center", "corner"):
        back = simcc_to_image(image_to_simcc(points, 3.0, convention), 3.0, convention)
        assert torch.allclose(back, points, rtol=0, atol=1e-13)
    assert image_to_simcc(points, 3.0, "center").tolist() == [[[1.0, 31.75]]]  # (x + 0.5) * 3 - 0.5
    assert image_to_simcc(points, 3.0, "corner").tolist() == [[[0.0, 30.75]]]  # x * 3


@pytest.mark.parametrize("name, bound", [("dark", 1e-3), ("integral-l1", 1e-6), ("integral-debiased", 1e-2)])
def test_round_trip(name, bound):
    # Encode points, decode, map back to the image: the refined decoders recover the
    # point. Bounds (image px; points at least 6 sigma from the vectors' ends): DARK, its
    # truncated 11-tap kernel (2e-4 measured); the L1 integral, float64 rounding (4e-8);
    # the debiased integral, whose weights exp(10 g) - 1 are narrower than a bin, so their
    # sampled mean drifts off the point (2e-3).
    generator = torch.Generator().manual_seed(4)
    points = torch.rand((200, 3, 2), generator=generator, dtype=torch.float64) * torch.tensor([180.0, 244.0]) + 6
    simcc_x, simcc_y = render_simcc(points, (256, 192), 2.0, split_ratio=2.0, amplitude=10.0)
    back = simcc_to_image(decode_simcc(simcc_x, simcc_y, name), 2.0)
    assert (back - points).abs().max() < bound


# ------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("k", [1.0, 2.0, 3.0])
def test_argmax_closed_form_per_split_ratio(k):
    # A bin is 1/k image px: argmax's mean 2D error is 0.38260 / k image px, its largest
    # 1 / (k sqrt 2). Tolerance: 4 standard errors of the mean at this sample count.
    n = 20_000
    config = ExperimentConfig(
        representation="simcc", split_ratio=k, samples=n, decoders=("argmax",), device="cpu", seed=3
    )
    row = run_experiment(config).iloc[0]
    assert row.mean_error == pytest.approx(MEAN_2D / k, abs=4 * STD_2D / k / math.sqrt(n))
    assert row.max_error <= 1 / (k * math.sqrt(2)) + 1e-5
    assert row.mean_error_hm == pytest.approx(row.mean_error * k)  # in bins


@pytest.mark.parametrize("convention", ["center", "corner"])
def test_quarter_offset_closed_form(convention):
    # Per axis 1/4 - |f| bins, the argmax square halved: 0.1913 / k image px.
    n, k = 20_000, 2.0
    config = ExperimentConfig(
        representation="simcc",
        split_ratio=k,
        convention=convention,
        samples=n,
        decoders=("argmax-quarter",),
        device="cpu",
        seed=5,
    )
    row = run_experiment(config).iloc[0]
    assert row.mean_error == pytest.approx(MEAN_2D / 2 / k, abs=4 * STD_2D / 2 / k / math.sqrt(n))


def test_on_rounded_targets_every_symmetric_decoder_returns_the_rounded_centre():
    # msra vectors peak on the bin nearest the point, symmetric about it; kept 9 sigma
    # from the ends, where the rendered tails stop (e^-40 of the peak, symmetrically),
    # nothing cuts them. Every decoder symmetric about the peak returns that bin, so each
    # has argmax's error, point for point.
    k, n = 2.0, 4000
    names = ("argmax", "argmax-quarter", "dark", "integral-debiased", "integral-l1")
    config = ExperimentConfig(
        representation="simcc", split_ratio=k, encoder="msra", margin=18.0, samples=n, decoders=names, device="cpu"
    )
    rows = run_experiment(config).set_index("decoder")
    argmax = rows.loc["argmax"]
    assert argmax.mean_error == pytest.approx(MEAN_2D / k, abs=4 * STD_2D / k / math.sqrt(n))
    for name in names[1:]:
        for column in ("mean_error", "max_error", "bias_x", "bias_y"):
            # float32 sums of symmetric weights land on the bin to a few 1e-6 bins
            assert rows.loc[name, column] == pytest.approx(argmax[column], abs=1e-5), (name, column)


# --------------------------------------------------------------------- the engine
def test_simcc_rows_fill_one_row_format():
    config = ExperimentConfig(
        representation="simcc", sigma=RTMPOSE_SIGMA, dark_kernel="auto", samples=500, device="cpu"
    )
    rows = run_experiment(config)
    assert list(rows.decoder) == list(SIMCC_DECODERS)
    first = rows.iloc[0]
    assert first.representation == "simcc" and first.split_ratio == 2.0
    # what does not apply to SimCC vectors is left empty
    assert rows[["stride", "heatmap_h", "heatmap_w", "window_radius", "fit_radius"]].isna().all().all()
    assert rows[["fallbacks", "crlb_rmse", "efficiency"]].isna().all().all()
    assert first.dark_kernel == 29 and first.margin == 15  # MMPose's kernel; ceil(3 sigma) bins
    assert (first.image_h, first.image_w) == (256, 192)
    assert (rows.mean_error_hm == rows.mean_error * 2.0).all()
    heatmap = run_experiment(ExperimentConfig(samples=50, decoders=("argmax",), device="cpu")).iloc[0]
    assert heatmap.representation == "heatmap" and pd.isna(heatmap.split_ratio) and heatmap.stride == 4


def test_sigma_in_image_pixels_is_k_bins():
    # 2.45 image px at k = 2 is 4.9 bins (2.45 * 2 is 4.9 exactly in floating point)
    common = dict(representation="simcc", samples=300, device="cpu", noise=0.01)
    in_bins = run_experiment(ExperimentConfig(sigma=4.9, **common))
    in_image = run_experiment(ExperimentConfig(sigma=2.45, sigma_unit="image", **common))
    assert_rows_equal(in_image, in_bins, ignore=("seconds", "sigma", "sigma_unit"))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"encoder": "udp"}, "encoder udp does not apply to representation simcc"),
        ({"encoder": "logit"}, "encoder logit does not apply to representation simcc"),
        ({"convention": "udp"}, "convention 'udp' does not apply to SimCC vectors"),
        ({"decode_convention": "udp"}, "convention 'udp' does not apply to SimCC vectors"),
        ({"decoders": ("argmax", "soft-argmax-local")}, "'soft-argmax-local' does not apply to representation simcc"),
        ({"split_ratio": 1e-3}, "split_ratio 0.001 leaves no bin"),
    ],
)
def test_what_does_not_apply_is_refused_in_one_line(settings, message):
    with pytest.raises(ConfigError, match=message) as caught:
        ExperimentConfig(representation="simcc", **settings)
    assert "\n" not in str(caught.value)


def test_the_stride_does_not_constrain_simcc():
    # a 250x190 image is no multiple of 4, which only heatmaps need
    ExperimentConfig(representation="simcc", image_size=(250, 190))
    with pytest.raises(ConfigError, match="not a multiple of stride"):
        ExperimentConfig(image_size=(250, 190))


def test_noise_and_distractors_do_not_depend_on_the_chunks():
    # Noise and distractor directions are functions of (seed, sample, bin): another memory
    # budget (chunks of ~20 samples against one chunk) gives the same vectors. Batched
    # float32 reductions may round otherwise: summaries agree to 1e-5 relative, 2e-6 px.
    common = dict(representation="simcc", samples=600, device="cpu", noise=0.05, distractor=0.5, seed=9)
    whole = run_experiment(ExperimentConfig(**common))
    chunked = run_experiment(ExperimentConfig(max_memory_mib=1.2, **common))
    assert_rows_equal(chunked, whole, rtol=1e-5, atol=2e-6, ignore=("seconds", "max_memory_mib"))


def test_noise_moves_the_refined_decoders():
    clean = run_experiment(ExperimentConfig(representation="simcc", samples=500, device="cpu")).set_index("decoder")
    noisy = run_experiment(ExperimentConfig(representation="simcc", samples=500, device="cpu", noise=0.05))
    noisy = noisy.set_index("decoder")
    assert noisy.loc["dark", "mean_error"] > 10 * clean.loc["dark", "mean_error"]


def test_heatmaps_and_simcc_see_the_same_image_points_anywhere():
    # position anywhere, center convention: points uniform over the whole image in every
    # representation, x = -0.5 + u W_img, from the same draws u; computed in float64 in
    # each's own units, they agree to float32 rounding once stored (1.5e-5 px at 256).
    common = dict(position="anywhere", samples=2000)
    heatmap = sample_truth(ExperimentConfig(stride=8, **common), torch.device("cpu"))
    config = ExperimentConfig(representation="simcc", split_ratio=3.0, **common)
    simcc = SIMCC_VECTORS.sample_truth(config, torch.device("cpu"))
    assert (heatmap - simcc).abs().max() <= 3e-5
    assert HEATMAPS.axes == SIMCC_VECTORS.axes == 2


# ------------------------------------------------------------------------- sweeps
def sweep(tmp_path, name, *more):
    from typer.testing import CliRunner

    from integral_cli.cli import app

    args = ["sweep", "--representations", "heatmap,simcc", "--strides", "4,8", "--split-ratios", "1,2", "--sigmas", "2"]
    args += ["--samples", "40", "--device", "cpu", "--out", str(tmp_path / name), *more]
    return CliRunner().invoke(app, args)


def test_a_sweep_mixes_both_representations_in_one_csv(tmp_path):
    from integral_cli.report import read_results

    result = sweep(tmp_path, "mixed.csv", "--decoders", "argmax,dark")
    assert result.exit_code == 0, result.output
    # 2 strides of heatmaps and 2 split ratios of SimCC: 4 configurations, not 2 x 2 x 2
    assert "wrote 8 rows (4 configurations)" in result.stderr
    rows = read_results(tmp_path / "mixed.csv")
    heatmap, simcc = rows[rows.representation == "heatmap"], rows[rows.representation == "simcc"]
    assert sorted(set(heatmap.stride)) == [4, 8] and heatmap.split_ratio.isna().all()
    assert sorted(set(simcc.split_ratio)) == [1.0, 2.0] and simcc.stride.isna().all()
    assert simcc.heatmap_h.isna().all() and (heatmap.heatmap_h == 256 / heatmap.stride).all()
    again = sweep(tmp_path, "mixed.csv", "--decoders", "argmax,dark", "--resume")
    assert again.exit_code == 0 and "wrote 0 rows (0 configurations, 4 already there)" in again.stderr


def test_all_decoders_of_a_mixed_sweep_are_those_that_apply(tmp_path):
    from integral_cli.report import read_results

    result = sweep(tmp_path, "all.csv", "--samples", "20")
    assert result.exit_code == 0, result.output
    rows = read_results(tmp_path / "all.csv")
    per_configuration = rows.groupby(["representation", "stride", "split_ratio"], dropna=False).decoder.apply(tuple)
    for (representation, _, _), names in per_configuration.items():
        assert names == decoders_for(representation)


def test_a_mixed_sweep_in_shards_merges_to_the_whole(tmp_path):
    from typer.testing import CliRunner

    from integral_cli.cli import app
    from integral_cli.report import read_results

    assert sweep(tmp_path, "whole.csv", "--decoders", "argmax").exit_code == 0
    for index in (1, 2, 3):
        assert sweep(tmp_path, f"part{index}.csv", "--decoders", "argmax", "--shard", f"{index}/3").exit_code == 0
    parts = [str(tmp_path / f"part{index}.csv") for index in (1, 2, 3)]
    merged = CliRunner().invoke(app, ["merge", str(tmp_path / "merged.csv"), *parts])
    assert merged.exit_code == 0 and "4 of 4 configurations present" in merged.stderr
    # the same configurations, run alone each time: bit-identical but for the timings
    whole, parts_merged = read_results(tmp_path / "whole.csv"), read_results(tmp_path / "merged.csv")
    assert_rows_equal(parts_merged, whole)


def test_a_results_csv_from_before_simcc_is_read_as_heatmaps():
    from pathlib import Path

    from integral_cli.report import read_results

    reference = Path(__file__).resolve().parent.parent / "results" / "reference.csv"
    rows = read_results(reference)
    assert (rows.representation == "heatmap").all() and rows.split_ratio.isna().all()
    assert list(rows.columns)[:3] == ["representation", "stride", "split_ratio"]


def test_the_committed_simcc_results_are_reproduced():
    # Re-run the SimCC slice at split ratio 2 (interior) of results/simcc.csv with its
    # recorded settings. Same seed, same points: the numbers agree up to float32
    # summation order, which moves a sub-bin estimate by ~1e-6 bins: rel 1e-5 with an
    # absolute floor of 2e-6 image px for the near-exact decoders.
    import json
    from pathlib import Path

    results = Path(__file__).resolve().parent.parent / "results"
    committed = pd.read_csv(results / "simcc.csv")
    settings = json.loads((results / "simcc.json").read_text())["settings"]
    config = ExperimentConfig(
        representation="simcc",
        split_ratio=2.0,
        dark_kernel=settings["dark_kernel"],
        samples=settings["samples"],
        seed=settings["seed"],
        device="cpu",
    )
    again = run_experiment(config).set_index("decoder")
    rows = committed[(committed.split_ratio == 2.0) & (committed.position == "interior")]
    assert list(rows.decoder) == list(decoders_for("simcc"))
    for row in rows.itertuples():
        for column in ("mean_error", "p95_error", "max_error"):
            expected = getattr(row, column)
            assert again.loc[row.decoder, column] == pytest.approx(expected, rel=1e-5, abs=2e-6), row.decoder


def test_the_heatmap_only_tools_refuse_simcc():
    from integral_cli.field import error_field
    from integral_cli.fit import FitConfig
    from integral_cli.gradients import GradConfig

    simcc = ExperimentConfig(representation="simcc", samples=4)
    for make in (lambda: GradConfig(simcc), lambda: FitConfig(simcc), lambda: error_field(simcc, "argmax")):
        with pytest.raises(ConfigError, match="works on heatmaps; representation simcc does not apply"):
            make()


# ------------------------------------------------------------------ the limit under noise
def test_the_bound_is_the_1d_closed_form_away_from_the_ends():
    # Per axis (mu, A, s) unknown: the cross terms vanish by symmetry away from the ends,
    # and I_mumu = A^2 m2 / (s^4 sn^2) with m2 = sum g^2 d^2 = s^3 sqrt(pi) / 2 (the sum
    # equals the integral to 1e-12 for s >= 1), so var = 2 s sn^2 / (sqrt(pi) A^2) bins^2
    # and the 2D RMSE is sqrt(2 var) / k image px: 0.0531 at noise 0.05, s 2, k 2.
    for k, sigma in ((2.0, 2.0), (1.0, 4.9)):
        config = ExperimentConfig(
            representation="simcc", split_ratio=k, sigma=sigma, noise=0.05, margin=30.0, samples=200, device="cpu"
        )
        rows = run_experiment(config)
        expected = math.sqrt(2 * 2 * sigma / math.sqrt(math.pi)) * 0.05 / k
        assert rows.crlb_rmse.iloc[0] == pytest.approx(expected, rel=1e-9)
        assert (rows.efficiency == rows.crlb_rmse / rows.rmse).all()


def test_the_bound_against_finite_differences_of_the_vector():
    # An independent Fisher matrix: the derivatives of A exp(-(i - mu)^2 / 2 s^2) with
    # respect to (mu, A, s) by central differences (step 1e-5: truncation ~1e-10, rounding
    # ~1e-11), I = J^T J / sn^2, inverted with numpy. Near the ends too, where the cross
    # terms do not vanish: agreement to 1e-6 relative.
    from integral_cli.simcc import simcc_position_variance

    length, sigma, amplitude, noise_sd = 40, 3.0, 2.0, 0.3
    centers = np.array([1.3, 20.7, 38.2])
    bins = np.arange(length)

    def vector(theta):
        mu, a, s = theta
        return a * np.exp(-((bins - mu) ** 2) / (2 * s**2))

    expected = []
    for mu in centers:
        theta = np.array([mu, amplitude, sigma])
        jacobian = np.stack(
            [(vector(theta + step) - vector(theta - step)) / 2e-5 for step in np.eye(3) * 1e-5], axis=-1
        )
        expected.append(np.linalg.inv(jacobian.T @ jacobian / noise_sd**2)[0, 0])
    points = torch.from_numpy(np.stack([centers, centers], -1)[None])
    got = simcc_position_variance(points, (length, length), sigma, amplitude, noise_sd)[0].numpy()
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(got[:, 1], expected, rtol=1e-6)


def test_simcc_dark_reaches_the_bound():
    # MMPose's refine_simcc_dark on noisy RTMPose-like vectors is an efficient estimator
    # at this noise (measured 0.996); argmax is held up by its quantization.
    config = ExperimentConfig(
        representation="simcc", noise=0.05, samples=2000, decoders=("argmax", "dark"), device="cpu"
    )
    rows = run_experiment(config).set_index("decoder")
    assert rows.loc["dark", "efficiency"] > 0.95 and rows.loc["argmax", "efficiency"] < 0.3


@pytest.mark.parametrize("settings", [{}, {"noise": 0.05, "encoder": "msra"}, {"noise": 0.05, "distractor": 0.3}])
def test_no_bound_where_it_does_not_apply(settings):
    rows = run_experiment(ExperimentConfig(representation="simcc", samples=50, device="cpu", **settings))
    assert rows.crlb_rmse.isna().all() and rows.efficiency.isna().all()
