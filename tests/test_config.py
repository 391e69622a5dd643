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


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "unknown config key 'optim.lrr'"),
    ("optim.lr=abc", "optim.lr: expected a number"),
    ("train.max_update=true", "train.max_update: expected an integer"),
    ("data.enable_padding=1", "expected true/false"),
    ("optim.lr_scheduler=linear", "expected one of ['tri_stage', 'cosine', 'fixed']"),
    ("optim.adam_betas=[0.9]", "expected 2 values"),
    ("masking.mask_prob=1.5", "mask_prob must be in [0, 1)"),
])
def test_bad_values_name_the_key_and_the_fix(override, message):
    with pytest.raises(ValueError) as e:
        merge(get_preset("audio-tiny-v1"), parse_override(override))
    assert message in str(e.value)


def test_unknown_key_lists_valid_keys():
    from data2vec.train.config import TrainConfig

    with pytest.raises(ValueError, match="valid keys under 'train': .*max_update"):
        from_dict(TrainConfig, {"max_updates": 3}, "train.")


def test_load_yaml_and_json(tmp_path):
    (tmp_path / "a.yaml").write_text("optim:\n  lr: 0.001\n")
    (tmp_path / "a.json").write_text('{"train": {"seed": 7}}')
    assert load_file(tmp_path / "a.yaml") == {"optim": {"lr": 0.001}}
    assert load_file(tmp_path / "a.json") == {"train": {"seed": 7}}
    (tmp_path / "bad.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_file(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="does not exist"):
        load_file(tmp_path / "none.yaml")
