"""Argument checks shared by the public entry points; each failure is a named error."""

from __future__ import annotations

import math

import torch

from integral_cli.errors import ConfigError, ShapeError


def check_heatmaps(heatmaps: object) -> torch.Tensor:
    """Check a ``(B, K, H, W)`` floating-point heatmap tensor with ``H, W >= 1``."""
    if not isinstance(heatmaps, torch.Tensor):
        raise ShapeError(f"heatmaps must be a torch.Tensor, got {type(heatmaps).__name__}")
    if heatmaps.ndim != 4:
        raise ShapeError(
            f"heatmaps must have shape (B, K, H, W), got {tuple(heatmaps.shape)}"
        )
    if not heatmaps.is_floating_point():
        raise ShapeError(f"heatmaps must be floating point, got {heatmaps.dtype}")
    if heatmaps.shape[-1] < 1 or heatmaps.shape[-2] < 1:
        raise ShapeError(f"heatmaps must be at least 1x1, got {tuple(heatmaps.shape)}")
    return heatmaps


def check_points(points: object, name: str = "points") -> torch.Tensor:
    """Check a ``(B, K, 2)`` floating-point coordinate tensor in ``(x, y)`` order."""
    if not isinstance(points, torch.Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor, got {type(points).__name__}")
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ShapeError(f"{name} must have shape (B, K, 2), got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise ShapeError(f"{name} must be floating point, got {points.dtype}")
    return points


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Check that ``value`` is one of ``choices``; the message lists them."""
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose from {', '.join(choices)}")
    return value


def check_positive(value: float, name: str) -> float:
    """Check that ``value`` is a finite number greater than zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value}")
    return value


def check_size(size: object, name: str = "size") -> tuple[int, int]:
    """Check an ``(H, W)`` pair of positive integers."""
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        raise ConfigError(f"{name} must be a pair of integers (H, W), got {size!r}")
    if size[0] < 1 or size[1] < 1:
        raise ConfigError(f"{name} must be positive, got {size[0]}x{size[1]}")
    return int(size[0]), int(size[1])


def check_range(
    value: object,
    name: str,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    integer: bool = False,
) -> float:
    """Check that ``value`` is a number (an integer if ``integer``) in ``[low, high]``
    (``(low, high]`` if ``low_open``); the message names the allowed range."""
    kind = "an integer" if integer else "a number"
    allowed = f"{'>' if low_open else '>='} {low:g} and <= {high:g}"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ConfigError(f"{name} must be {kind} {allowed}, got {value!r}")
    too_low = value <= low if low_open else value < low
    if not math.isfinite(value) or too_low or value > high:
        raise ConfigError(f"{name} must be {kind} {allowed}, got {value!r}")
    return value
