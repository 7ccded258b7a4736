"""Writing results: the CSV columns, CSV rows, JSON rows and the JSON sidecar."""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from integral_cli.errors import InputFileError, OutputError, OutputPathError
from integral_cli.metrics import SUMMARY_FIELDS

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
    *SUMMARY_FIELDS,
    "device",
    "dtype",
    "seed",
    "seconds",
)


#: The CSV columns that hold words, not numbers.
TEXT_COLUMNS = frozenset(
    {"sigma_unit", "encoder", "position", "convention", "decode_convention", "sampling", "decoder", "device", "dtype"}
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

    The rows go out in one ``write`` call, which a killed process cannot leave half
    done (the kernel finishes a write to a regular file before the process dies), then
    ``fsync``: a kill at any moment leaves only whole rows, and a kill after this
    returns loses nothing.
    """
    data = frame.to_csv(header=header, index=False, columns=list(CSV_COLUMNS)).encode("utf-8")
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view):]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error


def read_results(path: Path) -> pd.DataFrame:
    """Read a results CSV written by this tool, checking it first.

    Raises:
        InputFileError: the file is missing, unreadable or empty, ends in a partial row,
            or does not have exactly the columns of :data:`CSV_COLUMNS`.
    """
    if not path.is_file():
        raise InputFileError(f"{path} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(f"cannot read {path}: {error}") from error
    if not text.strip():
        raise InputFileError(f"{path} is empty")
    lines = text.splitlines()
    header = lines[0].split(",")
    if header != list(CSV_COLUMNS):
        missing = [c for c in CSV_COLUMNS if c not in header]
        extra = [c for c in header if c not in CSV_COLUMNS]
        detail = "; ".join(
            part for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unexpected {', '.join(extra)}" if extra else "",
            ) if part
        ) or "columns out of order"
        raise InputFileError(f"{path} does not have the results columns ({detail})")
    if not text.endswith("\n"):
        raise InputFileError(
            f"{path} ends in a partial row (line {len(lines)}); remove that line and retry"
        )
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (ValueError, pd.errors.ParserError) as error:
        raise InputFileError(f"cannot parse {path}: {str(error).splitlines()[0]}") from error
    for column in CSV_COLUMNS:
        if column in TEXT_COLUMNS:
            continue
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = numbers.isna() & frame[column].notna()
        if bad.any():
            line = int(bad.idxmax()) + 2
            raise InputFileError(f"{path} line {line}: {column} is not a number ({frame[column][bad.idxmax()]!r})")
        frame[column] = numbers
    short = frame[list(CSV_COLUMNS)].isna().all(axis=1) | frame["seconds"].isna()
    if short.any():
        line = int(short.idxmax()) + 2
        raise InputFileError(f"{path} has a partial row at line {line}; remove it and retry")
    return frame


def read_sidecar(path: Path) -> dict[str, Any]:
    """Read the JSON sidecar written beside a results CSV.

    Raises:
        InputFileError: missing, not JSON, or without the sweep's settings and grid.
    """
    if not path.is_file():
        raise InputFileError(f"{path} does not exist; it is needed to check the settings")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputFileError(f"cannot read {path}: {error}") from error
    if not isinstance(payload, dict) or not {"settings", "grid"} <= payload.keys():
        raise InputFileError(f"{path} is not a sweep sidecar (no settings and grid)")
    return payload


def write_csv(path: Path, frame: pd.DataFrame, columns: Sequence[str] = CSV_COLUMNS) -> None:
    """Write a whole table to ``path`` through a temporary file and a rename."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        frame.to_csv(temporary, index=False, columns=list(columns))
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


def rows_as_records(frame: pd.DataFrame, columns: Sequence[str] = CSV_COLUMNS) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts keyed by ``columns``; NaN and missing values become ``None``."""
    records = frame.loc[:, list(columns)].astype(object).to_dict(orient="records")
    return [
        {
            key: (None if value is pd.NA or (isinstance(value, float) and not math.isfinite(value)) else value)
            for key, value in record.items()
        }
        for record in records
    ]
