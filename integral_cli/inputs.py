"""Reading a model's outputs and their ground truth from files.

Heatmaps come from ``.npy``, ``.npz`` or ``.pt`` files of shape ``(N, K, H, W)``, or
volumes of shape ``(N, K, D, H, W)``; SimCC vectors from an ``.npz`` or ``.pt`` file
holding ``simcc_x`` ``(N, K, Wx)`` and ``simcc_y`` ``(N, K, Wy)`` (what an RTMPose head
outputs); ground truth from ``.npy`` (``(N, K, 2)`` image pixels, or ``(N, K, 3)`` with a
visibility column; for volumes ``(N, K, 3)`` with z in voxels, or ``(N, K, 4)`` with
visibility) or a ``.csv`` with one row per sample and keypoint. ``.npy``,
uncompressed ``.npz`` members and ``.pt`` files saved by torch 1.6 or later are
memory-mapped, so a file larger than the budget never has to fit in memory; the other
forms are loaded whole, and refused up front when they would not fit.
"""

from __future__ import annotations

import math
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from integral_cli.errors import InputFileError

HEATMAP_SUFFIXES: tuple[str, ...] = (".npy", ".npz", ".pt", ".pth")
TARGET_SUFFIXES: tuple[str, ...] = (".npy", ".csv")
#: The array a multi-array ``.npz`` or a ``.pt`` dictionary must call its heatmaps.
HEATMAPS_KEY = "heatmaps"
SIMCC_SUFFIXES: tuple[str, ...] = (".npz", ".pt", ".pth")
#: The arrays of a SimCC file: the x and the y vectors.
SIMCC_KEYS: tuple[str, str] = ("simcc_x", "simcc_y")
#: Columns of a targets CSV (``z`` too, for volumes); ``visible`` is optional.
TARGET_CSV_COLUMNS: tuple[str, ...] = ("sample", "keypoint", "x", "y")


# ------------------------------------------------------------------------ heatmaps
@dataclass
class HeatmapFile:
    """Heatmaps on disk, read a range of samples at a time.

    Attributes:
        path: the file.
        shape: ``(N, K, H, W)``, or ``(N, K, D, H, W)`` for volumes.
        dtype: the stored dtype's name (``float32``, ``uint8``, ...).
        mapped: whether the maps are memory-mapped rather than loaded.
        array: the ``numpy`` array or ``torch`` tensor (memory-mapped or in memory).
    """

    path: Path
    shape: tuple[int, ...]
    dtype: str
    mapped: bool
    array: np.ndarray | torch.Tensor

    @property
    def volumes(self) -> bool:
        """Whether the file holds volumes ``(N, K, D, H, W)``."""
        return len(self.shape) == 5

    @property
    def itemsize(self) -> int:
        """Bytes per stored value."""
        return self.array.dtype.itemsize if isinstance(self.array, np.ndarray) else self.array.element_size()

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Samples ``start:stop`` as a CPU floating-point tensor: integers become float32,
        floats wider than float64 float64; never part of an autograd graph."""
        return _floating(self.array[start:stop])


def _floating(part: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A CPU floating-point copy of ``part``, outside any autograd graph."""
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
            a shape other than ``(N, K, H, W)`` or ``(N, K, D, H, W)``, a non-numeric
            dtype, or a file that
            cannot be memory-mapped and is larger than ``budget_bytes``.
    """
    path = Path(path)
    suffix = _check_input(path, HEATMAP_SUFFIXES, "heatmaps")
    array: np.ndarray | torch.Tensor
    if suffix == ".npy":
        array, mapped = _load_npy(path), True
    elif suffix == ".npz":
        array, mapped = _load_npz(path, budget_bytes)
    else:
        array, mapped = _load_torch(path, budget_bytes)
    name = _check_numeric(array, path, "heatmaps")
    if len(array.shape) not in (4, 5) or min(array.shape) < 1:
        raise InputFileError(
            f"{path}: heatmaps must have shape (N, K, H, W), or (N, K, D, H, W) for volumes, with every side >= 1, "
            f"got {tuple(array.shape)}"
        )
    return HeatmapFile(path, tuple(int(v) for v in array.shape), name, mapped, array)


def _check_numeric(array: np.ndarray | torch.Tensor, path: Path, what: str) -> str:
    """The dtype's name of a dense array of numbers; raises :class:`InputFileError`
    otherwise."""
    name = str(array.dtype).removeprefix("torch.")
    if isinstance(array, np.ndarray):
        numeric = array.dtype.kind in "fiu"
    else:
        numeric = not (array.is_complex() or array.dtype == torch.bool)
        if array.layout != torch.strided:
            raise InputFileError(f"{path}: {what} must be a dense tensor, got layout {array.layout}")
    if not numeric:
        raise InputFileError(f"{path}: {what} must be numbers, got dtype {name}")
    return name


# ---------------------------------------------------------------------- SimCC vectors
@dataclass
class SimCCFile:
    """SimCC vectors on disk, read a range of samples at a time.

    Attributes:
        path: the file.
        shape: ``(N, K, Wx, Wy)``: samples, keypoints and the bins along x and y.
        dtype: the stored dtype's name (of ``simcc_x``; ``simcc_y`` must match).
        mapped: whether the vectors are memory-mapped rather than loaded.
        arrays: ``simcc_x`` and ``simcc_y`` (``numpy`` arrays or ``torch`` tensors).
    """

    path: Path
    shape: tuple[int, int, int, int]
    dtype: str
    mapped: bool
    arrays: tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]

    @property
    def itemsize(self) -> int:
        """Bytes per stored value."""
        first = self.arrays[0]
        return first.dtype.itemsize if isinstance(first, np.ndarray) else first.element_size()

    def read(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``start:stop`` of ``simcc_x`` and ``simcc_y`` as CPU floating-point
        tensors (as :meth:`HeatmapFile.read` reads maps)."""
        return _floating(self.arrays[0][start:stop]), _floating(self.arrays[1][start:stop])


