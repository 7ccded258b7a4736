"""Decoding heatmaps (or SimCC vectors) saved from a model against their ground truth.

The files are read by :mod:`integral_cli.inputs`; the outputs are decoded in chunks
that fit the memory budget, with every decoder, and scored like ``compare``'s rows plus
PCK.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pandas as pd
import torch

from integral_cli.checks import check_range
from integral_cli.coords import heatmap_size, heatmap_to_image, simcc_scale, simcc_size, simcc_to_image
from integral_cli.decoders import DECODER_PARAMS, DECODERS, decode_counted, fit_radius_for_sigma
from integral_cli.decoders.registry import auto_kernel_size, check_decoder_names, decoders_for
from integral_cli.decoders.simcc import decode_simcc
from integral_cli.devices import resolve_device, run_on_device, timed
from integral_cli.errors import ConfigError, InputFileError, MissingResultsError
from integral_cli.experiment import MAP_BUFFERS, WARM_UP_MAPS, warm_up
from integral_cli.inputs import HeatmapFile, SimCCFile, load_targets, open_heatmaps, open_simcc
from integral_cli.metrics import SUMMARY_FIELDS, summarize_offsets
from integral_cli.settings import DEFAULT_MAX_MEMORY_MIB, SETTINGS

DEFAULT_PCK: tuple[float, ...] = (1.0, 2.0, 4.0)

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class EvaluateConfig:
    """Decoding saved heatmaps, or SimCC vectors.

    Attributes:
        heatmaps: ``.npy``, ``.npz`` or ``.pt``/``.pth`` file of ``(N, K, H, W)`` maps.
        targets: ``.npy`` ``(N, K, 2)`` or ``(N, K, 3)`` (x, y, visibility) or ``.csv``
            with columns ``sample, keypoint, x, y`` and optionally ``visible``; image
            pixels. A keypoint with visibility 0 is left out (COCO's 1 and 2 count).
        simcc: instead of ``heatmaps``, an ``.npz`` or ``.pt``/``.pth`` file holding
            SimCC vectors ``simcc_x`` ``(N, K, Wx)`` and ``simcc_y`` ``(N, K, Wy)``.
        stride: image pixels per heatmap pixel.
        split_ratio: bins per image pixel of SimCC vectors.
        convention: heatmap (or bin) -> image mapping (``center``, ``corner``, ``udp``;
            SimCC vectors take ``center`` or ``corner``).
        image_size: ``(H, W)`` of the image, for ``udp``; ``None`` means the heatmap
            size times the stride (the bins divided by the split ratio).
        decoders: decoder names, in the order the rows come out; every decoder (the
            default) means those that apply.
        beta, dark_kernel, window_radius: decoder parameters; ``dark_kernel="auto"``
            needs ``sigma``.
        sigma: the maps' Gaussian sigma in heatmap pixels (bins for SimCC), if known
            (the model's target sigma); used only to pick the DARK kernel for
            ``dark_kernel="auto"``.
        pck: thresholds in image pixels; PCK@t is the share of counted keypoints whose
            decoded point is within ``t`` (a non-finite result counts as a miss).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        max_memory_mib: memory budget in MiB; sets the chunk size.

    The settings it shares with experiments are checked by their row of the table of
    settings (:data:`integral_cli.settings.SETTINGS`).
    """

    heatmaps: Path | None = None
    targets: Path | None = None
    simcc: Path | None = None
    stride: int = SETTINGS["stride"].default
    split_ratio: float = SETTINGS["split_ratio"].default
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
        if (self.heatmaps is None) == (self.simcc is None):
            raise ConfigError("give the «heatmaps» or the «simcc» vectors to evaluate, one of them")
        if self.targets is None:
            raise ConfigError("no «targets» given")
        for name in (
            "stride",
            "split_ratio",
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
        if self.decoders != tuple(DECODERS):
            outputs = "«simcc» vectors" if self.representation == "simcc" else "«heatmaps»"
            check_decoder_names(self.decoders, self.representation, outputs=outputs)
        if self.representation == "simcc":
            simcc_scale(self.convention, self.split_ratio)
        for threshold in self.pck:
            check_range(threshold, "PCK threshold", 0, math.inf, low_open=True)
        if len(set(self.pck)) != len(self.pck):
            raise ConfigError("a PCK threshold is listed twice")

    @property
    def representation(self) -> str:
        """``simcc`` for SimCC vectors, else ``heatmap``."""
        return "heatmap" if self.simcc is None else "simcc"

    @property
    def outputs(self) -> Path:
        """The file of the model's outputs: the heatmaps or the SimCC vectors."""
        return cast(Path, self.heatmaps if self.simcc is None else self.simcc)

    @property
    def resolved_decoders(self) -> tuple[str, ...]:
        """``decoders``, or when that is every decoder, those that apply."""
        return decoders_for(self.representation) if self.decoders == tuple(DECODERS) else self.decoders

    @property
    def decoder_params(self) -> dict[str, float | int]:
        """The decoder parameters, ``"auto"`` resolved from ``sigma`` (the kernel by
        MMPose's rule for SimCC vectors; ``fit_radius`` auto without a sigma: the
        registry's default)."""
        kernel = self.dark_kernel
        if kernel == "auto":
            kernel = auto_kernel_size(float(self.sigma or 0), self.representation)
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
def chunk_samples(
    shape: tuple[int, ...], budget_bytes: float, decoders: int, *, working_bytes: int = 4, what: str = "maps"
) -> int:
    """Samples to decode at once within the budget, decoding in a precision of
    ``working_bytes`` per value.

    Args:
        shape: ``(N, K, ...)``: samples, keypoints, then the sides of one keypoint's
            output (``H, W`` of a map; ``Wx + Wy`` of a SimCC vector pair).
        budget_bytes: the memory budget.
        decoders: how many decoders' points are kept.
        working_bytes: bytes per value while decoding.
        what: what one keypoint's output is called, for the message.

    Raises:
        ConfigError: not even one sample fits.
    """
    samples, keypoints, *sides = shape
    fixed = samples * keypoints * (2 * 8 + 1 + decoders * 2 * 8)  # targets, mask, decoded points
    # the output as read, its copy on the device and the decoders' working buffers
    per_sample = keypoints * math.prod(sides) * working_bytes * (2 + MAP_BUFFERS)
    if fixed + per_sample > budget_bytes:
        need = math.ceil((fixed + per_sample) / 2**20)
        raise ConfigError(
            f"{samples}x{keypoints} {what} of {'x'.join(map(str, sides))} need at least {need} MiB, more than the "
            f"memory budget of {budget_bytes / 2**20:g} MiB; raise «max_memory_mib»"
        )
    return max(1, min(samples, int((budget_bytes - fixed) // per_sample)))


def evaluate_files(
    config: EvaluateConfig, *, progress: ProgressCallback | None = None
) -> tuple[pd.DataFrame, HeatmapFile | SimCCFile]:
    """Decode every map of ``config.heatmaps`` (or vector pair of ``config.simcc``) with
    each decoder and score it.

    Args:
        config: the files and settings.
        progress: called with the samples finished and the samples in all after each chunk.

    Returns:
        One row per decoder (columns: :func:`evaluate_columns`) with the
        :data:`~integral_cli.metrics.SUMMARY_FIELDS` over the counted keypoints in
        image pixels and PCK at each threshold, and the opened file.

    Raises:
        InputFileError: a file is missing, unreadable, of the wrong shape, or holds
            NaN or infinite values in the outputs (named by sample and keypoint).
        ConfigError: a setting out of range, or one sample does not fit the budget.
        MissingResultsError: no keypoint is counted (every visibility is 0).
        DeviceError: the device is not available.
        OutOfMemoryError: the device ran out of memory.
    """
    budget = config.max_memory_mib * 2**20
    source: HeatmapFile | SimCCFile
    if config.representation == "simcc":
        source = open_simcc(config.outputs, budget)
    else:
        source = open_heatmaps(config.outputs, budget)
    samples, keypoints, first, second = source.shape
    image_size = _image_size(config, (first, second))
    targets, visible = load_targets(cast(Path, config.targets), samples, keypoints)
    if not visible.any():
        raise MissingResultsError(f"{config.targets}: every keypoint has visibility 0; nothing to score")
    device = resolve_device(config.device)
    return run_on_device(
        device,
        lambda: _decode_and_score(config, source, targets, visible, image_size, device, progress),
        "lower «max_memory_mib», or use another «device»",
    )


def _decode_and_score(
    config: EvaluateConfig,
    source: HeatmapFile | SimCCFile,
    targets: torch.Tensor,
    visible: torch.Tensor,
    image_size: tuple[int, int],
    device: torch.device,
    progress: ProgressCallback | None,
) -> tuple[pd.DataFrame, HeatmapFile | SimCCFile]:
    """Decode on ``device`` a chunk at a time; score in float64 on the CPU."""
    simcc = config.representation == "simcc"
    samples, keypoints, first, second = source.shape
    budget = config.max_memory_mib * 2**20
    # MPS has no float64: float64 outputs are decoded in float32 there
    wide = source.dtype == "float64" and device.type != "mps"
    values = first + second if simcc else first * second
    # a file that had to be loaded whole already holds part of the budget
    loaded = 0 if source.mapped else samples * keypoints * values * source.itemsize
    names = config.resolved_decoders
    shape = (samples, keypoints, *((values,) if simcc else (first, second)))
    step = chunk_samples(
        shape, budget - loaded, len(names), working_bytes=8 if wide else 4, what="vector pairs" if simcc else "maps"
    )
    decoded: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    seconds = dict.fromkeys(names, 0.0)
    fallbacks: dict[str, int | None] = dict.fromkeys(names)
    decoder: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] = (
        _decode_simcc_counted if simcc else decode_counted
    )
    with torch.inference_mode():
        for start in range(0, samples, step):
            read = source.read(start, start + step)
            parts = []
            for part in read if isinstance(read, tuple) else (read,):
                narrow = part.dtype == torch.float64 and not wide
                # the dtype first: a float64 tensor cannot go to MPS
                parts.append(part.to(torch.float32 if narrow else part.dtype).to(device))
                _check_finite(parts[-1], source.path, start)
            if start == 0 and device.type != "cpu":
                warm_up(_decoding(decoder, [p[:WARM_UP_MAPS] for p in parts], config.decoder_params), names, device)
            for name in names:
                (points, fell_back), spent = timed(
                    functools.partial(decoder, *parts, name, **config.decoder_params), device
                )
                seconds[name] += spent
                decoded[name].append(points.cpu().double())
                if fell_back is not None:
                    fallbacks[name] = (fallbacks[name] or 0) + int(fell_back.sum())
            if progress is not None:
                progress(min(samples, start + step), samples)
    if simcc:
        sizes = {"simcc": str(config.simcc), "simcc_x_bins": first, "simcc_y_bins": second}
        sizes["split_ratio"] = config.split_ratio
    else:
        sizes = {"heatmaps": str(config.heatmaps), "heatmap_h": first, "heatmap_w": second, "stride": config.stride}
    shared = {
        "targets": str(config.targets),
        "samples": samples,
        "keypoints": keypoints,
        **sizes,
        "convention": config.convention,
        "image_h": image_size[0],
        "image_w": image_size[1],
        **config.decoder_params,
    }
    rows = []
    for name in names:
        outputs = torch.cat(decoded[name])
        if simcc:
            points = simcc_to_image(outputs, config.split_ratio, config.convention)
        else:
            points = heatmap_to_image(outputs, config.stride, config.convention, image_size)
        offsets = (points - targets)[visible]
        summary = summarize_offsets(offsets, 1.0 / config.split_ratio if simcc else config.stride)
        errors = torch.linalg.vector_norm(offsets, dim=-1)
        pck = {pck_column(t): (errors <= t).sum().item() / errors.numel() for t in config.pck}
        rows.append(
            {
                **shared,
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
    return pd.DataFrame(rows, columns=evaluate_columns(config.pck, config.representation)), source


def _decoding(
    decoder: Callable[..., Any], parts: list[torch.Tensor], params: dict[str, float | int]
) -> Callable[[str], Any]:
    """``parts`` (the maps, or the two vectors) decoded by the decoder named."""
    return lambda name: decoder(*parts, name, **params)


def _image_size(config: EvaluateConfig, sides: tuple[int, int]) -> tuple[int, int]:
    """The image size, checked against the outputs. Heatmaps: ``sides`` ``(H, W)``
    times the stride unless given, and if given, one whose heatmap at the stride is
    exactly ``sides``. SimCC vectors: ``sides`` ``(Wx, Wy)`` divided by the split ratio
    unless given; either way one whose vectors have those lengths."""
    if config.representation == "simcc":
        bins = (sides[1], sides[0])
        size = config.image_size or (round(bins[0] / config.split_ratio), round(bins[1] / config.split_ratio))
        made = simcc_size(size, config.split_ratio)
        if made != bins:
            held = f"the file holds vectors of {bins[1]} (x) and {bins[0]} (y) bins"
            if config.image_size is None:
                raise ConfigError(f"{held}, which no image gives at «split_ratio» {config.split_ratio:g}")
            raise ConfigError(
                f"image size {size[0]}x{size[1]} at «split_ratio» {config.split_ratio:g} gives vectors of "
                f"{made[1]} (x) and {made[0]} (y) bins, but {held}"
            )
        return size
    heatmap = sides
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


def evaluate_columns(pck: tuple[float, ...], representation: str = "heatmap") -> list[str]:
    """The columns of an evaluate table, PCK thresholds ``pck`` included; SimCC vectors
    have their file, bins and split ratio where heatmaps have theirs, sizes and stride."""
    if representation == "simcc":
        outputs = ["simcc", "targets", "samples", "keypoints", "simcc_x_bins", "simcc_y_bins", "split_ratio"]
        params = ["beta", "dark_kernel"]
    else:
        outputs = ["heatmaps", "targets", "samples", "keypoints", "heatmap_h", "heatmap_w", "stride"]
        params = ["beta", "dark_kernel", "window_radius", "fit_radius"]
    return [
        *outputs,
        "convention",
        "image_h",
        "image_w",
        *params,
        "decoder",
        "visible",
        *SUMMARY_FIELDS,
        "fallbacks",
        *(pck_column(t) for t in pck),
        "device",
        "dtype",
        "seconds",
    ]


def _decode_simcc_counted(
    simcc_x: torch.Tensor, simcc_y: torch.Tensor, method: str, **params: Any
) -> tuple[torch.Tensor, None]:
    """:func:`decode_simcc` as :func:`decode_counted` returns: no decoder of SimCC vectors
    falls back to a simpler estimate."""
    return decode_simcc(simcc_x, simcc_y, method, **params), None


def _check_finite(maps: torch.Tensor, path: Path, first_sample: int) -> None:
    finite = torch.isfinite(maps).flatten(2).all(-1)  # (n, K)
    if bool(finite.all()):
        return
    sample, keypoint = (~finite).nonzero()[0].tolist()
    raise InputFileError(
        f"{path}: the {'vectors' if maps.ndim == 3 else 'map'} of sample {first_sample + sample}, keypoint "
        f"{keypoint} hold{'' if maps.ndim == 3 else 's'} NaN or infinite values"
    )
