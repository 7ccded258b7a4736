"""``decode`` and ``evaluate``: decode heatmaps (or SimCC vectors) saved from your own
model, and score them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from integral_cli.cli.app import app, progress_bar, say
from integral_cli.cli.experiments import Columns
from integral_cli.cli.params import (
    AsJson,
    AucMax,
    Choice,
    CsvPath,
    Force,
    Normalize,
    Pck,
    PerKeypoint,
    Wide,
    option,
    setting_options,
)
from integral_cli.cli.render import (
    COMPACT_3D,
    by_mean_error,
    choose_columns,
    error_caption,
    error_table,
    heading,
    score_caption,
    score_headers,
    show,
)
from integral_cli.decoders.registry import DECODERS

DECODER_NAMES = tuple(DECODERS)

#: The settings that say how saved maps are decoded (``decode`` and ``evaluate``).
DECODE_SETTINGS = (
    "stride",
    "split_ratio",
    "convention",
    "image_size",
    "beta",
    "dark_kernel",
    "window_radius",
    "fit_radius",
    "sigma",
    "device",
    "max_memory_mib",
)
DECODE_OVERRIDES: dict[str, dict[str, Any]] = {
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
        "unit": "heatmap px (bins with --simcc)",
    },
    "convention": {
        "help": "Heatmap-to-image mapping (center, corner or udp; SimCC vectors: center or corner; see the "
        "docs' conventions)."
    },
    "stride": {"help": "Image pixels per heatmap pixel (--heatmaps)."},
    "split_ratio": {"help": "SimCC bins per image pixel, k (--simcc; RTMPose: 2)."},
    "fit_radius": {"help": "Half-width of the gaussian-fit window; auto: ceil(3*sigma) with --sigma, else 4."},
}
HEATMAPS_HELP = (
    "Your model's heatmaps, (N, K, H, W), or volumes (N, K, D, H, W): .npy, .npz (the only "
    "array, or one named 'heatmaps') or .pt/.pth "
    "(a tensor, or a dict holding one)."
)
SIMCC_HELP = (
    "Instead of --heatmaps: your model's SimCC vectors, an .npz or .pt/.pth (a dict) holding simcc_x (N, K, Wx) "
    "and simcc_y (N, K, Wy), as an RTMPose head outputs them."
)
Heatmaps = Annotated[Path | None, typer.Option("--heatmaps", metavar="FILE", help=HEATMAPS_HELP)]
SimCC = Annotated[Path | None, typer.Option("--simcc", metavar="FILE", help=SIMCC_HELP)]


@app.command()
@setting_options(
    (*DECODE_SETTINGS[:4], "decoders", *DECODE_SETTINGS[4:], "oks_area"),
    overrides={
        **DECODE_OVERRIDES,
        "oks_area": {
            "help": "Score COCO's OKS and the AP ceiling: every sample is a person of this area "
            "(the files must hold COCO's 17 keypoints)."
        },
    },
)
def evaluate(
    settings: dict[str, Any],
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
    heatmaps: Heatmaps = None,
    simcc: SimCC = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            metavar="FILE",
            help="Coordinates your model predicted, in image pixels: .npy (N, K, 2) or a CSV like decode "
            "writes (sample, keypoint, x, y); for volumes (N, K, 3) or a z column, in voxels. Scored in a row "
            "of their own.",
        ),
    ] = None,
    pck: Pck = "1,2,4",
    normalize: Normalize = "none",
    auc_max: AucMax = "0.5",
    per_keypoint: PerKeypoint = False,
    names: Annotated[
        str | None,
        typer.Option(
            "--keypoint-names",
            metavar="coco|FILE",
            help="Name the keypoints: coco (COCO's 17) or a text file of K lines; default: their indices.",
        ),
    ] = None,
    csv: CsvPath = None,
    force: Force = False,
    as_json: AsJson = False,
    wide: Wide = False,
    columns: Columns = None,
) -> None:
    """Score your own model: decode the heatmaps (or SimCC vectors) it saved with every
    decoder, and score the coordinates it predicted, against the ground truth.

    Prints the error table of compare plus PCK; with --normalize, NME and AUC; with
    --oks-area, COCO's OKS and the AP ceiling. Outputs are read in chunks that fit
    --max-memory; .npy, uncompressed .npz and .pt files are memory-mapped, so they may be
    larger than memory.
    """
    from integral_cli.evaluate import EvaluateConfig, evaluate_columns, evaluate_files
    from integral_cli.report import check_output_path, rows_as_records, write_csv

    config = EvaluateConfig(
        heatmaps=heatmaps,
        simcc=simcc,
        targets=targets,
        predictions=predictions,
        pck=tuple(pck),
        normalize=normalize,
        auc_max=float(auc_max),
        per_keypoint=per_keypoint,
        keypoint_names=names,
        **settings,
    )
    normalized = config.normalize != "none"
    columns_of = evaluate_columns(config.pck, config.representation)
    extra = score_headers(config.pck, normalized=normalized, oks=config.oks_area is not None)
    requested = columns.split(",") if columns else None
    # volumes or not is known once the input is read: a 2D one shows - for z and 3D
    shown = choose_columns(wide, requested, extra=list(extra), compact=EVALUATE_COMPACT, volumes=None)
    if csv is not None:
        check_output_path(csv, force=force)
    with progress_bar() as bar:
        task = bar.add_task("evaluate", total=None)
        rows, source = evaluate_files(config, progress=lambda n, total: bar.update(task, completed=n, total=total))
    rows = by_mean_error(rows)
    volumes = bool(rows["mean_error_z"].notna().any())  # volumes, or 3D predictions
    if volumes:
        shown = choose_columns(wide, requested, extra=list(extra), compact=COMPACT_3D, volumes=True)
    if csv is not None:
        write_csv(csv, rows, columns_of)
    if as_json:
        typer.echo(json.dumps(rows_as_records(rows, columns_of), indent=2))
        return
    first = rows.iloc[0]
    title = []
    simcc_run = config.representation == "simcc"
    if source is not None:
        samples, keypoints, *sides = source.shape
        outputs = f"{'volumes' if volumes else 'maps'} of {'x'.join(map(str, sides))}"
        if simcc_run:
            outputs = f"vector pairs of {sides[0]}+{sides[1]} bins"
        title.append(
            f"{config.outputs}: {samples}x{keypoints} {source.dtype} {outputs}"
            + (" (memory-mapped)" if source.mapped else "")
        )
    if predictions is not None:
        title.append(f"predictions {predictions}")
    title.append(f"targets {targets}: {first['visible']} keypoints counted")
    if source is not None:
        params = config.decoder_params
        image = f"image {first['image_h']}x{first['image_w']}"
        title += [
            f"split ratio {config.split_ratio:g} → {image}" if simcc_run else f"stride {config.stride} → {image}",
            f"convention {config.convention}",
            f"beta {config.beta:g}",
            f"dark kernel {params['dark_kernel']}",
            *([] if simcc_run else [f"window radius {config.window_radius}"]),
            *([] if simcc_run or volumes else [f"fit radius {params['fit_radius']}"]),
            f"device {rows.loc[rows['decoder'] != 'predictions', 'device'].iloc[0]}",
        ]
    table, notes = error_table(rows, shown, extra, fit=not (wide or columns))
    caption = [error_caption(volumes), *(["CI = 95% interval of the mean"] if "ci95" in shown else [])]
    caption += [*score_caption(config.normalize, config.auc_max), *notes]
    if config.oks_area is not None:
        caption.append(f"OKS at area {config.oks_area:g} px² · AP ceiling = AP with perfect detection and ranking")
    show(table, heading(title), heading(caption), wide=wide or columns is not None)


#: What ``evaluate`` shows by default before the scores.
EVALUATE_COMPACT = ("mean_error", "median_error", "p95_error", "max_error")


@app.command("decode")
@setting_options(DECODE_SETTINGS, overrides=DECODE_OVERRIDES)
def decode_command(
    settings: dict[str, Any],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="PATH",
            help="Where to write the points: .npy, an (N, K, 2) array of x, y (N, K, 3 with z in voxels for "
            "volumes); or .csv, one row per sample and keypoint: sample, keypoint, x, y[, z], score (the map's "
            "maximum; of SimCC vectors, the smaller of the two maxima).",
        ),
    ],
    heatmaps: Heatmaps = None,
    simcc: SimCC = None,
    decoder: Annotated[
        str, option("--decoder", parser=Choice(DECODER_NAMES), help="The decoder whose points are written.")
    ] = "dark",
    force: Force = False,
) -> None:
    """Decode the heatmaps (or SimCC vectors) your model saved into keypoint coordinates,
    in image pixels.

    The outputs are read and decoded in chunks that fit --max-memory; the file is written
    whole at the end or not at all. evaluate --predictions scores the result.
    """
    from integral_cli.evaluate import DecodeConfig, decode_file
    from integral_cli.report import check_output_path

    config = DecodeConfig(heatmaps=heatmaps, simcc=simcc, decoders=(decoder,), **settings)
    check_output_path(out, force=force)
    with progress_bar() as bar:
        task = bar.add_task("decode", total=None)
        points, _ = decode_file(config, out, progress=lambda n, total: bar.update(task, completed=n, total=total))
    samples, keypoints = points.shape[:2]
    say(f"wrote {samples}x{keypoints} points decoded by {decoder} to {out}")
