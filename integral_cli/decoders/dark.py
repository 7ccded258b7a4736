"""DARK and UDP-DARK refinement: a Newton step on the log of the blurred heatmap.

Both blur the map with OpenCV's Gaussian kernel of size ``k`` with zero padding (as the
reference implementations do), rescale it so its maximum equals the original maximum,
take the log, and step from the argmax pixel by ``-H^{-1} grad``.

Only the neighbourhood the step reads is blurred. The rescale multiplies the blurred map
by a constant ``c >= 1`` (a normalised non-negative kernel cannot raise the maximum of a
map whose maximum is positive); the log turns it into an additive constant that every
finite difference cancels, as long as the clamp before the log does not bite. Maps where
it could (a value of the neighbourhood near the clamp, a non-positive maximum) are
blurred whole, exactly as the references do, so the numbers are the same either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from integral_cli.decoders.argmax import get_heatmap_maximum
from integral_cli.decoders.common import (
    gather_patches,
    patch_inside,
    pixel_indices,
    stack_xy,
    working_dtype,
)
from integral_cli.decoders.registry import check_kernel_size, opencv_sigma
from integral_cli.devices import full_float32

#: Smallest value DARK takes the log of.
DARK_FLOOR = 1e-10
#: Clip range before the log in UDP-DARK.
UDP_FLOOR, UDP_CEILING = 1e-3, 50.0
#: Added to the Hessian's diagonal in UDP-DARK (float32 machine epsilon).
UDP_EPSILON = float(torch.finfo(torch.float32).eps)

# OpenCV's fixed kernels for sizes 1 to 7 when no sigma is given (getGaussianKernel).
_OPENCV_SMALL_KERNELS = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}


def gaussian_kernel(
    size: int, *, dtype: torch.dtype = torch.float64, device: torch.device | None = None
) -> torch.Tensor:
    """OpenCV's normalised 1D Gaussian kernel of ``size`` taps, with its default sigma."""
    check_kernel_size(size)
    if size in _OPENCV_SMALL_KERNELS:
        return torch.tensor(_OPENCV_SMALL_KERNELS[size], dtype=dtype, device=device)
    steps = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(steps**2) / (2 * opencv_sigma(size) ** 2))
    # the dtype first: a float64 tensor cannot go to MPS
    return (kernel / kernel.sum()).to(dtype).to("cpu" if device is None else device)


