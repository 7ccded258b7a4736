"""The decoder registry: one table that the API, the command line and the tests read.

Each entry says what a decoder computes, where it comes from, whether it passes a
gradient, which parameters it takes and which representations it decodes. The function
itself is named by ``"module:function"`` and imported on first use, so reading the table
(the command line's ``--help`` and ``decoders``) imports no torch.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from integral_cli.checks import check_range
from integral_cli.errors import ConfigError

#: The output representations a decoder can read: ``heatmap``, ``(B, K, H, W)`` maps;
#: ``simcc``, a pair of 1D vectors per keypoint, ``(B, K, Wx)`` and ``(B, K, Wy)``
#: (coordinate classification, Li et al., ECCV 2022); ``volume``, ``(B, K, D, H, W)``
#: 3D heatmaps (``dims`` 3 of an experiment).
Representation = Literal["heatmap", "simcc", "volume"]
REPRESENTATIONS: tuple[str, ...] = get_args(Representation)

#: Every parameter any decoder takes, with its default. ``decode`` passes each decoder
#: only the ones it declares, so callers may hand the same settings to every decoder.
DECODER_PARAMS: dict[str, float | int] = {"beta": 1.0, "dark_kernel": 11, "window_radius": 2, "fit_radius": 4}

#: Largest accepted values: beyond them results stop being meaningful in float32
#: (beta * amplitude near the float32 range) or the neighbourhoods outgrow any map.
MAX_BETA = 1e6
MAX_DARK_KERNEL = 101
MAX_WINDOW_RADIUS = 100


@dataclass(frozen=True)
class Decoder:
    """One registry entry.

    Attributes:
        name: the name used by the API and the command line.
        implementation: the function ``(heatmaps, **params) -> (B, K, 2)`` (coordinates
            in heatmap pixels), or its ``"module:function"`` path, imported on first use.
        differentiable: whether gradients flow from the coordinates back to the heatmap.
        reference: where the method comes from.
        description: one line saying what it does.
        params: names of the parameters (keys of ``DECODER_PARAMS``) it takes.
        citation: the reference in a few words (authors, year), for tables.
        representations: the outputs it decodes (names of :data:`REPRESENTATIONS`).
        counted: a variant of ``implementation`` that also returns the ``(B, K)`` mask
            of the maps where the decoder fell back to a simpler estimate (by path, like
            ``implementation``), for decoders that can.
        simcc_implementation: for a decoder of ``simcc`` vectors, the 1D function
            ``(vectors, **params) -> (B, K)`` it applies to each axis's ``(B, K, N)``
            vectors (coordinates in bins), or its ``"module:function"`` path.
        volume_implementation: for a decoder of ``"volume"``, the function
            ``(volumes, **params) -> (B, K, 3)`` (coordinates ``(x, y, z)`` in voxels),
            or its ``"module:function"`` path.
    """

    name: str
    implementation: Callable[..., Any] | str
    differentiable: bool
    reference: str
    description: str
    params: tuple[str, ...] = ()
    citation: str = ""
    representations: tuple[str, ...] = ("heatmap",)
    counted: str | None = None
    simcc_implementation: Callable[..., Any] | str | None = None
    volume_implementation: Callable[..., Any] | str | None = None

    @property
    def function(self) -> Callable[..., Any]:
        """The decoding function of heatmaps (imported now if named by its path)."""
        return _resolve(self.implementation)

    @property
    def counted_function(self) -> Callable[..., Any] | None:
        """The variant that also returns where it fell back, if the decoder has one."""
        return None if self.counted is None else _resolve(self.counted)

    @property
    def simcc_function(self) -> Callable[..., Any]:
        """The 1D decoding function of ``simcc`` vectors (imported now if named by its
        path); raises :class:`ConfigError` for a decoder that does not read them."""
        if self.simcc_implementation is None:
            raise ConfigError(f"decoder {self.name!r} does not apply to «representation» simcc")
        return _resolve(self.simcc_implementation)

    @property
    def volume_function(self) -> Callable[..., Any]:
        """The decoding function of volumes; raises :class:`ConfigError` for a decoder
        of heatmaps only."""
        if self.volume_implementation is None or "volume" not in self.representations:
            raise ConfigError(
                f"decoder {self.name!r} does not apply to volumes; its decoders: {', '.join(decoders_for('volume'))}"
            )
        return _resolve(self.volume_implementation)


def _resolve(implementation: Callable[..., Any] | str) -> Callable[..., Any]:
    if callable(implementation):
        return implementation
    module, _, attribute = implementation.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module), attribute)
    return function


_HERE = "integral_cli.decoders"
_SIMCC = "integral_cli.decoders.simcc"
_EVERY = ("heatmap", "simcc", "volume")
_HEATMAP_AND_VOLUME = ("heatmap", "volume")

DECODERS: dict[str, Decoder] = {
    d.name: d
    for d in (
        Decoder(
            "argmax",
            f"{_HERE}.argmax:decode_argmax",
            differentiable=False,
            reference="Newell et al., Stacked Hourglass Networks, ECCV 2016",
            citation="Newell et al. 2016",
            description="location of the maximum, on the pixel grid (first on ties)",
            representations=_EVERY,
            simcc_implementation=f"{_SIMCC}:argmax_1d",
            volume_implementation=f"{_HERE}.volume:decode_volume_argmax",
        ),
        Decoder(
            "argmax-quarter",
            f"{_HERE}.argmax:decode_argmax_quarter",
            differentiable=False,
            reference="Newell et al., Stacked Hourglass Networks, ECCV 2016 (pose-hg-train); "
            "then Simple Baselines, HRNet and MMPose",
            citation="Newell et al. 2016",
            description="argmax, then 0.25 px toward the larger neighbour per axis",
            representations=_EVERY,
            simcc_implementation=f"{_SIMCC}:argmax_quarter_1d",
            volume_implementation=f"{_HERE}.volume:decode_volume_argmax_quarter",
        ),
        Decoder(
            "dark",
            f"{_HERE}.dark:decode_dark",
            differentiable=True,
            reference="Zhang et al., Distribution-Aware Coordinate Representation, CVPR 2020",
            citation="Zhang et al. 2020",
            description="argmax, then a Newton step on the log of the blurred map (interior only)",
            params=("dark_kernel",),
            representations=_EVERY,
            simcc_implementation=f"{_SIMCC}:dark_1d",
            volume_implementation=f"{_HERE}.volume_dark:decode_volume_dark",
        ),
        Decoder(
            "dark-udp",
            f"{_HERE}.dark:decode_dark_udp",
            differentiable=True,
            reference="MMPose's DARK refinement for UDP Gaussian targets (Huang et al., Unbiased "
            "Data Processing, CVPR 2020, decode with their offset-based combined target)",
            citation="MMPose; Huang et al. 2020",
            description="DARK with clipped log, edge padding, step-1 differences, -(H+eps I)^-1 grad",
            params=("dark_kernel",),
        ),
        Decoder(
            "integral",
            f"{_HERE}.integral:decode_integral",
            differentiable=True,
            reference="Sun et al., Integral Human Pose Regression, ECCV 2018",
            citation="Sun et al. 2018",
            description="expectation under softmax(beta*h) over all H*W pixels",
            params=("beta",),
            representations=_EVERY,
            simcc_implementation=f"{_SIMCC}:integral_1d",
            volume_implementation=f"{_HERE}.volume:decode_volume_integral",
        ),
        Decoder(
            "integral-marginal",
            f"{_HERE}.integral:decode_integral_marginal",
            differentiable=True,
            reference="the reading note's modification of Sun et al. 2018",
            citation="the note",
            description="1D softmax(beta*m) of the raw x and y marginal sums, then expectation",
            params=("beta",),
            representations=_HEATMAP_AND_VOLUME,
            volume_implementation=f"{_HERE}.volume:decode_volume_integral_marginal",
        ),
        Decoder(
            "integral-debiased",
            f"{_HERE}.integral:decode_integral_debiased",
            differentiable=True,
            reference="Gu, Yang, Yao, Removing the Bias of Integral Pose Regression, ICCV 2021",
            citation="Gu et al. 2021",
            description="integral with the background pull removed: (C*E - N*c) / (C - N)",
            params=("beta",),
            representations=_EVERY,
            simcc_implementation=f"{_SIMCC}:integral_debiased_1d",
            volume_implementation=f"{_HERE}.volume:decode_volume_integral_debiased",
        ),
        Decoder(
            "integral-l1",
            f"{_HERE}.integral:decode_integral_l1",
            differentiable=True,
            reference="Nibali et al., Numerical Coordinate Regression (DSNT), 2018",
            citation="Nibali et al. 2018",
            description="expectation under relu(h) / sum relu(h)",
            representations=_EVERY,
            simcc_implementation=f"{_SIMCC}:integral_l1_1d",
            volume_implementation=f"{_HERE}.volume:decode_volume_integral_l1",
        ),
        Decoder(
            "soft-argmax-local",
            f"{_HERE}.integral:decode_soft_argmax_local",
            differentiable=True,
            reference="a generic local soft-argmax (e.g. Luvizon et al., 2019)",
            citation="Luvizon et al. 2019",
            description="softmax(beta*h) expectation in a (2r+1)^2 window around the argmax",
            params=("beta", "window_radius"),
            representations=_HEATMAP_AND_VOLUME,
            volume_implementation=f"{_HERE}.volume:decode_volume_soft_argmax_local",
        ),
        Decoder(
            "gaussian-fit",
            f"{_HERE}.gaussian_fit:decode_gaussian_fit",
            differentiable=True,
            reference="least-squares Gaussian fitting, the maximum-likelihood estimate under white Gaussian "
            "noise (Mortensen et al., Optimized localization analysis for single-molecule tracking and "
            "super-resolution microscopy, Nature Methods 2010)",
            citation="Mortensen et al. 2010",
            description="argmax, then a Levenberg-Marquardt fit of A*g + b in a (2r+1)^2 window",
            params=("fit_radius",),
            counted=f"{_HERE}.gaussian_fit:decode_gaussian_fit_counted",
        ),
    )
}


def get_decoder(name: str) -> Decoder:
    """The registry entry called ``name``; raises :class:`ConfigError` naming the choices."""
    try:
        return DECODERS[name]
    except KeyError:
        raise ConfigError(f"unknown decoder {name!r}; choose from {', '.join(DECODERS)}") from None


def decoders_for(representation: str) -> tuple[str, ...]:
    """The names of the decoders that read ``representation``, in registry order.

    >>> decoders_for("simcc")
    ('argmax', 'argmax-quarter', 'dark', 'integral', 'integral-debiased', 'integral-l1')
    """
    if representation not in REPRESENTATIONS:
        raise ConfigError(f"unknown «representation» {representation!r}; choose from {', '.join(REPRESENTATIONS)}")
    return tuple(name for name, d in DECODERS.items() if representation in d.representations)


def check_decoder_names(
    names: tuple[str, ...], representation: str | None = None, *, outputs: str | None = None
) -> tuple[str, ...]:
    """Check a non-empty list of known decoder names, none repeated; with
    ``representation``, each must read it (``outputs``: how the message names those
    outputs, by default the setting ``representation``)."""
    if not names:
        raise ConfigError("no «decoders» given")
    for name in names:
        get_decoder(name)
    if len(set(names)) != len(names):
        raise ConfigError("a decoder is listed twice in «decoders»")
    if representation is not None:
        applying = decoders_for(representation)
        for name in names:
            if name not in applying:
                where = outputs or f"«representation» {representation}"
                raise ConfigError(f"decoder {name!r} does not apply to {where}; its decoders: {', '.join(applying)}")
    return tuple(names)


def check_kernel_size(size: object) -> int:
    """Check a blur kernel size: a positive odd integer up to :data:`MAX_DARK_KERNEL`."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ConfigError(f"«dark_kernel» must be a positive odd integer, got {size!r}")
    return int(check_range(size, "dark_kernel", 1, MAX_DARK_KERNEL, integer=True))


def check_decoder_params(params: dict[str, Any]) -> dict[str, Any]:
    """Check names and values of decoder parameters.

    ``beta`` is a number in ``(0, 1e6]``, ``dark_kernel`` an odd integer in
    ``[1, 101]``, ``window_radius`` an integer in ``[0, 100]``, ``fit_radius`` one in
    ``[1, 100]``.
    """
    for key, value in params.items():
        if key not in DECODER_PARAMS:
            raise ConfigError(f"unknown decoder parameter {key!r}; known: {', '.join(DECODER_PARAMS)}")
        if key == "dark_kernel":
            check_kernel_size(value)
        elif key == "window_radius":
            check_range(value, key, 0, MAX_WINDOW_RADIUS, integer=True)
        elif key == "fit_radius":
            check_range(value, key, 1, MAX_WINDOW_RADIUS, integer=True)
        else:
            check_range(value, key, 0, MAX_BETA, low_open=True)
    return params


def fit_radius_for_sigma(sigma: float) -> int:
    """``gaussian-fit``'s window for maps of ``sigma``: ``ceil(3 sigma)``, which holds
    nearly all the information about the position.

    >>> fit_radius_for_sigma(2.0), fit_radius_for_sigma(1.5)
    (6, 5)
    """
    return min(MAX_WINDOW_RADIUS, max(1, math.ceil(3.0 * sigma)))


