"""The commands on a CUDA GPU and on MPS, run on the CPU under the fake-device harness
(``fake_device.py``), and the harness itself: one deliberately wrong snippet per class of
bug, each of which it must flag."""

import contextlib
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from integral_cli import DECODERS, ExperimentConfig, decode
from integral_cli.cli import app
from integral_cli.decoders.dark import blur_maps, gaussian_kernel
from integral_cli.experiment import render_maps, sample_truth
from integral_cli.synth import render_heatmaps, sample_heatmap_points

from fake_device import DeviceMisuse, fake_accelerator

#: Small runs: every decoder, noise and a distractor, so DARK blurs whole maps too.
SMALL = ("--samples", "40", "--noise", "0.05", "--distractor", "0.5")
SWEEP_SMALL = ("--samples", "40", "--noises", "0.05", "--distractors", "0.5")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_ran(result):
    assert result.exit_code == 0, result.output + repr(result.exception)


def assert_one_line_error(result, code, text):
    assert result.exit_code == code, result.output + repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and text in result.stderr, result.stderr


def perturbed_maps(count=64, device="cpu"):
    """Noisy 64x48 maps on ``device``, drawn on the CPU (noise sends DARK down its
    whole-map blur)."""
    generator = torch.Generator().manual_seed(3)
    centers = 6 + torch.rand((count, 1, 2), generator=generator) * torch.tensor([35.0, 51.0])
    maps = render_heatmaps(centers, (64, 48), 2.0, amplitude=10.0)
    maps = maps + 0.5 * torch.randn(maps.shape, generator=generator)
    return maps.to(device)


# --------------------------------------------------------------- the harness flags
@pytest.fixture(params=["cuda", "mps"])
def kind(request):
    return request.param


@pytest.fixture
def harness(kind, monkeypatch):
    """The harness, for snippets that are meant to be flagged (so no check at the end)."""
    with fake_accelerator(kind, monkeypatch) as mode:
        yield mode


def test_flags_device_mixing(harness, kind):
    on_device = torch.ones(3, device=kind)
    with pytest.raises(DeviceMisuse, match="CPU tensors"):
        _ = on_device + torch.ones(3)
    # a 0-dim CPU tensor is fine, as on a real GPU
    assert (on_device + torch.tensor(1.0)).device.type == kind


def test_flags_numpy_of_a_device_tensor(harness, kind):
    with pytest.raises(DeviceMisuse, match="numpy"):
        torch.ones(3, device=kind).numpy()
    assert torch.ones(3, device=kind).cpu().numpy().tolist() == [1.0, 1.0, 1.0]


def test_flags_float64_on_mps(monkeypatch):
    with fake_accelerator("mps", monkeypatch) as mode:
        with pytest.raises(DeviceMisuse, match="float64"):
            torch.zeros(3, device="mps", dtype=torch.float64)
        with pytest.raises(DeviceMisuse, match="float64"):
            torch.zeros(3, device="mps").double()
        with pytest.raises(DeviceMisuse, match="float64"):
            torch.zeros(3, dtype=torch.float64).to("mps")
        assert len(mode.problems) == 3


def test_flags_random_draws_on_the_device(harness, kind):
    with pytest.raises(DeviceMisuse, match="random draw"):
        torch.rand(3, device=kind)
    with pytest.raises(DeviceMisuse, match="random draw"):
        torch.ones(3, device=kind).uniform_()
    generator = torch.Generator(device=torch.device(kind)).manual_seed(0)
    with pytest.raises(DeviceMisuse, match="random draw"):
        torch.rand(3, generator=generator)
    if kind == "cuda":  # the engine's old way: points drawn with a generator on the device
        with pytest.raises(DeviceMisuse, match="random draw"):
            sample_heatmap_points(10, (64, 48), generator)
    torch.rand(3, generator=torch.Generator().manual_seed(0)).to(kind)  # on the CPU, then moved: fine


def test_flags_tf32_convolutions_and_products(monkeypatch):
    with fake_accelerator("cuda", monkeypatch):
        maps = torch.ones(1, 1, 8, 8, device="cuda")
        # cuDNN's default allows TF32 for float32 convolutions
        with pytest.raises(DeviceMisuse, match="convolution"):
            F.conv2d(maps, torch.ones(1, 1, 3, 3, device="cuda"))
        with lowered_matmul_precision(), pytest.raises(DeviceMisuse, match="matrix product"):
            _ = maps[0, 0] @ maps[0, 0]


def test_flags_what_the_code_under_test_swallows(harness, kind):
    with contextlib.suppress(Exception):
        torch.ones(3, device=kind).numpy()
    assert harness.problems and "numpy" in harness.problems[0]


def test_a_cpu_run_is_left_alone(harness):
    # plain CPU work, numpy included, is not the harness's business
    assert torch.ones(3).numpy().sum() == 3.0
    assert harness.problems == []


class lowered_matmul_precision:
    """``torch.set_float32_matmul_precision("high")`` for a block, restored after."""

    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.fp32_precision
        torch.backends.cuda.matmul.fp32_precision = "tf32"

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.fp32_precision = self.saved


