"""A default stated in a YAML profile is the one constant in ``core/defaults.py``."""

from dataclasses import replace

import pytest

from classifier import train
from core import defaults
from core.config import packaged, profile_names, read_yaml

# the YAML key of each constant, where profiles state it
KEYS = {"threshold": defaults.THRESHOLD, "score_threshold": defaults.DETECTOR_SCORE_THRESHOLD,
        "max_pixels": defaults.MAX_PIXELS, "padding": defaults.CROP_PADDING}


@pytest.mark.parametrize("name", [n for n in profile_names() if n not in ("species", "ui")])
def test_profiles_state_the_same_defaults(name):
    values = read_yaml(packaged(f"{name}.yaml")) or {}
    for key, constant in KEYS.items():
        if values.get(key) is not None:  # null: chosen at run time (the detector's score on --val)
            assert values[key] == constant, f"configs/{name}.yaml: {key} {values[key]} != core.defaults {constant}"


def test_parser_defaults_are_the_constants(tmp_path):
    settings = train.parse_settings(["--data", "d", "--out", str(tmp_path)])
    assert settings.threshold == defaults.THRESHOLD
    from detector.train import get_args_parser

    # the detector's score threshold is chosen on validation photos; the constant is the fallback without any
    parser = get_args_parser()
    assert parser.get_default("score_threshold") is None
    assert f"else {defaults.DETECTOR_SCORE_THRESHOLD}" in parser.format_help().replace("\n", " ").replace("  ", " ")


def test_profiles_are_packaged_and_found_by_name():
    assert {"classifier", "detector", "pipeline", "demo-classifier", "demo-detector", "species", "ui"} <= set(
        profile_names())
    settings = train.parse_settings(["--config", "configs/demo-classifier.yaml", "--data", "d", "--out", "o"])
    assert settings.arch == "efficientnet_lite0"
    by_name = train.parse_settings(["--config", "demo-classifier", "--data", "d", "--out", "o"])
    assert replace(by_name, config=None) == replace(settings, config=None)
