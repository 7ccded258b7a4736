"""integral-cli: quantization error of keypoint heatmap decoders.

Public API::

    render_heatmaps(centers, size, sigma, *, amplitude=1.0, encoder="gaussian")
    decode(heatmaps, method, **params)
    DECODERS
    run_experiment(config)

Conventions (``integral_cli.coords``): coordinates ``(x, y)``, pixel centres at integers,
heatmaps ``(B, K, H, W)``, coordinates ``(B, K, 2)``.
"""

__version__ = "0.1.0"

from integral_cli.decoders import DECODERS, Decoder, decode  # noqa: E402
from integral_cli.errors import (  # noqa: E402
    ConfigError,
    DeviceError,
    IntegralError,
    OutputError,
    OutputPathError,
    ShapeError,
)
from integral_cli.experiment import ExperimentConfig, run_experiment  # noqa: E402
from integral_cli.synth import render_heatmaps  # noqa: E402

__all__ = [
    "DECODERS",
    "ConfigError",
    "Decoder",
    "DeviceError",
    "ExperimentConfig",
    "IntegralError",
    "OutputError",
    "OutputPathError",
    "ShapeError",
    "__version__",
    "decode",
    "render_heatmaps",
    "run_experiment",
]
