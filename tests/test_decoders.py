"""Decoders against closed forms and the straightforward per-map references in ``references``."""

import math
import re

import numpy as np
import pytest
import torch

from integral_cli import DECODERS, decode, render_heatmaps
from integral_cli.decoders import DECODER_PARAMS, decode_counted
from integral_cli.errors import ConfigError, ShapeError

from references import (
    PARAMS,
    REFERENCES,
    opencv_kernel,
    ref_argmax,
    ref_dark,
    ref_dark_udp,
    ref_integral,
    ref_integral_debiased,
    ref_integral_l1,
    ref_integral_marginal,
    ref_modulated,
    ref_soft_argmax_local,
)


def noisy_maps(rng):
    """Rough maps with negative values (DARK's clamp bites here) ..."""
    return rng.normal(size=(3, 2, 12, 15)) + 3 * rng.random((3, 2, 12, 15)) ** 4


def bump_maps(rng):
    """... and positive Gaussian bumps plus noise, peaks anywhere, border included."""
    centers = np.concatenate([rng.uniform(-0.4, 14.4, (3, 2, 1)), rng.uniform(-0.4, 11.4, (3, 2, 1))], -1)
    maps = render_heatmaps(torch.from_numpy(centers), (12, 15), 1.5, amplitude=2.0).numpy()
    return maps + 0.05 * rng.random(maps.shape)


def clamped_maps(rng):
    """... and maps where the clip before DARK's log bites near the peak: a negative
    background with a narrow spike, and a tall bump above UDP-DARK's ceiling of 50."""
    spikes = (
        -0.5 + render_heatmaps(torch.from_numpy(rng.uniform(3, 9, (2, 2, 2))), (12, 15), 0.6, amplitude=3.0).numpy()
    )
    tall = render_heatmaps(torch.from_numpy(rng.uniform(3, 9, (1, 2, 2))), (12, 15), 1.5, amplitude=80.0).numpy()
    return np.concatenate([spikes, tall]) + 0.01 * rng.random((3, 2, 12, 15))


def interior_maps(rng):
    """... and larger maps with their peaks well inside, so the refinements read their
    neighbourhoods through the window view; one map of the eight lies near the border
    (under the window view's 20% share of crossing patches), so that path's redo of the
    crossing neighbourhoods runs too."""
    centers = rng.uniform(13, 23, (4, 2, 2))
    centers[3, 1] = (1.2, 30.4)
    maps = render_heatmaps(torch.from_numpy(centers), (40, 36), 2.0, amplitude=5.0).numpy()
    return maps + 0.05 * rng.random(maps.shape)


def loud_float32_maps(rng):
    """... and float32 maps loud enough that beta * h (1.7 x 70 = 119) overflows float32's
    exp (past 88.7): only decoders that subtract the maximum first stay finite. Wide bumps
    (sigma 4), so the softmax is not one-hot."""
    centers = np.concatenate([rng.uniform(2, 12, (3, 2, 1)), rng.uniform(2, 9, (3, 2, 1))], -1)
    maps = render_heatmaps(torch.from_numpy(centers), (12, 15), 4.0, amplitude=70.0)
    return (maps + 0.1 * torch.from_numpy(rng.random(maps.shape))).float().numpy()


#: Map families of the reference test, each with the agreement it must reach. float64
#: maps agree with the float64 references to rounding. float32 maps are decoded in
#: float32: sums of up to 180 weights and DARK's log differences (log values of about 4
#: rounded to 3e-7, divided by a curvature of at least 0.04) move a point by up to
#: ~1e-5 heatmap px; 1e-4 is ten times that.
#: Families without a Gaussian to fit (noise, a spike on a negative background).
ILL_POSED_FITS = ("noisy", "clamped")
FAMILIES = {
    "noisy": (noisy_maps, 1e-9),
    "bump": (bump_maps, 1e-9),
    "clamped": (clamped_maps, 1e-9),
    "interior": (interior_maps, 1e-9),
    "loud float32": (loud_float32_maps, 1e-4),
}


def test_every_decoder_has_a_reference():
    assert set(REFERENCES) == set(DECODERS)


@pytest.mark.parametrize("name", list(DECODERS))
class TestEveryDecoder:
    def test_shape_dtype_device(self, name):
        out = decode(torch.rand(3, 5, 16, 12), name)
        assert out.shape == (3, 5, 2) and out.dtype == torch.float32
        assert decode(torch.rand(1, 1, 8, 8, dtype=torch.float64), name).dtype == torch.float64

    @pytest.mark.parametrize("family", list(FAMILIES))
    def test_matches_reference(self, name, family, rng):
        make, tolerance = FAMILIES[family]
        maps = make(rng)
        got, fell_back = decode_counted(torch.from_numpy(maps), name, **PARAMS)
        assert got.dtype == torch.from_numpy(maps).dtype
        if name == "gaussian-fit" and family in ILL_POSED_FITS:
            # no single Gaussian in these maps: the least-squares minimum need not be unique,
            # so only the contract holds: a finite point in the window around the argmax
            argmax = decode(torch.from_numpy(maps), "argmax")
            assert torch.isfinite(got).all() and ((got - argmax).abs() <= PARAMS["fit_radius"]).all()
            return
        assert fell_back is None or not fell_back.any()
        if name == "gaussian-fit":
            # both fits stop at a tolerance: ten steps from the start and scipy's converged
            # Levenberg-Marquardt agree to a few 1e-9 px in windows cut by a corner
            tolerance = max(tolerance, 1e-8)
        for b in range(maps.shape[0]):
            for k in range(maps.shape[1]):
                expected = REFERENCES[name](maps[b, k].astype(np.float64))
                np.testing.assert_allclose(
                    got[b, k].double().numpy(), expected, rtol=tolerance, atol=tolerance, err_msg=f"map {b},{k}"
                )

    def test_recovers_centred_gaussian_on_integer_pixel_exactly(self, name):
        # An odd 33x25 map: its centre (12, 16) is a pixel centre, and the Gaussian there is
        # symmetric about it, so even the background pull of the softmax cancels. (A decoder
        # that returned the map centre would pass here: the off-centre peak of the test
        # below, and the round trip, catch that.)
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
        # A float32 peak of 1e4 (exp overflows past 88.7) on a pixel 2 px from the centre
        # (8, 7) of a 15x17 map along x and 1 px along y: the softmax is one-hot, so every
        # decoder must return the peak, not NaN and not a point pulled toward the centre.
        # The Gaussian (sigma 1) has at least 6 px on every side: its cut tails move the
        # L1 expectation by under 1e-7 px.
        maps = render_heatmaps(torch.tensor([[[6.0, 8.0]]]), (15, 17), 1.0, amplitude=1e4)
        torch.testing.assert_close(decode(maps, name), torch.tensor([[[6.0, 8.0]]]), atol=1e-4, rtol=0)

    def test_gradient_matches_declaration(self, name):
        # A peak in the interior, so every refinement takes its step, plus noise.
        maps = render_heatmaps(torch.tensor([[[6.3, 5.6]]], dtype=torch.float64), (12, 13), 1.5)
        maps = (maps + 0.01 * torch.rand_like(maps)).requires_grad_()
        out = decode(maps, name)
        if DECODERS[name].differentiable:
            # gaussian-fit's eight unrolled fitting steps make the full numerical Jacobian
            # (two fits per pixel) slow; fast mode checks it along random directions
            fast = name == "gaussian-fit"
            assert torch.autograd.gradcheck(lambda m: decode(m, name), (maps,), fast_mode=fast)
        else:
            assert not out.requires_grad


