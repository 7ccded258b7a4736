"""Regenerate every command output shown in the README and the docs, or check them.

Markdown files carry blocks between markers; this script re-runs what each marker says
and rewrites the block:

    <!-- run: integral-cli compare --stride 4 -->
    ```text
    ...the command's stdout, as an 80-column terminal shows it...
    ```
    <!-- end -->

``run:`` blocks are deterministic (their numbers depend only on the seed): CI re-runs
them with ``--check`` and fails when the committed text differs from a fresh run (a
number may differ by one unit in its last shown digit, the rounding of another CPU's
kernels). ``run-stamped:`` blocks depend on timing or on the machine (``bench``, the
trained and finite-difference columns): they are rewritten only with ``--all`` and carry
the date and machine they came from. ``generate:`` blocks are made from the code itself
(``cli``: the command-line reference from the Typer app; ``options``: the table of
settings; ``decoders``: the decoder registry) and are always checked.

    python docs/regenerate.py            # rewrite the run: and generate: blocks
    python docs/regenerate.py --all      # and the run-stamped: ones
    python docs/regenerate.py --check    # exit 1 if a run: or generate: block is stale
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"<!-- (run|run-stamped|generate): (.+?) -->\n(.*?)<!-- end -->\n", re.DOTALL)
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:e-?\d+)?%?")


def run(command: str) -> str:
    """The stdout of ``command`` (``integral-cli`` run by this interpreter), as a block."""
    words = shlex.split(command)
    if words[0] == "integral-cli":
        words = [sys.executable, "-m", "integral_cli", *words[1:]]
    elif words[0] == "python":
        words[0] = sys.executable
    environment = {**os.environ, "COLUMNS": "80", "PYTHONHASHSEED": "0"}
    result = subprocess.run(words, cwd=ROOT, capture_output=True, text=True, env=environment, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{command!r} failed ({result.returncode}):\n{result.stderr}")
    return f"```text\n$ {command}\n{result.stdout.rstrip()}\n```\n"


def stamp() -> str:
    """When and where a machine-dependent output was made."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    day = datetime.date.today().isoformat()
    return f"*Made on {day} on {cpu}, {os.cpu_count()} cores, torch {torch.__version__}.*\n\n"


def generate(name: str) -> str:
    """A block made from the code: the CLI reference, the settings table, the decoders."""
    return {"cli": cli_reference, "options": options_table, "decoders": decoders_table}[name]()


def cli_reference() -> str:
    import typer

    from integral_cli.cli import app

    group = typer.main.get_command(app)
    parts = []
    for name, command in group.commands.items():
        context = typer.Context(
            command, info_name=f"integral-cli {name}", parent=None, max_content_width=88, terminal_width=88
        )
        parts.append(f"## `integral-cli {name}`\n\n```text\n{command.get_help(context).rstrip()}\n```\n")
    return "\n".join(parts)


def options_table() -> str:
    from integral_cli.settings import option_table

    rows = ["| option (compare / sweep) | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    for row in option_table():
        cells = [cell.replace("|", "\\|") for cell in row]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def decoders_table() -> str:
    from integral_cli.decoders import DECODERS

    rows = [
        "| decoder | gradient | volumes | parameters | what it computes | reference |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for d in DECODERS.values():
        params = ", ".join(f"`{p}`" for p in d.params) or "-"
        volumes = "yes" if "volume" in d.representations else "no"
        gradient = "yes" if d.differentiable else "no"
        rows.append(f"| `{d.name}` | {gradient} | {volumes} | {params} | {d.description} | {d.reference} |")
    return "\n".join(rows) + "\n"


def same_output(committed: str, fresh: str) -> bool:
    """Whether two outputs agree: the same words, and numbers equal to one unit in
    their last shown digit (another CPU's kernels may round the last digit otherwise)."""
    old_lines, new_lines = committed.splitlines(), fresh.splitlines()
    if len(old_lines) != len(new_lines):
        return False
    for old, new in zip(old_lines, new_lines, strict=True):
        if NUMBER.sub("#", old).split() != NUMBER.sub("#", new).split():
            return False
        for a, b in zip(NUMBER.findall(old), NUMBER.findall(new), strict=True):
            if a != b and not _within_last_digit(a, b):
                return False
    return True


def _within_last_digit(a: str, b: str) -> bool:
    def value(text: str) -> float:
        return float(text.replace(",", "").rstrip("%"))

    def unit(text: str) -> float:
        mantissa, _, exponent = text.replace(",", "").rstrip("%").partition("e")
        decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
        return 10.0 ** (-decimals + (int(exponent) if exponent else 0))

    return abs(value(a) - value(b)) <= 1.01 * max(unit(a), unit(b))


def regenerate(check: bool, stamped: bool) -> int:
    stale = []
    for path in FILES:
        text = path.read_text(encoding="utf-8")

        def replace(match: re.Match[str], path: Path = path) -> str:
            kind, what, body = match.groups()
            if kind == "run-stamped" and (check or not stamped):
                return match.group(0)
            maker: Callable[[], str] = {
                "run": lambda: run(what),
                "run-stamped": lambda: stamp() + run(what),
                "generate": lambda: generate(what),
            }[kind]
            fresh = maker()
            if check and not (fresh == body or (kind == "run" and same_output(body, fresh))):
                stale.append(f"{path.relative_to(ROOT)}: {kind}: {what}")
            return f"<!-- {kind}: {what} -->\n{fresh}<!-- end -->\n"

        new = BLOCK.sub(replace, text)
        if not check and new != text:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {path.relative_to(ROOT)}", file=sys.stderr)
    if stale:
        print("stale outputs (run python docs/regenerate.py):\n  " + "\n  ".join(stale), file=sys.stderr)
        return 1
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a run: or generate: block is stale")
    parser.add_argument("--all", action="store_true", help="also rewrite the run-stamped: blocks")
    arguments = parser.parse_args()
    raise SystemExit(regenerate(arguments.check, arguments.all))


if __name__ == "__main__":
    main()
