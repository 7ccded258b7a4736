"""Save 1000 images x 17 keypoints of model-like heatmaps (peak 1, noise 0.05, 10% of the
keypoints unlabelled), then run `integral-cli evaluate` on them."""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from integral_cli import render_heatmaps
from integral_cli.synth import add_noise

generator = torch.Generator().manual_seed(0)
centers = torch.rand(1000, 17, 2, generator=generator) * torch.tensor([36.0, 52.0]) + 6  # (N, K, 2) heatmap px
maps = render_heatmaps(centers, (64, 48), sigma=2.0, amplitude=1.0)  # (N, K, 64, 48)
maps = add_noise(maps, 0.05, 1.0, seed=0, first_sample=0)  # a little noise
targets = (centers + 0.5) * 4 - 0.5  # image px at stride 4
visible = (torch.rand(1000, 17, generator=generator) > 0.1).float()  # 10% unlabelled
with tempfile.TemporaryDirectory() as folder:
    np.save(Path(folder) / "maps.npy", maps.numpy())
    np.save(Path(folder) / "targets.npy", torch.cat([targets, visible[..., None]], dim=-1).numpy())
    command = ["evaluate", "--heatmaps", "maps.npy", "--targets", "targets.npy", "--stride", "4", "--device", "cpu"]
    print("$ integral-cli " + " ".join(command))
    result = subprocess.run(
        [sys.executable, "-m", "integral_cli", *command], cwd=folder, capture_output=True, text=True, check=True
    )
    print(result.stdout.rstrip())
