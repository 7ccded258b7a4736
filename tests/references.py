"""Straightforward per-map references of every decoder, written from the papers' formulas.

Plain loops over one ``(H, W)`` float64 numpy map at a time, in heatmap pixels, ``(x, y)``.
The decoder tests and the evaluate tests read them; they never call the code under test.
"""

import math

import numpy as np


def ref_argmax(h):
    best, where = -math.inf, (0, 0)
    for y in range(h.shape[0]):
        for x in range(h.shape[1]):
            if h[y, x] > best:
                best, where = h[y, x], (x, y)
    return where


def ref_argmax_quarter(h):
    x, y = ref_argmax(h)
    height, width = h.shape
    fx, fy = float(x), float(y)
    if 1 <= x <= width - 2:
        fx += 0.25 * np.sign(h[y, x + 1] - h[y, x - 1])
    if 1 <= y <= height - 2:
        fy += 0.25 * np.sign(h[y + 1, x] - h[y - 1, x])
    return fx, fy


def opencv_kernel(k):
    # cv2.getGaussianKernel(k, 0): fixed taps up to 7, else sigma = 0.3((k-1)/2 - 1) + 0.8
    small = {
        1: [1.0],
        3: [0.25, 0.5, 0.25],
        5: [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16],
        7: [1 / 32, 3.5 / 32, 7 / 32, 9 / 32, 7 / 32, 3.5 / 32, 1 / 32],
    }
    if k in small:
        return np.array(small[k])
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    taps = np.exp(-((np.arange(k) - (k - 1) / 2) ** 2) / (2 * sigma**2))
    return taps / taps.sum()


def ref_blur(h, k):
    """Zero-padded 2D Gaussian blur, one output pixel at a time."""
    g, r = opencv_kernel(k), (k - 1) // 2
    height, width = h.shape
    out = np.zeros_like(h)
    for y in range(height):
        for x in range(width):
            for j in range(-r, r + 1):
                for i in range(-r, r + 1):
                    if 0 <= y + j < height and 0 <= x + i < width:
                        out[y, x] += g[j + r] * g[i + r] * h[y + j, x + i]
    return out


def ref_modulated(h, k):
    b = ref_blur(h, k)
    return b * (h.max() / b.max())


def ref_dark(h, k=11):
    x, y = ref_argmax(h)
    f = np.log(np.maximum(ref_modulated(h, k), 1e-10))
    height, width = h.shape
    if not (2 <= x <= width - 3 and 2 <= y <= height - 3):
        return float(x), float(y)
    dx = 0.5 * (f[y, x + 1] - f[y, x - 1])
    dy = 0.5 * (f[y + 1, x] - f[y - 1, x])
    dxx = 0.25 * (f[y, x + 2] - 2 * f[y, x] + f[y, x - 2])
    dyy = 0.25 * (f[y + 2, x] - 2 * f[y, x] + f[y - 2, x])
    dxy = 0.25 * (f[y + 1, x + 1] - f[y - 1, x + 1] - f[y + 1, x - 1] + f[y - 1, x - 1])
    hessian = np.array([[dxx, dxy], [dxy, dyy]])
    if dxx * dyy - dxy**2 == 0:
        return float(x), float(y)
    offset = -np.linalg.inv(hessian) @ np.array([dx, dy])
    return x + offset[0], y + offset[1]


def ref_dark_udp(h, k=11):
    x, y = ref_argmax(h)
    f = np.pad(np.log(np.clip(ref_modulated(h, k), 1e-3, 50.0)), 1, mode="edge")
    px, py = x + 1, y + 1  # in the padded map
    dx = 0.5 * (f[py, px + 1] - f[py, px - 1])
    dy = 0.5 * (f[py + 1, px] - f[py - 1, px])
    dxx = f[py, px + 1] - 2 * f[py, px] + f[py, px - 1]
    dyy = f[py + 1, px] - 2 * f[py, px] + f[py - 1, px]
    dxy = 0.5 * (
        f[py + 1, px + 1]
        - f[py, px + 1]
        - f[py + 1, px]
        + 2 * f[py, px]
        - f[py, px - 1]
        - f[py - 1, px]
        + f[py - 1, px - 1]
    )
    hessian = np.array([[dxx, dxy], [dxy, dyy]]) + np.finfo(np.float32).eps * np.eye(2)
    offset = -np.linalg.inv(hessian) @ np.array([dx, dy])
    return x + offset[0], y + offset[1]


def ref_integral(h, beta):
    z = np.exp(beta * (h - h.max()))
    p = z / z.sum()
    ys, xs = np.mgrid[0 : h.shape[0], 0 : h.shape[1]]
    return (p * xs).sum(), (p * ys).sum()


def ref_softmax_expectation(values, beta):
    w = np.exp(beta * (values - values.max()))
    return (w * np.arange(len(values))).sum() / w.sum()


def ref_integral_marginal(h, beta):
    return ref_softmax_expectation(h.sum(0), beta), ref_softmax_expectation(h.sum(1), beta)


def ref_integral_debiased(h, beta):
    height, width = h.shape
    n, big_c = h.size, np.exp(beta * h).sum()
    e = ref_integral(h, beta)
    centre = ((width - 1) / 2, (height - 1) / 2)
    return tuple((big_c * e[i] - n * centre[i]) / (big_c - n) for i in range(2))


