"""Integral (soft-argmax) decoders: expectations of the pixel position under a weighting
of the heatmap.

The softmax variants subtract the maximum before ``exp``, so any amplitude and any
``beta`` are safe from overflow.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from integral_cli.decoders.argmax import get_heatmap_maximum
from integral_cli.decoders.common import (
    expected_coordinate,
    gather_patches,
    patch_inside,
    pixel_indices,
    stack_xy,
    working_dtype,
)


#: Bytes of weights built at once by the decoders that need a full-size weight map: a
#: block this small stays in cache and, being under the 1 MiB mmap threshold the tool
#: sets, comes from the allocator's free list instead of fresh pages (a fresh buffer for
#: 4096 maps of 64x48 costs about as much in page faults as the exp that fills it). 64
#: maps of 64x48 float32 ran fastest of 32 to 4096 maps on the 2-core machine (bench).
BLOCK_BYTES = 768 * 1024
#: Fewest maps per block, so that large maps do not turn the loop over blocks into one
#: iteration per map.
MIN_BLOCK_MAPS = 16


def blockwise(
    decode_block: Callable[[torch.Tensor], torch.Tensor], maps: torch.Tensor
) -> torch.Tensor:
    """Apply ``decode_block`` to blocks of about :data:`BLOCK_BYTES` of maps and join the
    results.

    The same numbers as one call on everything (each map is decoded on its own), with
    bounded temporaries. With autograd on, one call, so the graph stays simple.
    """
    batch, keypoints = maps.shape[:2]
    flat = maps.reshape(batch * keypoints, 1, *maps.shape[-2:])
    block = max(MIN_BLOCK_MAPS, BLOCK_BYTES // (flat[0].numel() * flat.element_size()))
    if flat.shape[0] <= block or maps.requires_grad:
        return decode_block(maps)
    parts = [decode_block(flat[start : start + block]) for start in range(0, flat.shape[0], block)]
    return torch.cat(parts).view(batch, keypoints, 2)


def weight_moments(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``sum w``, ``sum w x`` and ``sum w y`` of ``(B, K, H, W)`` weights, float64.

    Through the two marginals (two reductions of the map, the short sums in the weights'
    dtype, the rest in float64): faster on the CPU than a matrix product with a
    two-column basis, whose GEMM is inefficient at that width.
    """
    height, width = weights.shape[-2:]
    columns = weights.sum(-2).double()  # (B, K, W)
    rows = weights.sum(-1).double()  # (B, K, H)
    xs = torch.arange(width, device=weights.device, dtype=torch.float64)
    ys = torch.arange(height, device=weights.device, dtype=torch.float64)
    return rows.sum(-1), columns @ xs, rows @ ys


def expectation_2d(weights: torch.Tensor) -> torch.Tensor:
    """``(B, K, H, W)`` non-negative weights -> ``(B, K, 2)`` expected ``(x, y)``."""
    total, moment_x, moment_y = weight_moments(weights)
    return stack_xy(moment_x / total, moment_y / total).to(weights.dtype)


