"""A full disk: an append lands whole or not at all, no temporary file outlives a failed
write, and --resume repairs what only an interrupted write can leave.

The disk fills up in :class:`FullDisk`, a stand-in for ``os.write`` in
``integral_cli.report`` (every CSV and JSON byte the tool writes goes through it), and
in one test for real, under a file size limit that any process may set for itself.
"""

import errno
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from integral_cli import ExperimentConfig, report, run_experiment
from integral_cli import sweep as sweep_module
from integral_cli.cli import app
from integral_cli.errors import OutputError
from integral_cli.report import CSV_COLUMNS, read_results

from support import assert_rows_equal

runner = CliRunner()
# 8 configurations of 2 rows each; every one fits a 64x48 image at stride 4
SWEEP = [
    "sweep",
    "--strides",
    "2,4",
    "--sigmas",
    "1,1.5",
    "--amplitudes",
    "1,5",
    "--samples",
    "20",
    "--image-size",
    "64x48",
    "--decoders",
    "argmax,dark",
    "--device",
    "cpu",
]
CONFIGURATIONS = 8


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def listing(directory):
    """Every name in ``directory``, dotfiles (the temporary names) included."""
    return sorted(os.listdir(directory))


class FullDisk:
    """``os.write`` for ``integral_cli.report`` on a disk that fills up.

    The first ``whole`` writes to the file ``filling`` land; of the next one only ``part``
    bytes land (a number, or a function of the bytes asked: a short write, as the kernel
    makes one), and the write after it fails with ``code`` (ENOSPC). From then on (or once
    ``full`` is set) every write to a file in the same directory fails. Files elsewhere
    are written as usual. ``landed`` holds the bytes that reached ``filling`` whole.
    """

    def __init__(self, filling, *, whole=0, part=0, code=errno.ENOSPC):
        self.filling, self.whole, self.part, self.code = filling, whole, part, code
        self.full, self.landed = False, b""
        self.real = os.write

    def __call__(self, descriptor, data):
        target = self._file(descriptor)
        if target is None:
            return self.real(descriptor, data)
        if self.full:
            raise OSError(self.code, os.strerror(self.code))
        if target == self.filling:
            if self.whole == 0:
                self.full = True
                taken = bytes(data)[: self.part if isinstance(self.part, int) else self.part(bytes(data))]
                if not taken:
                    raise OSError(self.code, os.strerror(self.code))
                return self.real(descriptor, taken)
            self.whole -= 1
            self.landed += bytes(data)
        return self.real(descriptor, data)

    def _file(self, descriptor):
        status = os.fstat(descriptor)
        for path in self.filling.parent.iterdir():
            if os.path.samestat(status, path.stat()):
                return path
        return None


def first_row(data):
    """How many bytes of an append hold its first row (with its newline)."""
    return data.index(b"\n") + 1


