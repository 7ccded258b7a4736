"""The one family of errors the library raises.

The command line turns :class:`IntegralError` into a one-line message on stderr: a
:class:`ConfigError` (a bad value for a setting) exits with code 2 like any other usage
error, everything else with code 1.

A message names the settings it is about, never command-line options: it writes a
setting as ``«max_memory_mib»``. ``str(error)`` shows the setting's name
(``max_memory_mib``), the command line shows its option (``--max-memory``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: How a message marks a setting's name.
_SETTING = re.compile(r"«([^«»]+)»")


class IntegralError(Exception):
    """Base class of every error integral-cli raises on purpose."""

    def __str__(self) -> str:
        return self.render(lambda name: name)

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with every setting it names spelled by ``spell(name)`` (``name``
        is whatever the message marked, a setting's name or a few words)."""
        text = str(self.args[0]) if self.args else ""
        return _SETTING.sub(lambda match: spell(match.group(1)), text)


class ConfigError(IntegralError, ValueError):
    """A setting or argument has a value the library cannot use."""


class ShapeError(ConfigError):
    """A tensor argument has the wrong shape, dtype or number of dimensions."""


class DeviceError(IntegralError, RuntimeError):
    """The requested device is not available on this machine."""


class OutputError(IntegralError, OSError):
    """An output file cannot be written (no space, no permission, an I/O error)."""

    def __str__(self) -> str:  # OSError has its own __str__
        return IntegralError.__str__(self)


class OutputPathError(ConfigError):
    """An output path is refused before any work starts (exists, no such directory)."""


class InputFileError(ConfigError):
    """An input file (a results CSV or its sidecar) is missing, empty, truncated or of
    the wrong shape."""


class OutOfMemoryError(IntegralError, MemoryError):
    """The device ran out of memory and a smaller batch cannot help."""


class MissingDependencyError(IntegralError, ImportError):
    """An optional dependency (matplotlib, for pictures) is not installed."""


class MissingResultsError(IntegralError):
    """A computation produced nothing to report (every result non-finite)."""
