"""The experiment engine: one configuration in, one row per decoder out.

Ground-truth points are drawn once, up front, from a generator seeded with
``config.seed``; maps are then rendered and decoded in chunks sized from the memory
budget. The numbers therefore do not depend on the budget, and the same seed gives the
same rows on the same device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import torch

from integral_cli.checks import check_choice, check_range
from integral_cli.coords import CONVENTIONS, heatmap_size, heatmap_to_image, image_to_heatmap
from integral_cli.decoders import DECODERS, check_decoder_names, check_decoder_params, decode
from integral_cli.decoders.dark import kernel_size_for_sigma
from integral_cli.devices import (
    is_out_of_memory,
    limit_allocator_slack,
    release_cached_memory,
    resolve_device,
    timed,
)
from integral_cli.errors import ConfigError, OutOfMemoryError
from integral_cli.metrics import summarize_offsets
from integral_cli.report import CSV_COLUMNS
from integral_cli.synth import (
    ENCODERS,
    POSITIONS,
    SAMPLINGS,
    add_distractor,
    add_noise,
    default_margin,
    distractor_centers,
    peak_value,
    render_heatmaps,
    check_sampling_region,
    sample_heatmap_points,
)

#: Default memory budget for one experiment, in MiB.
DEFAULT_MAX_MEMORY_MIB = 1024
#: Working-precision (float32 or float64) map-sized buffers alive at once while a chunk
#: is decoded, besides the map itself; used to size chunks from the budget.
MAP_BUFFERS = 6
#: Extra bytes per pixel while noise is drawn (hashed counters and their uniforms).
NOISE_BYTES_PER_PIXEL = 48
#: Bytes kept per sample for the whole run besides the maps: the point, each decoder's
#: offsets and the float64 working copies of the summary.
SAMPLE_BYTES_FIXED = 8 + 64
SAMPLE_BYTES_PER_DECODER = 8

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
SIGMA_UNITS: tuple[str, ...] = ("heatmap", "image")

# Accepted ranges: past them a setting no longer describes a heatmap experiment (a sigma
# far below a pixel renders a single pixel; amplitudes near the float32 range overflow).
MAX_STRIDE = 1024
MIN_SIGMA_HM, MAX_SIGMA_HM = 0.05, 1e4
MAX_AMPLITUDE = 1e6
MAX_NOISE = 1e3
MAX_DISTANCE = 1e6
MAX_SAMPLES = 10**9
MAX_SEED = 2**63 - 1
MAX_GRID_SIZE = 1024
MAX_MEMORY_MIB = 2**30

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines one experiment.

    Attributes:
        stride: image pixels per heatmap pixel.
        sigma: Gaussian standard deviation, in ``sigma_unit`` pixels.
        sigma_unit: ``"heatmap"`` or ``"image"`` (``sigma_hm = sigma / stride``).
        amplitude: peak value of the rendered maps.
        beta: inverse temperature of the softmax decoders.
        dark_kernel: blur kernel size of ``dark`` and ``dark-udp`` (odd), or ``"auto"``
            for the size whose OpenCV sigma is nearest ``sigma_hm`` (2 -> 11, 3 -> 17).
        window_radius: half-width of the ``soft-argmax-local`` window, heatmap pixels.
        image_size: ``(H, W)`` of the input image in pixels; multiples of ``stride``.
        samples: number of ground-truth points (one map each).
        margin: distance kept from the border in heatmap pixels; ``None`` means
            ``ceil(3 * sigma_hm)``.
        decoders: decoder names, in the order the rows come out.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        seed: seed of the ground-truth sampling.
        encoder: heatmap encoder (see ``synth.ENCODERS``).
        noise: standard deviation of additive Gaussian noise, relative to the peak.
        distractor: amplitude of a second peak relative to the first (0: none).
        distractor_distance: its distance from the true point, heatmap pixels.
        position: where ground truth lies: ``interior`` (``margin`` from the border),
            ``border`` (within ``ceil(3 sigma_hm)`` of an edge) or ``anywhere``.
        convention: image -> heatmap mapping used to encode (``center``, ``corner``,
            ``udp``; see ``coords``).
        decode_convention: heatmap -> image mapping used to read the decoded point back;
            ``"same"`` means ``convention``. A mismatch shows as bias.
        sampling: ``random`` (uniform) or ``grid`` (a ``grid_size``-square lattice of
            sub-pixel offsets in one cell, over random whole pixels; ``samples`` is
            rounded up to a multiple of ``grid_size**2``).
        grid_size: ``G`` of ``grid`` sampling.
        dtype: precision the maps are decoded in.
        max_memory_mib: memory budget in MiB; sets the chunk size.
    """

    stride: int = 4
    sigma: float = 2.0
    sigma_unit: str = "heatmap"
    amplitude: float = 10.0
    beta: float = 1.0
    dark_kernel: int | str = 11
    window_radius: int = 2
    image_size: tuple[int, int] = (256, 192)
    samples: int = 10_000
    margin: float | None = None
    decoders: tuple[str, ...] = field(default_factory=lambda: tuple(DECODERS))
    device: str = "auto"
    seed: int = 0
    encoder: str = "gaussian"
    noise: float = 0.0
    distractor: float = 0.0
    distractor_distance: float = 12.0
    position: str = "interior"
    convention: str = "center"
    decode_convention: str = "same"
    sampling: str = "random"
    grid_size: int = 16
    dtype: str = "float32"
    max_memory_mib: float = DEFAULT_MAX_MEMORY_MIB

    def __post_init__(self) -> None:
        check_range(self.stride, "stride", 1, MAX_STRIDE, integer=True)
        check_range(self.sigma, "sigma", 0, math.inf, low_open=True)
        check_choice("sigma_unit", self.sigma_unit, SIGMA_UNITS)
        check_range(self.sigma_hm, "sigma in heatmap pixels", MIN_SIGMA_HM, MAX_SIGMA_HM)
        check_range(self.amplitude, "amplitude", 0, MAX_AMPLITUDE, low_open=True)
        if self.dark_kernel != "auto":
            check_decoder_params({"dark_kernel": self.dark_kernel})
        check_decoder_params({"beta": self.beta, "window_radius": self.window_radius})
        heatmap_size(tuple(self.image_size), self.stride)
        check_range(self.samples, "samples", 1, MAX_SAMPLES, integer=True)
        if self.margin is not None:
            check_range(self.margin, "margin", 0, math.inf)
        check_decoder_names(self.decoders)
        check_range(self.seed, "seed", 0, MAX_SEED, integer=True)
        check_choice("encoder", self.encoder, tuple(ENCODERS))
        check_range(self.noise, "noise", 0, MAX_NOISE)
        check_range(self.distractor, "distractor", 0, MAX_AMPLITUDE)
        check_range(self.distractor_distance, "distractor_distance", 0, MAX_DISTANCE)
        check_choice("position", self.position, POSITIONS)
        check_choice("convention", self.convention, CONVENTIONS)
        check_choice("decode_convention", self.decode_convention, ("same", *CONVENTIONS))
        if "udp" in (self.convention, self.decode_convention):
            image_to_heatmap(torch.zeros(1, 2), self.stride, "udp", tuple(self.image_size))
        check_choice("sampling", self.sampling, SAMPLINGS)
        check_range(self.grid_size, "grid_size", 1, MAX_GRID_SIZE, integer=True)
        check_choice("dtype", self.dtype, tuple(DTYPES))
        check_range(self.max_memory_mib, "max_memory_mib", 1, MAX_MEMORY_MIB)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """``(H, W)`` of the heatmap."""
        return heatmap_size(tuple(self.image_size), self.stride)

    @property
    def sigma_hm(self) -> float:
        """Sigma in heatmap pixels."""
        return self.sigma / self.stride if self.sigma_unit == "image" else self.sigma

    @property
    def decoder_params(self) -> dict[str, float | int]:
        """The decoder parameters, ``dark_kernel="auto"`` resolved."""
        kernel = (
            kernel_size_for_sigma(self.sigma_hm) if self.dark_kernel == "auto" else self.dark_kernel
        )
        return {"beta": self.beta, "dark_kernel": kernel, "window_radius": self.window_radius}

    @property
    def resolved_margin(self) -> float:
        """The margin in heatmap pixels: for ``interior`` the one kept from the border
        (default ``ceil(3 sigma_hm)``), for ``border`` the width of the band, for
        ``anywhere`` 0."""
        if self.position == "anywhere":
            return 0
        if self.position == "border" or self.margin is None:
            return default_margin(self.sigma_hm)
        return self.margin

    @property
    def resolved_decode_convention(self) -> str:
        """The decode convention, ``"same"`` resolved."""
        return self.convention if self.decode_convention == "same" else self.decode_convention

    def decoded_to_image(self, points_hm: torch.Tensor) -> torch.Tensor:
        """Decoded heatmap points to image pixels, with the decode convention."""
        return heatmap_to_image(points_hm, self.stride, self.resolved_decode_convention, tuple(self.image_size))

    @property
    def total_samples(self) -> int:
        """The number of points: ``samples``, rounded up to whole lattices for ``grid``."""
        if self.sampling == "grid":
            cells = self.grid_size**2
            return -(-self.samples // cells) * cells
        return self.samples


def chunk_size(config: ExperimentConfig) -> int:
    """How many maps to render and decode at once within ``config.max_memory_mib``.

    Raises:
        ConfigError: not even one map (or the per-sample bookkeeping) fits the budget;
            the message says how much would be needed.
    """
    height, width = config.heatmap_size
    samples = config.total_samples
    budget = config.max_memory_mib * 2**20
    per_sample = SAMPLE_BYTES_FIXED + SAMPLE_BYTES_PER_DECODER * len(config.decoders)
    fixed = per_sample * samples
    working = 8 if config.dtype == "float64" else 4
    per_pixel = DTYPES[config.dtype].itemsize + MAP_BUFFERS * working
    if config.noise > 0:
        per_pixel += NOISE_BYTES_PER_PIXEL
    # refinements gather a neighbourhood per map; with a large kernel it can outgrow the map
    radius = (config.decoder_params["dark_kernel"] - 1) // 2
    patch = max((2 * (2 + radius) + 1) ** 2, (2 * config.window_radius + 1) ** 2)
    per_map = (height * width + patch) * per_pixel
    if fixed + per_map > budget:
        need = math.ceil((fixed + per_map) / 2**20)
        raise ConfigError(
            f"{samples} samples of {height}x{width} maps need at least {need} MiB, "
            f"more than the memory budget of {config.max_memory_mib:g} MiB; "
            "raise --max-memory or lower --samples"
        )
    return max(1, min(samples, int((budget - fixed) // per_map)))


def check_runnable(config: ExperimentConfig) -> int:
    """Everything that can be checked before any work: the memory budget and the region
    ground truth is drawn from. Returns the chunk size.

    Raises:
        ConfigError: the run cannot fit the budget, or the margin leaves no room.
    """
    check_sampling_region(
        config.heatmap_size, position=config.position, margin=config.resolved_margin,
        sampling=config.sampling,
    )
    return chunk_size(config)


def run_experiment(
    config: ExperimentConfig,
    *,
    progress: ProgressCallback | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Render ``config.samples`` maps, decode them with each decoder and summarise.

    Args:
        config: the experiment.
        progress: called with the number of samples finished after each chunk.
        on_warning: called with a message when something is worked around (a chunk
            that ran out of device memory is halved and retried).

    Returns:
        One row per decoder, in ``config.decoders`` order, with the columns
        :data:`integral_cli.report.CSV_COLUMNS` (errors in image pixels).

    Raises:
        ConfigError: a setting out of range (e.g. a margin that leaves no room).
        DeviceError: the device is not available.
        OutOfMemoryError: not even one map fits in the device's memory.
    """
    check_runnable(config)
    device = resolve_device(config.device)
    render_dtype = torch.float64 if config.dtype == "float64" else torch.float32
    truth = sample_truth(config, device).to(render_dtype)
    offsets, seconds = evaluate_points(config, truth, progress=progress, on_warning=on_warning)
    rows = []
    for name in config.decoders:
        summary = summarize_offsets(offsets[name], config.stride)
        if config.sampling == "grid":
            # a lattice is not an i.i.d. sample: the normal interval would be far too wide
            summary.update(ci95_low=math.nan, ci95_high=math.nan)
        rows.append(_row(config, device, name, summary, seconds[name]))
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def evaluate_points(
    config: ExperimentConfig,
    truth: torch.Tensor,
    *,
    progress: ProgressCallback | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Encode ground-truth points as ``config`` says, decode them with each decoder.

    The part of :func:`run_experiment` that does the work, for points chosen by the
    caller (a lattice, say): chunks sized from the budget, halved when the device runs
    out of memory.

    Args:
        config: the experiment (its sampling settings are not used).
        truth: ``(N, 1, 2)`` ground truth in image pixels, on the config's device.
        progress: called with the number of points finished after each chunk.
        on_warning: called when a chunk is halved after running out of memory.

    Returns:
        Per decoder, ``(N, 2)`` float32 offsets decoded minus true in image pixels, and
        the seconds spent decoding.

    Raises:
        OutOfMemoryError: not even one map fits in the device's memory.
    """
    step = check_runnable(config)
    device = truth.device
    if device.type == "cpu":
        limit_allocator_slack()
    samples = truth.shape[0]
    offsets = {name: [] for name in config.decoders}
    seconds = dict.fromkeys(config.decoders, 0.0)
    start = 0
    while start < samples:
        try:
            chunk_offsets, chunk_seconds = _run_chunk(config, truth[start : start + step], start, device)
        except Exception as error:  # noqa: BLE001 - only out-of-memory errors are handled
            if not is_out_of_memory(error):
                raise
            if step == 1:
                raise OutOfMemoryError(
                    f"{device} ran out of memory even for one {config.heatmap_size[0]}x"
                    f"{config.heatmap_size[1]} map; lower the stride or use another device"
                ) from error
            step = max(1, step // 2)
            release_cached_memory(device)
            if on_warning is not None:
                on_warning(f"{device} ran out of memory; retrying with chunks of {step} maps")
            continue
        for name in config.decoders:
            offsets[name].append(chunk_offsets[name])
            seconds[name] += chunk_seconds[name]
        start += truth[start : start + step].shape[0]
        if progress is not None:
            progress(start)
    return {name: torch.cat(parts) for name, parts in offsets.items()}, seconds


def _run_chunk(
    config: ExperimentConfig, truth_chunk: torch.Tensor, first_sample: int, device: torch.device
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Render one chunk, decode it with every decoder: offsets (image px) and seconds."""
    params = config.decoder_params
    maps = render_maps(config, truth_chunk, first_sample).to(DTYPES[config.dtype])
    offsets, seconds = {}, {}
    for name in config.decoders:
        decoded, seconds[name] = timed(lambda name=name: decode(maps, name, **params), device)
        decoded_img = config.decoded_to_image(decoded.to(truth_chunk.dtype))
        offsets[name] = (decoded_img - truth_chunk).reshape(-1, 2).float()
    return offsets, seconds


def sample_truth(config: ExperimentConfig, device: torch.device) -> torch.Tensor:
    """The ground-truth points of ``config``: ``(N, 1, 2)`` image pixels, float32.

    Drawn once from a generator seeded with ``config.seed`` on ``device``, in heatmap
    pixels (so margins are exact) and mapped to the image with ``config.convention``.
    """
    generator = torch.Generator(device=device).manual_seed(config.seed)
    points_hm = sample_heatmap_points(
        config.samples,
        config.heatmap_size,
        generator,
        position=config.position,
        margin=config.resolved_margin,
        band=default_margin(config.sigma_hm),
        sampling=config.sampling,
        grid_size=config.grid_size,
        dtype=torch.float64,
    )
    image = heatmap_to_image(points_hm, config.stride, config.convention, tuple(config.image_size))
    # float32 whatever the decoding dtype, so every dtype sees the same points
    return image.float()


def render_maps(config: ExperimentConfig, truth_img: torch.Tensor, first_sample: int) -> torch.Tensor:
    """The maps a chunk of ground truth encodes to: target, distractor and noise.

    Args:
        config: the experiment.
        truth_img: ``(B, 1, 2)`` ground truth in image pixels.
        first_sample: global index of ``truth_img[0]`` (noise and distractor directions
            are functions of it, so chunking does not change them).

    Returns:
        ``(B, 1, H, W)`` maps in the dtype of ``truth_img``.
    """
    centers = image_to_heatmap(truth_img, config.stride, config.convention, tuple(config.image_size))
    sigma, size = config.sigma_hm, config.heatmap_size
    maps = render_heatmaps(centers, size, sigma, amplitude=config.amplitude, encoder=config.encoder)
    if config.distractor > 0:
        others = distractor_centers(centers, config.distractor_distance, config.seed, first_sample)
        maps = add_distractor(maps, others, sigma, config.distractor, config.amplitude, config.encoder)
    if config.noise > 0:
        peak = peak_value(config.encoder, config.amplitude)
        maps = add_noise(maps, config.noise, peak, config.seed, first_sample)
    return maps


def _row(
    config: ExperimentConfig,
    device: torch.device,
    decoder: str,
    summary: dict[str, float],
    seconds: float,
) -> dict[str, object]:
    height, width = config.heatmap_size
    return {
        "stride": config.stride,
        "sigma": config.sigma,
        "sigma_unit": config.sigma_unit,
        "amplitude": config.amplitude,
        **config.decoder_params,
        "encoder": config.encoder,
        "noise": config.noise,
        "distractor": config.distractor,
        "distractor_distance": config.distractor_distance,
        "position": config.position,
        "convention": config.convention,
        "decode_convention": config.resolved_decode_convention,
        "sampling": config.sampling,
        "grid_size": config.grid_size if config.sampling == "grid" else 0,
        "image_h": config.image_size[0],
        "image_w": config.image_size[1],
        "heatmap_h": height,
        "heatmap_w": width,
        "margin": config.resolved_margin,
        "samples": config.total_samples,
        "decoder": decoder,
        **summary,
        "device": str(device),
        "dtype": config.dtype,
        "seed": config.seed,
        "seconds": seconds,
    }
