"""Argmax decoding: the location of the largest value, on the pixel grid."""

from __future__ import annotations

import torch

from integral_cli.decoders.common import stack_xy, working_dtype


def get_heatmap_maximum(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Location and value of each map's maximum.

    Ties go to the first maximum in row-major order (smallest y, then smallest x). A map
    holding a NaN has a NaN maximum, and its location is NaN too, so it is counted as a
    non-finite result rather than decoded to an arbitrary pixel.

    Args:
        heatmaps: ``(B, K, H, W)``.

    Returns:
        ``(B, K, 2)`` integer-valued coordinates ``(x, y)`` in heatmap pixels, and the
        ``(B, K)`` maximum values.

    >>> maps = torch.zeros(1, 1, 3, 4); maps[0, 0, 2, 1] = 5.0
    >>> get_heatmap_maximum(maps)[0]
    tensor([[[1., 2.]]])
    """
    width = heatmaps.shape[-1]
    values, index = heatmaps.flatten(-2).max(dim=-1)
    dtype = working_dtype(heatmaps)
    coords = stack_xy((index % width).to(dtype), torch.div(index, width, rounding_mode="floor").to(dtype))
    coords = torch.where(torch.isnan(values).unsqueeze(-1), torch.nan, coords)
    return coords, values


def decode_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """Argmax decoder: ``x = idx % W``, ``y = idx // W`` of the flat maximum.

    Args:
        heatmaps: ``(B, K, H, W)``.

    Returns:
        ``(B, K, 2)`` coordinates ``(x, y)`` in heatmap pixels (integers).
    """
    return get_heatmap_maximum(heatmaps)[0]
