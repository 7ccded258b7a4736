"""The one table of experiment settings.

Every setting of an experiment is a field of :class:`ExperimentConfig`, declared once,
here, with :func:`setting`: its type (the annotation), default, allowed range or choices,
unit, help text, whether ``sweep`` takes a list of it (and that option's name) and its
CSV column(s). Everything else is derived from this table: the config's checks
(:meth:`Setting.check`), the CSV columns (:data:`CSV_COLUMNS`), the options of
``compare`` and ``sweep``, the axes ``plot`` can draw against, the sweep sidecar,
``sweep --config`` files and the option table of the documentation.

Adding an axis is one field here plus its use in the engine.

Imports no torch: the command line reads this table to build its options and ``--help``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from integral_cli.checks import DEVICE_HELP, check_range
from integral_cli.coco import COCO_SIGMAS
from integral_cli.coords import (
    CONVENTIONS,
    Convention,
    convention_scales,
    heatmap_size,
    heatmap_to_image,
    simcc_scale,
    simcc_size,
    simcc_to_image,
)
from integral_cli.decoders.registry import (
    DECODERS,
    MAX_BETA,
    MAX_WINDOW_RADIUS,
    auto_kernel_size,
    check_decoder_names,
    decoders_for,
    fit_radius_for_sigma,
)
from integral_cli.errors import ConfigError
from integral_cli.metrics import SUMMARY_FIELDS
from integral_cli.setting import Setting, setting, spell_value

if TYPE_CHECKING:
    import torch

# ----------------------------------------------------------------------- choices
SigmaUnit = Literal["heatmap", "image"]
Encoder = Literal["gaussian", "msra", "udp", "fwhm", "logit"]
Position = Literal["interior", "border", "anywhere"]
DecodeConvention = Literal["same", "center", "corner", "udp"]
Sampling = Literal["random", "grid"]
FlipTest = Literal["none", "average", "shift"]
Dtype = Literal["float32", "float64", "float16", "bfloat16"]

SIGMA_UNITS: tuple[str, ...] = get_args(SigmaUnit)
POSITIONS: tuple[str, ...] = get_args(Position)
DECODE_CONVENTIONS: tuple[str, ...] = get_args(DecodeConvention)
SAMPLINGS: tuple[str, ...] = get_args(Sampling)
#: What a keypoint is encoded as in an experiment (volumes are ``dims`` 3 of heatmaps).
RepresentationName = Literal["heatmap", "simcc"]
OUTPUT_REPRESENTATIONS: tuple[str, ...] = get_args(RepresentationName)
FLIP_TESTS: tuple[str, ...] = get_args(FlipTest)
DTYPE_NAMES: tuple[str, ...] = get_args(Dtype)

#: The encoders of SimCC vectors: a 1D Gaussian around the exact centre, or around the
#: centre rounded to a bin (MMPose's ``SimCCLabel``); no window.
SIMCC_ENCODERS: tuple[str, ...] = ("gaussian", "msra")

#: What each encoder renders (the names are those of :data:`Encoder`).
ENCODERS: dict[str, str] = {
    "gaussian": "A * exp(-d^2 / (2 sigma^2)) over the whole map, centre not rounded",
    "msra": "MMPose/HRNet target: centre rounded to a pixel, zero beyond 3 sigma of it",
    "udp": "sub-pixel centre, zero beyond 3 sigma of the rounded centre (UDP)",
    "fwhm": "the reading note's generator: 10 * exp(-4 ln2 d^2 / fwhm^2), fwhm = 2.3548 sigma",
    "logit": "log-Gaussian logits -d^2 / (2 sigma^2): their softmax is the normalised Gaussian",
}

# ------------------------------------------------------------------------ ranges
#: Default memory budget for one experiment, in MiB.
DEFAULT_MAX_MEMORY_MIB = 1024.0
# Accepted ranges: past them a setting no longer describes a heatmap experiment (a sigma
# far below a pixel renders a single pixel; amplitudes near the float32 range overflow).
MAX_STRIDE = 1024
MAX_SPLIT_RATIO = 64.0
MIN_SIGMA_HM, MAX_SIGMA_HM = 0.05, 1e4
MAX_AMPLITUDE = 1e6
MAX_NOISE = 1e3
MAX_DISTANCE = 1e6
MAX_SAMPLES = 10**9
MAX_SEED = 2**63 - 1
MAX_GRID_SIZE = 1024
MAX_MEMORY_MIB = 2.0**30
MAX_DEPTH = 4096


def _resolved(column: str, value: Callable[[ExperimentConfig], Any]) -> Callable[..., dict[str, Any]]:
    return lambda config, device: {column: value(config)}


# How a setting fills its CSV columns when it is not simply its value.
_COLUMN_VALUES: dict[str, Callable[[ExperimentConfig, str], dict[str, Any]]] = {
    "dark_kernel": _resolved("dark_kernel", lambda c: c.decoder_params["dark_kernel"]),
    "fit_radius": _resolved("fit_radius", lambda c: c.decoder_params["fit_radius"]),
    "decode_convention": _resolved("decode_convention", lambda c: c.resolved_decode_convention),
    "grid_size": _resolved("grid_size", lambda c: c.grid_size if c.sampling == "grid" else 0),
    "image_size": lambda c, device: {
        "image_h": c.image_size[0],
        "image_w": c.image_size[1],
        "heatmap_h": c.heatmap_size[0] if c.representation == "heatmap" else None,
        "heatmap_w": c.heatmap_size[1] if c.representation == "heatmap" else None,
    },
    "depth": _resolved("depth", lambda c: c.depth if c.dims == 3 else None),
    "margin": _resolved("margin", lambda c: c.resolved_margin),
    "samples": _resolved("samples", lambda c: c.total_samples),
    "device": lambda c, device: {"device": device},
}


def default_margin(sigma_hm: float) -> int:
    """Default distance (heatmap pixels, or bins) kept between ground truth and the
    border."""
    return math.ceil(3.0 * sigma_hm)


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """Everything that defines one experiment: the table of settings.

    Each field's metadata holds its :class:`Setting` (default, range, unit, help, sweep
    option, CSV columns); :data:`SETTINGS` lists them. Every value is checked when the
    config is made, so a config that exists can be run.
    """

    representation: RepresentationName = setting(
        "heatmap",
        "choice",
        "What a keypoint is encoded as: heatmap, an H x W map at the stride; simcc, two 1D vectors "
        "of round(W_img*k) and round(H_img*k) bins (SimCC/RTMPose coordinate classification).",
        choices=OUTPUT_REPRESENTATIONS,
        sweep="representations",
    )
    stride: int = setting(
        4,
        "int",
        "Image pixels per heatmap pixel (heatmap only: SimCC vectors have none).",
        low=1,
        high=MAX_STRIDE,
        sweep="strides",
        applies=("heatmap",),
    )
    split_ratio: float = setting(
        2.0,
        "float",
        "SimCC bins per image pixel, k (simcc only; RTMPose: 2).",
        low=0,
        high=MAX_SPLIT_RATIO,
        low_open=True,
        sweep="split-ratios",
        metavar="K",
        applies=("simcc",),
    )
    sigma: float = setting(
        2.0,
        "float",
        "Gaussian standard deviation of the targets, in sigma_unit pixels (bins for simcc).",
        low=0,
        high=MAX_SIGMA_HM * MAX_STRIDE,
        low_open=True,
        sweep="sigmas",
    )
    sigma_unit: SigmaUnit = setting(
        "heatmap",
        "choice",
        "Unit of sigma: heatmap pixels (bins for simcc), or image pixels (sigma_hm = sigma / stride, "
        "or sigma * k bins).",
        choices=SIGMA_UNITS,
    )
    amplitude: float = setting(
        10.0,
        "float",
        "Peak value of the rendered maps (10 is the reading note's).",
        low=0,
        high=MAX_AMPLITUDE,
        low_open=True,
        sweep="amplitudes",
    )
    beta: float = setting(
        1.0, "float", "Inverse temperature of the softmax decoders.", low=0, high=MAX_BETA, low_open=True, sweep="betas"
    )
    dark_kernel: int | str = setting(
        11,
        "kernel",
        "Blur kernel size of dark and dark-udp (odd); auto: the size "
        "whose OpenCV sigma is nearest the maps' sigma (2 -> 11, 3 -> 17); for simcc, MMPose's "
        "int((20 sigma - 7) // 3) made odd (4.9 -> 29).",
        metavar="K|auto",
        unit="heatmap px or bins",
    )
    window_radius: int = setting(
        2,
        "int",
        "Half-width r of the soft-argmax-local window, (2r+1)^2 pixels.",
        low=0,
        high=MAX_WINDOW_RADIUS,
        unit="heatmap px",
        applies=("heatmap",),
    )
    fit_radius: int | str = setting(
        "auto",
        "radius",
        "Half-width of the gaussian-fit window; auto: ceil(3*sigma_hm), which holds nearly all the "
        "information about the position.",
        low=1,
        high=MAX_WINDOW_RADIUS,
        unit="heatmap px",
        metavar="R|auto",
        applies=("heatmap",),
    )
    encoder: Encoder = setting(
        "gaussian",
        "choice",
        "How the maps are rendered: "
        + "; ".join(f"{name}: {text}" for name, text in ENCODERS.items())
        + ". SimCC vectors take gaussian, or msra (centre rounded to a bin, no window).",
        choices=tuple(ENCODERS),
        sweep="encoders",
    )
    noise: float = setting(
        0.0,
        "float",
        "Additive Gaussian noise: standard deviation relative to the peak.",
        low=0,
        high=MAX_NOISE,
        sweep="noises",
    )
    distractor: float = setting(
        0.0,
        "float",
        "Amplitude of a second peak relative to the first (0: none).",
        low=0,
        high=MAX_AMPLITUDE,
        sweep="distractors",
    )
    distractor_distance: float = setting(
        12.0,
        "float",
        "Distance of the second peak from the true point, in a random direction.",
        low=0,
        high=MAX_DISTANCE,
        unit="heatmap px or bins",
        sweep="distractor-distances",
    )
    position: Position = setting(
        "interior",
        "choice",
        "Where ground truth lies: interior (margin from the "
        "border), border (within ceil(3*sigma_hm) of an edge), anywhere.",
        choices=POSITIONS,
        sweep="positions",
    )
    convention: Convention = setting(
        "center",
        "choice",
        "Image-to-heatmap mapping used to encode the ground truth.",
        choices=CONVENTIONS,
        sweep="conventions",
    )
    decode_convention: DecodeConvention = setting(
        "same",
        "choice",
        "Heatmap-to-image mapping used to read decoded points back (same: the encode one); a mismatch shows as bias.",
        choices=DECODE_CONVENTIONS,
        sweep="decode-conventions",
    )
    flip_test: FlipTest = setting(
        "none",
        "choice",
        "The flip test: average the map with the one the network gives on the horizontally flipped image, "
        "flipped back (average), and shifted one heatmap pixel (or bin) toward +x first as HRNet does (shift).",
        choices=FLIP_TESTS,
        sweep="flip-tests",
    )
    sampling: Sampling = setting(
        "random",
        "choice",
        "random: uniform points; grid: a G x G lattice (G x G x G for volumes) of "
        "sub-pixel offsets per cell (samples rounded up to whole lattices).",
        choices=SAMPLINGS,
        sweep="samplings",
    )
    grid_size: int = setting(16, "int", "Lattice size G of grid sampling.", low=1, high=MAX_GRID_SIZE, metavar="G")
    image_size: tuple[int, int] = setting(
        (256, 192),
        "size",
        "Input image size, height x width; both sides multiples of the stride.",
        metavar="HxW",
        unit="image px",
        columns=("image_h", "image_w", "heatmap_h", "heatmap_w"),
    )
    dims: int = setting(
        2,
        "int",
        "2: heatmaps (B, K, H, W); 3: volumes (B, K, D, H, W), one per keypoint, with z in voxels "
        "(the Integral paper's main case).",
        low=2,
        high=3,
        sweep="dims",
        metavar="2|3",
    )
    depth: int = setting(
        64,
        "int",
        "Voxels along z of a volume (dims 3); empty in the CSV rows of dims 2.",
        low=1,
        high=MAX_DEPTH,
        unit="voxels",
        metavar="D",
    )
    margin: float | None = setting(
        None,
        "optional float",
        "Keep ground truth this far from the border (0 allowed); interior positions only.",
        low=0,
        unit="heatmap px or bins",
        default_text="ceil(3*sigma_hm)",
    )
    samples: int = setting(
        10_000, "int", "Ground-truth points (one map each) per configuration.", low=1, high=MAX_SAMPLES
    )
    oks_area: float | None = setting(
        None,
        "optional float",
        "Score the points as COCO keypoints of persons of this area: sample i is keypoint i mod 17 of a "
        "person of 17 consecutive samples (samples rounded up to whole persons); adds the mean OKS and the AP "
        "ceiling, the AP a perfect detector with perfect ranking would get if decoding were its only error.",
        low=0,
        low_open=True,
        unit="image px^2",
        default_text="none",
    )
    decoders: tuple[str, ...] = setting(
        tuple(DECODERS),
        "decoders",
        "Comma-separated decoders, or all (those that apply to the representation): " + ", ".join(DECODERS) + ".",
        columns=(),
        metavar="LIST",
        default_text="all",
    )
    device: str = setting(
        "auto",
        "device",
        f"Device: {DEVICE_HELP}; auto = CUDA when available, else CPU.",
        after_summary=True,
        metavar="DEVICE",
    )
    dtype: Dtype = setting(
        "float32",
        "choice",
        "Precision the maps are decoded in.",
        choices=DTYPE_NAMES,
        sweep="dtypes",
        after_summary=True,
    )
    seed: int = setting(0, "int", "Seed of the ground-truth sampling.", low=0, high=MAX_SEED, after_summary=True)
    max_memory_mib: float = setting(
        DEFAULT_MAX_MEMORY_MIB,
        "float",
        "Memory budget; maps are rendered and decoded in chunks that fit it.",
        low=1,
        high=MAX_MEMORY_MIB,
        unit="MiB",
        columns=(),
        option="--max-memory",
        metavar="MIB",
    )

    def __post_init__(self) -> None:
        for item in SETTINGS.values():
            value = item.check(getattr(self, item.name))
            if value != getattr(self, item.name) or type(value) is not type(getattr(self, item.name)):
                object.__setattr__(self, item.name, value)
        if self.representation == "simcc":
            if self.encoder not in SIMCC_ENCODERS:
                raise ConfigError(
                    f"«encoder» {self.encoder} does not apply to «representation» simcc; "
                    f"choose from {', '.join(SIMCC_ENCODERS)}"
                )
            check_range(self.sigma_hm, "sigma in bins", MIN_SIGMA_HM, MAX_SIGMA_HM)
            simcc_size(self.image_size, self.split_ratio)
            for convention in {self.convention, self.resolved_decode_convention}:
                simcc_scale(convention, self.split_ratio)
        else:
            check_range(self.sigma_hm, "sigma in heatmap pixels", MIN_SIGMA_HM, MAX_SIGMA_HM)
            heatmap_size(self.image_size, self.stride)
            for convention in {self.convention, self.resolved_decode_convention}:
                convention_scales(convention, self.stride, self.image_size)
        if self.dims == 3 and self.representation != "heatmap":
            raise ConfigError(f"«dims» 3 renders volumes of heatmaps; «representation» {self.representation} is 2D")
        if self.decoders != tuple(DECODERS):
            outputs = "volumes («dims» 3)" if self.dims == 3 else None
            check_decoder_names(self.decoders, self.decoded_representation, outputs=outputs)
        if self.margin is not None and self.position != "interior":
            raise ConfigError(
                "«margin» applies to «position» interior; border uses a band of ceil(3*sigma_hm), anywhere no margin"
            )
        if self.dims == 3:
            if self.distractor > 0:
                raise ConfigError("«distractor» is not available for volumes («dims» 3)")
            if self.oks_area is not None:
                raise ConfigError("«oks_area» scores COCO's 2D keypoints; it does not apply to volumes («dims» 3)")

    @property
    def decoded_representation(self) -> str:
        """What the decoders read: ``heatmap``, ``simcc``, or ``volume`` for ``dims`` 3."""
        return "volume" if self.dims == 3 else self.representation

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one rendered sample: ``(H, W)``, or ``(D, H, W)`` for ``dims`` 3."""
        return (self.depth, *self.heatmap_size) if self.dims == 3 else self.heatmap_size

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """``(H, W)`` of the heatmap."""
        return heatmap_size(self.image_size, self.stride)

    @property
    def output_size(self) -> tuple[int, int]:
        """The grid ground truth is drawn on, ``(H, W)``: the heatmap, or for ``simcc``
        the bins ``(Ny, Nx)`` of the y and x vectors."""
        if self.representation == "simcc":
            return simcc_size(self.image_size, self.split_ratio)
        return self.heatmap_size

    @property
    def image_px_per_output(self) -> float:
        """Image pixels per heatmap pixel (the stride), or per bin (``1 / k``)."""
        return 1.0 / self.split_ratio if self.representation == "simcc" else self.stride

    @property
    def sigma_hm(self) -> float:
        """Sigma in heatmap pixels, or in bins for ``simcc``."""
        if self.sigma_unit != "image":
            return self.sigma
        return self.sigma * self.split_ratio if self.representation == "simcc" else self.sigma / self.stride

    @property
    def resolved_decoders(self) -> tuple[str, ...]:
        """The decoders to run: ``decoders``, or when that is every decoder ("all"), the
        ones that apply to the representation (to volumes for ``dims`` 3)."""
        return decoders_for(self.decoded_representation) if self.decoders == tuple(DECODERS) else self.decoders

    @property
    def decoder_params(self) -> dict[str, Any]:
        """The decoder parameters, ``"auto"`` resolved (MMPose's rule for the kernel of
        SimCC vectors)."""
        kernel = (
            auto_kernel_size(self.sigma_hm, self.representation) if self.dark_kernel == "auto" else self.dark_kernel
        )
        radius = fit_radius_for_sigma(self.sigma_hm) if self.fit_radius == "auto" else self.fit_radius
        return {"beta": self.beta, "dark_kernel": kernel, "window_radius": self.window_radius, "fit_radius": radius}

    @property
    def resolved_margin(self) -> float:
        """The margin in heatmap pixels: for ``interior`` the one kept from the border
        (default ``ceil(3 sigma_hm)``), for ``border`` the width of the band, for
        ``anywhere`` 0."""
        if self.position == "anywhere":
            return 0
        if self.position == "border" or self.margin is None:
            return default_margin(self.sigma_hm)
        return self.margin

    @property
    def resolved_decode_convention(self) -> str:
        """The decode convention, ``"same"`` resolved."""
        return self.convention if self.decode_convention == "same" else self.decode_convention

    def decoded_to_image(self, points_hm: torch.Tensor) -> torch.Tensor:
        """Decoded points (heatmap pixels, or bins) to image pixels, with the decode
        convention."""
        if self.representation == "simcc":
            return simcc_to_image(points_hm, self.split_ratio, self.resolved_decode_convention)
        return heatmap_to_image(points_hm, self.stride, self.resolved_decode_convention, self.image_size)

    def require_heatmaps(self, what: str) -> None:
        """Raise :class:`ConfigError` unless this is a heatmap experiment: ``what`` (a
        gradient check, a training toy, an error map) works on heatmaps only."""
        if self.representation != "heatmap":
            raise ConfigError(f"{what} works on heatmaps; «representation» {self.representation} does not apply")

    @property
    def total_samples(self) -> int:
        """The number of points: ``samples``, rounded up to whole lattices for ``grid``
        (``G^2`` cells, ``G^3`` for volumes) and to whole persons of 17 keypoints with
        ``oks_area``."""
        unit = self.grid_size**self.dims if self.sampling == "grid" else 1
        if self.oks_area is not None:
            unit = math.lcm(unit, len(COCO_SIGMAS))
        return -(-self.samples // unit) * unit

    def columns(self, device: str) -> dict[str, Any]:
        """This configuration's CSV columns (all but the decoder, the statistics and the
        seconds), for a run on ``device``."""
        values: dict[str, Any] = {}
        for item in SETTINGS.values():
            if not item.applies_to(self.representation):
                values.update(dict.fromkeys(item.csv_columns))
            elif item.csv_columns:
                special = _COLUMN_VALUES.get(item.name)
                values.update(special(self, device) if special else {item.name: getattr(self, item.name)})
        return values


#: The table of settings, in the order of the CSV columns.
SETTINGS: dict[str, Setting] = {
    f.name: dataclasses.replace(f.metadata["setting"], name=f.name) for f in dataclasses.fields(ExperimentConfig)
}

#: The settings ``sweep`` can vary, in the order the grid is walked (the last varies
#: fastest).
GRID_AXES: tuple[str, ...] = tuple(name for name, item in SETTINGS.items() if item.sweep)

#: The axis ``plot`` derives from the sizes: the values one keypoint is encoded in, the
#: ``H * W`` pixels of a heatmap or the ``Wx + Wy`` bins of SimCC vectors.
OUTPUTS_AXIS = "outputs"

#: Axes ``plot`` can put on x: the numeric ones ``sweep`` varies, and the outputs.
PLOT_AXES: tuple[str, ...] = (
    *(name for name in GRID_AXES if SETTINGS[name].kind in ("int", "float")),
    OUTPUTS_AXIS,
)

#: Columns after the statistics: ``fallbacks``, the maps where the decoder fell back to
#: a simpler estimate (``gaussian-fit``; empty for decoders without a fallback);
#: ``crlb_rmse``, the Cramér–Rao bound on the RMSE in image pixels (empty without noise,
#: where it is 0, and where it is not computed); ``efficiency``, ``crlb_rmse / rmse``;
#: ``oks``, the mean OKS of the persons, and ``ap_ceiling``, the AP of a perfect detector
#: with perfect ranking (empty without ``oks_area``).
RESULT_FIELDS: tuple[str, ...] = ("fallbacks", "crlb_rmse", "efficiency", "oks", "ap_ceiling")

#: Metrics ``plot`` can draw: the statistics, the bound, the scores and the decoding time.
PLOT_METRICS: tuple[str, ...] = (*SUMMARY_FIELDS, *RESULT_FIELDS, "seconds")

#: The columns of every results CSV, in order. Errors are in image pixels except
#: ``mean_error_hm`` (heatmap pixels) and, for volumes, ``mean_error_z`` and
#: ``mean_error_3d`` (voxels); ``seconds`` is that decoder's decoding time.
CSV_COLUMNS: tuple[str, ...] = (
    *(column for item in SETTINGS.values() if not item.after_summary for column in item.csv_columns),
    "decoder",
    *SUMMARY_FIELDS,
    *RESULT_FIELDS,
    *(column for item in SETTINGS.values() if item.after_summary for column in item.csv_columns),
    "seconds",
)

#: The integer CSV columns that are empty in some rows (``depth``, in the rows of
#: heatmaps): read back as integers with missing values, not as floats.
OPTIONAL_INT_COLUMNS: tuple[str, ...] = ("depth",)

#: The CSV columns that hold words, not numbers.
TEXT_COLUMNS: frozenset[str] = frozenset(
    {"decoder", *(name for name, item in SETTINGS.items() if item.kind in ("choice", "device"))}
)


def option_table() -> list[tuple[str, str, str, str]]:
    """``(options, default, range, meaning)`` for every setting, for the docs."""
    rows = []
    for item in SETTINGS.values():
        plural = item.sweep_flag and item.sweep_flag != item.flag
        options = f"`{item.flag}`" + (f" / `{item.sweep_flag}`" if plural else "")
        default = item.default_text or spell_value(item.default)
        meaning = item.help + (f" Unit: {item.unit}." if item.unit else "")
        rows.append((options, f"`{default}`", item.describe_range(), meaning))
    return rows


__all__ = [
    "CSV_COLUMNS",
    "ENCODERS",
    "GRID_AXES",
    "SIMCC_ENCODERS",
    "PLOT_AXES",
    "SETTINGS",
    "TEXT_COLUMNS",
    "ExperimentConfig",
    "Setting",
]
