"""Pictures (plot, map), the error field, and the committed reference results."""

import builtins
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from integral_cli import ExperimentConfig, run_experiment
from integral_cli.cli import app
from integral_cli.field import FIELD_COLUMNS, error_field, lattice_points

runner = CliRunner()
RESULTS = Path(__file__).resolve().parent.parent / "results"
MEAN_2D = (math.sqrt(2) + math.log(1 + math.sqrt(2))) / 6


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def tiny_sweep(tmp_path):
    out = tmp_path / "tiny.csv"
    result = invoke(
        "sweep",
        "--strides",
        "2,4,8",
        "--sigmas",
        "1,2",
        "--samples",
        "100",
        "--decoders",
        "argmax,dark,integral",
        "--device",
        "cpu",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    return out


def png_size(path):
    image = pytest.importorskip("matplotlib.image").imread(path)
    return image.shape[1], image.shape[0]


# ------------------------------------------------------------------------------- plot
def test_plot_writes_a_png_of_the_requested_size(tiny_sweep, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "p.png"
    result = invoke("plot", tiny_sweep, "--x", "stride", "--out", out, "--size", "500x900")  # height x width
    assert result.exit_code == 0, result.output
    assert png_size(out) == (900, 500) and "2 panels" in result.stderr


def test_plot_svg_and_default_name(tiny_sweep):
    pytest.importorskip("matplotlib")
    result = invoke("plot", tiny_sweep, "--x", "sigma", "--metric", "bias_x", "--out", tiny_sweep.with_suffix(".svg"))
    assert result.exit_code == 0, result.output
    assert tiny_sweep.with_suffix(".svg").read_text().lstrip().startswith("<?xml")
    assert invoke("plot", tiny_sweep).exit_code == 0
    assert tiny_sweep.with_name("tiny_mean_error_vs_stride.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "args, text",
    [
        (["--x", "seed"], "--x"),
        (["--metric", "speed"], "--metric"),
        (["--x", "amplitude"], "single value"),
        (["--out", "p.pdf"], ".png or .svg"),
        (["--size", "10x10"], "--size"),
    ],
)
def test_plot_bad_options(tiny_sweep, args, text):
    pytest.importorskip("matplotlib")
    result = invoke("plot", tiny_sweep, *args)
    assert result.exit_code == 2 and text in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "content, text",
    [(None, "does not exist"), ("", "is empty"), ("stride,sigma\n4,2\n", "does not have the results columns")],
)
def test_plot_bad_csv(tmp_path, content, text):
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_text(content)
    result = invoke("plot", path)
    assert result.exit_code == 2 and text in result.stderr


def test_plot_truncated_csv(tiny_sweep):
    tiny_sweep.write_text(tiny_sweep.read_text()[:-15])
    result = invoke("plot", tiny_sweep)
    assert result.exit_code == 2 and "partial row" in result.stderr


def test_missing_matplotlib_is_a_one_line_error(tiny_sweep, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = invoke("plot", tiny_sweep, "--out", tiny_sweep.with_suffix(".png"))
    assert result.exit_code == 1 and "pip install 'integral-cli[plot]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -------------------------------------------------------------------------------- map
def test_map_writes_a_png_and_the_field(tmp_path):
    pytest.importorskip("matplotlib")
    out, field = tmp_path / "m.png", tmp_path / "f.csv"
    result = invoke(
        "map",
        "--decoder",
        "integral",
        "--image-size",
        "64x48",
        "--density",
        "2",
        "--out",
        out,
        "--csv",
        field,
        "--size",
        "400x800",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    assert png_size(out) == (800, 400)
    frame = pd.read_csv(field)
    assert tuple(frame.columns) == FIELD_COLUMNS and len(frame) == 16 * 12 * 4


def test_lattice_covers_the_map_evenly():
    points = lattice_points((3, 4), 4)
    assert points.shape == (12 * 16, 2)
    assert points[:, 0].min() == -0.375 and points[:, 0].max() == 3.375
    assert points[:, 1].mean() == pytest.approx(1.0)


def test_argmax_field_is_the_distance_to_the_nearest_pixel():
    config = ExperimentConfig(stride=4, image_size=(64, 48), device="cpu")
    field = error_field(config, "argmax", density=4)
    nearest = np.hypot(field.x_hm - field.x_hm.round(), field.y_hm - field.y_hm.round()) * 4
    np.testing.assert_allclose(field.error, nearest, atol=1e-4)


def test_integral_field_matches_the_background_pull_closed_form():
    # E = (N c + S mu) / (N + S), S = sum (exp(h) - 1) by a plain loop over the 32x24 map.
    # The closed form needs the bump whole: keep the lattice points at least 8 heatmap px
    # (4 sigma) from the border pixel centres, where the cut tail moves the first moment
    # of exp(h) - 1 by under 3e-4 px; 1e-3 heatmap px covers it.
    config = ExperimentConfig(stride=4, image_size=(128, 96), amplitude=1.0, device="cpu", dtype="float64")
    field = error_field(config, "integral", density=2)
    height, width, n = 32, 24, 32 * 24
    centre = ((width - 1) / 2, (height - 1) / 2)
    interior = field[field.x_hm.between(8, width - 9) & field.y_hm.between(8, height - 9)]
    assert len(interior) >= 400
    largest_pull = 0.0
    for row in interior.itertuples():
        s = sum(
            math.exp(math.exp(-((x - row.x_hm) ** 2 + (y - row.y_hm) ** 2) / 8.0)) - 1
            for y in range(height)
            for x in range(width)
        )
        for got, mu, c in ((row.dx, row.x_hm, centre[0]), (row.dy, row.y_hm, centre[1])):
            pull = (n * c + s * mu) / (n + s) - mu  # heatmap px; the field is in image px
            assert got / 4 == pytest.approx(pull, abs=1e-3), (row.x_hm, row.y_hm)
            largest_pull = max(largest_pull, abs(pull))
    assert largest_pull > 3.0  # the pull is far larger than the tolerance


def test_field_agrees_with_compare_on_the_same_lattice():
    # grid sampling over every pixel (position anywhere) is the field's lattice; with the
    # argmax decoder both are exact, so their means agree with each other and the closed form
    config = ExperimentConfig(stride=4, image_size=(64, 48), device="cpu", decoders=("argmax",))
    field = error_field(config, "argmax", density=8)
    compare = run_experiment(
        ExperimentConfig(
            stride=4,
            image_size=(64, 48),
            device="cpu",
            decoders=("argmax",),
            position="anywhere",
            sampling="grid",
            grid_size=8,
            samples=64 * 50,
        )
    )
    offsets = [(i + 0.5) / 8 - 0.5 for i in range(8)]
    lattice_mean = sum(math.hypot(a, b) for a in offsets for b in offsets) / 64  # 0.3804, -> 0.3826 as G grows
    assert field.error.mean() / 4 == pytest.approx(lattice_mean, abs=1e-6)
    assert compare.mean_error.iloc[0] == pytest.approx(field.error.mean(), abs=1e-6)


@pytest.fixture
def mixed_sweep(tmp_path):
    out = tmp_path / "mixed.csv"
    result = invoke(
        "sweep",
        "--representations",
        "heatmap,simcc",
        "--strides",
        "4,8",
        "--split-ratios",
        "1,2,3",
        "--sigmas",
        "2",
        "--samples",
        "100",
        "--decoders",
        "argmax,dark",
        "--device",
        "cpu",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    return out


def test_outputs_per_keypoint():
    from integral_cli.plots import outputs_per_keypoint
    from integral_cli.report import read_results

    # heatmaps: H * W; SimCC: round(H_img k) + round(W_img k) bins (256x192 image)
    frame = pd.DataFrame(
        {
            "representation": ["heatmap", "heatmap", "simcc", "simcc"],
            "heatmap_h": [64, 32, None, None],
            "heatmap_w": [48, 24, None, None],
            "image_h": [256] * 4,
            "image_w": [192] * 4,
            "split_ratio": [None, None, 2.0, 1.5],
        }
    )
    assert outputs_per_keypoint(frame).tolist() == [3072, 768, 896, 672]
    assert outputs_per_keypoint(read_results(RESULTS / "reference.csv")).max() == 256 * 192


def test_plot_against_the_outputs_of_a_mixed_sweep(mixed_sweep, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "outputs.png"
    result = invoke("plot", mixed_sweep, "--x", "outputs", "--out", out)
    # the representation, the stride and the split ratio make the outputs: one panel
    assert result.exit_code == 0, result.output
    assert "1 panel" in result.stderr and out.stat().st_size > 1000
    for axis in ("stride", "split_ratio"):
        # each axis keeps the rows it applies to: one panel of heatmaps, one of SimCC
        result = invoke("plot", mixed_sweep, "--x", axis, "--out", tmp_path / f"{axis}.png")
        assert result.exit_code == 0 and "1 panel" in result.stderr, result.output


def test_map_bad_options():
    assert invoke("map", "--decoder", "nope").exit_code == 2
    assert invoke("map", "--density", "0").exit_code == 2
    assert invoke("map", "--out", "x.txt").exit_code == 2


# -------------------------------------------------------------------- reference results
def test_reference_results_are_reproduced():
    # Re-run one slice of the committed reference sweep with its recorded settings. Same
    # seed, same points: the numbers agree up to float32 summation order, which moves a
    # sub-pixel estimate by ~2e-6 heatmap px, 1.6e-5 image px at stride 8: rel 1e-5 with
    # an absolute floor of 2e-5 px for the near-exact decoders.
    reference = pd.read_csv(RESULTS / "reference.csv")
    meta = json.loads((RESULTS / "reference.json").read_text())
    settings = meta["settings"]
    config = ExperimentConfig(
        stride=8,
        sigma=2.0,
        amplitude=10.0,
        samples=settings["samples"],
        seed=settings["seed"],
        image_size=tuple(settings["image_size"]),
        decoders=tuple(settings["decoders"]),
        device="cpu",
    )
    again = run_experiment(config).set_index("decoder")
    committed = reference[(reference.stride == 8) & (reference.sigma == 2.0) & (reference.amplitude == 10.0)]
    assert len(committed) == len(settings["decoders"])
    for row in committed.itertuples():
        assert again.loc[row.decoder, "mean_error"] == pytest.approx(row.mean_error, rel=1e-5, abs=2e-5), row.decoder
        assert again.loc[row.decoder, "p95_error"] == pytest.approx(row.p95_error, rel=1e-5, abs=2e-5), row.decoder


def test_an_rmse_plot_draws_the_cramer_rao_bound(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from integral_cli import plots

    frame = pd.concat(
        [
            run_experiment(ExperimentConfig(samples=40, device="cpu", noise=noise, decoders=("argmax", "dark")))
            for noise in (0.02, 0.1)
        ],
        ignore_index=True,
    )
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda figure, out: drawn.setdefault("figure", figure))
    plots.plot_sweep(frame, tmp_path / "p.png", x="noise", metric="rmse")
    (axes,) = [ax for ax in drawn["figure"].axes if ax.get_visible()]
    (bound,) = [line for line in axes.get_lines() if line.get_label() == "Cramér–Rao bound"]
    expected = frame.drop_duplicates("noise").sort_values("noise").crlb_rmse.to_numpy()
    np.testing.assert_array_equal(bound.get_ydata(), expected)
    assert expected[1] == pytest.approx(5 * expected[0], rel=0.05)  # the bound grows with the noise
