"""Sweeps: the grid of experiments, written to CSV one configuration at a time."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy
import pandas
import torch

from integral_cli import __version__
from integral_cli.devices import check_dtype, device_model, device_name, model_of_device_name, resolve_device
from integral_cli.errors import ConfigError, InputFileError, OutputError, OutputPathError
from integral_cli.experiment import check_runnable, run_experiment
from integral_cli.report import (
    LATER_COLUMNS,
    append_rows,
    check_output_path,
    drop_cut_row,
    read_results,
    read_sidecar,
    remedy,
    sidecar_path,
    write_csv,
    write_json,
)
from integral_cli.settings import GRID_AXES, SETTINGS, ExperimentConfig


@dataclass(frozen=True)
class SweepConfig:
    """A grid of experiments: the product of the listed values of each axis.

    Attributes:
        base: every setting that is not swept (and the value of any axis not listed).
        axes: ``(field, values)`` pairs, fields from :data:`GRID_AXES`; each value is
            checked as the setting's table says.
    """

    base: ExperimentConfig
    axes: tuple[tuple[str, tuple[Any, ...]], ...]

    def __post_init__(self) -> None:
        for field, values in self.axes:
            if field not in GRID_AXES:
                raise ConfigError(f"{field!r} cannot be swept; sweepable: {', '.join(GRID_AXES)}")
            SETTINGS[field].parse_list(tuple(values))

    @property
    def grid(self) -> dict[str, list[Any]]:
        """Every axis with its values, unlisted axes at their single base value."""
        listed = dict(self.axes)
        return {field: list(listed.get(field, (getattr(self.base, field),))) for field in GRID_AXES}

    def configurations(self) -> list[ExperimentConfig]:
        """Every configuration of the grid, each validated as it is built; an axis that
        does not apply to a configuration's representation (``stride`` for ``simcc``,
        ``split_ratio`` for ``heatmap``) does not multiply it, and volumes (``dims`` 3)
        are made of heatmaps only.

        Raises:
            ConfigError: a configuration is invalid, or none is left.
        """
        grid = self.grid
        unique: dict[tuple[Any, ...], ExperimentConfig] = {}
        for values in itertools.product(*grid.values()):
            setting = dict(zip(grid, values, strict=True))
            if setting["dims"] == 3 and setting["representation"] != "heatmap":
                continue  # SimCC vectors have no volumes
            key = configuration_key(setting)
            if key not in unique:
                unique[key] = dataclasses.replace(self.base, **setting)
        if not unique:
            raise ConfigError("«dims» 3 renders volumes of heatmaps; this grid has no heatmap representation")
        return list(unique.values())


@dataclass(frozen=True)
class Shard:
    """The ``index``-th (1-based) of ``count`` disjoint slices of a grid: configurations
    ``index - 1``, ``index - 1 + count``, ... in grid order."""

    index: int = 1
    count: int = 1

    def __post_init__(self) -> None:
        if not (1 <= self.index <= self.count):
            raise ConfigError(f"«shard» must be i/n with 1 <= i <= n, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str, environment: Mapping[str, str] = os.environ) -> Shard:
        """``"2/8"`` -> ``Shard(2, 8)``; ``"auto"`` reads a Slurm job array's variables
        (see :meth:`from_slurm`)."""
        if text.strip().lower() == "auto":
            return cls.from_slurm(environment)
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ConfigError(f"«shard» must look like i/n, e.g. 2/8, or auto, got {text!r}") from None
        return cls(index, count)

    @classmethod
    def from_slurm(cls, environment: Mapping[str, str] = os.environ) -> Shard:
        """The shard of this task of a Slurm job array: ``ID - MIN + 1`` of ``COUNT``, from
        ``SLURM_ARRAY_TASK_ID``, ``SLURM_ARRAY_TASK_MIN`` and ``SLURM_ARRAY_TASK_COUNT``.

        Raises:
            ConfigError: the variables are not set (not a job array task) or not
                integers.
        """
        names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT")
        missing = [name for name in names if not environment.get(name, "").strip()]
        if missing:
            raise ConfigError(
                f"«shard» auto reads a Slurm job array's {', '.join(names)}; {', '.join(missing)} "
                "not set (run it as a task of sbatch --array, or give the shard as i/n)"
            )
        try:
            task, first, count = (int(environment[name]) for name in names)
        except ValueError:
            raise ConfigError(
                "«shard» auto: " + ", ".join(f"{name}={environment[name]!r}" for name in names) + " are not integers"
            ) from None
        if count < 1 or not 1 <= task - first + 1 <= count:
            raise ConfigError(
                f"«shard» auto: task {task} of an array from {first} with {count} tasks is not a shard; "
                "use a contiguous array (--array=1-N), or give the shard as i/n"
            )
        return cls(task - first + 1, count)

    def select(self, items: list[Any]) -> list[Any]:
        return items[self.index - 1 :: self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def configuration_key(values: Mapping[str, Any]) -> tuple[Any, ...]:
    """What identifies a configuration within a sweep: its value on every grid axis
    (``decode_convention`` resolved; ``None`` for an axis that does not apply to its
    representation), from a config's fields or a CSV row."""
    key = []
    for field in GRID_AXES:
        value = values[field]
        if not SETTINGS[field].applies_to(values["representation"]):
            value = None
        elif field == "decode_convention" and value == "same":
            value = values["convention"]
        key.append(value.item() if hasattr(value, "item") else value)
    return tuple(key)


