"""``compare``, ``sweep`` and ``merge``: experiments on synthetic maps."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from integral_cli.cli.app import INTERRUPTED, app, progress_bar, say, warn
from integral_cli.cli.params import (
    AsJson,
    AucMax,
    CsvPath,
    Force,
    Normalize,
    Pck,
    PerKeypoint,
    Wide,
    list_option_name,
    setting_options,
)
from integral_cli.cli.render import (
    COMPACT,
    COMPACT_3D,
    COMPACT_NOISY,
    ERROR_COLUMNS,
    by_mean_error,
    choose_columns,
    error_caption,
    error_table,
    heading,
    number,
    score_caption,
    score_headers,
    show,
)
from integral_cli.coco import COCO_SIGMAS
from integral_cli.errors import ConfigError, InputFileError
from integral_cli.setting import spell_value
from integral_cli.settings import CSV_COLUMNS, GRID_AXES, SETTINGS, ExperimentConfig

AllowMixedDevices = Annotated[
    bool,
    typer.Option(
        "--allow-mixed-devices",
        help="Combine rows computed on different devices (GPU models, or the CPU): the same "
        "points, but numbers that may differ in their last digits. Refused without it.",
    ),
]
Columns = Annotated[
    str | None,
    typer.Option(
        "--columns", metavar="LIST", help=f"Comma-separated columns of the table: {', '.join(ERROR_COLUMNS)}."
    ),
]


@app.command()
@setting_options(SETTINGS)
def compare(
    settings: dict[str, Any],
    per_keypoint: PerKeypoint = False,
    normalize: Normalize = "none",
    pck: Pck = None,
    auc_max: AucMax = "0.5",
    csv: CsvPath = None,
    force: Force = False,
    as_json: AsJson = False,
    wide: Wide = False,
    columns: Columns = None,
) -> None:
    """Decode random sub-pixel points with every decoder and print the error table.

    Errors are Euclidean distances in image pixels between the decoded and the true
    point; rows are sorted by mean error. The table shows the mean, median, 95th
    percentile, maximum and the 95% interval of the mean; --wide shows every column, and
    the CSV and JSON always carry them all. With --dims 3 the maps are volumes: the
    (x, y) error stays in image pixels, and the table adds the z and 3D errors in voxels.
    --pck, --normalize and --per-keypoint score the points as evaluate does (keypoints
    and pairs of them need --oks-area, whose persons have COCO's 17).
    """
    from integral_cli.devices import resolve_device
    from integral_cli.experiment import run_experiment
    from integral_cli.report import check_output_path, rows_as_records, write_csv
    from integral_cli.scores import DEFAULT_PCK, Scoring

    config = ExperimentConfig(**settings)
    scoring = None
    if per_keypoint or normalize != "none" or pck is not None:
        scoring = Scoring(tuple(pck or DEFAULT_PCK), normalize, float(auc_max), per_keypoint)
    requested = columns.split(",") if columns else None
    oks = config.oks_area is not None
    scores = score_headers(scoring.pck if scoring else (), normalized=normalize != "none", oks=oks)
    # a bad --columns is refused before the work
    choose_columns(wide, requested, extra=list(scores), volumes=config.dims == 3)
    if csv is not None:
        check_output_path(csv, force=force)
    device = resolve_device(config.device)
    with progress_bar() as bar:
        task = bar.add_task("compare", total=config.total_samples)
        rows = run_experiment(
            config, progress=lambda done: bar.update(task, completed=done), on_warning=warn, scoring=scoring
        )
    columns_of = [*CSV_COLUMNS, *(scoring.columns if scoring else [])]
    if scoring is None:
        rows = rows.sort_values("mean_error", kind="stable", ignore_index=True)
    else:
        rows = by_mean_error(rows)
    if csv is not None:
        write_csv(csv, rows, columns_of)
    if as_json:
        typer.echo(json.dumps(rows_as_records(rows, columns_of), indent=2))
        return
    bound = rows["crlb_rmse"].iloc[0]
    noisy = bool(bound == bound)  # the Cramér–Rao bound is known
    volumes = config.dims == 3
    compact = COMPACT_3D if volumes else COMPACT_NOISY if noisy else COMPACT
    shown = choose_columns(wide, requested, extra=list(scores), compact=compact, volumes=volumes)
    table, notes = error_table(rows, shown, scores, fit=not (wide or columns))
    caption = [error_caption(volumes), *notes]
    if "ci95" in shown:
        grid = config.sampling == "grid"
        caption.insert(1, "no CI: a lattice is not a random sample" if grid else "CI = 95% interval of the mean")
    if noisy:
        caption.append(f"Cramér–Rao bound on the RMSE: {number(bound)} px")
        if "efficiency" in shown:
            caption.append("efficiency = bound / RMSE")
    if scoring:
        caption += score_caption(scoring.normalize, scoring.auc_max)
    if oks:
        caption.append("AP ceiling = COCO AP with perfect detection and ranking")
    counted = rows.dropna(subset=["fallbacks"])
    for row in counted[counted["fallbacks"] > 0].itertuples():
        caption.append(f"{row.decoder} kept its start estimate on {int(row.fallbacks)} maps")
    show(
        table,
        heading(experiment_title(config, str(device), rows["margin"].iloc[0])),
        heading(caption),
        wide=wide or columns is not None,
    )


def experiment_title(config: ExperimentConfig, device: str, margin: float) -> list[str]:
    """The parts of a ``compare`` title: every setting that shapes the numbers."""
    simcc = config.representation == "simcc"
    volumes = config.dims == 3
    height, width = config.output_size
    unit = "bins" if simcc else "voxels" if volumes else "hm px"
    maps = f"{config.encoder} {'vectors' if simcc else 'volumes' if volumes else 'maps'}"
    if config.noise:
        maps += f" + noise {config.noise:g}"
    if config.distractor:
        maps += f" + distractor {config.distractor:g} at {config.distractor_distance:g} px"
    where = {
        "interior": f"interior (margin {margin:g} {unit})",
        "border": f"border (band {margin:g} {unit})",
        "anywhere": "anywhere",
    }[config.position]
    sigma_unit = "voxels" if volumes and config.sigma_unit == "heatmap" else f"{config.sigma_unit} px"
    size = f"volume {config.depth}x{height}x{width} (DxHxW)" if volumes else f"heatmap {height}x{width}"
    sampling = "random" if config.sampling == "random" else "grid " + "x".join([str(config.grid_size)] * config.dims)
    points = [f"{config.total_samples} points {where}, {sampling}"]
    if config.oks_area is not None:
        persons = config.total_samples // len(COCO_SIGMAS)
        points.append(f"{persons} persons of {len(COCO_SIGMAS)} keypoints, area {config.oks_area:g} px²")
    decode_convention = config.resolved_decode_convention
    conventions = config.convention + ("" if decode_convention == config.convention else " → " + decode_convention)
    image = f"image {config.image_size[0]}x{config.image_size[1]}"
    if simcc:
        shape = [
            f"simcc, split ratio {config.split_ratio:g}",
            f"sigma {config.sigma:g} " + ("bins" if config.sigma_unit == "heatmap" else "image px"),
        ]
        outputs = [f"{image} → vectors of {width} (x) and {height} (y) bins"]
    else:
        shape = [f"stride {config.stride}", f"sigma {config.sigma:g} {sigma_unit}"]
        outputs = [
            f"window radius {config.window_radius}",
            *([] if volumes else [f"fit radius {config.decoder_params['fit_radius']}"]),
            f"{image} → {size}",
        ]
    return [
        *shape,
        f"amplitude {config.amplitude:g}",
        maps,
        f"beta {config.beta:g}",
        f"dark kernel {config.decoder_params['dark_kernel']}",
        *outputs,
        *points,
        f"convention {conventions}",
        *([] if config.flip_test == "none" else [f"flip test {config.flip_test}"]),
        config.dtype,
        f"seed {config.seed}",
        f"device {device}",
    ]


# -------------------------------------------------------------------------- sweep
SWEEP_DEFAULTS: dict[str, dict[str, Any]] = {"stride": {"default": (1, 2, 4, 8)}, "sigma": {"default": (1.0, 2.0, 3.0)}}
#: Options of sweep a config file may set besides the settings.
_FILE_OPTIONS = ("out", "force", "resume", "shard", "allow_mixed_devices")


@app.command()
@setting_options(SETTINGS, lists=True, overrides=SWEEP_DEFAULTS)
def sweep(
    context: typer.Context,
    settings: dict[str, Any],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE.toml",
            help="Read the settings from a "
            "TOML file: keys are these options' names (lists for the axes); options given on the "
            "command line override it.",
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", metavar="PATH", help="CSV to write; a JSON sidecar with the same stem goes beside it."
        ),
    ] = Path("results/sweep.csv"),
    force: Force = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Keep the configurations --out already holds (its "
            "sidecar must show the same settings and device) and run the rest.",
        ),
    ] = False,
    shard: Annotated[
        str,
        typer.Option(
            metavar="i/n|auto",
            help="Run only the i-th of n disjoint slices of the "
            "grid (for job arrays; auto: from a Slurm array's variables); combine the parts with "
            "merge.",
        ),
    ] = "1/1",
    allow_mixed_devices: AllowMixedDevices = False,
) -> None:
    """Run the grid of every listed axis (strides x sigmas x ... x dtypes) and write one
    CSV row per configuration and decoder.

    Rows are written as each configuration finishes, so an interrupted sweep keeps what
    it finished. Every configuration uses the same seed, so all of them see the same
    ground-truth points wherever their margins agree.
    """
    from integral_cli.report import sidecar_path
    from integral_cli.sweep import Shard, SweepConfig, SweepProgress, run_sweep

    own: dict[str, Any] = {
        "out": out,
        "force": force,
        "resume": resume,
        "shard": shard,
        "allow_mixed_devices": allow_mixed_devices,
    }
    if config is not None:
        apply_config_file(context, config, settings, own)
    axes = tuple((name, tuple(settings.pop(name))) for name in GRID_AXES)
    grid = SweepConfig(base=ExperimentConfig(**{name: values[0] for name, values in axes}, **settings), axes=axes)
    part = Shard.parse(own["shard"])
    out = Path(own["out"])
    state = SweepProgress(total=len(part.select(grid.configurations())))

    def finished(now: SweepProgress) -> None:
        state.skipped, state.written, state.rows = now.skipped, now.written, now.rows

    # a scheduler's SIGTERM (preemption) ends the sweep like Ctrl-C: sidecar marked, exit 130
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with progress_bar() as bar:
            task = bar.add_task("sweep", total=None)
            state = run_sweep(
                grid,
                out,
                force=own["force"],
                resume=own["resume"],
                allow_mixed_devices=own["allow_mixed_devices"],
                shard=part,
                command_line=_command_line(grid, own, config),
                on_samples=lambda n: bar.update(task, completed=n),
                on_configuration=finished,
                on_warning=warn,
                on_start=lambda samples: bar.update(task, total=samples),
            )
    except KeyboardInterrupt:
        say(
            f"integral-cli: interrupted; {state.skipped + state.written} of {state.total} configurations saved in "
            f"{out}; run the same command with --resume to finish"
        )
        raise typer.Exit(INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if state.total == 0:
        warn(f"shard {part} of this grid is empty: it has no configuration to run")
    skipped = f", {state.skipped} already there" if state.skipped else ""
    say(
        f"wrote {state.rows} rows ({state.written} configurations{skipped}) to {out} "
        f"and settings to {sidecar_path(out)}"
    )


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def apply_config_file(context: typer.Context, path: Path, settings: dict[str, Any], own: dict[str, Any]) -> None:
    """Fill ``settings`` and ``own`` from a TOML file, except what the command line gave.

    Keys are sweep's option names, with dashes or underscores (``strides``,
    ``image-size``, ``max-memory``; an axis also under its singular name); an axis takes
    a list or one value.

    Raises:
        InputFileError: the file is missing or not TOML.
        ConfigError: an unknown key, or a bad value (the message names the key).
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(f"cannot read {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise InputFileError(f"{path} is not valid TOML: {error}") from None
    by_key: dict[str, str] = {}
    for item in SETTINGS.values():
        for spelling in {item.name, item.flag.lstrip("-").replace("-", "_"), list_option_name(item)}:
            by_key[spelling] = item.name
    known = sorted(
        {*(i.sweep or i.flag.lstrip("-") for i in SETTINGS.values()), *(o.replace("_", "-") for o in _FILE_OPTIONS)}
    )
    for key, value in table.items():
        normal = key.replace("-", "_")
        name = by_key.get(normal)
        if name is None and normal not in _FILE_OPTIONS:
            raise ConfigError(f"{path}: unknown key {key!r}; known: {', '.join(known)}")
        python_name = list_option_name(SETTINGS[name]) if name else normal
        source = context.get_parameter_source(python_name)
        if source is not None and source.name != "DEFAULT":
            continue  # given on the command line: that wins
        try:
            if name is None:
                own[normal] = _file_option(normal, value)
            elif name in GRID_AXES:
                settings[name] = SETTINGS[name].parse_list(value)
            else:
                settings[name] = SETTINGS[name].parse(value)
        except ConfigError as error:
            raise ConfigError(f"{path}: key {key!r}: {error}") from None


def _file_option(name: str, value: Any) -> Any:
    expected = bool if name in ("force", "resume", "allow_mixed_devices") else str
    if not isinstance(value, expected):
        raise ConfigError(f"expected {'true or false' if expected is bool else 'a string'}, got {value!r}")
    return value


def _command_line(grid: Any, own: dict[str, Any], config_file: Path | None) -> list[str]:
    """The sweep as one command line with every setting spelled out, whatever came from
    a config file."""
    words = ["integral-cli", "sweep"]
    axes = dict(grid.axes)
    for name, item in SETTINGS.items():
        if name in axes:
            words += [str(item.sweep_flag), ",".join(spell_value(v) for v in axes[name])]
        elif getattr(grid.base, name) is not None:
            words += [item.flag, spell_value(getattr(grid.base, name))]
    words += ["--out", str(own["out"]), "--shard", str(own["shard"])]
    words += [flag for flag in ("--force", "--resume", "--allow-mixed-devices") if own[flag[2:].replace("-", "_")]]
    return words + ([] if config_file is None else ["--config", str(config_file)])


@app.command()
def merge(
    out: Annotated[Path, typer.Argument(metavar="OUT.csv", help="The merged CSV to write.")],
    parts: Annotated[
        list[Path], typer.Argument(metavar="PART.csv...", help="The shards' CSVs, each with its .json sidecar.")
    ],
    force: Force = False,
    allow_mixed_devices: AllowMixedDevices = False,
) -> None:
    """Combine the CSVs of a sweep run in shards (sweep --shard i/n) into one.

    Checks that every part was made with the same settings on the same device, refuses
    a configuration held twice, writes the rows in grid order and reports configurations
    no part holds.
    """
    from integral_cli.sweep import merge_results

    command_line = ["integral-cli", "merge", str(out), *map(str, parts)]
    if allow_mixed_devices:
        command_line.append("--allow-mixed-devices")
    report = merge_results(out, parts, force=force, allow_mixed_devices=allow_mixed_devices, command_line=command_line)
    say(
        f"wrote {report.rows} rows from {len(parts)} parts to {out}; "
        f"{report.configurations - len(report.missing)} of {report.configurations} configurations present"
    )
    if report.missing:
        shown = "; ".join(report.missing[:3]) + ("; ..." if len(report.missing) > 3 else "")
        warn(f"{len(report.missing)} configurations missing: {shown}")


__all__ = ["compare", "experiment_title", "merge", "sweep"]
