"""The decoder registry: one table that the API, the CLI choices and the tests all read.

A decoder is a pure function ``(B, K, H, W) -> (B, K, 2)`` returning ``(x, y)`` in
heatmap pixels; it never modifies its input and loops over no sample or keypoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from integral_cli.checks import check_heatmaps, check_range
from integral_cli.decoders.argmax import decode_argmax, decode_argmax_quarter, get_heatmap_maximum
from integral_cli.decoders.dark import check_kernel_size, decode_dark, decode_dark_udp
from integral_cli.decoders.integral import (
    decode_integral,
    decode_integral_debiased,
    decode_integral_l1,
    decode_integral_marginal,
    decode_soft_argmax_local,
)
from integral_cli.errors import ConfigError

#: Every parameter any decoder takes, with its default. ``decode`` passes each decoder
#: only the ones it declares, so callers may hand the same settings to every decoder.
DECODER_PARAMS: dict[str, float | int] = {"beta": 1.0, "dark_kernel": 11, "window_radius": 2}


@dataclass(frozen=True)
class Decoder:
    """One registry entry.

    Attributes:
        name: the name used by the API and the CLI.
        function: ``(heatmaps, **params) -> (B, K, 2)`` coordinates in heatmap pixels.
        differentiable: whether gradients flow from the coordinates back to the heatmap.
        reference: where the method comes from.
        description: one line saying what it does.
        params: names of the parameters (keys of ``DECODER_PARAMS``) it takes.
    """

    name: str
    function: Callable[..., torch.Tensor]
    differentiable: bool
    reference: str
    description: str
    params: tuple[str, ...] = ()


DECODERS: dict[str, Decoder] = {
    d.name: d
    for d in (
        Decoder(
            "argmax",
            decode_argmax,
            differentiable=False,
            reference="Newell et al., Stacked Hourglass Networks, ECCV 2016",
            description="location of the maximum, on the pixel grid (first on ties)",
        ),
        Decoder(
            "argmax-quarter",
            decode_argmax_quarter,
            differentiable=False,
            reference="Xiao et al., Simple Baselines, ECCV 2018; HRNet; MMPose",
            description="argmax, then 0.25 px toward the larger neighbour per axis",
        ),
        Decoder(
            "dark",
            decode_dark,
            differentiable=True,
            reference="Zhang et al., Distribution-Aware Coordinate Representation, CVPR 2020",
            description="argmax, then a Newton step on the log of the blurred map (interior only)",
            params=("dark_kernel",),
        ),
        Decoder(
            "dark-udp",
            decode_dark_udp,
            differentiable=True,
            reference="Huang et al., Unbiased Data Processing, CVPR 2020",
            description="DARK with clipped log, edge padding, step-1 differences, -(H+eps I)^-1 grad",
            params=("dark_kernel",),
        ),
        Decoder(
            "integral",
            decode_integral,
            differentiable=True,
            reference="Sun et al., Integral Human Pose Regression, ECCV 2018",
            description="expectation under softmax(beta*h) over all H*W pixels",
            params=("beta",),
        ),
        Decoder(
            "integral-marginal",
            decode_integral_marginal,
            differentiable=True,
            reference="the seed note's modification of Sun et al. 2018",
            description="1D softmax(beta*m) of the raw x and y marginal sums, then expectation",
            params=("beta",),
        ),
        Decoder(
            "integral-debiased",
            decode_integral_debiased,
            differentiable=True,
            reference="Gu, Yang, Yao, Removing the Bias of Integral Pose Regression, ICCV 2021",
            description="integral with the background pull removed: (C*E - N*c) / (C - N)",
            params=("beta",),
        ),
        Decoder(
            "integral-l1",
            decode_integral_l1,
            differentiable=True,
            reference="Nibali et al., Numerical Coordinate Regression (DSNT), 2018",
            description="expectation under relu(h) / sum relu(h)",
        ),
        Decoder(
            "soft-argmax-local",
            decode_soft_argmax_local,
            differentiable=True,
            reference="local soft-argmax, e.g. Luvizon et al. 2019; Li et al. SimCC-style refinements",
            description="softmax(beta*h) expectation in a (2r+1)^2 window around the argmax",
            params=("beta", "window_radius"),
        ),
    )
}


def get_decoder(name: str) -> Decoder:
    """The registry entry called ``name``; raises :class:`ConfigError` naming the choices."""
    try:
        return DECODERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown decoder {name!r}; choose from {', '.join(DECODERS)}"
        ) from None


def check_decoder_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """Check a non-empty list of known decoder names, none repeated."""
    if not names:
        raise ConfigError("no decoders given")
    for name in names:
        get_decoder(name)
    if len(set(names)) != len(names):
        raise ConfigError("a decoder is listed twice")
    return names


#: Largest accepted values: beyond them results stop being meaningful in float32
#: (beta * amplitude near the float32 range) or the neighbourhoods outgrow any map.
MAX_BETA = 1e6
MAX_DARK_KERNEL = 101
MAX_WINDOW_RADIUS = 100


def check_decoder_params(params: dict[str, float | int]) -> dict[str, float | int]:
    """Check names and values of decoder parameters.

    ``beta`` is a number in ``(0, 1e6]``, ``dark_kernel`` an odd integer in
    ``[1, 101]``, ``window_radius`` an integer in ``[0, 100]``.
    """
    for key, value in params.items():
        if key not in DECODER_PARAMS:
            raise ConfigError(
                f"unknown decoder parameter {key!r}; known: {', '.join(DECODER_PARAMS)}"
            )
        if key == "dark_kernel":
            check_kernel_size(value)
            check_range(value, key, 1, MAX_DARK_KERNEL, integer=True)
        elif key == "window_radius":
            check_range(value, key, 0, MAX_WINDOW_RADIUS, integer=True)
        else:
            check_range(value, key, 0, MAX_BETA, low_open=True)
    return params


def decode(heatmaps: torch.Tensor, method: str, **params: float) -> torch.Tensor:
    """Decode heatmaps into keypoint coordinates.

    Args:
        heatmaps: ``(B, K, H, W)`` floating-point heatmaps.
        method: a name in :data:`DECODERS`.
        **params: decoder parameters (see :data:`DECODER_PARAMS`); a decoder that does not
            take a parameter ignores it.

    Returns:
        ``(B, K, 2)`` coordinates ``(x, y)`` in heatmap pixels, float32 (float64 for
        float64 input), on the device of ``heatmaps``.

    Raises:
        ShapeError: ``heatmaps`` is not a ``(B, K, H, W)`` floating-point tensor.
        ConfigError: unknown method or parameter, or a parameter value out of range.

    >>> maps = torch.zeros(2, 1, 4, 5); maps[:, 0, 3, 1] = 1.0
    >>> decode(maps, "argmax")
    tensor([[[1., 3.]],
    <BLANKLINE>
            [[1., 3.]]])
    """
    check_heatmaps(heatmaps)
    decoder = get_decoder(method)
    check_decoder_params(params)
    own = {key: value for key, value in params.items() if key in decoder.params}
    return decoder.function(heatmaps, **own)


__all__ = [
    "DECODERS",
    "DECODER_PARAMS",
    "Decoder",
    "check_decoder_names",
    "check_decoder_params",
    "decode",
    "get_decoder",
    "get_heatmap_maximum",
]