def test_neighbourhoods_with_autograd_are_read_pixel_by_pixel(monkeypatch):
    # the window view's backward would allocate (2r+1)^2 times the maps
    from integral_cli.decoders import common

    calls = []
    real = common._gather_clamped
    monkeypatch.setattr(common, "_gather_clamped", lambda *a, **k: calls.append(1) or real(*a, **k))
    maps = render_heatmaps(torch.tensor([[[20.3, 30.6]]], dtype=torch.float64), (64, 48), 2.0)
    common.gather_patches(maps, torch.tensor([[20]]), torch.tensor([[30]]), 7)
    assert calls == []
    common.gather_patches(maps.requires_grad_(), torch.tensor([[20]]), torch.tensor([[30]]), 7)
    assert calls == [1]


@pytest.mark.parametrize("name", ["dark", "dark-udp"])
def test_dark_blurs_whole_maps_only_where_the_clip_bites(name, rng, monkeypatch):
    # The local blur is exact only where the clip cannot bite; the clamped family needs
    # the whole-map path, the bump family does not. Both must match the reference above.
    from integral_cli.decoders import dark

    blurred_whole = []
    real = dark.blur_maps
    monkeypatch.setattr(dark, "blur_maps", lambda maps, kernel: blurred_whole.append(len(maps)) or real(maps, kernel))
    decode(torch.from_numpy(bump_maps(rng)), name, **PARAMS)
    assert blurred_whole == []
    decode(torch.from_numpy(clamped_maps(rng)), name, **PARAMS)
    assert blurred_whole and 0 < blurred_whole[0] <= 6


class TestDecodeErrors:
    @pytest.mark.parametrize(
        "maps",
        [
            torch.rand(4, 4),
            torch.rand(1, 4, 4),
            torch.rand(1, 1, 1, 1, 4, 4),
            torch.zeros(1, 1, 4, 4, dtype=torch.int64),
            torch.rand(1, 1, 0, 4),
        ],
    )
    def test_bad_heatmaps(self, maps):
        with pytest.raises(ShapeError):
            decode(maps, "argmax")

    def test_not_a_tensor(self):
        with pytest.raises(ShapeError):
            decode(np.zeros((1, 1, 4, 4)), "argmax")

    def test_unknown_method_names_the_choices(self):
        with pytest.raises(ConfigError, match="choose from argmax, argmax-quarter, dark"):
            decode(torch.rand(1, 1, 4, 4), "soft-argmx")

    @pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf")])
    def test_bad_beta(self, beta):
        with pytest.raises(ConfigError, match="beta"):
            decode(torch.rand(1, 1, 4, 4), "integral", beta=beta)

    @pytest.mark.parametrize(
        "params",
        [
            dict(dark_kernel=4),
            dict(dark_kernel=0),
            dict(dark_kernel=11.0),
            dict(window_radius=-1),
            dict(window_radius=1.5),
        ],
    )
    def test_bad_integer_parameters(self, params):
        with pytest.raises(ConfigError, match=next(iter(params))):
            decode(torch.rand(1, 1, 8, 8), "dark", **params)

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
    expected = [
        (width * (width - 1) / 2 + s_x * mu[0]) / (width + s_x),
        (height * (height - 1) / 2 + s_y * mu[1]) / (height + s_y),
    ]
    maps = render_heatmaps(torch.tensor([[mu]], dtype=torch.float64), size, sigma, amplitude=amplitude)
    got = decode(maps, "integral-marginal")[0, 0].tolist()
    assert got == pytest.approx(expected, abs=1e-3)
    assert abs(got[0] - mu[0]) > 1.0


def test_beta_sharpens_the_integral_toward_the_peak():
    maps = render_heatmaps(torch.tensor([[[10.0, 10.0]]]), (64, 48), 2.0, amplitude=1.0)
    errors = [(decode(maps, "integral", beta=b) - 10.0).norm().item() for b in (1.0, 5.0, 50.0)]
    assert errors[0] > errors[1] > errors[2]


# ---------------------------------------------------------------- refinements, closed forms
def interior_points(n, dtype=torch.float64):
    """Sub-pixel points at least 8 sigma (sigma = 2) from every border of a 64x48 map, so
    the rendered Gaussian is untruncated to float64 precision (exp(-32) ~ 1e-14)."""
    return torch.rand(n, 1, 2, dtype=dtype) * torch.tensor([14.0, 30.0], dtype=dtype) + 16.0


