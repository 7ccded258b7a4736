"""A training toy: can a heatmap be learned through a decoder?

Each of ``samples`` problems is a free heatmap (its pixels are the parameters, as if a
network's last layer could set every logit) that starts as the encoder's blob a little
off a sub-pixel target. An L1 loss between the decoded point and the target, in image
pixels, is minimised with Adam and a cosine learning-rate schedule. A decoder that
passes no gradient (argmax and its quarter offset) leaves the maps where they started.

Decoders differ in how strongly a step on the pixels moves the point (the marginal
variant sums a whole column, so each pixel's step counts H times), so no one learning
rate is fair to all: every rate of ``learning_rates`` is trained side by side, as one
batch, and each decoder is reported with its best.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import torch

from integral_cli.checks import check_range
from integral_cli.coords import heatmap_to_image, image_to_heatmap
from integral_cli.decoders import decode
from integral_cli.devices import accumulation_dtype, check_dtype, resolve_device, run_on_device
from integral_cli.errors import ConfigError
from integral_cli.experiment import DTYPES, MEMORY_ADVICE, Representation, check_runnable, representation_of
from integral_cli.settings import ExperimentConfig

DEFAULT_STEPS = 200
DEFAULT_LEARNING_RATES: tuple[float, ...] = (0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
#: Default error every target must be within, image pixels.
DEFAULT_THRESHOLD = 0.1
#: Default distance of the starting blob from its target, heatmap pixels.
DEFAULT_START_DISTANCE = 1.0
MAX_STEPS = 100_000
MAX_LEARNING_RATES = 16

#: The columns of the fit report, in order.
FIT_COLUMNS: tuple[str, ...] = (
    "decoder",
    "gradient",
    "learning_rate",
    "start_error",
    "final_error",
    "final_max_error",
    "steps_to_threshold",
    "trainable",
)

StepCallback = Callable[[str, int], None]


@dataclass(frozen=True)
class FitConfig:
    """A training-toy run.

    Attributes:
        experiment: the maps and targets (stride, sigma, amplitude, encoder, image
            size, decoder parameters, ``samples`` targets, seed, device, dtype).
        steps: optimiser steps per decoder.
        learning_rates: Adam learning rates tried side by side.
        threshold: a run has converged when every target is within this, image pixels.
        start_distance: distance of each starting blob from its target, heatmap
            pixels, in a seeded random direction.
    """

    experiment: ExperimentConfig = field(default_factory=lambda: ExperimentConfig(samples=16))
    steps: int = DEFAULT_STEPS
    learning_rates: tuple[float, ...] = DEFAULT_LEARNING_RATES
    threshold: float = DEFAULT_THRESHOLD
    start_distance: float = DEFAULT_START_DISTANCE

    def __post_init__(self) -> None:
        self.experiment.require_heatmaps("the training toy")
        check_range(self.steps, "steps", 1, MAX_STEPS, integer=True)
        if not 1 <= len(self.learning_rates) <= MAX_LEARNING_RATES:
            raise ConfigError(f"give 1 to {MAX_LEARNING_RATES} learning rates, got {len(self.learning_rates)}")
        for rate in self.learning_rates:
            check_range(rate, "learning rate", 0, 10.0, low_open=True)
        check_range(self.threshold, "threshold", 0, math.inf, low_open=True)
        # farther than the margin, a starting blob could leave the map
        check_range(
            self.start_distance, "start_distance (heatmap px, at most the margin)", 0, self.experiment.resolved_margin
        )
        if self.experiment.dtype not in ("float32", "float64"):
            raise ConfigError(f"fit trains in float32 or float64, not {self.experiment.dtype}")


def fit_report(config: FitConfig, *, progress: StepCallback | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train a free heatmap through each decoder and report how close it gets.

    Args:
        config: the run.
        progress: called with the decoder's name and the steps it has done.

    Returns:
        ``(best, runs)``. ``best`` has one row per decoder with the columns
        :data:`FIT_COLUMNS`, for its best learning rate (the fewest steps to the
        threshold; if none gets there, the smallest final error). ``runs`` has the same
        columns for every decoder and learning rate. Errors are Euclidean, in image
        pixels (for volumes, a voxel along z counts as ``stride`` image pixels, as one
        along x or y does), averaged over the targets (``final_max_error``: the worst
        target);
        ``steps_to_threshold`` is the number of steps taken when every target was
        first within ``threshold`` (0: at the start; ``None``: never); ``trainable``
        says it got there.

    Raises:
        ConfigError: a setting out of range, or the run does not fit the memory budget.
        DeviceError: the device is not available, or is MPS with float64.
        OutOfMemoryError: the device ran out of memory.
    """
    experiment = config.experiment
    check_runnable(experiment)
    _check_memory(config)
    device = resolve_device(experiment.device)
    check_dtype(device, experiment.dtype)
    return run_on_device(device, lambda: _fit(config, device, progress), MEMORY_ADVICE)


