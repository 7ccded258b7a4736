"""``bench``: how fast each decoder runs, against the memory-read floor and the field's
usual implementations, timed in one run on the same tensor (heatmaps, or SimCC vectors
of the same input)."""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from integral_cli import baselines
from integral_cli.baselines import DSNTNN, KORNIA
from integral_cli.checks import check_range, check_size
from integral_cli.coords import simcc_size
from integral_cli.decoders import DECODERS, decode
from integral_cli.decoders.registry import auto_kernel_size
from integral_cli.decoders.simcc import decode_simcc
from integral_cli.devices import check_dtype, limit_allocator_slack, resolve_device, run_on_device, synchronize, timed
from integral_cli.errors import ConfigError
from integral_cli.experiment import DTYPES, check_runnable, run_experiment
from integral_cli.settings import SETTINGS, Dtype, ExperimentConfig, default_margin
from integral_cli.simcc import render_simcc
from integral_cli.synth import FWHM_PER_SIGMA, render_heatmaps
from integral_cli.volumes import render_volumes

SIGMA = 2.0
AMPLITUDE = 10.0
STRIDE = 4
#: SimCC labels as RTMPose trains them: sigma 4.9 bins (its x sigma), MMPose's
#: normalised amplitude 1 / (sigma sqrt(2 pi)).
SIMCC_SIGMA = 4.9
SIMCC_AMPLITUDE = 1.0 / (SIMCC_SIGMA * math.sqrt(2.0 * math.pi))

#: The rows ``bench`` reports besides the decoders.
READ = "read the tensor once (sum)"
RENDER = "render_heatmaps"
RENDER_VOLUMES = "render_volumes"
COMPARE = "compare end to end"
NUMPY_ARGMAX = "numpy argmax (MMPose way)"
QUARTER_LOOP = "quarter offset, per-keypoint loop"
DARK_LOOP = "DARK, cv2 blur + per-keypoint loop"
NOTE_MARGINAL = "the note's marginal decoder"
NOTE_GENERATOR = "the note's generator (numpy)"
RENDER_SIMCC = "render_simcc"
SIMCC_ARGMAX = "numpy argmax (MMPose SimCCLabel way)"
SIMCC_DARK = "SimCC DARK, cv2 blur + loops (MMPose way)"

#: What each of ours is compared with: the field's usual way of doing the same thing.
COMPARISONS: tuple[tuple[str, str], ...] = (
    ("argmax", NUMPY_ARGMAX),
    ("argmax-quarter", QUARTER_LOOP),
    ("dark", DARK_LOOP),
    ("integral", KORNIA),
    ("integral", DSNTNN),
    ("integral-marginal", NOTE_MARGINAL),
    (RENDER, NOTE_GENERATOR),
)
#: The same for SimCC vectors.
SIMCC_COMPARISONS: tuple[tuple[str, str], ...] = (("argmax", SIMCC_ARGMAX), ("dark", SIMCC_DARK))


#: Default batches: maps of 64x48, and volumes of 64x64x48 (768 KiB each in float32).
DEFAULT_BATCH = {2: 4096, 3: 256}


