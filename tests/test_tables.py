"""What a user sees: every table fits an 80-column terminal with whole names and numbers,
and --help is instant (it imports no torch)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from integral_cli import DECODERS
from integral_cli.cli import app
from integral_cli.cli.render import number
from integral_cli.decoders.registry import decoders_for

from support import table_rows

runner = CliRunner()


@pytest.fixture(scope="module")
def saved_maps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maps")
    maps = torch.rand(6, 17, 16, 12)
    np.save(folder / "maps.npy", maps.numpy())
    np.save(folder / "targets.npy", np.random.default_rng(0).uniform(0, 48, (6, 17, 2)))
    np.savez(folder / "simcc.npz", simcc_x=torch.rand(6, 17, 384).numpy(), simcc_y=torch.rand(6, 17, 512).numpy())
    return folder


def commands(saved_maps):
    return {
        "compare": ["compare", "--samples", "40", "--device", "cpu"],
        "compare noisy, distractor, grid": [
            "compare",
            "--samples",
            "40",
            "--device",
            "cpu",
            "--noise",
            "0.05",
            "--distractor",
            "0.3",
            "--sampling",
            "grid",
            "--grid-size",
            "2",
        ],
        "compare volumes": [
            "compare",
            "--dims",
            "3",
            "--samples",
            "20",
            "--device",
            "cpu",
            "--wide",
            "--columns",
            "mean_error,median_error,p95_error,mean_error_z,mean_error_3d,ci95",
        ],
        "compare volumes, default columns": ["compare", "--dims", "3", "--samples", "20", "--device", "cpu"],
        "evaluate": [
            "evaluate",
            "--heatmaps",
            saved_maps / "maps.npy",
            "--targets",
            saved_maps / "targets.npy",
            "--device",
            "cpu",
            "--pck",
            "0.5,1,2.5",
        ],
        "compare simcc": ["compare", "--representation", "simcc", "--samples", "40", "--device", "cpu"],
        "evaluate simcc": [
            "evaluate",
            "--simcc",
            saved_maps / "simcc.npz",
            "--targets",
            saved_maps / "targets.npy",
            "--device",
            "cpu",
            "--pck",
            "0.5,1,2.5",
        ],
        "grad": ["grad", "--samples", "2", "--device", "cpu"],
        "fit": ["fit", "--samples", "2", "--steps", "2", "--device", "cpu", "--learning-rates", "0.1"],
        "bench": ["bench", "--batch", "16", "--repeat", "1", "--device", "cpu", "--no-baselines"],
        "bench with the field": ["bench", "--batch", "64", "--repeat", "1", "--device", "cpu"],
        "bench volumes": ["bench", "--dims", "3", "--batch", "4", "--repeat", "1", "--device", "cpu"],
        "decoders": ["decoders"],
        "example": ["example"],
    }


@pytest.mark.parametrize(
    "name",
    [
        "compare",
        "compare noisy, distractor, grid",
        "compare simcc",
        "compare volumes",
        "compare volumes, default columns",
        "evaluate",
        "evaluate simcc",
        "grad",
        "fit",
        "bench",
        "bench with the field",
        "bench volumes",
        "decoders",
        "example",
    ],
)
def test_every_table_fits_80_columns_with_whole_names(saved_maps, name):
    args = commands(saved_maps)[name]
    result = runner.invoke(app, [str(a) for a in args])  # stdout is not a terminal here
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    assert "…" not in result.stdout  # nothing cut
    if args[0] in ("compare", "evaluate", "grad", "fit", "decoders"):
        # one line per decoder that applies, its name whole in the first cell
        names = decoders_for("simcc") if "simcc" in args or "--simcc" in args else DECODERS
        if "--dims" in args:
            names = decoders_for("volume")
        assert sorted(cells[0].removesuffix(" !") for cells in table_rows(result.stdout)) == sorted(names)


def test_compare_at_80_columns_shows_every_number_whole():
    result = runner.invoke(app, ["compare", "--samples", "300", "--device", "cpu", "--amplitude", "1"])
    rows = json.loads(
        runner.invoke(app, ["compare", "--samples", "300", "--device", "cpu", "--amplitude", "1", "--json"]).stdout
    )
    for cells, row in zip(table_rows(result.stdout), rows, strict=True):
        assert cells == [
            row["decoder"],
            *(number(row[c]) for c in ("mean_error", "median_error", "p95_error", "max_error")),
            f"{number(row['ci95_low'])}–{number(row['ci95_high'])}",
        ]


def test_wide_shows_every_column_at_its_natural_width():
    result = runner.invoke(app, ["compare", "--samples", "40", "--device", "cpu", "--wide"])
    header = next(line for line in result.stdout.splitlines() if line.startswith("decoder"))
    for title in ("mean", "rmse", "bias x", "bias y", "mean hm", "95% CI of mean", "non-finite", "seconds"):
        assert title in header
    assert "…" not in result.stdout and max(map(len, result.stdout.splitlines())) > 80


def test_columns_chooses_the_columns():
    result = runner.invoke(app, ["compare", "--samples", "40", "--device", "cpu", "--columns", "rmse,seconds"])
    header = next(line for line in result.stdout.splitlines() if line.startswith("decoder"))
    assert header.split() == ["decoder", "rmse", "seconds"]
    bad = runner.invoke(app, ["compare", "--samples", "40", "--device", "cpu", "--columns", "speed"])
    assert bad.exit_code == 2 and "unknown column 'speed'" in bad.output


def test_the_errors_of_volumes_are_refused_on_maps_and_shown_as_a_dash_by_evaluate(saved_maps):
    flat = runner.invoke(app, ["compare", "--samples", "40", "--device", "cpu", "--columns", "mean_error,mean_error_z"])
    assert flat.exit_code == 2 and "mean_error_z is an error of volumes (--dims 3)" in flat.output
    # evaluate knows whether its input holds volumes once it has read it
    args = ["evaluate", "--heatmaps", saved_maps / "maps.npy", "--targets", saved_maps / "targets.npy"]
    result = runner.invoke(app, [*args, "--device", "cpu", "--columns", "mean_error,mean_error_3d"])
    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert rows and all(cells[-1] == "-" and cells[-2] != "-" for cells in rows)


@pytest.mark.parametrize(
    "value, text",
    [
        (1.5353, "1.54"),
        (0.7626, "0.763"),
        (0.01171, "0.0117"),
        (8.7e-4, "8.70e-4"),
        (65.69, "65.7"),
        (124.17, "124"),
        (0.0, "0"),
        (-0.0099, "-0.00990"),
        (9.996, "10.0"),
        (float("nan"), "nan"),
    ],
)
def test_one_number_format(value, text):
    assert number(value) == text


HELP_CHECK = """
import sys
from integral_cli.cli import app
try:
    app({args!r}, prog_name="integral-cli")
except SystemExit as stop:
    assert stop.code in (0, None), stop.code
print(sorted(m for m in ("torch", "pandas", "numpy") if m in sys.modules))
"""


def every_help():
    names = [
        "compare",
        "sweep",
        "merge",
        "evaluate",
        "decode",
        "decoders",
        "example",
        "bench",
        "plot",
        "map",
        "grad",
        "fit",
    ]
    return [["--help"], ["--version"], *([name, "--help"] for name in names)]


def test_the_commands_are_the_ones_checked_here():
    import typer

    assert set(typer.main.get_command(app).commands) == {args[0] for args in every_help()[2:]}


@pytest.mark.parametrize("args", every_help(), ids=lambda args: " ".join(args))
def test_help_imports_no_torch(args):
    result = subprocess.run(
        [sys.executable, "-c", HELP_CHECK.format(args=args)], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines()[-1] == "[]", result.stdout