def test_quarter_offset_error_is_a_quarter_minus_the_fraction():
    # From the nearest pixel, a step of 1/4 toward the true position: per-axis error 1/4 - |f|.
    centers = interior_points(400)
    maps = render_heatmaps(centers, (64, 48), 2.0)
    error = (decode(maps, "argmax-quarter") - centers).abs()
    fraction = (centers - centers.round()).abs()
    torch.testing.assert_close(error, (0.25 - fraction).abs())


@pytest.mark.parametrize(
    "dtype, kernel, bound",
    [
        (torch.float32, 11, 1e-3),
        # In float64 the remaining error is the blur's: OpenCV's kernel of 11 taps stops at
        # 2.5 sigma, so the blurred Gaussian is not a Gaussian and its log not a parabola
        # (~3e-4 px). Without the blur (k = 1), or with a kernel long enough to be untruncated
        # for practical purposes (k = 25 stops at 2.9 sigma of 4.1), the step is exact.
        (torch.float64, 1, 1e-9),
        (torch.float64, 25, 1e-6),
    ],
)
def test_dark_on_an_untruncated_gaussian(dtype, kernel, bound):
    centers = interior_points(300)
    maps = render_heatmaps(centers, (64, 48), 2.0, amplitude=10.0).to(dtype)
    error = (decode(maps, "dark", dark_kernel=kernel) - centers).abs().max().item()
    assert error < bound


def test_dark_kernel_truncation_error_is_what_it_is():
    # The float64 error at k = 11 is bounded away from zero: the documented 3e-4 px.
    centers = interior_points(300)
    maps = render_heatmaps(centers, (64, 48), 2.0, amplitude=10.0)
    error = (decode(maps, "dark") - centers).abs().max().item()
    assert 1e-5 < error < 5e-4


def test_dark_udp_on_an_untruncated_gaussian():
    centers = interior_points(300)
    maps = render_heatmaps(centers, (64, 48), 2.0, amplitude=10.0).float()
    assert (decode(maps, "dark-udp") - centers).abs().max().item() < 1e-3


@pytest.mark.parametrize("amplitude", [1.0, 10.0])
def test_debiased_integral_removes_the_background_pull(amplitude):
    centers = torch.tensor([[[13.3, 40.6], [30.8, 20.2], [24.1, 9.9]]], dtype=torch.float64)
    maps = render_heatmaps(centers, (64, 48), 2.0, amplitude=amplitude)
    plain = (decode(maps, "integral") - centers).norm(dim=-1)
    debiased = (decode(maps, "integral-debiased") - centers).norm(dim=-1)
    assert plain.max() > 0.4  # 0.5 px at A = 10, 7.5 px at A = 1
    assert debiased.max() < 0.01


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_debiased_integral_where_exp_overflows_float32(beta):
    # exp(beta h) - 1 overflows float32 above beta h = 88.7: such maps are weighed again in
    # the softmax's scale, and must give the formula's value, as must their neighbours
    centers = torch.tensor([[[5.3, 4.6]], [[6.1, 3.2]], [[4.4, 7.9]]])
    maps = render_heatmaps(centers, (12, 13), 1.5, amplitude=10.0)
    maps[1] *= 30.0  # peak 300
    maps[2, 0, 0, 0] = float("nan")
    decoded = decode(maps, "integral-debiased", beta=beta)
    # the formula in float64, where exp(300 beta) is finite: expectation under exp(beta h) - 1
    weights = torch.expm1(beta * maps[:2, 0].double())
    ys, xs = torch.meshgrid(torch.arange(12.0).double(), torch.arange(13.0).double(), indexing="ij")
    expected = (
        torch.stack(((weights * xs).sum((-2, -1)), (weights * ys).sum((-2, -1))), -1) / weights.sum((-2, -1))[:, None]
    )
    torch.testing.assert_close(decoded[:2, 0].double(), expected, atol=1e-4, rtol=0)
    assert torch.isnan(decoded[2]).all()
    # the gradient stays finite, the overflowing map's included
    leaf = maps[:2].clone().requires_grad_()
    decode(leaf, "integral-debiased", beta=beta).sum().backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad[1].abs().sum() > 0


@pytest.mark.parametrize("amplitude", [1e-3, 1e-2, 1.0, 10.0])
def test_debiased_integral_is_as_exact_in_float32_at_any_amplitude(amplitude):
    # exp(h) - 1 taken as exp then a subtraction keeps half a unit in the last place of
    # exp(h) near 1 (6e-8) per pixel: at amplitude 1e-3 that moved the point by 1e-4 px.
    # Such maps are weighed again with expm1, so float32 maps land within float32 sums'
    # rounding (a few 1e-6 px) of the float64 decode of the same values, at every amplitude
    centers = torch.from_numpy(np.random.default_rng(7).uniform(8, 40, (32, 1, 2)))
    maps = render_heatmaps(centers, (64, 48), 2.0, amplitude=amplitude).float()
    expected = decode(maps.double(), "integral-debiased")
    torch.testing.assert_close(decode(maps, "integral-debiased").double(), expected, atol=1e-5, rtol=0)


def test_integral_where_exp_underflows_to_subnormal_numbers():
    # Maps near -100: float32 exp(h) is subnormal (below 1.2e-38), with a few significant
    # digits left, which moved unshifted weights' expectation by 1e-4 px; such maps are
    # weighed again through the softmax, so they match the float64 softmax of the same
    # values to float32 rounding (sums of 156 weights: 1e-6 px)
    generator = torch.Generator().manual_seed(3)
    centers = torch.tensor([[[5.3, 4.6]], [[6.1, 3.2]], [[7.4, 8.0]]])
    maps = render_heatmaps(centers, (12, 13), 1.5, amplitude=3.0) + 0.05 * torch.rand(3, 1, 12, 13, generator=generator)
    maps[:2] -= 100.0  # the third stays as it was: weighed unshifted
    weights = torch.softmax(maps.double().flatten(-2), -1).view_as(maps)
    ys, xs = torch.meshgrid(torch.arange(12.0).double(), torch.arange(13.0).double(), indexing="ij")
    expected = torch.stack(((weights * xs).sum((-2, -1)), (weights * ys).sum((-2, -1))), -1)
    torch.testing.assert_close(decode(maps.float(), "integral").double(), expected, atol=1e-6, rtol=0)
    assert torch.exp(maps[:2].float()).max() < torch.finfo(torch.float32).tiny  # the case is what it says


