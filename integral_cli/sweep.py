"""Sweeps: the grid of experiments, written to CSV one configuration at a time."""

from __future__ import annotations

import dataclasses
import itertools
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy
import pandas
import torch

from integral_cli import __version__
from integral_cli.devices import device_name, resolve_device
from integral_cli.errors import ConfigError, OutputPathError
from integral_cli.experiment import ExperimentConfig, check_runnable, run_experiment
from integral_cli.report import (
    append_rows,
    check_output_path,
    sidecar_path,
    write_json,
)

#: The settings a sweep can vary, in the order the grid is walked (the last varies
#: fastest), each with its list option on the command line.
GRID_AXES: dict[str, str] = {
    "stride": "--strides",
    "sigma": "--sigmas",
    "amplitude": "--amplitudes",
    "beta": "--betas",
    "encoder": "--encoders",
    "noise": "--noises",
    "distractor": "--distractors",
    "distractor_distance": "--distractor-distances",
    "position": "--positions",
    "convention": "--conventions",
    "decode_convention": "--decode-conventions",
    "sampling": "--samplings",
    "dtype": "--dtypes",
}


@dataclass(frozen=True)
class SweepConfig:
    """A grid of experiments: the product of the listed values of each axis.

    Attributes:
        base: every setting that is not swept (and the value of any axis not listed).
        axes: ``(field, values)`` pairs, fields from :data:`GRID_AXES`.
    """

    base: ExperimentConfig
    axes: tuple[tuple[str, tuple[Any, ...]], ...]

    def __post_init__(self) -> None:
        for field, values in self.axes:
            if field not in GRID_AXES:
                raise ConfigError(f"{field!r} cannot be swept; sweepable: {', '.join(GRID_AXES)}")
            if not values:
                raise ConfigError(f"the list {GRID_AXES[field]} is empty")
            if len(set(values)) != len(values):
                raise ConfigError(f"the list {GRID_AXES[field]} repeats a value")

    @property
    def grid(self) -> dict[str, list[Any]]:
        """Every axis with its values, unlisted axes at their single base value."""
        listed = dict(self.axes)
        return {field: list(listed.get(field, (getattr(self.base, field),))) for field in GRID_AXES}

    def configurations(self) -> list[ExperimentConfig]:
        """Every configuration of the grid; each is validated as it is built."""
        grid = self.grid
        return [
            dataclasses.replace(self.base, **dict(zip(grid, values)))
            for values in itertools.product(*grid.values())
        ]


def run_sweep(
    sweep: SweepConfig,
    out: Path,
    *,
    force: bool = False,
    command_line: Sequence[str] = (),
    on_samples: Callable[[int], None] | None = None,
    on_configuration: Callable[[int], None] | None = None,
) -> int:
    """Run every configuration of ``sweep`` and append its rows to ``out`` as it finishes.

    Each configuration's rows are flushed and synced to disk before the next one starts,
    so an interrupted sweep leaves a valid CSV holding the finished configurations. A
    JSON sidecar (``out`` with suffix ``.json``) records the command line, versions,
    device, seed, the settings and start/end times (status ``running``, ``complete`` or
    ``interrupted``).

    Args:
        sweep: the grid.
        out: the CSV path; it must not exist unless ``force``.
        force: overwrite an existing ``out``.
        command_line: recorded in the sidecar.
        on_samples: called with the total number of samples finished so far.
        on_configuration: called with the number of configurations finished so far.

    Returns:
        The number of configurations written.

    Raises:
        ConfigError, DeviceError, OutputPathError: before anything is written (every
        configuration is checked against the memory budget and its sampling region
        first); ``OutputError`` when a write fails mid-way.
    """
    configurations = sweep.configurations()
    for config in configurations:
        check_runnable(config)
    device = resolve_device(sweep.base.device)
    if sidecar_path(out) == out:
        raise OutputPathError(f"{out} would be overwritten by its own JSON sidecar; name the CSV *.csv")
    check_output_path(out, force=force)
    check_output_path(sidecar_path(out), force=force)
    out.unlink(missing_ok=True)
    sidecar = _sidecar(sweep, configurations, device, command_line)
    write_json(sidecar_path(out), sidecar)
    finished = 0
    samples_before = 0
    try:
        for config in configurations:
            def relay(done: int, before: int = samples_before) -> None:
                if on_samples is not None:
                    on_samples(before + done)

            rows = run_experiment(config, progress=relay)
            append_rows(out, rows, header=finished == 0)
            finished += 1
            samples_before += config.total_samples
            if on_configuration is not None:
                on_configuration(finished)
    except BaseException:
        sidecar.update(status="interrupted", configurations_done=finished, finished=_now())
        write_json(sidecar_path(out), sidecar)
        raise
    sidecar.update(status="complete", configurations_done=finished, finished=_now())
    write_json(sidecar_path(out), sidecar)
    return finished


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _sidecar(
    sweep: SweepConfig,
    configurations: list[ExperimentConfig],
    device: torch.device,
    command_line: Sequence[str],
) -> dict[str, Any]:
    settings = dataclasses.asdict(sweep.base)
    for field in GRID_AXES:
        del settings[field]
    settings["image_size"] = list(sweep.base.image_size)
    settings["decoders"] = list(sweep.base.decoders)
    return {
        "command": list(command_line),
        "status": "running",
        "started": _now(),
        "finished": None,
        "configurations": len(configurations),
        "configurations_done": 0,
        "grid": sweep.grid,
        "settings": settings,
        "seed": sweep.base.seed,
        "device": str(device),
        "device_name": device_name(device),
        "versions": {
            "integral_cli": __version__,
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "pandas": pandas.__version__,
            "python": platform.python_version(),
        },
    }
