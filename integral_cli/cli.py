"""The command line: parse options, call the library, render the results.

Tables and data go to stdout; progress and messages go to stderr. Library errors become
one line on stderr: a bad setting exits with 2 (like Click's own usage errors), anything
else with 1; Ctrl-C exits with 130.
"""

from __future__ import annotations

import json
import math
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from integral_cli import __version__
from integral_cli.decoders import DECODERS
from integral_cli.devices import DEVICE_HELP, device_name, resolve_device
from integral_cli.errors import ConfigError, IntegralError, MissingResultsError
from integral_cli.experiment import (
    DEFAULT_MAX_MEMORY_MIB,
    DTYPES,
    SIGMA_UNITS,
    ExperimentConfig,
    run_experiment,
)
from integral_cli.evaluate import EvaluateConfig, evaluate_columns, evaluate_files, pck_column
from integral_cli.field import error_field
from integral_cli.fit import DEFAULT_LEARNING_RATES, DEFAULT_START_DISTANCE, DEFAULT_STEPS, DEFAULT_THRESHOLD, FIT_COLUMNS, FitConfig, fit_report
from integral_cli.gradients import DEFAULT_EPSILON, GRAD_COLUMNS, GradConfig, gradient_report
from integral_cli.plots import PLOT_AXES, PLOT_METRICS, plot_field, plot_sweep, require_matplotlib
from integral_cli.report import (
    check_output_path,
    read_results,
    rows_as_records,
    sidecar_path,
    write_csv,
)
from integral_cli.seed_note import SEED_DECODERS, SEED_SIZE, run_seed
from integral_cli.sweep import GRID_AXES, Shard, SweepConfig, SweepProgress, merge_results, run_sweep
from integral_cli.bench import BenchConfig, run_bench
from integral_cli.coords import CONVENTIONS
from integral_cli.synth import ENCODERS, POSITIONS, SAMPLINGS

app = typer.Typer(
    name="integral-cli",
    help="Measure the quantization error of keypoint heatmap decoders on synthetic maps, their gradients, and your own model's heatmaps.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

T = TypeVar("T")


# --------------------------------------------------------------------------- parsing
def _parse_list(text: str, convert: Callable[[str], T], what: str, option: str) -> tuple[T, ...]:
    items = [item.strip() for item in text.split(",")]
    problem = typer.BadParameter(f"expected a comma-separated list of {what}, got {text!r}", param_hint=option)
    if not text.strip() or any(not item for item in items):
        raise problem
    try:
        return tuple(convert(item) for item in items)
    except ValueError:
        raise problem from None


def _positive_ints(text: str, option: str) -> tuple[int, ...]:
    values = _parse_list(text, int, "integers", option)
    if any(v < 1 for v in values):
        raise typer.BadParameter(f"every value must be a positive integer, got {text!r}", param_hint=option)
    return values


def _positive_floats(text: str, option: str) -> tuple[float, ...]:
    values = _parse_list(text, float, "numbers", option)
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise typer.BadParameter(f"every value must be a finite number > 0, got {text!r}", param_hint=option)
    return values


def _decoder_names(text: str | None) -> tuple[str, ...]:
    if text is None or text.strip().lower() == "all":
        return tuple(DECODERS)
    names = _parse_list(text, str, "decoder names", "--decoders")
    unknown = [name for name in names if name not in DECODERS]
    if unknown:
        raise typer.BadParameter(
            f"unknown decoder {unknown[0]!r}; choose from {', '.join(DECODERS)}", param_hint="--decoders"
        )
    if len(set(names)) != len(names):
        raise typer.BadParameter("a decoder is listed twice", param_hint="--decoders")
    return names


def _image_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("×", "x").split("x")
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"expected HxW such as 256x192, got {text!r}", param_hint="--image-size") from None
    if height < 1 or width < 1:
        raise typer.BadParameter(f"height and width must be positive, got {text!r}", param_hint="--image-size")
    return height, width


