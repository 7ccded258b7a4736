"""Nothing lost, bad input refused clearly, sweeps split across machines."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from integral_cli import ExperimentConfig, run_experiment
from integral_cli import experiment as experiment_module
from integral_cli.cli import app
from integral_cli.errors import InputFileError, OutOfMemoryError
from integral_cli.report import CSV_COLUMNS, read_results

from support import assert_rows_equal

runner = CliRunner()
SWEEP = [
    "sweep",
    "--strides",
    "1,2,4,8",
    "--sigmas",
    "1,2",
    "--samples",
    "300",
    "--decoders",
    "argmax,dark",
    "--device",
    "cpu",
]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def without_seconds(path):
    return pd.read_csv(path).drop(columns="seconds")


# ------------------------------------------------------------------- kill and resume
def test_sigkill_leaves_whole_rows_and_resume_completes_it(tmp_path):
    out = tmp_path / "killed.csv"
    # stride 1 with a tiny budget makes each configuration take a while
    args = [*SWEEP, "--sigmas", "1,1.5,2,2.5", "--max-memory", "8", "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "integral_cli", *args], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 3:  # header + one configuration
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = read_results(out)  # whole rows only, or this raises
    assert len(partial) % 2 == 0 and 2 <= len(partial) < 32
    assert json.loads(out.with_suffix(".json").read_text())["status"] == "running"

    resumed = invoke(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert f"{len(partial) // 2} already there" in resumed.stderr
    reference = tmp_path / "straight.csv"
    assert invoke(*args[:-1], reference).exit_code == 0
    # the same configurations, chunks and operations: bit-identical
    assert_rows_equal(pd.read_csv(out), pd.read_csv(reference))


def test_resume_refuses_other_settings_and_names_them(tmp_path):
    out = tmp_path / "s.csv"
    assert invoke(*SWEEP, "--out", out).exit_code == 0
    result = invoke(*SWEEP, "--samples", "301", "--seed", "3", "--out", out, "--resume")
    assert result.exit_code == 2
    assert "samples: 300 then 301" in result.stderr and "seed: 0 then 3" in result.stderr


def test_resume_of_a_finished_sweep_runs_nothing(tmp_path):
    out = tmp_path / "s.csv"
    assert invoke(*SWEEP, "--out", out).exit_code == 0
    before = out.read_text()
    result = invoke(*SWEEP, "--out", out, "--resume", "--max-memory", "64")  # the budget may change
    assert result.exit_code == 0 and "0 configurations, 8 already there" in result.stderr
    assert out.read_text() == before


def test_resume_without_a_csv_starts_afresh(tmp_path):
    out = tmp_path / "s.csv"
    assert invoke(*SWEEP, "--out", out, "--resume").exit_code == 0
    assert len(pd.read_csv(out)) == 16


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda text: "", "is empty"),
        # a row cut short with more after it is not what an interrupted write leaves (that
        # is a last line without its newline, which --resume drops: tests/test_full_disk.py)
        (lambda text: text.replace("\n", "\nheatmap,4,,1.0,heatmap,1.0\n", 1), "partial row at line 2"),
        (lambda text: text.replace("mean_error,", "mean_err,", 1), "missing mean_error"),
        (lambda text: "a,b\n1,2\n", "does not have the results columns"),
    ],
)
def test_resume_refuses_a_damaged_csv(tmp_path, damage, message):
    out = tmp_path / "s.csv"
    assert invoke(*SWEEP, "--strides", "4", "--out", out).exit_code == 0
    out.write_text(damage(out.read_text()))
    result = invoke(*SWEEP, "--strides", "4", "--out", out, "--resume")
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output


def test_resume_refuses_without_a_sidecar(tmp_path):
    out = tmp_path / "s.csv"
    assert invoke(*SWEEP, "--strides", "4", "--out", out).exit_code == 0
    out.with_suffix(".json").unlink()
    result = invoke(*SWEEP, "--strides", "4", "--out", out, "--resume")
    assert result.exit_code == 2 and "needed to check the settings" in result.stderr


def test_read_results_names_a_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        read_results(tmp_path / "nope.csv")


# ------------------------------------------------------------------------ out of memory
def test_out_of_memory_halves_the_chunk_and_gives_the_same_numbers(monkeypatch):
    config = ExperimentConfig(samples=200, device="cpu", decoders=("argmax", "dark"), dtype="float64")
    expected = run_experiment(config)
    real = experiment_module.decode_counted
    seen = []

    def decode_with_little_memory(maps, method, **params):
        seen.append(maps.shape[0])
        if maps.shape[0] > 50:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(maps, method, **params)

    monkeypatch.setattr(experiment_module, "decode_counted", decode_with_little_memory)
    warnings = []
    got = run_experiment(config, on_warning=warnings.append)
    assert warnings == [
        "cpu ran out of memory; retrying with chunks of 100 maps",
        "cpu ran out of memory; retrying with chunks of 50 maps",
    ]
    assert max(seen[2:]) <= 50
    # chunks of 50 instead of 200: float64 batched kernels may sum in another order,
    # about 3072 eps ~ 1e-12 relative on a decoded point; 1e-9 leaves a wide margin
    assert_rows_equal(got, expected, rtol=1e-9)


def test_out_of_memory_for_one_map_is_an_error(monkeypatch):
    def no_memory(maps, method, **params):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1000 bytes")

    monkeypatch.setattr(experiment_module, "decode_counted", no_memory)
    with pytest.raises(OutOfMemoryError, match="even for one 64x48 map"):
        run_experiment(ExperimentConfig(samples=4, device="cpu"))
    result = invoke("compare", "--samples", "4", "--device", "cpu")
    assert result.exit_code == 1 and "even for one" in result.stderr


def test_other_errors_are_not_mistaken_for_out_of_memory(monkeypatch):
    def broken(maps, method, **params):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(experiment_module, "decode_counted", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_experiment(ExperimentConfig(samples=4, device="cpu"))


# ----------------------------------------------------------------------- shards, merge
def test_shards_merged_equal_the_unsharded_sweep(tmp_path):
    parts = []
    for index in (1, 2, 3):
        part = tmp_path / f"part{index}.csv"
        assert invoke(*SWEEP, "--shard", f"{index}/3", "--out", part).exit_code == 0
        assert json.loads(part.with_suffix(".json").read_text())["shard"] == f"{index}/3"
        parts.append(part)
    assert sum(len(pd.read_csv(p)) for p in parts) == 16
    assert invoke(*SWEEP, "--out", tmp_path / "whole.csv").exit_code == 0
    result = invoke("merge", tmp_path / "merged.csv", *parts)
    assert result.exit_code == 0 and "8 of 8 configurations present" in result.stderr
    # each configuration is computed by the same operations in a shard as in the whole
    assert_rows_equal(pd.read_csv(tmp_path / "merged.csv"), pd.read_csv(tmp_path / "whole.csv"))
    assert json.loads((tmp_path / "merged.json").read_text())["status"] == "complete"


def test_merge_reports_missing_configurations(tmp_path):
    part = tmp_path / "part1.csv"
    assert invoke(*SWEEP, "--shard", "1/4", "--out", part).exit_code == 0
    result = invoke("merge", tmp_path / "merged.csv", part)
    assert result.exit_code == 0
    assert "2 of 8 configurations present" in result.stderr and "6 configurations missing" in result.stderr
    assert json.loads((tmp_path / "merged.json").read_text())["status"] == "incomplete"


def test_merge_refuses_duplicates_and_other_settings(tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    assert invoke(*SWEEP, "--shard", "1/2", "--out", a).exit_code == 0
    assert invoke(*SWEEP, "--out", b).exit_code == 0
    assert invoke(*SWEEP, "--shard", "2/2", "--seed", "1", "--out", c).exit_code == 0
    duplicate = invoke("merge", tmp_path / "m.csv", a, b)
    assert duplicate.exit_code == 2 and "both hold" in duplicate.stderr
    other = invoke("merge", tmp_path / "m.csv", a, c)
    assert other.exit_code == 2 and "seed: 0 then 1" in other.stderr
    assert not (tmp_path / "m.csv").exists()


@pytest.mark.parametrize("shard", ["0/3", "4/3", "1", "a/b", "1/0"])
def test_bad_shard(tmp_path, shard):
    result = invoke(*SWEEP, "--shard", shard, "--out", tmp_path / "s.csv")
    assert result.exit_code == 2 and "shard" in result.stderr


# --------------------------------------------------------------- random bad options
_numbers = st.one_of(
    st.integers(-5, 300), st.floats(allow_nan=True, allow_infinity=True), st.just("x"), st.just(""), st.just("1e400")
)
_options = st.fixed_dictionaries(
    {},
    optional={
        "--stride": _numbers,
        "--sigma": _numbers,
        "--amplitude": _numbers,
        "--beta": _numbers,
        "--samples": st.one_of(st.integers(-3, 40), st.just("many")),
        "--margin": _numbers,
        "--image-size": st.sampled_from(["64x48", "32x32", "0x0", "30x30", "x", "64x", "1x1", "8x8"]),
        "--decoders": st.sampled_from(["argmax", "dark,integral", "", "nope", "argmax,argmax"]),
        "--encoder": st.sampled_from(["gaussian", "msra", "logit", "box"]),
        "--noise": _numbers,
        "--position": st.sampled_from(["interior", "border", "anywhere", "edge"]),
        "--sampling": st.sampled_from(["random", "grid", "lattice"]),
        "--grid-size": _numbers,
        "--dtype": st.sampled_from(["float32", "float16", "bfloat16", "int8"]),
        "--dark-kernel": st.sampled_from(["11", "auto", "4", "-1"]),
        "--window-radius": _numbers,
        "--max-memory": _numbers,
        "--device": st.sampled_from(["cpu", "auto", "cuda", "tpu"]),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=_options, command=st.sampled_from(["compare", "sweep"]))
def test_random_options_never_crash(tmp_path_factory, options, command):
    out = tmp_path_factory.mktemp("run") / "out.csv"
    args = [command, "--samples", "8", "--image-size", "32x32"]
    for name, value in options.items():
        if command == "sweep":
            name = {
                "--stride": "--strides",
                "--sigma": "--sigmas",
                "--amplitude": "--amplitudes",
                "--beta": "--betas",
                "--encoder": "--encoders",
                "--noise": "--noises",
                "--position": "--positions",
                "--sampling": "--samplings",
                "--dtype": "--dtypes",
            }.get(name, name)
        args += [name, str(value)]
    if command == "sweep" and "--strides" not in args:
        args += ["--strides", "4"]
    args += ["--out" if command == "sweep" else "--csv", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code in (0, 1, 2), (args, result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    if result.exit_code == 0:
        frame = pd.read_csv(out)
        assert tuple(frame.columns) == CSV_COLUMNS and len(frame) >= 1


# ------------------------------------------------------------------ review follow-ups
def test_sigterm_ends_a_sweep_like_ctrl_c(tmp_path):
    out = tmp_path / "t.csv"
    args = [*SWEEP, "--sigmas", "1,1.5,2,2.5", "--max-memory", "8", "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "integral_cli", *args], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") >= 3):
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "--resume" in stderr
    assert json.loads(out.with_suffix(".json").read_text())["status"] == "interrupted"
    read_results(out)


def test_resume_refuses_repeated_rows(tmp_path):
    out = tmp_path / "s.csv"
    assert invoke(*SWEEP, "--strides", "4", "--out", out).exit_code == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines + lines[1:2]))
    result = invoke(*SWEEP, "--strides", "4", "--out", out, "--resume")
    assert result.exit_code == 2 and "twice" in result.stderr


@pytest.mark.parametrize("sidecar", ['{"settings": [], "grid": []}', '{"settings": {}, "grid": {}}', "not json"])
def test_a_malformed_sidecar_is_refused(tmp_path, sidecar):
    out = tmp_path / "s.csv"
    assert invoke(*SWEEP, "--strides", "4", "--out", out).exit_code == 0
    out.with_suffix(".json").write_text(sidecar)
    for result in (
        invoke(*SWEEP, "--strides", "4", "--out", out, "--resume"),
        invoke("merge", tmp_path / "m.csv", out),
    ):
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output


def test_a_csv_with_words_for_numbers_is_refused(tmp_path):
    out = tmp_path / "s.csv"
    assert invoke(*SWEEP, "--strides", "4", "--out", out).exit_code == 0
    lines = out.read_text().splitlines(keepends=True)
    representation, _, rest = lines[1].partition(",")
    lines[1] = representation + ",abc" + rest[rest.index(",") :]
    out.write_text("".join(lines))
    result = invoke("plot", out)
    assert result.exit_code == 2 and "line 2: stride is not a number" in result.stderr


def test_merge_never_overwrites_a_parts_sidecar(tmp_path):
    part = tmp_path / "p.csv"
    assert invoke(*SWEEP, "--strides", "4", "--out", part).exit_code == 0
    before = part.with_suffix(".json").read_text()
    result = invoke("merge", tmp_path / "p.tsv", part, "--force")
    assert result.exit_code == 2 and part.with_suffix(".json").read_text() == before


def test_map_with_nothing_finite_is_an_error():
    result = invoke(
        "map",
        "--decoder",
        "integral-l1",
        "--encoder",
        "logit",
        "--image-size",
        "32x32",
        "--out",
        "never.png",
        "--device",
        "cpu",
    )
    assert result.exit_code == 1 and "no finite result" in result.stderr


def test_compare_reports_out_of_memory_retries(monkeypatch):
    real = experiment_module.decode_counted

    def decode_with_little_memory(maps, method, **params):
        if maps.shape[0] > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(maps, method, **params)

    monkeypatch.setattr(experiment_module, "decode_counted", decode_with_little_memory)
    result = invoke("compare", "--samples", "20", "--decoders", "argmax", "--device", "cpu")
    assert result.exit_code == 0 and "retrying with chunks of 10 maps" in result.stderr


# ------------------------------------------------------ a configuration missing a row
@pytest.mark.parametrize("which", ["last", "middle"])
def test_resume_reruns_a_configuration_missing_one_decoder_row(tmp_path, which):
    # A configuration counts as done only when every decoder's row is there: one with a
    # row missing (a hand-edited file) is dropped and run again, its other rows too.
    args = [*SWEEP[:-4], "--decoders", "argmax,dark,integral", "--device", "cpu", "--strides", "2,4"]
    straight, out = tmp_path / "straight.csv", tmp_path / "s.csv"
    assert invoke(*args, "--out", straight).exit_code == 0
    assert invoke(*args, "--out", out).exit_code == 0
    lines = out.read_text().splitlines(keepends=True)
    # rows 1-3: stride 2, sigma 1 (argmax, dark, integral); drop one of them
    dropped = lines.pop(3 if which == "last" else 2)
    assert dropped.startswith("heatmap,2,,1.0,")
    out.write_text("".join(lines))

    result = invoke(*args, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert "wrote 3 rows (1 configurations, 3 already there)" in result.stderr
    resumed = pd.read_csv(out)
    assert len(resumed) == 12
    # the rerun configuration's rows come last, in decoder order; sorted like the
    # uninterrupted run, every row is the same (same operations on the same data)
    assert resumed[["stride", "sigma"]].iloc[-3:].drop_duplicates().values.tolist() == [[2, 1.0]]
    assert resumed.decoder.iloc[-3:].tolist() == ["argmax", "dark", "integral"]
    order = ["stride", "sigma", "decoder"]
    assert_rows_equal(resumed.sort_values(order), pd.read_csv(straight).sort_values(order))


# ------------------------------------------------------------ the write guarantee
@pytest.mark.parametrize("short", [None, 7])
def test_append_rows_is_one_write_and_one_fsync(tmp_path, monkeypatch, short):
    # A configuration's rows go out in one write (a killed process cannot leave a write to
    # a regular file half done), then one fsync. A short write (the kernel may take fewer
    # bytes than asked) is continued until every byte is out.
    from integral_cli import report

    writes, syncs = [], []
    real_write = os.write

    def write(descriptor, data):
        data = bytes(data)
        taken = data if short is None else data[:short]
        writes.append(taken)
        return real_write(descriptor, taken)

    monkeypatch.setattr(report.os, "write", write)
    monkeypatch.setattr(report.os, "fsync", lambda descriptor: syncs.append(descriptor))
    rows = run_experiment(ExperimentConfig(samples=20, device="cpu", decoders=("argmax", "dark", "integral")))
    out = tmp_path / "rows.csv"
    report.append_rows(out, rows, header=True)
    text = out.read_text()
    expected = rows.to_csv(index=False, columns=list(CSV_COLUMNS))
    assert text == expected and len(syncs) == 1
    if short is None:
        assert len(writes) == 1
    else:
        assert len(writes) == -(-len(expected.encode()) // short)  # every byte, in order
    report.append_rows(out, rows, header=False)
    assert len(syncs) == 2 and out.read_text() == expected + expected.split("\n", 1)[1]


# ------------------------------------------------------- out of memory anywhere
def test_out_of_memory_outside_the_chunks_is_one_line(monkeypatch):
    def no_memory(offsets, stride):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total ...")

    monkeypatch.setattr(experiment_module, "summarize_offsets", no_memory)
    with pytest.raises(OutOfMemoryError, match=r"^cpu ran out of memory \(CUDA out of memory\); lower max_memory_mib"):
        run_experiment(ExperimentConfig(samples=4, device="cpu", decoders=("argmax",)))
    result = invoke("compare", "--samples", "4", "--decoders", "argmax", "--device", "cpu")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr == (
        "integral-cli: error: cpu ran out of memory (CUDA out of memory); lower --max-memory or --samples, "
        "or use another --device\n"
    )


def test_out_of_memory_the_library_did_not_catch_is_one_line_too(monkeypatch):
    # the command line's last line of defence, for an allocation outside the library
    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("integral_cli.cli.experiments.error_table", no_memory)
    result = invoke("compare", "--samples", "4", "--decoders", "argmax", "--device", "cpu")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("integral-cli: error: out of memory (MemoryError)")
    assert result.stderr.count("\n") == 1


def test_a_halved_chunk_frees_memory_after_the_except_block(monkeypatch):
    real = experiment_module.decode_counted
    released = []

    def decode_with_little_memory(maps, method, **params):
        if maps.shape[0] > 10:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(maps, method, **params)

    monkeypatch.setattr(experiment_module, "decode_counted", decode_with_little_memory)
    monkeypatch.setattr(experiment_module, "release_cached_memory", lambda device: released.append(sys.exc_info()[0]))
    run_experiment(ExperimentConfig(samples=20, device="cpu", decoders=("argmax",)))
    # with no exception being handled, the failed chunk's traceback (and its maps) is gone
    assert released == [None]


# ------------------------------------------------------------ one device per file
def run_on(monkeypatch, gpu, *args):
    """``invoke(*args)`` on a machine whose GPU is ``gpu`` (``None``: no GPU)."""
    with monkeypatch.context() as patch:
        if gpu is not None:
            patch.setattr(torch.cuda, "is_available", lambda: True)
            patch.setattr(torch.cuda, "current_device", lambda: 0)
            patch.setattr(torch.cuda, "device_count", lambda: 1)
            patch.setattr(torch.cuda, "get_device_name", lambda device=None: gpu)
            # the numbers themselves are computed on the CPU here: only the label matters
            patch.setattr("integral_cli.experiment.resolve_device", lambda spec: torch.device("cpu"))
        return invoke(*args)


SMALL_SWEEP = ["sweep", "--strides", "4,8", "--samples", "40", "--decoders", "argmax", "--device", "auto"]


def test_resume_refuses_another_device_unless_allowed(tmp_path, monkeypatch):
    out = tmp_path / "s.csv"
    assert run_on(monkeypatch, "NVIDIA A100", *SMALL_SWEEP, "--shard", "1/1", "--out", out).exit_code == 0
    pd.read_csv(out).iloc[:1].to_csv(out, index=False)  # as if interrupted after one configuration
    for gpu, model in ((None, "cpu"), ("NVIDIA H100", "cuda (NVIDIA H100)")):
        refused = run_on(monkeypatch, gpu, *SMALL_SWEEP, "--out", out, "--resume")
        assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
        assert f"on another device (cuda (NVIDIA A100) then {model})" in refused.stderr
        assert "--allow-mixed-devices" in refused.stderr
    # another A100 (or the same one under another index) is the same device
    assert run_on(monkeypatch, "NVIDIA A100", *SMALL_SWEEP, "--out", out, "--resume").exit_code == 0
    pd.read_csv(out).iloc[:1].to_csv(out, index=False)
    allowed = run_on(monkeypatch, None, *SMALL_SWEEP, "--out", out, "--resume", "--allow-mixed-devices")
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(out.with_suffix(".json").read_text())["devices"] == ["cuda (NVIDIA A100)", "cpu"]


def test_merge_refuses_parts_from_different_devices_unless_allowed(tmp_path, monkeypatch):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert run_on(monkeypatch, "NVIDIA A100", *SMALL_SWEEP, "--shard", "1/2", "--out", a).exit_code == 0
    assert run_on(monkeypatch, None, *SMALL_SWEEP, "--shard", "2/2", "--out", b).exit_code == 0
    refused = invoke("merge", tmp_path / "m.csv", a, b)
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert "ran on different devices (cuda (NVIDIA A100) then cpu)" in refused.stderr
    assert not (tmp_path / "m.csv").exists()
    allowed = invoke("merge", tmp_path / "m.csv", a, b, "--allow-mixed-devices")
    assert allowed.exit_code == 0, allowed.output
    assert json.loads((tmp_path / "m.json").read_text())["devices"] == ["cuda (NVIDIA A100)", "cpu"]


def test_a_sidecar_from_before_devices_were_recorded_names_its_device(tmp_path):
    from integral_cli.sweep import mixed_devices, sidecar_devices

    old = {"device": "cuda:1", "device_name": "cuda:1 (NVIDIA A100)"}
    assert sidecar_devices(old) == ["cuda (NVIDIA A100)"]
    assert mixed_devices(old, {"devices": ["cuda (NVIDIA A100)"]}) is None
    assert mixed_devices(old, {"devices": ["cpu"]}) == "cuda (NVIDIA A100) then cpu"
