"""Settings: one declaration per field drives validation, the YAML loader and the files in pipelines/."""

import dataclasses
from pathlib import Path

import pytest

from geocam.config import SceneConfig, from_mapping, load_config
from geocam.errors import ConfigError
from geocam.options import field_specs, read_yaml
from geocam.options import from_mapping as load_mapping
from geocam.training.config import EvaluateConfig, TrainConfig

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
CONFIGS = (SceneConfig, TrainConfig, EvaluateConfig)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_setting_has_help_and_a_valid_default(cls):
    specs = field_specs(cls)
    assert specs and all(s.setting.help.strip() for s in specs)
    config = cls(**{s.name: Path(s.name) for s in specs if s.required})
    for spec in specs:
        if not spec.required:
            assert getattr(config, spec.name) == spec.default


@pytest.mark.parametrize("path", sorted(PIPELINES.glob("*.yaml")), ids=lambda p: p.name)
def test_each_pipeline_file_loads_through_the_real_loader(path):
    raw = read_yaml(path)
    if path.name.startswith("finetune"):
        config = load_mapping(TrainConfig, raw, str(path))
        assert config.model_file == config.out_dir / "model.safetensors"
    else:
        config = load_config(path)
        assert config == SceneConfig()  # it holds only what it changes: nothing
    # each key it holds is required or changes a default
    specs = {s.name: s for s in field_specs(type(config))}
    assert all(specs[k].required or specs[k].default != getattr(config, k) for k in raw)


def test_the_bundled_models_recipe_is_unchanged():
    config = load_mapping(TrainConfig, read_yaml(PIPELINES / "finetune_eurosat.yaml"))
    recipe = {
        "source": "rgb",
        "architecture": "resnet50",
        "init": "none",
        "epochs": 60,
        "batch_size": 256,
        "lr": 0.002,
        "weight_decay": 0.05,
        "warmup_epochs": 3,
        "label_smoothing": 0.1,
        "seed": 0,
        "num_workers": 2,
        "precision": "auto",
    }
    assert {k: getattr(config, k) for k in recipe} == recipe
    assert config.model_file == Path("runs/eurosat-rgb-resnet50/model.safetensors")


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"thresold": 0.3}, "unknown setting `thresold`; did you mean `threshold`?"),
        ({"nonsense": 1}, "unknown setting `nonsense`; known: window_px, "),
        ({"threshold": "high"}, "`threshold`='high' must be a number in [0, 1]"),
        ({"threshold": 1.5}, "`threshold`=1.5 must be a number in [0, 1]"),
        ({"batch_size": 2.5}, "`batch_size`=2.5 must be an integer >= 1"),
        ({"batch_size": True}, "`batch_size`=True must be an integer >= 1"),
        ({"preview": "yes"}, "`preview`='yes' must be true or false"),
        ({"mode": "sparse"}, "`mode`='sparse' is not one of exact, dense"),
        ({"sieve_px": -1}, "(0 disables sieving)"),
        ({"gdal_env": 3}, "`gdal_env`=3 must be a mapping"),
        ({"bands": 3}, "`bands`=3 must be text or null"),
        ({"dn_offset": "x"}, "`dn_offset`='x' is neither 'auto' nor a number"),
        ({"stride_px": 96, "window_px": 64}, "exceeds `window_px`=64"),
    ],
)
def test_bad_settings_name_the_key_and_the_fix(raw, message):
    with pytest.raises(ConfigError) as err:
        from_mapping(raw, source="my.yaml")
    text = str(err.value)
    assert text.startswith("my.yaml: ") and message in text and "\n" not in text


def test_text_values_parse_as_on_the_command_line():
    config = from_mapping(
        {"bands": [3, 2, 1], "level": "l2a", "dn_offset": "auto", "reflectance_scale": 1000}
    )
    assert str(config.bands) == "3,2,1" and config.level == "L2A" and config.dn_offset is None
    assert config.reflectance_scale == 1000
    train = load_mapping(TrainConfig, {"root": "r", "out_dir": "o", "bands": "b04, B03"})
    assert train.root == Path("r") and train.bands == ("B04", "B03")
    assert load_mapping(TrainConfig, {"root": "r", "out_dir": "o", "bands": ["B04"]}).bands == (
        "B04",
    )


def test_training_settings_are_validated_like_scene_settings():
    with pytest.raises(ConfigError, match="unknown setting `epoch`; did you mean `epochs`"):
        load_mapping(TrainConfig, {"root": "r", "out_dir": "o", "epoch": 3}, "t.yaml")
    with pytest.raises(ConfigError, match=r"`radiometric`=2 must be a number in \[0, 1\]"):
        load_mapping(TrainConfig, {"root": "r", "out_dir": "o", "radiometric": 2})
    with pytest.raises(ConfigError, match="t.yaml: missing `root`"):
        load_mapping(TrainConfig, {"out_dir": "o"}, "t.yaml")


def test_replace_ignores_none_and_validates_again():
    config = SceneConfig().replace(threads=None, stride_px=16)
    assert config.stride_px == 16 and config.threads is None
    with pytest.raises(ConfigError, match="`block_px`=0"):
        config.replace(block_px=0)
    assert dataclasses.replace(config, stride_px=32).stride_px == 32


@pytest.mark.parametrize(
    "text, message",
    [("a: [1", "is not valid YAML"), ("- 1\n- 2\n", "must hold a mapping"), ("", None)],
)
def test_yaml_files_that_are_not_mappings(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    if message is None:
        assert load_config(path) == SceneConfig()
        return
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert "\n" not in str(err.value)
