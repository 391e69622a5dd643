"""Named recipes. Each preset is a function returning a complete ``PretrainConfig``.

``audio-base-v1`` is fairseq ``examples/data2vec/config/audio/pretraining/base_librispeech.yaml`` with
the ``data2vec_audio`` / ``Wav2Vec2Config`` defaults it relies on (SPEC A.1), field by field; the test
``tests/test_presets.py`` checks it against a table transcribed from SPEC. The published run used
16 GPUs x 3.8M samples per GPU: on fewer devices, raise ``train.update_freq`` to keep the batch.
Tiny presets are ours: small enough to learn something on a 2-core CPU in minutes.
"""

from __future__ import annotations

from typing import Callable

from data2vec.core.data2vec import Data2VecConfig, EMAConfig
from data2vec.core.loss import LossConfig
from data2vec.core.monitors import CollapseConfig
from data2vec.core.targets import TargetConfig
from data2vec.modalities.audio import AudioDataConfig, AudioEncoderConfig, SpanMaskConfig
from data2vec.modalities.text import TextEncoderConfig, TokenMaskConfig
from data2vec.modalities.text.data import TextDataConfig
from data2vec.data.images import AugmentConfig
from data2vec.modalities.vision import BlockMaskConfig, VisionEncoderConfig
from data2vec.modalities.vision.data import ImageDataConfig
from data2vec.train.config import PretrainConfig, TrainConfig
from data2vec.train.optim import OptimConfig


def audio_base_v1() -> PretrainConfig:
    return PretrainConfig(
        modality="audio",
        preset="audio-base-v1",
        encoder=AudioEncoderConfig(
            conv_feature_layers="[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2",
            extractor_mode="layer_norm", conv_bias=False, feature_grad_mult=1.0,
            encoder_embed_dim=768, encoder_layers=12, encoder_ffn_embed_dim=3072, encoder_attention_heads=12,
            dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, encoder_layerdrop=0.05,
            dropout_input=0.0, conv_pos=95, conv_pos_groups=16, pos_conv_depth=5,
        ),
        masking=SpanMaskConfig(mask_prob=0.65, mask_length=10, min_masks=1, require_same_masks=True, mask_dropout=0.0),
        data=AudioDataConfig(normalize=True, max_sample_size=320000, min_sample_size=32000, max_tokens=3800000,
                             enable_padding=False),
        model=Data2VecConfig(
            ema=EMAConfig(ema_decay=0.999, ema_end_decay=0.9999, ema_anneal_end_step=30000,
                          ema_transformer_only=True, ema_layers_only=True),
            targets=TargetConfig(average_top_k_layers=8, instance_norm_target_layer=True),
            loss=LossConfig(loss_beta=0.0, loss_scale=None),
            collapse=CollapseConfig(min_target_var=0.1, min_pred_var=0.01, var_check_after=5000),
            head_layers=1,
        ),
        optim=OptimConfig(optimizer="adamw", lr=5e-4, adam_betas=(0.9, 0.98), adam_eps=1e-6, weight_decay=0.01,
                          lr_scheduler="tri_stage", phase_ratio=(0.03, 0.9, 0.07), clip_norm=0.0),
        train=TrainConfig(max_update=400000, update_freq=1, log_interval=200, save_interval_updates=25000),
    )


def audio_tiny_v1() -> PretrainConfig:
    cfg = audio_base_v1()
    cfg.preset = "audio-tiny-v1"
    cfg.encoder = AudioEncoderConfig(
        conv_feature_layers="[(64, 10, 5)] + [(64, 3, 2)] * 4 + [(64, 2, 2)] * 2",
        encoder_embed_dim=128, encoder_layers=4, encoder_ffn_embed_dim=512, encoder_attention_heads=4,
        dropout=0.0, attention_dropout=0.0, encoder_layerdrop=0.0, conv_pos=95, conv_pos_groups=16, pos_conv_depth=5,
    )
    cfg.masking = SpanMaskConfig(mask_prob=0.65, mask_length=10)
    cfg.data = AudioDataConfig(max_sample_size=48000, min_sample_size=8000, max_tokens=16 * 48000,
                               enable_padding=True, num_workers=1)
    cfg.model.ema = EMAConfig(ema_decay=0.998, ema_end_decay=0.9999, ema_anneal_end_step=2000)
    cfg.model.targets = TargetConfig(average_top_k_layers=3, instance_norm_target_layer=True)
    cfg.model.collapse = CollapseConfig(min_target_var=0.1, min_pred_var=0.01, var_check_after=500)
    cfg.optim = OptimConfig(lr=5e-4, lr_scheduler="tri_stage", phase_ratio=(0.1, 0.6, 0.3), clip_norm=5.0)  # docs/results.md
    cfg.train = TrainConfig(max_update=600, log_interval=5, save_interval_updates=100)
    return cfg


