"""DARK in 3D: a Newton step with the 3x3 Hessian on the log of the blurred volume.

As in 2D (:mod:`~integral_cli.decoders.dark`): blur with OpenCV's Gaussian kernel of
size ``k`` along each axis (separable, zero padding), rescale so the maximum equals the
original maximum, clamp at 1e-10, take the log ``f``, and from the argmax voxel step by
``-H^{-1} grad f``. Only the ``(2(2 + r) + 1)^3`` neighbourhood the step reads is blurred
(``r = (k - 1) / 2``); the rescale is a constant the log turns into an offset that every
difference cancels, unless the clamp could bite, and volumes where it could are blurred
whole, so the numbers are those of blurring the whole volume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from integral_cli.decoders.common import working_dtype
from integral_cli.decoders.dark import DARK_FLOOR, _band_matrix, gaussian_kernel
from integral_cli.decoders.volume import (
    gather_volume_patches,
    get_volume_maximum,
    stack_xyz,
    volume_patch_inside,
    voxel_indices,
)
from integral_cli.devices import full_float32

#: The neighbourhood of the step: the +-2 voxels its differences read.
REACH = 2


def blur_volumes(volumes: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable blur of whole ``(N, D, H, W)`` volumes with zero padding; same size out.

    On CUDA the convolutions run in full float32, as the 2D blur's (no TensorFloat-32).
    """
    radius = (kernel.numel() - 1) // 2
    flat = volumes.unsqueeze(1)
    with full_float32(volumes.device):
        flat = F.conv3d(flat, kernel.view(1, 1, 1, 1, -1), padding=(0, 0, radius))
        flat = F.conv3d(flat, kernel.view(1, 1, 1, -1, 1), padding=(0, radius, 0))
        flat = F.conv3d(flat, kernel.view(1, 1, -1, 1, 1), padding=(radius, 0, 0))
    return flat.squeeze(1)


