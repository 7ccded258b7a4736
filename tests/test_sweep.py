"""Sweeps from the library side: shards, configuration keys, resuming and merging.

Every sweep here is small (128x128 images, a few samples), so a run of four
configurations takes a fraction of a second. Results computed by the same operations on
the same data (a configuration in a shard and in the whole grid, a resumed run against
an uninterrupted one) are compared bit for bit.
"""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from integral_cli.errors import ConfigError, InputFileError, OutputPathError
from integral_cli.experiment import ExperimentConfig
from integral_cli.sweep import (
    GRID_AXES,
    Shard,
    SweepConfig,
    configuration_key,
    merge_results,
    read_sweep_sidecar,
    run_sweep,
    setting_differences,
)

from support import assert_rows_equal

BASE = ExperimentConfig(samples=6, image_size=(128, 128), decoders=("dark", "argmax"), device="cpu")
# four configurations in grid order: (4, 1.0), (4, 2.0), (8, 1.0), (8, 2.0)
SWEEP = SweepConfig(BASE, (("stride", (4, 8)), ("sigma", (1.0, 2.0))))


def keys_of(frame):
    return [(int(row["stride"]), float(row["sigma"]), row["decoder"]) for _, row in frame.iterrows()]


GRID_ORDER = [
    (4, 1.0, "dark"),
    (4, 1.0, "argmax"),
    (4, 2.0, "dark"),
    (4, 2.0, "argmax"),
    (8, 1.0, "dark"),
    (8, 1.0, "argmax"),
    (8, 2.0, "dark"),
    (8, 2.0, "argmax"),
]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The whole grid in one uninterrupted run: the reference for resumes and merges."""
    out = tmp_path_factory.mktemp("straight") / "whole.csv"
    progress = run_sweep(SWEEP, out)
    assert (progress.total, progress.skipped, progress.written) == (4, 0, 4)
    return pd.read_csv(out)


# ---------------------------------------------------------------------------- shards
def test_shard_default_is_the_whole_grid():
    assert (Shard().index, Shard().count) == (1, 1)
    assert Shard().select(list(range(5))) == [0, 1, 2, 3, 4]


def test_shard_parse_and_str_mirror_each_other():
    shard = Shard.parse("2/8")
    assert (shard.index, shard.count) == (2, 8) and str(shard) == "2/8"
    assert Shard.parse(str(Shard(3, 3))) == Shard(3, 3)


@pytest.mark.parametrize("text", ["3", "1/2/3", "a/b", "1/", ""])
def test_shard_parse_refuses_other_shapes(text):
    with pytest.raises(ConfigError, match=rf"^shard must look like i/n, e.g. 2/8, or auto, got {text!r}$"):
        Shard.parse(text)


@pytest.mark.parametrize("index, count", [(0, 3), (4, 3), (1, 0), (-1, 2)])
def test_shard_refuses_an_index_outside_one_to_count(index, count):
    with pytest.raises(ConfigError, match=rf"shard must be i/n with 1 <= i <= n, got {index}/{count}$"):
        Shard(index, count)


def test_shards_partition_the_grid_in_round_robin_order():
    items = list(range(11))
    assert Shard(1, 3).select(items) == [0, 3, 6, 9]
    assert Shard(2, 3).select(items) == [1, 4, 7, 10]
    assert Shard(3, 3).select(items) == [2, 5, 8]


# ------------------------------------------------------------------ configuration keys
def test_configuration_key_is_the_value_of_every_axis_in_grid_order():
    values = {field: f"{field}-value" for field in GRID_AXES}
    values["representation"] = "heatmap"
    values["decode_convention"] = "corner"
    values["unrelated"] = "ignored"
    # split_ratio is SimCC's: a heatmap configuration has none
    special = {"representation": "heatmap", "decode_convention": "corner", "split_ratio": None}
    expected = tuple(special.get(f, f"{f}-value") for f in GRID_AXES)
    assert configuration_key(values) == expected


def test_configuration_key_resolves_same_to_the_encoding_convention():
    values = dict.fromkeys(GRID_AXES, 1) | {"convention": "udp", "decode_convention": "same"}
    key = configuration_key(values)
    assert key[list(GRID_AXES).index("decode_convention")] == "udp"


def test_configuration_key_of_a_csv_row_equals_that_of_its_config():
    # a CSV row holds numpy scalars; the key holds plain numbers equal to the config's
    config = dataclasses.asdict(BASE)
    row = {
        field: (np.float64(v) if isinstance(v, float) else np.int64(v) if isinstance(v, int) else v)
        for field, v in config.items()
    }
    key = configuration_key(row)
    assert key == configuration_key(config)
    assert all(type(value) in (int, float, str, type(None)) for value in key)


# ---------------------------------------------------------------- settings and sidecars
def test_setting_differences_lists_every_change_by_name():
    old = {"settings": {"samples": 300, "seed": 0, "max_memory_mib": 64}, "grid": {"stride": [4]}, "shard": "1/2"}
    new = {
        "settings": {"samples": 301, "seed": 0, "max_memory_mib": 8, "noise": 0.1},
        "grid": {"stride": [4, 8]},
        "shard": "1/2",
    }
    assert setting_differences(old, new) == [
        "noise: None then 0.1",
        "samples: 300 then 301",
        "stride: [4] then [4, 8]",
    ]
    assert setting_differences(old, old) == []


def test_setting_differences_compares_shards_unless_told_not_to():
    old, new = {"shard": "1/2"}, {"shard": "2/2"}
    assert setting_differences(old, new) == ["shard: '1/2' then '2/2'"]
    assert setting_differences(old, new, shard=False) == []
    # a merged sidecar has no shard: the same as the whole grid
    assert setting_differences({"shard": None}, {"shard": "1/1"}) == []
    assert setting_differences({"shard": "1/1"}, {}) == []
    assert setting_differences({}, {"shard": "1/2"}) == ["shard: None then '1/2'"]


def sidecar_payload():
    return {"settings": {"decoders": ["argmax"]}, "grid": {axis: [1] for axis in GRID_AXES}}


def test_read_sweep_sidecar_gives_a_complete_sidecar_back(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(sidecar_payload()))
    assert read_sweep_sidecar(path) == sidecar_payload()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.update(settings=[]), "has no settings with a list of decoders"),
        (lambda p: p["settings"].update(decoders="argmax"), "has no settings with a list of decoders"),
        (lambda p: p.update(grid=[]), "has no grid values for " + ", ".join(GRID_AXES) + "$"),
        (lambda p: p["grid"].pop("sigma"), "has no grid values for sigma$"),
        (lambda p: p["grid"].update(stride=4, dtype="float32"), "has no grid values for stride, dtype$"),
        (lambda p: p["grid"].update(noise=[]), "has no grid values for some axes$"),
    ],
)
def test_read_sweep_sidecar_names_what_is_missing(tmp_path, change, message):
    payload = sidecar_payload()
    change(payload)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(InputFileError, match=message):
        read_sweep_sidecar(path)


# ---------------------------------------------------------------------------- resume
def cut_after(path, rows):
    """Keep the header and the first ``rows`` rows, as a sweep killed there leaves it."""
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: 1 + rows]))


def test_resume_runs_only_the_missing_configurations(tmp_path, straight):
    out = tmp_path / "s.csv"
    run_sweep(SWEEP, out)
    # the first run's start and an earlier resume, dated so that no clock can match them
    sidecar = json.loads(out.with_suffix(".json").read_text())
    sidecar.update(started="2000-01-01T00:00:00+00:00", resumed=["2000-01-02T00:00:00+00:00"])
    out.with_suffix(".json").write_text(json.dumps(sidecar))
    cut_after(out, 6)  # three whole configurations
    progress = run_sweep(SWEEP, out, resume=True)
    assert (progress.total, progress.skipped, progress.written) == (4, 3, 1)
    assert_rows_equal(pd.read_csv(out), straight)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["started"] == "2000-01-01T00:00:00+00:00"
    assert sidecar["resumed"][0] == "2000-01-02T00:00:00+00:00" and sidecar["resumed"][1] > "2020"
    assert sidecar["status"] == "complete" and sidecar["configurations_done"] == 4
    # a second resume has nothing to do, and records that it came
    progress = run_sweep(SWEEP, out, resume=True)
    assert (progress.skipped, progress.written) == (4, 0)
    assert len(json.loads(out.with_suffix(".json").read_text())["resumed"]) == 3
    assert_rows_equal(pd.read_csv(out), straight)


def test_resume_reruns_a_configuration_missing_a_decoder_row(tmp_path, straight):
    out = tmp_path / "s.csv"
    run_sweep(SWEEP, out)
    lines = out.read_text().splitlines(keepends=True)
    del lines[1]  # the first configuration's dark row: its argmax row must go as well
    out.write_text("".join(lines))
    progress = run_sweep(SWEEP, out, resume=True)
    assert (progress.skipped, progress.written) == (3, 1)
    got = pd.read_csv(out)
    assert keys_of(got) == GRID_ORDER[2:] + GRID_ORDER[:2]
    assert_rows_equal(got, straight.iloc[[2, 3, 4, 5, 6, 7, 0, 1]])


def test_resume_appends_to_a_csv_of_whole_configurations_without_rewriting_it(tmp_path, straight):
    out = tmp_path / "s.csv"
    run_sweep(SWEEP, out)
    cut_after(out, 4)
    inode = out.stat().st_ino
    run_sweep(SWEEP, out, resume=True)
    # a rewrite goes through a new file and a rename, which a new inode would show
    assert out.stat().st_ino == inode
    assert_rows_equal(pd.read_csv(out), straight)


def test_resume_refuses_other_settings_and_names_them(tmp_path):
    out = tmp_path / "s.csv"
    run_sweep(SWEEP, out)
    other = SweepConfig(dataclasses.replace(BASE, samples=7, seed=3), SWEEP.axes)
    with pytest.raises(
        ConfigError,
        match=r"cannot resume .*s\.csv: it was made with other settings "
        r"\(samples: 6 then 7; seed: 0 then 3\)",
    ):
        run_sweep(other, out, resume=True)
    with pytest.raises(ConfigError, match=r"\(shard: '1/1' then '1/2'\)"):
        run_sweep(SWEEP, out, resume=True, shard=Shard(1, 2))


def test_resume_accepts_another_memory_budget(tmp_path, straight):
    out = tmp_path / "s.csv"
    run_sweep(SWEEP, out)
    cut_after(out, 2)
    other = SweepConfig(dataclasses.replace(BASE, max_memory_mib=64.0), SWEEP.axes)
    assert run_sweep(other, out, resume=True).written == 3
    # the budget sets the chunk size; with 6 samples every chunk holds all of them
    assert_rows_equal(pd.read_csv(out), straight)


def test_resume_refuses_rows_of_another_grid_and_repeated_rows(tmp_path):
    out = tmp_path / "s.csv"
    run_sweep(SWEEP, out)
    text = out.read_text()
    lines = text.splitlines(keepends=True)
    out.write_text("".join(lines + lines[3:4]))
    with pytest.raises(InputFileError, match=r"s\.csv holds stride=4, sigma=2\.0 twice; remove the repeated rows"):
        run_sweep(SWEEP, out, resume=True)
    edited = text.replace("\nheatmap,8,,2.0,", "\nheatmap,2,,2.0,", 1)
    assert edited != text
    out.write_text(edited)
    with pytest.raises(
        InputFileError,
        match=r"s\.csv holds a configuration this sweep does not have "
        r"\(stride=2, sigma=2\.0\)",
    ):
        run_sweep(SWEEP, out, resume=True)


def test_resume_without_a_csv_starts_afresh(tmp_path, straight):
    out = tmp_path / "s.csv"
    progress = run_sweep(SWEEP, out, resume=True)
    assert (progress.skipped, progress.written) == (0, 4)
    assert_rows_equal(pd.read_csv(out), straight)
    assert "resumed" not in json.loads(out.with_suffix(".json").read_text())


# ----------------------------------------------------------------------------- merge
@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    folder = tmp_path_factory.mktemp("halves")
    parts = []
    for index in (1, 2):
        part = folder / f"part{index}.csv"
        run_sweep(SWEEP, part, shard=Shard(index, 2))
        parts.append(part)
    return parts


def test_merge_puts_the_shards_back_in_grid_and_decoder_order(tmp_path, halves, straight):
    out = tmp_path / "m.csv"
    report = merge_results(out, halves[::-1], command_line=["merge", "m.csv"])
    assert (report.rows, report.configurations, report.missing) == (8, 4, [])
    got = pd.read_csv(out)
    assert keys_of(got) == GRID_ORDER
    # each configuration is computed by the same operations in a shard as in the whole
    assert_rows_equal(got, straight)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["status"] == "complete" and sidecar["shard"] is None
    assert sidecar["parts"] == [str(p) for p in halves[::-1]] and sidecar["command"] == ["merge", "m.csv"]
    assert sidecar["configurations"] == 4 and sidecar["configurations_done"] == 4
    assert sidecar["settings"]["decoders"] == ["dark", "argmax"]
    assert sidecar["merged"] > "2020" and sidecar["merged"] >= sidecar["started"]


def test_merge_names_the_missing_configurations_in_grid_order(tmp_path, halves):
    out = tmp_path / "m.csv"
    report = merge_results(out, halves[1:])
    # shard 2/2 holds configurations 2 and 4 of the grid
    assert report.missing == ["stride=4, sigma=1.0", "stride=8, sigma=1.0"]
    assert (report.rows, report.configurations) == (4, 4)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["status"] == "incomplete" and sidecar["configurations_done"] == 2


def test_merge_refuses_nothing_and_repeated_parts(tmp_path, halves):
    with pytest.raises(ConfigError, match="^no parts to merge$"):
        merge_results(tmp_path / "m.csv", [])
    with pytest.raises(InputFileError, match="^a part is listed twice$"):
        merge_results(tmp_path / "m.csv", [halves[0], halves[0].parent / ".." / halves[0].parent.name / "part1.csv"])


@pytest.mark.parametrize("name", ["part1.csv", "part1.json", "m.json"])
def test_merge_refuses_to_write_over_a_part_or_a_json_name(halves, name):
    out = halves[0].parent / name
    with pytest.raises(OutputPathError, match="cannot be both a part and the merged output, or a .json name"):
        merge_results(out, halves, force=True)


def test_merge_refuses_an_existing_output_unless_forced(tmp_path, halves):
    out = tmp_path / "m.csv"
    out.write_text("old\n")
    with pytest.raises(OutputPathError, match="exists"):
        merge_results(out, halves)
    out.unlink()
    out.with_suffix(".json").write_text("{}")
    with pytest.raises(OutputPathError, match=r"m\.json exists"):
        merge_results(out, halves)
    out.write_text("old\n")
    assert merge_results(out, halves, force=True).rows == 8
    assert len(pd.read_csv(out)) == 8 and json.loads(out.with_suffix(".json").read_text())["status"] == "complete"


def test_merge_refuses_parts_made_with_other_settings(tmp_path, halves):
    other = tmp_path / "other.csv"
    run_sweep(SweepConfig(dataclasses.replace(BASE, seed=1, samples=7), SWEEP.axes), other, shard=Shard(2, 2))
    with pytest.raises(
        ConfigError,
        match=r"other\.csv was made with other settings than .*part1\.csv \(samples: 6 then 7; seed: 0 then 1\)",
    ):
        merge_results(tmp_path / "m.csv", [halves[0], other])
    assert not (tmp_path / "m.csv").exists()


def test_merge_refuses_a_configuration_held_twice(tmp_path, halves):
    whole = tmp_path / "whole.csv"
    run_sweep(SWEEP, whole)
    with pytest.raises(
        InputFileError,
        match=r"whole\.csv and .*part1\.csv both hold stride=4, sigma=1\.0; "
        "merge each configuration once",
    ):
        merge_results(tmp_path / "m.csv", [halves[0], whole])
    lines = whole.read_text().splitlines(keepends=True)
    whole.write_text("".join(lines + lines[1:2]))
    with pytest.raises(InputFileError, match=r"whole\.csv holds stride=4, sigma=1\.0 twice"):
        merge_results(tmp_path / "m.csv", [whole])


def test_merge_refuses_a_configuration_outside_the_grid(tmp_path, halves):
    part = tmp_path / "p.csv"
    text = halves[0].read_text()
    edited = text.replace("\nheatmap,4,,1.0,", "\nheatmap,2,,1.0,", 1)
    assert edited != text
    part.write_text(edited)
    part.with_suffix(".json").write_text(halves[0].with_suffix(".json").read_text())
    with pytest.raises(InputFileError, match=r"p\.csv holds a configuration outside the grid \(stride=2, sigma=1\.0\)"):
        merge_results(tmp_path / "m.csv", [part])


def test_merge_orders_each_configuration_by_the_sweep_decoders(tmp_path, halves, straight):
    # a part whose rows of a configuration come in another order (a hand-edited file),
    # and a row of a decoder the sweep does not list: known decoders first, in the
    # sweep's order, then the others
    part = tmp_path / "p.csv"
    lines = halves[0].read_text().splitlines(keepends=True)
    extra = lines[2].replace(",argmax,", ",integral,", 1)
    part.write_text("".join([lines[0], extra, lines[2], lines[1], *lines[3:]]))
    part.with_suffix(".json").write_text(halves[0].with_suffix(".json").read_text())
    merge_results(tmp_path / "m.csv", [part, halves[1]])
    got = pd.read_csv(tmp_path / "m.csv")
    assert keys_of(got) == GRID_ORDER[:2] + [(4, 1.0, "integral")] + GRID_ORDER[2:]
    assert_rows_equal(got.drop(index=2), straight)


def test_resume_of_a_sidecar_without_a_start_takes_this_run_s(tmp_path):
    out = tmp_path / "s.csv"
    run_sweep(SWEEP, out)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    del sidecar["started"]
    out.with_suffix(".json").write_text(json.dumps(sidecar))
    cut_after(out, 6)
    run_sweep(SWEEP, out, resume=True)
    started = json.loads(out.with_suffix(".json").read_text())["started"]
    assert isinstance(started, str) and started > "2020"


# ------------------------------------------------------------------- Slurm job arrays
SLURM = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT")


@pytest.mark.parametrize(
    "task, first, count, expected", [(3, 1, 4, (3, 4)), (0, 0, 2, (1, 2)), (12, 10, 3, (3, 3)), (5, 5, 1, (1, 1))]
)
def test_shard_auto_is_the_task_of_a_job_array(task, first, count, expected):
    environment = dict(zip(SLURM, (str(task), str(first), str(count)), strict=True))
    shard = Shard.from_slurm(environment)
    assert (shard.index, shard.count) == expected
    assert Shard.parse("auto", environment) == shard == Shard.parse(" AUTO ", environment)


@pytest.mark.parametrize("missing", [["SLURM_ARRAY_TASK_MIN"], ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"]])
def test_shard_auto_names_the_variables_not_set(missing):
    environment = {name: ("  " if name == missing[-1] else "1") for name in SLURM}
    for name in missing[:-1]:
        del environment[name]  # absent, or (the last) only blanks
    expected = (
        f"^shard auto reads a Slurm job array's {', '.join(SLURM)}; {', '.join(missing)} not set "
        r"\(run it as a task of sbatch --array, or give the shard as i/n\)$"
    )
    with pytest.raises(ConfigError, match=expected):
        Shard.from_slurm(environment)


def test_shard_auto_refuses_words_and_tasks_outside_the_array():
    words = dict(zip(SLURM, ("x", "1", "4"), strict=True))
    with pytest.raises(
        ConfigError,
        match=r"^shard auto: SLURM_ARRAY_TASK_ID='x', SLURM_ARRAY_TASK_MIN='1', "
        r"SLURM_ARRAY_TASK_COUNT='4' are not integers$",
    ):
        Shard.from_slurm(words)
    for task, first, count in ((5, 1, 4), (0, 1, 4), (1, 1, 0)):
        environment = dict(zip(SLURM, (str(task), str(first), str(count)), strict=True))
        with pytest.raises(
            ConfigError,
            match=rf"^shard auto: task {task} of an array from {first} with {count} tasks is not a shard; "
            r"use a contiguous array \(--array=1-N\), or give the shard as i/n$",
        ):
            Shard.from_slurm(environment)