def open_simcc(path: Path, budget_bytes: float) -> SimCCFile:
    """Open a file of SimCC vectors without reading them, where the format allows.

    Raises:
        InputFileError: missing file, unknown suffix, unreadable or corrupt contents,
            no ``simcc_x`` or ``simcc_y``, shapes other than ``(N, K, Wx)`` and
            ``(N, K, Wy)`` with the same ``N`` and ``K``, dtypes that are not numbers or
            differ, or a file that cannot be memory-mapped and exceeds ``budget_bytes``.
    """
    path = Path(path)
    if _check_input(path, SIMCC_SUFFIXES, "SimCC vectors") == ".npz":
        loaded = [_load_npz(path, budget_bytes, member=key) for key in SIMCC_KEYS]
        arrays, mapped = (loaded[0][0], loaded[1][0]), loaded[0][1] and loaded[1][1]
    else:
        stored, mapped = _load_torch_object(path, budget_bytes)
        if not isinstance(stored, dict) or not all(isinstance(stored.get(key), torch.Tensor) for key in SIMCC_KEYS):
            raise InputFileError(f"{path}: SimCC vectors must be a dict holding the tensors {' and '.join(SIMCC_KEYS)}")
        arrays = (stored[SIMCC_KEYS[0]], stored[SIMCC_KEYS[1]])
    names = [_check_numeric(array, path, key) for key, array in zip(SIMCC_KEYS, arrays, strict=True)]
    for key, array in zip(SIMCC_KEYS, arrays, strict=True):
        if len(array.shape) != 3 or min(array.shape) < 1:
            axis = key[-1]
            raise InputFileError(
                f"{path}: {key} must have shape (N, K, W{axis}) with every side >= 1, got {tuple(array.shape)}"
            )
    if tuple(arrays[0].shape[:2]) != tuple(arrays[1].shape[:2]) or names[0] != names[1]:
        raise InputFileError(
            f"{path}: simcc_x {names[0]} {tuple(arrays[0].shape)} and simcc_y {names[1]} {tuple(arrays[1].shape)} "
            "must share N, K and the dtype"
        )
    samples, keypoints, bins_x = (int(v) for v in arrays[0].shape)
    return SimCCFile(path, (samples, keypoints, bins_x, int(arrays[1].shape[-1])), names[0], mapped, arrays)


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


