"""Writing results: CSV rows, JSON rows, the JSON sidecar and every other file.

Every file the tool writes goes through :func:`write_atomically`: to a temporary name
beside it, synced, then renamed, so a reader sees the old file or the whole new one, and
no temporary file outlives a failed write. Results CSVs of a sweep grow by
:func:`append_rows` instead, one configuration at a time, all or nothing.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from integral_cli.errors import InputFileError, OutputError, OutputPathError
from integral_cli.settings import CSV_COLUMNS, OPTIONAL_INT_COLUMNS, RESULT_FIELDS, TEXT_COLUMNS

#: Columns that results files written by earlier versions may lack, with the value their
#: rows take (2D heatmap rows, without gaussian-fit, the bound, the flip test, OKS or the
#: errors of volumes): :func:`read_results` fills them in.
LATER_COLUMNS: dict[str, Any] = {
    "representation": "heatmap",
    "dims": 2,
    "flip_test": "none",
    **dict.fromkeys(("split_ratio", "fit_radius", "depth", "oks_area", "mean_error_z", "mean_error_3d"), None),
    **dict.fromkeys(RESULT_FIELDS, None),
}


def check_output_path(path: Path, *, force: bool = False) -> Path:
    """Refuse an output path that exists (unless ``force``) or cannot be created.

    Raises:
        OutputPathError: the path is a directory, exists without ``force``, or its
            directory is missing or not writable.
    """
    if path.is_dir():
        raise OutputPathError(f"{path} is a directory, not a file")
    if path.exists() and not force:
        raise OutputPathError(f"{path} exists; pass «force» to overwrite it")
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
    """Append whole rows to a CSV and force them to disk before returning; all or nothing.

    The rows go out in one ``write`` call, which a killed process cannot leave half
    done (the kernel finishes a write to a regular file before the process dies), then
    ``fsync``: a kill at any moment leaves only whole rows, and a kill after this
    returns loses nothing. A write or sync that fails (no space, a quota, an I/O error)
    may have put part of the rows on disk: the file is cut back to its size before the
    call (removed if this call created it) and synced, so it holds the rows it held.

    Raises:
        OutputError: the rows could not be written; the file is as it was before.
    """
    data = _as_written(frame).to_csv(header=header, index=False, columns=list(CSV_COLUMNS)).encode("utf-8")
    try:
        descriptor, size, created = _open_to_append(path)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error
    try:
        _write_all(descriptor, data)
        os.fsync(descriptor)
    except OSError as error:
        undone = _cut_back(path, descriptor, size, created)
        with contextlib.suppress(OSError):
            os.close(descriptor)
        raise OutputError(f"cannot write {path}: {error.strerror or error}{undone}") from error
    except BaseException:
        # an interrupt: rows all in the file are whole and stay; part of them (a short
        # write, then the interrupt before the rest) is taken back
        if not _holds(descriptor, size + len(data)):
            _cut_back(path, descriptor, size, created)
        with contextlib.suppress(OSError):
            os.close(descriptor)
        raise
    try:
        os.close(descriptor)
    except OSError as error:  # a network file system may report a failed write only here
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error


def _open_to_append(path: Path) -> tuple[int, int, bool]:
    """A descriptor appending to ``path``, the file's size, and whether this call created it."""
    try:
        descriptor, created = os.open(path, os.O_WRONLY | os.O_APPEND), False
    except FileNotFoundError:
        descriptor, created = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644), True
    try:
        return descriptor, os.fstat(descriptor).st_size, created
    except OSError:
        os.close(descriptor)
        raise


def _holds(descriptor: int, size: int) -> bool:
    """Whether the file is ``size`` bytes long."""
    try:
        return os.fstat(descriptor).st_size == size
    except OSError:
        return False


def _cut_back(path: Path, descriptor: int, size: int, created: bool) -> str:
    """Undo a failed append: ``path`` back to ``size`` bytes and synced, or removed when
    the append created it. Returns ``""``, or what could not be undone for the message."""
    try:
        if created:
            os.unlink(path)
        else:
            os.ftruncate(descriptor, size)
            os.fsync(descriptor)
    except OSError as error:
        return f"; cutting it back to its whole rows failed too ({error.strerror or error})"
    return ""


