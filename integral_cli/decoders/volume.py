"""Decoders of volumes: ``(B, K, D, H, W) -> (B, K, 3)``, ``(x, y, z)`` in voxels.

The 3D counterparts of :mod:`~integral_cli.decoders.argmax` and
:mod:`~integral_cli.decoders.integral` (DARK is in
:mod:`~integral_cli.decoders.volume_dark`). Voxel centres sit at integer coordinates; x
runs along W, y along H, z along D, so voxel ``(x, y, z)`` is ``volumes[..., z, y, x]``
and its flat index is ``(z H + y) W + x``.

The expectations (the integral and its variants) weigh every voxel, and a volume is
large (a 64x64x48 float32 volume is 768 KiB): the weights are built a block of a few
depth slices of a few volumes at a time, small enough to stay in cache, and each block
is summed straight into the three marginals. The softmax's weights ``exp(beta h)`` come
from :func:`~integral_cli.decoders.common.scaled_exp`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from integral_cli.decoders.argmax import flat_argmax
from integral_cli.decoders.common import (
    exact_enough,
    marginals_in_turn,
    scaled_exp,
    softmax_expectation,
    usable_total,
    working_dtype,
)
from integral_cli.decoders.integral import BLOCK_BYTES, marginal_expectation

#: ``weigh(block, first, last)``: the weights of ``block``, an ``(n, d, H, W)`` block of
#: the flat volumes ``first:last`` (whole volumes when ``d = D``).
Weigh = Callable[[torch.Tensor, int, int, "torch.Tensor | None"], torch.Tensor]


def stack_xyz(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` x, y and z -> ``(B, K, 3)`` coordinates in ``(x, y, z)`` order."""
    return torch.stack((x, y, z), dim=-1)


