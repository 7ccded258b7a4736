"""Heatmap synthesis (encoders) and the sampling of ground-truth points.

Every encoder is separable: a map is the outer product of a 1D profile along y and one
along x, so rendering costs one multiply per pixel.
"""

from __future__ import annotations

import math

import torch

from integral_cli.checks import check_points, check_positive, check_size
from integral_cli.coords import heatmap_to_image, pixel_coordinates
from integral_cli.errors import ConfigError

ENCODERS: dict[str, str] = {
    "gaussian": "A * exp(-d^2 / (2 sigma^2)) over the whole map, centre not rounded",
    "seed": "the seed note's generator: 10 * exp(-4 ln2 d^2 / fwhm^2), fwhm = 2.3548 sigma",
}

#: Peak value of the seed note's generator.
SEED_PEAK = 10.0
#: FWHM of a Gaussian in units of its standard deviation, ``2 sqrt(2 ln 2)``.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def seed_fwhm(box_side: int) -> int:
    """The seed note's width rule: ``int(sqrt(L) * L * 10 / 4096) + 3`` for a box of side L.

    >>> seed_fwhm(64)
    4
    """
    return int(math.sqrt(box_side) * box_side * 10 / 4096) + 3


def render_heatmaps(
    centers: torch.Tensor,
    size: tuple[int, int],
    sigma: float,
    *,
    amplitude: float = 1.0,
    encoder: str = "gaussian",
) -> torch.Tensor:
    """Render one Gaussian heatmap per keypoint.

    Args:
        centers: ``(B, K, 2)`` centres ``(x, y)`` in heatmap pixels (not rounded).
        size: heatmap size ``(H, W)``.
        sigma: standard deviation in heatmap pixels.
        amplitude: peak value ``A`` (``gaussian``; the ``seed`` encoder always uses 10).
        encoder: ``"gaussian"`` or ``"seed"`` (the note's FWHM-parameterised generator,
            the same curve written with ``fwhm = 2.3548 * sigma``).

    Returns:
        ``(B, K, H, W)`` heatmaps on the device and in the dtype of ``centers``.

    Raises:
        ShapeError: ``centers`` is not a ``(B, K, 2)`` floating-point tensor.
        ConfigError: a bad size, sigma, amplitude or encoder.

    >>> maps = render_heatmaps(torch.tensor([[[2.0, 1.0]]]), (3, 5), sigma=1.0)
    >>> maps.shape, maps[0, 0, 1, 2].item()
    (torch.Size([1, 1, 3, 5]), 1.0)
    """
    check_points(centers, "centers")
    height, width = check_size(size, "size")
    check_positive(sigma, "sigma")
    if encoder not in ENCODERS:
        raise ConfigError(f"unknown encoder {encoder!r}; choose from {', '.join(ENCODERS)}")
    if encoder == "seed":
        fwhm = FWHM_PER_SIGMA * sigma
        exponent_scale = -4.0 * math.log(2.0) / fwhm**2
        amplitude = SEED_PEAK
    else:
        if isinstance(amplitude, bool) or not math.isfinite(amplitude):
            raise ConfigError(f"amplitude must be a finite number, got {amplitude}")
        exponent_scale = -0.5 / sigma**2
    xs = pixel_coordinates(width, device=centers.device, dtype=centers.dtype)
    ys = pixel_coordinates(height, device=centers.device, dtype=centers.dtype)
    profile_x = torch.exp(exponent_scale * (xs - centers[..., 0:1]) ** 2)  # (B, K, W)
    profile_y = torch.exp(exponent_scale * (ys - centers[..., 1:2]) ** 2)  # (B, K, H)
    # The amplitude goes on the short profile so the big outer product is one multiply.
    return (amplitude * profile_y).unsqueeze(-1) * profile_x.unsqueeze(-2)


def default_margin(sigma_hm: float) -> int:
    """Default distance (heatmap pixels) kept between ground truth and the map border."""
    return math.ceil(3.0 * sigma_hm)


def sample_points(
    count: int,
    keypoints: int,
    heatmap_size: tuple[int, int],
    stride: int,
    margin: float,
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Ground-truth points drawn uniformly in continuous image coordinates.

    The points stay ``margin`` heatmap pixels away from the border pixel centres: in
    heatmap pixels each coordinate lies in ``[margin, side - 1 - margin]``. The map from
    heatmap to image pixels is affine, so uniform there is uniform in the image.

    Args:
        count: number of samples ``B``.
        keypoints: keypoints per sample ``K``.
        heatmap_size: ``(H, W)`` in heatmap pixels.
        stride: image pixels per heatmap pixel.
        margin: distance to keep from the border, in heatmap pixels (``>= 0``).
        generator: seeded generator; its device is the device of the result.
        dtype: dtype of the result.

    Returns:
        ``(count, keypoints, 2)`` points ``(x, y)`` in image pixels.

    Raises:
        ConfigError: the margin leaves no room inside the heatmap.
    """
    height, width = heatmap_size
    if margin < 0 or not math.isfinite(margin):
        raise ConfigError(f"margin must be a finite number >= 0, got {margin}")
    span_x, span_y = width - 1 - 2 * margin, height - 1 - 2 * margin
    if span_x < 0 or span_y < 0:
        raise ConfigError(
            f"margin {margin:g} heatmap px leaves no room in a {height}x{width} heatmap; "
            f"use a margin of at most {(min(height, width) - 1) / 2:g}"
        )
    unit = torch.rand(
        (count, keypoints, 2), generator=generator, device=generator.device, dtype=dtype
    )
    span = torch.tensor([span_x, span_y], device=generator.device, dtype=dtype)
    return heatmap_to_image(margin + unit * span, stride)
