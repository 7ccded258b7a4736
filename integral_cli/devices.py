"""Choosing the device to compute on, naming it, synchronising it before a clock read,
keeping its float32 maths in full float32, and turning its out-of-memory errors into the
project's error.

What holds on every device:

* Ground truth, noise and distractors do not depend on the device: points are drawn on the
  CPU with the seeded generator and moved; noise and distractor directions come from a
  counter-based hash (on MPS, which has no float64, computed on the CPU and moved).
* Float32 maths on CUDA runs in full float32: no TensorFloat-32 in convolutions or matrix
  products while the library computes (:func:`full_float32`), whatever the caller set.
* MPS computes in float32; float64 is refused before any work (:func:`check_dtype`).
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

from integral_cli.checks import check_device_spec
from integral_cli.errors import DeviceError, IntegralError, OutOfMemoryError

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


def device_model(device: torch.device) -> str:
    """What a result depends on about the device: ``"cpu"``, ``"mps"``, or ``"cuda"`` and
    the GPU model (``"cuda (NVIDIA A100-SXM4-40GB)"``), without the index, so two GPUs of
    one model count as the same device."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def model_of_device_name(name: str) -> str:
    """:func:`device_model` from a :func:`device_name` (as older sweep sidecars hold it):
    ``"cuda:1 (NVIDIA A100)"`` -> ``"cuda (NVIDIA A100)"``."""
    return re.sub(r"^(\w+):\d+", r"\1", name.strip())


def accumulation_dtype(device: torch.device) -> torch.dtype:
    """The widest float ``device`` computes in, for sums that must keep their digits:
    float64, or float32 on MPS (Metal has no 64-bit floats)."""
    return torch.float32 if device.type == "mps" else torch.float64


def check_dtype(device: torch.device, dtype: str) -> None:
    """Refuse a precision the device cannot compute in, before any work.

    Raises:
        DeviceError: float64 on MPS (Metal has no 64-bit floats).
    """
    if device.type == "mps" and dtype == "float64":
        raise DeviceError("MPS has no float64; use «dtype» float32, or «device» cpu")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocator running out of memory (CUDA, MPS or CPU)."""
    if isinstance(error, MemoryError):
        return True
    out_of_memory = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if out_of_memory is not None and isinstance(error, out_of_memory):
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def run_on_device(device: torch.device, work: Callable[[], T], advice: str) -> T:
    """``work()`` with float32 maths in full float32 (:func:`full_float32`), and an
    out-of-memory error from anywhere in it turned into :class:`OutOfMemoryError`.

    The device's cached memory is released once the failed work is gone: after the
    ``except`` block, whose exception and traceback hold the frames, and the tensors, of
    the work that failed.

    Args:
        device: the device ``work`` computes on.
        work: the computation.
        advice: what to do about it, ending the one-line message (it may name settings
            as ``«name»``).

    Raises:
        OutOfMemoryError: the device (or the host) ran out of memory.
    """
    try:
        with full_float32(device):
            return work()
    except Exception as error:
        if isinstance(error, IntegralError) or not is_out_of_memory(error):
            raise
        message = f"{device} ran out of memory ({out_of_memory_reason(error)}); {advice}"
    release_cached_memory(device)
    raise OutOfMemoryError(message)


def out_of_memory_reason(error: BaseException) -> str:
    """The first sentence of an out-of-memory message, e.g. ``CUDA out of memory``."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return re.split(r"\.\s", text, maxsplit=1)[0].rstrip(".")


@contextlib.contextmanager
def full_float32(device: torch.device) -> Iterator[None]:
    """Run float32 convolutions and matrix products in full float32 on CUDA while the
    block runs, and restore the caller's settings after it.

    On Ampere and later GPUs cuDNN runs float32 convolutions in TensorFloat-32 (a 10-bit
    mantissa) unless told not to, and ``torch.set_float32_matmul_precision("high")`` does
    the same to matrix products. A decoder's answer then moves by up to tens of heatmap
    pixels on noisy maps (DARK's blur), so the library pins both to IEEE float32. A
    no-op on other devices.
    """
    if device.type != "cuda":
        yield
        return
    saved = _fp32_settings()
    _apply_fp32_settings(_IEEE_FP32)
    try:
        yield
    finally:
        _apply_fp32_settings(saved)


#: torch 2.9 and later set float32 precision per operation; mixing that with the older
#: switches makes torch refuse to read them back, so only one of the two is used.
_PER_OPERATION = hasattr(torch.backends.cudnn, "conv")
_CUDNN: Any = torch.backends.cudnn  # its per-operation settings are not in torch's type stubs
#: cuDNN convolutions' and matrix products' float32 precision, pinned to IEEE float32.
_IEEE_FP32: tuple[object, object] = ("ieee", "ieee") if _PER_OPERATION else (False, "highest")


def _fp32_settings() -> tuple[object, object]:
    """The float32 precisions of cuDNN convolutions and of matrix products, as set now."""
    if _PER_OPERATION:
        return _CUDNN.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    return torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()


def _apply_fp32_settings(settings: tuple[object, object]) -> None:
    convolutions, products = settings
    if _PER_OPERATION:
        _CUDNN.conv.fp32_precision = convolutions
        torch.backends.cuda.matmul.fp32_precision = products
    else:  # torch before 2.9
        torch.backends.cudnn.allow_tf32 = bool(convolutions)
        torch.set_float32_matmul_precision(str(products))


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


_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers
_M_MMAP_THRESHOLD = -3
#: Free memory the heap keeps at its top before giving it back: well above the 768 KiB
#: blocks the decoders weigh one after another, so that each block's buffer is the
#: last one's memory, not fresh pages.
TRIM_THRESHOLD_BYTES = 16 << 20
_allocator_tuned = False


def limit_allocator_slack(threshold_bytes: int = 1 << 20) -> None:
    """Make freed chunk buffers go back to the operating system at once (glibc only).

    glibc raises its mmap threshold each time a large block is freed, after which blocks
    of that size come from the heap and stay in the process once freed: a run that
    allocates and frees chunk-sized tensors over and over then holds up to about twice
    its memory budget. A fixed threshold keeps every block of ``threshold_bytes`` or more
    in its own mapping, returned on free. A fixed threshold also fixes glibc's trim
    threshold, at 128 KiB unless set: the heap would then hand back each freed
    cache-sized block and fault its pages in again for the next (the 2D integral took
    9.6 ms for 4096 maps of 64x48 against 6.6 ms with :data:`TRIM_THRESHOLD_BYTES`, in
    one run), so that is set too. A no-op elsewhere.
    """
    global _allocator_tuned
    if _allocator_tuned or not sys.platform.startswith("linux"):
        return
    _allocator_tuned = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass
