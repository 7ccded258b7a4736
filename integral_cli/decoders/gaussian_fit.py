"""Least-squares Gaussian fitting: the maximum-likelihood position under white Gaussian
noise, the estimator that reaches the Cramér–Rao bound (Mortensen et al., Nature
Methods 2010, for spots on a pixel grid).

Around each argmax pixel, ``A exp(-((u - x0)^2 + (v - y0)^2) / (2 s^2)) + b`` is fitted
to the ``(2r + 1)^2`` window by a fixed number of Levenberg–Marquardt steps, batched over
every map (a 5x5 solve per map and step), started from a cheap estimate: the offset at
the window's minimum, the amplitude at the peak, and position and width from a parabola
through the log of the three pixels around the peak on each axis. Pixels of the window
outside the map are left out of the fit. The steps are unrolled tensor operations, so
the fit is differentiable. Where it fails (a non-finite or non-positive amplitude or
width, or a point that leaves the window), the start estimate is returned instead, and
counted.
"""

from __future__ import annotations

import torch

from integral_cli.decoders.argmax import get_heatmap_maximum
from integral_cli.decoders.common import gather_patches, patch_inside, pixel_indices, stack_xy, working_dtype

#: Levenberg–Marquardt steps: from the log-parabola start the fit has converged to about
#: 1e-9 heatmap px after ten, even in a window cut by a corner of the map (six suffice in
#: the interior).
FIT_STEPS = 10
#: Starting damping, and its change after an accepted or a refused step.
DAMPING, DAMPING_DOWN, DAMPING_UP = 1e-3, 0.3, 10.0


