"""Integral (soft-argmax) decoders: the expectation of a softmax over the heatmap.

Both variants subtract the maximum before ``exp``, so any amplitude and any ``beta``
are safe from overflow.
"""

from __future__ import annotations

import torch

from integral_cli.decoders.common import expected_coordinate, stack_xy, working_dtype


def decode_integral(heatmaps: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """The paper's integral regression (Sun et al., ECCV 2018).

    ``p = softmax(beta * h)`` over all ``H * W`` pixels, then ``x = sum p * x`` and
    ``y = sum p * y``, computed through the marginals of ``p``.

    Args:
        heatmaps: ``(B, K, H, W)``.
        beta: inverse temperature of the softmax (> 0).

    Returns:
        ``(B, K, 2)`` coordinates ``(x, y)`` in heatmap pixels.

    >>> maps = torch.zeros(1, 1, 3, 3); maps[0, 0, 1, 2] = 50.0
    >>> decode_integral(maps)
    tensor([[[2., 1.]]])
    """
    maps = heatmaps.to(working_dtype(heatmaps))
    peak = maps.flatten(-2).amax(-1)[..., None, None]
    weights = torch.exp(beta * (maps - peak))  # un-normalised softmax, max 1
    return stack_xy(expected_coordinate(weights.sum(-2)), expected_coordinate(weights.sum(-1)))


def decode_integral_marginal(heatmaps: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """The seed note's variant: sum the raw map into its x and y marginals first.

    ``m_x = sum_y h``, ``m_y = sum_x h``, ``x = sum softmax(beta * m_x) * x``, likewise y.

    Args:
        heatmaps: ``(B, K, H, W)``.
        beta: inverse temperature of the two 1D softmaxes (> 0).

    Returns:
        ``(B, K, 2)`` coordinates ``(x, y)`` in heatmap pixels.

    >>> maps = torch.zeros(1, 1, 3, 3); maps[0, 0, 1, 2] = 50.0
    >>> decode_integral_marginal(maps)
    tensor([[[2., 1.]]])
    """
    maps = heatmaps.to(working_dtype(heatmaps))
    weights_x = torch.softmax(beta * maps.sum(-2), dim=-1)
    weights_y = torch.softmax(beta * maps.sum(-1), dim=-1)
    return stack_xy(expected_coordinate(weights_x), expected_coordinate(weights_y))
