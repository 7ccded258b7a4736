"""evaluate on SimCC vectors saved from a model (simcc_x and simcc_y, as an RTMPose head
outputs them): the same table and PCK as for heatmaps."""

import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from integral_cli.cli import app
from integral_cli.decoders.registry import decoders_for
from integral_cli.errors import ConfigError, InputFileError
from integral_cli.evaluate import EvaluateConfig, evaluate_columns, evaluate_files
from integral_cli.experiment import ExperimentConfig, run_experiment
from integral_cli.simcc import SIMCC_VECTORS

from references import PARAMS, REFERENCES_1D
from support import assert_rows_equal, table_rows


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Vectors and targets the tool renders for a compare run, saved in every format."""
    config = ExperimentConfig(representation="simcc", samples=3000, device="cpu", noise=0.02, seed=5)
    truth = SIMCC_VECTORS.sample_truth(config, torch.device("cpu"))
    simcc_x, simcc_y = SIMCC_VECTORS.render(config, truth, 0)
    folder = tmp_path_factory.mktemp("simcc")
    arrays = {"simcc_x": simcc_x.numpy(), "simcc_y": simcc_y.numpy()}
    np.savez(folder / "outputs.npz", **arrays, scores=np.zeros(3))
    np.savez_compressed(folder / "compressed.npz", **arrays)
    torch.save({"simcc_x": simcc_x, "simcc_y": simcc_y}, folder / "outputs.pt")
    np.save(folder / "targets.npy", truth.numpy())
    return config, folder


def evaluate(simcc, targets, **settings):
    rows, source = evaluate_files(EvaluateConfig(simcc=simcc, targets=targets, device="cpu", **settings))
    return rows.set_index("decoder"), source


def test_reproduces_compare(rendered):
    config, folder = rendered
    expected = run_experiment(config).set_index("decoder")
    rows, source = evaluate(folder / "outputs.npz", folder / "targets.npy", split_ratio=config.split_ratio)
    assert source.mapped and source.shape == (3000, 1, 384, 512)
    assert list(rows.index) == list(decoders_for("simcc"))
    for name in rows.index:
        for column in ("mean_error", "median_error", "p95_error", "max_error", "rmse", "mean_error_hm"):
            # compare subtracts in float32, evaluate in float64: they differ by float32 rounding
            assert rows.loc[name, column] == pytest.approx(expected.loc[name, column], rel=1e-4, abs=2e-5)
    first = rows.iloc[0]
    assert (first.simcc_x_bins, first.simcc_y_bins, first.split_ratio) == (384, 512, 2.0)
    assert (first.image_h, first.image_w) == (256, 192)


@pytest.mark.parametrize(("name", "mapped"), [("compressed.npz", False), ("outputs.pt", True)])
def test_every_format_gives_the_same_rows(rendered, name, mapped):
    _, folder = rendered
    reference, _ = evaluate(folder / "outputs.npz", folder / "targets.npy")
    rows, source = evaluate(folder / name, folder / "targets.npy")
    assert source.mapped == mapped
    # the same vectors, read whole in one chunk either way: bit-identical
    assert_rows_equal(rows, reference, ignore=("simcc", "seconds"))


def test_chunks_do_not_change_the_numbers(rendered):
    _, folder = rendered
    whole, _ = evaluate(folder / "outputs.npz", folder / "targets.npy")
    # 1 MiB holds about a hundred vector pairs at a time: dozens of chunks. Each vector is
    # decoded on its own, but a batched float32 reduction may round otherwise: 1e-5
    # relative, 2e-6 image px.
    chunked, _ = evaluate(folder / "outputs.npz", folder / "targets.npy", max_memory_mib=1)
    assert_rows_equal(chunked, whole, rtol=1e-5, atol=2e-6)


def test_every_decoder_against_a_reference(tmp_path, rng):
    # RTMPose-like float64 vectors with noise, K = 3, some keypoints unlabelled, MMPose's
    # corner convention: every decoder and every statistic against the per-vector
    # references and numpy, at rounding precision.
    n, k, ratio = 20, 3, 2.0
    sigma, amplitude = 4.9, 1 / (4.9 * math.sqrt(2 * math.pi))
    targets = np.concatenate([rng.uniform(10, 182, (n, k, 1)), rng.uniform(10, 246, (n, k, 1))], -1)
    visible = rng.random((n, k)) > 0.2
    arrays = []
    for axis, length in ((0, 384), (1, 512)):
        bins = np.arange(length)
        clean = amplitude * np.exp(-((bins - ratio * targets[..., axis : axis + 1]) ** 2) / (2 * sigma**2))
        arrays.append(clean + 0.003 * rng.normal(size=clean.shape))
    np.savez(tmp_path / "outputs.npz", simcc_x=arrays[0], simcc_y=arrays[1])
    np.save(tmp_path / "targets.npy", np.concatenate((targets, visible[..., None]), -1))
    thresholds = (0.5, 1.0)
    rows, _ = evaluate(
        tmp_path / "outputs.npz", tmp_path / "targets.npy", pck=thresholds, convention="corner", **PARAMS
    )
    for name, reference in REFERENCES_1D.items():
        decoded = np.array([[[reference(arrays[a][i, j]) for a in (0, 1)] for j in range(k)] for i in range(n)])
        offsets = (decoded / ratio - targets)[visible]  # corner: x = bin / k, written out
        errors = np.hypot(offsets[:, 0], offsets[:, 1])
        expected = {
            "mean_error": errors.mean(),
            "median_error": np.median(errors),
            "max_error": errors.max(),
            "bias_x": offsets[:, 0].mean(),
            "mean_error_hm": errors.mean() * ratio,
            "pck_0.5": (errors <= 0.5).mean(),
            "pck_1": (errors <= 1.0).mean(),
        }
        row = rows.loc[name]
        assert row["visible"] == visible.sum() and row["nonfinite"] == 0
        for column, value in expected.items():
            assert row[column] == pytest.approx(value, rel=1e-9, abs=1e-9), (name, column)


def test_the_columns_say_simcc():
    columns = evaluate_columns((1.0,), "simcc")
    assert columns[:8] == [
        "simcc",
        "predictions",
        "targets",
        "samples",
        "keypoints",
        "simcc_x_bins",
        "simcc_y_bins",
        "split_ratio",
    ]
    assert "window_radius" not in columns and "stride" not in columns
    assert evaluate_columns((1.0,))[0] == "heatmaps"


def save(path, simcc_x, simcc_y):
    np.savez(path, simcc_x=simcc_x, simcc_y=simcc_y)
    return path


@pytest.fixture
def good(tmp_path):
    outputs = save(tmp_path / "good.npz", np.random.rand(4, 2, 384), np.random.rand(4, 2, 512))
    np.save(tmp_path / "targets.npy", np.random.rand(4, 2, 2) * 100)
    return outputs, tmp_path / "targets.npy"


def test_a_simcc_file_given_as_heatmaps_is_named(good):
    outputs, targets = good
    with pytest.raises(InputFileError, match="holds SimCC vectors .* give it as simcc"):
        evaluate_files(EvaluateConfig(heatmaps=outputs, targets=targets, device="cpu"))


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"simcc_x": np.zeros((4, 2, 384))}, "holds no array 'simcc_y'"),
        ({"simcc_x": np.zeros((4, 2, 384)), "simcc_y": np.zeros((3, 2, 512))}, "must share N, K and the dtype"),
        ({"simcc_x": np.zeros((4, 2, 384)), "simcc_y": np.zeros((4, 2, 512), np.float32)}, "must share"),
        ({"simcc_x": np.zeros((4, 384)), "simcc_y": np.zeros((4, 2, 512))}, r"simcc_x must have shape \(N, K, Wx\)"),
        ({"simcc_x": np.zeros((4, 2, 384), bool), "simcc_y": np.zeros((4, 2, 512), bool)}, "must be numbers"),
    ],
)
def test_malformed_simcc_files(good, tmp_path, arrays, message):
    _, targets = good
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputFileError, match=message):
        evaluate(tmp_path / "bad.npz", targets)


def test_a_simcc_torch_file_must_be_a_dict_of_both(good, tmp_path):
    _, targets = good
    torch.save(torch.zeros(4, 2, 384), tmp_path / "bare.pt")
    with pytest.raises(InputFileError, match="a dict holding the tensors simcc_x and simcc_y"):
        evaluate(tmp_path / "bare.pt", targets)
    with pytest.raises(InputFileError, match=r"must be a \.npz, \.pt or \.pth file"):
        evaluate(tmp_path / "vectors.npy", targets)


def test_nan_is_named_by_sample_and_keypoint(good, tmp_path):
    _, targets = good
    along_y = np.random.rand(4, 2, 512)
    along_y[3, 1, 100] = np.nan
    path = save(tmp_path / "nan.npz", np.random.rand(4, 2, 384), along_y)
    with pytest.raises(InputFileError, match="vectors of sample 3, keypoint 1 hold NaN"):
        evaluate(path, targets)


def test_the_image_size_must_match_the_bins(good):
    outputs, targets = good
    with pytest.raises(ConfigError, match="which no image gives at split_ratio 3"):
        evaluate(outputs, targets, split_ratio=3.0)
    with pytest.raises(ConfigError, match="image size 256x200 .* gives vectors of 400 \\(x\\)"):
        evaluate(outputs, targets, image_size=(256, 200))
    rows, _ = evaluate(outputs, targets, image_size=(256, 192))
    assert (rows.iloc[0].image_h, rows.iloc[0].image_w) == (256, 192)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"heatmaps": "maps.npy"}, "give the heatmaps or the simcc vectors, not both"),
        ({"decoders": ("soft-argmax-local",)}, "'soft-argmax-local' does not apply to simcc vectors"),
        ({"convention": "udp"}, "'udp' does not apply to SimCC vectors"),
    ],
)
def test_bad_settings(good, settings, message):
    outputs, targets = good
    with pytest.raises(ConfigError, match=message):
        EvaluateConfig(simcc=outputs, targets=targets, **settings)


def test_the_command_line(good):
    outputs, targets = good
    result = CliRunner().invoke(
        app, ["evaluate", "--simcc", str(outputs), "--targets", str(targets), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    words = " ".join(result.stdout.split())  # the title wraps at 80 columns
    assert "4x2 float64 vector pairs of 384+512 bins" in words
    assert "split ratio 2 → image 256x192" in words
    assert sorted(cells[0] for cells in table_rows(result.stdout)) == sorted(decoders_for("simcc"))
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    both = CliRunner().invoke(
        app, ["evaluate", "--simcc", str(outputs), "--heatmaps", str(outputs), "--targets", str(targets)]
    )
    assert both.exit_code == 2 and "give the --heatmaps or the --simcc vectors" in both.stderr
    wrong = CliRunner().invoke(app, ["evaluate", "--heatmaps", str(outputs), "--targets", str(targets)])
    assert wrong.exit_code == 2 and "give it as --simcc" in wrong.stderr
