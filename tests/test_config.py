"""Typed config: overrides, files, round trip through JSON, and errors that say what to fix."""

from __future__ import annotations

import json

import pytest

from data2vec.config import from_dict, load_file, merge, parse_override, to_dict
from data2vec.presets import get_preset
from data2vec.train.config import pretrain_config_from_dict


def test_json_round_trip_rebuilds_the_same_config():
    cfg = get_preset("audio-base-v1")
    again = pretrain_config_from_dict(json.loads(json.dumps(to_dict(cfg))))
    assert again == cfg
    assert isinstance(again.optim.adam_betas, tuple)


@pytest.mark.parametrize("item, expected", [
    ("optim.lr=1e-4", {"optim": {"lr": 1e-4}}),
    ("data.enable_padding=true", {"data": {"enable_padding": True}}),
    ("model.loss.loss_scale=null", {"model": {"loss": {"loss_scale": None}}}),
    ("optim.phase_ratio=(0.1, 0.4, 0.5)", {"optim": {"phase_ratio": (0.1, 0.4, 0.5)}}),
    ("data.path=/some/dir", {"data": {"path": "/some/dir"}}),
    ("data.enable_padding=False", {"data": {"enable_padding": False}}),
    ("train.max_update=4e5", {"train": {"max_update": 400000.0}}),
])
def test_parse_override(item, expected):
    assert parse_override(item) == expected


def test_merge_nested_values_with_types():
    cfg = get_preset("audio-tiny-v1")
    cfg = merge(cfg, parse_override("optim.lr=2e-4"))
    cfg = merge(cfg, parse_override("model.targets.average_top_k_layers=2"))
    cfg = merge(cfg, parse_override("optim.adam_betas=[0.9, 0.95]"))
    cfg = merge(cfg, parse_override("model.loss.loss_scale=1"))
    assert cfg.optim.lr == 2e-4 and cfg.model.targets.average_top_k_layers == 2
    assert cfg.optim.adam_betas == (0.9, 0.95) and cfg.model.loss.loss_scale == 1.0
    assert get_preset("audio-tiny-v1").optim.lr != 2e-4  # presets are fresh objects


def test_merge_coerces_types_and_leaves_the_input_untouched():
    cfg = get_preset("audio-tiny-v1")
    new = merge(cfg, {"train": {"max_update": 4e5}, "optim": {"lr": 1, "phase_ratio": [0.1, 0.2, 0.7]},
                      "model": {"loss": {"loss_scale": None}}})
    assert new.train.max_update == 400000 and type(new.train.max_update) is int
    assert new.optim.lr == 1.0 and type(new.optim.lr) is float
    assert new.optim.phase_ratio == (0.1, 0.2, 0.7) and new.model.loss.loss_scale is None
    assert cfg.train.max_update == 600 and cfg.optim.phase_ratio == (0.1, 0.6, 0.3)


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "unknown config key 'optim.lrr'"),
    ("optim.lr=abc", "optim.lr: expected a number"),
    ("train.max_update=true", "train.max_update: expected an integer"),
    ("data.enable_padding=1", "expected true/false"),
    ("optim.lr_scheduler=linear", "expected one of ['tri_stage', 'cosine', 'polynomial', 'fixed']"),
    ("optim.adam_betas=[0.9]", "expected 2 values"),
    ("masking.mask_prob=1.5", "mask_prob must be in [0, 1)"),
    ("train.max_update=1.5", "train.max_update: expected an integer"),
    ("model.loss.loss_scale=big", "model.loss.loss_scale: expected float | None"),
    ("optim.phase_ratio=0.5", "optim.phase_ratio: expected a list"),
    ("model.ema=0.9", "model.ema: expected a mapping for EMAConfig"),
    ("encoder.conv_feature_layers=[(80, 400, 160)]",
     """expected a string, got [(80, 400, 160)]; on the command line quote it as a string: """
     """--set 'encoder.conv_feature_layers="[(80, 400, 160)]"'"""),
])
def test_bad_values_name_the_key_and_the_fix(override, message):
    with pytest.raises(ValueError) as e:
        merge(get_preset("audio-tiny-v1"), parse_override(override))
    assert message in str(e.value)