def softmax_weights(maps: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Un-normalised softmax ``exp(beta * (h - max h))`` and the ``(B, K)`` maxima."""
    peak = maps.flatten(-2).amax(-1)
    weights = maps - peak[..., None, None]  # a new tensor: the steps below work in place
    if beta != 1:
        weights.mul_(beta)
    return weights.exp_(), peak


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

    def integral(maps: torch.Tensor) -> torch.Tensor:
        logits = maps.flatten(-2) if beta == 1 else beta * maps.flatten(-2)
        # torch's fused softmax is the fastest way to the weights; the marginals give the moments
        return expectation_2d(torch.softmax(logits, dim=-1).view_as(maps))

    return blockwise(integral, heatmaps.to(working_dtype(heatmaps)))


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
    sum_x, sum_y = maps.sum(-2), maps.sum(-1)
    if beta != 1:
        sum_x, sum_y = beta * sum_x, beta * sum_y
    weights_x = torch.softmax(sum_x, dim=-1)
    weights_y = torch.softmax(sum_y, dim=-1)
    return stack_xy(expected_coordinate(weights_x), expected_coordinate(weights_y))


def decode_integral_debiased(heatmaps: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Integral with the background pull removed (Gu, Yang, Yao, ICCV 2021), exact form.

    With ``N = H * W``, ``C = sum exp(beta * h)``, the map centre
    ``c = ((W - 1) / 2, (H - 1) / 2)`` and ``E`` the :func:`decode_integral` result,
    ``mu = (C * E - N * c) / (C - N)``: each background pixel at 0 adds ``exp(0) = 1`` to
    ``C`` and pulls ``E`` toward ``c``, and this takes exactly that out. Since
    ``C * E - N * c = sum (exp(beta h) - 1) * x`` and ``C - N = sum (exp(beta h) - 1)``,
    it is the expectation under the weights ``exp(beta h) - 1``, computed as
    ``exp(beta (h - max h)) - exp(-beta max h)`` (the same weights scaled by
    ``exp(-beta max h)``, so nothing overflows). Subtracting per pixel rather than from
    the large sums keeps float32 maps accurate when the bump is small next to the
    background (``C`` close to ``N``).

    Args:
        heatmaps: ``(B, K, H, W)``, background at 0.
        beta: inverse temperature of the softmax (> 0).

    Returns:
        ``(B, K, 2)`` coordinates ``(x, y)`` in heatmap pixels.

    >>> maps = torch.zeros(1, 1, 1, 5); maps[0, 0, 0, 1] = 2.0
    >>> decode_integral_debiased(maps)
    tensor([[[1., 0.]]])
    """
    def debiased(maps: torch.Tensor) -> torch.Tensor:
        weights, peak = softmax_weights(maps, beta)
        # take the background's exp(0) = 1 (in the exp(-beta max h) scale) off every pixel
        # before summing, so the sums hold only the bump and float32 keeps its digits
        background = torch.exp(-beta * peak)[..., None, None]
        # in place unless autograd needs the exp's output as it was
        weights = weights - background if weights.requires_grad else weights.sub_(background)
        return expectation_2d(weights)

    return blockwise(debiased, heatmaps.to(working_dtype(heatmaps)))


def decode_integral_l1(heatmaps: torch.Tensor) -> torch.Tensor:
    """Expectation under ``relu(h) / sum relu(h)`` (no softmax, so no background pull
    from pixels at or below zero).

    >>> maps = torch.zeros(1, 1, 1, 4); maps[0, 0, 0, 1:3] = torch.tensor([1.0, 3.0])
    >>> decode_integral_l1(maps)
    tensor([[[1.7500, 0.0000]]])
    """
    return blockwise(lambda maps: expectation_2d(maps.clamp(min=0)), heatmaps.to(working_dtype(heatmaps)))


def decode_soft_argmax_local(
    heatmaps: torch.Tensor, beta: float = 1.0, window_radius: int = 2
) -> torch.Tensor:
    """Softmax-weighted expectation in a ``(2r + 1)^2`` window around the argmax.

    Pixels of the window outside the map are left out.

    Args:
        heatmaps: ``(B, K, H, W)``.
        beta: inverse temperature of the softmax (> 0).
        window_radius: ``r`` (0 gives argmax).

    Returns:
        ``(B, K, 2)`` coordinates ``(x, y)`` in heatmap pixels.
    """
    maps = heatmaps.to(working_dtype(heatmaps))
    coords, peak = get_heatmap_maximum(maps)
    x, y, _ = pixel_indices(coords)
    window = gather_patches(maps, x, y, window_radius)
    inside = patch_inside(x, y, window_radius, maps.shape[-2:])
    weights = torch.exp(beta * (window - peak[..., None, None])) * inside
    steps = torch.arange(-window_radius, window_radius + 1, device=maps.device, dtype=maps.dtype)
    total = weights.flatten(-2).sum(-1)
    shift = stack_xy((weights.sum(-2) @ steps) / total, (weights.sum(-1) @ steps) / total)
    return coords + shift
