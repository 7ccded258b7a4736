import dataclasses
import math
import subprocess
import sys

import pytest

from integral_cli import ExperimentConfig, run_experiment
from integral_cli.errors import ConfigError
from integral_cli.experiment import MAP_BUFFERS, chunk_size
from integral_cli.report import CSV_COLUMNS

from support import assert_rows_equal

# Argmax on uniformly random sub-pixel positions (offsets uniform in a stride-wide square):
MEAN_2D = (math.sqrt(2) + math.log(1 + math.sqrt(2))) / 6  # x stride: E|e|, 0.38260
STD_2D = math.sqrt(1 / 6 - MEAN_2D**2)  # x stride: E[d^2] = 2 * s^2 / 12
STD_AXIS = math.sqrt(1 / 48)  # |e| per axis is uniform on [0, s/2]


@pytest.mark.parametrize("stride", [1, 4, 8])
def test_argmax_closed_forms(stride):
    n = 20_000
    config = ExperimentConfig(stride=stride, samples=n, decoders=("argmax",), device="cpu", seed=3)
    row = run_experiment(config).iloc[0]
    # Tolerance: 4 standard errors of the mean at this sample count.
    assert row.mean_error == pytest.approx(MEAN_2D * stride, abs=4 * STD_2D * stride / math.sqrt(n))
    assert row.rmse == pytest.approx(stride / math.sqrt(6), rel=0.01)
    assert row.max_error <= stride / math.sqrt(2) + 1e-4
    assert row.mean_error_hm == pytest.approx(row.mean_error / stride)
    assert row.ci95_high - row.ci95_low == pytest.approx(2 * 1.959964 * STD_2D * stride / math.sqrt(n), rel=0.05)
    assert abs(row.bias_x) < 4 * stride / math.sqrt(12 * n) and abs(row.bias_y) < 4 * stride / math.sqrt(12 * n)
    assert row.nonfinite == 0


def test_argmax_per_axis_mean_is_a_quarter_stride():
    # On a heatmap one pixel wide (image width = stride, margin 0) every x is 0 in heatmap
    # pixels, so the x error is 0 and the 2D error is the y error |e_y| alone.
    n, stride = 20_000, 4
    config = ExperimentConfig(
        stride=stride, image_size=(256, 4), margin=0, samples=n, decoders=("argmax",), device="cpu"
    )
    row = run_experiment(config).iloc[0]
    assert row.mean_error == pytest.approx(stride / 4, abs=4 * STD_AXIS * stride / math.sqrt(n))
    assert row.max_error <= stride / 2 + 1e-4


@pytest.mark.parametrize("stride", [4, 8])
def test_quarter_offset_closed_form(stride):
    # Per-axis error 1/4 - |f| is uniform on [-1/4, 1/4] heatmap px: the argmax square
    # halved, so the mean 2D error is half argmax's, 0.1913 * stride.
    n = 20_000
    config = ExperimentConfig(stride=stride, samples=n, decoders=("argmax-quarter",), device="cpu", seed=5)
    row = run_experiment(config).iloc[0]
    assert row.mean_error == pytest.approx(MEAN_2D * stride / 2, abs=4 * STD_2D * stride / 2 / math.sqrt(n))
    assert row.max_error <= stride / 2 / math.sqrt(2) + 1e-4


def test_dark_kernel_auto_follows_sigma():
    config = ExperimentConfig(sigma=3.0, dark_kernel="auto", samples=10, device="cpu")
    assert config.decoder_params["dark_kernel"] == 17
    row = run_experiment(config).iloc[0]
    assert (row.dark_kernel, row.window_radius) == (17, 2)


def test_rows_and_columns():
    config = ExperimentConfig(samples=50, device="cpu")
    frame = run_experiment(config)
    assert tuple(frame.columns) == CSV_COLUMNS
    assert list(frame.decoder) == list(config.decoders)
    row = frame.iloc[0]
    assert (row.stride, row.heatmap_h, row.heatmap_w, row.margin, row.device) == (4, 64, 48, 6, "cpu")


def test_same_seed_same_rows():
    config = ExperimentConfig(samples=300, device="cpu", seed=11)
    a = run_experiment(config).drop(columns="seconds")
    b = run_experiment(config).drop(columns="seconds")
    assert_rows_equal(a, b)  # the same command twice: bit-identical
    c = run_experiment(dataclasses.replace(config, seed=12)).drop(columns="seconds")
    assert not a.equals(c)


def test_numbers_do_not_depend_on_the_chunk_size():
    big = ExperimentConfig(samples=500, device="cpu", max_memory_mib=512, dtype="float64")
    small = dataclasses.replace(big, max_memory_mib=1)  # 1 MiB: 10 maps of 64x48 per chunk
    assert chunk_size(small) < 50 and chunk_size(big) == 500
    a, b = run_experiment(big), run_experiment(small)
    # Same points, same maps; only the summation order inside a batched kernel may
    # differ. In float64 a decoded point is a sum of at most 3072 terms, so reordering
    # moves it by about 3072 eps ~ 1e-12 relative; 1e-9 leaves a thousandfold margin.
    assert_rows_equal(a, b, rtol=1e-9)


