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
