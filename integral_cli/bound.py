"""The limit under noise: the Cramér–Rao lower bound on the position of a Gaussian spot.

A map ``h = A g(x, y; x0, y0, s)`` plus white Gaussian noise of standard deviation
``sn`` per pixel carries the Fisher information ``I = sum_pixels grad h grad h^T / sn^2``
about ``theta = (x0, y0, A, s)``, the amplitude and width being unknown nuisance
parameters. No unbiased decoder has a smaller covariance than the position block of
``I^-1``. It is computed exactly on the rendered grid of each sample: the map is
separable, so every sum over pixels is a product of two sums along the axes.

Away from the border the cross terms vanish by symmetry and the sums equal the integrals
for ``s >~ 1``: the variance per axis is ``(2 / pi) (sn / A)^2`` heatmap px^2, whatever
``s``, so with ``noise = sn / A`` the 2D bound is ``2 noise stride / sqrt(pi)`` image px
(0.2257 at noise 0.05, stride 4). As in single-molecule localisation microscopy
(Mortensen et al., Nature Methods 2010), least-squares Gaussian fitting (the decoder
``gaussian-fit``) is the maximum-likelihood estimate under this noise and reaches it.
"""

from __future__ import annotations

import math

import torch

from integral_cli.checks import check_points, check_positive, check_size
from integral_cli.coords import convention_scales
from integral_cli.errors import ConfigError

#: The encoders whose maps are a Gaussian of unknown amplitude and width (``udp``: within
#: its window), for which the bound is computed.
BOUNDED_ENCODERS: tuple[str, ...] = ("gaussian", "fwhm", "udp")


def fisher_information(
    centers: torch.Tensor,
    size: tuple[int, int],
    sigma: float,
    amplitude: float,
    noise_sd: float,
    *,
    encoder: str = "gaussian",
) -> torch.Tensor:
    """The Fisher information of ``(x0, y0, A, s)`` in maps of one Gaussian each.

    Args:
        centers: ``(B, K, 2)`` centres ``(x0, y0)`` in heatmap pixels.
        size: ``(H, W)`` of the maps.
        sigma: the Gaussian's ``s``, heatmap pixels.
        amplitude: its peak ``A``.
        noise_sd: the noise's standard deviation per pixel, ``sn``.
        encoder: ``gaussian`` or ``fwhm`` (the whole map), or ``udp`` (zero beyond
            ``3 s`` of the rounded centre).

    Returns:
        ``(B, K, 4, 4)`` float64 matrices, in the order ``(x0, y0, A, s)``.

    >>> info = fisher_information(torch.tensor([[[24.0, 32.0]]]), (64, 48), 2.0, 1.0, 1.0)
    >>> round(info[0, 0, 0, 0].item() * 2 / math.pi, 6)  # I_x0x0 = pi A^2 / (2 sn^2)
    1.0
    """
    check_points(centers, "centers")
    height, width = check_size(size, "size")
    for value, name in ((sigma, "sigma"), (amplitude, "amplitude"), (noise_sd, "noise_sd")):
        check_positive(value, name)
    if encoder not in BOUNDED_ENCODERS:
        raise ConfigError(f"the bound is computed for the encoders {', '.join(BOUNDED_ENCODERS)}, not {encoder!r}")
    points = centers.double()
    moments_x = _moments(points[..., 0], width, sigma, encoder)  # (B, K, 5): sum g^2 d^k, k = 0..4
    moments_y = _moments(points[..., 1], height, sigma, encoder)
    mx, my = moments_x.unbind(-1), moments_y.unbind(-1)
    a, s = float(amplitude), float(sigma)
    xx = a**2 / s**4 * mx[2] * my[0]
    yy = a**2 / s**4 * mx[0] * my[2]
    xy = a**2 / s**4 * mx[1] * my[1]
    aa = mx[0] * my[0]
    xa = a / s**2 * mx[1] * my[0]
    ya = a / s**2 * mx[0] * my[1]
    ss = a**2 / s**6 * (mx[4] * my[0] + 2 * mx[2] * my[2] + mx[0] * my[4])
    xs = a**2 / s**5 * (mx[3] * my[0] + mx[1] * my[2])
    ys = a**2 / s**5 * (mx[0] * my[3] + mx[2] * my[1])
    as_ = a / s**3 * (mx[2] * my[0] + mx[0] * my[2])
    rows = (
        (xx, xy, xa, xs),
        (xy, yy, ya, ys),
        (xa, ya, aa, as_),
        (xs, ys, as_, ss),
    )
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2) / noise_sd**2


def _moments(centre: torch.Tensor, length: int, sigma: float, encoder: str) -> torch.Tensor:
    """``sum_i g(i)^2 (i - c)^k`` for ``k = 0..4`` along one axis: ``(B, K, 5)``."""
    pixels = torch.arange(length, device=centre.device, dtype=torch.float64)
    distance = pixels - centre.unsqueeze(-1)  # (B, K, L)
    squared = torch.exp(-(distance**2) / sigma**2)  # g^2
    if encoder == "udp":
        squared = squared * ((pixels - torch.floor(centre.unsqueeze(-1) + 0.5)).abs() <= 3.0 * sigma)
    powers = torch.stack([distance**k for k in range(5)], dim=-1)  # (B, K, L, 5)
    return (squared.unsqueeze(-1) * powers).sum(-2)


def position_covariance(information: torch.Tensor) -> torch.Tensor:
    """The ``(x0, y0)`` block of the inverse of ``(..., 4, 4)`` Fisher matrices: the
    Cramér–Rao bound on the position's covariance, ``(..., 2, 2)``."""
    return torch.linalg.inv(information)[..., :2, :2]


def crlb_rmse_image(
    centers: torch.Tensor,
    size: tuple[int, int],
    sigma: float,
    amplitude: float,
    noise_sd: float,
    *,
    stride: int,
    convention: str = "center",
    image_size: tuple[int, int] | None = None,
    encoder: str = "gaussian",
) -> float:
    """The bound on the RMSE of the decoded point in image pixels: the square root of
    the mean over the samples of the trace of the position covariance, each axis scaled
    from heatmap to image pixels by the convention."""
    covariance = position_covariance(fisher_information(centers, size, sigma, amplitude, noise_sd, encoder=encoder))
    (scale_x, scale_y), _ = convention_scales(convention, stride, image_size)
    trace = covariance[..., 0, 0] / scale_x**2 + covariance[..., 1, 1] / scale_y**2
    return math.sqrt(trace.mean().item())
