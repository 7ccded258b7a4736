"""Heatmap synthesis (encoders) and the sampling of ground-truth points.

Every encoder is separable: a map is the outer product of a 1D profile along y and one
along x, so rendering costs one multiply per pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from integral_cli.checks import check_choice, check_points, check_positive, check_size
from integral_cli.coords import heatmap_to_image, pixel_coordinates
from integral_cli.errors import ConfigError
from integral_cli.settings import ENCODERS, POSITIONS, SAMPLINGS, ExperimentConfig, default_margin

#: Peak value of the reading note's generator (the ``fwhm`` encoder).
FWHM_PEAK = 10.0
#: FWHM of a Gaussian in units of its standard deviation, ``2 sqrt(2 ln 2)``.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def note_fwhm(box_side: int) -> int:
    """The reading note's width rule: ``int(sqrt(L) * L * 10 / 4096) + 3`` for a box of
    side L.

    >>> note_fwhm(64)
    4
    """
    return int(math.sqrt(box_side) * box_side * 10 / 4096) + 3


def render_heatmaps(
    centers: torch.Tensor,
    size: Sequence[int],
    sigma: float,
    *,
    amplitude: float = 1.0,
    encoder: str = "gaussian",
) -> torch.Tensor:
    """Render one heatmap per keypoint.

    Every encoder is separable: the map is the outer product (the outer sum, for
    ``logit``) of a profile along y and one along x.

    Args:
        centers: ``(B, K, 2)`` centres ``(x, y)`` in heatmap pixels (not rounded).
        size: heatmap size ``(H, W)``.
        sigma: standard deviation in heatmap pixels.
        amplitude: peak value ``A`` (``gaussian``, ``msra``, ``udp``; ``fwhm`` always
            uses 10 and ``logit`` has no amplitude).
        encoder: one of :data:`ENCODERS`:

            * ``gaussian``: ``A exp(-d^2 / 2 sigma^2)`` around the exact centre.
            * ``msra``: around the rounded centre ``floor(c + 0.5)``, zero where a pixel is
              more than ``3 sigma`` from it along either axis (a square window of radius
              ``floor(3 sigma)``, so the peak stays on the rounded centre even at the
              border). MMPose's own window misplaces the peak by one pixel near the
              top/left border, and wherever ``3 sigma`` has a fractional part below 0.5.
            * ``udp``: the same window, values around the exact centre.
            * ``fwhm``: the reading note's ``10 exp(-4 ln2 d^2 / fwhm^2)``,
              ``fwhm = 2.3548 sigma``.
            * ``logit``: ``-d^2 / (2 sigma^2)``; ``softmax`` of it is the normalised Gaussian.

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
    check_choice("encoder", encoder, tuple(ENCODERS))
    if isinstance(amplitude, bool) or not math.isfinite(amplitude):
        raise ConfigError(f"«amplitude» must be a finite number, got {amplitude}")
    profile_x = _profile(
        pixel_coordinates(width, device=centers.device, dtype=centers.dtype), centers[..., 0:1], sigma, encoder
    )  # (B, K, W)
    profile_y = _profile(
        pixel_coordinates(height, device=centers.device, dtype=centers.dtype), centers[..., 1:2], sigma, encoder
    )  # (B, K, H)
    if encoder == "logit":
        return profile_y.unsqueeze(-1) + profile_x.unsqueeze(-2)
    if encoder == "fwhm":
        amplitude = FWHM_PEAK
    # The amplitude goes on the short profile, so the big outer product is one multiply.
    return (amplitude * profile_y).unsqueeze(-1) * profile_x.unsqueeze(-2)


#: Where a float32 (or narrower) profile falls more than this below its own largest
#: exponent, the profile is 0 (``e^-40 = 4e-18`` of its peak: past 8.9 sigma when the
#: peak sits on a pixel). Float32 cannot tell such a tail from 0 next to the peak (its
#: resolution is 6e-8), and without it the far tails, and their products in the outer
#: product, land in float32's subnormal range, where the CPU's exp and multiply run
#: several times slower. Float64 profiles are left exact.
PROFILE_EXPONENT_FLOOR = -40.0