def test_debiased_integral_gradient_where_exp_overflows_float64():
    # float64 overflows past beta h = 709.8: a peak of 800 takes the fallback
    maps = render_heatmaps(torch.tensor([[[4.3, 5.6]], [[6.2, 3.7]]], dtype=torch.float64), (10, 11), 1.5)
    maps = (maps * torch.tensor([800.0, 1.0], dtype=torch.float64)[:, None, None, None]).requires_grad_()
    assert torch.autograd.gradcheck(lambda m: decode(m, "integral-debiased"), (maps,))


def test_debiased_integral_where_only_the_moments_would_overflow():
    # the total exp(708) is finite in float64, its moments (times a coordinate) are not
    maps = torch.zeros(1, 1, 64, 64, dtype=torch.float64)
    maps[0, 0, 50, 40] = 708.0
    torch.testing.assert_close(decode(maps, "integral-debiased"), torch.tensor([[[40.0, 50.0]]], dtype=torch.float64))


def test_integral_l1_is_exact_on_an_untruncated_gaussian():
    # The sampled Gaussian's first moment is mu up to aliasing of order exp(-2 pi^2 sigma^2).
    centers = interior_points(300)
    maps = render_heatmaps(centers, (64, 48), 2.0, amplitude=10.0)
    torch.testing.assert_close(decode(maps, "integral-l1"), centers, atol=1e-9, rtol=0)
    assert (decode(maps.float(), "integral-l1") - centers).abs().max() < 1e-5


def test_soft_argmax_local_lies_between_argmax_and_the_truth():
    # The window is symmetric about the argmax pixel, the bump about the truth, so the
    # expectation lands between them: never worse than argmax, on each axis.
    centers = interior_points(400)
    maps = render_heatmaps(centers, (64, 48), 2.0, amplitude=10.0)
    local = decode(maps, "soft-argmax-local") - centers
    argmax = decode(maps, "argmax") - centers
    assert (local.abs() <= argmax.abs() + 1e-12).all()
    assert (local * argmax >= -1e-12).all()  # same side
    assert local.abs().mean() < 0.5 * argmax.abs().mean()
    torch.testing.assert_close(decode(maps, "soft-argmax-local", window_radius=0), decode(maps, "argmax"))


# Round trip: render at random sub-pixel points (sigma 2, amplitude 10, at least 3 sigma
# from the border of a 64x48 map), decode, and stay within each decoder's documented
# bound per axis, in heatmap pixels (README, "Decoders"). Where a bound is not exact it is
# two to three times the worst error seen over 2500 such points, with its cause:
ROUND_TRIP_BOUNDS = {
    "argmax": 0.5,  # exact: the nearest pixel
    "argmax-quarter": 0.25,  # exact: 1/4 - |f|
    "dark": 1e-3,  # the 11-tap kernel's truncation, worst 3.4e-4
    "dark-udp": 1e-4,  # worst 3.8e-5
    # closed form N |c - mu| / (N + S): N = 3072, S = 6.3e4, |c - mu| <= 25.5 -> 1.19
    "integral": 1.25,
    "integral-marginal": 0.3,  # the 1D softmax of a marginal peaking at 50, worst 0.22
    "integral-debiased": 0.006,  # sampling of exp(beta h) - 1, worst 3.1e-3
    "integral-l1": 0.008,  # the Gaussian cut at the 3-sigma margin, worst 3.7e-3
    "soft-argmax-local": 0.02,  # the 5x5 window cuts the bump, worst 9.8e-3
    "gaussian-fit": 1e-5,  # the model is the map: float32 rounding of the maps, worst ~1e-6
}


@pytest.mark.parametrize("name", list(DECODERS))
def test_round_trip(name):
    assert set(ROUND_TRIP_BOUNDS) == set(DECODERS)
    centers = torch.rand(500, 1, 2) * torch.tensor([35.0, 51.0]) + 6.0
    maps = render_heatmaps(centers, (64, 48), 2.0, amplitude=10.0)
    assert (decode(maps, name) - centers).abs().max() <= ROUND_TRIP_BOUNDS[name]


@pytest.mark.parametrize("edge", [False, True])
@pytest.mark.parametrize("radius", [1, 3, 5])
def test_gather_patches_against_a_plain_loop(rng, radius, edge):
    # Both ways of reading a neighbourhood (one index per pixel below 7x7; a window view
    # with the crossing patches redone at 7x7 and up) against reading pixel by pixel.
    from integral_cli.decoders.common import gather_patches

    maps = torch.from_numpy(rng.random((5, 2, 20, 18)))
    x = torch.from_numpy(rng.integers(5, 13, (5, 2)))
    y = torch.from_numpy(rng.integers(5, 15, (5, 2)))
    x[4, 1], y[4, 1] = 0, 19  # one patch crosses the corner
    got = gather_patches(maps, x, y, radius, edge=edge).numpy()
    for b in range(5):
        for k in range(2):
            for j in range(-radius, radius + 1):
                for i in range(-radius, radius + 1):
                    row, col = int(y[b, k]) + j, int(x[b, k]) + i
                    if edge:
                        expected = maps[b, k, min(max(row, 0), 19), min(max(col, 0), 17)].item()
                    else:
                        expected = maps[b, k, row, col].item() if 0 <= row < 20 and 0 <= col < 18 else 0.0
                    assert got[b, k, j + radius, i + radius] == expected, (b, k, j, i)


