"""Save 1000 images x 17 keypoints of RTMPose-like SimCC vectors (sigma 4.9 bins at a
split ratio of 2, normalised, noise of 5% of the peak, MMPose's corner convention, 10% of
the keypoints unlabelled), then run `integral-cli evaluate --simcc` on them."""

import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from integral_cli import render_simcc
from integral_cli.simcc import add_simcc_noise

sigma, ratio = 4.9, 2.0
amplitude = 1 / (sigma * math.sqrt(2 * math.pi))  # MMPose's normalize=True
generator = torch.Generator().manual_seed(0)
targets = torch.rand(1000, 17, 2, generator=generator) * torch.tensor([176.0, 240.0]) + 8  # (N, K, 2) image px
vectors = render_simcc(targets, (256, 192), sigma, split_ratio=ratio, amplitude=amplitude, convention="corner")
simcc_x, simcc_y = add_simcc_noise(vectors, 0.05, amplitude, seed=0, first_sample=0)  # (N, K, 384), (N, K, 512)
visible = (torch.rand(1000, 17, generator=generator) > 0.1).float()  # 10% unlabelled
with tempfile.TemporaryDirectory() as folder:
    np.savez(Path(folder) / "rtmpose.npz", simcc_x=simcc_x.numpy(), simcc_y=simcc_y.numpy())
    np.save(Path(folder) / "targets.npy", torch.cat([targets, visible[..., None]], dim=-1).numpy())
    command = ["evaluate", "--simcc", "rtmpose.npz", "--targets", "targets.npy", "--split-ratio", "2"]
    command += ["--convention", "corner", "--sigma", "4.9", "--dark-kernel", "auto", "--pck", "0.25,0.5,1"]
    command += ["--device", "cpu"]
    print("$ integral-cli " + " ".join(command))
    result = subprocess.run(
        [sys.executable, "-m", "integral_cli", *command],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    print(result.stdout.rstrip())
