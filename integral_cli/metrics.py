"""Errors between decoded and ground-truth points, and their summaries.

Units: image pixels unless a name ends in ``_hm`` (heatmap pixels), ``_z`` or ``_3d``
(voxels, for volumes). Imports no torch until something is computed (the CSV columns are
read by the settings table).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from integral_cli.checks import check_points
from integral_cli.errors import ShapeError

if TYPE_CHECKING:
    import torch

#: Summary statistics, in the order they appear in the CSV.
SUMMARY_FIELDS: tuple[str, ...] = (
    "mean_error",
    "median_error",
    "p95_error",
    "max_error",
    "rmse",
    "bias_x",
    "bias_y",
    "mean_error_hm",
    "mean_error_z",
    "mean_error_3d",
    "ci95_low",
    "ci95_high",
    "nonfinite",
)

#: The statistics of volumes only (NaN for heatmaps): the mean ``|dz|`` and the mean 3D
#: distance, in voxels.
VOLUME_FIELDS: tuple[str, ...] = ("mean_error_z", "mean_error_3d")

#: Two-sided 95% quantile of the standard normal distribution.
Z_95 = 1.959963984540054


def euclidean_errors(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-point Euclidean distance.

    Args:
        predicted: ``(B, K, 2)`` decoded points ``(x, y)``.
        target: ``(B, K, 2)`` ground-truth points, same units.

    Returns:
        ``(B, K)`` distances in the units of the inputs (NaN where a prediction is NaN).

    >>> euclidean_errors(torch.tensor([[[3.0, 4.0]]]), torch.zeros(1, 1, 2))
    tensor([[5.]])
    """
    check_points(predicted, "predicted")
    check_points(target, "target")
    if predicted.shape != target.shape:
        raise ShapeError(f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} differ")
    import torch

    return torch.linalg.vector_norm(predicted - target, dim=-1)


def quantile_sorted(sorted_values: torch.Tensor, q: float) -> torch.Tensor:
    """Quantile ``q`` of ascending ``sorted_values`` with linear interpolation.

    The same rule as ``numpy.quantile``'s default: position ``q * (n - 1)``.

    >>> quantile_sorted(torch.tensor([1.0, 2.0, 3.0, 4.0]), 0.5)
    tensor(2.5000)
    """
    n = sorted_values.shape[0]
    position = q * (n - 1)
    low = int(position)
    high = min(low + 1, n - 1)
    fraction = position - low
    return sorted_values[low] + fraction * (sorted_values[high] - sorted_values[low])


def summarize_offsets(offsets: torch.Tensor, stride: float) -> dict[str, float]:
    """Summary of signed offsets ``predicted - target`` in image pixels.

    Statistics are taken over the finite offsets; ``nonfinite`` counts the others.

    Args:
        offsets: ``(N, 2)`` signed offsets ``(dx, dy)`` in image pixels.
        stride: image pixels per heatmap pixel, or per SimCC bin (``1 / k``), for
            ``mean_error_hm``.

    Returns:
        A dict keyed by :data:`SUMMARY_FIELDS`: mean, median, 95th percentile and maximum
        Euclidean error, RMSE (root of the mean squared Euclidean error), signed mean
        offsets ``bias_x`` and ``bias_y``, the mean error in heatmap pixels, the normal
        95% confidence interval of the mean error, and the count of non-finite results;
        the :data:`VOLUME_FIELDS` are NaN. Statistics of an empty finite set are NaN.
    """
    import torch

    from integral_cli.devices import accumulation_dtype

    if offsets.ndim != 2 or offsets.shape[-1] != 2:
        raise ShapeError(f"offsets must have shape (N, 2), got {tuple(offsets.shape)}")
    offsets = offsets.to(accumulation_dtype(offsets.device))
    finite = torch.isfinite(offsets).all(dim=-1)
    nonfinite = int(offsets.shape[0] - finite.sum().item())
    kept = offsets[finite]
    n = kept.shape[0]
    summary = dict.fromkeys(SUMMARY_FIELDS, float("nan"))
    summary["nonfinite"] = nonfinite
    if n == 0:
        return summary
    errors = torch.linalg.vector_norm(kept, dim=-1)
    ordered = torch.sort(errors).values
    mean = errors.mean()
    std_error = errors.std() / n**0.5 if n > 1 else torch.full_like(mean, torch.nan)
    names = [name for name in SUMMARY_FIELDS if name not in (*VOLUME_FIELDS, "nonfinite")]
    stats = torch.stack(
        (
            mean,
            quantile_sorted(ordered, 0.5),
            quantile_sorted(ordered, 0.95),
            ordered[-1],
            (errors**2).mean().sqrt(),
            kept[:, 0].mean(),
            kept[:, 1].mean(),
            mean / stride,
            mean - Z_95 * std_error,
            mean + Z_95 * std_error,
        )
    ).tolist()
    summary.update(zip(names, stats, strict=True))
    return summary


def summarize_volume_offsets(
    offsets: torch.Tensor, stride: int, voxels_per_image_px: tuple[float, float]
) -> dict[str, float]:
    """Summary of signed 3D offsets ``predicted - target``.

    Args:
        offsets: ``(N, 3)`` offsets ``(dx, dy, dz)``: x and y in image pixels, z in voxels.
        stride: image pixels per heatmap pixel (for ``mean_error_hm``).
        voxels_per_image_px: ``(scale_x, scale_y)``, the voxels per image pixel along x
            and y (``1 / stride`` under the center and corner conventions).

    Returns:
        The statistics of :func:`summarize_offsets` of the ``(x, y)`` offsets (over the
        points whose three offsets are finite), with ``mean_error_z``, the mean
        ``|dz|``, and ``mean_error_3d``, the mean 3D distance, in voxels.

    >>> summary = summarize_volume_offsets(torch.tensor([[4.0, 0.0, 0.5], [0.0, 0.0, -1.5]]), 4, (0.25, 0.25))
    >>> summary["mean_error"], summary["mean_error_z"], summary["mean_error_3d"]
    (2.0, 1.0, 1.3090169943749475)
    """
    import torch

    from integral_cli.devices import accumulation_dtype

    if offsets.ndim != 2 or offsets.shape[-1] != 3:
        raise ShapeError(f"offsets must have shape (N, 3), got {tuple(offsets.shape)}")
    offsets = offsets.to(accumulation_dtype(offsets.device))
    finite = torch.isfinite(offsets).all(dim=-1)
    summary = summarize_offsets(torch.where(finite.unsqueeze(-1), offsets[:, :2], torch.nan), stride)
    kept = offsets[finite]
    if kept.shape[0]:
        scale = kept.new_tensor([*voxels_per_image_px, 1.0])
        summary["mean_error_z"] = kept[:, 2].abs().mean().item()
        summary["mean_error_3d"] = torch.linalg.vector_norm(kept * scale, dim=-1).mean().item()
    return summary
