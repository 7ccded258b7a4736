import json

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
    for row in report["rows"]:
        assert row["maps_per_s"] > 0 and row["min_s"] <= row["median_s"] <= row["max_s"]
    # the baselines decode the same maps: the per-keypoint DARK agrees with ours
    if report["dark_max_difference"] is not None:
        assert report["dark_max_difference"] < 1e-3
    assert any(target["ours"] == "integral-marginal" for target in report["targets"])


def test_bench_table_and_bad_options():
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "--repeat", "1", "--batch", "16", "--no-baselines", "--decoders", "argmax",
                                 "--device", "cpu"])
    assert result.exit_code == 0 and "maps/s" in result.stdout
    assert runner.invoke(app, ["bench", "--batch", "0"]).exit_code == 2
    assert runner.invoke(app, ["bench", "--size", "64"]).exit_code == 2