def _gaussian(exponent: torch.Tensor) -> torch.Tensor:
    """``exp(exponent)`` along the last axis; for float32 and narrower, 0 where the
    exponent is more than :data:`PROFILE_EXPONENT_FLOOR` below the axis's largest."""
    if exponent.dtype == torch.float64:
        return torch.exp(exponent)
    floor = exponent.amax(-1, keepdim=True) + PROFILE_EXPONENT_FLOOR
    return torch.exp(torch.maximum(exponent, floor)) * (exponent >= floor)


def _profile(pixels: torch.Tensor, center: torch.Tensor, sigma: float, encoder: str) -> torch.Tensor:
    """One axis of an encoder: ``(N,)`` pixel centres, ``(B, K, 1)`` centre -> ``(B, K, N)``."""
    if encoder == "fwhm":
        fwhm = FWHM_PER_SIGMA * sigma
        return _gaussian(-4.0 * math.log(2.0) * (pixels - center) ** 2 / fwhm**2)
    if encoder == "logit":
        return -((pixels - center) ** 2) / (2.0 * sigma**2)
    if encoder == "gaussian":
        return _gaussian(-((pixels - center) ** 2) / (2.0 * sigma**2))
    rounded = torch.floor(center + 0.5)
    peak_at = rounded if encoder == "msra" else center
    window = (pixels - rounded).abs() <= 3.0 * sigma
    return _gaussian(-((pixels - peak_at) ** 2) / (2.0 * sigma**2)) * window


def check_sampling_region(
    size: Sequence[int], *, position: str, margin: float, sampling: str, simcc: bool = False
) -> None:
    """Raise :class:`ConfigError` unless ground truth can be placed as asked in a
    heatmap of ``size = (H, W)`` (or a volume of ``(D, H, W)``, or the ``(Ny, Nx)`` bins
    of SimCC vectors with ``simcc``).

    Checks the names, that an ``interior`` margin leaves room, and that ``grid``
    sampling finds whole pixels inside it.
    """
    check_choice("position", position, POSITIONS)
    check_choice("sampling", sampling, SAMPLINGS)
    if margin < 0 or not math.isfinite(margin):
        raise ConfigError(f"«margin» must be a finite number >= 0, got {margin}")
    if position != "interior":
        return
    shape = "x".join(map(str, size))
    what = f"{shape} bins of SimCC vectors" if simcc else f"a {shape} {'heatmap' if len(size) == 2 else 'volume'}"
    unit, cells = ("bins", "bins") if simcc else ("heatmap px", "heatmap pixels")
    if min(size) - 1 - 2 * margin < 0:
        raise ConfigError(
            f"«margin» {margin:g} {unit} leaves no room in {what}; use a margin of at most {(min(size) - 1) / 2:g}"
        )
    if sampling == "grid" and min(size) - 1.5 - margin < math.ceil(margin + 0.5):
        raise ConfigError(
            f"grid «sampling» needs whole {cells} inside the margin of {margin:g} {unit}; "
            "lower «margin» or use random sampling"
        )


def mirror_x(points_img: torch.Tensor, image_width: int) -> torch.Tensor:
    """Points of the horizontally flipped image: ``x' = W_img - 1 - x``, the other
    coordinates kept (``(..., 2)`` or ``(..., 3)``)."""
    return torch.cat((image_width - 1 - points_img[..., :1], points_img[..., 1:]), dim=-1)


