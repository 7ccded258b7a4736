"""SimCC vectors: their encoders, and the experiment representation that uses them.

SimCC (Li et al., ECCV 2022; RTMPose) encodes a keypoint as two 1D label vectors, over
``round(W_img * k)`` bins along x and ``round(H_img * k)`` along y, each bin ``1 / k``
image pixel wide (``k`` the split ratio; the bins' positions are in
:mod:`integral_cli.coords`). The labels are 1D Gaussians with sigma in bins, as MMPose's
``SimCCLabel`` makes them; its ``normalize=True`` is an amplitude of
``1 / (sigma sqrt(2 pi))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from integral_cli.checks import check_choice, check_points, check_positive, check_size
from integral_cli.coords import image_to_simcc, pixel_coordinates, simcc_size, simcc_to_image
from integral_cli.decoders.simcc import decode_simcc
from integral_cli.errors import ConfigError
from integral_cli.metrics import summarize_offsets
from integral_cli.settings import SIMCC_ENCODERS, ExperimentConfig
from integral_cli.synth import (
    FLIPPED_NOISE_STREAM,
    NOISE_STREAM,
    PROFILE_EXPONENT_FLOOR,
    check_sampling_region,
    counter_device,
    counter_uniform,
    distractor_centers,
    flip_back,
    mirror_x,
    sample_config_points,
)

#: Working-precision buffers per bin alive at once while a chunk is decoded, besides the
#: vectors themselves (blur, log, softmax weights), and the float64 weights of the
#: expectations (8 bytes, twice).
VECTOR_BUFFERS = 6
FLOAT64_BYTES_PER_BIN = 16
#: Extra bytes per bin while noise is drawn (hashed counters and their uniforms).
NOISE_BYTES_PER_BIN = 48


def render_simcc(
    centers: torch.Tensor,
    size: Sequence[int],
    sigma: float,
    *,
    split_ratio: float,
    amplitude: float = 1.0,
    encoder: str = "gaussian",
    convention: str = "center",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render the SimCC label vectors of keypoints.

    Args:
        centers: ``(B, K, 2)`` keypoints ``(x, y)`` in image pixels.
        size: the image size ``(H_img, W_img)``.
        sigma: standard deviation in bins (MMPose's convention; RTMPose uses 4.9 and
            5.66 at a split ratio of 2).
        split_ratio: bins per image pixel, ``k``.
        amplitude: peak value ``A``; MMPose's ``normalize=True`` is
            ``1 / (sigma sqrt(2 pi))``.
        encoder: ``gaussian``, ``A exp(-(i - mu)^2 / (2 sigma^2))`` around the exact
            bin position ``mu`` of the keypoint; or ``msra``, around ``mu`` rounded to
            the nearest bin (half to even, as MMPose's ``SimCCLabel`` rounds).
        convention: where bin ``i`` sits: ``center``, at ``(i + 0.5) / k - 0.5``
            image px; ``corner`` (MMPose), at ``i / k``.

    Returns:
        ``simcc_x`` ``(B, K, Wx)`` and ``simcc_y`` ``(B, K, Wy)``, ``Wx = round(W_img k)``,
        ``Wy = round(H_img k)``, on the device and in the dtype of ``centers``.

    Raises:
        ShapeError: ``centers`` is not a ``(B, K, 2)`` floating-point tensor.
        ConfigError: a bad size, sigma, split ratio, amplitude, encoder or convention.

    >>> x, y = render_simcc(torch.tensor([[[1.25, 0.75]]]), (2, 3), 1.0, split_ratio=2.0)
    >>> x.shape, y.shape, x[0, 0].argmax().item(), y[0, 0].argmax().item()
    (torch.Size([1, 1, 6]), torch.Size([1, 1, 4]), 3, 2)
    """
    check_points(centers, "centers")
    image = check_size(size, "size")
    check_positive(split_ratio, "split_ratio")
    bins = simcc_size(image, split_ratio)
    return render_simcc_bins(
        image_to_simcc(centers, split_ratio, convention), bins, sigma, amplitude=amplitude, encoder=encoder
    )


