"""The error field: decoded minus true as a function of where the ground truth lies."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pandas as pd
import torch

from integral_cli.checks import check_range
from integral_cli.coords import heatmap_to_image
from integral_cli.devices import check_dtype, resolve_device, run_on_device
from integral_cli.errors import ConfigError
from integral_cli.experiment import MEMORY_ADVICE, ProgressCallback, evaluate_points
from integral_cli.settings import ExperimentConfig

#: Columns of the field table: true position (heatmap and image px), signed error and
#: its length (image px).
FIELD_COLUMNS: tuple[str, ...] = ("x_hm", "y_hm", "x_img", "y_img", "dx", "dy", "error")
MAX_DENSITY = 64
#: Most lattice points one field may have (each is a whole map to render and decode).
MAX_POINTS = 2_000_000


def lattice_points(heatmap_size: tuple[int, int], density: int) -> torch.Tensor:
    """A regular lattice over the whole heatmap area ``[-0.5, side - 0.5]``.

    ``density`` points per heatmap pixel along each axis, at ``(i + 0.5) / density - 0.5``,
    row by row (x fastest).

    Returns:
        ``(H * density * W * density, 2)`` points ``(x, y)`` in heatmap pixels, float64.

    >>> lattice_points((1, 2), 2)[:5].tolist()
    [[-0.25, -0.25], [0.25, -0.25], [0.75, -0.25], [1.25, -0.25], [-0.25, 0.25]]
    """
    height, width = heatmap_size
    xs = (torch.arange(width * density, dtype=torch.float64) + 0.5) / density - 0.5
    ys = (torch.arange(height * density, dtype=torch.float64) + 0.5) / density - 0.5
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 2)


def error_field(
    config: ExperimentConfig,
    decoder: str,
    density: int = 4,
    *,
    progress: ProgressCallback | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Decode a dense lattice of ground-truth positions covering the whole heatmap.

    Each lattice point is encoded and decoded exactly as ``compare`` does for its random
    points (same encoder, noise, distractor, conventions, dtype and decoder parameters).

    Args:
        config: the experiment; its sampling, position and samples are not used.
        decoder: the decoder to map.
        density: lattice points per heatmap pixel along each axis.
        progress: called with the number of points finished.
        on_warning: called when a chunk is halved after running out of memory.

    Returns:
        One row per lattice point, columns :data:`FIELD_COLUMNS`.
    """
    config.require_heatmaps("the error map")
    check_range(density, "density", 1, MAX_DENSITY, integer=True)
    points = config.heatmap_size[0] * config.heatmap_size[1] * density**2
    if points > MAX_POINTS:
        raise ConfigError(
            f"a {config.heatmap_size[0]}x{config.heatmap_size[1]} heatmap at density {density} is {points:,} maps "
            f"to decode, more than {MAX_POINTS:,}; lower «density» or raise «stride»"
        )
    points_hm = lattice_points(config.heatmap_size, density)
    # the lattice replaces the sampling: no margin applies
    config = dataclasses.replace(
        config,
        decoders=(decoder,),
        samples=points_hm.shape[0],
        position="anywhere",
        margin=None,
        sampling="random",
    )
    device = resolve_device(config.device)
    check_dtype(device, config.dtype)
    # the lattice stays in host memory; evaluate_points moves one chunk at a time
    truth = heatmap_to_image(points_hm, config.stride, config.convention, config.image_size)
    render_dtype = torch.float64 if config.dtype == "float64" else torch.float32
    truth = truth.float().to(render_dtype).unsqueeze(1)
    decoded = run_on_device(
        device, lambda: evaluate_points(config, truth, progress=progress, on_warning=on_warning), MEMORY_ADVICE
    )
    offsets = decoded.offsets[decoder].double()
    image = truth[:, 0].double()
    return pd.DataFrame(
        {
            "x_hm": points_hm[:, 0].numpy(),
            "y_hm": points_hm[:, 1].numpy(),
            "x_img": image[:, 0].numpy(),
            "y_img": image[:, 1].numpy(),
            "dx": offsets[:, 0].numpy(),
            "dy": offsets[:, 1].numpy(),
            "error": offsets.norm(dim=-1).numpy(),
        },
        columns=list(FIELD_COLUMNS),
    )
