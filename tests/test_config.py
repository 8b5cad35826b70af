"""Config system: strict YAML, typed values, overrides, resolved config round trip."""

import dataclasses

import pytest
import yaml

from tfdepth.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_the_papers():
    cfg = load_config()
    assert cfg.train.learning_rate == 1e-4
    assert cfg.loss.smoothness == 1e-3 and cfg.loss.segmentation == 5e-4 and cfg.loss.ssim_weight == 0.85
    assert cfg.model.scales == (0, 1, 2, 3)
    assert cfg.eval.max_depth == 80.0 and cfg.eval.crop == "garg"


def test_yaml_values_are_typed(tmp_path):
    path = write(tmp_path, "name: t\ndata:\n  height: 64\n  batch_size: 2\ntrain:\n  learning_rate: 1e-4\nmodel:\n  scales: [0, 1]\n")
    cfg = load_config(path)
    assert cfg.data.height == 64 and cfg.data.batch_size == 2
    assert isinstance(cfg.train.learning_rate, float) and cfg.train.learning_rate == 1e-4  # YAML 1.1 string "1e-4"
    assert cfg.model.scales == (0, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.data.height = 3


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "data:\n  heigth: 64\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "heigth" in msg and str(path) in msg and "height" in msg  # suggestion


def test_unknown_section_is_an_error(tmp_path):
    path = write(tmp_path, "optimizer:\n  lr: 1\n")
    with pytest.raises(ConfigError, match="optimizer"):
        load_config(path)


def test_wrong_type_is_an_error(tmp_path):
    path = write(tmp_path, "data:\n  height: tall\n")
    with pytest.raises(ConfigError, match="data.height"):
        load_config(path)
    path = write(tmp_path, "loss:\n  automask: 1\n", "b.yaml")
    with pytest.raises(ConfigError, match="loss.automask"):
        load_config(path)


def test_overrides(tmp_path):
    path = write(tmp_path, "data:\n  height: 64\n")
    cfg = load_config(path, ["data.height=96", "train.epochs=3", "model.encoder_weights=/x/y.npz", "model.scales=[0]"])
    assert cfg.data.height == 96 and cfg.train.epochs == 3
    assert cfg.model.encoder_weights == "/x/y.npz" and cfg.model.scales == (0,)
    with pytest.raises(ConfigError, match="trian"):
        load_config(path, ["trian.epochs=3"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(path, ["train.epochs"])
    assert apply_overrides({"a": {"b": 1}}, ["a.b=2"]) == {"a": {"b": 2}}


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "data: [1,\n"))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["name=run", "data.width=320", "model.segmentation=true"])
    out = save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(out)
    assert again == cfg
    assert yaml.safe_load(out.read_text())["data"]["width"] == 320
    assert not list((tmp_path / "run").glob("*.tmp"))
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert isinstance(cfg, ExperimentConfig)


def test_legacy_mixed_precision_key_still_loads(tmp_path):
    # Run directories written before train.precision existed hold train.mixed_precision: they must still evaluate.
    assert load_config(write(tmp_path, "train:\n  mixed_precision: false\n")).train.precision == "float32"
    assert load_config(write(tmp_path, "train:\n  mixed_precision: true\n")).train.precision == "mixed_float16"
    both = "train:\n  mixed_precision: true\n  precision: mixed_bfloat16\n"
    assert load_config(write(tmp_path, both)).train.precision == "mixed_bfloat16"
    with pytest.raises(ConfigError, match="train.mixed_precision"):
        load_config(write(tmp_path, "train:\n  mixed_precision: fast\n"))
    assert "mixed_precision" not in config_to_dict(load_config())["train"]


def test_model_name_selects_the_family_sections(tmp_path):
    from tfdepth.config import FAMILY_SECTIONS, MonodepthLossConfig

    cfg = load_config(write(tmp_path, "model:\n  name: monodepth\nloss:\n  automask: false\n"))
    assert isinstance(cfg.loss, MonodepthLossConfig) and cfg.loss.automask is False and cfg.family == "monodepth"
    with pytest.raises(ConfigError, match="model.name 'nope' is not a model family; known: " + ", ".join(sorted(FAMILY_SECTIONS))):
        load_config(write(tmp_path, "model:\n  name: nope\n", "b.yaml"))
    with pytest.raises(ConfigError, match="Did you mean 'smoothness'"):
        load_config(write(tmp_path, "loss:\n  smothness: 1\n", "c.yaml"))


@pytest.mark.parametrize(
    "override,key",
    [("train.epochs=0", "train.epochs"), ("train.optimizer=rmsprop", "train.optimizer"), ("train.momentum=1.0", "train.momentum"),
     ("train.lr_decay_at=1.5", "train.lr_decay_at"), ("eval.max_depth=0.0001", "eval.max_depth"),
     ("data.intrinsics=[.nan, 1, 0.5, 0.5]", "data.intrinsics"), ("model.initial_depth=500", "model.initial_depth"),
     ("train.keep_checkpoints=0", "train.keep_checkpoints"), ("loss.automask_warmup_steps=-1", "loss.automask_warmup_steps")],
)
def test_impossible_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_config_differences_name_dotted_keys():
    from tfdepth.config import config_differences

    a = load_config(None, [])
    b = load_config(None, ["data.height=128", "loss.automask=false"])
    assert config_differences(a, b) == ["data.height", "loss.automask"]
    assert config_differences(a, b, ignore=("loss",)) == ["data.height"]