def test_unknown_key_lists_valid_keys():
    from data2vec.train.config import TrainConfig

    with pytest.raises(ValueError, match="valid keys under 'train': .*max_update"):
        from_dict(TrainConfig, {"max_updates": 3}, "train.")
    with pytest.raises(ValueError, match=r"unknown config key 'model.ema.decay'; valid keys under 'model.ema': "
                                         r"ema_anneal_end_step, ema_decay, ema_end_decay"):
        merge(get_preset("audio-tiny-v1"), parse_override("model.ema.decay=0.9"))


@pytest.mark.parametrize("item", ["optim.lr", "optim..lr=1", "=3", "optim.l-r=1"])
def test_malformed_override_is_an_error(item):
    with pytest.raises(ValueError, match="override"):
        parse_override(item)


def test_modality_sections_are_type_checked():
    # encoder/masking/data are typed Any on PretrainConfig; a scalar must not replace the section
    try:
        merge(get_preset("audio-tiny-v1"), parse_override("encoder=5"))
    except ValueError as e:
        assert "encoder" in str(e)
    else:
        pytest.fail("SOURCE BUG: config.merge accepts encoder=5 (Any-typed section replaced by a scalar)")


def test_load_yaml_and_json(tmp_path):
    (tmp_path / "a.yaml").write_text("optim:\n  lr: 0.001\n")
    (tmp_path / "a.json").write_text('{"train": {"seed": 7}}')
    assert load_file(tmp_path / "a.yaml") == {"optim": {"lr": 0.001}}
    assert load_file(tmp_path / "a.json") == {"train": {"seed": 7}}
    (tmp_path / "null.yaml").write_text("model:\n  loss:\n    loss_scale: null\n")
    assert merge(get_preset("audio-tiny-v1"), load_file(tmp_path / "null.yaml")).model.loss.loss_scale is None
    (tmp_path / "bad.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_file(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="does not exist"):
        load_file(tmp_path / "none.yaml")


def test_yaml_exponent_floats_are_numbers(tmp_path):
    # "lr: 5e-4" is how recipes write learning rates; PyYAML (YAML 1.1) reads it as the string "5e-4"
    (tmp_path / "lr.yaml").write_text("optim:\n  lr: 5e-4\n  adam_eps: 1e-6\n")
    assert load_file(tmp_path / "lr.yaml") == {"optim": {"lr": 5e-4, "adam_eps": 1e-6}}, (
        "SOURCE BUG: config.load_file (yaml.safe_load) reads 5e-4 as the string '5e-4'")


# ---- renamed fields: data2vec 1.0 speech/text configs now use the v2 names --------------------------------
OLD_NEW = {"encoder_embed_dim": ("embed_dim", 32), "encoder_layers": ("depth", 2),
           "encoder_attention_heads": ("num_heads", 2), "encoder_ffn_embed_dim": ("ffn_embed_dim", 64),
           "encoder_layerdrop": ("layerdrop", 0.1)}


@pytest.mark.parametrize("preset", ["audio-tiny-v1", "text-tiny-v1"])
def test_old_field_names_still_read_from_files_overrides_and_checkpoints(preset, tmp_path):
    import torch

    from data2vec.cli import main
    from data2vec.errors import Data2VecError
    from data2vec.pretrained import build_model, load_pretrained

    old = {k: v for k, (_, v) in OLD_NEW.items()}
    if preset.startswith("audio"):  # and fairseq's data2vec_audio names of the positional conv stack
        old |= {"feature_grad_mult": 0.5, "conv_pos": 64, "pos_conv_depth": 4}
    audio_new = {"feature_grad_mult": "local_grad_mult", "conv_pos": "conv_pos_width", "pos_conv_depth": "conv_pos_depth"}
    new = {OLD_NEW[k][0] if k in OLD_NEW else audio_new[k]: v for k, v in old.items()}
    d = to_dict(get_preset(preset))
    d["encoder"] = {k: v for k, v in d["encoder"].items() if k not in new} | old  # a config written before the rename
    if preset.startswith("text"):
        d["encoder"]["vocab_size"] = 64  # normally from the tokenizer
    d["model"]["targets"]["average_top_k_layers"] = 2
    cfg = pretrain_config_from_dict(d)
    assert all(getattr(cfg.encoder, k) == v for k, v in new.items())
    (tmp_path / "old.json").write_text(json.dumps(d))
    assert pretrain_config_from_dict(load_file(tmp_path / "old.json")) == cfg
    # --set with an old name, and a clash of old and new names
    assert merge(get_preset(preset), parse_override("encoder.encoder_layers=3")).encoder.depth == 3
    with pytest.raises(Data2VecError, match="old name of encoder.depth"):
        merge(get_preset(preset), {"encoder": {"encoder_layers": 3, "depth": 4}})
    # a checkpoint whose config has the old names loads with the same weights
    model = build_model(cfg)
    torch.save({"format_version": 1, "config": d, "model": model.state_dict(), "step": 0}, tmp_path / "old.pt")
    cfg2, model2 = load_pretrained(tmp_path / "old.pt")
    assert cfg2.encoder == cfg.encoder and "embed_dim" in to_dict(cfg2)["encoder"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k]), k
    # and the command line reads the old names in --set
    assert main(["pretrain", "--preset", preset, "--set", "encoder.encoder_layers=3", "--out", str(tmp_path / "r"),
                 "--dry-run"]) == 0


