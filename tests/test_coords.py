import pytest
import torch

from integral_cli.coords import heatmap_size, heatmap_to_image, image_to_heatmap
from integral_cli.errors import ConfigError


class TestHeatmapSize:
    def test_divisible(self):
        assert heatmap_size((256, 192), 4) == (64, 48)
        assert heatmap_size((256, 192), 1) == (256, 192)

    def test_not_divisible_names_nearest_sizes(self):
        with pytest.raises(ConfigError, match=r"height 250 .* stride 4; nearest valid height: 248 or 252"):
            heatmap_size((250, 192), 4)
        with pytest.raises(ConfigError, match=r"width 190 .* nearest valid width: 184 or 192"):
            heatmap_size((256, 190), 8)

    def test_smaller_than_stride(self):
        with pytest.raises(ConfigError, match="nearest valid height: 8$"):
            heatmap_size((3, 8), 8)

    @pytest.mark.parametrize("size, stride", [((0, 4), 1), ((4, -4), 1), ((4, 4), 0)])
    def test_non_positive(self, size, stride):
        with pytest.raises(ConfigError):
            heatmap_size(size, stride)


class TestMapping:
    def test_center_known_values(self):
        # Image pixels 0..3 form heatmap pixel 0 at stride 4: its centre is image x = 1.5.
        # The left edge of image pixel 0 (x = -0.5) is the left edge of heatmap pixel 0.
        points = torch.tensor([[[1.5, 5.5], [-0.5, -0.5]]])
        expected = torch.tensor([[[0.0, 1.0], [-0.5, -0.5]]])
        torch.testing.assert_close(image_to_heatmap(points, 4), expected)

    def test_corner_known_values(self):
        points = torch.tensor([[[4.0, 10.0]]])
        torch.testing.assert_close(image_to_heatmap(points, 4, "corner"), torch.tensor([[[1.0, 2.5]]]))

    def test_udp_known_values(self):
        # 256x192 image -> 64x48 heatmap: x scale (48-1)/(192-1), y scale (64-1)/(256-1).
        points = torch.tensor([[[191.0, 255.0]]], dtype=torch.float64)
        out = image_to_heatmap(points, 4, "udp", image_size=(256, 192))
        torch.testing.assert_close(out, torch.tensor([[[47.0, 63.0]]], dtype=torch.float64))

    @pytest.mark.parametrize("convention", ["center", "corner", "udp"])
    @pytest.mark.parametrize("stride", [1, 2, 4, 8])
    def test_mirror_pair_round_trip(self, convention, stride):
        points = torch.rand(5, 3, 2, dtype=torch.float64) * 100
        there = image_to_heatmap(points, stride, convention, image_size=(256, 192))
        back = heatmap_to_image(there, stride, convention, image_size=(256, 192))
        torch.testing.assert_close(back, points)

    def test_distances_scale_by_stride(self):
        a, b = torch.tensor([[[3.0, 4.0]]]), torch.tensor([[[0.0, 0.0]]])
        d_img = (heatmap_to_image(a, 8) - heatmap_to_image(b, 8)).norm(dim=-1)
        assert d_img.item() == pytest.approx(40.0)

    def test_unknown_convention(self):
        with pytest.raises(ConfigError, match="unknown convention"):
            image_to_heatmap(torch.zeros(1, 1, 2), 4, "middle")


# ------------------------------------------------------ mutation-testing follow-ups
def test_udp_needs_the_image_size_and_two_heatmap_pixels_per_side():
    with pytest.raises(ConfigError, match=r"^the 'udp' convention needs the image size$"):
        image_to_heatmap(torch.zeros(1, 1, 2), 4, "udp")
    with pytest.raises(ConfigError, match=r"at least 2 pixels on each side \(this one is 1x16\)$"):
        image_to_heatmap(torch.zeros(1, 1, 2), 4, "udp", image_size=(4, 64))
    with pytest.raises(ConfigError, match=r"\(this one is 16x1\)$"):
        heatmap_to_image(torch.zeros(1, 1, 2), 4, "udp", image_size=(64, 4))
    # two pixels a side is enough: the image's last pixel maps onto the map's last
    out = image_to_heatmap(torch.tensor([[[63.0, 7.0]]]), 4, "udp", image_size=(8, 64))
    torch.testing.assert_close(out, torch.tensor([[[15.0, 1.0]]]))
    out = image_to_heatmap(torch.tensor([[[7.0, 63.0]]]), 4, "udp", image_size=(64, 8))
    torch.testing.assert_close(out, torch.tensor([[[1.0, 15.0]]]))


def test_udp_scale_is_exact_in_float64():
    # one multiplication by (W - 1) / (W_img - 1), computed in float64: x = 1 gives it back
    out = image_to_heatmap(torch.ones(1, 1, 2, dtype=torch.float64), 4, "udp", image_size=(256, 192))
    assert out.tolist() == [[[47 / 191, 63 / 255]]]


def test_unknown_convention_lists_the_choices():
    with pytest.raises(ConfigError, match=r"^unknown convention 'middle'; choose from center, corner, udp$"):
        heatmap_to_image(torch.zeros(1, 1, 2), 4, "middle")


@pytest.mark.parametrize("convention", ["center", "corner", "udp"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mapping_keeps_the_dtype(convention, dtype):
    points = torch.tensor([[[10.0, 20.0]]], dtype=dtype)
    assert image_to_heatmap(points, 4, convention, image_size=(256, 192)).dtype == dtype
    assert heatmap_to_image(points, 4, convention, image_size=(256, 192)).dtype == dtype


def test_pixel_coordinates_on_the_device_and_dtype_asked_for():
    from integral_cli.coords import pixel_coordinates

    assert pixel_coordinates(4).tolist() == [0.0, 1.0, 2.0, 3.0]
    assert pixel_coordinates(4).dtype == torch.float32
    assert pixel_coordinates(3, dtype=torch.float64).dtype == torch.float64
    assert pixel_coordinates(3, device="meta").device.type == "meta"


def test_messages_name_the_stride_and_the_side():
    with pytest.raises(ConfigError, match=r"^stride must be a positive integer, got 0$"):
        heatmap_size((8, 8), 0)
    with pytest.raises(ConfigError, match=r"^image width must be positive, got -4$"):
        heatmap_size((4, -4), 1)


def test_a_side_of_one_pixel_is_a_size():
    assert heatmap_size((1, 4), 1) == (1, 4)
    assert heatmap_size((4, 4), 4) == (1, 1)
