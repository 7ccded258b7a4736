"""Decoders of volumes against plain per-volume references (``volume_references``), the
official code's 3D integral, and the closed form of the softmax's pull in 3D."""

import math

import numpy as np
import pytest
import torch

from integral_cli import DECODERS, decode
from integral_cli.decoders import decoders_for
from integral_cli.decoders.volume import volume_argmax
from integral_cli.errors import ConfigError

from volume_references import PARAMS, VOLUME_REFERENCES, gaussian_volume

VOLUME_DECODERS = decoders_for("volume")


# ------------------------------------------------------------------ volume families
SIZE = (9, 10, 11)  # D, H, W: every axis its own length, so a swapped axis shows


def bump_volumes(rng):
    """Gaussian bumps plus a little noise, peaks anywhere, the faces included."""
    volumes = [gaussian_volume(rng.uniform(-0.4, np.array(SIZE[::-1]) - 0.6), SIZE, 1.5, 2.0) for _ in range(6)]
    return np.stack(volumes).reshape(3, 2, *SIZE) + 0.05 * rng.random((3, 2, *SIZE))


def noisy_volumes(rng):
    """Rough volumes with negative values (DARK's clamp bites here)."""
    return rng.normal(size=(2, 2, *SIZE)) + 3 * rng.random((2, 2, *SIZE)) ** 4


def interior_volumes(rng):
    """Bumps well inside, where DARK blurs only the neighbourhood of the peak."""
    volumes = [gaussian_volume(rng.uniform(3.5, 5.5, 3), SIZE, 1.2, 5.0) for _ in range(4)]
    return np.stack(volumes).reshape(2, 2, *SIZE) + 0.02 * rng.random((2, 2, *SIZE))


def small_volumes(rng):
    """Volumes smaller than DARK's neighbourhood (9^3 voxels at kernel 5): blurred whole."""
    size = (6, 7, 8)
    volumes = [gaussian_volume(rng.uniform(2.5, 3.5, 3), size, 1.0, 4.0) for _ in range(2)]
    return np.stack(volumes).reshape(1, 2, *size) + 0.02 * rng.random((1, 2, *size))


def loud_float32_volumes(rng):
    """float32 volumes loud enough that beta * h (1.7 x 70) overflows float32's exp."""
    volumes = [gaussian_volume(rng.uniform(2, 7, 3), SIZE, 3.0, 70.0) for _ in range(4)]
    return (np.stack(volumes).reshape(2, 2, *SIZE) + 0.1 * rng.random((2, 2, *SIZE))).astype(np.float32)


#: float64 volumes agree with the float64 references to rounding. float32 volumes are
#: decoded in float32: sums of up to 990 weights of about 1e-3 relative spread, and DARK's
#: log differences, move a point by up to ~1e-5 voxel; 1e-4 is ten times that.
FAMILIES = {
    "bump": (bump_volumes, 1e-9),
    "noisy": (noisy_volumes, 1e-9),
    "interior": (interior_volumes, 1e-9),
    "small": (small_volumes, 1e-9),
    "loud float32": (loud_float32_volumes, 1e-4),
}


def test_every_decoder_of_volumes_has_a_reference_and_an_implementation():
    assert set(VOLUME_REFERENCES) == set(VOLUME_DECODERS)
    # MMPose's UDP refinement and the least-squares fit are 2D only
    assert set(DECODERS) - set(VOLUME_DECODERS) == {"dark-udp", "gaussian-fit"}
    for decoder in DECODERS.values():
        assert ("volume" in decoder.representations) == (decoder.volume_implementation is not None)


