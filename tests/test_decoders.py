"""Decoders against closed forms and straightforward per-map references written here."""

import math

import numpy as np
import pytest
import torch

from integral_cli import DECODERS, decode, render_heatmaps
from integral_cli.errors import ConfigError, ShapeError


# ----------------------------------------------------------- straightforward references
def ref_argmax(h):
    best, where = -math.inf, (0, 0)
    for y in range(h.shape[0]):
        for x in range(h.shape[1]):
            if h[y, x] > best:
                best, where = h[y, x], (x, y)
    return where


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


REFERENCES = {"argmax": lambda h, beta: ref_argmax(h), "integral": ref_integral,
              "integral-marginal": ref_integral_marginal}


def test_every_decoder_has_a_reference():
    assert set(REFERENCES) == set(DECODERS)


@pytest.mark.parametrize("name", list(DECODERS))
class TestEveryDecoder:
    def test_shape_dtype_device(self, name):
        out = decode(torch.rand(3, 5, 16, 12), name)
        assert out.shape == (3, 5, 2) and out.dtype == torch.float32
        assert decode(torch.rand(1, 1, 8, 8, dtype=torch.float64), name).dtype == torch.float64

    def test_matches_reference_on_noisy_maps(self, name, rng):
        maps = rng.normal(size=(4, 3, 9, 13)) + 3 * rng.random((4, 3, 9, 13)) ** 4
        got = decode(torch.from_numpy(maps), name, beta=1.7).numpy()
        for b in range(4):
            for k in range(3):
                np.testing.assert_allclose(got[b, k], REFERENCES[name](maps[b, k], 1.7), rtol=1e-10, atol=1e-10)

    def test_recovers_centred_gaussian_on_integer_pixel_exactly(self, name):
        # An odd 33x25 map: its centre (12, 16) is a pixel centre, and the Gaussian there is
        # symmetric about it, so even the background pull of the softmax cancels.
        for amplitude in (1.0, 10.0):
            maps = render_heatmaps(torch.tensor([[[12.0, 16.0]]]), (33, 25), 2.0, amplitude=amplitude)
            torch.testing.assert_close(decode(maps, name), torch.tensor([[[12.0, 16.0]]]), atol=1e-4, rtol=0)

    def test_input_not_modified(self, name):
        maps = torch.rand(2, 2, 10, 10)
        before = maps.clone()
        decode(maps, name, beta=2.0)
        assert torch.equal(maps, before)

    def test_nan_map_gives_nan(self, name):
        maps = torch.rand(2, 1, 6, 6)
        maps[1, 0, 2, 3] = float("nan")
        out = decode(maps, name)
        assert torch.isfinite(out[0]).all() and torch.isnan(out[1]).all()

    def test_no_overflow_with_large_values(self, name):
        maps = render_heatmaps(torch.tensor([[[5.0, 4.0]]]), (9, 11), 1.0, amplitude=1e4)
        torch.testing.assert_close(decode(maps, name), torch.tensor([[[5.0, 4.0]]]), atol=1e-4, rtol=0)

    def test_gradient_matches_declaration(self, name):
        maps = torch.rand(1, 1, 6, 7, dtype=torch.float64, requires_grad=True)
        out = decode(maps, name)
        if DECODERS[name].differentiable:
            assert torch.autograd.gradcheck(lambda m: decode(m, name), (maps,))
        else:
            assert not out.requires_grad


class TestDecodeErrors:
    @pytest.mark.parametrize("maps", [torch.rand(4, 4), torch.rand(1, 4, 4), torch.rand(1, 1, 1, 4, 4),
                                      torch.zeros(1, 1, 4, 4, dtype=torch.int64), torch.rand(1, 1, 0, 4)])
    def test_bad_heatmaps(self, maps):
        with pytest.raises(ShapeError):
            decode(maps, "argmax")

    def test_not_a_tensor(self):
        with pytest.raises(ShapeError):
            decode(np.zeros((1, 1, 4, 4)), "argmax")

    def test_unknown_method_names_the_choices(self):
        with pytest.raises(ConfigError, match="argmax, integral"):
            decode(torch.rand(1, 1, 4, 4), "soft-argmx")

    @pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf")])
    def test_bad_beta(self, beta):
        with pytest.raises(ConfigError, match="beta"):
            decode(torch.rand(1, 1, 4, 4), "integral", beta=beta)

    def test_unknown_parameter(self):
        with pytest.raises(ConfigError, match="unknown decoder parameter"):
            decode(torch.rand(1, 1, 4, 4), "integral", temperature=2.0)

    def test_parameters_a_decoder_does_not_take_are_ignored(self):
        maps = torch.rand(2, 1, 5, 5)
        assert torch.equal(decode(maps, "argmax", beta=3.0), decode(maps, "argmax"))


