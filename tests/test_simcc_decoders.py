"""The decoders of SimCC vectors against the plain per-vector references in
``references`` (written from MMPose's formulas) and against each other."""

import math

import numpy as np
import pytest
import torch

from integral_cli.decoders.registry import decoders_for, simcc_kernel_size_for_sigma
from integral_cli.decoders.simcc import decode_simcc
from integral_cli.errors import ConfigError, ShapeError

from references import PARAMS, REFERENCES_1D, ref_dark_1d

SIMCC_DECODERS = decoders_for("simcc")
#: MMPose's normalize=True for RTMPose's x sigma
RTMPOSE_SIGMA = 4.9
RTMPOSE_AMPLITUDE = 1 / (RTMPOSE_SIGMA * math.sqrt(2 * math.pi))


def vectors(centers, length, sigma, amplitude):
    """``(B, K, length)`` float64 Gaussians ``A exp(-(i - mu)^2 / (2 sigma^2))`` around
    ``centers`` (bins), written out with numpy."""
    bins = np.arange(length)
    return amplitude * np.exp(-((bins - np.asarray(centers)[..., None]) ** 2) / (2 * sigma**2))


# ------------------------------------------------------------------- the decoders
def noisy_vectors(rng):
    """Rough vectors with negative values (DARK's clip bites) ..."""
    return rng.normal(size=(3, 2, 30)) + 3 * rng.random((3, 2, 30)) ** 4


def bump_vectors(rng):
    """... Gaussian bumps plus noise, peaks anywhere, the ends included ..."""
    return vectors(rng.uniform(-0.4, 29.4, (3, 2)), 30, 1.5, 2.0) + 0.05 * rng.random((3, 2, 30))


def clamped_vectors(rng):
    """... a negative background with a narrow spike, and a bump above the clip's 50 ..."""
    spikes = -0.5 + vectors(rng.uniform(5, 25, (2, 2)), 30, 0.6, 3.0)
    tall = vectors(rng.uniform(5, 25, (1, 2)), 30, 2.0, 80.0)
    return np.concatenate([spikes, tall]) + 0.01 * rng.random((3, 2, 30))


def rtmpose_vectors(rng):
    """... RTMPose's labels: sigma 4.9 bins, normalised (peak 0.081), 384 bins, noise."""
    clean = vectors(rng.uniform(15, 369, (4, 2)), 384, RTMPOSE_SIGMA, RTMPOSE_AMPLITUDE)
    return clean + 0.004 * rng.normal(size=clean.shape)


def loud_float32_vectors(rng):
    """... float32 vectors loud enough that beta * v (1.7 x 70 = 119) overflows float32's
    exp: the debiased weights take their scaled path."""
    loud = vectors(rng.uniform(5, 25, (3, 2)), 30, 4.0, 70.0) + 0.1 * rng.random((3, 2, 30))
    return loud.astype(np.float32)


#: Families of the reference test, each with the agreement it must reach: float64
#: vectors to rounding; float32 vectors are decoded in float32, whose sums of 30
#: weights and DARK's log differences (logs of about 4 rounded to 3e-7, over a
#: curvature of at least 0.03) move a point by up to ~1e-5 bins; 1e-4 is ten times that.
FAMILIES = {
    "noisy": (noisy_vectors, 1e-9),
    "bump": (bump_vectors, 1e-9),
    "clamped": (clamped_vectors, 1e-9),
    "rtmpose": (rtmpose_vectors, 1e-9),
    "loud float32": (loud_float32_vectors, 1e-4),
}


def test_every_simcc_decoder_has_a_reference():
    assert set(REFERENCES_1D) == set(SIMCC_DECODERS)
    assert SIMCC_DECODERS == ("argmax", "argmax-quarter", "dark", "integral", "integral-debiased", "integral-l1")


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("name", SIMCC_DECODERS)
def test_every_simcc_decoder_matches_its_reference(rng, name, family):
    make, tolerance = FAMILIES[family]
    along_x, along_y = make(rng), make(rng)
    got = decode_simcc(torch.from_numpy(along_x), torch.from_numpy(along_y), name, **PARAMS).numpy()
    for axis, values in enumerate((along_x, along_y)):
        expected = [[REFERENCES_1D[name](vector.astype(np.float64)) for vector in row] for row in values]
        np.testing.assert_allclose(got[..., axis], expected, rtol=0, atol=tolerance, err_msg=f"{name} {family}")


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_dark_is_mmpose_refine_simcc_dark_in_float32(rng, noise):
    # RTMPose's case in its own precision: float32 vectors of 384 and 512 bins, sigma 4.9,
    # normalised, MMPose's kernel for it (29), clean and with noise of 5% of the peak,
    # against the float64 reference on the same float32 values. Float32 logs of values
    # near 0.08 (log -2.5) are rounded to 2e-7; over the blurred curvature of about
    # 1 / (4.9^2 + 4.7^2) = 0.02 per bin^2 that is ~1e-5 bins, so 1e-3 bins (the DARK
    # bound of the docs) is wide.
    kernel = simcc_kernel_size_for_sigma(RTMPOSE_SIGMA)
    assert kernel == 29
    along = []
    for length in (384, 512):
        clean = vectors(rng.uniform(20, length - 21, (8, 17)), length, RTMPOSE_SIGMA, RTMPOSE_AMPLITUDE)
        along.append((clean + noise * RTMPOSE_AMPLITUDE * rng.normal(size=clean.shape)).astype(np.float32))
    got = decode_simcc(torch.from_numpy(along[0]), torch.from_numpy(along[1]), "dark", dark_kernel=kernel).numpy()
    for axis, values in enumerate(along):
        expected = [[ref_dark_1d(v.astype(np.float64), kernel) for v in row] for row in values]
        np.testing.assert_allclose(got[..., axis], expected, rtol=0, atol=1e-3)