def flip_back(direct: torch.Tensor, mirrored: torch.Tensor, flip_test: str) -> torch.Tensor:
    """The flip test's output: the output of the mirrored image flipped back along its
    last axis (x), moved one pixel (or bin, or voxel) toward +x first for ``shift`` as
    HRNet's ``shift_heatmap`` does, and averaged with the direct one."""
    flipped = mirrored.flip(-1)
    if flip_test == "shift":
        flipped = torch.cat((flipped[..., :1], flipped[..., :-1]), dim=-1)
    return (direct + flipped) / 2


def sample_config_points(config: ExperimentConfig, shape: Sequence[int]) -> torch.Tensor:
    """``config.total_samples`` float64 ground-truth points on the grid ``shape`` (a
    heatmap's ``(H, W)``, SimCC's bins ``(Ny, Nx)`` or a volume's ``(D, H, W)``), where
    ``config.position`` and ``config.sampling`` say.

    Drawn on the CPU from a generator seeded with ``config.seed``: accelerators' random
    kernels give an element a draw that depends on their launch grid, so only the CPU's
    generator gives the same points on every device.
    """
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    return sample_heatmap_points(
        config.total_samples,
        shape,
        generator,
        position=config.position,
        margin=config.resolved_margin,
        band=default_margin(config.sigma_hm),
        sampling=config.sampling,
        grid_size=config.grid_size,
        dtype=torch.float64,
    )


