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
from integral_cli.coords import CONVENTIONS, Convention, convention_scales, heatmap_size, heatmap_to_image
from integral_cli.decoders.registry import (
    DECODERS,
    MAX_BETA,
    MAX_WINDOW_RADIUS,
    decoders_of,
    fit_radius_for_sigma,
    kernel_size_for_sigma,
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
Dtype = Literal["float32", "float64", "float16", "bfloat16"]

SIGMA_UNITS: tuple[str, ...] = get_args(SigmaUnit)
POSITIONS: tuple[str, ...] = get_args(Position)
DECODE_CONVENTIONS: tuple[str, ...] = get_args(DecodeConvention)
SAMPLINGS: tuple[str, ...] = get_args(Sampling)
DTYPE_NAMES: tuple[str, ...] = get_args(Dtype)

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
        "heatmap_h": c.heatmap_size[0],
        "heatmap_w": c.heatmap_size[1],
    },
    "depth": _resolved("depth", lambda c: c.depth if c.dims == 3 else None),
    "margin": _resolved("margin", lambda c: c.resolved_margin),
    "samples": _resolved("samples", lambda c: c.total_samples),
    "device": lambda c, device: {"device": device},
}


def default_margin(sigma_hm: float) -> int:
    """Default distance (heatmap pixels) kept between ground truth and the map border."""
    return math.ceil(3.0 * sigma_hm)


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """Everything that defines one experiment: the table of settings.

    Each field's metadata holds its :class:`Setting` (default, range, unit, help, sweep
    option, CSV columns); :data:`SETTINGS` lists them. Every value is checked when the
    config is made, so a config that exists can be run.
    """

    stride: int = setting(4, "int", "Image pixels per heatmap pixel.", low=1, high=MAX_STRIDE, sweep="strides")
    sigma: float = setting(
        2.0,
        "float",
        "Gaussian standard deviation of the targets, in sigma_unit pixels.",
        low=0,
        high=MAX_SIGMA_HM * MAX_STRIDE,
        low_open=True,
        sweep="sigmas",
    )
    sigma_unit: SigmaUnit = setting(
        "heatmap",
        "choice",
        "Unit of sigma: heatmap pixels, or image pixels (sigma_hm = sigma / stride).",
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
        "whose OpenCV sigma is nearest the maps' sigma (2 -> 11, 3 -> 17).",
        metavar="K|auto",
        unit="heatmap px",
    )
    window_radius: int = setting(
        2,
        "int",
        "Half-width r of the soft-argmax-local window, (2r+1)^2 pixels.",
        low=0,
        high=MAX_WINDOW_RADIUS,
        unit="heatmap px",
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
    )
    encoder: Encoder = setting(
        "gaussian",
        "choice",
        "How the maps are rendered: " + "; ".join(f"{name}: {text}" for name, text in ENCODERS.items()) + ".",
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
        unit="heatmap px",
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
    sampling: Sampling = setting(
        "random",
        "choice",
        "random: uniform points; grid: a G x G lattice of "
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
        unit="heatmap px",
        default_text="ceil(3*sigma_hm)",
    )
    samples: int = setting(
        10_000, "int", "Ground-truth points (one map each) per configuration.", low=1, high=MAX_SAMPLES
    )
    decoders: tuple[str, ...] = setting(
        tuple(DECODERS),
        "decoders",
        "Comma-separated decoders, or all: " + ", ".join(DECODERS) + ".",
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
        check_range(self.sigma_hm, "sigma in heatmap pixels", MIN_SIGMA_HM, MAX_SIGMA_HM)
        heatmap_size(self.image_size, self.stride)
        for convention in {self.convention, self.resolved_decode_convention}:
            convention_scales(convention, self.stride, self.image_size)
        if self.margin is not None and self.position != "interior":
            raise ConfigError(
                "«margin» applies to «position» interior; border uses a band of ceil(3*sigma_hm), anywhere no margin"
            )
        if self.dims == 3:
            others = [name for name in self.decoders if name not in decoders_of("volume")]
            if others and self.decoders != tuple(DECODERS):
                raise ConfigError(
                    f"{others[0]} does not decode volumes («dims» 3); choose from {', '.join(decoders_of('volume'))}"
                )
            if self.distractor > 0:
                raise ConfigError("«distractor» is not available for volumes («dims» 3)")

    @property
    def resolved_decoders(self) -> tuple[str, ...]:
        """The decoders that run: ``decoders``, except that all of them (the default)
        means all those of volumes for ``dims`` 3."""
        if self.dims == 3 and self.decoders == tuple(DECODERS):
            return decoders_of("volume")
        return self.decoders

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one rendered sample: ``(H, W)``, or ``(D, H, W)`` for ``dims`` 3."""
        return (self.depth, *self.heatmap_size) if self.dims == 3 else self.heatmap_size

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """``(H, W)`` of the heatmap."""
        return heatmap_size(self.image_size, self.stride)

    @property
    def sigma_hm(self) -> float:
        """Sigma in heatmap pixels."""
        return self.sigma / self.stride if self.sigma_unit == "image" else self.sigma

    @property
    def decoder_params(self) -> dict[str, Any]:
        """The decoder parameters, ``dark_kernel="auto"`` resolved."""
        kernel = kernel_size_for_sigma(self.sigma_hm) if self.dark_kernel == "auto" else self.dark_kernel
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
        """Decoded heatmap points to image pixels, with the decode convention."""
        return heatmap_to_image(points_hm, self.stride, self.resolved_decode_convention, self.image_size)

    @property
    def total_samples(self) -> int:
        """The number of points: ``samples``, rounded up to whole lattices for ``grid``."""
        if self.sampling == "grid":
            cells = self.grid_size**self.dims
            return -(-self.samples // cells) * cells
        return self.samples

    def columns(self, device: str) -> dict[str, Any]:
        """This configuration's CSV columns (all but the decoder, the statistics and the
        seconds), for a run on ``device``."""
        values: dict[str, Any] = {}
        for item in SETTINGS.values():
            if item.csv_columns:
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

#: Axes ``plot`` can put on x: the numeric ones ``sweep`` varies.
PLOT_AXES: tuple[str, ...] = tuple(name for name in GRID_AXES if SETTINGS[name].kind in ("int", "float"))

#: Columns after the statistics: ``fallbacks``, the maps where the decoder fell back to
#: a simpler estimate (``gaussian-fit``; empty for decoders without a fallback);
#: ``crlb_rmse``, the Cramér–Rao bound on the RMSE in image pixels (empty without noise,
#: where it is 0, and where it is not computed); ``efficiency``, ``crlb_rmse / rmse``.
BOUND_FIELDS: tuple[str, ...] = ("fallbacks", "crlb_rmse", "efficiency")

#: Metrics ``plot`` can draw: the statistics, the bound and the decoding time.
PLOT_METRICS: tuple[str, ...] = (*SUMMARY_FIELDS, *BOUND_FIELDS, "seconds")

#: The columns of every results CSV, in order. Errors are in image pixels except
#: ``mean_error_hm`` (heatmap pixels) and, for volumes, ``mean_error_z`` and
#: ``mean_error_3d`` (voxels); ``seconds`` is that decoder's decoding time.
CSV_COLUMNS: tuple[str, ...] = (
    *(column for item in SETTINGS.values() if not item.after_summary for column in item.csv_columns),
    "decoder",
    *SUMMARY_FIELDS,
    *BOUND_FIELDS,
    *(column for item in SETTINGS.values() if item.after_summary for column in item.csv_columns),
    "seconds",
)

#: The columns added to the results CSV since its first release, with the value they take
#: in the rows of an older CSV (``None``: empty), which is read as if it had them: its
#: rows are those of heatmaps (``dims`` 2), without the newer statistics.
LATER_COLUMNS: dict[str, Any] = {
    "fit_radius": None,
    "dims": 2,
    "depth": None,
    "mean_error_z": None,
    "mean_error_3d": None,
    "fallbacks": None,
    "crlb_rmse": None,
    "efficiency": None,
}

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
    "PLOT_AXES",
    "SETTINGS",
    "TEXT_COLUMNS",
    "ExperimentConfig",
    "Setting",
]
