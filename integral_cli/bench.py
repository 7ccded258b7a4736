"""``bench``: how fast each decoder runs, against the memory-read floor and the field's
usual implementations, timed in one run on the same tensor."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from integral_cli import baselines
from integral_cli.checks import check_range, check_size
from integral_cli.decoders import DECODERS, decode, get_decoder
from integral_cli.devices import limit_allocator_slack, resolve_device, synchronize, timed
from integral_cli.errors import ConfigError
from integral_cli.experiment import DTYPES, ExperimentConfig, run_experiment
from integral_cli.synth import FWHM_PER_SIGMA, render_heatmaps

SIGMA = 2.0
AMPLITUDE = 10.0
STRIDE = 4


@dataclass(frozen=True)
class BenchConfig:
    """What ``bench`` times: ``batch`` maps of ``size`` (H, W) in ``dtype`` on ``device``,
    each decoder ``repeat`` times after a warm-up."""

    device: str = "auto"
    size: tuple[int, int] = (64, 48)
    batch: int = 4096
    repeat: int = 7
    decoders: tuple[str, ...] = field(default_factory=lambda: tuple(DECODERS))
    dtype: str = "float32"
    baselines: bool = True

    def __post_init__(self) -> None:
        check_size(self.size, "size")
        check_range(self.batch, "batch", 1, 10**7, integer=True)
        check_range(self.repeat, "repeat", 1, 1000, integer=True)
        for name in self.decoders:
            get_decoder(name)
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")


def time_call(function: Callable[[], Any], repeat: int, device: torch.device) -> list[float]:
    """Seconds of each of ``repeat`` calls after one warm-up call, device synchronised."""
    function()
    synchronize(device)
    return [_seconds(function, device) for _ in range(repeat)]


def _seconds(function: Callable[[], Any], device: torch.device) -> float:
    return timed(function, device)[1]


@dataclass
class Contender:
    """One thing ``bench`` times: ``function`` decodes (or renders) ``maps`` maps; it is
    called ``repeat`` times."""

    name: str
    kind: str
    function: Callable[[], Any]
    maps: int
    repeat: int


def time_interleaved(
    contenders: list[Contender], device: torch.device, progress: Callable[[str], None] | None = None
) -> dict[str, list[float]]:
    """Seconds of each call of every contender, after one warm-up call each, taken in
    rounds: one call of each contender per round, in turn. On a shared machine whose
    speed drifts, every contender then sees the same conditions, so the ratios of their
    medians hold within the run."""
    seconds: dict[str, list[float]] = {c.name: [] for c in contenders}
    for contender in contenders:
        if progress is not None:
            progress(f"warm-up {contender.name}")
        contender.function()
    synchronize(device)
    rounds = max(c.repeat for c in contenders)
    for number in range(rounds):
        if progress is not None:
            progress(f"round {number + 1} of {rounds}")
        for contender in contenders:
            if number < contender.repeat:
                seconds[contender.name].append(_seconds(contender.function, device))
    return seconds


def _row(name: str, kind: str, seconds: list[float], maps: int, read_seconds: float | None) -> dict[str, Any]:
    median = statistics.median(seconds)
    return {
        "name": name,
        "kind": kind,
        "maps": maps,
        "median_s": median,
        "min_s": min(seconds),
        "max_s": max(seconds),
        "maps_per_s": maps / median,
        "ns_per_map": median / maps * 1e9,
        "read_fraction": (read_seconds / maps) / (median / maps) if read_seconds else None,
    }


READ = "read the tensor once (sum)"


def run_bench(config: BenchConfig, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time everything; return ``{"rows": [...], "targets": [...], "dark_max_difference": ...}``.

    The read floor, the decoders, ``render_heatmaps`` and the baselines are timed in
    interleaved rounds (see :func:`time_interleaved`); the end-to-end ``compare`` once,
    after them. Rows have ``name, kind, maps, median_s, min_s, max_s, maps_per_s,
    ns_per_map, read_fraction`` (the speed as a fraction of reading the tensor once with
    ``sum``).
    """
    device = resolve_device(config.device)
    if device.type == "cpu":
        limit_allocator_slack()  # time everything under the allocator policy compare runs with
    dtype = DTYPES[config.dtype]
    height, width = config.size
    generator = torch.Generator(device="cpu").manual_seed(0)
    margin = min(6.0, (min(height, width) - 1) / 2)
    unit = torch.rand((config.batch, 1, 2), generator=generator, dtype=torch.float64)
    span = torch.tensor([width - 1 - 2 * margin, height - 1 - 2 * margin], dtype=torch.float64)
    centers = (margin + unit * span).float().to(device)
    maps = render_heatmaps(centers, config.size, SIGMA, amplitude=AMPLITUDE).to(dtype).contiguous()
    step = progress or (lambda name: None)

    contenders = [Contender(READ, "floor", lambda: maps.sum(), config.batch, config.repeat)]
    contenders += [
        Contender(name, "decoder", lambda name=name: decode(maps, name), config.batch, config.repeat)
        for name in config.decoders
    ]
    contenders.append(Contender("render_heatmaps", "render",
                                lambda: render_heatmaps(centers, config.size, SIGMA, amplitude=AMPLITUDE),
                                config.batch, config.repeat))
    dark_difference = None
    if config.baselines:
        more, dark_difference = _baselines(config, maps, centers, device)
        contenders += more
    seconds = time_interleaved(contenders, device, step)
    read = statistics.median(seconds[READ])
    rows = [_row(c.name, c.kind, seconds[c.name], c.maps, None if c.kind == "baseline" and c.maps != config.batch
                 else read) for c in contenders]

    step("compare")
    experiment = ExperimentConfig(
        stride=STRIDE, sigma=SIGMA, amplitude=AMPLITUDE, image_size=(height * STRIDE, width * STRIDE),
        samples=config.batch, decoders=config.decoders, device=config.device, dtype=config.dtype,
        margin=margin,
    )
    compare_seconds = time_call(lambda: run_experiment(experiment), 1, device)
    rows.insert(len(config.decoders) + 2, _row("compare end to end", "compare", compare_seconds, config.batch, read))
    return {"rows": rows, "targets": _targets(rows), "dark_max_difference": dark_difference,
            "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()}


def _baselines(config: BenchConfig, maps: torch.Tensor, centers: torch.Tensor,
               device: torch.device) -> tuple[list[Contender], float | None]:
    """The field's usual implementations, on the same maps; and how far the per-keypoint
    DARK lands from ours (``None`` without OpenCV)."""
    maps_np = maps.float().cpu().numpy()
    slow = min(config.repeat, 3)
    batch = config.batch
    contenders = [
        Contender("numpy argmax (MMPose way)", "baseline", lambda: baselines.numpy_argmax(maps_np), batch,
                  config.repeat),
        Contender("argmax + per-keypoint quarter loop (MMPose way)", "baseline",
                  lambda: baselines.loop_quarter_offset(maps_np), batch, slow),
    ]
    dark_difference = None
    if baselines.loop_dark(maps_np[:1]) is not None:
        contenders.append(Contender("whole-map cv2 blur + per-keypoint DARK (MMPose way)", "baseline",
                                    lambda: baselines.loop_dark(maps_np), batch, slow))
        theirs = torch.from_numpy(baselines.loop_dark(maps_np)).to(device)
        dark_difference = float((decode(maps, "dark").float() - theirs).abs().max())
    contenders.append(Contender("seed note's marginal decoder", "baseline", lambda: baselines.seed_marginal(maps),
                                batch, config.repeat))
    count = min(batch, 512)
    joints = centers[:count, 0].cpu().numpy()
    fwhm = FWHM_PER_SIGMA * SIGMA
    contenders.append(Contender("seed note's generator (numpy loop)", "baseline",
                                lambda: baselines.seed_generator(joints, *config.size, fwhm), count, slow))
    for name, function in baselines.library_soft_argmax().items():
        contenders.append(Contender(name, "baseline", lambda f=function: f(maps), batch, config.repeat))
    return contenders, dark_difference


# (ours, theirs or None for the read floor, required ratio of speeds)
_TARGETS: tuple[tuple[str, str | None, float], ...] = (
    ("argmax", "numpy argmax (MMPose way)", 1.0),
    ("argmax", None, 0.4),
    ("argmax-quarter", "argmax + per-keypoint quarter loop (MMPose way)", 3.0),
    ("argmax-quarter", None, 0.3),
    ("dark", "whole-map cv2 blur + per-keypoint DARK (MMPose way)", 10.0),
    ("integral", "kornia spatial_soft_argmax2d", 3.0),
    ("integral", "dsntnn flat_softmax + dsnt", 1.2),
    ("integral-marginal", None, 0.3),
    ("integral-marginal", "seed note's marginal decoder", 1.0),
    ("render_heatmaps", "seed note's generator (numpy loop)", 20.0),
)


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    speed = {row["name"]: row["maps_per_s"] for row in rows}
    read = rows[0]["maps_per_s"]
    out = []
    for ours, theirs, required in _TARGETS:
        if ours not in speed or (theirs is not None and theirs not in speed):
            continue
        ratio = speed[ours] / (speed[theirs] if theirs else read)
        out.append({"ours": ours, "against": theirs or "read rate", "ratio": ratio, "target": required,
                    "met": ratio >= required})
    for row in rows:
        if row["kind"] == "decoder":
            out.append({"ours": row["name"], "against": "read rate", "ratio": row["read_fraction"],
                        "target": 0.2, "met": row["read_fraction"] >= 0.2})
    if "compare end to end" in speed:
        seconds = {row["name"]: row["median_s"] for row in rows}
        parts = seconds["render_heatmaps"] + sum(row["median_s"] for row in rows if row["kind"] == "decoder")
        cost = seconds["compare end to end"] / parts
        out.append({"ours": "compare end to end", "against": "render + decoders", "ratio": cost,
                    "target": 2.0, "met": cost <= 2.0, "lower_is_better": True})
    return out


__all__ = ["BenchConfig", "Contender", "run_bench", "time_call", "time_interleaved"]
