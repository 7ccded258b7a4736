"""The command line: each command parses its options, calls the library and renders.

``integral-cli --help``, every ``COMMAND --help`` and ``--version`` import no torch: the
commands import the library's computing modules when they run.
"""

from integral_cli.cli import evaluate, experiments, info, pictures, training  # noqa: F401 - they register the commands
from integral_cli.cli.app import app


def main() -> None:
    """Console-script entry point."""
    app(prog_name="integral-cli")


__all__ = ["app", "main"]
