"""Volumes: rendering, the closed forms of argmax in 3D through the experiment engine,
and experiments with ``dims`` 3."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from integral_cli import DECODERS, ExperimentConfig, run_experiment
from integral_cli.decoders import decoders_for
from integral_cli.errors import ConfigError, ShapeError
from integral_cli.experiment import chunk_size
from integral_cli.volumes import render_volume_maps, render_volumes, sample_volume_truth

from support import assert_rows_equal
from volume_references import gaussian_volume, grid

VOLUME_DECODERS = decoders_for("volume")


# ------------------------------------------------------------------------ closed forms
def mean_distance_in_cube(points_per_half_axis):
    """Mean distance from a cube's centre to a point in it (side 1), by the midpoint rule
    with this many points along each half axis (one octant, by symmetry)."""
    t = (np.arange(points_per_half_axis) + 0.5) / points_per_half_axis / 2
    x, y, z = np.meshgrid(t, t, t, indexing="ij", sparse=True)
    return float(np.sqrt(x**2 + y**2 + z**2).mean())


def cube_constant():
    """The mean distance from a unit cube's centre to a uniform point in it. The midpoint
    rule converges as 1/n^2 here (n = 100 -> 200 -> 400 changes it by 1.5e-5, then
    3.7e-6), so one Richardson step from n = 200 and 400 leaves an error far below 1e-6."""
    coarse, fine = mean_distance_in_cube(200), mean_distance_in_cube(400)
    return fine + (fine - coarse) / 3


#: Standard deviation of that distance: E[d^2] = 3/12.
def cube_std():
    return math.sqrt(3 / 12 - cube_constant() ** 2)


def test_the_cube_constant_is_the_designs_and_the_plots():
    from integral_cli.plots import ARGMAX_MEAN_ERROR_3D

    assert cube_constant() == pytest.approx(0.4803, abs=5e-5)
    assert abs(ARGMAX_MEAN_ERROR_3D - cube_constant()) < 1e-6


def volume_config(**more):
    """16x16x16 volumes (a 64x64 image at stride 4, depth 16), sigma 1."""
    settings = dict(dims=3, depth=16, image_size=(64, 64), sigma=1.0, decoders=("argmax",), device="cpu")
    return ExperimentConfig(**{**settings, **more})


def test_argmax_on_uniform_sub_voxel_positions():
    # offsets uniform in a voxel: mean 3D distance the cube constant, mean |dz| 1/4 voxel,
    # and the (x, y) error argmax's 2D closed form 0.3826 stride. Tolerance: 4 standard
    # errors of the mean at this sample count.
    n = 20_000
    row = run_experiment(volume_config(samples=n, seed=7)).iloc[0]
    assert row.mean_error_3d == pytest.approx(cube_constant(), abs=4 * cube_std() / math.sqrt(n))
    assert row.mean_error_z == pytest.approx(0.25, abs=4 * math.sqrt(1 / 48) / math.sqrt(n))
    mean_2d = (math.sqrt(2) + math.log(1 + math.sqrt(2))) / 6
    std_2d = math.sqrt(1 / 6 - mean_2d**2)
    assert row.mean_error == pytest.approx(4 * mean_2d, abs=4 * 4 * std_2d / math.sqrt(n))
    assert row.mean_error_hm == pytest.approx(row.mean_error / 4)
    assert (row.dims, row.depth, row.nonfinite) == (3, 16, 0)


def test_argmax_on_a_lattice_of_sub_voxel_positions():
    # a G^3 lattice of offsets (i + 0.5)/G - 0.5 per voxel: |dz| averages exactly 1/4, and
    # the mean distance is the midpoint rule with G/2 points per half axis (argmax returns
    # each lattice point's voxel centre), within 1e-6 (the float32 points)
    row = run_experiment(volume_config(samples=4096, sampling="grid", grid_size=16)).iloc[0]
    assert row.samples == 4096
    assert row.mean_error_z == pytest.approx(0.25, abs=1e-6)
    assert row.mean_error_3d == pytest.approx(mean_distance_in_cube(8), abs=1e-6)
    assert abs(row.mean_error_3d - cube_constant()) < 1e-3  # the rule's 1/G^2 error at G = 16


# -------------------------------------------------------------------------- rendering
def encoder_volume(encoder, center, size, sigma, amplitude):
    """Each encoder's volume written out from its formula, in numpy."""
    zs, ys, xs = grid(size)
    center = np.asarray(center)
    rounded = np.floor(center + 0.5)
    peak_at = rounded if encoder == "msra" else center
    d2 = (xs - peak_at[0]) ** 2 + (ys - peak_at[1]) ** 2 + (zs - peak_at[2]) ** 2
    if encoder == "logit":
        return -d2 / (2 * sigma**2)
    if encoder == "fwhm":
        return 10 * np.exp(-4 * math.log(2) * d2 / (2.3548200450309493 * sigma) ** 2)
    values = amplitude * np.exp(-d2 / (2 * sigma**2))
    if encoder in ("msra", "udp"):  # zero more than 3 sigma from the rounded centre along any axis
        inside = (
            (abs(xs - rounded[0]) <= 3 * sigma)
            & (abs(ys - rounded[1]) <= 3 * sigma)
            & (abs(zs - rounded[2]) <= 3 * sigma)
        )
        values = values * inside
    return values


