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


def pixel_indices(coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer ``(x, y)`` pixel indices of integer-valued coordinates, NaN-safe.

    Returns:
        ``x``, ``y`` as ``(B, K)`` int64 (0 where the coordinate is NaN) and the ``(B, K)``
        mask of finite coordinates.
    """
    finite = torch.isfinite(coords).all(dim=-1)
    safe = torch.where(finite.unsqueeze(-1), coords, 0).long()
    return safe[..., 0], safe[..., 1], finite


def patch_inside(
    x: torch.Tensor, y: torch.Tensor, radius: int, size: tuple[int, int]
) -> torch.Tensor:
    """``(B, K, 2r+1, 2r+1)`` mask of the neighbourhood pixels that lie inside the map."""
    height, width = size
    steps = torch.arange(-radius, radius + 1, device=x.device)
    xs, ys = x.unsqueeze(-1) + steps, y.unsqueeze(-1) + steps
    return ((ys >= 0) & (ys < height)).unsqueeze(-1) & ((xs >= 0) & (xs < width)).unsqueeze(-2)


def gather_patches(
    heatmaps: torch.Tensor, x: torch.Tensor, y: torch.Tensor, radius: int, *, edge: bool = False
) -> torch.Tensor:
    """The ``(2r+1) x (2r+1)`` neighbourhood of pixel ``(x, y)`` in every map.

    Args:
        heatmaps: ``(B, K, H, W)``.
        x, y: ``(B, K)`` int64 pixel indices inside the map.
        radius: ``r``.
        edge: outside the map, repeat the nearest border pixel (``True``) or read 0.

    Returns:
        ``(B, K, 2r+1, 2r+1)`` values; ``[..., r, r]`` is pixel ``(x, y)``.

    >>> maps = torch.arange(12.0).view(1, 1, 3, 4)
    >>> gather_patches(maps, torch.tensor([[0]]), torch.tensor([[1]]), 1)[0, 0]
    tensor([[0., 0., 1.],
            [0., 4., 5.],
            [0., 8., 9.]])
    """
    height, width = heatmaps.shape[-2:]
    steps = torch.arange(-radius, radius + 1, device=heatmaps.device)
    xs = (x.unsqueeze(-1) + steps).clamp(0, width - 1)  # (B, K, P)
    ys = (y.unsqueeze(-1) + steps).clamp(0, height - 1)
    index = ys.unsqueeze(-1) * width + xs.unsqueeze(-2)
    values = heatmaps.flatten(-2).gather(-1, index.flatten(-2)).view(index.shape)
    crosses = (x < radius) | (x >= width - radius) | (y < radius) | (y >= height - radius)
    if edge or not bool(crosses.any()):
        return values
    # zero what lies outside the map, touching only the patches that cross its border
    which = crosses.nonzero(as_tuple=True)
    outside = ~patch_inside(x[which], y[which], radius, (height, width))
    values[which] = values[which].masked_fill(outside, 0.0)
    return values
