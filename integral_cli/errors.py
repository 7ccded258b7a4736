"""The one family of errors the library raises.

The CLI turns :class:`IntegralError` into a one-line message on stderr: a
:class:`ConfigError` (a bad value for a setting) exits with code 2 like any other
usage error, everything else exits with code 1.
"""

from __future__ import annotations


class IntegralError(Exception):
    """Base class of every error integral-cli raises on purpose."""


class ConfigError(IntegralError, ValueError):
    """A setting or argument has a value the library cannot use."""


class ShapeError(ConfigError):
    """A tensor argument has the wrong shape, dtype or number of dimensions."""


class DeviceError(IntegralError, RuntimeError):
    """The requested device is not available on this machine."""


class OutputError(IntegralError, OSError):
    """An output file cannot be written (exists, missing directory, no permission)."""


class OutputPathError(ConfigError):
    """An output path is refused before any work starts (exists, no such directory)."""


class InputFileError(ConfigError):
    """An input file (a results CSV or its sidecar) is missing, empty, truncated or of
    the wrong shape."""


class OutOfMemoryError(IntegralError, MemoryError):
    """Even a single map does not fit in the device's memory."""


class MissingDependencyError(IntegralError, ImportError):
    """An optional dependency (matplotlib, for pictures) is not installed."""


class MissingResultsError(IntegralError):
    """A computation produced nothing to report (every result non-finite)."""