def _fit(config: FitConfig, device: torch.device, progress: StepCallback | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    experiment = config.experiment
    exact = accumulation_dtype(device)
    representation = representation_of(experiment)
    # (B, 1, C): x, y in image px[, z in voxels], drawn on the CPU and moved
    targets = representation.sample_truth(experiment, torch.device("cpu")).to(exact).to(device)
    starts = _start_points(config, targets)
    # rendered in the targets' precision, then cast to the trained dtype
    start_maps = representation.render(experiment, starts, 0)
    runs = []
    for name in experiment.resolved_decoders:
        runs += _train(config, representation, name, start_maps, targets, progress)
    runs = pd.DataFrame(runs, columns=list(FIT_COLUMNS))
    runs["steps_to_threshold"] = runs["steps_to_threshold"].astype("Int64")
    best = pd.DataFrame([_best_run(runs[runs["decoder"] == name]) for name in experiment.resolved_decoders])
    best["steps_to_threshold"] = best["steps_to_threshold"].astype("Int64")
    return best.reset_index(drop=True), runs


#: Working-precision map-sized buffers per map and learning rate while training: the
#: parameter, its gradient, Adam's two moments, the joined batch, and the decoders'
#: temporaries and autograd graph (DARK's is the largest).
FIT_BUFFERS = 24


def _check_memory(config: FitConfig) -> None:
    experiment = config.experiment
    shape = experiment.sample_shape
    maps = experiment.total_samples * len(config.learning_rates)
    need = maps * math.prod(shape) * DTYPES[experiment.dtype].itemsize * FIT_BUFFERS
    if need > experiment.max_memory_mib * 2**20:
        what = "volumes" if len(shape) == 3 else "maps"
        raise ConfigError(
            f"training {experiment.total_samples} {what} of {'x'.join(map(str, shape))} at "
            f"{len(config.learning_rates)} learning rates needs about {math.ceil(need / 2**20)} MiB, more than "
            f"the memory budget of {experiment.max_memory_mib:g} MiB; lower «samples» or raise «max_memory_mib»"
        )


def _start_points(config: FitConfig, targets: torch.Tensor) -> torch.Tensor:
    """Each target moved ``start_distance`` heatmap pixels (voxels) in a seeded
    direction: ``x, y`` in image px, ``z`` in voxels.

    The directions are drawn on the CPU in float64 and moved, like the targets, so they
    are the same on every device.
    """
    experiment = config.experiment
    convention, size = experiment.convention, experiment.image_size
    generator = torch.Generator(device="cpu").manual_seed(experiment.seed + 1)

    def uniform() -> torch.Tensor:
        return torch.rand(targets.shape[:-1], generator=generator, dtype=torch.float64)

    angle = 2 * math.pi * uniform()
    step = config.start_distance * torch.stack((angle.cos(), angle.sin()), dim=-1)
    if targets.shape[-1] == 3:
        # a direction uniform on the sphere: its z uniform in [-1, 1]
        along_z = 2 * uniform() - 1
        step = torch.cat((step * (1 - along_z**2).sqrt().unsqueeze(-1), config.start_distance * along_z[..., None]), -1)
    step = step.to(targets.dtype).to(targets.device)
    starts_hm = image_to_heatmap(targets[..., :2], experiment.stride, convention, size) + step[..., :2]
    starts = heatmap_to_image(starts_hm, experiment.stride, convention, size)
    return torch.cat((starts, targets[..., 2:] + step[..., 2:]), dim=-1)


def _train(
    config: FitConfig,
    representation: Representation,
    name: str,
    start_maps: torch.Tensor,
    targets: torch.Tensor,
    progress: StepCallback | None,
) -> list[dict[str, object]]:
    """Train one decoder at every learning rate at once; one row per rate."""
    experiment = config.experiment
    rates = config.learning_rates
    count = len(rates)
    params = [start_maps.clone().requires_grad_() for _ in rates]
    optimiser = torch.optim.Adam([{"params": [p], "lr": rate} for p, rate in zip(params, rates, strict=True)])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.steps)
    # z in voxels counts as stride image px, like a voxel along x or y
    scale = targets.new_tensor([1.0, 1.0, float(experiment.stride)][: targets.shape[-1]])
    goal = targets.repeat(count, 1, 1) * scale
    batch = targets.shape[0]
    reached: list[int | None] = [None] * count
    start_error = None
    gradient = "yes"
    for step in range(config.steps + 1):
        decoded = scale * representation.to_truth_units(
            experiment, decode(torch.cat(params), name, **experiment.decoder_params).to(goal.dtype)
        )
        errors = torch.linalg.vector_norm(decoded.detach() - goal, dim=-1).view(count, batch)
        if start_error is None:
            start_error = errors[0].mean().item()
        worst = errors.max(dim=1).values.tolist()
        reached = [
            r if r is not None or not w <= config.threshold else step for r, w in zip(reached, worst, strict=True)
        ]
        if step == config.steps:
            break
        if not decoded.requires_grad:
            gradient = "none"
            break
        # each map's loss depends on its own pixels only, so the groups train independently
        loss = (decoded - goal).abs().sum() / batch
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if step == 0 and all(p.grad is None or not bool(p.grad.any()) for p in params):
            gradient = "zero"
            break
        optimiser.step()
        schedule.step()
        if progress is not None:
            progress(name, step + 1)
    if progress is not None:
        progress(name, config.steps)
    final = errors.mean(dim=1).tolist()
    return [
        {
            "decoder": name,
            "gradient": gradient,
            "learning_rate": rate,
            "start_error": start_error,
            "final_error": final[i],
            "final_max_error": worst[i],
            "steps_to_threshold": reached[i],
            "trainable": reached[i] is not None,
        }
        for i, rate in enumerate(rates)
    ]


def _best_run(runs: pd.DataFrame) -> pd.Series:
    if (runs["gradient"] != "yes").all():
        # nothing was trained, so no learning rate is better than another
        row = runs.iloc[0].copy()
        row["learning_rate"] = math.nan
        return row
    finished = runs[runs["trainable"]]
    if len(finished):
        order = finished.sort_values(["steps_to_threshold", "final_error"], kind="stable")
        return order.iloc[0]
    closest = runs["final_error"].fillna(math.inf)
    return runs.loc[closest.idxmin()]
