"""Decoders of SimCC vectors: pure functions ``(B, K, N) -> (B, K)`` along one axis.

SimCC (Li et al., ECCV 2022; RTMPose) classifies each coordinate over ``N`` bins of
``1 / k`` input pixel: a keypoint is a vector along x and one along y. Each decoder
here reads one axis's vectors and returns the coordinate in bins (bin ``i`` at ``i``);
:func:`decode_simcc` applies it to both axes. Like the heatmap decoders they are
batched on the device, never modify their input and loop over no sample or keypoint;
a vector whose maximum is not finite decodes to NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from integral_cli.checks import check_simcc
from integral_cli.decoders.argmax import flat_argmax
from integral_cli.decoders.common import working_dtype
from integral_cli.decoders.dark import UDP_CEILING, UDP_FLOOR, gaussian_kernel
from integral_cli.decoders.registry import check_decoder_names, check_decoder_params, get_decoder
from integral_cli.devices import accumulation_dtype

#: Added to the second difference before dividing (MMPose's ``refine_simcc_dark``).
DARK_1D_EPSILON = 1e-9


def get_simcc_maximum(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index and value of each vector's maximum (the first on ties).

    Args:
        vectors: ``(B, K, N)``.

    Returns:
        ``(B, K)`` integer-valued bin indices in the working dtype (NaN where the
        maximum is not finite) and the ``(B, K)`` maxima.

    >>> get_simcc_maximum(torch.tensor([[[0.0, 3.0, 1.0]]]))
    (tensor([[1.]]), tensor([[3.]]))
    """
    index = flat_argmax(vectors)
    values = vectors.gather(-1, index.unsqueeze(-1)).squeeze(-1)
    coords = index.to(working_dtype(vectors))
    return torch.where(torch.isfinite(values), coords, torch.nan), values


def _neighbours(vectors: torch.Tensor, index: torch.Tensor, reach: int) -> torch.Tensor:
    """``(B, K, 2 reach + 1)`` values at ``index - reach .. index + reach``, indices
    clamped to the vector (the edge repeated, as padding with ``'edge'`` does)."""
    steps = torch.arange(-reach, reach + 1, device=vectors.device)
    where = (index.unsqueeze(-1) + steps).clamp(0, vectors.shape[-1] - 1)
    return vectors.gather(-1, where)