# --------------------------------------------------------------- the library passes
def test_decoders_run_in_full_float32_whatever_the_caller_set(monkeypatch):
    with fake_accelerator("cuda", monkeypatch) as mode, lowered_matmul_precision():
        maps = perturbed_maps(device="cuda")
        for name in DECODERS:
            decode(maps, name)
        blur_maps(maps[:, 0], gaussian_kernel(11, dtype=torch.float32, device=maps.device))
        # and the caller's settings are back afterwards
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert mode.problems == []


def test_ground_truth_is_the_same_on_the_cpu_and_on_cuda(monkeypatch):
    config = dict(samples=3000, position="border", noise=0.1, distractor=0.5, seed=11)
    expected = sample_truth(ExperimentConfig(**config, device="cpu"))
    expected_maps = render_maps(ExperimentConfig(**config, device="cpu"), expected[:50], 0)
    with fake_accelerator("cuda", monkeypatch) as mode:
        cuda = ExperimentConfig(**config, device="cuda")
        truth = sample_truth(cuda, torch.device("cuda"))
        assert truth.device.type == "cuda"
        maps = render_maps(cuda, truth[:50], 0).cpu()
    assert mode.problems == []
    # drawn on the CPU by the same generator and moved: bit for bit
    assert torch.equal(truth.cpu(), expected)
    # noise and distractor are the same numbers too (here the same CPU kernels run)
    assert torch.equal(maps, expected_maps)


