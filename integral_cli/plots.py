"""Pictures: a metric of a sweep against one axis, and the error field of one decoder.

matplotlib is an optional dependency (``pip install 'integral-cli[plot]'``); it is
imported only here, with the non-interactive Agg backend.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from integral_cli.errors import ConfigError, MissingDependencyError
from integral_cli.metrics import SUMMARY_FIELDS, VOLUME_FIELDS
from integral_cli.report import write_atomically
from integral_cli.settings import GRID_AXES, OUTPUTS_AXIS, PLOT_AXES, PLOT_METRICS

#: Mean 2D distance of argmax from a uniformly random sub-pixel point, per heatmap
#: pixel of stride: ``(sqrt 2 + ln(1 + sqrt 2)) / 6``.
ARGMAX_MEAN_ERROR_HM = (math.sqrt(2) + math.log(1 + math.sqrt(2))) / 6
#: Mean 3D distance of argmax from a uniformly random sub-voxel point, in voxels: the mean
#: distance from a unit cube's centre to a uniform point in it (the tests integrate it).
ARGMAX_MEAN_ERROR_3D = 0.480296
#: Metrics ``plot`` can draw: the summary columns.
MAX_PANELS = 16
DPI = 100


def require_matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError(
            "pictures need matplotlib: pip install 'integral-cli[plot]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(size_px: tuple[int, int], rows: int, cols: int) -> tuple[Any, Any]:
    plt = require_matplotlib()
    width, height = size_px
    figure, axes = plt.subplots(rows, cols, figsize=(width / DPI, height / DPI), dpi=DPI, squeeze=False)
    return figure, axes


def _save(figure: Any, out: Path) -> None:
    if out.suffix.lower() not in (".png", ".svg"):
        raise ConfigError(f"{out}: pictures are written as .png or .svg")
    try:
        write_atomically(out, lambda temporary: figure.savefig(temporary, dpi=DPI, format=out.suffix[1:].lower()))
    finally:
        require_matplotlib().close(figure)


def outputs_per_keypoint(frame: pd.DataFrame) -> pd.Series:
    """The values each row's representation encodes a keypoint in: ``H * W`` for a
    heatmap, ``round(H_img k) + round(W_img k)`` bins for SimCC vectors."""
    simcc = frame["representation"] == "simcc"
    bins = [
        np.round(frame["image_h"].to_numpy(float) * frame["split_ratio"].to_numpy(float)),
        np.round(frame["image_w"].to_numpy(float) * frame["split_ratio"].to_numpy(float)),
    ]
    pixels = frame["heatmap_h"].to_numpy(float) * frame["heatmap_w"].to_numpy(float)
    return pd.Series(np.where(simcc, bins[0] + bins[1], pixels), index=frame.index)


def image_px_per_output(frame: pd.DataFrame) -> np.ndarray:
    """Image pixels per output pixel of each row: the stride, or ``1 / k`` per bin."""
    simcc = (frame["representation"] == "simcc").to_numpy()
    return np.where(simcc, 1.0 / frame["split_ratio"].to_numpy(float), frame["stride"].to_numpy(float))


def plot_sweep(
    frame: pd.DataFrame,
    out: Path,
    *,
    x: str = "stride",
    metric: str = "mean_error",
    size_px: tuple[int, int] = (1200, 800),
) -> int:
    """Draw ``metric`` against ``x``, one line per decoder (per decoder and
    representation when a CSV mixes heatmaps and SimCC vectors: solid and dashed), one
    panel per combination of the other grid columns that vary; argmax's closed form as
    a dotted reference where the metric is the mean error.

    Args:
        frame: rows of a results CSV (columns :data:`CSV_COLUMNS`).
        out: a ``.png`` or ``.svg`` path.
        x: a column of :data:`PLOT_AXES`; ``outputs`` is the values per keypoint
            (``H * W`` of a heatmap, ``Wx + Wy`` of SimCC vectors), drawn with the
            representation, stride and split ratio in the lines, not in panels. Rows an
            axis does not apply to (``stride`` of SimCC rows) are left out.
        metric: a column of :data:`PLOT_METRICS`.
        size_px: width and height of the picture in pixels.

    Returns:
        The number of panels drawn.

    Raises:
        ConfigError: unknown ``x`` or ``metric``, ``x`` does not vary, or too many panels.
        MissingDependencyError: matplotlib is not installed.
    """
    if x not in PLOT_AXES:
        raise ConfigError(f"cannot plot against {x!r}; choose from {', '.join(PLOT_AXES)}")
    if metric not in PLOT_METRICS:
        raise ConfigError(f"unknown metric {metric!r}; choose from {', '.join(PLOT_METRICS)}")
    if x == OUTPUTS_AXIS:
        frame = frame.assign(outputs=outputs_per_keypoint(frame))
    frame = frame[frame[x].notna()]
    if frame[x].nunique() < 2:
        raise ConfigError(f"{x} has a single value in this CSV; choose an «x» that varies")
    in_lines = {x, *(("representation", "stride", "split_ratio") if x == OUTPUTS_AXIS else ())}
    others = [c for c in (*GRID_AXES, "sigma_unit") if c not in in_lines and c in frame and frame[c].nunique() > 1]
    panels = sorted(frame[others].drop_duplicates().itertuples(index=False, name=None)) if others else [()]
    if len(panels) > MAX_PANELS:
        raise ConfigError(
            f"{len(panels)} panels ({', '.join(others)} vary); keep fewer than {MAX_PANELS + 1} "
            "combinations, e.g. plot a sweep over fewer axes"
        )
    cols = min(len(panels), 4)
    rows = math.ceil(len(panels) / cols)
    figure, axes = _figure(size_px, rows, cols)
    decoders = list(dict.fromkeys(frame["decoder"]))
    representations = list(dict.fromkeys(frame["representation"]))
    colours = {decoder: f"C{index % 10}" for index, decoder in enumerate(decoders)}
    styles = {"heatmap": "-", "simcc": "--"}
    for index, panel in enumerate(panels):
        ax = axes[index // cols][index % cols]
        key = panel if isinstance(panel, tuple) else (panel,)
        subset = frame
        for column, value in zip(others, key, strict=True):
            # an axis that does not apply to a representation is empty (NaN) in its rows
            subset = subset[subset[column].isna() if pd.isna(value) else subset[column] == value]
        for decoder in decoders:
            for representation in representations:
                line = subset[(subset["decoder"] == decoder) & (subset["representation"] == representation)]
                if line.empty:
                    continue
                label = decoder + (f" ({representation})" if len(representations) > 1 else "")
                line = line.sort_values(x)
                style = styles.get(representation, "-")
                ax.plot(line[x], line[metric], style, marker="o", markersize=3, color=colours[decoder], label=label)
        if metric in ("mean_error", "mean_error_hm") and "argmax" in decoders:
            for representation in representations:
                reference = subset[subset["representation"] == representation].drop_duplicates(x).sort_values(x)
                scale = image_px_per_output(reference) if metric == "mean_error" else np.ones(len(reference))
                unit = {"heatmap": "stride", "simcc": "/k"}.get(representation, "stride")
                ax.plot(
                    reference[x],
                    ARGMAX_MEAN_ERROR_HM * scale,
                    "k--" if representations == ["heatmap"] else "k:",
                    linewidth=1,
                    label=f"argmax closed form 0.3826·{unit}".replace("·/k", "/k"),
                )
        if metric == "rmse" and "crlb_rmse" in subset and subset["crlb_rmse"].notna().any():
            bound = subset.drop_duplicates(x).sort_values(x)
            ax.plot(bound[x], bound["crlb_rmse"], "k--", linewidth=1, label="Cramér–Rao bound")
        if metric == "mean_error_3d" and "argmax" in decoders:
            reference = subset.drop_duplicates(x).sort_values(x)
            ax.plot(
                reference[x],
                np.full(len(reference), ARGMAX_MEAN_ERROR_3D),
                "k--",
                linewidth=1,
                label="argmax closed form 0.4803 voxel",
            )
        values = subset[metric].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        positive = finite[finite > 0]
        if len(positive) and (finite >= 0).all() and positive.max() / positive.min() > 20:
            if (finite > 0).all():
                ax.set_yscale("log")
            else:  # exact zeros (a decoder exact on clean maps): linear below the smallest value
                ax.set_yscale("symlog", linthresh=positive.min(), linscale=0.5)
        if subset[x].min() > 0 and (x == OUTPUTS_AXIS or subset[x].max() / subset[x].min() >= 8):
            ax.set_xscale("log", base=2)
            ticks = sorted(subset[x].unique())
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel(AXIS_LABELS.get(x, x))
        unit = " (heatmap px or bins)" if metric.endswith("_hm") else " (voxels)" if metric in VOLUME_FIELDS else ""
        ax.set_ylabel(metric + unit)
        ax.set_title(
            ", ".join(
                f"{c} {v:g}" if isinstance(v, float) else f"{c} {v}"
                for c, v in zip(others, key, strict=True)
                if not pd.isna(v)  # an axis that does not apply to the panel's representation
            )
            or metric,
            fontsize=9,
        )
        ax.grid(True, which="both", alpha=0.3)
    for index in range(len(panels), rows * cols):
        axes[index // cols][index % cols].set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    figure.legend(
        unique.values(), unique.keys(), loc="lower center", ncol=min(len(unique), 5), fontsize=8, frameon=False
    )
    legend_rows = math.ceil(len(unique) / 5)
    units = " (image px)" if metric in _IMAGE_PX else " (voxels)" if metric in VOLUME_FIELDS else ""
    figure.suptitle(f"{metric} against {x}" + units)
    figure.tight_layout(rect=(0, 0.07 if legend_rows <= 2 else min(0.3, 0.03 * legend_rows), 1, 1))
    _save(figure, out)
    return len(panels)


#: Axis titles where the column's name says too little.
AXIS_LABELS = {OUTPUTS_AXIS: "outputs per keypoint (H·W, or Wx + Wy bins)"}
_IMAGE_PX = set(SUMMARY_FIELDS) - {"mean_error_hm", "nonfinite", *VOLUME_FIELDS}


def _off_period(step: int, period: int) -> int:
    return step + 1 if period > 1 and step % period == 0 else step


def plot_field(field: pd.DataFrame, out: Path, *, title: str, size_px: tuple[int, int] = (1200, 600)) -> None:
    """Two panels over the heatmap: the error magnitude as an image, and the signed
    error (decoded minus true) as arrows.

    Args:
        field: rows of :func:`integral_cli.field.error_field`.
        out: a ``.png`` or ``.svg`` path.
        title: the figure title.
        size_px: width and height in pixels.
    """
    figure, axes = _figure(size_px, 1, 2)
    xs, ys = np.unique(field["x_img"]), np.unique(field["y_img"])
    error = field["error"].to_numpy().reshape(len(ys), len(xs))
    # the lattice is square in heatmap pixels: an axis with one column takes the other's step
    step_x = xs[1] - xs[0] if len(xs) > 1 else None
    step_y = ys[1] - ys[0] if len(ys) > 1 else None
    step_x, step_y = step_x or step_y or 1.0, step_y or step_x or 1.0
    extent = (xs[0] - step_x / 2, xs[-1] + step_x / 2, ys[-1] + step_y / 2, ys[0] - step_y / 2)
    # the border can be far worse than the rest; clip the colours so the rest shows
    top = float(np.nanpercentile(error, 99)) if np.isfinite(error).any() else 1.0
    image = axes[0][0].imshow(error, extent=extent, cmap="viridis", aspect="equal", vmin=0, vmax=top or 1.0)
    figure.colorbar(image, ax=axes[0][0], label="error (image px)", shrink=0.8, extend="max")
    axes[0][0].set_title("error magnitude (colours clipped at the 99th percentile)", fontsize=10)
    # an arrow every few lattice points, stepping off the per-pixel period so that the
    # arrows sample every phase of a pattern that repeats each heatmap pixel
    xs_hm = np.unique(field["x_hm"])
    density = round(1 / (xs_hm[1] - xs_hm[0])) if len(xs_hm) > 1 else 1
    stride_x = _off_period(max(1, len(xs) // 24), density)
    stride_y = _off_period(max(1, len(ys) // 32), density)
    dx = field["dx"].to_numpy().reshape(len(ys), len(xs))[::stride_y, ::stride_x]
    dy = field["dy"].to_numpy().reshape(len(ys), len(xs))[::stride_y, ::stride_x]
    grid_x, grid_y = np.meshgrid(xs[::stride_x], ys[::stride_y])
    axes[0][1].quiver(
        grid_x, grid_y, dx, dy, np.hypot(dx, dy), cmap="viridis", angles="xy", scale_units="xy", scale=None
    )
    axes[0][1].set_xlim(extent[0], extent[1])
    axes[0][1].set_ylim(extent[2], extent[3])
    axes[0][1].set_aspect("equal")
    axes[0][1].set_title("bias: decoded − true (arrows, auto-scaled)", fontsize=10)
    for ax in axes[0]:
        ax.set_xlabel("x (image px)")
        ax.set_ylabel("y (image px)")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    _save(figure, out)


def _quiet(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``function`` without numpy's and matplotlib's warnings about NaN fields."""

    def quiet(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return function(*args, **kwargs)

    quiet.__doc__ = function.__doc__
    return quiet


plot_field = _quiet(plot_field)
plot_sweep = _quiet(plot_sweep)


__all__ = ["PLOT_AXES", "PLOT_METRICS", "MissingDependencyError", "plot_field", "plot_sweep"]
