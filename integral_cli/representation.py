"""What the experiment engine asks of an output representation (heatmaps, SimCC
vectors, volumes), and the sizes it budgets memory with: the modules of the
representations build on this one, and the engine picks among them."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from integral_cli.settings import ExperimentConfig

#: The decoding dtypes by name.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
#: Working-precision (float32 or float64) map-sized buffers alive at once while a chunk
#: is decoded, besides the map itself; used to size chunks from the budget.
MAP_BUFFERS = 6
#: Extra bytes per pixel while noise is drawn (hashed counters and their uniforms).
NOISE_BYTES_PER_PIXEL = 48
#: Decoded points, and where the decoder fell back (``None``: it has no fallback).
Counted = tuple[torch.Tensor, torch.Tensor | None]


class Representation(Protocol):
    """What an experiment needs of an output representation of a keypoint (a heatmap,
    SimCC vectors; more can plug in): how ground truth is drawn, rendered and decoded,
    and how big a sample is. Points are ``(N, 1, C)``: ``x, y`` in image pixels, then any
    further axis in its own unit."""

    #: Coordinates per point.
    axes: int

    def check(self, config: ExperimentConfig) -> None:
        """Raise :class:`ConfigError` unless ground truth can be drawn as ``config`` says."""

    def describe(self, config: ExperimentConfig) -> str:
        """One sample in words, e.g. ``64x48 map``."""

    def sample_bytes(self, config: ExperimentConfig) -> int:
        """Bytes one sample takes while it is rendered and decoded."""

    def sample_truth(self, config: ExperimentConfig, device: torch.device) -> torch.Tensor:
        """``(N, 1, C)`` float32 ground truth, drawn from ``config.seed`` independently of
        the device (on the CPU, say) and moved to ``device``: the same seed must give the
        same points on every device."""

    def render(self, config: ExperimentConfig, truth: torch.Tensor, first_sample: int) -> Any:
        """What a chunk of ground truth encodes to, in ``config.dtype``."""

    def decode(self, outputs: Any, name: str, params: dict[str, Any]) -> Counted:
        """``(B, 1, C)`` decoded points in the representation's own units, and the
        ``(B, 1)`` mask of the samples where the decoder fell back to a simpler estimate
        (``None`` for a decoder without such a fallback)."""

    def to_truth_units(self, config: ExperimentConfig, decoded: torch.Tensor) -> torch.Tensor:
        """Decoded points in the units of the ground truth."""

    def summarize(self, config: ExperimentConfig, offsets: torch.Tensor) -> dict[str, Any]:
        """The statistics columns of ``(N, C)`` offsets decoded minus true."""

    def crlb_rmse(self, config: ExperimentConfig, truth: torch.Tensor) -> float:
        """The Cramér–Rao bound on the RMSE of ``truth`` decoded from ``config``'s noisy
        outputs, in image pixels; NaN where it is not known (or without noise)."""
