"""Which decoders can be trained through: autograd gradients of the decoded coordinate
with respect to the heatmap, checked against finite differences.

Everything is computed in float64 on rendered maps, one map per ground-truth point, in
chunks that fit the memory budget. The maps are independent, so one backward pass of the
summed x coordinates gives every map's own gradient of its x (likewise y): no loop over
maps.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import pandas as pd
import torch

from integral_cli.checks import check_range
from integral_cli.decoders import decode, get_decoder
from integral_cli.devices import resolve_device, run_on_device
from integral_cli.errors import ConfigError, DeviceError
from integral_cli.experiment import MEMORY_ADVICE, Representation, check_runnable, representation_of
from integral_cli.settings import ExperimentConfig
from integral_cli.synth import DIRECTION_STREAM, counter_uniform

#: Default step of the central finite differences, in heatmap value units.
DEFAULT_EPSILON = 1e-6
#: Largest relative difference between the autograd and the finite-difference
#: directional derivatives for them to count as agreeing (float64, central differences).
AGREEMENT_TOLERANCE = 1e-5

#: The columns of the gradient report, in order.
GRAD_COLUMNS: tuple[str, ...] = (
    "decoder",
    "declared_differentiable",
    "gradient",
    "grad_norm",
    "support_px",
    "fd_derivative",
    "max_relative_difference",
    "agrees",
)


@dataclass(frozen=True)
class GradConfig:
    """A gradient check: the maps to check on and the finite-difference step.

    Attributes:
        experiment: the maps (stride, sigma, amplitude, encoder, image size, decoder
            parameters, seed, device); ``experiment.samples`` maps are checked.
        epsilon: step of the central differences: each pixel moves by up to
            ``epsilon``, and by at most half its value (see :func:`gradient_report`).
    """

    experiment: ExperimentConfig = field(default_factory=lambda: ExperimentConfig(samples=16))
    epsilon: float = DEFAULT_EPSILON

    def __post_init__(self) -> None:
        check_range(self.epsilon, "epsilon", 0, 1.0, low_open=True)
        self.experiment.require_heatmaps("the gradient check")


def gradient_report(config: GradConfig) -> pd.DataFrame:
    """For each decoder: does the decoded point pass a gradient to the heatmap, how large
    is it, and does it match finite differences?

    The coordinate is read in image pixels (``experiment.convention``), so gradients are
    image pixels per unit of heatmap value (for volumes, ``z`` in voxels). The finite-difference check compares, per map
    and axis, the autograd directional derivative ``<grad, v>`` with
    ``(f(h + eps v) - f(h - eps v)) / (2 eps)`` along ``v_i = r_i min(1, |h_i| / (2 eps))``,
    ``r`` uniform in ``[-1, 1]`` (a function of the seed and the map's index, not of the
    chunking). Every pixel at least ``2 eps`` from zero moves by up to ``eps``; one closer
    to zero moves by at most half its value, so no pixel crosses zero and the check never
    straddles the kink of ``integral-l1``'s relu, where Gaussian tails sit.

    Maps are checked in chunks that fit ``experiment.max_memory_mib``. The columns:

    * ``gradient``: ``"yes"``, ``"zero"`` (a graph, but every entry is 0) or ``"none"``
      (the coordinate does not depend on the map through autograd).
    * ``grad_norm``: mean over maps of the Frobenius norm of the ``2 x (H W)`` Jacobian
      of ``(x, y)`` (``3 x (D H W)`` of ``(x, y, z)`` for volumes).
    * ``support_px``: mean number of pixels with a non-zero gradient.
    * ``fd_derivative``: mean absolute finite-difference directional derivative (for a
      decoder without a gradient, 0 where it is piecewise constant; large where the step
      crosses a jump, such as the quarter offset's choice on a tie).
    * ``max_relative_difference``: the largest ``|auto - fd| / (sum_i |g_i v_i| + R)``
      over maps and axes: the terms of ``<g, v>`` set the size of its rounding errors, and
      ``R`` is the smallest derivative the difference quotient can resolve to
      :data:`AGREEMENT_TOLERANCE` (float64 rounding of the coordinate over the step);
      NaN without a gradient.
    * ``agrees``: the difference is within :data:`AGREEMENT_TOLERANCE`; ``None`` without
      a gradient (there is nothing to agree with).

    Returns:
        One row per decoder with the columns :data:`GRAD_COLUMNS`.

    Raises:
        ConfigError: a setting out of range, or not even one map fits the budget.
        DeviceError: the device is missing or cannot compute in float64 (MPS).
        OutOfMemoryError: the device ran out of memory.
    """
    experiment = config.experiment
    check_runnable(experiment)
    device = resolve_device(experiment.device)
    if device.type == "mps":
        raise DeviceError("the gradient check computes in float64, which MPS does not have; use «device» cpu")
    step = _chunk_maps(experiment)
    return run_on_device(device, lambda: _report(experiment, config.epsilon, step, device), MEMORY_ADVICE)


def _report(experiment: ExperimentConfig, epsilon: float, step: int, device: torch.device) -> pd.DataFrame:
    representation = representation_of(experiment)
    # on the CPU; one chunk at a time goes to the device
    truth = representation.sample_truth(experiment, torch.device("cpu")).double()
    exact = dataclasses.replace(experiment, dtype="float64")
    parts: dict[str, list[dict[str, torch.Tensor]]] = {name: [] for name in experiment.resolved_decoders}
    for start in range(0, truth.shape[0], step):
        maps = representation.render(exact, truth[start : start + step].to(device), start)
        direction = _direction(maps, experiment.seed, start, epsilon)
        for name in experiment.resolved_decoders:
            parts[name].append(_check_chunk(exact, representation, name, maps, direction, epsilon))
    rows = [_row(name, parts[name]) for name in experiment.resolved_decoders]
    return pd.DataFrame(rows, columns=list(GRAD_COLUMNS))


#: Float64 map-sized buffers alive per map while it is checked: the map, the direction,
#: two perturbed copies, two Jacobian rows, their product, and the decoders' own
#: temporaries and autograd graph (16 covers the most demanding, measured).
GRAD_BUFFERS = 16


def _chunk_maps(experiment: ExperimentConfig) -> int:
    shape = experiment.sample_shape
    per_map = math.prod(shape) * 8 * GRAD_BUFFERS
    budget = experiment.max_memory_mib * 2**20
    if per_map > budget:
        what = "volume" if len(shape) == 3 else "map"
        raise ConfigError(
            f"checking one {'x'.join(map(str, shape))} {what} needs about {math.ceil(per_map / 2**20)} MiB, more "
            f"than the memory budget of {experiment.max_memory_mib:g} MiB"
        )
    return int(budget // per_map)


def _direction(maps: torch.Tensor, seed: int, first_sample: int, epsilon: float) -> torch.Tensor:
    """``r * min(1, |h| / (2 eps))`` with ``r`` uniform in ``[-1, 1]`` per pixel."""
    batch = maps.shape[0]
    index = torch.arange(first_sample, first_sample + batch, device=maps.device)
    uniform = counter_uniform(seed, DIRECTION_STREAM, index, maps[0].numel()).view(maps.shape)
    return (2 * uniform - 1) * (maps.abs() / (2 * epsilon)).clamp(max=1.0)


def _decoded_image(
    experiment: ExperimentConfig, representation: Representation, maps: torch.Tensor, name: str
) -> torch.Tensor:
    return representation.to_truth_units(experiment, decode(maps, name, **experiment.decoder_params))


def _resolution(coords: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Per coordinate, the smallest directional derivative a central difference resolves
    to :data:`AGREEMENT_TOLERANCE`: float64 rounding of the coordinate (a few units in the
    last place) divided by the step, and by the tolerance."""
    rounding = 16 * torch.finfo(torch.float64).eps * coords.abs().nan_to_num(0.0).clamp(min=1.0)
    return rounding / (2 * epsilon) / AGREEMENT_TOLERANCE


def _check_chunk(
    experiment: ExperimentConfig,
    representation: Representation,
    name: str,
    maps: torch.Tensor,
    direction: torch.Tensor,
    epsilon: float,
) -> dict[str, torch.Tensor]:
    """Per map of one chunk: the finite differences and, with a graph, the gradient's
    norm, support and relative difference."""
    leaf = maps.detach().requires_grad_()
    coords = _decoded_image(experiment, representation, leaf, name)  # (B, 1, C)
    with torch.no_grad():
        ahead = _decoded_image(experiment, representation, maps + epsilon * direction, name)
        behind = _decoded_image(experiment, representation, maps - epsilon * direction, name)
    result = {"fd": ((ahead - behind) / (2 * epsilon)).flatten()}  # (B * C,) per map: x, y[, z]
    if not coords.requires_grad:
        return result
    # the maps are independent, so the gradient of a sum holds each map's own gradient
    axes = coords.shape[-1]
    grads = [
        torch.autograd.grad(coords[..., axis].sum(), leaf, retain_graph=axis < axes - 1, allow_unused=True)[0]
        for axis in range(axes)
    ]
    jacobian = torch.stack([torch.zeros_like(leaf) if g is None else g for g in grads], dim=2).flatten(3)
    terms = jacobian * direction.flatten(2).unsqueeze(2)  # (B, 1, C, pixels)
    autograd = terms.sum(-1).flatten()
    # rounding in either estimate scales with the size of the terms summed, not with
    # the sum, which cancels to nearly 0 for a point at a pixel centre
    scale = terms.abs().sum(-1).flatten() + _resolution(coords.detach().flatten(), epsilon)
    nonzero = jacobian.ne(0).any(dim=2)  # (B, 1, H*W)
    return result | {
        "relative": (autograd - result["fd"]).abs() / scale,
        "norm": torch.linalg.vector_norm(jacobian, dim=(-2, -1)).flatten(),
        "support": nonzero.sum(-1).flatten().double(),
    }


def _row(name: str, chunks: list[dict[str, torch.Tensor]]) -> dict[str, object]:
    joined = {key: torch.cat([chunk[key] for chunk in chunks]) for key in chunks[0]}
    row: dict[str, object] = {
        "decoder": name,
        "declared_differentiable": get_decoder(name).differentiable,
        "fd_derivative": joined["fd"].abs().mean().item(),
    }
    if "norm" not in joined:
        return row | {
            "gradient": "none",
            "grad_norm": 0.0,
            "support_px": 0.0,
            "max_relative_difference": math.nan,
            "agrees": None,
        }
    largest = joined["relative"].max().item()
    return row | {
        "gradient": "yes" if bool(joined["support"].gt(0).any()) else "zero",
        "grad_norm": joined["norm"].mean().item(),
        "support_px": joined["support"].mean().item(),
        "max_relative_difference": largest,
        "agrees": largest <= AGREEMENT_TOLERANCE,
    }
