"""``evaluate``: decode heatmaps saved from your own model and score them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from integral_cli.cli.app import app, progress_bar
from integral_cli.cli.experiments import Columns
from integral_cli.cli.params import AsJson, CsvPath, Force, Number, Numbers, Wide, option, setting_options
from integral_cli.cli.render import choose_columns, error_caption, error_table, heading, show

EVALUATE_SETTINGS = (
    "stride",
    "convention",
    "image_size",
    "decoders",
    "beta",
    "dark_kernel",
    "window_radius",
    "fit_radius",
    "sigma",
    "device",
    "max_memory_mib",
)


@app.command()
@setting_options(
    EVALUATE_SETTINGS,
    overrides={
        "image_size": {
            "default": None,
            "default_text": "heatmap size x stride",
            "help": "Input image size, height x width; used by --convention udp.",
        },
        "sigma": {
            "default": None,
            "kind": "optional float",
            "default_text": "unknown",
            "low": 0,
            "help": "The maps' Gaussian sigma (your model's target sigma); --dark-kernel auto and "
            "--fit-radius auto use it.",
            "unit": "heatmap px",
        },
        "convention": {"help": "Heatmap-to-image mapping (center, corner or udp; see the docs' conventions)."},
        "fit_radius": {"help": "Half-width of the gaussian-fit window; auto: ceil(3*sigma) with --sigma, else 4."},
    },
)
def evaluate(
    settings: dict[str, Any],
    heatmaps: Annotated[
        Path,
        typer.Option(
            "--heatmaps",
            metavar="FILE",
            help="Your model's heatmaps, (N, K, H, "
            "W), or volumes (N, K, D, H, W): .npy, .npz (the only array, or one named 'heatmaps') or .pt/.pth "
            "(a tensor, or a dict holding one).",
        ),
    ],
    targets: Annotated[
        Path,
        typer.Option(
            "--targets",
            metavar="FILE",
            help="Ground truth in image pixels: .npy "
            "(N, K, 2), or (N, K, 3) with visibility; or .csv with columns sample, keypoint, x, y[, "
            "visible]. For volumes a z in voxels after y: (N, K, 3) or (N, K, 4), a z column. Visibility 0 "
            "leaves a keypoint out.",
        ),
    ],
    pck: Annotated[
        Any, option(parser=Numbers(Number(0, low_open=True)), help="Comma-separated PCK thresholds, image pixels.")
    ] = "1,2,4",
    csv: CsvPath = None,
    force: Force = False,
    as_json: AsJson = False,
    wide: Wide = False,
    columns: Columns = None,
) -> None:
    """Decode heatmaps saved from your own model with every decoder and print the same
    error table as compare, plus PCK.

    Maps are read in chunks that fit --max-memory; .npy, uncompressed .npz and .pt
    files are memory-mapped, so they may be larger than memory.
    """
    from integral_cli.evaluate import EvaluateConfig, evaluate_columns, evaluate_files, pck_column
    from integral_cli.report import check_output_path, rows_as_records, write_csv

    config = EvaluateConfig(heatmaps=heatmaps, targets=targets, pck=tuple(pck), **settings)
    extra = {pck_column(t): f"PCK@{t:g}" for t in config.pck}
    if csv is not None:
        check_output_path(csv, force=force)
    with progress_bar() as bar:
        task = bar.add_task("evaluate", total=None)
        rows, source = evaluate_files(config, progress=lambda n, total: bar.update(task, completed=n, total=total))
    shown = choose_columns(wide, columns.split(",") if columns else None, extra=list(extra), volumes=source.volumes)
    rows = rows.sort_values("mean_error", kind="stable", ignore_index=True)
    if csv is not None:
        write_csv(csv, rows, evaluate_columns(config.pck))
    if as_json:
        typer.echo(json.dumps(rows_as_records(rows, evaluate_columns(config.pck)), indent=2))
        return
    first = rows.iloc[0]
    samples, keypoints, *sides = source.shape
    what = "volumes" if source.volumes else "maps"
    title = [
        f"{heatmaps}: {samples}x{keypoints} {source.dtype} {what} of {'x'.join(map(str, sides))}"
        + (" (memory-mapped)" if source.mapped else ""),
        f"targets {targets}: {first['visible']} keypoints counted",
        f"stride {config.stride} → image {first['image_h']}x{first['image_w']}",
        f"convention {config.convention}",
        f"beta {config.beta:g}",
        f"dark kernel {first['dark_kernel']}",
        f"window radius {config.window_radius}",
        f"device {first['device']}",
    ]
    table, notes = error_table(rows, shown, extra)
    caption = [error_caption(source.volumes), "CI = 95% interval of the mean", "PCK@t = share within t px", *notes]
    show(table, heading(title), heading(caption), wide=wide or columns is not None)