@pytest.mark.parametrize("size", [1, 3, 5, 7, 11, 17, 25])
def test_the_blur_kernel_is_opencvs(size):
    # The references above, and DARK itself, use OpenCV's kernel for a size with no
    # sigma given; OpenCV is in the test extra, so this compares against the real thing.
    import cv2

    from integral_cli.decoders.dark import blur_maps, gaussian_kernel

    theirs = cv2.getGaussianKernel(size, 0, ktype=cv2.CV_64F).ravel()
    np.testing.assert_allclose(opencv_kernel(size), theirs, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gaussian_kernel(size).numpy(), theirs, rtol=1e-12, atol=1e-15)
    # and the whole-map blur is OpenCV's GaussianBlur with zero padding
    image = np.random.default_rng(size).random((19, 23))
    padded = cv2.copyMakeBorder(image, size, size, size, size, cv2.BORDER_CONSTANT, value=0)
    expected = cv2.GaussianBlur(padded, (size, size), 0)[size:-size, size:-size]
    got = blur_maps(torch.from_numpy(image)[None], gaussian_kernel(size)).numpy()[0]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_soft_argmax_local_near_the_border_of_a_map_far_below_zero():
    # The window pixels outside the map must weigh nothing, however far the peak lies
    # below zero (raw network outputs can be all negative). Peak -300 at (1, 2), window
    # radius 2: by hand, exp(h - peak) is 1 at the peak, e^-1 at (2, 2) and 0 elsewhere,
    # so x = (1 + 2 e^-1) / (1 + e^-1) and y = 2.
    maps = torch.full((1, 1, 6, 7), -1000.0)
    maps[0, 0, 2, 1] = -300.0
    maps[0, 0, 2, 2] = -301.0
    x = (1 + 2 * math.exp(-1)) / (1 + math.exp(-1))
    torch.testing.assert_close(decode(maps, "soft-argmax-local"), torch.tensor([[[x, 2.0]]]), atol=1e-6, rtol=0)


# ------------------------------------------------------ mutation-testing follow-ups
# Each test below pins a property that a surviving mutant of the decoders broke
# (benchmarks/mutation.sh); expected values come from the per-map references above.
@pytest.mark.parametrize("name", ["integral", "integral-marginal", "integral-debiased", "soft-argmax-local"])
def test_beta_two_matches_the_reference(name, rng):
    # beta = 1 takes a shortcut (no multiplication); any other value must scale
    maps = bump_maps(rng)
    params = dict(PARAMS, beta=2.0)
    got = decode(torch.from_numpy(maps), name, **params).numpy()
    references = {
        "integral": lambda h: ref_integral(h, 2.0),
        "integral-marginal": lambda h: ref_integral_marginal(h, 2.0),
        "integral-debiased": lambda h: ref_integral_debiased(h, 2.0),
        "soft-argmax-local": lambda h: ref_soft_argmax_local(h, 2.0, PARAMS["window_radius"]),
    }
    for b in range(maps.shape[0]):
        for k in range(maps.shape[1]):
            np.testing.assert_allclose(got[b, k], references[name](maps[b, k]), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(DECODERS))
def test_defaults_are_the_registry_defaults(name, rng):
    # decode() passes only the parameters it is given: the functions' own defaults must
    # be those of DECODER_PARAMS (beta 1, dark_kernel 11, window_radius 2)
    maps = torch.from_numpy(noisy_maps(rng))
    defaults = {"beta": 1.0, "dark_kernel": 11, "window_radius": 2}
    assert decode(maps, name).tolist() == decode(maps, name, **defaults).tolist()
    references = {
        "dark": lambda h: ref_dark(h, 11),
        "dark-udp": lambda h: ref_dark_udp(h, 11),
        "integral": lambda h: ref_integral(h, 1.0),
        "integral-marginal": lambda h: ref_integral_marginal(h, 1.0),
        "integral-debiased": lambda h: ref_integral_debiased(h, 1.0),
        "soft-argmax-local": lambda h: ref_soft_argmax_local(h, 1.0, 2),
    }
    if name in references:
        got = decode(maps, name).numpy()
        for b in range(maps.shape[0]):
            for k in range(maps.shape[1]):
                np.testing.assert_allclose(got[b, k], references[name](maps[b, k].numpy()), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(DECODERS))
def test_each_map_is_decoded_on_its_own(name, rng):
    # A softmax taken over more than one map would still sum to one per batch, and the
    # expectation's division would hide it, until one map is far below the other: its
    # weights then underflow (float32 exp(-300) = 0). Lowering one map by a constant
    # changes no decoder's answer for that map, and none for the other map.
    maps = torch.from_numpy(bump_maps(rng)).float()
    alone = decode(maps, name)
    shifted = maps.clone()
    shifted[:, 1] -= 300.0
    got = decode(shifted, name)
    assert torch.equal(got[:, 0], alone[:, 0])
    if name in ("dark", "dark-udp", "integral-l1", "integral-debiased"):
        return  # not shift-invariant by design: the clip before the log, relu and
        # exp(h) - 1 all see the zero level
    # the shift moves float32 rounding of the logits: 300 carries 2^-15 of absolute error
    torch.testing.assert_close(got[:, 1], alone[:, 1], atol=2e-3, rtol=0)


