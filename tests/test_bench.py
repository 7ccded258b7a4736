import json

import pytest
from typer.testing import CliRunner

from integral_cli import DECODERS
from integral_cli.cli import app


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
    assert any(target["ours"] == "integral-marginal" for target in report["targets"])


def test_bench_table_and_bad_options():
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "--repeat", "1", "--batch", "16", "--no-baselines", "--decoders", "argmax",
                                 "--device", "cpu"])
    assert result.exit_code == 0 and "maps/s" in result.stdout
    names = [line.split("│")[1].strip() for line in result.stdout.splitlines() if line.startswith("│")]
    assert names[:3] == ["read the tensor once (sum)", "argmax", "render_heatmaps"]
    assert runner.invoke(app, ["bench", "--batch", "0"]).exit_code == 2
    assert runner.invoke(app, ["bench", "--size", "64"]).exit_code == 2