def volume_argmax(volumes: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` flat index of each volume's first maximum (a NaN counts as the maximum),
    as :func:`~integral_cli.decoders.argmax.flat_argmax` of the flat volumes gives it.

    Each depth slice's maximum first (one pass over the volumes, on every thread), then
    the first slice holding the largest of them, then the first maximum within that
    slice: the first maximum in memory order lies in the first slice that holds it. A
    NaN makes its slice's maximum NaN, so the first NaN is found the same way.
    """
    slices = volumes.detach().flatten(-2)  # (B, K, D, H W)
    best = flat_argmax(slices.amax(-1))  # (B, K)
    within = slices.gather(-2, best[..., None, None].expand(*best.shape, 1, slices.shape[-1])).squeeze(-2)
    return best * slices.shape[-1] + flat_argmax(within)


def get_volume_maximum(volumes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Location and value of each volume's maximum.

    Ties go to the first maximum in memory order (smallest z, then y, then x). A volume
    whose maximum is not finite gets a NaN location.

    Args:
        volumes: ``(B, K, D, H, W)``.

    Returns:
        ``(B, K, 3)`` integer-valued coordinates ``(x, y, z)`` in voxels, and the
        ``(B, K)`` maximum values.

    >>> volumes = torch.zeros(1, 1, 2, 3, 4); volumes[0, 0, 1, 2, 3] = 5.0
    >>> get_volume_maximum(volumes)[0]
    tensor([[[3., 2., 1.]]])
    """
    height, width = volumes.shape[-2:]
    index = volume_argmax(volumes)
    values = volumes.flatten(-3).gather(-1, index.unsqueeze(-1)).squeeze(-1)
    dtype = working_dtype(volumes)
    plane = torch.div(index, width, rounding_mode="floor")
    coords = stack_xyz(
        (index % width).to(dtype), (plane % height).to(dtype), torch.div(plane, height, rounding_mode="floor").to(dtype)
    )
    coords = torch.where(torch.isfinite(values).unsqueeze(-1), coords, torch.nan)
    return coords, values


def voxel_indices(coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer ``(x, y, z)`` voxel indices of integer-valued coordinates, NaN-safe: each
    ``(B, K)`` int64 (0 where a coordinate is NaN), and the ``(B, K)`` mask of finite
    coordinates."""
    finite = torch.isfinite(coords).all(dim=-1)
    safe = torch.where(finite.unsqueeze(-1), coords, 0).long()
    return safe[..., 0], safe[..., 1], safe[..., 2], finite


def _steps(index: torch.Tensor, radius: int) -> torch.Tensor:
    return index.unsqueeze(-1) + torch.arange(-radius, radius + 1, device=index.device)


def volume_patch_inside(
    x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, radius: int, size: Sequence[int]
) -> torch.Tensor:
    """``(B, K, 2r+1, 2r+1, 2r+1)`` mask (``[z, y, x]`` order) of the neighbourhood
    voxels that lie inside a volume of ``size = (D, H, W)``."""
    depth, height, width = size
    zs, ys, xs = _steps(z, radius), _steps(y, radius), _steps(x, radius)
    inside_z = ((zs >= 0) & (zs < depth))[..., :, None, None]
    inside_y = ((ys >= 0) & (ys < height))[..., None, :, None]
    inside_x = ((xs >= 0) & (xs < width))[..., None, None, :]
    return inside_z & inside_y & inside_x


def gather_volume_patches(
    volumes: torch.Tensor, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, radius: int, *, edge: bool = False
) -> torch.Tensor:
    """The ``(2r+1)^3`` neighbourhood of voxel ``(x, y, z)`` in every volume.

    Args:
        volumes: ``(B, K, D, H, W)``.
        x, y, z: ``(B, K)`` int64 voxel indices inside the volume.
        radius: ``r``.
        edge: outside the volume, repeat the nearest border voxel (``True``) or read 0.

    Returns:
        ``(B, K, 2r+1, 2r+1, 2r+1)`` values in ``[z, y, x]`` order;
        ``[..., r, r, r]`` is voxel ``(x, y, z)``.

    >>> volumes = torch.arange(24.0).view(1, 1, 2, 3, 4)
    >>> one = torch.tensor([[1]])
    >>> gather_volume_patches(volumes, one, one, one - 1, 1)[0, 0, 1]
    tensor([[ 0.,  1.,  2.],
            [ 4.,  5.,  6.],
            [ 8.,  9., 10.]])
    """
    depth, height, width = volumes.shape[-3:]
    xs = _steps(x, radius).clamp(0, width - 1)
    ys = _steps(y, radius).clamp(0, height - 1)
    zs = _steps(z, radius).clamp(0, depth - 1)
    index = (zs[..., :, None, None] * height + ys[..., None, :, None]) * width + xs[..., None, None, :]
    values = volumes.flatten(-3).gather(-1, index.flatten(-3)).view(index.shape)
    if edge:
        return values
    return values.masked_fill(~volume_patch_inside(x, y, z, radius, (depth, height, width)), 0.0)


# ------------------------------------------------------------------------- argmax
def decode_volume_argmax(volumes: torch.Tensor) -> torch.Tensor:
    """Argmax decoder of volumes: ``x = idx % W``, ``y = (idx // W) % H``,
    ``z = idx // (H W)`` of the flat maximum.

    Args:
        volumes: ``(B, K, D, H, W)``.

    Returns:
        ``(B, K, 3)`` coordinates ``(x, y, z)`` in voxels (integers).
    """
    return get_volume_maximum(volumes)[0]


def refine_volume_quarter_offset(volumes: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Move each coordinate 0.25 voxel toward its larger neighbour, per axis, where both
    neighbours along that axis exist (the quarter offset of
    :func:`~integral_cli.decoders.argmax.refine_quarter_offset`, along z as well).

    Args:
        volumes: ``(B, K, D, H, W)``.
        coords: ``(B, K, 3)`` integer voxel coordinates (the argmax).

    Returns:
        ``(B, K, 3)`` refined coordinates ``(x, y, z)`` in voxels.

    >>> volumes = torch.zeros(1, 1, 3, 3, 3); volumes[0, 0, 1, 1, 1] = 3.0
    >>> volumes[0, 0, 2, 1, 1] = 1.0
    >>> refine_volume_quarter_offset(volumes, torch.tensor([[[1.0, 1.0, 1.0]]]))
    tensor([[[1.0000, 1.0000, 1.2500]]])
    """
    depth, height, width = volumes.shape[-3:]
    x, y, z, finite = voxel_indices(coords)
    patch = gather_volume_patches(volumes.detach(), x, y, z, 1)
    steps = []
    for index, side, ahead, behind in (
        (x, width, patch[..., 1, 1, 2], patch[..., 1, 1, 0]),
        (y, height, patch[..., 1, 2, 1], patch[..., 1, 0, 1]),
        (z, depth, patch[..., 2, 1, 1], patch[..., 0, 1, 1]),
    ):
        both = finite & (index >= 1) & (index <= side - 2)
        steps.append(torch.where(both, torch.sign(ahead - behind), 0.0))
    return coords + 0.25 * stack_xyz(*steps).to(coords.dtype)


def decode_volume_argmax_quarter(volumes: torch.Tensor) -> torch.Tensor:
    """Argmax, then the quarter-voxel shift toward the larger neighbour per axis."""
    return refine_volume_quarter_offset(volumes, get_volume_maximum(volumes)[0])


# ---------------------------------------------------------------- the expectations
def weight_marginals_3d(weigh: Weigh, volumes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The marginals of the weights ``weigh(volumes)`` along x, y and z:
    ``(B, K, W)``, ``(B, K, H)`` and ``(B, K, D)``.

    On the CPU the weights are made a block of about :data:`BLOCK_BYTES` at a time, so
    that they stay in cache and come from the allocator's free list: whole volumes when one fits
    in a block, else slabs of whole depth slices of one volume (both contiguous, which
    measured faster than slabs cut across several volumes). The loop runs over blocks
    of memory, whatever the number of volumes, and each block's two sums go straight
    into the outputs. How a volume is cut into blocks depends on the volumes' size only,
    not on the batch it came in; a block holds at least one whole volume per thread when
    volumes fit. With autograd on, one call on whole
    volumes, so the graph stays simple.
    """
    batch, keypoints, depth, height, width = volumes.shape
    count = batch * keypoints
    flat = volumes.reshape(count, depth, height, width)
    if (volumes.requires_grad and torch.is_grad_enabled()) or volumes.device.type != "cpu":
        # on a GPU, blocks would cost kernel launches for nothing: the chunk itself was
        # sized to fit the memory budget with its working buffers
        weights = weigh(flat, 0, count, None)
        plane, slices = weights.sum(1), weights.sum((-2, -1))
    else:
        slice_bytes = height * width * flat.element_size()
        volume_bytes = depth * slice_bytes
        if volume_bytes <= BLOCK_BYTES:
            # whole volumes, at least one per thread: a softmax runs its rows (here the
            # volumes) in parallel, so a block of one volume would leave the other threads
            # idle; each volume's numbers are the same however many share its block
            per_block, depth_step = max(torch.get_num_threads(), BLOCK_BYTES // volume_bytes), depth
        else:
            per_block, depth_step = 1, max(1, BLOCK_BYTES // slice_bytes)
        plane = flat.new_empty(count, height, width)
        slices = flat.new_empty(count, depth)
        partial = flat.new_empty(1, height, width)
        # one buffer for every block's weights, allocated once: a block-sized allocation
        # per block would be mapped and unmapped each time under a low mmap threshold
        buffer = flat.new_empty(min(per_block, count), min(depth_step, depth), height, width)
        for first in range(0, count, per_block):
            last = min(count, first + per_block)
            for top in range(0, depth, depth_step):
                block = flat[first:last, top : top + depth_step]
                weights = weigh(block, first, last, buffer[: last - first, : block.shape[1]])
                torch.sum(weights.flatten(-2), -1, out=slices[first:last, top : top + depth_step])
                if top == 0:
                    torch.sum(weights, 1, out=plane[first:last])
                else:
                    torch.sum(weights, 1, out=partial)
                    plane[first:last] += partial
    return (
        plane.sum(-2).view(batch, keypoints, width),
        plane.sum(-1).view(batch, keypoints, height),
        slices.view(batch, keypoints, depth),
    )


def _volume_peaks(volumes: torch.Tensor) -> torch.Tensor:
    """``(B*K, 1, 1, 1)`` maxima, outside any graph (every expectation below is
    unchanged by the shift, so it carries no gradient)."""
    return volumes.detach().flatten(-3).amax(-1).reshape(-1, 1, 1, 1)


def _shifted_exp(block: torch.Tensor, shift: torch.Tensor, beta: float, out: torch.Tensor | None) -> torch.Tensor:
    """``exp(beta (block - shift))``, as :func:`~integral_cli.decoders.common.scaled_exp`
    takes it."""
    if out is None:
        return scaled_exp(block - shift, beta)
    return scaled_exp(torch.sub(block, shift, out=out), beta, out)


def decode_volume_integral(volumes: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """The paper's integral in 3D (the official code's 3D path): ``p = softmax(beta h)``
    over all ``D H W`` voxels, then the three marginals of ``p``, then the expectation
    of the voxel index along each.

    The weights ``exp(beta h)`` are taken unshifted (a volume whose ``exp`` overflows, or
    totals a subnormal number, is weighed again shifted by its maximum); the moments come
    from the marginals.

    Args:
        volumes: ``(B, K, D, H, W)``.
        beta: inverse temperature of the softmax (> 0).

    Returns:
        ``(B, K, 3)`` coordinates ``(x, y, z)`` in voxels.

    >>> volumes = torch.zeros(1, 1, 3, 3, 3); volumes[0, 0, 2, 1, 2] = 50.0
    >>> decode_volume_integral(volumes)
    tensor([[[2., 1., 2.]]])
    """
    work = volumes.to(working_dtype(volumes))

    def weigh(block: torch.Tensor, first: int, last: int, out: torch.Tensor | None) -> torch.Tensor:
        # exp(beta h): the softmax's weights before their sum divides them (the
        # expectation divides by it once)
        return scaled_exp(block, beta, out)

    def shifted(volumes: torch.Tensor) -> Weigh:
        # exp(beta (h - m)), m the volume's maximum, which cannot overflow
        peaks = _volume_peaks(volumes)
        return lambda block, first, last, out: _shifted_exp(block, peaks[first:last], beta, out)

    # a volume whose exp overflowed, or is subnormal, weighed again shifted
    marginals = marginals_in_turn(work, ((lambda volumes: weigh, usable_total), (shifted, None)), weight_marginals_3d)
    return marginal_expectation(*marginals).to(work.dtype)


def decode_volume_integral_marginal(volumes: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """The note's variant in 3D: sum the raw volume onto each axis, then a 1D softmax of
    each sum and its expectation.

    ``m_x = sum_{y,z} h``, ``m_y = sum_{x,z} h``, ``m_z = sum_{x,y} h``,
    ``x = sum softmax(beta m_x) x``, likewise y and z.

    Args:
        volumes: ``(B, K, D, H, W)``.
        beta: inverse temperature of the three 1D softmaxes (> 0).

    Returns:
        ``(B, K, 3)`` coordinates ``(x, y, z)`` in voxels.
    """
    work = volumes.to(working_dtype(volumes))
    plane = work.sum(-3)
    sums = (plane.sum(-2), plane.sum(-1), work.sum((-2, -1)))
    return stack_xyz(*(softmax_expectation(s if beta == 1 else beta * s) for s in sums))


def decode_volume_integral_debiased(volumes: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """The integral with the background pull removed (Gu, Yang, Yao, ICCV 2021), exact
    discrete form, in 3D.

    With ``N = D H W``, ``C = sum exp(beta h)``, the volume's centre
    ``c = ((W - 1) / 2, (H - 1) / 2, (D - 1) / 2)`` and ``E`` the
    :func:`decode_volume_integral` result, ``mu = (C E - N c) / (C - N)``: the
    expectation under the weights ``exp(beta h) - 1``, taken as ``exp`` then a
    subtraction; where the total is small next to the voxel count (small amplitudes,
    :func:`~integral_cli.decoders.common.exact_enough`), with ``expm1``; where ``exp``
    overflows, times ``exp(-beta m) / sum exp(beta (h - m))``, ``m`` the volume's
    maximum: ``softmax(beta h) - exp(-beta m) max softmax(beta h)`` (as under autograd).
    The background's 1 comes off every voxel before summing, not off the large sums.

    Args:
        volumes: ``(B, K, D, H, W)``, background at 0.
        beta: inverse temperature of the softmax (> 0).

    Returns:
        ``(B, K, 3)`` coordinates ``(x, y, z)`` in voxels.

    >>> volumes = torch.zeros(1, 1, 1, 1, 5); volumes[0, 0, 0, 0, 1] = 2.0
    >>> decode_volume_integral_debiased(volumes)
    tensor([[[1., 0., 0.]]])
    """
    work = volumes.to(working_dtype(volumes))

    count = work.shape[-3] * work.shape[-2] * work.shape[-1]

    def fast(block: torch.Tensor, first: int, last: int, out: torch.Tensor | None) -> torch.Tensor:
        # exp(beta h) - 1 as exp then a subtraction (expm1 runs at a third of the speed
        # of this exp), a background voxel at 0 weighing exactly 0
        weights = scaled_exp(block, beta, out)
        return weights - 1 if out is None else weights.sub_(1)

    def exact(block: torch.Tensor, first: int, last: int, out: torch.Tensor | None) -> torch.Tensor:
        logits = block if beta == 1 else beta * block
        return torch.expm1(logits) if out is None else torch.expm1(logits, out=out)

    def shifted(volumes: torch.Tensor) -> Weigh:
        # exp(beta (h - m)) - exp(-beta m): the weights exp(beta h) - 1 times exp(-beta m)
        peaks = _volume_peaks(volumes)

        def weigh_shifted(block: torch.Tensor, first: int, last: int, out: torch.Tensor | None) -> torch.Tensor:
            shift = peaks[first:last]
            weights, background = _shifted_exp(block, shift, beta, out), scaled_exp(-shift, beta)
            # in place into the buffer; a new tensor under autograd, which needs the exp kept
            return weights - background if out is None else weights.sub_(background)

        return weigh_shifted

    attempts = (
        (lambda volumes: fast, lambda total: exact_enough(total, count)),
        (lambda volumes: exact, torch.isfinite),  # small amplitudes; NaN volumes stay NaN
        (shifted, None),  # exp overflowed
    )
    return marginal_expectation(*marginals_in_turn(work, attempts, weight_marginals_3d)).to(work.dtype)


def decode_volume_integral_l1(volumes: torch.Tensor) -> torch.Tensor:
    """Expectation under ``relu(h) / sum relu(h)`` over the volume (no softmax).

    >>> volumes = torch.zeros(1, 1, 4, 1, 1); volumes[0, 0, 1:3, 0, 0] = torch.tensor([1.0, 3.0])
    >>> decode_volume_integral_l1(volumes)
    tensor([[[0.0000, 0.0000, 1.7500]]])
    """
    work = volumes.to(working_dtype(volumes))

    def weigh(block: torch.Tensor, first: int, last: int, out: torch.Tensor | None) -> torch.Tensor:
        return block.clamp(min=0) if out is None else torch.clamp(block, min=0, out=out)

    return marginal_expectation(*weight_marginals_3d(weigh, work)).to(work.dtype)


def decode_volume_soft_argmax_local(volumes: torch.Tensor, beta: float = 1.0, window_radius: int = 2) -> torch.Tensor:
    """Softmax-weighted expectation in a ``(2r + 1)^3`` window around the argmax; voxels
    of the window outside the volume are left out.

    Args:
        volumes: ``(B, K, D, H, W)``.
        beta: inverse temperature of the softmax (> 0).
        window_radius: ``r`` (0 gives argmax).

    Returns:
        ``(B, K, 3)`` coordinates ``(x, y, z)`` in voxels.
    """
    work = volumes.to(working_dtype(volumes))
    coords, peak = get_volume_maximum(work)
    x, y, z, _ = voxel_indices(coords)
    window = gather_volume_patches(work, x, y, z, window_radius)
    inside = volume_patch_inside(x, y, z, window_radius, work.shape[-3:])
    weights = torch.exp(beta * (window - peak[..., None, None, None])) * inside
    steps = torch.arange(-window_radius, window_radius + 1, device=work.device, dtype=work.dtype)
    total = weights.flatten(-3).sum(-1)
    shift = stack_xyz(
        (weights.sum((-3, -2)) @ steps) / total,
        (weights.sum((-3, -1)) @ steps) / total,
        (weights.sum((-2, -1)) @ steps) / total,
    )
    return coords + shift
