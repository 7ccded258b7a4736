"""Choosing the device to compute on, naming it, and synchronising it before a clock read."""

from __future__ import annotations

import ctypes
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import torch

from integral_cli.checks import check_device_spec
from integral_cli.errors import DeviceError

T = TypeVar("T")


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn a device string into the :class:`torch.device` to use.

    Args:
        spec: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.

    Returns:
        The device. ``"cuda"`` resolves to the current CUDA device, e.g. ``cuda:0``.

    Raises:
        ConfigError: ``spec`` is not one of the forms above.
        DeviceError: the device was asked for but this machine does not have it.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    spec = check_device_spec(spec)
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
        if spec == "cpu":
            return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError("device 'mps' was requested but this machine has no MPS backend")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {spec!r} was requested but CUDA is not available "
            "(no GPU, or this torch build has no CUDA); use «device» cpu or auto"
        )
    count = torch.cuda.device_count()
    index = int(spec.split(":")[1]) if ":" in spec else torch.cuda.current_device()
    if index >= count:
        raise DeviceError(
            f"device {spec!r} was requested but this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})"
        )
    return torch.device("cuda", index)


def device_name(device: torch.device) -> str:
    """A human-readable name: ``"cpu"``, or ``"cuda:0 (NVIDIA A100-SXM4-40GB)"``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocator running out of memory (CUDA, MPS or CPU)."""
    if isinstance(error, MemoryError):
        return True
    out_of_memory = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if out_of_memory is not None and isinstance(error, out_of_memory):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def release_cached_memory(device: torch.device) -> None:
    """Hand the caching allocator's free blocks back, so a smaller retry can use them."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` to finish, so a clock read after it is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(function: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """``function()`` and the seconds it took, ``device`` synchronised on both sides of
    the clock reads."""
    synchronize(device)
    began = time.perf_counter()
    result = function()
    synchronize(device)
    return result, time.perf_counter() - began


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_allocator_tuned = False


def limit_allocator_slack(threshold_bytes: int = 1 << 20) -> None:
    """Make freed chunk buffers go back to the operating system at once (glibc only).

    glibc raises its mmap threshold each time a large block is freed, after which blocks
    of that size come from the heap and stay in the process once freed: a run that
    allocates and frees chunk-sized tensors over and over then holds up to about twice
    its memory budget. A fixed threshold keeps every block of ``threshold_bytes`` or more
    in its own mapping, returned on free. It costs no measurable speed here. A no-op
    elsewhere.
    """
    global _allocator_tuned
    if _allocator_tuned or not sys.platform.startswith("linux"):
        return
    _allocator_tuned = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes)
    except (OSError, AttributeError):
        pass
