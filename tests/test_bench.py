import json

import pytest
from typer.testing import CliRunner

from integral_cli import DECODERS
from integral_cli.cli import app

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
