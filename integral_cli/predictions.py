"""Coordinates as files: what ``decode`` writes and ``evaluate --predictions`` reads,
and the per-sample lengths and keypoint names ``evaluate`` scores with.

Coordinates are ``(N, K, 2)`` points ``(x, y)`` in image pixels (``(N, K, 3)`` with ``z``
in voxels for volumes): a ``.npy`` array, or a ``.csv`` with one row per sample and
keypoint, ``sample, keypoint, x, y[, z], score`` (``score`` optional when read).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from integral_cli.coco import COCO_KEYPOINTS
from integral_cli.errors import ConfigError, InputFileError
from integral_cli.inputs import _check_input, _reason
from integral_cli.report import write_atomically

PREDICTION_SUFFIXES: tuple[str, ...] = (".npy", ".csv")
#: The columns of a coordinates CSV; ``score`` is optional when read.
PREDICTION_COLUMNS: tuple[str, ...] = ("sample", "keypoint", "x", "y", "score")


def write_predictions(path: Path, points: np.ndarray, scores: np.ndarray | None = None) -> None:
    """Write ``(N, K, 2)`` points, or ``(N, K, 3)`` ``(x, y, z)`` of volumes (and
    ``(N, K)`` scores, for a CSV) atomically, as ``.npy`` or ``.csv`` by the suffix.

    Raises:
        ConfigError: another suffix.
        OutputError: the write failed.
    """
    if check_prediction_path(path) == ".npy":
        write_atomically(path, lambda temporary: _save_npy(temporary, points))
        return
    samples, keypoints = points.shape[:2]
    table = pd.DataFrame(
        {
            "sample": np.repeat(np.arange(samples), keypoints),
            "keypoint": np.tile(np.arange(keypoints), samples),
            "x": points[..., 0].ravel(),
            "y": points[..., 1].ravel(),
            **({"z": points[..., 2].ravel()} if points.shape[-1] == 3 else {}),
            "score": (np.full((samples, keypoints), np.nan) if scores is None else scores).ravel(),
        }
    )
    write_atomically(path, lambda temporary: table.to_csv(temporary, index=False))


def check_prediction_path(path: Path) -> str:
    """The suffix of a coordinates file to write, ``.npy`` or ``.csv``.

    Raises:
        ConfigError: another suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in PREDICTION_SUFFIXES:
        raise ConfigError(f"{path}: coordinates are written as .npy or .csv")
    return suffix


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as stream:
        np.save(stream, array)


def read_predictions(path: Path, shape: tuple[int, int] | None = None, axes: int | None = None) -> np.ndarray:
    """``(N, K, axes)`` float64 points from a ``.npy`` array or a CSV of ``sample,
    keypoint, x, y`` rows (and ``z`` for 3 axes; every pair once); ``shape`` ``(N, K)``
    if known; ``axes`` None: 3 for an array of 3 or a CSV with a ``z`` column, else 2. A
    non-finite point is a prediction that failed (it counts as a miss).

    Raises:
        InputFileError: missing, unreadable or misshapen, or ``N, K`` other than ``shape``.
    """
    path = Path(path)
    if _check_input(path, PREDICTION_SUFFIXES, "predictions") == ".npy":
        try:
            points = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise InputFileError(f"{path}: not a readable .npy array ({_reason(error)})") from None
        if axes is None:
            axes = 3 if points.ndim == 3 and points.shape[-1] == 3 else 2
        if points.ndim != 3 or points.shape[-1] != axes or points.dtype.kind not in "fiu":
            raise InputFileError(
                f"{path}: predictions must be numbers of shape (N, K, {axes}), got {points.dtype} {tuple(points.shape)}"
            )
        points = points.astype(np.float64)
    else:
        points = _points_from_csv(path, shape, axes)
    if shape is not None and points.shape[:2] != tuple(shape):
        raise InputFileError(
            f"{path}: predictions hold N={points.shape[0]}, K={points.shape[1]}, but N={shape[0]}, K={shape[1]} "
            "are scored"
        )
    return points


