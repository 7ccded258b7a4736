"""Straightforward per-volume references of every decoder of volumes, from the papers'
formulas (the 3D counterparts of ``references``).

Plain loops over one ``(D, H, W)`` float64 numpy volume at a time, indexed ``h[z, y, x]``,
returning ``(x, y, z)`` in voxels. The volume tests and the evaluate tests read them;
they never call the code under test.
"""

import math

import numpy as np

from references import opencv_kernel, ref_softmax_expectation


def grid(size):
    """Voxel centre coordinates ``z, y, x`` of a ``(D, H, W)`` volume, float64."""
    return np.mgrid[0 : size[0], 0 : size[1], 0 : size[2]].astype(np.float64)


def gaussian_volume(center, size, sigma, amplitude):
    """``A exp(-d^2 / 2 sigma^2)`` around ``center = (x, y, z)``, written out in numpy."""
    zs, ys, xs = grid(size)
    d2 = (xs - center[0]) ** 2 + (ys - center[1]) ** 2 + (zs - center[2]) ** 2
    return amplitude * np.exp(-d2 / (2 * sigma**2))


def ref_argmax3(h):
    best, where = -math.inf, (0, 0, 0)
    depth, height, width = h.shape
    for z in range(depth):
        for y in range(height):
            for x in range(width):
                if h[z, y, x] > best:
                    best, where = h[z, y, x], (x, y, z)
    return where


def ref_argmax_quarter3(h):
    x, y, z = ref_argmax3(h)
    depth, height, width = h.shape
    point = [float(x), float(y), float(z)]
    if 1 <= x <= width - 2:
        point[0] += 0.25 * np.sign(h[z, y, x + 1] - h[z, y, x - 1])
    if 1 <= y <= height - 2:
        point[1] += 0.25 * np.sign(h[z, y + 1, x] - h[z, y - 1, x])
    if 1 <= z <= depth - 2:
        point[2] += 0.25 * np.sign(h[z + 1, y, x] - h[z - 1, y, x])
    return tuple(point)


def ref_blur3(h, k):
    """Zero-padded 3D Gaussian blur with the product of three OpenCV kernels, one voxel
    at a time. A product kernel blurs the same as one axis after another, which is how
    this loop goes (a full k^3 loop per voxel gives the same numbers, far slower)."""
    g, r = opencv_kernel(k), (k - 1) // 2
    out = h.astype(np.float64)
    for axis in range(3):
        source, out = out, np.zeros_like(out)
        size = source.shape[axis]
        for index in np.ndindex(*source.shape):
            total = 0.0
            for j in range(-r, r + 1):
                at = index[axis] + j
                if 0 <= at < size:
                    moved = list(index)
                    moved[axis] = at
                    total += g[j + r] * source[tuple(moved)]
            out[index] = total
    return out


def ref_dark3(h, k=11):
    x, y, z = ref_argmax3(h)
    depth, height, width = h.shape
    if not (2 <= x <= width - 3 and 2 <= y <= height - 3 and 2 <= z <= depth - 3):
        return float(x), float(y), float(z)
    b = ref_blur3(h, k)
    f = np.log(np.maximum(b * (h.max() / b.max()), 1e-10))
    centre = np.array([z, y, x])

    def at(dx, dy, dz):
        return f[tuple(centre + [dz, dy, dx])]

    units = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    gradient = np.array([0.5 * (at(*u) - at(*(-np.array(u)))) for u in units])
    hessian = np.zeros((3, 3))
    for i, u in enumerate(units):
        u = np.array(u)
        hessian[i, i] = 0.25 * (at(*(2 * u)) - 2 * at(0, 0, 0) + at(*(-2 * u)))
        for j, v in enumerate(units):
            if j != i:
                v = np.array(v)
                hessian[i, j] = 0.25 * (at(*(u + v)) - at(*(u - v)) - at(*(-u + v)) + at(*(-u - v)))
    if np.linalg.det(hessian) == 0:
        return float(x), float(y), float(z)
    offset = -np.linalg.solve(hessian, gradient)
    return x + offset[0], y + offset[1], z + offset[2]


def ref_integral3(h, beta):
    """The official code's 3D path: softmax over all D*H*W voxels, then the expectation."""
    p = np.exp(beta * (h - h.max()))
    p = p / p.sum()
    zs, ys, xs = np.mgrid[0 : h.shape[0], 0 : h.shape[1], 0 : h.shape[2]]
    return (p * xs).sum(), (p * ys).sum(), (p * zs).sum()


def ref_integral_marginal3(h, beta):
    return (
        ref_softmax_expectation(h.sum((0, 1)), beta),
        ref_softmax_expectation(h.sum((0, 2)), beta),
        ref_softmax_expectation(h.sum((1, 2)), beta),
    )


def ref_integral_debiased3(h, beta):
    depth, height, width = h.shape
    n, big_c = h.size, np.exp(beta * h).sum()
    e = ref_integral3(h, beta)
    centre = ((width - 1) / 2, (height - 1) / 2, (depth - 1) / 2)
    return tuple((big_c * e[i] - n * centre[i]) / (big_c - n) for i in range(3))


def ref_integral_l13(h):
    w = np.maximum(h, 0)
    zs, ys, xs = np.mgrid[0 : h.shape[0], 0 : h.shape[1], 0 : h.shape[2]]
    return (w * xs).sum() / w.sum(), (w * ys).sum() / w.sum(), (w * zs).sum() / w.sum()


def ref_soft_argmax_local3(h, beta, radius):
    x0, y0, z0 = ref_argmax3(h)
    total = sx = sy = sz = 0.0
    for z in range(z0 - radius, z0 + radius + 1):
        for y in range(y0 - radius, y0 + radius + 1):
            for x in range(x0 - radius, x0 + radius + 1):
                if 0 <= z < h.shape[0] and 0 <= y < h.shape[1] and 0 <= x < h.shape[2]:
                    w = math.exp(beta * (h[z, y, x] - h[z0, y0, x0]))
                    total, sx, sy, sz = total + w, sx + w * x, sy + w * y, sz + w * z
    return sx / total, sy / total, sz / total


PARAMS = {"beta": 1.7, "dark_kernel": 5, "window_radius": 2}
VOLUME_REFERENCES = {
    "argmax": ref_argmax3,
    "argmax-quarter": ref_argmax_quarter3,
    "dark": lambda h: ref_dark3(h, PARAMS["dark_kernel"]),
    "integral": lambda h: ref_integral3(h, PARAMS["beta"]),
    "integral-marginal": lambda h: ref_integral_marginal3(h, PARAMS["beta"]),
    "integral-debiased": lambda h: ref_integral_debiased3(h, PARAMS["beta"]),
    "integral-l1": ref_integral_l13,
    "soft-argmax-local": lambda h: ref_soft_argmax_local3(h, PARAMS["beta"], PARAMS["window_radius"]),
}