def quarter(data):
    return len(data) // 4


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The sweep run without trouble: its CSV (and the bytes of each line)."""
    out = tmp_path_factory.mktemp("straight") / "s.csv"
    result = invoke(*SWEEP, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def lines_of(path):
    return path.read_bytes().splitlines(keepends=True)


# ------------------------------------------------------- an append fails part-way
@pytest.mark.parametrize(
    "saved, part",
    [
        # (configurations saved before the append that fails, bytes of it that land)
        (2, quarter),  # in the middle of configuration 3's first row
        (2, first_row),  # a whole row of configuration 3, not its whole append
        (5, lambda data: len(data) - 1),  # all but the newline of configuration 6's last row
        (0, 50),  # in the header: the first append, which creates the file
    ],
    ids=["mid-row", "after-a-row", "but-the-newline", "in-the-header"],
)
def test_a_full_disk_leaves_whole_rows_and_resume_finishes(tmp_path, monkeypatch, straight, saved, part):
    out = tmp_path / "s.csv"
    disk = FullDisk(out, whole=saved, part=part)
    with monkeypatch.context() as patch:
        patch.setattr(report.os, "write", disk)
        result = invoke(*SWEEP, "--out", out)
    assert result.exit_code == 1 and disk.full and "Traceback" not in result.output
    # one line: what failed, which configuration, how many are saved, what to do
    failed = pd.read_csv(straight).iloc[2 * saved]
    assert result.stderr == (
        f"integral-cli: error: cannot write {out}: No space left on device; stride={failed.stride}, "
        f"sigma={failed.sigma}, amplitude={failed.amplitude} was not saved, {saved} of {CONFIGURATIONS} "
        "configurations are; free some space, then run the same command with --resume to finish\n"
    )
    # the CSV holds exactly the appends that landed whole; nothing else is left behind
    if saved:
        assert out.read_bytes() == disk.landed and len(read_results(out)) == 2 * saved
        assert listing(tmp_path) == ["s.csv", "s.json"]
    else:
        assert listing(tmp_path) == ["s.json"]  # the append that created the CSV removed it
    # the disk was too full to mark the sidecar interrupted: it is as the sweep started it
    assert json.loads((tmp_path / "s.json").read_text())["status"] == "running"

    resumed = invoke(*SWEEP, "--out", out, "--resume")  # space freed: os.write is itself again
    assert resumed.exit_code == 0, resumed.output
    assert f"({CONFIGURATIONS - saved} configurations" in resumed.stderr
    assert (f"{saved} already there" in resumed.stderr) == bool(saved)
    # the same configurations, chunks and operations as the straight run: bit-identical
    assert_rows_equal(pd.read_csv(out), pd.read_csv(straight))
    assert json.loads((tmp_path / "s.json").read_text())["status"] == "complete"
    assert listing(tmp_path) == ["s.csv", "s.json"]


@pytest.mark.parametrize("created", [False, True])
def test_append_rows_puts_the_file_back_as_it_was(tmp_path, monkeypatch, created):
    rows = run_experiment(ExperimentConfig(samples=20, device="cpu", decoders=("argmax", "dark", "integral")))
    out = tmp_path / "rows.csv"
    if not created:
        report.append_rows(out, rows, header=True)
    before = out.read_bytes() if out.exists() else None
    disk = FullDisk(out, part=100)  # the rows are longer: their first 100 bytes land
    monkeypatch.setattr(report.os, "write", disk)
    with pytest.raises(OutputError, match="No space left on device"):
        report.append_rows(out, rows, header=created)
    assert disk.full
    if created:
        assert listing(tmp_path) == []
    else:
        assert out.read_bytes() == before


@pytest.mark.parametrize("whole", [False, True])
def test_an_interrupt_inside_an_append(tmp_path, monkeypatch, whole):
    # Ctrl-C (or SIGTERM) between a short write and the rest of the rows: that part is
    # taken back. Once every row is in the file (an interrupt during the sync), they are
    # whole rows and stay. The interrupt goes on either way.
    rows = run_experiment(ExperimentConfig(samples=20, device="cpu", decoders=("argmax", "dark")))
    out = tmp_path / "rows.csv"
    report.append_rows(out, rows, header=True)
    before = out.read_bytes()
    real = os.write

    def write_then_interrupt(descriptor, data):
        real(descriptor, bytes(data)[:100])
        raise KeyboardInterrupt

    def interrupt(descriptor):
        raise KeyboardInterrupt

    if whole:
        monkeypatch.setattr(report.os, "fsync", interrupt)
    else:
        monkeypatch.setattr(report.os, "write", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        report.append_rows(out, rows, header=False)
    expected = before + rows.to_csv(header=False, index=False, columns=list(CSV_COLUMNS)).encode() if whole else before
    assert out.read_bytes() == expected


def test_a_failed_sync_is_undone_and_the_cut_synced(tmp_path, monkeypatch):
    # A network file system or a quota may refuse the data only at fsync, after the write
    # took every byte: the rows are cut off again, and that cut is synced in its turn.
    rows = run_experiment(ExperimentConfig(samples=20, device="cpu", decoders=("argmax", "dark")))
    out = tmp_path / "rows.csv"
    report.append_rows(out, rows, header=True)
    before = out.read_bytes()
    events = []
    real_truncate = os.ftruncate

    def fsync(descriptor):
        events.append("sync")
        if events.count("sync") == 1:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    def ftruncate(descriptor, size):
        events.append(f"cut to {size}")
        real_truncate(descriptor, size)

    monkeypatch.setattr(report.os, "fsync", fsync)
    monkeypatch.setattr(report.os, "ftruncate", ftruncate)
    with pytest.raises(OutputError, match="quota") as caught:
        report.append_rows(out, rows, header=False)
    assert events == ["sync", f"cut to {len(before)}", "sync"]
    assert out.read_bytes() == before
    assert report.remedy(caught.value) == "free some space (or raise the quota)"


# ------------------------------------------------------------------- the sidecar
def test_a_sidecar_that_cannot_be_written_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "s.csv"
    monkeypatch.setattr(report.os, "write", FullDisk(report.temporary_path(tmp_path / "s.json"), part=300))
    result = invoke(*SWEEP, "--out", out)
    assert result.exit_code == 1
    assert result.stderr == f"integral-cli: error: cannot write {tmp_path / 's.json'}: No space left on device\n"
    assert listing(tmp_path) == []


def test_an_interrupt_on_a_full_disk_still_says_interrupted(tmp_path, monkeypatch):
    # Ctrl-C (or a scheduler's SIGTERM) while the disk is too full to mark the sidecar:
    # the interrupt is what the user hears about, and the CSV keeps its whole rows.
    out = tmp_path / "s.csv"
    disk = FullDisk(out, whole=10**6)
    real = sweep_module.run_experiment
    calls = []

    def run_then_interrupt(config, **kwargs):
        calls.append(config)
        if len(calls) == 3:
            disk.full = True
            raise KeyboardInterrupt
        return real(config, **kwargs)

    monkeypatch.setattr(sweep_module, "run_experiment", run_then_interrupt)
    monkeypatch.setattr(report.os, "write", disk)
    result = invoke(*SWEEP, "--out", out)
    assert result.exit_code == 130 and "error" not in result.stderr
    assert f"interrupted; 2 of {CONFIGURATIONS} configurations saved" in result.stderr
    assert len(read_results(out)) == 4 and listing(tmp_path) == ["s.csv", "s.json"]
    assert json.loads((tmp_path / "s.json").read_text())["status"] == "running"


def test_a_sidecar_that_cannot_be_marked_complete(tmp_path, monkeypatch, straight):
    # Every row is saved, only the last update of the sidecar fails: the message says so,
    # and --resume runs nothing but marks it complete.
    out = tmp_path / "s.csv"
    disk = FullDisk(out, whole=10**6)
    real = sweep_module.write_json

    def write_json(path, payload):
        disk.full = payload["status"] == "complete"
        real(path, payload)

    with monkeypatch.context() as patch:
        patch.setattr(report.os, "write", disk)
        patch.setattr(sweep_module, "write_json", write_json)
        result = invoke(*SWEEP, "--out", out)
    assert result.exit_code == 1
    assert f"all {CONFIGURATIONS} configurations are saved in {out}" in result.stderr
    assert "--resume to mark it complete" in result.stderr
    assert listing(tmp_path) == ["s.csv", "s.json"]
    assert_rows_equal(pd.read_csv(out), pd.read_csv(straight))
    resumed = invoke(*SWEEP, "--out", out, "--resume")
    assert resumed.exit_code == 0 and f"0 configurations, {CONFIGURATIONS} already there" in resumed.stderr
    assert json.loads((tmp_path / "s.json").read_text())["status"] == "complete"


# ------------------------------------------------------------ every other writer
@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    directory = tmp_path_factory.mktemp("parts")
    for index in (1, 2):
        result = invoke(*SWEEP, "--shard", f"{index}/2", "--out", directory / f"p{index}.csv")
        assert result.exit_code == 0, result.output
    return [directory / "p1.csv", directory / "p2.csv"]


@pytest.mark.parametrize("failing", ["m.csv", "m.json"])
def test_a_merge_onto_a_full_disk_leaves_nothing(tmp_path, monkeypatch, parts, failing):
    # the merged CSV, or its sidecar after it: either way neither is left, since a merged
    # CSV without its sidecar could be neither resumed nor merged again
    monkeypatch.setattr(report.os, "write", FullDisk(report.temporary_path(tmp_path / failing), part=500))
    result = invoke("merge", tmp_path / "m.csv", *parts)
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    assert result.stderr.count("\n") == 1
    assert listing(tmp_path) == []
    assert listing(parts[0].parent) == ["p1.csv", "p1.json", "p2.csv", "p2.json"]


@pytest.mark.parametrize(
    "command",
    [
        ["compare", "--samples", "20", "--decoders", "argmax", "--device", "cpu"],
        ["map", "--decoder", "argmax", "--image-size", "64x48", "--density", "1", "--device", "cpu"],
        ["bench", "--batch", "8", "--repeat", "1", "--no-baselines", "--decoders", "argmax", "--device", "cpu"],
    ],
    ids=lambda command: command[0],
)
def test_a_csv_onto_a_full_disk_leaves_nothing(tmp_path, monkeypatch, command):
    pictures, tables = tmp_path / "pictures", tmp_path / "tables"
    pictures.mkdir()
    tables.mkdir()
    extra = ["--out", pictures / "map.png"] if command[0] == "map" else []
    monkeypatch.setattr(report.os, "write", FullDisk(report.temporary_path(tables / "t.csv"), part=50))
    result = invoke(*command, *extra, "--csv", tables / "t.csv")
    assert result.exit_code == 1
    assert result.stderr.endswith(f"integral-cli: error: cannot write {tables / 't.csv'}: No space left on device\n")
    assert listing(tables) == []


@pytest.mark.parametrize("command", ["plot", "map"])
def test_a_picture_onto_a_full_disk_leaves_nothing(tmp_path, monkeypatch, straight, command):
    figure = pytest.importorskip("matplotlib.figure")

    def savefig(self, fname, **kwargs):  # the first bytes land, then the disk is full
        with open(fname, "wb") as stream:
            stream.write(b"\x89PNG\r\n\x1a\n")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(figure.Figure, "savefig", savefig)
    out = tmp_path / "p.png"
    if command == "plot":
        result = invoke("plot", straight, "--out", out)
    else:
        result = invoke(
            "map", "--decoder", "argmax", "--image-size", "64x48", "--density", "1", "--device", "cpu", "--out", out
        )
    assert result.exit_code == 1
    assert result.stderr == f"integral-cli: error: cannot write {out}: No space left on device\n"
    assert listing(tmp_path) == []


# ------------------------------------------------- what only an interrupted write leaves
@pytest.mark.parametrize("cut", ["newline", "number", "comma", "first field"])
def test_resume_drops_a_last_row_cut_short(tmp_path, straight, cut):
    # A crash or a power loss during an append, where the append could not undo itself,
    # can leave its last line without a newline. Even with all its fields there its last
    # number may be cut, so it is dropped, and its configuration (the whole of it) runs again.
    out = tmp_path / "s.csv"
    shutil.copy(straight.with_suffix(".json"), out.with_suffix(".json"))
    text = straight.read_bytes()
    last = text.rstrip(b"\n").rfind(b"\n") + 1  # where the last line starts
    end = {
        "newline": len(text) - 1,
        "number": len(text) - 5,
        "comma": text.rfind(b",") + 1,
        "first field": last + 1,
    }[cut]
    out.write_bytes(text[:end])
    result = invoke(*SWEEP, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    lines = 1 + 2 * CONFIGURATIONS
    assert f"integral-cli: warning: {out} line {lines} has no newline" in result.stderr
    assert f"(1 configurations, {CONFIGURATIONS - 1} already there)" in result.stderr
    # the last configuration ran again and went last again: bit-identical to the straight run
    assert_rows_equal(pd.read_csv(out), pd.read_csv(straight))
    assert listing(tmp_path) == ["s.csv", "s.json"]


def test_resume_starts_afresh_after_a_cut_header(tmp_path, straight):
    out = tmp_path / "s.csv"
    shutil.copy(straight.with_suffix(".json"), out.with_suffix(".json"))
    out.write_text("representation,stride,split_ratio,sig")
    result = invoke(*SWEEP, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert "line 1 has no newline" in result.stderr and "starting afresh" in result.stderr
    assert f"({CONFIGURATIONS} configurations)" in result.stderr
    assert_rows_equal(pd.read_csv(out), pd.read_csv(straight))


@pytest.mark.parametrize("also_cut_last", [False, True])
def test_resume_still_refuses_a_malformed_line_elsewhere(tmp_path, straight, also_cut_last):
    # Only the last line can be cut by an interrupted write; a short row anywhere else is
    # damage of another kind: refused with its line number, and the file left untouched.
    out = tmp_path / "s.csv"
    shutil.copy(straight.with_suffix(".json"), out.with_suffix(".json"))
    lines = lines_of(straight)
    lines[3] = lines[3][:50] + b"\n"
    damaged = b"".join(lines)
    if also_cut_last:
        damaged = damaged[:-30]
    out.write_bytes(damaged)
    result = invoke(*SWEEP, "--out", out, "--resume")
    assert result.exit_code == 2 and "line 4" in result.stderr and "Traceback" not in result.output
    assert out.read_bytes() == damaged
    assert listing(tmp_path) == ["s.csv", "s.json"]


def test_other_readers_still_refuse_a_cut_row_and_say_how_to_repair_it(tmp_path, straight):
    out = tmp_path / "s.csv"
    out.write_bytes(straight.read_bytes()[:-10])
    result = invoke("plot", out, "--out", tmp_path / "p.png")
    assert result.exit_code == 2
    assert f"ends in a partial row (line {1 + 2 * CONFIGURATIONS})" in result.stderr
    assert "resuming its sweep drops it" in result.stderr


# ------------------------------------------------------------------- for real
def test_a_real_file_size_limit(tmp_path, straight):
    # The kernel itself refuses to grow the CSV past RLIMIT_FSIZE (which any process may
    # lower for itself): a short write, then EFBIG (Python ignores SIGXFSZ). The limit is
    # above the sidecar's size and in the middle of the sweep's CSV.
    resource = pytest.importorskip("resource")
    lines = lines_of(straight)
    limit = len(b"".join(lines[:10])) + 100  # within configuration 5's second row
    out = tmp_path / "s.csv"

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    process = subprocess.run(
        [sys.executable, "-m", "integral_cli", *SWEEP, "--out", str(out)],
        preexec_fn=limited,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 1, process.stderr
    assert process.stderr.count("\n") == 1 and "File too large" in process.stderr
    assert "4 of 8 configurations are; raise the file size limit, then run the same command with --resume" in (
        process.stderr
    )
    saved = read_results(out)  # whole rows only, or this raises
    assert out.read_bytes().endswith(b"\n") and len(saved) == 8
    assert_rows_equal(saved, pd.read_csv(straight).iloc[:8])
    assert listing(tmp_path) == ["s.csv", "s.json"]
    resumed = invoke(*SWEEP, "--out", out, "--resume")
    assert resumed.exit_code == 0 and "4 already there" in resumed.stderr
    assert_rows_equal(pd.read_csv(out), pd.read_csv(straight))


def test_every_row_the_tool_writes_ends_in_a_newline(straight):
    # what drop_cut_row relies on: a line without one can only be a cut row
    text = straight.read_text()
    assert text.endswith("\n") and "\r" not in text
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)


def test_a_write_syncs_the_file_then_its_directory_under_this_process_s_own_name(tmp_path, monkeypatch):
    # the file's bytes, then the rename (the directory entry), reach the disk; the
    # temporary name carries the process id, so two runs writing one file do not collide
    import stat

    synced = []
    real_fsync = os.fsync

    def fsync(descriptor):
        synced.append("directory" if stat.S_ISDIR(os.fstat(descriptor).st_mode) else "file")
        real_fsync(descriptor)

    monkeypatch.setattr(report.os, "fsync", fsync)
    report.write_bytes(tmp_path / "a.bin", b"abc")
    assert synced == ["file", "directory"]
    assert (tmp_path / "a.bin").read_bytes() == b"abc" and listing(tmp_path) == ["a.bin"]
    assert str(os.getpid()) in report.temporary_path(tmp_path / "a.bin").name