def render_simcc_bins(
    centers: torch.Tensor, bins: Sequence[int], sigma: float, *, amplitude: float = 1.0, encoder: str = "gaussian"
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`render_simcc` for centres already in bins: ``(B, K, 2)`` bin positions,
    ``bins = (Wy, Wx)``."""
    check_points(centers, "centers")
    length_y, length_x = check_size(bins, "bins")
    check_positive(sigma, "sigma")
    check_choice("encoder", encoder, SIMCC_ENCODERS)
    if isinstance(amplitude, bool) or not math.isfinite(amplitude):
        raise ConfigError(f"«amplitude» must be a finite number, got {amplitude}")
    peaks = torch.round(centers) if encoder == "msra" else centers
    vectors = []
    for axis, length in ((0, length_x), (1, length_y)):
        positions = pixel_coordinates(length, device=centers.device, dtype=centers.dtype)
        # the vectors are the output, so each step works in place on one buffer: the same
        # numbers as synth._gaussian(-(d^2) / (2 sigma^2)) * A, without a fresh tensor a step
        vector = (positions - peaks[..., axis : axis + 1]).square_().div_(-2.0 * sigma**2)
        if vector.dtype == torch.float64:
            vector.exp_()
        else:
            floor = vector.amax(-1, keepdim=True) + PROFILE_EXPONENT_FLOOR
            kept = vector >= floor
            torch.maximum(vector, floor, out=vector).exp_().mul_(kept)
        vectors.append(vector.mul_(amplitude))
    return vectors[0], vectors[1]


def add_simcc_noise(
    vectors: tuple[torch.Tensor, torch.Tensor],
    level: float,
    peak: float,
    seed: int,
    first_sample: int,
    *,
    stream: int = NOISE_STREAM,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``v + level * peak * z`` with ``z`` standard normal per bin, a pure function of
    the seed, the stream, the sample's global index and the bin (see
    :func:`integral_cli.synth.counter_uniform`), so chunking does not change it."""
    simcc_x, simcc_y = vectors
    batch, keypoints, length_x = simcc_x.shape
    index = torch.arange(first_sample, first_sample + batch, device=counter_device(simcc_x.device))
    uniform = counter_uniform(seed, stream, index, keypoints * (length_x + simcc_y.shape[-1]))
    normal = torch.special.ndtri(uniform).mul_(level * peak)
    del uniform
    split = keypoints * length_x
    # the dtype first: a float64 tensor cannot go to MPS
    noise_x = normal[:, :split].reshape(simcc_x.shape).to(simcc_x.dtype).to(simcc_x.device)
    noise_y = normal[:, split:].reshape(simcc_y.shape).to(simcc_y.dtype).to(simcc_y.device)
    return simcc_x + noise_x, simcc_y + noise_y


def simcc_position_variance(
    centers: torch.Tensor, bins: Sequence[int], sigma: float, amplitude: float, noise_sd: float
) -> torch.Tensor:
    """The Cramér–Rao bound on each coordinate of SimCC vectors ``A g(i; mu, s)`` plus
    white Gaussian noise ``noise_sd`` per bin, in bins².

    Each vector is its own observation, with its own unknown amplitude and width: the
    bound is the ``mu`` entry of the inverse of the Fisher information of
    ``(mu, A, s)``, ``sum_bins grad v grad v^T / noise_sd^2``, computed exactly on the
    bins. Away from the ends it is ``2 s noise_sd^2 / (sqrt(pi) A^2)``: unlike a
    heatmap's, it grows with the width.

    Args:
        centers: ``(B, K, 2)`` bin positions ``(x, y)``.
        bins: ``(Wy, Wx)``.
        sigma, amplitude, noise_sd: ``s`` (bins), ``A`` and the noise.

    Returns:
        ``(B, K, 2)`` float64 variances of ``x`` and ``y``.

    >>> variance = simcc_position_variance(torch.tensor([[[50.0, 50.0]]]), (100, 100), 2.0, 1.0, 1.0)
    >>> round(variance[0, 0, 0].item() * math.sqrt(math.pi) / 4, 6)  # 2 s / sqrt(pi)
    1.0
    """
    a, s = float(amplitude), float(sigma)
    variances = []
    for axis, length in ((0, bins[1]), (1, bins[0])):
        distance = torch.arange(length, dtype=torch.float64, device=centers.device) - centers[..., axis : axis + 1]
        squared = torch.exp(-(distance**2) / s**2)  # g^2
        m0, m1, m2, m3, m4 = ((squared * distance**k).sum(-1) for k in range(5))
        rows = (
            (a**2 * m2 / s**4, a * m1 / s**2, a**2 * m3 / s**5),
            (a * m1 / s**2, m0, a * m2 / s**3),
            (a**2 * m3 / s**5, a * m2 / s**3, a**2 * m4 / s**6),
        )
        information = torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2) / noise_sd**2
        variances.append(torch.linalg.inv(information)[..., 0, 0])
    return torch.stack(variances, dim=-1)