def text_base_v1() -> PretrainConfig:
    """fairseq ``examples/data2vec/config/text/pretraining/base.yaml`` (SPEC A.2). The vocabulary comes from
    the data's tokenizer (50265 with RoBERTa's). 16 GPUs x 8192 tokens: raise ``train.update_freq`` on fewer."""
    return PretrainConfig(
        modality="text",
        preset="text-base-v1",
        encoder=TextEncoderConfig(vocab_size=0, max_positions=512, encoder_embed_dim=768, encoder_layers=12,
                                  encoder_ffn_embed_dim=3072, encoder_attention_heads=12, dropout=0.1,
                                  attention_dropout=0.1, activation_dropout=0.0, encoder_layerdrop=0.0,
                                  layernorm_embedding=True, no_scale_embedding=True),
        masking=TokenMaskConfig(mask_prob=0.35, mask_multiple_length=4, leave_unmasked_prob=0.0, random_token_prob=0.0),
        data=TextDataConfig(tokens_per_sample=512, break_mode="complete_doc", max_tokens=8192),
        model=Data2VecConfig(
            ema=EMAConfig(ema_decay=0.999, ema_end_decay=0.9999, ema_anneal_end_step=300000,
                          ema_transformer_only=False, ema_layers_only=True),
            targets=TargetConfig(average_top_k_layers=10, layer_norm_target_layer=True),
            loss=LossConfig(loss_beta=4.0, loss_scale=1.0),
            collapse=CollapseConfig(min_target_var=0.1, min_pred_var=0.01, var_check_after=5000),
            head_layers=2,
        ),
        optim=OptimConfig(optimizer="adamw", lr=2e-4, adam_betas=(0.9, 0.98), adam_eps=1e-6, weight_decay=0.01,
                          lr_scheduler="cosine", warmup_updates=10000, clip_norm=5.0),
        train=TrainConfig(max_update=1000000, update_freq=1, log_interval=200, save_interval_updates=25000),
    )


def text_tiny_v1() -> PretrainConfig:
    cfg = text_base_v1()
    cfg.preset = "text-tiny-v1"
    cfg.encoder = TextEncoderConfig(vocab_size=0, max_positions=128, encoder_embed_dim=256, encoder_layers=4,
                                    encoder_ffn_embed_dim=1024, encoder_attention_heads=4, dropout=0.1,
                                    attention_dropout=0.1)
    cfg.data = TextDataConfig(tokens_per_sample=128, break_mode="complete_doc", max_tokens=32 * 128)
    cfg.model.ema = EMAConfig(ema_decay=0.998, ema_end_decay=0.9999, ema_anneal_end_step=2000,
                              ema_transformer_only=False, ema_layers_only=True)
    cfg.model.targets = TargetConfig(average_top_k_layers=3, layer_norm_target_layer=True)
    cfg.model.collapse = CollapseConfig(min_target_var=0.1, min_pred_var=0.01, var_check_after=500)
    cfg.optim = OptimConfig(lr=5e-4, lr_scheduler="cosine", warmup_updates=50, clip_norm=5.0)
    cfg.train = TrainConfig(max_update=500, log_interval=5, save_interval_updates=100)
    return cfg


def image_base_v1() -> PretrainConfig:
    """Official data2vec vision ViT-B/16 (SPEC A.3 "Official", not fairseq's port): 16 GPUs x 128 images,
    800 ImageNet epochs (= 500k updates at batch 2048), 10 warm-up epochs. Smooth-L1 with *mean*
    reduction over masked patches and channels = our per-position sum with ``loss_scale = 1/768``."""
    return PretrainConfig(
        modality="vision",
        preset="image-base-v1",
        encoder=VisionEncoderConfig(image_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=12, num_heads=12,
                                    layer_scale_init_value=1e-4, drop_path_rate=0.25, attention_dropout=0.05),
        masking=BlockMaskConfig(num_mask_patches=120, min_num_patches=16, max_num_patches=196, min_aspect=0.3),
        data=ImageDataConfig(batch_size=128, augment=AugmentConfig(image_size=224)),
        model=Data2VecConfig(
            ema=EMAConfig(ema_decay=0.9998, ema_end_decay=0.9998, ema_anneal_end_step=0,
                          ema_transformer_only=False, ema_layers_only=False),
            targets=TargetConfig(average_top_k_layers=6, layer_results="end", layer_norm_target_layer=True,
                                 layer_norm_targets=True),
            loss=LossConfig(loss_beta=2.0, loss_scale=1 / 768),
            collapse=CollapseConfig(min_target_var=0.1, min_pred_var=0.01, var_check_after=5000),
            head_layers=1,
        ),
        optim=OptimConfig(optimizer="adamw", lr=2e-3, adam_betas=(0.9, 0.999), adam_eps=1e-8, weight_decay=0.05,
                          lr_scheduler="cosine", warmup_updates=6250, min_lr=1e-5, clip_norm=3.0),
        train=TrainConfig(max_update=500000, update_freq=1, log_interval=200, save_interval_updates=25000),
    )