@dataclass(frozen=True)
class BenchConfig:
    """What ``bench`` times: ``batch`` maps of ``heatmap_size`` (H, W) in ``dtype`` on
    ``device`` (for ``dims`` 3, volumes of ``depth`` slices of that size), each decoder
    ``repeat`` times after a warm-up, with the decoder parameters ``beta``,
    ``dark_kernel`` (``"auto"``: from the maps' sigma 2) and ``window_radius``.
    ``batch`` None: :data:`DEFAULT_BATCH`.

    With ``representation="simcc"``: ``batch`` pairs of SimCC vectors of the same input
    (``heatmap_size`` times the stride 4, e.g. 256x192) at ``split_ratio``, RTMPose's
    labels (sigma 4.9 bins, normalised; ``dark_kernel="auto"``: MMPose's 29), decoded
    by every decoder that applies."""

    device: str = "auto"
    heatmap_size: tuple[int, int] = (64, 48)
    batch: int | None = None
    repeat: int = 7
    decoders: tuple[str, ...] = field(default_factory=lambda: tuple(DECODERS))
    dtype: Dtype = "float32"
    dark_kernel: int | str = SETTINGS["dark_kernel"].default
    baselines: bool = True
    representation: str = SETTINGS["representation"].default
    split_ratio: float = SETTINGS["split_ratio"].default
    dims: int = SETTINGS["dims"].default
    depth: int = SETTINGS["depth"].default

    def __post_init__(self) -> None:
        check_size(self.heatmap_size, "heatmap_size")
        for name in ("dtype", "dark_kernel", "device", "dims", "depth"):
            SETTINGS[name].check(getattr(self, name))
        if self.batch is None:
            object.__setattr__(self, "batch", DEFAULT_BATCH[self.dims])
        check_range(self.batch, "batch", 1, 10**7, integer=True)
        check_range(self.repeat, "repeat", 1, 1000, integer=True)
        for name in ("representation", "split_ratio"):
            SETTINGS[name].check(getattr(self, name))
        if self.representation == "simcc" and self.dims == 3:
            raise ConfigError("«dims» 3 times volumes of heatmaps; «representation» simcc is 2D")
        # the checks of the compare run timed: the decoders that apply, the margin, the memory
        check_runnable(self.experiment(self.batch_size))

    @property
    def batch_size(self) -> int:
        """``batch``, which ``__post_init__`` has set (the type allows ``None`` only as the
        argument meaning :data:`DEFAULT_BATCH`)."""
        return int(self.batch or DEFAULT_BATCH[self.dims])

    @property
    def image_size(self) -> tuple[int, int]:
        """The input the maps (and the vectors) come from: the heatmap times the stride."""
        return self.heatmap_size[0] * STRIDE, self.heatmap_size[1] * STRIDE

    @property
    def size(self) -> tuple[int, ...]:
        """One map's ``(H, W)``, or one volume's ``(D, H, W)``."""
        return (self.depth, *self.heatmap_size) if self.dims == 3 else self.heatmap_size

    @property
    def size_text(self) -> str:
        """One output's size as the table and the CSV say it: ``HxW``, ``DxHxW``, or the
        ``Nx+Ny`` bins of a SimCC pair."""
        if self.representation == "simcc":
            bins_y, bins_x = simcc_size(self.image_size, self.split_ratio)
            return f"{bins_x}+{bins_y}"
        return "x".join(map(str, self.size))

    @property
    def resolved_decoders(self) -> tuple[str, ...]:
        """``decoders``, or when that is every decoder, those that apply, as the compare
        run resolves them."""
        return self.experiment(1).resolved_decoders

    def experiment(self, samples: int) -> ExperimentConfig:
        """The ``compare`` run timed end to end: ``samples`` such maps (or volumes) at
        stride 4, or pairs of SimCC vectors."""
        if self.representation == "simcc":
            return self._simcc_experiment(samples)
        height, width = self.heatmap_size
        return ExperimentConfig(
            stride=STRIDE,
            sigma=SIGMA,
            amplitude=AMPLITUDE,
            image_size=(height * STRIDE, width * STRIDE),
            dims=self.dims,
            depth=self.depth,
            samples=samples,
            decoders=self.decoders,
            device=self.device,
            dtype=self.dtype,
            margin=_margin(self.size),
            dark_kernel=self.dark_kernel,
        )

    def _simcc_experiment(self, samples: int) -> ExperimentConfig:
        """The ``compare`` run timed end to end on SimCC vectors: ``samples`` pairs of
        RTMPose's vectors for this input, the margin their labels' 3 sigma (less when the
        vectors are short)."""
        bins = simcc_size(self.image_size, self.split_ratio)
        return ExperimentConfig(
            representation="simcc",
            split_ratio=self.split_ratio,
            sigma=SIMCC_SIGMA,
            amplitude=SIMCC_AMPLITUDE,
            image_size=self.image_size,
            samples=samples,
            decoders=self.decoders,
            device=self.device,
            dtype=self.dtype,
            dark_kernel=self.dark_kernel,
            margin=min(default_margin(SIMCC_SIGMA), (min(bins) - 1) / 2),
        )

    @property
    def decoder_params(self) -> dict[str, Any]:
        if self.dark_kernel != "auto":
            return {"dark_kernel": self.dark_kernel}
        sigma = SIMCC_SIGMA if self.representation == "simcc" else SIGMA
        return {"dark_kernel": auto_kernel_size(sigma, self.representation)}


def _margin(size: tuple[int, ...]) -> float:
    """The distance kept from the border: 6 px, less when the map is small."""
    return min(6.0, (min(size) - 1) / 2)


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


def csv_records(config: BenchConfig, result: dict[str, Any]) -> list[dict[str, Any]]:
    """``result``'s rows for a CSV, each with what was timed and where: the
    representation, ``dims``, one output's size (``HxW``, ``DxHxW``, or the ``Nx+Ny``
    bins of a SimCC pair), the dtype, the device, torch and the threads."""
    context = {
        "representation": "volume" if config.dims == 3 else config.representation,
        "dims": config.dims,
        "size": config.size_text,
        "dtype": config.dtype,
        "device": result["device"],
        "torch": result["torch"],
        "threads": result["threads"],
    }
    return [{**row, **context} for row in result["rows"]]


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


