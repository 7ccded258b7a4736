"""What the field decodes with today, written here the plain way for ``bench`` to time
against on the same tensor: argmax in numpy, per-keypoint Python loops for the quarter
offset and DARK (the MMPose way), the reading note's own marginal decoder and generator,
when installed, kornia's and dsntnn's soft-argmax, and for SimCC vectors, argmax and
DARK organised as MMPose's ``SimCCLabel.decode`` organises them.

These are deliberately the straightforward versions; they are timed, never used to
produce results.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def numpy_argmax(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax and maximum of ``(N, K, H, W)`` maps over the flattened ``H * W``."""
    n, k, h, w = maps.shape
    flat = maps.reshape(n * k, -1)
    index = np.argmax(flat, axis=1)
    values = np.amax(flat, axis=1)
    ys, xs = np.unravel_index(index, (h, w))
    return np.stack((xs, ys), axis=-1).astype(np.float32).reshape(n, k, 2), values.reshape(n, k)


def loop_quarter_offset(maps: np.ndarray) -> np.ndarray:
    """numpy argmax, then the quarter-pixel shift one keypoint at a time."""
    coords, _ = numpy_argmax(maps)
    n, k, h, w = maps.shape
    for i in range(n):
        for j in range(k):
            x, y = int(coords[i, j, 0]), int(coords[i, j, 1])
            dx = maps[i, j, y, x + 1] - maps[i, j, y, x - 1] if 1 <= x <= w - 2 else 0.0
            dy = maps[i, j, y + 1, x] - maps[i, j, y - 1, x] if 1 <= y <= h - 2 else 0.0
            coords[i, j] += 0.25 * np.sign([dx, dy])
    return coords


def loop_dark(maps: np.ndarray, kernel_size: int = 11) -> np.ndarray | None:
    """Whole-map OpenCV blur per map, then the DARK Newton step one keypoint at a time.

    Returns ``None`` when OpenCV is not installed.
    """
    try:
        import cv2
    except ImportError:
        return None
    coords, _ = numpy_argmax(maps)
    n, k, h, w = maps.shape
    border = (kernel_size - 1) // 2
    for i in range(n):
        for j in range(k):
            padded = np.zeros((h + 2 * border, w + 2 * border), dtype=np.float32)
            padded[border : -border or None, border : -border or None] = maps[i, j]
            blurred = cv2.GaussianBlur(padded, (kernel_size, kernel_size), 0)[
                border : -border or None, border : -border or None
            ]
            blurred = blurred * (maps[i, j].max() / blurred.max())
            f = np.log(np.maximum(blurred, 1e-10))
            x, y = int(coords[i, j, 0]), int(coords[i, j, 1])
            if 2 <= x <= w - 3 and 2 <= y <= h - 3:
                dx = 0.5 * (f[y, x + 1] - f[y, x - 1])
                dy = 0.5 * (f[y + 1, x] - f[y - 1, x])
                dxx = 0.25 * (f[y, x + 2] - 2 * f[y, x] + f[y, x - 2])
                dxy = 0.25 * (f[y + 1, x + 1] - f[y - 1, x + 1] - f[y + 1, x - 1] + f[y - 1, x - 1])
                dyy = 0.25 * (f[y + 2, x] - 2 * f[y, x] + f[y - 2, x])
                if dxx * dyy - dxy**2 != 0:
                    hessian = np.array([[dxx, dxy], [dxy, dyy]])
                    coords[i, j] -= np.linalg.inv(hessian) @ np.array([dx, dy])
    return coords


