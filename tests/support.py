"""Helpers shared by the tests: comparing result tables honestly.

Results computed twice by the same operations on the same data in the same order (the
same command twice, a resumed run against an uninterrupted one with the same chunks) are
compared bit for bit. Results computed with a different batching (chunk size, memory
budget, shard) may differ in their last bits, because a batched kernel may sum in another
order; those are compared with a tolerance that the calling test justifies.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def assert_rows_equal(
    got: pd.DataFrame,
    expected: pd.DataFrame,
    *,
    rtol: float = 0.0,
    atol: float = 0.0,
    ignore: Sequence[str] = ("seconds",),
) -> None:
    """The same columns, rows and words; numbers equal, or within ``rtol``/``atol``.

    With both tolerances 0 (the default) every number must be bit-identical. Columns in
    ``ignore`` (the timings) are left out.
    """
    got = got.drop(columns=[c for c in ignore if c in got.columns]).reset_index(drop=True)
    expected = expected.drop(columns=[c for c in ignore if c in expected.columns]).reset_index(drop=True)
    if rtol == 0 and atol == 0:
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
    else:
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=rtol, atol=atol)


def table_rows(text: str) -> list[list[str]]:
    """The body rows of a table the command line printed: the lines after its header rule
    (and before the first blank or non-table line), split into cells on runs of two or
    more spaces."""
    import re

    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("─"))
    rows = []
    for line in lines[start + 1 :]:
        cells = [cell for cell in re.split(r"\s{2,}", line.strip()) if cell]
        if not line.strip() or len(cells) < 2:
            break
        rows.append(cells)
    return rows