def test_simcc_kernel_rule_is_mmpose():
    # int((20 sigma - 7) // 3), less one when even: 4.9 -> 30 -> 29, 5.66 -> 35, 6 -> 37,
    # 2 -> 11; at least 1, at most 101
    sizes = [simcc_kernel_size_for_sigma(s) for s in (4.9, 5.66, 6.0, 2.0, 0.1, 100.0)]
    assert sizes == [29, 35, 37, 11, 1, 101]


@pytest.mark.parametrize("name", SIMCC_DECODERS)
def test_shapes_dtypes_and_no_change_to_the_input(name):
    simcc_x, simcc_y = torch.rand(3, 5, 40), torch.rand(3, 5, 24)
    before = simcc_x.clone(), simcc_y.clone()
    out = decode_simcc(simcc_x, simcc_y, name)
    assert out.shape == (3, 5, 2) and out.dtype == torch.float32
    assert torch.equal(simcc_x, before[0]) and torch.equal(simcc_y, before[1])
    wide = decode_simcc(simcc_x.double(), simcc_y.double(), name)
    assert wide.dtype == torch.float64
    assert decode_simcc(simcc_x.half(), simcc_y.half(), name).dtype == torch.float32


@pytest.mark.parametrize("name", SIMCC_DECODERS)
def test_a_vector_that_is_not_finite_decodes_to_nan(name):
    simcc_x, simcc_y = torch.rand(2, 1, 20), torch.rand(2, 1, 20)
    simcc_x[1, 0, 7] = torch.nan
    out = decode_simcc(simcc_x, simcc_y, name)
    assert torch.isnan(out[1, 0, 0]) and torch.isfinite(out[0]).all() and torch.isfinite(out[1, 0, 1])


@pytest.mark.parametrize("name", SIMCC_DECODERS)
def test_batches_do_not_change_the_numbers(name):
    # Every vector is decoded on its own: a batch and its halves agree. The reductions
    # along a vector may be vectorised differently for another batch shape, which moves
    # a float32 sum of 600 weights by a few 1e-7 bins: 1e-5 bins.
    centers = np.random.default_rng(2).uniform(20, 360, (600, 1, 2))
    simcc_x = torch.from_numpy(vectors(centers[..., 0], 384, 3.0, 5.0)).float()
    simcc_y = torch.from_numpy(vectors(centers[..., 1], 512, 3.0, 5.0)).float()
    whole = decode_simcc(simcc_x, simcc_y, name)
    halves = torch.cat([decode_simcc(simcc_x[i : i + 300], simcc_y[i : i + 300], name) for i in (0, 300)])
    torch.testing.assert_close(whole, halves, rtol=0, atol=1e-5)


def test_decode_simcc_refuses():
    simcc_x, simcc_y = torch.rand(2, 3, 10), torch.rand(2, 3, 12)
    with pytest.raises(ConfigError, match="'dark-udp' does not apply to representation simcc"):
        decode_simcc(simcc_x, simcc_y, "dark-udp")
    with pytest.raises(ConfigError, match="unknown decoder"):
        decode_simcc(simcc_x, simcc_y, "nope")
    with pytest.raises(ShapeError, match="differ in B or K"):
        decode_simcc(simcc_x, simcc_y[:, :2], "argmax")
    with pytest.raises(ShapeError, match=r"\(B, K, Wy\)"):
        decode_simcc(simcc_x, simcc_y[0], "argmax")
    with pytest.raises(ShapeError, match="floating point"):
        decode_simcc(simcc_x, simcc_y.long(), "argmax")
    with pytest.raises(ConfigError, match="beta"):
        decode_simcc(simcc_x, simcc_y, "integral", beta=0)
