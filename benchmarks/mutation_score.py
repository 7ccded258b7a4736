"""Per-module mutation score from the results mutmut left in ``mutants/``.

Run by ``benchmarks/mutation.sh`` after ``mutmut run``; reads the mutant name patterns
(the targets) and the equivalent-mutant notes from that script, so the two never
disagree. Prints, per module, killed / total and the surviving mutants, each marked
``equivalent`` when the notes explain why it cannot change a result.

Usage: python benchmarks/mutation_score.py [--survivors-only]
       python benchmarks/mutation_score.py --prepare-recheck

``--prepare-recheck`` marks the target mutants that survived (or had no test) as not yet
checked, and every other unchecked mutant as skipped, so that a plain ``mutmut run``
retests only the former: after adding tests, a killed mutant stays killed (the code
under test has not changed), so only the survivors need running again. A function whose
code changed gets new mutants, unchecked, and those are run too.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "mutation.sh"

#: mutmut's exit codes: the mutant's tests failed (1; 3 is pytest's internal error)
#: or ran out of CPU time (a hang is caught as well).
KILLED = {1, 3}
TIMEOUT = {24, -24, 36, 152, 255}


def targets_and_notes() -> tuple[list[str], dict[str, str]]:
    """The mutant name patterns of ``targets=(...)`` and the notes, ``# equivalent:``
    (cannot change a result) or ``# accelerator:`` (changes one only off the CPU)."""
    text = SCRIPT.read_text(encoding="utf-8")
    block = re.search(r"^\s*local targets=\((.*?)^\s*\)", text, re.S | re.M)
    if block is None:
        raise SystemExit(f"no targets=( ... ) in {SCRIPT}")
    targets = re.findall(r'"([^"]+)"', block.group(1))
    notes = {}
    for tag, name, why in re.findall(r"^#\s+(equivalent|accelerator):\s+(\S+)\s+-+\s+(.*)$", text, re.M):
        notes[name] = f"{tag}: {why.strip()}"
    return targets, notes


def module_of(name: str) -> str:
    """``integral_cli.decoders.dark.x_refine_dark__mutmut_3`` -> ``decoders/dark.py``."""
    dotted = name.split("__mutmut_")[0].rsplit(".", 1)[0]
    parts = dotted.split(".")[1:]
    if parts == ["decoders"]:
        return "decoders/__init__.py"
    return "/".join(parts) + ".py"


def prepare_recheck(targets: list[str]) -> int:
    """Reset surviving target mutants to unchecked, skip unchecked non-targets."""
    reset = 0
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        codes = data["exit_code_by_key"]
        for name, code in codes.items():
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in targets):
                if code in (0, 33, 5):
                    codes[name] = None
                    reset += 1
            elif code is None:
                codes[name] = SKIPPED
        meta.write_text(json.dumps(data, indent=4), encoding="utf-8")
    print(f"{reset} mutants to check again", file=sys.stderr)
    return 0


#: mutmut's code for a mutant it was told to skip.
SKIPPED = 34


def main() -> int:
    survivors_only = "--survivors-only" in sys.argv
    targets, notes = targets_and_notes()
    if "--prepare-recheck" in sys.argv:
        return prepare_recheck(targets)
    results: dict[str, dict[str, int | None]] = defaultdict(dict)
    metas = sorted((ROOT / "mutants").rglob("*.py.meta"))
    if not metas:
        print("no results in mutants/: run benchmarks/mutation.sh first", file=sys.stderr)
        return 1
    for meta in metas:
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        for name, code in codes.items():
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in targets):
                results[module_of(name)][name] = code
    surviving = {n for r in results.values() for n, c in r.items() if c == 0}
    stale = sorted(set(notes) - surviving)
    total_killed = total_all = 0
    print(f"{'module':<24} {'killed':>7} {'total':>6} {'score':>7}  survived (documented)  other")
    for module in sorted(results):
        codes = results[module]
        killed = sum(code in KILLED or code in TIMEOUT for code in codes.values())
        survived = sorted((n for n, c in codes.items() if c == 0), key=_natural)
        other = len(codes) - killed - len(survived)
        equivalent = sum(n in notes for n in survived)
        total_killed, total_all = total_killed + killed, total_all + len(codes)
        print(
            f"{module:<24} {killed:>7} {len(codes):>6} {100 * killed / len(codes):>6.1f}%"
            f"  {len(survived):>8} ({equivalent}){'':>11}  {other}"
        )
    print(f"{'all':<24} {total_killed:>7} {total_all:>6} {100 * total_killed / max(total_all, 1):>6.1f}%")
    print("\n('other': not run, no covering test, or a crash of the test run itself)")
    for module in sorted(results):
        survived = sorted((n for n, c in results[module].items() if c == 0), key=_natural)
        shown = [n for n in survived if not survivors_only or n not in notes]
        if shown:
            print(f"\nsurvivors in {module}:")
            for name in shown:
                print(f"  {name}  [{notes[name]}]" if name in notes else f"  {name}")
    if stale:
        print("\nnotes that name no surviving mutant (killed now, or the code moved):")
        for name in stale:
            print(f"  {name}")
    undocumented = [n for r in results.values() for n, c in r.items() if c == 0 and n not in notes]
    return 1 if undocumented else 0


def _natural(name: str) -> tuple[str, int]:
    stem, _, number = name.rpartition("__mutmut_")
    return stem, int(number) if number.isdigit() else 0


if __name__ == "__main__":
    sys.exit(main())