class SimCCVectors:
    """SimCC vectors ``(B, K, Wx)`` and ``(B, K, Wy)``: the ``simcc`` representation.

    Ground truth is drawn on the grid of bins exactly as heatmap points are drawn on the
    heatmap (margins, border bands and lattices in bins), then mapped to the image with
    the convention.
    """

    axes = 2

    def check(self, config: ExperimentConfig) -> None:
        check_sampling_region(
            config.output_size,
            position=config.position,
            margin=config.resolved_margin,
            sampling=config.sampling,
            simcc=True,
        )

    def describe(self, config: ExperimentConfig) -> str:
        length_y, length_x = config.output_size
        return f"{length_x}+{length_y}-bin vector pair"

    def sample_bytes(self, config: ExperimentConfig) -> int:
        working = 8 if config.dtype == "float64" else 4
        per_bin = getattr(torch, config.dtype).itemsize + VECTOR_BUFFERS * working + FLOAT64_BYTES_PER_BIN
        if config.noise > 0:
            per_bin += NOISE_BYTES_PER_BIN
        return sum(config.output_size) * per_bin

    def sample_truth(self, config: ExperimentConfig, device: torch.device) -> torch.Tensor:
        # drawn on the CPU and moved: the same seed gives the same points on every device
        points = sample_config_points(config, config.output_size)
        # float32 whatever the decoding dtype, so every dtype sees the same points
        return simcc_to_image(points, config.split_ratio, config.convention).float().to(device)

    def render(self, config: ExperimentConfig, truth: torch.Tensor, first_sample: int) -> Any:
        # with the flip test, as for heatmaps: the x vector of the mirrored image flipped
        # back (and shifted one bin toward +x for shift), averaged with the direct one
        vectors = self._render_view(config, truth, first_sample, mirrored=False)
        if config.flip_test != "none":
            mirrored_x, mirrored_y = self._render_view(config, truth, first_sample, mirrored=True)
            vectors = (flip_back(vectors[0], mirrored_x, config.flip_test), (vectors[1] + mirrored_y) / 2)
        dtype = getattr(torch, config.dtype)
        return vectors[0].to(dtype), vectors[1].to(dtype)

    def _render_view(
        self, config: ExperimentConfig, truth: torch.Tensor, first_sample: int, *, mirrored: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The vectors of the image, or of its mirror image (``x' = W_img - 1 - x`` for
        the ground truth and the distractor; the noise its own stream)."""

        def mirror(points_img: torch.Tensor) -> torch.Tensor:
            return mirror_x(points_img, config.image_size[1]) if mirrored else points_img

        centers = image_to_simcc(truth, config.split_ratio, config.convention)
        seen = image_to_simcc(mirror(truth), config.split_ratio, config.convention) if mirrored else centers
        sigma, bins = config.sigma_hm, config.output_size
        vectors = render_simcc_bins(seen, bins, sigma, amplitude=config.amplitude, encoder=config.encoder)
        if config.distractor > 0:
            others = distractor_centers(centers, config.distractor_distance, config.seed, first_sample)
            if mirrored:
                others_img = simcc_to_image(others, config.split_ratio, config.convention)
                others = image_to_simcc(mirror(others_img), config.split_ratio, config.convention)
            extra = render_simcc_bins(others, bins, sigma, amplitude=config.amplitude, encoder=config.encoder)
            vectors = (vectors[0] + config.distractor * extra[0], vectors[1] + config.distractor * extra[1])
        if config.noise > 0:
            stream = FLIPPED_NOISE_STREAM if mirrored else NOISE_STREAM
            vectors = add_simcc_noise(vectors, config.noise, config.amplitude, config.seed, first_sample, stream=stream)
        return vectors

    def decode(self, outputs: Any, name: str, params: dict[str, Any]) -> tuple[torch.Tensor, None]:
        # no decoder of SimCC vectors falls back to a simpler estimate
        return decode_simcc(outputs[0], outputs[1], name, **params), None

    def to_truth_units(self, config: ExperimentConfig, decoded: torch.Tensor) -> torch.Tensor:
        return config.decoded_to_image(decoded)

    def summarize(self, config: ExperimentConfig, offsets: torch.Tensor) -> dict[str, Any]:
        return summarize_offsets(offsets, config.image_px_per_output)

    def crlb_rmse(self, config: ExperimentConfig, truth: torch.Tensor) -> float:
        if config.noise == 0 or config.distractor > 0 or config.encoder != "gaussian" or config.flip_test != "none":
            return math.nan
        centers = image_to_simcc(truth.double(), config.split_ratio, config.convention)
        variance = simcc_position_variance(
            centers, config.output_size, config.sigma_hm, config.amplitude, config.noise * config.amplitude
        )
        return math.sqrt(variance.sum(-1).mean().item()) / config.split_ratio


SIMCC_VECTORS = SimCCVectors()

__all__ = [
    "SIMCC_VECTORS",
    "SimCCVectors",
    "add_simcc_noise",
    "render_simcc",
    "render_simcc_bins",
    "simcc_position_variance",
]
