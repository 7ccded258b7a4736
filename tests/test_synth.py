import math

import numpy as np
import pytest
import torch

from integral_cli.coords import image_to_heatmap
from integral_cli.errors import ConfigError, ShapeError
from integral_cli.settings import default_margin
from integral_cli.synth import note_fwhm, render_heatmaps, sample_points


def reference_gaussian(center, size, sigma, amplitude):
    """Straightforward per-pixel formula, float64."""
    height, width = size
    out = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            d2 = (x - center[0]) ** 2 + (y - center[1]) ** 2
            out[y, x] = amplitude * math.exp(-d2 / (2 * sigma**2))
    return out


class TestRenderHeatmaps:
    def test_shape_and_device(self):
        maps = render_heatmaps(torch.rand(3, 2, 2) * 10, (12, 9), 1.5)
        assert maps.shape == (3, 2, 12, 9)
        assert maps.dtype == torch.float32

    def test_matches_per_pixel_formula(self, rng):
        centers = rng.uniform(0, 10, size=(2, 3, 2))
        maps = render_heatmaps(torch.from_numpy(centers), (11, 13), 1.7, amplitude=3.0)
        for b in range(2):
            for k in range(3):
                expected = reference_gaussian(centers[b, k], (11, 13), 1.7, 3.0)
                np.testing.assert_allclose(maps[b, k].numpy(), expected, rtol=1e-12, atol=1e-14)

    def test_fwhm_encoder_is_the_notes_formula(self):
        # The note: 10 * exp(-4 ln2 d^2 / fwhm^2) with fwhm = 4 for a box of side 64.
        fwhm = 4.0
        center = (3.0, 8.0)
        maps = render_heatmaps(
            torch.tensor([[center]], dtype=torch.float64), (64, 32), fwhm / 2.3548200450309493, encoder="fwhm"
        )
        ys, xs = np.mgrid[0:64, 0:32]
        expected = 10 * np.exp(-4 * np.log(2) * ((xs - center[0]) ** 2 + (ys - center[1]) ** 2) / fwhm**2)
        np.testing.assert_allclose(maps[0, 0].numpy(), expected, rtol=1e-12)

    def test_float32_tails_stop_short_of_subnormals(self):
        # each axis's Gaussian is exact down to e^-40 and 0 beyond, so no product of the
        # two is a float32 subnormal
        maps = render_heatmaps(torch.tensor([[[5.0, 7.0]]]), (200, 150), 1.0)[0, 0].double()
        ys, xs = np.mgrid[0:200, 0:150]
        ex, ey = -((xs - 5.0) ** 2) / 2, -((ys - 7.0) ** 2) / 2
        expected = np.where((ex >= -40) & (ey >= -40), np.exp(ex + ey), 0.0)
        np.testing.assert_allclose(maps.numpy(), expected, rtol=1e-6, atol=0)
        assert not ((maps != 0) & (maps < torch.finfo(torch.float32).tiny)).any()

    def test_a_tiny_sigma_between_pixels_still_peaks_there(self):
        # sigma 0.05 with the centre half a pixel from every pixel centre: the largest
        # values are e^-50 of the peak, kept, since the floor is relative to each axis's own
        maps = render_heatmaps(torch.tensor([[[2.5, 2.5]]]), (6, 6), 0.05)
        assert maps[0, 0, 2:4, 2:4].gt(0).all() and maps[0, 0, :2].eq(0).all()

    def test_input_not_modified(self):
        centers = torch.rand(2, 1, 2)
        before = centers.clone()
        render_heatmaps(centers, (8, 8), 1.0)
        assert torch.equal(centers, before)

    @pytest.mark.parametrize(
        "centers", [torch.zeros(2, 2), torch.zeros(1, 1, 3), torch.zeros(1, 1, 2, dtype=torch.int64)]
    )
    def test_bad_centers(self, centers):
        with pytest.raises(ShapeError):
            render_heatmaps(centers, (8, 8), 1.0)

    @pytest.mark.parametrize(
        "kwargs",
        [
            dict(sigma=0.0),
            dict(sigma=-1.0),
            dict(sigma=float("nan")),
            dict(size=(0, 4)),
            dict(size=(4,)),
            dict(encoder="box"),
            dict(amplitude=float("inf")),
        ],
    )
    def test_bad_arguments(self, kwargs):
        args = dict(size=(8, 8), sigma=1.0) | kwargs
        with pytest.raises(ConfigError):
            render_heatmaps(torch.zeros(1, 1, 2), **args)


def test_note_fwhm_rule():
    # int(sqrt(L) * L * 10 / 4096) + 3: L=64 -> int(1.25) + 3 = 4; L=256 -> int(10) + 3 = 13.
    assert note_fwhm(64) == 4
    assert note_fwhm(256) == 13


def test_default_margin():
    assert default_margin(2.0) == 6
    assert default_margin(1.5) == 5  # ceil(4.5)
    assert default_margin(0.25) == 1


class TestSamplePoints:
    def test_inside_margin_in_heatmap_pixels(self):
        g = torch.Generator().manual_seed(0)
        points = sample_points(5000, 2, (64, 48), 4, 6, g)
        hm = image_to_heatmap(points, 4)
        assert points.shape == (5000, 2, 2)
        assert hm[..., 0].min() >= 6 and hm[..., 0].max() <= 48 - 1 - 6
        assert hm[..., 1].min() >= 6 and hm[..., 1].max() <= 64 - 1 - 6
        # uniform: the mean sits in the middle of the allowed span
        assert hm[..., 0].mean().item() == pytest.approx(23.5, abs=0.5)

    def test_margin_zero_reaches_the_edges(self):
        g = torch.Generator().manual_seed(0)
        hm = image_to_heatmap(sample_points(20000, 1, (8, 8), 2, 0, g), 2)
        assert hm.min() < 0.01 and hm.max() > 6.99

    def test_same_seed_same_points(self):
        a = sample_points(100, 1, (16, 16), 4, 2, torch.Generator().manual_seed(7))
        b = sample_points(100, 1, (16, 16), 4, 2, torch.Generator().manual_seed(7))
        c = sample_points(100, 1, (16, 16), 4, 2, torch.Generator().manual_seed(8))
        assert torch.equal(a, b) and not torch.equal(a, c)

    def test_margin_too_large(self):
        with pytest.raises(ConfigError, match="leaves no room"):
            sample_points(1, 1, (8, 16), 4, 4, torch.Generator())