def image_large_v1() -> PretrainConfig:
    """Official ViT-L/16: 64 GPUs x 64 images (4096), lr 1e-3, 80 warm-up epochs of 800 (first stage, 0.9998)."""
    cfg = image_base_v1()
    cfg.preset = "image-large-v1"
    cfg.encoder = VisionEncoderConfig(image_size=224, patch_size=16, in_chans=3, embed_dim=1024, depth=24, num_heads=16,
                                      layer_scale_init_value=1e-5, drop_path_rate=0.2, attention_dropout=0.15)
    cfg.data.batch_size = 64
    cfg.model.loss.loss_scale = 1 / 1024
    cfg.optim.lr = 1e-3
    cfg.optim.warmup_updates = 80 * 312  # 1.28 M images / 4096 = 312 updates per epoch
    cfg.train.max_update = 800 * 312
    return cfg


def image_tiny_v1() -> PretrainConfig:
    """28x28 grey images (Fashion-MNIST), patch 4 (49 patches), 6 x 192 ViT; trains on a CPU."""
    cfg = image_base_v1()
    cfg.preset = "image-tiny-v1"
    cfg.encoder = VisionEncoderConfig(image_size=28, patch_size=4, in_chans=1, embed_dim=192, depth=6, num_heads=3,
                                      layer_scale_init_value=0.1, drop_path_rate=0.1, attention_dropout=0.0)
    cfg.masking = BlockMaskConfig(num_mask_patches=29, min_num_patches=4, max_num_patches=None, min_aspect=0.3)
    cfg.data = ImageDataConfig(batch_size=128, num_workers=1, augment=AugmentConfig(
        image_size=28, crop_scale=(0.35, 1.0), hflip=True, mean=(0.286,), std=(0.353,)))
    cfg.model.ema = EMAConfig(ema_decay=0.996, ema_end_decay=0.9998, ema_anneal_end_step=1000,
                              ema_transformer_only=False, ema_layers_only=False)
    cfg.model.targets = TargetConfig(average_top_k_layers=3, layer_results="end", layer_norm_target_layer=True,
                                     layer_norm_targets=True)
    cfg.model.loss = LossConfig(loss_beta=2.0, loss_scale=1 / 192)
    cfg.model.collapse = CollapseConfig(min_target_var=0.1, min_pred_var=0.01, var_check_after=300)
    cfg.optim = OptimConfig(lr=1e-3, adam_betas=(0.9, 0.999), adam_eps=1e-8, weight_decay=0.05,
                            lr_scheduler="cosine", warmup_updates=30, min_lr=1e-5, clip_norm=3.0)
    cfg.train = TrainConfig(max_update=300, log_interval=5, save_interval_updates=100)
    return cfg


PRESETS: dict[str, tuple[Callable[[], PretrainConfig], str]] = {
    "audio-base-v1": (audio_base_v1, "data2vec 1.0 speech Base, LibriSpeech recipe (fairseq base_librispeech.yaml)"),
    "audio-tiny-v1": (audio_tiny_v1, "data2vec 1.0 speech, 4 x 128 Transformer (~1 M params), 1-3 s clips; trains on a CPU"),
    "image-base-v1": (image_base_v1, "data2vec 1.0 vision ViT-B/16, official recipe (BEiT backbone, 120/196 block masks)"),
    "image-large-v1": (image_large_v1, "data2vec 1.0 vision ViT-L/16, official recipe (first 800-epoch stage)"),
    "image-tiny-v1": (image_tiny_v1, "data2vec 1.0 vision, 6 x 192 ViT on 28x28 grey images (Fashion-MNIST); trains on a CPU"),
    "text-base-v1": (text_base_v1, "data2vec 1.0 text Base, fairseq text/pretraining/base.yaml (span masking 0.35 x 4)"),
    "text-tiny-v1": (text_tiny_v1, "data2vec 1.0 text, 4 x 256 Transformer, 128-token blocks, 8k BPE; trains on a CPU"),
}


def get_preset(name: str) -> PretrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; `data2vec presets` lists them: {', '.join(PRESETS)}")
    return PRESETS[name][0]()