@pytest.mark.parametrize("name", list(DECODERS))
def test_autograd_does_not_change_the_coordinates(name, rng):
    # With autograd on, some steps avoid in-place operations: the numbers must not move.
    maps = torch.from_numpy(bump_maps(rng))
    plain = decode(maps, name)
    tracked = decode(maps.clone().requires_grad_(), name)
    torch.testing.assert_close(tracked.detach(), plain, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", list(DECODERS))
def test_half_precision_input_is_decoded_in_float32(name):
    maps = render_heatmaps(torch.tensor([[[5.3, 4.6]], [[6.2, 3.7]]]), (10, 11), 1.5, amplitude=2.0)
    for dtype in (torch.float16, torch.bfloat16):
        got = decode(maps.to(dtype), name)
        assert got.dtype == torch.float32, dtype
        # the same numbers as the float32 decode of the rounded maps
        torch.testing.assert_close(got, decode(maps.to(dtype).float(), name), atol=0, rtol=0)


@pytest.mark.parametrize("name", ["argmax", "argmax-quarter", "integral-marginal", "integral-l1", "soft-argmax-local"])
def test_decoders_stay_on_the_device_of_the_maps(name):
    # The meta device (shapes, no data) stands in for an accelerator: any tensor made on
    # the CPU by mistake meets the maps in an operation and raises. (DARK and the
    # integral and its debiased form branch on values, a map weighed again where its
    # exp overflowed, which the meta device does not have.)
    out = decode(torch.empty(2, 3, 12, 10, device="meta"), name)
    assert out.device.type == "meta" and out.shape == (2, 3, 2) and out.dtype == torch.float32


def test_quarter_offset_on_every_pixel_of_a_small_map():
    # A peak at each pixel in turn, its right and lower neighbours higher than its left
    # and upper ones: +1/4 on each axis where both neighbours exist (1 <= x <= W - 2).
    height, width = 5, 6
    maps = torch.zeros(height, width, height, width, dtype=torch.float64)
    expected = torch.zeros(height, width, 2, dtype=torch.float64)
    for y in range(height):
        for x in range(width):
            maps[y, x, y, x] = 10.0
            if x + 1 < width:
                maps[y, x, y, x + 1] = 2.0
            if y + 1 < height:
                maps[y, x, y + 1, x] = 2.0
            if x > 0:
                maps[y, x, y, x - 1] = 1.0
            if y > 0:
                maps[y, x, y - 1, x] = 1.0
            expected[y, x] = torch.tensor(
                [x + (0.25 if 1 <= x <= width - 2 else 0.0), y + (0.25 if 1 <= y <= height - 2 else 0.0)]
            )
    torch.testing.assert_close(decode(maps, "argmax-quarter"), expected, atol=0, rtol=0)


def test_many_maps_are_weighed_in_blocks_with_the_same_numbers():
    # 130 maps of 64x48 float32 are weighed 64 at a time (BLOCK_BYTES); each map's result
    # must match the per-map reference, no block may be skipped, and nothing may warn
    # (an output buffer of the wrong shape would be resized with a warning).
    import warnings

    generator = np.random.default_rng(7)
    maps = render_heatmaps(torch.from_numpy(generator.uniform(6, 40, (65, 2, 2))), (64, 48), 2.0, amplitude=3.0).float()
    maps = maps + 0.1 * torch.from_numpy(generator.random(maps.shape)).float()
    references = {
        "integral": lambda h: ref_integral(h, 1.0),
        "integral-l1": ref_integral_l1,
        "integral-debiased": lambda h: ref_integral_debiased(h, 1.0),
    }
    for name, reference in references.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = decode(maps, name).numpy()
        for b in range(maps.shape[0]):
            for k in range(maps.shape[1]):
                # float32 maps and sums over 3072 pixels: 1e-4 px is ~100 ulp of a coordinate
                np.testing.assert_allclose(got[b, k], reference(maps[b, k].double().numpy()), atol=1e-4, rtol=0)


def border_maps(rng, amplitude=2.0):
    """Bumps centred on every side and corner of a 12x15 map, and one pixel in from
    them (where the +-1 and +-2 neighbourhoods first fit), plus a little positive noise.
    At amplitude 80 UDP-DARK's ceiling of 50 bites: the whole-map blur, border included."""
    centres = [(0, 0), (14, 0), (0, 11), (14, 11), (7, 0), (0, 5), (14, 6), (7, 11), (1, 1), (13, 10), (2, 2), (12, 9)]
    centres = torch.tensor(centres, dtype=torch.float64).view(6, 2, 2) + torch.from_numpy(
        rng.uniform(-0.3, 0.3, (6, 2, 2))
    )
    maps = render_heatmaps(centres, (12, 15), 1.5, amplitude=amplitude).numpy()
    return maps + 0.05 * rng.random(maps.shape)


@pytest.mark.parametrize("amplitude", [2.0, 80.0])
@pytest.mark.parametrize("name", list(DECODERS))
def test_peaks_on_the_border_match_the_reference(name, amplitude, rng):
    maps = border_maps(rng, amplitude)
    got = decode(torch.from_numpy(maps), name, **PARAMS).numpy()
    # both fits stop at a tolerance (see test_matches_reference); the others are exact
    tolerance = 1e-8 if name == "gaussian-fit" else 1e-9
    for b in range(maps.shape[0]):
        for k in range(maps.shape[1]):
            np.testing.assert_allclose(
                got[b, k], REFERENCES[name](maps[b, k]), rtol=tolerance, atol=tolerance, err_msg=f"map {b},{k}"
            )


def test_refinements_default_to_the_kernel_of_eleven(rng):
    from integral_cli.decoders.argmax import get_heatmap_maximum
    from integral_cli.decoders.dark import refine_dark, refine_dark_udp

    # bump maps take the local blur, clamped ones the whole-map blur; without the
    # maxima handed in, the refinements find them
    for maps in (torch.from_numpy(bump_maps(rng)), torch.from_numpy(clamped_maps(rng))):
        coords, peak = get_heatmap_maximum(maps)
        for refine in (refine_dark, refine_dark_udp):
            assert torch.equal(refine(maps, coords), refine(maps, coords, 11, peak))


def test_dark_keeps_the_argmax_where_the_log_is_flat():
    # A map below the clip everywhere (raw outputs all negative): the log is the floor's
    # at every pixel, so the Hessian is 0 and there is no step to take.
    maps = torch.full((1, 1, 9, 9), -1.0)
    maps[0, 0, 4, 5] = -0.5
    assert decode(maps, "dark").tolist() == [[[5.0, 4.0]]]


def test_opencv_sigma_and_the_kernel_size_rule():
    from integral_cli.decoders.registry import kernel_size_for_sigma, opencv_sigma

    # 0.3 ((k - 1) / 2 - 1) + 0.8, by hand
    assert [opencv_sigma(k) for k in (3, 9, 11, 17)] == pytest.approx([0.8, 1.7, 2.0, 2.9], abs=1e-12)
    # the odd size whose sigma is nearest; never below 3
    assert [kernel_size_for_sigma(s) for s in (0.1, 1.0, 1.7, 2.0, 2.9, 3.0)] == [3, 5, 9, 11, 17, 17]
    # and at most the largest kernel accepted (0.3 ((101 - 1) / 2 - 1) + 0.8 = 15.5)
    assert kernel_size_for_sigma(15.5) == 101 and kernel_size_for_sigma(40.0) == 101
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=rf"^a kernel size needs a sigma > 0, got {bad}$"):
            kernel_size_for_sigma(bad)