def ref_integral_l1(h):
    w = np.maximum(h, 0)
    ys, xs = np.mgrid[0 : h.shape[0], 0 : h.shape[1]]
    return (w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()


def ref_soft_argmax_local(h, beta, radius):
    x0, y0 = ref_argmax(h)
    total = sx = sy = 0.0
    for y in range(y0 - radius, y0 + radius + 1):
        for x in range(x0 - radius, x0 + radius + 1):
            if 0 <= y < h.shape[0] and 0 <= x < h.shape[1]:
                w = math.exp(beta * (h[y, x] - h[y0, x0]))
                total, sx, sy = total + w, sx + w * x, sy + w * y
    return sx / total, sy / total


PARAMS = {"beta": 1.7, "dark_kernel": 7, "window_radius": 3, "fit_radius": 3}
REFERENCES = {
    "argmax": lambda h: ref_argmax(h),
    "argmax-quarter": ref_argmax_quarter,
    "dark": lambda h: ref_dark(h, PARAMS["dark_kernel"]),
    "dark-udp": lambda h: ref_dark_udp(h, PARAMS["dark_kernel"]),
    "integral": lambda h: ref_integral(h, PARAMS["beta"]),
    "integral-marginal": lambda h: ref_integral_marginal(h, PARAMS["beta"]),
    "integral-debiased": lambda h: ref_integral_debiased(h, PARAMS["beta"]),
    "integral-l1": ref_integral_l1,
    "soft-argmax-local": lambda h: ref_soft_argmax_local(h, PARAMS["beta"], PARAMS["window_radius"]),
    "gaussian-fit": lambda h: ref_gaussian_fit(h, PARAMS["fit_radius"]),
}


def ref_gaussian_fit(h, radius):
    """The least-squares fit of ``A exp(-d^2 / 2 s^2) + b`` to the window of radius ``r``
    around the argmax (pixels outside the map left out), by scipy's Levenberg-Marquardt
    run to convergence from a generic start; where the fit is not a Gaussian inside the
    window, the documented fallback: the log-parabola through the peak and its two
    neighbours on each axis."""
    from scipy.optimize import least_squares

    x0, y0 = ref_argmax(h)
    height, width = h.shape
    pixels = [
        (x, y)
        for y in range(y0 - radius, y0 + radius + 1)
        for x in range(x0 - radius, x0 + radius + 1)
        if 0 <= x < width and 0 <= y < height
    ]
    xs = np.array([p[0] for p in pixels], dtype=float)
    ys = np.array([p[1] for p in pixels], dtype=float)
    values = np.array([h[y, x] for x, y in pixels])

    def residual(theta):
        cx, cy, amplitude, sigma, offset = theta
        return amplitude * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2)) + offset - values

    start = (x0, y0, h[y0, x0] - values.min(), 1.5, values.min())
    fit = least_squares(residual, start, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=10_000)
    cx, cy, amplitude, sigma, _ = fit.x
    if amplitude > 0 and sigma != 0 and abs(cx - x0) <= radius and abs(cy - y0) <= radius:
        return cx, cy

    def parabola(a, c, b):
        a, c, b = (math.log(max(v, 1e-300)) for v in (a, c, b))
        curvature = a - 2 * c + b
        return min(0.5, max(-0.5, 0.5 * (a - b) / curvature)) if curvature < 0 else 0.0

    floor = values.min()

    def value(x, y):
        return h[min(max(y, 0), height - 1), min(max(x, 0), width - 1)] - floor

    return (
        x0 + parabola(value(x0 - 1, y0), value(x0, y0), value(x0 + 1, y0)),
        y0 + parabola(value(x0, y0 - 1), value(x0, y0), value(x0, y0 + 1)),
    )


# --------------------------------------------------------------- SimCC vectors, in 1D
# One (N,) float64 vector at a time, in bins; what each decoder does to each axis.
def ref_argmax_1d(v):
    best, where = -math.inf, 0
    for i in range(len(v)):
        if v[i] > best:
            best, where = v[i], i
    return where


def ref_argmax_quarter_1d(v):
    i = ref_argmax_1d(v)
    x = float(i)
    if 1 <= i <= len(v) - 2:
        x += 0.25 * np.sign(v[i + 1] - v[i - 1])
    return x


def ref_modulated_1d(v, k):
    """MMPose's gaussian_blur1d: OpenCV's kernel over the vector padded with zeros, then
    rescaled to the vector's maximum."""
    g, r = opencv_kernel(k), (k - 1) // 2
    out = np.zeros_like(v)
    for i in range(len(v)):
        for j in range(-r, r + 1):
            if 0 <= i + j < len(v):
                out[i] += g[j + r] * v[i + j]
    return out * (v.max() / out.max())


def ref_dark_1d(v, k=11):
    """MMPose's refine_simcc_dark, from its formula: clip to [1e-3, 50], log, pad by
    repeating the ends, one Newton step from the argmax bin."""
    i = ref_argmax_1d(v)
    f = np.pad(np.log(np.clip(ref_modulated_1d(v, k), 1e-3, 50.0)), 2, mode="edge")
    p = i + 2  # in the padded vector
    dx = 0.5 * (f[p + 1] - f[p - 1])
    dxx = 1e-9 + 0.25 * (f[p + 2] - 2 * f[p] + f[p - 2])
    return i - dx / dxx


def ref_integral_debiased_1d(v, beta):
    n, big_c = len(v), np.exp(beta * v).sum()
    e = ref_softmax_expectation(v, beta)
    centre = (n - 1) / 2
    return (big_c * e - n * centre) / (big_c - n)


def ref_integral_l1_1d(v):
    w = np.maximum(v, 0)
    return (w * np.arange(len(v))).sum() / w.sum()


REFERENCES_1D = {
    "argmax": ref_argmax_1d,
    "argmax-quarter": ref_argmax_quarter_1d,
    "dark": lambda v: ref_dark_1d(v, PARAMS["dark_kernel"]),
    "integral": lambda v: ref_softmax_expectation(v, PARAMS["beta"]),
    "integral-debiased": lambda v: ref_integral_debiased_1d(v, PARAMS["beta"]),
    "integral-l1": ref_integral_l1_1d,
}