# ---- renamed modality: `vision` is now `image` -------------------------------------------------------------
def test_modality_written_as_vision_loads_as_image(tmp_path):
    import torch

    from data2vec.modalities import MODALITY_ALIASES, get_modality, modality_name
    from data2vec.pretrained import build_model, load_pretrained

    assert MODALITY_ALIASES == {"vision": "image"} and modality_name("vision") == "image"
    assert modality_name("audio") == "audio" and get_modality("vision").name == get_modality("image").name == "image"
    cfg = get_preset("image-tiny-v1")
    assert cfg.modality == "image"
    d = to_dict(cfg) | {"modality": "vision"}  # a config written before the rename
    assert pretrain_config_from_dict(d) == cfg
    (tmp_path / "old.json").write_text(json.dumps(d))
    assert pretrain_config_from_dict(load_file(tmp_path / "old.json")).modality == "image"
    # a checkpoint whose config says `vision` loads with the same weights and says `image` from then on
    model = build_model(cfg)
    torch.save({"format_version": 1, "config": d, "model": model.state_dict(), "step": 0}, tmp_path / "old.pt")
    cfg2, model2 = load_pretrained(tmp_path / "old.pt")
    assert cfg2 == cfg and to_dict(cfg2)["modality"] == "image"
    for k, v in model.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k]), k
    from data2vec.train.loop import _check_resume_config

    _check_resume_config(cfg, d)  # a run started as `vision` resumes under `image`


@pytest.mark.parametrize("name", ["images", "Vision", 5])
def test_unknown_modality_is_one_clear_line(name):
    from data2vec.modalities import get_modality

    with pytest.raises(ValueError, match="unknown modality") as e:
        get_modality(name)
    assert "\n" not in str(e.value) and "audio, text, image" in str(e.value)
    with pytest.raises(ValueError, match="unknown modality"):
        pretrain_config_from_dict(to_dict(get_preset("image-tiny-v1")) | {"modality": name})


def test_the_quoting_hint_reads_as_a_string():
    quoted = parse_override('encoder.conv_feature_layers="[(80, 400, 160), (64, 3, 2)]"')
    cfg = merge(get_preset("audio-tiny-v2"), quoted)
    assert cfg.encoder.conv_feature_layers == "[(80, 400, 160), (64, 3, 2)]"
