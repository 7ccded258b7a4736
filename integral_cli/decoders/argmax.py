"""Argmax decoding: the location of the largest value, on the pixel grid."""

from __future__ import annotations

import numpy as np
import torch

from integral_cli.decoders.common import gather_patches, pixel_indices, stack_xy, working_dtype


def flat_argmax(flat: torch.Tensor) -> torch.Tensor:
    """Index of the first maximum along the last dimension (a NaN counts as the maximum).

    On the CPU, numpy's argmax is about four times faster than torch's ``max(dim)`` here
    and gives the same index, first on ties and at the first NaN; elsewhere torch's.
    """
    if flat.device.type == "cpu" and flat.dtype in (torch.float32, torch.float64) and flat.numel():
        rows = flat.detach().reshape(-1, flat.shape[-1]).numpy()
        return torch.from_numpy(np.argmax(rows, axis=1)).view(flat.shape[:-1])
    return flat.argmax(dim=-1)


def get_heatmap_maximum(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Location and value of each map's maximum.

    Ties go to the first maximum in row-major order (smallest y, then smallest x). A map
    whose maximum is not finite (it holds a NaN, or overflowed to infinity, as float16
    does above 65504) gets a NaN location, so it is counted as a non-finite result rather
    than decoded to an arbitrary pixel.

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
    flat = heatmaps.flatten(-2)
    index = flat_argmax(flat)
    values = flat.gather(-1, index.unsqueeze(-1)).squeeze(-1)
    dtype = working_dtype(heatmaps)
    coords = stack_xy((index % width).to(dtype), torch.div(index, width, rounding_mode="floor").to(dtype))
    coords = torch.where(torch.isfinite(values).unsqueeze(-1), coords, torch.nan)
    return coords, values


def decode_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """Argmax decoder: ``x = idx % W``, ``y = idx // W`` of the flat maximum.

    Args:
        heatmaps: ``(B, K, H, W)``.

    Returns:
        ``(B, K, 2)`` coordinates ``(x, y)`` in heatmap pixels (integers).
    """
    return get_heatmap_maximum(heatmaps)[0]


def refine_quarter_offset(heatmaps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Move each coordinate 0.25 px toward its larger neighbour, per axis.

    ``x += 0.25 * sign(h[y, x+1] - h[y, x-1])`` where both neighbours exist (likewise y);
    the SimpleBaseline / HRNet / MMPose refinement. (MMPose's loop also skips ``x = 1``;
    this one does not, since both neighbours of ``x = 1`` exist.)

    Args:
        heatmaps: ``(B, K, H, W)``.
        coords: ``(B, K, 2)`` integer pixel coordinates (the argmax).

    Returns:
        ``(B, K, 2)`` refined coordinates ``(x, y)`` in heatmap pixels.

    >>> maps = torch.tensor([[[[0.0, 1.0, 3.0, 2.0, 0.0]]]])
    >>> refine_quarter_offset(maps, torch.tensor([[[2.0, 0.0]]]))
    tensor([[[2.2500, 0.0000]]])
    """
    height, width = heatmaps.shape[-2:]
    x, y, finite = pixel_indices(coords)
    patch = gather_patches(heatmaps.detach(), x, y, 1)
    has_x = finite & (x >= 1) & (x <= width - 2)
    has_y = finite & (y >= 1) & (y <= height - 2)
    step_x = torch.where(has_x, torch.sign(patch[..., 1, 2] - patch[..., 1, 0]), 0.0)
    step_y = torch.where(has_y, torch.sign(patch[..., 2, 1] - patch[..., 0, 1]), 0.0)
    return coords + 0.25 * stack_xy(step_x, step_y).to(coords.dtype)


def decode_argmax_quarter(heatmaps: torch.Tensor) -> torch.Tensor:
    """Argmax, then the quarter-pixel shift toward the larger neighbour."""
    return refine_quarter_offset(heatmaps, get_heatmap_maximum(heatmaps)[0])
