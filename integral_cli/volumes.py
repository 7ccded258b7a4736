"""Volumes: 3D heatmaps ``(B, K, D, H, W)``, the Integral paper's main case.

A keypoint is one volume of ``D`` depth slices of an ``H x W`` heatmap (64x64x64 for a
256x256 input in the paper, the depth a root-relative range). Its ground truth is
``(x, y, z)``: ``x, y`` in input-image pixels as for heatmaps (the stride and the
convention apply), ``z`` in voxels. Voxel centres sit at integer coordinates, and a voxel
is one heatmap pixel across, so sigma is in voxels along every axis.

Rendering is separable, as for heatmaps: a volume is the outer product of three 1D
profiles (the outer sum, for ``logit``), so it costs one multiply per voxel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from integral_cli.checks import check_choice, check_points, check_positive
from integral_cli.coords import convention_scales, heatmap_to_image, image_to_heatmap, pixel_coordinates
from integral_cli.decoders import decode_counted
from integral_cli.errors import ConfigError
from integral_cli.metrics import summarize_volume_offsets
from integral_cli.representation import DTYPES, MAP_BUFFERS, NOISE_BYTES_PER_PIXEL, Counted
from integral_cli.settings import ENCODERS, ExperimentConfig
from integral_cli.synth import (
    FLIPPED_NOISE_STREAM,
    FWHM_PEAK,
    NOISE_STREAM,
    _profile,
    add_noise,
    check_sampling_region,
    flip_back,
    mirror_x,
    peak_value,
    sample_config_points,
)


def render_volumes(
    centers: torch.Tensor,
    size: Sequence[int],
    sigma: float,
    *,
    amplitude: float = 1.0,
    encoder: str = "gaussian",
) -> torch.Tensor:
    """Render one volume per keypoint: every encoder of
    :func:`~integral_cli.synth.render_heatmaps`, along z as well.

    Args:
        centers: ``(B, K, 3)`` centres ``(x, y, z)`` in voxels (not rounded).
        size: volume size ``(D, H, W)``.
        sigma: standard deviation in voxels, along every axis.
        amplitude: peak value ``A`` (``gaussian``, ``msra``, ``udp``; ``fwhm`` always
            uses 10 and ``logit`` has no amplitude).
        encoder: one of :data:`~integral_cli.settings.ENCODERS`, as for heatmaps: for
            ``msra`` and ``udp`` the window of radius ``3 sigma`` is a cube around the
            rounded centre.

    Returns:
        ``(B, K, D, H, W)`` volumes on the device and in the dtype of ``centers``.

    Raises:
        ShapeError: ``centers`` is not a ``(B, K, 3)`` floating-point tensor.
        ConfigError: a bad size, sigma, amplitude or encoder.

    >>> volumes = render_volumes(torch.tensor([[[2.0, 1.0, 3.0]]]), (4, 3, 5), sigma=1.0)
    >>> volumes.shape, volumes[0, 0, 3, 1, 2].item()
    (torch.Size([1, 1, 4, 3, 5]), 1.0)
    """
    check_points(centers, "centers", axes=3)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)
    ):
        raise ConfigError(f"«size» must be three positive integers (D, H, W), got {size!r}")
    check_positive(sigma, "sigma")
    check_choice("encoder", encoder, tuple(ENCODERS))
    if isinstance(amplitude, bool) or not math.isfinite(amplitude):
        raise ConfigError(f"«amplitude» must be a finite number, got {amplitude}")
    depth, height, width = size
    x, y, z = (
        _profile(
            pixel_coordinates(side, device=centers.device, dtype=centers.dtype), centers[..., i : i + 1], sigma, encoder
        )
        for i, side in enumerate((width, height, depth))
    )  # (B, K, W), (B, K, H), (B, K, D)
    if encoder == "logit":
        return z[..., :, None, None] + (y.unsqueeze(-1) + x.unsqueeze(-2)).unsqueeze(-3)
    if encoder == "fwhm":
        amplitude = FWHM_PEAK
    # the amplitude goes on the shortest factor, so the big outer product is one multiply
    return (amplitude * z)[..., :, None, None] * (y.unsqueeze(-1) * x.unsqueeze(-2)).unsqueeze(-3)


def sample_volume_truth(config: ExperimentConfig, device: torch.device | None = None) -> torch.Tensor:
    """The ground-truth points of a ``dims`` 3 ``config``: ``(N, 1, 3)`` float32, ``x, y``
    in image pixels and ``z`` in voxels.

    Drawn once on the CPU from a generator seeded with ``config.seed`` (so the same seed
    gives the same points on every device), uniformly in the volume as ``position`` and
    ``sampling`` say (the margin applies along z too), in voxels; ``x, y`` are then
    mapped to the image with ``config.convention``, and the points moved to ``device``
    (default: left on the CPU).
    """
    points = sample_config_points(config, config.sample_shape)
    image = heatmap_to_image(points[..., :2], config.stride, config.convention, config.image_size)
    return torch.cat((image, points[..., 2:]), dim=-1).float().to(device or torch.device("cpu"))


def render_volume_maps(config: ExperimentConfig, truth: torch.Tensor, first_sample: int) -> torch.Tensor:
    """The volumes a chunk of ground truth encodes to, noise included.

    Args:
        config: the experiment (``dims`` 3).
        truth: ``(B, 1, 3)`` ground truth, ``x, y`` in image pixels, ``z`` in voxels.
        first_sample: global index of ``truth[0]`` (the noise is a function of it, so
            chunking does not change it).

    Returns:
        ``(B, 1, D, H, W)`` volumes in the dtype of ``truth``. With the flip test, as for
        heatmaps: averaged with the volume of the mirrored image flipped back along x
        (and shifted one voxel toward +x first for ``shift``).
    """
    volumes = _render_view(config, truth, first_sample, mirrored=False)
    if config.flip_test == "none":
        return volumes
    return flip_back(volumes, _render_view(config, truth, first_sample, mirrored=True), config.flip_test)


def _render_view(config: ExperimentConfig, truth: torch.Tensor, first_sample: int, *, mirrored: bool) -> torch.Tensor:
    """The volume of the image, or of its mirror image (``x' = W_img - 1 - x``, ``y`` and
    ``z`` kept; the noise its own stream)."""
    seen = mirror_x(truth[..., :2], config.image_size[1]) if mirrored else truth[..., :2]
    centers_xy = image_to_heatmap(seen, config.stride, config.convention, config.image_size)
    centers = torch.cat((centers_xy, truth[..., 2:]), dim=-1)
    volumes = render_volumes(
        centers, config.sample_shape, config.sigma_hm, amplitude=config.amplitude, encoder=config.encoder
    )
    if config.noise > 0:
        peak = peak_value(config.encoder, config.amplitude)
        stream = FLIPPED_NOISE_STREAM if mirrored else NOISE_STREAM
        volumes = add_noise(volumes, config.noise, peak, config.seed, first_sample, stream=stream)
    return volumes


class Volumes:
    """3D volumes ``(B, K, D, H, W)`` (``dims`` 3): points ``(x, y, z)``, ``x, y`` in
    image pixels, ``z`` in voxels."""

    axes = 3

    def check(self, config: ExperimentConfig) -> None:
        check_sampling_region(
            config.sample_shape, position=config.position, margin=config.resolved_margin, sampling=config.sampling
        )

    def describe(self, config: ExperimentConfig) -> str:
        return "x".join(map(str, config.sample_shape)) + " volume"

    def sample_bytes(self, config: ExperimentConfig) -> int:
        working = 8 if config.dtype == "float64" else 4
        per_voxel = DTYPES[config.dtype].itemsize + MAP_BUFFERS * working
        if config.noise > 0:
            per_voxel += NOISE_BYTES_PER_PIXEL
        voxels = math.prod(config.sample_shape)
        # DARK blurs a neighbourhood (or, when that is larger, the whole volume)
        radius = (config.decoder_params["dark_kernel"] - 1) // 2
        patch = max(min((2 * (2 + radius) + 1) ** 3, voxels), (2 * config.window_radius + 1) ** 3)
        return (voxels + patch) * per_voxel

    def sample_truth(self, config: ExperimentConfig, device: torch.device) -> torch.Tensor:
        return sample_volume_truth(config, device)

    def render(self, config: ExperimentConfig, truth: torch.Tensor, first_sample: int) -> torch.Tensor:
        return render_volume_maps(config, truth, first_sample).to(DTYPES[config.dtype])

    def decode(self, outputs: torch.Tensor, name: str, params: dict[str, Any]) -> Counted:
        return decode_counted(outputs, name, **params)

    def to_truth_units(self, config: ExperimentConfig, decoded: torch.Tensor) -> torch.Tensor:
        return torch.cat((config.decoded_to_image(decoded[..., :2]), decoded[..., 2:]), dim=-1)

    def summarize(self, config: ExperimentConfig, offsets: torch.Tensor) -> dict[str, Any]:
        (scale_x, scale_y), _ = convention_scales(config.resolved_decode_convention, config.stride, config.image_size)
        return summarize_volume_offsets(offsets, config.stride, (scale_x, scale_y))

    def crlb_rmse(self, config: ExperimentConfig, truth: torch.Tensor) -> float:
        # the bound is computed for the maps of heatmaps only: empty in the rows of volumes
        return math.nan


VOLUMES = Volumes()
