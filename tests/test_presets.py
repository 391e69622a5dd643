"""Presets: every one builds; ``audio-base-v1`` matches the published recipe (SPEC A.1) field by field."""

from __future__ import annotations

import pytest

from torch import nn

from data2vec.config import to_dict
from data2vec.core.data2vec import Data2Vec
from data2vec.layers.transformer import PostLNBlock
from data2vec.modalities import get_modality
from data2vec.modalities.audio.encoder import parse_conv_layers
from data2vec.presets import PRESETS, get_preset

# Transcribed from SPEC A.1 (fairseq base_librispeech.yaml + data2vec_audio defaults), not from presets.py.
AUDIO_BASE_V1 = {
    "encoder.extractor_mode": "layer_norm",
    "encoder.conv_feature_layers": "[(512,10,5)]+[(512,3,2)]*4+[(512,2,2)]*2",  # compared parsed
    "encoder.depth": 12,
    "encoder.embed_dim": 768,
    "encoder.ffn_embed_dim": 3072,
    "encoder.num_heads": 12,
    "encoder.conv_pos_depth": 5,
    "encoder.conv_pos_width": 95,
    "encoder.conv_pos_groups": 16,
    "encoder.layerdrop": 0.05,
    "encoder.local_grad_mult": 1.0,
    "encoder.dropout_input": 0.0,
    "masking.mask_prob": 0.65,
    "masking.mask_length": 10,
    "masking.require_same_masks": True,
    "masking.mask_dropout": 0.0,
    "masking.min_masks": 1,
    "model.ema.ema_decay": 0.999,
    "model.ema.ema_end_decay": 0.9999,
    "model.ema.ema_anneal_end_step": 30000,
    "model.ema.ema_transformer_only": True,
    "model.ema.ema_layers_only": True,
    "model.targets.average_top_k_layers": 8,
    "model.targets.instance_norm_target_layer": True,
    "model.targets.layer_norm_target_layer": False,
    "model.targets.batch_norm_target_layer": False,
    "model.targets.layer_norm_targets": False,
    "model.targets.instance_norm_targets": False,
    "model.loss.loss_beta": 0.0,
    "model.loss.loss_scale": None,
    "model.collapse.min_target_var": 0.1,
    "model.collapse.min_pred_var": 0.01,
    "model.collapse.var_check_after": 5000,
    "model.head_layers": 1,
    "optim.optimizer": "adamw",  # fairseq "adam" has decoupled weight decay
    "optim.adam_betas": [0.9, 0.98],
    "optim.adam_eps": 1e-6,
    "optim.weight_decay": 0.01,
    "optim.lr": 5e-4,
    "optim.lr_scheduler": "tri_stage",
    "optim.phase_ratio": [0.03, 0.9, 0.07],
    "train.max_update": 400000,
    "data.max_tokens": 3800000,
    "data.normalize": True,
    "data.min_sample_size": 32000,
    "data.max_sample_size": 320000,
    "data.enable_padding": False,  # the recipe crops to the shortest clip in a batch
}


# Transcribed from SPEC A.2 (fairseq text/pretraining/base.yaml). Deviation: masking.mask_special_tokens (ours: false).
TEXT_BASE_V1 = {
    "encoder.depth": 12,
    "encoder.embed_dim": 768,
    "encoder.ffn_embed_dim": 3072,
    "encoder.num_heads": 12,
    "encoder.max_positions": 512,
    "encoder.dropout": 0.1,
    "encoder.attention_dropout": 0.1,
    "encoder.layernorm_embedding": True,
    "encoder.no_scale_embedding": True,
    "masking.mask_prob": 0.35,
    "masking.mask_multiple_length": 4,
    "masking.random_token_prob": 0.0,
    "masking.leave_unmasked_prob": 0.0,
    "data.tokens_per_sample": 512,
    "data.break_mode": "complete_doc",
    "data.max_tokens": 8192,
    "model.ema.ema_decay": 0.999,
    "model.ema.ema_end_decay": 0.9999,
    "model.ema.ema_anneal_end_step": 300000,
    "model.ema.ema_transformer_only": False,
    "model.ema.ema_layers_only": True,  # fairseq ema_transformer_layers_only
    "model.targets.average_top_k_layers": 10,
    "model.targets.layer_norm_target_layer": True,
    "model.targets.instance_norm_target_layer": False,
    "model.targets.layer_norm_targets": False,
    "model.targets.instance_norm_targets": False,
    "model.head_layers": 2,
    "model.loss.loss_beta": 4.0,
    "model.loss.loss_scale": 1.0,
    "optim.adam_betas": [0.9, 0.98],
    "optim.adam_eps": 1e-6,
    "optim.weight_decay": 0.01,
    "optim.lr": 2e-4,
    "optim.lr_scheduler": "cosine",
    "optim.warmup_updates": 10000,
    "optim.clip_norm": 5.0,
    "train.max_update": 1000000,
}


