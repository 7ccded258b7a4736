"""Decoders: pure functions ``(B, K, H, W) -> (B, K, 2)`` returning ``(x, y)`` in heatmap
pixels, and, for the decoders of volumes, ``(B, K, D, H, W) -> (B, K, 3)`` returning
``(x, y, z)`` in voxels. None modifies its input or loops over samples or keypoints.

The registry (:data:`DECODERS`) says what each computes; :func:`decode` runs one by name.
Importing this package imports no torch: each decoder's module is imported when it is
first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from integral_cli.checks import check_heatmaps, check_volumes
from integral_cli.decoders.registry import (
    DECODER_PARAMS,
    DECODERS,
    REPRESENTATIONS,
    Decoder,
    check_decoder_names,
    check_decoder_params,
    check_kernel_size,
    decoders_for,
    fit_radius_for_sigma,
    get_decoder,
    kernel_size_for_sigma,
    opencv_sigma,
)

if TYPE_CHECKING:
    import torch


def decode(heatmaps: torch.Tensor, method: str, **params: Any) -> torch.Tensor:
    """Decode heatmaps (or volumes) into keypoint coordinates.

    Args:
        heatmaps: ``(B, K, H, W)`` floating-point heatmaps, or ``(B, K, D, H, W)``
            volumes (a 5D tensor is read as volumes).
        method: a name in :data:`DECODERS`; for volumes, one whose representations
            include ``"volume"``.
        **params: decoder parameters (see :data:`DECODER_PARAMS`); a decoder that does not
            take a parameter ignores it.

    Returns:
        ``(B, K, 2)`` coordinates ``(x, y)`` in heatmap pixels, or for volumes
        ``(B, K, 3)`` coordinates ``(x, y, z)`` in voxels; float32 (float64 for float64
        input), on the device of the input. Float32 maths on CUDA runs in full float32,
        whatever TensorFloat-32 settings the caller has.

    Raises:
        ShapeError: the input is neither a ``(B, K, H, W)`` nor a ``(B, K, D, H, W)``
            floating-point tensor.
        ConfigError: unknown method or parameter, a parameter value out of range, or a
            decoder of heatmaps only given volumes.

    >>> maps = torch.zeros(2, 1, 4, 5); maps[:, 0, 3, 1] = 1.0
    >>> decode(maps, "argmax")
    tensor([[[1., 3.]],
    <BLANKLINE>
            [[1., 3.]]])
    """
    return decode_counted(heatmaps, method, **params)[0]


def decode_counted(heatmaps: torch.Tensor, method: str, **params: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`decode`, and the ``(B, K)`` mask of the maps where the decoder fell back to
    a simpler estimate (``gaussian-fit``: a fit that failed), or ``None`` for a decoder
    that has no such fallback to count (every decoder of volumes)."""
    from integral_cli.devices import full_float32

    volumes = getattr(heatmaps, "ndim", None) == 5
    if volumes:
        check_volumes(heatmaps)
    else:
        check_heatmaps(heatmaps)
    decoder = get_decoder(method)
    check_decoder_params(params)
    own = {key: value for key, value in params.items() if key in decoder.params}
    counted = decoder.counted_function
    with full_float32(heatmaps.device):
        if volumes:
            points: torch.Tensor = decoder.volume_function(heatmaps, **own)
            return points, None
        if counted is not None:
            points, fell_back = counted(heatmaps, **own)
            return points, fell_back
        result: torch.Tensor = decoder.function(heatmaps, **own)
    return result, None


__all__ = [
    "DECODERS",
    "DECODER_PARAMS",
    "REPRESENTATIONS",
    "Decoder",
    "check_decoder_names",
    "check_decoder_params",
    "check_kernel_size",
    "decode",
    "decode_counted",
    "decoders_for",
    "fit_radius_for_sigma",
    "get_decoder",
    "kernel_size_for_sigma",
    "opencv_sigma",
]