def _dark_kernel(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1 or size % 2 == 0:
        raise typer.BadParameter(f"expected a positive odd integer or auto, got {text!r}", param_hint="--dark-kernel")
    return size


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


def _positive(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise typer.BadParameter(f"must be a finite number > 0, got {value}")
    return value


def _at_least(low: float) -> Callable[[float | None], float | None]:
    def check(value: float | None) -> float | None:
        if value is not None and (not math.isfinite(value) or value < low):
            raise typer.BadParameter(f"must be a finite number >= {low:g}, got {value}")
        return value

    return check


# ------------------------------------------------------------------- shared options
Stride = Annotated[int, typer.Option(min=1, help="Image pixels per heatmap pixel.")]
Sigma = Annotated[float, typer.Option(callback=_positive, help="Gaussian standard deviation (see --sigma-unit).")]
SigmaUnit = Annotated[str, typer.Option(callback=_one_of(SIGMA_UNITS), metavar="[{}]".format("|".join(SIGMA_UNITS)), help="Unit of sigma: heatmap pixels, or image pixels (sigma_hm = sigma / stride).")]
Amplitude = Annotated[float, typer.Option(callback=_positive, help="Peak value of the rendered maps (10 is the seed note's).")]
Beta = Annotated[float, typer.Option(callback=_positive, help="Inverse temperature of the softmax decoders.")]
DarkKernel = Annotated[str, typer.Option(metavar="K|auto", help="Blur kernel size of dark and dark-udp (odd); auto: the size whose OpenCV sigma is nearest the map's sigma (2 -> 11, 3 -> 17).")]
WindowRadius = Annotated[int, typer.Option(min=0, help="Half-width r of the soft-argmax-local window, (2r+1)^2 pixels.")]
ImageSize = Annotated[str, typer.Option("--image-size", metavar="HxW", help="Input image size in pixels; both sides multiples of the stride.")]
Samples = Annotated[int, typer.Option(min=1, help="Ground-truth points (one map each) per configuration.")]
Margin = Annotated[float | None, typer.Option(callback=_at_least(0), show_default="ceil(3*sigma_hm)", help="Keep ground truth this far from the border, in heatmap pixels (0 allowed).")]
Decoders = Annotated[str | None, typer.Option(metavar="LIST", show_default="all", help=f"Comma-separated decoders: {', '.join(DECODERS)}.")]
Device = Annotated[str, typer.Option(metavar="DEVICE", help=f"Device: {DEVICE_HELP}. auto = CUDA when available, else CPU.")]
Seed = Annotated[int, typer.Option(min=0, max=2**63 - 1, help="Seed of the ground-truth sampling.")]
Encoder = Annotated[str, typer.Option(callback=_one_of(tuple(ENCODERS)), metavar="[{}]".format("|".join(tuple(ENCODERS))), help="Heatmap encoder.")]
Dtype = Annotated[str, typer.Option(callback=_one_of(tuple(DTYPES)), metavar="[{}]".format("|".join(tuple(DTYPES))), help="Precision the maps are decoded in.")]
MaxMemory = Annotated[float, typer.Option("--max-memory", callback=_at_least(1), metavar="MIB", help="Memory budget in MiB; maps are rendered and decoded in chunks that fit it.")]
Noise = Annotated[float, typer.Option(callback=_at_least(0), help="Additive Gaussian noise: standard deviation relative to the peak.")]
Distractor = Annotated[float, typer.Option(callback=_at_least(0), help="Amplitude of a second peak relative to the first (0: none).")]
DistractorDistance = Annotated[float, typer.Option(callback=_at_least(0), help="Distance of the second peak from the true point, heatmap pixels, in a random direction.")]
Position = Annotated[str, typer.Option(callback=_one_of(POSITIONS), metavar="[{}]".format("|".join(POSITIONS)), help="Where ground truth lies: interior (--margin from the border), border (within ceil(3*sigma_hm) of an edge), anywhere.")]
Convention = Annotated[str, typer.Option(callback=_one_of(CONVENTIONS), metavar="[{}]".format("|".join(CONVENTIONS)), help="Image-to-heatmap mapping used to encode the ground truth.")]
DecodeConvention = Annotated[str, typer.Option(callback=_one_of(("same", *CONVENTIONS)), metavar="[same|{}]".format("|".join(CONVENTIONS)), help="Heatmap-to-image mapping used to read decoded points back; a mismatch shows as bias.")]
Sampling = Annotated[str, typer.Option(callback=_one_of(SAMPLINGS), metavar="[{}]".format("|".join(SAMPLINGS)), help="random: uniform points; grid: a G x G lattice of sub-pixel offsets per cell (samples rounded up to whole lattices).")]
GridSize = Annotated[int, typer.Option(min=1, metavar="G", help="Lattice size G of --sampling grid.")]
Force = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _shared_settings(
    sigma_unit: str, dark_kernel: str, window_radius: int, image_size: str, samples: int,
    margin: float | None, decoders: str | None, device: str, seed: int, max_memory: float,
) -> dict[str, Any]:
    """The settings compare and sweep share, parsed into ExperimentConfig fields."""
    return {
        "sigma_unit": sigma_unit, "dark_kernel": _dark_kernel(dark_kernel), "window_radius": window_radius,
        "image_size": _image_size(image_size), "samples": samples, "margin": margin,
        "decoders": _decoder_names(decoders), "device": device, "seed": seed, "max_memory_mib": max_memory,
    }


# --------------------------------------------------------------------- error mapping
@contextmanager
def _reported_errors() -> Iterator[None]:
    """Turn library errors into one line on stderr and the right exit code."""
    try:
        yield
    except ConfigError as error:
        typer.echo(f"integral-cli: error: {error}", err=True)
        raise typer.Exit(2) from None
    except IntegralError as error:
        typer.echo(f"integral-cli: error: {error}", err=True)
        raise typer.Exit(1) from None


def _stdout() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _progress() -> Progress:
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )


def _command_line(context: typer.Context) -> list[str]:
    """The running command with every option spelled out, defaults included."""
    words = ["integral-cli", context.info_name or ""]
    for param in context.command.params:
        value = context.params.get(param.name or "")
        if value is None or value is False or param.param_type_name != "option":
            continue
        words += [param.opts[0]] if value is True else [param.opts[0], str(value)]
    return words


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if value != 0 and abs(value) < 0.001:
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


# ------------------------------------------------------------------------- commands
@app.command()
def compare(
    stride: Stride = 4,
    sigma: Sigma = 2.0,
    sigma_unit: SigmaUnit = "heatmap",
    amplitude: Amplitude = 10.0,
    beta: Beta = 1.0,
    dark_kernel: DarkKernel = "11",
    window_radius: WindowRadius = 2,
    image_size: ImageSize = "256x192",
    samples: Samples = 10_000,
    margin: Margin = None,
    decoders: Decoders = None,
    device: Device = "auto",
    seed: Seed = 0,
    encoder: Encoder = "gaussian",
    noise: Noise = 0.0,
    distractor: Distractor = 0.0,
    distractor_distance: DistractorDistance = 12.0,
    position: Position = "interior",
    convention: Convention = "center",
    decode_convention: DecodeConvention = "same",
    sampling: Sampling = "random",
    grid_size: GridSize = 16,
    dtype: Dtype = "float32",
    max_memory: MaxMemory = DEFAULT_MAX_MEMORY_MIB,
    csv: Annotated[Path | None, typer.Option("--csv", metavar="PATH", help="Also write the rows to this CSV.")] = None,
    force: Force = False,
    as_json: AsJson = False,
) -> None:
    """Decode random sub-pixel points with every decoder and print the error table.

    Errors are Euclidean distances in image pixels between the decoded and the true
    point; rows are sorted by mean error.
    """
    with _reported_errors():
        if margin is not None and position != "interior":
            raise typer.BadParameter(
                "--margin applies to --position interior; border uses ceil(3*sigma_hm), anywhere none",
                param_hint="--margin",
            )
        config = ExperimentConfig(
            stride=stride,
            sigma=sigma,
            amplitude=amplitude,
            beta=beta,
            **_shared_settings(sigma_unit, dark_kernel, window_radius, image_size, samples, margin, decoders,
                               device, seed, max_memory),
            encoder=encoder,
            noise=noise,
            distractor=distractor,
            distractor_distance=distractor_distance,
            position=position,
            convention=convention,
            decode_convention=decode_convention,
            sampling=sampling,
            grid_size=grid_size,
            dtype=dtype,
        )
        if csv is not None:
            check_output_path(csv, force=force)
        used = resolve_device(config.device)
        with _progress() as progress:
            task = progress.add_task("compare", total=config.total_samples)
            rows = run_experiment(config, progress=lambda done: progress.update(task, completed=done), on_warning=_warn)
        rows = rows.sort_values("mean_error", kind="stable", ignore_index=True)
        if csv is not None:
            write_csv(csv, rows)
    if as_json:
        typer.echo(json.dumps(rows_as_records(rows), indent=2))
        return
    _stdout().print(_compare_table(config, rows, device_name(used)))


def _compare_table(config: ExperimentConfig, rows: pd.DataFrame, device: str) -> Table:
    height, width = config.heatmap_size
    margin = rows["margin"].iloc[0]
    decode_convention = config.resolved_decode_convention
    maps = f"{config.encoder} maps"
    if config.noise:
        maps += f" + noise {config.noise:g}"
    if config.distractor:
        maps += f" + distractor {config.distractor:g} at {config.distractor_distance:g} px"
    where = {"interior": f"interior (margin {margin:g} hm px)", "border": f"border (band {margin:g} hm px)",
             "anywhere": "anywhere"}[config.position]
    sampling = "random" if config.sampling == "random" else f"grid {config.grid_size}x{config.grid_size}"
    title = (
        f"stride {config.stride} · sigma {config.sigma:g} {config.sigma_unit} px · amplitude "
        f"{config.amplitude:g} · {maps} · beta {config.beta:g} · dark kernel "
        f"{config.decoder_params['dark_kernel']} · window radius {config.window_radius}\n"
        f"image {config.image_size[0]}x{config.image_size[1]} → heatmap {height}x{width} · "
        f"{config.total_samples} points {where}, {sampling} · convention {config.convention}"
        f"{'' if decode_convention == config.convention else ' → ' + decode_convention} · "
        f"{config.dtype} · seed {config.seed} · device {device}"
    )
    caption = "errors in image pixels; CI = 95% interval of the mean"
    if config.sampling == "grid":
        caption = "errors in image pixels; no CI: a lattice is not a random sample"
    return _error_table(title, caption, rows)


def _error_table(title: str, caption: str, rows: pd.DataFrame, extra: dict[str, str] | None = None) -> Table:
    """The error table of compare and evaluate; ``extra`` maps more columns (fractions,
    shown as percentages) to their headers."""
    extra = extra or {}
    if rows.nonfinite.any():
        caption += "; ! = some results were not finite, statistics are over the finite ones"
    table = Table(title=title, caption=caption)
    for header in ("decoder", "mean", "median", "p95", "max", "rmse", "bias x", "bias y",
                   "mean (hm px)", "95% CI of mean", *extra.values(), "non-finite", "seconds"):
        table.add_column(header, justify="left" if header == "decoder" else "right")
    for row in rows.to_dict(orient="records"):
        flag = " !" if row["nonfinite"] else ""
        table.add_row(
            row["decoder"] + flag,
            *(_number(row[column]) for column in ("mean_error", "median_error", "p95_error", "max_error",
                                                   "rmse", "bias_x", "bias_y", "mean_error_hm")),
            f"{_number(row['ci95_low'])} – {_number(row['ci95_high'])}",
            *(f"{row[column]:.1%}" for column in extra),
            str(row["nonfinite"]),
            f"{row['seconds']:.3f}",
        )
    return table


def _list_option(help_text: str) -> Any:
    return typer.Option(metavar="LIST", help=help_text)


def _choices(choices: tuple[str, ...]) -> Callable[[str, str], tuple[str, ...]]:
    def parse(text: str, option: str) -> tuple[str, ...]:
        values = _parse_list(text, str, "names", option)
        unknown = [v for v in values if v not in choices]
        if unknown:
            raise typer.BadParameter(f"{unknown[0]!r} is not one of {', '.join(choices)}", param_hint=option)
        return values

    return parse


def _non_negative_floats(text: str, option: str) -> tuple[float, ...]:
    values = _parse_list(text, float, "numbers", option)
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise typer.BadParameter(f"every value must be a finite number >= 0, got {text!r}", param_hint=option)
    return values


#: How each swept axis's comma list is read.
_AXIS_PARSERS: dict[str, Callable[[str, str], tuple[Any, ...]]] = {
    "stride": _positive_ints,
    "sigma": _positive_floats,
    "amplitude": _positive_floats,
    "beta": _positive_floats,
    "encoder": _choices(tuple(ENCODERS)),
    "noise": _non_negative_floats,
    "distractor": _non_negative_floats,
    "distractor_distance": _non_negative_floats,
    "position": _choices(POSITIONS),
    "convention": _choices(CONVENTIONS),
    "decode_convention": _choices(("same", *CONVENTIONS)),
    "sampling": _choices(SAMPLINGS),
    "dtype": _choices(tuple(DTYPES)),
}


@app.command()
def sweep(
    context: typer.Context,
    strides: Annotated[str, _list_option("Comma-separated strides.")] = "1,2,4,8",
    sigmas: Annotated[str, _list_option("Comma-separated sigmas (see --sigma-unit).")] = "1,2,3",
    amplitudes: Annotated[str, _list_option("Comma-separated peak values.")] = "10",
    betas: Annotated[str, _list_option("Comma-separated inverse temperatures.")] = "1",
    encoders: Annotated[str, _list_option(f"Comma-separated encoders: {', '.join(ENCODERS)}.")] = "gaussian",
    noises: Annotated[str, _list_option("Comma-separated noise levels (relative to the peak).")] = "0",
    distractors: Annotated[str, _list_option("Comma-separated relative amplitudes of a second peak (0: none).")] = "0",
    distractor_distances: Annotated[str, _list_option("Comma-separated distances of the second peak, heatmap px.")] = "12",
    positions: Annotated[str, _list_option(f"Comma-separated positions: {', '.join(POSITIONS)}.")] = "interior",
    conventions: Annotated[str, _list_option(f"Comma-separated encode conventions: {', '.join(CONVENTIONS)}.")] = "center",
    decode_conventions: Annotated[str, _list_option("Comma-separated decode conventions (same = the encode one).")] = "same",
    samplings: Annotated[str, _list_option("Comma-separated samplings: random, grid.")] = "random",
    dtypes: Annotated[str, _list_option(f"Comma-separated decoding precisions: {', '.join(DTYPES)}.")] = "float32",
    sigma_unit: SigmaUnit = "heatmap",
    dark_kernel: DarkKernel = "11",
    window_radius: WindowRadius = 2,
    image_size: ImageSize = "256x192",
    samples: Samples = 10_000,
    margin: Margin = None,
    grid_size: GridSize = 16,
    decoders: Decoders = None,
    device: Device = "auto",
    seed: Seed = 0,
    max_memory: MaxMemory = DEFAULT_MAX_MEMORY_MIB,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="PATH", help="CSV to write; a JSON sidecar with the same stem goes beside it.")] = Path("results/sweep.csv"),
    force: Force = False,
    resume: Annotated[bool, typer.Option("--resume", help="Keep the configurations --out already holds (its sidecar must show the same settings) and run the rest.")] = False,
    shard: Annotated[str, typer.Option(metavar="i/n", help="Run only the i-th of n disjoint slices of the grid (for job arrays); combine the parts with merge.")] = "1/1",
) -> None:
    """Run the grid of every listed axis (strides x sigmas x ... x dtypes) and write one
    CSV row per configuration and decoder.

    Rows are written as each configuration finishes, so an interrupted sweep keeps
    what it finished. Every configuration uses the same seed, so all of them see the
    same ground-truth points wherever their margins agree.
    """
    lists = {
        "stride": strides, "sigma": sigmas, "amplitude": amplitudes, "beta": betas,
        "encoder": encoders, "noise": noises, "distractor": distractors,
        "distractor_distance": distractor_distances, "position": positions,
        "convention": conventions, "decode_convention": decode_conventions,
        "sampling": samplings, "dtype": dtypes,
    }
    with _reported_errors():
        axes = tuple((field, _AXIS_PARSERS[field](text, GRID_AXES[field])) for field, text in lists.items())
        grid = SweepConfig(
            # the base takes each axis's first value, so it is checked as a real configuration
            base=ExperimentConfig(
                **{field: values[0] for field, values in axes},
                **_shared_settings(sigma_unit, dark_kernel, window_radius, image_size, samples, margin, decoders,
                                   device, seed, max_memory),
                grid_size=grid_size,
            ),
            axes=axes,
        )
        part = Shard.parse(shard)
        state = SweepProgress(total=len(part.select(grid.configurations())))

        def finished(progress_now: SweepProgress) -> None:
            state.skipped, state.written = progress_now.skipped, progress_now.written

        # a scheduler's SIGTERM (preemption) ends the sweep like Ctrl-C: sidecar marked, exit 130
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            with _progress() as bar:
                task = bar.add_task("sweep", total=None)
                state = run_sweep(
                    grid,
                    out,
                    force=force,
                    resume=resume,
                    shard=part,
                    command_line=_command_line(context),
                    on_samples=lambda n: bar.update(task, completed=n),
                    on_configuration=finished,
                    on_warning=_warn,
                    on_start=lambda samples: bar.update(task, total=samples),
                )
        except KeyboardInterrupt:
            saved = state.skipped + state.written
            typer.echo(
                f"integral-cli: interrupted; {saved} of {state.total} configurations saved in {out}; "
                "run the same command with --resume to finish",
                err=True,
            )
            raise typer.Exit(130) from None
        finally:
            signal.signal(signal.SIGTERM, previous)
    if state.total == 0:
        _warn(f"shard {part} of this grid is empty: it has no configuration to run")
    skipped = f", {state.skipped} already there" if state.skipped else ""
    typer.echo(
        f"wrote {state.written * len(grid.base.decoders)} rows ({state.written} configurations"
        f"{skipped}) to {out} and settings to {sidecar_path(out)}",
        err=True,
    )