@pytest.mark.parametrize("encoder", ["gaussian", "msra", "udp", "fwhm", "logit"])
def test_every_encoder_renders_its_formula_in_3d(encoder):
    # float64: the separable product and the formula agree to rounding
    center = (4.3, 5.6, 3.8)
    volume = render_volumes(
        torch.tensor([[center]], dtype=torch.float64), (8, 11, 9), 1.2, amplitude=3.0, encoder=encoder
    )
    expected = encoder_volume(encoder, center, (8, 11, 9), 1.2, 3.0)
    np.testing.assert_allclose(volume[0, 0].numpy(), expected, rtol=1e-12, atol=1e-12)


def test_msra_volumes_peak_at_the_rounded_centre_and_stop_at_three_sigma():
    volume = render_volumes(torch.tensor([[[4.4, 5.6, 3.5]]]), (9, 11, 10), 1.0, encoder="msra")[0, 0]
    assert volume[4, 6, 4] == 1.0 and volume.argmax() == (4 * 11 + 6) * 10 + 4  # z 4, y 6, x 4
    nonzero = volume.nonzero()
    assert nonzero.min(0).values.tolist() == [1, 3, 1] and nonzero.max(0).values.tolist() == [7, 9, 7]


def test_the_softmax_of_a_logit_volume_is_the_normalised_gaussian():
    center = (5.3, 4.1, 6.7)
    logits = render_volumes(torch.tensor([[center]], dtype=torch.float64), (13, 12, 11), 1.5, encoder="logit")
    expected = gaussian_volume(center, (13, 12, 11), 1.5, 1.0)
    np.testing.assert_allclose(
        torch.softmax(logits.flatten(), 0).view(13, 12, 11).numpy(), expected / expected.sum(), atol=1e-15
    )


def test_rendering_refuses_bad_arguments():
    with pytest.raises(ShapeError):
        render_volumes(torch.zeros(1, 1, 2), (4, 4, 4), 1.0)
    with pytest.raises(ConfigError, match="size"):
        render_volumes(torch.zeros(1, 1, 3), (4, 4), 1.0)
    with pytest.raises(ConfigError, match="encoder"):
        render_volumes(torch.zeros(1, 1, 3), (4, 4, 4), 1.0, encoder="box")


# ------------------------------------------------------------------------ experiments
def test_ground_truth_is_uniform_in_the_interior_of_the_volume():
    config = volume_config(samples=5000, depth=12)
    truth = sample_volume_truth(config, torch.device("cpu"))
    assert truth.shape == (5000, 1, 3) and truth.dtype == torch.float32
    z = truth[:, 0, 2]
    margin = config.resolved_margin  # 3 voxels at sigma 1
    assert z.min() >= margin and z.max() <= 12 - 1 - margin
    # uniform on [3, 8]: mean 5.5, sd 5 / sqrt(12); 4 standard errors
    assert float(z.mean()) == pytest.approx(5.5, abs=4 * 5 / math.sqrt(12) / math.sqrt(5000))
    x_hm = (truth[:, 0, 0] + 0.5) / 4 - 0.5  # image -> heatmap, center convention
    assert x_hm.min() >= margin - 1e-5 and x_hm.max() <= 16 - 1 - margin + 1e-5


def test_noise_and_numbers_do_not_depend_on_the_chunking():
    config = volume_config(samples=60, noise=0.05, decoders=VOLUME_DECODERS)
    truth = sample_volume_truth(config, torch.device("cpu"))
    whole = render_volume_maps(config, truth, 0)
    parts = torch.cat([render_volume_maps(config, truth[i : i + 7], i) for i in range(0, 60, 7)])
    assert torch.equal(whole, parts)  # the same ops on the same values: bit-identical
    small = dataclasses.replace(config, max_memory_mib=8)
    assert chunk_size(small) < chunk_size(config)
    # another chunking may sum in another order: float32 sub-voxel estimates move by a few
    # 1e-6 voxel, so the summaries agree to 1e-4 relative (2e-5 absolute)
    assert_rows_equal(run_experiment(small), run_experiment(config), rtol=1e-4, atol=2e-5)


def test_the_decoders_of_volumes_are_all_by_default():
    config = ExperimentConfig(dims=3)
    assert config.decoders == tuple(DECODERS) and config.resolved_decoders == VOLUME_DECODERS
    assert ExperimentConfig().resolved_decoders == tuple(DECODERS)
    with pytest.raises(ConfigError, match="'dark-udp' does not apply to volumes"):
        ExperimentConfig(dims=3, decoders=("argmax", "dark-udp"))
    with pytest.raises(ConfigError, match="distractor"):
        ExperimentConfig(dims=3, distractor=0.5)
    with pytest.raises(ConfigError, match="dims"):
        ExperimentConfig(dims=4)
    assert volume_config(sampling="grid", grid_size=4, samples=100).total_samples == 128  # whole 4^3 lattices


def test_the_rows_of_volumes_and_of_heatmaps():
    volumes = run_experiment(volume_config(samples=40, decoders=VOLUME_DECODERS))
    heatmaps = run_experiment(dataclasses.replace(volume_config(samples=40), dims=2))
    assert list(volumes.decoder) == list(VOLUME_DECODERS)
    assert (volumes.dims == 3).all() and (volumes.depth == 16).all()
    assert volumes.mean_error_z.notna().all() and volumes.mean_error_3d.notna().all()
    assert (heatmaps.dims == 2).all() and heatmaps.depth.isna().all()
    assert heatmaps.mean_error_z.isna().all() and heatmaps.mean_error_3d.isna().all()


def test_a_margin_that_leaves_no_room_in_the_depth_names_the_volume():
    with pytest.raises(ConfigError, match="no room in a 4x16x16 volume"):
        run_experiment(volume_config(depth=4))
