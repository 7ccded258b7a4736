"""Integral (soft-argmax) decoders: expectations of the pixel position under a weighting
of the heatmap.

``integral`` and ``integral-debiased`` take ``exp(beta h)`` unshifted (one pass, no
maximum to find first), through :func:`~integral_cli.decoders.common.scaled_exp`; a map
whose weights overflow (or, for the integral, total a subnormal number) is weighed
again with its maximum subtracted first, so any amplitude and any ``beta`` are safe.
``integral-marginal`` and ``soft-argmax-local`` subtract the maximum first.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from integral_cli.decoders.argmax import get_heatmap_maximum
from integral_cli.decoders.common import (
    exact_enough,
    gather_patches,
    marginals_in_turn,
    patch_inside,
    pixel_indices,
    scaled_exp,
    softmax_expectation,
    stack_xy,
    usable_total,
    working_dtype,
)
from integral_cli.devices import accumulation_dtype

#: Bytes of weights built at once on the CPU by the decoders that need a full-size weight
#: map: a block this small stays in cache and, being under the 1 MiB mmap threshold the
#: tool sets, comes from the allocator's free list instead of fresh pages (a fresh buffer
#: for 4096 maps of 64x48 costs about as much in page faults as the exp that fills it).
#: 64 maps of 64x48 float32 ran fastest of 32 to 4096 maps on the 2-core machine (bench).
BLOCK_BYTES = 768 * 1024
#: Fewest maps per block, so that large maps do not turn the loop over blocks into one
#: iteration per map.
MIN_BLOCK_MAPS = 16


def block_maps(maps: torch.Tensor) -> int:
    """How many maps :func:`weight_marginals` weighs at once.

    On the CPU, blocks of about :data:`BLOCK_BYTES`, which stay in cache. On a GPU the
    whole chunk: each block costs a few kernel launches whatever its size, so cache-sized
    blocks (about 157 of them for 10k maps of 64x48) would cost launch overhead, while
    the chunk itself was sized to fit the memory budget with its working buffers.
    """
    if maps.device.type != "cpu" or maps[0:1].numel() == 0:
        return maps.shape[0]  # (and an empty batch, or empty maps, in one call)
    return max(MIN_BLOCK_MAPS, BLOCK_BYTES // (maps[0].numel() * maps.element_size()))


def weight_marginals(
    weigh: Callable[[torch.Tensor], torch.Tensor], maps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Column and row sums, ``(B, K, W)`` and ``(B, K, H)``, of the weights
    ``weigh(maps)``, built a block of :func:`block_maps` maps at a time.

    The same numbers as one call on everything (each map is weighed on its own), with
    bounded temporaries; each block's sums go straight into the outputs, so a block
    costs three operations besides its weighing. With autograd on, one call, so the
    graph stays simple.
    """
    batch, keypoints, height, width = maps.shape
    flat = maps.reshape(batch * keypoints, 1, height, width)
    block = block_maps(flat)
    if flat.shape[0] <= block or maps.requires_grad:
        weights = weigh(maps)
        return weights.sum(-2), weights.sum(-1)
    columns = maps.new_empty(flat.shape[0], 1, width)
    rows = maps.new_empty(flat.shape[0], 1, height)
    for start in range(0, flat.shape[0], block):
        weights = weigh(flat[start : start + block])
        torch.sum(weights, -2, out=columns[start : start + block])
        torch.sum(weights, -1, out=rows[start : start + block])
    return columns.view(batch, keypoints, width), rows.view(batch, keypoints, height)


def expectation_2d(weigh: Callable[[torch.Tensor], torch.Tensor], maps: torch.Tensor) -> torch.Tensor:
    """``(B, K, 2)`` expected ``(x, y)`` under the non-negative weights ``weigh(maps)``."""
    return marginal_expectation(*weight_marginals(weigh, maps)).to(maps.dtype)


def marginal_expectation(*marginals: torch.Tensor) -> torch.Tensor:
    """``(B, K, n)`` expected coordinates from the ``n`` marginals of the weights along
    each axis (``(x, y)`` from the column and row sums of maps, ``(x, y, z)`` from those
    of volumes and their depth-slice sums), in float64 (float32 on MPS, which has no
    float64).

    Moments from the marginals (two reductions of each map, then these short sums) are
    faster on the CPU than a matrix product with a two-column basis, whose GEMM is
    inefficient at that width. The marginals are divided by their total before they
    meet the coordinates: unshifted weights may total near float32's largest number,
    which times a coordinate would overflow on MPS.
    """
    dtype = accumulation_dtype(marginals[-1].device)
    total = marginals[-1].to(dtype).sum(-1, keepdim=True)
    moments = []
    for marginal in marginals:
        positions = torch.arange(marginal.shape[-1], device=marginal.device, dtype=dtype)
        moments.append((marginal.to(dtype) / total) @ positions)
    return torch.stack(moments, dim=-1)


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

    def softmax(block: torch.Tensor) -> torch.Tensor:
        # exp(beta (h - max h)) / sum, which cannot overflow
        logits = block.flatten(-2) if beta == 1 else beta * block.flatten(-2)
        return torch.softmax(logits, dim=-1).view_as(block)

    # exp(beta h): the softmax's weights before their sum divides them (the expectation
    # divides by it once), faster than torch's softmax (no maximum, no division)
    attempts = ((lambda maps: lambda block: scaled_exp(block, beta), usable_total), (lambda maps: softmax, None))
    return marginal_expectation(*marginals_in_turn(maps, attempts, weight_marginals)).to(maps.dtype)


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
    return stack_xy(softmax_expectation(sum_x), softmax_expectation(sum_y))