@app.command()
def merge(
    out: Annotated[Path, typer.Argument(metavar="OUT.csv", help="The merged CSV to write.")],
    parts: Annotated[list[Path], typer.Argument(metavar="PART.csv...", help="The shards' CSVs, each with its .json sidecar.")],
    force: Force = False,
) -> None:
    """Combine the CSVs of a sweep run in shards (sweep --shard i/n) into one.

    Checks that every part was made with the same settings, refuses a configuration
    held twice, writes the rows in grid order and reports configurations no part holds.
    """
    with _reported_errors():
        report = merge_results(out, parts, force=force, command_line=["integral-cli", "merge", str(out), *map(str, parts)])
    typer.echo(
        f"wrote {report.rows} rows from {len(parts)} parts to {out}; "
        f"{report.configurations - len(report.missing)} of {report.configurations} configurations present",
        err=True,
    )
    if report.missing:
        shown = "; ".join(report.missing[:3]) + ("; ..." if len(report.missing) > 3 else "")
        _warn(f"{len(report.missing)} configurations missing: {shown}")


def _size_px(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected WxH in pixels such as 1200x800, got {text!r}", param_hint="--size") from None
    if not (100 <= width <= 10000 and 100 <= height <= 10000):
        raise typer.BadParameter(f"width and height must be 100 to 10000 pixels, got {text!r}", param_hint="--size")
    return width, height


def _picture_path(out: Path | None, default: Path, force: bool) -> Path:
    path = out if out is not None else default
    if path.suffix.lower() not in (".png", ".svg"):
        raise typer.BadParameter(f"pictures are written as .png or .svg, got {path}", param_hint="--out")
    check_output_path(path, force=force)
    return path


@app.command()
def plot(
    csv: Annotated[Path, typer.Argument(metavar="CSV", help="A results CSV written by sweep (or compare --csv).")],
    x: Annotated[str, typer.Option("--x", callback=_one_of(PLOT_AXES), metavar="[{}]".format("|".join(PLOT_AXES)), help="The column on the x axis.")] = "stride",
    metric: Annotated[str, typer.Option(callback=_one_of(PLOT_METRICS), metavar="METRIC", help=f"The column on the y axis: {', '.join(PLOT_METRICS)}.")] = "mean_error",
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="PATH", show_default="CSV stem + _METRIC_vs_X.png", help="Picture to write, .png or .svg.")] = None,
    size: Annotated[str, typer.Option(metavar="WxH", help="Picture size in pixels.")] = "1200x800",
    force: Force = False,
) -> None:
    """Draw a metric of a sweep against one axis: one line per decoder, one panel per
    combination of the other columns that vary, argmax's closed form dashed."""
    with _reported_errors():
        frame = read_results(csv)
        path = _picture_path(out, csv.with_name(f"{csv.stem}_{metric}_vs_{x}.png"), force)
        panels = plot_sweep(frame, path, x=x, metric=metric, size_px=_size_px(size))
    typer.echo(f"wrote {path} ({panels} panel{'s' if panels > 1 else ''})", err=True)


