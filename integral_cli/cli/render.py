"""Rendering tables for a terminal: every table fits 80 columns by default.

Numbers have one format (:func:`number`: about three significant digits, scientific
only below 1e-3); decoder names and numbers are never cut and each row is one line. A
table's title is printed above it as lines of at most 80 characters. ``--wide`` tables
are printed at their natural width, whatever the terminal. When stdout is not a
terminal, tables have the same widths as in an 80-column terminal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

#: The width every default table fits.
WIDTH = 80


def number(value: Any) -> str:
    """A number with about three significant digits: ``1.54``, ``0.763``, ``0.0117``,
    ``8.70e-4``, ``65.7``, ``124``; ``nan`` for a missing value.

    >>> [number(v) for v in (1.5353, 0.7626, 0.01171, 0.00087, 65.69, 124.17, 0, -0.0099, 2.5e6)]
    ['1.54', '0.763', '0.0117', '8.70e-4', '65.7', '124', '0', '-0.00990', '2.50e6']
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if value == 0:
        return "0"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    size = abs(value)
    if size < 1e-3 or size >= 1e5:
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    decimals = max(0, 2 - math.floor(math.log10(size)))
    text = f"{value:.{decimals}f}"
    if abs(float(text)) >= 10 ** (3 - decimals) and decimals > 0:  # 9.996 rounds up to 10.00
        text = f"{value:.{decimals - 1}f}"
    return text


def heading(parts: Iterable[str], width: int = WIDTH) -> str:
    """``parts`` joined by `` · `` into lines of at most ``width`` characters."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return "\n".join(lines)


def new_table(headers: Sequence[str], *, left: Iterable[str] = ()) -> Table:
    """A borderless table whose cells are never wrapped; ``left`` columns are
    left-aligned, the rest (numbers) right-aligned."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    flush_left = set(left)
    for header in headers:
        table.add_column(header, justify="left" if header in flush_left else "right", no_wrap=True)
    return table


def show(table: Table, title: str = "", caption: str = "", *, wide: bool = False) -> None:
    """Print ``title``, the table and ``caption`` to stdout: at most 80 columns wide when
    stdout is not a terminal, at the table's natural width when ``wide``."""
    console = Console()
    if wide:
        out = Console(width=max(WIDTH, _width(table)))
    else:
        out = console if console.is_terminal else Console(width=WIDTH)
    if title:
        out.print(title, highlight=False)
    out.print(table)
    if caption:
        out.print(caption, highlight=False)


# ---------------------------------------------------------------- the error table
#: Every column the error table can show: key -> header. ``ci95`` is the interval.
ERROR_COLUMNS: dict[str, str] = {
    "mean_error": "mean",
    "median_error": "median",
    "p95_error": "p95",
    "max_error": "max",
    "rmse": "rmse",
    "bias_x": "bias x",
    "bias_y": "bias y",
    "mean_error_hm": "mean hm",
    "mean_error_z": "mean z",
    "mean_error_3d": "mean 3d",
    "ci95": "95% CI of mean",
    "nonfinite": "non-finite",
    "fallbacks": "fallbacks",
    "efficiency": "efficiency",
    "seconds": "seconds",
}
#: Scores shown after the error columns when a run has them: key -> header. PCK, AUC
#: and the AP ceiling are shares, shown as percentages; NME and OKS as numbers.
SCORE_COLUMNS: dict[str, str] = {"nme": "NME", "auc": "AUC", "oks": "OKS", "ap_ceiling": "AP ceiling"}
_SCORES_AS_NUMBERS = ("nme", "oks")
#: What ``compare`` and ``evaluate`` show by default.
COMPACT = ("mean_error", "median_error", "p95_error", "max_error", "ci95")
#: What ``compare`` shows by default on noisy maps, where the Cramér–Rao bound is known.
COMPACT_NOISY = ("mean_error", "median_error", "p95_error", "rmse", "efficiency")
#: ... and for volumes: the (x, y) error in image px, then z and 3D in voxels.
COMPACT_3D = ("mean_error", "p95_error", "mean_error_z", "mean_error_3d", "ci95")
#: The columns only volumes fill.
VOLUME_COLUMNS = ("mean_error_z", "mean_error_3d")


def error_table(
    rows: pd.DataFrame, columns: Sequence[str], extra: Mapping[str, str] | None = None, *, fit: bool = False
) -> tuple[Table, list[str]]:
    """The error table of ``compare`` and ``evaluate``: one line per decoder with
    ``columns`` (keys of :data:`ERROR_COLUMNS` or of ``extra``: PCK and the
    :data:`SCORE_COLUMNS`), and the notes to print under it. Rows scored per keypoint
    (a ``keypoint`` other than ``all``) get a keypoint column.

    With ``fit``, columns are left out until the table fits :data:`WIDTH`: the error
    columns after the first, last first, then the ``extra`` ones, last first; a note
    says how many."""
    table, notes = _error_table(rows, columns, extra)
    kept = list(columns)
    droppable = [c for c in reversed(columns[1:]) if c not in (extra or {})]
    droppable += [c for c in reversed(columns[1:]) if c in (extra or {})]
    while fit and droppable and _width(table) > WIDTH:
        kept.remove(droppable.pop(0))
        table, notes = _error_table(rows, kept, extra)
    if len(kept) < len(columns):
        hidden = len(columns) - len(kept)
        notes.append(f"{hidden} more column{'s' * (hidden > 1)} with --wide")
    return table, notes