def blur_maps(maps: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable blur of whole ``(N, H, W)`` maps with zero padding; same size out.

    On CUDA the convolutions run in full float32: cuDNN would use TensorFloat-32 on
    Ampere and later GPUs, whose rounding moves DARK's answer on noisy maps by pixels.
    """
    radius = (kernel.numel() - 1) // 2
    flat = maps.unsqueeze(1)
    with full_float32(maps.device):
        flat = F.conv2d(flat, kernel.view(1, 1, 1, -1), padding=(0, radius))
        flat = F.conv2d(flat, kernel.view(1, 1, -1, 1), padding=(radius, 0))
    return flat.squeeze(1)


def _band_matrix(kernel: torch.Tensor, reach: int) -> torch.Tensor:
    """``T`` of shape ``(2(reach+R)+1, 2reach+1)`` such that ``row @ T`` is the valid
    convolution of a row with the (symmetric) kernel of radius ``R``."""
    radius = (kernel.numel() - 1) // 2
    rows = torch.arange(2 * (reach + radius) + 1, device=kernel.device).unsqueeze(-1)
    offset = rows - torch.arange(2 * reach + 1, device=kernel.device)
    inside = (offset >= 0) & (offset <= 2 * radius)
    return torch.where(inside, kernel[offset.clamp(0, 2 * radius)], 0.0)


def _edge_reindex(values: torch.Tensor, x: torch.Tensor, y: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Replace entries of a neighbourhood that fall outside the map by the nearest inside."""
    height, width = size
    reach = (values.shape[-1] - 1) // 2
    steps = torch.arange(-reach, reach + 1, device=values.device)
    cols = (x.unsqueeze(-1) + steps).clamp(0, width - 1) - x.unsqueeze(-1) + reach
    rows = (y.unsqueeze(-1) + steps).clamp(0, height - 1) - y.unsqueeze(-1) + reach
    side = values.shape[-1]
    index = (rows.unsqueeze(-1) * side + cols.unsqueeze(-2)).flatten(-2)
    return values.flatten(-2).gather(-1, index).view(values.shape)


def modulated_log_neighbourhood(
    maps: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    reach: int,
    kernel_size: int,
    *,
    floor: float,
    ceiling: float = float("inf"),
    edge: bool = False,
    active: torch.Tensor | None = None,
    peak: torch.Tensor | None = None,
) -> torch.Tensor:
    """``log(clip(c * blur(h), floor, ceiling))`` around each argmax pixel.

    ``blur`` is OpenCV's Gaussian blur with zero padding, ``c = max(h) / max(blur(h))``.

    Args:
        maps: ``(B, K, H, W)`` in the working dtype.
        x, y: ``(B, K)`` int64 centre pixels.
        reach: the neighbourhood is ``(2 reach + 1)^2``.
        kernel_size: blur kernel size (odd).
        floor, ceiling: the clip before the log.
        edge: outside the map, repeat the nearest border value (UDP) instead of
            leaving values that the caller must not use.
        active: ``(B, K)`` maps whose result is used; others may take the fast path.
        peak: ``(B, K)`` maxima of the maps, if the caller has them already.

    Returns:
        ``(B, K, 2 reach + 1, 2 reach + 1)``, centre at ``[reach, reach]``.
    """
    size = maps.shape[-2:]
    kernel = gaussian_kernel(kernel_size, dtype=maps.dtype, device=maps.device)
    radius = (kernel_size - 1) // 2
    band = _band_matrix(kernel, reach)
    blurred = band.mT @ gather_patches(maps, x, y, reach + radius) @ band
    if edge:
        blurred = _edge_reindex(blurred, x, y, size)
    if peak is None:
        peak = maps.flatten(-2).amax(-1)
    inside = patch_inside(x, y, reach, size)
    lowest = blurred.masked_fill(~inside, float("inf")).flatten(-2).amin(-1)
    exact = (peak > 0) & (lowest >= floor) & (peak <= ceiling)
    if active is not None:
        exact = exact | ~active
    scale = torch.ones_like(peak)
    if not bool(exact.all()):
        slow = ~exact
        whole = blur_maps(maps[slow], kernel)
        blurred = blurred.clone()
        scale = scale.clone()
        blurred[slow] = gather_patches(
            whole.unsqueeze(1), x[slow].unsqueeze(1), y[slow].unsqueeze(1), reach, edge=True
        ).squeeze(1)
        scale[slow] = peak[slow] / whole.flatten(-2).amax(-1)
    return torch.log((scale[..., None, None] * blurred).clamp(floor, ceiling))


def refine_dark(
    heatmaps: torch.Tensor, coords: torch.Tensor, kernel_size: int = 11, peak: torch.Tensor | None = None
) -> torch.Tensor:
    """DARK (Zhang et al., CVPR 2020): one Newton step on the log of the modulated map.

    With ``f`` the log of the blurred, rescaled map (clamped at 1e-10), at the pixel
    ``(x, y)``: ``dx = (f[x+1] - f[x-1]) / 2``, ``dxx = (f[x+2] - 2 f[x] + f[x-2]) / 4``,
    ``dxy = (f[y+1,x+1] - f[y-1,x+1] - f[y+1,x-1] + f[y-1,x-1]) / 4`` (likewise y), and
    the step ``-H^{-1} grad`` is taken where ``det H != 0`` and the +-2 neighbourhood is
    inside the map; elsewhere the coordinate is returned unchanged.

    Args:
        heatmaps: ``(B, K, H, W)``.
        coords: ``(B, K, 2)`` integer pixel coordinates to refine (the argmax).
        kernel_size: odd blur kernel size; OpenCV's sigma ``0.3((k-1)/2 - 1) + 0.8``.

    Returns:
        ``(B, K, 2)`` refined coordinates ``(x, y)`` in heatmap pixels.
    """
    maps = heatmaps.to(working_dtype(heatmaps))
    height, width = maps.shape[-2:]
    x, y, finite = pixel_indices(coords)
    interior = finite & (x >= 2) & (x <= width - 3) & (y >= 2) & (y <= height - 3)
    f = modulated_log_neighbourhood(maps, x, y, 2, kernel_size, floor=DARK_FLOOR, active=interior, peak=peak)
    centre = f[..., 2, 2]
    dx = 0.5 * (f[..., 2, 3] - f[..., 2, 1])
    dy = 0.5 * (f[..., 3, 2] - f[..., 1, 2])
    dxx = 0.25 * (f[..., 2, 4] - 2 * centre + f[..., 2, 0])
    dyy = 0.25 * (f[..., 4, 2] - 2 * centre + f[..., 0, 2])
    dxy = 0.25 * (f[..., 3, 3] - f[..., 1, 3] - f[..., 3, 1] + f[..., 1, 1])
    det = dxx * dyy - dxy**2
    step = interior & (det != 0)
    det = torch.where(step, det, 1.0)
    offset = stack_xy(-(dyy * dx - dxy * dy) / det, -(dxx * dy - dxy * dx) / det)
    return coords.to(maps.dtype) + torch.where(step.unsqueeze(-1), offset, 0.0)


def refine_dark_udp(
    heatmaps: torch.Tensor, coords: torch.Tensor, kernel_size: int = 11, peak: torch.Tensor | None = None
) -> torch.Tensor:
    """UDP-DARK (Huang et al., CVPR 2020): the DARK step with step-1 differences.

    The modulated map is clipped to ``[1e-3, 50]`` before the log and padded by
    repeating its border, so every pixel, border included, gets the step
    ``-(H + eps I)^{-1} grad`` with ``dx = (f[x+1] - f[x-1]) / 2``,
    ``dxx = f[x+1] - 2 f[x] + f[x-1]`` and
    ``dxy = (f[x+1,y+1] - f[x+1] - f[y+1] + 2 f - f[x-1] - f[y-1] + f[x-1,y-1]) / 2``.

    Args:
        heatmaps: ``(B, K, H, W)``.
        coords: ``(B, K, 2)`` integer pixel coordinates to refine (the argmax).
        kernel_size: odd blur kernel size.

    Returns:
        ``(B, K, 2)`` refined coordinates ``(x, y)`` in heatmap pixels.
    """
    maps = heatmaps.to(working_dtype(heatmaps))
    x, y, finite = pixel_indices(coords)
    f = modulated_log_neighbourhood(
        maps, x, y, 1, kernel_size, floor=UDP_FLOOR, ceiling=UDP_CEILING, edge=True, active=finite, peak=peak
    )
    centre = f[..., 1, 1]
    right, left, down, up = f[..., 1, 2], f[..., 1, 0], f[..., 2, 1], f[..., 0, 1]
    dx = 0.5 * (right - left)
    dy = 0.5 * (down - up)
    dxx = right - 2 * centre + left + UDP_EPSILON
    dyy = down - 2 * centre + up + UDP_EPSILON
    dxy = 0.5 * (f[..., 2, 2] - right - down + 2 * centre - left - up + f[..., 0, 0])
    det = dxx * dyy - dxy**2
    offset = stack_xy(-(dyy * dx - dxy * dy) / det, -(dxx * dy - dxy * dx) / det)
    return coords.to(maps.dtype) + offset


def decode_dark(heatmaps: torch.Tensor, dark_kernel: int = 11) -> torch.Tensor:
    """Argmax, then the DARK step (see :func:`refine_dark`)."""
    coords, peak = get_heatmap_maximum(heatmaps)
    return refine_dark(heatmaps, coords, dark_kernel, peak.to(working_dtype(heatmaps)))


def decode_dark_udp(heatmaps: torch.Tensor, dark_kernel: int = 11) -> torch.Tensor:
    """Argmax, then the UDP-DARK step (see :func:`refine_dark_udp`)."""
    coords, peak = get_heatmap_maximum(heatmaps)
    return refine_dark_udp(heatmaps, coords, dark_kernel, peak.to(working_dtype(heatmaps)))
