"""Writing and reading results: the columns, whole rows on disk, refusals that say why."""

import errno
import json
import math
import os
import stat

import pandas as pd
import pytest

from integral_cli.errors import InputFileError, OutputError, OutputPathError
from integral_cli.metrics import SUMMARY_FIELDS
from integral_cli.report import (
    CSV_COLUMNS,
    OPTIONAL_INT_COLUMNS,
    TEXT_COLUMNS,
    append_rows,
    check_output_path,
    read_results,
    read_sidecar,
    remedy,
    rows_as_records,
    sidecar_path,
    write_csv,
    write_json,
)


def results_frame(rows=2, start=0):
    """A results table with every column: words in the text columns, distinct numbers
    (row r, column c -> 1000 * (r + start) + c) in the others."""
    data = {}
    for c, column in enumerate(CSV_COLUMNS):
        if column in TEXT_COLUMNS:
            data[column] = [f"{column}{r + start}" for r in range(rows)]
        else:
            data[column] = [float(1000 * (r + start) + c) for r in range(rows)]
    return pd.DataFrame(data)


def csv_text(frame, header=True):
    """The CSV the tool writes, built here by hand: a comma-joined line per row."""
    lines = [",".join(CSV_COLUMNS)] if header else []
    for _, row in frame.iterrows():
        # the integer columns some rows leave empty (a heatmap's depth) are written as integers
        lines.append(",".join(str(int(row[c])) if c in OPTIONAL_INT_COLUMNS else str(row[c]) for c in CSV_COLUMNS))
    return "\n".join(lines) + "\n"


def test_columns_hold_the_summary_between_the_decoder_and_the_device():
    start = CSV_COLUMNS.index("decoder") + 1
    assert CSV_COLUMNS[start : start + len(SUMMARY_FIELDS)] == SUMMARY_FIELDS
    assert CSV_COLUMNS.index("device") >= start + len(SUMMARY_FIELDS)
    assert len(set(CSV_COLUMNS)) == len(CSV_COLUMNS) and set(CSV_COLUMNS) >= TEXT_COLUMNS


# --------------------------------------------------------------------- output paths
def test_check_output_path_accepts_a_new_file(tmp_path):
    assert check_output_path(tmp_path / "new.csv") == tmp_path / "new.csv"


def test_check_output_path_refuses_an_existing_file_unless_forced(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("x\n")
    with pytest.raises(OutputPathError, match=r"old\.csv exists; pass force to overwrite it$"):
        check_output_path(path)
    assert check_output_path(path, force=True) == path


def test_check_output_path_refuses_a_directory_even_forced(tmp_path):
    with pytest.raises(OutputPathError, match="is a directory, not a file"):
        check_output_path(tmp_path, force=True)


def test_check_output_path_refuses_a_missing_directory(tmp_path):
    with pytest.raises(OutputPathError, match=r"directory .*missing does not exist"):
        check_output_path(tmp_path / "missing" / "out.csv")


def test_check_output_path_refuses_a_directory_it_cannot_write(tmp_path, monkeypatch):
    # root may write anywhere, so the permission answer is stubbed: only for this directory
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if p == tmp_path and mode == os.W_OK else real(p, mode))
    with pytest.raises(OutputPathError, match="is not writable"):
        check_output_path(tmp_path / "out.csv")


def test_sidecar_path_swaps_the_suffix(tmp_path):
    assert sidecar_path(tmp_path / "sweep.csv") == tmp_path / "sweep.json"


# ---------------------------------------------------------------------- appending
def test_append_rows_writes_the_header_once_and_then_only_rows(tmp_path):
    path = tmp_path / "r.csv"
    first, second = results_frame(2), results_frame(1, start=2)
    # columns in another order on the way in: the file keeps the tool's order
    append_rows(path, first[list(reversed(CSV_COLUMNS))], header=True)
    assert path.read_text() == csv_text(first)
    append_rows(path, second, header=False)
    assert path.read_text() == csv_text(first) + csv_text(second, header=False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 & ~_umask()


def test_append_rows_syncs_the_file_before_returning(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.fstat(fd).st_size) or real(fd))
    path = tmp_path / "r.csv"
    append_rows(path, results_frame(1), header=True)
    assert synced == [len(csv_text(results_frame(1)).encode())]


def test_append_rows_writes_everything_when_the_kernel_takes_a_little_at_a_time(tmp_path, monkeypatch):
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:7])))
    path = tmp_path / "r.csv"
    append_rows(path, results_frame(3), header=True)
    assert path.read_text() == csv_text(results_frame(3))