def _indices(coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    finite = torch.isfinite(coords)
    return torch.where(finite, coords, 0).long(), finite


def argmax_1d(vectors: torch.Tensor) -> torch.Tensor:
    """Argmax: the index of the largest bin (first on ties), as SimCC decodes.

    >>> argmax_1d(torch.tensor([[[0.0, 2.0, 5.0, 1.0]]]))
    tensor([[2.]])
    """
    return get_simcc_maximum(vectors)[0]


def argmax_quarter_1d(vectors: torch.Tensor) -> torch.Tensor:
    """Argmax, then 0.25 bin toward the larger neighbour, where both neighbours exist.

    >>> argmax_quarter_1d(torch.tensor([[[0.0, 2.0, 5.0, 1.0]]]))
    tensor([[1.7500]])
    """
    coords = get_simcc_maximum(vectors)[0]
    index, finite = _indices(coords)
    around = _neighbours(vectors.detach(), index, 1)
    inside = finite & (index >= 1) & (index <= vectors.shape[-1] - 2)
    step = torch.where(inside, torch.sign(around[..., 2] - around[..., 0]), 0.0)
    return coords + 0.25 * step.to(coords.dtype)


def blur_vectors(vectors: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """OpenCV's Gaussian blur of size ``kernel_size`` along the last axis, zero padding,
    each vector then rescaled to its own maximum (DARK's modulation, in 1D).

    A vector whose blurred maximum is 0 keeps its blur unscaled.
    """
    kernel = gaussian_kernel(kernel_size, dtype=vectors.dtype, device=vectors.device)
    radius, length = (kernel_size - 1) // 2, vectors.shape[-1]
    padded = F.pad(vectors, (radius, radius))
    # a sum of shifted copies: on the CPU, far faster than conv1d with one channel
    blurred = kernel[0] * padded[..., :length]
    for tap in range(1, kernel_size):
        blurred = blurred + kernel[tap] * padded[..., tap : tap + length]
    scale = vectors.amax(-1, keepdim=True) / blurred.amax(-1, keepdim=True)
    return blurred * torch.where(torch.isfinite(scale), scale, 1.0)


def _blurred_around(vectors: torch.Tensor, index: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``(B, K, 5)`` values of the zero-padded blur (not rescaled) at the bins
    ``index - 2 .. index + 2``, clamped to the vector."""
    kernel = gaussian_kernel(kernel_size, dtype=vectors.dtype, device=vectors.device)
    reach, length = 2 + (kernel_size - 1) // 2, vectors.shape[-1]
    where = index.unsqueeze(-1) + torch.arange(-reach, reach + 1, device=vectors.device)
    window = vectors.gather(-1, where.clamp(0, length - 1)) * ((where >= 0) & (where < length))
    # the blur at index - 2 .. index + 2, then the ends repeated where those leave the vector
    blurred = torch.stack([window[..., step : step + kernel_size] @ kernel for step in range(5)], dim=-1)
    steps = torch.arange(-2, 3, device=vectors.device)
    return blurred.gather(-1, (index.unsqueeze(-1) + steps).clamp(0, length - 1) - index.unsqueeze(-1) + 2)


def dark_1d(vectors: torch.Tensor, dark_kernel: int = 11) -> torch.Tensor:
    """MMPose's ``refine_simcc_dark``: one Newton step on the log of the blurred vector.

    ``f = log(clip(blur(v), 1e-3, 50))`` (:func:`blur_vectors`), padded by repeating
    its ends; from the argmax bin ``i``: ``dx = (f[i+1] - f[i-1]) / 2``,
    ``dxx = (f[i+2] - 2 f[i] + f[i-2]) / 4 + 1e-9``, ``x = i - dx / dxx``.

    Only the five bins the step reads are blurred. The rescale to the vector's maximum
    multiplies them by a constant that the log turns into an offset every difference
    cancels, as long as the clip does not bite: it cannot when the maximum lies in
    ``(0, 50]`` (the rescaled blur then stays below it) and the five values are at least
    1e-3 before the rescale (which only raises them). Other vectors are blurred whole and
    rescaled, as the reference does, so the numbers are the same either way.

    Args:
        vectors: ``(B, K, N)``.
        dark_kernel: odd blur kernel size (OpenCV's sigma ``0.3((k-1)/2 - 1) + 0.8``).

    Returns:
        ``(B, K)`` coordinates in bins.
    """
    values = vectors.to(working_dtype(vectors))
    coords, peak = get_simcc_maximum(values)
    index, _ = _indices(coords)
    blurred = _blurred_around(values, index, dark_kernel)
    exact = (peak > 0) & (peak <= UDP_CEILING) & (blurred.amin(-1) >= UDP_FLOOR)
    if not bool(exact.all()):
        slow = ~exact
        whole = blur_vectors(values[slow], dark_kernel)
        blurred = blurred.index_put((slow,), _neighbours(whole, index[slow], 2))
    f = torch.log(blurred.clamp(UDP_FLOOR, UDP_CEILING))
    dx = 0.5 * (f[..., 3] - f[..., 1])
    dxx = DARK_1D_EPSILON + 0.25 * (f[..., 4] - 2 * f[..., 2] + f[..., 0])
    return coords - dx / dxx


#: Bytes of float64 weights built at once on the CPU by the integral family: blocks under
#: the 1 MiB mmap threshold the tool sets come from the allocator's free list, not fresh
#: pages (as :data:`integral_cli.decoders.integral.BLOCK_BYTES`). Other devices weigh the
#: whole chunk at once: each block would cost kernel launches whatever its size.
BLOCK_BYTES = 768 * 1024


def _expectation(weigh: Callable[[torch.Tensor], torch.Tensor], vectors: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i i / sum_i w_i`` along the last axis with ``w = weigh(vectors)``,
    summed in float64 (float32 on MPS, which has none), on the CPU a block of vectors at a
    time (each vector is weighed on its own, so the blocks change no number); with
    autograd on, in one call."""
    length = vectors.shape[-1]
    dtype = accumulation_dtype(vectors.device)
    positions = torch.arange(length, device=vectors.device, dtype=dtype)
    flat = vectors.reshape(-1, length)
    block = max(1, BLOCK_BYTES // (8 * length)) if vectors.device.type == "cpu" else flat.shape[0]
    if flat.shape[0] <= block or vectors.requires_grad:
        weights = weigh(vectors).to(dtype)
        return (weights @ positions) / weights.sum(-1)
    result = torch.empty(flat.shape[0], device=vectors.device, dtype=dtype)
    for start in range(0, flat.shape[0], block):
        weights = weigh(flat[start : start + block]).to(dtype)
        result[start : start + block] = (weights @ positions) / weights.sum(-1)
    return result.view(vectors.shape[:-1])


def integral_1d(vectors: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Soft-argmax over the bins: the expectation under ``softmax(beta v)``.

    >>> integral_1d(torch.tensor([[[0.0, 50.0, 0.0]]]))
    tensor([[1.]])
    """
    values = vectors.to(working_dtype(vectors))
    return _expectation(lambda v: torch.softmax(v if beta == 1 else beta * v, dim=-1), values).to(values.dtype)


def integral_debiased_1d(vectors: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """The 1D soft-argmax with the background pull removed, exactly (Gu et al., 2021).

    With ``N`` the vector's length, ``C = sum exp(beta v)``, ``c = (N - 1) / 2`` and
    ``E`` the soft-argmax, ``mu = (C E - N c) / (C - N)``: the expectation under the
    weights ``exp(beta v) - 1``, computed as such. Vectors where that overflows are
    weighed as ``softmax(beta v) - exp(-beta max v) max softmax(beta v)``, the same
    weights scaled by ``1 / sum exp(beta (v - max v))``.

    >>> integral_debiased_1d(torch.tensor([[[0.0, 2.0, 0.0, 0.0, 0.0]]]))
    tensor([[1.]])
    """
    values = vectors.to(working_dtype(vectors))

    def weigh(block: torch.Tensor) -> torch.Tensor:
        logits = block if beta == 1 else beta * block
        weights = torch.expm1(logits)
        overflowed = ~torch.isfinite(weights.sum(-1))
        if bool(overflowed.any()):
            scaled = torch.softmax(logits[overflowed], dim=-1)
            background = torch.exp(-logits[overflowed].amax(-1, keepdim=True)) * scaled.amax(-1, keepdim=True)
            weights = weights.masked_fill(overflowed.unsqueeze(-1), 0.0).index_put((overflowed,), scaled - background)
        return weights

    return _expectation(weigh, values).to(values.dtype)


def integral_l1_1d(vectors: torch.Tensor) -> torch.Tensor:
    """The expectation under ``relu(v) / sum relu(v)``.

    >>> integral_l1_1d(torch.tensor([[[0.0, 1.0, 3.0, -2.0]]]))
    tensor([[1.7500]])
    """
    values = vectors.to(working_dtype(vectors))
    return _expectation(lambda block: block.clamp(min=0), values).to(values.dtype)


def decode_simcc(simcc_x: torch.Tensor, simcc_y: torch.Tensor, method: str, **params: Any) -> torch.Tensor:
    """Decode SimCC vectors into keypoint coordinates.

    Args:
        simcc_x: ``(B, K, Wx)`` floating-point vectors along x.
        simcc_y: ``(B, K, Wy)`` floating-point vectors along y.
        method: a decoder whose ``representations`` include ``simcc`` (see
            :func:`integral_cli.decoders.registry.decoders_for`).
        **params: decoder parameters (see :data:`DECODER_PARAMS`); a decoder that does
            not take a parameter ignores it.

    Returns:
        ``(B, K, 2)`` coordinates ``(x, y)`` in bins, float32 (float64 for float64
        input), on the device of the vectors. Divide by the split ratio ``k`` (and
        apply the convention, see :func:`integral_cli.coords.simcc_to_image`) for
        input pixels.

    Raises:
        ShapeError: the vectors are not ``(B, K, N)`` floating-point tensors with the
            same ``B`` and ``K``.
        ConfigError: unknown method or parameter, a method that does not read SimCC
            vectors, or a parameter value out of range.

    >>> x = torch.zeros(1, 1, 8); x[0, 0, 5] = 1.0
    >>> y = torch.zeros(1, 1, 6); y[0, 0, 2] = 1.0
    >>> decode_simcc(x, y, "argmax")
    tensor([[[5., 2.]]])
    """
    check_simcc(simcc_x, simcc_y)
    check_decoder_names((method,), "simcc")
    decoder = get_decoder(method)
    check_decoder_params(params)
    own = {key: value for key, value in params.items() if key in decoder.params}
    function = decoder.simcc_function
    return torch.stack((function(simcc_x, **own), function(simcc_y, **own)), dim=-1)