def test_compare_on_the_cpu_and_on_cuda_agree(tmp_path, monkeypatch):
    assert_ran(invoke("compare", *SMALL, "--device", "cpu", "--csv", tmp_path / "cpu.csv"))
    with fake_accelerator("cuda", monkeypatch) as mode:
        assert_ran(invoke("compare", *SMALL, "--device", "cuda", "--csv", tmp_path / "cuda.csv"))
    assert mode.problems == []
    cpu = pd.read_csv(tmp_path / "cpu.csv").set_index("decoder")
    cuda = pd.read_csv(tmp_path / "cuda.csv").set_index("decoder")
    assert set(cuda["device"]) == {"cuda:0"}
    # The same points and maps; the device paths differ from the CPU's only in batching
    # (whole chunks instead of cache-sized blocks, torch's argmax instead of numpy's), so
    # float32 sums may round differently: ~1e-6 relative on a mean error.
    columns = ["mean_error", "median_error", "p95_error", "max_error", "bias_x", "bias_y"]
    pd.testing.assert_frame_equal(cuda[columns], cpu[columns], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------- every command
def test_compare(fake_device):
    result = invoke("compare", *SMALL, "--device", fake_device.kind, "--json")
    assert_ran(result)
    rows = json.loads(result.stdout)
    assert {row["decoder"] for row in rows} == set(DECODERS)
    assert {row["device"] for row in rows} == {str(fake_device.device)}
    assert all(row["nonfinite"] == 0 for row in rows)


def test_compare_grid_and_border(fake_device):
    args = ("--samples", "40", "--sampling", "grid", "--grid-size", "4", "--position", "border")
    assert_ran(invoke("compare", *args, "--device", fake_device.kind))


def test_sweep_and_its_resume(fake_device, tmp_path):
    out = tmp_path / "s.csv"
    args = ("sweep", "--strides", "4,8", "--sigmas", "2", *SWEEP_SMALL, "--device", fake_device.kind, "--out", out)
    assert_ran(invoke(*args))
    assert_ran(invoke(*args, "--resume"))
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["devices"] == [{"cuda": "cuda (Fake GPU)", "mps": "mps"}[fake_device.kind]]
    assert len(pd.read_csv(out)) == 2 * len(DECODERS)


def test_evaluate(fake_device, tmp_path):
    config = ExperimentConfig(samples=30, noise=0.02, device="cpu")
    truth = sample_truth(config)  # the files, written on the CPU
    np.save(tmp_path / "maps.npy", render_maps(config, truth, 0).numpy())
    np.save(tmp_path / "targets.npy", truth.numpy().astype(np.float64))
    files = ("--heatmaps", tmp_path / "maps.npy", "--targets", tmp_path / "targets.npy")
    result = invoke("evaluate", *files, "--device", fake_device.kind)
    assert_ran(result)


def test_map(fake_device, tmp_path):
    out = tmp_path / "map.png"
    result = invoke(
        "map", "--decoder", "dark", "--image-size", "64x48", "--density", "2", "--out", out, "--csv",
        tmp_path / "field.csv", "--device", fake_device.kind,
    )  # fmt: skip
    assert_ran(result)
    assert out.exists() and len(pd.read_csv(tmp_path / "field.csv")) == 16 * 12 * 4


def test_grad(fake_device):
    result = invoke("grad", "--samples", "4", "--device", fake_device.kind)
    if fake_device.kind == "mps":
        assert_one_line_error(result, 1, "the gradient check computes in float64, which MPS does not have")
    else:
        assert_ran(result)


def test_fit(fake_device):
    assert_ran(invoke("fit", "--samples", "4", "--steps", "3", "--learning-rates", "0.1", "--device", fake_device.kind))


def test_bench(fake_device):
    assert_ran(invoke("bench", "--batch", "32", "--repeat", "1", "--device", fake_device.kind))


@pytest.mark.parametrize(
    "command",
    [
        ("compare", *SMALL, "--dtype", "float64"),
        ("sweep", "--dtypes", "float32,float64", *SWEEP_SMALL, "--out", "never.csv"),
        ("map", "--dtype", "float64", "--out", "never.png"),
        ("fit", "--dtype", "float64"),
        ("bench", "--dtype", "float64"),
    ],
)
def test_float64_on_mps_is_refused_up_front(monkeypatch, tmp_path, command):
    monkeypatch.chdir(tmp_path)
    with fake_accelerator("mps", monkeypatch) as mode:
        result = invoke(*command, "--device", "mps")
    assert mode.problems == []
    assert_one_line_error(result, 1, "MPS has no float64")
    assert not (tmp_path / "never.csv").exists()


# --------------------------------------------------------------- timing and blocks
def test_compare_warms_every_decoder_up_before_timing_on_an_accelerator(fake_device, monkeypatch):
    from integral_cli import experiment

    calls, timing = [], []
    real_decode, real_timed = experiment.decode_counted, experiment.timed

    def decode_noting(maps, name, **params):
        calls.append((name, bool(timing)))
        return real_decode(maps, name, **params)

    def timed_noting(function, device):
        timing.append(True)
        try:
            return real_timed(function, device)
        finally:
            timing.pop()

    monkeypatch.setattr(experiment, "decode_counted", decode_noting)
    monkeypatch.setattr(experiment, "timed", timed_noting)
    assert_ran(invoke("compare", "--samples", "40", "--decoders", "argmax,dark", "--device", fake_device.kind))
    first = dict(reversed(calls))
    assert first == {"argmax": False, "dark": False}  # each decoder's first call is untimed
    assert sum(timed for _, timed in calls) == 2  # then one timed call each for the one chunk


def test_compare_on_the_cpu_times_from_the_first_call(monkeypatch):
    # the CPU has nothing to start up: its numbers and timings stay as they were
    from integral_cli import experiment

    calls = []
    real_decode = experiment.decode_counted
    monkeypatch.setattr(
        experiment, "decode_counted", lambda maps, name, **kw: calls.append(name) or real_decode(maps, name, **kw)
    )
    assert_ran(invoke("compare", "--samples", "40", "--decoders", "argmax,dark", "--device", "cpu"))
    assert calls == ["argmax", "dark"]


def test_integral_weighs_whole_chunks_on_an_accelerator_and_cache_sized_blocks_on_the_cpu(monkeypatch):
    from integral_cli.decoders import integral

    blocks = []
    real_exp = integral.scaled_exp
    monkeypatch.setattr(integral, "scaled_exp", lambda x, beta: blocks.append(x.shape[0]) or real_exp(x, beta))
    maps = perturbed_maps(count=1000)
    expected = decode(maps, "integral")
    assert len(blocks) == 1000 // 64 + 1  # 768 KiB of 64x48 float32 maps: 64 a block
    blocks.clear()
    with fake_accelerator("cuda", monkeypatch) as mode:
        got = decode(maps.to("cuda"), "integral").cpu()
    assert mode.problems == [] and blocks == [1000]
    # each map is weighed and summed on its own either way; a sum over a larger tensor
    # may be vectorised in another order, ~1 ulp of a coordinate below 64
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_the_notes_example(fake_device):
    from integral_cli.example import run_example

    on_device = run_example(fake_device.device)
    # MPS sums the integral's moments in float32 instead of float64: a few 1e-6 px apart
    pd.testing.assert_frame_equal(on_device, run_example("cpu"), check_exact=False, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["integral", "integral-debiased"])
@pytest.mark.parametrize("dims", [2, 3])
def test_a_loud_map_stays_finite_where_the_moments_are_float32(monkeypatch, name, dims):
    # MPS sums the moments in float32: unshifted weights totalling near float32's largest
    # number (exp(87) = 6e37, twice over) would overflow times a coordinate; each
    # marginal is divided by its total first. The point is (40.38, 30) on the CPU: the
    # two pixels' weights are e^87 and e^86.5. Float32 moments: 1e-4 px.
    shape = (1, 1, 64, 48) if dims == 2 else (1, 1, 16, 64, 48)
    maps = torch.zeros(shape)
    maps[(0, 0, *(5,) * (dims - 2), 30, 40)] = 87.0
    maps[(0, 0, *(5,) * (dims - 2), 30, 41)] = 86.5
    expected = decode(maps, name)
    assert expected[0, 0, 0].item() == pytest.approx(40 + 1 / (1 + math.exp(0.5)), abs=1e-6)
    with fake_accelerator("mps", monkeypatch) as mode:
        got = decode(maps.to("mps"), name).cpu()
    assert mode.problems == []
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
