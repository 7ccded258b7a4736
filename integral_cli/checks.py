"""Argument checks shared by the public entry points; each failure is a named error.

Imports no torch until a tensor is checked, so the settings table (and the command
line's ``--help``) can use the scalar checks without it.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from integral_cli.errors import ConfigError, ShapeError

if TYPE_CHECKING:
    import torch


def check_heatmaps(heatmaps: object) -> torch.Tensor:
    """Check a ``(B, K, H, W)`` floating-point heatmap tensor with ``H, W >= 1``."""
    tensor = _check_tensor(heatmaps, "heatmaps")
    if tensor.ndim != 4:
        raise ShapeError(f"heatmaps must have shape (B, K, H, W), got {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise ShapeError(f"heatmaps must be floating point, got {tensor.dtype}")
    if tensor.shape[-1] < 1 or tensor.shape[-2] < 1:
        raise ShapeError(f"heatmaps must be at least 1x1, got {tuple(tensor.shape)}")
    return tensor


def check_simcc(simcc_x: object, simcc_y: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Check SimCC vectors: ``(B, K, Wx)`` and ``(B, K, Wy)`` floating-point tensors with
    the same ``B`` and ``K`` and at least one bin each."""
    tensors = []
    for name, value in (("simcc_x", simcc_x), ("simcc_y", simcc_y)):
        tensor = _check_tensor(value, name)
        axis = name[-1]
        if tensor.ndim != 3:
            raise ShapeError(f"{name} must have shape (B, K, W{axis}), got {tuple(tensor.shape)}")
        if not tensor.is_floating_point():
            raise ShapeError(f"{name} must be floating point, got {tensor.dtype}")
        if tensor.shape[-1] < 1:
            raise ShapeError(f"{name} must have at least one bin, got {tuple(tensor.shape)}")
        tensors.append(tensor)
    if tensors[0].shape[:2] != tensors[1].shape[:2]:
        raise ShapeError(f"simcc_x {tuple(tensors[0].shape)} and simcc_y {tuple(tensors[1].shape)} differ in B or K")
    return tensors[0], tensors[1]


def check_volumes(volumes: object) -> torch.Tensor:
    """Check a ``(B, K, D, H, W)`` floating-point volume tensor with ``D, H, W >= 1``."""
    tensor = _check_tensor(volumes, "volumes")
    if tensor.ndim != 5:
        raise ShapeError(f"volumes must have shape (B, K, D, H, W), got {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise ShapeError(f"volumes must be floating point, got {tensor.dtype}")
    if min(tensor.shape[-3:]) < 1:
        raise ShapeError(f"volumes must be at least 1x1x1, got {tuple(tensor.shape)}")
    return tensor


def check_points(points: object, name: str = "points", axes: int = 2) -> torch.Tensor:
    """Check a ``(B, K, C)`` floating-point coordinate tensor, ``C = axes``: ``(x, y)``,
    or ``(x, y, z)`` for 3 axes."""
    tensor = _check_tensor(points, name)
    if tensor.ndim != 3 or tensor.shape[-1] != axes:
        raise ShapeError(f"{name} must have shape (B, K, {axes}), got {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise ShapeError(f"{name} must be floating point, got {tensor.dtype}")
    return tensor


def _check_tensor(value: object, name: str) -> torch.Tensor:
    import torch

    if not isinstance(value, torch.Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Check that ``value`` is one of ``choices``; the message lists them."""
    if value not in choices:
        raise ConfigError(f"unknown «{name}» {value!r}; choose from {', '.join(choices)}")
    return str(value)


def check_positive(value: float, name: str) -> float:
    """Check that ``value`` is a finite number greater than zero."""
    return check_range(value, name, 0, math.inf, low_open=True)


def check_size(size: object, name: str = "size") -> tuple[int, int]:
    """Check an ``(H, W)`` pair of positive integers."""
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        raise ConfigError(f"«{name}» must be a pair of integers (H, W), got {size!r}")
    if size[0] < 1 or size[1] < 1:
        raise ConfigError(f"«{name}» must be positive, got {size[0]}x{size[1]}")
    return int(size[0]), int(size[1])


def check_range(
    value: object,
    name: str,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    integer: bool = False,
) -> Any:
    """Check that ``value`` is a number (an integer if ``integer``) in ``[low, high]``
    (``(low, high]`` if ``low_open``); the message names the allowed range."""
    kind = "an integer" if integer else "a number"
    allowed = f"{'>' if low_open else '>='} {low:g}" + ("" if high == math.inf else f" and <= {high:g}")
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ConfigError(f"«{name}» must be {kind} {allowed}, got {value!r}")
    too_low = value <= low if low_open else value < low
    if not math.isfinite(value) or too_low or value > high:
        raise ConfigError(f"«{name}» must be {kind} {allowed}, got {value!r}")
    return value


#: The device strings the tool accepts.
DEVICE_HELP = "auto | cpu | cuda | cuda:N | mps"
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_spec(spec: object) -> str:
    """Check the form of a device string (not whether this machine has the device);
    returns it lower-cased."""
    text = str(spec).strip().lower()
    if not isinstance(spec, str) or not _DEVICE_PATTERN.match(text):
        raise ConfigError(f"unknown «device» {spec!r}; use {DEVICE_HELP}")
    return text