def _write_all(descriptor: int, data: bytes) -> None:
    """Write every byte of ``data``: a write may take fewer bytes than it was given."""
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def read_results(path: Path) -> pd.DataFrame:
    """Read a results CSV written by this tool, checking it first.

    An older CSV, whose header is :data:`CSV_COLUMNS` without some of the
    :data:`LATER_COLUMNS`, is read with those filled in (its rows are heatmaps'); the
    frame's ``attrs["older"]`` then names them.

    Raises:
        InputFileError: the file is missing, unreadable or empty, ends in a partial row,
            or does not have exactly the columns of :data:`CSV_COLUMNS` (or an older
            CSV's).
    """
    if not path.is_file():
        raise InputFileError(f"{path} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(f"cannot read {path}: {error}") from error
    return _parse_results(path, text)


def _parse_results(path: Path, text: str) -> pd.DataFrame:
    """The rows of ``text``, the contents of the results CSV ``path``, checked."""
    if not text.strip():
        raise InputFileError(f"{path} is empty")
    lines = text.splitlines()
    header = lines[0].split(",")
    missing = [c for c in CSV_COLUMNS if c not in header]
    older = bool(missing) and set(missing) <= set(LATER_COLUMNS) and header == [c for c in CSV_COLUMNS if c in header]
    if header != list(CSV_COLUMNS) and not older:
        extra = [c for c in header if c not in CSV_COLUMNS]
        detail = (
            "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unexpected {', '.join(extra)}" if extra else "",
                )
                if part
            )
            or "columns out of order"
        )
        raise InputFileError(f"{path} does not have the results columns ({detail})")
    if not text.endswith("\n"):
        raise InputFileError(
            f"{path} ends in a partial row (line {len(lines)}), cut short by an interrupted write; resuming its "
            "sweep drops it, or remove that line and retry"
        )
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (ValueError, pd.errors.ParserError) as error:
        raise InputFileError(f"cannot parse {path}: {str(error).splitlines()[0]}") from error
    if older:
        frame = frame.reindex(columns=list(CSV_COLUMNS))
        for column in missing:
            frame[column] = LATER_COLUMNS[column]
        frame.attrs["older"] = missing
    for column in CSV_COLUMNS:
        if column in TEXT_COLUMNS:
            continue
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = numbers.isna() & frame[column].notna()
        if bad.any():
            line = int(bad.idxmax()) + 2
            raise InputFileError(f"{path} line {line}: {column} is not a number ({frame[column][bad.idxmax()]!r})")
        if column in OPTIONAL_INT_COLUMNS:
            bad = numbers.notna() & (numbers != numbers.round())
            if bad.any():
                line = int(bad.idxmax()) + 2
                raise InputFileError(f"{path} line {line}: {column} is not a whole number")
        frame[column] = numbers
    short = frame[list(CSV_COLUMNS)].isna().all(axis=1) | frame["seconds"].isna()
    if short.any():
        line = int(short.idxmax()) + 2
        raise InputFileError(f"{path} has a partial row at line {line}; remove it and retry")
    return frame


def drop_cut_row(path: Path) -> int | None:
    """Drop the last line of a results CSV when it does not end in a newline.

    Only an interrupted write leaves such a line (a crash or a power loss during an
    append, where the append could not undo itself): the tool ends every row it writes
    with a newline, so the line is never a whole row, even when all its fields are there
    (the last number may be cut). The rest of the file is checked as
    :func:`read_results` checks it before the file is rewritten, atomically, without the
    line; a file refused for another reason is left as it was. A file whose only line
    is a cut header holds no row: it is removed.

    Args:
        path: a results CSV that exists.

    Returns:
        The number (1-based) of the line dropped; None when the file ends in a newline,
        or is one line that does not start the header (it is not touched, and
        :func:`read_results` refuses it).

    Raises:
        InputFileError: the rest of the file is malformed (as :func:`read_results`).
        OutputError: the file could not be rewritten (it is as it was).
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputFileError(f"cannot read {path}: {error}") from error
    if not data or data.endswith(b"\n"):
        return None
    whole = data[: data.rfind(b"\n") + 1]
    if not whole:
        if not ",".join(CSV_COLUMNS).encode("utf-8").startswith(data):
            return None  # not a cut header: read_results says what it is
        try:
            path.unlink()
        except OSError as error:
            raise OutputError(f"cannot remove {path}: {error.strerror or error}") from error
        return 1
    try:
        text = whole.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputFileError(f"cannot read {path}: {error}") from error
    _parse_results(path, text)
    write_bytes(path, whole)
    return whole.count(b"\n") + 1


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


def temporary_path(path: Path) -> Path:
    """The name ``path`` is written under before it is renamed into place: this
    process's own, so that two runs writing the same file never write into one."""
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


def _sync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where a directory cannot be
    opened, as on Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse to sync a directory; the rename itself stands
    finally:
        os.close(descriptor)


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` through ``write(temporary)``, sync it, and rename it into place.

    Whatever happens, no temporary file is left behind, and ``path`` is either as it was
    or the whole new file.

    Raises:
        OutputError: the write failed (no space, no permission, an I/O error).
    """
    temporary = temporary_path(path)
    try:
        write(temporary)
        descriptor = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
        _sync_directory(path.parent)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`write_atomically`)."""

    def write(temporary: Path) -> None:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(descriptor, data)
        finally:
            os.close(descriptor)

    write_atomically(path, write)


def write_csv(path: Path, frame: pd.DataFrame, columns: Sequence[str] | None = CSV_COLUMNS) -> None:
    """Write a whole table to ``path`` atomically (``columns`` None: the frame's own).

    An integer column that is empty in some rows (``depth``) is written as integers, as
    the rows of one experiment write it, not as the floats pandas reads it back as.
    """
    chosen = None if columns is None else list(columns)
    write_bytes(path, _as_written(frame).to_csv(index=False, columns=chosen).encode("utf-8"))


def _as_written(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the integer columns some rows leave empty as integers (``64``, not
    ``64.0``), as every write spells them."""
    floats = [c for c in OPTIONAL_INT_COLUMNS if c in frame and pd.api.types.is_float_dtype(frame[c])]
    return frame.astype(dict.fromkeys(floats, "Int64")) if floats else frame


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write a JSON document atomically."""
    write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode("utf-8"))


#: What to do about a write that failed, by its errno.
_REMEDIES = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space (or raise the quota)",
    errno.EFBIG: "raise the file size limit",
}


def remedy(error: BaseException) -> str:
    """What the user can do about a failed write: ``"free some space"`` for a full
    disk, judged from the ``OSError`` behind ``error``."""
    cause = error if isinstance(error, OSError) and error.errno else error.__cause__
    code = cause.errno if isinstance(cause, OSError) else None
    return _REMEDIES.get(code or 0, "fix what stopped the write")


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
