"""The reading note's worked example, reproduced exactly.

The note renders a 64x32 (H x W) map with three joints at (10, 10), (3, 8) and (16, 18),
a peak of 10 and the FWHM its width rule gives for a box of side 64 (4 px), and decodes it
with argmax and the two integral variants at beta = 1.
"""

from __future__ import annotations

import pandas as pd
import torch

from integral_cli.decoders import decode
from integral_cli.synth import FWHM_PER_SIGMA, note_fwhm, render_heatmaps

EXAMPLE_JOINTS: tuple[tuple[float, float], ...] = ((10.0, 10.0), (3.0, 8.0), (16.0, 18.0))
EXAMPLE_SIZE: tuple[int, int] = (64, 32)
EXAMPLE_BOX_SIDE = 64
EXAMPLE_DECODERS: tuple[str, ...] = ("argmax", "integral", "integral-marginal")


def example_heatmaps(device: torch.device | str = "cpu") -> torch.Tensor:
    """The note's ``(1, 3, 64, 32)`` heatmaps (float32, like the note's), rendered in
    float64 on the CPU and moved to ``device`` (MPS has no float64)."""
    centers = torch.tensor([EXAMPLE_JOINTS], dtype=torch.float64)
    sigma = note_fwhm(EXAMPLE_BOX_SIDE) / FWHM_PER_SIGMA
    return render_heatmaps(centers, EXAMPLE_SIZE, sigma, encoder="fwhm").float().to(device)


def run_example(device: torch.device | str = "cpu") -> pd.DataFrame:
    """Decode the note's maps; one row per joint and decoder.

    Returns:
        Columns ``joint, gt_x, gt_y, decoder, x, y`` (heatmap pixels).
    """
    maps = example_heatmaps(device)
    rows = []
    for name in EXAMPLE_DECODERS:
        decoded = decode(maps, name, beta=1.0)[0].cpu().tolist()
        for joint, ((gt_x, gt_y), (x, y)) in enumerate(zip(EXAMPLE_JOINTS, decoded, strict=True)):
            rows.append({"joint": joint, "gt_x": gt_x, "gt_y": gt_y, "decoder": name, "x": x, "y": y})
    return pd.DataFrame(rows).sort_values("joint", kind="stable", ignore_index=True)