def _width(table: Table) -> int:
    return Console(width=10_000).measure(table).maximum


def _error_table(
    rows: pd.DataFrame, columns: Sequence[str], extra: Mapping[str, str] | None = None
) -> tuple[Table, list[str]]:
    headers = {**ERROR_COLUMNS, **(extra or {})}
    per_keypoint = "keypoint" in rows and bool((rows["keypoint"] != "all").any())
    labels = ["decoder", "keypoint"] if per_keypoint else ["decoder"]
    table = new_table([*labels, *(headers[c] for c in columns)], left=labels)
    notes = []
    for row in rows.to_dict(orient="records"):
        flagged = bool(row["nonfinite"])
        cells = [row["decoder"] + (" !" if flagged else "")]
        if per_keypoint:
            cells.append(str(row["keypoint"]))
        for column in columns:
            if column == "ci95":
                cells.append(
                    "-" if _missing(row["ci95_low"]) else f"{number(row['ci95_low'])}–{number(row['ci95_high'])}"
                )
            elif column in _SCORES_AS_NUMBERS:
                cells.append(number(row[column]))
            elif column in (extra or {}):
                cells.append("-" if _missing(row[column]) else f"{row[column]:.1%}")
            elif column in ("nonfinite", "fallbacks"):
                cells.append("-" if _missing(row.get(column)) else str(int(row[column])))
            elif column in ("efficiency", *VOLUME_COLUMNS):
                cells.append("-" if _missing(row.get(column)) else number(row[column]))
            elif column == "seconds":
                cells.append(f"{row[column]:.3f}")
            else:
                cells.append(number(row[column]))
        table.add_row(*cells)
    if rows["nonfinite"].any():
        notes.append("! = some results were not finite; statistics are over the finite ones")
    return table, notes


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(math.isnan(value))
    except TypeError:
        return False


def choose_columns(
    wide: bool,
    requested: Sequence[str] | None,
    extra: Sequence[str] = (),
    compact: Sequence[str] = COMPACT,
    *,
    volumes: bool | None = False,
) -> list[str]:
    """The error-table columns to show: ``requested`` (checked), every one with
    ``wide`` (those of volumes only for ``volumes``), else the ``compact`` set; ``extra``
    columns (PCK) come after. The columns of volumes are refused when ``volumes`` is
    False (``None``: not known yet)."""
    known = [*ERROR_COLUMNS, *extra]
    if requested:
        import typer

        unknown = [c for c in requested if c not in known]
        if unknown:
            raise typer.BadParameter(
                f"unknown column {unknown[0]!r}; choose from {', '.join(known)}", param_hint="--columns"
            )
        flat = [c for c in requested if c in VOLUME_COLUMNS] if volumes is False else []
        if flat:
            raise typer.BadParameter(f"{flat[0]} is an error of volumes (--dims 3)", param_hint="--columns")
        return list(requested)
    if wide:
        return [*(c for c in ERROR_COLUMNS if volumes or c not in VOLUME_COLUMNS), *extra]
    return [*compact[:4], *extra] if extra else list(compact)


def error_caption(volumes: bool) -> str:
    """The units of the error table."""
    if volumes:
        return "mean, p95, CI: (x, y) error in image pixels · mean z, mean 3d: voxels"
    return "errors in image pixels"


def by_mean_error(rows: Any) -> Any:
    """``rows`` with the sets of points sorted by their mean error over all keypoints;
    per-keypoint rows stay under their set's row, in keypoint order."""
    overall = rows[rows["keypoint"] == "all"].set_index("decoder")["mean_error"]
    rank = rows["decoder"].map(overall.rank(method="first"))
    order = sorted(range(len(rows)), key=lambda i: (rank.iloc[i], rows["keypoint"].iloc[i] != "all", i))
    return rows.iloc[order].reset_index(drop=True)


def score_headers(pck: Sequence[float], *, normalized: bool, oks: bool) -> dict[str, str]:
    """The table headers of the scores asked for: PCK at each threshold, NME and AUC with
    a normaliser, OKS and the AP ceiling with an area."""
    from integral_cli.scores import pck_column

    headers = {pck_column(t): f"PCK@{t:g}" for t in pck}
    if normalized:
        headers |= {key: SCORE_COLUMNS[key] for key in ("nme", "auc")}
    if oks:
        headers |= {key: SCORE_COLUMNS[key] for key in ("oks", "ap_ceiling")}
    return headers


def score_caption(normalize: str, auc_max: float) -> list[str]:
    """What the PCK, NME and AUC columns mean."""
    if normalize == "none":
        return ["PCK@t = share within t px"]
    return [f"PCK@t = share within t · L, L from {normalize}", f"NME = mean error / L · AUC of PCK up to {auc_max:g}"]