# Transcribed from SPEC A.3 "Official" (data2vec vision ViT-B/16), not fairseq's port.
IMAGE_BASE_V1 = {
    "encoder.patch_size": 16,
    "encoder.image_size": 224,
    "encoder.embed_dim": 768,
    "encoder.depth": 12,
    "encoder.num_heads": 12,
    "encoder.layer_scale_init_value": 1e-4,
    "encoder.layer_norm_eps": 1e-6,
    "encoder.drop_path_rate": 0.25,
    "encoder.attention_dropout": 0.05,
    "masking.num_mask_patches": 120,
    "masking.min_num_patches": 16,
    "masking.max_num_patches": 196,
    "masking.min_aspect": 0.3,
    "model.ema.ema_decay": 0.9998,
    "model.ema.ema_end_decay": 0.9998,  # constant tau
    "model.ema.ema_transformer_only": False,  # EMA of the whole model ...
    "model.ema.ema_layers_only": False,  # ... patch embedding included
    "model.targets.average_top_k_layers": 6,
    "model.targets.layer_results": "end",
    "model.targets.layer_norm_target_layer": True,
    "model.targets.layer_norm_targets": True,
    "model.targets.instance_norm_target_layer": False,
    "model.head_layers": 1,
    "model.loss.loss_beta": 2.0,
    "model.loss.loss_scale": 1 / 768,  # mean over channels too
    "optim.lr": 2e-3,
    "optim.weight_decay": 0.05,
    "optim.clip_norm": 3.0,
    "data.batch_size": 128,
}


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d[part]
    return d


@pytest.mark.parametrize("key", sorted(AUDIO_BASE_V1))
def test_audio_base_v1_matches_spec(key):
    value, expected = _get(to_dict(get_preset("audio-base-v1")), key), AUDIO_BASE_V1[key]
    if key == "encoder.conv_feature_layers":
        value, expected = parse_conv_layers(value), parse_conv_layers(expected)
    assert value == expected


def test_audio_base_v1_model_structure_matches_spec():
    cfg, model = _build("audio-base-v1")
    enc = model.student.encoder
    assert enc.frame_lengths(16000) == 49 and enc.frame_lengths(320 * 1000 + 80) == 1000  # 320x, 50 Hz
    assert isinstance(enc.feature_extractor.conv_layers[0].norm, nn.LayerNorm)  # extractor_mode layer_norm
    assert enc.layer_norm.normalized_shape == (512,) and enc.post_extract_proj.weight.shape == (768, 512)
    assert enc.mask_emb.shape == (768,) and 0 <= enc.mask_emb.min() and enc.mask_emb.max() < 1  # uniform init
    pos = enc.context_encoder.pos_conv
    assert [(b.conv.kernel_size, b.conv.groups) for b in pos] == [((19,), 16)] * 5
    assert all(set(dict(b.named_parameters())) == {"conv.weight", "conv.bias"} for b in pos)  # LN without affine
    assert all(isinstance(layer, PostLNBlock) for layer in enc.context_encoder.layers)
    assert isinstance(model.student.head, nn.Linear) and model.student.head.weight.shape == (768, 768)
    # teacher = EMA of the Transformer only; the pos-conv is copied (ema_layers_only)
    assert model.teacher.module is not enc.context_encoder and type(model.teacher.module) is type(enc.context_encoder)
    assert model.teacher.copy_keys == {f"pos_conv.{n}" for n, _ in pos.named_parameters()}
    n_enc = sum(p.numel() for p in enc.parameters())
    assert 93.0e6 < n_enc < 93.5e6, n_enc  # HF Data2VecAudioModel base: 93.16 M (no head)


