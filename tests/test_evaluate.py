import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from integral_cli.errors import ConfigError, InputFileError, MissingResultsError
from integral_cli.evaluate import EvaluateConfig, evaluate_columns, evaluate_files
from integral_cli.experiment import ExperimentConfig, render_maps, run_experiment, sample_truth
from integral_cli.inputs import open_heatmaps
from integral_cli.metrics import SUMMARY_FIELDS
from integral_cli.synth import render_heatmaps

from references import PARAMS, REFERENCES
from support import assert_rows_equal

STRIDE = 4


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Maps and targets the tool renders for a compare run, saved in every format."""
    config = ExperimentConfig(samples=3000, device="cpu", noise=0.02, seed=5)
    truth = sample_truth(config, torch.device("cpu"))
    maps = render_maps(config, truth, 0)
    folder = tmp_path_factory.mktemp("rendered")
    np.save(folder / "maps.npy", maps.numpy())
    np.save(folder / "targets.npy", truth.numpy())
    np.savez(folder / "maps.npz", heatmaps=maps.numpy(), other=np.zeros(3))
    np.savez_compressed(folder / "compressed.npz", maps.numpy())
    torch.save(maps, folder / "maps.pt")
    torch.save({"heatmaps": maps, "epoch": torch.tensor(3)}, folder / "dict.pt")
    return config, folder


def evaluate(heatmaps, targets, **settings):
    rows, source = evaluate_files(EvaluateConfig(heatmaps=heatmaps, targets=targets, device="cpu", **settings))
    return rows.set_index("decoder"), source


def test_reproduces_compare(rendered):
    config, folder = rendered
    expected = run_experiment(config).set_index("decoder")
    # told the maps' sigma, evaluate picks gaussian-fit's window as compare does
    rows, source = evaluate(folder / "maps.npy", folder / "targets.npy", stride=config.stride, sigma=config.sigma_hm)
    assert source.mapped and source.shape == (3000, 1, 64, 48)
    for name in config.decoders:
        for column in ("mean_error", "median_error", "p95_error", "max_error", "rmse", "mean_error_hm"):
            # compare subtracts in float32, evaluate in float64: they differ by float32 rounding
            assert rows.loc[name, column] == pytest.approx(expected.loc[name, column], rel=1e-4, abs=2e-5)
        assert rows.loc[name, "nonfinite"] == expected.loc[name, "nonfinite"]
        assert rows.loc[name, "fallbacks"] == expected.loc[name, "fallbacks"] or name != "gaussian-fit"


@pytest.mark.parametrize(
    ("name", "mapped"), [("maps.npz", True), ("compressed.npz", False), ("maps.pt", True), ("dict.pt", True)]
)
def test_every_format_gives_the_same_rows(rendered, name, mapped):
    _, folder = rendered
    reference, _ = evaluate(folder / "maps.npy", folder / "targets.npy")
    rows, source = evaluate(folder / name, folder / "targets.npy")
    assert source.mapped == mapped
    # the same maps, read whole in one chunk either way: bit-identical
    assert_rows_equal(rows, reference, ignore=("heatmaps", "seconds"))


def test_chunks_do_not_change_the_numbers(rendered):
    _, folder = rendered
    whole, _ = evaluate(folder / "maps.npy", folder / "targets.npy")
    # 1 MiB holds a few dozen maps at a time: about a hundred chunks
    chunked, _ = evaluate(folder / "maps.npy", folder / "targets.npy", max_memory_mib=1)
    # float32 maps decoded in batches of another size: a batched kernel may sum in
    # another order, which moves a float32 sub-pixel estimate by up to ~4e-6 heatmap px
    # on a few maps (DARK's Newton step amplifies it); in image px at stride 4 that is
    # under 2e-5, and on the statistics of 3000 maps (means of errors of 1e-3 to 70 px,
    # or a single order statistic such as max and p95) a relative 1e-4 with an
    # absolute 2e-5 px floor covers it.
    assert_rows_equal(chunked, whole, rtol=1e-4, atol=2e-5)


def argmax_reference(maps: np.ndarray, targets: np.ndarray, visible: np.ndarray, thresholds):
    """Straightforward argmax decoding and scoring, written out in numpy."""
    n, k, h, w = maps.shape
    flat = maps.reshape(n, k, h * w).argmax(-1)
    decoded = np.stack((flat % w, flat // w), axis=-1) * STRIDE + (STRIDE - 1) / 2  # center convention
    errors = np.linalg.norm(decoded - targets, axis=-1)[visible]
    return errors.mean(), np.median(errors), [np.mean(errors <= t) for t in thresholds]


@pytest.fixture
def keypoint_files(tmp_path, rng):
    """Random maps with K = 3 keypoints and COCO-style visibility."""
    maps = rng.random((40, 3, 16, 12)).astype(np.float32)
    targets = rng.uniform(0, 48, (40, 3, 2))
    visibility = rng.choice([0, 1, 2], size=(40, 3), p=[0.2, 0.3, 0.5])
    np.save(tmp_path / "maps.npy", maps)
    np.save(tmp_path / "targets.npy", np.concatenate((targets, visibility[..., None]), axis=-1))
    return tmp_path, maps, targets, visibility


def test_visibility_and_pck_against_a_reference(keypoint_files):
    folder, maps, targets, visibility = keypoint_files
    thresholds = (2.0, 8.0, 20.0)
    rows, _ = evaluate(folder / "maps.npy", folder / "targets.npy", pck=thresholds)
    mean, median, pck = argmax_reference(maps, targets, visibility > 0, thresholds)
    row = rows.loc["argmax"]
    assert row["visible"] == (visibility > 0).sum()
    assert row["mean_error"] == pytest.approx(mean, rel=1e-12)
    assert row["median_error"] == pytest.approx(median, rel=1e-12)
    assert [row["pck_2"], row["pck_8"], row["pck_20"]] == pytest.approx(pck, rel=1e-12)
    assert list(rows.columns) == [c for c in evaluate_columns(thresholds) if c != "decoder"]


def test_csv_targets_match_npy_targets(keypoint_files):
    folder, _, targets, visibility = keypoint_files
    n, k = visibility.shape
    table = pd.DataFrame(
        {
            "sample": np.repeat(np.arange(n), k),
            "keypoint": np.tile(np.arange(k), n),
            "x": targets[..., 0].ravel(),
            "y": targets[..., 1].ravel(),
            "visible": visibility.ravel(),
        }
    ).sample(frac=1.0, random_state=0)  # any row order
    table.loc[table.visible == 0, ["x", "y"]] = np.nan  # unlabelled points may be empty
    table.to_csv(folder / "targets.csv", index=False)
    from_npy, _ = evaluate(folder / "maps.npy", folder / "targets.npy")
    from_csv, _ = evaluate(folder / "maps.npy", folder / "targets.csv")
    # the same maps and points: bit-identical
    assert_rows_equal(from_csv, from_npy, ignore=("targets", "seconds"))


def test_integer_and_half_precision_maps_are_read(tmp_path, keypoint_files):
    folder, maps, targets, visibility = keypoint_files
    mean, _, _ = argmax_reference(maps, targets, visibility > 0, ())
    np.save(tmp_path / "u8.npy", (maps * 255).astype(np.uint8))
    np.save(tmp_path / "f16.npy", maps.astype(np.float16).astype(">f2"))  # big-endian too
    for name in ("u8.npy", "f16.npy"):
        rows, _ = evaluate(tmp_path / name, folder / "targets.npy", decoders=("argmax",))
        stored = np.load(tmp_path / name).astype(np.float64)
        expected, _, _ = argmax_reference(stored, targets, visibility > 0, ())
        assert rows.loc["argmax", "mean_error"] == pytest.approx(expected, rel=1e-12)
    assert mean > 0


# -------------------------------------------------------------------------- refusals
def save(path, array):
    np.save(path, array)
    return path


@pytest.fixture
def good(tmp_path):
    maps = np.random.default_rng(0).random((4, 2, 8, 8)).astype(np.float32)
    return save(tmp_path / "maps.npy", maps), save(tmp_path / "targets.npy", np.full((4, 2, 2), 10.0))


def refused(heatmaps, targets, text, error=InputFileError, **settings):
    with pytest.raises(error, match=text):
        evaluate_files(EvaluateConfig(heatmaps=heatmaps, targets=targets, device="cpu", **settings))


def test_missing_files(good, tmp_path):
    maps, targets = good
    refused(tmp_path / "nope.npy", targets, "no such file")
    refused(maps, tmp_path / "nope.csv", "no such file")


def test_unknown_suffixes(good, tmp_path):
    maps, targets = good
    (tmp_path / "maps.h5").write_bytes(b"")
    refused(tmp_path / "maps.h5", targets, r"\.npy, \.npz, \.pt or \.pth file")
    refused(maps, tmp_path / "maps.h5", r"\.npy or \.csv file")


@pytest.mark.parametrize("shape", [(4, 8, 8), (4, 2, 8, 8, 1, 1), (0, 2, 8, 8)])
def test_heatmaps_of_the_wrong_shape(good, tmp_path, shape):
    _, targets = good
    refused(save(tmp_path / "bad.npy", np.zeros(shape, np.float32)), targets, r"\(N, K, H, W\)")


def test_heatmaps_that_are_not_numbers(good, tmp_path):
    _, targets = good
    refused(save(tmp_path / "bool.npy", np.zeros((4, 2, 8, 8), bool)), targets, "must be numbers")
    refused(save(tmp_path / "complex.npy", np.zeros((4, 2, 8, 8), complex)), targets, "must be numbers")


def test_corrupt_files(good, tmp_path):
    maps, targets = good
    for suffix in (".npy", ".npz", ".pt"):
        path = tmp_path / f"junk{suffix}"
        path.write_bytes(b"not an array at all" * 10)
        refused(path, targets, "not a")
    truncated = tmp_path / "truncated.npy"
    truncated.write_bytes(maps.read_bytes()[:-100])
    refused(truncated, targets, "not a readable .npy")


@pytest.mark.parametrize(
    ("shape", "text"),
    [
        ((4, 2), r"\(N, K, 2\)"),
        ((4, 2, 4), r"\(N, K, 2\)"),
        ((5, 2, 2), "N=5, K=2 but the heatmaps hold N=4, K=2"),
        ((4, 3, 2), "N=4, K=3 but the heatmaps hold N=4, K=2"),
    ],
)
def test_targets_of_the_wrong_shape(good, tmp_path, shape, text):
    maps, _ = good
    refused(maps, save(tmp_path / "t.npy", np.zeros(shape)), text)


def test_nan_in_the_maps_is_named(good, tmp_path):
    _, targets = good
    maps = np.ones((4, 2, 8, 8), np.float32)
    maps[2, 1, 3, 3] = np.nan
    refused(save(tmp_path / "nan.npy", maps), targets, "sample 2, keypoint 1 holds NaN")


def test_nan_in_a_counted_target_is_named(good, tmp_path):
    maps, _ = good
    targets = np.full((4, 2, 3), 2.0)
    targets[1, 0, 0] = np.nan
    refused(maps, save(tmp_path / "t.npy", targets), "sample 1, keypoint 0 is not finite")
    targets[1, 0, 2] = 0  # not counted: allowed
    rows, _ = evaluate(maps, save(tmp_path / "t.npy", targets))
    assert (rows["visible"] == 7).all()


def test_nothing_visible(good, tmp_path):
    maps, _ = good
    refused(maps, save(tmp_path / "t.npy", np.zeros((4, 2, 3))), "visibility 0", error=MissingResultsError)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sample,keypoint,x\n0,0,1\n", "missing y"),
        ("sample,keypoint,x,y\n0,0,1,1\n", "sample 0, keypoint 1 has no row"),
        (
            "sample,keypoint,x,y\n" + "".join(f"{n},{k},1,1\n" for n in range(4) for k in range(2)) + "0,0,2,2\n",
            "sample 0, keypoint 0 has several rows",
        ),
        ("sample,keypoint,x,y\n9,0,1,1\n", "row 2 names sample 9"),
        ("sample,keypoint,x,y\n0.5,0,1,1\n", "whole numbers"),
        ("sample,keypoint,x,y\n1e30,0,1,1\n", "row 2 names sample 1000000000000000019884624838656, keypoint 0"),
        ("sample,keypoint,x,y\n0,0,a,1\n", "must hold numbers"),
        ("", "not a readable CSV"),
    ],
)
def test_bad_target_csvs(good, tmp_path, text, message):
    maps, _ = good
    path = tmp_path / "t.csv"
    path.write_text(text)
    refused(maps, path, message)


def test_several_arrays_without_a_heatmaps_name(good, tmp_path):
    _, targets = good
    np.savez(tmp_path / "two.npz", a=np.zeros((4, 2, 8, 8)), b=np.zeros(3))
    refused(tmp_path / "two.npz", targets, r"^\S+two.npz: holds several arrays \(a, b\); name the heatmaps 'heatmaps'$")
    np.savez(tmp_path / "empty.npz")
    refused(tmp_path / "empty.npz", targets, r"^\S+empty.npz: holds no arrays$")
    torch.save({"a": torch.zeros(4, 2, 8, 8), "b": torch.zeros(3)}, tmp_path / "two.pt")
    refused(tmp_path / "two.pt", targets, "name the heatmaps 'heatmaps'")


def test_a_pickled_object_is_not_loaded(good, tmp_path):
    _, targets = good
    torch.save({"heatmaps": torch.zeros(4, 2, 8, 8), "config": object()}, tmp_path / "pickled.pt")
    refused(tmp_path / "pickled.pt", targets, "torch can load safely")


def test_files_that_must_be_loaded_whole_are_checked_against_the_budget(good, tmp_path):
    _, targets = good
    big = np.random.default_rng(0).random((4, 2, 400, 400)).astype(np.float32)  # 5 MiB, incompressible
    np.savez_compressed(tmp_path / "big.npz", big)
    refused(
        tmp_path / "big.npz",
        targets,
        r"^\S+big.npz: 5 MiB must be loaded whole \(this format cannot be "
        r"memory-mapped\) and exceeds the memory budget of 2 MiB",
        max_memory_mib=2,
    )
    torch.save(torch.from_numpy(big), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    refused(tmp_path / "legacy.pt", targets, r"^\S+legacy.pt: 5 MiB must be loaded whole", max_memory_mib=2)
    # loaded whole, the maps leave less of the budget for the chunks: 5 MiB of 6 leaves
    # too little for one sample of 400x400 maps
    refused(tmp_path / "big.npz", targets, "raise max_memory_mib", error=ConfigError, max_memory_mib=6)
    # the same maps memory-mapped need only one sample's worth of the budget
    np.savez(tmp_path / "big_stored.npz", big)
    assert open_heatmaps(tmp_path / "big_stored.npz", 2 * 2**20).mapped
    rows, _ = evaluate(tmp_path / "big_stored.npz", targets, decoders=("argmax",), max_memory_mib=15)
    assert rows.loc["argmax", "visible"] == 8


def test_a_legacy_torch_file_that_fits_is_loaded(good, tmp_path):
    maps, targets = good
    torch.save(torch.from_numpy(np.load(maps)), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    source = open_heatmaps(tmp_path / "legacy.pt", 2**30)
    assert not source.mapped
    reference, _ = evaluate(maps, targets)
    rows, _ = evaluate(tmp_path / "legacy.pt", targets)
    assert_rows_equal(rows, reference, ignore=("heatmaps", "seconds"))  # same maps, one chunk


def test_a_sample_that_does_not_fit_the_budget(good, tmp_path):
    _, targets = good
    save(tmp_path / "large.npy", np.zeros((4, 2, 300, 300), np.float32))
    refused(tmp_path / "large.npy", targets, "raise max_memory_mib", error=ConfigError, max_memory_mib=1)


def test_stored_npz_member_is_mapped_at_the_right_offset(tmp_path):
    # a member before it with a long name, and a zip extra field on its own header,
    # shift the data: the map must still line up
    maps = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    with zipfile.ZipFile(tmp_path / "odd.npz", "w", compression=zipfile.ZIP_STORED) as archive:
        with archive.open("x" * 300 + ".npy", "w") as stream:
            np.lib.format.write_array(stream, np.ones(7))
        info = zipfile.ZipInfo("heatmaps.npy")
        info.extra = b"\xfe\xca\x04\x00abcd"
        with archive.open(info, "w") as stream:
            np.lib.format.write_array(stream, maps)
    source = open_heatmaps(tmp_path / "odd.npz", 2**30)
    assert source.mapped
    np.testing.assert_array_equal(source.read(0, 2).numpy(), maps)
    np.savez(tmp_path / "second.npz", aaa=np.ones(5), heatmaps=maps)
    np.testing.assert_array_equal(open_heatmaps(tmp_path / "second.npz", 2**30).read(1, 2).numpy(), maps[1:])


def test_nan_in_a_later_chunk_is_named_by_its_global_sample(tmp_path):
    maps = np.ones((400, 1, 64, 48), np.float32)  # 1 MiB holds a few dozen samples at a time
    maps[333, 0, 5, 5] = np.inf
    targets = save(tmp_path / "t.npy", np.full((400, 1, 2), 10.0))
    refused(save(tmp_path / "m.npy", maps), targets, "sample 333, keypoint 0 holds NaN or infinite", max_memory_mib=1)


def test_image_size_must_match_the_maps(good):
    maps, targets = good  # 8x8 maps
    refused(
        maps,
        targets,
        "image size 64x48 at stride 4 gives 16x12 heatmaps, but the file holds 8x8 maps",
        error=ConfigError,
        image_size=(64, 48),
    )
    refused(maps, targets, "nearest valid height: 32 or 36", error=ConfigError, image_size=(33, 32))
    rows, _ = evaluate(maps, targets, image_size=(32, 32), convention="udp")
    assert (rows["image_h"] == 32).all()


def test_udp_targets_decode_exactly(tmp_path):
    # udp maps image [0, W_img - 1] onto heatmap [0, W - 1]: pixel (x, y) of a 16x12 map
    # from a 64x48 image is image point (x * 47 / 11, y * 63 / 15)
    maps = np.zeros((2, 1, 16, 12), np.float32)
    maps[0, 0, 3, 5] = maps[1, 0, 15, 11] = 1.0
    targets = np.array([[[5 * 47 / 11, 3 * 63 / 15]], [[47.0, 63.0]]])
    rows, _ = evaluate(
        save(tmp_path / "m.npy", maps), save(tmp_path / "t.npy", targets), convention="udp", decoders=("argmax",)
    )
    assert rows.loc["argmax", "max_error"] == pytest.approx(0.0, abs=1e-12)


def test_maps_saved_with_gradients_are_read_without_a_graph(tmp_path, good):
    _, targets = good
    parameter = torch.nn.Parameter(torch.rand(4, 2, 8, 8))
    torch.save(parameter, tmp_path / "param.pt")
    rows, _ = evaluate(tmp_path / "param.pt", targets, decoders=("integral",))
    assert rows.loc["integral", "visible"] == 8
    assert not open_heatmaps(tmp_path / "param.pt", 2**30).read(0, 4).requires_grad


def test_wide_and_unusual_dtypes(tmp_path, good):
    _, targets = good
    maps = np.random.default_rng(1).random((4, 2, 8, 8))
    for dtype in (np.longdouble, np.uint16, np.int64):
        rows, _ = evaluate(save(tmp_path / "m.npy", (maps * 1000).astype(dtype)), targets, decoders=("argmax",))
        assert rows.loc["argmax", "visible"] == 8
    torch.save(torch.rand(4, 2, 8, 8).to_sparse(), tmp_path / "sparse.pt")
    refused(tmp_path / "sparse.pt", targets, "dense tensor")


@pytest.mark.parametrize(
    ("settings", "text"),
    [
        ({"pck": (1.0, 1.0)}, "listed twice"),
        ({"pck": (0.0,)}, "PCK threshold"),
        ({"decoders": ()}, "no decoders"),
        ({"convention": "middle"}, "unknown convention"),
        ({"dark_kernel": 4}, "odd"),
    ],
)
def test_bad_settings(good, settings, text):
    maps, targets = good
    with pytest.raises(ConfigError, match=text):
        EvaluateConfig(heatmaps=maps, targets=targets, **settings)


def test_summary_columns_present(good):
    rows, _ = evaluate(*good)
    assert set(SUMMARY_FIELDS) <= set(rows.columns)


def test_every_decoder_against_a_reference(tmp_path, rng):
    # Bumps with noise, K = 3, some keypoints unlabelled, float64 so that the maps are
    # decoded in float64: every decoder and every statistic against the per-map
    # references and numpy, at rounding precision.
    n, k = 20, 3
    centers = np.concatenate([rng.uniform(-0.4, 11.4, (n, k, 1)), rng.uniform(-0.4, 15.4, (n, k, 1))], -1)
    maps = render_heatmaps(torch.from_numpy(centers), (16, 12), 1.5, amplitude=4.0).numpy()
    maps = maps + 0.1 * rng.random(maps.shape)
    targets = rng.uniform(0, 48, (n, k, 2))
    visible = rng.random((n, k)) > 0.2
    np.save(tmp_path / "maps.npy", maps)
    np.save(tmp_path / "targets.npy", np.concatenate((targets, visible[..., None]), -1))
    thresholds = (4.0, 10.0)
    rows, _ = evaluate(tmp_path / "maps.npy", tmp_path / "targets.npy", pck=thresholds, **PARAMS)
    for name, reference in REFERENCES.items():
        decoded = np.array([[reference(maps[i, j]) for j in range(k)] for i in range(n)])
        image = STRIDE * (decoded + 0.5) - 0.5  # the center convention, written out
        offsets = (image - targets)[visible]
        errors = np.hypot(offsets[:, 0], offsets[:, 1])
        expected = {
            "mean_error": errors.mean(),
            "median_error": np.median(errors),
            "p95_error": np.percentile(errors, 95),
            "max_error": errors.max(),
            "rmse": np.sqrt((errors**2).mean()),
            "bias_x": offsets[:, 0].mean(),
            "bias_y": offsets[:, 1].mean(),
            "mean_error_hm": errors.mean() / STRIDE,
            "pck_4": (errors <= 4.0).mean(),
            "pck_10": (errors <= 10.0).mean(),
        }
        row = rows.loc[name]
        assert row["visible"] == visible.sum() and row["nonfinite"] == 0
        for column, value in expected.items():
            assert row[column] == pytest.approx(value, rel=1e-9, abs=1e-9), (name, column)