@app.command("map")
def error_map(
    decoder: Annotated[str, typer.Option(callback=_one_of(tuple(DECODERS)), metavar="NAME", help=f"The decoder to map: {', '.join(DECODERS)}.")] = "integral",
    stride: Stride = 4,
    sigma: Sigma = 2.0,
    sigma_unit: SigmaUnit = "heatmap",
    amplitude: Amplitude = 10.0,
    beta: Beta = 1.0,
    dark_kernel: DarkKernel = "11",
    window_radius: WindowRadius = 2,
    image_size: ImageSize = "256x192",
    encoder: Encoder = "gaussian",
    convention: Convention = "center",
    decode_convention: DecodeConvention = "same",
    dtype: Dtype = "float32",
    density: Annotated[int, typer.Option(min=1, max=64, help="Lattice points per heatmap pixel along each axis.")] = 4,
    device: Device = "auto",
    max_memory: MaxMemory = DEFAULT_MAX_MEMORY_MIB,
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="PATH", show_default="map_DECODER_sSTRIDE.png", help="Picture to write, .png or .svg.")] = None,
    csv: Annotated[Path | None, typer.Option("--csv", metavar="PATH", help="Also write the field: x_hm, y_hm, x_img, y_img, dx, dy, error.")] = None,
    size: Annotated[str, typer.Option(metavar="WxH", help="Picture size in pixels.")] = "1200x600",
    force: Force = False,
) -> None:
    """Draw the error as a function of where the ground truth is: a dense lattice of
    positions over the whole heatmap, decoded; the error magnitude as an image and the
    bias as arrows."""
    with _reported_errors():
        config = ExperimentConfig(
            stride=stride, sigma=sigma, sigma_unit=sigma_unit, amplitude=amplitude, beta=beta,
            dark_kernel=_dark_kernel(dark_kernel), window_radius=window_radius,
            image_size=_image_size(image_size), encoder=encoder, convention=convention,
            decode_convention=decode_convention, dtype=dtype, device=device,
            max_memory_mib=max_memory, decoders=(decoder,),
        )
        path = _picture_path(out, Path(f"map_{decoder}_s{stride}.png"), force)
        if csv is not None:
            check_output_path(csv, force=force)
        size_px = _size_px(size)
        require_matplotlib()  # before the long computation, not after it
        with _progress() as bar:
            task = bar.add_task("map", total=config.heatmap_size[0] * config.heatmap_size[1] * density**2)
            field = error_field(config, decoder, density, progress=lambda n: bar.update(task, completed=n),
                                on_warning=_warn)
        finite = field.error.notna()
        if not finite.any():
            raise MissingResultsError(f"{decoder} gave no finite result anywhere on these maps; nothing to draw")
        if not finite.all():
            _warn(f"{int((~finite).sum())} of {len(field)} positions gave a non-finite result; they are left blank")
        title = (
            f"{decoder} · stride {stride} · sigma {sigma:g} {sigma_unit} px · amplitude {amplitude:g} · "
            f"beta {beta:g} · {encoder} · mean error {field.error.mean():.4f} image px"
            + ("" if finite.all() else f" over {int(finite.sum())} finite of {len(field)}")
        )
        plot_field(field, path, title=title, size_px=size_px)
        if csv is not None:
            field.to_csv(csv, index=False)
    typer.echo(f"wrote {path}" + (f" and {csv}" if csv is not None else ""), err=True)


