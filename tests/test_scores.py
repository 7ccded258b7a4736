"""The scores papers report (OKS, the AP ceiling, PCK, NME, AUC), the flip test, and the
path from a model's outputs to them: ``decode``, ``evaluate --predictions``,
``--per-keypoint``, ``--normalize`` and ``--oks-area``.

Expected values come from closed forms or from plain loops written here."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from integral_cli import decode
from integral_cli.cli import app
from integral_cli.coco import COCO_KEYPOINTS, COCO_SIGMAS, OKS_THRESHOLDS
from integral_cli.errors import ConfigError
from integral_cli.evaluate import DecodeConfig, EvaluateConfig, decode_file, evaluate_files
from integral_cli.experiment import ExperimentConfig, run_experiment, sample_truth
from integral_cli.metrics import SUMMARY_FIELDS
from integral_cli.scores import Scoring, ap_ceiling, auc, keypoint_scores, person_oks, person_scores
from integral_cli.synth import render_heatmaps

from support import table_rows

runner = CliRunner()
STRIDE = 4
SAMPLES, KEYPOINTS, HEIGHT, WIDTH = 12, 17, 32, 24


# ------------------------------------------------------------ plain references
def reference_person_oks(errors, visible, area):
    """A person's OKS as COCO's evaluation computes it: the mean over labelled keypoints."""
    result = []
    for person in range(len(errors)):
        values = []
        for j in range(len(COCO_SIGMAS)):
            if visible[person][j]:
                kappa = 2 * COCO_SIGMAS[j]
                values.append(math.exp(-(errors[person][j] ** 2) / (2 * area * kappa**2)))
        result.append(sum(values) / len(values) if values else float("nan"))
    return result


def reference_ap_ceiling(oks):
    shares = []
    for threshold in (0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95):
        shares.append(sum(1 for value in oks if value >= threshold) / len(oks))
    return sum(shares) / len(shares)


def test_the_oks_thresholds_and_sigmas_are_cocos():
    assert OKS_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    assert len(COCO_KEYPOINTS) == 17
    assert COCO_SIGMAS == (
        0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087,
        0.089, 0.089,
    )  # fmt: skip


def test_oks_and_the_ap_ceiling_match_a_plain_reference():
    rng = np.random.default_rng(3)
    errors = rng.exponential(4.0, (50, 17))
    visible = rng.random((50, 17)) > 0.2
    visible[0] = False  # a person with no labelled keypoint is left out
    area = 3000.0
    oks = person_oks(np.where(visible, errors, np.nan), area)
    expected = reference_person_oks(errors, visible, area)
    assert np.isnan(oks[0]) and math.isnan(expected[0])
    np.testing.assert_allclose(oks[1:], expected[1:], rtol=1e-12)
    assert ap_ceiling(oks) == pytest.approx(reference_ap_ceiling(expected[1:]), rel=1e-12)


def test_the_ap_ceiling_counts_persons_at_each_threshold():
    # OKS 0.72 reaches 0.50 ... 0.70 (5 of 10 thresholds); 1.0 all ten; 0.4 none
    assert ap_ceiling(np.array([1.0, 0.72, 0.4])) == pytest.approx((1 + 0.5 + 0) / 3)
    # a point exactly at the distance of OKS 0.75 for the nose counts at the 0.75 threshold
    area, kappa = 1000.0, 2 * COCO_SIGMAS[0]
    distance = math.sqrt(-2 * area * kappa**2 * math.log(0.75))
    errors = np.zeros((1, 17))
    errors[0, 0] = distance
    assert person_oks(errors, area)[0] == pytest.approx((16 + 0.75) / 17)


def test_person_scores_group_consecutive_samples_and_count_a_miss_as_zero():
    errors = np.zeros(34)
    errors[17:] = np.inf  # the second person's points all failed
    scores = person_scores(errors, 500.0)
    assert scores == {"oks": 0.5, "ap_ceiling": 0.5}
    with pytest.raises(ConfigError):
        person_scores(np.zeros(20), 500.0)


def test_pck_nme_and_auc_match_their_definitions():
    rng = np.random.default_rng(4)
    errors = rng.exponential(2.0, 400)
    lengths = rng.uniform(20, 60, 400)
    scores = keypoint_scores(errors, (0.05, 0.1), lengths=lengths, auc_max=0.5)
    relative = errors / lengths
    assert scores["pck_0.05"] == np.mean(relative <= 0.05)
    assert scores["nme"] == pytest.approx(np.mean(relative), rel=1e-12)
    # the area under PCK(alpha) on [0, 0.5] / 0.5, by the midpoint rule on a fine grid;
    # PCK is a step function with 400 steps, so 200000 cells bound the error by 400/200000
    alphas = (np.arange(200_000) + 0.5) / 200_000 * 0.5
    curve = np.searchsorted(np.sort(relative), alphas, side="right") / relative.size
    assert scores["auc"] == pytest.approx(curve.mean(), abs=2e-3)
    assert auc(np.array([0.0, 0.25, np.inf]), 0.5) == pytest.approx(0.5)


# ----------------------------------------------------------------- the flip test
@pytest.mark.parametrize(
    ("representation", "convention", "flip_test", "bias"),
    [
        ("heatmap", "center", "none", 0.0),
        ("heatmap", "center", "average", 0.0),
        ("heatmap", "center", "shift", STRIDE / 2),
        ("heatmap", "corner", "average", -(STRIDE - 1) / 2),
        ("heatmap", "corner", "shift", 0.5),
        # SimCC at k = 2: center bins b = 2x + 1/2, corner b = 2x; the flipped-back x
        # vector peaks at 2x + 1 - c, so average is off by (1/2 - c)/2 and shift adds 1/4
        ("simcc", "center", "average", 0.0),
        ("simcc", "center", "shift", 0.25),
        ("simcc", "corner", "average", 0.25),
        ("simcc", "corner", "shift", 0.5),
        # volumes flip along x as heatmaps do; z and y untouched
        ("volume", "center", "shift", STRIDE / 2),
        ("volume", "corner", "average", -(STRIDE - 1) / 2),
    ],
)
def test_the_flip_test_biases_match_the_closed_forms(representation, convention, flip_test, bias):
    # the expectation of the averaged output is the mean of its two peaks, so integral-l1
    # reads the bias exactly but for the Gaussian tail the border cuts (and the border
    # column the shift duplicates): at 6 sigma from the border (heatmap sigma 1 px, SimCC
    # sigma 2 bins) the tail is exp(-18) ~ 2e-8 of the peak, so 1e-6 image px
    volume = representation == "volume"
    config = ExperimentConfig(
        representation="heatmap" if volume else representation,
        dims=3 if volume else 2,
        depth=16,
        image_size=(64, 64),
        stride=STRIDE,
        split_ratio=2.0,
        sigma=2.0 if representation == "simcc" else 1.0,
        margin=12 if representation == "simcc" else 6,
        convention=convention,
        flip_test=flip_test,
        decoders=("integral-l1",),
        samples=400,
        amplitude=1.0,
        device="cpu",
        dtype="float64",
    )
    row = run_experiment(config).iloc[0]
    assert row["bias_x"] == pytest.approx(bias, abs=1e-6)
    assert row["bias_y"] == pytest.approx(0.0, abs=1e-6)
    if volume:
        assert row["mean_error_z"] == pytest.approx(0.0, abs=1e-6)


def test_the_flip_test_is_in_the_title_and_sweep_walks_it(tmp_path):
    result = runner.invoke(app, ["compare", "--samples", "20", "--device", "cpu", "--flip-test", "shift"])
    assert result.exit_code == 0 and "flip test shift" in result.stdout
    out = tmp_path / "flip.csv"
    args = ["sweep", "--strides", "4", "--sigmas", "2", "--samples", "20", "--device", "cpu", "--out", out]
    result = runner.invoke(app, [str(a) for a in [*args, "--flip-tests", "none,average,shift"]])
    assert result.exit_code == 0, result.output
    assert sorted(set(pd.read_csv(out)["flip_test"])) == ["average", "none", "shift"]


# ---------------------------------------------------------------- compare's OKS
def test_compare_scores_persons_of_17_keypoints():
    config = ExperimentConfig(
        samples=30, oks_area=4096.0, decoders=("gaussian-fit", "argmax"), device="cpu", dtype="float64"
    )
    assert config.total_samples == 34  # rounded up to two persons
    rows = run_experiment(config).set_index("decoder")
    # on noise-free float64 Gaussians the fit is exact: every OKS is 1
    assert rows.loc["gaussian-fit", "oks"] == pytest.approx(1.0, abs=1e-9)
    assert rows.loc["gaussian-fit", "ap_ceiling"] == 1.0
    # argmax is off by up to half a heatmap pixel per axis (2 image px at stride 4): the
    # OKS of the nose at that distance bounds every keypoint's from below
    worst = math.exp(-(2 * 2**2) / (2 * 4096 * (2 * COCO_SIGMAS[0]) ** 2))
    assert worst <= rows.loc["argmax", "oks"] < 1
    result = runner.invoke(app, ["compare", "--samples", "30", "--device", "cpu", "--oks-area", "4096"])
    assert "34 points" in result.stdout and "2 persons of 17 keypoints, area 4096 px²" in result.stdout
    assert "OKS" in result.stdout and "AP ceiling" in result.stdout and max(map(len, result.stdout.splitlines())) <= 80


def test_simcc_points_score_oks_as_heatmap_points_do():
    # float64 noise-free vectors: DARK and the L1 integral land within 1e-3 image px, so
    # every OKS is 1 to 1e-6 and the AP ceiling is 100%
    config = ExperimentConfig(
        representation="simcc", samples=34, oks_area=4096.0, decoders=("dark", "integral-l1"), device="cpu",
        dtype="float64",
    )  # fmt: skip
    rows = run_experiment(config)
    assert rows["oks"].to_numpy() == pytest.approx(1.0, abs=1e-6)
    assert (rows["ap_ceiling"] == 1.0).all()


def test_compare_scores_per_keypoint_as_a_plain_reference_does():
    # argmax on noise-free maps, decoded here with numpy: each person's 17 samples are
    # COCO's keypoints in order, normalised by the distance between its eyes (1 and 2)
    config = ExperimentConfig(
        samples=68, oks_area=4096.0, image_size=(128, 96), decoders=("argmax",), device="cpu", dtype="float64"
    )
    scoring = Scoring(pck=(0.25, 0.5), normalize="pair:1,2", per_keypoint=True)
    rows = run_experiment(config, scoring=scoring)
    truth = sample_truth(config).double()[:, 0]  # (68, 2) image px
    centers = (truth + 0.5) / STRIDE - 0.5  # center convention
    maps = render_heatmaps(centers[:, None], (32, 24), config.sigma, amplitude=config.amplitude).numpy()[:, 0]
    flat = maps.reshape(len(maps), -1).argmax(-1)
    decoded = np.stack([flat % 24, flat // 24], -1) * STRIDE + (STRIDE - 1) / 2
    errors = np.linalg.norm(decoded - truth.numpy(), axis=-1).reshape(4, 17)
    eyes = np.linalg.norm(truth.numpy().reshape(4, 17, 2)[:, 1] - truth.numpy().reshape(4, 17, 2)[:, 2], axis=-1)
    relative = errors / eyes[:, None]
    assert list(rows["keypoint"]) == ["all", *COCO_KEYPOINTS]
    # the engine keeps offsets in float32 (6e-8 relative): rel 1e-6 on what comes from them
    expected_rows = [relative.ravel()] + [relative[:, j] for j in range(17)]
    for (_, row), values in zip(rows.iterrows(), expected_rows, strict=True):
        assert row["nme"] == pytest.approx(values.mean(), rel=1e-6)
        assert row["pck_0.25"] == pytest.approx(np.mean(values <= 0.25), abs=1e-12)
        assert row["pck_0.5"] == pytest.approx(np.mean(values <= 0.5), abs=1e-12)
    for j in range(17):
        assert rows.iloc[1 + j]["mean_error"] == pytest.approx(errors[:, j].mean(), rel=1e-6)
        oks = np.exp(-(errors[:, j] ** 2) / (2 * 4096 * (2 * COCO_SIGMAS[j]) ** 2)).mean()
        assert rows.iloc[1 + j]["oks"] == pytest.approx(oks, rel=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--per-keypoint"], "--per-keypoint needs keypoints: give --oks-area"),
        (["--normalize", "pair:0,1"], "--normalize pair:I,J needs keypoints: give --oks-area"),
        (["--oks-area", "4096", "--normalize", "pair:0,17"], "I and J must be two keypoints of 0 to 16"),
        (["--normalize", "value:0"], "value:V needs a number > 0"),
    ],
)
def test_compare_refuses_scores_its_points_cannot_have(args, message, tmp_path):
    out = tmp_path / "rows.csv"
    result = runner.invoke(app, ["compare", "--samples", "20", "--device", "cpu", "--csv", str(out), *args])
    assert result.exit_code == 2 and message in result.output and not out.exists()


def test_compare_normalised_by_a_value_reads_pck_in_its_fractions(tmp_path):
    # the same points scored in pixels at thresholds t*V and in fractions t of V agree (V = 4:
    # dividing by it is exact), and NME is the mean error over V
    common = ["compare", "--samples", "300", "--device", "cpu", "--decoders", "argmax,integral", "--json"]
    pixels = json.loads(runner.invoke(app, [*common, "--pck", "2,4"]).stdout)
    fractions = json.loads(runner.invoke(app, [*common, "--pck", "0.5,1", "--normalize", "value:4"]).stdout)
    for by_px, by_fraction in zip(pixels, fractions, strict=True):
        assert by_px["decoder"] == by_fraction["decoder"]
        assert by_px["pck_2"] == by_fraction["pck_0.5"] and by_px["pck_4"] == by_fraction["pck_1"]
        # both from the same float64 errors; the summary's mean sums in another order
        assert by_fraction["nme"] == pytest.approx(by_px["mean_error"] / 4, rel=1e-9)
        assert by_px["nme"] is None and by_fraction["keypoint"] == "all"


# ------------------------------------------------- decode, predictions, per keypoint
@pytest.fixture(scope="module")
def model_outputs(tmp_path_factory):
    """A model's saved maps (noisy Gaussians), its ground truth with some keypoints
    unlabelled, and boxes."""
    generator = torch.Generator().manual_seed(11)
    centers = torch.rand(SAMPLES, KEYPOINTS, 2, generator=generator, dtype=torch.float64)
    centers = centers * torch.tensor([WIDTH - 12.0, HEIGHT - 12.0], dtype=torch.float64) + 6
    maps = render_heatmaps(centers, (HEIGHT, WIDTH), 2.0)
    maps = (maps + 0.05 * torch.randn(maps.shape, generator=generator, dtype=maps.dtype)).float()
    targets = np.concatenate(
        [centers.numpy() * STRIDE + (STRIDE - 1) / 2, np.ones((SAMPLES, KEYPOINTS, 1))], axis=-1
    )  # the center convention: x_img = (x_hm + 0.5) s - 0.5
    targets[0, 3, 2] = 0
    targets[5, :, 2] = 0  # a person with nothing labelled
    folder = tmp_path_factory.mktemp("model")
    np.save(folder / "maps.npy", maps.numpy())
    np.save(folder / "targets.npy", targets)
    boxes = np.column_stack([np.zeros(SAMPLES), np.zeros(SAMPLES), np.linspace(40, 90, SAMPLES), np.full(SAMPLES, 70)])
    np.save(folder / "boxes.npy", boxes)
    return folder, maps, targets


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_decode_writes_the_points_decode_gives(model_outputs, tmp_path, suffix):
    folder, maps, _ = model_outputs
    out = tmp_path / f"points{suffix}"
    result = invoke("decode", "--heatmaps", folder / "maps.npy", "--decoder", "dark", "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    expected = (decode(maps, "dark").double() + 0.5) * STRIDE - 0.5
    if suffix == ".npy":
        written = np.load(out)
    else:
        table = pd.read_csv(out)
        assert list(table.columns) == ["sample", "keypoint", "x", "y", "score"]
        assert table["score"].to_numpy() == pytest.approx(maps.flatten(-2).amax(-1).flatten().double().numpy())
        written = table[["x", "y"]].to_numpy().reshape(SAMPLES, KEYPOINTS, 2)
    # the command decodes in chunks that fit its memory budget, decode() the batch at
    # once; a batched kernel may round the last float32 bit differently (1e-6 relative)
    np.testing.assert_allclose(written, expected.numpy(), rtol=1e-6, atol=1e-5)
    again = invoke("decode", "--heatmaps", folder / "maps.npy", "--out", out, "--device", "cpu")
    assert again.exit_code == 2 and "exists" in again.output


def test_simcc_vectors_decode_and_score_like_heatmaps(tmp_path):
    # random vectors: argmax reads bin i as x = i / k (corner, MMPose's bins), and the
    # score is the smaller of the two vectors' maxima, as MMPose's get_simcc_maximum keeps
    generator = torch.Generator().manual_seed(5)
    simcc_x = torch.rand(6, 17, 2 * 48, generator=generator)
    simcc_y = torch.rand(6, 17, 2 * 64, generator=generator)
    np.savez(tmp_path / "simcc.npz", simcc_x=simcc_x.numpy(), simcc_y=simcc_y.numpy())
    out = tmp_path / "points.csv"
    args = ["--simcc", tmp_path / "simcc.npz", "--split-ratio", "2", "--convention", "corner", "--device", "cpu"]
    result = invoke("decode", *args, "--decoder", "argmax", "--out", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    expected = np.stack([simcc_x.argmax(-1).numpy() / 2, simcc_y.argmax(-1).numpy() / 2], axis=-1)
    np.testing.assert_array_equal(table[["x", "y"]].to_numpy(), expected.reshape(-1, 2))
    peaks = np.minimum(simcc_x.amax(-1).numpy(), simcc_y.amax(-1).numpy()).astype(np.float64)
    assert table["score"].to_numpy() == pytest.approx(peaks.ravel())
    # the written points scored as predictions equal the vectors decoded by argmax
    np.save(tmp_path / "targets.npy", expected + 0.3)
    scored = invoke(
        "evaluate", *args, "--decoders", "argmax", "--targets", tmp_path / "targets.npy",
        "--predictions", out, "--oks-area", "4096", "--json",
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    rows = {row["decoder"]: row for row in json.loads(scored.stdout)}
    assert rows["argmax"]["simcc_x_bins"] == 96 and rows["argmax"]["split_ratio"] == 2
    for column in ("mean_error", "oks", "ap_ceiling"):
        assert rows["predictions"][column] == pytest.approx(rows["argmax"][column], rel=1e-12)
    assert rows["argmax"]["mean_error"] == pytest.approx(0.3 * math.sqrt(2), rel=1e-9)


def test_decode_file_is_what_the_command_calls(model_outputs, tmp_path):
    folder, maps, _ = model_outputs
    points, scores = decode_file(DecodeConfig(heatmaps=folder / "maps.npy", decoders=("argmax",), device="cpu"))
    assert points.shape == (SAMPLES, KEYPOINTS, 2) and scores.shape == (SAMPLES, KEYPOINTS)
    expected = (decode(maps, "argmax").double() + 0.5) * STRIDE - 0.5
    np.testing.assert_array_equal(points, expected.numpy())  # whole pixels: exact whatever the batch
    with pytest.raises(ConfigError, match="one decoder"):
        decode_file(DecodeConfig(heatmaps=folder / "maps.npy", decoders=("argmax", "dark"), device="cpu"))
    with pytest.raises(ConfigError, match=".npy or .csv"):
        decode_file(DecodeConfig(heatmaps=folder / "maps.npy", decoders=("dark",)), tmp_path / "points.txt")
    assert not (tmp_path / "points.txt").exists()


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_predictions_score_as_the_heatmaps_do_with_the_same_decoder(model_outputs, tmp_path, suffix):
    folder, _, _ = model_outputs
    out = tmp_path / f"points{suffix}"
    assert invoke("decode", "--heatmaps", folder / "maps.npy", "--out", out, "--device", "cpu").exit_code == 0
    result = invoke(
        "evaluate", "--heatmaps", folder / "maps.npy", "--predictions", out, "--targets", folder / "targets.npy",
        "--decoders", "dark", "--device", "cpu", "--oks-area", "2000",
        "--normalize", "bbox:" + str(folder / "boxes.npy"), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = {row["decoder"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"predictions", "dark"}
    scores = [*SUMMARY_FIELDS, "visible", "pck_1", "pck_2", "pck_4", "nme", "auc", "oks", "ap_ceiling"]
    for column in scores:
        # the same float64 points: a CSV's numbers are written at full precision
        assert rows["predictions"][column] == rows["dark"][column], column


def test_per_keypoint_rows_match_a_plain_reference(model_outputs):
    folder, maps, targets = model_outputs
    config = EvaluateConfig(
        heatmaps=folder / "maps.npy",
        targets=folder / "targets.npy",
        decoders=("argmax",),
        per_keypoint=True,
        keypoint_names="coco",
        oks_area=2000.0,
        device="cpu",
    )
    rows, _ = evaluate_files(config)
    assert list(rows["keypoint"]) == ["all", *COCO_KEYPOINTS]
    points = (decode(maps, "argmax").double().numpy() + 0.5) * STRIDE - 0.5
    distances = np.linalg.norm(points - targets[..., :2], axis=-1)
    visible = targets[..., 2] > 0
    for k, name in enumerate(COCO_KEYPOINTS):
        row = rows.set_index("keypoint").loc[name]
        kept = [distances[n, k] for n in range(SAMPLES) if visible[n, k]]
        assert row["visible"] == len(kept)
        assert row["mean_error"] == pytest.approx(sum(kept) / len(kept), rel=1e-12)
        kappa = 2 * COCO_SIGMAS[k]
        assert row["oks"] == pytest.approx(np.mean([math.exp(-(d**2) / (2 * 2000 * kappa**2)) for d in kept]))
    overall = rows.set_index("keypoint").loc["all"]
    oks = [value for value in reference_person_oks(distances, visible, 2000.0) if not math.isnan(value)]
    assert overall["oks"] == pytest.approx(np.mean(oks), rel=1e-12)
    assert overall["ap_ceiling"] == pytest.approx(reference_ap_ceiling(oks), rel=1e-12)


@pytest.mark.parametrize("spec", ["bbox", "pair:5,6", "value:25"])
def test_normalised_scores_match_a_plain_reference(model_outputs, spec):
    folder, maps, targets = model_outputs
    boxes = np.load(folder / "boxes.npy")
    normalize = f"bbox:{folder / 'boxes.npy'}" if spec == "bbox" else spec
    config = EvaluateConfig(
        heatmaps=folder / "maps.npy",
        targets=folder / "targets.npy",
        decoders=("dark",),
        normalize=normalize,
        pck=(0.02, 0.05),
        auc_max=0.2,
        device="cpu",
    )
    row = evaluate_files(config)[0].iloc[0]
    points = (decode(maps, "dark").double().numpy() + 0.5) * STRIDE - 0.5
    relative = []
    for n in range(SAMPLES):
        if spec == "bbox":
            length = math.sqrt(boxes[n, 2] * boxes[n, 3])
        elif spec == "value:25":
            length = 25.0
        else:  # the shoulders; a sample without both labelled has no length
            if not (targets[n, 5, 2] and targets[n, 6, 2]):
                continue
            length = math.dist(targets[n, 5, :2], targets[n, 6, :2])
        for k in range(KEYPOINTS):
            if targets[n, k, 2]:
                relative.append(math.dist(points[n, k], targets[n, k, :2]) / length)
    relative = np.array(relative)
    assert row["nme"] == pytest.approx(relative.mean(), rel=1e-5)  # float32 maps: points to ~1e-6
    assert row["pck_0.05"] == np.mean(relative <= 0.05)
    assert row["auc"] == pytest.approx(np.mean(1 - np.minimum(relative, 0.2) / 0.2), rel=1e-5)


def test_the_scores_table_fits_80_columns(model_outputs, tmp_path):
    folder, _, _ = model_outputs
    out = tmp_path / "points.csv"
    assert invoke("decode", "--heatmaps", folder / "maps.npy", "--out", out, "--device", "cpu").exit_code == 0
    result = invoke(
        "evaluate", "--heatmaps", folder / "maps.npy", "--predictions", out, "--targets", folder / "targets.npy",
        "--device", "cpu", "--oks-area", "2000", "--normalize", "pair:1,2", "--pck", "0.1,0.2,0.5",
        "--per-keypoint", "--keypoint-names", "coco",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert max(map(len, result.stdout.splitlines())) <= 80 and "…" not in result.stdout
    rows = table_rows(result.stdout)
    assert {cells[1] for cells in rows} == {"all", *COCO_KEYPOINTS}
    assert "OKS" in result.stdout and "AP ceiling" in result.stdout and "NME" in result.stdout
    assert "more column" in result.stdout  # what did not fit is named


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--normalize", "bbox:{folder}/short.npy"], "short.npy: 3 boxes for N=12 samples"),
        (["--normalize", "pair:5,17"], "pair:5,17: I and J must be two keypoints of 0 to 16"),
        (["--normalize", "value:0"], "needs a number > 0"),
        (["--normalize", "torso"], "must be none, bbox:FILE, pair:I,J or value:V"),
        (["--oks-area", "0"], "--oks-area"),
        (["--oks-area", "-5"], "--oks-area"),
        (["--predictions", "{folder}/wrong.npy"], "wrong.npy: predictions hold N=12, K=5"),
        (["--keypoint-names", "{folder}/names.txt"], "names.txt: 2 names for K=17"),
    ],
)
def test_bad_inputs_are_one_line_and_exit_2(model_outputs, tmp_path, args, message):
    folder, _, _ = model_outputs
    np.save(folder / "short.npy", np.ones((3, 4)))
    np.save(folder / "wrong.npy", np.zeros((12, 5, 2)))
    (folder / "names.txt").write_text("a\nb\n")
    csv = tmp_path / "rows.csv"
    result = invoke(
        "evaluate", "--heatmaps", folder / "maps.npy", "--targets", folder / "targets.npy", "--device", "cpu",
        "--csv", csv, *(a.format(folder=folder) for a in args),
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not csv.exists()  # nothing written on error


def test_decode_writes_nothing_on_error(tmp_path):
    bad = tmp_path / "maps.npy"
    np.save(bad, np.full((2, 3, 8, 8), np.nan, dtype=np.float32))
    out = tmp_path / "points.npy"
    result = invoke("decode", "--heatmaps", bad, "--out", out, "--device", "cpu")
    assert result.exit_code == 2 and "NaN" in result.output
    assert list(tmp_path.iterdir()) == [bad]
