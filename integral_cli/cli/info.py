"""``decoders``, ``example`` and ``bench``: what the decoders are, the reading note's
example, and how fast they run."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Annotated, Any

import typer

from integral_cli.cli.app import app, progress_bar, say
from integral_cli.cli.params import AsJson, Force, Number, Size, option, setting_options
from integral_cli.cli.render import WIDTH, heading, new_table, number, show
from integral_cli.decoders import DECODERS


@app.command("decoders")
def list_decoders(as_json: AsJson = False) -> None:
    """List the decoders: whether they pass gradients, whether they decode volumes, their
    parameters, their source.

    --json adds what each computes and the full reference."""
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "name": d.name,
                        "differentiable": d.differentiable,
                        "params": list(d.params),
                        "representations": list(d.representations),
                        "description": d.description,
                        "reference": d.reference,
                    }
                    for d in DECODERS.values()
                ],
                indent=2,
            )
        )
        return
    table = new_table(
        ["decoder", "gradient", "3D", "parameters", "reference"],
        left=["decoder", "gradient", "3D", "parameters", "reference"],
    )
    for d in DECODERS.values():
        volumes = "yes" if "volume" in d.representations else "no"
        table.add_row(d.name, "yes" if d.differentiable else "no", volumes, ", ".join(d.params) or "-", d.citation)
    simcc = [d.name for d in DECODERS.values() if "simcc" in d.representations]
    caption = textwrap.fill(
        "all decode heatmaps; SimCC vectors (--representation simcc): " + ", ".join(simcc),
        WIDTH,
        break_on_hyphens=False,
        break_long_words=False,
    )
    title = heading(["decoders", "3D: decodes volumes (--dims 3)", "--json: what each computes, and its reference"])
    show(table, title, caption)


@app.command()
def example(as_json: AsJson = False) -> None:
    """Reproduce the reading note's example: a 64x32 map, joints (10,10), (3,8),
    (16,18), peak 10, FWHM 4 px, decoded with argmax and both integral variants at
    beta 1."""
    from integral_cli.example import EXAMPLE_DECODERS, EXAMPLE_SIZE, run_example

    rows = run_example()
    if as_json:
        typer.echo(json.dumps(rows.to_dict(orient="records"), indent=2))
        return
    height, width = EXAMPLE_SIZE
    table = new_table(["joint", "truth", *EXAMPLE_DECODERS])
    for joint, group in rows.groupby("joint", sort=True):
        first = group.iloc[0]
        cells = [f"({x:.3f}, {y:.3f})" for x, y in zip(group["x"], group["y"], strict=True)]
        table.add_row(str(joint), f"({first.gt_x:g}, {first.gt_y:g})", *cells)
    show(table, f"the reading note's example · {height}x{width} (HxW) heatmap · (x, y) in heatmap pixels")


@app.command()
@setting_options(
    ("representation", "split_ratio", "decoders", "device", "dtype", "dark_kernel", "dims", "depth"),
    overrides={
        "representation": {"help": "Time heatmap decoders, or SimCC ones on the vectors of the same input."},
        "dark_kernel": {
            "help": "Blur kernel size of dark (odd); auto: 11 for the maps' sigma 2, MMPose's 29 for the "
            "SimCC labels' sigma 4.9 bins."
        },
        "dims": {"help": "2: time heatmaps; 3: volumes of --depth slices of --heatmap-size."},
    },
)
def bench(
    settings: dict[str, Any],
    heatmap_size: Annotated[
        Any,
        option(
            "--heatmap-size",
            parser=Size(),
            help="Size of the maps, height x width; SimCC vectors are those of the input, 4 times larger.",
        ),
    ] = "64x48",
    batch: Annotated[
        int | None,
        option(
            parser=Number(1, 10**7, integer=True),
            help="Maps (or SimCC vector pairs, or volumes) decoded per call.",
            show_default="4096 maps, 256 volumes",
        ),
    ] = None,
    repeat: Annotated[
        int,
        option(
            parser=Number(1, 1000, integer=True),
            help="Timed calls per decoder (after one warm-up); the median is reported.",
        ),
    ] = 7,
    baselines: Annotated[
        bool,
        typer.Option(
            "--baselines/--no-baselines",
            help="Also time the field's usual "
            "implementations: numpy argmax, the per-keypoint loops, the note's code, and kornia/dsntnn "
            "when installed; for SimCC, MMPose's way of decoding (argmax, and DARK); for volumes, dsntnn's n-D "
            "soft-argmax.",
        ),
    ] = True,
    as_json: AsJson = False,
    csv: Annotated[
        Path | None, typer.Option("--csv", metavar="PATH", help="Also write the timings to this CSV.")
    ] = None,
    force: Force = False,
) -> None:
    """Time every decoder on the same batch of maps (or SimCC vectors) against reading the
    batch once (the floor for any decoder) and against the field's usual implementations.

    Speeds are medians of interleaved rounds, so their ratios hold within one run on a
    busy machine; compare ratios, not absolute speeds, between runs."""
    import pandas as pd

    from integral_cli.bench import BenchConfig, csv_records, run_bench
    from integral_cli.report import check_output_path, write_csv

    config = BenchConfig(heatmap_size=heatmap_size, batch=batch, repeat=repeat, baselines=baselines, **settings)
    if csv is not None:
        check_output_path(csv, force=force)
    with progress_bar() as bar:
        task = bar.add_task("bench", total=None)
        result = run_bench(config, progress=lambda name: bar.update(task, description=f"bench: {name}"))
    if csv is not None:
        write_csv(csv, pd.DataFrame(csv_records(config, result)), columns=None)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    unit = "pairs/s" if config.representation == "simcc" else "volumes/s" if config.dims == 3 else "maps/s"
    table = new_table(["", unit, "ms (median)", "of read rate"], left=[""])
    for row in result["rows"]:
        fraction = "" if row["read_fraction"] is None else f"{row['read_fraction']:.0%}"
        table.add_row(row["name"], f"{row['maps_per_s']:,.0f}", number(row["median_s"] * 1e3), fraction)
    if config.representation == "simcc":
        image = f"image {config.image_size[0]}x{config.image_size[1]}"
        what = [f"{config.batch} SimCC vector pairs of {config.size_text} bins {config.dtype}", f"{image}"]
        what.append(f"split ratio {config.split_ratio:g}")
    else:
        outputs = "volumes" if config.dims == 3 else "maps"
        what = [f"{config.batch} {outputs} of {config.size_text} {config.dtype}"]
    title = [
        *what,
        f"device {result['device']}",
        f"torch {result['torch']}",
        f"{result['threads']} threads",
        f"median of {config.repeat}",
    ]
    show(table, heading(title))
    if result["ratios"]:
        ratios = new_table(
            ["ours", "against the field's way", "times faster"], left=["ours", "against the field's way"]
        )
        for ratio in result["ratios"]:
            ratios.add_row(ratio["ours"], ratio["against"], f"{ratio['times_faster']:.2f}")
        say("")
        show(ratios)
    if result["dark_max_difference"] is not None:
        against, unit = ("MMPose's", "bins") if config.representation == "simcc" else ("the per-keypoint", "heatmap px")
        typer.echo(f"dark against {against} DARK: largest difference {result['dark_max_difference']:.1e} {unit}")
