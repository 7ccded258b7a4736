"""Coordinate conventions: the one place they are defined.

* Coordinates are ``(x, y)``: the last dimension of every coordinate tensor has size 2,
  x first.
* Pixel centres sit at integer coordinates: pixel ``i`` covers ``[i - 0.5, i + 0.5]``.
* Heatmaps are ``(B, K, H, W)``, coordinates ``(B, K, 2)``; sizes are written ``(H, W)``.
* A heatmap is the image divided by the stride ``s``: ``H = H_img / s``, ``W = W_img / s``.
* Image <-> heatmap mapping, default ``"center"`` (pixel-centre aligned)::

      x_hm = (x_img + 0.5) / s - 0.5          x_img = s * (x_hm + 0.5) - 0.5

  ``"corner"`` (MMPose MSRA, the Integral Human Pose code): ``x_hm = x_img / s``.
  ``"udp"`` (unbiased data processing): ``x_hm = x_img * (W - 1) / (W_img - 1)``.

Under ``"center"`` and ``"corner"`` a distance of ``d`` heatmap pixels is ``s * d`` image
pixels.

SimCC vectors (coordinate classification) split each image axis into bins of ``1 / k``
image pixel, ``k`` the split ratio: ``round(W_img * k)`` bins along x and
``round(H_img * k)`` along y. Bin ``i`` sits at::

      x_img = (i + 0.5) / k - 0.5   ("center")          x_img = i / k   ("corner", MMPose)

which is the heatmap mapping at a stride of ``1 / k``; ``"udp"`` does not apply.

Imports no torch until a tensor is mapped (the settings table uses :func:`heatmap_size`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

from integral_cli.errors import ConfigError

if TYPE_CHECKING:
    import torch

Convention = Literal["center", "corner", "udp"]
CONVENTIONS: tuple[str, ...] = get_args(Convention)


def heatmap_size(image_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Heatmap size ``(H, W)`` for an image of ``image_size = (H_img, W_img)`` pixels.

    Args:
        image_size: image height and width in pixels.
        stride: image pixels per heatmap pixel.

    Returns:
        ``(H_img // stride, W_img // stride)``.

    Raises:
        ConfigError: a size or the stride is not positive, or a side is not a multiple of
            the stride (the message names the nearest valid sizes).

    >>> heatmap_size((256, 192), 4)
    (64, 48)
    """
    if stride < 1:
        raise ConfigError(f"«stride» must be a positive integer, got {stride}")
    for name, side in zip(("height", "width"), image_size, strict=True):
        if side < 1:
            raise ConfigError(f"image {name} must be positive, got {side}")
        if side % stride:
            below = side - side % stride
            above = below + stride
            nearest = f"{below} or {above}" if below > 0 else f"{above}"
            raise ConfigError(
                f"«image_size»: image {name} {side} is not a multiple of stride {stride}; "
                f"nearest valid {name}: {nearest}"
            )
    return image_size[0] // stride, image_size[1] // stride


def convention_scales(
    convention: str, stride: int, image_size: tuple[int, int] | None = None
) -> tuple[tuple[float, float], float]:
    """Per-axis ``((scale_x, scale_y), offset)`` with ``x_hm = scale * x_img + offset``.

    Raises:
        ConfigError: an unknown convention, or ``udp`` without an image size or with a
            heatmap narrower than 2 pixels.

    >>> convention_scales("center", 4)
    ((0.25, 0.25), -0.375)
    """
    if convention == "center":
        return (1.0 / stride, 1.0 / stride), 0.5 / stride - 0.5
    if convention == "corner":
        return (1.0 / stride, 1.0 / stride), 0.0
    if convention == "udp":
        if image_size is None:
            raise ConfigError("the 'udp' «convention» needs the image size")
        h_img, w_img = image_size
        h_hm, w_hm = heatmap_size(image_size, stride)
        if h_hm < 2 or w_hm < 2:
            raise ConfigError(
                f"the 'udp' «convention» needs a heatmap at least 2 pixels on each side (this one is {h_hm}x{w_hm})"
            )
        return ((w_hm - 1) / (w_img - 1), (h_hm - 1) / (h_img - 1)), 0.0
    raise ConfigError(f"unknown «convention» {convention!r}; choose from {', '.join(CONVENTIONS)}")


def image_to_heatmap(
    points_img: torch.Tensor,
    stride: int,
    convention: str = "center",
    image_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Map image coordinates to heatmap coordinates.

    Args:
        points_img: ``(..., 2)`` points ``(x, y)`` in image pixels.
        stride: image pixels per heatmap pixel.
        convention: ``"center"`` (default), ``"corner"`` or ``"udp"``.
        image_size: ``(H_img, W_img)``, needed by ``"udp"`` only.

    Returns:
        ``(..., 2)`` points in heatmap pixels, same dtype and device.

    >>> image_to_heatmap(torch.tensor([[1.5, 5.5]]), stride=4)
    tensor([[0., 1.]])
    """
    (scale_x, scale_y), offset = convention_scales(convention, stride, image_size)
    if scale_x == scale_y:
        return points_img * scale_x + offset
    return points_img * points_img.new_tensor([scale_x, scale_y]) + offset


def heatmap_to_image(
    points_hm: torch.Tensor,
    stride: int,
    convention: str = "center",
    image_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Map heatmap coordinates to image coordinates (the mirror of :func:`image_to_heatmap`).

    Args:
        points_hm: ``(..., 2)`` points ``(x, y)`` in heatmap pixels.
        stride: image pixels per heatmap pixel.
        convention: ``"center"`` (default), ``"corner"`` or ``"udp"``.
        image_size: ``(H_img, W_img)``, needed by ``"udp"`` only.

    Returns:
        ``(..., 2)`` points in image pixels, same dtype and device.

    >>> heatmap_to_image(torch.tensor([[0.0, 1.0]]), stride=4)
    tensor([[1.5000, 5.5000]])
    """
    (scale_x, scale_y), offset = convention_scales(convention, stride, image_size)
    if scale_x == scale_y:
        return (points_hm - offset) / scale_x
    return (points_hm - offset) / points_hm.new_tensor([scale_x, scale_y])


#: The conventions SimCC vectors can use.
SIMCC_CONVENTIONS: tuple[str, ...] = ("center", "corner")


def simcc_size(image_size: tuple[int, int], split_ratio: float) -> tuple[int, int]:
    """Bins ``(Ny, Nx)`` of the SimCC vectors of an image of ``(H_img, W_img)`` pixels:
    ``round(H_img * k)`` and ``round(W_img * k)`` (half to even, as MMPose rounds).

    Raises:
        ConfigError: a side would have no bin.

    >>> simcc_size((256, 192), 2.0)
    (512, 384)
    """
    bins = round(image_size[0] * split_ratio), round(image_size[1] * split_ratio)
    if min(bins) < 1:
        raise ConfigError(
            f"«split_ratio» {split_ratio:g} leaves no bin along a side of a {image_size[0]}x{image_size[1]} image"
        )
    return bins


def simcc_scale(convention: str, split_ratio: float) -> tuple[float, float]:
    """``(scale, offset)`` with ``x_bin = scale * x_img + offset`` for SimCC vectors.

    Raises:
        ConfigError: a convention SimCC vectors cannot use (``udp``, or unknown).

    >>> simcc_scale("center", 2.0), simcc_scale("corner", 2.0)
    ((2.0, 0.5), (2.0, 0.0))
    """
    if convention == "center":
        return split_ratio, 0.5 * split_ratio - 0.5
    if convention == "corner":
        return split_ratio, 0.0
    raise ConfigError(
        f"the «convention» {convention!r} does not apply to SimCC vectors; choose from {', '.join(SIMCC_CONVENTIONS)}"
    )


def image_to_simcc(points_img: torch.Tensor, split_ratio: float, convention: str = "center") -> torch.Tensor:
    """Map image coordinates to SimCC bins.

    >>> image_to_simcc(torch.tensor([[0.0, 1.25]]), 2.0)
    tensor([[0.5000, 3.0000]])
    """
    scale, offset = simcc_scale(convention, split_ratio)
    return points_img * scale + offset


def simcc_to_image(points_bins: torch.Tensor, split_ratio: float, convention: str = "center") -> torch.Tensor:
    """Map SimCC bins to image coordinates (the mirror of :func:`image_to_simcc`).

    >>> simcc_to_image(torch.tensor([[0.5, 3.0]]), 2.0)
    tensor([[0.0000, 1.2500]])
    """
    scale, offset = simcc_scale(convention, split_ratio)
    return (points_bins - offset) / scale


def pixel_coordinates(
    n: int, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Centre coordinates ``0, 1, ..., n - 1`` of ``n`` pixels along one axis (float32
    unless ``dtype`` says otherwise)."""
    import torch

    return torch.arange(n, device=device, dtype=dtype or torch.float32)
