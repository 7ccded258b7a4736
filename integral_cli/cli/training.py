"""``grad`` and ``fit``: can a heatmap be trained through each decoder?"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import typer

from integral_cli.cli.app import app, progress_bar
from integral_cli.cli.params import MAP_SETTINGS, AsJson, Number, Numbers, option, setting_options
from integral_cli.cli.render import heading, new_table, number, show
from integral_cli.settings import ExperimentConfig

#: What ``grad`` and ``fit`` take besides the maps (interior points at the default margin).
TOY_SETTINGS = (*MAP_SETTINGS, "dims", "depth", "samples", "decoders", "device", "seed")


@app.command()
@setting_options(
    (*TOY_SETTINGS, "noise", "max_memory_mib"),
    overrides={"samples": {"default": 16, "high": 100_000, "help": "Maps to check, one per random sub-pixel point."}},
)
def grad(
    settings: dict[str, Any],
    epsilon: Annotated[
        float,
        option(
            parser=Number(0, 1, low_open=True),
            help="Step of the finite differences: each pixel moves by up to eps, and by at most half its value.",
        ),
    ] = 1e-6,
    as_json: AsJson = False,
) -> None:
    """Show which decoders pass a gradient from the decoded point back to the heatmap,
    how large it is, and whether autograd agrees with finite differences (float64)."""
    from integral_cli.gradients import GRAD_COLUMNS, GradConfig, gradient_report
    from integral_cli.report import rows_as_records

    config = GradConfig(ExperimentConfig(**settings), epsilon=epsilon)
    rows = gradient_report(config)
    if as_json:
        typer.echo(json.dumps(rows_as_records(rows, GRAD_COLUMNS), indent=2))
        return
    table = new_table(
        ["decoder", "gradient", "|dx/dh|", "pixels", "|fd|", "rel. diff", "agrees"],
        left=["decoder", "gradient", "agrees"],
    )
    surprises = False
    for row in rows.to_dict(orient="records"):
        agrees = "-" if row["agrees"] is None else ("yes" if row["agrees"] else "NO")
        difference = "-" if math.isnan(row["max_relative_difference"]) else f"{row['max_relative_difference']:.1e}"
        surprise = (row["gradient"] == "yes") != row["declared_differentiable"]
        surprises |= surprise
        table.add_row(
            row["decoder"],
            row["gradient"] + (" !" if surprise else ""),
            number(row["grad_norm"]),
            f"{row['support_px']:.0f}",
            number(row["fd_derivative"]),
            difference,
            agrees,
        )
    experiment = config.experiment
    what = "volumes" if experiment.dims == 3 else "maps"
    title = _maps_title(experiment) + [
        f"{experiment.total_samples} {what} of {'x'.join(map(str, experiment.sample_shape))}",
        "float64",
        f"eps {epsilon:g}",
        f"seed {experiment.seed}",
    ]
    caption = [
        "|dx/dh|: mean norm of the Jacobian of the image-pixel point"
        + (" (z in voxels)" if experiment.dims == 3 else ""),
        "pixels: how many it reaches",
        "|fd|: mean |central finite difference|",
        "rel. diff: largest autograd-vs-fd difference, relative",
    ]
    if surprises:
        caption.append("! = not what the decoder registry declares")
    if ((rows["gradient"] != "yes") & (rows["fd_derivative"] > 0)).any():
        caption.append("a non-zero |fd| without a gradient is a jump (e.g. the quarter offset flipping on a tie)")
    show(table, heading(title), heading(caption))


def _maps_title(config: ExperimentConfig) -> list[str]:
    what = "volumes" if config.dims == 3 else "maps"
    maps = f"{config.encoder} {what}" + (f" + noise {config.noise:g}" if config.noise else "")
    unit = "voxels" if config.dims == 3 and config.sigma_unit == "heatmap" else f"{config.sigma_unit} px"
    return [
        f"stride {config.stride}",
        f"sigma {config.sigma:g} {unit}",
        f"amplitude {config.amplitude:g}",
        maps,
    ]


@app.command()
@setting_options(
    (*TOY_SETTINGS, "dtype", "max_memory_mib"),
    overrides={
        "samples": {"default": 16, "high": 10_000, "help": "Targets, each with its own free heatmap."},
        "dtype": {"choices": ("float32", "float64"), "help": "Precision of the trained maps."},
    },
)
def fit(
    settings: dict[str, Any],
    steps: Annotated[
        int, option(parser=Number(1, 100_000, integer=True), help="Adam steps per decoder (cosine schedule to 0).")
    ] = 200,
    learning_rates: Annotated[
        Any,
        option(
            parser=Numbers(Number(0, 10, low_open=True)),
            help="Comma-separated Adam learning rates, trained side by side; each decoder is reported at its best.",
        ),
    ] = "0.3,0.1,0.03,0.01,0.003,0.001",
    threshold: Annotated[
        float,
        option(parser=Number(0, low_open=True), help="Converged when every target is within this many image pixels."),
    ] = 0.1,
    start_distance: Annotated[
        float, option(parser=Number(0), help="How far each starting blob is from its target, heatmap pixels.")
    ] = 1.0,
    as_json: AsJson = False,
) -> None:
    """Train a free heatmap per target through each decoder (L1 loss on the decoded
    point, Adam) and report how close it gets and how many steps it takes.

    Each heatmap starts as the encoder's blob --start-distance away from a random
    sub-pixel target. Deterministic: the same options give the same numbers.
    """
    import pandas as pd

    from integral_cli.fit import FIT_COLUMNS, FitConfig, fit_report
    from integral_cli.report import rows_as_records

    config = FitConfig(
        ExperimentConfig(**settings),
        steps=steps,
        learning_rates=tuple(learning_rates),
        threshold=threshold,
        start_distance=start_distance,
    )
    names = config.experiment.resolved_decoders
    with progress_bar() as bar:
        task = bar.add_task("fit", total=len(names) * steps)
        done: dict[str, int] = {}

        def advance(name: str, step: int) -> None:
            done[name] = step
            bar.update(task, completed=sum(done.values()), description=f"fit: {name}")

        best, runs = fit_report(config, progress=advance)
    if as_json:
        typer.echo(
            json.dumps(
                {"best": rows_as_records(best, FIT_COLUMNS), "runs": rows_as_records(runs, FIT_COLUMNS)}, indent=2
            )
        )
        return
    table = new_table(
        ["decoder", "gradient", "lr", "start", "final", "worst", "steps", "trainable"],
        left=["decoder", "gradient", "trainable"],
    )
    for row in best.to_dict(orient="records"):
        reached = row["steps_to_threshold"]
        table.add_row(
            row["decoder"],
            row["gradient"],
            "-" if math.isnan(row["learning_rate"]) else f"{row['learning_rate']:g}",
            number(row["start_error"]),
            number(row["final_error"]),
            number(row["final_max_error"]),
            "never" if pd.isna(reached) else str(reached),
            "yes" if row["trainable"] else "no",
        )
    experiment = config.experiment
    title = _maps_title(experiment)[:3] + [
        f"{experiment.encoder} blobs starting {start_distance:g} {'voxels' if experiment.dims == 3 else 'hm px'} off",
        f"{experiment.total_samples} targets",
        f"{steps} Adam steps at {len(config.learning_rates)} learning rates",
        experiment.dtype,
        f"seed {experiment.seed}",
    ]
    caption = [
        "lr: the best learning rate",
        "start, final: mean error over the targets, image px"
        + (" (a voxel along z: stride px)" if experiment.dims == 3 else ""),
        "worst: the worst target at the end",
        f"steps: until every target is within {threshold:g} px",
    ]
    show(table, heading(title), heading(caption))