@pytest.mark.parametrize("key", sorted(TEXT_BASE_V1))
def test_text_base_v1_matches_spec(key):
    assert _get(to_dict(get_preset("text-base-v1")), key) == TEXT_BASE_V1[key]


IMAGE_LARGE_V1 = {  # SPEC A.3 "Official", ViT-L/16
    "encoder.embed_dim": 1024, "encoder.depth": 24, "encoder.num_heads": 16, "encoder.layer_scale_init_value": 1e-5,
    "encoder.drop_path_rate": 0.2, "encoder.attention_dropout": 0.15, "optim.lr": 1e-3, "data.batch_size": 64,
    "model.ema.ema_decay": 0.9998, "model.targets.average_top_k_layers": 6, "masking.num_mask_patches": 120,
}


@pytest.mark.parametrize("key", sorted(IMAGE_LARGE_V1))
def test_image_large_v1_matches_spec(key):
    assert _get(to_dict(get_preset("image-large-v1")), key) == pytest.approx(IMAGE_LARGE_V1[key])


@pytest.mark.parametrize("key", sorted(IMAGE_BASE_V1))
def test_image_base_v1_matches_spec(key):
    assert _get(to_dict(get_preset("image-base-v1")), key) == pytest.approx(IMAGE_BASE_V1[key])


def _build(name):
    cfg = get_preset(name)
    if cfg.modality == "text":
        cfg.encoder.vocab_size = 50265 if "base" in name else 8000  # RoBERTa's / the built-in BPE
    encoder = get_modality(cfg.modality).build_encoder(cfg.encoder)
    return cfg, Data2Vec(encoder, cfg.model)


@pytest.mark.parametrize("name, low, high", [
    ("audio-base-v1", 93.0e6, 95.0e6),  # wav2vec 2.0 / data2vec Base: ~94 M with the head
    ("audio-tiny-v1", 0.5e6, 5e6),
    ("text-base-v1", 125e6, 127e6),
    ("image-base-v1", 85.5e6, 87e6),  # ViT-B/16 (86 M) + Linear head
    ("image-tiny-v1", 2.5e6, 3.0e6),  # RoBERTa-Base-sized encoder + 2-layer regression head
    ("text-tiny-v1", 4e6, 7e6),
])
def test_presets_build_with_expected_size(name, low, high):
    cfg, model = _build(name)
    n = sum(p.numel() for p in model.student.parameters())
    assert low < n < high, n
    depth = cfg.encoder.depth
    assert model.student.encoder.num_layers == depth
    teacher = model.teacher.module
    layers = teacher.layers if cfg.model.ema.ema_transformer_only else teacher.context_encoder.layers
    assert len(layers) == depth


def test_every_preset_is_listed_with_a_description_and_builds():
    for name, (factory, desc) in PRESETS.items():
        cfg = factory()
        assert cfg.preset == name and len(desc) > 20
        if "base" not in name and "large" not in name:  # built elsewhere; keep this test fast
            _build(name)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="audio-tiny-v1"):
        get_preset("audio-huge")


# data2vec 2.0: transcribed from SPEC A.4's table (fairseq examples/data2vec/config/v2/*_only_task.yaml),
# not from presets.py. Keys absent from a column are those the table leaves to fairseq's defaults.
_V2_COMMON = {"version": 2, "model.loss.loss_beta": 0.0, "model.ema.ema_layers_only": False,
              "model.targets.layer_results": "ffn"}
