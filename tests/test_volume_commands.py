"""Volumes through the commands: sweep --dims 2,3, resume, older CSVs, evaluate on saved
volumes, grad, fit and bench with --dims 3."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from integral_cli import DECODERS, ExperimentConfig
from integral_cli.cli import app
from integral_cli.decoders import decoders_for
from integral_cli.errors import ConfigError
from integral_cli.evaluate import EvaluateConfig, evaluate_files
from integral_cli.fit import FitConfig, fit_report
from integral_cli.gradients import GradConfig, gradient_report
from integral_cli.report import LATER_COLUMNS, read_results
from integral_cli.settings import CSV_COLUMNS
from integral_cli.volumes import render_volume_maps, sample_volume_truth

from support import assert_rows_equal, table_rows
from volume_references import PARAMS, VOLUME_REFERENCES

runner = CliRunner()
RESULTS = Path(__file__).resolve().parent.parent / "results"
#: 16x16x16 volumes: a 64x64 image at stride 4, depth 16, sigma 1.
SMALL = ["--image-size", "64x64", "--depth", "16", "--device", "cpu"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_compare_dims_3_prints_the_volume_table():
    result = invoke("compare", "--dims", "3", "--samples", "30", *SMALL, "--sigma", "1")
    assert result.exit_code == 0, result.output
    assert "gaussian volumes" in result.stdout and "volume 16x16x16 (DxHxW)" in result.stdout
    header = next(line for line in result.stdout.splitlines() if line.startswith("decoder"))
    assert header.split() == ["decoder", "mean", "p95", "mean", "z", "mean", "3d", "95%", "CI", "of", "mean"]
    assert sorted(cells[0] for cells in table_rows(result.stdout)) == sorted(decoders_for("volume"))
    assert "mean z, mean 3d: voxels" in result.stdout


def test_compare_dims_3_refuses_what_volumes_do_not_have():
    result = invoke("compare", "--dims", "3", "--decoders", "dark-udp", *SMALL)
    assert result.exit_code == 2 and "decoder 'dark-udp' does not apply to volumes (--dims 3)" in result.stderr
    result = invoke("compare", "--dims", "3", "--distractor", "0.5", *SMALL)
    assert result.exit_code == 2 and "--distractor is not available for volumes" in result.stderr
    assert invoke("compare", "--dims", "4").exit_code == 2


@pytest.fixture(scope="module")
def mixed_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "mixed.csv"
    args = ["sweep", "--dims", "2,3", "--strides", "4", "--sigmas", "1,1.5", "--samples", "40", *SMALL]
    result = invoke(*args, "--out", out)
    assert result.exit_code == 0, result.output
    return out, args, result


def test_sweep_over_dims_writes_one_csv(mixed_sweep):
    out, _, result = mixed_sweep
    rows = read_results(out)
    heatmaps, volumes = rows[rows.dims == 2], rows[rows.dims == 3]
    # every decoder on heatmaps, every decoder of volumes on volumes, per sigma
    assert len(heatmaps) == 2 * len(DECODERS) and len(volumes) == 2 * len(decoders_for("volume"))
    assert f"wrote {len(rows)} rows (4 configurations)" in result.stderr
    assert heatmaps.depth.isna().all() and (volumes.depth == 16).all()
    assert heatmaps.mean_error_3d.isna().all() and volumes.mean_error_3d.notna().all()
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["grid"]["dims"] == [2, 3] and sidecar["settings"]["depth"] == 16
    assert "--dims 2,3" in " ".join(sidecar["command"])
    # the written depth column stays whole numbers, empty for heatmaps
    assert {line.split(",")[CSV_COLUMNS.index("depth")] for line in out.read_text().splitlines()[1:]} == {"", "16"}


def test_a_mixed_sweep_resumes_without_rerunning(mixed_sweep, tmp_path):
    out, args, _ = mixed_sweep
    copy = tmp_path / "copy.csv"
    copy.write_text(out.read_text())
    copy.with_suffix(".json").write_text(out.with_suffix(".json").read_text())
    result = invoke(*args, "--out", copy, "--resume")
    assert result.exit_code == 0, result.output
    assert "wrote 0 rows (0 configurations, 4 already there)" in result.stderr
    assert copy.read_text() == out.read_text()


def test_plot_draws_the_3d_error_against_sigma(mixed_sweep, tmp_path):
    pytest.importorskip("matplotlib")
    out, _, _ = mixed_sweep
    picture = tmp_path / "p.png"
    result = invoke("plot", out, "--x", "sigma", "--metric", "mean_error_3d", "--out", picture)
    assert result.exit_code == 0, result.output
    assert picture.stat().st_size > 0 and "2 panels" in result.stderr  # dims 2 and 3


#: The columns of the results CSVs written before volumes.
PRE_VOLUME_COLUMNS = [c for c in CSV_COLUMNS if c not in ("dims", "depth", "mean_error_z", "mean_error_3d")]


def test_an_older_csv_is_read_as_heatmaps():
    # results/reference.csv predates every column added since
    rows = read_results(RESULTS / "reference.csv")
    header = (RESULTS / "reference.csv").read_text().splitlines()[0].split(",")
    assert header == [c for c in CSV_COLUMNS if c not in LATER_COLUMNS]
    assert rows.attrs["older"] == [c for c in CSV_COLUMNS if c in LATER_COLUMNS]
    assert list(rows.columns) == list(CSV_COLUMNS) and len(rows) == 288
    assert (rows.dims == 2).all() and rows.depth.isna().all() and rows.mean_error_3d.isna().all()
    assert rows.mean_error.iloc[0] == pd.read_csv(RESULTS / "reference.csv").mean_error.iloc[0]


def test_a_sweep_from_before_volumes_resumes_with_todays_columns(tmp_path):
    # an old sweep interrupted after its first configuration: its CSV without the columns
    # of volumes, its sidecar without dims and depth; resuming writes the file again in
    # today's columns and adds the missing configuration
    out = tmp_path / "old.csv"
    args = ["sweep", "--strides", "8", "--sigmas", "1,2", "--samples", "20", "--decoders", "argmax", "--device", "cpu"]
    assert invoke(*args, "--out", out).exit_code == 0
    rows = pd.read_csv(out)
    rows[rows.sigma == 1.0][PRE_VOLUME_COLUMNS].to_csv(out, index=False)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    del sidecar["grid"]["dims"], sidecar["settings"]["depth"]
    out.with_suffix(".json").write_text(json.dumps(sidecar))
    result = invoke(*args, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert "1 already there" in result.stderr
    assert out.read_text().splitlines()[0].split(",") == list(CSV_COLUMNS)
    again = read_results(out)
    assert list(again.sigma) == [1.0, 2.0] and (again.dims == 2).all()
    assert list(again.mean_error) == list(rows.mean_error)


# ------------------------------------------------------------------------- evaluate
@pytest.fixture(scope="module")
def saved_volumes(tmp_path_factory):
    config = ExperimentConfig(dims=3, depth=16, image_size=(64, 64), sigma=1.0, samples=40, noise=0.02, seed=3)
    truth = sample_volume_truth(config, torch.device("cpu"))
    volumes = render_volume_maps(config, truth, 0).view(20, 2, 16, 16, 16)
    folder = tmp_path_factory.mktemp("volumes")
    np.save(folder / "volumes.npy", volumes.numpy())
    targets = truth.view(20, 2, 3).double().numpy()
    np.save(folder / "targets.npy", targets)
    visible = np.ones((20, 2, 1))
    visible[3, 1] = visible[7, 0] = 0
    np.save(folder / "visible.npy", np.concatenate([targets, visible], -1))
    sample, keypoint = np.divmod(np.arange(40), 2)
    frame = pd.DataFrame({"sample": sample, "keypoint": keypoint, "x": targets[..., 0].ravel()})
    frame["y"], frame["z"], frame["visible"] = targets[..., 1].ravel(), targets[..., 2].ravel(), visible.ravel()
    frame.to_csv(folder / "targets.csv", index=False)
    return folder, volumes.double().numpy(), targets, visible[..., 0] > 0


def volume_config(folder, targets, **settings):
    return EvaluateConfig(heatmaps=folder / "volumes.npy", targets=targets, **settings)


def test_evaluate_scores_volumes_against_per_volume_references(saved_volumes):
    folder, volumes, targets, visible = saved_volumes
    rows, source = evaluate_files(
        EvaluateConfig(
            heatmaps=folder / "volumes.npy", targets=folder / "visible.npy", device="cpu", pck=(2.0,), **PARAMS
        )
    )
    assert source.volumes and source.shape == (20, 2, 16, 16, 16)
    rows = rows.set_index("decoder")
    assert list(rows.index) == list(decoders_for("volume")) and (rows.depth == 16).all()
    for name in ("argmax", "integral", "dark"):
        # the reference decodes each float32 volume in float64; voxels -> image px at stride 4
        decoded = np.array([[VOLUME_REFERENCES[name](v) for v in sample] for sample in volumes])
        image = 4 * (decoded[..., :2] + 0.5) - 0.5
        offsets = np.concatenate([image, decoded[..., 2:]], -1)[visible] - targets[visible]
        planar = np.linalg.norm(offsets[:, :2], axis=-1)
        in_voxels = np.linalg.norm(offsets * [0.25, 0.25, 1], axis=-1)
        # float32 decoding against float64 references: 1e-4 voxel at most, 4e-4 image px
        assert rows.loc[name, "mean_error"] == pytest.approx(planar.mean(), abs=4e-4)
        assert rows.loc[name, "mean_error_z"] == pytest.approx(np.abs(offsets[:, 2]).mean(), abs=1e-4)
        assert rows.loc[name, "mean_error_3d"] == pytest.approx(in_voxels.mean(), abs=1e-4)
        assert rows.loc[name, "pck_2"] == pytest.approx((planar <= 2.0).mean())
        assert rows.loc[name, "visible"] == 38


def test_evaluate_reads_volume_targets_as_npy_or_csv(saved_volumes):
    folder, *_ = saved_volumes
    from_npy, _ = evaluate_files(volume_config(folder, folder / "visible.npy", device="cpu"))
    from_csv, _ = evaluate_files(volume_config(folder, folder / "targets.csv", device="cpu"))
    assert_rows_equal(from_csv, from_npy, ignore=("targets", "seconds"))
    every, _ = evaluate_files(volume_config(folder, folder / "targets.npy", device="cpu"))
    assert (every.visible == 40).all()


def test_decode_writes_volume_points_and_evaluate_scores_them(saved_volumes, tmp_path):
    # argmax reads the voxel of the maximum: (x, y) to image pixels under center at
    # stride 4, (x_hm + 0.5) * 4 - 0.5, and z in voxels
    folder, volumes, _, _ = saved_volumes
    out = tmp_path / "points.csv"
    result = invoke("decode", "--heatmaps", folder / "volumes.npy", "--decoder", "argmax", "--out", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns) == ["sample", "keypoint", "x", "y", "z", "score"]
    flat = volumes.reshape(20, 2, -1)
    z, y, x = np.unravel_index(flat.argmax(-1), volumes.shape[2:])
    expected = np.stack([(x + 0.5) * 4 - 0.5, (y + 0.5) * 4 - 0.5, z], -1).reshape(-1, 3)
    np.testing.assert_array_equal(table[["x", "y", "z"]].to_numpy(), expected)
    assert table["score"].to_numpy() == pytest.approx(flat.max(-1).ravel(), rel=1e-6)  # float32 maxima
    # the written points score as the volumes decoded by argmax do, alone or beside them
    args = ["evaluate", "--targets", folder / "visible.npy", "--predictions", out, "--json"]
    alone = json.loads(invoke(*args).stdout)
    both = {row["decoder"]: row for row in json.loads(invoke(*args, "--heatmaps", folder / "volumes.npy").stdout)}
    for column in ("mean_error", "mean_error_z", "mean_error_3d"):
        assert alone[0][column] == pytest.approx(both["argmax"][column], rel=1e-12)
        assert both["predictions"][column] == pytest.approx(both["argmax"][column], rel=1e-12)


def test_evaluate_refuses_mismatched_volume_files(saved_volumes, tmp_path):
    folder, *_ = saved_volumes
    np.save(tmp_path / "flat.npy", np.zeros((20, 2, 2)))
    with pytest.raises(ConfigError, match=r"\(N, K, 3\) \(x, y, z\) for volumes"):
        evaluate_files(volume_config(folder, tmp_path / "flat.npy", device="cpu"))
    with pytest.raises(ConfigError, match="'dark-udp' does not apply to the volumes of .*; its decoders: argmax"):
        evaluate_files(volume_config(folder, folder / "targets.npy", decoders=("dark-udp",)))


def test_evaluate_command_on_volumes(saved_volumes):
    folder, *_ = saved_volumes
    result = invoke(
        "evaluate", "--heatmaps", folder / "volumes.npy", "--targets", folder / "visible.npy", "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    assert "float32 volumes of" in result.stdout and "16x16x16" in result.stdout
    assert "mean z, mean 3d: voxels" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


# ---------------------------------------------------------------------- grad and fit
def test_grad_dims_3_agrees_with_finite_differences_where_declared():
    config = ExperimentConfig(dims=3, depth=12, image_size=(48, 48), sigma=1.5, samples=3, device="cpu")
    rows = gradient_report(GradConfig(config)).set_index("decoder")
    assert list(rows.index) == list(decoders_for("volume"))
    for name, row in rows.iterrows():
        if name.startswith("argmax"):
            assert row.gradient == "none"
        else:
            assert row.gradient == "yes" and row.agrees, name
    # the integral reaches every voxel, soft-argmax-local its (2r+1)^3 window
    assert rows.loc["integral", "support_px"] == 12**3 and rows.loc["soft-argmax-local", "support_px"] == 125


def test_fit_dims_3_trains_the_integral_to_a_tenth_of_a_pixel():
    config = ExperimentConfig(
        dims=3,
        depth=12,
        image_size=(48, 48),
        sigma=1.5,
        samples=3,
        device="cpu",
        decoders=("integral", "argmax", "dark"),
    )
    best, _ = fit_report(FitConfig(config, steps=80, learning_rates=(0.1,)))
    best = best.set_index("decoder")
    assert bool(best.loc["integral", "trainable"]) and best.loc["integral", "final_error"] < 0.1
    assert not bool(best.loc["argmax", "trainable"])
    # each blob starts 1 voxel off in a direction on the sphere; DARK reads a blob's centre
    # to ~1e-3 voxel, so its starting error is that voxel, stride 4 image px, a voxel along
    # z counted as one along x or y
    assert best.loc["dark", "start_error"] == pytest.approx(4.0, abs=0.02)


# --------------------------------------------------------------------------- bench
def test_bench_dims_3_times_every_decoder_of_volumes_and_dsntnn(monkeypatch):
    # dsntnn comes with the bench extra; a stand-in of the same shape (an n-D soft-argmax
    # over the flattened volume) checks how bench times it whether or not it is installed
    from integral_cli import baselines

    def soft_argmax_nd(volumes):
        weights = torch.softmax(volumes.flatten(2), -1).view_as(volumes)
        axes = [torch.arange(side, dtype=volumes.dtype) for side in volumes.shape[2:]]
        return torch.stack([(weights.sum(dim=[d for d in (2, 3, 4) if d != axis]) * axes[axis - 2]).sum(-1)
                            for axis in (4, 3, 2)], -1)  # fmt: skip

    monkeypatch.setattr(baselines, "library_soft_argmax", lambda: {baselines.DSNTNN: soft_argmax_nd})
    result = invoke("bench", "--dims", "3", "--depth", "8", "--heatmap-size", "16x12", "--batch", "8", "--repeat", "1")
    assert result.exit_code == 0, result.output
    assert "8 volumes of 8x16x12 float32" in result.stdout
    names = [cells[0] for cells in table_rows(result.stdout)]
    assert names[: 1 + len(decoders_for("volume"))] == ["read the tensor once (sum)", *decoders_for("volume")]
    assert "render_volumes" in names and "dsntnn flat_softmax + dsnt" in names
    assert "integral  dsntnn flat_softmax + dsnt" in result.stdout


def test_the_default_bench_batch_follows_dims():
    from integral_cli.bench import BenchConfig

    assert BenchConfig().batch == 4096 and BenchConfig(dims=3).batch == 256
    assert BenchConfig(dims=3).size == (64, 64, 48)
    with pytest.raises(ConfigError, match="'dark-udp' does not apply to volumes"):
        BenchConfig(dims=3, decoders=("dark-udp",))


# ------------------------------------------------------------------- other devices
#: Small noisy volumes: noise sends DARK down its whole-volume blur on some of them.
NOISY_SMALL = ("--dims", "3", "--samples", "30", "--noise", "0.3", "--sigma", "1", *SMALL[:-2])


def test_volumes_on_a_gpu_or_mps(fake_device, saved_volumes):
    # the fake-device harness fails the test on any device mixing, numpy of a device
    # tensor, float64 on MPS, random draws on the device or TF32 arithmetic
    device = ("--device", fake_device.kind)
    result = invoke("compare", *NOISY_SMALL, *device, "--json")
    assert result.exit_code == 0, result.output + repr(result.exception)
    rows = json.loads(result.stdout)
    assert {row["decoder"] for row in rows} == set(decoders_for("volume"))
    assert all(row["nonfinite"] == 0 for row in rows)
    folder, *_ = saved_volumes
    files = ("--heatmaps", folder / "volumes.npy", "--targets", folder / "visible.npy")
    for args in (
        ("evaluate", *files),
        ("fit", "--dims", "3", "--samples", "2", "--steps", "2", "--learning-rates", "0.1", *SMALL[:-2]),
        ("bench", "--dims", "3", "--depth", "8", "--heatmap-size", "16x12", "--batch", "4", "--repeat", "1"),
    ):
        result = invoke(*args, *device)
        assert result.exit_code == 0, f"{args[0]}: {result.output}{result.exception!r}"


def test_volumes_on_the_cpu_and_on_cuda_agree(tmp_path, monkeypatch):
    from fake_device import fake_accelerator

    assert invoke("compare", *NOISY_SMALL, "--device", "cpu", "--csv", tmp_path / "cpu.csv").exit_code == 0
    with fake_accelerator("cuda", monkeypatch) as mode:
        result = invoke("compare", *NOISY_SMALL, "--device", "cuda", "--csv", tmp_path / "cuda.csv")
        assert result.exit_code == 0, result.output
    assert mode.problems == []
    cpu = pd.read_csv(tmp_path / "cpu.csv").set_index("decoder")
    cuda = pd.read_csv(tmp_path / "cuda.csv").set_index("decoder")
    # the same points and volumes; the device path differs from the CPU's only in
    # batching (whole chunks instead of cache-sized blocks, torch's argmax instead of
    # numpy's), so float32 sums may round differently: ~1e-6 relative on a mean error
    columns = ["mean_error", "p95_error", "mean_error_z", "mean_error_3d", "bias_x", "bias_y"]
    pd.testing.assert_frame_equal(cuda[columns], cpu[columns], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------ volumes beside the others
def test_a_sweep_of_both_representations_and_dims_has_volumes_of_heatmaps_only():
    from integral_cli.sweep import SweepConfig

    base = ExperimentConfig(samples=8, image_size=(32, 32), depth=8, margin=2, device="cpu")
    sweep = SweepConfig(base, (("representation", ("heatmap", "simcc")), ("dims", (2, 3))))
    made = [(c.representation, c.dims) for c in sweep.configurations()]
    assert made == [("heatmap", 2), ("heatmap", 3), ("simcc", 2)]
    with pytest.raises(ConfigError, match="no heatmap representation"):
        SweepConfig(base, (("representation", ("simcc",)), ("dims", (3,)))).configurations()


def test_the_title_names_a_lattice_of_volumes_in_three_sides():
    result = invoke(
        "compare", "--dims", "3", "--depth", "16", "--image-size", "64x64", "--sigma", "1",
        "--sampling", "grid", "--grid-size", "3", "--samples", "20", "--decoders", "argmax",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "27 points interior" in result.stdout and "grid 3x3x3" in result.stdout


def test_evaluate_shows_the_errors_of_3d_predictions_without_volumes(saved_volumes, tmp_path):
    folder, _, targets, _ = saved_volumes
    np.save(tmp_path / "points.npy", targets + 0.5)
    result = invoke("evaluate", "--targets", folder / "targets.npy", "--predictions", tmp_path / "points.npy")
    assert result.exit_code == 0, result.output
    assert "mean z" in result.stdout and "voxels" in result.stdout
