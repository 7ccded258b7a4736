import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from integral_cli import DECODERS
from integral_cli import sweep as sweep_module
from integral_cli.cli import app
from integral_cli.cli.render import number
from integral_cli.report import CSV_COLUMNS

from support import table_rows

runner = CliRunner()
FAST = ["--samples", "60", "--device", "cpu"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, code, text):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert text in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


class TestCompare:
    def test_table(self):
        result = invoke("compare", "--stride", 4, *FAST)
        assert result.exit_code == 0, result.output
        assert "stride 4" in result.stdout and "device cpu" in result.stdout
        rows = json.loads(invoke("compare", "--stride", 4, "--json", *FAST).stdout)
        lines = table_rows(result.stdout)
        # one line per decoder, in the JSON's order (by mean error), with its statistics
        assert [cells[0] for cells in lines] == [row["decoder"] for row in rows]
        for cells, row in zip(lines, rows, strict=True):
            expected = [number(row[c]) for c in ("mean_error", "median_error", "p95_error", "max_error")]
            assert cells[1:5] == expected, (cells, row)
            assert cells[5] == f"{number(row['ci95_low'])}–{number(row['ci95_high'])}"

    def test_json_rows_sorted_by_mean_error(self):
        result = invoke("compare", "--json", *FAST)
        assert result.exit_code == 0, result.output
        rows = json.loads(result.stdout)
        assert [list(r) for r in rows] == [list(CSV_COLUMNS)] * len(DECODERS)
        means = [r["mean_error"] for r in rows]
        assert means == sorted(means)

    def test_csv(self, tmp_path):
        out = tmp_path / "c.csv"
        result = invoke("compare", "--decoders", "argmax,integral", "--csv", out, *FAST)
        assert result.exit_code == 0, result.output
        frame = pd.read_csv(out)
        assert tuple(frame.columns) == CSV_COLUMNS and len(frame) == 2
        assert set(frame.decoder) == {"argmax", "integral"} and set(frame.device) == {"cpu"}

    def test_decoder_parameters_reach_the_csv(self, tmp_path):
        out = tmp_path / "c.csv"
        result = invoke(
            "compare",
            "--decoders",
            "dark,soft-argmax-local",
            "--sigma",
            "3",
            "--dark-kernel",
            "auto",
            "--window-radius",
            "1",
            "--csv",
            out,
            *FAST,
        )
        assert result.exit_code == 0, result.output
        frame = pd.read_csv(out)
        assert list(frame.columns[6:9]) == ["beta", "dark_kernel", "window_radius"]
        assert set(frame.dark_kernel) == {17} and set(frame.window_radius) == {1}

    def test_csv_not_overwritten_without_force(self, tmp_path):
        out = tmp_path / "c.csv"
        out.write_text("keep me")
        assert_one_line_error(invoke("compare", "--csv", out, *FAST), 2, "pass --force")
        assert out.read_text() == "keep me"
        assert invoke("compare", "--csv", out, "--force", *FAST).exit_code == 0
        assert len(pd.read_csv(out)) == len(DECODERS)

    def test_cuda_unavailable(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        result = invoke("compare", "--device", "cuda", "--samples", 10)
        assert_one_line_error(result, 1, "CUDA is not available")
        assert len(result.stderr.strip().splitlines()) == 1

    @pytest.mark.parametrize(
        "args, text",
        [
            (["--stride", "0"], "--stride"),
            (["--sigma", "-1"], "--sigma"),
            (["--sigma", "nan"], "--sigma"),
            (["--samples", "0"], "--samples"),
            (["--beta", "0"], "--beta"),
            (["--decoders", "argmax,softargmax"], "unknown decoder 'softargmax'"),
            (["--image-size", "256"], "HxW"),
            (["--image-size", "250x192"], "nearest valid height: 248 or 252"),
            (["--device", "gpu"], "unknown device"),
            (["--encoder", "box"], "--encoder"),
            (["--dark-kernel", "4"], "--dark-kernel"),
            (["--dark-kernel", "x"], "--dark-kernel"),
            (["--window-radius", "-1"], "--window-radius"),
            (["--margin", "40"], "leaves no room"),
            (["--csv", "/nonexistent-dir/x.csv"], "does not exist"),
            (["--max-memory", "1", "--stride", "1", "--image-size", "1024x1024"], "need at least"),
        ],
    )
    def test_bad_values_exit_2(self, args, text):
        result = invoke("compare", "--samples", 10, *args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert text in result.output


class TestSweep:
    def test_tiny_sweep_writes_csv_and_sidecar(self, tmp_path):
        out = tmp_path / "s.csv"
        result = invoke(
            "sweep", "--strides", "2,4", "--sigmas", "1,2", "--amplitudes", "1", "--betas", "1,2", "--out", out, *FAST
        )
        assert result.exit_code == 0, result.output
        frame = pd.read_csv(out)
        assert tuple(frame.columns) == CSV_COLUMNS
        assert len(frame) == 2 * 2 * 1 * 2 * len(DECODERS)
        assert frame.groupby(["stride", "sigma", "beta"]).size().eq(len(DECODERS)).all()
        meta = json.loads(out.with_suffix(".json").read_text())
        assert meta["status"] == "complete" and meta["configurations_done"] == 8
        assert meta["seed"] == 0 and meta["device"] == "cpu"
        assert meta["versions"]["torch"] == torch.__version__
        assert meta["started"] <= meta["finished"]
        command = meta["command"]
        assert command[:2] == ["integral-cli", "sweep"]
        assert command[command.index("--strides") + 1] == "2,4"
        assert command[command.index("--samples") + 1] == "60"
        assert command[command.index("--max-memory") + 1] == "1024"  # defaults are spelled out

    def test_refuses_to_overwrite(self, tmp_path):
        out = tmp_path / "s.csv"
        args = ["sweep", "--strides", "4", "--sigmas", "2", "--out", out, *FAST]
        assert invoke(*args).exit_code == 0
        assert_one_line_error(invoke(*args), 2, "exists; pass --force")
        assert invoke(*args, "--force").exit_code == 0
        assert len(pd.read_csv(out)) == len(DECODERS)

    @pytest.mark.parametrize(
        "args, text",
        [
            (["--strides", ""], "--strides"),
            (["--strides", "1,,2"], "--strides"),
            (["--strides", "0,4"], "--strides"),
            (["--sigmas", "1,x"], "--sigmas"),
            (["--amplitudes", "-1"], "--amplitudes"),
            (["--strides", "3"], "not a multiple of stride 3"),
            (["--strides", "4,4"], "repeats a value"),
        ],
    )
    def test_bad_values_exit_2(self, tmp_path, args, text):
        result = invoke("sweep", *args, "--out", tmp_path / "s.csv", *FAST)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and text in result.output
        assert not (tmp_path / "s.csv").exists()

    def test_image_size_checked_against_the_listed_strides_only(self, tmp_path):
        out = tmp_path / "s.csv"
        result = invoke(
            "sweep", "--strides", "1,5", "--image-size", "10x10", "--sigmas", "1", "--margin", "0", "--out", out, *FAST
        )
        assert result.exit_code == 0, result.output
        assert sorted(pd.read_csv(out).stride.unique()) == [1, 5]

    def test_every_configuration_is_checked_before_anything_is_written(self, tmp_path):
        out = tmp_path / "s.csv"
        # sigma 20 leaves no room for its 60-pixel margin in a 64x48 map
        result = invoke("sweep", "--strides", "4", "--sigmas", "1,20", "--out", out, *FAST)
        assert_one_line_error(result, 2, "leaves no room")
        assert list(tmp_path.iterdir()) == []

    def test_refuses_a_csv_named_like_its_sidecar(self, tmp_path):
        result = invoke("sweep", "--strides", "4", "--sigmas", "1", "--out", tmp_path / "s.json", *FAST)
        assert_one_line_error(result, 2, "its own JSON sidecar")
        assert list(tmp_path.iterdir()) == []

    def test_refuses_to_overwrite_a_sidecar(self, tmp_path):
        (tmp_path / "s.json").write_text("{}")
        result = invoke("sweep", "--strides", "4", "--sigmas", "1", "--out", tmp_path / "s.csv", *FAST)
        assert_one_line_error(result, 2, "s.json exists")
        assert (tmp_path / "s.json").read_text() == "{}"

    def test_interrupt_keeps_finished_configurations(self, tmp_path, monkeypatch):
        real = sweep_module.run_experiment
        calls = []

        def interrupted_on_third(config, **kwargs):
            calls.append(config)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real(config, **kwargs)

        monkeypatch.setattr(sweep_module, "run_experiment", interrupted_on_third)
        out = tmp_path / "s.csv"
        result = invoke("sweep", "--strides", "1,2,4", "--sigmas", "1", "--out", out, *FAST)
        assert result.exit_code == 130
        assert "2 of 3 configurations saved" in result.stderr and "--resume" in result.stderr
        frame = pd.read_csv(out)
        assert sorted(frame.stride.unique()) == [1, 2] and len(frame) == 2 * len(DECODERS)
        assert json.loads(out.with_suffix(".json").read_text())["status"] == "interrupted"


def test_example_json():
    result = invoke("example", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 9
    assert set(rows[0]) == {"joint", "gt_x", "gt_y", "decoder", "x", "y"}
    assert {(r["gt_x"], r["gt_y"]) for r in rows} == {(10, 10), (3, 8), (16, 18)}


def test_example_table():
    result = invoke("example")
    assert result.exit_code == 0, result.output
    rows = json.loads(invoke("example", "--json").stdout)
    assert len(rows) == 9
    # every decoded point the JSON holds is printed, to three decimals, on its joint's line
    lines = {cells[0]: cells for cells in table_rows(result.stdout)}
    assert sorted(lines) == ["0", "1", "2"]
    for row in rows:
        assert f"({row['x']:.3f}, {row['y']:.3f})" in lines[str(row["joint"])], row


def test_decoders_lists_every_decoder():
    result = invoke("decoders", "--json")
    assert result.exit_code == 0
    listed = {d["name"]: d for d in json.loads(result.stdout)}
    assert set(listed) == set(DECODERS)
    assert listed["argmax"]["differentiable"] is False and listed["integral"]["differentiable"] is True
    assert all(d["reference"] for d in listed.values())
    assert "Sun et al." in invoke("decoders").stdout


def test_python_dash_m():
    result = subprocess.run(
        [sys.executable, "-m", "integral_cli", "--version"], capture_output=True, text=True, check=False
    )
    from integral_cli import __version__

    assert result.returncode == 0 and result.stdout == f"integral-cli {__version__}\n"


class TestGrad:
    def test_json_every_decoder(self):
        result = invoke("grad", "--samples", "4", "--device", "cpu", "--json")
        assert result.exit_code == 0, result.output
        rows = {row["decoder"]: row for row in json.loads(result.stdout)}
        assert list(rows) == list(DECODERS)
        for name, row in rows.items():
            assert (row["gradient"] == "yes") == DECODERS[name].differentiable
            assert row["agrees"] is (True if DECODERS[name].differentiable else None)

    def test_table(self):
        result = invoke("grad", "--samples", "2", "--device", "cpu", "--decoders", "argmax,integral")
        assert result.exit_code == 0, result.output
        lines = {cells[0]: cells[1:] for cells in table_rows(result.stdout)}
        assert lines["argmax"] == ["none", "0", "0", "0", "-", "-"]
        assert lines["integral"][0] == "yes" and lines["integral"][2] == "3072"
        assert lines["integral"][-1] == "yes"  # autograd agrees with the differences

    def test_bad_epsilon_exits_2(self):
        result = invoke("grad", "--epsilon", "0")
        assert result.exit_code == 2 and "Traceback" not in result.output


class TestFit:
    def test_json(self):
        result = invoke(
            "fit",
            "--samples",
            "2",
            "--steps",
            "30",
            "--decoders",
            "argmax,integral",
            "--json",
            "--learning-rates",
            "0.1,0.03",
        )
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        best = {row["decoder"]: row for row in payload["best"]}
        assert best["argmax"]["gradient"] == "none" and best["argmax"]["trainable"] is False
        assert best["argmax"]["steps_to_threshold"] is None
        assert best["integral"]["learning_rate"] in (0.1, 0.03)
        assert len(payload["runs"]) == 4

    def test_table_says_why_argmax_is_not_trainable(self):
        result = invoke("fit", "--samples", "2", "--steps", "3", "--decoders", "argmax")
        assert result.exit_code == 0, result.output
        (cells,) = table_rows(result.stdout)
        assert cells[0] == "argmax" and cells[1] == "none" and cells[-2:] == ["never", "no"]

    @pytest.mark.parametrize(
        "args",
        [
            ["--learning-rates", "0.1,x"],
            ["--learning-rates", "0"],
            ["--steps", "0"],
            ["--dtype", "float16"],
            ["--threshold", "-1"],
        ],
    )
    def test_bad_values_exit_2(self, args):
        result = invoke("fit", *args)
        assert result.exit_code == 2 and "Traceback" not in result.output


class TestEvaluate:
    @pytest.fixture
    def files(self, tmp_path):
        maps = torch.zeros(3, 2, 8, 6)
        maps[:, :, 2, 4] = 1.0  # argmax at (x, y) = (4, 2): image (17.5, 9.5) at stride 4
        torch.save(maps, tmp_path / "maps.pt")
        targets = torch.tensor([17.5, 10.5]).expand(3, 2, 2).numpy()  # 1 image px off in y
        np.save(tmp_path / "targets.npy", targets)
        return tmp_path / "maps.pt", tmp_path / "targets.npy"

    def test_table_csv_and_json(self, files, tmp_path):
        maps, targets = files
        out = tmp_path / "out.csv"
        result = invoke(
            "evaluate", "--heatmaps", maps, "--targets", targets, "--device", "cpu", "--csv", out, "--pck", "0.5,1"
        )
        assert result.exit_code == 0, result.output
        assert "PCK@0.5" in result.stdout and "memory-mapped" in result.stdout
        rows = pd.read_csv(out).set_index("decoder")
        assert rows.loc["argmax", "mean_error"] == pytest.approx(1.0)
        assert rows.loc["argmax", "pck_0.5"] == 0 and rows.loc["argmax", "pck_1"] == 1
        assert rows.loc["argmax", "visible"] == 6
        result = invoke(
            "evaluate", "--heatmaps", maps, "--targets", targets, "--device", "cpu", "--json", "--decoders", "argmax"
        )
        assert json.loads(result.stdout)[0]["bias_y"] == pytest.approx(-1.0)

    def test_bad_file_is_one_line(self, files, tmp_path):
        maps, _ = files
        np.save(tmp_path / "short.npy", np.zeros((2, 2, 2)))
        result = invoke("evaluate", "--heatmaps", maps, "--targets", tmp_path / "short.npy", "--device", "cpu")
        assert_one_line_error(result, 2, "N=2, K=2 but the heatmaps hold N=3, K=2")

    def test_missing_heatmaps_option(self, files):
        _, targets = files
        result = invoke("evaluate", "--targets", targets)
        assert result.exit_code == 2 and "--heatmaps" in result.output

    @pytest.mark.parametrize("args", [["--pck", "1,1"], ["--pck", "-1"], ["--image-size", "ax3"]])
    def test_bad_values_exit_2(self, files, args):
        maps, targets = files
        result = invoke("evaluate", "--heatmaps", maps, "--targets", targets, *args)
        assert result.exit_code == 2 and "Traceback" not in result.output


class TestSweepConfigFile:
    def write(self, path, text):
        path.write_text(text)
        return path

    def test_settings_from_the_file_and_the_command_line_wins(self, tmp_path):
        config = self.write(
            tmp_path / "s.toml",
            "strides = [2, 4]\nsigma = 1.5\nsamples = 30\n"
            'decoders = ["argmax", "dark"]\nimage-size = "64x48"\nmax_memory = 64\n'
            f'device = "cpu"\nout = "{tmp_path / "from_file.csv"}"\n',
        )
        result = invoke("sweep", "--config", config, "--samples", "20")
        assert result.exit_code == 0, result.output
        frame = pd.read_csv(tmp_path / "from_file.csv")
        assert sorted(frame.stride.unique()) == [2, 4] and set(frame.sigma) == {1.5}
        assert (
            set(frame.samples) == {20} and set(frame.image_h) == {64} and list(frame.decoder[:2]) == ["argmax", "dark"]
        )
        # the sidecar records the resolved settings, whatever their source
        meta = json.loads((tmp_path / "from_file.json").read_text())
        assert meta["settings"]["samples"] == 20 and meta["settings"]["max_memory_mib"] == 64
        assert meta["grid"]["stride"] == [2, 4] and meta["grid"]["sigma"] == [1.5]
        command = meta["command"]
        assert command[command.index("--strides") + 1] == "2,4" and command[command.index("--config") + 1] == str(
            config
        )

    @pytest.mark.parametrize(
        "text, message",
        [
            ("sigmass = 1\n", "unknown key 'sigmass'; known: allow-mixed-devices, amplitudes"),
            ('sigmas = [1, "x"]\n', "key 'sigmas': sigma must be a number, got 'x'"),
            ("strides = [4, 4]\n", "key 'strides': the list stride repeats a value"),
            ("force = 1\n", "key 'force': expected true or false"),
            ("sigmas = [1, \n", "is not valid TOML"),
        ],
    )
    def test_bad_files_are_one_line_and_exit_2(self, tmp_path, text, message):
        config = self.write(tmp_path / "bad.toml", text)
        result = invoke("sweep", "--config", config, "--out", tmp_path / "s.csv", *FAST)
        assert_one_line_error(result, 2, message)
        assert not (tmp_path / "s.csv").exists()

    def test_a_missing_file(self, tmp_path):
        assert_one_line_error(invoke("sweep", "--config", tmp_path / "nope.toml"), 2, "cannot read")


class TestShardAuto:
    @pytest.fixture
    def grid(self, tmp_path):
        return ["sweep", "--strides", "1,2,4,8", "--sigmas", "2", "--decoders", "argmax", *FAST]

    def test_a_slurm_array_task_runs_its_shard(self, grid, tmp_path, monkeypatch):
        # an array 5-8: task 7 is the third of four shards, configurations 3, 7, ... of the grid
        for name, value in (("ID", "7"), ("MIN", "5"), ("COUNT", "4")):
            monkeypatch.setenv(f"SLURM_ARRAY_TASK_{name}", value)
        result = invoke(*grid, "--shard", "auto", "--out", tmp_path / "p.csv")
        assert result.exit_code == 0, result.output
        assert pd.read_csv(tmp_path / "p.csv").stride.tolist() == [4]
        assert json.loads((tmp_path / "p.json").read_text())["shard"] == "3/4"

    def test_outside_an_array_it_says_what_is_missing(self, grid, tmp_path, monkeypatch):
        for name in ("ID", "MIN", "COUNT"):
            monkeypatch.delenv(f"SLURM_ARRAY_TASK_{name}", raising=False)
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
        result = invoke(*grid, "--shard", "auto", "--out", tmp_path / "p.csv")
        assert_one_line_error(result, 2, "SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_COUNT not set")

    def test_a_stepped_array_is_refused(self, grid, tmp_path, monkeypatch):
        for name, value in (("ID", "6"), ("MIN", "0"), ("COUNT", "4")):  # --array=0-6:2
            monkeypatch.setenv(f"SLURM_ARRAY_TASK_{name}", value)
        assert_one_line_error(invoke(*grid, "--shard", "auto", "--out", tmp_path / "p.csv"), 2, "is not a shard")


class TestConsistentOptions:
    def test_every_command_that_decodes_with_dark_takes_auto(self, tmp_path):
        import typer

        group = typer.main.get_command(app)
        for name in ("compare", "sweep", "map", "grad", "fit", "evaluate", "bench"):
            (param,) = [p for p in group.commands[name].params if "--dark-kernel" in p.opts]
            assert param.metavar == "K|auto"

    def test_evaluate_picks_the_kernel_from_the_sigma_it_is_told(self, tmp_path):
        maps = torch.rand(2, 1, 16, 12)
        torch.save(maps, tmp_path / "m.pt")
        np.save(tmp_path / "t.npy", np.full((2, 1, 2), 20.0))
        args = [
            "evaluate",
            "--heatmaps",
            tmp_path / "m.pt",
            "--targets",
            tmp_path / "t.npy",
            "--device",
            "cpu",
            "--decoders",
            "dark",
            "--json",
            "--dark-kernel",
            "auto",
        ]
        assert_one_line_error(invoke(*args), 2, "--dark-kernel auto picks the kernel from the maps' --sigma")
        result = invoke(*args, "--sigma", "3")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)[0]["dark_kernel"] == 17

    def test_every_computing_command_defaults_to_the_auto_device(self):
        import typer

        group = typer.main.get_command(app)
        for name in ("compare", "sweep", "map", "grad", "fit", "evaluate", "bench"):
            (param,) = [p for p in group.commands[name].params if "--device" in p.opts]
            assert param.default == "auto", name

    def test_sizes_are_height_by_width_everywhere(self):
        import typer

        group = typer.main.get_command(app)
        sizes = [
            (name, p)
            for name, command in group.commands.items()
            for p in command.params
            if p.metavar == "HxW" or p.name.endswith("_size") and p.name != "grid_size" or p.name == "size"
        ]
        assert {p.metavar for _, p in sizes} == {"HxW"}, [(n, p.name, p.metavar) for n, p in sizes]
