"""The decoder registry: one table that the API, the CLI choices and the tests all read.

A decoder is a pure function ``(B, K, H, W) -> (B, K, 2)`` returning ``(x, y)`` in
heatmap pixels; it never modifies its input and loops over no sample or keypoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from integral_cli.checks import check_heatmaps
from integral_cli.decoders.argmax import decode_argmax, get_heatmap_maximum
from integral_cli.decoders.integral import decode_integral, decode_integral_marginal
from integral_cli.errors import ConfigError

#: Every parameter any decoder takes, with its default. ``decode`` passes each decoder
#: only the ones it declares, so callers may hand the same settings to every decoder.
DECODER_PARAMS: dict[str, float] = {"beta": 1.0}


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


def check_decoder_params(params: dict[str, float]) -> dict[str, float]:
    """Check names and values of decoder parameters; every one must be finite and > 0."""
    for key, value in params.items():
        if key not in DECODER_PARAMS:
            raise ConfigError(
                f"unknown decoder parameter {key!r}; known: {', '.join(DECODER_PARAMS)}"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{key} must be a finite number > 0, got {value}")
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
    "check_decoder_params",
    "decode",
    "get_decoder",
    "get_heatmap_maximum",
]