V2_TABLE = {
    "audio-base-v2": {
        "encoder.depth": 12, "encoder.prenet_depth": 0, "encoder.embed_dim": 768, "encoder.num_heads": 12,
        "model.targets.average_top_k_layers": 8, "model.targets.instance_norm_target_layer": True,
        "model.targets.layer_norm_targets": False, "model.targets.instance_norm_targets": False,
        "masking.clone_batch": 8, "masking.mask_prob": 0.5, "masking.mask_prob_adjust": 0.05, "masking.mask_length": 5,
        "masking.inverse_mask": False,
        "model.decoder.decoder_layers": 4, "model.decoder.decoder_dim": 384, "model.decoder.decoder_kernel": 7,
        "model.decoder.decoder_groups": 16,
        "model.ema.ema_decay": 0.999, "model.ema.ema_end_decay": 0.99999, "model.ema.ema_anneal_end_step": 75000,
        "model.ema.ema_transformer_only": True, "model.loss.loss_scale": None, "model.cls_loss": 0.0,
        "optim.adam_betas": [0.9, 0.98], "optim.adam_eps": 1e-6, "optim.weight_decay": 0.01, "optim.lr": 7.5e-4,
        "optim.lr_scheduler": "cosine", "optim.warmup_updates": 8000, "train.max_update": 400000,
        "data.max_tokens": 1000000, "encoder.use_alibi_encoder": True, "encoder.learned_alibi_scale": True,
        "encoder.learned_alibi_scale_per_head": True, "encoder.layerdrop": 0.05, "encoder.prenet_dropout": 0.1,
        "encoder.encoder_dropout": 0.1, "encoder.attention_dropout": 0.1, "encoder.post_mlp_drop": 0.1,
        "encoder.norm_eps": 1e-5,
    },
    "audio-large-v2": {
        "encoder.depth": 16, "encoder.prenet_depth": 8, "encoder.embed_dim": 1024, "encoder.num_heads": 16,
        "model.targets.average_top_k_layers": 16, "model.targets.instance_norm_target_layer": True,
        "masking.clone_batch": 12, "masking.mask_prob": 0.55, "masking.mask_prob_adjust": 0.1, "masking.mask_length": 5,
        "model.decoder.decoder_layers": 4, "model.decoder.decoder_dim": 768, "model.decoder.decoder_kernel": 7,
        "model.decoder.decoder_groups": 16,
        "model.ema.ema_decay": 0.9997, "model.ema.ema_end_decay": 1.0, "model.ema.ema_anneal_end_step": 300000,
        "model.ema.ema_transformer_only": True, "model.loss.loss_scale": None,
        "optim.lr": 4e-4, "optim.warmup_updates": 10000, "train.max_update": 600000, "optim.clip_norm": 1.0,
        "data.max_tokens": 320000, "encoder.layerdrop": 0.0,
    },
    "image-base-v2": {
        "encoder.depth": 10, "encoder.prenet_depth": 2, "encoder.embed_dim": 768, "encoder.num_heads": 12,
        "model.targets.average_top_k_layers": 10, "model.targets.instance_norm_target_layer": True,
        "model.targets.layer_norm_targets": True, "masking.clone_batch": 16, "masking.inverse_mask": True,
        "masking.mask_prob": 0.8, "masking.mask_prob_adjust": 0.07, "masking.mask_length": 3,
        "model.decoder.decoder_layers": 6, "model.decoder.decoder_dim": 768, "model.decoder.decoder_kernel": 3,
        "model.decoder.decoder_groups": 16,
        "model.ema.ema_decay": 0.9998, "model.ema.ema_end_decay": 0.99999, "model.ema.ema_anneal_end_step": 100000,
        "model.ema.ema_transformer_only": False, "model.loss.loss_scale": None, "model.cls_loss": 0.01,
        "optim.adam_betas": [0.9, 0.95], "optim.weight_decay": 0.05, "optim.lr": 1e-3, "optim.lr_scheduler": "cosine",
        "optim.warmup_updates": 50040, "train.max_update": 375300, "optim.clip_norm": 4.0, "data.batch_size": 16,
        "encoder.encoder_dropout": 0.0, "encoder.attention_dropout": 0.0, "encoder.post_mlp_drop": 0.0,
        "encoder.activation_dropout": 0.0, "encoder.fixed_positions": True, "encoder.num_extra_tokens": 1,
        "encoder.init_extra_token_zero": False, "encoder.use_alibi_encoder": False,
        "model.collapse.min_target_var": 0.0, "model.collapse.min_pred_var": 0.0,
        "data.augment.image_size": 224, "data.augment.crop_scale": [0.2, 1.0], "data.augment.hflip": True,
    },
    "image-large-v2": {
        "encoder.depth": 24, "encoder.prenet_depth": 0, "encoder.embed_dim": 1024, "encoder.num_heads": 16,
        "model.targets.average_top_k_layers": 18, "masking.clone_batch": 16, "masking.inverse_mask": True,
        "masking.mask_prob": 0.75, "masking.mask_prob_adjust": 0.1, "masking.mask_length": 3,
        "model.decoder.decoder_layers": 3, "model.decoder.decoder_dim": 1024, "model.decoder.decoder_kernel": 5,
        "model.ema.ema_decay": 0.9998, "model.ema.ema_end_decay": 0.99999, "model.ema.ema_anneal_end_step": 150000,
        "optim.lr": 4e-4, "data.batch_size": 8, "model.cls_loss": 0.01,
    },
    "text-base-v2": {
        "encoder.depth": 12, "encoder.prenet_depth": 0, "encoder.embed_dim": 768, "encoder.num_heads": 12,
        "model.targets.average_top_k_layers": 12, "model.targets.instance_norm_target_layer": True,
        "model.targets.layer_norm_targets": False, "model.targets.instance_norm_targets": False,
        "masking.clone_batch": 8, "masking.mask_prob": 0.48,
        "model.decoder.decoder_layers": 5, "model.decoder.decoder_dim": 768, "model.decoder.decoder_kernel": 9,
        "model.decoder.decoder_groups": 1, "model.decoder.decoder_residual": False,
        "model.decoder.projection_layers": 2,
        "model.ema.ema_decay": 0.9999, "model.ema.ema_end_decay": 0.99999, "model.ema.ema_anneal_end_step": 100000,
        "model.ema.ema_transformer_only": True, "model.loss.loss_scale": 1.0,
        "optim.adam_betas": [0.9, 0.98], "optim.weight_decay": 0.01, "optim.lr": 2e-4, "optim.warmup_updates": 4000,
        "train.max_update": 1000000, "optim.clip_norm": 1.0, "data.tokens_per_sample": 512,
        "data.break_mode": "none", "data.max_sentences": 4,
    },
    "text-large-v2": {
        "encoder.depth": 24, "encoder.embed_dim": 1024, "encoder.num_heads": 16,
        "model.targets.average_top_k_layers": 24, "model.targets.layer_norm_target_layer": True,
        "model.targets.instance_norm_target_layer": False, "model.targets.instance_norm_targets": True,
        "masking.clone_batch": 8, "masking.mask_prob": 0.5, "model.decoder.decoder_layers": 5,
        "model.decoder.decoder_dim": 768, "model.decoder.decoder_kernel": 9, "model.loss.loss_scale": 1.0,
        "optim.lr": 1e-4, "train.max_update": 600000, "data.max_sentences": 2,
    },
}


