"""Which decoders can be trained through: autograd gradients of the decoded coordinate
with respect to the heatmap, checked against finite differences.

Everything is computed in float64 on rendered maps, one map per ground-truth point. The
maps are independent, so one backward pass of the summed x coordinates gives every
map's own gradient of its x (likewise y): no loop over maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
import torch

from integral_cli.checks import check_range
from integral_cli.coords import heatmap_to_image
from integral_cli.decoders import decode, get_decoder
from integral_cli.devices import resolve_device
from integral_cli.errors import DeviceError
from integral_cli.experiment import ExperimentConfig, check_runnable, render_maps, sample_truth

#: Default relative step of the central finite differences: each pixel moves by
#: ``eps * r * h`` with ``r`` standard normal.
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
        epsilon: relative step of the central differences (each pixel ``h`` moves by
            ``epsilon * r * h``, ``r`` standard normal and seeded).
    """

    experiment: ExperimentConfig = field(default_factory=lambda: ExperimentConfig(samples=16))
    epsilon: float = DEFAULT_EPSILON

    def __post_init__(self) -> None:
        check_range(self.epsilon, "epsilon", 0, 1.0, low_open=True)


def gradient_report(config: GradConfig) -> pd.DataFrame:
    """For each decoder: does the decoded point pass a gradient to the heatmap, how large
    is it, and does it match finite differences?

    The coordinate is read in image pixels (``experiment.convention``), so gradients are
    image pixels per unit of heatmap value. The finite-difference check compares, per map
    and axis, the autograd directional derivative ``<grad, v>`` along ``v = r * h`` (``r``
    standard normal, seeded) with ``(f(h + eps v) - f(h - eps v)) / (2 eps)``. A step in
    proportion to each pixel's value keeps every pixel on its side of zero, so the check
    never straddles the kink of ``integral-l1``'s relu at 0 (where Gaussian tails sit);
    it still moves every pixel whose value is not 0.

    Returns:
        One row per decoder with the columns :data:`GRAD_COLUMNS`:

        * ``gradient``: ``"yes"``, ``"zero"`` (a graph, but every entry is 0) or
          ``"none"`` (the coordinate does not depend on the map through autograd).
        * ``grad_norm``: mean over maps of the Frobenius norm of the ``2 x (H W)``
          Jacobian of ``(x, y)``.
        * ``support_px``: mean number of pixels with a non-zero gradient.
        * ``fd_derivative``: mean absolute finite-difference directional derivative (for
          a decoder without a gradient, 0 where it is piecewise constant; large where
          the step crosses a jump, such as the quarter offset's choice on a tie).
        * ``max_relative_difference``: the largest ``|auto - fd| / (sum_i |g_i v_i| + R)``
          over maps and axes: the terms of ``<g, v>`` set the size of its rounding
          errors, and ``R`` is the smallest derivative the difference quotient can
          resolve to :data:`AGREEMENT_TOLERANCE` (float64 rounding of the coordinates
          over the step); NaN without a gradient.
        * ``agrees``: the difference is within :data:`AGREEMENT_TOLERANCE`; ``None``
          without a gradient (there is nothing to agree with).

    Raises:
        ConfigError: a setting out of range.
        DeviceError: the device is missing or cannot compute in float64 (MPS).
    """
    experiment = config.experiment
    check_runnable(experiment)
    device = resolve_device(experiment.device)
    if device.type == "mps":
        raise DeviceError("the gradient check computes in float64, which MPS does not support; use --device cpu")
    truth = sample_truth(experiment, device).double()
    maps = render_maps(experiment, truth, 0)
    generator = torch.Generator(device=device).manual_seed(experiment.seed)
    direction = torch.randn(maps.shape, generator=generator, device=device, dtype=maps.dtype) * maps
    rows = [_check_decoder(experiment, name, maps, direction, config.epsilon) for name in experiment.decoders]
    return pd.DataFrame(rows, columns=list(GRAD_COLUMNS))


def _decoded_image(experiment: ExperimentConfig, maps: torch.Tensor, name: str) -> torch.Tensor:
    decoded = decode(maps, name, **experiment.decoder_params)
    return heatmap_to_image(decoded, experiment.stride, experiment.resolved_decode_convention,
                            tuple(experiment.image_size))


def _resolution(coords: torch.Tensor, epsilon: float) -> float:
    """The smallest directional derivative a central difference resolves to
    :data:`AGREEMENT_TOLERANCE`: float64 rounding of the coordinates (a few units in
    the last place of the largest) divided by the step, and by the tolerance."""
    largest = coords.abs().nan_to_num(0.0).max().item()
    rounding = 16 * torch.finfo(torch.float64).eps * max(largest, 1.0)
    return rounding / (2 * epsilon) / AGREEMENT_TOLERANCE


def _check_decoder(
    experiment: ExperimentConfig, name: str, maps: torch.Tensor, direction: torch.Tensor, epsilon: float
) -> dict[str, object]:
    leaf = maps.detach().requires_grad_()
    coords = _decoded_image(experiment, leaf, name)  # (B, 1, 2)
    with torch.no_grad():
        ahead = _decoded_image(experiment, maps + epsilon * direction, name)
        behind = _decoded_image(experiment, maps - epsilon * direction, name)
    finite_difference = ((ahead - behind) / (2 * epsilon)).flatten()  # (B * 2,) per map: x, y
    row: dict[str, object] = {
        "decoder": name,
        "declared_differentiable": get_decoder(name).differentiable,
        "fd_derivative": finite_difference.abs().mean().item(),
    }
    if not coords.requires_grad:
        return row | {"gradient": "none", "grad_norm": 0.0, "support_px": 0.0,
                      "max_relative_difference": math.nan, "agrees": None}
    # the maps are independent, so the gradient of a sum holds each map's own gradient
    grad_x, grad_y = (
        torch.autograd.grad(coords[..., axis].sum(), leaf, retain_graph=axis == 0, allow_unused=True)[0]
        for axis in (0, 1)
    )
    grad_x = torch.zeros_like(leaf) if grad_x is None else grad_x
    grad_y = torch.zeros_like(leaf) if grad_y is None else grad_y
    jacobian = torch.stack((grad_x, grad_y), dim=2).flatten(-2)  # (B, 1, 2, H*W)
    terms = jacobian * direction.flatten(-2).unsqueeze(2)
    autograd = terms.sum(-1).flatten()
    # rounding in either estimate scales with the size of the terms summed, not with
    # the sum, which cancels to nearly 0 for a point at a pixel centre
    scale = terms.abs().sum(-1).flatten() + _resolution(coords.detach(), epsilon)
    relative = torch.where(scale > 0, (autograd - finite_difference).abs() / scale, 0.0)
    largest = relative.max().item()
    nonzero = jacobian.ne(0).any(dim=2)  # (B, 1, H*W)
    return row | {
        "gradient": "yes" if bool(nonzero.any()) else "zero",
        "grad_norm": torch.linalg.vector_norm(jacobian, dim=(-2, -1)).mean().item(),
        "support_px": nonzero.sum(-1).double().mean().item(),
        "max_relative_difference": largest,
        "agrees": largest <= AGREEMENT_TOLERANCE,
    }
