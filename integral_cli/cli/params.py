"""Option types, and the options of every command generated from the table of settings.

A type here is a callable that reads the text of an option (or a value from a config
file) and returns the value, raising :class:`typer.BadParameter` with a one-line reason;
Typer calls it as the option's ``parser``. :func:`setting_options` gives a command one
option per setting it takes, each read and checked as the table of settings says.
Imports no torch.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from integral_cli.errors import ConfigError
from integral_cli.setting import Setting, parse_size, spell_value, split_list
from integral_cli.settings import SETTINGS

F = TypeVar("F", bound=Callable[..., Any])


class OptionType:
    """A parser for one kind of option value; ``metavar`` is how ``--help`` shows it."""

    metavar = "VALUE"

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value  # a default already read
        try:
            return self.read(value.strip())
        except (ConfigError, ValueError) as error:
            raise typer.BadParameter(str(error) if isinstance(error, ConfigError) else self.problem(value)) from None

    def read(self, text: str) -> Any:
        raise NotImplementedError

    def problem(self, text: str) -> str:
        return f"expected {self.metavar}, got {text!r}"


class Number(OptionType):
    """A finite number in ``[low, high]`` (``(low, high]`` if ``low_open``)."""

    metavar = "NUMBER"

    def __init__(
        self, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False, integer: bool = False
    ) -> None:
        self.low, self.high, self.low_open, self.integer = low, high, low_open, integer
        self.metavar = "INTEGER" if integer else "NUMBER"

    def read(self, text: str) -> float:
        value = int(text) if self.integer else float(text)
        too_low = value <= self.low if self.low_open else value < self.low
        if not math.isfinite(value) or too_low or value > self.high:
            sign = ">" if self.low_open else ">="
            upper = "" if self.high == math.inf else f" and <= {self.high:g}"
            raise ConfigError(f"must be a finite number {sign} {self.low:g}{upper}, got {text!r}")
        return value


class Numbers(OptionType):
    """A comma-separated list of numbers of one :class:`Number` type, none repeated."""

    metavar = "LIST"

    def __init__(self, item: Number) -> None:
        self.item = item

    def read(self, text: str) -> tuple[float, ...]:
        values = tuple(self.item.read(part) for part in split_list(text))
        if len(set(values)) != len(values):
            raise ConfigError(f"a value is listed twice in {text!r}")
        return values

    def problem(self, text: str) -> str:
        return f"expected a comma-separated list of numbers, got {text!r}"


class Choice(OptionType):
    """One of a fixed set of words."""

    def __init__(self, choices: Iterable[str]) -> None:
        self.choices = tuple(choices)
        self.metavar = "[" + "|".join(self.choices) + "]"

    def read(self, text: str) -> str:
        if text not in self.choices:
            raise ConfigError(f"{text!r} is not one of {', '.join(self.choices)}")
        return text


class Size(OptionType):
    """``HxW``: two positive integers, height first, between ``low`` and ``high``."""

    metavar = "HxW"

    def __init__(self, low: int = 1, high: int = 10**9) -> None:
        self.low, self.high = low, high

    def read(self, text: str) -> tuple[int, int]:
        height, width = parse_size(text)
        if not (self.low <= height <= self.high and self.low <= width <= self.high):
            raise ConfigError(f"height and width must be {self.low} to {self.high}, got {text!r}")
        return height, width

    def problem(self, text: str) -> str:
        return f"expected HxW (height x width) such as 256x192, got {text!r}"


class SettingValue(OptionType):
    """One value of a setting, read and checked as its row of the table says."""

    def __init__(self, item: Setting) -> None:
        self.item = item
        self.metavar = item.metavar or (f"[{'|'.join(item.choices)}]" if item.choices else item.kind.upper())
        if item.kind == "optional float":
            self.metavar = "NUMBER"

    def read(self, text: str) -> Any:
        return self.item.parse(text)


class SettingList(SettingValue):
    """``sweep``'s comma-separated list of values of a setting."""

    def __init__(self, item: Setting) -> None:
        super().__init__(item)
        self.metavar = "LIST"

    def read(self, text: str) -> tuple[Any, ...]:
        return self.item.parse_list(text)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        return super().__call__(value)