@pytest.mark.parametrize("name", VOLUME_DECODERS)
class TestEveryDecoderOfVolumes:
    def test_shape_dtype(self, name):
        out = decode(torch.rand(3, 5, 6, 7, 8), name)
        assert out.shape == (3, 5, 3) and out.dtype == torch.float32
        assert decode(torch.rand(1, 1, 5, 5, 5, dtype=torch.float64), name).dtype == torch.float64

    @pytest.mark.parametrize("family", list(FAMILIES))
    def test_matches_reference(self, name, family, rng):
        make, tolerance = FAMILIES[family]
        volumes = make(rng)
        got = decode(torch.from_numpy(volumes), name, **PARAMS)
        assert got.dtype == torch.from_numpy(volumes).dtype
        for b in range(volumes.shape[0]):
            for k in range(volumes.shape[1]):
                expected = VOLUME_REFERENCES[name](volumes[b, k].astype(np.float64))
                np.testing.assert_allclose(
                    got[b, k].double().numpy(), expected, rtol=tolerance, atol=tolerance, err_msg=f"volume {b},{k}"
                )

    def test_autograd_does_not_change_the_coordinates(self, name, rng):
        # with autograd on the expectations weigh every volume shifted by its maximum, in
        # new tensors instead of one reused buffer: the numbers must not move (float64,
        # rounding far below 1e-12)
        volumes = torch.from_numpy(bump_volumes(rng))
        plain = decode(volumes, name, **PARAMS)
        tracked = decode(volumes.clone().requires_grad_(), name, **PARAMS)
        torch.testing.assert_close(tracked.detach(), plain, atol=1e-12, rtol=0)

    def test_input_not_modified(self, name):
        volumes = torch.rand(2, 2, 6, 7, 8)
        before = volumes.clone()
        decode(volumes, name, beta=2.0)
        assert torch.equal(volumes, before)

    def test_nan_volume_gives_nan(self, name):
        volumes = torch.rand(2, 1, 6, 6, 6)
        volumes[1, 0, 2, 3, 4] = float("nan")
        out = decode(volumes, name)
        assert torch.isfinite(out[0]).all() and torch.isnan(out[1]).all()

    def test_recovers_a_centred_gaussian(self, name):
        # an odd 17x15x13 volume: its centre (6, 7, 8) is a voxel centre and the Gaussian is
        # symmetric about it, so even the softmax's pull cancels (the off-centre round trip
        # below catches a decoder that returns the centre)
        volumes = torch.from_numpy(gaussian_volume((6.0, 7.0, 8.0), (17, 15, 13), 2.0, 10.0))[None, None]
        torch.testing.assert_close(decode(volumes, name), torch.tensor([[[6.0, 7.0, 8.0]]], dtype=torch.float64))

    def test_batches_do_not_mix(self, name, rng):
        # each volume's result is the same alone as in a batch (the blocked sums of the
        # integrals cover whole volumes; float64, so rounding is far below 1e-12)
        volumes = torch.from_numpy(bump_volumes(rng))
        together = decode(volumes, name)
        alone = torch.cat([decode(volumes[b : b + 1], name) for b in range(volumes.shape[0])])
        torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)


@pytest.mark.parametrize("beta", [1.0, 0.7])
@pytest.mark.parametrize("name", [name for name in VOLUME_DECODERS if DECODERS[name].differentiable])
def test_gradient_of_volumes_matches_finite_differences(name, beta):
    # a small volume, bump in the interior plus noise: the decoders that declare a
    # gradient give torch's finite-difference Jacobian (gradcheck, float64); under
    # autograd the expectations take their shifted path, in new tensors
    generator = torch.Generator().manual_seed(9)
    volumes = torch.from_numpy(gaussian_volume((2.3, 2.6, 2.4), (5, 6, 5), 1.2, 2.0))[None, None]
    volumes = (volumes + 0.01 * torch.rand(volumes.shape, generator=generator, dtype=torch.float64)).requires_grad_()
    params = {"beta": beta} if "beta" in DECODERS[name].params else {}
    assert torch.autograd.gradcheck(lambda v: decode(v, name, **params), (volumes,))


def test_volume_argmax_is_the_first_maximum_of_the_flat_volume():
    # numpy's argmax of each flat volume is the reference: first maximum in memory order,
    # a NaN the maximum. Ties within a slice and across slices, a NaN after a larger
    # value, two NaNs, an infinity before a NaN, and values in few levels so ties abound.
    rng = np.random.default_rng(11)
    volumes = rng.integers(0, 4, size=(3, 4, 5, 6, 7)).astype(np.float32)
    volumes[0, 0] = 0.0
    volumes[0, 0, 3, 1, 2] = volumes[0, 0, 1, 4, 5] = volumes[0, 0, 1, 4, 6] = 9.0  # first: slice 1
    volumes[0, 1, 0, 0, 0] = 50.0
    volumes[0, 1, 4, 5, 6] = np.nan  # the NaN wins over the larger value before it
    volumes[0, 2, 2, 0, 3] = volumes[0, 2, 1, 5, 0] = np.nan  # the first NaN in memory order
    volumes[0, 3, 0, 2, 2] = np.inf
    volumes[0, 3, 3, 0, 0] = np.nan
    volumes[1, 0] = -1.0  # all equal: the first voxel
    volumes[1, 1] = -np.inf  # all -inf: the first voxel
    volumes[1, 2] = 0.0
    volumes[1, 2, 1, 2, 3] = -0.0  # -0 and +0 tie: the first voxel
    volumes[1, 3, 2:] = -np.inf
    volumes[1, 3, 4, 5, 6] = 7.0  # a maximum after two slices of -inf
    expected = np.argmax(volumes.reshape(3, 4, -1), axis=-1)
    assert expected[0, 0] == (1 * 6 + 4) * 7 + 5  # the case is what it says
    # float32 and float64 go through numpy's argmax, float16 and bfloat16 through torch's
    # (every value here is exact in all four)
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        got = volume_argmax(torch.from_numpy(volumes).to(dtype))
        np.testing.assert_array_equal(got.numpy(), expected, err_msg=str(dtype))


