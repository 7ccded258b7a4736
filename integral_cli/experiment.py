"""The experiment engine: one configuration in, one row per decoder out.

Ground-truth points are drawn once, up front, on the CPU from a generator seeded with
``config.seed``, so the same seed gives the same points on every device; maps are then
rendered and decoded on the device in chunks sized from the memory budget, each chunk's
points moved there and its offsets brought back. The numbers therefore do not depend on
the budget (to the rounding of batched kernels), and the same seed gives the same rows
on the same machine.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from integral_cli.bound import BOUNDED_ENCODERS, crlb_rmse_image
from integral_cli.coco import COCO_SIGMAS
from integral_cli.coords import heatmap_to_image, image_to_heatmap
from integral_cli.decoders import decode_counted
from integral_cli.devices import (
    check_dtype,
    is_out_of_memory,
    limit_allocator_slack,
    release_cached_memory,
    resolve_device,
    run_on_device,
    synchronize,
    timed,
)
from integral_cli.errors import ConfigError, OutOfMemoryError
from integral_cli.metrics import summarize_offsets
from integral_cli.predictions import keypoint_names, load_lengths
from integral_cli.representation import (
    DTYPES,
    MAP_BUFFERS,
    NOISE_BYTES_PER_PIXEL,
    Counted,
    Representation,
)
from integral_cli.scores import Scoring, group_scores, person_scores
from integral_cli.settings import (
    CSV_COLUMNS,
    ExperimentConfig,
)
from integral_cli.simcc import SIMCC_VECTORS
from integral_cli.synth import (
    FLIPPED_NOISE_STREAM,
    NOISE_STREAM,
    add_distractor,
    add_noise,
    check_sampling_region,
    distractor_centers,
    flip_back,
    mirror_x,
    peak_value,
    render_heatmaps,
    sample_config_points,
)

#: Bytes kept per sample for the whole run besides the maps (in host memory): the point,
#: each decoder's offsets and the float64 working copies of the summary.
SAMPLE_BYTES_FIXED = 8 + 64
SAMPLE_BYTES_PER_DECODER = 8
#: Maps decoded once by every decoder before the clock starts on an accelerator, so the
#: first decoder's seconds do not include the device's start-up (cuBLAS, cuDNN, kernels).
WARM_UP_MAPS = 16
#: The end of the message when a run does not fit the device's memory.
MEMORY_ADVICE = "lower «max_memory_mib» or «samples», or use another «device»"

ProgressCallback = Callable[[int], None]


class Heatmaps:
    """2D heatmaps ``(B, K, H, W)``: the default representation."""

    axes = 2

    def check(self, config: ExperimentConfig) -> None:
        check_sampling_region(
            config.heatmap_size, position=config.position, margin=config.resolved_margin, sampling=config.sampling
        )

    def describe(self, config: ExperimentConfig) -> str:
        return f"{config.heatmap_size[0]}x{config.heatmap_size[1]} map"

    def sample_bytes(self, config: ExperimentConfig) -> int:
        height, width = config.heatmap_size
        working = 8 if config.dtype == "float64" else 4
        per_pixel = DTYPES[config.dtype].itemsize + MAP_BUFFERS * working
        if config.noise > 0:
            per_pixel += NOISE_BYTES_PER_PIXEL
        # refinements gather a neighbourhood per map; with a large kernel it can outgrow the map
        radius = (config.decoder_params["dark_kernel"] - 1) // 2
        patch = max((2 * (2 + radius) + 1) ** 2, (2 * config.window_radius + 1) ** 2)
        return (height * width + patch) * per_pixel

    def sample_truth(self, config: ExperimentConfig, device: torch.device) -> torch.Tensor:
        return sample_truth(config, device)

    def render(self, config: ExperimentConfig, truth: torch.Tensor, first_sample: int) -> torch.Tensor:
        return render_maps(config, truth, first_sample).to(DTYPES[config.dtype])

    def decode(self, outputs: torch.Tensor, name: str, params: dict[str, Any]) -> Counted:
        return decode_counted(outputs, name, **params)

    def to_truth_units(self, config: ExperimentConfig, decoded: torch.Tensor) -> torch.Tensor:
        return config.decoded_to_image(decoded)

    def summarize(self, config: ExperimentConfig, offsets: torch.Tensor) -> dict[str, Any]:
        return summarize_offsets(offsets, config.stride)

    def crlb_rmse(self, config: ExperimentConfig, truth: torch.Tensor) -> float:
        # the flip test's average of two maps is not the model the bound is derived for
        if config.noise == 0 or config.distractor > 0 or config.flip_test != "none":
            return math.nan
        if config.encoder not in BOUNDED_ENCODERS:
            return math.nan
        peak = peak_value(config.encoder, config.amplitude)
        centers = image_to_heatmap(truth.double(), config.stride, config.convention, config.image_size)
        return crlb_rmse_image(
            centers,
            config.heatmap_size,
            config.sigma_hm,
            peak,
            config.noise * peak,
            stride=config.stride,
            convention=config.convention,
            image_size=config.image_size,
            encoder=config.encoder,
        )


HEATMAPS = Heatmaps()


def representation_of(config: ExperimentConfig) -> Representation:
    """The representation ``config`` renders and decodes: heatmaps, SimCC vectors
    (``config.representation``), or volumes for ``dims`` 3."""
    if config.dims == 3:
        from integral_cli.volumes import VOLUMES

        return VOLUMES
    return SIMCC_VECTORS if config.representation == "simcc" else HEATMAPS


def chunk_size(config: ExperimentConfig) -> int:
    """How many samples to render and decode at once within ``config.max_memory_mib``.

    Raises:
        ConfigError: not even one sample (or the per-sample bookkeeping) fits the budget;
            the message says how much would be needed.
    """
    representation = representation_of(config)
    samples = config.total_samples
    budget = config.max_memory_mib * 2**20
    decoders = len(config.resolved_decoders)
    per_sample = SAMPLE_BYTES_FIXED + SAMPLE_BYTES_PER_DECODER * representation.axes * decoders // 2
    fixed = per_sample * samples
    per_map = representation.sample_bytes(config)
    if fixed + per_map > budget:
        need = math.ceil((fixed + per_map) / 2**20)
        raise ConfigError(
            f"{samples} samples of {representation.describe(config)}s need at least {need} MiB, "
            f"more than the memory budget of {config.max_memory_mib:g} MiB; "
            "raise «max_memory_mib» or lower «samples»"
        )
    return max(1, min(samples, int((budget - fixed) // per_map)))


def check_runnable(config: ExperimentConfig) -> int:
    """Everything that can be checked before any work: the memory budget and the region
    ground truth is drawn from. Returns the chunk size.

    Raises:
        ConfigError: the run cannot fit the budget, or the margin leaves no room.
    """
    representation_of(config).check(config)
    return chunk_size(config)


def run_experiment(
    config: ExperimentConfig,
    *,
    progress: ProgressCallback | None = None,
    on_warning: Callable[[str], None] | None = None,
    scoring: Scoring | None = None,
) -> pd.DataFrame:
    """Render ``config.samples`` maps, decode them with each decoder and summarise.

    Args:
        config: the experiment.
        progress: called with the number of samples finished after each chunk.
        on_warning: called with a message when something is worked around (a chunk
            that ran out of device memory is halved and retried).
        scoring: PCK, the normalised scores and rows per keypoint too (see
            :func:`score_rows`).

    Returns:
        One row per decoder, in ``config.resolved_decoders`` order, with the columns
        :data:`integral_cli.settings.CSV_COLUMNS` (errors in image pixels), and with
        ``scoring`` the columns of :attr:`Scoring.columns` after them.

    Raises:
        ConfigError: a setting out of range (e.g. a margin that leaves no room).
        DeviceError: the device is not available.
        OutOfMemoryError: the device ran out of memory, and halving the chunk could not
            help (not even one map fits, or it ran out outside the chunks).
    """
    check_runnable(config)
    device = resolve_device(config.device)
    check_dtype(device, config.dtype)
    if scoring is not None:
        _check_scoring(config, scoring)
    return run_on_device(device, lambda: _rows(config, device, progress, on_warning, scoring), MEMORY_ADVICE)


def _rows(
    config: ExperimentConfig,
    device: torch.device,
    progress: ProgressCallback | None,
    on_warning: Callable[[str], None] | None,
    scoring: Scoring | None = None,
) -> pd.DataFrame:
    representation = representation_of(config)
    render_dtype = torch.float64 if config.dtype == "float64" else torch.float32
    truth = representation.sample_truth(config, torch.device("cpu")).to(render_dtype)
    decoded = evaluate_points(config, truth, progress=progress, on_warning=on_warning)
    bound = representation.crlb_rmse(config, truth)
    rows = []
    for name in config.resolved_decoders:
        summary = representation.summarize(config, decoded.offsets[name])
        if config.oks_area is not None:  # 2D points (volumes refuse an area)
            errors = torch.linalg.vector_norm(decoded.offsets[name].double(), dim=-1).numpy()
            summary.update(person_scores(errors, config.oks_area))
        if config.sampling == "grid":
            # a lattice is not an i.i.d. sample: the normal interval would be far too wide
            summary.update(ci95_low=math.nan, ci95_high=math.nan)
        rows.append(
            {
                **config.columns(str(device)),
                "decoder": name,
                **summary,
                "fallbacks": decoded.fallbacks[name],
                "crlb_rmse": bound,
                "efficiency": bound / summary["rmse"] if summary["rmse"] > 0 else math.nan,
                "seconds": decoded.seconds[name],
            }
        )
    frame = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    return frame if scoring is None else score_rows(config, frame, truth, decoded.offsets, scoring)


def _check_scoring(config: ExperimentConfig, scoring: Scoring) -> None:
    """Refuse scores the synthetic points cannot give: keypoints, and pairs of them, exist
    only as the persons of ``oks_area``."""
    if config.oks_area is None and (scoring.per_keypoint or scoring.normalize.startswith("pair:")):
        what = "«per_keypoint»" if scoring.per_keypoint else "«normalize» pair:I,J"
        raise ConfigError(f"{what} needs keypoints: give «oks_area», which makes persons of COCO's 17")
    if config.dims == 3 and scoring.normalize != "none":
        raise ConfigError("«normalize» scores 2D keypoints; it does not apply to volumes («dims» 3)")


def score_rows(
    config: ExperimentConfig,
    rows: pd.DataFrame,
    truth: torch.Tensor,
    offsets: dict[str, torch.Tensor],
    scoring: Scoring,
) -> pd.DataFrame:
    """``rows`` (one per decoder) with PCK, and with a normaliser NME and AUC, as
    ``evaluate`` scores them; with ``per_keypoint``, each followed by one row per COCO
    keypoint (its own statistics, PCK and OKS; ``oks_area`` makes sample ``i`` keypoint
    ``i mod 17`` of person ``i // 17``).

    Args:
        config: the experiment.
        rows: its rows, :data:`CSV_COLUMNS`.
        truth: ``(N, 1, C)`` ground truth, image pixels for ``x, y``.
        offsets: per decoder, ``(N, C)`` offsets decoded minus true.
        scoring: what to add.

    Returns:
        The rows with the columns :data:`CSV_COLUMNS` then ``scoring.columns``.
    """
    keypoints = len(COCO_SIGMAS) if config.oks_area is not None else 1
    targets = truth[:, 0, :2].double().reshape(-1, keypoints, 2).numpy()
    lengths = load_lengths(scoring.normalize, targets, np.ones(targets.shape[:2], dtype=bool))
    counted = np.ones(targets.shape[:2], dtype=bool)
    names = keypoint_names("coco" if config.oks_area is not None else None, keypoints)
    scored = []
    for row in rows.to_dict(orient="records"):
        shift = offsets[row["decoder"]].double()
        errors = torch.linalg.vector_norm(shift[:, :2], dim=-1).numpy().reshape(-1, keypoints)
        # the row already holds the persons' OKS (run_experiment's)
        scored.append({**row, "keypoint": "all", **group_scores(errors, counted, None, scoring, lengths)})
        if not scoring.per_keypoint:
            continue
        by_keypoint = shift.reshape(-1, keypoints, shift.shape[-1])
        for index, name in enumerate(names):
            summary = summarize_offsets(by_keypoint[:, index], config.image_px_per_output)
            if config.sampling == "grid":
                summary.update(ci95_low=math.nan, ci95_high=math.nan)
            scores = group_scores(errors, counted, index, scoring, lengths, config.oks_area)
            scored.append(
                {
                    **row,
                    **summary,
                    "keypoint": name,
                    "fallbacks": None,
                    "efficiency": row["crlb_rmse"] / summary["rmse"] if summary["rmse"] > 0 else math.nan,
                    "ap_ceiling": math.nan,
                    **scores,
                }
            )
    return pd.DataFrame(scored, columns=[*CSV_COLUMNS, *scoring.columns])


class Decoded(NamedTuple):
    """What :func:`evaluate_points` returns, per decoder: ``(N, C)`` float32 offsets
    decoded minus true, the seconds spent decoding, and how many samples it fell back on
    (``None`` for a decoder without a fallback)."""

    offsets: dict[str, torch.Tensor]
    seconds: dict[str, float]
    fallbacks: dict[str, int | None]


def evaluate_points(
    config: ExperimentConfig,
    truth: torch.Tensor,
    *,
    progress: ProgressCallback | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Decoded:
    """Encode ground-truth points as ``config`` says, decode them with each decoder.

    The part of :func:`run_experiment` that does the work, for points chosen by the
    caller (a lattice, say): chunks sized from the budget, halved when the device runs
    out of memory. Each chunk's points are moved to the device and its offsets back, so
    the device holds one chunk at a time.

    Args:
        config: the experiment (its sampling settings are not used); it names the device.
        truth: ``(N, 1, C)`` ground truth (image pixels for x and y), in host memory.
        progress: called with the number of points finished after each chunk.
        on_warning: called when a chunk is halved after running out of memory.

    Returns:
        Per decoder, the offsets (on the CPU), seconds and fallbacks (see :class:`Decoded`).

    Raises:
        OutOfMemoryError: not even one map fits in the device's memory.
    """
    step = check_runnable(config)
    representation = representation_of(config)
    device = resolve_device(config.device)
    if device.type == "cpu":
        limit_allocator_slack()
    else:
        outputs = representation.render(config, truth[: min(step, WARM_UP_MAPS)].to(device), 0)
        warm_up(
            lambda name: representation.decode(outputs, name, config.decoder_params), config.resolved_decoders, device
        )
        del outputs
    samples = truth.shape[0]
    offsets: dict[str, list[torch.Tensor]] = {name: [] for name in config.resolved_decoders}
    seconds = dict.fromkeys(config.resolved_decoders, 0.0)
    fallbacks: dict[str, int | None] = dict.fromkeys(config.resolved_decoders)
    start = 0
    while start < samples:
        halved = False
        try:
            chunk = truth[start : start + step].to(device)
            chunk_offsets, chunk_seconds, chunk_fallbacks = _run_chunk(config, representation, chunk, start, device)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            if step == 1:
                raise OutOfMemoryError(
                    f"{device} ran out of memory even for one {representation.describe(config)}; "
                    "lower the stride or use another device"
                ) from error
            halved = True
        if halved:
            # here, not in the except block: the traceback held the failed chunk's tensors
            step = max(1, step // 2)
            release_cached_memory(device)
            if on_warning is not None:
                on_warning(f"{device} ran out of memory; retrying with chunks of {step} maps")
            continue
        for name in config.resolved_decoders:
            offsets[name].append(chunk_offsets[name])
            seconds[name] += chunk_seconds[name]
            counted = chunk_fallbacks[name]
            if counted is not None:
                fallbacks[name] = (fallbacks[name] or 0) + counted
        start += truth[start : start + step].shape[0]
        if progress is not None:
            progress(start)
    return Decoded({name: torch.cat(parts) for name, parts in offsets.items()}, seconds, fallbacks)


def warm_up(decode_with: Callable[[str], Any], decoders: Sequence[str], device: torch.device) -> None:
    """Decode a few samples once with every decoder (``decode_with(name)``), untimed: the
    first call of a decoder on an accelerator pays for library start-up (cuBLAS, cuDNN)
    and kernel loading, which would otherwise count as the first decoder's seconds."""
    for name in decoders:
        decode_with(name)
    synchronize(device)


def _run_chunk(
    config: ExperimentConfig,
    representation: Representation,
    truth_chunk: torch.Tensor,
    first_sample: int,
    device: torch.device,
) -> tuple[dict[str, torch.Tensor], dict[str, float], dict[str, int | None]]:
    """Render one chunk, decode it with every decoder: offsets, seconds and fallbacks."""
    params = config.decoder_params
    outputs = representation.render(config, truth_chunk, first_sample)
    offsets, seconds, fallbacks = {}, {}, {}
    for name in config.resolved_decoders:
        (points, fell_back), seconds[name] = timed(
            functools.partial(representation.decode, outputs, name, params), device
        )
        points = representation.to_truth_units(config, points.to(truth_chunk.dtype))
        offsets[name] = (points - truth_chunk).reshape(-1, representation.axes).float().cpu()
        fallbacks[name] = None if fell_back is None else int(fell_back.sum())
    return offsets, seconds, fallbacks


def sample_truth(config: ExperimentConfig, device: torch.device | None = None) -> torch.Tensor:
    """The ground-truth points of ``config``: ``(N, 1, 2)`` image pixels, float32.

    Drawn once on the CPU from a generator seeded with ``config.seed``, in heatmap pixels
    (so margins are exact), mapped to the image with ``config.convention`` and then moved
    to ``device`` (default: left on the CPU). Accelerators' random kernels give an element
    a draw that depends on their launch grid, which depends on the GPU model; the CPU's
    generator makes the same seed give the same points on every device.
    """
    points_hm = sample_config_points(config, config.heatmap_size)
    image = heatmap_to_image(points_hm, config.stride, config.convention, config.image_size)
    # float32 whatever the decoding dtype, so every dtype sees the same points
    return image.float().to(device or torch.device("cpu"))


def render_maps(config: ExperimentConfig, truth_img: torch.Tensor, first_sample: int) -> torch.Tensor:
    """The maps a chunk of ground truth encodes to: target, distractor and noise.

    Args:
        config: the experiment.
        truth_img: ``(B, 1, 2)`` ground truth in image pixels.
        first_sample: global index of ``truth_img[0]`` (noise and distractor directions
            are functions of it, so chunking does not change them).

    Returns:
        ``(B, 1, H, W)`` maps in the dtype of ``truth_img``. With the flip test, the
        average of the map and the flipped-back map of the horizontally flipped image
        (``x' = W_img - 1 - x``, its own noise), shifted one heatmap pixel toward +x first
        for ``shift``, as HRNet's ``shift_heatmap`` does.
    """
    maps = _render_view(config, truth_img, first_sample, mirrored=False)
    if config.flip_test == "none":
        return maps
    return flip_back(maps, _render_view(config, truth_img, first_sample, mirrored=True), config.flip_test)


def _render_view(
    config: ExperimentConfig, truth_img: torch.Tensor, first_sample: int, *, mirrored: bool
) -> torch.Tensor:
    """The map the network would give on the image, or on its mirror image (the ground
    truth and the distractor mirrored as ``x' = W_img - 1 - x``, the noise its own)."""

    def mirror(points_img: torch.Tensor) -> torch.Tensor:
        return mirror_x(points_img, config.image_size[1]) if mirrored else points_img

    def to_map(points_img: torch.Tensor) -> torch.Tensor:
        return image_to_heatmap(points_img, config.stride, config.convention, config.image_size)

    centers = to_map(truth_img)
    sigma, size = config.sigma_hm, config.heatmap_size
    seen = to_map(mirror(truth_img)) if mirrored else centers
    maps = render_heatmaps(seen, size, sigma, amplitude=config.amplitude, encoder=config.encoder)
    if config.distractor > 0:
        others = distractor_centers(centers, config.distractor_distance, config.seed, first_sample)
        if mirrored:
            others = to_map(mirror(heatmap_to_image(others, config.stride, config.convention, config.image_size)))
        maps = add_distractor(maps, others, sigma, config.distractor, config.amplitude, config.encoder)
    if config.noise > 0:
        peak = peak_value(config.encoder, config.amplitude)
        stream = FLIPPED_NOISE_STREAM if mirrored else NOISE_STREAM
        maps = add_noise(maps, config.noise, peak, config.seed, first_sample, stream=stream)
    return maps