def option(*flags: str, parser: OptionType | None = None, help: str = "", **more: Any) -> Any:
    """A Typer option, with ``parser`` as its type."""
    if parser is not None:
        more.setdefault("metavar", parser.metavar)
    return typer.Option(*flags, parser=parser, help=help, **more)


# ----------------------------------------------------------------- shared options
#: The settings that shape a rendered map and how it is decoded.
MAP_SETTINGS = (
    "stride",
    "sigma",
    "sigma_unit",
    "amplitude",
    "beta",
    "dark_kernel",
    "window_radius",
    "image_size",
    "encoder",
)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Force = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]
Wide = Annotated[bool, typer.Option("--wide", help="Show every column (the table is wider than 80 columns).")]
CsvPath = Annotated[Path | None, typer.Option("--csv", metavar="PATH", help="Also write the rows to this CSV.")]


def list_option_name(item: Setting) -> str:
    """The Python name of ``sweep``'s list option for a setting, e.g. ``strides``."""
    return (item.sweep or item.name).replace("-", "_")


def setting_options(
    names: Iterable[str], *, lists: bool = False, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> Callable[[F], F]:
    """Give a command one option per setting in ``names``.

    Each option is read and checked by its setting's row of the table (type, range,
    choices), its help and default come from there too. With ``lists``, a setting that
    ``sweep`` varies becomes a comma-separated list option under its plural name. The
    command receives the values as ``settings``, a dict keyed by setting name (a tuple of
    values for a list option). ``overrides`` changes a row for this command (a default,
    a range, the help), e.g. ``{"samples": {"default": 16}}``.
    """
    rows = [SETTINGS[name] for name in names]
    changes = overrides or {}
    rows = [dataclasses.replace(item, **changes.get(item.name, {})) for item in rows]

    def decorate(function: F) -> F:
        # the command's own annotations, resolved where it was written (the wrapper below
        # lives here, where its names are unknown)
        hints = typing.get_type_hints(function, include_extras=True)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(function).parameters.values()
            if p.name != "settings"
        ]
        added, python_names = [], {}
        for item in rows:
            as_list = lists and item.sweep is not None
            python_name = list_option_name(item) if as_list else item.name
            flag = item.sweep_flag if as_list else item.flag
            parser = SettingList(item) if as_list else SettingValue(item)
            default = item.default
            shown: Any = item.default_text or True
            if default is not None:
                values = default if as_list and isinstance(default, tuple) and item.kind != "size" else None
                default = ",".join(map(spell_value, values)) if values is not None else spell_value(default)
            help_text = item.help + (f" Unit: {item.unit}." if item.unit else "")
            annotation = Annotated[Any, option(flag, parser=parser, help=help_text, show_default=shown)]
            added.append(
                inspect.Parameter(python_name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            )
            python_names[item.name] = python_name

        @functools.wraps(function)
        def command(**values: Any) -> Any:
            settings = {name: values.pop(python_name) for name, python_name in python_names.items()}
            return function(settings=settings, **values)

        parameters = added + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        del command.__wrapped__
        return typing.cast(F, command)

    return decorate


# ------------------------------------------------------------ the scores of evaluate and compare
Pck = Annotated[
    Any,
    option(
        parser=Numbers(Number(0, low_open=True)),
        help="Comma-separated PCK thresholds: image pixels, or fractions of the --normalize length.",
    ),
]
Normalize = Annotated[
    str,
    typer.Option(
        "--normalize",
        metavar="SPEC",
        help="Divide errors by a length per sample: none, bbox:FILE (the square root of an (N, 4) "
        "x, y, w, h box's area; .npy or .csv), pair:I,J (the distance between target keypoints I and J, "
        "e.g. the eyes for faces) or value:V. Adds NME and AUC.",
    ),
]
AucMax = Annotated[
    Any,
    option("--auc-max", parser=Number(0, low_open=True), help="The AUC integrates PCK from 0 to this fraction."),
]
PerKeypoint = Annotated[
    bool, typer.Option("--per-keypoint", help="Also one row per keypoint, under each decoder's row.")
]
