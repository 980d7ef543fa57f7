"""Settings: defaults, config.yaml, overrides, and clear errors naming the key."""

from pathlib import Path

import pytest

from facefuse.config import FusionParams, Settings, load_config
from facefuse.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_match_documented_values():
    s = Settings()
    assert s.face_detection.max_side == 1280
    assert s.face_detection.padding_ratio == 0.2
    assert s.face_detection.threshold == 0.6
    assert s.fusion.ratio == 0.8 and s.fusion.mode == "normal" and s.fusion.smoothing == 0.4
    assert s.server.host == "127.0.0.1" and s.server.port == 7860
    assert s.output.default_resolution == "original"


def test_repository_config_yaml_loads_and_equals_defaults():
    assert load_config(ROOT / "config.yaml") == Settings()


def test_yaml_values_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("fusion:\n  ratio: 0.5\n  mode: blend\noutput:\n  default_resolution: 2048\n")
    s = load_config(p, {"fusion": {"ratio": 0.3}})
    assert s.fusion.ratio == 0.3 and s.fusion.mode == "blend"
    params = s.fusion_params(smoothing=0.1)
    assert params.ratio == 0.3 and params.mode == "blend" and params.resolution == 2048 and params.smoothing == 0.1


@pytest.mark.parametrize("text, key", [
    ("fusion:\n  ratio: 1.5\n", "fusion.ratio"),
    ("fusion:\n  mode: sideways\n", "fusion.mode"),
    ("fusion:\n  ratoi: 0.5\n", "fusion.ratoi"),
    ("nonsense: 1\n", "nonsense"),
    ("server:\n  port: 70000\n", "server.port"),
    ("output:\n  default_resolution: 9000\n", "output.default_resolution"),
    ("face_detection:\n  min_face_px: 8\n", "face_detection.min_face_px"),  # 0 or >= 16
])
def test_bad_keys_and_values_name_the_key(tmp_path, text, key):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_invalid_yaml_and_missing_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("fusion: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("value, expected", [("original", "original"), ("1024", 1024), (4096, 4096), (64, 64)])
def test_resolution_accepts(value, expected):
    assert FusionParams.build(resolution=value).resolution == expected


@pytest.mark.parametrize("value", ["huge", 63, 8193, "-5"])
def test_resolution_refuses(value):
    with pytest.raises(ConfigError, match="resolution"):
        FusionParams.build(resolution=value)


def test_params_refuse_unknown_names():
    with pytest.raises(ConfigError, match="unknown"):
        FusionParams.build(ratoi=0.5)