@pytest.mark.parametrize("name, key", [(n, k) for n, t in V2_TABLE.items() for k in sorted(t | _V2_COMMON)])
def test_v2_presets_match_spec(name, key):
    want = (V2_TABLE[name] | _V2_COMMON)[key]
    got = _get(to_dict(get_preset(name)), key)
    assert got == (want if want is None or isinstance(want, (str, bool, list)) else pytest.approx(want))


@pytest.mark.parametrize("name, low, high", [
    ("audio-base-v2", 93e6, 96e6),  # the Base Transformer + CNN (~94 M) + the decoder
    ("image-base-v2", 86e6, 92e6),  # ViT-B (2 prenet + 10 blocks) + the 2-D decoder
    ("text-base-v2", 150e6, 156e6),  # RoBERTa-Base-sized (124 M) + the 1-D decoder (5 dense k-9 convs, 28 M)
])
def test_v2_base_presets_build(name, low, high):
    cfg, model = _build(name)
    n = sum(p.numel() for p in model.student.parameters())
    assert low < n < high, n
    assert model.student.encoder.num_layers == cfg.encoder.depth
    ctx = model.teacher.module if cfg.model.ema.ema_transformer_only else model.teacher.module.context_encoder
    assert len(ctx.blocks) == cfg.encoder.depth and len(ctx.prenet) == cfg.encoder.prenet_depth


def test_audio_tiny_mel_v2_is_audio_tiny_v2_with_the_log_mel_front_end():
    """The runs of docs/results.md ("Speech, issue 15") used audio-tiny-v2 with two overrides; the preset is exactly
    that (so models/audio-tiny-mel-v2 and `--preset audio-tiny-mel-v2` reproduce them)."""
    mel, tiny = to_dict(get_preset("audio-tiny-mel-v2")), to_dict(get_preset("audio-tiny-v2"))
    assert mel.pop("preset") == "audio-tiny-mel-v2" and tiny.pop("preset") == "audio-tiny-v2"
    tiny["encoder"].update(extractor_mode="log_mel", conv_feature_layers="[(80, 400, 160), (64, 3, 2)]")
    assert mel == tiny