@app.command()
def bench(
    device: Device = "auto",
    size: Annotated[str, typer.Option("--size", metavar="HxW", help="Heatmap size.")] = "64x48",
    batch: Annotated[int, typer.Option(min=1, max=10**7, help="Maps decoded per call.")] = 4096,
    repeat: Annotated[int, typer.Option(min=1, max=1000, help="Timed calls per decoder (after one warm-up); the median is reported.")] = 7,
    decoders: Decoders = None,
    dtype: Dtype = "float32",
    baselines: Annotated[bool, typer.Option("--baselines/--no-baselines", help="Also time numpy argmax, the per-keypoint loops, the seed note's code, and kornia/dsntnn when installed.")] = True,
    as_json: AsJson = False,
    csv: Annotated[Path | None, typer.Option("--csv", metavar="PATH", help="Also write the timings to this CSV.")] = None,
    force: Force = False,
) -> None:
    """Time every decoder on the same batch of maps against reading the batch once (the
    floor for any decoder) and against the field's usual implementations."""
    with _reported_errors():
        config = BenchConfig(device=device, size=_image_size(size), batch=batch, repeat=repeat,
                             decoders=_decoder_names(decoders), dtype=dtype, baselines=baselines)
        if csv is not None:
            check_output_path(csv, force=force)
        with _progress() as bar:
            task = bar.add_task("bench", total=None)
            result = run_bench(config, progress=lambda name: bar.update(task, description=f"bench: {name}"))
        if csv is not None:
            pd.DataFrame(result["rows"]).to_csv(csv, index=False)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console = _stdout()
    title = (f"{config.batch} maps of {config.size[0]}x{config.size[1]} {config.dtype} · device "
             f"{result['device']} · torch {result['torch']} · {result['threads']} threads · median of {config.repeat}")
    table = Table(title=title)
    for header in ("", "maps/s", "ns/map", "median ms", "min ms", "max ms", "of read rate"):
        table.add_column(header, justify="left" if not header else "right")
    for row in result["rows"]:
        fraction = "" if row["read_fraction"] is None else f"{row['read_fraction']:.0%}"
        table.add_row(row["name"], f"{row['maps_per_s']:,.0f}", f"{row['ns_per_map']:,.0f}",
                      f"{row['median_s'] * 1e3:.2f}", f"{row['min_s'] * 1e3:.2f}", f"{row['max_s'] * 1e3:.2f}", fraction)
    console.print(table)
    targets = Table(title="targets (speed ratios in this run; compare: cost ratio, lower is better)")
    for header in ("ours", "against", "ratio", "target", "met"):
        targets.add_column(header)
    for target in result["targets"]:
        sign = "≤" if target.get("lower_is_better") else "≥"
        ratio = f"{target['ratio']:.2f}"
        if ratio == f"{target['target']:.2f}":
            ratio = f"{target['ratio']:.3f}"  # so that a ratio just short of its target does not read as on it
        targets.add_row(target["ours"], target["against"], ratio, f"{sign} {target['target']:g}",
                        "yes" if target["met"] else "no")
    console.print(targets)
    if result["dark_max_difference"] is not None:
        console.print(f"dark against the per-keypoint DARK: largest difference {result['dark_max_difference']:.2e} heatmap px")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _warn(message: str) -> None:
    typer.echo(f"integral-cli: warning: {message}", err=True)


