"""Decoding heatmaps saved from a model against their ground truth.

Heatmaps come from ``.npy``, ``.npz`` or ``.pt`` files of shape ``(N, K, H, W)``;
ground truth from ``.npy`` (``(N, K, 2)`` image pixels, or ``(N, K, 3)`` with a
visibility column) or a ``.csv`` with one row per sample and keypoint. Maps are read
in chunks that fit the memory budget: ``.npy``, uncompressed ``.npz`` members and
``.pt`` files saved by torch 1.6 or later are memory-mapped, so a file larger than the
budget never has to fit in memory; the other forms are loaded whole, and refused up
front when they would not fit.
"""

from __future__ import annotations

import math
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from integral_cli.checks import check_choice, check_range, check_size
from integral_cli.coords import CONVENTIONS, heatmap_size, heatmap_to_image
from integral_cli.decoders import DECODERS, check_decoder_names, check_decoder_params, decode
from integral_cli.devices import resolve_device, timed
from integral_cli.errors import ConfigError, InputFileError, MissingResultsError
from integral_cli.experiment import DEFAULT_MAX_MEMORY_MIB, MAP_BUFFERS, MAX_MEMORY_MIB, MAX_STRIDE
from integral_cli.metrics import SUMMARY_FIELDS, summarize_offsets

HEATMAP_SUFFIXES: tuple[str, ...] = (".npy", ".npz", ".pt", ".pth")
TARGET_SUFFIXES: tuple[str, ...] = (".npy", ".csv")
#: The array a multi-array ``.npz`` or a ``.pt`` dictionary must call its heatmaps.
HEATMAPS_KEY = "heatmaps"
#: Columns of a targets CSV; ``visible`` is optional.
TARGET_CSV_COLUMNS: tuple[str, ...] = ("sample", "keypoint", "x", "y")
DEFAULT_PCK: tuple[float, ...] = (1.0, 2.0, 4.0)

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class EvaluateConfig:
    """Decoding saved heatmaps.

    Attributes:
        heatmaps: ``.npy``, ``.npz`` or ``.pt``/``.pth`` file of ``(N, K, H, W)`` maps.
        targets: ``.npy`` ``(N, K, 2)`` or ``(N, K, 3)`` (x, y, visibility) or ``.csv``
            with columns ``sample, keypoint, x, y`` and optionally ``visible``; image
            pixels. A keypoint with visibility 0 is left out (COCO's 1 and 2 count).
        stride: image pixels per heatmap pixel.
        convention: heatmap -> image mapping (``center``, ``corner``, ``udp``).
        image_size: ``(H, W)`` of the image, for ``udp``; ``None`` means the heatmap
            size times the stride.
        decoders: decoder names, in the order the rows come out.
        beta, dark_kernel, window_radius: decoder parameters.
        pck: thresholds in image pixels; PCK@t is the share of counted keypoints whose
            decoded point is within ``t`` (a non-finite result counts as a miss).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        max_memory_mib: memory budget in MiB; sets the chunk size.
    """

    heatmaps: Path
    targets: Path
    stride: int = 4
    convention: str = "center"
    image_size: tuple[int, int] | None = None
    decoders: tuple[str, ...] = field(default_factory=lambda: tuple(DECODERS))
    beta: float = 1.0
    dark_kernel: int = 11
    window_radius: int = 2
    pck: tuple[float, ...] = DEFAULT_PCK
    device: str = "auto"
    max_memory_mib: float = DEFAULT_MAX_MEMORY_MIB

    def __post_init__(self) -> None:
        check_range(self.stride, "stride", 1, MAX_STRIDE, integer=True)
        check_choice("convention", self.convention, CONVENTIONS)
        check_decoder_names(self.decoders)
        check_decoder_params(self.decoder_params)
        for threshold in self.pck:
            check_range(threshold, "PCK threshold", 0, math.inf, low_open=True)
        if len(set(self.pck)) != len(self.pck):
            raise ConfigError("a PCK threshold is listed twice")
        check_range(self.max_memory_mib, "max_memory_mib", 1, MAX_MEMORY_MIB)
        if self.image_size is not None:
            check_size(self.image_size, "image_size")

    @property
    def decoder_params(self) -> dict[str, float | int]:
        return {"beta": self.beta, "dark_kernel": self.dark_kernel, "window_radius": self.window_radius}


