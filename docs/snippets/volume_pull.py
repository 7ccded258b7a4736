"""The integral's pull on heatmaps and on volumes, measured and against its closed form
E = (N c + S mu) / (N + S) (docs/volumes.md)."""

import math

import torch

from integral_cli import ExperimentConfig, run_experiment
from integral_cli.coords import image_to_heatmap
from integral_cli.experiment import representation_of


def background_mass(amplitude: float, sigma: float, axes: int) -> float:
    """S = sum (e^h - 1) over a map or volume holding A exp(-d^2 / 2 sigma^2), the sum
    replaced by the integral: (2 pi)^{n/2} sigma^n sum_k A^k / (k^{n/2} k!)."""
    terms = sum(amplitude**k / (k ** (axes / 2) * math.factorial(k)) for k in range(1, 80))
    return (2 * math.pi) ** (axes / 2) * sigma**axes * terms


print(f"{'size':>9} {'N':>7} {'S':>9} {'N/(N+S)':>8} {'pull: predicted':>16} {'measured':>9}  unit")
for dims in (2, 3):
    config = ExperimentConfig(dims=dims, samples=2000, decoders=("integral",), device="cpu")
    truth = representation_of(config).sample_truth(config, torch.device("cpu")).double()[:, 0]
    mu = torch.cat((image_to_heatmap(truth[:, :2], config.stride), truth[:, 2:]), -1)
    shape = config.sample_shape
    centre = torch.tensor([(side - 1) / 2 for side in reversed(shape)], dtype=torch.float64)
    n, s = math.prod(shape), background_mass(config.amplitude, config.sigma_hm, dims)
    predicted = (n / (n + s) * (mu - centre).norm(dim=-1)).mean().item()
    row = run_experiment(config).iloc[0]
    measured = row.mean_error_3d if dims == 3 else row.mean_error_hm
    unit = "voxels" if dims == 3 else "heatmap px"
    size = "x".join(map(str, shape))
    print(f"{size:>9} {n:>7} {s:>9.3g} {n / (n + s):>8.3f} {predicted:>16.3f} {measured:>9.3f}  {unit}")