def _blur_patches(patches: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """The valid blur of ``(..., S, S, S)`` patches (``[z, y, x]``) with the band matrix
    of a kernel: ``(..., s, s, s)``, one small matrix product per axis."""
    along_x = patches @ band  # (..., S, S, s)
    along_y = band.mT @ along_x  # (..., S, s, s)
    side, small = along_y.shape[-3], along_y.shape[-1]
    along_z = band.mT @ along_y.reshape(*along_y.shape[:-3], side, small * small)
    return along_z.view(*along_y.shape[:-3], small, small, small)


def modulated_log_neighbourhood_3d(
    volumes: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    z: torch.Tensor,
    kernel_size: int,
    *,
    active: torch.Tensor,
    peak: torch.Tensor,
) -> torch.Tensor:
    """``log(max(c blur(h), 1e-10))`` in the ``5^3`` neighbourhood of each argmax voxel,
    ``c = max(h) / max(blur(h))``.

    Args:
        volumes: ``(B, K, D, H, W)`` in the working dtype.
        x, y, z: ``(B, K)`` int64 centre voxels.
        kernel_size: blur kernel size (odd).
        active: ``(B, K)`` volumes whose result is used; others may take the fast path.
        peak: ``(B, K)`` maxima of the volumes.

    Returns:
        ``(B, K, 5, 5, 5)`` in ``[z, y, x]`` order, centre at ``[2, 2, 2]``.
    """
    size = volumes.shape[-3:]
    kernel = gaussian_kernel(kernel_size, dtype=volumes.dtype, device=volumes.device)
    radius = (kernel_size - 1) // 2
    side = 2 * (REACH + radius) + 1
    if side**3 < size[0] * size[1] * size[2]:
        blurred = _blur_patches(gather_volume_patches(volumes, x, y, z, REACH + radius), _band_matrix(kernel, REACH))
        inside = volume_patch_inside(x, y, z, REACH, size)
        lowest = blurred.masked_fill(~inside, float("inf")).flatten(-3).amin(-1)
        exact = (peak > 0) & (lowest >= DARK_FLOOR) | ~active
    else:
        # a neighbourhood larger than the volume: blurring the whole volume is cheaper
        blurred = volumes.new_zeros(*x.shape, 2 * REACH + 1, 2 * REACH + 1, 2 * REACH + 1)
        exact = torch.zeros_like(active)
    scale = torch.ones_like(peak)
    if not bool(exact.all()):
        slow = ~exact
        whole = blur_volumes(volumes[slow], kernel)
        blurred, scale = blurred.clone(), scale.clone()
        blurred[slow] = gather_volume_patches(
            whole.unsqueeze(1), x[slow].unsqueeze(1), y[slow].unsqueeze(1), z[slow].unsqueeze(1), REACH, edge=True
        ).squeeze(1)
        scale[slow] = peak[slow] / whole.flatten(-3).amax(-1)
    return torch.log((scale[..., None, None, None] * blurred).clamp(min=DARK_FLOOR))


def refine_volume_dark(
    volumes: torch.Tensor, coords: torch.Tensor, kernel_size: int = 11, peak: torch.Tensor | None = None
) -> torch.Tensor:
    """DARK's Newton step in 3D.

    With ``f`` the log of the blurred, rescaled volume (clamped at 1e-10), at the voxel
    ``(x, y, z)``: ``dx = (f[x+1] - f[x-1]) / 2``, ``dxx = (f[x+2] - 2 f[x] + f[x-2]) / 4``,
    ``dxy = (f[y+1,x+1] - f[y-1,x+1] - f[y+1,x-1] + f[y-1,x-1]) / 4`` and likewise for the
    other axes and pairs; the step ``-H^{-1} grad`` with the 3x3 Hessian ``H`` is taken
    where ``det H != 0`` and the +-2 neighbourhood is inside the volume; elsewhere the
    coordinate is returned unchanged.

    Args:
        volumes: ``(B, K, D, H, W)``.
        coords: ``(B, K, 3)`` integer voxel coordinates to refine (the argmax).
        kernel_size: odd blur kernel size; OpenCV's sigma ``0.3((k-1)/2 - 1) + 0.8``.
        peak: ``(B, K)`` maxima, if the caller has them.

    Returns:
        ``(B, K, 3)`` refined coordinates ``(x, y, z)`` in voxels.
    """
    work = volumes.to(working_dtype(volumes))
    depth, height, width = work.shape[-3:]
    x, y, z, finite = voxel_indices(coords)
    interior = finite
    for index, side in ((x, width), (y, height), (z, depth)):
        interior = interior & (index >= 2) & (index <= side - 3)
    if peak is None:
        peak = work.flatten(-3).amax(-1)
    f = modulated_log_neighbourhood_3d(work, x, y, z, kernel_size, active=interior, peak=peak)
    centre = f[..., 2, 2, 2]
    dx = 0.5 * (f[..., 2, 2, 3] - f[..., 2, 2, 1])
    dy = 0.5 * (f[..., 2, 3, 2] - f[..., 2, 1, 2])
    dz = 0.5 * (f[..., 3, 2, 2] - f[..., 1, 2, 2])
    dxx = 0.25 * (f[..., 2, 2, 4] - 2 * centre + f[..., 2, 2, 0])
    dyy = 0.25 * (f[..., 2, 4, 2] - 2 * centre + f[..., 2, 0, 2])
    dzz = 0.25 * (f[..., 4, 2, 2] - 2 * centre + f[..., 0, 2, 2])
    dxy = 0.25 * (f[..., 2, 3, 3] - f[..., 2, 1, 3] - f[..., 2, 3, 1] + f[..., 2, 1, 1])
    dxz = 0.25 * (f[..., 3, 2, 3] - f[..., 1, 2, 3] - f[..., 3, 2, 1] + f[..., 1, 2, 1])
    dyz = 0.25 * (f[..., 3, 3, 2] - f[..., 1, 3, 2] - f[..., 3, 1, 2] + f[..., 1, 1, 2])
    # H^{-1} = adj(H) / det(H); H is symmetric, so is its adjugate
    a_xx, a_yy, a_zz = dyy * dzz - dyz**2, dxx * dzz - dxz**2, dxx * dyy - dxy**2
    a_xy, a_xz, a_yz = dxz * dyz - dxy * dzz, dxy * dyz - dxz * dyy, dxy * dxz - dxx * dyz
    det = dxx * a_xx + dxy * a_xy + dxz * a_xz
    step = interior & (det != 0)
    det = torch.where(step, det, 1.0)
    offset = -stack_xyz(
        a_xx * dx + a_xy * dy + a_xz * dz,
        a_xy * dx + a_yy * dy + a_yz * dz,
        a_xz * dx + a_yz * dy + a_zz * dz,
    ) / det.unsqueeze(-1)
    return coords.to(work.dtype) + torch.where(step.unsqueeze(-1), offset, 0.0)


def decode_volume_dark(volumes: torch.Tensor, dark_kernel: int = 11) -> torch.Tensor:
    """Argmax, then DARK's step in 3D (see :func:`refine_volume_dark`)."""
    coords, peak = get_volume_maximum(volumes)
    return refine_volume_dark(volumes, coords, dark_kernel, peak.to(working_dtype(volumes)))