def _load_npz(path: Path, budget_bytes: float, member: str | None = None) -> tuple[np.ndarray, bool]:
    """The array ``member`` of an ``.npz`` (by default: its heatmaps), memory-mapped if
    it is stored uncompressed, and whether it is."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n.removesuffix(".npy") for n in archive.namelist() if n.endswith(".npy")]
            if member is None:
                member = _pick_key(names, path)
            elif member not in names:
                raise InputFileError(f"{path}: holds no array {member!r} (it holds {', '.join(names) or 'none'})")
            member += ".npy"
            info = archive.getinfo(member)
            with archive.open(info) as stream:
                version = np.lib.format.read_magic(stream)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
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
    mapped: np.ndarray = np.memmap(
        path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape), order="F" if fortran else "C"
    )
    return mapped


def _load_torch(path: Path, budget_bytes: float) -> tuple[torch.Tensor, bool]:
    loaded, mapped = _load_torch_object(path, budget_bytes)
    if isinstance(loaded, dict):
        tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        loaded = tensors[_pick_key(list(tensors), path)]
    if not isinstance(loaded, torch.Tensor):
        raise InputFileError(f"{path}: expected a tensor or a dict of tensors, got {type(loaded).__name__}")
    return loaded, mapped


def _load_torch_object(path: Path, budget_bytes: float) -> tuple[object, bool]:
    """What a tensor file holds (tensors, or containers of them), memory-mapped where
    torch can, and whether it is."""
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
    except Exception as error:
        raise InputFileError(f"{path}: not a tensor file torch can load safely ({_reason(error)})") from None
    return loaded, mapped


def _pick_key(keys: list[str], path: Path) -> str:
    if not keys:
        raise InputFileError(f"{path}: holds no arrays")
    if len(keys) == 1:
        return keys[0]
    if HEATMAPS_KEY in keys:
        return HEATMAPS_KEY
    if set(SIMCC_KEYS) <= set(keys):
        raise InputFileError(f"{path}: holds SimCC vectors ({', '.join(SIMCC_KEYS)}), not heatmaps; give it as «simcc»")
    raise InputFileError(f"{path}: holds several arrays ({', '.join(keys)}); name the heatmaps {HEATMAPS_KEY!r}")


def _check_fits(path: Path, size_bytes: float, budget_bytes: float) -> None:
    if size_bytes > budget_bytes:
        raise InputFileError(
            f"{path}: {size_bytes / 2**20:.0f} MiB must be loaded whole (this format cannot be "
            f"memory-mapped) and exceeds the memory budget of {budget_bytes / 2**20:.0f} MiB; save the "
            "maps as .npy (or uncompressed .npz, or with torch.save) or raise «max_memory_mib»"
        )


def _reason(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


# ------------------------------------------------------------------------- targets
def load_targets(path: Path, samples: int, keypoints: int, axes: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth for ``samples x keypoints`` maps (``axes`` 2) or volumes (3).

    Returns:
        ``(N, K, axes)`` float64 coordinates, ``x, y`` in image pixels and ``z`` in
        voxels (NaN where not counted), and the ``(N, K)`` mask of the keypoints that
        count (visibility > 0).

    Raises:
        InputFileError: missing or unreadable file, wrong shape, an N or K other than
            the heatmaps', a missing, repeated or out-of-range CSV row, or a counted
            keypoint whose coordinates are not finite.
    """
    path = Path(path)
    if _check_input(path, TARGET_SUFFIXES, "targets") == ".npy":
        points, visible = _targets_from_npy(path, axes)
    else:
        points, visible = _targets_from_csv(path, samples, keypoints, axes)
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


def _targets_from_npy(path: Path, axes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InputFileError(f"{path}: not a readable .npy array ({_reason(error)})") from None
    if array.ndim != 3 or array.shape[-1] not in (axes, axes + 1) or array.dtype.kind not in "fiub":
        what = "(x, y, z) for volumes" if axes == 3 else "(x, y)"
        raise InputFileError(
            f"{path}: targets must be numbers of shape (N, K, {axes}) {what} or (N, K, {axes + 1}) with "
            f"visibility, got {array.dtype} {tuple(array.shape)}"
        )
    array = array.astype(np.float64)
    if array.shape[-1] == axes:
        return array, np.ones(array.shape[:2], dtype=bool)
    visibility = array[..., axes]
    if not np.isfinite(visibility).all():
        raise InputFileError(f"{path}: the visibility column holds NaN or infinite values")
    return array[..., :axes], visibility > 0


def _targets_from_csv(path: Path, samples: int, keypoints: int, axes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise InputFileError(f"{path}: not a readable CSV ({_reason(error)})") from None
    needed = [*TARGET_CSV_COLUMNS, *(["z"] if axes == 3 else [])]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputFileError(
            f"{path}: needs the columns {', '.join(needed)} (and optionally visible); missing {', '.join(missing)}"
        )
    columns = [*needed, *(["visible"] if "visible" in table.columns else [])]
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
    points = np.empty((samples * keypoints, axes))
    points[flat] = values[:, 2 : 2 + axes]
    visible = np.ones(samples * keypoints, dtype=bool)
    if len(columns) == len(needed) + 1:
        if not np.isfinite(values[:, -1]).all():
            raise InputFileError(f"{path}: the visible column holds empty or non-numeric values")
        visible[flat] = values[:, -1] > 0
    return points.reshape(samples, keypoints, axes), visible.reshape(samples, keypoints)
