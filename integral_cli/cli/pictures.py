"""``plot`` and ``map``: pictures of a sweep, and of one decoder's error field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from integral_cli.cli.app import app, progress_bar, say, warn
from integral_cli.cli.params import MAP_SETTINGS, Choice, Force, Number, Size, option, setting_options
from integral_cli.decoders import DECODERS
from integral_cli.errors import MissingResultsError
from integral_cli.settings import PLOT_AXES, PLOT_METRICS, ExperimentConfig

PictureSize = Size(100, 10_000)


def _picture_path(out: Path | None, default: Path, force: bool) -> Path:
    from integral_cli.report import check_output_path

    path = out if out is not None else default
    if path.suffix.lower() not in (".png", ".svg"):
        raise typer.BadParameter(f"pictures are written as .png or .svg, got {path}", param_hint="--out")
    return check_output_path(path, force=force)


@app.command()
def plot(
    csv: Annotated[Path, typer.Argument(metavar="CSV", help="A results CSV written by sweep (or compare --csv).")],
    x: Annotated[str, option("--x", parser=Choice(PLOT_AXES), help="The column on the x axis.")] = "stride",
    metric: Annotated[str, option(parser=Choice(PLOT_METRICS), help="The column on the y axis.")] = "mean_error",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="PATH",
            show_default="CSV stem + _METRIC_vs_X.png",
            help="Picture to write, .png or .svg.",
        ),
    ] = None,
    size: Annotated[Any, option(parser=PictureSize, help="Picture size in pixels, height x width.")] = "800x1200",
    force: Force = False,
) -> None:
    """Draw a metric of a sweep against one axis: one line per decoder, one panel per
    combination of the other columns that vary, argmax's closed form dashed."""
    from integral_cli.plots import plot_sweep
    from integral_cli.report import read_results

    frame = read_results(csv)
    path = _picture_path(out, csv.with_name(f"{csv.stem}_{metric}_vs_{x}.png"), force)
    height, width = size
    panels = plot_sweep(frame, path, x=x, metric=metric, size_px=(width, height))
    say(f"wrote {path} ({panels} panel{'s' if panels > 1 else ''})")


@app.command("map")
@setting_options((*MAP_SETTINGS, "convention", "decode_convention", "dtype", "device", "max_memory_mib"))
def error_map(
    settings: dict[str, Any],
    decoder: Annotated[
        str, option(parser=Choice(DECODERS), metavar="NAME", help=f"The decoder to map: {', '.join(DECODERS)}.")
    ] = "integral",
    density: Annotated[
        int, option(parser=Number(1, 64, integer=True), help="Lattice points per heatmap pixel along each axis.")
    ] = 4,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="PATH",
            show_default="map_DECODER_sSTRIDE.png",
            help="Picture to write, .png or .svg.",
        ),
    ] = None,
    csv: Annotated[
        Path | None,
        typer.Option("--csv", metavar="PATH", help="Also write the field: x_hm, y_hm, x_img, y_img, dx, dy, error."),
    ] = None,
    size: Annotated[Any, option(parser=PictureSize, help="Picture size in pixels, height x width.")] = "600x1200",
    force: Force = False,
) -> None:
    """Draw the error as a function of where the ground truth is: a dense lattice of
    positions over the whole heatmap, decoded; the error magnitude as an image and the
    bias as arrows."""
    from integral_cli.field import error_field
    from integral_cli.plots import plot_field, require_matplotlib
    from integral_cli.report import check_output_path, write_csv

    config = ExperimentConfig(decoders=(decoder,), **settings)
    path = _picture_path(out, Path(f"map_{decoder}_s{config.stride}.png"), force)
    if csv is not None:
        check_output_path(csv, force=force)
    require_matplotlib()  # before the long computation, not after it
    with progress_bar() as bar:
        task = bar.add_task("map", total=config.heatmap_size[0] * config.heatmap_size[1] * density**2)
        field = error_field(config, decoder, density, progress=lambda n: bar.update(task, completed=n), on_warning=warn)
    finite = field.error.notna()
    if not finite.any():
        raise MissingResultsError(f"{decoder} gave no finite result anywhere on these maps; nothing to draw")
    if not finite.all():
        warn(f"{int((~finite).sum())} of {len(field)} positions gave a non-finite result; they are left blank")
    title = (
        f"{decoder} · stride {config.stride} · sigma {config.sigma:g} {config.sigma_unit} px · amplitude "
        f"{config.amplitude:g} · beta {config.beta:g} · {config.encoder} · mean error {field.error.mean():.4f} "
        "image px" + ("" if finite.all() else f" over {int(finite.sum())} finite of {len(field)}")
    )
    height, width = size
    plot_field(field, path, title=title, size_px=(width, height))
    if csv is not None:
        write_csv(csv, field, columns=None)
    say(f"wrote {path}" + (f" and {csv}" if csv is not None else ""))
