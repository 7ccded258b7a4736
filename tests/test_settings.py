"""The table of settings: one declaration per setting, and everything derived from it."""

import dataclasses
import math
import typing
from typing import get_args

import pytest
import typer

from integral_cli.cli import app
from integral_cli.errors import ConfigError
from integral_cli.settings import (
    CSV_COLUMNS,
    ENCODERS,
    GRID_AXES,
    PLOT_AXES,
    SETTINGS,
    TEXT_COLUMNS,
    Encoder,
    ExperimentConfig,
)


def command(name):
    return typer.main.get_command(app).commands[name]


def flags(name):
    return {opt for param in command(name).params for opt in param.opts}


def test_every_field_of_the_config_is_a_row_of_the_table():
    assert [f.name for f in dataclasses.fields(ExperimentConfig)] == list(SETTINGS)
    for name, item in SETTINGS.items():
        assert item.name == name and item.help and getattr(ExperimentConfig(), name) == item.default


def test_the_csv_columns_are_those_of_the_results_files():
    # the format of every CSV written since volumes and the scores (results/reference.csv,
    # written before, lacks some columns: read_results fills them in)
    assert CSV_COLUMNS == (
        "representation",
        "stride",
        "split_ratio",
        "sigma",
        "sigma_unit",
        "amplitude",
        "beta",
        "dark_kernel",
        "window_radius",
        "fit_radius",
        "encoder",
        "noise",
        "distractor",
        "distractor_distance",
        "position",
        "convention",
        "decode_convention",
        "flip_test",
        "sampling",
        "grid_size",
        "image_h",
        "image_w",
        "heatmap_h",
        "heatmap_w",
        "dims",
        "depth",
        "margin",
        "samples",
        "oks_area",
        "decoder",
        "mean_error",
        "median_error",
        "p95_error",
        "max_error",
        "rmse",
        "bias_x",
        "bias_y",
        "mean_error_hm",
        "mean_error_z",
        "mean_error_3d",
        "ci95_low",
        "ci95_high",
        "nonfinite",
        "fallbacks",
        "crlb_rmse",
        "efficiency",
        "oks",
        "ap_ceiling",
        "device",
        "dtype",
        "seed",
        "seconds",
    )
    assert {
        "representation",
        "sigma_unit",
        "encoder",
        "position",
        "convention",
        "decode_convention",
        "flip_test",
        "sampling",
        "decoder",
        "device",
        "dtype",
    } == TEXT_COLUMNS


def test_the_axes_sweep_walks_and_plot_draws():
    assert GRID_AXES == (
        "representation",
        "stride",
        "split_ratio",
        "sigma",
        "amplitude",
        "beta",
        "encoder",
        "noise",
        "distractor",
        "distractor_distance",
        "position",
        "convention",
        "decode_convention",
        "flip_test",
        "sampling",
        "dims",
        "dtype",
    )
    assert PLOT_AXES == (
        "stride",
        "split_ratio",
        "sigma",
        "amplitude",
        "beta",
        "noise",
        "distractor",
        "distractor_distance",
        "dims",
        "outputs",
    )


def test_choices_are_declared_once():
    # each choice setting's field is typed by the Literal its choices come from
    assert tuple(ENCODERS) == get_args(Encoder)
    hints = typing.get_type_hints(ExperimentConfig)
    choices = [item for item in SETTINGS.values() if item.kind == "choice"]
    assert len(choices) == 9
    for item in choices:
        assert typing.get_origin(hints[item.name]) is typing.Literal
        assert get_args(hints[item.name]) == item.choices, item.name


def test_compare_has_an_option_per_setting_and_sweep_a_list_per_axis():
    assert {item.flag for item in SETTINGS.values()} <= flags("compare")
    sweep_flags = flags("sweep")
    for item in SETTINGS.values():
        assert (item.sweep_flag if item.sweep else item.flag) in sweep_flags
        if item.sweep and item.sweep_flag != item.flag:
            assert item.flag not in sweep_flags  # one spelling per setting


