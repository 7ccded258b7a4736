"""Writing results: the CSV columns, CSV rows, JSON rows and the JSON sidecar."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from integral_cli.errors import OutputError, OutputPathError

#: The columns of every results CSV, in order. Errors are in image pixels except
#: ``mean_error_hm`` (heatmap pixels); ``seconds`` is that decoder's decoding time.
CSV_COLUMNS: tuple[str, ...] = (
    "stride",
    "sigma",
    "sigma_unit",
    "amplitude",
    "beta",
    "dark_kernel",
    "window_radius",
    "encoder",
    "noise",
    "distractor",
    "distractor_distance",
    "position",
    "convention",
    "decode_convention",
    "sampling",
    "grid_size",
    "image_h",
    "image_w",
    "heatmap_h",
    "heatmap_w",
    "margin",
    "samples",
    "decoder",
    "mean_error",
    "median_error",
    "p95_error",
    "max_error",
    "rmse",
    "bias_x",
    "bias_y",
    "mean_error_hm",
    "ci95_low",
    "ci95_high",
    "nonfinite",
    "device",
    "dtype",
    "seed",
    "seconds",
)


def check_output_path(path: Path, *, force: bool = False) -> Path:
    """Refuse an output path that exists (unless ``force``) or cannot be created.

    Raises:
        OutputPathError: the path is a directory, exists without ``force``, or its
            directory is missing or not writable.
    """
    if path.is_dir():
        raise OutputPathError(f"{path} is a directory, not a file")
    if path.exists() and not force:
        raise OutputPathError(f"{path} exists; pass --force to overwrite it")
    parent = path.parent
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputPathError(f"cannot write {path}: directory {parent} is not writable")
    return path


def sidecar_path(csv_path: Path) -> Path:
    """``results/sweep.csv`` -> ``results/sweep.json``."""
    return csv_path.with_suffix(".json")


def append_rows(path: Path, frame: pd.DataFrame, *, header: bool) -> None:
    """Append whole rows to a CSV and force them to disk before returning.

    A kill after this returns loses nothing that was written.
    """
    try:
        with open(path, "a", newline="", encoding="utf-8") as handle:
            frame.to_csv(handle, header=header, index=False, columns=list(CSV_COLUMNS))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    """Write a whole table to ``path`` through a temporary file and a rename."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        frame.to_csv(temporary, index=False, columns=list(CSV_COLUMNS))
        os.replace(temporary, path)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write a JSON document atomically (temporary file, then rename)."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        temporary.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error


def rows_as_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts keyed by the CSV columns; NaN becomes ``None``."""
    records = frame.loc[:, list(CSV_COLUMNS)].to_dict(orient="records")
    return [
        {
            key: (None if isinstance(value, float) and not math.isfinite(value) else value)
            for key, value in record.items()
        }
        for record in records
    ]
