"""Volumes through the commands: compare and sweep --dims 2,3, resume, older CSVs."""

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from integral_cli import DECODERS
from integral_cli.cli import app
from integral_cli.decoders import decoders_of
from integral_cli.report import read_results
from integral_cli.settings import CSV_COLUMNS, LATER_COLUMNS

from support import table_rows

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
    assert sorted(cells[0] for cells in table_rows(result.stdout)) == sorted(decoders_of("volume"))
    assert "mean z, mean 3d: voxels" in result.stdout


def test_compare_dims_3_refuses_what_volumes_do_not_have():
    result = invoke("compare", "--dims", "3", "--decoders", "dark-udp", *SMALL)
    assert result.exit_code == 2 and "dark-udp does not decode volumes (--dims 3)" in result.stderr
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
    assert len(heatmaps) == 2 * len(DECODERS) and len(volumes) == 2 * len(decoders_of("volume"))
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