@app.command()
def seed(as_json: AsJson = False) -> None:
    """Reproduce the seed note's example: a 64x32 map, joints (10,10), (3,8), (16,18),
    peak 10, FWHM 4 px, decoded with argmax and both integral variants at beta 1."""
    with _reported_errors():
        rows = run_seed()
    if as_json:
        typer.echo(json.dumps(rows.to_dict(orient="records"), indent=2))
        return
    height, width = SEED_SIZE
    table = Table(title=f"seed note example · {height}x{width} (HxW) heatmap · heatmap pixels (x, y)")
    table.add_column("joint", justify="right")
    table.add_column("ground truth", justify="right")
    for name in SEED_DECODERS:
        table.add_column(name, justify="right")
    for joint, group in rows.groupby("joint", sort=True):
        first = group.iloc[0]
        cells = [f"({x:.4f}, {y:.4f})" for x, y in zip(group["x"], group["y"])]
        table.add_row(str(joint), f"({first.gt_x:g}, {first.gt_y:g})", *cells)
    _stdout().print(table)


@app.command("decoders")
def list_decoders(as_json: AsJson = False) -> None:
    """List the decoders with what they do, whether they pass gradients, and their source."""
    if as_json:
        typer.echo(json.dumps([
            {"name": d.name, "differentiable": d.differentiable, "params": list(d.params),
             "description": d.description, "reference": d.reference}
            for d in DECODERS.values()
        ], indent=2))
        return
    table = Table(title="decoders")
    for header in ("name", "differentiable", "params", "description", "reference"):
        table.add_column(header)
    for d in DECODERS.values():
        table.add_row(d.name, "yes" if d.differentiable else "no", ", ".join(d.params) or "-",
                      d.description, d.reference)
    _stdout().print(table)


# ------------------------------------------------------- training: grad, fit, evaluate
def _toy_maps(
    stride: int, sigma: float, sigma_unit: str, amplitude: float, beta: float, dark_kernel: str, window_radius: int,
    image_size: str, samples: int, decoders: str | None, device: str, seed: int, max_memory: float, **more: Any,
) -> ExperimentConfig:
    """The maps grad and fit work on: interior points at the default margin."""
    return ExperimentConfig(
        stride=stride, sigma=sigma, amplitude=amplitude, beta=beta, **more,
        **_shared_settings(sigma_unit, dark_kernel, window_radius, image_size, samples, None, decoders, device,
                           seed, max_memory),
    )