def pck_column(threshold: float) -> str:
    """The column name of PCK at ``threshold`` image pixels, e.g. ``pck_2``."""
    return f"pck_{threshold:g}"


# ------------------------------------------------------------------------ heatmaps
@dataclass
class HeatmapFile:
    """Heatmaps on disk, read a range of samples at a time.

    Attributes:
        path: the file.
        shape: ``(N, K, H, W)``.
        dtype: the stored dtype's name (``float32``, ``uint8``, ...).
        mapped: whether the maps are memory-mapped rather than loaded.
        array: the ``numpy`` array or ``torch`` tensor (memory-mapped or in memory).
    """

    path: Path
    shape: tuple[int, int, int, int]
    dtype: str
    mapped: bool
    array: np.ndarray | torch.Tensor

    @property
    def itemsize(self) -> int:
        """Bytes per stored value."""
        return self.array.dtype.itemsize if isinstance(self.array, np.ndarray) else self.array.element_size()

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Samples ``start:stop`` as a CPU floating-point tensor: integers become float32,
        floats wider than float64 float64; never part of an autograd graph."""
        part = self.array[start:stop]
        if isinstance(part, np.ndarray):
            # a native-byte-order copy in a dtype torch holds: torch reads neither
            # big-endian nor read-only maps, nor integers wider than it knows
            kind, size = part.dtype.kind, part.dtype.itemsize
            dtype = np.float32 if kind in "iu" else (np.float64 if size > 8 else part.dtype.newbyteorder("="))
            return torch.from_numpy(np.array(part, dtype=dtype))
        part = part.detach().clone()
        return part if part.is_floating_point() else part.float()


def open_heatmaps(path: Path, budget_bytes: float) -> HeatmapFile:
    """Open a heatmap file without reading its maps, where the format allows.

    Raises:
        InputFileError: missing file, unknown suffix, unreadable or corrupt contents,
            a shape other than ``(N, K, H, W)``, a non-numeric dtype, or a file that
            cannot be memory-mapped and is larger than ``budget_bytes``.
    """
    path = Path(path)
    suffix = _check_input(path, HEATMAP_SUFFIXES, "heatmaps")
    if suffix == ".npy":
        array, mapped = _load_npy(path), True
    elif suffix == ".npz":
        array, mapped = _load_npz(path, budget_bytes)
    else:
        array, mapped = _load_torch(path, budget_bytes)
    name = str(array.dtype).removeprefix("torch.")
    if isinstance(array, np.ndarray):
        numeric = array.dtype.kind in "fiu"
    else:
        numeric = not (array.is_complex() or array.dtype == torch.bool)
        if array.layout != torch.strided:
            raise InputFileError(f"{path}: heatmaps must be a dense tensor, got layout {array.layout}")
    if not numeric:
        raise InputFileError(f"{path}: heatmaps must be numbers, got dtype {name}")
    if len(array.shape) != 4 or min(array.shape) < 1:
        raise InputFileError(
            f"{path}: heatmaps must have shape (N, K, H, W) with every side >= 1, got {tuple(array.shape)}"
        )
    return HeatmapFile(path, tuple(int(v) for v in array.shape), name, mapped, array)


def _check_input(path: Path, suffixes: tuple[str, ...], what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise InputFileError(f"{path}: {what} must be a {', '.join(suffixes[:-1])} or {suffixes[-1]} file")
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    return suffix


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InputFileError(f"{path}: not a readable .npy array ({_reason(error)})") from None


def _load_npz(path: Path, budget_bytes: float) -> tuple[np.ndarray, bool]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(".npy")]
            member = _pick_key([n.removesuffix(".npy") for n in names], path) + ".npy"
            info = archive.getinfo(member)
            with archive.open(info) as stream:
                version = np.lib.format.read_magic(stream)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(stream)
                header = stream.tell()
            if info.compress_type == zipfile.ZIP_STORED and not dtype.hasobject:
                return _map_stored_member(path, info, header, shape, fortran, dtype), True
            _check_fits(path, math.prod(shape) * dtype.itemsize, budget_bytes)
            with archive.open(info) as stream:
                return np.lib.format.read_array(stream, allow_pickle=False), False
    except InputFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
        raise InputFileError(f"{path}: not a readable .npz archive ({_reason(error)})") from None


def _map_stored_member(
    path: Path, info: zipfile.ZipInfo, header: int, shape: tuple[int, ...], fortran: bool, dtype: np.dtype
) -> np.ndarray:
    """Memory-map an uncompressed ``.npz`` member: its data start after the zip local
    header (30 bytes, then the name and the extra field) and the ``.npy`` header."""
    with open(path, "rb") as raw:
        raw.seek(info.header_offset)
        local = raw.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise ValueError("a member's local header is damaged")
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    offset = info.header_offset + 30 + name_length + extra_length + header
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape), order=order)


def _load_torch(path: Path, budget_bytes: float) -> tuple[torch.Tensor, bool]:
    try:
        try:
            loaded, mapped = torch.load(path, map_location="cpu", weights_only=True, mmap=True), True
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            # a file in torch's legacy (pre-1.6) format cannot be mapped: load it if it fits
            _check_fits(path, path.stat().st_size, budget_bytes)
            loaded, mapped = torch.load(path, map_location="cpu", weights_only=True), False
    except InputFileError:
        raise
    except Exception as error:  # noqa: BLE001 - torch.load raises many kinds on a bad file
        raise InputFileError(f"{path}: not a tensor file torch can load safely ({_reason(error)})") from None
    if isinstance(loaded, dict):
        tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        loaded = tensors[_pick_key(list(tensors), path)]
    if not isinstance(loaded, torch.Tensor):
        raise InputFileError(f"{path}: expected a tensor or a dict of tensors, got {type(loaded).__name__}")
    return loaded, mapped


def _pick_key(keys: list[str], path: Path) -> str:
    if not keys:
        raise InputFileError(f"{path}: holds no arrays")
    if len(keys) == 1:
        return keys[0]
    if HEATMAPS_KEY in keys:
        return HEATMAPS_KEY
    raise InputFileError(f"{path}: holds several arrays ({', '.join(keys)}); name the heatmaps {HEATMAPS_KEY!r}")


def _check_fits(path: Path, size_bytes: float, budget_bytes: float) -> None:
    if size_bytes > budget_bytes:
        raise InputFileError(
            f"{path}: {size_bytes / 2**20:.0f} MiB must be loaded whole (this format cannot be "
            f"memory-mapped) and exceeds the memory budget of {budget_bytes / 2**20:.0f} MiB; save the "
            "maps as .npy (or uncompressed .npz, or with torch.save) or raise --max-memory"
        )


def _reason(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


# ------------------------------------------------------------------------- targets
def load_targets(path: Path, samples: int, keypoints: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth for ``samples x keypoints`` maps.

    Returns:
        ``(N, K, 2)`` float64 image coordinates (NaN where not counted) and the
        ``(N, K)`` mask of the keypoints that count (visibility > 0).

    Raises:
        InputFileError: missing or unreadable file, wrong shape, an N or K other than
            the heatmaps', a missing, repeated or out-of-range CSV row, or a counted
            keypoint whose coordinates are not finite.
    """
    path = Path(path)
    if _check_input(path, TARGET_SUFFIXES, "targets") == ".npy":
        points, visible = _targets_from_npy(path)
    else:
        points, visible = _targets_from_csv(path, samples, keypoints)
    if points.shape[:2] != (samples, keypoints):
        raise InputFileError(
            f"{path}: targets hold N={points.shape[0]}, K={points.shape[1]} but the heatmaps hold "
            f"N={samples}, K={keypoints}"
        )
    bad = visible & ~np.isfinite(points).all(axis=-1)
    if bad.any():
        sample, keypoint = np.argwhere(bad)[0]
        raise InputFileError(
            f"{path}: sample {sample}, keypoint {keypoint} is not finite ({int(bad.sum())} such); "
            "give it visibility 0 to leave it out"
        )
    points = np.where(visible[..., None], points, np.nan)
    return torch.from_numpy(points), torch.from_numpy(visible)


