"""The Typer app, its one mapping from errors to exit codes, and the output streams.

Tables and data go to stdout; progress, warnings and errors go to stderr. A library
error becomes one line on stderr: a bad setting exits with 2 (like a usage error), any
other with 1; so does running out of memory anywhere (exit 1), whether or not the
library caught it; an interrupt exits with 130. Imports no torch.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from integral_cli import __version__
from integral_cli.errors import ConfigError, IntegralError
from integral_cli.settings import SETTINGS

#: Exit code of an interrupted command (128 + SIGINT).
INTERRUPTED = 130


def option_spelling(command: Any, name: str) -> str:
    """How the command line spells a setting a library message names: the command's
    option for it (a list option of ``sweep`` for an axis), else the table's flag, else
    the name itself (a phrase, or a setting this command does not take)."""
    params = {param.name: param for param in getattr(command, "params", ())}
    item = SETTINGS.get(name)
    for candidate in (name, item.sweep.replace("-", "_") if item and item.sweep else None):
        if candidate in params and params[candidate].opts:
            return str(params[candidate].opts[0])
    return item.flag if item else name


class IntegralGroup(TyperGroup):
    """The command group; every command's errors go through :meth:`invoke`."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except IntegralError as error:
            command = self.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
            message = error.render(lambda name: option_spelling(command, name))
            typer.echo(f"integral-cli: error: {message}", err=True)
            raise typer.Exit(2 if isinstance(error, ConfigError) else 1) from None
        except KeyboardInterrupt:
            typer.echo("integral-cli: interrupted", err=True)
            raise typer.Exit(INTERRUPTED) from None
        except Exception as error:
            # the last line of defence: the library turns out-of-memory errors into its own
            reason = out_of_memory_reason(error)
            if reason is None:
                raise
        typer.echo(f"integral-cli: error: out of memory ({reason}); ask for less work, or use another device", err=True)
        raise typer.Exit(1)


def out_of_memory_reason(error: BaseException) -> str | None:
    """The first sentence of ``error``'s message if it is an allocator running out of
    memory (on a device or the host), else ``None``. Imports no torch: a torch error can
    only come from a command that imported it."""
    if not isinstance(error, MemoryError) and "torch" not in sys.modules:
        return None
    from integral_cli import devices

    return devices.out_of_memory_reason(error) if devices.is_out_of_memory(error) else None


app = typer.Typer(
    name="integral-cli",
    cls=IntegralGroup,
    help="Measure the quantization error of keypoint heatmap decoders on synthetic maps, their "
    "gradients, and your own model's heatmaps.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def warn(message: str) -> None:
    """A warning on stderr."""
    typer.echo(f"integral-cli: warning: {message}", err=True)


def say(message: str) -> None:
    """A note on stderr (what was written where)."""
    typer.echo(message, err=True)


def progress_bar() -> Any:
    """A progress bar on stderr, shown only when stderr is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"integral-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Measure the quantization error of keypoint heatmap decoders on synthetic maps."""