def test_argmax_first_on_ties():
    maps = torch.zeros(1, 1, 3, 4)
    maps[0, 0, 1, 3] = maps[0, 0, 2, 0] = maps[0, 0, 1, 2] = 1.0
    assert decode(maps, "argmax").tolist() == [[[2.0, 1.0]]]


def test_argmax_round_trip_within_half_a_pixel():
    centers = torch.rand(500, 1, 2, dtype=torch.float64) * 20 + 6
    maps = render_heatmaps(centers, (32, 32), 2.0)
    error = (decode(maps, "argmax") - centers).abs()
    assert error.max() <= 0.5
    torch.testing.assert_close(decode(maps, "argmax"), centers.round())


# ------------------------------------------------------------- softmax background pull
def background_mass(center, size, sigma, amplitude, beta=1.0):
    """S = sum over pixels of (exp(beta * h) - 1), by a plain loop."""
    height, width = size
    total = 0.0
    for y in range(height):
        for x in range(width):
            d2 = (x - center[0]) ** 2 + (y - center[1]) ** 2
            total += math.exp(beta * amplitude * math.exp(-d2 / (2 * sigma**2))) - 1.0
    return total


# The closed form takes the sampled first moment of exp(h) - 1 to be S * mu. That is exact
# for a continuous bump; on the pixel grid the narrow high powers of the Gaussian inside
# exp(A g) alias, by ~1e-7 px at A = 1 but ~3e-3 px at A = 10, hence the tolerances.
@pytest.mark.parametrize("amplitude, approx_s, tolerance", [(1.0, 33.0, 1e-6), (10.0, 6.3e4, 5e-3)])
def test_integral_background_pull_closed_form(amplitude, approx_s, tolerance):
    # Sum of exp(h) * x = sum (exp(h) - 1) * x + sum x = S * mu + N * c for a symmetric,
    # untruncated bump, and the normaliser is S + N, so E = (N c + S mu) / (N + S).
    size, sigma, mu = (64, 48), 2.0, (13.3, 40.6)
    n = size[0] * size[1]
    c = ((size[1] - 1) / 2, (size[0] - 1) / 2)
    s = background_mass(mu, size, sigma, amplitude)
    assert s == pytest.approx(approx_s, rel=0.02)  # design.md: 2 pi sigma^2 sum A^k/(k k!)
    expected = [(n * c[i] + s * mu[i]) / (n + s) for i in range(2)]
    maps = render_heatmaps(torch.tensor([[mu]], dtype=torch.float64), size, sigma, amplitude=amplitude)
    got = decode(maps, "integral")[0, 0].tolist()
    assert got == pytest.approx(expected, abs=tolerance)
    # the pull is far larger than the tolerance: 7.5 px at A = 1, 0.5 px at A = 10
    assert abs(got[0] - mu[0]) > 90 * tolerance


def test_integral_marginal_closed_form():
    # Along x the marginal is m(x) = A * g(x) * sum_y g(y); the same pull argument in 1D
    # gives E_x = (W c_x + S_x mu_x) / (W + S_x) with S_x = sum_x (exp(m(x)) - 1). The
    # marginal's peak is about 5, so aliasing (see above) costs ~1e-4 px here.
    size, sigma, amplitude, mu = (64, 48), 2.0, 1.0, (13.3, 40.6)
    height, width = size
    gx = [math.exp(-((x - mu[0]) ** 2) / (2 * sigma**2)) for x in range(width)]
    gy = [math.exp(-((y - mu[1]) ** 2) / (2 * sigma**2)) for y in range(height)]
    s_x = sum(math.exp(amplitude * g * sum(gy)) - 1 for g in gx)
    s_y = sum(math.exp(amplitude * g * sum(gx)) - 1 for g in gy)
    expected = [(width * (width - 1) / 2 + s_x * mu[0]) / (width + s_x),
                (height * (height - 1) / 2 + s_y * mu[1]) / (height + s_y)]
    maps = render_heatmaps(torch.tensor([[mu]], dtype=torch.float64), size, sigma, amplitude=amplitude)
    got = decode(maps, "integral-marginal")[0, 0].tolist()
    assert got == pytest.approx(expected, abs=1e-3)
    assert abs(got[0] - mu[0]) > 1.0


def test_beta_sharpens_the_integral_toward_the_peak():
    maps = render_heatmaps(torch.tensor([[[10.0, 10.0]]]), (64, 48), 2.0, amplitude=1.0)
    errors = [(decode(maps, "integral", beta=b) - 10.0).norm().item() for b in (1.0, 5.0, 50.0)]
    assert errors[0] > errors[1] > errors[2]