def test_large_volumes_are_summed_in_blocks_as_whole_volumes_are():
    # 64x64x48 float32 volumes are 768 KiB each, a block each; 96x64x48 ones are summed in
    # slabs of depth slices. Against the float64 reference, float32 sums of 3e5 weights:
    # relative 1e-6 of a coordinate below 96, so 1e-4 voxel.
    for size in ((64, 64, 48), (96, 64, 48)):
        center = (20.3, 30.7, 41.2)
        volume = gaussian_volume(center, size, 3.0, 3.0)
        for name in ("integral", "integral-debiased", "integral-l1"):
            got = decode(torch.from_numpy(volume).float()[None, None], name, beta=1.7)[0, 0].double().numpy()
            np.testing.assert_allclose(got, VOLUME_REFERENCES[name](volume), atol=1e-4, err_msg=f"{name} {size}")


def official_integral_3d(preds, beta=1.0):
    """The official code's 3D path (Sun et al., integral-human-pose, softmax_integral_tensor
    with output_3d): softmax over the flattened volume, the marginals by summing over two
    axes, the expectation over the indices."""
    batch, joints, depth, height, width = preds.shape
    heatmaps = torch.softmax(beta * preds.reshape(batch, joints, -1), 2).reshape(batch, joints, depth, height, width)
    accu_x = heatmaps.sum(dim=2).sum(dim=2)
    accu_y = heatmaps.sum(dim=2).sum(dim=3)
    accu_z = heatmaps.sum(dim=3).sum(dim=3)
    x = (accu_x * torch.arange(width, dtype=preds.dtype)).sum(dim=2)
    y = (accu_y * torch.arange(height, dtype=preds.dtype)).sum(dim=2)
    z = (accu_z * torch.arange(depth, dtype=preds.dtype)).sum(dim=2)
    return torch.stack((x, y, z), dim=-1)


@pytest.mark.parametrize("size", [(16, 20, 24), (64, 64, 48)])
def test_integral_equals_the_official_3d_code(size, rng):
    # The official path's arithmetic carried out in float64 is the reference. Ours decodes
    # float32 volumes in float32: each block's weights sum to a relative few 1e-7, which
    # moves a coordinate below 64 by under 1e-5 voxel. (The official code run in float32
    # is itself off by up to 7e-5 voxel on 64x64x48 volumes: its plain float32 sums of the
    # index-weighted marginals.)
    centers = rng.uniform(2, np.array(size[::-1]) - 3, (6, 3))
    volumes = np.stack([gaussian_volume(c, size, 2.0, 10.0) for c in centers]).reshape(3, 2, *size)
    volumes = torch.from_numpy(volumes + 0.3 * rng.random(volumes.shape)).float()
    for beta in (1.0, 0.5):
        ours = decode(volumes, "integral", beta=beta).double()
        torch.testing.assert_close(ours, official_integral_3d(volumes.double(), beta), rtol=0, atol=1e-5)
    torch.testing.assert_close(
        decode(volumes.double(), "integral"), official_integral_3d(volumes.double()), rtol=0, atol=1e-10
    )


# ------------------------------------------------------------------------ the pull
def pull_series(amplitude, sigma):
    """``S = sum (e^h - 1)`` over a volume holding ``A exp(-d^2 / 2 sigma^2)``: with the sum
    over voxels replaced by the integral, ``(2 pi)^{3/2} sigma^3 sum_k A^k / (k^{3/2} k!)``."""
    terms = sum(amplitude**k / (k**1.5 * math.factorial(k)) for k in range(1, 60))
    return (2 * math.pi) ** 1.5 * sigma**3 * terms


