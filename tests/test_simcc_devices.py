"""SimCC on a CUDA GPU and on MPS, run on the CPU under the fake-device harness
(``fake_device.py``): every command that reads SimCC vectors, and the same numbers as on
the CPU."""

import json

import numpy as np
import pandas as pd
import torch
from typer.testing import CliRunner

from integral_cli import ExperimentConfig, decode_simcc
from integral_cli.cli import app
from integral_cli.decoders.registry import decoders_for
from integral_cli.simcc import SIMCC_VECTORS

from fake_device import fake_accelerator

#: Small runs with noise and a distractor (DARK's whole-vector blur runs too), and the
#: bound's float64 sums.
SMALL = ("--representation", "simcc", "--samples", "40", "--noise", "0.05", "--distractor", "0.5")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_ran(result):
    assert result.exit_code == 0, result.output + repr(result.exception)


def test_compare(fake_device):
    result = invoke("compare", *SMALL, "--device", fake_device.kind, "--json")
    assert_ran(result)
    rows = json.loads(result.stdout)
    assert sorted(row["decoder"] for row in rows) == sorted(decoders_for("simcc"))  # by mean error
    assert {row["device"] for row in rows} == {str(fake_device.device)}


def test_compare_noisy_with_the_bound(fake_device):
    result = invoke("compare", "--representation", "simcc", "--samples", "40", "--noise", "0.05", "--json",
                    "--device", fake_device.kind)  # fmt: skip
    assert_ran(result)
    assert all(row["crlb_rmse"] > 0 for row in json.loads(result.stdout))


def test_a_mixed_sweep(fake_device, tmp_path):
    out = tmp_path / "s.csv"
    args = ["sweep", "--representations", "heatmap,simcc", "--strides", "8", "--split-ratios", "1,2"]
    args += ["--sigmas", "2", "--samples", "30", "--decoders", "argmax,dark", "--device", fake_device.kind]
    assert_ran(invoke(*args, "--out", out))
    assert len(pd.read_csv(out)) == 3 * 2


def test_evaluate(fake_device, tmp_path):
    config = ExperimentConfig(representation="simcc", samples=30, noise=0.02, device="cpu")
    truth = SIMCC_VECTORS.sample_truth(config, torch.device("cpu"))  # the files, written on the CPU
    simcc_x, simcc_y = SIMCC_VECTORS.render(config, truth, 0)
    np.savez(tmp_path / "simcc.npz", simcc_x=simcc_x.numpy(), simcc_y=simcc_y.numpy())
    np.save(tmp_path / "targets.npy", truth.numpy().astype(np.float64))
    files = ("--simcc", tmp_path / "simcc.npz", "--targets", tmp_path / "targets.npy")
    assert_ran(invoke("evaluate", *files, "--device", fake_device.kind))


def test_bench(fake_device):
    assert_ran(invoke("bench", "--representation", "simcc", "--batch", "32", "--repeat", "1",
                      "--device", fake_device.kind))  # fmt: skip


def test_the_decoders_on_cuda_agree_with_the_cpu(monkeypatch):
    # The same vectors decoded on the CPU and under the CUDA harness: the device path
    # weighs whole chunks instead of cache-sized blocks and takes torch's argmax instead of
    # numpy's, so float64 sums may round otherwise: 1e-9 bins.
    generator = torch.Generator().manual_seed(5)
    simcc_x = torch.rand((300, 2, 384), generator=generator) + 3 * (torch.arange(384) == 100)
    simcc_y = torch.rand((300, 2, 512), generator=generator) + 3 * (torch.arange(512) == 200)
    expected = {name: decode_simcc(simcc_x, simcc_y, name) for name in decoders_for("simcc")}
    with fake_accelerator("cuda", monkeypatch) as mode:
        on_device = {name: decode_simcc(simcc_x.cuda(), simcc_y.cuda(), name).cpu() for name in decoders_for("simcc")}
    assert mode.problems == []
    for name in decoders_for("simcc"):
        torch.testing.assert_close(on_device[name], expected[name], rtol=0, atol=1e-6)