def decode_integral_debiased(heatmaps: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Integral with the background pull removed (Gu, Yang, Yao, ICCV 2021), exact form.

    With ``N = H * W``, ``C = sum exp(beta * h)``, the map centre
    ``c = ((W - 1) / 2, (H - 1) / 2)`` and ``E`` the :func:`decode_integral` result,
    ``mu = (C * E - N * c) / (C - N)``: each background pixel at 0 adds ``exp(0) = 1`` to
    ``C`` and pulls ``E`` toward ``c``, and this takes exactly that out. Since
    ``C * E - N * c = sum (exp(beta h) - 1) * x`` and ``C - N = sum (exp(beta h) - 1)``,
    it is the expectation under the weights ``exp(beta h) - 1``, computed as such: as
    ``exp`` then a subtraction, or with ``expm1`` where the total is small next to the
    pixel count (small amplitudes, :func:`~integral_cli.decoders.common.exact_enough`:
    ``exp`` near 1 keeps only the absolute precision of 1). Maps where that overflows
    (``beta h`` above 88 in float32) are weighed again, scaled by
    ``exp(-beta max h) / sum exp(beta (h - max h))``, as
    ``softmax(beta h) - exp(-beta max h) max softmax(beta h)`` (the largest softmax
    weight is ``1 / sum exp(beta (h - max h))``). Either way the background's 1 comes
    off every pixel before summing, not off the large sums, which keeps float32 maps
    accurate when the bump is small next to the background (``C`` close to ``N``).

    Args:
        heatmaps: ``(B, K, H, W)``, background at 0.
        beta: inverse temperature of the softmax (> 0).

    Returns:
        ``(B, K, 2)`` coordinates ``(x, y)`` in heatmap pixels.

    >>> maps = torch.zeros(1, 1, 1, 5); maps[0, 0, 0, 1] = 2.0
    >>> decode_integral_debiased(maps)
    tensor([[[1., 0.]]])
    """
    maps = heatmaps.to(working_dtype(heatmaps))
    count = maps.shape[-2] * maps.shape[-1]

    def fast(block: torch.Tensor) -> torch.Tensor:
        # exp then a subtraction, a background pixel at 0 weighing exactly 0
        return scaled_exp(block, beta).sub_(1)

    def exact(block: torch.Tensor) -> torch.Tensor:
        return torch.expm1(block if beta == 1 else beta * block)

    def scaled(block: torch.Tensor) -> torch.Tensor:
        flat = block.flatten(-2)
        weights = torch.softmax(flat if beta == 1 else beta * flat, dim=-1)
        # the background's 1 in the softmax's scale 1 / sum exp(beta (h - max h)), which
        # is the largest weight, exp(0) over that sum
        background = torch.exp(-beta * flat.amax(-1, keepdim=True)) * weights.amax(-1, keepdim=True)
        weights = weights - background if weights.requires_grad else weights.sub_(background)
        return weights.view_as(block)

    if not (maps.requires_grad and torch.is_grad_enabled()):
        attempts = (
            (lambda maps: fast, lambda total: exact_enough(total, count)),
            (lambda maps: exact, torch.isfinite),  # small amplitudes; NaN maps stay NaN
            (lambda maps: scaled, None),  # exp overflowed
        )
        return marginal_expectation(*marginals_in_turn(maps, attempts, weight_marginals)).to(maps.dtype)
    columns, rows = weight_marginals(exact, maps)
    overflowed = ~torch.isfinite(rows.sum(-1))  # (B, K), NaN maps too (they stay NaN)
    if bool(overflowed.any()):
        # the infinite exp of an overflowing map would turn its zero gradient into NaN
        columns, rows = weight_marginals(exact, maps.masked_fill(overflowed[..., None, None], 0.0))
        again = weight_marginals(scaled, maps[overflowed].unsqueeze(1))
        columns, rows = columns.clone(), rows.clone()
        columns[overflowed], rows[overflowed] = again[0].squeeze(1), again[1].squeeze(1)
    return marginal_expectation(columns, rows).to(maps.dtype)


def decode_integral_l1(heatmaps: torch.Tensor) -> torch.Tensor:
    """Expectation under ``relu(h) / sum relu(h)`` (no softmax, so no background pull
    from pixels at or below zero).

    >>> maps = torch.zeros(1, 1, 1, 4); maps[0, 0, 0, 1:3] = torch.tensor([1.0, 3.0])
    >>> decode_integral_l1(maps)
    tensor([[[1.7500, 0.0000]]])
    """
    return expectation_2d(lambda maps: maps.clamp(min=0), heatmaps.to(working_dtype(heatmaps)))


def decode_soft_argmax_local(heatmaps: torch.Tensor, beta: float = 1.0, window_radius: int = 2) -> torch.Tensor:
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
    # pixels outside the map read 0, which exceeds a negative peak by any amount: mask
    # them before exp, or exp overflows to inf and inf * 0 is NaN
    weights = torch.exp((beta * (window - peak[..., None, None])).masked_fill(~inside, -math.inf))
    steps = torch.arange(-window_radius, window_radius + 1, device=maps.device, dtype=maps.dtype)
    total = weights.flatten(-2).sum(-1)
    shift = stack_xy((weights.sum(-2) @ steps) / total, (weights.sum(-1) @ steps) / total)
    return coords + shift