def _describe(key: tuple[Any, ...], grid: Mapping[str, Sequence[Any]] | None = None) -> str:
    """``stride=4, sigma=2.0``: the axes that vary in ``grid`` (all when none does)."""
    varying = [field for field, values in (grid or {}).items() if len(values) > 1] or list(GRID_AXES)
    return ", ".join(f"{field}={value}" for field, value in zip(GRID_AXES, key, strict=True) if field in varying)


@dataclass
class SweepProgress:
    """What a sweep did: configurations in this run (``total``), already in the CSV when
    resuming (``skipped``), and written by this run (``written``, in ``rows`` rows)."""

    total: int
    skipped: int = 0
    written: int = 0
    rows: int = 0


def run_sweep(
    sweep: SweepConfig,
    out: Path,
    *,
    force: bool = False,
    resume: bool = False,
    allow_mixed_devices: bool = False,
    shard: Shard = Shard(),
    command_line: Sequence[str] = (),
    on_samples: Callable[[int], None] | None = None,
    on_configuration: Callable[[SweepProgress], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> SweepProgress:
    """Run the configurations of ``sweep`` (those of ``shard``) and append each one's
    rows to ``out`` as it finishes.

    Each configuration's rows are written in one call and synced to disk before the next
    one starts, so a sweep killed at any moment leaves a valid CSV of whole rows holding
    the finished configurations. A write that fails (a full disk, a quota) is undone
    before the error is raised: the CSV holds the same whole rows as before it. A JSON
    sidecar (``out`` with suffix ``.json``) records the command line, versions, device,
    seed, shard, the grid and every other setting, and start/end times (status
    ``running``, ``complete`` or ``interrupted``; it stays ``running`` when the disk is
    too full to mark it); its ``devices`` lists the devices (GPU model, or the CPU)
    that computed the rows.

    Args:
        sweep: the grid.
        out: the CSV path; it must not exist unless ``force`` or ``resume``.
        force: overwrite an existing ``out`` and sidecar.
        resume: keep the configurations ``out`` already holds and run the rest; the
            sidecar's settings must match this sweep's, and so must the device it ran on
            (see :func:`mixed_devices`). Without ``out``, start afresh. A last line
            without its newline (a row cut by a crash during a write) is dropped with a
            warning, and its configuration runs again.
        allow_mixed_devices: resume rows computed on another device (GPU model, or
            the CPU): the same points, numbers that may differ in their last digits.
        shard: run only this slice of the grid.
        command_line: recorded in the sidecar.
        on_samples: called with the number of samples finished so far in this run.
        on_configuration: called with the progress after each configuration.
        on_warning: called with messages about worked-around trouble (out of memory, a
            cut row dropped when resuming).
        on_start: called once the work is known, with the number of samples to run.

    Returns:
        The progress at the end.

    Before anything is written, every configuration is checked against the memory
    budget and its sampling region, and a resumed CSV and its sidecar are checked.

    Raises:
        ConfigError: a setting out of range, or a resume with other settings or on
            another device (without ``allow_mixed_devices``).
        DeviceError: the device is not available.
        OutputPathError: the output exists, or its directory does not.
        InputFileError: the CSV or the sidecar to resume is malformed.
        OutputError: a write failed mid-way; the CSV holds whole rows only, and the
            message names the configuration not saved and how many are, for a rerun
            with ``resume``.
    """
    configurations = shard.select(sweep.configurations())
    for config in configurations:
        check_runnable(config)
    device = resolve_device(sweep.base.device)
    for config in configurations:
        check_dtype(device, config.dtype)
    if sidecar_path(out) == out:
        raise OutputPathError(f"{out} would be overwritten by its own JSON sidecar; name the CSV *.csv")
    sidecar = _sidecar(sweep, configurations, device, command_line, shard)
    progress = SweepProgress(total=len(configurations))
    pending, header = configurations, True
    if resume and out.exists():
        pending, header = _resumable(sweep, configurations, out, sidecar, allow_mixed_devices, on_warning)
        progress.skipped = len(configurations) - len(pending)
    else:
        check_output_path(out, force=force or resume)
        check_output_path(sidecar_path(out), force=force or resume)
        out.unlink(missing_ok=True)
    sidecar["configurations_done"] = progress.skipped
    write_json(sidecar_path(out), sidecar)
    if on_start is not None:
        on_start(sum(config.total_samples for config in pending))
    samples_before = 0
    try:
        for config in pending:

            def relay(done: int, before: int = samples_before) -> None:
                if on_samples is not None:
                    on_samples(before + done)

            rows = run_experiment(config, progress=relay, on_warning=on_warning)
            try:
                append_rows(out, rows, header=header)
            except OutputError as error:
                raise OutputError(
                    f"{error}; {_describe(configuration_key(dataclasses.asdict(config)), sweep.grid)} was not saved, "
                    f"{progress.skipped + progress.written} of {progress.total} configurations are; {remedy(error)}, "
                    "then run the same command with «resume» to finish"
                ) from error
            header = False
            progress.written += 1
            progress.rows += len(rows)
            samples_before += config.total_samples
            if on_configuration is not None:
                on_configuration(progress)
    except BaseException:
        sidecar.update(status="interrupted", finished=_now(), configurations_done=progress.skipped + progress.written)
        # on a disk too full for the sidecar it stays "running": the CSV holds whole rows, and the error says why
        with contextlib.suppress(OutputError):
            write_json(sidecar_path(out), sidecar)
        raise
    sidecar.update(status="complete", finished=_now(), configurations_done=progress.skipped + progress.written)
    try:
        write_json(sidecar_path(out), sidecar)
    except OutputError as error:
        raise OutputError(
            f"{error}; all {progress.total} configurations are saved in {out}; {remedy(error)}, then run the same "
            "command with «resume» to mark it complete"
        ) from error
    return progress


#: Settings that may differ between the runs of one sweep: they change no number (the
#: device asked for is one: the device the rows came from is compared on its own, see
#: :func:`mixed_devices`).
_FREE_SETTINGS = ("max_memory_mib", "device")


def read_sweep_sidecar(path: Path) -> dict[str, Any]:
    """A sweep's sidecar, checked to hold a settings table with the decoders and a grid
    with every axis."""
    payload = read_sidecar(path)
    settings, grid = payload.get("settings"), payload.get("grid")
    older = isinstance(grid, dict) and [name for name in LATER_COLUMNS if name in GRID_AXES and name not in grid]
    if isinstance(settings, dict) and isinstance(grid, dict) and older:
        # a sweep made before an axis existed (SimCC, volumes, the flip test): its
        # configurations had that setting's default, as they had the newer settings'
        grid.update({name: [SETTINGS[name].default] for name in older})
        for name in LATER_COLUMNS:
            if name in SETTINGS and name not in GRID_AXES:
                settings.setdefault(name, SETTINGS[name].default)
    if not isinstance(settings, dict) or not isinstance(settings.get("decoders"), list):
        raise InputFileError(f"{path} has no settings with a list of decoders")
    if not isinstance(grid, dict) or any(not isinstance(grid.get(axis), list) or not grid[axis] for axis in GRID_AXES):
        missing = [axis for axis in GRID_AXES if not isinstance(grid, dict) or not isinstance(grid.get(axis), list)]
        raise InputFileError(f"{path} has no grid values for {', '.join(missing) or 'some axes'}")
    return payload


def setting_differences(old: Mapping[str, Any], new: Mapping[str, Any], *, shard: bool = True) -> list[str]:
    """Human-readable differences between two sidecars' settings, grid and shard."""
    differences = []
    for section in ("settings", "grid"):
        before, after = old.get(section, {}), new.get(section, {})
        for name in sorted(set(before) | set(after)):
            if name in _FREE_SETTINGS or before.get(name) == after.get(name):
                continue
            differences.append(f"{name}: {before.get(name)!r} then {after.get(name)!r}")
    if shard and (old.get("shard") or "1/1") != (new.get("shard") or "1/1"):
        differences.append(f"shard: {old.get('shard')!r} then {new.get('shard')!r}")
    return differences


def sidecar_devices(payload: Mapping[str, Any]) -> list[str]:
    """The devices (:func:`~integral_cli.devices.device_model`) a sidecar's rows were
    computed on; for a sidecar written before they were recorded, the one its
    ``device_name`` names."""
    devices = payload.get("devices")
    if isinstance(devices, list) and all(isinstance(d, str) for d in devices):
        return list(devices)
    name = payload.get("device_name") or payload.get("device")
    return [model_of_device_name(name)] if isinstance(name, str) else []


def mixed_devices(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """How two sidecars' devices differ (``"cuda (NVIDIA A100) then cpu"``), or ``None``
    when they ran on the same one.

    The ground truth is the same on every device, but the decoded numbers may differ in
    their last digits between GPU models and the CPU, so rows from different devices are
    kept apart unless asked otherwise.
    """
    before, after = sidecar_devices(old), sidecar_devices(new)
    if set(before) == set(after):
        return None
    return f"{', '.join(before) or 'an unrecorded device'} then {', '.join(after) or 'an unrecorded device'}"


def _union(*device_lists: list[str]) -> list[str]:
    return list(dict.fromkeys(device for devices in device_lists for device in devices))


def _resumable(
    sweep: SweepConfig,
    configurations: list[ExperimentConfig],
    out: Path,
    sidecar: dict[str, Any],
    allow_mixed_devices: bool,
    on_warning: Callable[[str], None] | None = None,
) -> tuple[list[ExperimentConfig], bool]:
    """The configurations still to run in a resumed sweep, and whether to write a header."""
    old = read_sweep_sidecar(sidecar_path(out))
    differences = setting_differences(old, sidecar)
    if differences:
        raise ConfigError(f"cannot resume {out}: it was made with other settings ({'; '.join(differences)})")
    mixed = mixed_devices(old, sidecar)
    if mixed and not allow_mixed_devices:
        raise ConfigError(
            f"cannot resume {out} on another device ({mixed}): its numbers may differ in the last digits; "
            "resume on the same device, or allow it with «allow_mixed_devices»"
        )
    sidecar["devices"] = _union(sidecar_devices(old), sidecar["devices"])
    sidecar["started"] = old.get("started", sidecar["started"])
    sidecar["resumed"] = [*old.get("resumed", []), _now()]
    cut = drop_cut_row(out)
    if cut is not None and on_warning is not None:
        rerun = "it held no row; starting afresh" if cut == 1 else "dropped it; its configuration runs again"
        on_warning(
            f"{out} line {cut} has no newline: it was cut short by an interrupted write (a crash or a power loss); "
            + rerun
        )
    if not out.exists():  # it held only the start of a header
        return configurations, True
    rows = read_results(out)
    # each configuration's own decoders: volumes and SimCC vectors have fewer than heatmaps
    wanted = {configuration_key(dataclasses.asdict(c)): set(c.resolved_decoders) for c in configurations}
    found: dict[tuple[Any, ...], set[str]] = {}
    for row in rows.to_dict(orient="records"):
        key = configuration_key(row)
        if key not in wanted:
            raise InputFileError(f"{out} holds a configuration this sweep does not have ({_describe(key, sweep.grid)})")
        if row["decoder"] in found.get(key, set()):
            raise InputFileError(f"{out} holds {_describe(key, sweep.grid)} twice; remove the repeated rows")
        found.setdefault(key, set()).add(row["decoder"])
    done = {key for key, names in found.items() if names == wanted[key]}
    if len(done) < len(found) or rows.attrs.get("older"):
        # rows of unfinished configurations (a hand-edited file, or the rows before a cut one): drop them, rerun
        # those; an older file is written again with today's columns
        keep = [configuration_key(row) in done for row in rows.to_dict(orient="records")]
        write_csv(out, rows[keep])
    pending = [c for c in configurations if configuration_key(dataclasses.asdict(c)) not in done]
    return pending, False


@dataclass
class MergeReport:
    """What ``merge_results`` wrote: rows, expected configurations, and the missing ones."""

    rows: int
    configurations: int
    missing: list[str]


def merge_results(
    out: Path,
    parts: Sequence[Path],
    *,
    force: bool = False,
    allow_mixed_devices: bool = False,
    command_line: Sequence[str] = (),
) -> MergeReport:
    """Combine the CSVs of a sharded sweep into one, in grid order.

    Args:
        out: the merged CSV (its sidecar goes beside it).
        parts: the shards' CSVs, each with its sidecar.
        force: overwrite ``out``.
        allow_mixed_devices: merge parts computed on different devices (GPU models, or
            the CPU); the merged sidecar lists them all.
        command_line: recorded in the merged sidecar.

    Returns:
        The rows written, the configurations the grid has, and a description of each
        configuration no part holds.

    Raises:
        InputFileError: a part or its sidecar is missing or malformed, holds a
            configuration outside the grid, or two parts hold the same configuration.
        ConfigError: the parts were made with different settings, or on different
            devices without ``allow_mixed_devices``.
        OutputError: ``out`` or its sidecar could not be written; neither is left
            half-written, and the merged CSV is not left without its sidecar.
    """
    if not parts:
        raise ConfigError("no parts to merge")
    if len(set(map(Path.resolve, parts))) != len(parts):
        raise InputFileError("a part is listed twice")
    taken = {p.resolve() for p in parts} | {sidecar_path(p).resolve() for p in parts}
    if sidecar_path(out) == out or out.resolve() in taken or sidecar_path(out).resolve() in taken:
        raise OutputPathError(f"{out} cannot be both a part and the merged output, or a .json name")
    check_output_path(out, force=force)
    check_output_path(sidecar_path(out), force=force)
    sidecars = [read_sweep_sidecar(sidecar_path(part)) for part in parts]
    reference = sidecars[0]
    for part, other in zip(parts[1:], sidecars[1:], strict=True):
        differences = setting_differences(reference, other, shard=False)
        if differences:
            raise ConfigError(f"{part} was made with other settings than {parts[0]} ({'; '.join(differences)})")
        mixed = mixed_devices(reference, other)
        if mixed and not allow_mixed_devices:
            raise ConfigError(
                f"{parts[0]} and {part} ran on different devices ({mixed}): their numbers may differ in the last "
                "digits; merge parts from one device, or allow it with «allow_mixed_devices»"
            )
    grid = reference["grid"]
    combinations = (dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values()))
    expected = list(dict.fromkeys(configuration_key(values) for values in combinations))
    order = {key: index for index, key in enumerate(expected)}
    decoders = list(reference["settings"]["decoders"])
    frames: list[pandas.DataFrame] = []
    owner: dict[tuple[tuple[Any, ...], str], Path] = {}
    for part in parts:
        frame = read_results(part)
        for row in frame.to_dict(orient="records"):
            key = configuration_key(row)
            if key not in order:
                raise InputFileError(f"{part} holds a configuration outside the grid ({_describe(key, grid)})")
            if (key, row["decoder"]) in owner and owner[(key, row["decoder"])] != part:
                raise InputFileError(
                    f"{part} and {owner[(key, row['decoder'])]} both hold {_describe(key, grid)}; "
                    "merge each configuration once"
                )
            if (key, row["decoder"]) in owner:
                raise InputFileError(f"{part} holds {_describe(key, grid)} twice")
            owner[(key, row["decoder"])] = part
        frames.append(frame)
    merged = pandas.concat(frames, ignore_index=True)
    rank = [
        (order[configuration_key(row)], decoders.index(row["decoder"]) if row["decoder"] in decoders else len(decoders))
        for row in merged.to_dict(orient="records")
    ]
    merged = merged.iloc[sorted(range(len(merged)), key=rank.__getitem__)].reset_index(drop=True)
    present = {key for key, _ in owner}
    missing = [_describe(key, grid) for key in expected if key not in present]
    write_csv(out, merged)
    sidecar = dict(reference)
    sidecar.update(
        command=list(command_line),
        shard=None,
        parts=[str(part) for part in parts],
        configurations=len(expected),
        configurations_done=len(present),
        status="complete" if not missing else "incomplete",
        merged=_now(),
        devices=_union(*map(sidecar_devices, sidecars)),
    )
    try:
        write_json(sidecar_path(out), sidecar)
    except OutputError as error:
        # a merged CSV without its sidecar could be neither resumed nor merged again
        out.unlink(missing_ok=True)
        raise OutputError(f"{error}; nothing merged ({out} removed again); {remedy(error)} and retry") from error
    return MergeReport(rows=len(merged), configurations=len(expected), missing=missing)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _sidecar(
    sweep: SweepConfig,
    configurations: list[ExperimentConfig],
    device: torch.device,
    command_line: Sequence[str],
    shard: Shard,
) -> dict[str, Any]:
    settings = dataclasses.asdict(sweep.base)
    for field in GRID_AXES:
        del settings[field]
    settings = {name: value for name, value in settings.items() if name in SETTINGS}
    settings["image_size"] = list(sweep.base.image_size)
    settings["decoders"] = list(sweep.base.decoders)
    return {
        "command": list(command_line),
        "status": "running",
        "started": _now(),
        "finished": None,
        "shard": str(shard),
        "configurations": len(configurations),
        "configurations_done": 0,
        "grid": sweep.grid,
        "settings": settings,
        "seed": sweep.base.seed,
        "device": str(device),
        "device_name": device_name(device),
        "devices": [device_model(device)],
        "versions": {
            "integral_cli": __version__,
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "pandas": pandas.__version__,
            "python": platform.python_version(),
        },
    }