def _check_table(rows: pd.DataFrame, title: str) -> Table:
    caption = "gradients of the image-pixel coordinate; fd = central finite difference"
    if ((rows["gradient"] != "yes") & (rows["fd_derivative"] > 0)).any():
        caption += "; a non-zero fd without a gradient is a jump (e.g. the quarter offset flipping on a tie)"
    table = Table(title=title, caption=caption)
    for header in ("decoder", "declared", "gradient", "|d(x,y)/dh|", "pixels reached", "mean |fd|",
                   "largest rel. difference", "agrees"):
        table.add_column(header, justify="left" if header in ("decoder", "declared", "gradient", "agrees") else "right")
    for row in rows.to_dict(orient="records"):
        agrees = "-" if row["agrees"] is None else ("yes" if row["agrees"] else "NO")
        difference = "-" if math.isnan(row["max_relative_difference"]) else f"{row['max_relative_difference']:.1e}"
        table.add_row(row["decoder"], "differentiable" if row["declared_differentiable"] else "not differentiable",
                      row["gradient"], _number(row["grad_norm"]), f"{row['support_px']:.0f}",
                      _number(row["fd_derivative"]), difference, agrees)
    return table


@app.command()
def grad(
    stride: Stride = 4,
    sigma: Sigma = 2.0,
    sigma_unit: SigmaUnit = "heatmap",
    amplitude: Amplitude = 10.0,
    beta: Beta = 1.0,
    dark_kernel: DarkKernel = "11",
    window_radius: WindowRadius = 2,
    image_size: ImageSize = "256x192",
    samples: Annotated[int, typer.Option(min=1, max=100_000, help="Maps to check, one per random sub-pixel point.")] = 16,
    decoders: Decoders = None,
    device: Device = "auto",
    seed: Seed = 0,
    encoder: Encoder = "gaussian",
    noise: Noise = 0.0,
    epsilon: Annotated[float, typer.Option(callback=_positive, help="Step of the finite differences: each pixel moves by up to eps, and by at most half its value.")] = DEFAULT_EPSILON,
    max_memory: MaxMemory = DEFAULT_MAX_MEMORY_MIB,
    as_json: AsJson = False,
) -> None:
    """Show which decoders pass a gradient from the decoded point back to the heatmap,
    how large it is, and whether autograd agrees with finite differences (float64)."""
    with _reported_errors():
        config = GradConfig(
            _toy_maps(stride, sigma, sigma_unit, amplitude, beta, dark_kernel, window_radius, image_size, samples,
                      decoders, device, seed, max_memory, encoder=encoder, noise=noise),
            epsilon=epsilon,
        )
        rows = gradient_report(config)
    if as_json:
        typer.echo(json.dumps(rows_as_records(rows, GRAD_COLUMNS), indent=2))
        return
    experiment = config.experiment
    title = (f"stride {stride} · sigma {sigma:g} {sigma_unit} px · amplitude {amplitude:g} · {encoder} maps"
             f"{f' + noise {noise:g}' if noise else ''} · {experiment.total_samples} maps of "
             f"{experiment.heatmap_size[0]}x{experiment.heatmap_size[1]} · float64 · eps {epsilon:g} · seed {seed}")
    _stdout().print(_check_table(rows, title))


@app.command()
def fit(
    stride: Stride = 4,
    sigma: Sigma = 2.0,
    sigma_unit: SigmaUnit = "heatmap",
    amplitude: Amplitude = 10.0,
    beta: Beta = 1.0,
    dark_kernel: DarkKernel = "11",
    window_radius: WindowRadius = 2,
    image_size: ImageSize = "256x192",
    samples: Annotated[int, typer.Option(min=1, max=10_000, help="Targets, each with its own free heatmap.")] = 16,
    steps: Annotated[int, typer.Option(min=1, max=100_000, help="Adam steps per decoder (cosine schedule to 0).")] = DEFAULT_STEPS,
    learning_rates: Annotated[str, _list_option("Comma-separated Adam learning rates, trained side by side; each decoder is reported at its best.")] = ",".join(f"{r:g}" for r in DEFAULT_LEARNING_RATES),
    threshold: Annotated[float, typer.Option(callback=_positive, help="Converged when every target is within this many image pixels.")] = DEFAULT_THRESHOLD,
    start_distance: Annotated[float, typer.Option(callback=_at_least(0), help="How far each starting blob is from its target, heatmap pixels.")] = DEFAULT_START_DISTANCE,
    decoders: Decoders = None,
    device: Device = "cpu",
    seed: Seed = 0,
    encoder: Encoder = "gaussian",
    dtype: Annotated[str, typer.Option(callback=_one_of(("float32", "float64")), metavar="[float32|float64]", help="Precision of the trained maps.")] = "float32",
    max_memory: MaxMemory = DEFAULT_MAX_MEMORY_MIB,
    as_json: AsJson = False,
) -> None:
    """Train a free heatmap per target through each decoder (L1 loss on the decoded
    point, Adam) and report how close it gets and how many steps it takes.

    Each heatmap starts as the encoder's blob --start-distance away from a random
    sub-pixel target. Deterministic: the same options give the same numbers.
    """
    with _reported_errors():
        config = FitConfig(
            _toy_maps(stride, sigma, sigma_unit, amplitude, beta, dark_kernel, window_radius, image_size, samples,
                      decoders, device, seed, max_memory, encoder=encoder, dtype=dtype),
            steps=steps, learning_rates=_positive_floats(learning_rates, "--learning-rates"), threshold=threshold,
            start_distance=start_distance,
        )
        names = config.experiment.decoders
        with _progress() as bar:
            task = bar.add_task("fit", total=len(names) * steps)
            done: dict[str, int] = {}

            def advance(name: str, step: int) -> None:
                done[name] = step
                bar.update(task, completed=sum(done.values()), description=f"fit: {name}")

            best, runs = fit_report(config, progress=advance)
    if as_json:
        typer.echo(json.dumps({"best": rows_as_records(best, FIT_COLUMNS), "runs": rows_as_records(runs, FIT_COLUMNS)},
                              indent=2))
        return
    title = (f"stride {stride} · sigma {sigma:g} {sigma_unit} px · amplitude {amplitude:g} · {encoder} blobs starting "
             f"{start_distance:g} hm px off\n{config.experiment.total_samples} targets · {steps} Adam steps at "
             f"{len(config.learning_rates)} learning rates · {dtype} · seed {seed}")
    table = Table(title=title, caption=f"errors in image pixels; steps until every target is within {threshold:g} px")
    for header in ("decoder", "gradient", "best lr", "start error", "final error", "worst final",
                   f"steps to {threshold:g} px", "trainable"):
        table.add_column(header, justify="left" if header in ("decoder", "gradient", "trainable") else "right")
    for row in best.to_dict(orient="records"):
        reached = row["steps_to_threshold"]
        table.add_row(row["decoder"], row["gradient"],
                      "-" if math.isnan(row["learning_rate"]) else f"{row['learning_rate']:g}",
                      _number(row["start_error"]), _number(row["final_error"]), _number(row["final_max_error"]),
                      "never" if pd.isna(reached) else str(reached),
                      "yes" if row["trainable"] else ("no: no gradient" if row["gradient"] != "yes" else "no"))
    _stdout().print(table)