def run_bench(config: BenchConfig, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time everything; return ``{"rows": [...], "ratios": [...], "dark_max_difference": ...}``.

    The read floor, the decoders, the rendering and the baselines are timed in
    interleaved rounds (see :func:`time_interleaved`); the end-to-end ``compare`` once,
    after them. Rows have ``name, kind, maps, median_s, min_s, max_s, maps_per_s,
    ns_per_map, read_fraction`` (the speed as a fraction of reading the tensor once with
    ``sum``). Ratios have ``ours, against, times_faster`` (speed over speed, one entry per
    pair of :data:`COMPARISONS` whose two sides were timed). For ``dims`` 3 the batch
    holds volumes, every decoder of volumes is timed and the one baseline is dsntnn's
    n-dimensional soft-argmax.
    """
    device = resolve_device(config.device)
    check_dtype(device, config.dtype)
    if device.type == "cpu":
        limit_allocator_slack()  # time everything under the allocator policy compare runs with
    return run_on_device(device, lambda: _bench(config, device, progress), "lower «batch», or use another «device»")


def _bench(config: BenchConfig, device: torch.device, progress: Callable[[str], None] | None) -> dict[str, Any]:
    if config.representation == "simcc":
        return _run_simcc_bench(config, device, progress or (lambda name: None))
    batch = config.batch_size
    generator = torch.Generator(device="cpu").manual_seed(0)
    margin = _margin(config.size)
    # (x, y[, z]) uniform in the interior
    unit = torch.rand((batch, 1, len(config.size)), generator=generator, dtype=torch.float64)
    span = torch.tensor([side - 1 - 2 * margin for side in reversed(config.size)], dtype=torch.float64)
    centers = (margin + unit * span).float().to(device)
    if config.dims == 3:
        render: Callable[[], torch.Tensor] = lambda: render_volumes(centers, config.size, SIGMA, amplitude=AMPLITUDE)  # noqa: E731
    else:
        render = lambda: render_heatmaps(centers, config.heatmap_size, SIGMA, amplitude=AMPLITUDE)  # noqa: E731
    maps = render().to(DTYPES[config.dtype]).contiguous()
    step = progress or (lambda name: None)
    params = config.decoder_params
    names = config.resolved_decoders

    contenders = [Contender(READ, "floor", lambda: maps.sum(), batch, config.repeat)]
    contenders += [
        Contender(name, "decoder", functools.partial(decode, maps, name, **params), batch, config.repeat)
        for name in names
    ]
    contenders.append(Contender(RENDER_VOLUMES if config.dims == 3 else RENDER, "render", render, batch, config.repeat))
    dark_difference = None
    if config.baselines and config.dims == 3:
        found = baselines.library_soft_argmax()
        if DSNTNN in found:
            dsnt = found[DSNTNN]
            contenders.append(Contender(DSNTNN, "baseline", functools.partial(dsnt, maps), batch, config.repeat))
    elif config.baselines:
        more, dark_difference = _baselines(config, maps, centers, device)
        contenders += more
    seconds = time_interleaved(contenders, device, step)
    read = statistics.median(seconds[READ])
    rows = [
        _row(c.name, c.kind, seconds[c.name], c.maps, None if c.kind == "baseline" and c.maps != batch else read)
        for c in contenders
    ]

    step("compare")
    experiment = config.experiment(batch)
    compare_seconds = time_call(lambda: run_experiment(experiment), 1, device)
    rows.insert(len(names) + 2, _row(COMPARE, "compare", compare_seconds, batch, read))
    return {
        "rows": rows,
        "ratios": speed_ratios(rows),
        "dark_max_difference": dark_difference,
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def _baselines(
    config: BenchConfig, maps: torch.Tensor, centers: torch.Tensor, device: torch.device
) -> tuple[list[Contender], float | None]:
    """The field's usual implementations, on the same maps; and how far the per-keypoint
    DARK lands from ours (``None`` without OpenCV)."""
    maps_np = maps.float().cpu().numpy()
    slow = min(config.repeat, 3)
    batch = config.batch_size
    kernel = config.decoder_params["dark_kernel"]
    contenders = [
        Contender(NUMPY_ARGMAX, "baseline", lambda: baselines.numpy_argmax(maps_np), batch, config.repeat),
        Contender(QUARTER_LOOP, "baseline", lambda: baselines.loop_quarter_offset(maps_np), batch, slow),
    ]
    dark_difference = None
    if baselines.loop_dark(maps_np[:1], kernel) is not None:
        contenders.append(Contender(DARK_LOOP, "baseline", lambda: baselines.loop_dark(maps_np, kernel), batch, slow))
        theirs = torch.from_numpy(baselines.loop_dark(maps_np, kernel))
        dark_difference = float((decode(maps, "dark", dark_kernel=kernel).float().cpu() - theirs).abs().max())
    contenders.append(Contender(NOTE_MARGINAL, "baseline", lambda: baselines.note_marginal(maps), batch, config.repeat))
    count = min(batch, 512)
    joints = centers[:count, 0].cpu().numpy()
    fwhm = FWHM_PER_SIGMA * SIGMA
    contenders.append(
        Contender(
            NOTE_GENERATOR,
            "baseline",
            lambda: baselines.note_generator(joints, *config.heatmap_size, fwhm),
            count,
            slow,
        )
    )
    for name, function in baselines.library_soft_argmax().items():
        contenders.append(Contender(name, "baseline", functools.partial(function, maps), batch, config.repeat))
    return contenders, dark_difference


def _run_simcc_bench(config: BenchConfig, device: torch.device, step: Callable[[str], None]) -> dict[str, Any]:
    """:func:`run_bench` for SimCC vectors: the read floor, the decoders that apply,
    ``render_simcc`` and MMPose's way of decoding, interleaved; then compare."""
    dtype = DTYPES[config.dtype]
    batch = config.batch_size
    image = config.image_size
    generator = torch.Generator(device="cpu").manual_seed(0)
    margin = 3 * SIMCC_SIGMA / config.split_ratio  # image px: the labels' 3 sigma
    unit = torch.rand((batch, 1, 2), generator=generator, dtype=torch.float64)
    span = torch.tensor([image[1] - 1 - 2 * margin, image[0] - 1 - 2 * margin], dtype=torch.float64)
    centers = (margin + unit * span).float().to(device)

    def render() -> tuple[torch.Tensor, torch.Tensor]:
        return render_simcc(centers, image, SIMCC_SIGMA, split_ratio=config.split_ratio, amplitude=SIMCC_AMPLITUDE)

    simcc_x, simcc_y = (vectors.to(dtype).contiguous() for vectors in render())
    params = config.decoder_params
    contenders = [Contender(READ, "floor", lambda: simcc_x.sum() + simcc_y.sum(), batch, config.repeat)]
    contenders += [
        Contender(
            name,
            "decoder",
            functools.partial(decode_simcc, simcc_x, simcc_y, name, **params),
            batch,
            config.repeat,
        )
        for name in config.resolved_decoders
    ]
    contenders.append(Contender(RENDER_SIMCC, "render", render, batch, config.repeat))
    dark_difference = None
    if config.baselines:
        x_np, y_np = simcc_x.float().cpu().numpy(), simcc_y.float().cpu().numpy()
        kernel = params["dark_kernel"]
        contenders.append(
            Contender(SIMCC_ARGMAX, "baseline", lambda: baselines.simcc_argmax(x_np, y_np), batch, config.repeat)
        )
        theirs = baselines.simcc_dark(x_np[:1], y_np[:1], kernel)
        if theirs is not None:
            slow = min(config.repeat, 3)
            contenders.append(
                Contender(SIMCC_DARK, "baseline", lambda: baselines.simcc_dark(x_np, y_np, kernel), batch, slow)
            )
            ours = decode_simcc(simcc_x, simcc_y, "dark", dark_kernel=kernel).float().cpu()
            dark_difference = float((ours - torch.from_numpy(baselines.simcc_dark(x_np, y_np, kernel))).abs().max())
    seconds = time_interleaved(contenders, device, step)
    read = statistics.median(seconds[READ])
    rows = [_row(c.name, c.kind, seconds[c.name], c.maps, read) for c in contenders]

    step("compare")
    experiment = config.experiment(batch)
    compare_seconds = time_call(lambda: run_experiment(experiment), 1, device)
    rows.insert(len(config.resolved_decoders) + 2, _row(COMPARE, "compare", compare_seconds, batch, read))
    return {
        "rows": rows,
        "ratios": speed_ratios(rows, SIMCC_COMPARISONS),
        "dark_max_difference": dark_difference,
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def speed_ratios(
    rows: list[dict[str, Any]], comparisons: tuple[tuple[str, str], ...] = COMPARISONS
) -> list[dict[str, Any]]:
    """How many times faster each of ours runs than the field's way of doing the same
    (``comparisons``: :data:`COMPARISONS`, or :data:`SIMCC_COMPARISONS`), for the pairs
    whose two sides were timed."""
    speed = {row["name"]: row["maps_per_s"] for row in rows}
    return [
        {"ours": ours, "against": theirs, "times_faster": speed[ours] / speed[theirs]}
        for ours, theirs in comparisons
        if ours in speed and theirs in speed
    ]


__all__ = [
    "COMPARISONS",
    "DEFAULT_BATCH",
    "BenchConfig",
    "Contender",
    "run_bench",
    "speed_ratios",
    "time_call",
    "time_interleaved",
]
