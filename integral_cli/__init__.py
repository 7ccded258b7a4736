"""integral-cli: quantization error of keypoint heatmap decoders.

Public API::

    render_heatmaps(centers, size, sigma, *, amplitude=1.0, encoder="gaussian")
    render_volumes(centers, size, sigma, *, amplitude=1.0, encoder="gaussian")
    decode(heatmaps, method, **params)
    render_simcc(centers, size, sigma, *, split_ratio, amplitude=1.0, encoder="gaussian")
    decode_simcc(simcc_x, simcc_y, method, **params)
    DECODERS
    ExperimentConfig(...)
    run_experiment(config)
    decode_file(DecodeConfig(heatmaps=..., decoders=("dark",)), out)
    evaluate_files(EvaluateConfig(targets=..., heatmaps=..., predictions=...))

Conventions (``integral_cli.coords``): coordinates ``(x, y)``, pixel centres at integers,
heatmaps ``(B, K, H, W)``, SimCC vectors ``(B, K, Wx)`` and ``(B, K, Wy)``, coordinates
``(B, K, 2)``; volumes ``(B, K, D, H, W)``, coordinates ``(B, K, 3)`` as ``(x, y, z)`` in
voxels.

Importing the package does not import torch (so the command line's ``--help`` is
instant); the functions that compute import it when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from integral_cli.decoders import DECODERS, Decoder, decode
from integral_cli.errors import (
    ConfigError,
    DeviceError,
    IntegralError,
    OutputError,
    OutputPathError,
    ShapeError,
)
from integral_cli.settings import ExperimentConfig

if TYPE_CHECKING:
    from integral_cli.decoders.simcc import decode_simcc
    from integral_cli.evaluate import DecodeConfig, EvaluateConfig, decode_file, evaluate_files
    from integral_cli.experiment import run_experiment
    from integral_cli.simcc import render_simcc
    from integral_cli.synth import render_heatmaps
    from integral_cli.volumes import render_volumes

#: Names imported on first use, with the module that holds them.
_LAZY = {
    "render_heatmaps": "integral_cli.synth",
    "run_experiment": "integral_cli.experiment",
    "DecodeConfig": "integral_cli.evaluate",
    "EvaluateConfig": "integral_cli.evaluate",
    "decode_file": "integral_cli.evaluate",
    "evaluate_files": "integral_cli.evaluate",
    "render_simcc": "integral_cli.simcc",
    "decode_simcc": "integral_cli.decoders.simcc",
    "render_volumes": "integral_cli.volumes",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'integral_cli' has no attribute {name!r}")


__all__ = [
    "DECODERS",
    "ConfigError",
    "DecodeConfig",
    "Decoder",
    "DeviceError",
    "EvaluateConfig",
    "ExperimentConfig",
    "IntegralError",
    "OutputError",
    "OutputPathError",
    "ShapeError",
    "__version__",
    "decode",
    "decode_file",
    "evaluate_files",
    "decode_simcc",
    "render_heatmaps",
    "render_simcc",
    "render_volumes",
    "run_experiment",
]