@pytest.mark.parametrize("amplitude", [1.0, 4.0])
def test_the_softmax_pull_in_3d(amplitude):
    # E = (N c + S mu) / (N + S) with N = D H W and c the volume's centre. The sum over voxels
    # equals the integral in S to ~exp(-2 pi^2 sigma^2 / k) relative per term (Poisson
    # summation), below 1e-6 at sigma 2 for the terms that matter at these amplitudes; the
    # bump lies at least 5 sigma inside, so its cut tails change S by less than 1e-6
    # relative. 1e-4 voxel covers both, far below the pull itself (several voxels).
    size = (26, 30, 32)
    mu = np.array([13.3, 15.6, 11.8])
    volume = torch.from_numpy(gaussian_volume(mu, size, 2.0, amplitude))[None, None]
    n = size[0] * size[1] * size[2]
    c = np.array([(size[2] - 1) / 2, (size[1] - 1) / 2, (size[0] - 1) / 2])
    s = pull_series(amplitude, 2.0)
    expected = (n * c + s * mu) / (n + s)
    got = decode(volume, "integral")[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert np.linalg.norm(got - mu) > 1.0  # the pull is real
    # the debiased form removes that pull: what is left is the drift of the sampled mean of
    # the weights e^h - 1, whose high powers of the Gaussian are narrower than it (under
    # 1e-5 voxel at amplitude 4)
    np.testing.assert_allclose(decode(volume, "integral-debiased")[0, 0].numpy(), mu, atol=1e-4)


def test_a_decoder_of_heatmaps_only_refuses_volumes():
    with pytest.raises(ConfigError, match="decoder 'dark-udp' does not apply to volumes; its decoders: argmax"):
        decode(torch.rand(1, 1, 4, 4, 4), "dark-udp")


@pytest.mark.parametrize("amplitude", [1e-3, 1e-2, 1.0, 10.0])
def test_debiased_integral_is_as_exact_in_float32_at_any_amplitude(amplitude):
    # as for maps: exp(h) - 1 as exp then a subtraction moved the point by 6e-4 voxel at
    # amplitude 1e-3; such volumes are weighed again with expm1, so float32 volumes land
    # within float32 sums' rounding (about 1e-6 voxel) of the float64 decode
    rng = np.random.default_rng(8)
    volumes = np.stack([gaussian_volume(rng.uniform(5, 15, 3), (20, 24, 26), 2.0, amplitude) for _ in range(8)])
    volumes = torch.from_numpy(volumes.reshape(4, 2, 20, 24, 26)).float()
    expected = decode(volumes.double(), "integral-debiased")
    torch.testing.assert_close(decode(volumes, "integral-debiased").double(), expected, atol=1e-5, rtol=0)


def test_a_volume_whose_exp_is_subnormal_is_weighed_shifted():
    # a volume near -100: float32 exp(h) is subnormal, with a few significant digits; it
    # is weighed again shifted by its maximum and matches the float64 softmax of the same
    # values to float32 rounding (sums of 210 weights: 1e-6 voxel)
    generator = torch.Generator().manual_seed(5)
    volume = torch.from_numpy(gaussian_volume((2.3, 3.6, 4.2), (5, 6, 7), 1.2, 3.0))
    volume = (volume + 0.05 * torch.rand(volume.shape, generator=generator, dtype=torch.float64) - 100.0).float()
    assert torch.exp(volume).max() < torch.finfo(torch.float32).tiny  # the case is what it says
    expected = official_integral_3d(volume.double()[None, None])
    torch.testing.assert_close(decode(volume[None, None], "integral").double(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["integral", "integral-debiased"])
def test_a_volume_whose_exp_overflows_or_underflows_is_weighed_shifted(name):
    # three volumes in one batch: an ordinary one, one whose exp(h) overflows float32
    # (peak 500) and one whose exp(h) underflows everywhere (background -500); the last
    # two are weighed again shifted by their maximum and land on their peak voxel, while
    # the first keeps its own result (as decoded alone)
    generator = torch.Generator().manual_seed(4)
    volumes = torch.rand(1, 3, 6, 7, 8, generator=generator)
    volumes[0, 1, 2, 3, 4] = 500.0
    volumes[0, 2] = -500.0
    volumes[0, 2, 5, 1, 6] = -400.0
    points = decode(volumes, name)
    alone = decode(volumes[:, :1].clone(), name)
    # decoded in another batch: the same sums, maybe split otherwise across threads
    torch.testing.assert_close(points[:, :1], alone, rtol=1e-6, atol=1e-6)
    assert points[0, 1].tolist() == pytest.approx([4.0, 3.0, 2.0], abs=1e-6)
    if name == "integral":  # every weight but the peak's is exp(-100) of it
        assert points[0, 2].tolist() == pytest.approx([6.0, 1.0, 5.0], abs=1e-6)