def test_append_rows_names_the_file_it_cannot_write(tmp_path):
    with pytest.raises(OutputError, match=r"cannot write .*nowhere.*r\.csv: No such file or directory"):
        append_rows(tmp_path / "nowhere" / "r.csv", results_frame(1), header=True)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------ reading
def test_read_results_gives_numbers_and_words_back(tmp_path):
    path = tmp_path / "r.csv"
    frame = results_frame(3)
    path.write_text(csv_text(frame))
    got = read_results(path)
    # the integer columns some rows leave empty come back as integers where all are given
    expected = frame.astype(dict.fromkeys(OPTIONAL_INT_COLUMNS, "int64"))
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_read_results_refuses_a_directory_and_names_a_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="does not exist or is not a file"):
        read_results(tmp_path)


def test_read_results_refuses_a_file_that_is_not_text(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"\xff\xfe\x00stride")
    with pytest.raises(InputFileError, match=r"cannot read .*r\.csv"):
        read_results(path)


def test_read_results_refuses_blank_files(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(" \n\n")
    with pytest.raises(InputFileError, match=r"r\.csv is empty"):
        read_results(path)


@pytest.mark.parametrize(
    "header, detail",
    [
        (["x", *CSV_COLUMNS], r"\(unexpected x\)$"),
        ([*CSV_COLUMNS, "y", "z"], r"\(unexpected y, z\)$"),
        ([c for c in CSV_COLUMNS if c not in ("sigma", "seed")], r"\(missing sigma, seed\)$"),
        ([*CSV_COLUMNS[:-1], "secs"], r"\(missing seconds; unexpected secs\)$"),
        ([CSV_COLUMNS[1], CSV_COLUMNS[0], *CSV_COLUMNS[2:]], r"\(columns out of order\)$"),
    ],
)
def test_read_results_names_what_is_wrong_with_the_columns(tmp_path, header, detail):
    path = tmp_path / "r.csv"
    path.write_text(",".join(header) + "\n")
    with pytest.raises(InputFileError, match=r"does not have the results columns " + detail):
        read_results(path)


def test_read_results_names_the_line_of_a_partial_row(tmp_path):
    path = tmp_path / "r.csv"
    text = csv_text(results_frame(2))
    path.write_text(text[:-5])
    with pytest.raises(InputFileError, match=r"ends in a partial row \(line 3\), cut short by an interrupted write"):
        read_results(path)


def test_read_results_refuses_a_row_of_other_length(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(csv_text(results_frame(1)) + "1,2,3," * 30 + "\n")
    # pandas' own first line, which names the line of the row
    with pytest.raises(InputFileError, match=r"cannot parse .*r\.csv: .*line 3"):
        read_results(path)


@pytest.mark.parametrize("column", ["sigma", "mean_error", "seconds"])
def test_read_results_names_the_line_column_and_word_that_is_no_number(tmp_path, column):
    # columns before, between and after the text columns are all checked
    frame = results_frame(3).astype({column: object})
    frame.loc[2, column] = "two"
    path = tmp_path / "r.csv"
    path.write_text(csv_text(frame))
    with pytest.raises(InputFileError, match=rf"r\.csv line 4: {column} is not a number \('two'\)$"):
        read_results(path)


def test_read_results_keeps_empty_numbers_but_refuses_rows_without_a_time(tmp_path):
    frame = results_frame(3)
    frame.loc[0, "beta"] = float("nan")  # a number a decoder does not take: allowed
    path = tmp_path / "r.csv"
    path.write_text(csv_text(frame).replace("nan", ""))
    assert math.isnan(read_results(path)["beta"][0])
    frame.loc[1, "seconds"] = float("nan")  # the last column: the row was cut short
    path.write_text(csv_text(frame).replace("nan", ""))
    with pytest.raises(InputFileError, match=r"has a partial row at line 3; remove it and retry"):
        read_results(path)


def test_read_results_refuses_an_empty_row(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(csv_text(results_frame(1)) + "," * (len(CSV_COLUMNS) - 1) + "\n")
    with pytest.raises(InputFileError, match=r"partial row at line 3"):
        read_results(path)


# ------------------------------------------------------------------------ sidecars
def test_read_sidecar_gives_the_payload_back(tmp_path):
    payload = {"settings": {"samples": 3}, "grid": {"stride": [4]}, "seed": 0}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(payload))
    assert read_sidecar(path) == payload


def test_read_sidecar_refusals(tmp_path):
    path = tmp_path / "r.json"
    with pytest.raises(InputFileError, match=r"r\.json does not exist; it is needed to check the settings"):
        read_sidecar(path)
    path.write_text("{not json")
    with pytest.raises(InputFileError, match=r"cannot read .*r\.json: Expecting property name"):
        read_sidecar(path)
    for payload in ('["settings", "grid"]', '{"settings": {}}', '{"grid": {}}'):
        path.write_text(payload)
        with pytest.raises(InputFileError, match=r"r\.json is not a sweep sidecar \(no settings and grid\)"):
            read_sidecar(path)


# ------------------------------------------------------------------- whole files
def test_write_csv_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("old\n")
    write_csv(path, results_frame(2))
    assert path.read_text() == csv_text(results_frame(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


def test_write_csv_writes_the_columns_asked_for(tmp_path):
    path = tmp_path / "r.csv"
    write_csv(path, pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, 1.5]}), columns=("c", "a"))
    assert path.read_text() == "c,a\n0.5,1\n1.5,2\n"


def test_write_csv_and_write_json_name_the_file_they_cannot_write(tmp_path):
    target = tmp_path / "missing" / "r.csv"
    with pytest.raises(OutputError, match=r"cannot write .*r\.csv: No such file or directory"):
        write_csv(target, results_frame(1))
    with pytest.raises(OutputError, match=r"cannot write .*r\.json: No such file or directory"):
        write_json(target.with_suffix(".json"), {})


def test_write_json_is_indented_ends_in_a_newline_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("{}")
    write_json(path, {"a": [1, 2], "b": None})
    assert path.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": null\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_rows_as_records_turns_missing_and_non_finite_numbers_into_none():
    frame = pd.DataFrame(
        {
            "decoder": ["argmax", "dark"],
            "mean_error": [1.5, float("nan")],
            "max_error": [float("inf"), -float("inf")],
            "samples": pd.array([3, pd.NA], dtype="Int64"),
        }
    )
    assert rows_as_records(frame, columns=("decoder", "samples", "mean_error", "max_error")) == [
        {"decoder": "argmax", "samples": 3, "mean_error": 1.5, "max_error": None},
        {"decoder": "dark", "samples": None, "mean_error": None, "max_error": None},
    ]


def test_rows_as_records_keeps_the_tool_columns_in_order():
    records = rows_as_records(results_frame(1))
    assert list(records[0]) == list(CSV_COLUMNS)
    assert records[0]["decoder"] == "decoder0" and records[0]["stride"] == float(CSV_COLUMNS.index("stride"))


# --------------------------------------------------------------- failed appends
def _failing_write(after_bytes, code=errno.ENOSPC):
    """os.write that puts ``after_bytes`` bytes down, then fails like a full disk."""
    real = os.write

    def write(descriptor, data):
        if after_bytes:
            return real(descriptor, bytes(data[:after_bytes]))
        raise OSError(code, os.strerror(code))

    return write


def test_a_failed_append_cuts_the_file_back_to_its_whole_rows(tmp_path, monkeypatch):
    path = tmp_path / "r.csv"
    append_rows(path, results_frame(1), header=True)
    before = path.read_bytes()
    calls = []
    real = _failing_write(40)
    # the first write lands 40 bytes, the second finds the disk full
    monkeypatch.setattr(
        os, "write", lambda fd, data: calls.append(1) or (real if len(calls) == 1 else _failing_write(0))(fd, data)
    )
    with pytest.raises(OutputError, match=r"cannot write .*r\.csv: No space left on device$") as caught:
        append_rows(path, results_frame(1, start=1), header=False)
    assert path.read_bytes() == before
    assert remedy(caught.value) == "free some space"


def test_a_failed_first_append_removes_the_file_it_created(tmp_path, monkeypatch):
    path = tmp_path / "r.csv"
    monkeypatch.setattr(os, "write", _failing_write(0, errno.EFBIG))
    with pytest.raises(OutputError, match="File too large") as caught:
        append_rows(path, results_frame(1), header=True)
    assert not path.exists()
    assert remedy(caught.value) == "raise the file size limit"


def test_a_cut_back_that_fails_too_says_so(tmp_path, monkeypatch):
    path = tmp_path / "r.csv"
    append_rows(path, results_frame(1), header=True)
    monkeypatch.setattr(os, "write", _failing_write(0, errno.EDQUOT))
    monkeypatch.setattr(os, "ftruncate", lambda fd, size: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OutputError, match=r"; cutting it back to its whole rows failed too \(I/O error\)$") as caught:
        append_rows(path, results_frame(1, start=1), header=False)
    assert remedy(caught.value) == "free some space (or raise the quota)"


def test_an_interrupt_after_a_whole_append_keeps_the_rows(tmp_path, monkeypatch):
    # rows all in the file are whole and stay; a part of them is taken back
    path = tmp_path / "r.csv"
    append_rows(path, results_frame(1), header=True)
    whole = path.read_bytes()
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        append_rows(path, results_frame(1, start=1), header=False)
    assert path.read_bytes() == whole + csv_text(results_frame(1, start=1), header=False).encode()
    real, calls = os.write, []

    def ten_bytes_then_interrupt(fd, data):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(fd, bytes(data[:10]))

    monkeypatch.setattr(os, "write", ten_bytes_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        append_rows(path, results_frame(1, start=2), header=False)
    assert path.read_bytes() == whole + csv_text(results_frame(1, start=1), header=False).encode()


def test_remedy_without_an_os_error_behind_it():
    assert remedy(ValueError("bad")) == "fix what stopped the write"
    assert remedy(OSError(errno.EACCES, "Permission denied")) == "fix what stopped the write"


def test_write_csv_without_columns_writes_the_frames_own(tmp_path):
    path = tmp_path / "r.csv"
    write_csv(path, pd.DataFrame({"b": ["x", "y"], "a": [1, 2]}), columns=None)
    assert path.read_text() == "b,a\nx,1\ny,2\n"


def test_whole_files_are_written_with_the_usual_permissions(tmp_path):
    write_csv(tmp_path / "r.csv", results_frame(1))
    write_json(tmp_path / "r.json", {})
    for name in ("r.csv", "r.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644 & ~_umask()


def test_remedy_of_an_os_error_itself():
    assert remedy(OSError(errno.ENOSPC, "No space left on device")) == "free some space"


def test_a_close_that_fails_after_the_rows_is_a_failed_write(tmp_path, monkeypatch):
    # a network file system may report a failed write only when the file is closed
    path = tmp_path / "r.csv"
    real = os.close

    def close(descriptor):
        real(descriptor)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "close", close)
    with pytest.raises(OutputError, match=r"^cannot write .*r\.csv: Input/output error$"):
        append_rows(path, results_frame(1), header=True)


def test_a_failed_write_whose_close_fails_too_is_still_a_failed_write(tmp_path, monkeypatch):
    path = tmp_path / "r.csv"
    real = os.close
    monkeypatch.setattr(os, "write", _failing_write(0))
    monkeypatch.setattr(os, "close", lambda fd: real(fd) or (_ for _ in ()).throw(OSError(errno.EIO, "I/O")))
    with pytest.raises(OutputError, match="No space left on device"):
        append_rows(path, results_frame(1), header=True)


def test_an_interrupt_inside_the_first_append_removes_the_file(tmp_path, monkeypatch):
    path = tmp_path / "r.csv"
    real, calls = os.write, []

    def ten_bytes_then_interrupt(fd, data):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(fd, bytes(data[:10]))

    monkeypatch.setattr(os, "write", ten_bytes_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        append_rows(path, results_frame(1), header=True)
    assert not path.exists()


def test_drop_cut_row_names_the_file_it_cannot_read_or_parse(tmp_path):
    from integral_cli.report import drop_cut_row

    with pytest.raises(InputFileError, match=r"^cannot read .*: \[Errno 21\] Is a directory"):
        drop_cut_row(tmp_path)
    path = tmp_path / "r.csv"
    path.write_bytes(csv_text(results_frame(1)).encode() + b"\xff\xfe\n1,2")
    with pytest.raises(InputFileError, match=r"^cannot read .*r\.csv: 'utf-8' codec can't decode"):
        drop_cut_row(path)
    path.write_text("a,b\n1,2\n3,")
    with pytest.raises(InputFileError, match=r"^.*r\.csv does not have the results columns"):
        drop_cut_row(path)


def test_drop_cut_row_names_the_cut_header_it_cannot_remove(tmp_path, monkeypatch):
    from pathlib import Path

    from integral_cli.report import drop_cut_row

    path = tmp_path / "r.csv"
    path.write_text(",".join(CSV_COLUMNS)[:20])  # a cut header
    monkeypatch.setattr(
        Path,
        "unlink",
        lambda self, missing_ok=False: (_ for _ in ()).throw(PermissionError(errno.EACCES, "Permission denied")),
    )
    with pytest.raises(OutputError, match=r"^cannot remove .*r\.csv: Permission denied$"):
        drop_cut_row(path)