def test_float32_numbers_agree_across_chunk_sizes_to_rounding():
    # The default precision. Batched float32 kernels may sum in another order, which
    # moves a sub-pixel estimate by up to ~4e-6 heatmap px on a few maps (DARK's Newton
    # step amplifies it most), i.e. under 2e-5 image px at stride 4; on statistics of
    # 3000 maps that is a relative 1e-4 with a 2e-5 px floor (the README says so).
    big = ExperimentConfig(samples=3000, device="cpu", max_memory_mib=1024)
    small = dataclasses.replace(big, max_memory_mib=16)
    assert chunk_size(small) < 300 and chunk_size(big) == 3000
    assert_rows_equal(run_experiment(big), run_experiment(small), rtol=1e-4, atol=2e-5)


def test_progress_reports_every_chunk():
    seen = []
    run_experiment(ExperimentConfig(samples=100, device="cpu", max_memory_mib=1), progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 100 and len(seen) > 1


def test_a_million_samples_at_stride_1_stay_within_the_budget():
    config = ExperimentConfig(stride=1, samples=1_000_000, device="cpu")
    step = chunk_size(config)
    per_map = 256 * 192 * 4 * (1 + MAP_BUFFERS)  # map + working buffers, float32
    assert 1 <= step < 1_000_000
    assert step * per_map <= config.max_memory_mib * 2**20


@pytest.mark.parametrize("settings", ["", "noise=0.1, dtype='float16'"])
def test_peak_memory_stays_within_the_budget(tmp_path, settings):
    # Measured, not computed: a fresh interpreter runs a stride-1 experiment (256x192
    # maps, every decoder) under a 64 MiB budget; its peak resident memory may grow past
    # what it was after start-up by the budget and 16 MiB for torch's own first-use
    # allocations, no more.
    script = tmp_path / "run.py"
    script.write_text(
        "import resource\n"
        "from integral_cli import ExperimentConfig, run_experiment\n"
        f"config = ExperimentConfig(stride=1, samples=400, device='cpu', max_memory_mib=64, {settings})\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "run_experiment(config)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    growth_mib = float(result.stdout.strip())
    assert growth_mib <= 64 + 16, growth_mib


def test_refuses_a_budget_too_small_for_one_map():
    config = ExperimentConfig(stride=1, image_size=(4096, 4096), samples=1, device="cpu", max_memory_mib=16)
    # 4096^2 pixels x (4 B of float32 map + 6 working float32 buffers of 4 B) = 448 MiB,
    # and a little for the refinement patches and the per-sample bookkeeping on top.
    with pytest.raises(ConfigError, match=r"need at least 449 MiB"):
        chunk_size(config)


def test_sigma_in_image_pixels():
    config = ExperimentConfig(stride=4, sigma=8.0, sigma_unit="image", samples=10, device="cpu")
    assert config.sigma_hm == 2.0 and config.resolved_margin == 6


@pytest.mark.parametrize(
    "change",
    [
        dict(stride=0),
        dict(stride=2.5),
        dict(sigma=0.0),
        dict(sigma=float("nan")),
        dict(samples=0),
        dict(amplitude=-1.0),
        dict(beta=0.0),
        dict(image_size=(250, 192)),
        dict(margin=-1.0),
        dict(decoders=()),
        dict(decoders=("argmax", "argmax")),
        dict(decoders=("nope",)),
        dict(encoder="box"),
        dict(dtype="int8"),
        dict(sigma_unit="mm"),
        dict(max_memory_mib=0),
        dict(dark_kernel=4),
        dict(dark_kernel="big"),
        dict(window_radius=-1),
        # past these limits results stop meaning anything in float32, or memory explodes
        dict(amplitude=1e7),
        dict(beta=1e7),
        dict(sigma=0.01),
        dict(sigma=1e5),
        dict(samples=10**10),
        dict(seed=-1),
        dict(seed=2**63),
        dict(window_radius=101),
        dict(dark_kernel=103),
        dict(max_memory_mib=2.0**31),
        dict(noise=-0.1),
        dict(distractor_distance=float("inf")),
    ],
)
def test_bad_settings_are_refused(change):
    with pytest.raises(ConfigError):
        ExperimentConfig(**change)


def test_margin_too_large_for_the_map():
    with pytest.raises(ConfigError, match="leaves no room"):
        run_experiment(ExperimentConfig(sigma=10.0, samples=5, device="cpu"))
    # the margin of SimCC vectors is in bins, and the message says so
    vectors = dict(representation="simcc", image_size=(12, 12), samples=5, device="cpu")
    with pytest.raises(ConfigError, match="20 bins leaves no room in 24x24 bins of SimCC vectors; .* at most 11.5"):
        run_experiment(ExperimentConfig(**vectors, margin=20.0))
    with pytest.raises(ConfigError, match="needs whole bins inside the margin of 11 bins"):
        run_experiment(ExperimentConfig(**vectors, margin=11.0, sampling="grid", grid_size=3))


def test_float64_and_float32_agree():
    # Same points in both (drawn in float32). float32 rounding of the maps moves the
    # sub-pixel decoders by ~1e-5 heatmap px (integral-debiased, the most sensitive,
    # by 1.5e-5), i.e. < 1e-4 image px at stride 4; 1e-3 leaves room for the others.
    base = ExperimentConfig(samples=200, device="cpu", amplitude=1.0)
    a = run_experiment(base)
    b = run_experiment(dataclasses.replace(base, dtype="float64"))
    assert a.mean_error.tolist() == pytest.approx(b.mean_error.tolist(), abs=1e-3)
