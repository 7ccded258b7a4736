"""The README and the docs: short, readable, and their outputs regenerable."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def regenerate_module():
    spec = importlib.util.spec_from_file_location("regenerate", ROOT / "docs" / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prose_lines(path):
    """The lines of a Markdown file outside its code blocks."""
    inside, lines = False, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside:
            lines.append(line)
    return lines


def test_the_readme_is_short_and_its_lines_fit():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert max(len(line) for line in prose_lines(ROOT / "README.md")) <= 100


def test_every_marker_is_closed_and_every_block_is_filled():
    module = regenerate_module()
    for path in module.FILES:
        text = path.read_text(encoding="utf-8")
        assert text.count("<!-- end -->") == len(re.findall(r"<!-- (run|run-stamped|generate): ", text)), path
        for match in module.BLOCK.finditer(text):
            assert match.group(3).strip(), f"{path}: an empty block for {match.group(2)}"


@pytest.mark.parametrize(
    "committed, fresh, same",
    [
        ("mean 1.54  8.70e-4", "mean 1.54  8.70e-4", True),
        ("mean 1.54  8.70e-4", "mean 1.55  8.71e-4", True),  # the last shown digit, rounded elsewhere
        ("mean 1.54", "mean 1.56", False),
        ("mean 8.70e-4", "mean 8.72e-4", False),
        ("argmax 1.54", "dark 1.54", False),
        ("a\nb", "a", False),
        ("1,234,567 maps/s 42%", "1,234,568 maps/s 43%", True),
    ],
)
def test_outputs_agree_to_their_last_digit(committed, fresh, same):
    assert regenerate_module().same_output(committed, fresh) is same


def test_the_generated_references_come_from_the_code():
    module = regenerate_module()
    from integral_cli import DECODERS
    from integral_cli.settings import SETTINGS

    options = module.options_table()
    for item in SETTINGS.values():
        assert f"`{item.flag}`" in options
    decoders = module.decoders_table()
    for name in DECODERS:
        assert f"| `{name}` |" in decoders
    assert "## `integral-cli sweep`" in module.cli_reference()
