"""Mean |error| per axis, in heatmap pixels, at stride 4, sigma 2, amplitude 10."""

import torch

from integral_cli import ExperimentConfig, decode
from integral_cli.experiment import render_maps, sample_truth

config = ExperimentConfig(samples=10_000, device="cpu")
truth = sample_truth(config, torch.device("cpu"))
maps = render_maps(config, truth, 0)
truth_hm = (truth + 0.5) / config.stride - 0.5  # the center convention
for name in ("argmax", "argmax-quarter", "integral-marginal"):
    error = (decode(maps, name) - truth_hm).abs().mean().item()
    print(f"{name:<18} {error:.3f} heatmap px per axis")