def opencv_sigma(size: int) -> float:
    """The sigma OpenCV uses for a kernel of ``size`` when none is given.

    >>> opencv_sigma(11)
    2.0
    """
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def kernel_size_for_sigma(sigma: float) -> int:
    """The odd kernel size (at least 3, at most :data:`MAX_DARK_KERNEL`) whose OpenCV
    sigma is nearest ``sigma``.

    The rule behind the customary pairs sigma 2 -> 11 and sigma 3 -> 17.

    >>> kernel_size_for_sigma(2.0), kernel_size_for_sigma(3.0), kernel_size_for_sigma(1.0)
    (11, 17, 5)
    """
    if not math.isfinite(sigma) or sigma <= 0:
        raise ConfigError(f"a kernel size needs a sigma > 0, got {sigma}")
    return min(MAX_DARK_KERNEL, max(3, 2 * round((sigma - 0.8) / 0.3 + 1) + 1))


def auto_kernel_size(sigma: float, representation: str = "heatmap") -> int:
    """``dark_kernel="auto"``: :func:`kernel_size_for_sigma` for heatmaps,
    :func:`simcc_kernel_size_for_sigma` (MMPose's rule) for SimCC vectors."""
    return simcc_kernel_size_for_sigma(sigma) if representation == "simcc" else kernel_size_for_sigma(sigma)


def simcc_kernel_size_for_sigma(sigma: float) -> int:
    """MMPose's blur kernel size for SimCC vectors of ``sigma`` bins:
    ``int((20 sigma - 7) // 3)``, less one when even, kept in ``[1, 101]``.

    RTMPose's sigmas 4.9 and 5.66 bins give 29 and 35; sigma 2 gives 11.

    >>> simcc_kernel_size_for_sigma(4.9), simcc_kernel_size_for_sigma(5.66), simcc_kernel_size_for_sigma(2.0)
    (29, 35, 11)
    """
    if not math.isfinite(sigma) or sigma <= 0:
        raise ConfigError(f"a kernel size needs a sigma > 0, got {sigma}")
    size = int((20 * sigma - 7) // 3)
    size -= int(size % 2 == 0)
    return min(MAX_DARK_KERNEL, max(1, size))
