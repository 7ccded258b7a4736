"""One setting of an experiment: its row of the table of settings (default, range or
choices, unit, help, ``sweep`` option, CSV columns), how its value is read from text or
TOML, and how it is checked. :mod:`integral_cli.settings` holds the table itself.

Imports no torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from integral_cli.checks import DEVICE_HELP, check_choice, check_device_spec, check_range, check_size
from integral_cli.decoders.registry import DECODERS, check_decoder_names, check_kernel_size
from integral_cli.errors import ConfigError

#: The kinds of value a setting holds, each with its own parsing and check.
Kind = Literal["int", "float", "choice", "size", "kernel", "radius", "decoders", "device", "optional float"]


@dataclass(frozen=True)
class Setting:
    """One row of the table of settings.

    Attributes:
        name: the config field (and the first CSV column's name).
        kind: how a value is read and checked (see :data:`Kind`).
        default: the value when none is given.
        help: one sentence for ``--help`` and the docs.
        unit: the unit, if the value has one.
        choices: the allowed values of a ``choice``.
        low, high, low_open: the allowed range of a number, ``[low, high]`` (``(low,
            high]`` if ``low_open``).
        sweep: the name of ``sweep``'s list option (the plural) when ``sweep`` varies
            this setting; ``None`` when it takes one value.
        columns: the CSV columns it fills (``()`` for none); default, its name.
        after_summary: its columns come after the statistics (where a run is recorded).
        applies: the representations it applies to (``()``: every one); elsewhere its
            CSV columns are empty and ``sweep`` does not vary it.
        option: the command-line flag; default ``--name`` with dashes.
        metavar: how ``--help`` shows a value.
        default_text: how ``--help`` shows the default, when not the value itself.
    """

    kind: Kind
    default: Any
    help: str
    name: str = ""
    unit: str = ""
    choices: tuple[str, ...] = ()
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    sweep: str | None = None
    columns: tuple[str, ...] | None = None
    after_summary: bool = False
    applies: tuple[str, ...] = ()
    option: str | None = None
    metavar: str | None = None
    default_text: str | None = None

    @property
    def flag(self) -> str:
        """The command-line option, e.g. ``--max-memory``."""
        return self.option or "--" + self.name.replace("_", "-")

    @property
    def sweep_flag(self) -> str | None:
        """``sweep``'s list option, e.g. ``--strides``."""
        return None if self.sweep is None else "--" + self.sweep

    @property
    def csv_columns(self) -> tuple[str, ...]:
        return (self.name,) if self.columns is None else self.columns

    def applies_to(self, representation: str) -> bool:
        """Whether this setting means anything for ``representation``."""
        return not self.applies or representation in self.applies

    def check(self, value: Any) -> Any:
        """``value`` if it is allowed; raises :class:`ConfigError` naming the setting."""
        if self.kind in ("int", "float"):
            return check_range(
                value, self.name, self.low, self.high, low_open=self.low_open, integer=self.kind == "int"
            )
        if self.kind == "optional float":
            return None if value is None else check_range(value, self.name, self.low, self.high, low_open=self.low_open)
        if self.kind == "choice":
            return check_choice(self.name, value, self.choices)
        if self.kind == "size":
            return check_size(value, self.name)
        if self.kind == "kernel":
            return value if value == "auto" else check_kernel_size(value)
        if self.kind == "radius":
            return value if value == "auto" else check_range(value, self.name, self.low, self.high, integer=True)
        if self.kind == "decoders":
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise ConfigError(f"«decoders» must be a sequence of decoder names, got {value!r}")
            return check_decoder_names(tuple(value))
        return check_device_spec(value)

    def parse(self, value: Any) -> Any:
        """Read a value given as text (the command line) or as TOML (a config file) and
        check it."""
        if isinstance(value, str):
            value = self._from_text(value.strip())
        elif self.kind == "float" or (self.kind == "optional float" and value is not None):
            if isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
        elif self.kind == "size" and isinstance(value, list):
            value = tuple(value)
        return self.check(value)

    def _from_text(self, text: str) -> Any:
        try:
            if self.kind == "int":
                return int(text)
            if self.kind in ("float", "optional float"):
                return float(text)
            if self.kind == "size":
                return parse_size(text)
            if self.kind in ("kernel", "radius"):
                return "auto" if text.lower() == "auto" else int(text)
            if self.kind == "decoders":
                return tuple(DECODERS) if text.lower() == "all" else split_list(text)
        except ValueError:
            what = {
                "int": "an integer",
                "kernel": "an odd integer or auto",
                "radius": "an integer or auto",
                "size": "HxW (height x width) such as 256x192",
            }.get(self.kind, "a number")
            raise ConfigError(f"«{self.name}» must be {what}, got {text!r}") from None
        return text

    def parse_list(self, value: Any) -> tuple[Any, ...]:
        """Read ``sweep``'s list of values (comma-separated text, or a TOML list);
        refuses an empty list and a repeated value."""
        items = split_list(value) if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            items = [items]
        if not items:
            raise ConfigError(f"the list «{self.name}» is empty")
        values = tuple(self.parse(item) for item in items)
        if len(set(values)) != len(values):
            raise ConfigError(f"the list «{self.name}» repeats a value")
        return values

    def describe_range(self) -> str:
        """The allowed values in words, for the docs."""
        if self.choices:
            return ", ".join(self.choices)
        if self.kind in ("int", "float", "optional float"):
            low = f"{'>' if self.low_open else '≥'} {self.low:g}"
            return low if self.high == math.inf else f"{low}, ≤ {self.high:g}"
        return {
            "size": "HxW, multiples of the stride",
            "kernel": "odd, ≤ 101, or auto",
            "radius": f"≥ {self.low:g}, ≤ {self.high:g}, or auto",
            "decoders": "decoder names, or all",
            "device": DEVICE_HELP,
        }[self.kind]


def split_list(text: str) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``; an empty item is refused."""
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise ConfigError(f"expected a comma-separated list, got {text!r}")
    return items


def parse_size(text: str) -> tuple[int, int]:
    """``"256x192"`` -> ``(256, 192)`` (height x width)."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 2:
        raise ValueError(text)
    height, width = (int(part) for part in parts)
    return height, width


T = TypeVar("T")


def setting(default: T, kind: Kind = "float", help: str = "", **more: Any) -> T:
    """A field of :class:`ExperimentConfig` with its row of the table."""
    record = Setting(kind=kind, default=default, help=help, **more)
    value: T = dataclasses.field(default=default, metadata={"setting": record})
    return value


def spell_value(value: Any) -> str:
    """A default as the command line spells it."""
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