@app.command()
def evaluate(
    heatmaps: Annotated[Path, typer.Option("--heatmaps", metavar="FILE", help="Your model's heatmaps, (N, K, H, W): .npy, .npz (the only array, or one named 'heatmaps') or .pt/.pth (a tensor, or a dict holding one).")],
    targets: Annotated[Path, typer.Option("--targets", metavar="FILE", help="Ground truth in image pixels: .npy (N, K, 2), or (N, K, 3) with visibility; or .csv with columns sample, keypoint, x, y[, visible]. Visibility 0 leaves a keypoint out.")],
    stride: Stride = 4,
    convention: Annotated[str, typer.Option(callback=_one_of(CONVENTIONS), metavar="[{}]".format("|".join(CONVENTIONS)), help="Heatmap-to-image mapping (see README, Conventions).")] = "center",
    image_size: Annotated[str | None, typer.Option("--image-size", metavar="HxW", show_default="heatmap size x stride", help="Input image size; used by --convention udp.")] = None,
    decoders: Decoders = None,
    beta: Beta = 1.0,
    dark_kernel: Annotated[int, typer.Option(min=1, help="Blur kernel size of dark and dark-udp (odd).")] = 11,
    window_radius: WindowRadius = 2,
    pck: Annotated[str, _list_option("Comma-separated PCK thresholds, image pixels.")] = "1,2,4",
    device: Device = "auto",
    max_memory: MaxMemory = DEFAULT_MAX_MEMORY_MIB,
    csv: Annotated[Path | None, typer.Option("--csv", metavar="PATH", help="Also write the rows to this CSV.")] = None,
    force: Force = False,
    as_json: AsJson = False,
) -> None:
    """Decode heatmaps saved from your own model with every decoder and print the same
    error table as compare, plus PCK.

    Maps are read in chunks that fit --max-memory; .npy, uncompressed .npz and .pt
    files are memory-mapped, so they may be larger than memory.
    """
    with _reported_errors():
        config = EvaluateConfig(
            heatmaps=heatmaps, targets=targets, stride=stride, convention=convention,
            image_size=None if image_size is None else _image_size(image_size), decoders=_decoder_names(decoders),
            beta=beta, dark_kernel=dark_kernel, window_radius=window_radius, pck=_positive_floats(pck, "--pck"),
            device=device, max_memory_mib=max_memory,
        )
        if csv is not None:
            check_output_path(csv, force=force)
        with _progress() as bar:
            task = bar.add_task("evaluate", total=None)
            rows, source = evaluate_files(config, progress=lambda n, total: bar.update(task, completed=n, total=total))
        rows = rows.sort_values("mean_error", kind="stable", ignore_index=True)
        columns = evaluate_columns(config.pck)
        if csv is not None:
            write_csv(csv, rows, columns)
    if as_json:
        typer.echo(json.dumps(rows_as_records(rows, columns), indent=2))
        return
    first = rows.iloc[0]
    samples, keypoints, height, width = source.shape
    title = (
        f"{heatmaps}: {samples}x{keypoints} {source.dtype} maps of {height}x{width}"
        f"{' (memory-mapped)' if source.mapped else ''} · targets {targets}: {first['visible']} keypoints counted\n"
        f"stride {stride} → image {first['image_h']}x{first['image_w']} · convention {convention} · beta {beta:g} · "
        f"dark kernel {dark_kernel} · window radius {window_radius} · device {first['device']}"
    )
    caption = "errors in image pixels; CI = 95% interval of the mean; PCK@t = share within t px"
    extra = {pck_column(t): f"PCK@{t:g}" for t in config.pck}
    _stdout().print(_error_table(title, caption, rows, extra))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"integral-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Measure the quantization error of keypoint heatmap decoders on synthetic maps."""


def main() -> None:
    """Console-script entry point."""
    app(prog_name="integral-cli")