def _log_parabola(left: torch.Tensor, centre: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Offset of the peak (within half a pixel) and the Gaussian's variance from the log
    of three neighbouring values; NaN variance where the log is not concave."""
    tiny = torch.finfo(centre.dtype).tiny
    a, c, b = (torch.log(v.clamp(min=tiny)) for v in (left, centre, right))
    curvature = a - 2 * c + b
    offset = torch.where(curvature < 0, 0.5 * (a - b) / curvature, torch.zeros_like(curvature))
    variance = torch.where(curvature < 0, -1.0 / curvature, torch.full_like(curvature, torch.nan))
    return offset.clamp(-0.5, 0.5), variance


def fit_gaussians(heatmaps: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit a Gaussian plus offset around each map's maximum.

    Args:
        heatmaps: ``(B, K, H, W)``.
        radius: half-width ``r`` of the window, heatmap pixels.

    Returns:
        ``(B, K, 5)`` parameters ``(x0, y0, A, s, b)`` (position in heatmap pixels; float64,
        float32 on MPS), and the ``(B, K)`` mask of the maps where the fit failed and the
        start estimate stands in its place (a map whose maximum is not finite gets NaN and
        is not counted).
    """
    exact = torch.float32 if heatmaps.device.type == "mps" else torch.float64
    maps = heatmaps.to(exact)
    coords, peak = get_heatmap_maximum(maps)
    x, y, finite = pixel_indices(coords)
    window = gather_patches(maps, x, y, radius)  # (B, K, P, P), 0 outside the map
    inside = patch_inside(x, y, radius, maps.shape[-2:]).to(exact)
    steps = torch.arange(-radius, radius + 1, device=maps.device, dtype=exact)
    u, v = steps.view(1, 1, 1, -1), steps.view(1, 1, -1, 1)

    # the start: offset at the window's minimum, amplitude at the peak, log-parabolas
    offset = window.masked_fill(inside == 0, torch.inf).flatten(-2).amin(-1)
    neighbours = gather_patches(maps, x, y, 1, edge=True) - offset[..., None, None]
    near = patch_inside(x, y, 1, maps.shape[-2:])
    dx, variance_x = _log_parabola(neighbours[..., 1, 0], neighbours[..., 1, 1], neighbours[..., 1, 2])
    dy, variance_y = _log_parabola(neighbours[..., 0, 1], neighbours[..., 1, 1], neighbours[..., 2, 1])
    # at the border a neighbour is missing: no parabola along that axis
    has_x, has_y = near[..., 1, 0] & near[..., 1, 2], near[..., 0, 1] & near[..., 2, 1]
    dx, variance_x = torch.where(has_x, dx, 0.0), torch.where(has_x, variance_x, torch.nan)
    dy, variance_y = torch.where(has_y, dy, 0.0), torch.where(has_y, variance_y, torch.nan)
    variance = torch.nanmean(torch.stack((variance_x, variance_y)), dim=0).nan_to_num(radius**2 / 9.0)
    width = variance.clamp(0.25**2, float(radius**2)).sqrt()
    amplitude = (peak.to(exact) - offset).clamp(min=torch.finfo(exact).tiny)
    start = torch.stack((dx, dy, amplitude, width, offset), dim=-1)  # (B, K, 5)

    def cost(params: torch.Tensor) -> torch.Tensor:
        return ((_model(params, u, v) - window) ** 2 * inside).flatten(-2).sum(-1)

    params, damping = start, torch.full_like(offset, DAMPING)
    current = cost(params)
    eye = torch.eye(5, device=maps.device, dtype=exact)
    for _ in range(FIT_STEPS):
        jacobian = _jacobian(params, u, v) * inside.unsqueeze(-1)  # (B, K, P, P, 5)
        jacobian = jacobian.flatten(-3, -2)  # (B, K, P*P, 5)
        residual = ((_model(params, u, v) - window) * inside).flatten(-2)  # (B, K, P*P)
        normal = jacobian.mT @ jacobian  # (B, K, 5, 5)
        gradient = (jacobian.mT @ residual.unsqueeze(-1)).squeeze(-1)
        scaled = normal + damping[..., None, None] * (normal * eye)
        # a singular system (a flat window) takes no step rather than a NaN one
        safe = torch.linalg.det(scaled).abs() > 0
        scaled = torch.where(safe[..., None, None], scaled, eye)
        step = torch.linalg.solve(scaled, -gradient.unsqueeze(-1)).squeeze(-1)
        step = torch.where(safe.unsqueeze(-1), step, torch.zeros_like(step))
        trial = params + step
        trial_cost = cost(trial)
        better = (trial_cost < current) & torch.isfinite(trial_cost)
        params = torch.where(better.unsqueeze(-1), trial, params)
        current = torch.where(better, trial_cost, current)
        damping = torch.where(better, damping * DAMPING_DOWN, damping * DAMPING_UP)

    # the model depends on the width's square only: -s fits as well as s
    params = torch.cat((params[..., :3], params[..., 3:4].abs(), params[..., 4:]), dim=-1)
    failed = ~finite | ~torch.isfinite(params).all(-1) | (params[..., 2] <= 0) | (params[..., 3] == 0)
    failed = failed | (params[..., :2].abs() > radius).any(-1)
    centre = coords.to(exact)
    fitted = torch.cat((centre + params[..., :2], params[..., 2:]), dim=-1)
    fallback = torch.cat((centre + start[..., :2], start[..., 2:]), dim=-1)
    return torch.where(failed.unsqueeze(-1), fallback, fitted), failed & finite


def _model(params: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    x0, y0, amplitude, width, offset = (params[..., i, None, None] for i in range(5))
    return amplitude * torch.exp(-((u - x0) ** 2 + (v - y0) ** 2) / (2 * width**2)) + offset


def _jacobian(params: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(B, K, P, P, 5)`` derivatives of the model by ``(x0, y0, A, s, b)``."""
    x0, y0, amplitude, width, _ = (params[..., i, None, None] for i in range(5))
    du, dv = u - x0, v - y0
    shape = torch.exp(-(du**2 + dv**2) / (2 * width**2))
    peak = amplitude * shape
    return torch.stack(
        (
            peak * du / width**2,
            peak * dv / width**2,
            shape,
            peak * (du**2 + dv**2) / width**3,
            torch.ones_like(shape),
        ),
        dim=-1,
    )


def decode_gaussian_fit_counted(heatmaps: torch.Tensor, fit_radius: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`decode_gaussian_fit`, and the ``(B, K)`` mask of the maps where the fit
    failed and the start estimate was returned."""
    params, failed = fit_gaussians(heatmaps, fit_radius)
    return stack_xy(params[..., 0], params[..., 1]).to(working_dtype(heatmaps)), failed


def decode_gaussian_fit(heatmaps: torch.Tensor, fit_radius: int = 4) -> torch.Tensor:
    """Least-squares fit of ``A g + b`` in a ``(2r+1)^2`` window around the argmax.

    Args:
        heatmaps: ``(B, K, H, W)``.
        fit_radius: half-width ``r`` of the window, heatmap pixels (about 3 sigma holds
            nearly all the information).

    Returns:
        ``(B, K, 2)`` coordinates ``(x, y)`` in heatmap pixels.

    >>> xs, ys = torch.arange(15.0), torch.arange(13.0)[:, None]
    >>> maps = torch.exp(-((xs - 6.3) ** 2 + (ys - 5.6) ** 2) / 8)[None, None]
    >>> decode_gaussian_fit(maps).round(decimals=4)
    tensor([[[6.3000, 5.6000]]])
    """
    return decode_gaussian_fit_counted(heatmaps, fit_radius)[0]