def _targets_from_npy(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InputFileError(f"{path}: not a readable .npy array ({_reason(error)})") from None
    if array.ndim != 3 or array.shape[-1] not in (2, 3) or array.dtype.kind not in "fiub":
        raise InputFileError(
            f"{path}: targets must be numbers of shape (N, K, 2) or (N, K, 3) with visibility, "
            f"got {array.dtype} {tuple(array.shape)}"
        )
    array = array.astype(np.float64)
    if array.shape[-1] == 2:
        return array, np.ones(array.shape[:2], dtype=bool)
    visibility = array[..., 2]
    if not np.isfinite(visibility).all():
        raise InputFileError(f"{path}: the visibility column holds NaN or infinite values")
    return array[..., :2], visibility > 0


def _targets_from_csv(path: Path, samples: int, keypoints: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise InputFileError(f"{path}: not a readable CSV ({_reason(error)})") from None
    missing = [c for c in TARGET_CSV_COLUMNS if c not in table.columns]
    if missing:
        raise InputFileError(
            f"{path}: needs the columns {', '.join(TARGET_CSV_COLUMNS)} (and optionally visible); "
            f"missing {', '.join(missing)}"
        )
    columns = [*TARGET_CSV_COLUMNS, *(["visible"] if "visible" in table.columns else [])]
    try:
        values = table[columns].to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise InputFileError(f"{path}: the columns {', '.join(columns)} must hold numbers") from None
    index = values[:, :2]
    if not np.isfinite(index).all() or (index != np.round(index)).any():
        raise InputFileError(f"{path}: sample and keypoint must be whole numbers")
    outside = (index[:, 0] < 0) | (index[:, 0] >= samples) | (index[:, 1] < 0) | (index[:, 1] >= keypoints)
    if outside.any():
        row = int(np.argmax(outside))
        raise InputFileError(
            f"{path}: row {row + 2} names sample {index[row, 0]:.0f}, keypoint {index[row, 1]:.0f}, outside the "
            f"heatmaps' N={samples}, K={keypoints}"
        )
    sample, keypoint = index[:, 0].astype(np.int64), index[:, 1].astype(np.int64)
    flat = sample * keypoints + keypoint
    counts = np.bincount(flat, minlength=samples * keypoints)
    if (counts > 1).any():
        first = int(np.argmax(counts > 1))
        raise InputFileError(f"{path}: sample {first // keypoints}, keypoint {first % keypoints} has several rows")
    if (counts == 0).any():
        first = int(np.argmax(counts == 0))
        raise InputFileError(
            f"{path}: sample {first // keypoints}, keypoint {first % keypoints} has no row "
            f"({int((counts == 0).sum())} missing); every pair needs one (visible 0 leaves it out)"
        )
    points = np.empty((samples * keypoints, 2))
    points[flat] = values[:, 2:4]
    visible = np.ones(samples * keypoints, dtype=bool)
    if len(columns) == 5:
        if not np.isfinite(values[:, 4]).all():
            raise InputFileError(f"{path}: the visible column holds empty or non-numeric values")
        visible[flat] = values[:, 4] > 0
    return points.reshape(samples, keypoints, 2), visible.reshape(samples, keypoints)


# ---------------------------------------------------------------------- evaluation
def chunk_samples(
    shape: tuple[int, int, int, int], budget_bytes: float, decoders: int, *, working_bytes: int = 4
) -> int:
    """Samples (``K`` maps each) to decode at once within the budget, decoding in a
    precision of ``working_bytes`` per value.

    Raises:
        ConfigError: not even one sample fits.
    """
    samples, keypoints, height, width = shape
    fixed = samples * keypoints * (2 * 8 + 1 + decoders * 2 * 8)  # targets, mask, decoded points
    # the map as read, its copy on the device and the decoders' working buffers
    per_sample = keypoints * height * width * working_bytes * (2 + MAP_BUFFERS)
    if fixed + per_sample > budget_bytes:
        need = math.ceil((fixed + per_sample) / 2**20)
        raise ConfigError(
            f"{samples}x{keypoints} maps of {height}x{width} need at least {need} MiB, more than the "
            f"memory budget of {budget_bytes / 2**20:g} MiB; raise --max-memory"
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
        image pixels and PCK at each threshold, and the opened heatmap file.

    Raises:
        InputFileError: a file is missing, unreadable, of the wrong shape, or holds
            NaN or infinite values in the maps (named by sample and keypoint).
        ConfigError: a setting out of range, or one sample does not fit the budget.
        MissingResultsError: no keypoint is counted (every visibility is 0).
        DeviceError: the device is not available.
    """
    budget = config.max_memory_mib * 2**20
    source = open_heatmaps(config.heatmaps, budget)
    samples, keypoints, height, width = source.shape
    image_size = _image_size(config, (height, width))
    targets, visible = load_targets(config.targets, samples, keypoints)
    if not visible.any():
        raise MissingResultsError(f"{config.targets}: every keypoint has visibility 0; nothing to score")
    device = resolve_device(config.device)
    # MPS has no float64: decode and score in float32 there
    exact = torch.float32 if device.type == "mps" else torch.float64
    wide = source.dtype == "float64" and device.type != "mps"
    # a file that had to be loaded whole already holds part of the budget
    loaded = 0 if source.mapped else samples * keypoints * height * width * source.itemsize
    step = chunk_samples(source.shape, budget - loaded, len(config.decoders), working_bytes=8 if wide else 4)
    decoded = {name: [] for name in config.decoders}
    seconds = dict.fromkeys(config.decoders, 0.0)
    with torch.inference_mode():
        for start in range(0, samples, step):
            maps = source.read(start, start + step)
            narrow = maps.dtype == torch.float64 and not wide
            maps = maps.to(device, torch.float32 if narrow else maps.dtype)
            _check_finite(maps, source.path, start)
            for name in config.decoders:
                points, spent = timed(lambda name=name: decode(maps, name, **config.decoder_params), device)
                seconds[name] += spent
                decoded[name].append(points.to(exact))
            if progress is not None:
                progress(min(samples, start + step), samples)
    targets, visible = targets.to(device, exact), visible.to(device)
    rows = []
    for name in config.decoders:
        points = heatmap_to_image(torch.cat(decoded[name]), config.stride, config.convention, image_size)
        offsets = (points - targets)[visible]
        summary = summarize_offsets(offsets, config.stride)
        errors = torch.linalg.vector_norm(offsets, dim=-1)
        pck = {pck_column(t): (errors <= t).sum().item() / errors.numel() for t in config.pck}
        rows.append({
            "heatmaps": str(config.heatmaps), "targets": str(config.targets), "samples": samples,
            "keypoints": keypoints, "heatmap_h": height, "heatmap_w": width, "stride": config.stride,
            "convention": config.convention, "image_h": image_size[0], "image_w": image_size[1],
            **config.decoder_params, "decoder": name, "visible": int(visible.sum()), **summary, **pck,
            "device": str(device), "dtype": source.dtype, "seconds": seconds[name],
        })
    return pd.DataFrame(rows, columns=evaluate_columns(config.pck)), source


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
        "heatmaps", "targets", "samples", "keypoints", "heatmap_h", "heatmap_w", "stride", "convention",
        "image_h", "image_w", "beta", "dark_kernel", "window_radius", "decoder", "visible",
        *SUMMARY_FIELDS, *(pck_column(t) for t in pck), "device", "dtype", "seconds",
    ]


def _check_finite(maps: torch.Tensor, path: Path, first_sample: int) -> None:
    finite = torch.isfinite(maps).flatten(-2).all(-1)  # (n, K)
    if bool(finite.all()):
        return
    sample, keypoint = (~finite).nonzero()[0].tolist()
    raise InputFileError(
        f"{path}: the map of sample {first_sample + sample}, keypoint {keypoint} holds NaN or infinite values"
    )
