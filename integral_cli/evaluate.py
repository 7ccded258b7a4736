"""Scoring a model's outputs against their ground truth: heatmaps or SimCC vectors saved
from it (decoded with every decoder), or coordinates it predicted.

The files are read by :mod:`integral_cli.inputs` and :mod:`integral_cli.predictions`;
the outputs are decoded in chunks that fit the memory budget, and every set of points is
scored like ``compare``'s rows, plus PCK, and on request per keypoint, normalised by a
per-sample length (NME, AUC), and as COCO's OKS with the AP ceiling.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch

from integral_cli.checks import check_range
from integral_cli.coco import COCO_SIGMAS
from integral_cli.coords import (
    convention_scales,
    heatmap_size,
    heatmap_to_image,
    simcc_scale,
    simcc_size,
    simcc_to_image,
)
from integral_cli.decoders import DECODER_PARAMS, DECODERS, decode_counted, fit_radius_for_sigma
from integral_cli.decoders.registry import auto_kernel_size, check_decoder_names, decoders_for
from integral_cli.decoders.simcc import decode_simcc
from integral_cli.devices import resolve_device, run_on_device, timed
from integral_cli.errors import ConfigError, InputFileError, MissingResultsError
from integral_cli.experiment import MAP_BUFFERS, WARM_UP_MAPS, warm_up
from integral_cli.inputs import HeatmapFile, SimCCFile, load_targets, open_heatmaps, open_simcc
from integral_cli.metrics import SUMMARY_FIELDS, summarize_offsets, summarize_volume_offsets
from integral_cli.predictions import (
    check_prediction_path,
    keypoint_names,
    load_lengths,
    read_predictions,
    write_predictions,
)
from integral_cli.scores import DEFAULT_PCK, Scoring, group_scores, pck_column
from integral_cli.settings import DEFAULT_MAX_MEMORY_MIB, SETTINGS

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class DecodeConfig:
    """Decoding saved heatmaps, or SimCC vectors.

    Attributes:
        heatmaps: ``.npy``, ``.npz`` or ``.pt``/``.pth`` file of ``(N, K, H, W)`` maps,
            or of ``(N, K, D, H, W)`` volumes.
        simcc: instead of ``heatmaps``, an ``.npz`` or ``.pt``/``.pth`` file holding
            SimCC vectors ``simcc_x`` ``(N, K, Wx)`` and ``simcc_y`` ``(N, K, Wy)``.
            (Neither, only for :class:`EvaluateConfig` with ``predictions``.)
        stride: image pixels per heatmap pixel.
        split_ratio: bins per image pixel of SimCC vectors.
        convention: heatmap (or bin) -> image mapping (``center``, ``corner``, ``udp``;
            SimCC vectors take ``center`` or ``corner``).
        image_size: ``(H, W)`` of the image, for ``udp``; ``None`` means the heatmap
            size times the stride (the bins divided by the split ratio).
        decoders: decoder names, in the order the rows come out (:func:`decode_file`
            takes one); every decoder (the default) means those that apply (to SimCC
            vectors, or to volumes for a file of volumes).
        beta, dark_kernel, window_radius, fit_radius: decoder parameters;
            ``dark_kernel="auto"`` needs ``sigma``.
        sigma: the maps' Gaussian sigma in heatmap pixels (bins for SimCC), if known
            (the model's target sigma); used only to resolve ``dark_kernel`` and
            ``fit_radius`` ``"auto"``.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        max_memory_mib: memory budget in MiB; sets the chunk size.

    The settings it shares with experiments are checked by their row of the table of
    settings (:data:`integral_cli.settings.SETTINGS`).
    """

    heatmaps: Path | None = None
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
    device: str = SETTINGS["device"].default
    max_memory_mib: float = DEFAULT_MAX_MEMORY_MIB

    def __post_init__(self) -> None:
        if self.heatmaps is not None and self.simcc is not None:
            raise ConfigError("give the «heatmaps» or the «simcc» vectors, not both")
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

    @property
    def representation(self) -> str:
        """``simcc`` for SimCC vectors, else ``heatmap``."""
        return "heatmap" if self.simcc is None else "simcc"

    @property
    def outputs(self) -> Path | None:
        """The file of the model's outputs: the heatmaps or the SimCC vectors."""
        return self.heatmaps if self.simcc is None else self.simcc

    @property
    def resolved_decoders(self) -> tuple[str, ...]:
        """``decoders``, or when that is every decoder, those that apply."""
        return decoders_for(self.representation) if self.decoders == tuple(DECODERS) else self.decoders

    @property
    def scale(self) -> float:
        """Image pixels per heatmap pixel, or per bin."""
        return 1.0 / self.split_ratio if self.representation == "simcc" else float(self.stride)

    def to_image(self, points: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Decoded points (heatmap pixels, or bins) to image pixels; the ``z`` of points
        decoded from volumes stays in voxels."""
        if self.representation == "simcc":
            return simcc_to_image(points, self.split_ratio, self.convention)
        xy = heatmap_to_image(points[..., :2], self.stride, self.convention, image_size)
        return torch.cat((xy, points[..., 2:]), -1)

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


@dataclass(frozen=True)
class EvaluateConfig(DecodeConfig):
    """Scoring saved heatmaps (decoded as :class:`DecodeConfig` says), a model's
    predicted coordinates, or both, against the ground truth.

    Attributes:
        targets: ``.npy`` ``(N, K, 2)`` or ``(N, K, 3)`` (x, y, visibility) or ``.csv``
            with columns ``sample, keypoint, x, y`` and optionally ``visible``; image
            pixels. A keypoint with visibility 0 is left out (COCO's 1 and 2 count).
            For volumes: ``(N, K, 3)`` (x, y, z) or ``(N, K, 4)`` with visibility, or a
            ``.csv`` with a ``z`` column too; ``z`` in voxels.
        pck: thresholds in image pixels, or fractions of the ``normalize`` length; PCK@t
            is the share of counted keypoints whose decoded point is within ``t`` (a
            non-finite result counts as a miss).
        predictions: coordinates a model produced, ``(N, K, 2)`` image pixels (``.npy``
            or a CSV like ``decode``'s), scored in a row of their own.
        per_keypoint: also one row per keypoint (per decoder).
        keypoint_names: ``coco`` (COCO's 17), a text file of ``K`` names, or ``None``
            (the indices).
        normalize: ``none``, ``bbox:FILE``, ``pair:I,J`` or ``value:V``: the per-sample
            length errors are divided by; with one, the PCK thresholds are fractions of
            it, and NME and AUC are reported.
        auc_max: the AUC integrates PCK from 0 to this fraction.
        oks_area: the persons' area in image pixels squared, to score COCO's OKS and the
            AP ceiling (``K`` must be COCO's 17).
    """

    targets: Path | None = None
    pck: tuple[float, ...] = DEFAULT_PCK
    predictions: Path | None = None
    per_keypoint: bool = False
    keypoint_names: str | None = None
    normalize: str = "none"
    auc_max: float = 0.5
    oks_area: float | None = None

    def __post_init__(self) -> None:
        if self.targets is None:
            raise ConfigError("«targets» is needed: the ground truth to score against")
        if self.outputs is None and self.predictions is None:
            raise ConfigError("give «heatmaps» or «simcc» vectors to decode, «predictions» to score, or both")
        super().__post_init__()
        _ = self.scoring  # made, so the scores' settings are checked
        if self.oks_area is not None:
            object.__setattr__(self, "oks_area", SETTINGS["oks_area"].check(self.oks_area))

    @property
    def scoring(self) -> Scoring:
        """The PCK thresholds, the normaliser and the AUC's range, as one :class:`Scoring`."""
        return Scoring(self.pck, self.normalize, self.auc_max, self.per_keypoint)


# ---------------------------------------------------------------------- evaluation
def chunk_samples(
    shape: tuple[int, ...], budget_bytes: float, decoders: int, *, working_bytes: int = 4, what: str = "maps"
) -> int:
    """Samples to decode at once within the budget, decoding in a precision of
    ``working_bytes`` per value.

    Args:
        shape: ``(N, K, ...)``: samples, keypoints, then the sides of one keypoint's
            output (``H, W`` of a map; ``D, H, W`` of a volume; ``Wx + Wy`` of a SimCC
            vector pair).
        budget_bytes: the memory budget.
        decoders: how many decoders' points are kept.
        working_bytes: bytes per value while decoding.
        what: what one keypoint's output is called, for the message.

    Raises:
        ConfigError: not even one sample fits.
    """
    samples, keypoints, *sides = shape
    axes = 3 if len(sides) == 3 else 2
    fixed = samples * keypoints * (axes * 8 + 1 + decoders * axes * 8)  # targets, mask, decoded points
    # the output as read, its copy on the device and the decoders' working buffers
    per_sample = keypoints * math.prod(sides) * working_bytes * (2 + MAP_BUFFERS)
    if fixed + per_sample > budget_bytes:
        need = math.ceil((fixed + per_sample) / 2**20)
        raise ConfigError(
            f"{samples}x{keypoints} {what} of {'x'.join(map(str, sides))} need at least {need} MiB, more than the "
            f"memory budget of {budget_bytes / 2**20:g} MiB; raise «max_memory_mib»"
        )
    return max(1, min(samples, int((budget_bytes - fixed) // per_sample)))


@dataclass
class Decoded:
    """Every decoder's points from saved outputs: ``(N, K, 2)`` float64 heatmap pixels
    (or bins) on the CPU, the seconds spent decoding, the fallbacks, and the outputs'
    ``(N, K)`` maxima (of a SimCC pair, the smaller of its two vectors' maxima)."""

    points: dict[str, torch.Tensor]
    seconds: dict[str, float]
    fallbacks: dict[str, int | None]
    peaks: torch.Tensor
    device: str


def evaluate_files(
    config: EvaluateConfig, *, progress: ProgressCallback | None = None
) -> tuple[pd.DataFrame, HeatmapFile | SimCCFile | None]:
    """Score ``config.predictions`` and every decoder's reading of ``config.heatmaps``
    (or ``config.simcc``).

    Args:
        config: the files and settings.
        progress: called with the samples finished and the samples in all after each chunk.

    Returns:
        The rows (columns: :func:`evaluate_columns`): one for the predictions and one per
        decoder, each followed by one per keypoint with ``per_keypoint``, with the
        :data:`~integral_cli.metrics.SUMMARY_FIELDS` over the counted keypoints in image
        pixels, PCK, and the normalised and OKS scores asked for; and the opened file of
        outputs (``None`` with predictions only).

    Raises:
        InputFileError: a file is missing, unreadable, of the wrong shape or size, or
            holds NaN or infinite values in the outputs (named by sample and keypoint).
        ConfigError: a setting out of range, or one sample does not fit the budget.
        MissingResultsError: no keypoint is counted (every visibility is 0).
        DeviceError: the device is not available.
        OutOfMemoryError: the device ran out of memory.
    """
    source = _open_outputs(config)
    predicted = None
    if config.predictions is not None:
        expected = None if source is None else (source.shape[0], source.shape[1])
        axes = None if source is None else 3 if _holds_volumes(source) else 2
        predicted = read_predictions(config.predictions, expected, axes)
    samples, keypoints = source.shape[:2] if source is not None else cast(np.ndarray, predicted).shape[:2]
    image_size = None if source is None else _image_size(config, source.shape[-2:])
    volumes = _holds_volumes(source) or (predicted is not None and predicted.shape[-1] == 3)
    targets, visible = load_targets(cast(Path, config.targets), samples, keypoints, 3 if volumes else 2)
    if not visible.any():
        raise MissingResultsError(f"{config.targets}: every keypoint has visibility 0; nothing to score")
    if volumes and config.oks_area is not None:
        raise ConfigError("«oks_area» scores COCO's 2D keypoints; it does not apply to volumes")
    if config.oks_area is not None and keypoints != len(COCO_SIGMAS):
        raise ConfigError(f"«oks_area»: OKS scores COCO's {len(COCO_SIGMAS)} keypoints, the files hold {keypoints}")
    lengths = load_lengths(config.normalize, targets[..., :2].numpy(), visible.numpy())
    names = keypoint_names(config.keypoint_names, keypoints)
    sets: list[tuple[str, torch.Tensor, float, int | None, str, str]] = []
    if predicted is not None:
        sets.append(("predictions", torch.from_numpy(predicted), 0.0, None, "cpu", "float64"))
    if source is not None:
        decoded = _decode_on_device(config, source, progress)
        for name in decoded.points:
            points = config.to_image(decoded.points[name], cast(tuple[int, int], image_size))
            sets.append((name, points, decoded.seconds[name], decoded.fallbacks[name], decoded.device, source.dtype))
    simcc = config.representation == "simcc"
    sizes: dict[str, Any] = {"samples": samples, "keypoints": keypoints}
    if source is not None:
        names_of_sides = ("simcc_x_bins", "simcc_y_bins") if simcc else ("heatmap_h", "heatmap_w")
        sizes |= dict(zip(names_of_sides, source.shape[-2:], strict=True))
        if not simcc:
            sizes["depth"] = source.shape[2] if volumes else None
    sizes |= {"split_ratio": config.split_ratio} if simcc else {"stride": config.stride}
    if image_size is not None:
        sizes |= {"image_h": image_size[0], "image_w": image_size[1]}
    rows = []
    for name, points, seconds, fallbacks, device_name, dtype in sets:
        decoder_params = {} if name == "predictions" else config.decoder_params
        common = {
            "simcc" if simcc else "heatmaps": "" if config.outputs is None else str(config.outputs),
            "predictions": "" if config.predictions is None else str(config.predictions),
            "targets": str(config.targets),
            **sizes,
            "convention": config.convention,
            **decoder_params,
            "decoder": name,
            "device": device_name,
            "dtype": dtype,
        }
        groups: list[tuple[str, int | None]] = [("all", None)]
        if config.per_keypoint:
            groups += [(label, index) for index, label in enumerate(names)]
        for label, index in groups:
            scores = _score(config, points, targets, visible, lengths, index, image_size or config.image_size)
            rows.append({**common, "keypoint": label, **scores, "fallbacks": fallbacks, "seconds": seconds})
    return pd.DataFrame(rows, columns=evaluate_columns(config.pck, config.representation)), source


def _open_outputs(config: DecodeConfig) -> HeatmapFile | SimCCFile | None:
    """The file of saved outputs, opened (``None`` if there is none)."""
    budget = config.max_memory_mib * 2**20
    if config.simcc is not None:
        return open_simcc(config.simcc, budget)
    return None if config.heatmaps is None else open_heatmaps(config.heatmaps, budget)


def decode_file(
    config: DecodeConfig, out: Path | None = None, *, progress: ProgressCallback | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode every map of ``config.heatmaps`` (or vector pair of ``config.simcc``) with
    ``config``'s one decoder.

    Args:
        config: the file and settings; ``decoders`` names one decoder.
        out: if given, the points are written there atomically: ``.npy`` ``(N, K, 2)``,
            or ``.csv`` with columns ``sample, keypoint, x, y, score``.
        progress: called with the samples finished and the samples in all after each chunk.

    Returns:
        ``(N, K, 2)`` float64 points ``(x, y)`` in image pixels, and the ``(N, K)`` maps'
        maxima (of a SimCC pair, the smaller of its two maxima: the confidence score
        top-down pipelines keep with each point).

    Raises:
        ConfigError: not one decoder, ``out`` not ``.npy`` or ``.csv``, a setting out of
            range, or one sample does not fit the budget.
        InputFileError: the file is missing, unreadable or holds non-finite values.
        OutputError: the write failed.
        DeviceError, OutOfMemoryError: as :func:`evaluate_files`.
    """
    if config.outputs is None:
        raise ConfigError("«heatmaps» or «simcc» vectors are needed: the outputs to decode")
    if len(config.decoders) != 1:
        raise ConfigError(f"decode writes one decoder's points; got {len(config.decoders)} decoders")
    if out is not None:
        check_prediction_path(out)
    source = cast(HeatmapFile | SimCCFile, _open_outputs(config))
    image_size = _image_size(config, source.shape[-2:])
    decoded = _decode_on_device(config, source, progress)
    name = config.decoders[0]
    points = config.to_image(decoded.points[name], image_size).numpy()
    peaks = decoded.peaks.numpy()
    if out is not None:
        write_predictions(out, points, peaks)
    return points, peaks


def _decode_on_device(
    config: DecodeConfig, source: HeatmapFile | SimCCFile, progress: ProgressCallback | None
) -> Decoded:
    device = resolve_device(config.device)
    return run_on_device(
        device,
        lambda: decode_saved(config, source, device, progress),
        "lower «max_memory_mib», or use another «device»",
    )


def _score(
    config: EvaluateConfig,
    points: torch.Tensor,
    targets: torch.Tensor,
    visible: torch.Tensor,
    lengths: np.ndarray | None,
    keypoint: int | None,
    image_size: tuple[int, int] | None,
) -> dict[str, float | int]:
    """The scores of ``points`` (all keypoints, or one) against the counted targets; of
    points ``(x, y, z)`` decoded from volumes, the ``(x, y)`` error in image pixels and
    the errors in voxels."""
    counted = visible.clone()
    if keypoint is not None:
        counted[:, :keypoint] = False
        counted[:, keypoint + 1 :] = False
    shift = points - targets
    offsets = shift[counted]
    scores: dict[str, float | int] = {"visible": int(counted.sum())}
    if points.shape[-1] == 3:
        scales, _ = convention_scales(config.convention, config.stride, image_size)
        scores |= summarize_volume_offsets(offsets, config.stride, scales)
    else:
        scores |= summarize_offsets(offsets, config.scale)
    errors = torch.linalg.vector_norm(shift[..., :2], dim=-1).numpy()  # (N, K)
    return scores | group_scores(errors, visible.numpy(), keypoint, config.scoring, lengths, config.oks_area)


def decode_saved(
    config: DecodeConfig,
    source: HeatmapFile | SimCCFile,
    device: torch.device,
    progress: ProgressCallback | None = None,
) -> Decoded:
    """Decode every map (or vector pair) of ``source`` with each decoder on ``device``, a
    chunk of samples at a time; points in heatmap pixels (or bins), on the CPU in
    float64."""
    simcc = config.representation == "simcc"
    samples, keypoints, *sides = source.shape
    budget = config.max_memory_mib * 2**20
    # MPS has no float64: float64 outputs are decoded in float32 there
    wide = source.dtype == "float64" and device.type != "mps"
    values = sum(sides) if simcc else math.prod(sides)
    # a file that had to be loaded whole already holds part of the budget
    loaded = 0 if source.mapped else samples * keypoints * values * source.itemsize
    names = _decoder_names(config, source)
    shape = (samples, keypoints, *((values,) if simcc else sides))
    what = "vector pairs" if simcc else "volumes" if len(sides) == 3 else "maps"
    step = chunk_samples(shape, budget - loaded, len(names), working_bytes=8 if wide else 4, what=what)
    decoded: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    seconds = dict.fromkeys(names, 0.0)
    fallbacks: dict[str, int | None] = dict.fromkeys(names)
    decoder: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] = (
        _decode_simcc_counted if simcc else decode_counted
    )
    peaks = []
    with torch.inference_mode():
        for start in range(0, samples, step):
            read = source.read(start, start + step)
            parts = []
            for part in read if isinstance(read, tuple) else (read,):
                narrow = part.dtype == torch.float64 and not wide
                # the dtype first: a float64 tensor cannot go to MPS
                parts.append(part.to(torch.float32 if narrow else part.dtype).to(device))
                _check_finite(parts[-1], source.path, start)
            # a map's maximum; of a vector pair, the smaller of the two maxima
            peak = torch.stack([part.flatten(2).amax(-1) for part in parts]).amin(0)
            peaks.append(peak.cpu().double())
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
    joined = {name: torch.cat(parts) for name, parts in decoded.items()}
    return Decoded(joined, seconds, fallbacks, torch.cat(peaks), str(device))


def _holds_volumes(source: HeatmapFile | SimCCFile | None) -> bool:
    """Whether ``source`` is a file of volumes."""
    return isinstance(source, HeatmapFile) and source.volumes


def _decoder_names(config: DecodeConfig, source: HeatmapFile | SimCCFile) -> tuple[str, ...]:
    """The decoders to run on ``source``: ``config``'s, where all of them means those that
    apply; a decoder of 2D maps only is refused on volumes."""
    if not _holds_volumes(source):
        return config.resolved_decoders
    if config.decoders == tuple(DECODERS):
        return decoders_for("volume")
    return check_decoder_names(config.decoders, "volume", outputs=f"the volumes of {source.path}")


def _decoding(
    decoder: Callable[..., Any], parts: list[torch.Tensor], params: dict[str, float | int]
) -> Callable[[str], Any]:
    """``parts`` (the maps, or the two vectors) decoded by the decoder named."""
    return lambda name: decoder(*parts, name, **params)


def _image_size(config: DecodeConfig, sides: tuple[int, ...]) -> tuple[int, int]:
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
    heatmap = (sides[0], sides[1])
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
        outputs = ["simcc", "predictions", "targets", "samples", "keypoints", "simcc_x_bins", "simcc_y_bins"]
        outputs.append("split_ratio")
        params = ["beta", "dark_kernel"]
    else:
        outputs = ["heatmaps", "predictions", "targets", "samples", "keypoints", "heatmap_h", "heatmap_w", "depth"]
        outputs.append("stride")
        params = ["beta", "dark_kernel", "window_radius", "fit_radius"]
    return [
        *outputs,
        "convention",
        "image_h",
        "image_w",
        *params,
        "decoder",
        "keypoint",
        "visible",
        *SUMMARY_FIELDS,
        "fallbacks",
        *(pck_column(t) for t in pck),
        "nme",
        "auc",
        "oks",
        "ap_ceiling",
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
