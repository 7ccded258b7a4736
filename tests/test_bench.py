import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from integral_cli import DECODERS
from integral_cli.baselines import simcc_argmax
from integral_cli.bench import SIMCC_ARGMAX, SIMCC_DARK
from integral_cli.cli import app
from integral_cli.decoders.registry import decoders_for

from support import table_rows


def test_bench_smoke_reports_every_decoder():
    result = CliRunner().invoke(app, ["bench", "--repeat", "1", "--batch", "64", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    names = {row["name"] for row in report["rows"]}
    assert set(DECODERS) <= names
    assert {"read the tensor once (sum)", "render_heatmaps", "compare end to end"} <= names
    read = next(row for row in report["rows"] if row["name"] == "read the tensor once (sum)")
    for row in report["rows"]:
        assert row["maps_per_s"] > 0 and row["min_s"] <= row["median_s"] <= row["max_s"]
        # the derived columns are the timings' arithmetic
        assert row["maps_per_s"] == pytest.approx(row["maps"] / row["median_s"], rel=1e-12)
        assert row["ns_per_map"] == pytest.approx(row["median_s"] / row["maps"] * 1e9, rel=1e-12)
        if row["kind"] == "decoder":
            assert row["read_fraction"] == pytest.approx(read["median_s"] / row["median_s"], rel=1e-12)
    assert [row["name"] for row in report["rows"] if row["kind"] == "decoder"] == list(DECODERS)
    # the baselines decode the same maps: the per-keypoint DARK (OpenCV's blur, a loop per
    # keypoint) agrees with ours; OpenCV is part of the test extra, so this always runs.
    # Both are float32: OpenCV's blur and ours sum in another order, which moves the Newton
    # step by ~1e-5 heatmap px on the flattest maps; 1e-3 is the documented DARK bound.
    assert report["dark_max_difference"] is not None
    assert report["dark_max_difference"] < 1e-3
    # the ratios are the speeds' quotients, one per comparison whose two sides ran
    speed = {row["name"]: row["maps_per_s"] for row in report["rows"]}
    assert {r["ours"] for r in report["ratios"]} >= {"argmax", "argmax-quarter", "dark", "integral-marginal"}
    for ratio in report["ratios"]:
        assert ratio["times_faster"] == pytest.approx(speed[ratio["ours"]] / speed[ratio["against"]], rel=1e-12)
    assert "targets" not in report  # the project's own speed targets are not the users' business


def test_bench_table_and_bad_options():
    runner = CliRunner()
    result = runner.invoke(
        app, ["bench", "--repeat", "1", "--batch", "16", "--no-baselines", "--decoders", "argmax", "--device", "cpu"]
    )
    assert result.exit_code == 0 and "maps/s" in result.stdout
    names = [cells[0] for cells in table_rows(result.stdout)]
    assert names[:3] == ["read the tensor once (sum)", "argmax", "render_heatmaps"]
    assert runner.invoke(app, ["bench", "--batch", "0"]).exit_code == 2
    assert runner.invoke(app, ["bench", "--heatmap-size", "64"]).exit_code == 2


def test_bench_simcc_against_mmpose_way():
    result = CliRunner().invoke(
        app,
        ["bench", "--representation", "simcc", "--repeat", "1", "--batch", "48", "--json", "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    decoders = [row["name"] for row in report["rows"] if row["kind"] == "decoder"]
    assert decoders == list(decoders_for("simcc"))
    names = {row["name"] for row in report["rows"]}
    assert {"render_simcc", "compare end to end", SIMCC_ARGMAX, SIMCC_DARK} <= names
    # MMPose's way decodes the same vectors: its DARK (OpenCV's blur in a loop over
    # vectors, the step in a loop over samples) agrees with ours to float32 rounding of the
    # log differences over the blurred curvature, ~1e-5 bins; 1e-3 is the DARK bound.
    assert report["dark_max_difference"] is not None and report["dark_max_difference"] < 1e-3
    speed = {row["name"]: row["maps_per_s"] for row in report["rows"]}
    assert {(r["ours"], r["against"]) for r in report["ratios"]} == {("argmax", SIMCC_ARGMAX), ("dark", SIMCC_DARK)}
    for ratio in report["ratios"]:
        assert ratio["times_faster"] == pytest.approx(speed[ratio["ours"]] / speed[ratio["against"]], rel=1e-12)


def test_bench_simcc_table():
    result = CliRunner().invoke(
        app, ["bench", "--representation", "simcc", "--repeat", "1", "--batch", "16", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "16 SimCC vector pairs of 384+512 bins float32" in result.stdout and "pairs/s" in result.stdout
    assert "dark against MMPose's DARK: largest difference" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    refused = CliRunner().invoke(app, ["bench", "--representation", "simcc", "--decoders", "dark-udp"])
    assert refused.exit_code == 2 and "does not apply to --representation simcc" in refused.stderr


def test_bench_simcc_of_short_vectors_runs_to_the_end():
    # 3x3 maps at stride 4: a 12x12 input, 24 bins a side at split ratio 2, shorter than
    # twice the labels' 3-sigma margin (15 bins): the compare run keeps 11.5 bins instead
    args = ["bench", "--representation", "simcc", "--heatmap-size", "3x3", "--repeat", "1", "--batch", "8"]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)["rows"]}
    assert rows["compare end to end"]["median_s"] > 0


def test_the_mmpose_way_of_simcc_argmax_is_numpy_argmax():
    simcc_x, simcc_y = np.random.rand(5, 3, 40), np.random.rand(5, 3, 30)
    simcc_y[2, 1] = 7.0  # ties: the first bin
    locations, values = simcc_argmax(simcc_x, simcc_y)
    assert locations.shape == (5, 3, 2) and (locations[..., 0] == simcc_x.argmax(-1)).all()
    assert locations[2, 1, 1] == 0 and (values == np.minimum(simcc_x.max(-1), simcc_y.max(-1))).all()


def test_bench_csv_says_what_was_timed(tmp_path):
    # every row carries the representation, the size of one output and where it ran
    out = tmp_path / "bench.csv"
    args = ["bench", "--dims", "3", "--depth", "4", "--heatmap-size", "8x6", "--batch", "4", "--repeat", "1"]
    result = CliRunner().invoke(app, [*args, "--decoders", "argmax", "--device", "cpu", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out)
    assert {"read the tensor once (sum)", "argmax"} <= set(rows["name"])
    assert (rows["representation"] == "volume").all() and (rows["dims"] == 3).all()
    assert (rows["size"] == "4x8x6").all() and (rows["device"] == "cpu").all() and (rows["dtype"] == "float32").all()
    out = tmp_path / "simcc.csv"
    args = ["bench", "--representation", "simcc", "--batch", "4", "--repeat", "1", "--decoders", "argmax"]
    assert CliRunner().invoke(app, [*args, "--device", "cpu", "--csv", str(out)]).exit_code == 0
    rows = pd.read_csv(out)
    # 64x48 maps at stride 4: a 256x192 input, 384 x bins and 512 y bins at split ratio 2
    assert (rows["representation"] == "simcc").all() and (rows["size"] == "384+512").all()