def note_marginal(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reading note's modified decoder, as it is written there (its slips fixed: device
    and dtype follow the input)."""
    accu_x = maps.sum(dim=2)
    accu_y = maps.sum(dim=3)
    accu_x = torch.softmax(accu_x, 2)
    accu_y = torch.softmax(accu_y, 2)
    accu_x = accu_x * torch.arange(maps.shape[-1], dtype=maps.dtype, device=maps.device)
    accu_y = accu_y * torch.arange(maps.shape[-2], dtype=maps.dtype, device=maps.device)
    return accu_x.sum(dim=2, keepdim=True), accu_y.sum(dim=2, keepdim=True)


def note_generator(centers: np.ndarray, height: int, width: int, fwhm: float) -> np.ndarray:
    """The reading note's numpy generator: one full-size Gaussian per joint, in a loop."""
    maps = np.zeros((len(centers), height, width), dtype=np.float32)
    x = np.arange(width, dtype=np.float64)
    y = np.arange(height, dtype=np.float64)[:, np.newaxis]
    for i, (x0, y0) in enumerate(centers):
        maps[i] = 10 * np.exp(-4 * np.log(2) * ((x - x0) ** 2 + (y - y0) ** 2) / fwhm**2)
    return maps


#: The names ``bench`` reports the libraries' soft-argmax under.
KORNIA = "kornia spatial_soft_argmax2d"
DSNTNN = "dsntnn flat_softmax + dsnt"


def library_soft_argmax() -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """kornia's and dsntnn's soft-argmax, for those that are installed."""
    found: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    try:
        from kornia.geometry.subpix import spatial_soft_argmax2d

        found[KORNIA] = lambda maps: spatial_soft_argmax2d(
            maps, temperature=torch.tensor(1.0), normalized_coordinates=False
        )
    except ImportError:
        pass
    try:
        import dsntnn

        found[DSNTNN] = lambda maps: dsntnn.dsnt(dsntnn.flat_softmax(maps))
    except ImportError:
        pass
    return found


# ------------------------------------------------------------------------ SimCC vectors
def simcc_argmax(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax of ``(N, K, Wx)`` and ``(N, K, Wy)`` vectors in numpy over all ``N * K`` at
    once, as MMPose finds SimCC maxima: ``(N, K, 2)`` bins and the smaller of the two
    maxima."""
    n, k, _ = simcc_x.shape
    rows_x, rows_y = simcc_x.reshape(n * k, -1), simcc_y.reshape(n * k, -1)
    locations = np.stack((np.argmax(rows_x, axis=1), np.argmax(rows_y, axis=1)), axis=-1).astype(np.float32)
    values = np.minimum(np.amax(rows_x, axis=1), np.amax(rows_y, axis=1))
    return locations.reshape(n, k, 2), values.reshape(n, k)


def simcc_dark(simcc_x: np.ndarray, simcc_y: np.ndarray, kernel_size: int) -> np.ndarray | None:
    """SimCC decoding with DARK as MMPose's ``SimCCLabel.decode(use_dark=True)`` goes
    about it: numpy argmax, then per axis an OpenCV blur of every vector in a loop over
    samples and keypoints (zero padding, rescaled to the vector's maximum), a clip to
    ``[1e-3, 50]``, the log, edge padding and the Newton step in a loop over samples.

    Returns ``(N, K, 2)`` coordinates in bins, or ``None`` when OpenCV is not installed.
    """
    try:
        import cv2
    except ImportError:
        return None
    locations, _ = simcc_argmax(simcc_x, simcc_y)
    border = (kernel_size - 1) // 2
    for axis, vectors in enumerate((simcc_x, simcc_y)):
        n, k, length = vectors.shape
        log_blurred = np.empty((n, k, length + 4), dtype=np.float32)
        for i in range(n):
            for j in range(k):
                row = np.zeros((1, length + 2 * border), dtype=np.float32)
                row[0, border : border + length] = vectors[i, j]
                blurred = cv2.GaussianBlur(row, (kernel_size, 1), 0)[0, border : border + length]
                blurred = blurred * (vectors[i, j].max() / blurred.max())
                log_blurred[i, j] = np.pad(np.log(np.clip(blurred, 1e-3, 50.0)), 2, mode="edge")
        for i in range(n):
            at = (locations[i, :, axis] + 2.5).astype(np.int64)[:, None]
            f = [np.take_along_axis(log_blurred[i], at + step, axis=1)[:, 0] for step in (-2, -1, 0, 1, 2)]
            dx = 0.5 * (f[3] - f[1])
            dxx = 1e-9 + 0.25 * (f[4] - 2 * f[2] + f[0])
            locations[i, :, axis] -= dx / dxx
    return locations
