"""Small steps the decoders are built from."""

from __future__ import annotations

import torch

from integral_cli.coords import pixel_coordinates


def working_dtype(heatmaps: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other floating dtype is decoded in float32."""
    return torch.float64 if heatmaps.dtype == torch.float64 else torch.float32


def expected_coordinate(weights: torch.Tensor) -> torch.Tensor:
    """Expectation of the pixel index under non-negative, not necessarily normalised weights.

    Args:
        weights: ``(..., N)`` weights over pixel centres ``0 .. N - 1``.

    Returns:
        ``(...)``: ``sum_i w_i * i / sum_i w_i``.

    >>> expected_coordinate(torch.tensor([1.0, 1.0, 2.0]))
    tensor(1.2500)
    """
    positions = pixel_coordinates(weights.shape[-1], device=weights.device, dtype=weights.dtype)
    return (weights @ positions) / weights.sum(-1)


def stack_xy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` x and y -> ``(B, K, 2)`` coordinates in ``(x, y)`` order."""
    return torch.stack((x, y), dim=-1)