@pytest.mark.parametrize("size", [1, 3, 5, 7, 9, 11, 25])
def test_gaussian_kernel_is_opencvs(size):
    from integral_cli.decoders.dark import gaussian_kernel

    kernel = gaussian_kernel(size)
    assert kernel.dtype == torch.float64
    np.testing.assert_allclose(kernel.numpy(), opencv_kernel(size), rtol=1e-15, atol=1e-17)
    assert gaussian_kernel(size, dtype=torch.float32).dtype == torch.float32
    assert gaussian_kernel(size, device="meta").device.type == "meta"


def test_half_precision_on_the_clipped_paths_is_decoded_in_float32(rng):
    # the clamped family takes the whole-map blur, where the rescale factor is computed
    maps = torch.from_numpy(clamped_maps(rng))
    for name in ("dark", "dark-udp"):
        got = decode(maps.half(), name, dark_kernel=7)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, decode(maps.half().float(), name, dark_kernel=7), atol=0, rtol=0)


@pytest.mark.parametrize("name", ["dark", "dark-udp"])
def test_dark_blurs_whole_only_the_maps_where_the_clip_bites(name, rng, monkeypatch):
    # in a batch mixing both families, and for bumps whose peak is below 1
    from integral_cli.decoders import dark

    blurred_whole = []
    real = dark.blur_maps
    monkeypatch.setattr(dark, "blur_maps", lambda maps, kernel: blurred_whole.append(len(maps)) or real(maps, kernel))
    clamped = torch.from_numpy(clamped_maps(rng))
    decode(clamped, name, **PARAMS)
    alone = blurred_whole.pop()
    mixed = torch.cat([torch.from_numpy(bump_maps(rng)), clamped])
    decode(mixed, name, **PARAMS)
    assert blurred_whole == [alone]
    decode(torch.from_numpy(bump_maps(rng)) / 4, name, **PARAMS)  # peaks about 0.5
    assert blurred_whole == [alone]
    if name == "dark":
        # DARK takes no step from the border, so it has no need of the whole blur there
        maps = torch.full((1, 1, 9, 9), -1.0)
        maps[0, 0, 4, 0] = -0.5
        decode(maps, name)
        assert blurred_whole == [alone]


def sharp_maps(rng):
    """Narrow spikes on a negative background: with little or no blur, the pixels two
    steps from the peak, which DARK's differences read, fall under the clip."""
    centres = torch.from_numpy(rng.uniform(3, 9, (4, 2, 2)))
    spikes = render_heatmaps(centres, (12, 13), 0.5, amplitude=3.0).numpy()
    return spikes - rng.uniform(0.5, 1.5, (4, 2, 1, 1)) + 0.01 * rng.random(spikes.shape)


@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("name", ["dark", "dark-udp"])
def test_dark_where_the_clip_bites_on_the_pixels_it_reads(name, kernel, rng):
    maps = sharp_maps(rng)
    reference = ref_dark if name == "dark" else ref_dark_udp
    got = decode(torch.from_numpy(maps), name, dark_kernel=kernel).numpy()
    clipped = 0
    for b in range(maps.shape[0]):
        for k in range(maps.shape[1]):
            np.testing.assert_allclose(got[b, k], reference(maps[b, k], kernel), rtol=1e-9, atol=1e-9)
            x, y = ref_argmax(maps[b, k])
            clipped += ref_modulated(maps[b, k], kernel)[y, x + 2] < 1e-3
    assert clipped >= 2  # the family does what it is for


def ref_patch(h, x, y, radius, edge):
    """The (2r+1)^2 neighbourhood of pixel (x, y), one pixel at a time."""
    height, width = h.shape
    out = np.zeros((2 * radius + 1, 2 * radius + 1))
    for j in range(-radius, radius + 1):
        for i in range(-radius, radius + 1):
            yy, xx = y + j, x + i
            if edge:
                out[j + radius, i + radius] = h[min(max(yy, 0), height - 1), min(max(xx, 0), width - 1)]
            elif 0 <= yy < height and 0 <= xx < width:
                out[j + radius, i + radius] = h[yy, xx]
    return out


@pytest.mark.parametrize("edge", [False, True])
@pytest.mark.parametrize("radius, crossing", [(1, 3), (3, 0), (3, 2), (3, 10), (4, 3)])
def test_gather_patches_against_a_plain_reference(radius, crossing, edge, rng):
    # 5 x 3 maps of 20x20; `crossing` of the 15 patches reach over the border (at most
    # 20% of them are read through the window view, more take the index path)
    from integral_cli.decoders.common import gather_patches

    maps = torch.from_numpy(rng.normal(size=(5, 3, 20, 20)))
    inner = rng.integers(radius, 20 - radius, (5, 3, 2))
    outer = rng.integers(0, radius, (5, 3, 2)) * rng.choice([1, -1], (5, 3, 2)) % 20
    order = rng.permutation(15)[:crossing]
    points = inner.reshape(15, 2)
    points[order] = outer.reshape(15, 2)[order]
    points[order, rng.integers(0, 2, crossing)] = 19 - rng.integers(0, radius, crossing)
    x, y = (torch.from_numpy(points[:, i].reshape(5, 3)) for i in (0, 1))
    got = gather_patches(maps, x, y, radius, edge=edge).numpy()
    for b in range(5):
        for k in range(3):
            np.testing.assert_array_equal(
                got[b, k], ref_patch(maps[b, k].numpy(), int(x[b, k]), int(y[b, k]), radius, edge)
            )