def _points_from_csv(path: Path, shape: tuple[int, int] | None, axes: int | None) -> np.ndarray:
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise InputFileError(f"{path}: not a readable CSV ({_reason(error)})") from None
    if axes is None:
        axes = 3 if "z" in table.columns else 2
    needed = [*PREDICTION_COLUMNS[:4], *(["z"] if axes == 3 else [])]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputFileError(f"{path}: needs the columns {', '.join(needed)}; missing {', '.join(missing)}")
    try:
        values = table[needed].to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise InputFileError(f"{path}: the columns {', '.join(needed)} must hold numbers") from None
    index = values[:, :2]
    if not np.isfinite(index).all() or (index != np.round(index)).any() or (index < 0).any():
        raise InputFileError(f"{path}: sample and keypoint must be whole numbers >= 0")
    samples, keypoints = shape if shape is not None else (int(index[:, 0].max()) + 1, int(index[:, 1].max()) + 1)
    sample, keypoint = index[:, 0].astype(np.int64), index[:, 1].astype(np.int64)
    if (sample >= samples).any() or (keypoint >= keypoints).any():
        raise InputFileError(f"{path}: a row names a sample or keypoint beyond N={samples}, K={keypoints}")
    counts = np.bincount(sample * keypoints + keypoint, minlength=samples * keypoints)
    if (counts != 1).any():
        first = int(np.argmax(counts != 1))
        state = "several rows" if counts[first] > 1 else "no row"
        raise InputFileError(f"{path}: sample {first // keypoints}, keypoint {first % keypoints} has {state}")
    points = np.empty((samples * keypoints, axes))
    points[sample * keypoints + keypoint] = values[:, 2:]
    return points.reshape(samples, keypoints, axes)


def load_lengths(spec: str, targets: np.ndarray, visible: np.ndarray) -> np.ndarray | None:
    """The per-sample length errors are normalised by, ``(N,)``, or ``None`` for
    ``none``: ``bbox:FILE`` (the square root of the area of an ``(N, 4)`` ``x, y, w, h``
    box, from ``.npy`` or a headerless ``.csv``), ``pair:I,J`` (the distance between the
    target keypoints ``I`` and ``J``; NaN where either is unlabelled), ``value:V``.

    Raises:
        ConfigError: a malformed spec, ``I`` or ``J`` out of range, a non-positive value.
        InputFileError: a box file that is missing, misshapen, of another ``N``, or holds
            a non-positive size.
    """
    kind, _, argument = spec.partition(":")
    samples, keypoints = targets.shape[:2]
    if kind == "none" and not argument:
        return None
    if kind == "value":
        try:
            value = float(argument)
        except ValueError:
            value = float("nan")
        if not np.isfinite(value) or value <= 0:
            raise ConfigError(f"«normalize» value:V needs a number > 0, got {argument!r}")
        return np.full(samples, value)
    if kind == "pair":
        try:
            first, second = (int(part) for part in argument.split(","))
        except ValueError:
            raise ConfigError(f"«normalize» pair:I,J needs two keypoint indices, got {argument!r}") from None
        if not (0 <= first < keypoints and 0 <= second < keypoints) or first == second:
            raise ConfigError(f"«normalize» pair:{argument}: I and J must be two keypoints of 0 to {keypoints - 1}")
        lengths = np.linalg.norm(targets[:, first] - targets[:, second], axis=-1)
        lengths[~(visible[:, first] & visible[:, second])] = np.nan
        return lengths
    if kind == "bbox":
        return _box_sizes(Path(argument), samples)
    raise ConfigError(f"«normalize» must be none, bbox:FILE, pair:I,J or value:V, got {spec!r}")


def _box_sizes(path: Path, samples: int) -> np.ndarray:
    suffix = _check_input(path, (".npy", ".csv"), "boxes")
    try:
        boxes = np.load(path, allow_pickle=False) if suffix == ".npy" else np.loadtxt(path, delimiter=",", ndmin=2)
    except (ValueError, OSError, EOFError) as error:
        raise InputFileError(f"{path}: not a readable box file ({_reason(error)})") from None
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InputFileError(f"{path}: boxes must be (N, 4) rows of x, y, w, h, got {tuple(boxes.shape)}")
    if boxes.shape[0] != samples:
        raise InputFileError(f"{path}: {boxes.shape[0]} boxes for N={samples} samples")
    sizes = boxes[:, 2] * boxes[:, 3]
    if not (np.isfinite(sizes) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)).all():
        row = int(np.argmax(~(np.isfinite(sizes) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0))))
        raise InputFileError(f"{path}: box {row} has a non-positive or non-finite width or height")
    return np.sqrt(sizes)


def keypoint_names(spec: str | None, keypoints: int) -> list[str]:
    """Names of the ``K`` keypoints: their indices, COCO's 17 names (``coco``), or the
    lines of a text file.

    Raises:
        ConfigError: ``coco`` for other than 17 keypoints.
        InputFileError: a file that is missing or does not hold ``K`` names.
    """
    if spec is None:
        return [str(k) for k in range(keypoints)]
    if spec == "coco":
        if keypoints != len(COCO_KEYPOINTS):
            raise ConfigError(f"«keypoint_names» coco names 17 keypoints, the files hold {keypoints}")
        return list(COCO_KEYPOINTS)
    path = Path(spec)
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(f"{path}: cannot read keypoint names ({_reason(error)})") from None
    if len(names) != keypoints:
        raise InputFileError(f"{path}: {len(names)} names for K={keypoints} keypoints")
    return names
