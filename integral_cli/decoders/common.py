"""Small steps the decoders are built from."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from integral_cli.coords import pixel_coordinates


def working_dtype(heatmaps: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other floating dtype is decoded in float32."""
    return torch.float64 if heatmaps.dtype == torch.float64 else torch.float32


LOG2_E = math.log2(math.e)


def scaled_exp(values: torch.Tensor, beta: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """``exp(beta values)`` as ``exp2(beta log2(e) values)``, into ``out`` when given (in
    place, no allocation; ``out`` may be ``values``); a new tensor (which autograd can
    follow) otherwise.

    ``exp2`` ran at 2-3 times the speed of torch's ``exp`` on the CPU (AMD EPYC, where
    torch's float ``exp`` goes through a slower library path). The factor
    ``beta log2(e)`` and the product each round once, which moves a weight by about as
    much as a change of ``values`` in its last place does (a relative ``2e-6`` at
    ``beta values = 30`` in float32).
    """
    if out is None:
        return torch.exp2(values * (beta * LOG2_E))
    return torch.mul(values, beta * LOG2_E, out=out).exp2_()


def usable_total(total: torch.Tensor) -> torch.Tensor:
    """Where the total of unshifted weights ``exp(beta h)`` gives their expectation to
    rounding: finite (no ``exp`` overflowed) and at least ``tiny / eps`` of its dtype.
    Below that the weights are subnormal numbers, whose absolute rounding (half the
    subnormal spacing, ``tiny * eps / 2``) summed over up to ``2^24`` of them would
    exceed the total's own rounding; such maps are weighed again shifted by their
    maximum."""
    info = torch.finfo(total.dtype)
    return torch.isfinite(total) & (total >= info.tiny / info.eps)


def exact_enough(total: torch.Tensor, count: int) -> torch.Tensor:
    """Where ``count`` weights ``exp(beta h) - 1``, taken as ``exp`` then a subtraction,
    weigh as exactly as the sums that follow. Each carries up to half a unit in the last
    place of ``exp(beta h)`` (``2^-24`` near 1 in float32), so together they move an
    expectation along an axis of length ``L`` by up to ``count 2^-24 L / |total|``: at
    ``|total| >= count / 16`` at most ``16 L 2^-24``, the order of the float32 sums' own
    rounding. Small amplitudes fall short, and are weighed again with ``expm1``."""
    return torch.isfinite(total) & (total.abs() >= count / 16)


#: ``(make, accept)``: ``make(outputs)`` is the weighing of those outputs, and
#: ``accept(totals)`` says which outputs keep its weights (``None``: all).
Attempt = tuple[Callable[[torch.Tensor], Any], "Callable[[torch.Tensor], torch.Tensor] | None"]


def marginals_in_turn(
    outputs: torch.Tensor,
    attempts: Sequence[Attempt],
    marginals_of: Callable[[Any, torch.Tensor], tuple[torch.Tensor, ...]],
) -> tuple[torch.Tensor, ...]:
    """The marginals of the weights of ``outputs`` (``(B, K, ...)``), each output
    weighed by the first of ``attempts`` it passes.

    The first attempt weighs every output; each later one only the outputs refused so
    far (as ``(n, 1, ...)``). ``marginals_of(weighing, outputs)`` gives the marginals, the
    sum of the last of which is the total of the weights. Under autograd the last
    attempt weighs everything, so the graph takes one path.
    """
    if outputs.requires_grad and torch.is_grad_enabled():
        return marginals_of(attempts[-1][0](outputs), outputs)
    (make, accept), *rest = attempts
    marginals = marginals_of(make(outputs), outputs)
    todo = None if accept is None else ~accept(marginals[-1].sum(-1))
    for make, accept in rest:
        if todo is None or not bool(todo.any()):
            break
        subset = outputs[todo].unsqueeze(1)
        again = marginals_of(make(subset), subset)
        for marginal, better in zip(marginals, again, strict=True):
            marginal[todo] = better[:, 0]
        if accept is not None:
            refused = torch.zeros_like(todo)
            refused[todo] = ~accept(again[-1][:, 0].sum(-1))
            todo = refused
    return marginals


def softmax_expectation(logits: torch.Tensor) -> torch.Tensor:
    """Expectation of the pixel index under ``softmax(logits)`` along the last axis.

    Args:
        logits: ``(..., N)`` over pixel centres ``0 .. N - 1``.

    Returns:
        ``(...)``: ``sum_i softmax(logits)_i * i`` (the weights sum to 1, so no division).

    >>> softmax_expectation(torch.log(torch.tensor([1.0, 1.0, 2.0])))
    tensor(1.2500)
    """
    positions = pixel_coordinates(logits.shape[-1], device=logits.device, dtype=logits.dtype)
    return torch.softmax(logits, dim=-1) @ positions


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


def patch_inside(x: torch.Tensor, y: torch.Tensor, radius: int, size: Sequence[int]) -> torch.Tensor:
    """``(B, K, 2r+1, 2r+1)`` mask of the neighbourhood pixels that lie inside the map."""
    height, width = size
    steps = torch.arange(-radius, radius + 1, device=x.device)
    xs, ys = x.unsqueeze(-1) + steps, y.unsqueeze(-1) + steps
    return ((ys >= 0) & (ys < height)).unsqueeze(-1) & ((xs >= 0) & (xs < width)).unsqueeze(-2)


#: Smallest neighbourhood side read through a window view: below it, one index per
#: pixel is as fast (64x48 maps: 5x5 no faster, 13x13 and 15x15 about 10% faster).
WINDOW_VIEW_SIDE = 7
#: Largest share of patches crossing the border for which the window view still pays
#: (measured: 21% crossing at 7x7 about even, 32% at 11x11 1.7x slower).
WINDOW_VIEW_MAX_CROSSING = 0.2


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
    side = 2 * radius + 1
    if (
        side < WINDOW_VIEW_SIDE
        or side > height
        or side > width
        # the window view's backward allocates the whole view, (2r+1)^2 times the maps
        or (heatmaps.requires_grad and torch.is_grad_enabled())
    ):
        return _gather_clamped(heatmaps, x, y, radius, edge)
    crosses = (x < radius) | (x >= width - radius) | (y < radius) | (y >= height - radius)
    crossing = int(crosses.sum())
    if crossing > WINDOW_VIEW_MAX_CROSSING * crosses.numel():
        # the crossing patches are redone one index per pixel: with many, that costs more
        return _gather_clamped(heatmaps, x, y, radius, edge)
    # A window view of every map (no copy) indexed once per map: faster than gathering
    # each of the (2r+1)^2 pixels by its own index (DARK 10-15% faster on 64x48 maps).
    windows = heatmaps.unfold(-2, side, 1).unfold(-2, side, 1)  # (B, K, H', W', side, side)
    batch = torch.arange(x.shape[0], device=x.device).unsqueeze(-1)
    keypoint = torch.arange(x.shape[1], device=x.device)
    values = windows[batch, keypoint, (y - radius).clamp(0, height - side), (x - radius).clamp(0, width - side)]
    if crossing:
        # windows moved inside the map hold the wrong pixels: redo those few pixel by pixel
        which = crosses.nonzero(as_tuple=True)
        maps = which[0] * x.shape[1] + which[1]
        values[which] = _gather_clamped(heatmaps, x[which], y[which], radius, edge, maps)
    return values


def _gather_clamped(
    heatmaps: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    radius: int,
    edge: bool,
    maps: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`gather_patches` by one index per pixel, outside pixels clamped to the
    border (``edge``) or set to 0. With ``maps`` (the flat ``b * K + k`` index of each
    entry of ``x`` and ``y``), only those maps' neighbourhoods, ``(n, 2r+1, 2r+1)``."""
    height, width = heatmaps.shape[-2:]
    steps = torch.arange(-radius, radius + 1, device=heatmaps.device)
    xs = (x.unsqueeze(-1) + steps).clamp(0, width - 1)  # (..., P)
    ys = (y.unsqueeze(-1) + steps).clamp(0, height - 1)
    index = ys.unsqueeze(-1) * width + xs.unsqueeze(-2)
    if maps is None:
        values = heatmaps.flatten(-2).gather(-1, index.flatten(-2)).view(index.shape)
    else:
        # take indexes the maps in their logical order, whatever their strides
        values = torch.take(heatmaps, index + (maps * (height * width))[:, None, None])
    return values if edge else values.masked_fill(~patch_inside(x, y, radius, (height, width)), 0.0)