@pytest.mark.parametrize("name", [n for n, item in SETTINGS.items() if item.kind in ("int", "float")])
def test_every_numeric_setting_refuses_values_out_of_its_range(name):
    item = SETTINGS[name]
    below = item.low if item.low_open else (item.low - 1 if item.kind == "int" else item.low - 0.5)
    if math.isfinite(below):
        with pytest.raises(ConfigError, match=name):
            ExperimentConfig(**{name: type(item.default)(below)})
    if math.isfinite(item.high):
        with pytest.raises(ConfigError):
            ExperimentConfig(**{name: type(item.default)(item.high * 2 + 1)})


@pytest.mark.parametrize("text, value", [("4", 4), (" 4 ", 4)])
def test_a_setting_reads_text_and_toml_values_alike(text, value):
    assert SETTINGS["stride"].parse(text) == value == SETTINGS["stride"].parse(value)
    assert SETTINGS["sigma"].parse(2) == 2.0 and isinstance(SETTINGS["sigma"].parse(2), float)
    assert SETTINGS["image_size"].parse("128x96") == (128, 96) == SETTINGS["image_size"].parse([128, 96])
    assert SETTINGS["dark_kernel"].parse("auto") == "auto" and SETTINGS["dark_kernel"].parse("7") == 7
    assert SETTINGS["stride"].parse_list("1, 2,4") == (1, 2, 4) == SETTINGS["stride"].parse_list([1, 2, 4])


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("stride", "x", "stride must be an integer"),
        ("image_size", "256", "HxW"),
        ("dark_kernel", "4", "odd"),
        ("encoder", "box", "choose from gaussian, msra, udp, fwhm, logit"),
        ("decoders", "argmax,nope", "unknown decoder 'nope'"),
        ("device", "gpu", "unknown device"),
    ],
)
def test_bad_values_name_the_setting(name, value, message):
    with pytest.raises(ConfigError, match=message):
        SETTINGS[name].parse(value)


def test_library_messages_name_settings_and_the_command_line_spells_options():
    with pytest.raises(ConfigError) as caught:
        ExperimentConfig(position="border", margin=2.0)
    assert str(caught.value).startswith("margin applies to position interior")
    assert "--" not in str(caught.value) and "«" not in str(caught.value)
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["sweep", "--positions", "interior,border", "--margin", "2", "--samples", "4"])
    assert result.exit_code == 2
    assert "--margin applies to --positions interior" in result.stderr


def test_the_margin_rule_holds_for_the_api_compare_and_sweep():
    with pytest.raises(ConfigError, match="margin applies to position interior"):
        ExperimentConfig(position="anywhere", margin=0.0)
    ExperimentConfig(position="interior", margin=0.0)  # allowed


def test_settings_that_apply_to_one_representation():
    # the stride means nothing to SimCC vectors, the split ratio nothing to heatmaps:
    # their columns stay empty there and sweep does not multiply the grid by them
    applying_to_one = {name for name, item in SETTINGS.items() if item.applies}
    assert applying_to_one == {"stride", "split_ratio", "window_radius", "fit_radius"}
    simcc = ExperimentConfig(representation="simcc").columns("cpu")
    heatmap = ExperimentConfig().columns("cpu")
    assert simcc["stride"] is simcc["window_radius"] is simcc["fit_radius"] is None
    assert simcc["heatmap_h"] is simcc["heatmap_w"] is None
    assert simcc["split_ratio"] == 2.0 and heatmap["split_ratio"] is None and heatmap["stride"] == 4


def test_all_decoders_means_those_that_apply():
    assert ExperimentConfig().resolved_decoders == tuple(SETTINGS["decoders"].default)
    assert ExperimentConfig(representation="simcc").resolved_decoders == (
        "argmax",
        "argmax-quarter",
        "dark",
        "integral",
        "integral-debiased",
        "integral-l1",
    )
    assert ExperimentConfig(representation="simcc", decoders=("dark", "argmax")).resolved_decoders == (
        "dark",
        "argmax",
    )