def sample_heatmap_points(
    count: int,
    heatmap_size: Sequence[int],
    generator: torch.Generator,
    *,
    position: str = "interior",
    margin: float = 0.0,
    band: int = 0,
    sampling: str = "random",
    grid_size: int = 16,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Ground-truth points in heatmap pixels.

    Args:
        count: points wanted; ``grid`` rounds it up to a multiple of ``grid_size**2``.
        heatmap_size: ``(H, W)``, or ``(D, H, W)`` for points in a volume.
        generator: seeded generator; its device is the device of the result.
        position: one of :data:`POSITIONS`.
        margin: for ``interior``, the distance kept from the border pixel centres.
        band: for ``border``, the width of the band along the map's edges: points lie in
            the map but less than ``band`` from an edge (``x < band - 0.5`` or
            ``x > side - 0.5 - band`` on some axis); a band of half the map or more
            makes the whole map border.
        sampling: one of :data:`SAMPLINGS`.
        grid_size: ``G`` for ``grid``: offsets ``(i + 0.5) / G - 0.5``, ``i < G``, per axis
            (``G^2`` points per lattice, ``G^3`` in a volume).
        dtype: dtype of the result.

    Returns:
        ``(N, 1, 2)`` points ``(x, y)`` in heatmap pixels, or ``(N, 1, 3)`` points
        ``(x, y, z)`` in voxels for a volume.

    Raises:
        ConfigError: the region is empty (a margin or band too large for the map).
    """
    check_sampling_region(heatmap_size, position=position, margin=margin, sampling=sampling)
    # (x, y[, z]): the sides in reverse order of the size
    sides = torch.tensor(list(heatmap_size)[::-1], dtype=torch.float64)
    if sampling == "random":
        points = _random_points(count, sides, generator, position, margin, band)
    else:
        points = _grid_points(count, sides, generator, position, margin, band, grid_size)
    return points.to(dtype).unsqueeze(1)


def _in_border(points: torch.Tensor, sides: torch.Tensor, band: float) -> torch.Tensor:
    low, high = band, sides.to(points) - 1 - band
    if (high < low).any():
        return torch.ones(points.shape[0], dtype=torch.bool, device=points.device)
    return ((points < low) | (points > high)).any(dim=-1)


def _random_points(count, sides, generator, position, margin, band):
    device = generator.device
    sides = sides.to(device)
    if position == "interior":
        low, high = torch.full_like(sides, margin), sides - 1 - margin
    else:
        low, high = torch.full_like(sides, -0.5), sides - 0.5
    axes = len(sides)
    draw = lambda n: low + torch.rand((n, axes), generator=generator, device=device, dtype=torch.float64) * (high - low)  # noqa: E731
    if position != "border":
        return draw(count)
    # within `band` of the map's edge, which lies half a pixel beyond the border centres
    return _rejection(count, draw, lambda p: _in_border(p, sides, band - 0.5))


def _grid_points(count, sides, generator, position, margin, band, grid_size):
    device = generator.device
    sides = sides.to(device)
    if position == "interior":
        low, high = torch.ceil(torch.full_like(sides, margin + 0.5)), torch.floor(sides - 1.5 - margin)
    else:
        low, high = torch.zeros_like(sides), sides - 1
    axes = len(sides)
    cells = grid_size**axes
    bases_needed = -(-count // cells)

    def draw(n: int) -> torch.Tensor:
        unit = torch.rand((n, axes), generator=generator, device=device, dtype=torch.float64)
        return low + torch.floor(unit * (high - low + 1)).clamp(max=high - low)

    if position == "border":
        # a pixel is a border pixel when its whole cell lies outside the interior box
        bases = _rejection(bases_needed, draw, lambda p: _in_border(p, sides, band - 0.5))
    else:
        bases = draw(bases_needed)
    steps = (torch.arange(grid_size, device=device, dtype=torch.float64) + 0.5) / grid_size - 0.5
    # x fastest, then y (then z)
    offsets = torch.stack(torch.meshgrid(*([steps] * axes), indexing="ij")[::-1], dim=-1).reshape(-1, axes)
    return (bases.unsqueeze(1) + offsets).reshape(-1, axes)


def _rejection(count, draw, accept) -> torch.Tensor:
    """``count`` draws that ``accept`` keeps, in draw order (rounds, not a loop per point)."""
    kept, total = [], 0
    batch = max(2 * count, 1024)
    while total < count:
        candidates = draw(batch)
        candidates = candidates[accept(candidates)]
        kept.append(candidates)
        total += candidates.shape[0]
    return torch.cat(kept)[:count]


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
        ``(count, keypoints, 2)`` points ``(x, y)`` in image pixels (centre-aligned).

    Raises:
        ConfigError: the margin leaves no room inside the heatmap.
    """
    points = sample_heatmap_points(count * keypoints, heatmap_size, generator, margin=margin, dtype=dtype)
    return heatmap_to_image(points.view(count, keypoints, 2), stride)


# ------------------------------------------------------------------ network-like maps
_MASK32 = 0xFFFFFFFF
_MIX = 0x45D9F3B
#: Independent random streams drawn from :func:`counter_uniform`.
NOISE_STREAM, DISTRACTOR_STREAM, DIRECTION_STREAM, FLIPPED_NOISE_STREAM = 1, 2, 3, 4


def _hash32_(values: torch.Tensor) -> torch.Tensor:
    """Mix int64 values below 2**32 into well-spread 32-bit integers, in place (no
    overflow: the multiplier is below 2**27). Returns ``values``."""
    for _ in range(2):
        values ^= values >> 16
        values *= _MIX
        values &= _MASK32
    values ^= values >> 16
    return values


def counter_uniform(
    seed: int, stream: int, sample_index: torch.Tensor, count: int, *, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Uniform numbers in ``(0, 1)`` that are a pure function of their coordinates.

    Value ``j`` of sample ``i`` depends only on ``(seed, stream, i, j)``: not on how the
    samples are split into chunks, nor on the device. That keeps noisy experiments
    identical whatever the memory budget. Computed on the device of ``sample_index``, in
    ``dtype``: for a device without float64 (MPS), pass a CPU index (see
    :func:`counter_device`) and move the result.

    Args:
        seed: the experiment's seed.
        stream: which independent stream (e.g. :data:`NOISE_STREAM`).
        sample_index: ``(B,)`` int64 global sample indices.
        count: numbers per sample.
        dtype: floating dtype of the result.

    Returns:
        ``(B, count)`` uniforms.
    """
    key = _hash32_(torch.tensor((seed & _MASK32) ^ (stream * 0x7F4A7C15 & _MASK32)))
    key = _hash32_(key ^ ((seed >> 32) & _MASK32))  # seeds beyond 2**32 differ too
    sample_key = _hash32_(_hash32_(sample_index & _MASK32) ^ key.to(sample_index.device))
    bits = sample_key.unsqueeze(-1) ^ torch.arange(count, device=sample_index.device)
    _hash32_(bits)
    bits ^= sample_key.unsqueeze(-1) >> 7
    _hash32_(bits)
    uniform = bits.to(dtype)
    del bits
    return uniform.add_(0.5).div_(2.0**32)


def peak_value(encoder: str, amplitude: float) -> float:
    """The peak of a map from ``encoder``: what noise and distractors are relative to."""
    return {"fwhm": FWHM_PEAK, "logit": 1.0}.get(encoder, amplitude)


def counter_device(device: torch.device) -> torch.device:
    """Where counter-based numbers for tensors on ``device`` are computed: on the device
    itself, except on MPS, which has no float64; there, on the CPU, then moved. Integer
    hashing is exact everywhere and the float64 steps after it round alike, so every
    device sees the same numbers."""
    return torch.device("cpu") if device.type == "mps" else device


def add_noise(
    maps: torch.Tensor, level: float, peak: float, seed: int, first_sample: int, *, stream: int = NOISE_STREAM
) -> torch.Tensor:
    """``maps + level * peak * z`` with ``z`` standard normal per pixel.

    Args:
        maps: ``(B, K, H, W)`` (or ``(B, K, D, H, W)`` volumes).
        level: noise standard deviation relative to the peak.
        peak: the maps' peak value.
        seed: the experiment's seed.
        first_sample: global index of ``maps[0]``, so every sample gets its own noise
            whatever the chunking.
        stream: which independent stream of noise (the flip test's second map has its
            own).

    Returns:
        A new tensor of the shape of ``maps``.
    """
    batch = maps.shape[0]
    index = torch.arange(first_sample, first_sample + batch, device=counter_device(maps.device))
    uniform = counter_uniform(seed, stream, index, maps[0].numel())
    normal = torch.special.ndtri(uniform).view(maps.shape)
    del uniform
    # the dtype first: a float64 tensor cannot go to MPS
    return maps + normal.mul_(level * peak).to(maps.dtype).to(maps.device)


def distractor_centers(centers: torch.Tensor, distance: float, seed: int, first_sample: int) -> torch.Tensor:
    """Centres ``distance`` heatmap px from ``centers`` in a uniformly random direction.

    The directions (one number per keypoint) are computed on the CPU in float64 and
    moved, so they are the same on every device.
    """
    batch, keypoints, _ = centers.shape
    index = torch.arange(first_sample, first_sample + batch)
    angle = 2 * math.pi * counter_uniform(seed, DISTRACTOR_STREAM, index, keypoints)
    step = torch.stack((torch.cos(angle), torch.sin(angle)), dim=-1).to(centers.dtype).to(centers.device)
    return centers + distance * step


def add_distractor(
    maps: torch.Tensor,
    distractors: torch.Tensor,
    sigma: float,
    relative_amplitude: float,
    amplitude: float,
    encoder: str,
) -> torch.Tensor:
    """Add a second, weaker peak of ``relative_amplitude`` times the main one.

    Peaks add; for ``logit`` maps they add in probability, ``log(e^l + a e^l2)``, so the
    softmax becomes the mixture of the two Gaussians with weights 1 and ``a``.
    """
    extra = render_heatmaps(distractors, maps.shape[-2:], sigma, amplitude=amplitude, encoder=encoder)
    if encoder == "logit":
        return torch.logaddexp(maps, extra + math.log(relative_amplitude))
    return maps + relative_amplitude * extra.to(maps.dtype)
