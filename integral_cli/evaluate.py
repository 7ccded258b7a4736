"""Decoding heatmaps saved from a model against their ground truth.

The files are read by :mod:`integral_cli.inputs`; the maps are decoded in chunks that
fit the memory budget, with every decoder, and scored like ``compare``'s rows plus PCK.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from integral_cli.checks import check_range
from integral_cli.coords import convention_scales, heatmap_size, heatmap_to_image
from integral_cli.decoders import (
    DECODER_PARAMS,
    DECODERS,
    decode,
    decode_counted,
    decoders_of,
    fit_radius_for_sigma,
    kernel_size_for_sigma,
)
from integral_cli.devices import resolve_device, run_on_device, timed
from integral_cli.errors import ConfigError, InputFileError, MissingResultsError
from integral_cli.experiment import MAP_BUFFERS, WARM_UP_MAPS, warm_up
from integral_cli.inputs import HeatmapFile, load_targets, open_heatmaps
from integral_cli.metrics import SUMMARY_FIELDS, summarize_offsets, summarize_volume_offsets
from integral_cli.settings import DEFAULT_MAX_MEMORY_MIB, SETTINGS

DEFAULT_PCK: tuple[float, ...] = (1.0, 2.0, 4.0)

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class EvaluateConfig:
    """Decoding saved heatmaps.

    Attributes:
        heatmaps: ``.npy``, ``.npz`` or ``.pt``/``.pth`` file of ``(N, K, H, W)`` maps,
            or of ``(N, K, D, H, W)`` volumes.
        targets: ``.npy`` ``(N, K, 2)`` or ``(N, K, 3)`` (x, y, visibility) or ``.csv``
            with columns ``sample, keypoint, x, y`` and optionally ``visible``; image
            pixels. A keypoint with visibility 0 is left out (COCO's 1 and 2 count).
            For volumes: ``(N, K, 3)`` (x, y, z) or ``(N, K, 4)`` with visibility, or a
            ``.csv`` with a ``z`` column too; ``z`` in voxels.
        stride: image pixels per heatmap pixel.
        convention: heatmap -> image mapping (``center``, ``corner``, ``udp``).
        image_size: ``(H, W)`` of the image, for ``udp``; ``None`` means the heatmap
            size times the stride.
        decoders: decoder names, in the order the rows come out (all of them, the
            default, means those of volumes for a file of volumes).
        beta, dark_kernel, window_radius: decoder parameters; ``dark_kernel="auto"``
            needs ``sigma``.
        sigma: the maps' Gaussian sigma in heatmap pixels, if known (the model's target
            sigma); used only to pick the DARK kernel for ``dark_kernel="auto"``.
        pck: thresholds in image pixels; PCK@t is the share of counted keypoints whose
            decoded point is within ``t`` (in ``(x, y)`` for volumes; a non-finite
            result counts as a miss).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        max_memory_mib: memory budget in MiB; sets the chunk size.

    The settings it shares with experiments are checked by their row of the table of
    settings (:data:`integral_cli.settings.SETTINGS`).
    """

    heatmaps: Path
    targets: Path
    stride: int = SETTINGS["stride"].default
    convention: str = SETTINGS["convention"].default
    image_size: tuple[int, int] | None = None
    decoders: tuple[str, ...] = field(default_factory=lambda: tuple(DECODERS))
    beta: float = SETTINGS["beta"].default
    dark_kernel: int | str = SETTINGS["dark_kernel"].default
    window_radius: int = SETTINGS["window_radius"].default
    fit_radius: int | str = SETTINGS["fit_radius"].default
    sigma: float | None = None
    pck: tuple[float, ...] = DEFAULT_PCK
    device: str = SETTINGS["device"].default
    max_memory_mib: float = DEFAULT_MAX_MEMORY_MIB

    def __post_init__(self) -> None:
        for name in (
            "stride",
            "convention",
            "decoders",
            "beta",
            "dark_kernel",
            "window_radius",
            "fit_radius",
            "device",
            "max_memory_mib",
        ):
            object.__setattr__(self, name, SETTINGS[name].check(getattr(self, name)))
        if self.image_size is not None:
            object.__setattr__(self, "image_size", SETTINGS["image_size"].check(self.image_size))
        if self.sigma is not None:
            check_range(self.sigma, "sigma", 0, math.inf, low_open=True)
        if self.dark_kernel == "auto" and self.sigma is None:
            raise ConfigError("«dark_kernel» auto picks the kernel from the maps' «sigma»; give it, or a kernel size")
        for threshold in self.pck:
            check_range(threshold, "PCK threshold", 0, math.inf, low_open=True)
        if len(set(self.pck)) != len(self.pck):
            raise ConfigError("a PCK threshold is listed twice")

    @property
    def decoder_params(self) -> dict[str, float | int]:
        """The decoder parameters, ``"auto"`` resolved from ``sigma`` (``fit_radius``
        auto without a sigma: the registry's default)."""
        kernel = self.dark_kernel
        if kernel == "auto":
            kernel = kernel_size_for_sigma(float(self.sigma or 0))
        radius = self.fit_radius
        if radius == "auto":
            radius = int(DECODER_PARAMS["fit_radius"]) if self.sigma is None else fit_radius_for_sigma(self.sigma)
        return {
            "beta": self.beta,
            "dark_kernel": int(kernel),
            "window_radius": self.window_radius,
            "fit_radius": int(radius),
        }


def pck_column(threshold: float) -> str:
    """The column name of PCK at ``threshold`` image pixels, e.g. ``pck_2``."""
    return f"pck_{threshold:g}"


# ---------------------------------------------------------------------- evaluation
def chunk_samples(shape: tuple[int, ...], budget_bytes: float, decoders: int, *, working_bytes: int = 4) -> int:
    """Samples (``K`` maps or volumes each) to decode at once within the budget,
    decoding in a precision of ``working_bytes`` per value; ``shape`` is
    ``(N, K, H, W)`` or ``(N, K, D, H, W)``.

    Raises:
        ConfigError: not even one sample fits.
    """
    samples, keypoints, *sides = shape
    axes = 3 if len(sides) == 3 else 2
    fixed = samples * keypoints * (axes * 8 + 1 + decoders * axes * 8)  # targets, mask, decoded points
    # the map as read, its copy on the device and the decoders' working buffers
    per_sample = keypoints * math.prod(sides) * working_bytes * (2 + MAP_BUFFERS)
    if fixed + per_sample > budget_bytes:
        need = math.ceil((fixed + per_sample) / 2**20)
        what = "volumes" if axes == 3 else "maps"
        raise ConfigError(
            f"{samples}x{keypoints} {what} of {'x'.join(map(str, sides))} need at least {need} MiB, more than the "
            f"memory budget of {budget_bytes / 2**20:g} MiB; raise «max_memory_mib»"
        )
    return max(1, min(samples, int((budget_bytes - fixed) // per_sample)))


def evaluate_files(
    config: EvaluateConfig, *, progress: ProgressCallback | None = None
) -> tuple[pd.DataFrame, HeatmapFile]:
    """Decode every map of ``config.heatmaps`` with each decoder and score it.

    Args:
        config: the files and settings.
        progress: called with the samples finished and the samples in all after each chunk.

    Returns:
        One row per decoder (columns: :func:`evaluate_columns`) with the
        :data:`~integral_cli.metrics.SUMMARY_FIELDS` over the counted keypoints in
        image pixels (for volumes, ``mean_error_z`` and ``mean_error_3d`` in voxels)
        and PCK at each threshold, and the opened heatmap file.

    Raises:
        InputFileError: a file is missing, unreadable, of the wrong shape, or holds
            NaN or infinite values in the maps (named by sample and keypoint).
        ConfigError: a setting out of range, or one sample does not fit the budget.
        MissingResultsError: no keypoint is counted (every visibility is 0).
        DeviceError: the device is not available.
        OutOfMemoryError: the device ran out of memory.
    """
    source = open_heatmaps(config.heatmaps, config.max_memory_mib * 2**20)
    samples, keypoints, *sides = source.shape
    height, width = sides[-2:]
    image_size = _image_size(config, (height, width))
    names = _decoders(config, source.volumes)
    targets, visible = load_targets(config.targets, samples, keypoints, 3 if source.volumes else 2)
    if not visible.any():
        raise MissingResultsError(f"{config.targets}: every keypoint has visibility 0; nothing to score")
    device = resolve_device(config.device)
    return run_on_device(
        device,
        lambda: _decode_and_score(config, names, source, targets, visible, image_size, device, progress),
        "lower «max_memory_mib», or use another «device»",
    )


def _decode_and_score(
    config: EvaluateConfig,
    names: tuple[str, ...],
    source: HeatmapFile,
    targets: torch.Tensor,
    visible: torch.Tensor,
    image_size: tuple[int, int],
    device: torch.device,
    progress: ProgressCallback | None,
) -> tuple[pd.DataFrame, HeatmapFile]:
    """Decode on ``device`` a chunk at a time with the decoders ``names``; score in
    float64 on the CPU."""
    samples, keypoints, *sides = source.shape
    height, width = sides[-2:]
    budget = config.max_memory_mib * 2**20
    # MPS has no float64: float64 maps are decoded in float32 there
    wide = source.dtype == "float64" and device.type != "mps"
    # a file that had to be loaded whole already holds part of the budget
    loaded = 0 if source.mapped else math.prod(source.shape) * source.itemsize
    step = chunk_samples(source.shape, budget - loaded, len(names), working_bytes=8 if wide else 4)
    decoded: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    seconds = dict.fromkeys(names, 0.0)
    fallbacks: dict[str, int | None] = dict.fromkeys(names)
    with torch.inference_mode():
        for start in range(0, samples, step):
            maps = source.read(start, start + step)
            narrow = maps.dtype == torch.float64 and not wide
            # the dtype first: a float64 tensor cannot go to MPS
            maps = maps.to(torch.float32 if narrow else maps.dtype).to(device)
            _check_finite(maps, source.path, start)
            if start == 0 and device.type != "cpu":
                warm_up(_decoding(maps[:WARM_UP_MAPS], config.decoder_params), names, device)
            for name in names:
                (points, fell_back), spent = timed(
                    functools.partial(decode_counted, maps, name, **config.decoder_params), device
                )
                seconds[name] += spent
                decoded[name].append(points.cpu().double())
                if fell_back is not None:
                    fallbacks[name] = (fallbacks[name] or 0) + int(fell_back.sum())
            if progress is not None:
                progress(min(samples, start + step), samples)
    rows = []
    scales, _ = convention_scales(config.convention, config.stride, image_size)
    for name in names:
        points = torch.cat(decoded[name])
        points = torch.cat(
            (heatmap_to_image(points[..., :2], config.stride, config.convention, image_size), points[..., 2:]), -1
        )
        offsets = (points - targets)[visible]
        if source.volumes:
            summary = summarize_volume_offsets(offsets, config.stride, scales)
        else:
            summary = summarize_offsets(offsets, config.stride)
        errors = torch.linalg.vector_norm(offsets[:, :2], dim=-1)
        pck = {pck_column(t): (errors <= t).sum().item() / errors.numel() for t in config.pck}
        rows.append(
            {
                "heatmaps": str(config.heatmaps),
                "targets": str(config.targets),
                "samples": samples,
                "keypoints": keypoints,
                "heatmap_h": height,
                "heatmap_w": width,
                "depth": sides[0] if source.volumes else None,
                "stride": config.stride,
                "convention": config.convention,
                "image_h": image_size[0],
                "image_w": image_size[1],
                **config.decoder_params,
                "decoder": name,
                "visible": int(visible.sum()),
                **summary,
                "fallbacks": fallbacks[name],
                **pck,
                "device": str(device),
                "dtype": source.dtype,
                "seconds": seconds[name],
            }
        )
    return pd.DataFrame(rows, columns=evaluate_columns(config.pck)), source


def _decoding(maps: torch.Tensor, params: dict[str, float | int]) -> Callable[[str], torch.Tensor]:
    """``maps`` decoded by the decoder named."""
    return lambda name: decode(maps, name, **params)


def _decoders(config: EvaluateConfig, volumes: bool) -> tuple[str, ...]:
    """The decoders to run: ``config.decoders``, or for volumes those of volumes when
    all were asked for; refuses a decoder of heatmaps only on volumes."""
    if not volumes:
        return config.decoders
    if config.decoders == tuple(DECODERS):
        return decoders_of("volume")
    for name in config.decoders:
        if name not in decoders_of("volume"):
            raise ConfigError(
                f"{config.heatmaps} holds volumes, which {name} does not decode; "
                f"choose from {', '.join(decoders_of('volume'))}"
            )
    return config.decoders


def _image_size(config: EvaluateConfig, heatmap: tuple[int, int]) -> tuple[int, int]:
    """The image size, checked against the maps: ``heatmap`` times the stride unless
    given, and if given, one whose heatmap at the stride is exactly ``heatmap``."""
    if config.image_size is None:
        size = (heatmap[0] * config.stride, heatmap[1] * config.stride)
    else:
        size = config.image_size
        if heatmap_size(size, config.stride) != heatmap:
            raise ConfigError(
                f"image size {size[0]}x{size[1]} at stride {config.stride} gives "
                f"{size[0] // config.stride}x{size[1] // config.stride} heatmaps, but the file holds "
                f"{heatmap[0]}x{heatmap[1]} maps"
            )
    # checks the convention against the sizes (udp needs maps of at least 2x2) before any work
    heatmap_to_image(torch.zeros(1, 2), config.stride, config.convention, size)
    return size


def evaluate_columns(pck: tuple[float, ...]) -> list[str]:
    """The columns of an evaluate table, PCK thresholds ``pck`` included."""
    return [
        "heatmaps",
        "targets",
        "samples",
        "keypoints",
        "heatmap_h",
        "heatmap_w",
        "depth",
        "stride",
        "convention",
        "image_h",
        "image_w",
        "beta",
        "dark_kernel",
        "window_radius",
        "fit_radius",
        "decoder",
        "visible",
        *SUMMARY_FIELDS,
        "fallbacks",
        *(pck_column(t) for t in pck),
        "device",
        "dtype",
        "seconds",
    ]


def _check_finite(maps: torch.Tensor, path: Path, first_sample: int) -> None:
    finite = torch.isfinite(maps).flatten(2).all(-1)  # (n, K)
    if bool(finite.all()):
        return
    sample, keypoint = (~finite).nonzero()[0].tolist()
    raise InputFileError(
        f"{path}: the map of sample {first_sample + sample}, keypoint {keypoint} holds NaN or infinite values"
    )