def test_gather_patches_reads_maps_narrower_than_the_patch(rng):
    from integral_cli.decoders.common import gather_patches

    for size in ((5, 20), (20, 5)):
        maps = torch.from_numpy(rng.normal(size=(2, 2, *size)))
        x, y = torch.tensor([[2, 4], [0, 1]]), torch.tensor([[1, 3], [4, 0]])
        got = gather_patches(maps, x, y, 3)
        for b in range(2):
            for k in range(2):
                np.testing.assert_array_equal(
                    got[b, k].numpy(), ref_patch(maps[b, k].numpy(), int(x[b, k]), int(y[b, k]), 3, False)
                )


def test_window_view_from_seven_pixels_square_to_the_map_size(monkeypatch):
    # below 7x7, or when the patch is larger than the map, one index per pixel
    from integral_cli.decoders import common

    calls = []
    real = common._gather_clamped
    monkeypatch.setattr(common, "_gather_clamped", lambda *a, **k: calls.append(a[4]) or real(*a, **k))
    centre = torch.tensor([[3]])
    common.gather_patches(torch.rand(1, 1, 7, 7), centre, centre, 3)  # 7x7 of a 7x7 map
    assert calls == []
    common.gather_patches(torch.rand(1, 1, 7, 7), centre, centre, 2)  # 5x5
    assert calls == [False]


@pytest.mark.parametrize("name", list(DECODERS))
def test_a_nan_map_leaves_the_other_maps_alone(name, rng):
    maps = torch.from_numpy(bump_maps(rng))
    alone = decode(maps, name, **PARAMS)
    maps[1, 0, 5, 5] = float("nan")
    got = decode(maps, name, **PARAMS)
    assert torch.isnan(got[1, 0]).all()
    keep = torch.ones(3, 2, dtype=torch.bool)
    keep[1, 0] = False
    assert torch.equal(got[keep], alone[keep])


def test_decoder_name_checks_say_what_is_wrong():
    from integral_cli.decoders import check_decoder_names

    assert check_decoder_names(("dark", "argmax")) == ("dark", "argmax")
    with pytest.raises(ConfigError, match=r"^no decoders given$"):
        check_decoder_names(())
    with pytest.raises(ConfigError, match=r"^a decoder is listed twice in decoders$"):
        check_decoder_names(("argmax", "dark", "argmax"))
    with pytest.raises(ConfigError, match=r"^unknown decoder 'nope'; choose from argmax, argmax-quarter, dark,"):
        check_decoder_names(("argmax", "nope"))


def test_kernel_size_check_wants_a_positive_odd_int():
    from integral_cli.decoders.registry import check_kernel_size

    assert check_kernel_size(1) == 1 and check_kernel_size(11) == 11
    for bad in (11.0, "11", True, 0, -1, 4):
        with pytest.raises(
            ConfigError, match=rf"^dark_kernel must be a positive odd integer, got {re.escape(repr(bad))}$"
        ):
            check_kernel_size(bad)


def test_decoder_parameter_ranges_name_the_parameter():
    with pytest.raises(ConfigError, match=r"^dark_kernel must be an integer >= 1 and <= 101, got 103$"):
        decode(torch.rand(1, 1, 8, 8), "dark", dark_kernel=103)  # odd, but above 101
    assert decode(torch.rand(1, 1, 8, 8), "dark", dark_kernel=101).shape == (1, 1, 2)
    with pytest.raises(ConfigError, match=rf"known: {', '.join(DECODER_PARAMS)}$"):
        decode(torch.rand(1, 1, 4, 4), "integral", temperature=2.0)


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_debiased_integral_where_exp_overflows_weighs_with_beta(beta):
    # Two bumps, peaks 200 and 190: exp(beta h) overflows float32 (beta h > 88.7), so
    # the map is weighed in the softmax's scale, where beta must still scale the logits.
    # Beta sets how narrow the weights are about each peak (sigma / sqrt(beta A)) and how
    # much the second bump weighs (exp(-10 beta)): the formula below puts x at 10.39 for
    # beta 0.5, 10.02 for beta 1 and 10.0002 for beta 2.
    centres = torch.tensor([[[10.3, 20.6], [30.2, 20.1]]], dtype=torch.float64)
    bumps = render_heatmaps(centres, (40, 40), 3.0, amplitude=1.0)
    maps = (200.0 * bumps[:, :1] + 190.0 * bumps[:, 1:]).float()
    got = decode(maps, "integral-debiased", beta=beta)[0, 0].double()
    # the formula in float64, where exp(400) is finite: expectation under exp(beta h) - 1
    weights = torch.expm1(beta * maps[0, 0].double())
    ys, xs = torch.meshgrid(torch.arange(40.0).double(), torch.arange(40.0).double(), indexing="ij")
    expected = torch.stack(((weights * xs).sum(), (weights * ys).sum())) / weights.sum()
    # float32 softmax over 1600 pixels: 1e-4 px, far below the 0.02 px between betas
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", list(DECODERS))
def test_an_empty_batch_decodes_to_no_points(name):
    # (a chunk can be empty at the end of a split; the blocked integrals sized their
    # blocks from the first map, which an empty batch does not have)
    assert decode(torch.rand(0, 17, 16, 12), name).shape == (0, 17, 2)
    if DECODERS[name].volume_implementation is not None:
        assert decode(torch.rand(0, 3, 4, 5, 6), name).shape == (0, 3, 3)
